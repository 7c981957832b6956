//! Domain types to and from their protobuf messages, for the gRPC services and the commands
//! that print what a service answered (the same tables whether the answer came from a running
//! instance or from the registry directly).

use mtml_decision::TradingState;
use mtml_proto::v1;
use mtml_registry::{RolloutState, Route, VersionRow};
use mtml_rollout::Serving;

/// Protobuf to domain trading state.
pub fn state_from_proto(state: i32) -> Option<TradingState> {
    match v1::TradingState::try_from(state) {
        Ok(v1::TradingState::Active) => Some(TradingState::Active),
        Ok(v1::TradingState::Reducing) => Some(TradingState::Reducing),
        Ok(v1::TradingState::Halted) => Some(TradingState::Halted),
        _ => None,
    }
}

/// Domain to protobuf trading state.
pub fn state_to_proto(state: TradingState) -> v1::TradingState {
    match state {
        TradingState::Active => v1::TradingState::Active,
        TradingState::Reducing => v1::TradingState::Reducing,
        TradingState::Halted => v1::TradingState::Halted,
    }
}

/// A version as the protocol carries it.
pub fn version_proto(row: &VersionRow) -> v1::ModelVersion {
    v1::ModelVersion {
        name: row.name.clone(),
        version: row.version.to_string(),
        sha256: row.sha256.clone(),
        size_bytes: u64::try_from(row.size_bytes).unwrap_or(0),
        feature_set: row.feature_set.clone(),
        state: row.state.clone(),
        input_name: row.input_name.clone(),
        features: u32::try_from(row.features).unwrap_or(0),
        output_name: row.output_name.clone(),
        metrics_json: row.metrics.clone(),
        uploaded_by: row.uploaded_by.clone(),
        uploaded_ms: row.uploaded_ms,
    }
}

/// A version as the protocol carried it, for the same tables as the registry's rows.
pub fn row_from_proto(v: &v1::ModelVersion) -> VersionRow {
    VersionRow {
        name: v.name.clone(),
        version: v.version.parse().unwrap_or(0),
        sha256: v.sha256.clone(),
        size_bytes: i64::try_from(v.size_bytes).unwrap_or(i64::MAX),
        input_name: v.input_name.clone(),
        features: i64::from(v.features),
        output_name: v.output_name.clone(),
        feature_set: v.feature_set.clone(),
        metrics: v.metrics_json.clone(),
        uploaded_by: v.uploaded_by.clone(),
        uploaded_ms: v.uploaded_ms,
        state: v.state.clone(),
    }
}

/// A rollout state as the protocol carries it.
pub fn rollout_status(state: &RolloutState, message: String, serving: &Serving) -> v1::RolloutStatus {
    let (route, percent, symbols) = match state.challenger.as_ref().map(|c| &c.route) {
        Some(Route::Shadow) => ("shadow", 0, vec![]),
        Some(Route::Canary { percent, symbols }) => ("canary", u32::from(*percent), symbols.clone()),
        None => ("none", 0, vec![]),
    };
    v1::RolloutStatus {
        name: state.name.clone(),
        champion: state.champion.unwrap_or(0),
        challenger: state.challenger.as_ref().map_or(0, |c| c.version),
        route: route.into(),
        percent,
        symbols,
        revision: state.revision,
        message,
        serving_revision: serving.revision,
        serving_error: serving.error.clone().unwrap_or_default(),
    }
}
