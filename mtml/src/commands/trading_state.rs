//! `mtml halt | reduce | resume`: a running instance's trading state through `mtml.v1.Admin`.

use mtml_proto::v1;
use mtml_proto::v1::admin_client::AdminClient;

use crate::client::{ServerUrl, status_error};

/// Asks the instance at `server` to move to `state`, for `reason`; returns the state in force
/// afterwards, as `HALTED`, `REDUCING` or `ACTIVE`.
pub async fn set_trading_state(server: &ServerUrl, state: v1::TradingState, reason: String) -> anyhow::Result<String> {
    let mut client = AdminClient::new(server.connect().await?);
    let request = v1::SetTradingStateRequest { state: state as i32, reason };
    let reply = client.set_trading_state(request).await.map_err(status_error)?;
    Ok(state_name(reply.into_inner().state))
}

/// A trading state as the protocol carries it, named `HALTED`, `REDUCING` or `ACTIVE`.
pub fn state_name(state: i32) -> String {
    v1::TradingState::try_from(state).map_or("UNKNOWN".to_owned(), |s| s.as_str_name().trim_start_matches("TRADING_STATE_").to_owned())
}
