//! A MetaTrader 5 terminal simulator that speaks the EA's exact protocol.
//!
//! It is the stand-in for the EA where no terminal exists (the replay demo, the tests): it says
//! hello, reports symbol capabilities and an empty snapshot, streams ticks with sequence numbers,
//! and executes the orders it receives at its current quote, acking each, refusing duplicates of a
//! client order id, and reporting fills (split into partial fills when configured).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::wire::connection::WireError;
use crate::wire::{
    AccountMode, Connection, Envelope, Hello, MarginMode, Message, PROTOCOL_VERSION, Px,
    SymbolSpec, WireSide, WireTick,
};

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

/// Who the simulated terminal is.
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
        }
    }
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
}

/// What happened during a simulated session.
#[derive(Debug, Default, Clone)]
pub struct SimulatorReport {
    /// Ticks written to the bridge.
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

/// Runs a simulated terminal on `stream`: handshake, then streams `ticks` while executing orders,
/// then keeps executing orders until `stop` is cancelled or the bridge closes the connection.
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
    let mut sim = Simulator {
        conn: Connection::new(stream),
        config,
        seq: 0,
        report: SimulatorReport::default(),
        quotes: HashMap::new(),
        executed: HashMap::new(),
        next_ticket: 1_000,
    };
    if !sim.handshake().await? {
        return Ok(sim.report);
    }
    let mut ticks = ticks.into_iter().peekable();
    let pacing = sim.config.pacing.clone();
    while ticks.peek().is_some() && !stop.is_cancelled() {
        if let Some(pacing) = &pacing {
            // Execute orders while waiting: a fill must not wait for the pipeline to catch up.
            let room = pacing.wait_for_room(sim.report.ticks_sent);
            tokio::pin!(room);
            loop {
                tokio::select! {
                    biased;
                    () = &mut room => break,
                    read = sim.conn.read_envelope() => match read? {
                        Some(envelope) => sim.handle(envelope).await?,
                        None => return Ok(sim.report),
                    },
                }
            }
        }
        let batch = pacing.as_ref().map_or(64, |p| p.max_ahead.clamp(1, 64)) as usize;
        sim.send_ticks(&mut ticks, batch).await?;
        // Execute whatever orders have arrived meanwhile, without waiting for more.
        loop {
            tokio::select! {
                biased;
                read = sim.conn.read_envelope() => match read? {
                    Some(envelope) => sim.handle(envelope).await?,
                    None => return Ok(sim.report),
                },
                () = std::future::ready(()) => break,
            }
        }
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            read = sim.conn.read_envelope() => {
                let Some(envelope) = read? else { break };
                sim.handle(envelope).await?;
            }
        }
    }
    Ok(sim.report)
}

struct Simulator<S> {
    conn: Connection<S>,
    config: SimulatorConfig,
    seq: u64,
    report: SimulatorReport,
    quotes: HashMap<String, (f64, f64, i64)>,
    /// Client order id to ticket, so that a resent order is acked, not executed again.
    executed: HashMap<String, u64>,
    next_ticket: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Simulator<S> {
    async fn send(&mut self, message: Message) -> Result<(), WireError> {
        self.seq += 1;
        self.conn.write_envelope(&Envelope { seq: self.seq, message }).await
    }

    /// Returns false when the bridge refused the hello.
    async fn handshake(&mut self) -> Result<bool, SimulatorError> {
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
        self.send(Message::Hello(hello)).await?;
        self.conn.flush().await?;
        let reply = self.conn.read_envelope().await?;
        match reply.map(|e| e.message) {
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
            self.send(Message::Symbol(symbol.spec())).await?;
        }
        self.send(Message::SnapshotEnd).await?;
        self.conn.flush().await?;
        Ok(true)
    }

    async fn send_ticks<I: Iterator<Item = SimTick>>(
        &mut self,
        ticks: &mut std::iter::Peekable<I>,
        batch: usize,
    ) -> Result<(), SimulatorError> {
        for tick in ticks.by_ref().take(batch) {
            let digits = self.digits(&tick.symbol);
            self.quotes.insert(tick.symbol.clone(), (tick.bid, tick.ask, tick.time_msc));
            let wire = WireTick {
                symbol: tick.symbol,
                time_msc: tick.time_msc,
                bid: Px::new(tick.bid, digits),
                ask: Px::new(tick.ask, digits),
            };
            self.send(Message::Tick(wire)).await?;
            self.report.ticks_sent += 1;
        }
        self.conn.flush().await?;
        Ok(())
    }

    fn digits(&self, symbol: &str) -> u8 {
        self.config.symbols.iter().find(|s| s.name == symbol).map_or(5, |s| s.digits)
    }

    async fn handle(&mut self, envelope: Envelope) -> Result<(), SimulatorError> {
        match envelope.message {
            Message::Order(order) => self.execute(order).await?,
            Message::Heartbeat { .. } => {}
            other => {
                return Err(SimulatorError::Protocol(format!(
                    "unexpected {} from the bridge",
                    other.type_name()
                )));
            }
        }
        Ok(())
    }

    async fn execute(&mut self, order: crate::wire::Order) -> Result<(), SimulatorError> {
        self.report.orders_received += 1;
        if let Some(&ticket) = self.executed.get(&order.client_order_id) {
            self.report.duplicate_orders += 1;
            self.send(Message::Ack { client_order_id: order.client_order_id, ticket }).await?;
            self.conn.flush().await?;
            return Ok(());
        }
        let Some(&(bid, ask, time_msc)) = self.quotes.get(&order.symbol) else {
            // TRADE_RETCODE_MARKET_CLOSED: no quote for the symbol yet.
            let reply = Message::Reject {
                client_order_id: order.client_order_id,
                retcode: 10018,
                reason: format!("no quote for {}", order.symbol),
            };
            self.send(reply).await?;
            self.conn.flush().await?;
            return Ok(());
        };
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.executed.insert(order.client_order_id.clone(), ticket);
        self.send(Message::Ack { client_order_id: order.client_order_id.clone(), ticket }).await?;
        let digits = self.digits(&order.symbol);
        let price = match order.side {
            WireSide::Buy => ask,
            WireSide::Sell => bid,
        };
        let sign = match order.side {
            WireSide::Buy => 1.0,
            WireSide::Sell => -1.0,
        };
        let chunk = self.config.max_fill_volume.unwrap_or(f64::INFINITY);
        let mut remaining = order.volume.value;
        while remaining > 1e-9 {
            let volume = remaining.min(chunk);
            remaining -= volume;
            let deal = ticket * 10 + self.report.deals.len() as u64 % 10;
            let fill = crate::wire::Fill {
                client_order_id: order.client_order_id.clone(),
                chain_id: order.chain_id.clone(),
                ticket,
                deal,
                symbol: order.symbol.clone(),
                side: order.side,
                volume: Px::new(volume, order.volume.decimals),
                price: Px::new(price, digits),
                time_msc,
            };
            *self.report.positions.entry(order.symbol.clone()).or_default() += sign * volume;
            self.report.deals.push(SimDeal {
                client_order_id: order.client_order_id.clone(),
                chain_id: order.chain_id.clone(),
                symbol: order.symbol.clone(),
                signed_volume: sign * volume,
                price,
            });
            self.send(Message::Fill(fill)).await?;
        }
        self.conn.flush().await?;
        Ok(())
    }
}
