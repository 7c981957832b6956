//! The bot against a local Bot API server (Telegram's protocol, Telegram's limits and faults):
//! delivery, grouping, 429s and outages, the commands' access rules, confirmations and expiry.
//! The operations behind the commands are a recording stand-in here; `mtml/tests/telegram.rs`
//! runs the bot against a real replay.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use mtml_core::{ChainId, Notice, Side, Summary, Symbol};
use mtml_telegram::{Access, AuditEntry, Command, Levels, Operations, Telegram, TelegramSettings};
use mtml_test_support::bot_api::{BotApi, Fault, Sent};
use parking_lot::Mutex;

const TOKEN: &str = "123456:TEST-secret-token";
const CHAT: i64 = 777;
const READER: u64 = 11;
const ACTOR: u64 = 22;
const STRANGER: u64 = 99;

#[derive(Default)]
struct Recorded {
    commands: Mutex<Vec<(String, String)>>,
    audit: Mutex<Vec<AuditEntry>>,
}

#[async_trait]
impl Operations for Recorded {
    async fn answer(&self, command: &Command, actor: &str) -> Result<String, String> {
        self.commands.lock().push((command.text(), actor.to_owned()));
        match command {
            Command::Rollback(name) if name == "missing" => Err("model missing is not registered".into()),
            _ => Ok(format!("did {}", command.text())),
        }
    }
    async fn summary(&self, _since_ms: i64, title: String) -> Result<Summary, String> {
        let equity = vec![(0, 0.0), (60_000, 12.0), (120_000, 4.0), (180_000, 20.0)];
        Ok(Summary { title, pnl: 20.0, trades: 4, hit_rate: Some(0.5), max_drawdown: 8.0, sharpe: None, equity })
    }
    async fn audit(&self, entry: AuditEntry) {
        self.audit.lock().push(entry);
    }
}

fn settings(api: &BotApi, levels: Levels) -> TelegramSettings {
    TelegramSettings {
        token: TOKEN.into(),
        api_url: api.url.clone(),
        chats: vec![(CHAT, levels)],
        access: Access { read: [READER].into(), act: [ACTOR].into() },
        confirm_within: Duration::from_secs(2),
        poll_timeout: Duration::from_secs(1),
        daily_summary_at: None,
    }
}

fn fill(n: u8) -> Notice {
    Notice::Fill {
        symbol: Symbol::new("EURUSD"),
        side: Side::Sell,
        volume: 0.1,
        price: 1.08 + f64::from(n) / 1e4,
        slippage: 0.0,
        chain_id: ChainId::from_bytes([n.max(1); 16]).unwrap(),
    }
}

fn texts(sent: &[Sent], method: &str) -> Vec<String> {
    sent.iter().filter(|s| s.method == method).map(|s| s.text.clone()).collect()
}

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_burst_is_grouped_within_telegram_s_limits_and_silent_kinds_make_no_sound() {
    let api = BotApi::start(TOKEN).await;
    let bot = Telegram::start(&settings(&api, Levels::default())).unwrap();
    let notices = bot.notices();
    notices.emit(|| fill(1));
    api.wait_for(WAIT, "the first fill", |sent| !sent.is_empty()).await;
    for n in 2..=13 {
        notices.emit(|| fill(n));
    }
    notices.emit(|| Notice::Service { service: "mtml run".into(), state: "started".into(), detail: "test".into() });
    let sent = api.wait_for(WAIT, "the burst", |sent| texts(sent, "sendMessage").iter().any(|t| t.contains("12 fills in"))).await;
    let messages: Vec<&Sent> = sent.iter().filter(|s| s.method == "sendMessage").collect();
    assert!(messages[0].text.starts_with("✅ SELL 0.10 EURUSD @ 1.0801"), "{}", messages[0].text);
    assert!(messages[0].text.contains(&ChainId::from_bytes([1; 16]).unwrap().to_string()), "the chain id is in the message");
    assert_eq!(messages.len(), 2, "13 fills and a service notice in two messages: {messages:#?}");
    assert!(messages[1].text.contains("mtml run started"), "{}", messages[1].text);
    assert!(!messages[1].silent, "fills sound, so the message sounds");
    assert_eq!(api.flood_violations(), 0, "never two messages to a chat within a second");
    assert_eq!(bot.outbox.stats.grouped.load(Ordering::Relaxed), 14);

    notices.emit(|| Notice::Service { service: "mtml run".into(), state: "stopping".into(), detail: "signal".into() });
    bot.stop().await;
    let last = api.sent().into_iter().last().unwrap();
    assert!(last.text.contains("stopping") && last.silent, "sent on stop, silently: {last:?}");
}

