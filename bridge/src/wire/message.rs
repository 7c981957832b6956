//! Typed messages and their text bodies.
//!
//! A body is ASCII text: fields separated by a tab (0x09), the first the message type, the second
//! the sender's sequence number for this connection. Text because MQL5 builds and splits strings
//! cheaply (`StringFormat`, `StringSplit`) and because a captured frame is readable. Prices are
//! written with the symbol's digits, as MQL5's `DoubleToString(price, digits)` writes them; the
//! decoder remembers how many decimals it read ([`Px`]) so that a decoded frame encodes back to
//! the same bytes.

use std::fmt::Write as _;
use std::str::FromStr;

/// A decimal number as written on the wire: its value and how many decimals it was written with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Px {
    /// The number.
    pub value: f64,
    /// Decimals written after the point.
    pub decimals: u8,
}

impl Px {
    /// A number to be written with `decimals` decimals.
    pub fn new(value: f64, decimals: u8) -> Self {
        Self { value, decimals }
    }
}

/// Why a frame body is not a valid message. Every variant names the message and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not UTF-8 text.
    #[error("frame body is not UTF-8 text")]
    NotText,
    /// The first field names no known message.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// Too few or too many fields.
    #[error("{message} has {found} fields, expected {expected}")]
    FieldCount {
        /// Message type.
        message: &'static str,
        /// Fields present, including type and sequence.
        found: usize,
        /// Fields required.
        expected: usize,
    },
    /// A field does not parse.
    #[error("{message} field {field} is invalid: {value:?}")]
    Field {
        /// Message type.
        message: &'static str,
        /// Field name as in docs/protocol.md.
        field: &'static str,
        /// The text found.
        value: String,
    },
}

/// Trading mode of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountMode {
    /// A demo account.
    Demo,
    /// A real-money account.
    Real,
    /// A contest account.
    Contest,
}

/// Position accounting of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarginMode {
    /// Several positions per symbol.
    Hedging,
    /// One net position per symbol.
    Netting,
}

/// Direction on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireSide {
    /// BUY.
    Buy,
    /// SELL.
    Sell,
}

/// HELLO: the first message of a terminal. Field order as in docs/protocol.md.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    /// Protocol version the EA speaks.
    pub version: u32,
    /// Shared secret configured in the EA's inputs and the bridge's config.
    pub token: String,
    /// Terminal name (`TERMINAL_NAME`).
    pub terminal: String,
    /// Terminal build (`TERMINAL_BUILD`).
    pub build: u32,
    /// Account login.
    pub login: u64,
    /// Trade server name.
    pub server: String,
    /// Deposit currency.
    pub currency: String,
    /// Account leverage.
    pub leverage: u32,
    /// Demo, real or contest.
    pub mode: AccountMode,
    /// Hedging or netting.
    pub margin_mode: MarginMode,
}

/// SYMBOL: what the terminal allows for one subscribed symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolSpec {
    /// Broker's name, suffix included (`EURUSDm`).
    pub name: String,
    /// Price digits.
    pub digits: u8,
    /// Point size.
    pub point: Px,
    /// Smallest volume.
    pub volume_min: Px,
    /// Volume step.
    pub volume_step: Px,
    /// Largest volume.
    pub volume_max: Px,
    /// Minimum stop distance, points.
    pub stops_level: u32,
    /// Freeze distance, points.
    pub freeze_level: u32,
    /// `SYMBOL_FILLING_MODE` bit set: 1 FOK, 2 IOC, 4 BOC.
    pub filling_modes: u32,
    /// `SYMBOL_TRADE_MODE`: 0 disabled .. 4 full.
    pub trade_mode: u32,
}

/// POSITION: one open position in the snapshot after the hello.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// Position ticket.
    pub ticket: u64,
    /// Broker symbol.
    pub symbol: String,
    /// Direction.
    pub side: WireSide,
    /// Lots.
    pub volume: Px,
    /// Open price.
    pub price: Px,
    /// Client order id that opened it, empty when opened by hand.
    pub client_order_id: String,
}

/// ACCOUNT: the account's money, in the account currency, written with 2 decimals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccountInfo {
    /// `ACCOUNT_BALANCE`.
    pub balance: Px,
    /// `ACCOUNT_EQUITY`.
    pub equity: Px,
    /// `ACCOUNT_MARGIN`: margin in use.
    pub margin: Px,
    /// `ACCOUNT_MARGIN_FREE`.
    pub free_margin: Px,
}

