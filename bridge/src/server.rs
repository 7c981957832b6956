//! The bridge's TCP server: one task per terminal connection.
//!
//! A connection goes through three phases. Hello: version and token are checked, and a refusal
//! names its reason. Snapshot: symbol capabilities, open positions, pending orders and recent
//! deals, until SNAPSHOT_END; orders whose outcome was lost with an earlier connection are settled
//! from it, and the bridge tells the EA where each symbol's tick stream stopped (RESUME) before
//! it says START. Streaming: ticks in, orders out, heartbeats both ways. Bad input from one
//! connection closes that connection with a logged reason; other terminals are unaffected.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mtml_core::clock::monotonic_ns;
use mtml_core::{
    ChainId, ChainIdGenerator, ChainLog, ExecutedOrder, ExecutionEvent, Fill, OrderRequest, OrderType, Side,
    Stage, Symbol, Tick,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::accounts::{AccountBook, ResumePoint, SentOrder, Snapshot, settle_unknown};
use crate::normalize::normalize;
use crate::sequencer::{Sequenced, Sequencer};
use crate::router::{OrderRouter, Route};
use crate::symbols::SymbolMapper;
use crate::wire::connection::WireError;
use crate::wire::{self, Connection, Envelope, Message, PROTOCOL_VERSION, Px, WireSide};

/// What the bridge does with a tick when the pipeline's inbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// Stop reading the terminal until there is room (TCP pushes back on the EA). Nothing is lost.
    #[default]
    Block,
    /// Drop the tick, counted in [`BridgeStats::ticks_dropped`] and logged. Only if the operator
    /// prefers fresh ticks to complete ones.
    DropNewest,
}

/// Most messages held back while waiting for a gap to be filled.
const MAX_HELD: usize = 10_000;

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
    /// What to do when the pipeline cannot keep up.
    pub backpressure: Backpressure,
    /// How long to wait for a RESEND to fill a sequence gap before counting it lost.
    pub resend_timeout: Duration,
    /// How often to ask a streaming terminal for its books (SYNC) and reconcile against them;
    /// zero for never (the books of every connect are reconciled regardless).
    pub reconcile_every: Duration,
    /// How long an order may go unanswered on a live connection before its outcome is declared
    /// unknown and the terminal is asked for its books (SYNC), which settle it. Never resent.
    pub order_timeout: Duration,
    /// The chain-id prefix; `None` draws a random one. A replay fixes it, so that its chain ids,
    /// and the canary split made from them, are the same every run.
    pub chain_prefix: Option<u64>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            token: String::new(),
            symbols: SymbolMapper::default(),
            hello_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(5),
            silence_timeout: Duration::from_secs(30),
            backpressure: Backpressure::Block,
            resend_timeout: Duration::from_secs(2),
            reconcile_every: Duration::from_secs(60),
            order_timeout: Duration::from_secs(30),
            chain_prefix: None,
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
    /// Connections closed because the same account connected again.
    pub taken_over: AtomicU64,
    /// Ticks read from terminals and handed to ingestion.
    pub ticks: AtomicU64,
    /// Ticks dropped because the pipeline was full ([`Backpressure::DropNewest`] only).
    pub ticks_dropped: AtomicU64,
    /// Sequence gaps seen (each answered with a RESEND).
    pub sequence_gaps: AtomicU64,
    /// Messages of a gap that were not resent in time.
    pub messages_lost: AtomicU64,
    /// Bars received from terminals.
    pub bars: AtomicU64,
    /// Orders written to terminals.
    pub orders_sent: AtomicU64,
    /// Orders refused before they left (normalisation, no terminal).
    pub orders_refused: AtomicU64,
    /// Orders whose outcome was lost with a connection and settled from a later snapshot.
    pub orders_settled_from_snapshot: AtomicU64,
    /// SYNC requests sent to streaming terminals.
    pub syncs_sent: AtomicU64,
    /// Books received in answer to a SYNC and reconciled.
    pub syncs_completed: AtomicU64,
    /// Orders unanswered past `order_timeout` on a live connection (then settled from the books).
    pub orders_timed_out: AtomicU64,
    /// Connections closed because the terminal said nothing for longer than `silence_timeout`.
    pub silent_closed: AtomicU64,
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
    accounts: AccountBook,
    /// Orders a previous run of mtml left in flight (from its journal), not yet claimed by an
    /// account: the first snapshot of an account trading the symbol settles them.
    recovered: Arc<parking_lot::Mutex<HashMap<String, SentOrder>>>,
}

