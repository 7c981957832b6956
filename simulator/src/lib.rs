//! A MetaTrader 5 terminal simulator that speaks the EA's exact protocol.
//!
//! It is the stand-in for the EA where no terminal exists (the replay demo, the tests). Like the
//! EA it says hello, reports symbol capabilities and a snapshot (positions, pending orders, recent
//! deals, its account's money), answers SYNC with its books again, resumes its tick streams where
//! the bridge says they stopped, streams ticks with sequence numbers, executes orders at its
//! current quote (market orders at once, limit and stop orders when the price reaches them), acks
//! each order, answers a repeated client order id with the original ack instead of executing
//! again, and reports fills, split into partial fills when configured. Its state survives reconnects, as the EA's journal does; faults can be injected to
//! test the bridge (a connection that dies mid-frame, an answer that never comes).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use mtml_bridge::accounts::ResumePoint;
use mtml_bridge::wire::connection::WireError;
use mtml_bridge::wire::{
    AccountInfo, AccountMode, Connection, Deal, Envelope, Hello, MarginMode, Message, PROTOCOL_VERSION,
    PendingOrder, Position, Px, SymbolSpec, WireSide, WireTick,
};

/// Keeps the simulator at most `max_ahead` ticks ahead of a consumer's progress counter.
///
/// A live terminal sends ticks as the market makes them, so the pipeline is never far behind and
/// a fill travels back quickly. A replay sends as fast as it can; without pacing, thousands of
/// ticks would queue in the socket ahead of every fill, and orders would be filled at prices
/// long gone.
#[derive(Debug, Clone)]
pub struct Pacing {
    /// Ticks the consumer has finished with.
    pub processed: Arc<AtomicU64>,
    /// Notified when `processed` advances.
    pub advanced: Arc<Notify>,
    /// How many ticks may be sent and not yet processed.
    pub max_ahead: u64,
}

impl Pacing {
    async fn wait_for_room(&self, sent: u64) {
        loop {
            let advanced = self.advanced.notified();
            tokio::pin!(advanced);
            advanced.as_mut().enable();
            if sent.saturating_sub(self.processed.load(Ordering::Acquire)) < self.max_ahead {
                return;
            }
            advanced.await;
        }
    }
}

/// A symbol as the simulated broker offers it.
#[derive(Debug, Clone)]
pub struct SimSymbol {
    /// Broker name, suffix included.
    pub name: String,
    /// Price digits.
    pub digits: u8,
}

impl SimSymbol {
    fn spec(&self) -> SymbolSpec {
        SymbolSpec {
            name: self.name.clone(),
            digits: self.digits,
            point: Px::new(10f64.powi(-i32::from(self.digits)), self.digits),
            volume_min: Px::new(0.01, 2),
            volume_step: Px::new(0.01, 2),
            volume_max: Px::new(100.0, 2),
            stops_level: 0,
            freeze_level: 0,
            filling_modes: 3,
            trade_mode: 4,
        }
    }
}

/// In a replay, orders fill in market time from `ORDER`'s `time_msc`, so that the fills do not
/// depend on how far the simulator has streamed when an order arrives; an order that carries no
/// market time fills at the current quote.
pub use mtml_core::MarketTimeFills;

/// Who the simulated terminal is and how it behaves.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Token presented in the hello.
    pub token: String,
    /// Protocol version presented in the hello.
    pub version: u32,
    /// Account login.
    pub login: u64,
    /// Trade server name.
    pub server: String,
    /// Symbols streamed.
    pub symbols: Vec<SimSymbol>,
    /// Largest volume of one deal; larger orders fill in several partial fills.
    pub max_fill_volume: Option<f64>,
    /// Flow control against the consumer's progress; `None` sends as fast as the socket takes.
    pub pacing: Option<Pacing>,
    /// At most this many ticks per second, as a live feed sends them; for a consumer in another
    /// process, whose progress [`Pacing`] cannot see.
    pub ticks_per_second: Option<u32>,
    /// Account balance reported in ACCOUNT, account currency.
    pub balance: f64,
    /// Fills in market time (a replay); `None` fills at the quote streamed last, as a live
    /// terminal fills at the market of the moment.
    pub market_time: Option<MarketTimeFills>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            token: String::new(),
            version: PROTOCOL_VERSION,
            login: 5_000_001,
            server: "mtml-sim".into(),
            symbols: vec![SimSymbol { name: "EURUSD".into(), digits: 5 }],
            max_fill_volume: None,
            pacing: None,
            ticks_per_second: None,
            balance: 10_000.0,
            market_time: None,
        }
    }
}

