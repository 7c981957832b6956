//! The bridge's TCP server: one task per terminal connection.
//!
//! A connection goes through three phases: hello (version and token checked, refused with a
//! reason otherwise), snapshot (symbol capabilities and open positions, until SNAPSHOT_END), and
//! streaming (ticks in, orders out, heartbeats both ways). Bad input from one connection closes
//! that connection with a logged reason; other terminals are unaffected.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mtml_core::clock::monotonic_ns;
use mtml_core::{
    ChainId, ChainIdGenerator, ChainLog, ExecutionEvent, Fill, OrderRequest, OrderType, Side,
    Stage, Symbol, Tick,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::router::{OrderRouter, Route};
use crate::symbols::SymbolMapper;
use crate::wire::connection::WireError;
use crate::wire::{self, Connection, Envelope, Message, PROTOCOL_VERSION, Px, WireSide};

/// Settings of the bridge.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Shared secret every EA must present in its hello.
    pub token: String,
    /// Broker to canonical symbol mapping.
    pub symbols: SymbolMapper,
    /// How long a new connection has to send its hello and snapshot.
    pub hello_timeout: Duration,
    /// How often the bridge sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// Silence after which a connection is considered dead and closed.
    pub silence_timeout: Duration,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            token: String::new(),
            symbols: SymbolMapper::default(),
            hello_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(5),
            silence_timeout: Duration::from_secs(30),
        }
    }
}

/// Counters of the bridge, readable while it runs.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused in the hello (bad version or token).
    pub refused: AtomicU64,
    /// Connections closed because of bad input.
    pub protocol_errors: AtomicU64,
    /// Ticks read from terminals and handed to ingestion.
    pub ticks: AtomicU64,
    /// Sequence numbers skipped by terminals (messages lost in between).
    pub sequence_gaps: AtomicU64,
    /// Orders written to terminals.
    pub orders_sent: AtomicU64,
}

/// Where the bridge sends what terminals report.
#[derive(Debug, Clone)]
pub struct BridgeOutputs {
    /// Ticks, to ingestion (in process, or a gRPC forwarder).
    pub ticks: mpsc::Sender<Tick>,
    /// Acks, rejects and fills, to execution.
    pub events: mpsc::Sender<ExecutionEvent>,
}

/// Everything a connection task shares with the others.
#[derive(Debug, Clone)]
pub struct Bridge {
    config: Arc<BridgeConfig>,
    outputs: BridgeOutputs,
    router: OrderRouter,
    chain_ids: Arc<ChainIdGenerator>,
    chain_log: Arc<ChainLog>,
    stats: Arc<BridgeStats>,
    sessions: Arc<AtomicU64>,
}

impl Bridge {
    /// A bridge sending to `outputs` and recording spans into `chain_log`.
    pub fn new(config: BridgeConfig, outputs: BridgeOutputs, chain_log: Arc<ChainLog>) -> Self {
        let router = OrderRouter::new(outputs.events.clone());
        Self {
            config: Arc::new(config),
            outputs,
            router,
            chain_ids: Arc::new(ChainIdGenerator::new()),
            chain_log,
            stats: Arc::default(),
            sessions: Arc::default(),
        }
    }

    /// Where execution submits orders.
    pub fn router(&self) -> OrderRouter {
        self.router.clone()
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<BridgeStats> {
        Arc::clone(&self.stats)
    }

    /// Accepts terminal connections until `shutdown`, then waits for every connection task to
    /// finish (they stop at the next frame boundary).
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        self.stats.connections.fetch_add(1, Ordering::Relaxed);
                        let session = format!("s{}", self.sessions.fetch_add(1, Ordering::Relaxed) + 1);
                        let span = info_span!("terminal", %session, %peer);
                        let bridge = self.clone();
                        let shutdown = shutdown.clone();
                        tracker.spawn(
                            async move { bridge.serve(Connection::new(stream), session, shutdown).await }
                                .instrument(span),
                        );
                    }
                    Err(error) => {
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        tracker.close();
        tracker.wait().await;
    }

