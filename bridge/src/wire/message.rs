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

impl From<WireSide> for mtml_core::Side {
    fn from(side: WireSide) -> Self {
        match side {
            WireSide::Buy => Self::Buy,
            WireSide::Sell => Self::Sell,
        }
    }
}

impl From<mtml_core::Side> for WireSide {
    fn from(side: mtml_core::Side) -> Self {
        match side {
            mtml_core::Side::Buy => Self::Buy,
            mtml_core::Side::Sell => Self::Sell,
        }
    }
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
    /// Market time of the tick the order was decided on, UTC epoch ms; 0 when none (an
    /// operator's order). An EA may use it to refuse orders that waited too long; a replay's
    /// simulated broker fills in market time from it.
    pub time_msc: i64,
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

/// Every message's wire layout, once: its type name, then its fields in wire order, each with
/// how it is written and read (`text`, `required` text, `num`, `px`, `side`, and the enumerated
/// `account_mode`, `margin_mode`, `order_type`, `pending_type`) and, where docs/protocol.md calls
/// it differently, its name there. The type name, the encoder, the field count and the decoder
/// are all generated from this table.
macro_rules! wire_messages {
    ($(
        $tag:literal $variant:ident $(($body:ident))? {
            $( $field:ident : $kind:ident $(as $label:literal)? ),* $(,)?
        }
    ),* $(,)?) => {
        impl Message {
            /// The type name written as the first field.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( Message::$variant { .. } => $tag, )*
                }
            }
        }

        impl Envelope {
            /// The frame body of this envelope.
            pub fn encode(&self) -> Vec<u8> {
                let mut f = Fields(String::with_capacity(96));
                f.0.push_str(self.message.type_name());
                f.num(&self.seq);
                match &self.message {
                    $( wire_messages!(@pattern $variant $(($body))? { $($field),* }) => {
                        $( f.$kind($field); )*
                    } )*
                }
                f.0.into_bytes()
            }

            /// Parses a frame body.
            pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
                let text = std::str::from_utf8(body).map_err(|_| DecodeError::NotText)?;
                let fields: Vec<&str> = text.split('\t').collect();
                match fields[0] {
                    $( $tag => {
                        let expected = 2 + <[&str]>::len(&[$(stringify!($field)),*]);
                        if fields.len() != expected {
                            return Err(DecodeError::FieldCount { message: $tag, found: fields.len(), expected });
                        }
                        let r = Reader { message: $tag, fields: &fields };
                        let seq = r.num(1, "seq")?;
                        #[allow(unused_mut, unused_variables)]
                        let mut index = 1;
                        let message = wire_messages!(@build $variant $(($body))? {
                            $( $field: { index += 1; r.$kind(index, wire_messages!(@label $field $($label)?))? } ),*
                        });
                        Ok(Envelope { seq, message })
                    } )*
                    other => Err(DecodeError::UnknownType(truncate(other))),
                }
            }
        }
    };
    (@pattern $variant:ident ($body:ident) { $($field:ident),* }) => { Message::$variant($body { $($field),* }) };
    (@pattern $variant:ident { $($field:ident),* }) => { Message::$variant { $($field),* } };
    (@build $variant:ident ($body:ident) { $($init:tt)* }) => { Message::$variant($body { $($init)* }) };
    (@build $variant:ident { $($init:tt)* }) => { Message::$variant { $($init)* } };
    (@label $field:ident $label:literal) => { $label };
    (@label $field:ident) => { stringify!($field) };
}