/// A fault to inject into one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// None.
    #[default]
    None,
    /// After sending this many ticks on the connection, write half a frame and drop the
    /// connection, as a terminal killed mid-write does.
    DieAfterTicks(u64),
    /// Execute the first order received, then drop the connection before answering: the bridge
    /// never learns the outcome on this connection.
    DieOnOrder,
    /// Execute the first order received and never answer it, keeping the connection (as an EA
    /// whose answer was lost to a bug would): only the books settle it.
    SilentOnOrder,
    /// Number the tick after this many ticks on the connection but do not send it (as a buggy
    /// or overloaded sender might): the bridge sees a gap and asks for it with RESEND.
    WithholdTick(u64),
    /// Reject every order with TRADE_RETCODE_REJECT (10006), as a broker refusing the account's
    /// trades does.
    RejectOrders,
}

/// One quote to stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SimTick {
    /// Broker symbol.
    pub symbol: String,
    /// UTC epoch milliseconds.
    pub time_msc: i64,
    /// Bid.
    pub bid: f64,
    /// Ask.
    pub ask: f64,
}

/// A deal the simulator executed.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDeal {
    /// Client order id of the order.
    pub client_order_id: String,
    /// Chain id the order carried.
    pub chain_id: String,
    /// Broker symbol.
    pub symbol: String,
    /// Signed lots: positive for a buy.
    pub signed_volume: f64,
    /// Deal price.
    pub price: f64,
    /// Order ticket.
    pub ticket: u64,
    /// Deal ticket.
    pub deal: u64,
    /// Deal time (the quote's time).
    pub time_msc: i64,
}

/// What happened during a simulated session.
#[derive(Debug, Default, Clone)]
pub struct SimulatorReport {
    /// Ticks written to the bridge (a tick cut by [`Fault::DieAfterTicks`] is not counted).
    pub ticks_sent: u64,
    /// ORDER frames received, duplicates included.
    pub orders_received: u64,
    /// Orders received again with an id already executed; acked, never executed twice.
    pub duplicate_orders: u64,
    /// Every deal, in order.
    pub deals: Vec<SimDeal>,
    /// Net position per broker symbol, lots.
    pub positions: HashMap<String, f64>,
    /// Why the bridge refused the hello, if it did.
    pub refused: Option<String>,
    /// Connections made.
    pub connections: u64,
    /// RESEND requests answered.
    pub resend_requests: u64,
    /// SYNC requests answered with the books.
    pub syncs_answered: u64,
}

/// Why the simulator stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// The connection failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The bridge did not follow the protocol.
    #[error("bridge protocol violation: {0}")]
    Protocol(String),
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// Every tick was sent and `stop` was cancelled.
    Stopped,
    /// The bridge closed the connection.
    ClosedByBridge,
    /// The bridge refused the hello.
    Refused,
    /// An injected fault ended it.
    Faulted,
}

/// Runs a simulated terminal over one connection: handshake, then streams `ticks` while executing
/// orders, then keeps executing orders until `stop` is cancelled or the bridge closes the
/// connection.
pub async fn run_simulator<S, I>(
    stream: S,
    config: SimulatorConfig,
    ticks: I,
    stop: CancellationToken,
) -> Result<SimulatorReport, SimulatorError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: IntoIterator<Item = SimTick>,
{
    run_simulator_with_fault(stream, config, ticks, Fault::None, stop).await
}

