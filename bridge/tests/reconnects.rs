//! Connections that die, come back, or push too hard: what the bridge guarantees across them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use mtml_bridge::Backpressure;
use mtml_simulator::{ConnectionEnd, Fault, SimSymbol, SimTick, SimulatorConfig, TerminalSimulator};
use mtml_core::{ChainIdGenerator, ExecutionEvent, OrderRequest, OrderType, Side, Symbol, Tick};
use support::{TestBridge, start_bridge, start_bridge_with};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Ticks three to a millisecond, so that resuming by "last time + 1 ms" would lose some.
fn ticks(count: usize) -> Vec<SimTick> {
    (0..count)
        .map(|i| SimTick {
            symbol: "EURUSDm".into(),
            time_msc: 1_399_230_000_000 + (i / 3) as i64,
            // Exact decimal prices, as the wire carries them.
            bid: f64::from(130_000 + i as u32) / 100_000.0,
            ask: f64::from(130_010 + i as u32) / 100_000.0,
        })
        .collect()
}

fn config() -> SimulatorConfig {
    SimulatorConfig {
        token: "t".into(),
        symbols: vec![SimSymbol { name: "EURUSDm".into(), digits: 5 }],
        ..SimulatorConfig::default()
    }
}

/// Connects `terminal` to the bridge and serves the connection in a task; cancel the token to
/// end it, then await the task to get the terminal back.
async fn spawn_terminal(
    bridge: &TestBridge,
    mut terminal: TerminalSimulator,
    fault: Fault,
) -> (tokio::task::JoinHandle<TerminalSimulator>, CancellationToken) {
    let stream = TcpStream::connect(bridge.addr).await.unwrap();
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    let task = tokio::spawn(async move {
        terminal.connect(stream, fault, &stop).await.unwrap();
        terminal
    });
    (task, stopper)
}

async fn next_tick(bridge: &mut TestBridge) -> Tick {
    tokio::time::timeout(Duration::from_secs(5), bridge.ticks.recv()).await.expect("a tick in time").unwrap()
}

/// The next event about an order (the books and money each handshake reports are skipped).
async fn next_event(bridge: &mut TestBridge) -> ExecutionEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), bridge.events.recv())
            .await
            .expect("an event in time")
            .unwrap();
        if !matches!(event, ExecutionEvent::TerminalPositions { .. } | ExecutionEvent::Account { .. }) {
            return event;
        }
    }
}

/// What the next books the bridge hands execution (a handshake's snapshot or a SYNC's answer) say
/// about a buy of `volume` lots of EURUSD whose outcome is unknown: the events execution settles it
/// with (`mtml_core::reconcile::settle`, as `Execution::settlement` calls it).
async fn settled_by_next_books(bridge: &mut TestBridge, client_order_id: &str, volume: f64) -> Vec<ExecutionEvent> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), bridge.events.recv()).await.expect("books in time").unwrap();
        if let ExecutionEvent::TerminalPositions { evidence, symbols, .. } = event {
            assert!(symbols.contains(&Symbol::new("EURUSD")), "the account's symbols come with its books");
            let unknown = mtml_core::reconcile::UnsettledOrder {
                chain_id: ChainIdGenerator::with_prefix(9).next_id(),
                client_order_id: client_order_id.into(),
                symbol: Symbol::new("EURUSD"),
                side: Side::Buy,
                volume,
                filled: 0.0,
            };
            return mtml_core::reconcile::settle(&unknown, &evidence).events;
        }
    }
}

fn order(client_order_id: &str, volume: f64) -> OrderRequest {
    OrderRequest {
        chain_id: ChainIdGenerator::with_prefix(9).next_id(),
        client_order_id: client_order_id.into(),
        account: Some("5000001@mtml-sim".into()),
        symbol: Symbol::new("EURUSD"),
        side: Side::Buy,
        order_type: OrderType::Market,
        volume,
        price: 0.0,
        decision_price: 1.3,
        origin_received_ns: 0,
        market_time_msc: 0,
    }
}

