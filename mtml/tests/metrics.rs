//! The metrics a real Prometheus scrapes: `mtml run` serves `/metrics`, a Prometheus server of
//! the test's own scrapes it every second while a terminal streams the recorded sample, and the
//! counts read back through Prometheus's query API are the run's; `promtool` accepts the
//! exposition and the alerting rules; every query of the shipped Grafana dashboard and every
//! shipped alerting rule evaluates on that Prometheus and names only metrics mtml exports;
//! `/healthz` and `/readyz` answer. A fault injected at the broker shows in the metrics, in the
//! chain history and in `mtml chain health`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mtml_test_support::{PrometheusServer, free_port};

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One value of an instant query, once Prometheus has it equal to `expected` (30 s at most).
async fn prometheus_value(client: &reqwest::Client, prometheus: &str, query: &str, expected: f64) -> f64 {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(30) {
        let answer = client.get(format!("{prometheus}/api/v1/query")).query(&[("query", query)]).send().await.unwrap();
        last = answer.text().await.unwrap();
        // {"status":"success","data":{"resultType":"vector","result":[{"metric":{...},"value":[t,"N"]}]}}
        if let Some(value) = last.rsplit("\"value\":[").next().and_then(|v| v.split('"').nth(1)).and_then(|v| v.parse::<f64>().ok())
            && last.contains("\"result\":[{")
            && value == expected
        {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{query}: Prometheus did not reach {expected}; last answer {last}");
}

/// `promtool`, beside the Prometheus the tests use.
fn promtool_path() -> String {
    std::env::var("MTML_TEST_PROMETHEUS").map_or_else(|_| "promtool".into(), |p| p.replace("prometheus", "promtool"))
}

/// The `mtml_...` names an expression refers to.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("mtml_") {
        let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

/// Starts `mtml run` on `config`; returns it, its stderr and its running line.
fn start_run(config: &std::path::Path) -> (KillOnDrop, BufReader<std::process::ChildStderr>, String) {
    let mut child = KillOnDrop(
        mtml_test_support::command_in_own_dir(env!("CARGO_BIN_EXE_mtml"))
            .args(["run", "--config"])
            .arg(config)
            .env("MTML_LOG", "warn")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("mtml running") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "mtml run stopped before it was running");
    }
    (child, stderr, line)
}

/// The value of the sample `name` (with its labels) in an exposition.
fn sample_value(exposition: &str, name: &str) -> f64 {
    let line = exposition.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).unwrap_or_else(|| panic!("no {name} in {exposition}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// The exposition once mtml has ingested `sent` ticks.
async fn exposition_after(client: &reqwest::Client, metrics_addr: &str, sent: usize) -> String {
    let start = Instant::now();
    loop {
        let text = client.get(format!("http://{metrics_addr}/metrics")).send().await.unwrap().text().await.unwrap();
        if text.contains(&format!("mtml_ticks_ingested_total {sent}\n")) {
            return text;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "not every tick ingested: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_counts_of_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("mtml.toml");
    std::fs::write(
        &config,
        format!(
            "[bridge]\nlisten = \"127.0.0.1:0\"\ntoken = \"tok\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"{metrics_addr}\"\n[journal]\nurl = \"sqlite::memory:\"\n[features]\nhistory = \"none\"\n"
        ),
    )
    .unwrap();
    let (_child, _stderr, line) = start_run(&config);
    assert!(line.contains(&format!("metrics on http://{metrics_addr}/metrics")), "{line}");
    let (bridge_addr, _) = mtml_test_support::running_addresses(&line);
    let monitoring = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/monitoring");
    let rules = monitoring.join("alerts.yml");
    let prometheus = PrometheusServer::start_with_rules(std::slice::from_ref(&metrics_addr), Some(&rules));
    let client = reqwest::Client::new();

    let common::Streaming { terminal: sim, stop, sent, .. } = common::stream_sample(&bridge_addr, "tok").await;

    // Wait until mtml itself says every tick is in, then read what it exposes.
    let exposition = exposition_after(&client, &metrics_addr, sent).await;
    let value = |name: &str| sample_value(&exposition, name);
    let orders = value("mtml_orders_total{event=\"sent\"}");
    let predictions = value("mtml_predictions_total{role=\"champion\"}");
    assert!(orders > 0.0 && predictions > 0.0, "{exposition}");
    assert_eq!(value("mtml_trading_state{state=\"ACTIVE\"}"), 1.0);
    assert_eq!(value("mtml_stage_latency_seconds_count{stage=\"inference\"}"), predictions, "one inference span per prediction");
    // Per model version: the embedded model made every prediction, in measurable time.
    let model = exposition.lines().find(|l| l.starts_with("mtml_model_predictions_total{model=\"fx-direction:")).unwrap_or_else(|| panic!("{exposition}"));
    assert_eq!(model.rsplit(' ').next().unwrap().parse::<f64>().unwrap(), predictions, "{model}");
    let seconds = exposition.lines().find(|l| l.starts_with("mtml_model_inference_seconds_total{")).unwrap();
    assert!(seconds.rsplit(' ').next().unwrap().parse::<f64>().unwrap() > 0.0, "{seconds}");
    // Money: equity is the start plus realised and unrealised PnL; drawdown is never negative.
    let start_equity = value("mtml_equity") - value("mtml_realized_pnl") - value("mtml_unrealized_pnl");
    assert!((start_equity - 10_000.0).abs() < 1e-6, "{start_equity}: {exposition}");
    assert!(value("mtml_drawdown") >= 0.0);
    assert!(value("mtml_average_slippage{symbol=\"EURUSD\"}").abs() < 0.01, "slippage in price units: {exposition}");
    assert!(value("mtml_inbox_depth") >= 0.0);

    // promtool, Prometheus's own linter, accepts the exposition (names, types, help, units).
    let mut check = Command::new(promtool_path()).args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), exposition.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(checked.status.success(), "promtool check metrics: {}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));

    // The same counts, scraped and stored by a real Prometheus, read back through its API.
    let url = prometheus.url();
    prometheus_value(&client, &url, "mtml_ticks_ingested_total", sent as f64).await;
    prometheus_value(&client, &url, "mtml_orders_total{event=\"sent\"}", orders).await;
    prometheus_value(&client, &url, "sum(mtml_stage_latency_seconds_count{stage=\"inference\"})", predictions).await;
    prometheus_value(&client, &url, "up{job=\"mtml\"}", 1.0).await;

    // The shipped dashboard and alerting rules: only metrics mtml exports, and each evaluates.
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(monitoring.join("grafana-dashboard.json")).unwrap()).unwrap();
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_owned()))
        .collect();
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let alert_exprs: Vec<String> = rules_text.lines().filter_map(|l| l.trim().strip_prefix("expr: ")).map(str::to_owned).collect();
    assert!(queries.len() >= 20 && alert_exprs.len() >= 8, "{} queries, {} rules", queries.len(), alert_exprs.len());
    for expr in queries.iter().chain(&alert_exprs) {
        for name in metric_names(expr) {
            let family = ["_bucket", "_sum", "_count"].iter().fold(name.as_str(), |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
            assert!(mtml_metrics::FAMILIES.iter().any(|f| f.name == family), "{expr}: {name} is not a metric mtml exports");
        }
        let answer = client.get(format!("{url}/api/v1/query")).query(&[("query", expr.as_str())]).send().await.unwrap();
        let status = answer.status();
        let body = answer.text().await.unwrap();
        assert!(status.is_success() && body.contains("\"status\":\"success\""), "{expr}: {body}");
    }
    let checked = Command::new(promtool_path()).args(["check", "rules"]).arg(&rules).output().unwrap();
    assert!(checked.status.success(), "promtool check rules: {}", String::from_utf8_lossy(&checked.stdout));
    // Prometheus evaluated every rule without error (a rule's health turns "ok" once evaluated).
    let start = Instant::now();
    loop {
        let body = client.get(format!("{url}/api/v1/rules")).send().await.unwrap().text().await.unwrap();
        let rules_seen = body.matches("\"health\":").count();
        if rules_seen == alert_exprs.len() && body.matches("\"health\":\"ok\"").count() == rules_seen {
            break;
        }
        assert!(!body.contains("\"health\":\"err\""), "a rule failed to evaluate: {body}");
        assert!(start.elapsed() < Duration::from_secs(30), "rules not all evaluated: {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    assert_eq!(client.get(format!("http://{metrics_addr}/healthz")).send().await.unwrap().status(), 200);
    let ready = client.get(format!("http://{metrics_addr}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ready\npipeline: answering, model loaded, stores up\nterminals: 1 connected\n");
    stop.cancel();
    sim.await.unwrap().unwrap();
}

/// A broker that rejects every order (a fault injected into the simulated terminal): the
/// rejections are counted in the metrics, each chain ends failed at the fill in the history,
/// and `mtml chain health` says where chains went wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_broker_fault_shows_in_the_chain_the_health_and_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("mtml.toml");
    std::fs::write(
        &config,
        format!(
            "[bridge]\nlisten = \"127.0.0.1:0\"\ntoken = \"tok\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"{metrics_addr}\"\n\
             [journal]\nurl = \"sqlite://{}?mode=rwc\"\nchain_sample = 0\n[features]\nhistory = \"none\"\n",
            dir.path().join("journal.db").display()
        ),
    )
    .unwrap();
    let (mut child, mut stderr, line) = start_run(&config);
    let (bridge_addr, _) = mtml_test_support::running_addresses(&line);
    let client = reqwest::Client::new();
    let common::Streaming { terminal, stop, sent, .. } =
        common::stream_sample_with_fault(&bridge_addr, "tok", mtml_simulator::Fault::RejectOrders).await;
    let exposition = exposition_after(&client, &metrics_addr, sent).await;
    // The last rejection may still be on its way back: wait for sent == rejected.
    let start = Instant::now();
    let (sent_orders, rejected) = loop {
        let text = client.get(format!("http://{metrics_addr}/metrics")).send().await.unwrap().text().await.unwrap();
        let (s, r) = (sample_value(&text, "mtml_orders_total{event=\"sent\"}"), sample_value(&text, "mtml_orders_total{event=\"rejected\"}"));
        if s == r || start.elapsed() > Duration::from_secs(30) {
            break (s, r);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(sent_orders > 0.0 && rejected == sent_orders, "every order rejected: {sent_orders} sent, {rejected} rejected; {exposition}");
    assert_eq!(sample_value(&exposition, "mtml_orders_total{event=\"filled\"}"), 0.0);
    stop.cancel();
    terminal.await.unwrap().unwrap();
    assert!(Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(child.0.wait().unwrap().success(), "{rest}");

    let cli = |args: &[&str]| {
        let output = mtml_test_support::command_in_own_dir(env!("CARGO_BIN_EXE_mtml")).args(args).arg("--config").arg(&config).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let errors = cli(&["chain", "recent", "--errors", "--limit", "100000"]);
    assert!(errors.ends_with(&format!("{rejected} chains\n")), "one failed chain per rejected order: {errors}");
    let id = errors.lines().nth(1).unwrap().split_whitespace().next().unwrap();
    let shown = cli(&["chain", "show", id]);
    let last = shown.lines().last().unwrap();
    assert!(last.starts_with("  fill") && last.ends_with("error: broker_rejected"), "the chain fails at the fill: {shown}");
    assert!(shown.contains("  bridge_send"), "the order went out before the broker refused it: {shown}");
    let health = cli(&["chain", "health"]);
    assert!(health.contains(&format!("went wrong: {rejected} chain(s) at fill: error: broker_rejected")), "{health}");
    assert!(health.lines().any(|l| l.starts_with("  fill") && l.ends_with("100.0%")), "every fill span an error: {health}");
}
