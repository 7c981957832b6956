//! A local Telegram Bot API server for the tests, since Telegram cannot be reached here.
//!
//! It speaks the Bot API as Telegram does for the methods mtml uses (`getMe`, `getUpdates` with
//! long polling and offsets, `sendMessage`, `sendPhoto` as multipart, `editMessageText`,
//! `answerCallbackQuery`): URLs `/bot<token>/<method>`, JSON bodies, `{"ok":true,"result":…}`
//! answers, 401 for a wrong token, and Telegram's flood control: a second message to a chat
//! within a second is answered 429 with `retry_after` (and counted, so a test can show the bot
//! never provoked it). Tests inject users' messages and button presses, and faults: a 429
//! storm or a 5xx outage.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// A fault the server plays until cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every send is answered 429 with this `retry_after`, in seconds.
    TooManyRequests(u32),
    /// Every request is answered 502 Bad Gateway.
    BadGateway,
}

/// A message the bot sent (or edited), as the server received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// `sendMessage`, `sendPhoto`, `editMessageText`, `answerCallbackQuery`.
    pub method: String,
    /// The chat.
    pub chat: i64,
    /// The text or caption.
    pub text: String,
    /// `disable_notification`.
    pub silent: bool,
    /// The inline buttons' callback data.
    pub buttons: Vec<String>,
    /// The photo's bytes (`sendPhoto`).
    pub photo: Vec<u8>,
    /// The message's id (for an edit, the edited one).
    pub message_id: i64,
}

#[derive(Default)]
struct Inner {
    updates: VecDeque<Value>,
    next_update: i64,
    next_message: i64,
    sent: Vec<Sent>,
    last_to_chat: Vec<(i64, Instant)>,
    fault: Option<Fault>,
    flood_violations: u64,
    refused_faults: u64,
    requests: Vec<String>,
}

struct Shared {
    token: String,
    inner: Mutex<Inner>,
    arrived: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The running server; stops when dropped.
pub struct BotApi {
    /// Its base URL, for `telegram.api_url`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BotApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BotApi {
    /// Starts a server accepting `token` on a free loopback port.
    pub async fn start(token: &str) -> Self {
        let shared = Arc::new(Shared { token: token.to_owned(), inner: Mutex::new(Inner::default()), arrived: Notify::new() });
        shared.lock().next_update = 1;
        let app = axum::Router::new().route("/{bot}/{method}", axum::routing::post(handle)).with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the Bot API stand-in");
        let addr: SocketAddr = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url: format!("http://{addr}"), shared, task }
    }

    /// A user writes `text` in `chat`.
    pub fn user_says(&self, user: u64, chat: i64, text: &str) {
        let mut inner = self.shared.lock();
        inner.next_message += 1;
        let message = json!({
            "message_id": inner.next_message, "date": unix_s(), "text": text,
            "chat": {"id": chat, "type": "private", "first_name": "Trader"},
            "from": {"id": user, "is_bot": false, "first_name": "Trader"},
        });
        push_update(&mut inner, json!({"message": message}));
        drop(inner);
        self.shared.arrived.notify_waiters();
    }

    /// A user presses the button carrying `data` under the bot's message `message_id`.
    pub fn user_presses(&self, user: u64, chat: i64, message_id: i64, data: &str) {
        let mut inner = self.shared.lock();
        let id = format!("cb{}", inner.next_update);
        let message = json!({
            "message_id": message_id, "date": unix_s(), "text": "?",
            "chat": {"id": chat, "type": "private", "first_name": "Trader"},
        });
        let query = json!({
            "id": id, "chat_instance": "1", "data": data, "message": message,
            "from": {"id": user, "is_bot": false, "first_name": "Trader"},
        });
        push_update(&mut inner, json!({"callback_query": query}));
        drop(inner);
        self.shared.arrived.notify_waiters();
    }

    /// Plays `fault` until [`BotApi::clear_fault`].
    pub fn set_fault(&self, fault: Fault) {
        self.shared.lock().fault = Some(fault);
    }

    /// Back to normal.
    pub fn clear_fault(&self) {
        self.shared.lock().fault = None;
    }

