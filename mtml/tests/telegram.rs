//! The Telegram bot inside a running `mtml run` and a replay, against a local Bot API server:
//! notices from a real terminal's ticks and fills, commands that read and act on the instance
//! (checked through its gRPC API), confirmations, refusals, the audit log in the journal, and
//! the token nowhere in what the process wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use mtml_proto::v1;
use mtml_test_support::bot_api::{BotApi, Sent};

const TOKEN: &str = "5550001:AAH-very-secret-bot-token";
const CHAT: i64 = 4242;
const ACTOR: u64 = 1001;
const READER: u64 = 1002;
const STRANGER: u64 = 666;
const WAIT: Duration = Duration::from_secs(60);

fn mtml() -> Command {
    mtml_test_support::command_in_own_dir(env!("CARGO_BIN_EXE_mtml"))
}

fn telegram_section(api: &BotApi) -> String {
    format!(
        "[telegram]\ntoken = \"{TOKEN}\"\napi_url = \"{}\"\nchats = [{CHAT}]\nread_users = [{READER}]\nact_users = [{ACTOR}]\npoll_secs = 1\nconfirm_secs = 30\n",
        api.url
    )
}

fn texts(sent: &[Sent]) -> Vec<String> {
    sent.iter().filter(|s| s.method == "sendMessage" || s.method == "editMessageText").map(|s| s.text.clone()).collect()
}

/// Waits until a message containing `needle` is sent after the first `after` messages; that message.
async fn reply_containing(api: &BotApi, after: usize, needle: &str) -> Sent {
    let sent = api.wait_for(WAIT, needle, |sent| sent[after.min(sent.len())..].iter().any(|s| s.text.contains(needle))).await;
    sent[after..].iter().find(|s| s.text.contains(needle)).unwrap().clone()
}

/// Gives a destructive command as the acting user and presses its confirmation button.
async fn ask_and_confirm(api: &BotApi, after: usize, command: &str) {
    api.user_says(ACTOR, CHAT, command);
    let ask = reply_containing(api, after, &format!("Confirm {command}?")).await;
    api.user_presses(ACTOR, CHAT, ask.message_id, &ask.buttons[0]);
}

