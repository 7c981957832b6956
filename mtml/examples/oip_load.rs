//! Load tool for the Open Inference Protocol endpoint: ModelInfer latency (p50, p99) and
//! throughput at 1 and at many requests in flight, beside a bare tonic round trip (ServerLive,
//! which does no work) and a raw ONNX Runtime call of the same model on the same machine; and
//! the same calls through the access check every mtml server runs (`mtml_auth::AuthLayer`, a
//! read token hashed and compared on each call).
//!
//! `cargo run --release -p mtml --example oip_load [REQUESTS]` (default 20 000 per row). The
//! server and the clients share this machine's cores; the numbers go into docs/benchmarks.md.

use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use mtml::Config;
use mtml::services::oip::OipService;
use mtml_inference::Model;
use mtml_proto::inference as oip;
use mtml_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use mtml_auth::{AuthChannel, Bearer, Role, Tokens};

#[derive(Clone, Copy)]
enum Call {
    Live,
    Infer,
}

fn request(input: &str) -> oip::ModelInferRequest {
    let values: Vec<f32> = (0..mtml_feature_store::FEATURE_COUNT).map(|i| (i as f32 - 6.0) * 0.01).collect();
    oip::ModelInferRequest {
        model_name: "fx-direction".into(),
        inputs: vec![oip::model_infer_request::InferInputTensor {
            name: input.into(),
            datatype: "FP32".into(),
            shape: vec![1, mtml_feature_store::FEATURE_COUNT as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![values.iter().flat_map(|v| v.to_le_bytes()).collect()],
        ..Default::default()
    }
}

async fn run(client: &GrpcInferenceServiceClient<AuthChannel>, input: &str, call: Call, requests: usize, in_flight: usize) -> (Histogram<u64>, f64) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let mut client = client.clone();
        let request = request(input);
        let share = requests / in_flight;
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
            for _ in 0..share {
                let t = Instant::now();
                match call {
                    Call::Live => {
                        client.server_live(oip::ServerLiveRequest {}).await.expect("live");
                    }
                    Call::Infer => {
                        client.model_infer(request.clone()).await.expect("infer");
                    }
                }
                let _ = histogram.record(t.elapsed().as_nanos() as u64);
            }
            histogram
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    for task in tasks {
        total.add(task.await.expect("task")).expect("add");
    }
    let per_second = total.len() as f64 / start.elapsed().as_secs_f64();
    (total, per_second)
}

/// The read token of the runs with the access check.
const READ_TOKEN: &str = "load-tool-read-token-0123456789";

/// The configured model served over the protocol on a free port, behind the access check with a
/// read token when `guarded`: the server, a client (presenting the token when guarded), and
/// the model's input name.
async fn serve(runtime: &mtml_inference::OnnxRuntime, config: &Config, guarded: bool) -> anyhow::Result<(Arc<mtml_inference::ModelServer>, GrpcInferenceServiceClient<AuthChannel>, String)> {
    let server = Arc::new(mtml::runtime::model_server(runtime, config)?);
    server.load("fx-direction")?;
    let input = server.get("fx-direction", "")?.signature().input.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let service = OipService::new(Arc::clone(&server)).into_server();
    let incoming = mtml::services::grpc_incoming(listener);
    if guarded {
        let mut tokens = Tokens::default();
        tokens.add(Role::Read, &format!("load:{READ_TOKEN}")).map_err(anyhow::Error::msg)?;
        let layer = mtml_auth::AuthLayer::new(mtml_auth::Guard::new(tokens));
        tokio::spawn(tonic::transport::Server::builder().layer(layer).add_service(service).serve_with_incoming(incoming));
    } else {
        tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect().await?;
    let bearer = Bearer::new(if guarded { READ_TOKEN } else { "" }).map_err(anyhow::Error::msg)?;
    Ok((server, GrpcInferenceServiceClient::with_interceptor(channel, bearer), input))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let requests: usize = std::env::args().nth(1).map_or(Ok(20_000), |a| a.parse())?;
    let config = Config::defaults();
    let runtime = mtml::runtime::load_runtime(&config)?;
    let (_server, client, input) = serve(&runtime, &config, false).await?;
    let (_guarded_server, guarded, _) = serve(&runtime, &config, true).await?;

    // Raw ONNX Runtime, one session, same input.
    let mut model = Model::from_bytes(&runtime, "fx-direction", mtml::runtime::EMBEDDED_MODEL)?;
    let values: Vec<f32> = (0..mtml_feature_store::FEATURE_COUNT).map(|i| (i as f32 - 6.0) * 0.01).collect();
    let mut raw = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let start = Instant::now();
    for _ in 0..requests {
        let t = Instant::now();
        model.infer(&values, 1)?;
        raw.record(t.elapsed().as_nanos() as u64)?;
    }
    let raw_rate = requests as f64 / start.elapsed().as_secs_f64();

    println!("| what | in flight | p50 µs | p99 µs | requests/s |");
    println!("|---|---:|---:|---:|---:|");
    let row = |what: &str, in_flight: usize, h: &Histogram<u64>, rate: f64| {
        println!(
            "| {what} | {in_flight} | {:.1} | {:.1} | {:.0} |",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            rate
        );
    };
    row("raw ort call (Model::infer, one session)", 1, &raw, raw_rate);
    // Warm the connection and the workers first.
    run(&client, &input, Call::Infer, 1_000, 4).await;
    run(&guarded, &input, Call::Infer, 1_000, 4).await;
    for in_flight in [1, 16] {
        let (h, rate) = run(&client, &input, Call::Live, requests, in_flight).await;
        row("bare tonic round trip (ServerLive)", in_flight, &h, rate);
        let (h, rate) = run(&client, &input, Call::Infer, requests, in_flight).await;
        row("ModelInfer, raw FP32 [1, features]", in_flight, &h, rate);
        let (h, rate) = run(&guarded, &input, Call::Infer, requests, in_flight).await;
        row("ModelInfer with a read token checked (AuthLayer)", in_flight, &h, rate);
    }
    micro_batching(&runtime, requests).await
}

/// Where micro-batching pays: the raw cost per row at batch sizes 1 to 64 for both shipped
/// models, then ModelInfer at 16 in flight with `max_batch` 1 and 16.
async fn micro_batching(runtime: &mtml_inference::OnnxRuntime, requests: usize) -> anyhow::Result<()> {
    let models_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let row: Vec<f32> = (0..mtml_feature_store::FEATURE_COUNT).map(|i| (i as f32 - 6.0) * 0.01).collect();
    println!();
    println!("| model | batch | µs per call | µs per row |");
    println!("|---|---:|---:|---:|");
    for version in [1, 2] {
        let bytes = std::fs::read(models_dir.join(format!("fx-direction-v{version}.onnx")))?;
        let mut model = Model::from_bytes(runtime, "fx-direction", &bytes)?;
        for batch in [1usize, 4, 16, 64] {
            let input: Vec<f32> = row.iter().copied().cycle().take(row.len() * batch).collect();
            let calls = (requests / batch).max(200);
            let start = Instant::now();
            for _ in 0..calls {
                model.infer(&input, batch)?;
            }
            let per_call = start.elapsed().as_secs_f64() * 1e6 / calls as f64;
            println!("| v{version} | {batch} | {per_call:.2} | {:.2} |", per_call / batch as f64);
        }
    }
    println!();
    println!("| model | max_batch | in flight | p50 µs | p99 µs | requests/s | rows per execution |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for version in [1, 2] {
        for max_batch in [1, 16] {
            let mut config = Config::defaults();
            config.model.path = Some(models_dir.join(format!("fx-direction-v{version}.onnx")));
            config.model.max_batch = max_batch;
            let (server, client, input) = serve(runtime, &config, false).await?;
            run(&client, &input, Call::Infer, 1_000, 4).await;
            let loaded = server.get("fx-direction", "")?;
            let (rows0, executions0) = (loaded.stats.inference_count.load(std::sync::atomic::Ordering::Relaxed), loaded.stats.execution_count.load(std::sync::atomic::Ordering::Relaxed));
            let (h, rate) = run(&client, &input, Call::Infer, requests, 16).await;
            let rows = loaded.stats.inference_count.load(std::sync::atomic::Ordering::Relaxed) - rows0;
            let executions = loaded.stats.execution_count.load(std::sync::atomic::Ordering::Relaxed) - executions0;
            println!(
                "| v{version} | {max_batch} | 16 | {:.1} | {:.1} | {rate:.0} | {:.2} |",
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                rows as f64 / executions.max(1) as f64
            );
        }
    }
    Ok(())
}
