//! A split deployment: the bridge (`mtml bridge`) and the pipeline (`mtml pipeline`) as separate
//! processes over gRPC, sharing one chain history in PostgreSQL and exporting to one OTLP
//! receiver (the OpenTelemetry collector's gRPC service, run by the test). One chain spans both
//! processes under one trace id, its stages in the order a tick meets them, under one root.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::sync::{Arc, Mutex};

use mtml_proto::v1::PredictSymbolRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::trace::v1::Span;
use mtml_proto::v1::prediction_client::PredictionClient;

fn mtml() -> Command {
    mtml_test_support::command_in_own_dir(env!("CARGO_BIN_EXE_mtml"))
}

/// An OTLP trace receiver, as a collector runs it: every span with its resource's service.name.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(&self, request: tonic::Request<ExportTraceServiceRequest>) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource.resource.iter().flat_map(|r| &r.attributes).find(|a| a.key == "service.name");
            let service = format!("{:?}", service.and_then(|a| a.value.clone()).and_then(|v| v.value));
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|span| (service.clone(), span)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// A running `mtml` process, killed if the test fails before it stops it.
struct Running {
    child: Child,
    stderr: BufReader<std::process::ChildStderr>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mtml COMMAND --config CONFIG` and waits for its running line.
fn start(command: &str, config: &std::path::Path) -> (Running, String) {
    let mut child = mtml().args([command, "--config"]).arg(config).env("MTML_LOG", "warn").stderr(Stdio::piped()).spawn().unwrap();
    let mut running = Running { stderr: BufReader::new(child.stderr.take().unwrap()), child };
    // Warnings may come first (the pipeline retries a bridge not yet up).
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(running.stderr.read_line(&mut line).unwrap() > 0, "mtml {command} did not start: {seen}");
        if line.contains("running") {
            return (running, line);
        }
        seen.push_str(&line);
    }
}

/// SIGTERM, then everything it wrote after its running line.
fn terminate(mut running: Running) -> String {
    assert!(Command::new("kill").args(["-TERM", &running.child.id().to_string()]).status().unwrap().success());
    let mut rest = String::new();
    running.stderr.read_to_string(&mut rest).unwrap();
    assert!(running.child.wait().unwrap().success(), "{rest}");
    rest
}

/// The two configurations of a split deployment on `ports` (pipeline gRPC, bridge gRPC,
/// terminals) sharing the journal at `journal`, each with `extra` settings appended.
fn split_configs(dir: &std::path::Path, ports: [u16; 3], journal: &str, pipeline_extra: &str, bridge_extra: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let [pipeline_grpc, bridge_grpc, terminals] = ports;
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!("[grpc]\nlisten = \"127.0.0.1:{pipeline_grpc}\"\n[pipeline]\nbridge = \"http://127.0.0.1:{bridge_grpc}\"\n[journal]\nurl = \"{journal}\"\n{pipeline_extra}"),
    )
    .unwrap();
    let bridge = dir.join("bridge.toml");
    std::fs::write(
        &bridge,
        format!(
            "[bridge]\nlisten = \"127.0.0.1:{terminals}\"\ntoken = \"tok\"\npipeline = \"http://127.0.0.1:{pipeline_grpc}\"\n\
             [grpc]\nlisten = \"127.0.0.1:{bridge_grpc}\"\n[journal]\nurl = \"{journal}\"\n{bridge_extra}"
        ),
    )
    .unwrap();
    (pipeline, bridge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_chain_spans_the_bridge_and_the_pipeline_processes() {
    let database = mtml_test_support::postgres::FreshDatabase::create("split").await;
    let dir = tempfile::tempdir().unwrap();
    let [pipeline_grpc, bridge_grpc, terminals] = [(); 3].map(|()| mtml_test_support::free_port());
    let receiver = Receiver::default();
    let otlp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp_port = otlp.local_addr().unwrap().port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(otlp)),
    );
    let otlp = format!("[otlp]\nendpoint = \"http://127.0.0.1:{otlp_port}\"\n");
    let (pipeline_config, bridge_config) =
        split_configs(dir.path(), [pipeline_grpc, bridge_grpc, terminals], &database.url, &otlp, &otlp);
    let (pipeline, line) = start("pipeline", &pipeline_config);
    assert!(line.contains(&format!("orders to http://127.0.0.1:{bridge_grpc}")), "{line}");
    let (bridge, line) = start("bridge", &bridge_config);
    assert!(line.contains(&format!("ticks to http://127.0.0.1:{pipeline_grpc}")), "{line}");

    let common::Streaming { terminal, stop, sent, last_time } = common::stream_sample(&format!("127.0.0.1:{terminals}"), "tok").await;
    // Every tick has crossed to the pipeline once the features of the last one are served there.
    let mut client = PredictionClient::connect(format!("http://127.0.0.1:{pipeline_grpc}")).await.unwrap();
    loop {
        let mut request = tonic::Request::new(PredictSymbolRequest { symbol: "EURUSD".into(), model: String::new() });
        request.metadata_mut().insert("authorization", "Bearer read-token-0123456789".parse().unwrap());
        match client.predict_symbol(request).await {
            Ok(response) if response.get_ref().feature_time_ms == last_time => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(status) if status.code() == tonic::Code::NotFound => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(status) => panic!("{status}"),
        }
    }
    // The fills of the last orders come back through the bridge's process.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // While both run, the pipeline's mtml.v1.Chains serves the history, both processes' parts.
    let mut chains = mtml_proto::v1::chains_client::ChainsClient::connect(format!("http://127.0.0.1:{pipeline_grpc}")).await.unwrap();
    let start = std::time::Instant::now();
    let served = loop {
        let recent = chains
            .recent_chains(mtml_proto::v1::RecentChainsRequest { limit: 1000, ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .chains;
        let mut found = None;
        for summary in recent.iter().filter(|c| c.spans >= 9) {
            let chain = chains.get_chain(mtml_proto::v1::GetChainRequest { chain_id: summary.chain_id.clone() }).await.unwrap().into_inner();
            if chain.spans.iter().any(|s| s.service == "bridge") && chain.spans.iter().any(|s| s.service == "pipeline") {
                found = Some(chain);
                break;
            }
        }
        if let Some(chain) = found {
            break chain;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no chain with both parts served: {recent:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(served.spans[0].stage, "bridge_receive");
    assert!(served.spans.windows(2).all(|w| w[0].start_unix_ns <= w[1].start_unix_ns), "{served:?}");
    let health = chains.chain_health(mtml_proto::v1::ChainHealthRequest::default()).await.unwrap().into_inner().text;
    assert!(health.contains("bottleneck: "), "{health}");
    let bad = chains.get_chain(mtml_proto::v1::GetChainRequest { chain_id: "not-a-chain".into() }).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad}");
    let unknown = chains.get_chain(mtml_proto::v1::GetChainRequest { chain_id: "00000000000000000000000000000001".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown}");
    let outcome = mtml_proto::v1::RecentChainsRequest { outcome: "weird".into(), ..Default::default() };
    assert_eq!(chains.recent_chains(outcome).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    stop.cancel();
    assert_eq!(terminal.await.unwrap().unwrap().ticks_sent as usize, sent);
    terminate(bridge);
    let rest = terminate(pipeline);
    assert!(rest.contains(&format!("stopped after {sent} ticks")), "{rest}");

    // A chain that led to a fill, read back from the shared history: both processes' parts.
    let journal = mtml_journal::Journal::open_existing(&database.url).await.unwrap();
    let chains = journal.chains(0, false, 1_000, None).await.unwrap();
    let mut whole = None;
    for chain in &chains {
        let spans = journal.chain(&chain.chain_id).await.unwrap();
        if spans.iter().any(|s| s.stage == "fill") && spans.iter().any(|s| s.service == "pipeline") {
            whole = Some((chain.chain_id.clone(), spans));
            break;
        }
    }
    let (chain_id, spans) = whole.unwrap_or_else(|| panic!("no filled chain with both parts among {} chains", chains.len()));
    let stages: Vec<(&str, &str)> = spans.iter().map(|s| (s.stage.as_str(), s.service.as_str())).collect();
    assert_eq!(
        stages[..8],
        [
            ("bridge_receive", "bridge"),
            ("ingest", "pipeline"),
            ("features", "pipeline"),
            ("inference", "pipeline"),
            ("decision", "pipeline"),
            ("risk", "pipeline"),
            ("execution", "pipeline"),
            ("bridge_send", "bridge"),
        ],
        "{stages:?}"
    );
    assert!(stages[8..].iter().all(|s| *s == ("fill", "bridge")), "{stages:?}");
    let total = spans.last().map(|s| s.start_unix_ns + s.duration_ns).unwrap() - spans[0].start_unix_ns;
    assert!(spans.iter().all(|s| s.duration_ns >= 0 && s.duration_ns <= total), "{spans:?}");
    journal.close().await;

    // `mtml chain show` draws it as one waterfall over both processes.
    let shown = mtml().args(["chain", "show", &chain_id, "--config"]).arg(&pipeline_config).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    assert!(text.lines().next().unwrap().ends_with("in 2 processes"), "{text}");
    assert!(text.contains("  bridge_receive   bridge") && text.contains("  inference        pipeline"), "{text}");
    database.drop_database().await;

    // The same chain as one OpenTelemetry trace: its id the chain id, one root from the bridge
    // (which read the tick), every stage of both processes under it, each process named.
    let exported = receiver.spans.lock().unwrap().clone();
    let trace: Vec<&(String, Span)> = exported.iter().filter(|(_, span)| hex(&span.trace_id) == chain_id).collect();
    let roots: Vec<&Span> = trace.iter().map(|(_, s)| s).filter(|s| s.parent_span_id.is_empty()).collect();
    assert_eq!(roots.len(), 1, "one root: {trace:#?}");
    assert_eq!(roots[0].name, "tick");
    let mut children: Vec<(&str, &str, u64)> = trace
        .iter()
        .filter(|(_, s)| !s.parent_span_id.is_empty())
        .map(|(service, s)| {
            assert_eq!(s.parent_span_id, roots[0].span_id, "{s:?}");
            assert!(s.attributes.iter().any(|a| a.key == "mtml.stage"), "{s:?}");
            assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
            (s.name.as_str(), service.as_str(), s.start_time_unix_nano)
        })
        .collect();
    children.sort_by_key(|c| c.2);
    let named: Vec<(&str, bool)> = children.iter().map(|(stage, service, _)| (*stage, service.contains("bridge"))).collect();
    assert_eq!(
        named[..8],
        [
            ("bridge_receive", true),
            ("ingest", false),
            ("features", false),
            ("inference", false),
            ("decision", false),
            ("risk", false),
            ("execution", false),
            ("bridge_send", true),
        ],
        "{named:?}"
    );
    assert_eq!(children.len(), spans.len(), "every span of the history exported once");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A chain the pipeline refuses (risk, in its process) is kept whole all the same: the bridge,
/// which cannot know it was refused, adds its receipt once the pipeline has written its part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_refused_in_the_pipeline_keeps_the_bridges_part() {
    let database = mtml_test_support::postgres::FreshDatabase::create("split_refused").await;
    let dir = tempfile::tempdir().unwrap();
    let [pipeline_grpc, bridge_grpc, terminals] = [(); 3].map(|()| mtml_test_support::free_port());
    let (pipeline_config, bridge_config) = split_configs(
        dir.path(),
        [pipeline_grpc, bridge_grpc, terminals],
        &database.url,
        // Both links present a trade token the other side knows.
        "chain_sample = 0\n[risk]\nmax_order_lots = 0.05\n[auth]\ntrade = [\"bridge:bridge-token-0123456789\"]\nread = [\"test:read-token-0123456789\"]\n[client]\ntoken = \"pipeline-token-0123456789\"\n",
        "chain_sample = 0\n[auth]\ntrade = [\"pipeline:pipeline-token-0123456789\"]\n[client]\ntoken = \"bridge-token-0123456789\"\n",
    );
    let (pipeline, _) = start("pipeline", &pipeline_config);
    let (bridge, _) = start("bridge", &bridge_config);
    let common::Streaming { terminal, stop, sent, last_time } = common::stream_sample(&format!("127.0.0.1:{terminals}"), "tok").await;
    let mut client = PredictionClient::connect(format!("http://127.0.0.1:{pipeline_grpc}")).await.unwrap();
    loop {
        let mut request = tonic::Request::new(PredictSymbolRequest { symbol: "EURUSD".into(), model: String::new() });
        request.metadata_mut().insert("authorization", "Bearer read-token-0123456789".parse().unwrap());
        match client.predict_symbol(request).await {
            Ok(response) if response.get_ref().feature_time_ms == last_time => break,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    stop.cancel();
    assert_eq!(terminal.await.unwrap().unwrap().ticks_sent as usize, sent);
    // The pipeline writes the refused chains every 500 ms; the bridge, stopping after that, adds
    // its part to each. (A pipeline stops after the bridges streaming to it: their streams hold
    // its gRPC server open.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    terminate(bridge);
    terminate(pipeline);

    let journal = mtml_journal::Journal::open_existing(&database.url).await.unwrap();
    let refused = journal.chains(0, false, 100_000, Some("rejected")).await.unwrap();
    assert!(!refused.is_empty(), "risk refused every order");
    for chain in &refused {
        let spans = journal.chain(&chain.chain_id).await.unwrap();
        let stages: Vec<(&str, &str)> = spans.iter().map(|s| (s.stage.as_str(), s.service.as_str())).collect();
        assert_eq!(stages.first(), Some(&("bridge_receive", "bridge")), "{}: {stages:?}", chain.chain_id);
        assert_eq!(stages.last().map(|s| s.0), Some("risk"), "{stages:?}");
    }
    // Nothing else of the bridge's: no sample, no order went out.
    assert_eq!(journal.chains(0, false, 100_000, None).await.unwrap().len(), refused.len());
    journal.close().await;
    database.drop_database().await;
}