/// TICK: one quote.
#[derive(Debug, Clone, PartialEq)]
pub struct WireTick {
    /// Broker symbol.
    pub symbol: String,
    /// `MqlTick.time_msc`, UTC epoch milliseconds.
    pub time_msc: i64,
    /// Bid.
    pub bid: Px,
    /// Ask.
    pub ask: Px,
}

/// ORDER: an order for the terminal to execute.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// Idempotency key, also the request id the ACK or REJECT answers.
    pub client_order_id: String,
    /// Chain id, 32 hex digits, returned on the fill.
    pub chain_id: String,
    /// Broker symbol.
    pub symbol: String,
    /// Direction.
    pub side: WireSide,
    /// MARKET, LIMIT or STOP.
    pub order_type: String,
    /// Lots.
    pub volume: Px,
    /// Limit or stop price, 0 for market.
    pub price: Px,
    /// Stop loss, 0 for none.
    pub stop_loss: Px,
    /// Take profit, 0 for none.
    pub take_profit: Px,
}

/// FILL: a deal executed for an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    /// The order's client order id.
    pub client_order_id: String,
    /// The order's chain id.
    pub chain_id: String,
    /// Order ticket.
    pub ticket: u64,
    /// Deal ticket.
    pub deal: u64,
    /// Broker symbol.
    pub symbol: String,
    /// Direction.
    pub side: WireSide,
    /// Lots of this deal.
    pub volume: Px,
    /// Deal price.
    pub price: Px,
    /// Deal time, UTC epoch milliseconds.
    pub time_msc: i64,
}

/// PENDING: one pending order in the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingOrder {
    /// Order ticket.
    pub ticket: u64,
    /// Broker symbol.
    pub symbol: String,
    /// Direction.
    pub side: WireSide,
    /// LIMIT or STOP.
    pub order_type: String,
    /// Lots.
    pub volume: Px,
    /// Trigger price.
    pub price: Px,
    /// Client order id that placed it, empty when placed by hand.
    pub client_order_id: String,
}

/// DEAL: a deal from the account's recent trade history, in the snapshot. The bridge settles
/// orders whose outcome it does not know (connection lost before the answer) from these.
#[derive(Debug, Clone, PartialEq)]
pub struct Deal {
    /// Deal ticket.
    pub deal: u64,
    /// Order ticket.
    pub ticket: u64,
    /// Broker symbol.
    pub symbol: String,
    /// Direction.
    pub side: WireSide,
    /// Lots.
    pub volume: Px,
    /// Price.
    pub price: Px,
    /// Deal time, UTC epoch milliseconds.
    pub time_msc: i64,
    /// Client order id from the order comment, empty when none.
    pub client_order_id: String,
}

/// BAR: a closed bar from the terminal.
#[derive(Debug, Clone, PartialEq)]
pub struct WireBar {
    /// Broker symbol.
    pub symbol: String,
    /// Timeframe name as MetaTrader writes it (`M1`, `H1`).
    pub timeframe: String,
    /// Open time, UTC epoch milliseconds.
    pub open_time_msc: i64,
    /// Open (bid).
    pub open: Px,
    /// High (bid).
    pub high: Px,
    /// Low (bid).
    pub low: Px,
    /// Close (bid).
    pub close: Px,
    /// Tick count.
    pub tick_volume: u64,
}