wire_messages! {
    "HELLO" Hello(Hello) {
        version: num, token: text, terminal: text, build: num, login: num, server: text,
        currency: text, leverage: num, mode: account_mode, margin_mode: margin_mode,
    },
    "WELCOME" Welcome { version: num, session: text },
    "REFUSED" Refused { code: text, reason: text },
    "SYMBOL" Symbol(SymbolSpec) {
        name: required as "symbol", digits: num, point: px, volume_min: px, volume_step: px,
        volume_max: px, stops_level: num, freeze_level: num, filling_modes: num, trade_mode: num,
    },
    "POSITION" Position(Position) {
        ticket: num, symbol: required, side: side, volume: px, price: px, client_order_id: text,
    },
    "SNAPSHOT_END" SnapshotEnd {},
    "TICK" Tick(WireTick) { symbol: required, time_msc: num, bid: px, ask: px },
    "ORDER" Order(Order) {
        client_order_id: required, chain_id: text, symbol: required, side: side,
        order_type: order_type, volume: px, price: px, stop_loss: px as "sl", take_profit: px as "tp",
        time_msc: num,
    },
    "ACK" Ack { client_order_id: required, ticket: num },
    "REJECT" Reject { client_order_id: required, retcode: num, reason: text },
    "FILL" Fill(Fill) {
        client_order_id: required, chain_id: text, ticket: num, deal: num, symbol: required,
        side: side, volume: px, price: px, time_msc: num,
    },
    "PENDING" Pending(PendingOrder) {
        ticket: num, symbol: required, side: side, order_type: pending_type, volume: px, price: px,
        client_order_id: text,
    },
    "DEAL" Deal(Deal) {
        deal: num, ticket: num, symbol: required, side: side, volume: px, price: px, time_msc: num,
        client_order_id: text,
    },
    "RESUME" Resume { symbol: required, time_msc: num, count: num },
    "START" Start {},
    "BAR" Bar(WireBar) {
        symbol: required, timeframe: required, open_time_msc: num, open: px, high: px, low: px,
        close: px, tick_volume: num,
    },
    "MODIFY" Modify {
        client_order_id: required, chain_id: text, ticket: num, stop_loss: px as "sl",
        take_profit: px as "tp",
    },
    "CLOSE" Close { client_order_id: required, chain_id: text, ticket: num, volume: px },
    "CANCEL" Cancel { client_order_id: required, chain_id: text, ticket: num },
    "RESEND" Resend { from: num, to: num },
    "ACCOUNT" Account(AccountInfo) { balance: px, equity: px, margin: px, free_margin: px },
    "SYNC" Sync {},
    "HEARTBEAT" Heartbeat { time_msc: num },
}

/// Names of the enumerated fields' values on the wire.
const SIDES: [(&str, WireSide); 2] = [("BUY", WireSide::Buy), ("SELL", WireSide::Sell)];
const ACCOUNT_MODES: [(&str, AccountMode); 3] =
    [("DEMO", AccountMode::Demo), ("REAL", AccountMode::Real), ("CONTEST", AccountMode::Contest)];
const MARGIN_MODES: [(&str, MarginMode); 2] = [("HEDGING", MarginMode::Hedging), ("NETTING", MarginMode::Netting)];
const ORDER_TYPES: [&str; 3] = ["MARKET", "LIMIT", "STOP"];

