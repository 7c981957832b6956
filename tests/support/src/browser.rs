//! A real headless browser for the tests: Debian's chromium driven over WebDriver (W3C) by its
//! chromedriver, started on a free port and stopped on drop.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{Running, binary, exchange, free_port, http_status, wait_until};

/// A chromedriver with one headless chromium session.
pub struct Browser {
    port: u16,
    session: String,
    _driver: Running,
}

impl Browser {
    /// Starts chromedriver (`MTML_TEST_CHROMEDRIVER`, else on the PATH) and a headless session
    /// that keeps the page's console messages.
    pub fn start() -> Self {
        let port = free_port();
        let driver = Command::new(binary("MTML_TEST_CHROMEDRIVER", "chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let driver = Running(driver);
        // chromedriver answers HTTP/1.1 naming it as the host, and nothing else.
        let status = format!("GET /status HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n");
        wait_until("chromedriver", Duration::from_secs(20), || http_status(port, &status) == Some(200));
        let args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--window-size=1000,1600"];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let created = request(port, "POST", "/session", &capabilities);
        let session = created["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_owned();
        Self { port, session, _driver: driver }
    }

    /// Opens `url` and waits for it to load.
    pub fn open(&self, url: &str) {
        self.call("POST", "url", &json!({ "url": url }));
    }

    /// Runs `script` (a function body) in the page; what it returns.
    pub fn script(&self, script: &str) -> Value {
        self.call("POST", "execute/sync", &json!({ "script": script, "args": [] }))
    }

    /// The page's console messages at level SEVERE (errors) since the last call.
    pub fn console_errors(&self) -> Vec<String> {
        let logs = self.call("POST", "se/log", &json!({ "type": "browser" }));
        logs.as_array()
            .map(|entries| entries.iter().filter(|e| e["level"] == "SEVERE").map(|e| e["message"].to_string()).collect())
            .unwrap_or_default()
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        let encoded = self.call("GET", "screenshot", &Value::Null);
        decode_base64(encoded.as_str().expect("a screenshot"))
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let answer = request(self.port, method, &format!("/session/{}/{path}", self.session), body);
        assert!(answer.get("error").is_none(), "{method} {path}: {answer}");
        answer
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| request(self.port, "DELETE", &format!("/session/{}", self.session), &Value::Null));
    }
}

/// One WebDriver command; its `value`.
fn request(port: u16, method: &str, path: &str, body: &Value) -> Value {
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let head = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len());
    let (_, answer) = exchange(port, format!("{head}{body}").as_bytes(), Duration::from_secs(60)).unwrap_or_else(|| panic!("{method} {path}: chromedriver did not answer"));
    let value: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{method} {path}: {e}: {answer}"));
    value["value"].clone()
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).collect();
    clean
        .chunks(4)
        .flat_map(|chunk| {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, c)| n | u32::from(value(*c)) << (18 - 6 * i));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes.into_iter().take(chunk.len().saturating_sub(1))
        })
        .collect()
}