    /// Serves one terminal connection to its end, logging why it ended.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut conn: Connection<S>,
        session: String,
        shutdown: CancellationToken,
    ) {
        match self.serve_inner(&mut conn, &session, shutdown).await {
            Ok(()) => info!("terminal disconnected"),
            Err(SessionError::Refused(reason)) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                warn!(%reason, "terminal refused");
            }
            Err(SessionError::Wire(error)) => {
                self.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                warn!(%error, "closing connection on bad input");
            }
            Err(SessionError::Protocol(reason)) => {
                self.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                warn!(%reason, "closing connection on protocol violation");
            }
            Err(SessionError::PipelineClosed) => info!("pipeline stopped; closing connection"),
            Err(SessionError::Silent) => warn!("terminal silent too long; closing connection"),
        }
        self.router.unregister(&session);
    }

    async fn serve_inner<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        session: &str,
        shutdown: CancellationToken,
    ) -> Result<(), SessionError> {
        let mut state = tokio::time::timeout(self.config.hello_timeout, self.handshake(conn, session))
            .await
            .map_err(|_| SessionError::Protocol("no complete hello and snapshot in time".into()))??;
        let (orders_tx, mut orders_rx) = mpsc::unbounded_channel();
        for symbol in state.brokers_by_symbol.keys() {
            let route = Route { session: session.to_owned(), orders: orders_tx.clone() };
            self.router.register(symbol.clone(), route);
        }
        info!(terminal = %state.terminal, symbols = state.brokers_by_symbol.len(), "terminal streaming");
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                Some(order) = orders_rx.recv() => {
                    self.send_order(conn, &mut state, order).await?;
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > self.config.silence_timeout {
                        return Err(SessionError::Silent);
                    }
                    state.out_seq += 1;
                    let beat = Envelope { seq: state.out_seq, message: Message::Heartbeat { time_msc: 0 } };
                    conn.write_envelope(&beat).await?;
                    conn.flush().await?;
                }
                read = conn.read_envelope() => {
                    let Some(envelope) = read? else { return Ok(()) };
                    last_heard = tokio::time::Instant::now();
                    self.handle(&mut state, envelope).await?;
                }
            }
        }
    }

    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        session: &str,
    ) -> Result<SessionState, SessionError> {
        let first = conn.read_envelope().await?.ok_or_else(|| {
            SessionError::Protocol("connection closed before hello".into())
        })?;
        let Message::Hello(hello) = first.message else {
            return Err(SessionError::Protocol(format!(
                "expected HELLO first, got {}",
                first.message.type_name()
            )));
        };
        let refusal = if hello.version != PROTOCOL_VERSION {
            Some((
                "version",
                format!(
                    "protocol version {} is not supported; this bridge speaks version {PROTOCOL_VERSION}",
                    hello.version
                ),
            ))
        } else if hello.token != self.config.token {
            Some(("auth", "wrong auth token".to_owned()))
        } else {
            None
        };
        if let Some((code, reason)) = refusal {
            let refused = Message::Refused { code: code.into(), reason: reason.clone() };
            conn.write_envelope(&Envelope { seq: 1, message: refused }).await?;
            conn.flush().await?;
            return Err(SessionError::Refused(format!(
                "{reason} (login {} on {})",
                hello.login, hello.server
            )));
        }
        let welcome = Message::Welcome { version: PROTOCOL_VERSION, session: session.to_owned() };
        conn.write_envelope(&Envelope { seq: 1, message: welcome }).await?;
        conn.flush().await?;
        let mut state = SessionState {
            terminal: Arc::from(format!("{}@{}", hello.login, hello.server)),
            in_seq: first.seq,
            out_seq: 1,
            brokers_by_symbol: HashMap::new(),
            canonical_by_broker: HashMap::new(),
            sent: HashMap::new(),
        };
        loop {
            let envelope = conn.read_envelope().await?.ok_or_else(|| {
                SessionError::Protocol("connection closed during snapshot".into())
            })?;
            self.check_sequence(&mut state, envelope.seq);
            match envelope.message {
                Message::Symbol(spec) => {
                    let canonical = Symbol::new(&self.config.symbols.to_canonical(&spec.name));
                    debug!(broker = %spec.name, %canonical, "symbol registered");
                    state.canonical_by_broker.insert(spec.name.clone(), canonical.clone());
                    state.brokers_by_symbol.insert(canonical, spec);
                }
                Message::Position(position) => {
                    debug!(ticket = position.ticket, symbol = %position.symbol, "snapshot position");
                }
                Message::SnapshotEnd => return Ok(state),
                other => {
                    return Err(SessionError::Protocol(format!(
                        "{} before SNAPSHOT_END",
                        other.type_name()
                    )));
                }
            }
        }
    }

    fn check_sequence(&self, state: &mut SessionState, seq: u64) {
        let expected = state.in_seq + 1;
        if seq != expected {
            self.stats.sequence_gaps.fetch_add(1, Ordering::Relaxed);
            warn!(expected, received = seq, "sequence gap from terminal");
        }
        state.in_seq = seq;
    }

    async fn handle(&self, state: &mut SessionState, envelope: Envelope) -> Result<(), SessionError> {
        self.check_sequence(state, envelope.seq);
        match envelope.message {
            Message::Tick(tick) => {
                let received_ns = monotonic_ns();
                let chain_id = self.chain_ids.next_id();
                let symbol = state.canonical(&tick.symbol, &self.config.symbols);
                let tick = Tick {
                    chain_id,
                    symbol,
                    time_msc: tick.time_msc,
                    bid: tick.bid.value,
                    ask: tick.ask.value,
                    seq: envelope.seq,
                    terminal: Arc::clone(&state.terminal),
                    received_ns,
                };
                self.outputs.ticks.send(tick).await.map_err(|_| SessionError::PipelineClosed)?;
                self.stats.ticks.fetch_add(1, Ordering::Relaxed);
                let now = monotonic_ns();
                self.chain_log.record(chain_id, Stage::BridgeReceive, received_ns, now - received_ns);
            }
            Message::Ack { client_order_id, ticket } => {
                if let Some(chain_id) = state.chain_of(&client_order_id) {
                    self.emit(ExecutionEvent::Acked { chain_id, client_order_id, ticket }).await?;
                }
            }
            Message::Reject { client_order_id, retcode, reason } => {
                if let Some(chain_id) = state.chain_of(&client_order_id) {
                    state.sent.remove(&client_order_id);
                    let event =
                        ExecutionEvent::Rejected { chain_id, client_order_id, retcode, reason };
                    self.emit(event).await?;
                }
            }
            Message::Fill(fill) => {
                let chain_id: ChainId = fill.chain_id.parse().map_err(|error| {
                    SessionError::Protocol(format!("FILL with invalid chain id: {error}"))
                })?;
                let now = monotonic_ns();
                if let Some(sent_ns) = state.sent.get(&fill.client_order_id).map(|s| s.1) {
                    self.chain_log.record(chain_id, Stage::Fill, sent_ns, now.saturating_sub(sent_ns));
                }
                let event = ExecutionEvent::Filled(Fill {
                    chain_id,
                    client_order_id: fill.client_order_id,
                    ticket: fill.ticket,
                    symbol: state.canonical(&fill.symbol, &self.config.symbols),
                    side: match fill.side {
                        WireSide::Buy => Side::Buy,
                        WireSide::Sell => Side::Sell,
                    },
                    volume: fill.volume.value,
                    price: fill.price.value,
                    time_msc: fill.time_msc,
                });
                self.emit(event).await?;
            }
            Message::Heartbeat { .. } => {}
            other => {
                return Err(SessionError::Protocol(format!(
                    "unexpected {} from a terminal while streaming",
                    other.type_name()
                )));
            }
        }
        Ok(())
    }

    async fn emit(&self, event: ExecutionEvent) -> Result<(), SessionError> {
        self.outputs.events.send(event).await.map_err(|_| SessionError::PipelineClosed)
    }

    async fn send_order<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        state: &mut SessionState,
        order: OrderRequest,
    ) -> Result<(), SessionError> {
        let start = monotonic_ns();
        let Some(spec) = state.brokers_by_symbol.get(&order.symbol) else {
            // Routes are registered from this map, so this means a routing bug, not bad input.
            let reason = format!("session does not trade {}", order.symbol);
            let event = ExecutionEvent::Rejected {
                chain_id: order.chain_id,
                client_order_id: order.client_order_id,
                retcode: 0,
                reason,
            };
            return self.emit(event).await;
        };
        let digits = spec.digits;
        let wire = wire::Order {
            client_order_id: order.client_order_id.clone(),
            chain_id: order.chain_id.to_string(),
            symbol: spec.name.clone(),
            side: match order.side {
                Side::Buy => WireSide::Buy,
                Side::Sell => WireSide::Sell,
            },
            order_type: match order.order_type {
                OrderType::Market => "MARKET",
                OrderType::Limit => "LIMIT",
                OrderType::Stop => "STOP",
            }
            .to_owned(),
            volume: Px::new(order.volume, spec.volume_step.decimals),
            price: Px::new(order.price, digits),
            stop_loss: Px::new(0.0, digits),
            take_profit: Px::new(0.0, digits),
        };
        state.out_seq += 1;
        conn.write_envelope(&Envelope { seq: state.out_seq, message: Message::Order(wire) }).await?;
        conn.flush().await?;
        let written = monotonic_ns();
        self.stats.orders_sent.fetch_add(1, Ordering::Relaxed);
        self.chain_log.record(order.chain_id, Stage::BridgeSend, start, written - start);
        if order.origin_received_ns > 0 {
            self.chain_log.record_tick_to_order(written.saturating_sub(order.origin_received_ns));
        }
        debug!(chain_id = %order.chain_id, client_order_id = %order.client_order_id, "order sent");
        state.sent.insert(order.client_order_id, (order.chain_id, written));
        Ok(())
    }
}

struct SessionState {
    terminal: Arc<str>,
    in_seq: u64,
    out_seq: u64,
    brokers_by_symbol: HashMap<Symbol, wire::SymbolSpec>,
    canonical_by_broker: HashMap<String, Symbol>,
    /// Orders written and not yet finished: chain id and when they were written.
    sent: HashMap<String, (ChainId, u64)>,
}

impl SessionState {
    fn canonical(&self, broker: &str, mapper: &SymbolMapper) -> Symbol {
        self.canonical_by_broker
            .get(broker)
            .cloned()
            .unwrap_or_else(|| Symbol::new(&mapper.to_canonical(broker)))
    }

    /// The chain of an order this session sent. A reply to an order of an earlier session (the
    /// EA reconnected) is logged and left to reconciliation, not treated as a protocol error.
    fn chain_of(&self, client_order_id: &str) -> Option<ChainId> {
        let chain = self.sent.get(client_order_id).map(|(chain, _)| *chain);
        if chain.is_none() {
            warn!(%client_order_id, "reply for an order this session did not send");
        }
        chain
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("{0}")]
    Protocol(String),
    #[error("pipeline closed")]
    PipelineClosed,
    #[error("silent")]
    Silent,
}