fn name_of<T: PartialEq + Copy>(names: &[(&'static str, T)], value: T) -> &'static str {
    names.iter().find(|(_, v)| *v == value).map_or("", |(name, _)| name)
}

/// Writes fields, tab separated; one method per field kind of [`wire_messages!`].
struct Fields(String);

impl Fields {
    fn text(&mut self, value: &str) {
        self.0.push('\t');
        self.0.push_str(value);
    }

    fn required(&mut self, value: &str) {
        self.text(value);
    }

    fn order_type(&mut self, value: &str) {
        self.text(value);
    }

    fn pending_type(&mut self, value: &str) {
        self.text(value);
    }

    fn num(&mut self, value: &impl std::fmt::Display) {
        let _ = write!(self.0, "\t{value}");
    }

    fn px(&mut self, px: &Px) {
        let _ = write!(self.0, "\t{:.*}", usize::from(px.decimals), px.value);
    }

    fn side(&mut self, side: &WireSide) {
        self.text(name_of(&SIDES, *side));
    }

    fn account_mode(&mut self, mode: &AccountMode) {
        self.text(name_of(&ACCOUNT_MODES, *mode));
    }

    fn margin_mode(&mut self, mode: &MarginMode) {
        self.text(name_of(&MARGIN_MODES, *mode));
    }
}

fn truncate(text: &str) -> String {
    mtml_core::text::prefix(text).to_owned()
}

/// Reads the fields of one message; one method per field kind of [`wire_messages!`], each
/// naming the message and field when the text does not fit.
struct Reader<'a> {
    message: &'static str,
    fields: &'a [&'a str],
}

impl Reader<'_> {
    fn invalid(&self, index: usize, field: &'static str) -> DecodeError {
        DecodeError::Field { message: self.message, field, value: truncate(self.fields[index]) }
    }

    fn text(&self, index: usize, _field: &'static str) -> Result<String, DecodeError> {
        Ok(self.fields[index].to_owned())
    }

    fn required(&self, index: usize, field: &'static str) -> Result<String, DecodeError> {
        match self.fields[index] {
            "" => Err(self.invalid(index, field)),
            value => Ok(value.to_owned()),
        }
    }

    fn one_of(&self, index: usize, field: &'static str, names: &[&str]) -> Result<String, DecodeError> {
        match self.fields[index] {
            value if names.contains(&value) => Ok(value.to_owned()),
            _ => Err(self.invalid(index, field)),
        }
    }

    fn order_type(&self, index: usize, field: &'static str) -> Result<String, DecodeError> {
        self.one_of(index, field, &ORDER_TYPES)
    }

    fn pending_type(&self, index: usize, field: &'static str) -> Result<String, DecodeError> {
        self.one_of(index, field, &ORDER_TYPES[1..])
    }

    fn named<T: Copy>(&self, index: usize, field: &'static str, names: &[(&str, T)]) -> Result<T, DecodeError> {
        names.iter().find(|(name, _)| *name == self.fields[index]).map(|(_, v)| *v).ok_or_else(|| self.invalid(index, field))
    }

    fn side(&self, index: usize, field: &'static str) -> Result<WireSide, DecodeError> {
        self.named(index, field, &SIDES)
    }

    fn account_mode(&self, index: usize, field: &'static str) -> Result<AccountMode, DecodeError> {
        self.named(index, field, &ACCOUNT_MODES)
    }

    fn margin_mode(&self, index: usize, field: &'static str) -> Result<MarginMode, DecodeError> {
        self.named(index, field, &MARGIN_MODES)
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
            (name(), text(), name(), side(), prop_oneof![Just("MARKET"), Just("LIMIT"), Just("STOP")], px(), px(), px(), px(), any::<i64>())
                .prop_map(|(id, chain, symbol, side, kind, volume, price, sl, tp, time_msc)| Message::Order(Order {
                    client_order_id: id,
                    chain_id: chain,
                    symbol,
                    side,
                    order_type: kind.to_owned(),
                    volume,
                    price,
                    stop_loss: sl,
                    take_profit: tp,
                    time_msc,
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

    #[test]
    fn errors_name_the_message_and_the_field_as_docs_protocol_does() {
        let error = |body: &str| Envelope::decode(body.as_bytes()).unwrap_err().to_string();
        assert_eq!(error("ORDER\t1\tid\t\tEURUSD\tBUY\tMARKET\t0.10\t0\tx\t0\t0"), "ORDER field sl is invalid: \"x\"");
        assert_eq!(error("ORDER\t1\tid\t\tEURUSD\tBUY\tMARKET\t0.10\t0\t0\t0"), "ORDER has 11 fields, expected 12");
        assert_eq!(error("ORDER\t1\tid\t\tEURUSD\tBUY\tFOK\t0.10\t0\t0\t0\t0"), "ORDER field order_type is invalid: \"FOK\"");
        assert_eq!(error("PENDING\t1\t5\tEURUSD\tBUY\tMARKET\t0.10\t1.1\tid"), "PENDING field order_type is invalid: \"MARKET\"");
        assert_eq!(error("SYMBOL\t1\t\t5\t0.00001\t0.01\t0.01\t100\t0\t0\t3\t4"), "SYMBOL field symbol is invalid: \"\"");
        assert_eq!(error("DEAL\t1\t1\t2\tEURUSD\tHOLD\t0.1\t1.1\t5\tid"), "DEAL field side is invalid: \"HOLD\"");
        assert_eq!(error("HEARTBEAT\tx\t5"), "HEARTBEAT field seq is invalid: \"x\"");
        assert_eq!(error("TICK\t1\tEURUSD"), "TICK has 3 fields, expected 6");
        assert_eq!(error("NOPE\t1"), "unknown message type \"NOPE\"");
    }
}