// Multi-threaded: the Bot API server keeps answering while the test waits for the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_tells_a_live_run_s_events_and_answers_and_acts_for_allowed_users() {
    let api = BotApi::start(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let config = dir.path().join("mtml.toml");
    let toml = format!(
        "[bridge]\nlisten = \"127.0.0.1:0\"\ntoken = \"tok\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n[journal]\nurl = \"sqlite://{}?mode=rwc\"\n{}",
        journal.display(),
        telegram_section(&api)
    );
    std::fs::write(&config, toml).unwrap();
    let mut child = mtml().args(["run", "--config"]).arg(&config).env("MTML_LOG", "info").stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut logs = String::new();
    let line = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "mtml exited: {logs}");
        logs.push_str(&line);
        if line.contains("running") {
            break line;
        }
    };
    let (bridge_addr, grpc_addr) = mtml_test_support::running_addresses(&line);
    let log_reader = std::thread::spawn(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        rest
    });

    reply_containing(&api, 0, "mtml run started").await;
    let common::Streaming { terminal, stop, .. } = common::stream_sample(&bridge_addr, "tok").await;
    // Notices of the real terminal's connection, the model's signals and the terminal's fills.
    reply_containing(&api, 0, "terminal").await;
    let fill = reply_containing(&api, 0, "✅").await;
    let signal = reply_containing(&api, 0, "📈 signal").await;
    assert!(!fill.silent && signal.text.contains("fx-direction"), "{fill:?} {signal:?}");
    let chain = fill.text.lines().find_map(|l| l.strip_prefix("chain ").or_else(|| l.strip_prefix("last chain "))).unwrap().to_owned();

    // Reading: status, positions, orders, pnl, the chart, a chain's stages, latency.
    let mut seen = api.sent().len();
    for (command, expected) in [
        ("/status", "Trading ACTIVE"),
        ("/balance", "balance"),
        ("/positions", "EURUSD"),
        ("/pnl week", "PnL (week)"),
        ("/orders", "orders"),
        ("/health", "chains,"),
        ("/latency", "stage"),
        ("/help", "/compare <name>"),
        ("/frobnicate", "unknown command /frobnicate, see /help"),
    ] {
        api.user_says(READER, CHAT, command);
        reply_containing(&api, seen, expected).await;
        seen = api.sent().len();
    }
    api.user_says(READER, CHAT, &format!("/trace {chain}"));
    let trace = reply_containing(&api, seen, "execution").await;
    assert!(trace.text.contains(&chain), "{}", trace.text);
    api.user_says(READER, CHAT, "/chart day");
    api.wait_for(WAIT, "a chart", |sent| sent.iter().any(|s| s.method == "sendPhoto" && s.photo.starts_with(b"\x89PNG"))).await;
    // A reader may not act; a stranger is refused once.
    seen = api.sent().len();
    api.user_says(READER, CHAT, "/halt");
    reply_containing(&api, seen, "Refused: /halt changes things").await;
    api.user_says(STRANGER, CHAT, "/status");
    reply_containing(&api, seen, "Not allowed").await;

    // Acting: halt asks first, then halts the instance (seen through its gRPC API).
    let mut admin = v1::admin_client::AdminClient::connect(format!("http://{grpc_addr}")).await.unwrap();
    let state = |reply: v1::TradingStateReply| v1::TradingState::try_from(reply.state).unwrap();
    seen = api.sent().len();
    api.user_says(ACTOR, CHAT, "/halt");
    let ask = reply_containing(&api, seen, "Confirm /halt?").await;
    assert_eq!(state(admin.get_trading_state(v1::GetTradingStateRequest {}).await.unwrap().into_inner()), v1::TradingState::Active);
    api.user_presses(ACTOR, CHAT, ask.message_id, &ask.buttons[0]);
    reply_containing(&api, seen, "Trading state is now HALTED").await;
    assert_eq!(state(admin.get_trading_state(v1::GetTradingStateRequest {}).await.unwrap().into_inner()), v1::TradingState::Halted);
    reply_containing(&api, seen, "trading ACTIVE → HALTED").await;
    // Closing while halted is refused by risk, with the reason; after /reduce it goes through.
    let desk = admin.get_desk(v1::GetDeskRequest {}).await.unwrap().into_inner();
    let open: Vec<&v1::DeskPosition> = desk.positions.iter().filter(|p| p.lots != 0.0).collect();
    seen = api.sent().len();
    ask_and_confirm(&api, seen, "/close all").await;
    if open.is_empty() {
        reply_containing(&api, seen, "No open positions to close.").await;
    } else {
        reply_containing(&api, seen, "not closed, refused by risk: halted").await;
        seen = api.sent().len();
        api.user_says(ACTOR, CHAT, "/reduce");
        reply_containing(&api, seen, "REDUCING").await;
        ask_and_confirm(&api, seen, "/close EURUSD").await;
        reply_containing(&api, seen, "closing order").await;
    }
    seen = api.sent().len();
    api.user_says(ACTOR, CHAT, "/resume");
    reply_containing(&api, seen, "Trading state is now ACTIVE").await;
    // Models commands name why they cannot act on an instance without a registry.
    ask_and_confirm(&api, seen, "/rollback fx-direction").await;
    reply_containing(&api, seen, "Failed: ").await;

    stop.cancel();
    let _ = terminal.await.unwrap();
    drop(admin);
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    logs.push_str(&tokio::task::spawn_blocking(move || log_reader.join().unwrap()).await.unwrap());
    assert!(exit.success(), "{logs}");
    reply_containing(&api, 0, "stopping").await;
    assert_eq!(api.flood_violations(), 0, "never two messages to the chat within a second");

    // Every command is in the journal's audit log, with who and how it ended.
    let journal = mtml_journal::Journal::open(&format!("sqlite://{}?mode=rwc", journal.display())).await.unwrap();
    let audit: Vec<String> = journal.audit_since(0).await.unwrap().iter().map(|r| format!("{} {} {}", r.actor, r.action, r.outcome)).collect();
    for line in [
        format!("telegram:{READER} /status done"),
        format!("telegram:{READER} /halt refused: read-only user"),
        format!("telegram:{STRANGER} /status refused: not an allowed user"),
        format!("telegram:{ACTOR} /halt asked to confirm"),
        format!("telegram:{ACTOR} /halt done"),
    ] {
        assert!(audit.contains(&line), "{line} missing from {audit:#?}");
    }
    assert!(!logs.contains("very-secret") && !texts(&api.sent()).iter().any(|t| t.contains("very-secret")), "the token leaked: {logs}");
    assert!(logs.contains("telegram command"), "commands are logged: {logs}");
}

