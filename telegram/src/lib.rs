//! mtml's Telegram bot, through teloxide against the Bot API (Telegram's, or any server that
//! speaks it, named by `telegram.api_url`).
//!
//! - [`outbox`]: notices folded per chat and kind as they are emitted (never waiting), taken out
//!   as messages when the chat's turn comes; bursts become one message.
//! - [`delivery`]: the task that sends them within Telegram's limits, waits out 429s and
//!   retries failures with backoff.
//! - [`settings`]: each notice kind on, silent or off, per chat.
//! - [`format`] and [`chart`]: notices as short lines, the equity curve as a picture.
//! - [`command`] and [`console`]: the commands, who may give them, confirmations that expire,
//!   and the audit log, against a running mtml through [`Operations`].
//! - [`Telegram`]: all of it started from [`TelegramSettings`]; [`check`] verifies a token.
//!
//! The bot token is never logged and never part of an error message: it lives only inside the
//! teloxide `Bot`, whose errors carry no URL.

pub mod chart;
pub mod command;
pub mod console;
pub mod delivery;
pub mod format;
pub mod outbox;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use mtml_core::{Notice, Notices};
use teloxide::Bot;
use teloxide::payloads::SendMessageSetters as _;
use teloxide::requests::Requester as _;
use teloxide::types::ChatId;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use command::{Access, Command, Period};
pub use console::{AuditEntry, ConsoleSettings, Operations};
pub use outbox::{DeliveryStats, Outbox};
pub use settings::{Level, Levels};

/// Everything the bot needs.
#[derive(Clone)]
pub struct TelegramSettings {
    /// The bot token (never shown by `Debug`).
    pub token: String,
    /// The Bot API's base URL (`https://api.telegram.org` by default).
    pub api_url: String,
    /// The chats notices go to, each with its levels.
    pub chats: Vec<(i64, Levels)>,
    /// Who may give commands.
    pub access: Access,
    /// How long a confirmation stays valid.
    pub confirm_within: Duration,
    /// Long-polling timeout of `getUpdates`.
    pub poll_timeout: Duration,
    /// When the daily summary is sent, UTC (hour, minute); `None` for never.
    pub daily_summary_at: Option<(u8, u8)>,
}

impl std::fmt::Debug for TelegramSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramSettings")
            .field("token", &"<hidden>")
            .field("api_url", &self.api_url)
            .field("chats", &self.chats)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// Why the bot could not start or its token check failed; never carries the token.
#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    /// The API URL is not a URL.
    #[error("telegram.api_url {0}: not a URL")]
    ApiUrl(String),
    /// The HTTP client could not be built.
    #[error("the HTTP client for Telegram could not be built: {0}")]
    Client(String),
    /// The Bot API answered with an error or could not be reached.
    #[error("the Bot API {api_url} answered {what}: {error}")]
    Api {
        /// The API's URL.
        api_url: String,
        /// Which request.
        what: &'static str,
        /// Its error (teloxide's errors carry no URL, so no token).
        error: String,
    },
}

/// The teloxide client for `settings`: its own HTTP client, whose timeout outlasts a long poll.
pub fn bot(settings: &TelegramSettings) -> Result<Bot, TelegramError> {
    let url = settings.api_url.parse().map_err(|_| TelegramError::ApiUrl(mtml_core::text::quote(&settings.api_url)))?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(settings.poll_timeout + Duration::from_secs(15))
        .build()
        .map_err(|error| TelegramError::Client(error.without_url().to_string()))?;
    Ok(Bot::with_client(settings.token.clone(), client).set_api_url(url))
}

/// `mtml telegram check`: verifies the token with `getMe` and sends a test message to every
/// configured chat; the bot's user name.
pub async fn check(settings: &TelegramSettings) -> Result<String, TelegramError> {
    let bot = bot(settings)?;
    let failed = |what, error: teloxide::RequestError| TelegramError::Api { api_url: settings.api_url.clone(), what, error: error.to_string() };
    let me = bot.get_me().await.map_err(|e| failed("getMe", e))?;
    let name = me.user.username.clone().unwrap_or_else(|| me.user.first_name.clone());
    for (chat, _) in &settings.chats {
        bot.send_message(ChatId(*chat), format!("mtml: test message from @{name}. Notices will come here."))
            .disable_notification(true)
            .await
            .map_err(|e| failed("sendMessage", e))?;
    }
    Ok(name)
}

