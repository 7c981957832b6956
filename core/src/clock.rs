//! Clocks.
//!
//! Two kinds of time matter in mtml. Latency is measured on a monotonic clock that starts with
//! the process ([`monotonic_ns`]); it is only comparable inside one process, which is why the
//! bridge stamps ticks and the order carries the stamp back to the same bridge. Decisions use
//! market time from an injected [`Clock`], so a replay reproduces a live day exactly.

use std::sync::OnceLock;
use std::time::Instant;

/// The process's monotonic epoch and the wall-clock time (UTC epoch ns) it was taken at.
fn process_epoch() -> (Instant, i64) {
    static EPOCH: OnceLock<(Instant, i64)> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        (Instant::now(), i64::try_from(wall.as_nanos()).unwrap_or(i64::MAX))
    })
}

/// Nanoseconds on this process's monotonic clock. Never zero, so zero can mean "not stamped".
pub fn monotonic_ns() -> u64 {
    let elapsed = process_epoch().0.elapsed().as_nanos();
    u64::try_from(elapsed).unwrap_or(u64::MAX).max(1)
}

/// A stamp of [`monotonic_ns`] on the wall clock (UTC epoch ns), as of the process's start: how
/// spans recorded by different processes (a bridge and a pipeline on two hosts) line up in one
/// chain. As good as the hosts' clock synchronisation, like every distributed trace.
pub fn unix_ns(monotonic: u64) -> i64 {
    process_epoch().1.saturating_add(i64::try_from(monotonic).unwrap_or(i64::MAX))
}

/// Wall-clock time as the business logic sees it, in UTC epoch milliseconds.
///
/// Live trading injects the system clock; replays inject the replayed ticks' time.
pub trait Clock: Send + Sync {
    /// Current UTC time in epoch milliseconds.
    fn now_ms(&self) -> i64;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_never_goes_back_and_is_never_zero() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a >= 1);
        assert!(b >= a);
    }
}
