//! The tick stream over real gRPC on real sockets: duplicates and out-of-order batches from a
//! raw client, and a forwarder whose connection is cut mid-stream by a proxy, reconnecting and
//! resending so that every tick reaches the pipeline exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use mtml_core::{ChainIdGenerator, Symbol, Tick};
use mtml_ingestion::grpc::{ForwardSettings, IngestionService, forward_ticks_with};
use mtml_proto::v1::TickBatch;
use mtml_proto::v1::ingestion_client::IngestionClient;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;

fn tick(seq: u64, symbol: &str) -> Tick {
    Tick {
        chain_id: ChainIdGenerator::with_prefix(seq + 1).next_id(),
        symbol: Symbol::new(symbol),
        time_msc: 1_400_000_000_000 + seq as i64,
        bid: 1.3,
        ask: 1.3001,
        seq,
        terminal: Arc::from("1001@Demo/1"),
        received_ns: 1,
    }
}

async fn serve(service: IngestionService) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

#[tokio::test]
async fn duplicates_are_dropped_and_counted_and_out_of_order_ticks_refused_by_name() {
    let (pipeline, mut received) = mpsc::channel(1024);
    let service = IngestionService::new(pipeline);
    let stats = service.stats();
    let addr = serve(service).await;
    let mut client = IngestionClient::connect(format!("http://{addr}")).await.unwrap();
    let batch = |id: u64, seqs: &[u64]| TickBatch { batch_id: id, ticks: seqs.iter().map(|&s| (&tick(s, "EURUSD")).into()).collect() };
    let mut bad = batch(5, &[8]);
    bad.ticks.push(mtml_proto::v1::Tick { chain_id: None, ..bad.ticks[0].clone() });
    let batches = vec![batch(1, &[1, 2, 3]), batch(2, &[2, 3, 4]), batch(3, &[6]), batch(4, &[5, 6, 7]), bad];
    let mut acks = client.stream_ticks(tokio_stream::iter(batches)).await.unwrap().into_inner();
    let mut all = Vec::new();
    while let Some(ack) = acks.next().await {
        all.push(ack.unwrap());
    }
    let summary: Vec<(u64, u32, u32, Vec<String>)> =
        all.iter().map(|a| (a.batch_id, a.accepted, a.duplicates, a.rejections.iter().map(|r| format!("{}:{}", r.seq, r.reason)).collect())).collect();
    assert_eq!(
        summary,
        vec![
            (1, 3, 0, vec![]),
            (2, 1, 2, vec![]),
            (3, 1, 0, vec![]),
            (4, 1, 1, vec!["5:out_of_order".to_owned()]),
            (5, 1, 0, vec!["8:invalid_tick".to_owned()]),
        ]
    );
    assert_eq!(all.last().unwrap().last_seq_by_terminal["1001@Demo/1"], 8);
    let mut seqs = Vec::new();
    while let Ok(t) = received.try_recv() {
        seqs.push(t.seq);
    }
    assert_eq!(seqs, [1, 2, 3, 4, 6, 7, 8], "each tick once, in the order accepted");
    assert_eq!(stats.duplicates.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(stats.rejected.lock().clone(), [("invalid_tick", 1), ("out_of_order", 1)].into_iter().collect());
}

/// A TCP proxy whose live connections can be cut (the listener stays up).
async fn proxy(target: std::net::SocketAddr) -> (std::net::SocketAddr, watch::Sender<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (cut, cuts) = watch::channel(0u64);
    tokio::spawn(async move {
        loop {
            let (mut inbound, _) = listener.accept().await.unwrap();
            let mut cuts = cuts.clone();
            cuts.mark_unchanged();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cuts.changed() => {}
                }
            });
        }
    });
    (addr, cut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_cut_off_mid_stream_reconnects_and_every_tick_arrives_exactly_once() {
    let (pipeline, mut received) = mpsc::channel(256);
    let service = IngestionService::new(pipeline);
    let stats = service.stats();
    let addr = serve(service).await;
    let (proxy_addr, cut) = proxy(addr).await;
    let (ticks_tx, ticks_rx) = mpsc::channel(1024);
    let settings = ForwardSettings { reconnect_min: Duration::from_millis(10), reconnect_max: Duration::from_millis(50), shutdown_grace: Duration::from_secs(10) };
    let forwarder = tokio::spawn(forward_ticks_with(tonic::transport::Endpoint::from_shared(format!("http://{proxy_addr}")).unwrap(), mtml_auth::Bearer::default(), ticks_rx, settings));
    const TOTAL: u64 = 60_000;
    let producer = tokio::spawn(async move {
        for seq in 1..=TOTAL {
            let symbol = if seq % 3 == 0 { "GBPUSD" } else { "EURUSD" };
            ticks_tx.send(tick(seq, symbol)).await.unwrap();
        }
    });
    let mut seqs = Vec::with_capacity(TOTAL as usize);
    let mut cuts = 0;
    while seqs.len() < TOTAL as usize {
        let t = tokio::time::timeout(Duration::from_secs(30), received.recv()).await.expect("ticks keep coming").unwrap();
        seqs.push(t.seq);
        // Three cuts, while batches are in flight.
        if seqs.len() % 15_000 == 0 && cuts < 3 {
            cuts += 1;
            cut.send_modify(|n| *n += 1);
        }
    }
    producer.await.unwrap();
    let forwarded = forwarder.await.unwrap().unwrap();
    assert_eq!(seqs, (1..=TOTAL).collect::<Vec<_>>(), "every tick exactly once, in order");
    assert!(forwarded.connections >= 2, "it reconnected: {forwarded:?}");
    assert!(forwarded.resent_batches > 0, "batches without an ack were sent again: {forwarded:?}");
    // A tick whose ack was lost is accepted once and acked later as a duplicate of its resend.
    assert_eq!(forwarded.accepted + forwarded.duplicates, TOTAL, "{forwarded:?}");
    assert_eq!(stats.accepted.load(std::sync::atomic::Ordering::Relaxed), TOTAL);
    let duplicates = stats.duplicates.load(std::sync::atomic::Ordering::Relaxed);
    assert!(duplicates >= forwarded.duplicates, "the acks count what the service dropped ({duplicates} dropped)");
    assert!(received.try_recv().is_err(), "nothing after the last tick");
}
