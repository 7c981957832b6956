//! The `mtml` binary as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use mtml_proto::v1::PredictSymbolRequest;
use mtml_proto::v1::prediction_client::PredictionClient;

/// The binary, each run in a folder of its own (see `command_in_own_dir`).
fn mtml() -> Command {
    mtml_test_support::command_in_own_dir(env!("CARGO_BIN_EXE_mtml"))
}

use common::sample;

#[test]
fn replay_prints_a_summary_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let output = mtml()
        .args(["replay", "--ticks"])
        .arg(sample())
        .arg("--report")
        .arg(&report)
        .env("MTML_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("counts add up: yes"), "{stdout}");
    assert!(stdout.contains("example chain"), "{stdout}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["ticks_read"], 18_967);
    assert_eq!(json["ticks_ingested"], 18_967);
    assert_eq!(json["bars"], 360);
    assert_eq!(json["counts_add_up"], true);
}

#[test]
fn an_invalid_config_is_rejected_at_start_with_every_problem_listed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mtml.toml");
    std::fs::write(&config, "[decision]\nbuy_above = 0.2\nsell_below = 0.8\n[risk]\nmax_position_lots = 0\n[bridge]\nlisten = \"here\"\n").unwrap();
    let output = mtml().args(["run", "--config"]).arg(&config).env("RUST_BACKTRACE", "0").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid configuration (3 problems)"), "{stderr}");
    assert!(stderr.contains("bridge.listen: \"here\" is not an address"), "{stderr}");
    assert!(stderr.contains("decision.sell_below (0.8) must be below decision.buy_above (0.2)"), "{stderr}");
    assert!(stderr.contains("risk.max_position_lots: 0 must be positive"), "{stderr}");
}