/// [`run_simulator`] with a fault injected into its connection.
pub async fn run_simulator_with_fault<S, I>(
    stream: S,
    config: SimulatorConfig,
    ticks: I,
    fault: Fault,
    stop: CancellationToken,
) -> Result<SimulatorReport, SimulatorError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: IntoIterator<Item = SimTick>,
{
    let mut terminal = TerminalSimulator::new(config, ticks);
    terminal.connect(stream, fault, &stop).await?;
    Ok(terminal.into_report())
}

#[derive(Debug, Clone)]
struct Pending {
    ticket: u64,
    order: mtml_bridge::wire::Order,
}

/// A simulated terminal whose account state (positions, deals, executed client order ids, where
/// each tick stream stands) survives reconnects.
#[derive(Debug)]
pub struct TerminalSimulator {
    config: SimulatorConfig,
    ticks: Vec<SimTick>,
    /// (time, which tick of that millisecond) of each tick, per its symbol.
    points: Vec<ResumePoint>,
    next: usize,
    report: SimulatorReport,
    quotes: HashMap<String, (f64, f64, i64)>,
    /// Client order id to ticket, so that a resent order is acked, not executed again.
    executed: HashMap<String, u64>,
    pending: Vec<Pending>,
    /// Open position per symbol: (first ticket, average price, client order id that opened it).
    position_info: HashMap<String, (u64, f64, String)>,
    next_ticket: u64,
    /// Per symbol, the last tick the bridge said it has: ticks up to it are not sent again.
    skip_delivered: HashMap<String, ResumePoint>,
}

impl TerminalSimulator {
    /// A terminal that will stream `ticks`.
    pub fn new(config: SimulatorConfig, ticks: impl IntoIterator<Item = SimTick>) -> Self {
        let ticks: Vec<SimTick> = ticks.into_iter().collect();
        let mut last: HashMap<&str, ResumePoint> = HashMap::new();
        let points = ticks
            .iter()
            .map(|t| {
                let point = last.entry(&t.symbol).or_default().advance(t.time_msc);
                last.insert(&t.symbol, point);
                point
            })
            .collect();
        Self {
            config,
            ticks,
            points,
            next: 0,
            report: SimulatorReport::default(),
            quotes: HashMap::new(),
            executed: HashMap::new(),
            pending: Vec::new(),
            position_info: HashMap::new(),
            next_ticket: 1_000,
            skip_delivered: HashMap::new(),
        }
    }

    /// What happened so far.
    pub fn report(&self) -> &SimulatorReport {
        &self.report
    }

    /// The final report.
    pub fn into_report(self) -> SimulatorReport {
        self.report
    }

    /// True when every tick has been sent.
    pub fn finished_streaming(&self) -> bool {
        self.next >= self.ticks.len()
    }

