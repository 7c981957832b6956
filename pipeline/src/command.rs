//! Talking to a running pipeline: [`PipelineHandle`] sends [`PipelineCommand`]s to its thread,
//! which applies them between two ticks and answers.

use mtml_core::Symbol;
use mtml_decision::{CloseRefused, StateCommandRefused, TradingState};
use mtml_rollout::{ComparisonReport, ModelSetTarget, Models, RolloutError};
use tokio::sync::{mpsc, oneshot};

/// An operator command for the running pipeline.
#[derive(Debug)]
pub enum PipelineCommand {
    /// Change the trading state; the reply is the state in force afterwards, or why not.
    SetTradingState {
        /// The state wanted.
        state: TradingState,
        /// Why.
        reason: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<TradingState, StateCommandRefused>>,
    },
    /// Report the trading state.
    GetTradingState {
        /// Where the answer goes.
        reply: oneshot::Sender<TradingState>,
    },
    /// Swap in a new champion and challenger, fully loaded, between two ticks.
    SetModels {
        /// The new set.
        models: Box<Models>,
        /// Answered once the set is in force.
        reply: oneshot::Sender<()>,
    },
    /// Report the champion/challenger comparison, if a challenger is on trial.
    Compare {
        /// Where the answer goes.
        reply: oneshot::Sender<Option<ComparisonReport>>,
    },
    /// Close the position of one symbol, or of every symbol (`None`): a market order each,
    /// checked by risk.
    Close {
        /// The symbol, or every one.
        symbol: Option<Symbol>,
        /// Where the answer goes: per symbol, the order sent or why not.
        reply: oneshot::Sender<Vec<Closed>>,
    },
    /// Report counters, execution, trading state and equity (for metrics).
    Snapshot {
        /// Where the answer goes.
        reply: oneshot::Sender<Box<crate::PipelineSnapshot>>,
    },
}

/// What closing one symbol's position did.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    /// The symbol.
    pub symbol: Symbol,
    /// The order sent (its client order id and signed lots), or why none was.
    pub outcome: Result<(String, f64), CloseRefused>,
}

/// The pipeline thread is gone (stopped or never started); nothing it was asked was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline has stopped")]
pub struct PipelineStopped;

/// Where operator commands for a running pipeline go. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PipelineHandle {
    commands: mpsc::UnboundedSender<PipelineCommand>,
}

impl PipelineHandle {
    /// A handle and the inbox the pipeline reads (give it to [`crate::Pipeline::spawn`]).
    pub fn new() -> (Self, mpsc::UnboundedReceiver<PipelineCommand>) {
        let (commands, inbox) = mpsc::unbounded_channel();
        (Self { commands }, inbox)
    }

    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> PipelineCommand) -> Result<T, PipelineStopped> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).map_err(|_| PipelineStopped)?;
        answer.await.map_err(|_| PipelineStopped)
    }

    /// Changes the trading state; the state in force afterwards, or why the command was refused.
    pub async fn set_trading_state(
        &self,
        state: TradingState,
        reason: String,
    ) -> Result<Result<TradingState, StateCommandRefused>, PipelineStopped> {
        self.ask(|reply| PipelineCommand::SetTradingState { state, reason, reply }).await
    }

    /// Closes the position of `symbol`, or every position.
    pub async fn close(&self, symbol: Option<Symbol>) -> Result<Vec<Closed>, PipelineStopped> {
        self.ask(|reply| PipelineCommand::Close { symbol, reply }).await
    }

    /// The trading state.
    pub async fn trading_state(&self) -> Result<TradingState, PipelineStopped> {
        self.ask(|reply| PipelineCommand::GetTradingState { reply }).await
    }

    /// Champion against challenger so far, if a challenger is on trial.
    pub async fn comparison(&self) -> Result<Option<ComparisonReport>, PipelineStopped> {
        self.ask(|reply| PipelineCommand::Compare { reply }).await
    }

    /// What the pipeline knows now: counters, execution, trading state, equity.
    pub async fn snapshot(&self) -> Result<crate::PipelineSnapshot, PipelineStopped> {
        self.ask(|reply| PipelineCommand::Snapshot { reply }).await.map(|snapshot| *snapshot)
    }

    /// Puts a model set in force between two ticks; returns once it is.
    pub async fn set_models(&self, models: Models) -> Result<(), PipelineStopped> {
        self.ask(|reply| PipelineCommand::SetModels { models: Box::new(models), reply }).await
    }
}

#[async_trait::async_trait]
impl ModelSetTarget for PipelineHandle {
    async fn set_models(&self, models: Models) -> Result<(), RolloutError> {
        PipelineHandle::set_models(self, models).await.map_err(|PipelineStopped| RolloutError::PipelineStopped)
    }

    async fn comparison(&self) -> Result<Option<ComparisonReport>, RolloutError> {
        PipelineHandle::comparison(self).await.map_err(|PipelineStopped| RolloutError::PipelineStopped)
    }
}
