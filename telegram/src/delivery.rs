//! The delivery task: takes messages out of the [`Outbox`] as chats' turns come and sends them
//! through the Bot API, within Telegram's overall limit (about 30 messages a second).

use std::collections::VecDeque;
use std::sync::Arc;

use teloxide::payloads::{SendMessageSetters as _, SendPhotoSetters as _};
use teloxide::requests::Requester as _;
use teloxide::types::{ChatId, InputFile};
use teloxide::{ApiError, Bot, RequestError};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::chart;
use crate::format;
use crate::outbox::{Outbox, Outgoing, SendOutcome};

/// Telegram's overall limit: messages a second across every chat.
const OVERALL_PER_SECOND: usize = 30;
/// How long, after shutdown is asked, delivery keeps sending what waits (the "stopping" notice,
/// a replay's summary). A send still under way then is abandoned; a chat waiting out a 429 or a
/// backoff beyond it is not waited for: stopping is never held up by Telegram for longer.
const DRAIN_ON_SHUTDOWN: Duration = Duration::from_secs(3);

/// Sends what the outbox holds until `shutdown`, then for a few seconds more while anything
/// waits.
pub async fn deliver(bot: Bot, outbox: Arc<Outbox>, shutdown: CancellationToken) {
    let mut recent: VecDeque<Instant> = VecDeque::with_capacity(OVERALL_PER_SECOND);
    let mut deadline: Option<Instant> = None;
    loop {
        if deadline.is_none() && shutdown.is_cancelled() {
            deadline = Some(Instant::now() + DRAIN_ON_SHUTDOWN);
        }
        if let Some(deadline) = deadline
            && (Instant::now() >= deadline || outbox.is_empty())
        {
            return;
        }
        let now = Instant::now();
        match outbox.take(now) {
            Ok(message) => {
                while recent.front().is_some_and(|&at| now - at >= Duration::from_secs(1)) {
                    recent.pop_front();
                }
                if recent.len() == OVERALL_PER_SECOND
                    && let Some(&oldest) = recent.front()
                {
                    tokio::time::sleep_until(oldest + Duration::from_secs(1)).await;
                    recent.pop_front();
                }
                recent.push_back(Instant::now());
                // A send under way when shutdown is asked gets what is left of the drain.
                let outcome = {
                    let sending = send(&bot, &message);
                    tokio::pin!(sending);
                    let mut done = None;
                    if deadline.is_none() {
                        tokio::select! {
                            outcome = &mut sending => done = Some(outcome),
                            () = shutdown.cancelled() => deadline = Some(Instant::now() + DRAIN_ON_SHUTDOWN),
                        }
                    }
                    match (done, deadline) {
                        (Some(outcome), _) => Some(outcome),
                        (None, Some(until)) => tokio::time::timeout_at(until, &mut sending).await.ok(),
                        (None, None) => None,
                    }
                };
                let Some(outcome) = outcome else {
                    tracing::warn!(chat = message.chat(), "telegram send abandoned at shutdown");
                    return;
                };
                outbox.sent(message, &outcome, Instant::now());
            }
            Err(next) => {
                if let (Some(deadline), Some(next)) = (deadline, next)
                    && next >= deadline
                {
                    tracing::warn!("telegram messages left unsent at shutdown: their chat waits out a 429 or a failure");
                    return;
                }
                let wake = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                let wake = deadline.map_or(wake, |d| wake.min(d));
                tokio::select! {
                    () = outbox.put_happened() => {}
                    () = tokio::time::sleep_until(wake) => {}
                    () = shutdown.cancelled(), if deadline.is_none() => {}
                }
            }
        }
    }
}

/// Sends one message; how it went.
async fn send(bot: &Bot, message: &Outgoing) -> SendOutcome {
    let result = match message {
        Outgoing::Text { chat, text, silent } => {
            bot.send_message(ChatId(*chat), text).disable_notification(*silent).await.map(drop)
        }
        Outgoing::Summary { chat, summary, silent } => {
            let picture = InputFile::memory(chart::equity_png(&summary.equity)).file_name("equity.png");
            bot.send_photo(ChatId(*chat), picture).caption(format::caption(summary)).disable_notification(*silent).await.map(drop)
        }
    };
    match result {
        Ok(()) => SendOutcome::Delivered,
        Err(error) => {
            let outcome = outcome_of(&error);
            tracing::warn!(chat = message.chat(), error = %error, outcome = ?outcome, "telegram send failed");
            outcome
        }
    }
}

/// What a Bot API error means for the message: wait, retry, or give up.
pub(crate) fn outcome_of(error: &RequestError) -> SendOutcome {
    match error {
        RequestError::RetryAfter(wait) => SendOutcome::RetryAfter(wait.duration()),
        RequestError::Network(_) | RequestError::InvalidJson { .. } | RequestError::Io(_) => SendOutcome::Failed,
        RequestError::Api(ApiError::Unknown(text)) if is_server_side(text) => SendOutcome::Failed,
        RequestError::Api(_) | RequestError::MigrateToChatId(_) => SendOutcome::Refused,
    }
}

/// Telegram's own description of a 5xx (`Internal Server Error`, `Bad Gateway`).
fn is_server_side(description: &str) -> bool {
    ["Internal Server Error", "Bad Gateway", "Service Unavailable", "Gateway Timeout"].iter().any(|d| description.contains(d))
}
