//! Execution in another process: orders and execution events over `mtml.v1.Bridge` with a real
//! tonic client and server.
#![allow(clippy::unwrap_used, clippy::expect_used)]


use std::time::Duration;

use mtml_bridge::grpc::BridgeService;
use mtml_bridge::{Bridge, BridgeConfig, BridgeOutputs, SymbolMapper};
use mtml_simulator::{Fault, SimSymbol, SimTick, SimulatorConfig, TerminalSimulator};
use mtml_core::{ChainIdGenerator, ChainLog, OrderRequest, OrderType, Side, Symbol};
use mtml_proto::v1;
use mtml_proto::v1::bridge_client::BridgeClient;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn orders_and_fills_cross_the_grpc_seam_and_one_client_is_attached_at_a_time() {
    let (ticks_tx, mut ticks) = mpsc::channel(1000);
    let (events_tx, events_rx) = mpsc::channel(100);
    let config = BridgeConfig {
        token: "t".into(),
        symbols: SymbolMapper::new(vec!["EURUSD".into()], Default::default()),
        ..BridgeConfig::default()
    };
    let bridge = Bridge::new(config, BridgeOutputs { ticks: ticks_tx, events: events_tx }, Arc::new(ChainLog::default()));
    let shutdown = CancellationToken::new();
    let terminals = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let terminal_addr = terminals.local_addr().unwrap();
    tokio::spawn(bridge.clone().run(terminals, shutdown.clone()));
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = grpc.local_addr().unwrap();
    let service = BridgeService::new(bridge.router(), events_rx, shutdown.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc), shutdown.clone().cancelled_owned()),
    );

    let sim_config = SimulatorConfig {
        token: "t".into(),
        symbols: vec![SimSymbol { name: "EURUSD".into(), digits: 5 }],
        ..SimulatorConfig::default()
    };
    let mut terminal = TerminalSimulator::new(sim_config, [SimTick { symbol: "EURUSD".into(), time_msc: 1, bid: 1.1, ask: 1.1002 }]);
    let stream = TcpStream::connect(terminal_addr).await.unwrap();
    let stop = shutdown.clone();
    tokio::spawn(async move { terminal.connect(stream, Fault::None, &stop).await });
    tokio::time::timeout(Duration::from_secs(5), ticks.recv()).await.unwrap().unwrap();

    let endpoint = format!("http://{grpc_addr}");
    let mut first = BridgeClient::connect(endpoint.clone()).await.unwrap();
    let (orders, orders_rx) = mpsc::channel(10);
    let mut replies = first.execute_orders(ReceiverStream::new(orders_rx)).await.unwrap().into_inner();
    let chain_id = ChainIdGenerator::with_prefix(2).next_id();
    let order = OrderRequest {
        chain_id,
        client_order_id: "g-1".into(),
        account: None,
        symbol: Symbol::new("EURUSD"),
        side: Side::Buy,
        order_type: OrderType::Market,
        volume: 0.1,
        price: 0.0,
        decision_price: 1.1002,
        origin_received_ns: 0,
        market_time_msc: 0,
    };
    orders.send(v1::OrderCommand::from(&order)).await.unwrap();
    let positions = replies.message().await.unwrap().unwrap();
    assert!(
        matches!(positions.event, Some(v1::execution_event::Event::TerminalPositions(_))),
        "the terminal's positions from its handshake come first, for reconciliation: {positions:?}"
    );
    assert!(positions.chain_id.is_none(), "an account event has no chain");
    let money = replies.message().await.unwrap().unwrap();
    let Some(v1::execution_event::Event::Account(money)) = money.event else { panic!("the account's money next: {money:?}") };
    assert_eq!((money.leverage, money.free_margin), (100, 10_000.0));
    let ack = replies.message().await.unwrap().unwrap();
    assert!(matches!(ack.event, Some(v1::execution_event::Event::Acked(_))), "{ack:?}");
    let fill = replies.message().await.unwrap().unwrap();
    let Some(v1::execution_event::Event::Filled(filled)) = fill.event else { panic!("{fill:?}") };
    assert_eq!((filled.volume, filled.price), (0.1, 1.1002));
    assert_eq!(fill.chain_id.unwrap().trace_id, chain_id.to_bytes().to_vec(), "the chain id comes back");

    // A second execution client is refused while the first is attached.
    let mut second = BridgeClient::connect(endpoint.clone()).await.unwrap();
    let (_keep, idle) = mpsc::channel::<v1::OrderCommand>(1);
    let refused = second.execute_orders(ReceiverStream::new(idle)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    // When the first leaves, a new one attaches; a malformed command is refused by name.
    drop(orders);
    assert!(replies.message().await.unwrap().is_none());
    let mut third = BridgeClient::connect(endpoint).await.unwrap();
    let (bad, bad_rx) = mpsc::channel(1);
    bad.send(v1::OrderCommand::default()).await.unwrap();
    let mut stream = third.execute_orders(ReceiverStream::new(bad_rx)).await.unwrap().into_inner();
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "order: chain id must be 16 bytes and not all zero");
    shutdown.cancel();
}