/// Every v1 message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// EA to bridge: who the terminal is.
    Hello(Hello),
    /// Bridge to EA: hello accepted.
    Welcome {
        /// Protocol version the bridge speaks.
        version: u32,
        /// Id the bridge gave this connection, for logs on both sides.
        session: String,
    },
    /// Bridge to EA: hello refused; the bridge closes the connection after it.
    Refused {
        /// Machine-readable reason: `version`, `auth`.
        code: String,
        /// Human-readable reason.
        reason: String,
    },
    /// EA to bridge: a symbol's capabilities.
    Symbol(SymbolSpec),
    /// EA to bridge: an open position in the snapshot.
    Position(Position),
    /// EA to bridge: the snapshot is complete.
    SnapshotEnd,
    /// EA to bridge: a quote.
    Tick(WireTick),
    /// Bridge to EA: execute an order.
    Order(Order),
    /// EA to bridge: the order was accepted.
    Ack {
        /// The order's client order id.
        client_order_id: String,
        /// Order ticket.
        ticket: u64,
    },
    /// EA to bridge: the order was refused.
    Reject {
        /// The order's client order id.
        client_order_id: String,
        /// MetaTrader trade server return code.
        retcode: u32,
        /// Text of the return code.
        reason: String,
    },
    /// EA to bridge: a deal.
    Fill(Fill),
    /// EA to bridge: a pending order in the snapshot.
    Pending(PendingOrder),
    /// EA to bridge: a recent deal in the snapshot.
    Deal(Deal),
    /// Bridge to EA, after SNAPSHOT_END: the last tick of a symbol the bridge already has from
    /// this account, so that the EA resumes right after it (no tick lost or sent twice across a
    /// reconnect).
    Resume {
        /// Broker symbol.
        symbol: String,
        /// Time of the last tick received.
        time_msc: i64,
        /// Which tick of that millisecond it was, from 1.
        count: u32,
    },
    /// Bridge to EA: resumes are sent, start streaming.
    Start,
    /// EA to bridge: a closed bar.
    Bar(WireBar),
    /// Bridge to EA: change a position's stop loss and take profit.
    Modify {
        /// Request id and idempotency key.
        client_order_id: String,
        /// Chain id.
        chain_id: String,
        /// Position ticket.
        ticket: u64,
        /// New stop loss, 0 for none.
        stop_loss: Px,
        /// New take profit, 0 for none.
        take_profit: Px,
    },
    /// Bridge to EA: close a position, wholly or partly.
    Close {
        /// Request id and idempotency key.
        client_order_id: String,
        /// Chain id.
        chain_id: String,
        /// Position ticket.
        ticket: u64,
        /// Lots to close; the whole position when it is at least the position's volume.
        volume: Px,
    },
    /// Bridge to EA: delete a pending order.
    Cancel {
        /// Request id and idempotency key.
        client_order_id: String,
        /// Chain id.
        chain_id: String,
        /// Pending order ticket.
        ticket: u64,
    },
    /// Bridge to EA: send again the frames with sequence numbers `from..=to`.
    Resend {
        /// First missing sequence number.
        from: u64,
        /// Last missing sequence number.
        to: u64,
    },
    /// EA to bridge: the account's money, in every snapshot and with every heartbeat, for the
    /// margin check.
    Account(AccountInfo),
    /// Bridge to EA: send the books again (positions, pending orders, recent deals, account,
    /// then SNAPSHOT_END) while streaming on, for periodic reconciliation.
    Sync,
    /// Either way: still alive.
    Heartbeat {
        /// Sender's clock, UTC epoch milliseconds.
        time_msc: i64,
    },
}

/// A message with the sender's per-connection sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Starts at 1 for each connection and direction; a gap means a lost message.
    pub seq: u64,
    /// The message.
    pub message: Message,
}

impl Message {
    /// The type name written as the first field.
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "HELLO",
            Message::Welcome { .. } => "WELCOME",
            Message::Refused { .. } => "REFUSED",
            Message::Symbol(_) => "SYMBOL",
            Message::Position(_) => "POSITION",
            Message::SnapshotEnd => "SNAPSHOT_END",
            Message::Tick(_) => "TICK",
            Message::Order(_) => "ORDER",
            Message::Ack { .. } => "ACK",
            Message::Reject { .. } => "REJECT",
            Message::Fill(_) => "FILL",
            Message::Pending(_) => "PENDING",
            Message::Deal(_) => "DEAL",
            Message::Resume { .. } => "RESUME",
            Message::Start => "START",
            Message::Bar(_) => "BAR",
            Message::Modify { .. } => "MODIFY",
            Message::Close { .. } => "CLOSE",
            Message::Cancel { .. } => "CANCEL",
            Message::Resend { .. } => "RESEND",
            Message::Account(_) => "ACCOUNT",
            Message::Sync => "SYNC",
            Message::Heartbeat { .. } => "HEARTBEAT",
        }
    }
}

fn side_text(side: WireSide) -> &'static str {
    match side {
        WireSide::Buy => "BUY",
        WireSide::Sell => "SELL",
    }
}

/// Writes fields, tab separated.
struct Fields(String);

impl Fields {
    fn text(&mut self, value: &str) -> &mut Self {
        self.0.push('\t');
        self.0.push_str(value);
        self
    }

    fn num(&mut self, value: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.0, "\t{value}");
        self
    }

    fn px(&mut self, px: Px) -> &mut Self {
        let _ = write!(self.0, "\t{:.*}", usize::from(px.decimals), px.value);
        self
    }
}

