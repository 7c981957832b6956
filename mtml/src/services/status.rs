//! The error boundary: the one place domain errors become `tonic::Status`.
//!
//! Every gRPC service of this crate maps its errors through [`IntoStatus`], so one error is
//! always the same code whichever service meets it: not found for what is not there, invalid
//! argument for a request that cannot be served as asked, failed precondition for a state that
//! refuses it, unavailable for what is down or stopped (a caller may retry), data loss for
//! corrupt stored bytes.

use mtml_decision::StateCommandRefused;
use mtml_feature_store::StoreError;
use mtml_inference::ServeError;
use mtml_pipeline::PipelineStopped;
use mtml_registry::RegistryError;
use mtml_rollout::RolloutError;
use tonic::Status;

/// A domain error as the gRPC status a client sees; the message is the error's own.
pub(crate) trait IntoStatus {
    /// The status.
    fn into_status(self) -> Status;
}

impl IntoStatus for ServeError {
    fn into_status(self) -> Status {
        let message = self.to_string();
        match self {
            ServeError::NotLoaded(_) | ServeError::UnknownModel(_) | ServeError::UnknownVersion { .. } => {
                Status::not_found(message)
            }
            ServeError::Inference(_) => Status::invalid_argument(message),
            ServeError::Load { .. } => Status::internal(message),
            ServeError::Stopped(_) => Status::unavailable(message),
        }
    }
}

impl IntoStatus for StoreError {
    fn into_status(self) -> Status {
        let message = self.to_string();
        match self {
            StoreError::Unavailable { .. } => Status::unavailable(message),
            StoreError::Refused { .. } | StoreError::Corrupt { .. } => Status::internal(message),
        }
    }
}

impl IntoStatus for RegistryError {
    fn into_status(self) -> Status {
        let message = self.to_string();
        match self {
            RegistryError::NotFound(_) => Status::not_found(message),
            RegistryError::Duplicate { .. } => Status::already_exists(message),
            RegistryError::Refused(_) => Status::failed_precondition(message),
            RegistryError::Conflict(_) => Status::aborted(message),
            RegistryError::Corrupt { .. } => Status::data_loss(message),
            RegistryError::Database(_) | RegistryError::Open(_) => Status::unavailable(message),
        }
    }
}

impl IntoStatus for RolloutError {
    fn into_status(self) -> Status {
        match self {
            RolloutError::Registry(error) => error.into_status(),
            RolloutError::Serve(error) => error.into_status(),
            RolloutError::PipelineStopped => PipelineStopped.into_status(),
            RolloutError::Task(_) => Status::internal(self.to_string()),
            error => Status::invalid_argument(error.to_string()),
        }
    }
}

impl IntoStatus for PipelineStopped {
    fn into_status(self) -> Status {
        Status::unavailable(self.to_string())
    }
}

impl IntoStatus for StateCommandRefused {
    fn into_status(self) -> Status {
        Status::failed_precondition(self.to_string())
    }
}

impl IntoStatus for mtml_journal::JournalError {
    fn into_status(self) -> Status {
        // The journal's database is down or unreachable: a caller may retry.
        Status::unavailable(self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn one_error_is_one_code_wherever_it_is_met() {
        // The model server's refusals, as both the Open Inference Protocol and PredictSymbol see them.
        assert_eq!(ServeError::NotLoaded("fx".into()).into_status().code(), Code::NotFound);
        assert_eq!(ServeError::Stopped("fx".into()).into_status().code(), Code::Unavailable);
        // Stores, as Features and PredictSymbol see them.
        let down = StoreError::Unavailable { store: "redis".into(), detail: "connection refused".into() };
        assert_eq!(down.into_status().code(), Code::Unavailable);
        // A registry error keeps its code when it comes through a rollout.
        let missing = RegistryError::NotFound("fx:9".into());
        assert_eq!(RolloutError::Registry(missing).into_status().code(), Code::NotFound);
        assert_eq!(RolloutError::PipelineStopped.into_status().code(), Code::Unavailable);
        let refused = StateCommandRefused::KillSwitch.into_status();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert!(refused.message().contains("kill switch"), "{}", refused.message());
    }
}