/// `mtml run` as a service: a terminal streams over TCP, a gRPC client asks for predictions, and
/// SIGTERM stops it cleanly after every tick was processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_terminals_and_predictions_until_terminated() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mtml.toml");
    std::fs::write(
        &config,
        format!(
            "[bridge]\nlisten = \"127.0.0.1:0\"\ntoken = \"tok\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n[journal]\nurl = \"sqlite://{}?mode=rwc\"\n",
            dir.path().join("journal.db").display()
        ),
    )
    .unwrap();
    let mut child = mtml()
        .args(["run", "--config"])
        .arg(&config)
        .env("MTML_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let (bridge_addr, grpc_addr) = mtml_test_support::running_addresses(&line);

    let common::Streaming { terminal: sim, stop, sent, last_time } = common::stream_sample(&bridge_addr, "tok").await;

    let mut client = PredictionClient::connect(format!("http://{grpc_addr}")).await.unwrap();
    let unknown = client
        .predict_symbol(PredictSymbolRequest { symbol: "XAGEUR".into(), model: String::new() })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert!(unknown.message().contains("no features for symbol \"XAGEUR\""), "{}", unknown.message());
    // The standard gRPC health service: the server and each service serving, others unknown.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_addr}")).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = |service: &str| tonic_health::pb::HealthCheckRequest { service: service.into() };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(health.check(status("")).await.unwrap().into_inner().status, serving);
    assert_eq!(health.check(status("mtml.v1.Prediction")).await.unwrap().into_inner().status, serving);
    assert_eq!(health.check(status("inference.GRPCInferenceService")).await.unwrap().into_inner().status, serving);
    assert_eq!(health.check(status("mtml.v1.Nothing")).await.unwrap_err().code(), tonic::Code::NotFound);
    // This instance does not follow the registry: models commands say how to make it.
    let models = mtml().args(["models", "list", "--server", &format!("http://{grpc_addr}")]).output().unwrap();
    let models_error = String::from_utf8_lossy(&models.stderr);
    assert!(!models.status.success() && models_error.contains("need an instance running with model.from_registry = true"), "{models_error}");
    // Poll until the features of the file's last tick are served: every tick went through.
    let prediction = loop {
        match client.predict_symbol(PredictSymbolRequest { symbol: "EURUSD".into(), model: String::new() }).await {
            Ok(response) if response.get_ref().feature_time_ms == last_time => break response.into_inner(),
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(status) if status.code() == tonic::Code::NotFound => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status}"),
        }
    };
    assert_eq!(prediction.features.len(), mtml_feature_store::FEATURE_COUNT);
    assert_eq!(prediction.feature_set, mtml_feature_store::FEATURE_SET.id());
    assert!((0.0..=1.0).contains(&prediction.probability_up));
    assert!(prediction.stale, "2014 features are stale by the live clock");
    assert_eq!(prediction.chain_id.unwrap().trace_id.len(), 16);
    // A caller's W3C traceparent names the chain the prediction joins, and comes back with it;
    // a malformed one is ignored (a new chain), as W3C asks.
    let traced = |header: &str| {
        let mut request = tonic::Request::new(PredictSymbolRequest { symbol: "EURUSD".into(), model: String::new() });
        request.metadata_mut().insert("traceparent", header.parse().unwrap());
        request
    };
    let response = client.predict_symbol(traced("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")).await.unwrap();
    let back = response.metadata().get("traceparent").unwrap().to_str().unwrap().to_owned();
    assert!(back.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && !back.contains("00f067aa0ba902b7"), "{back}");
    let chain = response.into_inner().chain_id.unwrap().trace_id;
    assert_eq!(mtml_core::ChainId::from_slice(&chain).unwrap().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    let fresh = client.predict_symbol(traced("00-zz-00f067aa0ba902b7-01")).await.unwrap().into_inner().chain_id.unwrap().trace_id;
    assert_ne!(fresh, chain);

    // The same endpoint speaks the Open Inference Protocol, with the live model loaded.
    let mut oip = mtml_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .unwrap();
    let ready = mtml_proto::inference::ModelReadyRequest { name: "fx-direction".into(), version: String::new() };
    assert!(oip.model_ready(ready).await.unwrap().into_inner().ready);

    // An operator halts and resumes the running instance.
    let state = |command: &str| {
        let output = mtml().args([command, "--reason", "cli test", "--server", &format!("http://{grpc_addr}")]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(state("halt"), "trading state: HALTED\n");
    assert_eq!(state("reduce"), "trading state: REDUCING\n");
    assert_eq!(state("resume"), "trading state: ACTIVE\n");

    // The terminal has sent everything; stop mtml with SIGTERM.
    stop.cancel();
    let report = sim.await.unwrap().unwrap();
    assert_eq!(report.ticks_sent as usize, sent);
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{rest}");
    assert!(rest.contains(&format!("stopped after {sent} ticks")), "every tick processed before exit: {rest}");
}

#[test]
fn ea_install_dry_run_against_a_fake_terminal_tree() {
    let dir = tempfile::tempdir().unwrap();
    let terminal = dir.path().join("MetaQuotes/Terminal/D0E8209F77C8CF37AD8BF550E51FF075");
    std::fs::create_dir_all(terminal.join("MQL5/Experts")).unwrap();
    let output = mtml()
        .args(["ea", "install", "--dry-run", "--terminal-dir"])
        .arg(&terminal)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("would create"), "{stdout}");
    assert!(stdout.contains("Experts/mtml/MtmlBridge.mq5"), "{stdout}");
    assert!(stdout.contains("compile it (F7)"), "{stdout}");
    assert!(!terminal.join("MQL5/Experts/mtml").exists(), "dry run wrote nothing");

    // Found without --terminal-dir through a Wine prefix.
    let home = dir.path().join("home");
    let wine = home.join(".wine/drive_c/users/me/AppData/Roaming/MetaQuotes/Terminal/X/MQL5");
    std::fs::create_dir_all(&wine).unwrap();
    let output = mtml()
        .args(["ea", "install"])
        .env("HOME", &home)
        .env_remove("APPDATA")
        .env_remove("WINEPREFIX")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(wine.join("Include/mtml/Protocol.mqh").is_file(), "installed into the Wine terminal");
}

/// A replay journaled to a SQLite file, read back with `mtml positions`, `orders` and `pnl`.
#[test]
fn the_journal_of_a_replay_is_read_back_by_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mtml.toml");
    let journal = dir.path().join("journal.db");
    std::fs::write(&config, format!("[journal]\nurl = \"sqlite://{}?mode=rwc\"\n", journal.display())).unwrap();
    let report = dir.path().join("report.json");
    let replay = || {
        let output = mtml()
            .args(["replay", "--ticks"])
            .arg(sample())
            .arg("--config")
            .arg(&config)
            .arg("--report")
            .arg(&report)
            .env("MTML_LOG", "error")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&report).unwrap()).unwrap()
    };
    let json = replay();
    let cli = |args: &[&str]| {
        let output = mtml().args(args).arg("--config").arg(&config).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let positions = cli(&["positions"]);
    let debug = mtml().arg("positions").arg("--config").arg(&config).env("MTML_LOG", "debug").output().unwrap();
    let debug_log = String::from_utf8_lossy(&debug.stderr);
    assert!(debug.status.success() && !debug_log.contains("sqlx"), "MTML_LOG=debug is not sqlx's query log: {debug_log}");
    let lots = json["positions"]["EURUSD"]["mtml_lots"].as_f64().unwrap();
    assert!(positions.contains(&format!("EURUSD     {lots:>7.2}")), "{positions}");
    let orders = cli(&["orders"]);
    let sent = json["orders_sent"].as_u64().unwrap();
    assert!(orders.ends_with(&format!("{sent} orders\n")), "{orders}");
    let filled = orders.lines().skip(1).filter(|l| l.split_whitespace().nth(5) == Some("filled")).count();
    assert_eq!(filled as u64, sent, "every order filled: {orders}");
    assert!(cli(&["orders", "--open"]).ends_with("0 orders\n"));
    let pnl = cli(&["pnl"]);
    let realized = json["pnl"]["realized"].as_f64().unwrap();
    assert_eq!(pnl, format!("realized pnl: {realized:.2}\n"));
    assert_eq!(cli(&["pnl", "--day"]), "realized pnl today (UTC): 0.00\n", "2014 fills are not today's");

    // A second run recovers the position from the journal; the fresh (flat) terminal disagrees,
    // and reconciliation adopts the terminal's books.
    let second = replay();
    let expected = u64::from(lots != 0.0);
    assert_eq!(second["reconciliation_differences"], expected, "{second:#}");
    assert_eq!(second["positions"]["EURUSD"]["mtml_lots"], second["positions"]["EURUSD"]["terminal_lots"]);

    // Once a live instance's order is in it, a replay refuses to mix simulated fills into it.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}?mode=rwc", journal.display());
        let live = mtml_journal::Journal::open(&url).await.unwrap();
        live.write(&[mtml_journal::Record::OrderCreated {
            client_order_id: "live-1".into(),
            chain_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            symbol: "EURUSD".into(),
            side: "buy".into(),
            volume: 0.1,
            decision_price: 1.1,
            created_ms: 1,
        }])
        .await
        .unwrap();
        live.close().await;
    });
    let output = mtml().args(["replay", "--ticks"]).arg(sample()).arg("--config").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "replayed into a live journal");
    assert!(stderr.contains("holds a live instance's orders (order live-1 for one)"), "{stderr}");
}