impl Envelope {
    /// The frame body of this envelope.
    pub fn encode(&self) -> Vec<u8> {
        let mut f = Fields(String::with_capacity(96));
        f.0.push_str(self.message.type_name());
        f.num(self.seq);
        match &self.message {
            Message::Hello(h) => {
                let mode = match h.mode {
                    AccountMode::Demo => "DEMO",
                    AccountMode::Real => "REAL",
                    AccountMode::Contest => "CONTEST",
                };
                let margin = match h.margin_mode {
                    MarginMode::Hedging => "HEDGING",
                    MarginMode::Netting => "NETTING",
                };
                f.num(h.version).text(&h.token).text(&h.terminal).num(h.build).num(h.login);
                f.text(&h.server).text(&h.currency).num(h.leverage).text(mode).text(margin);
            }
            Message::Welcome { version, session } => {
                f.num(version).text(session);
            }
            Message::Refused { code, reason } => {
                f.text(code).text(reason);
            }
            Message::Symbol(s) => {
                f.text(&s.name).num(s.digits).px(s.point).px(s.volume_min).px(s.volume_step);
                f.px(s.volume_max).num(s.stops_level).num(s.freeze_level);
                f.num(s.filling_modes).num(s.trade_mode);
            }
            Message::Position(p) => {
                f.num(p.ticket).text(&p.symbol).text(side_text(p.side)).px(p.volume).px(p.price);
                f.text(&p.client_order_id);
            }
            Message::SnapshotEnd => {}
            Message::Tick(t) => {
                f.text(&t.symbol).num(t.time_msc).px(t.bid).px(t.ask);
            }
            Message::Order(o) => {
                f.text(&o.client_order_id).text(&o.chain_id).text(&o.symbol);
                f.text(side_text(o.side)).text(&o.order_type).px(o.volume).px(o.price);
                f.px(o.stop_loss).px(o.take_profit);
            }
            Message::Ack { client_order_id, ticket } => {
                f.text(client_order_id).num(ticket);
            }
            Message::Reject { client_order_id, retcode, reason } => {
                f.text(client_order_id).num(retcode).text(reason);
            }
            Message::Fill(x) => {
                f.text(&x.client_order_id).text(&x.chain_id).num(x.ticket).num(x.deal);
                f.text(&x.symbol).text(side_text(x.side)).px(x.volume).px(x.price);
                f.num(x.time_msc);
            }
            Message::Pending(p) => {
                f.num(p.ticket).text(&p.symbol).text(side_text(p.side)).text(&p.order_type);
                f.px(p.volume).px(p.price).text(&p.client_order_id);
            }
            Message::Deal(d) => {
                f.num(d.deal).num(d.ticket).text(&d.symbol).text(side_text(d.side));
                f.px(d.volume).px(d.price).num(d.time_msc).text(&d.client_order_id);
            }
            Message::Resume { symbol, time_msc, count } => {
                f.text(symbol).num(time_msc).num(count);
            }
            Message::Start => {}
            Message::Bar(b) => {
                f.text(&b.symbol).text(&b.timeframe).num(b.open_time_msc).px(b.open).px(b.high);
                f.px(b.low).px(b.close).num(b.tick_volume);
            }
            Message::Modify { client_order_id, chain_id, ticket, stop_loss, take_profit } => {
                f.text(client_order_id).text(chain_id).num(ticket).px(*stop_loss).px(*take_profit);
            }
            Message::Close { client_order_id, chain_id, ticket, volume } => {
                f.text(client_order_id).text(chain_id).num(ticket).px(*volume);
            }
            Message::Cancel { client_order_id, chain_id, ticket } => {
                f.text(client_order_id).text(chain_id).num(ticket);
            }
            Message::Resend { from, to } => {
                f.num(from).num(to);
            }
            Message::Account(a) => {
                f.px(a.balance).px(a.equity).px(a.margin).px(a.free_margin);
            }
            Message::Sync => {}
            Message::Heartbeat { time_msc } => {
                f.num(time_msc);
            }
        }
        f.0.into_bytes()
    }