    /// Serves one connection until it ends.
    pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: S,
        fault: Fault,
        stop: &CancellationToken,
    ) -> Result<ConnectionEnd, SimulatorError> {
        self.report.connections += 1;
        let mut link =
            Link {
                conn: Connection::new(stream),
                seq: 0,
                fault,
                ticks_on_link: 0,
                queued: Vec::new(),
                ring: Default::default(),
            };
        if !self.handshake(&mut link).await? {
            return Ok(ConnectionEnd::Refused);
        }
        let pacing = self.config.pacing.clone();
        while !self.finished_streaming() && !stop.is_cancelled() {
            // Execute orders while waiting: a fill must not wait for the pipeline to catch up.
            if let Some(pacing) = &pacing
                && let Some(end) = self.serve_while(&mut link, pacing.wait_for_room(self.report.ticks_sent)).await?
            {
                return Ok(end);
            }
            if let Some(rate) = self.config.ticks_per_second {
                // One batch of 16 ticks per 16/rate seconds.
                let pause = tokio::time::sleep(std::time::Duration::from_secs_f64(16.0 / f64::from(rate.max(1))));
                if let Some(end) = self.serve_while(&mut link, pause).await? {
                    return Ok(end);
                }
            }
            let batch = match (&pacing, self.config.ticks_per_second) {
                (Some(p), _) => p.max_ahead.clamp(1, 64) as usize,
                (None, Some(_)) => 16,
                (None, None) => 64,
            };
            if let Some(end) = self.send_ticks(&mut link, batch).await? {
                return Ok(end);
            }
            // Execute whatever orders have arrived meanwhile, without waiting for more.
            loop {
                tokio::select! {
                    biased;
                    read = link.conn.read_envelope() => match read? {
                        Some(envelope) => {
                            if let Some(end) = self.handle(&mut link, envelope).await? {
                                return Ok(end);
                            }
                        }
                        None => return Ok(ConnectionEnd::ClosedByBridge),
                    },
                    () = std::future::ready(()) => break,
                }
            }
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(ConnectionEnd::Stopped),
                read = link.conn.read_envelope() => {
                    let Some(envelope) = read? else { return Ok(ConnectionEnd::ClosedByBridge) };
                    if let Some(end) = self.handle(&mut link, envelope).await? {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// Handles what the bridge sends (orders above all) until `wait` completes.
    async fn serve_while<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        link: &mut Link<S>,
        wait: impl std::future::Future<Output = ()>,
    ) -> Result<Option<ConnectionEnd>, SimulatorError> {
        tokio::pin!(wait);
        loop {
            tokio::select! {
                biased;
                () = &mut wait => return Ok(None),
                read = link.conn.read_envelope() => match read? {
                    Some(envelope) => {
                        if let Some(end) = self.handle(link, envelope).await? {
                            return Ok(Some(end));
                        }
                    }
                    None => return Ok(Some(ConnectionEnd::ClosedByBridge)),
                },
            }
        }
    }

    /// Returns false when the bridge refused the hello.
    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        link: &mut Link<S>,
    ) -> Result<bool, SimulatorError> {
        let hello = Hello {
            version: self.config.version,
            token: self.config.token.clone(),
            terminal: "mtml terminal simulator".into(),
            build: 5000,
            login: self.config.login,
            server: self.config.server.clone(),
            currency: "USD".into(),
            leverage: 100,
            mode: AccountMode::Demo,
            margin_mode: MarginMode::Netting,
        };
        link.send(Message::Hello(hello)).await?;
        link.conn.flush().await?;
        match link.conn.read_envelope().await?.map(|e| e.message) {
            Some(Message::Welcome { .. }) => {}
            Some(Message::Refused { code, reason }) => {
                self.report.refused = Some(format!("{code}: {reason}"));
                return Ok(false);
            }
            other => {
                return Err(SimulatorError::Protocol(format!("expected WELCOME, got {other:?}")));
            }
        }
        for symbol in self.config.symbols.clone() {
            link.send(Message::Symbol(symbol.spec())).await?;
        }
        for message in self.snapshot() {
            link.send(message).await?;
        }
        link.send(Message::SnapshotEnd).await?;
        link.conn.flush().await?;
        let mut resume: HashMap<String, ResumePoint> = HashMap::new();
        loop {
            match link.conn.read_envelope().await?.map(|e| e.message) {
                Some(Message::Resume { symbol, time_msc, count }) => {
                    resume.insert(symbol, ResumePoint { time_msc, count });
                }
                Some(Message::Start) => break,
                Some(Message::Heartbeat { .. }) => {}
                other => {
                    return Err(SimulatorError::Protocol(format!("expected RESUME or START, got {other:?}")));
                }
            }
        }
        // Resume right after the last tick the bridge has of each symbol; a symbol it has nothing
        // of starts from the first tick not yet sent.
        let delivered = |i: usize| {
            resume.get(&self.ticks[i].symbol).is_some_and(|r| {
                let p = self.points[i];
                (p.time_msc, p.count) <= (r.time_msc, r.count)
            })
        };
        let first_undelivered = (0..self.ticks.len()).find(|&i| !delivered(i)).unwrap_or(self.ticks.len());
        self.next = if resume.is_empty() { self.next } else { first_undelivered };
        self.skip_delivered = resume;
        Ok(true)
    }

    /// The account's money: margin at 1:100 on the open positions; equity is the balance (the
    /// simulator does not mark positions to market).
    fn account_info(&self) -> AccountInfo {
        let margin: f64 = self
            .report
            .positions
            .iter()
            .map(|(symbol, lots)| {
                let price = self.position_info.get(symbol).map_or(0.0, |info| info.1);
                lots.abs() * 100_000.0 * price / 100.0
            })
            .sum();
        let balance = self.config.balance;
        AccountInfo {
            balance: Px::new(balance, 2),
            equity: Px::new(balance, 2),
            margin: Px::new(margin, 2),
            free_margin: Px::new(balance - margin, 2),
        }
    }

    fn snapshot(&self) -> Vec<Message> {
        let mut messages = Vec::new();
        let mut symbols: Vec<&String> = self.report.positions.keys().collect();
        symbols.sort();
        for symbol in symbols {
            let lots = self.report.positions[symbol];
            if lots.abs() < 1e-9 {
                continue;
            }
            let (ticket, price, client_order_id) = self.position_info[symbol].clone();
            messages.push(Message::Position(Position {
                ticket,
                symbol: symbol.clone(),
                side: if lots > 0.0 { WireSide::Buy } else { WireSide::Sell },
                volume: Px::new(lots.abs(), 2),
                price: Px::new(price, self.digits(symbol)),
                client_order_id,
            }));
        }
        for pending in &self.pending {
            let o = &pending.order;
            messages.push(Message::Pending(PendingOrder {
                ticket: pending.ticket,
                symbol: o.symbol.clone(),
                side: o.side,
                order_type: o.order_type.clone(),
                volume: o.volume,
                price: o.price,
                client_order_id: o.client_order_id.clone(),
            }));
        }
        for deal in &self.report.deals {
            messages.push(Message::Deal(Deal {
                deal: deal.deal,
                ticket: deal.ticket,
                symbol: deal.symbol.clone(),
                side: if deal.signed_volume > 0.0 { WireSide::Buy } else { WireSide::Sell },
                volume: Px::new(deal.signed_volume.abs(), 2),
                price: Px::new(deal.price, self.digits(&deal.symbol)),
                time_msc: deal.time_msc,
                client_order_id: deal.client_order_id.clone(),
            }));
        }
        messages.push(Message::Account(self.account_info()));
        messages
    }

    async fn send_ticks<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        link: &mut Link<S>,
        batch: usize,
    ) -> Result<Option<ConnectionEnd>, SimulatorError> {
        let mut sent = 0;
        while sent < batch && self.next < self.ticks.len() {
            let index = self.next;
            self.next += 1;
            let tick = self.ticks[index].clone();
            if let Some(r) = self.skip_delivered.get(&tick.symbol) {
                let p = self.points[index];
                if (p.time_msc, p.count) <= (r.time_msc, r.count) {
                    continue;
                }
            }
            let digits = self.digits(&tick.symbol);
            self.quotes.insert(tick.symbol.clone(), (tick.bid, tick.ask, tick.time_msc));
            let wire = WireTick {
                symbol: tick.symbol.clone(),
                time_msc: tick.time_msc,
                bid: Px::new(tick.bid, digits),
                ask: Px::new(tick.ask, digits),
            };
            if link.fault == Fault::DieAfterTicks(link.ticks_on_link) {
                // Half a frame, then the socket goes away: this tick never arrives.
                link.seq += 1;
                let body = Envelope { seq: link.seq, message: Message::Tick(wire) }.encode();
                let mut frame = (body.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(&body[..body.len() / 2]);
                let _ = link.conn.write_raw(&frame).await;
                self.next = index;
                return Ok(Some(ConnectionEnd::Faulted));
            }
            if link.fault == Fault::WithholdTick(link.ticks_on_link) {
                link.fault = Fault::None;
                link.withhold(Message::Tick(wire));
            } else {
                link.send(Message::Tick(wire)).await?;
            }
            link.ticks_on_link += 1;
            self.report.ticks_sent += 1;
            sent += 1;
            if let Some(end) = self.trigger_pending(link, &tick).await? {
                return Ok(Some(end));
            }
        }
        link.conn.flush().await?;
        Ok(None)
    }

    fn digits(&self, symbol: &str) -> u8 {
        self.config.symbols.iter().find(|s| s.name == symbol).map_or(5, |s| s.digits)
    }

    async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        link: &mut Link<S>,
        envelope: Envelope,
    ) -> Result<Option<ConnectionEnd>, SimulatorError> {
        match envelope.message {
            Message::Order(order) => return self.on_order(link, order).await,
            Message::Sync => {
                // The books again, as in the snapshot, between the ticks.
                self.report.syncs_answered += 1;
                for message in self.snapshot() {
                    link.send(message).await?;
                }
                link.send(Message::SnapshotEnd).await?;
                link.conn.flush().await?;
            }
            Message::Cancel { client_order_id, ticket, .. } => {
                let before = self.pending.len();
                self.pending.retain(|p| p.ticket != ticket);
                let reply = if self.pending.len() < before {
                    Message::Ack { client_order_id, ticket }
                } else {
                    // TRADE_RETCODE_INVALID_ORDER.
                    Message::Reject { client_order_id, retcode: 10035, reason: format!("no pending order {ticket}") }
                };
                link.send(reply).await?;
                link.conn.flush().await?;
            }
            Message::Modify { client_order_id, ticket, .. } => {
                link.send(Message::Ack { client_order_id, ticket }).await?;
                link.conn.flush().await?;
            }
            Message::Close { client_order_id, chain_id, ticket, volume } => {
                let symbol = self
                    .position_info
                    .iter()
                    .find(|(_, info)| info.0 == ticket)
                    .map(|(symbol, _)| symbol.clone());
                let Some(symbol) = symbol else {
                    link.send(Message::Reject { client_order_id, retcode: 10036, reason: format!("position {ticket} is closed") }).await?;
                    link.conn.flush().await?;
                    return Ok(None);
                };
                let lots = self.report.positions.get(&symbol).copied().unwrap_or(0.0);
                let side = if lots > 0.0 { WireSide::Sell } else { WireSide::Buy };
                let order = mtml_bridge::wire::Order {
                    client_order_id,
                    chain_id,
                    symbol,
                    side,
                    order_type: "MARKET".into(),
                    volume: Px::new(volume.value.min(lots.abs()), volume.decimals),
                    price: Px::new(0.0, 5),
                    stop_loss: Px::new(0.0, 5),
                    take_profit: Px::new(0.0, 5),
                    // An operator's close: at the market of the moment.
                    time_msc: 0,
                };
                return self.on_order(link, order).await;
            }
            Message::Resend { from, to } => {
                self.report.resend_requests += 1;
                link.resend(from, to).await?;
            }
            Message::Heartbeat { .. } => {}
            other => {
                return Err(SimulatorError::Protocol(format!(
                    "unexpected {} from the bridge",
                    other.type_name()
                )));
            }
        }
        Ok(None)
    }

    async fn on_order<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        link: &mut Link<S>,
        order: mtml_bridge::wire::Order,
    ) -> Result<Option<ConnectionEnd>, SimulatorError> {
        self.report.orders_received += 1;
        if let Some(&ticket) = self.executed.get(&order.client_order_id) {
            self.report.duplicate_orders += 1;
            link.send(Message::Ack { client_order_id: order.client_order_id, ticket }).await?;
            link.conn.flush().await?;
            return Ok(None);
        }
        if link.fault == Fault::RejectOrders {
            let reply = Message::Reject { client_order_id: order.client_order_id, retcode: 10006, reason: "request rejected (fault injected)".into() };
            link.send(reply).await?;
            link.conn.flush().await?;
            return Ok(None);
        }
        let Some((bid, ask, quote_msc)) = self.fill_quote(&order) else {
            // TRADE_RETCODE_MARKET_CLOSED: no quote for the symbol (yet, or any more).
            let reply = Message::Reject {
                client_order_id: order.client_order_id,
                retcode: 10018,
                reason: match self.config.market_time {
                    Some(_) if order.time_msc > 0 => format!("no quote for {} after {}: the replay ended", order.symbol, order.time_msc),
                    _ => format!("no quote for {}", order.symbol),
                },
            };
            link.send(reply).await?;
            link.conn.flush().await?;
            return Ok(None);
        };
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.executed.insert(order.client_order_id.clone(), ticket);
        if order.order_type != "MARKET" {
            self.pending.push(Pending { ticket, order: order.clone() });
            link.send(Message::Ack { client_order_id: order.client_order_id, ticket }).await?;
            link.conn.flush().await?;
            return Ok(None);
        }
        let fills = self.config.market_time.unwrap_or(MarketTimeFills { latency_ms: 0, slippage_points: 0.0 });
        let price = fills.price(order.side == WireSide::Buy, bid, ask, self.digits(&order.symbol));
        if link.fault == Fault::DieOnOrder {
            // Executed at the trade server, but the answer never leaves.
            self.execute(&order, ticket, (price, quote_msc), None::<&mut Link<S>>);
            return Ok(Some(ConnectionEnd::Faulted));
        }
        if link.fault == Fault::SilentOnOrder {
            link.fault = Fault::None;
            self.execute(&order, ticket, (price, quote_msc), None::<&mut Link<S>>);
            return Ok(None);
        }
        link.send(Message::Ack { client_order_id: order.client_order_id.clone(), ticket }).await?;
        self.execute(&order, ticket, (price, quote_msc), Some(link));
        link.flush_pending().await?;
        Ok(None)
    }

    /// The (bid, ask, time) an order fills at: in market time (see [`MarketTimeFills`]) when
    /// configured and the order carries its time, else the quote streamed last.
    fn fill_quote(&self, order: &mtml_bridge::wire::Order) -> Option<(f64, f64, i64)> {
        match self.config.market_time {
            Some(fills) if order.time_msc > 0 => {
                let first = self.ticks.partition_point(|t| t.time_msc < fills.due_ms(order.time_msc));
                self.ticks[first..]
                    .iter()
                    .find(|t| t.symbol == order.symbol && MarketTimeFills::fillable(t.bid, t.ask))
                    .map(|t| (t.bid, t.ask, t.time_msc))
            }
            _ => self.quotes.get(&order.symbol).copied(),
        }
    }

    async fn trigger_pending<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        link: &mut Link<S>,
        tick: &SimTick,
    ) -> Result<Option<ConnectionEnd>, SimulatorError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let triggered: Vec<Pending> = {
            let (hit, keep): (Vec<Pending>, Vec<Pending>) =
                self.pending.drain(..).partition(|p| {
                    let o = &p.order;
                    o.symbol == tick.symbol
                        && match (o.side, o.order_type.as_str()) {
                            (WireSide::Buy, "LIMIT") => tick.ask <= o.price.value,
                            (WireSide::Buy, _) => tick.ask >= o.price.value,
                            (WireSide::Sell, "LIMIT") => tick.bid >= o.price.value,
                            (WireSide::Sell, _) => tick.bid <= o.price.value,
                        }
                });
            self.pending = keep;
            hit
        };
        if triggered.is_empty() {
            return Ok(None);
        }
        for pending in triggered {
            let price = match pending.order.side {
                WireSide::Buy => tick.ask,
                WireSide::Sell => tick.bid,
            };
            self.execute(&pending.order, pending.ticket, (price, tick.time_msc), Some(link));
        }
        link.flush_pending().await?;
        Ok(None)
    }

    /// Books the order's deals; with a link, queues FILL frames on it.
    fn execute<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        order: &mtml_bridge::wire::Order,
        ticket: u64,
        (price, time_msc): (f64, i64),
        mut link: Option<&mut Link<S>>,
    ) {
        let digits = self.digits(&order.symbol);
        let sign = match order.side {
            WireSide::Buy => 1.0,
            WireSide::Sell => -1.0,
        };
        let chunk = self.config.max_fill_volume.unwrap_or(f64::INFINITY);
        let mut remaining = order.volume.value;
        while remaining > 1e-9 {
            let volume = ((remaining.min(chunk)) * 100.0).round() / 100.0;
            remaining -= volume;
            let deal = ticket * 10 + self.report.deals.iter().filter(|d| d.ticket == ticket).count() as u64;
            let before = self.report.positions.get(&order.symbol).copied().unwrap_or(0.0);
            let after = before + sign * volume;
            self.report.positions.insert(order.symbol.clone(), after);
            let info = self.position_info.entry(order.symbol.clone()).or_insert((ticket, price, order.client_order_id.clone()));
            if before.abs() < 1e-9 || before.signum() != after.signum() {
                *info = (ticket, price, order.client_order_id.clone());
            } else if after.abs() > before.abs() {
                info.1 = (info.1 * before.abs() + price * volume) / after.abs();
            }
            self.report.deals.push(SimDeal {
                client_order_id: order.client_order_id.clone(),
                chain_id: order.chain_id.clone(),
                symbol: order.symbol.clone(),
                signed_volume: sign * volume,
                price,
                ticket,
                deal,
                time_msc,
            });
            if let Some(link) = link.as_deref_mut() {
                link.queued.push(Message::Fill(mtml_bridge::wire::Fill {
                    client_order_id: order.client_order_id.clone(),
                    chain_id: order.chain_id.clone(),
                    ticket,
                    deal,
                    symbol: order.symbol.clone(),
                    side: order.side,
                    volume: Px::new(volume, order.volume.decimals),
                    price: Px::new(price, digits),
                    time_msc,
                }));
            }
        }
    }
}