#[test]
fn a_replay_trades_the_files_symbols_unless_the_configuration_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let ticks = dir.path().join("gbp.csv");
    let rows: String = (0..50).map(|i| format!("{},GBPUSD,1.68{:03},1.68{:03}\n", 1_399_230_000_000_i64 + i * 1000, 700 + i, 710 + i)).collect();
    std::fs::write(&ticks, format!("time_utc_ms,symbol,bid,ask\n{rows}")).unwrap();
    let replay = |toml: &str| {
        let config = dir.path().join("mtml.toml");
        std::fs::write(&config, toml).unwrap();
        let report = dir.path().join("report.json");
        let output = mtml().args(["replay", "--ticks"]).arg(&ticks).arg("--config").arg(&config).arg("--report").arg(&report).output().unwrap();
        let json = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&report).unwrap()).unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned(), json)
    };
    let (ok, stderr, json) = replay("[risk]\nmax_order_lots = 0.5\n");
    assert!(ok, "{stderr}");
    assert_eq!(json["ticks_ingested"], 50, "{json:#}");
    // Named symbols the file does not have: every tick refused, which is not a success.
    let (ok, stderr, json) = replay("[pipeline]\nsymbols = [\"EURUSD\"]\n");
    assert_eq!(json["ticks_ingested"], 0);
    assert_eq!(json["ticks_rejected"]["unknown_symbol"], 50, "{json:#}");
    assert!(!ok && stderr.contains("50 of 50 ticks were refused: 50 unknown_symbol"), "{stderr}");
}

#[test]
fn silent_successes_are_errors_that_say_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let output = mtml().args(args).output().unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let os = std::ffi::OsStr::new;
    let header_only = dir.path().join("eurusd_empty.csv");
    std::fs::write(&header_only, "time_utc_ms,bid,ask\n").unwrap();
    let (ok, stderr) = run(&[os("replay"), os("--ticks"), header_only.as_os_str()]);
    assert!(!ok && stderr.contains("no ticks after the header"), "{stderr}");

    let backwards = dir.path().join("eurusd_backwards.csv");
    let rows: String = (0..20).map(|i| format!("{},1.38{:03},1.38{:03}\n", 1_399_230_100_000_i64 - i * 5_000, 700 + i, 710 + i)).collect();
    std::fs::write(&backwards, format!("time_utc_ms,bid,ask\n{rows}")).unwrap();
    let (ok, stderr) = run(&[os("replay"), os("--ticks"), backwards.as_os_str()]);
    assert!(!ok && stderr.contains("19 of 20 ticks were refused: 19 time_went_backwards (is the file sorted oldest first?)"), "{stderr}");

    let out = dir.path().join("rows.csv");
    let (ok, stderr) = run(&[os("features"), os("export"), os("--ticks"), backwards.as_os_str(), os("--out"), out.as_os_str()]);
    assert!(!ok && stderr.contains("no training rows"), "{stderr}");

    let (ok, stderr) = run(&[os("replay"), os("--ticks"), sample().as_os_str(), os("--report"), os("/nonexistent/dir/report.json")]);
    assert!(!ok && stderr.contains("--report /nonexistent/dir/report.json: cannot write there"), "{stderr}");
}

