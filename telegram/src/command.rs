//! The bot's commands: parsed from a message's text, each knowing whether it reads or acts and
//! whether it asks for confirmation first.

use std::collections::HashSet;

use mtml_core::NoticeKind;

use crate::settings::{Level, unknown_kind};

/// A period for `/pnl` and `/chart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Since the start of the UTC day.
    Day,
    /// The last 7 days.
    Week,
    /// The last 30 days.
    Month,
}

impl Period {
    /// Its length, ms (a day counts from midnight UTC, see [`Period::since_ms`]).
    pub fn since_ms(self, now_ms: i64) -> i64 {
        const DAY: i64 = 86_400_000;
        match self {
            Self::Day => now_ms - now_ms.rem_euclid(DAY),
            Self::Week => now_ms - 7 * DAY,
            Self::Month => now_ms - 30 * DAY,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

/// A command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Trading state, equity, PnL, positions and orders in flight.
    Status,
    /// Open positions.
    Positions,
    /// Orders not yet final.
    Orders,
    /// Realised PnL over a period.
    Pnl(Period),
    /// Equity, balance and margin.
    Balance,
    /// The equity curve as a picture.
    Chart(Period),
    /// No new orders.
    Halt,
    /// Only orders that reduce exposure.
    Reduce,
    /// Normal trading.
    Resume,
    /// Close the position of a symbol, or every position (`None`).
    Close(Option<String>),
    /// Registered models and the rollout.
    Models,
    /// Promote `name:version`.
    Promote(String),
    /// Roll a model back to its previous champion.
    Rollback(String),
    /// Champion against challenger.
    Compare(String),
    /// One chain's stages and durations.
    Trace(String),
    /// The chain-health summary.
    Health,
    /// Per-stage latency.
    Latency,
    /// Show the chat's notice settings, or set one kind's level.
    Notify(Option<(NoticeKind, Level)>),
    /// The commands.
    Help,
}

/// What `/help` shows.
pub const HELP: &str = "\
/status – trading state, equity, PnL
/positions – open positions
/orders – orders not yet final
/pnl [day|week|month] – realised PnL
/balance – equity and balance
/chart [day|week] – equity curve
/halt – stop new orders (confirm)
/reduce – only reduce exposure
/resume – trade normally
/close <symbol|all> – close positions (confirm)
/models – models and rollout
/promote <name:version> – promote (confirm)
/rollback <name> – roll back (confirm)
/compare <name> – champion vs challenger
/trace <chain_id> – a chain's stages
/health – chain health
/latency – per-stage latency
/notify [kind on|silent|off] – notice settings
/help – this list";

impl Command {
    /// Parses `/name args` (a `@botname` suffix on the name is allowed, as in groups); the error
    /// says what was wrong and how to write it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut words = text.split_whitespace();
        let Some(first) = words.next().and_then(|w| w.strip_prefix('/')) else {
            return Err("commands start with /, see /help".into());
        };
        let name = first.split('@').next().unwrap_or_default().to_ascii_lowercase();
        let args: Vec<&str> = words.collect();
        let one = |usage: &str| match args.as_slice() {
            [arg] => Ok((*arg).to_owned()),
            _ => Err(format!("usage: {usage}")),
        };
        let period = |allowed: &[Period]| match args.as_slice() {
            [] => Ok(Period::Day),
            [word] => allowed
                .iter()
                .copied()
                .find(|p| p.name() == *word)
                .ok_or_else(|| format!("period {}: give {}", mtml_core::text::quote(word), names(allowed))),
            _ => Err(format!("give at most one period: {}", names(allowed))),
        };
        let no_args = |command: Self| if args.is_empty() { Ok(command) } else { Err(format!("/{name} takes no arguments")) };
        match name.as_str() {
            "status" => no_args(Self::Status),
            "positions" => no_args(Self::Positions),
            "orders" => no_args(Self::Orders),
            "pnl" => period(&[Period::Day, Period::Week, Period::Month]).map(Self::Pnl),
            "balance" => no_args(Self::Balance),
            "chart" => period(&[Period::Day, Period::Week]).map(Self::Chart),
            "halt" => no_args(Self::Halt),
            "reduce" => no_args(Self::Reduce),
            "resume" => no_args(Self::Resume),
            "close" => one("/close <symbol|all>").map(|target| Self::Close((!target.eq_ignore_ascii_case("all")).then(|| target.to_ascii_uppercase()))),
            "models" => no_args(Self::Models),
            "promote" => one("/promote <name:version>").and_then(|spec| match spec.split_once(':') {
                Some((model, version)) if !model.is_empty() && version.parse::<i64>().is_ok() => Ok(Self::Promote(spec)),
                _ => Err(format!("/promote {}: give name:version, like fx-direction:3", mtml_core::text::quote(&spec))),
            }),
            "rollback" => one("/rollback <name>").map(Self::Rollback),
            "compare" => one("/compare <name>").map(Self::Compare),
            "trace" => one("/trace <chain_id>").and_then(|chain| match chain.parse::<mtml_core::ChainId>() {
                Ok(_) => Ok(Self::Trace(chain.to_ascii_lowercase())),
                Err(_) => Err(format!("/trace {}: a chain id is 32 hex digits", mtml_core::text::quote(&chain))),
            }),
            "health" => no_args(Self::Health),
            "latency" => no_args(Self::Latency),
            "notify" => match args.as_slice() {
                [] => Ok(Self::Notify(None)),
                [kind, level] => {
                    let kind = NoticeKind::from_name(kind).ok_or_else(|| unknown_kind(kind))?;
                    let level = Level::from_name(level).ok_or_else(|| "the level is on, silent or off".to_owned())?;
                    Ok(Self::Notify(Some((kind, level))))
                }
                _ => Err("usage: /notify, or /notify <kind> on|silent|off".into()),
            },
            "help" | "start" => Ok(Self::Help),
            _ => Err(format!("unknown command /{}, see /help", mtml_core::text::prefix(&name))),
        }
    }

    /// True for a command that changes something (only acting users may give it).
    pub fn acts(&self) -> bool {
        matches!(
            self,
            Self::Halt | Self::Reduce | Self::Resume | Self::Close(_) | Self::Promote(_) | Self::Rollback(_) | Self::Notify(Some(_))
        )
    }

    /// True for a command asked to confirm with a button first.
    pub fn needs_confirmation(&self) -> bool {
        matches!(self, Self::Halt | Self::Close(_) | Self::Promote(_) | Self::Rollback(_))
    }

    /// The command as its user would write it (the audit log and confirmations quote it).
    pub fn text(&self) -> String {
        match self {
            Self::Status => "/status".into(),
            Self::Positions => "/positions".into(),
            Self::Orders => "/orders".into(),
            Self::Pnl(p) => format!("/pnl {}", p.name()),
            Self::Balance => "/balance".into(),
            Self::Chart(p) => format!("/chart {}", p.name()),
            Self::Halt => "/halt".into(),
            Self::Reduce => "/reduce".into(),
            Self::Resume => "/resume".into(),
            Self::Close(symbol) => format!("/close {}", symbol.as_deref().unwrap_or("all")),
            Self::Models => "/models".into(),
            Self::Promote(spec) => format!("/promote {spec}"),
            Self::Rollback(name) => format!("/rollback {name}"),
            Self::Compare(name) => format!("/compare {name}"),
            Self::Trace(chain) => format!("/trace {chain}"),
            Self::Health => "/health".into(),
            Self::Latency => "/latency".into(),
            Self::Notify(None) => "/notify".into(),
            Self::Notify(Some((kind, level))) => format!("/notify {} {}", kind.name(), level.name()),
            Self::Help => "/help".into(),
        }
    }
}

fn names(periods: &[Period]) -> String {
    periods.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
}

/// Who may use the bot: read-only users, and acting users (who may also read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Users who may read.
    pub read: HashSet<u64>,
    /// Users who may also act.
    pub act: HashSet<u64>,
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Nothing: not an allowed user.
    Nothing,
    /// Read-only commands.
    Read,
    /// Every command.
    Act,
}

