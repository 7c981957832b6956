//! What mtml keeps to itself and whom it serves: no telemetry from ONNX Runtime, secrets absent
//! from everything a run writes, and callers without the right refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

fn mtml() -> Command {
    mtml_test_support::command_in_own_dir(env!("CARGO_BIN_EXE_mtml"))
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// `mtml run` in its own process, killed if the test fails before stopping it (it would hold
/// the test's output open and hang the suite).
struct Instance {
    child: Option<std::process::Child>,
    logs: String,
    reader: Option<std::thread::JoinHandle<String>>,
    bridge: String,
    grpc: String,
}

impl Instance {
    /// Starts `mtml run --config config` logging at `log`, and waits until it is running.
    fn start(config: &Path, log: &str) -> Self {
        use std::io::BufRead;
        let mut child = mtml().args(["run", "--config"]).arg(config).env("MTML_LOG", log).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut instance = Self { child: Some(child), logs: String::new(), reader: None, bridge: String::new(), grpc: String::new() };
        let line = loop {
            let mut line = String::new();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "mtml exited: {}", instance.logs);
            instance.logs.push_str(&line);
            if line.contains("running") {
                break line;
            }
        };
        (instance.bridge, instance.grpc) = mtml_test_support::running_addresses(&line);
        instance.reader = Some(std::thread::spawn(move || std::io::read_to_string(stderr).unwrap()));
        instance
    }

    /// Stops it as an operator does (SIGTERM); everything it logged. It must exit cleanly.
    async fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        let reader = self.reader.take().unwrap();
        let (exit, rest) = tokio::task::spawn_blocking(move || (child.wait().unwrap(), reader.join().unwrap())).await.unwrap();
        let logs = format!("{}{rest}", self.logs);
        assert!(exit.success(), "{logs}");
        logs
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// ONNX Runtime 1.31 writes a device id and queued events under
/// `~/.cache/Microsoft/DeveloperTools/.onnxruntime/` at start unless its variable is set; the
/// binary sets it itself, so a run as a new user (a fresh HOME, nothing in the environment)
/// leaves nothing there.
#[test]
fn a_run_as_a_new_user_writes_no_telemetry() {
    let home = tempfile::tempdir().unwrap();
    let output = mtml()
        .args(["replay", "--ticks"])
        .arg(common::sample())
        .env("HOME", home.path())
        .env_remove("XDG_CACHE_HOME")
        .env_remove(mtml_inference::TELEMETRY_OFF_ENV)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("predictions"), "the model ran");
    let written = files_under(home.path());
    assert!(written.iter().all(|f| !f.contains("Microsoft") && !f.contains("onnxruntime.db")), "telemetry written: {written:?}");
}