/// `mtml models upload | list | show` on a SQLite registry: both shipped models register as
/// versions 1 and 2; bad uploads are refused with the reason and leave the registry as it was.
#[test]
fn models_are_validated_uploaded_listed_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mtml.toml");
    let registry = dir.path().join("registry.db");
    std::fs::write(&config, format!("[registry]\nurl = \"sqlite://{}?mode=rwc\"\n[pipeline]\nsymbols = [\"EURUSD\", \"GBPUSD\"]\n", registry.display())).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let models = |args: &[&std::ffi::OsStr]| {
        let output = mtml().arg("models").args(args).arg("--config").arg(&config).output().unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let path = |p: &str| root.join(p).into_os_string();
    let name = std::ffi::OsStr::new;
    for version in ["v1", "v2"] {
        let file = path(&format!("models/fx-direction-{version}.onnx"));
        let metrics = path(&format!("models/fx-direction-{version}.metrics.json"));
        let (ok, stdout, stderr) = models(&[name("upload"), &file, name("--name"), name("fx-direction"), name("--metadata"), &metrics]);
        assert!(ok, "{stderr}");
        assert!(stdout.starts_with(&format!("registered fx-direction:{}", &version[1..])), "{stdout}");
    }
    let v1 = std::fs::read(root.join("models/fx-direction-v1.onnx")).unwrap();
    let again = models(&[name("upload"), &path("models/fx-direction-v1.onnx"), name("--name"), name("fx-direction")]);
    assert!(!again.0 && again.2.contains("already has these bytes as version 1"), "{}", again.2);

    // Bad uploads, each refused with what is wrong.
    let not_onnx = dir.path().join("notes.onnx");
    std::fs::write(&not_onnx, b"these are not the weights you are looking for").unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &v1[..v1.len() / 2]).unwrap();
    let cases: [(std::ffi::OsString, Vec<&str>, &str); 5] = [
        (not_onnx.into_os_string(), vec![], "is not a model mtml can serve"),
        (truncated.into_os_string(), vec![], "is not a model mtml can serve"),
        (path("tests/fixtures/wrong-feature-count.onnx"), vec![], "takes 13 features, but feature set fx@2 has 14 (missing quote_imbalance"),
        (path("tests/fixtures/wrong-feature-set.onnx"), vec![], "declares feature set fx@1, but this build computes fx@2"),
        (path("models/fx-direction-v1.onnx"), vec!["--sha256", "00ff"], "not the 00ff given; refusing a damaged copy"),
    ];
    for (file, extra, reason) in cases {
        let mut args = vec![name("upload"), &file, name("--name"), name("bad")];
        args.extend(extra.iter().map(|a| name(a)));
        let (ok, _, stderr) = models(&args);
        assert!(!ok, "{file:?} was accepted");
        assert!(stderr.contains(reason), "{file:?}: {stderr}");
    }

    let readme = path("models/README.md");
    let (ok, _, stderr) = models(&[name("upload"), &path("models/fx-direction-v1.onnx"), name("--name"), name("x"), name("--metadata"), &readme]);
    assert!(!ok && stderr.contains("README.md: the training metadata is not JSON"), "{stderr}");
    assert!(!stderr.contains("fx-direction-v1.onnx"), "the model file is not blamed: {stderr}");
    for bad in ["", "bad name/../x"] {
        let (ok, _, stderr) = models(&[name("upload"), &path("models/fx-direction-v1.onnx"), name("--name"), name(bad)]);
        assert!(!ok && stderr.contains("is not allowed: use 1 to 64 letters"), "{bad:?}: {stderr}");
    }

    let (ok, list, _) = models(&[name("list")]);
    assert!(ok);
    assert!(list.ends_with("2 versions\n"), "bad uploads stored nothing: {list}");
    let (ok, shown, _) = models(&[name("show"), name("fx-direction:1")]);
    assert!(ok);
    assert!(shown.contains("feature set  fx@2"), "{shown}");
    assert!(shown.contains("\"accuracy\""), "metrics recorded: {shown}");
    assert!(shown.contains(&format!("size         {} bytes", v1.len())), "{shown}");
    let uploaded = shown.lines().find(|l| l.trim_start().starts_with("uploaded")).unwrap();
    assert!(uploaded.ends_with(" UTC") && !uploaded.ends_with(" ms"), "a time people read: {uploaded}");
    let (_, latest, _) = models(&[name("show"), name("fx-direction")]);
    assert!(latest.starts_with("fx-direction:2\n"), "{latest}");
    let (ok, _, stderr) = models(&[name("show"), name("fx-direction:7")]);
    assert!(!ok && stderr.contains("no model fx-direction:7 in the registry"), "{stderr}");

    // A canary's share and symbols are checked before anything changes.
    let (ok, _, stderr) = models(&[name("rollout"), name("fx-direction:2"), name("--canary"), name("150")]);
    assert!(!ok && stderr.contains("150 is not in 1..=100"), "{stderr}");
    let (ok, _, stderr) = models(&[name("rollout"), name("fx-direction:2"), name("--canary"), name("20"), name("--symbols"), name("USDJPY")]);
    assert!(!ok && stderr.contains("USDJPY is not traded here (pipeline.symbols: EURUSD, GBPUSD)"), "{stderr}");

    // Rollout on the registry directly, as an operator does before (or beside) a running instance.
    let (ok, _, stderr) = models(&[name("rollout"), name("fx-direction:2"), name("--shadow")]);
    assert!(!ok && stderr.contains("no champion"), "{stderr}");
    let (ok, out, stderr) = models(&[name("promote"), name("fx-direction:1")]);
    assert!(ok, "{stderr}");
    assert!(out.contains("fx-direction: champion 1"), "{out}");
    let (ok, out, stderr) = models(&[name("rollout"), name("fx-direction:2"), name("--canary"), name("25"), name("--symbols"), name("EURUSD,GBPUSD")]);
    assert!(ok, "{stderr}");
    assert!(out.contains("challenger 2 on canary 25% of chains on EURUSD,GBPUSD"), "{out}");
    let (ok, shown, _) = models(&[name("show"), name("fx-direction:challenger")]);
    assert!(ok && shown.starts_with("fx-direction:2\n  state        canary"), "{shown}");
    let (ok, _, stderr) = models(&[name("rollout"), name("fx-direction:2")]);
    assert!(!ok && stderr.contains("--shadow, or --canary PERCENT"), "{stderr}");
    let (ok, out, _) = models(&[name("rollback"), name("fx-direction")]);
    assert!(ok && out.contains("challenger 2 withdrawn"), "{out}");
    let (ok, out, _) = models(&[name("promote"), name("fx-direction:2")]);
    assert!(ok && out.contains("champion 2"), "{out}");
    let (ok, out, _) = models(&[name("rollback"), name("fx-direction")]);
    assert!(ok && out.contains("champion 2 rolled back to 1"), "{out}");
    let (ok, shown, _) = models(&[name("show"), name("fx-direction:champion")]);
    assert!(ok && shown.starts_with("fx-direction:1\n"), "{shown}");
    let (ok, list, _) = models(&[name("list")]);
    assert!(ok && list.contains("rolled_back"), "states are listed: {list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_commands_act_on_a_running_instance_with_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mtml.toml");
    std::fs::write(
        &config,
        format!(
            "[bridge]\nlisten = \"127.0.0.1:0\"\ntoken = \"tok\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n[journal]\nurl = \"sqlite::memory:\"\n[features]\nhistory = \"none\"\n[registry]\nurl = \"sqlite://{}?mode=rwc\"\n[model]\nfrom_registry = true\n",
            dir.path().join("registry.db").display()
        ),
    )
    .unwrap();
    let mut child = KillOnDrop(mtml().args(["run", "--config"]).arg(&config).env("MTML_LOG", "error").stderr(Stdio::piped()).spawn().unwrap());
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("mtml running") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "mtml run stopped before it was running");
    }
    let (_, grpc_addr) = mtml_test_support::running_addresses(&line);
    let server = format!("http://{grpc_addr}");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let models = |args: &[&str]| {
        let output = mtml().arg("models").args(args).args(["--server", &server]).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    for version in [1, 2] {
        let file = root.join(format!("models/fx-direction-v{version}.onnx"));
        let out = models(&["upload", file.to_str().unwrap(), "--name", "fx-direction"]);
        assert!(out.starts_with(&format!("registered fx-direction:{version}")), "{out}");
    }
    assert!(models(&["list"]).ends_with("2 versions\n"));
    let out = models(&["promote", "fx-direction:1"]);
    assert!(out.contains("this instance serves revision 1"), "applied there before the answer: {out}");
    let out = models(&["rollout", "fx-direction:2", "--shadow"]);
    assert!(out.contains("challenger 2 on shadow") && out.contains("serves revision 2"), "{out}");
    let shown = models(&["show", "fx-direction:challenger"]);
    assert!(shown.starts_with("fx-direction:2\n  state        shadow"), "{shown}");
    let json = mtml().args(["models", "compare", "fx-direction", "--server", &server, "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!((report["role"].as_str(), report["predictions"].as_u64()), (Some("shadow"), Some(0)), "no ticks yet: {report}");
    assert_eq!(report["champion"]["model"], "fx-direction:1");

    let status = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(child.0.wait().unwrap().success(), "{rest}");
}

/// A child process killed if the test panics before stopping it (it would otherwise hold the
/// test's output open).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server that accepts connections and never says a word.
fn silent_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    url
}

#[test]
fn commands_give_up_on_a_server_that_accepts_and_never_answers() {
    let server = silent_server();
    for args in [
        vec!["halt", "--server", server.as_str()],
        vec!["models", "compare", "fx", "--server", server.as_str()],
        vec!["models", "list", "--server", server.as_str()],
    ] {
        let output = mtml().args(&args).args(["--timeout", "1"]).env("RUST_BACKTRACE", "1").output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} must fail");
        assert!(stderr.contains("no answer within 1 s") || stderr.contains("connecting to mtml at"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked") && !stderr.to_lowercase().contains("backtrace"), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line naming the problem: {stderr}");
    }
    let refused = mtml().args(["halt", "--server", &server, "--timeout", "0"]).output().unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--timeout 0: give a number of seconds above 0"));
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = mtml().args(["features", "describe"]).stdout(writer).stderr(std::process::Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn read_only_commands_without_stores_say_so_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (args, store) in [
        (vec!["positions"], "journal"),
        (vec!["orders", "--open"], "journal"),
        (vec!["pnl"], "journal"),
        (vec!["models", "list"], "registry"),
        (vec!["models", "show", "fx:1"], "registry"),
        (vec!["models", "promote", "fx:1"], "registry"),
    ] {
        let output = mtml().current_dir(dir.path()).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} must not succeed as if flat: {}", String::from_utf8_lossy(&output.stdout));
        assert!(stderr.contains(&format!("there is no {store} at")), "{args:?}: {stderr}");
        let created: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(created.is_empty(), "{args:?} created {created:?}");
    }
}

#[test]
fn stores_that_are_down_are_named_at_start_and_in_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let dead = mtml_test_support::free_port();
    let config = dir.path().join("mtml.toml");
    std::fs::write(&config, format!("[features]\nonline = \"redis://127.0.0.1:{dead}/0\"\nstore_timeout_ms = 200\n")).unwrap();
    let output = mtml().args(["replay", "--ticks"]).arg(sample()).arg("--config").arg(&config).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "a replay runs without its online store: {stderr}");
    assert!(stderr.contains("the online feature store is down at start"), "{stderr}");
    assert!(!stderr.contains("feature stores ready"), "{stderr}");
    let line = stdout.lines().find(|l| l.trim_start().starts_with("stores")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains(&format!("127.0.0.1:{dead}")) && line.contains("failed writes, DOWN at the end"), "{line}");

    // A journal on a PostgreSQL that is not there: named at once, not after a 30 s pool timeout.
    std::fs::write(&config, format!("[journal]\nurl = \"postgres://mtml@127.0.0.1:{dead}/mtml\"\n")).unwrap();
    let output = mtml().args(["replay", "--ticks"]).arg(sample()).arg("--config").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(&format!("cannot reach the journal database at 127.0.0.1:{dead}")), "{stderr}");
}

