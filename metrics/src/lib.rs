//! mtml's metrics: every family named and described once ([`FAMILIES`]), written in the
//! Prometheus text exposition format (0.0.4) by [`Exposition`], and served with the health
//! endpoints by [`serve`]:
//! - `GET /metrics`: the exposition, gathered when asked (nothing is kept between scrapes);
//! - `GET /healthz`: 200 while the process serves at all;
//! - `GET /readyz`: 200 when ready, with what it found (a degraded part named), 503 with the
//!   reason otherwise.
//!
//! With a TLS acceptor the same endpoints are served over HTTPS only; each handshake runs on its
//! own task with a time limit, so a slow or plain-text client holds up nobody else.
//!
//! What the numbers are is the composition crate's business (it reads the pipeline, the bridge,
//! the stores and the chain log); this crate knows names, units, types and the format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (names end in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted in cumulative buckets, with their sum and count.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A metric family: its name, what it measures (in base units), and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Prometheus name.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Kind.
    pub kind: Kind,
}

const fn family(name: &'static str, kind: Kind, help: &'static str) -> Family {
    Family { name, help, kind }
}

/// Every metric mtml exports, in exposition order. Names follow Prometheus conventions: an
/// `mtml_` prefix, base units (`_seconds`), `_total` on counters.
pub const FAMILIES: &[Family] = &[
    family("mtml_ticks_ingested_total", Kind::Counter, "Ticks the pipeline accepted."),
    family("mtml_ticks_refused_total", Kind::Counter, "Ticks the pipeline refused, by reason."),
    family("mtml_bars_total", Kind::Counter, "M1 bars closed."),
    family("mtml_feature_vectors_total", Kind::Counter, "Feature vectors computed."),
    family("mtml_predictions_total", Kind::Counter, "Model predictions, by role (champion, challenger)."),
    family("mtml_inference_errors_total", Kind::Counter, "Predictions that failed."),
    family("mtml_model_predictions_total", Kind::Counter, "Predictions in the pipeline, by model version (name:version)."),
    family("mtml_model_inference_errors_total", Kind::Counter, "Predictions that failed in the pipeline, by model version."),
    family("mtml_model_inference_seconds_total", Kind::Counter, "Time spent predicting in the pipeline, by model version."),
    family("mtml_rollout_agreement", Kind::Gauge, "During a rollout: share of predictions where champion and challenger agree, by what (class, signal)."),
    family("mtml_rollout_probability_psi", Kind::Gauge, "During a rollout: population stability index of the challenger's probabilities against the champion's."),
    family("mtml_model_hit_rate", Kind::Gauge, "During a rollout: share of resolved signals the mid followed, by model version."),
    family("mtml_feature_psi", Kind::Gauge, "Population stability index of a live feature against the model's training distribution, by feature."),
    family("mtml_feature_drift_alerts_total", Kind::Counter, "Times a feature's PSI went above the drift threshold."),
    family("mtml_inbox_depth", Kind::Gauge, "Ticks waiting in the pipeline's inbox."),
    family("mtml_target_changes_total", Kind::Counter, "Decisions that changed a symbol's target position."),
    family("mtml_risk_refusals_total", Kind::Counter, "Orders risk refused, by reason."),
    family("mtml_orders_total", Kind::Counter, "Order events seen by execution, by event (sent, acked, filled, rejected, outcome_unknown)."),
    family("mtml_filled_lots_total", Kind::Counter, "Lots filled."),
    family("mtml_average_slippage", Kind::Gauge, "Average slippage of fills against the decision price, by symbol, in price units; positive is worse than decided."),
    family("mtml_reconciliation_differences_total", Kind::Counter, "Positions found different from a terminal's and corrected."),
    family("mtml_orders_in_flight", Kind::Gauge, "Orders awaiting their outcome."),
    family("mtml_trading_state", Kind::Gauge, "1 for the trading state in force (ACTIVE, REDUCING, HALTED), 0 for the others."),
    family("mtml_equity", Kind::Gauge, "Equity: starting equity plus realised and unrealised PnL, quote currency."),
    family("mtml_realized_pnl", Kind::Gauge, "Realised PnL over every symbol, quote currency."),
    family("mtml_unrealized_pnl", Kind::Gauge, "Open positions marked at the last mids, quote currency."),
    family("mtml_drawdown", Kind::Gauge, "Equity below its high, quote currency."),
    family("mtml_position_lots", Kind::Gauge, "Net position by symbol, signed lots."),
    family("mtml_terminals_connected", Kind::Gauge, "Terminals streaming to the bridge now."),
    family("mtml_terminal_connections_total", Kind::Counter, "Terminal connections accepted by the bridge."),
    family("mtml_terminal_ticks_total", Kind::Counter, "Ticks the bridge received from terminals."),
    family("mtml_sequence_gaps_total", Kind::Counter, "Sequence gaps in terminals' messages."),
    family("mtml_ticks_dropped_total", Kind::Counter, "Ticks the bridge dropped under the drop-newest backpressure setting."),
    family("mtml_protocol_errors_total", Kind::Counter, "Connections closed for a protocol error."),
    family("mtml_terminal_refusals_total", Kind::Counter, "Terminal connections refused, by reason: refused hellos (token, version), connections over bridge.max_connections, hellos delayed after repeated wrong tokens, orders over bridge.max_orders_in_flight."),
    family("mtml_store_write_failures_total", Kind::Counter, "Feature store writes that failed (and are retried), by store."),
    family("mtml_store_down", Kind::Gauge, "1 while a feature store is down, by store."),
    family("mtml_history_backlog_points", Kind::Gauge, "History points not yet written (memory and write-ahead file)."),
    family("mtml_otlp_spans_exported_total", Kind::Counter, "Chain spans an OpenTelemetry collector accepted."),
    family("mtml_otlp_spans_dropped_total", Kind::Counter, "Chain spans not exported (queue full, collector unreachable too long)."),
    family("mtml_otlp_export_failures_total", Kind::Counter, "OTLP export requests that failed (retried)."),
    family("mtml_auth_refusals_total", Kind::Counter, "Calls refused for want of a valid token of the role needed, by reason."),
    family("mtml_stage_latency_seconds", Kind::Histogram, "Time a stage of a tick's chain took, by stage."),
    family("mtml_tick_to_order_seconds", Kind::Histogram, "Time from the bridge reading a tick to writing the order it caused."),
];