/// Waits until the pipeline has taken `sent` ticks, asking with the read token.
async fn every_tick_taken<T>(admin: &mut mtml_proto::v1::admin_client::AdminClient<T>, sent: usize)
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let start = std::time::Instant::now();
    loop {
        let desk = admin.get_desk(with_token(mtml_proto::v1::GetDeskRequest {}, READ)).await.unwrap().into_inner();
        if desk.ticks_seen == sent as u64 {
            return;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "ticks stuck at {} of {sent}", desk.ticks_seen);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

const READ: &str = "read-token-aaaaaaaaaaaaaaaa";
const TRADE: &str = "trade-token-bbbbbbbbbbbbbbbb";
const ADMIN: &str = "admin-token-cccccccccccccccc";
const EXPIRED: &str = "expired-token-dddddddddddddddd";
const REVOKED: &str = "revoked-token-eeeeeeeeeeeeeeee";

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// An instance with tokens per role: each caller gets what its role allows and each refusal
/// names the role needed (UNAUTHENTICATED for no, an unknown, an expired or a revoked token;
/// PERMISSION_DENIED for too low a role), counted in the metrics. The probes stay open, the
/// instance's own loopback stream (ticks over gRPC) and the command line with
/// `MTML_CLIENT_TOKEN` work, and no token appears in what it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_needs_a_token_of_the_role_it_needs() {
    use mtml_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
    use mtml_proto::v1;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mtml.toml");
    let metrics_port = mtml_test_support::free_port();
    let admin_digest = mtml_auth::token_digest_hex(ADMIN);
    std::fs::write(
        &config,
        format!(
            "[bridge]\nlisten = \"127.0.0.1:0\"\ntoken = \"tok\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [pipeline]\ntransport = \"grpc\"\n[features]\nhistory = \"none\"\n[journal]\nurl = \"sqlite://{}?mode=rwc\"\n\
             [auth]\nread = [\"grafana:{READ}\", \"ci:{EXPIRED}\"]\ntrade = [\"ea-host:{TRADE}\"]\nadmin = [\"desk:sha256:{admin_digest}\", \"laptop:{REVOKED}\"]\n\
             expires = {{ ci = \"2020-01-01\" }}\nrevoked = [\"laptop\"]\n",
            dir.path().join("journal.db").display()
        ),
    )
    .unwrap();
    let instance = Instance::start(&config, "info");
    let (bridge_addr, grpc_addr) = (instance.bridge.clone(), instance.grpc.clone());
    let url = format!("http://{grpc_addr}");

    // Ticks reach the pipeline through the instance's own gRPC stream, which presents its own token.
    let common::Streaming { terminal, stop, sent, .. } = common::stream_sample(&bridge_addr, "tok").await;
    let mut admin = v1::admin_client::AdminClient::connect(url.clone()).await.unwrap();
    every_tick_taken(&mut admin, sent).await;
    stop.cancel();
    let _ = terminal.await.unwrap();

    let refused = |status: tonic::Status, code: tonic::Code, words: &[&str]| {
        assert_eq!(status.code(), code, "{status:?}");
        for word in words {
            assert!(status.message().contains(word), "{word:?} not in {status:?}");
        }
    };
    let state = || v1::GetTradingStateRequest {};
    refused(admin.get_trading_state(state()).await.unwrap_err(), tonic::Code::Unauthenticated, &["no token", "read role"]);
    refused(admin.get_trading_state(with_token(state(), "guess-guess-guess-guess")).await.unwrap_err(), tonic::Code::Unauthenticated, &["unknown token"]);
    refused(admin.get_trading_state(with_token(state(), EXPIRED)).await.unwrap_err(), tonic::Code::Unauthenticated, &["\"ci\" has expired"]);
    refused(admin.get_trading_state(with_token(state(), REVOKED)).await.unwrap_err(), tonic::Code::Unauthenticated, &["\"laptop\" was revoked"]);
    assert!(admin.get_trading_state(with_token(state(), READ)).await.is_ok());
    let halt = || v1::SetTradingStateRequest { state: v1::TradingState::Halted as i32, reason: "test".into() };
    refused(admin.set_trading_state(with_token(halt(), READ)).await.unwrap_err(), tonic::Code::PermissionDenied, &["\"grafana\" has the read role", "admin role"]);
    refused(admin.set_trading_state(with_token(halt(), TRADE)).await.unwrap_err(), tonic::Code::PermissionDenied, &["admin role"]);
    // Orders need the trade role; the repository's load, admin.
    let mut bridge = v1::bridge_client::BridgeClient::connect(url.clone()).await.unwrap();
    let orders = with_token(tokio_stream::iter(Vec::<v1::OrderCommand>::new()), READ);
    refused(bridge.execute_orders(orders).await.unwrap_err(), tonic::Code::PermissionDenied, &["trade role"]);
    let mut oip = GrpcInferenceServiceClient::connect(url.clone()).await.unwrap();
    let load = mtml_proto::inference::RepositoryModelLoadRequest { model_name: "fx-direction".into(), ..Default::default() };
    refused(oip.repository_model_load(with_token(load, TRADE)).await.unwrap_err(), tonic::Code::PermissionDenied, &["admin role"]);
    assert!(oip.server_live(with_token(mtml_proto::inference::ServerLiveRequest {}, READ)).await.is_ok());
    // An admin call that fails in its handler, in a chain of the caller's.
    let load = mtml_proto::inference::RepositoryModelLoadRequest { model_name: "no-such-model".into(), ..Default::default() };
    let mut load = with_token(load, ADMIN);
    load.metadata_mut().insert("traceparent", format!("00-{CHAIN}-00f067aa0ba902b7-01").parse().unwrap());
    assert!(oip.repository_model_load(load).await.is_err());
    // A message over the 4 MiB limit is refused by name; the server goes on serving.
    let huge = mtml_proto::inference::ModelInferRequest { model_name: "x".repeat(5 << 20), ..Default::default() };
    let too_big = oip.model_infer(with_token(huge, READ)).await.unwrap_err();
    assert!(too_big.code() == tonic::Code::OutOfRange || too_big.code() == tonic::Code::ResourceExhausted, "{too_big:?}");
    assert!(too_big.message().contains("message length too large"), "{too_big:?}");
    assert!(oip.server_live(with_token(mtml_proto::inference::ServerLiveRequest {}, READ)).await.is_ok());
    // The standard health service answers probes without a token.
    let channel = tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    assert!(health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.is_ok());

    // The command line presents MTML_CLIENT_TOKEN; without it, one line names the role needed.
    let halt_cli = async |token: Option<&'static str>| {
        let url = url.clone();
        let output = tokio::task::spawn_blocking(move || {
            let mut command = mtml();
            command.args(["halt", "--server", &url]);
            match token {
                Some(token) => command.env("MTML_CLIENT_TOKEN", token),
                None => command.env_remove("MTML_CLIENT_TOKEN"),
            };
            command.output().unwrap()
        });
        let output = output.await.unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (ok, error) = halt_cli(None).await;
    assert!(!ok && error.contains("admin role") && error.lines().count() == 1, "{error}");
    let (ok, error) = halt_cli(Some(ADMIN)).await;
    assert!(ok, "{error}");
    let now = admin.get_trading_state(with_token(state(), READ)).await.unwrap().into_inner();
    assert_eq!(now.state, v1::TradingState::Halted as i32);

    // /metrics needs the read role too, and counts the refusals.
    let http = reqwest::Client::new();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    assert_eq!(http.get(&metrics_url).send().await.unwrap().status(), 401);
    let text = http.get(&metrics_url).bearer_auth(READ).send().await.unwrap().text().await.unwrap();
    for (reason, at_least) in [("no_token", 3.0), ("unknown_token", 1.0), ("expired", 1.0), ("revoked", 1.0), ("insufficient_role", 4.0)] {
        let sample = text.lines().find(|l| l.starts_with(&format!("mtml_auth_refusals_total{{reason=\"{reason}\"}}"))).unwrap_or_else(|| panic!("{reason}: {text}"));
        let count: f64 = sample.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(count >= at_least, "{sample}");
    }
    assert_eq!(http.get(format!("http://127.0.0.1:{metrics_port}/healthz")).send().await.unwrap().status(), 200);

    drop((admin, bridge, oip, health));
    let logs = instance.stop().await;
    assert!(logs.contains("refused: token \"grafana\" has the read role"), "refusals are logged: {logs}");
    // Every admin call, admitted or refused, is in the audit log: who, what, how, its chain.
    let audit = mtml().args(["audit", "--since", "1h", "--config"]).arg(&config).output().unwrap();
    let audit = String::from_utf8(audit.stdout).unwrap();
    let entry = |actor: &str, outcome: &str, action: &str| {
        audit.lines().any(|l| l.split_whitespace().nth(3) == Some(actor) && l.contains(outcome) && l.contains(action))
    };
    assert!(entry("desk", "done", "/mtml.v1.Admin/SetTradingState"), "{audit}");
    assert!(entry("grafana", "refused: token \"grafana\" has the read role", "/mtml.v1.Admin/SetTradingState"), "{audit}");
    assert!(entry("?", "refused: no token", "/mtml.v1.Admin/SetTradingState"), "{audit}");
    assert!(entry("ea-host", "refused", "/inference.GRPCInferenceService/RepositoryModelLoad"), "{audit}");
    let failed = audit.lines().find(|l| l.contains(CHAIN)).unwrap_or_else(|| panic!("no entry with the chain: {audit}"));
    assert!(failed.contains("desk") && failed.contains("failed: ") && failed.contains("RepositoryModelLoad"), "{failed}");
    assert!(!audit.contains("GetTradingState"), "reads are not audited: {audit}");
    for secret in [READ, TRADE, ADMIN, EXPIRED, REVOKED] {
        assert!(!logs.contains(secret) && !text.contains(secret) && !audit.contains(secret), "{secret} leaked");
    }
}

