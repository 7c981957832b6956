//! The bridge's TCP server: one task per terminal connection.
//!
//! A connection goes through three phases. Hello: version and token are checked, and a refusal
//! names its reason. Snapshot: symbol capabilities, open positions, pending orders and recent
//! deals, until SNAPSHOT_END; orders whose outcome was lost with an earlier connection are settled
//! from it, and the bridge tells the EA where each symbol's tick stream stopped (RESUME) before
//! it says START. Streaming: ticks in, orders out, heartbeats both ways. Bad input from one
//! connection closes that connection with a logged reason; other terminals are unaffected.
//!
//! This file holds the settings, the counters, the shared state and the accept loop; the
//! phases are in `handshake.rs` (hello and snapshot), `session.rs` (the streaming loop, the
//! messages it handles, and a connection's state) and `books.rs` (a snapshot or SYNC answer
//! applied); message order is `crate::sequencer`'s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mtml_core::clock::monotonic_ns;
use mtml_core::{
    ChainId, ChainIdGenerator, ChainLog, ExecutionEvent, Fill, OrderRequest, OrderType,
    Stage, Symbol, Tick,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::accounts::{AccountBook, ResumePoint, SentOrder, Snapshot, close_unknown};
use crate::normalize::normalize;
use crate::sequencer::{Sequenced, Sequencer};
use crate::router::{OrderRouter, Route};
use crate::symbols::SymbolMapper;
use crate::wire::connection::WireError;
use crate::wire::{self, Connection, Envelope, Message, PROTOCOL_VERSION, Px};

mod books;
mod handshake;
mod session;

use books::Books;
use session::{Session, SessionError, mark_unknown};

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

/// TLS of the terminal port: the acceptor built from the server's certificate and key.
#[derive(Clone)]
pub struct TerminalTls(pub tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for TerminalTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TerminalTls")
    }
}

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
    /// Where terminals connecting and being lost are told.
    pub notices: mtml_core::Notices,
    /// Connections served at once; one more is closed at once, and counted.
    pub max_connections: usize,
    /// TLS on the terminal port (the EA's `InpTls` input, MQL5's `SocketTlsHandshake`); `None`
    /// serves plain TCP.
    pub tls: Option<TerminalTls>,
    /// After this many wrong tokens in a row from one address, each further connection from it
    /// waits before its hello is read: 100 ms, doubling, at most 10 s (a guesser gets a few
    /// tries a minute, a terminal with a typo a clear refusal at once).
    pub free_bad_hellos: u32,
    /// Orders a terminal may hold unanswered or pending at once (per account); one more is
    /// refused before it leaves, with the reason, and counted.
    pub max_orders_in_flight: usize,
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
            notices: mtml_core::Notices::default(),
            max_connections: 64,
            tls: None,
            free_bad_hellos: 3,
            max_orders_in_flight: 256,
        }
    }
}

/// Counters of the bridge, readable while it runs.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Terminals streaming right now.
    pub connected: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections closed at once because `max_connections` were being served.
    pub connections_refused: AtomicU64,
    /// Connections whose hello waited because their address kept presenting wrong tokens.
    pub hellos_delayed: AtomicU64,
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
    /// Orders refused before they left (normalisation, no terminal, too many in flight).
    pub orders_refused: AtomicU64,
    /// Of those, orders refused because `max_orders_in_flight` were unanswered or pending.
    pub orders_refused_in_flight: AtomicU64,
    /// Orders whose outcome was lost with a connection, handed to execution with a later
    /// snapshot to settle.
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
    /// Connections being served now.
    open: Arc<AtomicU64>,
    /// Wrong tokens in a row per address, and when the last came.
    bad_hellos: Arc<parking_lot::Mutex<HashMap<std::net::IpAddr, (u32, std::time::Instant)>>>,
}

/// The longest a connection from an address that keeps presenting wrong tokens waits.
const MAX_HELLO_PENALTY: Duration = Duration::from_secs(10);

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
            open: Arc::default(),
            bad_hellos: Arc::default(),
        }
    }

    /// How long a new connection from `ip` waits before its hello is read.
    fn hello_penalty(&self, ip: std::net::IpAddr) -> Duration {
        let failures = self.bad_hellos.lock().get(&ip).map_or(0, |(n, _)| *n);
        match failures.checked_sub(self.config.free_bad_hellos) {
            None => Duration::ZERO,
            Some(over) => Duration::from_millis(100).saturating_mul(1 << over.min(10)).min(MAX_HELLO_PENALTY),
        }
    }

    /// Remembers how a hello from `ip` went: a wrong token counts, a good one forgets.
    fn hello_outcome(&self, ip: std::net::IpAddr, bad_token: bool) {
        let mut seen = self.bad_hellos.lock();
        if bad_token {
            let now = std::time::Instant::now();
            // Addresses quiet for ten minutes are forgotten, so the table stays small.
            seen.retain(|_, (_, last)| now.duration_since(*last) < Duration::from_secs(600));
            let entry = seen.entry(ip).or_insert((0, now));
            *entry = (entry.0.saturating_add(1), now);
        } else {
            seen.remove(&ip);
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
                        if self.open.load(Ordering::Relaxed) >= self.config.max_connections as u64 {
                            self.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                            warn!(%peer, limit = self.config.max_connections, "connection refused: the bridge serves its maximum of connections (bridge.max_connections)");
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        let bridge = self.clone();
                        let shutdown = shutdown.clone();
                        let session = bridge.next_session();
                        let span = info_span!("terminal", %session, %peer);
                        let penalty = self.hello_penalty(peer.ip());
                        self.stats.hellos_delayed.fetch_add(u64::from(!penalty.is_zero()), Ordering::Relaxed);
                        self.open.fetch_add(1, Ordering::Relaxed);
                        tracker.spawn(
                            async move {
                                if !penalty.is_zero() {
                                    warn!(?penalty, "this address presented wrong tokens; its hello waits");
                                    tokio::select! {
                                        () = tokio::time::sleep(penalty) => {}
                                        () = shutdown.cancelled() => {}
                                    }
                                }
                                let bad_token = match bridge.config.tls.clone() {
                                    None => bridge.serve(Connection::new(stream), session, shutdown).await,
                                    // The handshake counts against the hello's time.
                                    Some(tls) => match tokio::time::timeout(bridge.config.hello_timeout, tls.0.accept(stream)).await {
                                        Ok(Ok(stream)) => bridge.serve(Connection::new(stream), session, shutdown).await,
                                        Ok(Err(error)) => {
                                            bridge.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                                            warn!(%error, "TLS handshake failed (plain text to the TLS port, or an EA without InpTls)");
                                            false
                                        }
                                        Err(_) => {
                                            bridge.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                                            warn!("no TLS handshake in time");
                                            false
                                        }
                                    },
                                };
                                bridge.hello_outcome(peer.ip(), bad_token);
                                bridge.open.fetch_sub(1, Ordering::Relaxed);
                            }
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
}