#[test]
fn an_instance_following_an_empty_registry_says_so_in_whole_sentences() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mtml.toml");
    std::fs::write(&config, format!("[model]\nfrom_registry = true\n[registry]\nurl = \"sqlite://{}?mode=rwc\"\n", dir.path().join("r.db").display())).unwrap();
    let output = mtml().args(["replay", "--ticks"]).arg(sample()).arg("--config").arg(&config).env("MTML_LOG", "warn").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("the configured model serves until a version is promoted (mtml models promote NAME:VERSION)"), "{stderr}");
}

#[test]
fn logs_are_json_lines_when_asked_and_plain_text_without_colour_in_a_pipe() {
    let run = |format: &str| {
        let output = mtml().args(["replay", "--ticks"]).arg(sample()).env("MTML_LOG", "info").env("MTML_LOG_FORMAT", format).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stderr).unwrap()
    };
    let json = run("json");
    let lines: Vec<serde_json::Value> = json.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect();
    assert!(lines.len() >= 3, "{json}");
    assert!(lines.iter().all(|l| l["level"].is_string() && l["fields"]["message"].is_string()), "{json}");
    let started = lines.iter().find(|l| l["fields"]["message"] == "mtml started").expect("the start is logged");
    assert_eq!(started["fields"]["transport"], "in-process");
    let text = run("text");
    assert!(text.contains("mtml started") && !text.contains('\u{1b}'), "no colour codes in a pipe: {text}");
}