/// A crash point (see `mtml_core::crash_point`): the order is at the terminal and its answer not
/// yet read.
pub const CRASH_AFTER_ORDER_WRITTEN: &str = "bridge.after_order_written";

impl Bridge {
    /// A bridge sending to `outputs` and recording spans into `chain_log`.
    pub fn new(config: BridgeConfig, outputs: BridgeOutputs, chain_log: Arc<ChainLog>) -> Self {
        let router = OrderRouter::new(outputs.events.clone());
        let chain_ids = config.chain_prefix.map_or_else(ChainIdGenerator::new, ChainIdGenerator::with_prefix);
        Self {
            config: Arc::new(config),
            outputs,
            router,
            chain_ids: Arc::new(chain_ids),
            chain_log,
            stats: Arc::default(),
            sessions: Arc::default(),
            accounts: AccountBook::default(),
            recovered: Arc::default(),
        }
    }

    /// Hands the bridge the orders a previous run left in flight, by client order id. Their
    /// outcome is unknown: they are never resent, and the first snapshot of an account that
    /// trades their symbol settles them from its deals, pending orders and positions, exactly as
    /// for an order whose connection was lost.
    pub fn recover_orders<'a>(&self, orders: impl IntoIterator<Item = &'a mtml_core::RecoveredOrder>) {
        let mut recovered = self.recovered.lock();
        for order in orders {
            let sent = SentOrder {
                chain_id: order.chain_id,
                symbol: order.symbol.clone(),
                side: order.side,
                volume: order.volume,
                filled: order.filled,
                sent_ns: 0,
                outcome_known: false,
                acked: false,
                session: String::new(),
            };
            recovered.insert(order.client_order_id.clone(), sent);
        }
    }

    /// Recovered orders no account has claimed yet.
    pub fn recovered_unclaimed(&self) -> usize {
        self.recovered.lock().len()
    }

    /// Where execution submits orders.
    pub fn router(&self) -> OrderRouter {
        self.router.clone()
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<BridgeStats> {
        Arc::clone(&self.stats)
    }

    /// Orders written and not settled, for an account (`login@server`).
    pub fn orders_in_flight(&self, account: &str) -> usize {
        self.accounts.with(&Arc::from(account), |a| a.in_flight.len())
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
                        let bridge = self.clone();
                        let shutdown = shutdown.clone();
                        let session = bridge.next_session();
                        let span = info_span!("terminal", %session, %peer);
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

    /// A fresh session id.
    pub fn next_session(&self) -> String {
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        format!("s{}", self.sessions.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Serves one terminal connection (TCP, or a named pipe on Windows) to its end, logging why
    /// it ended, and leaves the account's memory ready for the next connection.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut conn: Connection<S>,
        session: String,
        shutdown: CancellationToken,
    ) {
        let cancel = shutdown.child_token();
        let mut established = None;
        let result = self.serve_inner(&mut conn, &session, &cancel, &mut established).await;
        match result {
            Ok(()) if cancel.is_cancelled() && !shutdown.is_cancelled() => {
                self.stats.taken_over.fetch_add(1, Ordering::Relaxed);
                info!("connection replaced by a newer one of the same account");
            }
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
            Err(SessionError::Silent) => {
                self.stats.silent_closed.fetch_add(1, Ordering::Relaxed);
                warn!(timeout = ?self.config.silence_timeout, "terminal silent too long; closing connection");
            }
        }
        self.router.unregister(&session);
        if let Some(state) = established {
            self.end_session(state);
        }
    }

    /// Records where the streams stopped, and marks the session's unsettled orders as having an
    /// unknown outcome: the next snapshot of the account settles them.
    fn end_session(&self, state: Session) {
        let unknown = self.accounts.with(&state.account, |account| {
            if account.session.as_ref().is_some_and(|(id, _)| *id == state.id) {
                account.session = None;
            }
            mark_unknown(&mut account.in_flight, &state.id)
        });
        self.announce_unknown(&state.account, unknown);
    }

    /// Tells execution which orders lost their answer with a connection.
    fn announce_unknown(&self, account: &str, unknown: Vec<(String, ChainId)>) {
        if unknown.is_empty() {
            return;
        }
        warn!(%account, orders = unknown.len(), "connection lost with orders in flight; their outcome is settled from the next snapshot, never by resending");
        for (client_order_id, chain_id) in unknown {
            let event = ExecutionEvent::OutcomeUnknown { chain_id, client_order_id };
            if self.outputs.events.try_send(event).is_err() {
                tracing::error!("execution event channel full or closed; unknown outcome not announced");
            }
        }
    }

    async fn serve_inner<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        session: &str,
        cancel: &CancellationToken,
        established: &mut Option<Session>,
    ) -> Result<(), SessionError> {
        let handshake = self.handshake(conn, session, cancel);
        let state = tokio::time::timeout(self.config.hello_timeout, handshake)
            .await
            .map_err(|_| SessionError::Protocol("no complete hello and snapshot in time".into()))??;
        let state = established.insert(state);
        let (orders_tx, mut orders_rx) = mpsc::unbounded_channel();
        self.router.register(Route {
            session: session.to_owned(),
            account: Arc::clone(&state.account),
            symbols: state.specs.keys().cloned().collect::<HashSet<_>>(),
            orders: orders_tx,
        });
        info!(account = %state.account, symbols = state.specs.len(), "terminal streaming");
        // The first heartbeat is one period away, not immediate: the handshake just spoke.
        let period = self.config.heartbeat_interval;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut last_heard = tokio::time::Instant::now();
        // Periodic reconciliation: ask for the books every `reconcile_every` (never if zero).
        let every = self.config.reconcile_every;
        let mut reconcile =
            (!every.is_zero()).then(|| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                Some(order) = orders_rx.recv() => self.send_order(conn, state, order).await?,
                _ = async {
                    match reconcile.as_mut() {
                        Some(interval) => interval.tick().await,
                        None => std::future::pending().await,
                    }
                } => self.request_books(conn, state).await?,
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > self.config.silence_timeout {
                        return Err(SessionError::Silent);
                    }
                    let expired = state.seq.expire(tokio::time::Instant::now(), self.config.resend_timeout);
                    self.handle_sequenced(conn, state, expired).await?;
                    self.time_out_orders(conn, state).await?;
                    state.send(conn, Message::Heartbeat { time_msc: 0 }).await?;
                    conn.flush().await?;
                }
                read = conn.read_envelope() => {
                    let Some(envelope) = read? else { return Ok(()) };
                    last_heard = tokio::time::Instant::now();
                    self.sequence(conn, state, envelope).await?;
                }
            }
        }
    }

    /// Asks the terminal for its books (SYNC), unless it is still answering the last request.
    async fn request_books<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        state: &mut Session,
    ) -> Result<(), SessionError> {
        if state.sync.is_none() {
            state.sync = Some(Snapshot::default());
            state.send(conn, Message::Sync).await?;
            conn.flush().await?;
            self.stats.syncs_sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Orders this connection sent that are unanswered past `order_timeout`: their outcome is
    /// declared unknown (execution is told; nothing is resent) and the terminal is asked for its
    /// books, which settle them exactly as after a lost connection.
    async fn time_out_orders<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        state: &mut Session,
    ) -> Result<(), SessionError> {
        let timeout_ns = u64::try_from(self.config.order_timeout.as_nanos()).unwrap_or(u64::MAX);
        let now = monotonic_ns();
        let timed_out = self.accounts.with(&state.account, |account| {
            let mut ids = Vec::new();
            for (id, order) in account.in_flight.iter_mut() {
                let unanswered = order.outcome_known && order.filled == 0.0 && !order.acked;
                if order.session == state.id && unanswered && now.saturating_sub(order.sent_ns) > timeout_ns {
                    order.outcome_known = false;
                    ids.push((id.clone(), order.chain_id));
                }
            }
            ids.sort();
            ids
        });
        if timed_out.is_empty() {
            return Ok(());
        }
        self.stats.orders_timed_out.fetch_add(timed_out.len() as u64, Ordering::Relaxed);
        warn!(orders = timed_out.len(), timeout = ?self.config.order_timeout, "orders unanswered in time; asking the terminal for its books, never resending");
        for (client_order_id, chain_id) in timed_out {
            self.emit(ExecutionEvent::OutcomeUnknown { chain_id, client_order_id }).await?;
        }
        self.request_books(conn, state).await
    }

    /// Hands messages to [`Bridge::handle`] in sequence order (see [`crate::sequencer`]).
    async fn sequence<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        state: &mut Session,
        envelope: Envelope,
    ) -> Result<(), SessionError> {
        let sequenced = state.seq.offer(envelope.seq, envelope, tokio::time::Instant::now());
        self.handle_sequenced(conn, state, sequenced).await
    }

    /// Asks for a gap's range, counts what was given up, and handles what is ready, in order.
    async fn handle_sequenced<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        state: &mut Session,
        sequenced: Sequenced<Envelope>,
    ) -> Result<(), SessionError> {
        if let Some((from, to)) = sequenced.resend {
            self.stats.sequence_gaps.fetch_add(1, Ordering::Relaxed);
            warn!(from, to, "sequence gap from terminal; asking for the range again");
            state.send(conn, Message::Resend { from, to }).await?;
            conn.flush().await?;
        }
        if sequenced.lost > 0 {
            self.stats.messages_lost.fetch_add(sequenced.lost, Ordering::Relaxed);
            warn!(lost = sequenced.lost, "missing messages not resent in time; counted as lost");
        }
        for envelope in sequenced.ready {
            self.handle(state, envelope).await?;
        }
        Ok(())
    }

    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        session: &str,
        cancel: &CancellationToken,
    ) -> Result<Session, SessionError> {
        let first = conn
            .read_envelope()
            .await?
            .ok_or_else(|| SessionError::Protocol("connection closed before hello".into()))?;
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
        let account: Arc<str> = Arc::from(format!("{}@{}", hello.login, hello.server));
        let unknown = self.accounts.with(&account, |state| {
            match state.session.replace((session.to_owned(), cancel.clone())) {
                Some((old, token)) => {
                    info!(%old, "account reconnected; closing its previous connection");
                    token.cancel();
                    mark_unknown(&mut state.in_flight, &old)
                }
                None => Vec::new(),
            }
        });
        self.announce_unknown(&account, unknown);
        let mut state = Session {
            id: session.to_owned(),
            terminal: Arc::from(format!("{account}/{session}")),
            account,
            seq: Sequencer::new(first.seq, MAX_HELD),
            out_seq: 0,
            specs: HashMap::new(),
            canonical_by_broker: HashMap::new(),
            quotes: HashMap::new(),
            resume: Arc::default(),
            leverage: hello.leverage,
            sync: None,
        };
        let welcome = Message::Welcome { version: PROTOCOL_VERSION, session: session.to_owned() };
        state.send(conn, welcome).await?;
        conn.flush().await?;
        let mut snapshot = Snapshot::default();
        loop {
            let envelope = conn
                .read_envelope()
                .await?
                .ok_or_else(|| SessionError::Protocol("connection closed during snapshot".into()))?;
            self.check_sequence(&mut state, envelope.seq);
            match envelope.message {
                Message::Symbol(spec) => {
                    let canonical = Symbol::new(&self.config.symbols.to_canonical(&spec.name));
                    debug!(broker = %spec.name, %canonical, "symbol registered");
                    state.canonical_by_broker.insert(spec.name.clone(), canonical.clone());
                    state.specs.insert(canonical, spec);
                }
                Message::Position(position) => snapshot.positions.push(position),
                Message::Pending(pending) => snapshot.pending.push(pending),
                Message::Deal(deal) => snapshot.deals.push(deal),
                Message::Account(money) => snapshot.account = Some(money),
                Message::SnapshotEnd => break,
                other => {
                    return Err(SessionError::Protocol(format!(
                        "{} before SNAPSHOT_END",
                        other.type_name()
                    )));
                }
            }
        }
        let resume = self.apply_books(&state, &snapshot, Books::Connect).await?;
        let mut symbols: Vec<String> =
            state.specs.values().map(|spec| spec.name.clone()).collect();
        symbols.sort();
        let points: Vec<(String, ResumePoint)> = {
            let resume = resume.lock();
            symbols.into_iter().filter_map(|s| resume.get(&s).map(|p| (s, *p))).collect()
        };
        state.resume = resume;
        for (symbol, point) in points {
            {
                let message = Message::Resume { symbol, time_msc: point.time_msc, count: point.count };
                state.send(conn, message).await?;
            }
        }
        state.send(conn, Message::Start).await?;
        conn.flush().await?;
        Ok(state)
    }

    /// Applies a terminal's books (from the snapshot of a connect, or the answer to a SYNC):
    /// settles the orders whose outcome is unknown (this account's, and those a previous run
    /// left for an account trading their symbol), then hands execution the account's money and
    /// its net positions and executed orders to reconcile against. Returns the account's resume
    /// points.
    async fn apply_books(
        &self,
        state: &Session,
        snapshot: &Snapshot,
        books: Books,
    ) -> Result<Arc<parking_lot::Mutex<HashMap<String, ResumePoint>>>, SessionError> {
        let claimed: Vec<(String, SentOrder)> = {
            let mut recovered = self.recovered.lock();
            let ids: Vec<String> = recovered
                .iter()
                .filter(|(_, order)| state.specs.contains_key(&order.symbol))
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter().filter_map(|id| recovered.remove_entry(&id)).collect()
        };
        if !claimed.is_empty() {
            info!(orders = claimed.len(), "orders left in flight by the previous run are settled from this snapshot");
        }
        let (events, resume) = self.accounts.with(&state.account, |account| {
            account.in_flight.extend(claimed);
            (settle_unknown(&mut account.in_flight, snapshot), Arc::clone(&account.resume))
        });
        if !events.is_empty() {
            info!(orders = events.len(), "orders with unknown outcome settled from the snapshot");
            self.stats.orders_settled_from_snapshot.fetch_add(events.len() as u64, Ordering::Relaxed);
        }
        for event in events {
            self.emit(event).await?;
        }
        // Then the terminal's net positions, for execution to reconcile against.
        // Net lots, total volume and volume-weighted price sum per canonical symbol.
        let mut net: std::collections::BTreeMap<Symbol, (f64, f64, f64)> = Default::default();
        for position in &snapshot.positions {
            let symbol = state.canonical(&position.symbol, &self.config.symbols);
            let sign = match position.side {
                WireSide::Buy => 1.0,
                WireSide::Sell => -1.0,
            };
            let (lots, volume, notional) = net.entry(symbol).or_default();
            *lots += sign * position.volume.value;
            *volume += position.volume.value;
            *notional += position.volume.value * position.price.value;
        }
        let positions = net
            .into_iter()
            .map(|(symbol, (lots, volume, notional))| {
                let average = if volume > 0.0 { notional / volume } else { 0.0 };
                (symbol, lots, average)
            })
            .collect();
        // Orders a crashed run never journaled can only surface after a (re)connect: a SYNC's
        // deals add nothing for the journal to learn, so they are not sent again every period.
        let executed = match books {
            Books::Connect => executed_orders(&snapshot.deals, |broker| state.canonical(broker, &self.config.symbols)),
            Books::Sync => Vec::new(),
        };
        let account = Arc::clone(&state.account);
        self.emit(ExecutionEvent::TerminalPositions { account, positions, executed }).await?;
        if let Some(money) = snapshot.account {
            self.emit(state.account_event(money)).await?;
        }
        Ok(resume)
    }

    fn check_sequence(&self, state: &mut Session, seq: u64) {
        let expected = state.seq.last() + 1;
        if !state.seq.take_as_next(seq) {
            self.stats.sequence_gaps.fetch_add(1, Ordering::Relaxed);
            warn!(expected, received = seq, "sequence gap from terminal");
        }
    }

    async fn handle(&self, state: &mut Session, envelope: Envelope) -> Result<(), SessionError> {
        match envelope.message {
            Message::Tick(tick) => self.on_tick(state, envelope.seq, tick).await?,
            Message::Ack { client_order_id, ticket } => {
                let known = self.accounts.with(&state.account, |account| {
                    account.in_flight.get_mut(&client_order_id).map(|order| {
                        order.outcome_known = true;
                        order.acked = true;
                        (order.chain_id, order.volume)
                    })
                });
                match known {
                    Some((chain_id, volume)) => {
                        let event = ExecutionEvent::Acked { chain_id, client_order_id, ticket, volume };
                        self.emit(event).await?;
                    }
                    None => warn!(%client_order_id, "ACK for an order not in flight"),
                }
            }
            Message::Reject { client_order_id, retcode, reason } => {
                let order =
                    self.accounts.with(&state.account, |a| a.in_flight.remove(&client_order_id));
                match order {
                    Some(order) => {
                        let chain_id = order.chain_id;
                        let event = ExecutionEvent::Rejected { chain_id, client_order_id, retcode, reason };
                        self.emit(event).await?;
                    }
                    None => warn!(%client_order_id, retcode, "REJECT for an order not in flight"),
                }
            }
            Message::Fill(fill) => self.on_fill(state, fill).await?,
            Message::Bar(_) => {
                self.stats.bars.fetch_add(1, Ordering::Relaxed);
            }
            Message::Heartbeat { .. } => {}
            Message::Account(money) => {
                self.emit(state.account_event(money)).await?;
            }
            // The answer to a SYNC: the books, interleaved with ticks, until SNAPSHOT_END.
            Message::Position(position) if state.sync.is_some() => {
                state.sync.get_or_insert_default().positions.push(position);
            }
            Message::Pending(pending) if state.sync.is_some() => {
                state.sync.get_or_insert_default().pending.push(pending);
            }
            Message::Deal(deal) if state.sync.is_some() => state.sync.get_or_insert_default().deals.push(deal),
            Message::SnapshotEnd if state.sync.is_some() => {
                let books = state.sync.take().unwrap_or_default();
                self.apply_books(state, &books, Books::Sync).await?;
                self.stats.syncs_completed.fetch_add(1, Ordering::Relaxed);
                debug!(positions = books.positions.len(), deals = books.deals.len(), "books reconciled");
            }
            other => {
                return Err(SessionError::Protocol(format!(
                    "unexpected {} from a terminal while streaming",
                    other.type_name()
                )));
            }
        }
        Ok(())
    }

    async fn on_tick(
        &self,
        state: &mut Session,
        seq: u64,
        tick: wire::WireTick,
    ) -> Result<(), SessionError> {
        let received_ns = monotonic_ns();
        let chain_id = self.chain_ids.next_id();
        let symbol = state.canonical(&tick.symbol, &self.config.symbols);
        state.quotes.insert(symbol.clone(), (tick.bid.value, tick.ask.value));
        {
            let mut resume = state.resume.lock();
            let point = resume.entry(tick.symbol).or_default();
            *point = point.advance(tick.time_msc);
        }
        let tick = Tick {
            chain_id,
            symbol,
            time_msc: tick.time_msc,
            bid: tick.bid.value,
            ask: tick.ask.value,
            seq,
            terminal: Arc::clone(&state.terminal),
            received_ns,
        };
        match self.config.backpressure {
            Backpressure::Block => {
                self.outputs.ticks.send(tick).await.map_err(|_| SessionError::PipelineClosed)?;
            }
            Backpressure::DropNewest => match self.outputs.ticks.try_send(tick) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(tick)) => {
                    let dropped = self.stats.ticks_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if dropped.is_power_of_two() {
                        warn!(dropped, symbol = %tick.symbol, "pipeline full; dropping ticks as configured");
                    }
                    return Ok(());
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(SessionError::PipelineClosed),
            },
        }
        self.stats.ticks.fetch_add(1, Ordering::Relaxed);
        let now = monotonic_ns();
        self.chain_log.record(chain_id, Stage::BridgeReceive, received_ns, now - received_ns);
        Ok(())
    }

    async fn on_fill(&self, state: &mut Session, fill: wire::Fill) -> Result<(), SessionError> {
        let chain_id: ChainId = fill.chain_id.parse().map_err(|error| {
            SessionError::Protocol(format!("FILL with invalid chain id: {error}"))
        })?;
        let volume = fill.volume.value;
        let sent_ns = self.accounts.with(&state.account, |account| {
            let order = account.in_flight.get_mut(&fill.client_order_id)?;
            order.outcome_known = true;
            order.filled += volume;
            let sent_ns = order.sent_ns;
            if order.filled >= order.volume - 1e-9 {
                account.in_flight.remove(&fill.client_order_id);
            }
            Some(sent_ns)
        });
        let Some(sent_ns) = sent_ns else {
            warn!(client_order_id = %fill.client_order_id, "FILL for an order not in flight; left to reconciliation");
            return Ok(());
        };
        let now = monotonic_ns();
        self.chain_log.record(chain_id, Stage::Fill, sent_ns, now.saturating_sub(sent_ns));
        let event = ExecutionEvent::Filled(Fill {
            chain_id,
            client_order_id: fill.client_order_id,
            ticket: fill.ticket,
            symbol: state.canonical(&fill.symbol, &self.config.symbols),
            side: match fill.side {
                WireSide::Buy => Side::Buy,
                WireSide::Sell => Side::Sell,
            },
            volume,
            price: fill.price.value,
            time_msc: fill.time_msc,
        });
        self.emit(event).await
    }

    async fn emit(&self, event: ExecutionEvent) -> Result<(), SessionError> {
        self.outputs.events.send(event).await.map_err(|_| SessionError::PipelineClosed)
    }

    async fn send_order<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        state: &mut Session,
        order: OrderRequest,
    ) -> Result<(), SessionError> {
        let start = monotonic_ns();
        let Some(spec) = state.specs.get(&order.symbol) else {
            // Routes are registered from this map, so this is a routing bug, not bad input.
            let reason = format!("session does not trade {}", order.symbol);
            self.router.refuse(order, reason);
            return Ok(());
        };
        let normalized = match normalize(&order, spec, state.quotes.get(&order.symbol).copied()) {
            Ok(normalized) => normalized,
            Err(unfit) => {
                self.stats.orders_refused.fetch_add(1, Ordering::Relaxed);
                self.router.refuse(order, unfit.to_string());
                return Ok(());
            }
        };
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
            volume: normalized.volume,
            price: normalized.price,
            stop_loss: Px::new(0.0, spec.digits),
            take_profit: Px::new(0.0, spec.digits),
        };
        // In flight before the first byte leaves: if the connection dies mid-write, the order's
        // outcome is unknown, not forgotten.
        self.accounts.with(&state.account, |account| {
            account.in_flight.insert(
                order.client_order_id.clone(),
                SentOrder {
                    chain_id: order.chain_id,
                    symbol: order.symbol.clone(),
                    side: order.side,
                    volume: normalized.volume.value,
                    filled: 0.0,
                    sent_ns: start,
                    outcome_known: true,
                    acked: false,
                    session: state.id.clone(),
                },
            );
        });
        state.send(conn, Message::Order(wire)).await?;
        conn.flush().await?;
        mtml_core::crash_point::crash_point(CRASH_AFTER_ORDER_WRITTEN);
        let written = monotonic_ns();
        self.stats.orders_sent.fetch_add(1, Ordering::Relaxed);
        self.chain_log.record(order.chain_id, Stage::BridgeSend, start, written - start);
        if order.origin_received_ns > 0 {
            self.chain_log.record_tick_to_order(written.saturating_sub(order.origin_received_ns));
        }
        debug!(chain_id = %order.chain_id, client_order_id = %order.client_order_id, "order sent");
        Ok(())
    }
}

