//! The golden frames of docs/protocol.md, checked against the codec, the bridge and the terminal
//! simulator: all three must produce and accept exactly those bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use mtml_bridge::wire::{Envelope, Message, Px, WireSide, WireTick};
use mtml_simulator::{SimSymbol, SimTick, SimulatorConfig, run_simulator};
use mtml_core::{ChainId, OrderRequest, OrderType, Side, Symbol};
use support::{golden_frames, start_bridge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const ALL_TYPES: [&str; 23] = [
    "HELLO", "WELCOME", "REFUSED", "SYMBOL", "POSITION", "PENDING", "DEAL", "ACCOUNT",
    "SNAPSHOT_END", "RESUME", "START", "TICK", "BAR", "ORDER", "MODIFY", "CLOSE", "CANCEL", "ACK",
    "REJECT", "FILL", "RESEND", "SYNC", "HEARTBEAT",
];

#[test]
fn every_message_type_has_a_golden_frame_that_round_trips() {
    let frames = golden_frames();
    let names: Vec<&str> = frames.keys().map(String::as_str).collect();
    let mut expected = ALL_TYPES.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for golden in frames.values() {
        let len = u32::from_be_bytes(golden.frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, golden.body.len(), "{}: length prefix", golden.name);
        assert_eq!(&golden.frame[4..], golden.body.as_slice(), "{}: hex matches text", golden.name);
        let envelope = Envelope::decode(&golden.body)
            .unwrap_or_else(|e| panic!("{}: does not decode: {e}", golden.name));
        assert_eq!(envelope.message.type_name(), golden.name);
        assert_eq!(envelope.encode(), golden.body, "{}: re-encodes to the same bytes", golden.name);
    }
}

#[test]
fn golden_tick_decodes_to_the_documented_fields() {
    let frames = golden_frames();
    let tick = Envelope::decode(&frames["TICK"].body).unwrap();
    assert_eq!(tick.seq, 5);
    assert_eq!(
        tick.message,
        Message::Tick(WireTick {
            symbol: "EURUSDm".into(),
            time_msc: 1_399_230_051_815,
            bid: Px::new(1.387, 5),
            ask: Px::new(1.3879, 5),
        })
    );
    let Message::Fill(fill) = Envelope::decode(&frames["FILL"].body).unwrap().message else {
        panic!("FILL")
    };
    assert_eq!(fill.side, WireSide::Buy);
    assert_eq!(fill.chain_id.parse::<ChainId>().unwrap().to_string(), fill.chain_id);
}

/// Replaces the sequence field (second field) of a body, so frames from a conversation can be
/// compared with golden frames numbered differently.
fn with_seq(body: &[u8], seq: u64) -> Vec<u8> {
    let text = std::str::from_utf8(body).unwrap();
    let mut fields: Vec<String> = text.split('\t').map(str::to_owned).collect();
    fields[1] = seq.to_string();
    fields.join("\t").into_bytes()
}

fn seq_of(body: &[u8]) -> u64 {
    std::str::from_utf8(body).unwrap().split('\t').nth(1).unwrap().parse().unwrap()
}

async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut header)).await.unwrap().unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).await.unwrap();
    body
}

