//! The outbox: notices folded per chat and kind the moment they are emitted, taken out as
//! messages when the chat may be written to again.
//!
//! Emitting locks a mutex for a few microseconds and never waits on the network, so the tick
//! path is never slowed by Telegram. Memory is bounded by chats × kinds, whatever the rate:
//! a burst becomes one group (its count, its first few notices and its last), and the group
//! becomes one message ("12 fills in 3 s") when the chat's turn comes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mtml_core::{Notice, NoticeKind, NoticeSink, Summary};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

use crate::format;
use crate::settings::{Level, Levels};

/// Notices of a burst shown in its message besides the last.
const SHOWN_PER_BURST: usize = 3;
/// Summaries waiting for a chat beyond this many drop the oldest (a summary a day is the norm).
const MAX_WAITING_SUMMARIES: usize = 4;

/// A message ready to go to one chat.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// Text.
    Text {
        /// The chat.
        chat: i64,
        /// The message.
        text: String,
        /// Without sound.
        silent: bool,
    },
    /// A summary: its equity curve as a picture, its figures as the caption.
    Summary {
        /// The chat.
        chat: i64,
        /// The summary.
        summary: Arc<Summary>,
        /// Without sound.
        silent: bool,
    },
}

impl Outgoing {
    /// The chat it goes to.
    pub fn chat(&self) -> i64 {
        match self {
            Self::Text { chat, .. } | Self::Summary { chat, .. } => *chat,
        }
    }
}

/// Delivery counters, for metrics and tests.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Notices taken in (per chat that hears them).
    pub notices: AtomicU64,
    /// Notices a chat has turned off.
    pub suppressed: AtomicU64,
    /// Messages delivered.
    pub sent: AtomicU64,
    /// Notices in those messages (more than `sent` when bursts were grouped).
    pub grouped: AtomicU64,
    /// Answers of 429 (`retry_after` waited out).
    pub throttled: AtomicU64,
    /// Failed sends (retried with backoff).
    pub failed: AtomicU64,
    /// Messages given up: Telegram refused them for good (a chat that does not exist, a bot
    /// that was blocked) or they failed too many times.
    pub dropped: AtomicU64,
}

/// A burst of one kind waiting for its chat's turn.
#[derive(Debug)]
struct Group {
    count: u64,
    first_at: Instant,
    last_at: Instant,
    shown: Vec<Notice>,
    last: Notice,
}

#[derive(Debug)]
struct Chat {
    id: i64,
    levels: Levels,
    groups: BTreeMap<NoticeKind, Group>,
    summaries: VecDeque<Arc<Summary>>,
    /// A message that failed, sent again before anything new.
    retry: Option<Outgoing>,
    /// Not before this: Telegram's one message a second per chat, a 429's `retry_after`, or a
    /// failure's backoff.
    not_before: Instant,
    failures: u32,
}

impl Chat {
    fn new(id: i64, levels: Levels, now: Instant) -> Self {
        Self { id, levels, groups: BTreeMap::new(), summaries: VecDeque::new(), retry: None, not_before: now, failures: 0 }
    }

    fn has_waiting(&self) -> bool {
        self.retry.is_some() || !self.groups.is_empty() || !self.summaries.is_empty()
    }
}

/// Notices per chat, waiting to be sent. Shared by the emitters and the delivery task.
#[derive(Debug)]
pub struct Outbox {
    chats: Mutex<Vec<Chat>>,
    wake: Notify,
    /// Counters.
    pub stats: DeliveryStats,
}

impl Outbox {
    /// An outbox for `chats`, each with its levels.
    pub fn new(chats: impl IntoIterator<Item = (i64, Levels)>) -> Arc<Self> {
        let now = Instant::now();
        let chats = chats.into_iter().map(|(id, levels)| Chat::new(id, levels, now)).collect();
        Arc::new(Self { chats: Mutex::new(chats), wake: Notify::new(), stats: DeliveryStats::default() })
    }

    /// The levels of `chat`, if it is one of the outbox's.
    pub fn levels(&self, chat: i64) -> Option<Levels> {
        self.chats.lock().iter().find(|c| c.id == chat).map(|c| c.levels.clone())
    }

    /// Sets the level of `kind` for `chat`; false if the chat is not one of the outbox's.
    pub fn set_level(&self, chat: i64, kind: NoticeKind, level: Level) -> bool {
        let mut chats = self.chats.lock();
        let Some(found) = chats.iter_mut().find(|c| c.id == chat) else { return false };
        found.levels.set(kind, level);
        if level == Level::Off {
            found.groups.remove(&kind);
        }
        true
    }