/// Bucket bounds of the latency histograms, seconds: 1 µs to 1 s.
pub const LATENCY_BUCKETS_SECONDS: [f64; 13] =
    [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 1e-2, 1e-1, 1.0];

/// One histogram's observations: cumulative counts at each bound (seconds), the count and sum.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    /// (upper bound in seconds, observations at most that).
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Their sum, seconds.
    pub sum: f64,
}

/// Samples gathered for one scrape, written out family by family in [`FAMILIES`] order.
#[derive(Debug, Default)]
pub struct Exposition {
    lines: BTreeMap<usize, String>,
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels_text(labels: &[(&str, &str)], extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{value}")
    }
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lines of family `name`, if it is one of [`FAMILIES`] and one of `kinds`.
    fn family(&mut self, name: &str, kinds: &[Kind]) -> Option<&mut String> {
        let Some(index) = FAMILIES.iter().position(|f| f.name == name && kinds.contains(&f.kind)) else {
            tracing::error!(metric = name, ?kinds, "not such a family of mtml_metrics::FAMILIES; sample dropped");
            return None;
        };
        Some(self.lines.entry(index).or_default())
    }

    /// A counter or gauge sample of family `name`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        if let Some(lines) = self.family(name, &[Kind::Counter, Kind::Gauge]) {
            let _ = writeln!(lines, "{name}{} {}", labels_text(labels, None), number(value));
        }
        self
    }

    /// The observations of histogram family `name`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], sample: &HistogramSample) -> &mut Self {
        if let Some(lines) = self.family(name, &[Kind::Histogram]) {
            for (bound, count) in &sample.buckets {
                let _ = writeln!(lines, "{name}_bucket{} {count}", labels_text(labels, Some(("le", number(*bound)))));
            }
            let _ = writeln!(lines, "{name}_bucket{} {}", labels_text(labels, Some(("le", "+Inf".into()))), sample.count);
            let _ = writeln!(lines, "{name}_sum{} {}", labels_text(labels, None), number(sample.sum));
            let _ = writeln!(lines, "{name}_count{} {}", labels_text(labels, None), sample.count);
        }
        self
    }

    /// The exposition text: each family with samples, its help and type first.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (index, lines) in &self.lines {
            let family = FAMILIES[*index];
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.name());
            out.push_str(lines);
        }
        out
    }
}