#[tokio::test]
async fn the_bridge_speaks_the_golden_frames() {
    let frames = golden_frames();
    let mut bridge = start_bridge("s3cret").await;
    let mut ea = TcpStream::connect(bridge.addr).await.unwrap();
    // The EA side, byte for byte from the document.
    ea.write_all(&frames["HELLO"].frame).await.unwrap();
    assert_eq!(read_frame(&mut ea).await, frames["WELCOME"].body, "WELCOME");
    for name in ["SYMBOL", "POSITION", "SNAPSHOT_END"] {
        ea.write_all(&frames[name].frame).await.unwrap();
    }
    assert_eq!(read_frame(&mut ea).await, frames["START"].body, "START: a new account has nothing to resume");
    ea.write_all(&frames["TICK"].frame).await.unwrap();
    let tick = tokio::time::timeout(Duration::from_secs(5), bridge.ticks.recv()).await.unwrap().unwrap();
    assert_eq!(tick.symbol, Symbol::new("EURUSD"), "broker suffix mapped away");
    assert_eq!((tick.bid, tick.ask, tick.seq), (1.387, 1.3879, 5));
    assert_eq!(&*tick.terminal, "5000001@MetaQuotes-Demo/s1");

    let chain_id: ChainId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
    bridge.bridge.router().submit(OrderRequest {
        chain_id,
        client_order_id: "m1a2b-7".into(),
        account: None,
        symbol: Symbol::new("EURUSD"),
        side: Side::Buy,
        order_type: OrderType::Market,
        volume: 0.1,
        price: 0.0,
        decision_price: 1.3879,
        origin_received_ns: tick.received_ns,
        market_time_msc: tick.time_msc,
    });
    assert_eq!(read_frame(&mut ea).await, frames["ORDER"].body, "ORDER");
    // ACK (6), a REJECT of an order this bridge never sent (7: logged, ignored), FILL (8).
    for name in ["ACK", "REJECT", "FILL"] {
        ea.write_all(&frames[name].frame).await.unwrap();
    }
    // The snapshot's POSITION came to execution first, for reconciliation.
    let reconcile = bridge.events.recv().await.unwrap();
    let mtml_core::ExecutionEvent::TerminalPositions { account, positions, .. } = reconcile else { panic!("{reconcile:?}") };
    assert_eq!(&*account, "5000001@MetaQuotes-Demo");
    assert_eq!(positions, [(Symbol::new("EURUSD"), 0.1, 1.387)]);
    let ack = bridge.events.recv().await.unwrap();
    assert_eq!(ack.chain_id(), Some(chain_id));
    let fill = bridge.events.recv().await.unwrap();
    let mtml_core::ExecutionEvent::Filled(fill) = fill else { panic!("{fill:?}") };
    assert_eq!((fill.chain_id, fill.volume, fill.price), (chain_id, 0.1, 1.3879));
    assert_eq!(fill.symbol, Symbol::new("EURUSD"));
    // A heartbeat (9) and the account's money after it (10), for the margin check.
    for name in ["HEARTBEAT", "ACCOUNT"] {
        ea.write_all(&frames[name].frame).await.unwrap();
    }
    let account = bridge.events.recv().await.unwrap();
    let mtml_core::ExecutionEvent::Account { account, leverage, free_margin, .. } = account else { panic!("{account:?}") };
    assert_eq!((&*account, leverage, free_margin), ("5000001@MetaQuotes-Demo", 100, 9973.62));
    assert_eq!(bridge.bridge.stats().orders_sent.load(Ordering::Relaxed), 1);
    assert_eq!(bridge.bridge.stats().sequence_gaps.load(Ordering::Relaxed), 0);
    // The order's chain now holds the tick-side and fill-side spans.
    let stages: Vec<_> = bridge.chain_log.chain(chain_id).unwrap().iter().map(|s| s.stage).collect();
    assert_eq!(stages, [mtml_core::Stage::BridgeSend, mtml_core::Stage::Fill]);
    bridge.shutdown.cancel();
    bridge.task.await.unwrap();
}

#[tokio::test]
async fn the_simulator_speaks_the_golden_frames() {
    let frames = golden_frames();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let config = SimulatorConfig {
        token: "s3cret".into(),
        symbols: vec![SimSymbol { name: "EURUSDm".into(), digits: 5 }],
        ..SimulatorConfig::default()
    };
    let ticks = vec![SimTick { symbol: "EURUSDm".into(), time_msc: 1_399_230_051_815, bid: 1.387, ask: 1.3879 }];
    let sim = tokio::spawn(run_simulator(TcpStream::connect(addr).await.unwrap(), config, ticks, stop.clone()));
    let (mut terminal, _) = listener.accept().await.unwrap();

    let hello = read_frame(&mut terminal).await;
    assert!(matches!(Envelope::decode(&hello).unwrap().message, Message::Hello(_)));
    terminal.write_all(&frames["WELCOME"].frame).await.unwrap();
    let symbol = read_frame(&mut terminal).await;
    let Message::Symbol(spec) = Envelope::decode(&symbol).unwrap().message else { panic!() };
    assert_eq!((spec.name.as_str(), spec.digits), ("EURUSDm", 5));
    let account = Envelope::decode(&read_frame(&mut terminal).await).unwrap();
    assert_eq!(account.seq, 3);
    let Message::Account(money) = account.message else { panic!("ACCOUNT before SNAPSHOT_END: {account:?}") };
    assert_eq!((money.balance, money.free_margin), (Px::new(10_000.0, 2), Px::new(10_000.0, 2)), "flat: no margin in use");
    assert_eq!(read_frame(&mut terminal).await, frames["SNAPSHOT_END"].body);
    terminal.write_all(&frames["START"].frame).await.unwrap();
    let tick = read_frame(&mut terminal).await;
    assert_eq!(with_seq(&tick, 5), frames["TICK"].body, "TICK formatted as the EA formats it");

    terminal.write_all(&frames["ORDER"].frame).await.unwrap();
    let ack = read_frame(&mut terminal).await;
    assert_eq!(with_seq(&ack, 6), frames["ACK"].body, "ACK");
    let fill = read_frame(&mut terminal).await;
    assert_eq!(with_seq(&fill, 8), frames["FILL"].body, "FILL");
    assert_eq!(seq_of(&fill), seq_of(&ack) + 1, "sequence numbers increase by one");

    // The same client order id again is acknowledged with the same ticket, not executed again.
    terminal.write_all(&frames["ORDER"].frame).await.unwrap();
    let again = read_frame(&mut terminal).await;
    assert_eq!(with_seq(&again, 6), frames["ACK"].body, "duplicate order answered with the original ACK");
    // Asked for its books while streaming, it sends them as in the snapshot: the position the
    // order opened, its deal, the account (margin in use at 1:100), SNAPSHOT_END.
    terminal.write_all(&frames["SYNC"].frame).await.unwrap();
    let mut books = Vec::new();
    loop {
        let message = Envelope::decode(&read_frame(&mut terminal).await).unwrap().message;
        if message == Message::SnapshotEnd {
            break;
        }
        books.push(message);
    }
    let [Message::Position(position), Message::Deal(deal), Message::Account(money)] = books.as_slice() else {
        panic!("{books:?}")
    };
    assert_eq!((position.client_order_id.as_str(), deal.client_order_id.as_str()), ("m1a2b-7", "m1a2b-7"));
    assert_eq!(money.margin, Px::new(138.79, 2));
    assert_eq!(money.free_margin, Px::new(10_000.0 - 138.79, 2));
    stop.cancel();
    let report = sim.await.unwrap().unwrap();
    assert_eq!(report.syncs_answered, 1);
    assert_eq!(report.orders_received, 2);
    assert_eq!(report.duplicate_orders, 1);
    assert_eq!(report.deals.len(), 1, "executed once");
}