#[tokio::test]
async fn a_429_storm_and_a_bad_gateway_outage_delay_notices_but_lose_none() {
    let api = BotApi::start(TOKEN).await;
    let bot = Telegram::start(&settings(&api, Levels::default())).unwrap();
    let notices = bot.notices();
    api.set_fault(Fault::TooManyRequests(1));
    notices.emit(|| fill(1));
    let throttled = || bot.outbox.stats.throttled.load(Ordering::Relaxed);
    while throttled() < 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api.set_fault(Fault::BadGateway);
    for n in 2..=5 {
        notices.emit(|| fill(n));
    }
    while bot.outbox.stats.failed.load(Ordering::Relaxed) < 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api.clear_fault();
    let sent = api.wait_for(Duration::from_secs(60), "every fill", |sent| {
        texts(sent, "sendMessage").iter().any(|t| t.contains("4 fills in"))
    }).await;
    let messages = texts(&sent, "sendMessage");
    assert!(messages[0].contains("@ 1.0801"), "the throttled fill went first: {messages:?}");
    assert!(api.faulted() >= 3);
    assert_eq!(bot.outbox.stats.dropped.load(Ordering::Relaxed), 0);
    assert!(api.requests().iter().all(|r| !r.contains("TEST-secret")), "the token is only in the URL");
    bot.stop().await;
}

async fn console() -> (BotApi, Telegram, Arc<Recorded>) {
    let api = BotApi::start(TOKEN).await;
    let operations = Arc::new(Recorded::default());
    let settings = settings(&api, Levels::default());
    let mut bot = Telegram::start(&settings).unwrap();
    bot.console(&settings, operations.clone());
    (api, bot, operations)
}

#[tokio::test]
async fn a_stranger_is_refused_once_and_a_reader_may_read_but_not_act() {
    let (api, bot, operations) = console().await;
    api.user_says(STRANGER, CHAT, "/status");
    api.user_says(STRANGER, CHAT, "/halt");
    api.user_says(READER, CHAT, "/status");
    api.user_says(READER, CHAT, "/halt");
    api.user_says(READER, CHAT, "/pnl year");
    let sent = api.wait_for(WAIT, "four answers", |sent| texts(sent, "sendMessage").len() >= 4).await;
    let replies = texts(&sent, "sendMessage");
    assert_eq!(replies[0], format!("Not allowed: this bot answers only its configured users (your id is {STRANGER})."));
    assert_eq!(replies[1], "did /status");
    assert_eq!(replies[2], "Refused: /halt changes things and you may only read.");
    assert_eq!(replies[3], "period \"year\": give day, week, month");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(texts(&api.sent(), "sendMessage").len(), 4, "the stranger's second message got no answer");
    assert_eq!(*operations.commands.lock(), [("/status".to_owned(), format!("telegram:{READER}"))]);
    let audit = operations.audit.lock().clone();
    let outcomes: Vec<(&str, &str, &str)> = audit.iter().map(|e| (e.actor.as_str(), e.action.as_str(), e.outcome.as_str())).collect();
    assert_eq!(
        outcomes,
        [
            ("telegram:99", "/status", "refused: not an allowed user"),
            ("telegram:11", "/status", "done"),
            ("telegram:11", "/halt", "refused: read-only user"),
        ]
    );
    bot.stop().await;
}