#[test]
fn the_chains_of_a_replay_are_read_back_from_history_stage_by_stage() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mtml.toml");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("journal.db").display());
    // No sample of ordinary chains: the history holds exactly the chains that led to an order.
    std::fs::write(&config, format!("[journal]\nurl = \"{url}\"\nchain_retention_days = 7\nchain_sample = 0\n")).unwrap();
    // A chain recorded long ago: the retention forgets it when the next run starts.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let journal = mtml_journal::Journal::open(&url).await.unwrap();
        let span = mtml_journal::SpanRow { stage: "ingest".into(), service: "mtml".into(), start_unix_ns: 0, duration_ns: 5, outcome: "ok".into() };
        journal.write(&[mtml_journal::Record::Chain { chain_id: "0123456789abcdef0123456789abcdef".into(), service: "mtml".into(), spans: vec![span], recorded_ms: 1_000 }]).await.unwrap();
        journal.close().await;
    });
    let report = dir.path().join("report.json");
    let output = mtml().args(["replay", "--ticks"]).arg(sample()).arg("--config").arg(&config).arg("--report").arg(&report).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let fills = json["fills"].as_u64().unwrap();
    let old = mtml().args(["chain", "show", "0123456789abcdef0123456789abcdef", "--config"]).arg(&config).output().unwrap();
    assert!(String::from_utf8_lossy(&old.stderr).contains("is not in the history"), "the old chain outlived the retention");
    let cli = |args: &[&str]| {
        let output = mtml().args(args).arg("--config").arg(&config).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let recent = cli(&["chain", "recent", "--limit", "1000"]);
    assert!(recent.ends_with(&format!("{fills} chains\n")), "every filled order's chain is kept: {recent}");
    let slowest = cli(&["chain", "recent", "--slowest", "3"]);
    let ids: Vec<&str> = slowest.lines().skip(1).take(3).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{slowest}");
    let totals: Vec<f64> = slowest.lines().skip(1).take(3).map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap()).collect();
    assert!(totals.windows(2).all(|w| w[0] >= w[1]), "slowest first: {slowest}");

    // One chain, whole: every stage of the path in order, each inside the chain's time.
    let shown = cli(&["chain", "show", ids[0]]);
    let stages: Vec<&str> = shown.lines().skip(2).map(|l| l.split_whitespace().next().unwrap()).collect();
    let expected = ["bridge_receive", "ingest", "features", "inference", "decision", "risk", "execution", "bridge_send", "fill"];
    let mut at = 0;
    for stage in expected {
        let found = stages[at..].iter().position(|s| *s == stage).unwrap_or_else(|| panic!("{stage} missing or out of order: {shown}"));
        at += found + 1;
    }
    let total: f64 = shown.lines().next().unwrap().split_whitespace().nth(5).unwrap().parse().unwrap();
    for line in shown.lines().skip(2) {
        let fields: Vec<f64> = line.split_whitespace().skip(2).take(2).map(|f| f.parse().unwrap()).collect();
        assert!(fields[0] + fields[1] <= total + 0.01, "a span inside the chain: {line} of {total}");
    }
    let missing = mtml().args(["chain", "show", "00000000000000000000000000000001", "--config"]).arg(&config).output().unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is not in the history"));

    let health = cli(&["chain", "health", "--since", "1h"]);
    assert!(health.starts_with(&format!("{fills} chains, ")), "{health}");
    assert!(health.contains("  inference") && health.contains("bottleneck: "), "{health}");

    // Chains risk refused are kept whole too, findable, and counted where they stopped.
    // And 5% of the ordinary ones (no order, no refusal) as a sample.
    std::fs::write(
        &config,
        format!("[journal]\nurl = \"sqlite://{}?mode=rwc\"\nchain_sample = 0.05\n[risk]\nmax_order_lots = 0.05\n", dir.path().join("refused.db").display()),
    )
    .unwrap();
    let output = mtml().args(["replay", "--ticks"]).arg(sample()).arg("--config").arg(&config).arg("--report").arg(&report).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let refused = json["pipeline"]["risk_rejections"]["max_order_size"].as_u64().or_else(|| json["risk_rejections"]["max_order_size"].as_u64()).unwrap();
    assert!(refused > 0, "{json:#}");
    let rejected = cli(&["chain", "recent", "--rejected", "--limit", "1000"]);
    assert!(rejected.ends_with(&format!("{refused} chains\n")), "{rejected}");
    assert!(cli(&["chain", "recent", "--errors"]).ends_with("0 chains\n"));
    let id = rejected.lines().nth(1).unwrap().split_whitespace().next().unwrap();
    let shown = cli(&["chain", "show", id]);
    assert!(shown.lines().last().unwrap().starts_with("  risk") && shown.ends_with("rejected: max_order_size\n"), "the chain stops at risk: {shown}");
    let health = cli(&["chain", "health"]);
    assert!(health.contains(&format!("went wrong: {refused} chain(s) at risk: rejected: max_order_size")), "{health}");
    assert!(health.lines().any(|l| l.starts_with("  risk") && l.contains("100.0%")), "{health}");
    let all = cli(&["chain", "recent", "--limit", "1000000"]);
    let kept: u64 = all.lines().last().unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let ticks = json["ticks_read"].as_u64().unwrap();
    let sampled = kept - refused;
    assert!(sampled * 100 > ticks * 3 && sampled * 100 < ticks * 7, "about 5% of {ticks} ordinary chains sampled: {sampled}");
}