    /// What the bot sent so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.shared.lock().sent.clone()
    }

    /// Messages sent to a chat less than a second after the previous one (Telegram would have
    /// answered them 429; so did this server).
    pub fn flood_violations(&self) -> u64 {
        self.shared.lock().flood_violations
    }

    /// Requests answered with the fault being played.
    pub fn faulted(&self) -> u64 {
        self.shared.lock().refused_faults
    }

    /// Every request's method and body, for checking nothing secret was sent.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    /// Waits until what was sent satisfies `done` (polling every 50 ms), up to `within`; the sent
    /// messages, or a panic naming what was sent.
    pub async fn wait_for(&self, within: Duration, what: &str, done: impl Fn(&[Sent]) -> bool) -> Vec<Sent> {
        let deadline = Instant::now() + within;
        loop {
            let sent = self.sent();
            if done(&sent) {
                return sent;
            }
            assert!(Instant::now() < deadline, "the bot did not send {what} within {within:?}; it sent: {sent:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn canonical(method: &str) -> String {
    const METHODS: [&str; 6] = ["getMe", "getUpdates", "sendMessage", "sendPhoto", "editMessageText", "answerCallbackQuery"];
    METHODS.iter().find(|m| m.eq_ignore_ascii_case(method)).map_or_else(|| method.to_owned(), |m| (*m).to_owned())
}

fn unix_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn push_update(inner: &mut Inner, mut update: Value) {
    update["update_id"] = json!(inner.next_update);
    inner.next_update += 1;
    inner.updates.push_back(update);
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

fn ok(result: Value) -> Response {
    answer(StatusCode::OK, json!({"ok": true, "result": result}))
}

fn error(status: StatusCode, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": status.as_u16(), "description": description});
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    answer(status, body)
}

async fn handle(State(shared): State<Arc<Shared>>, Path((bot, method)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Response {
    // Telegram matches method names without regard to case (teloxide writes `SendMessage`).
    let method = canonical(&method);
    if bot.strip_prefix("bot") != Some(shared.token.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", None);
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let fields = if content_type.starts_with("multipart/form-data") {
        multipart_fields(&content_type, &body)
    } else {
        serde_json::from_slice::<Value>(&body).unwrap_or_else(|_| json!({}))
    };
    shared.lock().requests.push(format!("{method} {}", String::from_utf8_lossy(&body)));
    let fault = shared.lock().fault;
    match (fault, method.as_str()) {
        (Some(Fault::BadGateway), _) => {
            shared.lock().refused_faults += 1;
            return error(StatusCode::BAD_GATEWAY, "Bad Gateway", None);
        }
        (Some(Fault::TooManyRequests(wait)), "sendMessage" | "sendPhoto" | "editMessageText") => {
            shared.lock().refused_faults += 1;
            return error(StatusCode::TOO_MANY_REQUESTS, &format!("Too Many Requests: retry after {wait}"), Some(json!({"retry_after": wait})));
        }
        _ => {}
    }
    match method.as_str() {
        "getMe" => ok(json!({
            "id": 4242, "is_bot": true, "first_name": "mtml", "username": "mtml_test_bot",
            "can_join_groups": false, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "has_main_web_app": false,
        })),
        "getUpdates" => get_updates(&shared, &fields).await,
        "sendMessage" | "sendPhoto" | "editMessageText" => record(&shared, &method, &fields),
        "answerCallbackQuery" => {
            let text = fields["text"].as_str().unwrap_or_default().to_owned();
            shared.lock().sent.push(Sent { method, chat: 0, text, silent: false, buttons: vec![], photo: vec![], message_id: 0 });
            ok(json!(true))
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found: method not found", None),
    }
}

async fn get_updates(shared: &Shared, fields: &Value) -> Response {
    let offset = fields["offset"].as_i64().unwrap_or(0);
    let timeout = Duration::from_secs(fields["timeout"].as_u64().unwrap_or(0));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let arrived = shared.arrived.notified();
        {
            let mut inner = shared.lock();
            inner.updates.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            if !inner.updates.is_empty() {
                return ok(Value::Array(inner.updates.iter().cloned().collect()));
            }
        }
        if tokio::time::timeout_at(deadline, arrived).await.is_err() {
            return ok(json!([]));
        }
    }
}

fn record(shared: &Shared, method: &str, fields: &Value) -> Response {
    let chat = fields["chat_id"].as_i64().or_else(|| fields["chat_id"].as_str().and_then(|s| s.parse().ok())).unwrap_or(0);
    let text = fields["text"].as_str().or_else(|| fields["caption"].as_str()).unwrap_or_default().to_owned();
    let silent = fields["disable_notification"].as_bool().unwrap_or(false) || fields["disable_notification"] == json!("true");
    let markup = match &fields["reply_markup"] {
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        other => other.clone(),
    };
    let buttons = markup["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row.as_array().into_iter().flatten())
        .filter_map(|button| button["callback_data"].as_str().map(str::to_owned))
        .collect();
    let photo: Vec<u8> = fields["photo"].as_array().map(|b| b.iter().filter_map(|v| v.as_u64().and_then(|v| u8::try_from(v).ok())).collect()).unwrap_or_default();
    let now = Instant::now();
    let mut inner = shared.lock();
    if method != "editMessageText" {
        let last = inner.last_to_chat.iter().find(|(c, _)| *c == chat).map(|(_, at)| *at);
        // Telegram's flood control, with a little slack for the bot's own clock.
        if last.is_some_and(|at| now - at < Duration::from_millis(950)) {
            inner.flood_violations += 1;
            return error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests: retry after 1", Some(json!({"retry_after": 1})));
        }
        inner.last_to_chat.retain(|(c, _)| *c != chat);
        inner.last_to_chat.push((chat, now));
    }
    let message_id = match method {
        "editMessageText" => fields["message_id"].as_i64().unwrap_or(0),
        _ => {
            inner.next_message += 1;
            inner.next_message
        }
    };
    inner.sent.push(Sent { method: method.to_owned(), chat, text: text.clone(), silent, buttons, photo: photo.clone(), message_id });
    let mut message = json!({
        "message_id": message_id, "date": unix_s(),
        "chat": {"id": chat, "type": "private", "first_name": "Trader"},
        "from": {"id": 4242, "is_bot": true, "first_name": "mtml", "username": "mtml_test_bot"},
    });
    if method == "sendPhoto" {
        message["photo"] = json!([{"file_id": "p1", "file_unique_id": "u1", "width": 640, "height": 320, "file_size": photo.len()}]);
        message["caption"] = json!(text);
    } else {
        message["text"] = json!(text);
    }
    ok(message)
}

/// The fields of a multipart body: text fields as strings, a file field as an array of its bytes.
fn multipart_fields(content_type: &str, body: &[u8]) -> Value {
    let Some(boundary) = content_type.split("boundary=").nth(1) else { return json!({}) };
    let delimiter = format!("--{}", boundary.trim_matches('"'));
    let mut fields = serde_json::Map::new();
    for part in split(body, delimiter.as_bytes()).into_iter().skip(1) {
        let Some(head_end) = find(part, b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&part[..head_end]);
        let mut content = &part[head_end + 4..];
        if content.ends_with(b"\r\n") {
            content = &content[..content.len() - 2];
        }
        let Some(name) = head.split("name=\"").nth(1).and_then(|rest| rest.split('"').next()) else { continue };
        let value = if head.contains("filename=") {
            Value::Array(content.iter().map(|b| json!(b)).collect())
        } else {
            Value::String(String::from_utf8_lossy(content).into_owned())
        };
        fields.insert(name.to_owned(), value);
    }
    // A field may name another part, as `attach://<part>` (how teloxide uploads files).
    let attached: Vec<(String, String)> = (fields.iter())
        .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.strip_prefix("attach://")?.to_owned())))
        .collect();
    for (name, part) in attached {
        if let Some(file) = fields.remove(&part) {
            fields.insert(name, file);
        }
    }
    Value::Object(fields)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn split<'a>(mut body: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    while let Some(at) = find(body, delimiter) {
        parts.push(&body[..at]);
        body = &body[at + delimiter.len()..];
    }
    parts.push(body);
    parts
}