impl Access {
    /// What `user` may do.
    pub fn of(&self, user: u64) -> Allowed {
        if self.act.contains(&user) {
            Allowed::Act
        } else if self.read.contains(&user) {
            Allowed::Read
        } else {
            Allowed::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_their_arguments() {
        assert_eq!(Command::parse("/status").unwrap(), Command::Status);
        assert_eq!(Command::parse("/status@mtml_bot").unwrap(), Command::Status);
        assert_eq!(Command::parse("/pnl week").unwrap(), Command::Pnl(Period::Week));
        assert_eq!(Command::parse("/pnl").unwrap(), Command::Pnl(Period::Day));
        assert_eq!(Command::parse("/close eurusd").unwrap(), Command::Close(Some("EURUSD".into())));
        assert_eq!(Command::parse("/close all").unwrap(), Command::Close(None));
        assert_eq!(Command::parse("/promote fx:3").unwrap(), Command::Promote("fx:3".into()));
        assert_eq!(Command::parse("/notify fill silent").unwrap(), Command::Notify(Some((NoticeKind::Fill, Level::Silent))));
        let chain = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(Command::parse(&format!("/trace {chain}")).unwrap(), Command::Trace(chain.into()));
    }

    #[test]
    fn mistakes_are_named_with_the_way_to_write_it() {
        assert_eq!(Command::parse("/chart month").unwrap_err(), "period \"month\": give day, week");
        assert_eq!(Command::parse("/promote fx").unwrap_err(), "/promote \"fx\": give name:version, like fx-direction:3");
        assert_eq!(Command::parse("/close").unwrap_err(), "usage: /close <symbol|all>");
        assert_eq!(Command::parse("/trace nope").unwrap_err(), "/trace \"nope\": a chain id is 32 hex digits");
        assert_eq!(Command::parse("/moon").unwrap_err(), "unknown command /moon, see /help");
        assert_eq!(Command::parse("hello").unwrap_err(), "commands start with /, see /help");
        assert!(Command::parse("/notify fills on").unwrap_err().contains("unknown notice kind"));
    }

    #[test]
    fn acting_and_confirmed_commands_are_marked() {
        assert!(Command::Halt.acts() && Command::Halt.needs_confirmation());
        assert!(Command::Resume.acts() && !Command::Resume.needs_confirmation());
        assert!(!Command::Status.acts() && !Command::Notify(None).acts());
        let access = Access { read: [1].into(), act: [2].into() };
        assert_eq!((access.of(1), access.of(2), access.of(3)), (Allowed::Read, Allowed::Act, Allowed::Nothing));
    }
}