/// Feature drift: the distribution `features export --distribution` writes is the reference; a
/// replay of the same ticks does not drift from it, while against a distribution whose values
/// all lie elsewhere every feature drifts, alerts are raised, and the report says so.
#[test]
fn live_features_are_measured_against_the_training_distribution() {
    let dir = tempfile::tempdir().unwrap();
    let distribution = dir.path().join("distribution.json");
    let output = mtml()
        .args(["features", "export", "--ticks"])
        .arg(sample())
        .arg("--out")
        .arg(dir.path().join("rows.csv"))
        .arg("--distribution")
        .arg(&distribution)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let replay_psi = |distribution: &std::path::Path, window: u64| {
        let config = dir.path().join("drift.toml");
        std::fs::write(&config, format!("[model]\nfeature_distribution = \"{}\"\ndrift_window = {window}\n", distribution.display())).unwrap();
        let report = dir.path().join("report.json");
        let output = mtml().args(["replay", "--ticks"]).arg(sample()).arg("--config").arg(&config).arg("--report").arg(&report).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let psi: Vec<f64> = json["feature_psi"].as_object().unwrap_or_else(|| panic!("{json:#}")).values().map(|v| v.as_f64().unwrap()).collect();
        (psi, json["drift_alerts"].as_u64().unwrap(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    // A window longer than the session: at the end it holds exactly the exported rows.
    let (psi, alerts, _) = replay_psi(&distribution, 100_000);
    assert_eq!(psi.len(), mtml_feature_store::FEATURE_COUNT);
    assert_eq!(alerts, 0, "{psi:?}");
    assert!(psi.iter().all(|p| *p < 0.01), "the same features do not drift: {psi:?}");

    // Training values all far above the live ones: every live value falls in the first bin.
    let mut shifted: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&distribution).unwrap()).unwrap();
    for feature in shifted["features"].as_array_mut().unwrap() {
        for edge in feature["edges"].as_array_mut().unwrap() {
            *edge = serde_json::json!(edge.as_f64().unwrap() + 1e6);
        }
    }
    let elsewhere = dir.path().join("elsewhere.json");
    std::fs::write(&elsewhere, shifted.to_string()).unwrap();
    let (psi, alerts, log) = replay_psi(&elsewhere, 2_000);
    assert!(psi.iter().all(|p| *p > 1.0), "{psi:?}");
    assert_eq!(alerts, mtml_feature_store::FEATURE_COUNT as u64, "one alert per feature until it comes back: {psi:?}");
    assert!(log.contains("feature drift"), "{log}");

    // A file that is not a distribution is refused by name.
    std::fs::write(&elsewhere, "{\"rows\": 1}").unwrap();
    let config = dir.path().join("drift.toml");
    std::fs::write(&config, format!("[model]\nfeature_distribution = \"{}\"\n", elsewhere.display())).unwrap();
    let output = mtml().args(["replay", "--ticks"]).arg(sample()).arg("--config").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("model.feature_distribution") && stderr.contains("not a feature distribution"), "{stderr}");
}

/// On a terminal, a replay shows how far it has got, on one line rewritten in place; in a pipe
/// (as every other test runs it) it shows nothing of the kind. The terminal is a pseudo-terminal
/// made by util-linux `script`.
#[test]
fn a_replay_on_a_terminal_shows_its_progress() {
    let binary = env!("CARGO_BIN_EXE_mtml");
    let command = format!("{binary} replay --ticks {}", sample().display());
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new("script").args(["-qec", &command, "/dev/null"]).current_dir(dir.path()).env("MTML_LOG", "warn").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let progress: Vec<&str> = text.split('\r').filter(|part| part.contains(" of 18967 ticks (")).collect();
    assert!(!progress.is_empty(), "no progress line: {text}");
    assert!(progress.iter().all(|line| line.trim_start_matches("\u{1b}[2K").starts_with("replay: ")), "{progress:?}");
    assert!(text.contains("ticks    read 18967"), "the summary follows: {text}");
    let piped = mtml().args(["replay", "--ticks"]).arg(sample()).output().unwrap();
    assert!(!String::from_utf8_lossy(&piped.stderr).contains(" of 18967 ticks ("), "no progress in a pipe");
}

