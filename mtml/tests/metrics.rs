//! The metrics a real Prometheus scrapes: `mtml run` serves `/metrics`, a Prometheus server of
//! the test's own scrapes it every second while a terminal streams the recorded sample, and the
//! counts read back through Prometheus's query API are the run's; `promtool` accepts the
//! exposition; `/healthz` and `/readyz` answer.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mtml_ingestion::TickFileReader;
use mtml_simulator::{SimSymbol, SimTick, SimulatorConfig, run_simulator};
use mtml_test_support::{PrometheusServer, free_port};
use tokio_util::sync::CancellationToken;

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
    let mut child = KillOnDrop(
        mtml_test_support::command_in_own_dir(env!("CARGO_BIN_EXE_mtml"))
            .args(["run", "--config"])
            .arg(&config)
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
    assert!(line.contains(&format!("metrics on http://{metrics_addr}/metrics")), "{line}");
    let (bridge_addr, _) = mtml_test_support::running_addresses(&line);
    let prometheus = PrometheusServer::start(std::slice::from_ref(&metrics_addr));
    let client = reqwest::Client::new();

    let sample = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/eurusd_fxcm_ticks_2014-05-05_0600-1200.csv.gz");
    let ticks: Vec<SimTick> = TickFileReader::open(sample)
        .unwrap()
        .map(|row| {
            let row = row.unwrap();
            SimTick { symbol: "EURUSDm".into(), time_msc: row.time_msc, bid: row.bid, ask: row.ask }
        })
        .collect();
    let sent = ticks.len();
    let sim_config = SimulatorConfig {
        token: "tok".into(),
        symbols: vec![SimSymbol { name: "EURUSDm".into(), digits: 5 }],
        ..SimulatorConfig::default()
    };
    let stop = CancellationToken::new();
    let stream = tokio::net::TcpStream::connect(&bridge_addr).await.unwrap();
    let sim = tokio::spawn(run_simulator(stream, sim_config, ticks, stop.clone()));

    // Wait until mtml itself says every tick is in, then read what it exposes.
    let metrics_url = format!("http://{metrics_addr}/metrics");
    let start = Instant::now();
    let exposition = loop {
        let text = client.get(&metrics_url).send().await.unwrap().text().await.unwrap();
        if text.contains(&format!("mtml_ticks_ingested_total {sent}\n")) {
            break text;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "not every tick ingested: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let value = |name: &str| -> f64 {
        let line = exposition.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).unwrap_or_else(|| panic!("no {name} in {exposition}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let orders = value("mtml_orders_total{event=\"sent\"}");
    let predictions = value("mtml_predictions_total{role=\"champion\"}");
    assert!(orders > 0.0 && predictions > 0.0, "{exposition}");
    assert_eq!(value("mtml_trading_state{state=\"ACTIVE\"}"), 1.0);
    assert_eq!(value("mtml_stage_latency_seconds_count{stage=\"inference\"}"), predictions, "one inference span per prediction");

    // promtool, Prometheus's own linter, accepts the exposition (names, types, help, units).
    let promtool = std::env::var("MTML_TEST_PROMETHEUS").map_or_else(|_| "promtool".into(), |p| p.replace("prometheus", "promtool"));
    let mut check = Command::new(promtool).args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), exposition.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(checked.status.success(), "promtool check metrics: {}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));

    // The same counts, scraped and stored by a real Prometheus, read back through its API.
    let url = prometheus.url();
    prometheus_value(&client, &url, "mtml_ticks_ingested_total", sent as f64).await;
    prometheus_value(&client, &url, "mtml_orders_total{event=\"sent\"}", orders).await;
    prometheus_value(&client, &url, "sum(mtml_stage_latency_seconds_count{stage=\"inference\"})", predictions).await;
    prometheus_value(&client, &url, "up{job=\"mtml\"}", 1.0).await;

    assert_eq!(client.get(format!("http://{metrics_addr}/healthz")).send().await.unwrap().status(), 200);
    let ready = client.get(format!("http://{metrics_addr}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    stop.cancel();
    sim.await.unwrap().unwrap();
}