#[tokio::test]
async fn a_destructive_command_runs_only_when_its_user_confirms_in_time() {
    let (api, bot, operations) = console().await;
    api.user_says(ACTOR, CHAT, "/halt");
    let sent = api.wait_for(WAIT, "a confirmation", |sent| sent.iter().any(|s| !s.buttons.is_empty())).await;
    let ask = sent.iter().find(|s| !s.buttons.is_empty()).unwrap().clone();
    assert_eq!(ask.text, "Confirm /halt? (expires in 2 s)");
    assert!(operations.commands.lock().is_empty(), "nothing done before the button");
    api.user_presses(READER, CHAT, ask.message_id, &ask.buttons[0]);
    api.user_presses(ACTOR, CHAT, ask.message_id, &ask.buttons[0]);
    let sent = api.wait_for(WAIT, "the edited answer", |sent| texts(sent, "editMessageText").len() == 1).await;
    assert_eq!(texts(&sent, "editMessageText"), ["did /halt"]);
    assert!(texts(&sent, "answerCallbackQuery").contains(&"Only the user who asked may confirm.".to_owned()));
    assert_eq!(*operations.commands.lock(), [("/halt".to_owned(), format!("telegram:{ACTOR}"))]);

    // A failing command says why; cancel does nothing; an unanswered one expires.
    let mut asks = Vec::new();
    for (n, command) in ["/rollback missing", "/close all", "/promote fx:2"].into_iter().enumerate() {
        api.user_says(ACTOR, CHAT, command);
        let sent = api.wait_for(WAIT, "a confirmation", |sent| sent.iter().filter(|s| !s.buttons.is_empty()).count() == n + 2).await;
        let ask = sent.into_iter().rfind(|s| !s.buttons.is_empty()).unwrap();
        match n {
            0 => api.user_presses(ACTOR, CHAT, ask.message_id, &ask.buttons[0]),
            1 => api.user_presses(ACTOR, CHAT, ask.message_id, &ask.buttons[1]),
            _ => {}
        }
        asks.push(ask);
    }
    let sent = api.wait_for(WAIT, "the expiry", |sent| texts(sent, "editMessageText").len() == 4).await;
    let edits = texts(&sent, "editMessageText");
    assert_eq!(&edits[1..], ["Failed: model missing is not registered", "Cancelled: /close all was not done.", "Expired: /promote fx:2 was not done."]);
    api.user_presses(ACTOR, CHAT, asks[2].message_id, &asks[2].buttons[0]);
    api.wait_for(WAIT, "the late press answered", |sent| texts(sent, "answerCallbackQuery").iter().any(|t| t.contains("expired"))).await;
    let done: Vec<String> = operations.commands.lock().iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(done, ["/halt", "/rollback missing"], "cancelled and expired commands were not run");
    let audit: Vec<String> = operations.audit.lock().iter().map(|e| format!("{} {}", e.action, e.outcome)).collect();
    assert!(audit.contains(&"/promote fx:2 expired".to_owned()) && audit.contains(&"/close all cancelled".to_owned()), "{audit:?}");
    assert!(audit.contains(&"/rollback missing failed: model missing is not registered".to_owned()), "{audit:?}");
    bot.stop().await;
}

#[tokio::test]
async fn notify_changes_what_the_chat_hears_and_chart_sends_a_picture() {
    let (api, bot, _operations) = console().await;
    api.user_says(ACTOR, CHAT, "/notify fill off");
    api.wait_for(WAIT, "the change", |sent| texts(sent, "sendMessage").iter().any(|t| t == "fill notices are now off in this chat.")).await;
    bot.notices().emit(|| fill(1));
    api.user_says(READER, CHAT, "/notify");
    api.user_says(READER, CHAT, "/chart week");
    let sent = api.wait_for(WAIT, "the settings and the chart", |sent| sent.iter().any(|s| s.method == "sendPhoto")).await;
    assert!(texts(&sent, "sendMessage").iter().any(|t| t.contains("fill      off") && t.contains("signal    silent")));
    let photo = sent.iter().find(|s| s.method == "sendPhoto").unwrap();
    assert!(photo.photo.starts_with(b"\x89PNG"), "a PNG picture");
    assert!(photo.text.contains("equity, last week") && photo.text.contains("PnL +20.00 · 4 trades · hit rate 50%"), "{}", photo.text);
    assert!(!texts(&sent, "sendMessage").iter().any(|t| t.contains("EURUSD")), "the fill was not sent");
    bot.stop().await;
}

#[tokio::test]
async fn check_verifies_the_token_and_a_wrong_one_is_named_without_showing_it() {
    let api = BotApi::start(TOKEN).await;
    let name = mtml_telegram::check(&settings(&api, Levels::default())).await.unwrap();
    assert_eq!(name, "mtml_test_bot");
    assert!(texts(&api.sent(), "sendMessage")[0].starts_with("mtml: test message from @mtml_test_bot"));
    let mut wrong = settings(&api, Levels::default());
    wrong.token = "999:WRONG-secret".into();
    let error = mtml_telegram::check(&wrong).await.unwrap_err().to_string();
    assert!(error.contains("answered getMe") && error.contains("Unauthorized") || error.contains("Invalid"), "{error}");
    assert!(!error.contains("WRONG-secret"), "{error}");
}