/// The certificates of a PEM file.
fn rustls_pki_types_pem(pem: &[u8]) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(pem).map(Result::unwrap).collect()
}

const CHAIN: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// `mtml auth hash` reads the token on standard input and prints the form a configuration
/// keeps instead of the token.
#[test]
fn auth_hash_prints_the_digest_a_configuration_keeps() {
    use std::io::Write;
    let mut child = mtml().args(["auth", "hash"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{ADMIN}\n").as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), format!("sha256:{}\n", mtml_auth::token_digest_hex(ADMIN)));
}

/// Listening beyond loopback without protection is refused at start, by name.
#[test]
fn an_open_instance_on_a_public_address_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, expected) in [
        ("[bridge]\nlisten = \"0.0.0.0:0\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n", "listens beyond loopback with an empty bridge.token"),
        ("[bridge]\nlisten = \"127.0.0.1:0\"\ntoken = \"tok\"\n[grpc]\nlisten = \"0.0.0.0:0\"\n", "listens beyond loopback and no tokens are configured"),
        ("[auth]\nadmin = [\"desk:short\"]\n", "auth.admin: token \"desk\" is shorter than 16 characters"),
    ] {
        let config = dir.path().join("mtml.toml");
        std::fs::write(&config, format!("{toml}[journal]\nurl = \"sqlite::memory:\"\n")).unwrap();
        let output = mtml().current_dir(dir.path()).args(["run", "--config"]).arg(&config).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(expected), "{toml}: {stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("short\""), "{stderr}");
        assert!(!dir.path().join("mtml-history.db").exists(), "refused before anything was opened");
    }
}