/// Which books [`Bridge::apply_books`] is applying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Books {
    /// The snapshot of a new connection.
    Connect,
    /// The answer to a SYNC on a streaming connection.
    Sync,
}

/// The orders in a snapshot's deal history, net per client order id, in order of their first
/// deal. Deals without a client order id (trades by hand, other experts) are not mtml's.
fn executed_orders(deals: &[wire::Deal], canonical: impl Fn(&str) -> Symbol) -> Vec<ExecutedOrder> {
    // Per order: the order so far, its volume dealt and its notional.
    let mut orders: Vec<(ExecutedOrder, f64, f64)> = Vec::new();
    let mut index_of: HashMap<&str, usize> = HashMap::new();
    for deal in deals.iter().filter(|d| !d.client_order_id.is_empty()) {
        let index = match index_of.get(deal.client_order_id.as_str()) {
            Some(&index) => index,
            None => {
                index_of.insert(&deal.client_order_id, orders.len());
                let order = ExecutedOrder {
                    client_order_id: deal.client_order_id.clone(),
                    symbol: canonical(&deal.symbol),
                    lots: 0.0,
                    average_price: 0.0,
                    time_msc: deal.time_msc,
                };
                orders.push((order, 0.0, 0.0));
                orders.len() - 1
            }
        };
        let (order, volume, notional) = &mut orders[index];
        order.lots += match deal.side {
            WireSide::Buy => deal.volume.value,
            WireSide::Sell => -deal.volume.value,
        };
        *volume += deal.volume.value;
        *notional += deal.volume.value * deal.price.value;
        order.average_price = *notional / *volume;
        order.time_msc = order.time_msc.max(deal.time_msc);
    }
    orders.into_iter().map(|(order, _, _)| order).collect()
}

