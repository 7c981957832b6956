//! A connection's messages in sequence order, as a pure state machine.
//!
//! The EA numbers every message it sends. A message past the next expected one opens a gap: the
//! bridge asks once for the missing range (RESEND) and holds what follows, so ticks stay in
//! order. The gap closes when the range arrives; if it does not arrive within the resend
//! timeout, or too much piles up behind it, the missing messages are counted as lost and the
//! held ones released. No I/O and no clock of its own: the caller passes `now` in, sends the
//! RESEND asked for, and handles what comes out ready, in order.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// What one step of the sequencer produced.
#[derive(Debug, PartialEq)]
pub struct Sequenced<T> {
    /// Messages now in order, to handle in this order.
    pub ready: Vec<T>,
    /// A newly found gap: ask the terminal for messages `from..=to` again.
    pub resend: Option<(u64, u64)>,
    /// Messages given up on (never arrived in time, or too many held behind them).
    pub lost: u64,
}

impl<T> Sequenced<T> {
    fn nothing() -> Self {
        Self { ready: Vec::new(), resend: None, lost: 0 }
    }
}

/// The sequence state of one connection.
#[derive(Debug)]
pub struct Sequencer<T> {
    /// The last sequence number handled.
    last: u64,
    held: BTreeMap<u64, T>,
    /// Since when a RESEND is outstanding.
    awaiting: Option<Instant>,
    max_held: usize,
}

impl<T> Sequencer<T> {
    /// A sequencer that has handled everything up to `last`, holding at most `max_held`
    /// messages behind a gap.
    pub fn new(last: u64, max_held: usize) -> Self {
        Self { last, held: BTreeMap::new(), awaiting: None, max_held: max_held.max(1) }
    }

    /// The last sequence number handled.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Takes `seq` as handled without holding anything back (the handshake, which reads its
    /// messages in whatever order they come); returns whether it was the next expected one.
    pub fn take_as_next(&mut self, seq: u64) -> bool {
        let expected = seq == self.last + 1;
        self.last = seq;
        expected
    }

    /// Whether a RESEND is outstanding.
    pub fn awaiting(&self) -> bool {
        self.awaiting.is_some()
    }

    /// Takes message `seq` at `now`. One already handled is dropped; the next expected one comes
    /// out ready with whatever was held behind it; a later one is held, and the first such
    /// message of a gap asks for the range.
    pub fn offer(&mut self, seq: u64, message: T, now: Instant) -> Sequenced<T> {
        let expected = self.last + 1;
        if seq < expected {
            return Sequenced::nothing();
        }
        if seq > expected {
            let mut out = Sequenced::nothing();
            if self.awaiting.is_none() {
                out.resend = Some((expected, seq - 1));
                self.awaiting = Some(now);
            }
            self.held.insert(seq, message);
            if self.held.len() > self.max_held {
                let given_up = self.give_up();
                out.ready = given_up.ready;
                out.lost = given_up.lost;
            }
            return out;
        }
        self.last = seq;
        let mut out = Sequenced::nothing();
        out.ready.push(message);
        self.release(&mut out.ready);
        out
    }