    /// Folds `notice` into the waiting groups of every chat that hears its kind.
    pub fn put(&self, notice: Notice) {
        let kind = notice.kind();
        let now = Instant::now();
        let summary = match &notice {
            Notice::Summary(summary) => Some(Arc::new(summary.clone())),
            _ => None,
        };
        let mut woke = false;
        {
            let mut chats = self.chats.lock();
            for chat in chats.iter_mut() {
                if chat.levels.get(kind) == Level::Off {
                    self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                self.stats.notices.fetch_add(1, Ordering::Relaxed);
                woke = true;
                if let Some(summary) = &summary {
                    if chat.summaries.len() == MAX_WAITING_SUMMARIES {
                        chat.summaries.pop_front();
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    chat.summaries.push_back(Arc::clone(summary));
                    continue;
                }
                match chat.groups.get_mut(&kind) {
                    Some(group) => {
                        group.count += 1;
                        group.last_at = now;
                        if group.shown.len() < SHOWN_PER_BURST {
                            group.shown.push(std::mem::replace(&mut group.last, notice.clone()));
                        } else {
                            group.last = notice.clone();
                        }
                    }
                    None => {
                        let group = Group { count: 1, first_at: now, last_at: now, shown: Vec::new(), last: notice.clone() };
                        chat.groups.insert(kind, group);
                    }
                }
            }
        }
        if woke {
            self.wake.notify_one();
        }
    }

    /// The next message of a chat whose turn it is at `now`, or when the next turn comes (None
    /// when nothing waits). A chat's waiting groups become one message; a summary goes alone.
    pub fn take(&self, now: Instant) -> Result<Outgoing, Option<Instant>> {
        let mut chats = self.chats.lock();
        let mut next: Option<Instant> = None;
        for chat in chats.iter_mut().filter(|c| c.has_waiting()) {
            if chat.not_before > now {
                next = Some(next.map_or(chat.not_before, |n| n.min(chat.not_before)));
                continue;
            }
            // The chat's turn is taken until the send's outcome sets the next one.
            chat.not_before = now + IN_FLIGHT;
            if let Some(retry) = chat.retry.take() {
                return Ok(retry);
            }
            if let Some(summary) = chat.summaries.pop_front() {
                let silent = chat.levels.get(NoticeKind::Summary) == Level::Silent;
                return Ok(Outgoing::Summary { chat: chat.id, summary, silent });
            }
            let groups = std::mem::take(&mut chat.groups);
            let mut silent = true;
            let mut parts = Vec::with_capacity(groups.len());
            for (kind, group) in groups {
                silent &= chat.levels.get(kind) == Level::Silent;
                self.stats.grouped.fetch_add(group.count, Ordering::Relaxed);
                parts.push(match group.count {
                    1 => format::notice(&group.last),
                    n => format::burst(kind, n, group.last_at - group.first_at, &group.shown, &group.last),
                });
            }
            return Ok(Outgoing::Text { chat: chat.id, text: parts.join("\n\n"), silent });
        }
        Err(next)
    }

    /// Records how sending `message` went and when its chat may be written to next: a
    /// second after a success, after `retry_after` for a 429, after a growing backoff for a
    /// failure (the message is kept and sent again first), never again for a refusal.
    pub fn sent(&self, message: Outgoing, outcome: &SendOutcome, now: Instant) {
        let mut chats = self.chats.lock();
        let Some(chat) = chats.iter_mut().find(|c| c.id == message.chat()) else { return };
        match outcome {
            SendOutcome::Delivered => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                chat.failures = 0;
                chat.not_before = now + PER_CHAT_INTERVAL;
            }
            SendOutcome::RetryAfter(wait) => {
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                chat.not_before = now + *wait;
                chat.retry = Some(message);
            }
            SendOutcome::Failed => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                chat.failures += 1;
                if chat.failures > MAX_FAILURES {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    chat.failures = 0;
                    tracing::error!(chat = chat.id, "telegram message given up after repeated failures");
                } else {
                    chat.retry = Some(message);
                }
                chat.not_before = now + backoff(chat.failures);
            }
            SendOutcome::Refused => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                chat.not_before = now + PER_CHAT_INTERVAL;
            }
        }
    }

    /// Takes `chat`'s turn for a message sent outside the outbox (a command's answer), or says
    /// when the turn comes. A chat not configured for notices is added with every kind off, so
    /// its answers are paced like any other chat's.
    pub fn claim(&self, chat: i64, now: Instant) -> Result<(), Instant> {
        let mut chats = self.chats.lock();
        let found = match chats.iter().position(|c| c.id == chat) {
            Some(at) => &mut chats[at],
            None => {
                let mut levels = Levels::default();
                for kind in NoticeKind::ALL {
                    levels.set(kind, Level::Off);
                }
                chats.push(Chat::new(chat, levels, now));
                let last = chats.len() - 1;
                &mut chats[last]
            }
        };
        if found.not_before > now {
            return Err(found.not_before);
        }
        found.not_before = now + IN_FLIGHT;
        Ok(())
    }

    /// Ends a turn taken with [`Outbox::claim`]: the chat's next turn is at `next` (a second
    /// after the answer came, or a 429's `retry_after`).
    pub fn release(&self, chat: i64, next: Instant) {
        if let Some(found) = self.chats.lock().iter_mut().find(|c| c.id == chat) {
            found.not_before = next;
        }
        self.wake.notify_one();
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        !self.chats.lock().iter().any(Chat::has_waiting)
    }

    /// Wakes when something is put.
    pub(crate) async fn put_happened(&self) {
        self.wake.notified().await;
    }
}

