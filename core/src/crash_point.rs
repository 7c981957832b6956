//! Named crash points, for crash-recovery tests of the real binary.
//!
//! A test starts `mtml` with `MTML_CRASH_AT=NAME` (or `NAME:N`, the Nth time the point is
//! reached) and the process aborts there, as a power cut or `kill -9` would stop it, without
//! unwinding, flushing or closing sockets. Each point names a moment that recovery must survive
//! (`bridge.after_order_written`: the order is at the terminal, its answer not yet read;
//! `journal.before_fill`: the fill is applied in memory, not yet journaled). Unset, a point costs
//! one relaxed load.
//!
//! This is the one place in this crate that reads the environment: the setting is read once, on
//! the first point reached, and never changes afterwards.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a crash point.
pub const CRASH_AT_VAR: &str = "MTML_CRASH_AT";

#[derive(Debug)]
struct Armed {
    name: String,
    at_hit: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(CRASH_AT_VAR).ok()?;
            parse(&value)
        })
        .as_ref()
}

fn parse(value: &str) -> Option<Armed> {
    let (name, at_hit) = match value.rsplit_once(':') {
        Some((name, n)) => (name, n.parse().ok()?),
        None => (value, 1),
    };
    (!name.is_empty() && at_hit > 0).then(|| Armed { name: name.to_owned(), at_hit, hits: AtomicU64::new(0) })
}

/// True when this call is the armed hit of the point `name`: the caller is about to crash there.
/// Callers that must finish something first (write what came before the crash point) use this
/// and then call [`crash`]; others call [`crash_point`].
pub fn reached(name: &str) -> bool {
    let Some(armed) = armed() else { return false };
    armed.name == name && armed.hits.fetch_add(1, Ordering::Relaxed) + 1 == armed.at_hit
}

/// Aborts the process at the point `name`, saying so on stderr.
pub fn crash(name: &str) -> ! {
    eprintln!("mtml: crash point {name} reached; aborting");
    std::process::abort()
}

/// Aborts the process if `name` is the armed crash point and this is its armed hit.
pub fn crash_point(name: &str) {
    if reached(name) {
        crash(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_a_point_and_optionally_a_hit() {
        let armed = parse("journal.before_fill:3").expect("valid");
        assert_eq!((armed.name.as_str(), armed.at_hit), ("journal.before_fill", 3));
        assert_eq!(parse("bridge.after_order_written").expect("valid").at_hit, 1);
        assert!(parse("x:0").is_none(), "hits count from 1");
        assert!(parse("x:many").is_none());
        assert!(parse("").is_none());
    }

    #[test]
    fn an_unarmed_point_is_never_reached() {
        // The test process has no MTML_CRASH_AT.
        assert!(!reached("bridge.after_order_written"));
    }
}