#[test]
fn a_replay_ends_with_its_summary_and_equity_curve() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = runtime.block_on(BotApi::start(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mtml.toml");
    std::fs::write(&config, telegram_section(&api)).unwrap();
    let output = mtml().args(["replay", "--ticks"]).arg(common::sample()).arg("--config").arg(&config).env("MTML_LOG", "info").output().unwrap();
    let logs = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{logs}");
    let sent = api.sent();
    let summary = sent.iter().find(|s| s.method == "sendPhoto").expect("a summary picture");
    assert!(summary.text.contains("replay summary") && summary.text.contains("trades") && summary.text.contains("max drawdown"), "{}", summary.text);
    assert!(summary.photo.starts_with(b"\x89PNG"));
    let all = texts(&sent).join("\n");
    assert!(all.contains("✅") && all.contains("mtml run started") && all.contains("stopping"), "{all}");
    assert!(!logs.contains("very-secret"), "the token leaked: {logs}");
}

/// `mtml telegram check` verifies the token (from the environment) and says hello; a wrong token
/// is named as refused without being shown. `mtml telegram run --server` is the console of an
/// instance in another process: it reads it and halts it through its gRPC API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_check_and_a_bot_beside_a_remote_instance() {
    let api = BotApi::start(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = format!("sqlite://{}?mode=rwc", dir.path().join("journal.db").display());
    let bot_config = dir.path().join("bot.toml");
    let section = telegram_section(&api).replace(&format!("token = \"{TOKEN}\"\n"), "");
    std::fs::write(&bot_config, format!("[journal]\nurl = \"{journal}\"\n{section}")).unwrap();

    let check = async |token: &'static str| {
        let config = bot_config.clone();
        let output = tokio::task::spawn_blocking(move || {
            mtml().args(["telegram", "check", "--config"]).arg(&config).env("MTML_TELEGRAM_TOKEN", token).output().unwrap()
        });
        let output = output.await.unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (ok, out, err) = check(TOKEN).await;
    assert!(ok && out.contains("token of @mtml_test_bot verified; test message sent to 1 chat(s)"), "{out}{err}");
    assert!(api.requests().iter().any(|r| r.starts_with("getMe")), "{:?}", api.requests());
    assert!(texts(&api.sent()).iter().any(|t| t.starts_with("mtml: test message")), "{:?}", api.sent());
    let (ok, _, err) = check("999:WRONG-secret").await;
    assert!(!ok && err.contains("getMe") && !err.contains("WRONG-secret") && err.lines().count() == 1, "{err}");

    // An instance without a bot, and the bot on its own beside it.
    let run_config = dir.path().join("run.toml");
    std::fs::write(&run_config, format!("[bridge]\nlisten = \"127.0.0.1:0\"\ntoken = \"tok\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n[journal]\nurl = \"{journal}\"\n")).unwrap();
    let mut instance = mtml().args(["run", "--config"]).arg(&run_config).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(instance.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("running") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "mtml run stopped before it was running");
    }
    let (_, grpc_addr) = mtml_test_support::running_addresses(&line);
    let mut bot = mtml()
        .args(["telegram", "run", "--server", &format!("http://{grpc_addr}"), "--config"])
        .arg(&bot_config)
        .env("MTML_TELEGRAM_TOKEN", TOKEN)
        .env("MTML_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bot_logs = bot.stderr.take().unwrap();
    let bot_logs = std::thread::spawn(move || std::io::read_to_string(bot_logs).unwrap());
    let seen = api.sent().len();
    api.user_says(READER, CHAT, "/status");
    reply_containing(&api, seen, "Trading ACTIVE").await;
    ask_and_confirm(&api, seen, "/halt").await;
    reply_containing(&api, seen, "Trading state is now HALTED").await;
    let mut admin = v1::admin_client::AdminClient::connect(format!("http://{grpc_addr}")).await.unwrap();
    let state = admin.get_trading_state(v1::GetTradingStateRequest {}).await.unwrap().into_inner().state;
    assert_eq!(v1::TradingState::try_from(state).unwrap(), v1::TradingState::Halted);
    drop(admin);

    for child in [&bot, &instance] {
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    }
    let (bot_exit, instance_exit) = tokio::task::spawn_blocking(move || (bot.wait().unwrap(), instance.wait().unwrap())).await.unwrap();
    let logs = tokio::task::spawn_blocking(move || bot_logs.join().unwrap()).await.unwrap();
    assert!(bot_exit.success() && instance_exit.success(), "{logs}");
    assert!(logs.contains("telegram command") && !logs.contains("very-secret"), "{logs}");
    // The bot's commands are in the shared journal's audit log.
    let journal = mtml_journal::Journal::open(&journal).await.unwrap();
    let audit: Vec<String> = journal.audit_since(0).await.unwrap().iter().map(|r| format!("{} {} {}", r.actor, r.action, r.outcome)).collect();
    assert!(audit.contains(&format!("telegram:{ACTOR} /halt done")), "{audit:#?}");
}
