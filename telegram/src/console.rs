//! The operations console: reads updates by long polling, answers allowed users' commands,
//! asks for confirmation before destructive ones (an inline button that expires), and writes
//! every command to the audit log with who gave it and how it ended.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use mtml_core::Summary;
use teloxide::payloads::{AnswerCallbackQuerySetters as _, GetUpdatesSetters as _, SendMessageSetters as _, SendPhotoSetters as _};
use teloxide::requests::Requester as _;
use teloxide::types::{
    CallbackQuery, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Message, MessageId, UpdateKind,
};
use teloxide::{Bot, RequestError};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::command::{Access, Allowed, Command, HELP};
use crate::outbox::Outbox;
use crate::{chart, format};

/// Telegram's limit on a message's length; longer answers are cut with a note.
const MAX_MESSAGE: usize = 4_000;

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who: `telegram:<user id>`.
    pub actor: String,
    /// The command as given (`/close EURUSD`).
    pub action: String,
    /// How it ended: `done`, `refused: …`, `failed: …`, `asked to confirm`, `cancelled`, `expired`.
    pub outcome: String,
}

/// What the console works against: a running mtml, in this process or another (the mtml
/// crate implements it over gRPC and the journal).
#[async_trait]
pub trait Operations: Send + Sync + 'static {
    /// Answers a command (any but `/help`, `/notify` and `/chart`) as text; the error names what
    /// failed. `actor` is who asked (`telegram:<user id>`), for the services' own records.
    async fn answer(&self, command: &Command, actor: &str) -> Result<String, String>;
    /// Realised PnL and the equity curve since `since_ms` (UTC epoch ms).
    async fn summary(&self, since_ms: i64, title: String) -> Result<Summary, String>;
    /// Writes one line of the audit log.
    async fn audit(&self, entry: AuditEntry);
}

/// How the console behaves.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// Who may read and who may act.
    pub access: Access,
    /// How long a confirmation button stays valid.
    pub confirm_within: Duration,
    /// Long-polling timeout of `getUpdates`.
    pub poll_timeout: Duration,
}

/// A destructive command waiting for its user's button.
#[derive(Debug)]
struct Pending {
    user: u64,
    chat: ChatId,
    message: MessageId,
    command: Command,
    expires_at: Instant,
}

struct Console {
    bot: Bot,
    operations: Arc<dyn Operations>,
    outbox: Arc<Outbox>,
    settings: ConsoleSettings,
    pending: HashMap<u64, Pending>,
    next_pending: u64,
    refused: HashSet<u64>,
}