#[tokio::test]
async fn a_reconnect_mid_stream_loses_no_tick_and_sends_none_twice() {
    let mut bridge = start_bridge("t").await;
    let all = ticks(1_000);
    let mut terminal = TerminalSimulator::new(config(), all.clone());
    let stop = CancellationToken::new();
    // The first connection dies in the middle of the 401st tick's frame.
    let first = TcpStream::connect(bridge.addr).await.unwrap();
    let end = terminal.connect(first, Fault::DieAfterTicks(400), &stop).await.unwrap();
    assert_eq!(end, ConnectionEnd::Faulted);
    let mut received = Vec::new();
    for _ in 0..400 {
        received.push(next_tick(&mut bridge).await);
    }
    // The EA reconnects; the bridge says where the stream stopped; the EA resumes right after.
    let second = TcpStream::connect(bridge.addr).await.unwrap();
    let resumed = tokio::spawn(async move {
        let end = terminal.connect(second, Fault::None, &stop).await;
        (terminal, end)
    });
    for _ in 400..1_000 {
        received.push(next_tick(&mut bridge).await);
    }
    let got: Vec<(i64, f64)> = received.iter().map(|t| (t.time_msc, t.bid)).collect();
    let want: Vec<(i64, f64)> = all.iter().map(|t| (t.time_msc, t.bid)).collect();
    let first_difference = got.iter().zip(&want).position(|(g, w)| g != w);
    assert!(got == want, "every tick exactly once, in order; first difference at {first_difference:?}");
    assert_ne!(received[399].terminal, received[400].terminal, "two connections, two sources");
    assert_eq!(received[400].seq, 5, "the new connection's sequence restarts after its handshake (HELLO, SYMBOL, ACCOUNT, SNAPSHOT_END)");
    assert!(tokio::time::timeout(Duration::from_millis(200), bridge.ticks.recv()).await.is_err(), "nothing more");
    resumed.abort();
    assert_eq!(bridge.bridge.stats().protocol_errors.load(Ordering::Relaxed), 1, "the cut frame is logged");
}

#[tokio::test]
async fn an_order_whose_answer_is_lost_is_settled_from_the_next_snapshot_not_resent() {
    let mut bridge = start_bridge("t").await;
    let mut terminal = TerminalSimulator::new(config(), ticks(30));
    let stop = CancellationToken::new();
    stop.cancel(); // Stream the ticks, then end the connection at the next message.
    let first = TcpStream::connect(bridge.addr).await.unwrap();
    let stop_first = CancellationToken::new();
    let router = bridge.bridge.router();
    let task = tokio::spawn(async move {
        let end = terminal.connect(first, Fault::DieOnOrder, &stop_first).await.unwrap();
        (terminal, end)
    });
    for _ in 0..30 {
        next_tick(&mut bridge).await;
    }
    router.submit(order("lost-1", 0.1));
    let (mut terminal, end) = task.await.unwrap();
    assert_eq!(end, ConnectionEnd::Faulted, "the terminal executed the order and vanished");
    assert_eq!(terminal.report().deals.len(), 1);
    // Execution is told the outcome is unknown; nothing is resent and nothing more is decided
    // while no terminal is connected.
    let ExecutionEvent::OutcomeUnknown { client_order_id, .. } = next_event(&mut bridge).await else {
        panic!("the lost answer is announced")
    };
    assert_eq!(client_order_id, "lost-1");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(bridge.events.try_recv().is_err(), "nothing while disconnected");
    assert_eq!(bridge.bridge.orders_in_flight("5000001@mtml-sim"), 1);

    let second = TcpStream::connect(bridge.addr).await.unwrap();
    let stop_second = CancellationToken::new();
    let stopper = stop_second.clone();
    let task = tokio::spawn(async move {
        terminal.connect(second, Fault::None, &stop_second).await.unwrap();
        terminal
    });
    let settled = settled_by_next_books(&mut bridge, "lost-1", 0.1).await;
    let [ExecutionEvent::Filled(fill)] = settled.as_slice() else { panic!("a fill: {settled:?}") };
    assert_eq!(fill.client_order_id, "lost-1");
    assert!((fill.volume - 0.1).abs() < 1e-9);
    assert_eq!(fill.symbol, Symbol::new("EURUSD"));
    stopper.cancel();
    let terminal = task.await.unwrap();
    assert_eq!(terminal.report().orders_received, 1, "never resent");
    assert_eq!(terminal.report().deals.len(), 1, "executed once");
    assert_eq!(bridge.bridge.stats().orders_settled_from_snapshot.load(Ordering::Relaxed), 1);
    assert_eq!(bridge.bridge.orders_in_flight("5000001@mtml-sim"), 0);
    assert!(
        std::iter::from_fn(|| bridge.events.try_recv().ok())
            .all(|e| matches!(e, ExecutionEvent::TerminalPositions { .. } | ExecutionEvent::Account { .. })),
        "no second fill"
    );
}

