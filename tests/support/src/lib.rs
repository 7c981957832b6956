//! Real servers for the tests: Redis and InfluxDB, each started from its binary on free loopback
//! ports with its data in a temporary folder, stopped (and restartable, for outage tests) by the
//! test, and killed when dropped.
//!
//! The binaries come from `MTML_TEST_REDIS_SERVER` and `MTML_TEST_INFLUXD` (which
//! `cargo xtask test` sets after installing Debian's `redis-server` and `influxdb` packages when
//! missing), or else from `PATH`. [`postgres::FreshDatabase`] is a database of its own per test
//! on the PostgreSQL of `MTML_TEST_POSTGRES_URL`. [`bot_api::BotApi`] stands in for Telegram's
//! Bot API. [`browser::Browser`] is headless chromium through its chromedriver
//! (`MTML_TEST_CHROMEDRIVER`, Debian's `chromium-driver`).

pub mod bot_api;
pub mod browser;
pub mod postgres;
pub mod tls;

/// Stamps out a conformance suite for one backend: a `#[tokio::test]` per check, each on a
/// subject of its own. `$open` is an async function returning the subject and whatever keeps its
/// backend alive; `$close` an async function taking both back once the check passed; each check
/// is an async function of the suite module taking `&subject`.
#[macro_export]
macro_rules! conformance_tests {
    ($($suite:ident)::+ => $open:path, $close:path; $($check:ident),+ $(,)?) => {
        $crate::conformance_tests!(@each ($($suite)::+) $open, $close; $($check),+);
    };
    (@each ($($suite:tt)+) $open:path, $close:path; $check:ident $(, $rest:ident)*) => {
        #[tokio::test]
        async fn $check() {
            let (subject, keep) = $open().await;
            $($suite)+::$check(&subject).await;
            $close(subject, keep).await;
        }
        $crate::conformance_tests!(@each ($($suite)+) $open, $close; $($rest),*);
    };
    (@each ($($suite:tt)+) $open:path, $close:path;) => {};
}


use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A command for `program`, run in a fresh folder of its own under the temporary directory, so
/// that the files a binary makes by default in its current folder (mtml's history database and
/// write-ahead file) never land in the repository nor meet another run's.
pub fn command_in_own_dir(program: impl AsRef<std::ffi::OsStr>) -> Command {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("mtml-test-run-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a folder for the run");
    let mut command = Command::new(program);
    command.current_dir(dir);
    command
}

/// The bridge and gRPC addresses in `mtml run`'s first line, "mtml running: terminals on
/// 127.0.0.1:P, gRPC on 127.0.0.1:Q; ctrl-c stops".
pub fn running_addresses(line: &str) -> (String, String) {
    let after = |marker: &str, end: char| -> String {
        let rest = line.split(marker).nth(1).unwrap_or_else(|| panic!("no {marker:?} in {line:?}"));
        rest.split(end).next().unwrap_or_default().to_owned()
    };
    let grpc = after("gRPC on ", ';');
    (after("terminals on ", ','), grpc.split(',').next().unwrap_or_default().to_owned())
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("binding a free port")
}

fn binary(variable: &str, name: &str) -> PathBuf {
    if let Ok(path) = std::env::var(variable) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("{name} not found: set {variable} or run the suite with `cargo xtask test`, which installs it"))
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "{what} did not come up within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP request on loopback; the status code, or `None` if nothing answered in 2 s.
fn http_status(port: u16, request: &str) -> Option<u16> {
    exchange(port, request.as_bytes(), Duration::from_secs(2)).map(|(code, _)| code)
}

/// One HTTP exchange on loopback: the status and the body, read to its `content-length` (some
/// servers, chromedriver among them, keep the connection open after answering) or else to the
/// end; `None` if nothing answered within `timeout`.
fn exchange(port: u16, request: &[u8], timeout: Duration) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.write_all(request).ok()?;
    let mut received = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        received.extend_from_slice(&chunk[..n]);
        let end = received.windows(4).position(|w| w == b"\r\n\r\n");
        let answer = |end: usize, length: usize| {
            let code = String::from_utf8_lossy(&received[..end]).split_whitespace().nth(1)?.parse().ok()?;
            Some((code, String::from_utf8_lossy(&received[end + 4..(end + 4 + length).min(received.len())]).into_owned()))
        };
        match end {
            Some(end) => {
                let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
                let length = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok());
                match length {
                    Some(length) if received.len() >= end + 4 + length => return answer(end, length),
                    _ if n == 0 => return answer(end, received.len()),
                    _ => {}
                }
            }
            None if n == 0 => return None,
            None => {}
        }
    }
}