/// `mtml backtest` runs the sample without a bridge and trades as the replay does; with `--grid`
/// it runs every combination (on two threads here) and compares them in a table whose rows
/// are the plain backtests of those settings; a setting the configuration does not take is
/// named before anything runs.
#[test]
fn a_backtest_grid_runs_every_combination_and_compares_them() {
    let dir = tempfile::tempdir().unwrap();
    let report = |name: &str| dir.path().join(name);
    let run = |args: &[&str]| {
        let output = mtml().arg("backtest").arg("--ticks").arg(sample()).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let plain = run(&["--report", report("plain.json").to_str().unwrap()]);
    assert!(plain.starts_with("mtml backtest of ") && !plain.contains("  bridge "), "{plain}");
    let table = run(&["--grid", "decision.buy_above=0.53,0.55", "--grid", "replay.commission_per_lot=0,5", "--jobs", "2", "--report", report("grid.json").to_str().unwrap()]);
    let rows: Vec<&str> = table.lines().skip(1).filter(|l| l.starts_with("0.5")).collect();
    assert_eq!(rows.len(), 4, "{table}");
    assert!(table.lines().next().unwrap().starts_with("decision.buy_above  replay.commission_per_lot  orders"), "{table}");
    let grid: serde_json::Value = serde_json::from_slice(&std::fs::read(report("grid.json")).unwrap()).unwrap();
    let plain: serde_json::Value = serde_json::from_slice(&std::fs::read(report("plain.json")).unwrap()).unwrap();
    let runs = grid.as_array().unwrap();
    assert_eq!(runs[0]["settings"], serde_json::json!([["decision.buy_above", "0.53"], ["replay.commission_per_lot", "0"]]));
    // The defaults' row is the plain backtest; commission costs each lot traded.
    assert_eq!(runs[0]["report"]["deals"], plain["deals"]);
    assert_eq!(runs[0]["report"]["figures"], plain["figures"]);
    let lots = runs[1]["report"]["figures"]["lots_traded"].as_f64().unwrap();
    let cost = runs[0]["report"]["figures"]["pnl"].as_f64().unwrap() - runs[1]["report"]["figures"]["pnl"].as_f64().unwrap();
    assert!((cost - 5.0 * lots).abs() < 1e-6, "{cost} for {lots} lots");
    assert_ne!(runs[0]["report"]["deals"], runs[2]["report"]["deals"], "buy_above 0.55 trades otherwise");

    // Several files side by side: one row each, named; each trades as it does alone.
    let gbpusd = dir.path().join("gbpusd_sample.csv.gz");
    std::fs::copy(sample(), &gbpusd).unwrap();
    let output = mtml().arg("backtest").arg("--ticks").arg(sample()).arg(&gbpusd).args(["--jobs", "2", "--report"]).arg(report("files.json")).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.starts_with("ticks ") && table.contains("\ngbpusd_sample.csv.gz "), "{table}");
    let files: serde_json::Value = serde_json::from_slice(&std::fs::read(report("files.json")).unwrap()).unwrap();
    let files = files.as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["report"]["figures"], plain["figures"]);
    assert_eq!(files[1]["report"]["symbols"], serde_json::json!(["GBPUSD"]), "the symbol from the file's name");
    assert_eq!(files[1]["report"]["figures"]["pnl"], plain["figures"]["pnl"]);

    let output = mtml().arg("backtest").arg("--ticks").arg(sample()).args(["--grid", "decision.nonsense=1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("unknown key decision.nonsense"), "{stderr}");
}

/// A backtest streams its file: memory is bounded by what the pipeline keeps (the chain log's
/// last 65 536 chains, bars, features), not by the file. Five and ten days of ticks (the sample
/// repeated a day apart, both past the chain log's bound) peak at about the same memory; holding
/// the file would cost some 10 MB more for the longer one.
#[test]
fn a_backtest_of_a_longer_file_uses_about_the_same_memory() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<mtml_ingestion::FileTick> = mtml_ingestion::TickFileReader::open(sample()).unwrap().map(Result::unwrap).collect();
    let write = |days: i64| {
        let path = dir.path().join(format!("eurusd_{days}days.csv"));
        let mut text = String::from("time_utc_ms,bid,ask\n");
        for day in 0..days {
            for row in &rows {
                text.push_str(&format!("{},{},{}\n", row.time_msc + day * 86_400_000, row.bid, row.ask));
            }
        }
        std::fs::write(&path, text).unwrap();
        path
    };
    let peak = |days: i64| {
        let report = dir.path().join("report.json");
        let output = mtml().args(["backtest", "--ticks"]).arg(write(days)).arg("--report").arg(&report).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(json["ticks_read"].as_i64().unwrap(), rows.len() as i64 * days);
        json["peak_memory_mb"].as_f64().unwrap()
    };
    let (five, ten) = (peak(5), peak(10));
    assert!(ten - five < 3.0, "five days {five} MB, ten days {ten} MB");
}