/// Secrets never leak: a live run with every kind of secret configured (API tokens, the bridge
/// token, the Telegram token, passwords inside the journal's PostgreSQL URL and the Redis URL),
/// logging at debug, living through a Redis outage, and every command's output, error and
/// `--help` are searched for each secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_anything_a_run_writes() {
    const PG_PASSWORD: &str = "PgSecret-0123456789";
    const REDIS_PASSWORD: &str = "RedisSecret-0123456789";
    const BRIDGE_TOKEN: &str = "BridgeSecret-0123456789";
    const TELEGRAM_TOKEN: &str = "5550003:TelegramSecret-0123456789";
    let secrets = [PG_PASSWORD, REDIS_PASSWORD, BRIDGE_TOKEN, TELEGRAM_TOKEN, READ, ADMIN];

    let database = mtml_test_support::postgres::FreshDatabase::create("secrets").await;
    let journal_url = database.url.replacen("://postgres@", &format!("://postgres:{PG_PASSWORD}@"), 1);
    assert!(journal_url.contains(PG_PASSWORD), "{journal_url}");
    let mut redis = mtml_test_support::RedisServer::start_with_password(REDIS_PASSWORD);
    let api = mtml_test_support::bot_api::BotApi::start(TELEGRAM_TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mtml.toml");
    let metrics_port = mtml_test_support::free_port();
    std::fs::write(
        &config,
        format!(
            "[bridge]\nlisten = \"127.0.0.1:0\"\ntoken = \"{BRIDGE_TOKEN}\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [journal]\nurl = \"{journal_url}\"\n[features]\nonline = \"{}\"\nhistory = \"none\"\nstore_timeout_ms = 300\n\
             [auth]\nread = [\"grafana:{READ}\"]\nadmin = [\"desk:{ADMIN}\"]\n\
             [telegram]\ntoken = \"{TELEGRAM_TOKEN}\"\napi_url = \"{}\"\nchats = [1]\nact_users = [2]\npoll_secs = 1\n",
            redis.url(),
            api.url
        ),
    )
    .unwrap();
    let instance = Instance::start(&config, "debug");
    let mut written = String::new();
    let (bridge_addr, grpc_addr) = (instance.bridge.clone(), instance.grpc.clone());

    // Ticks, orders and fills; then the online store goes down and comes back.
    let common::Streaming { terminal, stop, .. } = common::stream_sample_at(&bridge_addr, BRIDGE_TOKEN, mtml_simulator::Fault::None, Some(1_000)).await;
    api.wait_for(std::time::Duration::from_secs(60), "a fill", |sent| sent.iter().any(|s| s.text.contains("✅"))).await;
    redis.stop();
    api.wait_for(std::time::Duration::from_secs(60), "the store down", |sent| sent.iter().any(|s| s.text.contains("store down"))).await;
    redis.restart();
    api.wait_for(std::time::Duration::from_secs(60), "the store back", |sent| sent.iter().any(|s| s.text.contains("store back"))).await;
    stop.cancel();
    let _ = terminal.await.unwrap();
    let http = reqwest::Client::new();
    written.push_str(&http.get(format!("http://127.0.0.1:{metrics_port}/metrics")).bearer_auth(READ).send().await.unwrap().text().await.unwrap());

    // Commands against it, their answers and their errors.
    let url = format!("http://{grpc_addr}");
    let (config_path, url_for_cli) = (config.clone(), url.clone());
    let outputs = tokio::task::spawn_blocking(move || {
        let mut all = String::new();
        let runs: Vec<(Vec<String>, Option<&str>)> = vec![
            (vec!["models".into(), "list".into(), "--server".into(), url_for_cli.clone()], Some(READ)),
            (vec!["halt".into(), "--server".into(), url_for_cli.clone()], Some(READ)),
            (vec!["halt".into(), "--server".into(), url_for_cli.clone()], Some(ADMIN)),
            (vec!["orders".into(), "--config".into(), config_path.display().to_string()], None),
            (vec!["audit".into(), "--config".into(), config_path.display().to_string()], None),
            (vec!["chain".into(), "health".into(), "--config".into(), config_path.display().to_string()], None),
            // Help with secrets in the environment, as a user's shell would have them.
            (vec!["--help".into()], Some(ADMIN)),
            (vec!["run".into(), "--help".into()], Some(ADMIN)),
            (vec!["telegram".into(), "check".into(), "--help".into()], Some(ADMIN)),
        ];
        for (args, token) in runs {
            let mut command = mtml();
            command.args(&args).env("MTML_LOG", "debug").env("MTML_TELEGRAM_TOKEN", TELEGRAM_TOKEN);
            if let Some(token) = token {
                command.env("MTML_CLIENT_TOKEN", token);
            }
            let output = command.output().unwrap();
            all.push_str(&String::from_utf8_lossy(&output.stdout));
            all.push_str(&String::from_utf8_lossy(&output.stderr));
        }
        all
    })
    .await
    .unwrap();
    written.push_str(&outputs);

    written.push_str(&instance.stop().await);
    for message in api.sent() {
        written.push_str(&message.text);
    }
    // A journal that cannot be opened is named, its password masked.
    let missing = format!("{}_missing", journal_url);
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, format!("[journal]\nurl = \"{missing}\"\n")).unwrap();
    let output = mtml().args(["orders", "--config"]).arg(&broken).output().unwrap();
    let error = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success() && error.contains("postgres:***@"), "{error}");
    written.push_str(&error);

    assert!(written.contains("redis://:***@127.0.0.1"), "the Redis URL is shown masked: {written}");
    for secret in secrets {
        if let Some(at) = written.find(secret) {
            panic!("{secret} leaked: …{}…", &written[at.saturating_sub(200)..(at + 100).min(written.len())]);
        }
    }
    database.drop_database().await;
}