    /// Parses a frame body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let text = std::str::from_utf8(body).map_err(|_| DecodeError::NotText)?;
        let fields: Vec<&str> = text.split('\t').collect();
        let kind = fields[0];
        let (name, expected): (&'static str, usize) = match kind {
            "HELLO" => ("HELLO", 12),
            "WELCOME" => ("WELCOME", 4),
            "REFUSED" => ("REFUSED", 4),
            "SYMBOL" => ("SYMBOL", 12),
            "POSITION" => ("POSITION", 8),
            "SNAPSHOT_END" => ("SNAPSHOT_END", 2),
            "TICK" => ("TICK", 6),
            "ORDER" => ("ORDER", 11),
            "ACK" => ("ACK", 4),
            "REJECT" => ("REJECT", 5),
            "FILL" => ("FILL", 11),
            "HEARTBEAT" => ("HEARTBEAT", 3),
            "PENDING" => ("PENDING", 9),
            "DEAL" => ("DEAL", 10),
            "RESUME" => ("RESUME", 5),
            "START" => ("START", 2),
            "BAR" => ("BAR", 10),
            "MODIFY" => ("MODIFY", 7),
            "CLOSE" => ("CLOSE", 6),
            "CANCEL" => ("CANCEL", 5),
            "RESEND" => ("RESEND", 4),
            "ACCOUNT" => ("ACCOUNT", 6),
            "SYNC" => ("SYNC", 2),
            other => return Err(DecodeError::UnknownType(truncate(other))),
        };
        if fields.len() != expected {
            return Err(DecodeError::FieldCount { message: name, found: fields.len(), expected });
        }
        let r = Reader { message: name, fields: &fields };
        let seq = r.num(1, "seq")?;
        let message = match name {
            "HELLO" => Message::Hello(Hello {
                version: r.num(2, "version")?,
                token: r.text(3),
                terminal: r.text(4),
                build: r.num(5, "build")?,
                login: r.num(6, "login")?,
                server: r.text(7),
                currency: r.text(8),
                leverage: r.num(9, "leverage")?,
                mode: match fields[10] {
                    "DEMO" => AccountMode::Demo,
                    "REAL" => AccountMode::Real,
                    "CONTEST" => AccountMode::Contest,
                    _ => return Err(r.invalid(10, "mode")),
                },
                margin_mode: match fields[11] {
                    "HEDGING" => MarginMode::Hedging,
                    "NETTING" => MarginMode::Netting,
                    _ => return Err(r.invalid(11, "margin_mode")),
                },
            }),
            "WELCOME" => Message::Welcome { version: r.num(2, "version")?, session: r.text(3) },
            "REFUSED" => Message::Refused { code: r.text(2), reason: r.text(3) },
            "SYMBOL" => Message::Symbol(SymbolSpec {
                name: r.non_empty(2, "symbol")?,
                digits: r.num(3, "digits")?,
                point: r.px(4, "point")?,
                volume_min: r.px(5, "volume_min")?,
                volume_step: r.px(6, "volume_step")?,
                volume_max: r.px(7, "volume_max")?,
                stops_level: r.num(8, "stops_level")?,
                freeze_level: r.num(9, "freeze_level")?,
                filling_modes: r.num(10, "filling_modes")?,
                trade_mode: r.num(11, "trade_mode")?,
            }),
            "POSITION" => Message::Position(Position {
                ticket: r.num(2, "ticket")?,
                symbol: r.non_empty(3, "symbol")?,
                side: r.side(4)?,
                volume: r.px(5, "volume")?,
                price: r.px(6, "price")?,
                client_order_id: r.text(7),
            }),
            "SNAPSHOT_END" => Message::SnapshotEnd,
            "TICK" => Message::Tick(WireTick {
                symbol: r.non_empty(2, "symbol")?,
                time_msc: r.num(3, "time_msc")?,
                bid: r.px(4, "bid")?,
                ask: r.px(5, "ask")?,
            }),
            "ORDER" => Message::Order(Order {
                client_order_id: r.non_empty(2, "client_order_id")?,
                chain_id: r.text(3),
                symbol: r.non_empty(4, "symbol")?,
                side: r.side(5)?,
                order_type: match fields[6] {
                    "MARKET" | "LIMIT" | "STOP" => r.text(6),
                    _ => return Err(r.invalid(6, "order_type")),
                },
                volume: r.px(7, "volume")?,
                price: r.px(8, "price")?,
                stop_loss: r.px(9, "sl")?,
                take_profit: r.px(10, "tp")?,
            }),
            "ACK" => Message::Ack {
                client_order_id: r.non_empty(2, "client_order_id")?,
                ticket: r.num(3, "ticket")?,
            },
            "REJECT" => Message::Reject {
                client_order_id: r.non_empty(2, "client_order_id")?,
                retcode: r.num(3, "retcode")?,
                reason: r.text(4),
            },
            "FILL" => Message::Fill(Fill {
                client_order_id: r.non_empty(2, "client_order_id")?,
                chain_id: r.text(3),
                ticket: r.num(4, "ticket")?,
                deal: r.num(5, "deal")?,
                symbol: r.non_empty(6, "symbol")?,
                side: r.side(7)?,
                volume: r.px(8, "volume")?,
                price: r.px(9, "price")?,
                time_msc: r.num(10, "time_msc")?,
            }),
            "PENDING" => Message::Pending(PendingOrder {
                ticket: r.num(2, "ticket")?,
                symbol: r.non_empty(3, "symbol")?,
                side: r.side(4)?,
                order_type: match fields[5] {
                    "LIMIT" | "STOP" => r.text(5),
                    _ => return Err(r.invalid(5, "order_type")),
                },
                volume: r.px(6, "volume")?,
                price: r.px(7, "price")?,
                client_order_id: r.text(8),
            }),
            "DEAL" => Message::Deal(Deal {
                deal: r.num(2, "deal")?,
                ticket: r.num(3, "ticket")?,
                symbol: r.non_empty(4, "symbol")?,
                side: r.side(5)?,
                volume: r.px(6, "volume")?,
                price: r.px(7, "price")?,
                time_msc: r.num(8, "time_msc")?,
                client_order_id: r.text(9),
            }),
            "RESUME" => Message::Resume {
                symbol: r.non_empty(2, "symbol")?,
                time_msc: r.num(3, "time_msc")?,
                count: r.num(4, "count")?,
            },
            "START" => Message::Start,
            "BAR" => Message::Bar(WireBar {
                symbol: r.non_empty(2, "symbol")?,
                timeframe: r.non_empty(3, "timeframe")?,
                open_time_msc: r.num(4, "open_time_msc")?,
                open: r.px(5, "open")?,
                high: r.px(6, "high")?,
                low: r.px(7, "low")?,
                close: r.px(8, "close")?,
                tick_volume: r.num(9, "tick_volume")?,
            }),
            "MODIFY" => Message::Modify {
                client_order_id: r.non_empty(2, "client_order_id")?,
                chain_id: r.text(3),
                ticket: r.num(4, "ticket")?,
                stop_loss: r.px(5, "sl")?,
                take_profit: r.px(6, "tp")?,
            },
            "CLOSE" => Message::Close {
                client_order_id: r.non_empty(2, "client_order_id")?,
                chain_id: r.text(3),
                ticket: r.num(4, "ticket")?,
                volume: r.px(5, "volume")?,
            },
            "CANCEL" => Message::Cancel {
                client_order_id: r.non_empty(2, "client_order_id")?,
                chain_id: r.text(3),
                ticket: r.num(4, "ticket")?,
            },
            "RESEND" => Message::Resend { from: r.num(2, "from")?, to: r.num(3, "to")? },
            "ACCOUNT" => Message::Account(AccountInfo {
                balance: r.px(2, "balance")?,
                equity: r.px(3, "equity")?,
                margin: r.px(4, "margin")?,
                free_margin: r.px(5, "free_margin")?,
            }),
            "SYNC" => Message::Sync,
            _ => Message::Heartbeat { time_msc: r.num(2, "time_msc")? },
        };
        Ok(Envelope { seq, message })
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(32).collect()
}