/// The running bot: where notices go, and its tasks.
pub struct Telegram {
    /// The outbox (for metrics and tests).
    pub outbox: Arc<Outbox>,
    bot: Bot,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Telegram {
    /// Starts delivering notices.
    pub fn start(settings: &TelegramSettings) -> Result<Self, TelegramError> {
        let bot = bot(settings)?;
        let outbox = Outbox::new(settings.chats.iter().cloned());
        let shutdown = CancellationToken::new();
        let tasks = vec![tokio::spawn(delivery::deliver(bot.clone(), Arc::clone(&outbox), shutdown.clone()))];
        Ok(Self { bot, outbox, shutdown, tasks })
    }

    /// Starts answering commands against `operations`, and the daily summary.
    pub fn console(&mut self, settings: &TelegramSettings, operations: Arc<dyn Operations>) {
        let console = ConsoleSettings {
            access: settings.access.clone(),
            confirm_within: settings.confirm_within,
            poll_timeout: settings.poll_timeout,
        };
        let (bot, outbox, shutdown) = (self.bot.clone(), Arc::clone(&self.outbox), self.shutdown.clone());
        self.tasks.push(tokio::spawn(console::serve(bot, Arc::clone(&operations), outbox, console, shutdown.clone())));
        if let Some(at) = settings.daily_summary_at {
            self.tasks.push(tokio::spawn(daily_summaries(operations, self.notices(), at, shutdown)));
        }
    }

    /// Where the parts of mtml emit notices for this bot.
    pub fn notices(&self) -> Notices {
        Notices::to(self.outbox.clone())
    }

    /// Stops polling, sends what waits (for a few seconds at most) and returns.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn unix_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds from `now_ms` to the next `hour:minute` UTC.
pub fn until_next(now_ms: i64, (hour, minute): (u8, u8)) -> i64 {
    const DAY: i64 = 86_400_000;
    let at = (i64::from(hour) * 60 + i64::from(minute)) * 60_000;
    let into_day = now_ms.rem_euclid(DAY);
    if at > into_day { at - into_day } else { at - into_day + DAY }
}

/// Emits the summary of the last 24 hours every day at `at` UTC.
async fn daily_summaries(operations: Arc<dyn Operations>, notices: Notices, at: (u8, u8), shutdown: CancellationToken) {
    loop {
        let wait = Duration::from_millis(u64::try_from(until_next(unix_ms(), at)).unwrap_or(0));
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let now_ms = unix_ms();
        let day = time::OffsetDateTime::from_unix_timestamp(now_ms / 1000).map(|t| t.date().to_string()).unwrap_or_default();
        match operations.summary(now_ms - 86_400_000, format!("daily summary {day}")).await {
            Ok(summary) => notices.emit(|| Notice::Summary(summary)),
            Err(error) => tracing::warn!(%error, "daily summary could not be made"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_summary_time_is_later_today_or_tomorrow() {
        let hour = 3_600_000;
        assert_eq!(until_next(20 * hour, (21, 0)), hour);
        assert_eq!(until_next(22 * hour, (21, 0)), 23 * hour);
        assert_eq!(until_next(21 * hour, (21, 0)), 24 * hour, "just sent: the next is tomorrow");
    }

    #[test]
    fn the_token_is_hidden_from_debug() {
        let settings = TelegramSettings {
            token: "123456:SECRET-token".into(),
            api_url: "http://127.0.0.1:1".into(),
            chats: vec![],
            access: Access::default(),
            confirm_within: Duration::from_secs(60),
            poll_timeout: Duration::from_secs(10),
            daily_summary_at: None,
        };
        assert!(!format!("{settings:?}").contains("SECRET"));
    }
}
