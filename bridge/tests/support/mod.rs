//! Helpers shared by the bridge's integration tests.

#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use mtml_bridge::{Backpressure, Bridge, BridgeConfig, BridgeOutputs, SymbolMapper};
use mtml_core::{ChainLog, ExecutionEvent, Tick};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A golden frame from docs/protocol.md.
#[derive(Debug, Clone)]
pub struct Golden {
    pub name: String,
    pub body: Vec<u8>,
    pub frame: Vec<u8>,
}

/// Reads every golden frame block from docs/protocol.md.
pub fn golden_frames() -> BTreeMap<String, Golden> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .expect("docs/protocol.md");
    let mut frames = BTreeMap::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("```golden ") else { continue };
        let text = lines.next().and_then(|l| l.strip_prefix("text: ")).expect("text line");
        assert_eq!(lines.next(), Some("hex:"), "{name}: hex line");
        let mut frame = Vec::new();
        for hex_line in lines.by_ref().take_while(|l| !l.starts_with("```")) {
            for byte in hex_line.split_whitespace() {
                frame.push(u8::from_str_radix(byte, 16).expect("hex byte"));
            }
        }
        let body = text.replace("\\t", "\t").into_bytes();
        frames.insert(name.to_owned(), Golden { name: name.to_owned(), body, frame });
    }
    frames
}

/// A running bridge on an ephemeral port with its outputs.
pub struct TestBridge {
    pub addr: std::net::SocketAddr,
    pub bridge: Bridge,
    pub ticks: mpsc::Receiver<Tick>,
    pub events: mpsc::Receiver<ExecutionEvent>,
    pub chain_log: Arc<ChainLog>,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn start_bridge(token: &str) -> TestBridge {
    start_bridge_with(token, 100_000, Backpressure::Block).await
}

pub async fn start_bridge_with(token: &str, capacity: usize, backpressure: Backpressure) -> TestBridge {
    let config = BridgeConfig { token: token.into(), backpressure, ..test_config() };
    start_bridge_config(config, capacity).await
}

/// The tests' bridge settings: EURUSD and USDJPY.
pub fn test_config() -> BridgeConfig {
    BridgeConfig {
        symbols: SymbolMapper::new(vec!["EURUSD".into(), "USDJPY".into()], Default::default()),
        ..BridgeConfig::default()
    }
}

pub async fn start_bridge_config(config: BridgeConfig, capacity: usize) -> TestBridge {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (ticks_tx, ticks) = mpsc::channel(capacity);
    let (events_tx, events) = mpsc::channel(1024);
    let chain_log = Arc::new(ChainLog::default());
    let bridge = Bridge::new(config, BridgeOutputs { ticks: ticks_tx, events: events_tx }, chain_log.clone());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(bridge.clone().run(listener, shutdown.clone()));
    TestBridge { addr, bridge, ticks, events, chain_log, shutdown, task }
}