/// A process of ours, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Redis server of the test's own: no persistence, loopback only.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    process: Option<Running>,
    password: Option<String>,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers.
    pub fn start() -> Self {
        let mut server = Self { port: free_port(), dir: tempfile::tempdir().expect("temp dir"), process: None, password: None };
        server.restart();
        server
    }

    /// Starts one that answers only clients presenting `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        let mut server = Self { port: free_port(), dir: tempfile::tempdir().expect("temp dir"), process: None, password: Some(password.to_owned()) };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/0` (`redis://:PASSWORD@…` with a password).
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (an outage). Connections break; the port stays ours to restart on.
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Starts it again on the same port (empty: Redis here keeps nothing on disk).
    pub fn restart(&mut self) {
        self.process = None;
        let mut command = Command::new(binary("MTML_TEST_REDIS_SERVER", "redis-server"));
        command.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.process = Some(Running(child));
        let port = self.port;
        let (hello, expected) = match &self.password {
            Some(password) => (format!("AUTH {password}\r\nPING\r\n"), &b"+OK\r\n+PONG\r\n"[..]),
            None => ("PING\r\n".to_owned(), &b"+PONG\r\n"[..]),
        };
        wait_until("redis-server", Duration::from_secs(10), || {
            let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
            let mut answer = vec![0u8; expected.len()];
            stream.write_all(hello.as_bytes()).is_ok() && stream.read_exact(&mut answer).is_ok() && answer == expected
        });
    }
}

/// An InfluxDB 1.x server of the test's own, serving the v1 HTTP API.
pub struct InfluxServer {
    http_port: u16,
    dir: tempfile::TempDir,
    process: Option<Running>,
}

impl InfluxServer {
    /// Starts one on free ports and waits until `/ping` answers.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let http_port = free_port();
        let config = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{http_port}\"\n  log-enabled = false\n  max-row-limit = 0\n\
             [monitor]\n  store-enabled = false\n",
            rpc = free_port(),
            d = dir.path().display(),
        );
        std::fs::write(dir.path().join("influxdb.conf"), config).expect("writing influxdb.conf");
        let mut server = Self { http_port, dir, process: None };
        server.restart();
        server
    }

    /// `http://127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("http://127.0.0.1:{}/{database}", self.http_port)
    }

    /// Its HTTP port.
    pub fn port(&self) -> u16 {
        self.http_port
    }

    /// The folder of its data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills it (an outage); its data stays for [`Self::restart`].
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.process = None;
        let log = std::fs::File::create(self.dir.path().join("influxd.log")).expect("log file");
        let child = Command::new(binary("MTML_TEST_INFLUXD", "influxd"))
            .arg("-config")
            .arg(self.dir.path().join("influxdb.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting influxd");
        self.process = Some(Running(child));
        let port = self.http_port;
        wait_until("influxd", Duration::from_secs(30), || {
            http_status(port, "GET /ping HTTP/1.0\r\n\r\n") == Some(204)
        });
    }
}

/// A Prometheus server of the test's own, scraping the given targets every second.
pub struct PrometheusServer {
    port: u16,
    dir: tempfile::TempDir,
    _process: Running,
}

impl PrometheusServer {
    /// Starts one on a free port scraping `targets` (`host:port`, path `/metrics`) every second,
    /// and waits until it is ready.
    pub fn start(targets: &[String]) -> Self {
        Self::start_with_rules(targets, None)
    }

    /// The same, evaluating the alerting and recording rules of `rules` every second.
    pub fn start_with_rules(targets: &[String], rules: Option<&Path>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
        let rule_files = rules.map_or_else(String::new, |path| format!("rule_files: ['{}']\n", path.display()));
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rule_files}scrape_configs:\n  - job_name: mtml\n    static_configs:\n      - targets: [{list}]\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("writing prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary("MTML_TEST_PROMETHEUS", "prometheus"))
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let process = Running(child);
        wait_until("prometheus", Duration::from_secs(60), || http_status(port, "GET /-/ready HTTP/1.0\r\n\r\n") == Some(200));
        Self { port, dir, _process: process }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The folder of its data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