/// Answers commands until `shutdown`.
pub async fn serve(
    bot: Bot,
    operations: Arc<dyn Operations>,
    outbox: Arc<Outbox>,
    settings: ConsoleSettings,
    shutdown: CancellationToken,
) {
    let mut console =
        Console { bot, operations, outbox, settings, pending: HashMap::new(), next_pending: 1, refused: HashSet::new() };
    let mut offset: i32 = 0;
    let mut failures: u32 = 0;
    loop {
        console.expire(Instant::now()).await;
        let poll = console
            .bot
            .get_updates()
            .offset(offset)
            .timeout(u32::try_from(console.settings.poll_timeout.as_secs()).unwrap_or(30));
        let updates = tokio::select! {
            () = shutdown.cancelled() => return,
            updates = poll => updates,
        };
        let updates = match updates {
            Ok(updates) => {
                failures = 0;
                updates
            }
            Err(error) => {
                failures += 1;
                let wait = match &error {
                    RequestError::RetryAfter(wait) => wait.duration(),
                    _ => Duration::from_secs(1u64 << failures.min(5)),
                };
                tracing::warn!(error = %error, wait_ms = wait.as_millis() as u64, "telegram getUpdates failed; polling again later");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        for update in updates {
            offset = offset.max(i32::try_from(update.id.0).unwrap_or(i32::MAX).saturating_add(1));
            match update.kind {
                UpdateKind::Message(message) => console.on_message(&message).await,
                UpdateKind::CallbackQuery(query) => console.on_button(&query).await,
                _ => {}
            }
        }
    }
}

fn actor(user: u64) -> String {
    format!("telegram:{user}")
}

fn cut(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("\n… (cut: see the command line for all of it)");
    }
    if text.is_empty() { "(nothing)".into() } else { text }
}

impl Console {
    /// Sends what `send` makes in `chat`'s turn (Telegram's one message a second per chat,
    /// shared with the notices), waiting out a 429 a few times before giving up.
    async fn in_turn<T, F>(&self, chat: ChatId, send: impl Fn() -> F) -> Result<T, RequestError>
    where
        F: std::future::IntoFuture<Output = Result<T, RequestError>>,
    {
        let mut attempts = 0;
        loop {
            if let Err(turn) = self.outbox.claim(chat.0, Instant::now()) {
                // While a notice is on its way the turn is a placeholder a minute out; its outcome
                // sets the real one, so look again soon.
                tokio::time::sleep_until(turn.min(Instant::now() + Duration::from_millis(100))).await;
                continue;
            }
            let result = send().await;
            match result {
                Err(RequestError::RetryAfter(wait)) => {
                    self.outbox.release(chat.0, Instant::now() + wait.duration());
                    self.outbox.stats.throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if attempts == 3 {
                        return Err(RequestError::RetryAfter(wait));
                    }
                    attempts += 1;
                }
                result => {
                    self.outbox.release(chat.0, Instant::now() + crate::outbox::PER_CHAT_INTERVAL);
                    return result;
                }
            }
        }
    }

    async fn reply(&self, chat: ChatId, text: impl Into<String>) {
        let text = cut(text.into());
        if let Err(error) = self.in_turn(chat, || self.bot.send_message(chat, text.clone())).await {
            tracing::warn!(chat = chat.0, error = %error, "telegram reply failed");
        }
    }

    async fn audit(&self, user: u64, command: &Command, outcome: impl Into<String>) {
        let entry = AuditEntry { actor: actor(user), action: command.text(), outcome: outcome.into() };
        tracing::info!(actor = %entry.actor, action = %entry.action, outcome = %entry.outcome, "telegram command");
        self.operations.audit(entry).await;
    }

    async fn on_message(&mut self, message: &Message) {
        let (Some(user), Some(text)) = (message.from.as_ref(), message.text()) else { return };
        let (user, chat) = (user.id.0, message.chat.id);
        let allowed = self.settings.access.of(user);
        if allowed == Allowed::Nothing {
            tracing::warn!(user, chat = chat.0, "telegram message from a user who is not allowed; refused");
            if self.refused.insert(user) {
                self.operations.audit(AuditEntry { actor: actor(user), action: mtml_core::text::prefix(text).to_owned(), outcome: "refused: not an allowed user".into() }).await;
                self.reply(chat, format!("Not allowed: this bot answers only its configured users (your id is {user}).")).await;
            }
            return;
        }
        let command = match Command::parse(text) {
            Ok(command) => command,
            Err(error) => return self.reply(chat, error).await,
        };
        if command.acts() && allowed == Allowed::Read {
            self.audit(user, &command, "refused: read-only user").await;
            return self.reply(chat, format!("Refused: {} changes things and you may only read.", command.text())).await;
        }
        if command.needs_confirmation() {
            return self.ask_confirmation(user, chat, command).await;
        }
        self.run(user, chat, command).await;
    }

    async fn ask_confirmation(&mut self, user: u64, chat: ChatId, command: Command) {
        let id = self.next_pending;
        self.next_pending += 1;
        let within = self.settings.confirm_within.as_secs();
        let buttons = InlineKeyboardMarkup::new([[
            InlineKeyboardButton::callback("Confirm", format!("confirm:{id}")),
            InlineKeyboardButton::callback("Cancel", format!("cancel:{id}")),
        ]]);
        let text = format!("Confirm {}? (expires in {within} s)", command.text());
        let asked = self.in_turn(chat, || self.bot.send_message(chat, text.clone()).reply_markup(buttons.clone())).await;
        match asked {
            Ok(sent) => {
                self.audit(user, &command, "asked to confirm").await;
                let expires_at = Instant::now() + self.settings.confirm_within;
                self.pending.insert(id, Pending { user, chat, message: sent.id, command, expires_at });
            }
            Err(error) => tracing::warn!(chat = chat.0, error = %error, "telegram confirmation could not be sent"),
        }
    }

    async fn on_button(&mut self, query: &CallbackQuery) {
        let user = query.from.id.0;
        let data = query.data.as_deref().unwrap_or_default();
        let (choice, id) = data.split_once(':').unwrap_or((data, ""));
        let id: u64 = id.parse().unwrap_or(0);
        let answer = |text: &'static str| self.bot.answer_callback_query(query.id.clone()).text(text);
        let Some(pending) = self.pending.get(&id) else {
            let _ = answer("This confirmation has expired or was answered.").await;
            return;
        };
        if pending.user != user {
            tracing::warn!(user, "telegram confirmation pressed by another user; ignored");
            let _ = answer("Only the user who asked may confirm.").await;
            return;
        }
        let Some(pending) = self.pending.remove(&id) else { return };
        if Instant::now() >= pending.expires_at {
            let _ = answer("Expired.").await;
            return self.expired(pending).await;
        }
        let _ = answer(if choice == "confirm" { "Confirmed." } else { "Cancelled." }).await;
        if choice != "confirm" {
            self.audit(user, &pending.command, "cancelled").await;
            self.edit(&pending, format!("Cancelled: {} was not done.", pending.command.text())).await;
            return;
        }
        let reply = self.execute(user, pending.chat, &pending.command).await;
        self.edit(&pending, reply).await;
    }

    async fn edit(&self, pending: &Pending, text: String) {
        if let Err(error) = self.bot.edit_message_text(pending.chat, pending.message, cut(text)).await {
            tracing::warn!(chat = pending.chat.0, error = %error, "telegram edit failed");
        }
    }

    async fn expired(&self, pending: Pending) {
        self.audit(pending.user, &pending.command, "expired").await;
        self.edit(&pending, format!("Expired: {} was not done.", pending.command.text())).await;
    }

    /// Marks confirmations whose time has passed as expired.
    async fn expire(&mut self, now: Instant) {
        let gone: Vec<u64> = self.pending.iter().filter(|(_, p)| p.expires_at <= now).map(|(id, _)| *id).collect();
        for id in gone {
            if let Some(pending) = self.pending.remove(&id) {
                self.expired(pending).await;
            }
        }
    }

    /// Runs a command and replies with its answer.
    async fn run(&self, user: u64, chat: ChatId, command: Command) {
        if let Command::Chart(period) = command {
            return self.chart(user, chat, &command, period).await;
        }
        let reply = self.execute(user, chat, &command).await;
        self.reply(chat, reply).await;
    }

    /// Does a command and audits it; the answer to show.
    async fn execute(&self, user: u64, chat: ChatId, command: &Command) -> String {
        let answer = match command {
            Command::Help => Ok(HELP.to_owned()),
            Command::Notify(None) => match self.outbox.levels(chat.0) {
                Some(levels) => Ok(format!("Notices for this chat:\n{levels}Change one with /notify <kind> on|silent|off.")),
                None => Err("this chat gets no notices: add its id to telegram.chats".to_owned()),
            },
            Command::Notify(Some((kind, level))) => match self.outbox.set_level(chat.0, *kind, *level) {
                true => Ok(format!("{} notices are now {} in this chat.", kind.name(), level.name())),
                false => Err("this chat gets no notices: add its id to telegram.chats".to_owned()),
            },
            _ => self.operations.answer(command, &actor(user)).await,
        };
        match answer {
            Ok(text) => {
                self.audit(user, command, "done").await;
                text
            }
            Err(error) => {
                self.audit(user, command, format!("failed: {error}")).await;
                format!("Failed: {error}")
            }
        }
    }

    async fn chart(&self, user: u64, chat: ChatId, command: &Command, period: crate::command::Period) {
        let now_ms = crate::unix_ms();
        let title = format!("equity, last {}", period.name());
        match self.operations.summary(period.since_ms(now_ms), title).await {
            Ok(summary) => {
                let png = chart::equity_png(&summary.equity);
                let send = || {
                    let picture = InputFile::memory(png.clone()).file_name("equity.png");
                    self.bot.send_photo(chat, picture).caption(format::caption(&summary))
                };
                match self.in_turn(chat, send).await {
                    Ok(_) => self.audit(user, command, "done").await,
                    Err(error) => {
                        tracing::warn!(chat = chat.0, error = %error, "telegram chart could not be sent");
                        self.audit(user, command, "failed: the picture could not be sent").await;
                    }
                }
            }
            Err(error) => {
                self.audit(user, command, format!("failed: {error}")).await;
                self.reply(chat, format!("Failed: {error}")).await;
            }
        }
    }
}
