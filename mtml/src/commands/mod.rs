//! The commands of the `mtml` binary that do more than start an instance; `main.rs` parses
//! arguments and calls these.
//!
//! - [`replay`] and [`report`]: `mtml replay`, the whole pipeline on recorded ticks.
//! - [`export`]: `mtml features export | describe`.
//! - [`journal`]: `mtml positions | orders | pnl`, reading the journal.
//! - [`trading_state`]: `mtml halt | reduce | resume` on a running instance.
//! - [`models`]: `mtml models ...`, the model registry directly or through a running instance.
//! - [`ea_install`]: `mtml ea install`, the expert advisor into MetaTrader data folders.

pub mod ea_install;
pub mod export;
pub mod journal;
pub mod models;
pub mod replay;
pub mod report;
pub mod trading_state;
