//! The commands of the `mtml` binary that do more than start an instance; `main.rs` parses
//! arguments and calls these.
//!
//! - [`chains`]: `mtml chain show | recent | health`, the chain history.
//! - [`replay`] and [`report`]: `mtml replay`, the whole pipeline on recorded ticks.
//! - [`backtest`]: `mtml backtest`, the pipeline on recorded ticks without the bridge.
//! - [`html`]: a replay's or backtest's report as a self-contained HTML page.
//! - [`export`]: `mtml features export | describe`.
//! - [`journal`]: `mtml positions | orders | pnl`, reading the journal.
//! - [`trading_state`]: `mtml halt | reduce | resume` on a running instance.
//! - [`models`]: `mtml models ...`, the model registry directly or through a running instance.
//! - [`ea_install`]: `mtml ea install`, the expert advisor into MetaTrader data folders.
//! - [`telegram`]: the Telegram console's commands on a running instance (`mtml run`, `mtml
//!   pipeline` and `mtml telegram run`).

pub mod backtest;
pub mod chains;
pub mod ea_install;
pub mod export;
pub mod html;
pub mod journal;
pub mod models;
pub mod replay;
pub mod report;
pub mod telegram;
pub mod trading_state;

/// Writes to standard output. When the reader has gone (`mtml models list | head -1`), the
/// process ends quietly with success, as Unix tools do, instead of panicking.
pub fn stdout(text: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(error) = out.write_fmt(text).and_then(|()| out.flush())
        && error.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// `print!` through [`stdout`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::commands::stdout(format_args!($($arg)*)) };
}

/// `println!` through [`stdout`].
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::commands::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}