impl NoticeSink for Outbox {
    fn notice(&self, notice: Notice) {
        self.put(notice);
    }
}

/// How a send went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Telegram took it.
    Delivered,
    /// 429: wait this long.
    RetryAfter(Duration),
    /// The network or Telegram failed (5xx, a timeout): try again later.
    Failed,
    /// Telegram refused it for good (400, 403): sending it again would not help.
    Refused,
}

/// A chat's turn while a message is on its way (the outcome sets the next turn; this bounds a
/// send that never answers).
const IN_FLIGHT: Duration = Duration::from_secs(60);
/// Telegram's limit per chat: about one message a second.
pub const PER_CHAT_INTERVAL: Duration = Duration::from_secs(1);
/// Failures in a row before a message is given up.
const MAX_FAILURES: u32 = 8;

/// 1 s, 2 s, 4 s … up to a minute.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use mtml_core::{ChainId, Side, Symbol};

    use super::*;

    fn fill(n: u8) -> Notice {
        Notice::Fill {
            symbol: Symbol::new("EURUSD"),
            side: Side::Buy,
            volume: 0.1,
            price: 1.0 + f64::from(n) / 1000.0,
            slippage: 0.0,
            chain_id: ChainId::from_bytes([n.max(1); 16]).unwrap(),
        }
    }

    fn service() -> Notice {
        Notice::Service { service: "mtml run".into(), state: "started".into(), detail: "test".into() }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_becomes_one_message_after_the_chat_s_interval() {
        let outbox = Outbox::new([(1, Levels::default())]);
        outbox.put(fill(1));
        let first = outbox.take(Instant::now()).unwrap();
        outbox.sent(first, &SendOutcome::Delivered, Instant::now());
        for n in 2..=13 {
            outbox.put(fill(n));
        }
        let next = outbox.take(Instant::now()).unwrap_err().expect("a turn is due");
        assert_eq!(next - Instant::now(), PER_CHAT_INTERVAL);
        tokio::time::advance(PER_CHAT_INTERVAL).await;
        let Outgoing::Text { text, silent, .. } = outbox.take(Instant::now()).unwrap() else { panic!("text") };
        assert!(text.starts_with("12 fills in "), "{text}");
        assert!(!silent);
        assert_eq!(outbox.stats.grouped.load(Ordering::Relaxed), 13);
        assert!(outbox.take(Instant::now()).unwrap_err().is_none(), "nothing waits");
    }

    #[tokio::test(start_paused = true)]
    async fn off_kinds_are_not_kept_and_silent_ones_are_sent_without_sound() {
        let levels = Levels::with_overrides([("fill", "off")]).unwrap();
        let outbox = Outbox::new([(1, levels), (2, Levels::default())]);
        outbox.put(fill(1));
        outbox.put(service());
        let Outgoing::Text { chat, text, silent } = outbox.take(Instant::now()).unwrap() else { panic!() };
        assert_eq!((chat, silent), (1, true), "chat 1 hears only the silent service notice: {text}");
        assert!(!text.contains("fill"));
        let Outgoing::Text { chat, silent, .. } = outbox.take(Instant::now()).unwrap() else { panic!() };
        assert_eq!((chat, silent), (2, false), "a sounding fill makes the message sound");
        assert_eq!(outbox.stats.suppressed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_waits_its_retry_after_and_a_failure_backs_off_then_the_message_goes_first() {
        let outbox = Outbox::new([(1, Levels::default())]);
        outbox.put(fill(1));
        let message = outbox.take(Instant::now()).unwrap();
        outbox.sent(message.clone(), &SendOutcome::RetryAfter(Duration::from_secs(7)), Instant::now());
        outbox.put(fill(2));
        assert_eq!(outbox.take(Instant::now()).unwrap_err().unwrap() - Instant::now(), Duration::from_secs(7));
        tokio::time::advance(Duration::from_secs(7)).await;
        let again = outbox.take(Instant::now()).unwrap();
        assert_eq!(again, message, "the throttled message is sent again before the new one");
        outbox.sent(again, &SendOutcome::Failed, Instant::now());
        outbox.sent(outbox.take(Instant::now() + Duration::from_secs(1)).unwrap(), &SendOutcome::Failed, Instant::now());
        assert_eq!(outbox.take(Instant::now()).unwrap_err().unwrap() - Instant::now(), Duration::from_secs(2));
        assert_eq!(outbox.stats.failed.load(Ordering::Relaxed), 2);
        assert_eq!(outbox.stats.throttled.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
