//! Replays the sample with Telegram off, on (a local Bot API server answering normally), during
//! a 429 storm and during a 502 outage, in turns, and prints each mode's median ticks per
//! second and its ratio to off (docs/benchmarks.md, "Telegram on and off").
//!
//! `cargo run --release --example telegram_storm -- target/release/mtml data/FILE.csv.gz 5`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use mtml_test_support::bot_api::{BotApi, Fault};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (binary, ticks, runs) = (&args[1], &args[2], args.get(3).map_or(5, |n| n.parse().unwrap()));
    let api = BotApi::start("1:storm").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("on.toml");
    std::fs::write(&config, format!("[telegram]\ntoken = \"1:storm\"\napi_url = \"{}\"\nchats = [1]\nnotify = {{ signal = \"on\" }}\n", api.url)).unwrap();
    let modes = ["off", "on", "429 storm", "502 outage"];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for run in 0..runs {
        // Each round starts with another mode, so no mode always follows the same one.
        for m in (0..modes.len()).map(|i| (i + run) % modes.len()) {
            let mode = &modes[m];
            match *mode {
                "429 storm" => api.set_fault(Fault::TooManyRequests(5)),
                "502 outage" => api.set_fault(Fault::BadGateway),
                _ => api.clear_fault(),
            }
            let mut command = std::process::Command::new(binary);
            command.args(["replay", "--ticks", ticks]).env("MTML_LOG", "error");
            if *mode != "off" {
                command.arg("--config").arg(&config);
            }
            let started = Instant::now();
            let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
            let seconds = started.elapsed().as_secs_f64();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            let stdout = String::from_utf8_lossy(&output.stdout);
            // The replay's own rate (first tick sent to last processed), besides the process's wall time.
            let rate: f64 = (stdout.lines())
                .find_map(|l| l.trim_start().strip_prefix("wall time")?.split(", ").nth(1)?.strip_suffix(" ticks/s")?.parse().ok())
                .unwrap_or(0.0);
            rates[m].push(rate);
            eprintln!("{mode}: {rate:.0} ticks/s, process {seconds:.2} s");
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let off = median(&mut rates[0].clone());
    for (m, mode) in modes.iter().enumerate() {
        let rate = median(&mut rates[m]);
        println!("{mode:<11} {rate:>9.0} ticks/s  ratio to off {:.3}", rate / off);
    }
    println!("sent {} messages, {} answered with the fault", api.sent().len(), api.faulted());
}