/// TLS with client certificates: an instance serving gRPC over TLS and asking every client for
/// a certificate from its authority. A client with one (and a token) is served, the command line
/// included; plain text, no certificate and a certificate from another authority are refused;
/// the instance's own loopback stream (ticks over gRPC) speaks TLS too. A key that does not go
/// with the certificate, or a missing file, stops the start by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_serves_only_clients_of_its_authority() {
    use mtml_proto::v1;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

    let dir = tempfile::tempdir().unwrap();
    let pki = mtml_test_support::tls::TestPki::create(dir.path());
    let path = |name: &str| pki.file(name).display().to_string();
    let tls_section = |key: &str| {
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n[client]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            path("server.pem"),
            path(key),
            path("ca.pem"),
            path("ca.pem"),
            path("client.pem"),
            path("client.key")
        )
    };
    let config = dir.path().join("mtml.toml");
    let base = format!(
        "[bridge]\nlisten = \"127.0.0.1:0\"\ntoken = \"tok\"\ntls = true\n[grpc]\nlisten = \"127.0.0.1:0\"\n[pipeline]\ntransport = \"grpc\"\n\
         [features]\nhistory = \"none\"\n[journal]\nurl = \"sqlite::memory:\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [auth]\nread = [\"grafana:{READ}\"]\nadmin = [\"desk:{ADMIN}\"]\n"
    );

    // A key of another certificate, and a file that is not there, are named at start.
    for (key, expected) in [("other-server.key", "does not go with tls.cert"), ("missing.key", "missing.key: cannot read it")] {
        std::fs::write(&config, format!("{base}{}", tls_section(key))).unwrap();
        let output = mtml().args(["run", "--config"]).arg(&config).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(expected) && stderr.contains("tls.key"), "{key}: {stderr}");
        assert!(!stderr.contains("BEGIN"), "no key material in the error: {stderr}");
    }

    std::fs::write(&config, format!("{base}{}", tls_section("server.key"))).unwrap();
    let instance = Instance::start(&config, "warn");
    let (bridge_addr, grpc_addr) = (instance.bridge.clone(), instance.grpc.clone());
    let port = grpc_addr.rsplit(':').next().unwrap().to_owned();

    // A client of the authority, with the read token: ticks arrived over the TLS loopback.
    let pem = |name: &str| std::fs::read(pki.file(name)).unwrap();
    let trusted = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem("ca.pem")));
    let with_identity = |cert: &str, key: &str| trusted.clone().identity(Identity::from_pem(pem(cert), pem(key)));
    let https = format!("https://localhost:{port}");
    let channel = Endpoint::from_shared(https.clone()).unwrap().tls_config(with_identity("client.pem", "client.key")).unwrap().connect().await.unwrap();
    let mut admin = v1::admin_client::AdminClient::new(channel);
    // The terminal port speaks TLS too: a terminal in plain text is not served; one over TLS
    // (as the EA with InpTls) streams every tick.
    let plain = common::stream_sample(&bridge_addr, "tok").await;
    assert!(plain.terminal.await.unwrap().is_err(), "plain text to the TLS terminal port");
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in rustls_pki_types_pem(&pem("ca.pem")) {
        roots.add(cert).unwrap();
    }
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        tokio_rustls::rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth(),
    ));
    let tcp = tokio::net::TcpStream::connect(&bridge_addr).await.unwrap();
    let tls = connector.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
    let common::Streaming { terminal, stop, sent, .. } = common::stream_sample_over(tls, "tok", mtml_simulator::Fault::None, None);
    every_tick_taken(&mut admin, sent).await;
    stop.cancel();
    let _ = terminal.await.unwrap();

    // No client certificate, or one from another authority: the handshake fails.
    for tls in [trusted.clone(), with_identity("stranger.pem", "stranger.key")] {
        let served = match Endpoint::from_shared(https.clone()).unwrap().tls_config(tls).unwrap().connect().await {
            Err(_) => false,
            Ok(channel) => v1::admin_client::AdminClient::new(channel).get_desk(with_token(v1::GetDeskRequest {}, READ)).await.is_ok(),
        };
        assert!(!served, "a client without a certificate of the authority was served");
    }
    // Plain text to the TLS port, and https with the certificates, from the command line.
    let cli = async |url: String, env: Vec<(&'static str, String)>| {
        let output = tokio::task::spawn_blocking(move || mtml().args(["halt", "--server", &url, "--timeout", "5"]).envs(env).output().unwrap());
        let output = output.await.unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (ok, error) = cli(format!("http://127.0.0.1:{port}"), vec![("MTML_CLIENT_TOKEN", ADMIN.to_owned())]).await;
    assert!(!ok && error.lines().count() == 1 && error.contains("https://"), "plain text refused: {error}");
    let client_env = vec![
        ("MTML_CLIENT_TOKEN", ADMIN.to_owned()),
        ("MTML_CLIENT_CA", path("ca.pem")),
        ("MTML_CLIENT_CERT", path("client.pem")),
        ("MTML_CLIENT_KEY", path("client.key")),
    ];
    let (ok, error) = cli(https.clone(), client_env[..2].to_vec()).await;
    assert!(!ok && error.lines().count() == 1 && error.contains("MTML_CLIENT_CERT"), "no client certificate: {error}");
    let (ok, error) = cli(https.clone(), client_env.clone()).await;
    assert!(ok, "{error}");
    let state = admin.get_trading_state(with_token(v1::GetTradingStateRequest {}, READ)).await.unwrap().into_inner();
    assert_eq!(state.state, v1::TradingState::Halted as i32);

    // The HTTP endpoint speaks TLS with the same certificate: /metrics with the read token,
    // /healthz to a probe without one; plain text is not served.
    let metrics_addr = instance.logs.split("metrics on https://").nth(1).expect("metrics served over https").split('/').next().unwrap().to_owned();
    let get = async |path: &str, token: Option<&str>, tls: bool| -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n{auth}connection: close\r\n\r\n");
        let tcp = tokio::net::TcpStream::connect(&metrics_addr).await.unwrap();
        let mut response = Vec::new();
        if tls {
            let mut stream = connector.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let _ = stream.read_to_end(&mut response).await;
        } else {
            let mut stream = tcp;
            stream.write_all(request.as_bytes()).await.unwrap();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(15), stream.read_to_end(&mut response)).await.expect("a plain-text client is let go");
        }
        String::from_utf8_lossy(&response).into_owned()
    };
    let metrics = get("/metrics", Some(READ), true).await;
    assert!(metrics.starts_with("HTTP/1.1 200") && metrics.contains("mtml_terminal_ticks_total"), "{metrics}");
    assert!(get("/metrics", None, true).await.starts_with("HTTP/1.1 401"), "no token, no metrics");
    assert!(get("/healthz", None, true).await.starts_with("HTTP/1.1 200"), "probes need no token");
    let plain = get("/healthz", None, false).await;
    assert!(!plain.contains("HTTP/1.1 200"), "plain text to the HTTPS endpoint: {plain}");
    assert!(get("/healthz", None, true).await.starts_with("HTTP/1.1 200"), "still serving after a plain-text client");

    drop(admin);
    let logs = instance.stop().await;
    assert!(!logs.contains("BEGIN"), "no key material in the log");
}