/// Periodic reconciliation: the bridge asks a streaming terminal for its books (SYNC), and the
/// answer, arriving between ticks, reaches execution as a snapshot's books do. Books nobody asked
/// for are a protocol violation.
#[tokio::test]
async fn the_bridge_asks_for_the_books_and_reconciles_against_the_answer() {
    let frames = golden_frames();
    let config = mtml_bridge::BridgeConfig {
        token: "s3cret".into(),
        reconcile_every: Duration::from_millis(100),
        ..support::test_config()
    };
    let mut bridge = support::start_bridge_config(config, 1024).await;
    let mut ea = TcpStream::connect(bridge.addr).await.unwrap();
    ea.write_all(&frames["HELLO"].frame).await.unwrap();
    assert_eq!(read_frame(&mut ea).await, frames["WELCOME"].body);
    for name in ["SYMBOL", "POSITION", "SNAPSHOT_END"] {
        ea.write_all(&frames[name].frame).await.unwrap();
    }
    assert_eq!(read_frame(&mut ea).await, frames["START"].body);
    let connect = bridge.events.recv().await.unwrap();
    assert!(matches!(connect, mtml_core::ExecutionEvent::TerminalPositions { .. }), "{connect:?}");
    assert_eq!(read_frame(&mut ea).await, with_seq(&frames["SYNC"].body, 3), "SYNC after the period");

    // The answer: a tick in between, then the books with a position opened by hand since.
    let send = |seq: u64, message: Message| {
        let body = Envelope { seq, message }.encode();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame
    };
    ea.write_all(&frames["TICK"].frame).await.unwrap();
    let by_hand = mtml_bridge::wire::Position {
        ticket: 555,
        symbol: "EURUSDm".into(),
        side: WireSide::Sell,
        volume: Px::new(0.3, 2),
        price: Px::new(1.388, 5),
        client_order_id: String::new(),
    };
    ea.write_all(&send(6, Message::Position(by_hand))).await.unwrap();
    ea.write_all(&with_frame(&with_seq(&frames["ACCOUNT"].body, 7))).await.unwrap();
    ea.write_all(&send(8, Message::SnapshotEnd)).await.unwrap();
    // The money goes on at once; the positions once the books are complete.
    let money = bridge.events.recv().await.unwrap();
    assert!(matches!(money, mtml_core::ExecutionEvent::Account { free_margin, .. } if free_margin == 9973.62), "{money:?}");
    let books = bridge.events.recv().await.unwrap();
    let mtml_core::ExecutionEvent::TerminalPositions { positions, .. } = books else { panic!("{books:?}") };
    assert_eq!(positions, [(Symbol::new("EURUSD"), -0.3, 1.388)], "the position opened by hand is seen");
    let tick = bridge.ticks.recv().await.unwrap();
    assert_eq!(tick.seq, 5, "ticks flow while the books are answered");
    let stats = bridge.bridge.stats();
    assert_eq!(stats.syncs_completed.load(Ordering::Relaxed), 1);
    assert!(stats.syncs_sent.load(Ordering::Relaxed) >= 1);

    // Wait for the next SYNC, then send books that were not asked for after answering it.
    loop {
        let body = read_frame(&mut ea).await;
        if Envelope::decode(&body).unwrap().message == Message::Sync {
            break;
        }
    }
    ea.write_all(&send(9, Message::SnapshotEnd)).await.unwrap();
    ea.write_all(&send(10, Message::SnapshotEnd)).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), ea.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the bridge closes a connection that sends books unasked");
    assert_eq!(stats.protocol_errors.load(Ordering::Relaxed), 1);
    bridge.shutdown.cancel();
    bridge.task.await.unwrap();
}

fn with_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}
