//! Dropping ticks already accepted, by (terminal, symbol, sequence).
//!
//! A bridge resends the batches it has no ack for after a reconnect, so ingestion sees some ticks
//! twice; those are dropped and counted. A tick older than the newest accepted one of its
//! terminal and symbol that was never seen (a batch delivered out of order) is not a duplicate:
//! it is refused as `out_of_order`, because bars and features only move forward. Per key, the
//! newest sequence plus a bitmap of the 4 096 before it tell the two apart in O(1); a sequence
//! further back than that is taken as a duplicate.

use std::collections::HashMap;
use std::sync::Arc;

use mtml_core::{Symbol, Tick};

/// How far back, in sequence numbers, seen ticks are remembered per terminal and symbol.
pub const WINDOW: u64 = 4096;

/// What to do with a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Never seen and not older than what was accepted: take it.
    New,
    /// Accepted before: drop it.
    Duplicate,
    /// Older than an accepted tick of its terminal and symbol, and never seen: refuse it.
    OutOfOrder,
}

#[derive(Debug, Default)]
struct Seen {
    newest: u64,
    /// Bit `i` set: `newest - i` was seen (bit 0 is `newest` itself).
    bits: Vec<u64>,
}

impl Seen {
    fn new(seq: u64) -> Self {
        let mut bits = vec![0; (WINDOW / 64) as usize];
        bits[0] = 1;
        Self { newest: seq, bits }
    }

    fn get(&self, back: u64) -> bool {
        self.bits[(back / 64) as usize] >> (back % 64) & 1 == 1
    }

    fn set(&mut self, back: u64) {
        self.bits[(back / 64) as usize] |= 1 << (back % 64);
    }

    /// Moves the window so that `seq` is the newest.
    fn advance(&mut self, seq: u64) {
        let shift = seq - self.newest;
        self.newest = seq;
        if shift >= WINDOW {
            self.bits.iter_mut().for_each(|w| *w = 0);
        } else {
            let (words, bits) = ((shift / 64) as usize, (shift % 64) as u32);
            let n = self.bits.len();
            for i in (0..n).rev() {
                let from = i.checked_sub(words);
                let low = from.map_or(0, |f| self.bits[f]);
                let carry = from.and_then(|f| f.checked_sub(1)).map_or(0, |f| self.bits[f]);
                self.bits[i] = if bits == 0 { low } else { (low << bits) | (carry >> (64 - bits)) };
            }
        }
        self.set(0);
    }
}

/// The sequence numbers seen per terminal and symbol.
#[derive(Debug, Default)]
pub struct Deduplicator {
    seen: HashMap<(Arc<str>, Symbol), Seen>,
}

impl Deduplicator {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Classifies a tick and, when new, remembers it.
    pub fn check(&mut self, tick: &Tick) -> Verdict {
        let key = (Arc::clone(&tick.terminal), tick.symbol.clone());
        let Some(seen) = self.seen.get_mut(&key) else {
            self.seen.insert(key, Seen::new(tick.seq));
            return Verdict::New;
        };
        if tick.seq > seen.newest {
            seen.advance(tick.seq);
            return Verdict::New;
        }
        let back = seen.newest - tick.seq;
        if back >= WINDOW || seen.get(back) {
            Verdict::Duplicate
        } else {
            Verdict::OutOfOrder
        }
    }

    /// Highest sequence accepted per terminal (over its symbols).
    pub fn last_sequences(&self) -> HashMap<String, u64> {
        let mut out: HashMap<String, u64> = HashMap::new();
        for ((terminal, _), seen) in &self.seen {
            let entry = out.entry(terminal.to_string()).or_default();
            *entry = (*entry).max(seen.newest);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtml_core::ChainIdGenerator;
    use proptest::prelude::*;

    fn tick(terminal: &str, symbol: &str, seq: u64) -> Tick {
        Tick {
            chain_id: ChainIdGenerator::with_prefix(1).next_id(),
            symbol: Symbol::new(symbol),
            time_msc: 0,
            bid: 1.0,
            ask: 1.1,
            seq,
            terminal: Arc::from(terminal),
            received_ns: 0,
        }
    }

    #[test]
    fn duplicates_out_of_order_and_other_keys() {
        let mut d = Deduplicator::new();
        assert_eq!(d.check(&tick("a", "EURUSD", 5)), Verdict::New);
        assert_eq!(d.check(&tick("a", "EURUSD", 5)), Verdict::Duplicate);
        assert_eq!(d.check(&tick("a", "EURUSD", 7)), Verdict::New);
        assert_eq!(d.check(&tick("a", "EURUSD", 6)), Verdict::OutOfOrder);
        assert_eq!(d.check(&tick("a", "GBPUSD", 6)), Verdict::New, "another symbol of the terminal");
        assert_eq!(d.check(&tick("b", "EURUSD", 5)), Verdict::New, "another terminal");
        assert_eq!(d.check(&tick("a", "EURUSD", 7)), Verdict::Duplicate);
        assert_eq!(d.last_sequences()["a"], 7);
    }

    proptest! {
        /// Against a set of everything seen: within the window the answer is exact.
        #[test]
        fn agrees_with_a_set_within_the_window(seqs in proptest::collection::vec(0u64..20_000, 1..400)) {
            let mut d = Deduplicator::new();
            let mut seen = std::collections::BTreeSet::new();
            for seq in seqs {
                let newest = seen.last().copied();
                let expected = match newest {
                    None => Verdict::New,
                    Some(n) if seq > n => Verdict::New,
                    Some(n) if n - seq >= WINDOW || seen.contains(&seq) => Verdict::Duplicate,
                    Some(_) => Verdict::OutOfOrder,
                };
                prop_assert_eq!(d.check(&tick("t", "EURUSD", seq)), expected, "seq {}", seq);
                if expected == Verdict::New {
                    seen.insert(seq);
                }
            }
        }
    }
}