/// A future of the exposition text.
pub type Gather = Pin<Box<dyn Future<Output = String> + Send>>;
/// A future of readiness: `Ok(())`, or why not.
pub type Ready = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// What the endpoints answer from, provided by whoever composes the process.
#[derive(Clone)]
pub struct Endpoints {
    /// The metrics of this moment.
    pub gather: Arc<dyn Fn() -> Gather + Send + Sync>,
    /// Whether the process is ready to serve.
    pub ready: Arc<dyn Fn() -> Ready + Send + Sync>,
    /// Who may read `/metrics` (the read role); `/healthz` and `/readyz` are open to probes.
    pub guard: Arc<mtml_auth::Guard>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` (over TLS with `tls`) until
/// `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    endpoints: Endpoints,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    use axum::response::IntoResponse;
    let gather = Arc::clone(&endpoints.gather);
    let ready = Arc::clone(&endpoints.ready);
    let guard = Arc::clone(&endpoints.guard);
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| {
                let gather = Arc::clone(&gather);
                let admitted = guard.admit("/metrics", mtml_auth::Role::Read, headers.get(header::AUTHORIZATION));
                async move {
                    match admitted {
                        Ok(_) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], gather().await).into_response(),
                        Err(refusal) => (refusal.http_status(), format!("{refusal}\n")).into_response(),
                    }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = Arc::clone(&ready);
                async move {
                    match ready().await {
                        Ok(found) => (StatusCode::OK, format!("ready\n{found}")),
                        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
                    }
                }
            }),
        );
    match tls {
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
        Some(acceptor) => axum::serve(TlsListener::new(listener, acceptor)?, app).with_graceful_shutdown(shutdown).await,
    }
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Connections that completed a TLS handshake, for `axum::serve`. A task accepts TCP
/// connections and runs each handshake on a task of its own; the failures (plain text, a client
/// that does not trust the certificate, a stalled one) are logged and go no further.
struct TlsListener {
    handshaken: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(listener: tokio::net::TcpListener, tls: tokio_rustls::TlsAcceptor) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (sender, handshaken) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors and the like: wait instead of spinning.
                        tracing::warn!(%error, "metrics endpoint: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (tls, sender) = (tls.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_WITHIN, tls.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((stream, peer)).await;
                        }
                        Ok(Err(error)) => tracing::info!(%peer, %error, "metrics endpoint: TLS handshake failed"),
                        Err(_) => tracing::info!(%peer, "metrics endpoint: TLS handshake not finished in time"),
                    }
                });
            }
        });
        Ok(Self { handshaken, local, acceptor })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(accepted) => accepted,
            // The accepting task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_prometheus_conventions() {
        for family in FAMILIES {
            assert!(family.name.starts_with("mtml_"), "{}", family.name);
            assert_eq!(family.kind == Kind::Counter, family.name.ends_with("_total"), "{}", family.name);
            assert!(family.help.ends_with('.'), "{}", family.name);
            assert_eq!(FAMILIES.iter().filter(|f| f.name == family.name).count(), 1, "{} defined once", family.name);
        }
    }

    #[test]
    fn the_text_format_groups_each_family_under_its_help_and_type() {
        let mut e = Exposition::new();
        e.sample("mtml_ticks_refused_total", &[("reason", "wide_spread")], 2.0);
        e.sample("mtml_ticks_ingested_total", &[], 10.0);
        e.sample("mtml_ticks_refused_total", &[("reason", "say \"hi\"")], 1.0);
        e.histogram(
            "mtml_tick_to_order_seconds",
            &[],
            &HistogramSample { buckets: vec![(0.001, 3), (0.01, 4)], count: 5, sum: 0.5 },
        );
        e.sample("mtml_not_a_metric", &[], 1.0);
        let expected = "\
# HELP mtml_ticks_ingested_total Ticks the pipeline accepted.
# TYPE mtml_ticks_ingested_total counter
mtml_ticks_ingested_total 10
# HELP mtml_ticks_refused_total Ticks the pipeline refused, by reason.
# TYPE mtml_ticks_refused_total counter
mtml_ticks_refused_total{reason=\"wide_spread\"} 2
mtml_ticks_refused_total{reason=\"say \\\"hi\\\"\"} 1
# HELP mtml_tick_to_order_seconds Time from the bridge reading a tick to writing the order it caused.
# TYPE mtml_tick_to_order_seconds histogram
mtml_tick_to_order_seconds_bucket{le=\"0.001\"} 3
mtml_tick_to_order_seconds_bucket{le=\"0.01\"} 4
mtml_tick_to_order_seconds_bucket{le=\"+Inf\"} 5
mtml_tick_to_order_seconds_sum 0.5
mtml_tick_to_order_seconds_count 5
";
        assert_eq!(e.text(), expected);
    }

    #[tokio::test]
    async fn the_endpoints_answer_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&ready);
        let endpoints = Endpoints {
            gather: Arc::new(|| Box::pin(async { Exposition::new().sample("mtml_bars_total", &[], 7.0).text() })),
            ready: Arc::new(move || {
                let flag = Arc::clone(&flag);
                Box::pin(async move {
                    if flag.load(std::sync::atomic::Ordering::Relaxed) { Ok("terminals: 1 connected\n".into()) } else { Err("no model loaded".into()) }
                })
            }),
            guard: {
                let mut tokens = mtml_auth::Tokens::default();
                tokens.add(mtml_auth::Role::Read, "prometheus:read-token-0123456789").unwrap();
                mtml_auth::Guard::new(tokens)
            },
        };
        let guard = Arc::clone(&endpoints.guard);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, None, endpoints, async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        // /metrics needs the read role; the probes are open.
        let refused = client.get(format!("http://{addr}/metrics")).send().await.unwrap();
        assert_eq!(refused.status(), 401);
        assert!(refused.text().await.unwrap().contains("needs the read role"));
        let wrong = client.get(format!("http://{addr}/metrics")).bearer_auth("not-a-token").send().await.unwrap();
        assert_eq!(wrong.status(), 401);
        let counted: Vec<_> = guard.refusals().snapshot().into_iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(counted, [("no_token", 1), ("unknown_token", 1)]);
        let metrics = client.get(format!("http://{addr}/metrics")).bearer_auth("read-token-0123456789").send().await.unwrap();
        assert_eq!(metrics.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
        assert!(metrics.text().await.unwrap().contains("mtml_bars_total 7\n"));
        assert_eq!(client.get(format!("http://{addr}/healthz")).send().await.unwrap().status(), 200);
        let not_ready = client.get(format!("http://{addr}/readyz")).send().await.unwrap();
        assert_eq!(not_ready.status(), 503);
        assert_eq!(not_ready.text().await.unwrap(), "not ready: no model loaded\n");
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        let ready = client.get(format!("http://{addr}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200);
        assert_eq!(ready.text().await.unwrap(), "ready\nterminals: 1 connected\n");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