/// Frames kept for RESEND, as the EA keeps them.
const RING: usize = 4096;

struct Link<S> {
    conn: Connection<S>,
    seq: u64,
    fault: Fault,
    ticks_on_link: u64,
    queued: Vec<Message>,
    ring: std::collections::VecDeque<Envelope>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link<S> {
    fn remember(&mut self, envelope: Envelope) {
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back(envelope);
    }

    async fn send(&mut self, message: Message) -> Result<(), WireError> {
        self.seq += 1;
        let envelope = Envelope { seq: self.seq, message };
        self.conn.write_envelope(&envelope).await?;
        self.remember(envelope);
        Ok(())
    }

    /// Numbers a message and keeps it for RESEND without sending it.
    fn withhold(&mut self, message: Message) {
        self.seq += 1;
        let envelope = Envelope { seq: self.seq, message };
        self.remember(envelope);
    }

    /// Sends again the kept frames `from..=to`, with their original sequence numbers.
    async fn resend(&mut self, from: u64, to: u64) -> Result<(), WireError> {
        let frames: Vec<Envelope> =
            self.ring.iter().filter(|e| (from..=to).contains(&e.seq)).cloned().collect();
        for envelope in &frames {
            self.conn.write_envelope(envelope).await?;
        }
        self.conn.flush().await
    }

    async fn flush_pending(&mut self) -> Result<(), WireError> {
        for message in std::mem::take(&mut self.queued) {
            self.send(message).await?;
        }
        self.conn.flush().await
    }
}
