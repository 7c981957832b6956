//! What several of the binary's tests do: a simulated terminal streaming the recorded sample to a
//! running `mtml run`.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use mtml_ingestion::TickFileReader;
use mtml_simulator::{Fault, SimSymbol, SimTick, SimulatorConfig, SimulatorError, SimulatorReport, run_simulator_with_fault};
use tokio_util::sync::CancellationToken;

/// The recorded sample (18 967 EURUSD ticks).
pub fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/eurusd_fxcm_ticks_2014-05-05_0600-1200.csv.gz")
}

/// A terminal streaming the sample as `EURUSDm`.
pub struct Streaming {
    /// The simulator; ends once `stop` is cancelled.
    pub terminal: tokio::task::JoinHandle<Result<SimulatorReport, SimulatorError>>,
    /// Ends the terminal's connection.
    pub stop: CancellationToken,
    /// Ticks it sends.
    pub sent: usize,
    /// Time of the last one, UTC epoch ms.
    pub last_time: i64,
}

/// Connects a simulated terminal presenting `token` to the bridge at `bridge_addr` and streams
/// the sample.
pub async fn stream_sample(bridge_addr: &str, token: &str) -> Streaming {
    stream_sample_with_fault(bridge_addr, token, Fault::None).await
}

/// [`stream_sample`] from a terminal with `fault` injected.
pub async fn stream_sample_with_fault(bridge_addr: &str, token: &str, fault: Fault) -> Streaming {
    stream_sample_at(bridge_addr, token, fault, None).await
}

/// [`stream_sample_with_fault`] at most `ticks_per_second`, as a live feed sends them.
pub async fn stream_sample_at(bridge_addr: &str, token: &str, fault: Fault, ticks_per_second: Option<u32>) -> Streaming {
    let stream = tokio::net::TcpStream::connect(bridge_addr).await.unwrap();
    stream_sample_over(stream, token, fault, ticks_per_second)
}

/// [`stream_sample_at`] over a connection already made (a TLS one, say).
pub fn stream_sample_over<S>(stream: S, token: &str, fault: Fault, ticks_per_second: Option<u32>) -> Streaming
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let ticks: Vec<SimTick> = TickFileReader::open(sample())
        .unwrap()
        .map(|row| {
            let row = row.unwrap();
            SimTick { symbol: "EURUSDm".into(), time_msc: row.time_msc, bid: row.bid, ask: row.ask }
        })
        .collect();
    let (sent, last_time) = (ticks.len(), ticks.last().unwrap().time_msc);
    let config = SimulatorConfig {
        token: token.into(),
        symbols: vec![SimSymbol { name: "EURUSDm".into(), digits: 5 }],
        ticks_per_second,
        ..SimulatorConfig::default()
    };
    let stop = CancellationToken::new();
    let terminal = tokio::spawn(run_simulator_with_fault(stream, config, ticks, fault, stop.clone()));
    Streaming { terminal, stop, sent, last_time }
}
