//! The bridge against misbehaving and concurrent terminals, over real TCP sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use mtml_simulator::{SimSymbol, SimTick, SimulatorConfig, run_simulator};
use support::{golden_frames, start_bridge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

fn ticks(symbol: &str, count: usize, start_ms: i64) -> Vec<SimTick> {
    (0..count)
        .map(|i| SimTick {
            symbol: symbol.into(),
            time_msc: start_ms + i as i64,
            bid: 1.1 + i as f64 * 1e-5,
            ask: 1.1001 + i as f64 * 1e-5,
        })
        .collect()
}

fn frame(body: &[u8]) -> Vec<u8> {
    [&(body.len() as u32).to_be_bytes()[..], body].concat()
}

/// Reads until the peer closes; returns what it sent. Fails the test if it stays open.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut all))
        .await
        .expect("the bridge closes the connection")
        .ok();
    all
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_never_served() {
    let bridge = start_bridge("right").await;
    let config = SimulatorConfig { token: "wrong".into(), ..SimulatorConfig::default() };
    let stream = TcpStream::connect(bridge.addr).await.unwrap();
    let report = run_simulator(stream, config, ticks("EURUSD", 10, 0), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.refused.as_deref(), Some("auth: wrong auth token"));
    assert_eq!(report.ticks_sent, 0);
    assert_eq!(bridge.bridge.stats().refused.load(Ordering::Relaxed), 1);
    assert_eq!(bridge.bridge.stats().ticks.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn an_incompatible_protocol_version_is_refused_with_both_versions_named() {
    let bridge = start_bridge("t").await;
    let config = SimulatorConfig { token: "t".into(), version: 1, ..SimulatorConfig::default() };
    let stream = TcpStream::connect(bridge.addr).await.unwrap();
    let report = run_simulator(stream, config, Vec::new(), CancellationToken::new()).await.unwrap();
    assert_eq!(
        report.refused.as_deref(),
        Some("version: protocol version 1 is not supported; this bridge speaks version 2")
    );
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let mut bridge = start_bridge("s3cret").await;
    // A well-behaved terminal streams while others send garbage.
    let good = SimulatorConfig { token: "s3cret".into(), ..SimulatorConfig::default() };
    let stop = CancellationToken::new();
    let stream = TcpStream::connect(bridge.addr).await.unwrap();
    let good_task = tokio::spawn(run_simulator(stream, good, ticks("EURUSD", 500, 1_000), stop.clone()));

    let frames = golden_frames();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("oversized length", vec![0x7f, 0xff, 0xff, 0xff, b'x']),
        ("not a frame at all", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("unknown type", frame(b"BOGUS\t1")),
        ("wrong field count", frame(b"HELLO\t1\t1")),
        ("empty frame", vec![0, 0, 0, 0]),
        ("tick before hello", frames["TICK"].frame.clone()),
        ("bad price after hello", [
            frames["HELLO"].frame.clone(),
            frames["SNAPSHOT_END"].frame.clone(),
            frame(b"TICK\t3\tEURUSD\t1399230051815\tNaN\t1.2"),
        ].concat()),
    ];
    for (i, (what, bytes)) in cases.iter().enumerate() {
        let mut bad = TcpStream::connect(bridge.addr).await.unwrap();
        bad.write_all(bytes).await.unwrap();
        read_until_closed(&mut bad).await;
        let errors = bridge.bridge.stats().protocol_errors.load(Ordering::Relaxed);
        assert_eq!(errors, i as u64 + 1, "{what}: counted as a protocol error");
    }
    let mut received = 0;
    while received < 500 {
        let tick = tokio::time::timeout(Duration::from_secs(5), bridge.ticks.recv()).await.unwrap().unwrap();
        assert_eq!(tick.seq, received as u64 + 5, "no tick of the good terminal lost or reordered: HELLO, SYMBOL, ACCOUNT and SNAPSHOT_END came first");
        received += 1;
    }
    stop.cancel();
    let report = good_task.await.unwrap().unwrap();
    assert_eq!(report.ticks_sent, 500);
    assert_eq!(bridge.bridge.stats().refused.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn several_terminals_stream_at_once_and_orders_reach_the_right_one() {
    let mut bridge = start_bridge("t").await;
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for (login, symbol, digits) in [(1, "EURUSD.r", 5), (2, "USDJPYm", 3)] {
        let config = SimulatorConfig {
            token: "t".into(),
            login,
            symbols: vec![SimSymbol { name: symbol.into(), digits }],
            ..SimulatorConfig::default()
        };
        let stream = TcpStream::connect(bridge.addr).await.unwrap();
        tasks.push(tokio::spawn(run_simulator(stream, config, ticks(symbol, 300, 0), stop.clone())));
    }
    let mut by_terminal = std::collections::HashMap::<String, Vec<u64>>::new();
    for _ in 0..600 {
        let tick = tokio::time::timeout(Duration::from_secs(5), bridge.ticks.recv()).await.unwrap().unwrap();
        let expected_symbol = if tick.terminal.starts_with("1@") { "EURUSD" } else { "USDJPY" };
        assert_eq!(tick.symbol.as_str(), expected_symbol);
        by_terminal.entry(tick.terminal.to_string()).or_default().push(tick.seq);
    }
    for seqs in by_terminal.values() {
        assert_eq!(seqs.len(), 300);
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "per-terminal order kept");
    }
    let chain_id = mtml_core::ChainIdGenerator::with_prefix(5).next_id();
    bridge.bridge.router().submit(mtml_core::OrderRequest {
        chain_id,
        client_order_id: "x-1".into(),
        account: None,
        symbol: mtml_core::Symbol::new("USDJPY"),
        side: mtml_core::Side::Sell,
        order_type: mtml_core::OrderType::Market,
        volume: 0.2,
        price: 0.0,
        decision_price: 0.0,
        origin_received_ns: 0,
        market_time_msc: 0,
    });
    let mut fills = 0;
    while fills == 0 {
        if let mtml_core::ExecutionEvent::Filled(fill) =
            tokio::time::timeout(Duration::from_secs(5), bridge.events.recv()).await.unwrap().unwrap()
        {
            assert_eq!(fill.symbol.as_str(), "USDJPY");
            assert_eq!(fill.chain_id, chain_id);
            fills += 1;
        }
    }
    stop.cancel();
    let reports: Vec<_> = futures_join(tasks).await;
    assert_eq!(reports[0].deals.len(), 0, "the EURUSD terminal got no USDJPY order");
    assert_eq!(reports[1].positions["USDJPYm"], -0.2);
}

#[tokio::test]
async fn an_order_for_a_symbol_no_terminal_trades_is_refused_with_a_reason() {
    let mut bridge = start_bridge("t").await;
    let chain_id = mtml_core::ChainIdGenerator::with_prefix(5).next_id();
    bridge.bridge.router().submit(mtml_core::OrderRequest {
        chain_id,
        client_order_id: "x-2".into(),
        account: None,
        symbol: mtml_core::Symbol::new("GBPUSD"),
        side: mtml_core::Side::Buy,
        order_type: mtml_core::OrderType::Market,
        volume: 0.1,
        price: 0.0,
        decision_price: 0.0,
        origin_received_ns: 0,
        market_time_msc: 0,
    });
    let event = bridge.events.recv().await.unwrap();
    let mtml_core::ExecutionEvent::Rejected { reason, retcode, .. } = event else { panic!("{event:?}") };
    assert_eq!((retcode, reason.as_str()), (0, "no terminal connected for symbol GBPUSD"));
}

async fn futures_join(
    tasks: Vec<tokio::task::JoinHandle<Result<mtml_simulator::SimulatorReport, mtml_simulator::SimulatorError>>>,
) -> Vec<mtml_simulator::SimulatorReport> {
    let mut reports = Vec::new();
    for task in tasks {
        reports.push(task.await.unwrap().unwrap());
    }
    reports
}

/// A guesser at the token: after three wrong tokens in a row from one address, each further
/// hello from it waits (counted) and is still refused; the right token is served and forgets
/// the address's failures.
#[tokio::test]
async fn repeated_wrong_tokens_from_one_address_are_slowed_down() {
    let bridge = start_bridge("right-token").await;
    // Each attempt ends once its ticks are in (a served terminal would otherwise stay on).
    let attempt = |token: &str| {
        let config = SimulatorConfig { token: token.into(), ..SimulatorConfig::default() };
        let (addr, stats) = (bridge.addr, bridge.bridge.stats());
        async move {
            let stop = CancellationToken::new();
            let before = stats.ticks.load(Ordering::Relaxed);
            let stream = TcpStream::connect(addr).await.unwrap();
            let run = tokio::spawn(run_simulator(stream, config, ticks("EURUSD", 3, 0), stop.clone()));
            while !run.is_finished() && stats.ticks.load(Ordering::Relaxed) < before + 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stop.cancel();
            run.await.unwrap().unwrap()
        }
    };
    let delayed = || bridge.bridge.stats().hellos_delayed.load(Ordering::Relaxed);
    for _ in 0..3 {
        assert_eq!(attempt("guess").await.refused.as_deref(), Some("auth: wrong auth token"));
    }
    assert_eq!(delayed(), 0, "the first three are answered at once");
    for n in 1..=2 {
        assert_eq!(attempt("guess").await.refused.as_deref(), Some("auth: wrong auth token"));
        assert_eq!(delayed(), n);
    }
    // The right token is still served (after its wait), and clears the address.
    let good = attempt("right-token").await;
    assert_eq!((good.refused, good.ticks_sent), (None, 3));
    assert_eq!(delayed(), 3);
    assert_eq!(attempt("guess").await.refused.as_deref(), Some("auth: wrong auth token"));
    assert_eq!(delayed(), 3, "forgotten after the good hello");
}

/// Connections beyond `max_connections` are closed at once and counted; the ones served go on.
#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let config = mtml_bridge::BridgeConfig { token: "t".into(), max_connections: 2, ..support::test_config() };
    let bridge = support::start_bridge_config(config, 1024).await;
    // Two connections that have not said hello yet hold both places.
    let held = [TcpStream::connect(bridge.addr).await.unwrap(), TcpStream::connect(bridge.addr).await.unwrap()];
    let start = std::time::Instant::now();
    while bridge.bridge.stats().connections.load(Ordering::Relaxed) < 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "the two were not accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut third = TcpStream::connect(bridge.addr).await.unwrap();
    assert!(read_until_closed(&mut third).await.is_empty(), "closed without a word");
    assert_eq!(bridge.bridge.stats().connections_refused.load(Ordering::Relaxed), 1);
    drop(held);
    // Once they are gone, a terminal is served again.
    let start = std::time::Instant::now();
    while bridge.bridge.stats().connected.load(Ordering::Relaxed) == 0 {
        let stream = TcpStream::connect(bridge.addr).await.unwrap();
        let config = SimulatorConfig { token: "t".into(), ..SimulatorConfig::default() };
        let stop = CancellationToken::new();
        let run = tokio::spawn(run_simulator(stream, config, ticks("EURUSD", 2, 0), stop.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        if bridge.bridge.stats().connected.load(Ordering::Relaxed) == 0 {
            stop.cancel();
            let _ = run.await;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no place freed");
    }
}

/// An account holding `max_orders_in_flight` pending orders gets the next one refused before it
/// leaves, with the limit named, and counted; the terminal never sees it.
#[tokio::test]
async fn orders_beyond_the_in_flight_limit_are_refused_with_the_limit_named() {
    let config = mtml_bridge::BridgeConfig { token: "t".into(), max_orders_in_flight: 3, ..support::test_config() };
    let mut bridge = support::start_bridge_config(config, 1024).await;
    let stop = CancellationToken::new();
    let stream = TcpStream::connect(bridge.addr).await.unwrap();
    let sim = SimulatorConfig { token: "t".into(), ..SimulatorConfig::default() };
    let terminal = tokio::spawn(run_simulator(stream, sim, ticks("EURUSD", 5, 0), stop.clone()));
    for _ in 0..5 {
        tokio::time::timeout(Duration::from_secs(5), bridge.ticks.recv()).await.unwrap().unwrap();
    }
    let generator = mtml_core::ChainIdGenerator::with_prefix(9);
    // Buy limits far below the market: acknowledged, then pending for good.
    for n in 0..4 {
        bridge.bridge.router().submit(mtml_core::OrderRequest {
            chain_id: generator.next_id(),
            client_order_id: format!("limit-{n}"),
            account: None,
            symbol: mtml_core::Symbol::new("EURUSD"),
            side: mtml_core::Side::Buy,
            order_type: mtml_core::OrderType::Limit,
            volume: 0.1,
            price: 0.9,
            decision_price: 0.0,
            origin_received_ns: 0,
            market_time_msc: 0,
        });
    }
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    while acked.len() + refused.len() < 4 {
        match tokio::time::timeout(Duration::from_secs(5), bridge.events.recv()).await.unwrap().unwrap() {
            mtml_core::ExecutionEvent::Acked { client_order_id, .. } => acked.push(client_order_id),
            mtml_core::ExecutionEvent::Rejected { client_order_id, reason, .. } => refused.push((client_order_id, reason)),
            mtml_core::ExecutionEvent::Filled(fill) => panic!("a limit far from the market filled: {fill:?}"),
            _ => {}
        }
    }
    assert_eq!(acked, ["limit-0", "limit-1", "limit-2"]);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, "limit-3");
    assert!(refused[0].1.contains("already has 3 orders unanswered or pending, the most bridge.max_orders_in_flight allows"), "{}", refused[0].1);
    let stats = bridge.bridge.stats();
    assert_eq!((stats.orders_refused_in_flight.load(Ordering::Relaxed), stats.orders_sent.load(Ordering::Relaxed)), (1, 3));
    stop.cancel();
    let report = terminal.await.unwrap().unwrap();
    assert_eq!(report.orders_received, 3, "the refused order never reached the terminal");
}
