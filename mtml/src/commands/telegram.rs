//! The Telegram console's operations on a running mtml: commands answered through the instance's gRPC API (trading state, desk, models) and its
//! journal (orders, PnL, chains, the audit log), the same calls and tables as the command line.
//! The bot runs inside `mtml run` and `mtml pipeline`, or on its own against a remote instance
//! (`mtml telegram run --server`).

use std::fmt::Write as _;

use mtml_journal::{AuditRow, Journal};
use mtml_proto::v1;
use mtml_proto::v1::admin_client::AdminClient;
use mtml_telegram::{AuditEntry, Command};

use crate::client::{ServerUrl, status_error};
use crate::commands::trading_state::state_name;
use crate::commands::models::{admin_client, list_table, parse_version_spec, rollout_text};

/// The console's operations on the instance at `server`, with its journal.
pub struct Operations {
    /// The instance's gRPC API.
    pub server: ServerUrl,
    /// Its journal.
    pub journal: Journal,
}

fn now_ms() -> i64 {
    mtml_core::clock::Clock::now_ms(&mtml_core::clock::SystemClock)
}

impl Operations {
    /// The console of `app`, on its own gRPC API and journal; `None` when it serves no gRPC.
    pub fn of(app: &crate::App) -> Option<std::sync::Arc<Self>> {
        Some(std::sync::Arc::new(Self { server: app.loopback()?.clone(), journal: app.journal().clone() }))
    }

    async fn admin(&self) -> anyhow::Result<AdminClient<mtml_auth::AuthChannel>> {
        Ok(AdminClient::new(self.server.connect().await?))
    }

    async fn desk(&self) -> anyhow::Result<v1::DeskReply> {
        Ok(self.admin().await?.get_desk(v1::GetDeskRequest {}).await.map_err(status_error)?.into_inner())
    }

    async fn answer_or_error(&self, command: &Command, actor: &str) -> anyhow::Result<String> {
        let mut out = String::new();
        match command {
            Command::Status => {
                let d = self.desk().await?;
                let _ = write!(
                    out,
                    "Trading {}\nequity {:.2} · balance {:.2}\nPnL realised {:+.2} · unrealised {:+.2}\ndrawdown {:.2}\n{} open positions · {} orders in flight · {} ticks",
                    state_name(d.state),
                    d.equity,
                    d.balance,
                    d.realized_pnl,
                    d.unrealized_pnl,
                    d.drawdown,
                    d.positions.iter().filter(|p| p.lots != 0.0).count(),
                    d.orders_in_flight,
                    d.ticks_seen
                );
            }
            Command::Balance => {
                let d = self.desk().await?;
                let _ = write!(out, "equity {:.2}\nbalance {:.2}\nunrealised {:+.2}\ndrawdown {:.2}", d.equity, d.balance, d.unrealized_pnl, d.drawdown);
            }
            Command::Positions => {
                for p in self.desk().await?.positions.iter().filter(|p| p.lots != 0.0) {
                    let _ = writeln!(out, "{} {:+.2} @ {:.5} · unrealised {:+.2}", p.symbol, p.lots, p.average_price, p.unrealized_pnl);
                }
                if out.is_empty() {
                    out.push_str("No open positions.");
                }
            }
            Command::Orders => out = crate::commands::journal::orders(&self.journal, true).await?,
            Command::Pnl(period) => {
                let s = self.journal.performance(period.since_ms(now_ms()), String::new()).await?;
                let _ = write!(out, "PnL ({}): {:+.2} over {} fills", period.name(), s.pnl, s.trades);
                if let Some(hit_rate) = s.hit_rate {
                    let _ = write!(out, ", hit rate {:.0}%", hit_rate * 100.0);
                }
                let _ = write!(out, "\nmax drawdown {:.2}", s.max_drawdown);
            }
            Command::Halt | Command::Reduce | Command::Resume => {
                let state = match command {
                    Command::Halt => v1::TradingState::Halted,
                    Command::Reduce => v1::TradingState::Reducing,
                    _ => v1::TradingState::Active,
                };
                let now = crate::commands::trading_state::set_trading_state(&self.server, state, format!("{} by {actor}", command.text())).await?;
                let _ = write!(out, "Trading state is now {now}.");
            }
            Command::Close(symbol) => {
                let request = v1::ClosePositionsRequest { symbol: symbol.clone().unwrap_or_default() };
                let closed = self.admin().await?.close_positions(request).await.map_err(status_error)?.into_inner().closed;
                for c in &closed {
                    let _ = match c.refused.is_empty() {
                        true => writeln!(out, "{}: closing order {:+.2} sent ({})", c.symbol, c.lots, c.client_order_id),
                        false => writeln!(out, "{}: not closed, {}", c.symbol, c.refused),
                    };
                }
                if closed.is_empty() {
                    out.push_str("No open positions to close.");
                }
            }
            Command::Models => {
                let list = admin_client(&self.server).await?.list_models(v1::ListModelsRequest {}).await.map_err(status_error)?;
                out = list_table(&list.into_inner().models.iter().map(crate::convert::row_from_proto).collect::<Vec<_>>());
            }
            Command::Promote(spec) => {
                let (name, version) = parse_version_spec(spec)?;
                let request = v1::PromoteRequest { name: name.to_owned(), version, actor: actor.to_owned() };
                out = rollout_text(&admin_client(&self.server).await?.promote(request).await.map_err(status_error)?.into_inner());
            }
            Command::Rollback(name) => {
                let request = v1::RollbackRequest { name: name.clone(), actor: actor.to_owned() };
                out = rollout_text(&admin_client(&self.server).await?.rollback(request).await.map_err(status_error)?.into_inner());
            }
            Command::Compare(name) => {
                let request = v1::CompareModelsRequest { name: name.clone() };
                let report = admin_client(&self.server).await?.compare_models(request).await.map_err(status_error)?.into_inner();
                out = if report.active { report.report_text } else { format!("No challenger of {name} is on trial.") };
            }
            Command::Trace(chain) => out = crate::commands::chains::show(&self.journal, chain).await?,
            Command::Health | Command::Latency => {
                let report = mtml_journal::chain_report::health(&self.journal.spans_since(now_ms() - 3_600_000).await?);
                // /latency is the per-stage table; /health all of it.
                out = match command {
                    Command::Latency => report.lines().take_while(|l| !l.starts_with("went wrong") && !l.starts_with("propagated") && !l.starts_with("bottleneck")).collect::<Vec<_>>().join("\n"),
                    _ => report,
                };
            }
            Command::Chart(_) | Command::Notify(_) | Command::Help => anyhow::bail!("{} is answered by the bot itself", command.text()),
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl mtml_telegram::Operations for Operations {
    async fn answer(&self, command: &Command, actor: &str) -> Result<String, String> {
        self.answer_or_error(command, actor).await.map_err(|error| format!("{error:#}"))
    }

    async fn summary(&self, since_ms: i64, title: String) -> Result<mtml_core::Summary, String> {
        self.journal.performance(since_ms, title).await.map_err(|error| error.to_string())
    }

    async fn audit(&self, entry: AuditEntry) {
        let row = AuditRow { at_ms: now_ms(), actor: entry.actor, action: entry.action, outcome: entry.outcome, chain_id: String::new() };
        if let Err(error) = self.journal.audit(&row).await {
            tracing::error!(%error, action = %row.action, "audit log not written");
        }
    }
}