#[tokio::test]
async fn orders_are_fitted_to_the_symbol_or_refused_before_they_leave() {
    let mut bridge = start_bridge("t").await;
    let terminal = TerminalSimulator::new(config(), ticks(10));
    let (task, stopper) = spawn_terminal(&bridge, terminal, Fault::None).await;
    for _ in 0..10 {
        next_tick(&mut bridge).await;
    }
    let router = bridge.bridge.router();
    router.submit(order("too-big", 150.0));
    let ExecutionEvent::Rejected { reason, retcode, .. } = next_event(&mut bridge).await else { panic!() };
    assert_eq!((retcode, reason.as_str()), (0, "volume 150 exceeds the maximum 100.00 of EURUSDm"));
    router.submit(order("odd-size", 0.019));
    let ExecutionEvent::Acked { volume, .. } = next_event(&mut bridge).await else { panic!() };
    assert!((volume - 0.01).abs() < 1e-12, "rounded down to the volume step");
    let ExecutionEvent::Filled(fill) = next_event(&mut bridge).await else { panic!() };
    assert!((fill.volume - 0.01).abs() < 1e-12);
    let mut other_account = order("elsewhere", 0.1);
    other_account.account = Some("42@other".into());
    router.submit(other_account);
    let ExecutionEvent::Rejected { reason, .. } = next_event(&mut bridge).await else { panic!() };
    assert_eq!(reason, "no terminal of account 42@other connected for symbol EURUSD");
    stopper.cancel();
    let terminal = task.await.unwrap();
    assert_eq!(terminal.report().orders_received, 1, "only the fitted order reached the terminal");
    assert_eq!(bridge.bridge.stats().orders_refused.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_new_connection_of_the_same_account_replaces_a_half_open_one() {
    let mut bridge = start_bridge("t").await;
    let stop = CancellationToken::new();
    let mut old = TerminalSimulator::new(config(), ticks(5));
    let stream = TcpStream::connect(bridge.addr).await.unwrap();
    let old_stop = stop.clone();
    let old_task = tokio::spawn(async move { old.connect(stream, Fault::None, &old_stop).await.unwrap() });
    for _ in 0..5 {
        next_tick(&mut bridge).await;
    }
    // The EA reloads: the old socket stays open, a new one says hello for the same account.
    let mut new = TerminalSimulator::new(config(), ticks(8));
    let stream = TcpStream::connect(bridge.addr).await.unwrap();
    let new_stop = stop.clone();
    let new_task = tokio::spawn(async move { new.connect(stream, Fault::None, &new_stop).await.unwrap() });
    let old_end = tokio::time::timeout(Duration::from_secs(5), old_task).await.unwrap().unwrap();
    assert_eq!(old_end, ConnectionEnd::ClosedByBridge);
    // The new connection resumes after the 5 ticks the bridge has: 3 more arrive.
    for _ in 0..3 {
        let tick = next_tick(&mut bridge).await;
        assert!(tick.terminal.ends_with("/s2"));
    }
    assert_eq!(bridge.bridge.stats().taken_over.load(Ordering::Relaxed), 1);
    stop.cancel();
    new_task.await.unwrap();
}

#[tokio::test]
async fn dropping_under_backpressure_is_opt_in_and_counted() {
    // Nobody reads the pipeline's inbox of 10.
    let bridge = start_bridge_with("t", 10, Backpressure::DropNewest).await;
    let terminal = TerminalSimulator::new(config(), ticks(1_000));
    let (task, stopper) = spawn_terminal(&bridge, terminal, Fault::None).await;
    let stats = bridge.bridge.stats();
    tokio::time::timeout(Duration::from_secs(5), async {
        while stats.ticks.load(Ordering::Relaxed) + stats.ticks_dropped.load(Ordering::Relaxed) < 1_000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    stopper.cancel();
    task.await.unwrap();
    assert_eq!(stats.ticks.load(Ordering::Relaxed), 10);
    assert_eq!(stats.ticks_dropped.load(Ordering::Relaxed), 990);
}

#[tokio::test]
async fn a_sequence_gap_is_backfilled_with_resend_and_ticks_stay_in_order() {
    let mut bridge = start_bridge("t").await;
    let all = ticks(300);
    let terminal = TerminalSimulator::new(config(), all.clone());
    let (task, stopper) = spawn_terminal(&bridge, terminal, Fault::WithholdTick(100)).await;
    let mut received = Vec::new();
    for _ in 0..300 {
        received.push(next_tick(&mut bridge).await);
    }
    let got: Vec<(i64, f64)> = received.iter().map(|t| (t.time_msc, t.bid)).collect();
    let want: Vec<(i64, f64)> = all.iter().map(|t| (t.time_msc, t.bid)).collect();
    assert!(got == want, "the withheld tick arrived through RESEND, in its place");
    assert!(received.windows(2).all(|w| w[1].seq == w[0].seq + 1), "sequence order kept");
    stopper.cancel();
    let terminal = task.await.unwrap();
    assert_eq!(terminal.report().resend_requests, 1);
    let stats = bridge.bridge.stats();
    assert_eq!(stats.sequence_gaps.load(Ordering::Relaxed), 1);
    assert_eq!(stats.messages_lost.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn partial_fills_are_reported_one_by_one_and_settle_the_order_at_its_volume() {
    let mut bridge = start_bridge("t").await;
    let config = SimulatorConfig { max_fill_volume: Some(0.1), ..config() };
    let terminal = TerminalSimulator::new(config, ticks(5));
    let (task, stopper) = spawn_terminal(&bridge, terminal, Fault::None).await;
    for _ in 0..5 {
        next_tick(&mut bridge).await;
    }
    bridge.bridge.router().submit(order("big-1", 0.25));
    let ExecutionEvent::Acked { volume, .. } = next_event(&mut bridge).await else { panic!() };
    assert!((volume - 0.25).abs() < 1e-12);
    let mut filled = Vec::new();
    for _ in 0..3 {
        let ExecutionEvent::Filled(fill) = next_event(&mut bridge).await else { panic!() };
        filled.push((fill.volume * 100.0).round() / 100.0);
    }
    assert_eq!(filled, [0.1, 0.1, 0.05]);
    assert_eq!(bridge.bridge.orders_in_flight("5000001@mtml-sim"), 0, "settled at its full volume");
    stopper.cancel();
    let terminal = task.await.unwrap();
    assert_eq!(terminal.report().deals.len(), 3);
}

/// An order the terminal executes but never answers, on a connection that stays up: after the
/// order timeout its outcome is declared unknown, the bridge asks for the books (SYNC), and the
/// deal in them settles it. It is never sent again.
#[tokio::test]
async fn an_unanswered_order_times_out_and_is_settled_from_the_books() {
    let config = mtml_bridge::BridgeConfig {
        token: "t".into(),
        heartbeat_interval: Duration::from_millis(50),
        order_timeout: Duration::from_millis(200),
        ..support::test_config()
    };
    let mut bridge = support::start_bridge_config(config, 1024).await;
    let terminal = TerminalSimulator::new(self::config(), ticks(30));
    let (task, stopper) = spawn_terminal(&bridge, terminal, Fault::SilentOnOrder).await;
    for _ in 0..30 {
        next_tick(&mut bridge).await;
    }
    bridge.bridge.router().submit(order("silent-1", 0.1));
    let ExecutionEvent::OutcomeUnknown { client_order_id, .. } = next_event(&mut bridge).await else {
        panic!("the timeout is announced")
    };
    assert_eq!(client_order_id, "silent-1");
    let settled = settled_by_next_books(&mut bridge, "silent-1", 0.1).await;
    let [ExecutionEvent::Filled(fill)] = settled.as_slice() else { panic!("settled by the books' deal: {settled:?}") };
    assert_eq!((fill.client_order_id.as_str(), fill.volume), ("silent-1", 0.1));
    let stats = bridge.bridge.stats();
    assert_eq!(stats.orders_timed_out.load(Ordering::Relaxed), 1);
    assert_eq!(stats.syncs_completed.load(Ordering::Relaxed), 1);
    assert_eq!(bridge.bridge.orders_in_flight("5000001@mtml-sim"), 0);
    stopper.cancel();
    let terminal = task.await.unwrap();
    assert_eq!(terminal.report().orders_received, 1, "never resent");
    assert_eq!(terminal.report().syncs_answered, 1);
    assert_eq!(terminal.report().deals.len(), 1);
}

/// A terminal that stops talking (here: the simulator once it has streamed everything, as it
/// sends no heartbeats of its own) is disconnected once it has been silent past the timeout,
/// and not before: checked in paused time, so the test takes no wall-clock time.
#[tokio::test(start_paused = true)]
async fn a_terminal_silent_past_the_timeout_is_disconnected() {
    let silence_timeout = Duration::from_secs(30);
    let bridge_config = mtml_bridge::BridgeConfig {
        token: "t".into(),
        silence_timeout,
        heartbeat_interval: Duration::from_secs(5),
        reconcile_every: Duration::ZERO,
        ..support::test_config()
    };
    let mut bridge = support::start_bridge_config(bridge_config, 1_000).await;
    let mut terminal = TerminalSimulator::new(config(), ticks(5));
    let stream = TcpStream::connect(bridge.addr).await.unwrap();
    let stop = CancellationToken::new();
    let serving = tokio::spawn(async move { terminal.connect(stream, Fault::None, &stop).await.unwrap() });
    for _ in 0..5 {
        next_tick(&mut bridge).await;
    }
    let last_tick = tokio::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(600), serving).await.expect("closed within ten (virtual) minutes").unwrap();
    let silent_for = last_tick.elapsed();
    assert_eq!(end, ConnectionEnd::ClosedByBridge);
    assert!(silent_for > silence_timeout, "closed after {silent_for:?} of silence");
    assert!(silent_for <= silence_timeout + Duration::from_secs(5), "closed at the first heartbeat past the timeout, not {silent_for:?}");
    let stats = bridge.bridge.stats();
    assert_eq!(stats.silent_closed.load(Ordering::Relaxed), 1);
    assert_eq!(stats.protocol_errors.load(Ordering::Relaxed), 0);
}