struct Reader<'a> {
    message: &'static str,
    fields: &'a [&'a str],
}

impl Reader<'_> {
    fn invalid(&self, index: usize, field: &'static str) -> DecodeError {
        DecodeError::Field { message: self.message, field, value: truncate(self.fields[index]) }
    }

    fn text(&self, index: usize) -> String {
        self.fields[index].to_owned()
    }

    fn non_empty(&self, index: usize, field: &'static str) -> Result<String, DecodeError> {
        match self.fields[index] {
            "" => Err(self.invalid(index, field)),
            value => Ok(value.to_owned()),
        }
    }

    fn num<T: FromStr>(&self, index: usize, field: &'static str) -> Result<T, DecodeError> {
        self.fields[index].parse().map_err(|_| self.invalid(index, field))
    }

    fn px(&self, index: usize, field: &'static str) -> Result<Px, DecodeError> {
        let text = self.fields[index];
        let value: f64 = text.parse().map_err(|_| self.invalid(index, field))?;
        // "inf", "NaN" and exponents parse as f64 but are no MQL5 DoubleToString output.
        if !value.is_finite() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            return Err(self.invalid(index, field));
        }
        let decimals = text.split_once('.').map_or(0, |(_, frac)| frac.len());
        let decimals = u8::try_from(decimals).map_err(|_| self.invalid(index, field))?;
        Ok(Px { value, decimals })
    }

    fn side(&self, index: usize) -> Result<WireSide, DecodeError> {
        match self.fields[index] {
            "BUY" => Ok(WireSide::Buy),
            "SELL" => Ok(WireSide::Sell),
            _ => Err(self.invalid(index, "side")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Any printable ASCII without TAB, as MQL5 strings on the wire are.
        "[ -~]{0,24}"
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._#-]{1,12}"
    }

    fn px() -> impl Strategy<Value = Px> {
        (0u64..10_000_000_000, 0u8..8).prop_map(|(units, decimals)| {
            let value = units as f64 / 10f64.powi(i32::from(decimals));
            // The value as the wire would carry it, so that it survives printing.
            let printed: f64 = format!("{value:.*}", usize::from(decimals)).parse().unwrap_or(0.0);
            Px::new(printed, decimals)
        })
    }

    fn side() -> impl Strategy<Value = WireSide> {
        prop_oneof![Just(WireSide::Buy), Just(WireSide::Sell)]
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (name(), any::<i64>(), px(), px())
                .prop_map(|(symbol, time_msc, bid, ask)| Message::Tick(WireTick { symbol, time_msc, bid, ask })),
            (name(), text(), name(), side(), prop_oneof![Just("MARKET"), Just("LIMIT"), Just("STOP")], px(), px(), px(), px())
                .prop_map(|(id, chain, symbol, side, kind, volume, price, sl, tp)| Message::Order(Order {
                    client_order_id: id,
                    chain_id: chain,
                    symbol,
                    side,
                    order_type: kind.to_owned(),
                    volume,
                    price,
                    stop_loss: sl,
                    take_profit: tp,
                })),
            (name(), text(), any::<u64>(), any::<u64>(), name(), side(), px(), px(), any::<i64>())
                .prop_map(|(id, chain, ticket, deal, symbol, side, volume, price, time_msc)| Message::Fill(Fill {
                    client_order_id: id,
                    chain_id: chain,
                    ticket,
                    deal,
                    symbol,
                    side,
                    volume,
                    price,
                    time_msc,
                })),
            (any::<u64>(), any::<u64>(), name(), side(), px(), px(), any::<i64>(), text())
                .prop_map(|(deal, ticket, symbol, side, volume, price, time_msc, id)| Message::Deal(Deal {
                    deal,
                    ticket,
                    symbol,
                    side,
                    volume,
                    price,
                    time_msc,
                    client_order_id: id,
                })),
            (name(), any::<i64>(), any::<u32>())
                .prop_map(|(symbol, time_msc, count)| Message::Resume { symbol, time_msc, count }),
            (name(), any::<u32>(), text()).prop_map(|(id, retcode, reason)| Message::Reject {
                client_order_id: id,
                retcode,
                reason
            }),
            (any::<u64>(), any::<u64>()).prop_map(|(from, to)| Message::Resend { from, to }),
            any::<i64>().prop_map(|time_msc| Message::Heartbeat { time_msc }),
            Just(Message::Start),
            Just(Message::SnapshotEnd),
            Just(Message::Sync),
            (px(), px(), px(), px()).prop_map(|(balance, equity, margin, free_margin)| {
                Message::Account(AccountInfo { balance, equity, margin, free_margin })
            }),
        ]
    }

    proptest! {
        #[test]
        fn every_message_survives_encode_then_decode(seq in any::<u64>(), message in message()) {
            let envelope = Envelope { seq, message };
            let body = envelope.encode();
            prop_assert_eq!(Envelope::decode(&body).unwrap(), envelope);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Envelope::decode(&body);
        }

        #[test]
        fn decoding_mutated_valid_frames_never_panics(
            message in message(),
            cut in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut body = Envelope { seq: 1, message }.encode();
            let i = cut.index(body.len());
            body[i] = byte;
            let _ = Envelope::decode(&body);
            let _ = Envelope::decode(&body[..i]);
        }
    }
}