    /// Gives up on an outstanding gap older than `timeout` at `now`: counts it lost and releases
    /// what was held.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Sequenced<T> {
        match self.awaiting {
            Some(since) if now.saturating_duration_since(since) > timeout => self.give_up(),
            _ => Sequenced::nothing(),
        }
    }

    fn give_up(&mut self) -> Sequenced<T> {
        let Some(&first_held) = self.held.keys().next() else {
            self.awaiting = None;
            return Sequenced::nothing();
        };
        let lost = first_held - self.last - 1;
        self.last = first_held - 1;
        let mut ready = Vec::new();
        self.release(&mut ready);
        Sequenced { ready, resend: None, lost }
    }

    /// Moves held messages that are now in sequence to `ready`.
    fn release(&mut self, ready: &mut Vec<T>) {
        while let Some(next) = self.held.remove(&(self.last + 1)) {
            self.last += 1;
            ready.push(next);
        }
        if self.held.is_empty() {
            self.awaiting = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const RESEND_TIMEOUT: Duration = Duration::from_secs(2);

    #[tokio::test(start_paused = true)]
    async fn in_order_messages_pass_straight_through_and_repeats_are_dropped() {
        let mut s = Sequencer::new(4, 100);
        let now = Instant::now();
        assert_eq!(s.offer(5, "e", now), Sequenced { ready: vec!["e"], resend: None, lost: 0 });
        assert_eq!(s.offer(5, "e again", now), Sequenced::nothing(), "already handled");
        assert_eq!(s.offer(3, "old", now), Sequenced::nothing());
        assert_eq!(s.last(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_asks_once_and_closes_when_the_range_arrives() {
        let mut s = Sequencer::new(0, 100);
        let now = Instant::now();
        assert_eq!(s.offer(1, 1, now).ready, [1]);
        let gap = s.offer(4, 4, now);
        assert_eq!((gap.ready.len(), gap.resend), (0, Some((2, 3))));
        assert_eq!(s.offer(5, 5, now).resend, None, "one RESEND per gap");
        assert!(s.awaiting());
        assert!(s.offer(2, 2, now).ready == [2], "2 is next; 3 is still missing");
        assert_eq!(s.offer(3, 3, now), Sequenced { ready: vec![3, 4, 5], resend: None, lost: 0 });
        assert!(!s.awaiting());
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_not_filled_in_time_is_given_up_and_counted_lost() {
        let mut s = Sequencer::new(10, 100);
        s.offer(13, 13, Instant::now());
        s.offer(14, 14, Instant::now());
        tokio::time::advance(RESEND_TIMEOUT).await;
        assert_eq!(s.expire(Instant::now(), RESEND_TIMEOUT), Sequenced::nothing(), "not past the timeout yet");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(s.expire(Instant::now(), RESEND_TIMEOUT), Sequenced { ready: vec![13, 14], resend: None, lost: 2 });
        assert_eq!(s.last(), 14);
        assert!(!s.awaiting());
        // A late copy of a lost message is now a repeat.
        assert_eq!(s.offer(11, 11, Instant::now()), Sequenced::nothing());
        // Nothing outstanding: nothing to expire.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(s.expire(Instant::now(), RESEND_TIMEOUT), Sequenced::nothing());
    }

    #[tokio::test(start_paused = true)]
    async fn too_much_held_behind_a_gap_gives_it_up_at_once() {
        let mut s = Sequencer::new(0, 3);
        for seq in 2..=4 {
            assert!(s.offer(seq, seq, Instant::now()).ready.is_empty());
        }
        let over = s.offer(5, 5, Instant::now());
        assert_eq!((over.ready, over.lost), (vec![2, 3, 4, 5], 1));
    }

    proptest! {
        /// Whatever order and repeats the messages come in, and whenever gaps are given up,
        /// what comes out is strictly increasing, never repeats, and with what was counted
        /// lost accounts for every number up to the last handled.
        #[test]
        fn output_is_in_order_without_repeats_and_accounts_for_every_number(
            arrivals in proptest::collection::vec((1u64..60, any::<bool>()), 1..200),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            runtime.block_on(async {
                let mut s = Sequencer::new(0, 16);
                let (mut out, mut lost) = (Vec::new(), 0);
                for (seq, expire) in arrivals {
                    let step = s.offer(seq, seq, Instant::now());
                    out.extend(step.ready);
                    lost += step.lost;
                    if expire {
                        tokio::time::advance(RESEND_TIMEOUT + Duration::from_millis(1)).await;
                        let step = s.expire(Instant::now(), RESEND_TIMEOUT);
                        out.extend(step.ready);
                        lost += step.lost;
                    }
                }
                assert!(out.windows(2).all(|w| w[0] < w[1]), "{out:?}");
                assert_eq!(out.len() as u64 + lost, s.last());
                assert!(out.last().is_none_or(|&l| l == s.last()));
            });
        }
    }
}