/// Marks the orders a session sent and did not settle (and not already marked) as having an
/// unknown outcome; returns them.
fn mark_unknown(in_flight: &mut HashMap<String, SentOrder>, session: &str) -> Vec<(String, ChainId)> {
    let mut marked = Vec::new();
    for (id, order) in in_flight.iter_mut().filter(|(_, o)| o.session == session && o.outcome_known) {
        order.outcome_known = false;
        marked.push((id.clone(), order.chain_id));
    }
    marked.sort();
    marked
}

/// One connection's state.
#[derive(Debug)]
struct Session {
    id: String,
    /// `login@server`.
    account: Arc<str>,
    /// `login@server/session`: ticks' source, unique per connection so that sequence numbers
    /// (which restart with each connection) never collide.
    terminal: Arc<str>,
    /// Incoming messages in sequence order.
    seq: Sequencer<Envelope>,
    out_seq: u64,
    specs: HashMap<Symbol, wire::SymbolSpec>,
    canonical_by_broker: HashMap<String, Symbol>,
    /// Last (bid, ask) per canonical symbol, to check pending order prices.
    quotes: HashMap<Symbol, (f64, f64)>,
    /// Last tick received per broker symbol: the account's map, shared.
    resume: Arc<parking_lot::Mutex<HashMap<String, ResumePoint>>>,
    /// The account's leverage, from the hello.
    leverage: u32,
    /// The books being received in answer to a SYNC, until SNAPSHOT_END.
    sync: Option<Snapshot>,
}

impl Session {
    async fn send<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
        message: Message,
    ) -> Result<(), WireError> {
        self.out_seq += 1;
        conn.write_envelope(&Envelope { seq: self.out_seq, message }).await
    }

    fn account_event(&self, money: wire::AccountInfo) -> ExecutionEvent {
        ExecutionEvent::Account {
            account: Arc::clone(&self.account),
            leverage: self.leverage,
            balance: money.balance.value,
            equity: money.equity.value,
            margin: money.margin.value,
            free_margin: money.free_margin.value,
        }
    }

    fn canonical(&self, broker: &str, mapper: &SymbolMapper) -> Symbol {
        self.canonical_by_broker
            .get(broker)
            .cloned()
            .unwrap_or_else(|| Symbol::new(&mapper.to_canonical(broker)))
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
