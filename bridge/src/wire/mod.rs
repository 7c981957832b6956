//! The wire protocol between the bridge and MetaTrader terminals (the EA or the simulator).
//!
//! Layered like mini-redis: [`frame`] cuts the byte stream into length-prefixed bodies,
//! [`message`] turns a body into a typed [`Envelope`], and [`connection`] reads and writes
//! envelopes on any async stream (TCP everywhere, named pipes on Windows).
//!
//! docs/protocol.md is the specification; its golden frames are checked by this crate's tests.

pub mod connection;
pub mod frame;
pub mod message;

pub use connection::Connection;
pub use frame::{FrameError, MAX_BODY_LEN};
pub use message::{
    AccountInfo, AccountMode, Deal, DecodeError, Envelope, Fill, Hello, MarginMode, Message, Order,
    PendingOrder, Position, Px, SymbolSpec, WireBar, WireSide, WireTick,
};

/// The protocol version this bridge speaks. A terminal announcing another major version is
/// refused in the hello with a message naming both versions.
pub const PROTOCOL_VERSION: u32 = 2;
