//! Execution talking to a bridge in another process: orders out and execution events back over
//! `mtml.v1.Bridge/ExecuteOrders`.

use mtml_core::{ExecutionEvent, OrderRequest};
use mtml_proto::v1;
use mtml_proto::v1::bridge_client::BridgeClient;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// Streams `orders` to the bridge at `endpoint` and hands what it reports to `events`, until the
/// order channel closes or the bridge ends the stream.
pub async fn forward_orders(
    endpoint: String,
    orders: mpsc::UnboundedReceiver<OrderRequest>,
    events: mpsc::Sender<ExecutionEvent>,
) -> anyhow::Result<()> {
    let mut client = BridgeClient::connect(endpoint).await?;
    let commands = UnboundedReceiverStream::new(orders).map(|order| v1::OrderCommand::from(&order));
    let mut replies = client.execute_orders(commands).await?.into_inner();
    while let Some(reply) = replies.message().await? {
        match ExecutionEvent::try_from(reply) {
            Ok(event) => {
                if events.send(event).await.is_err() {
                    break;
                }
            }
            Err(error) => tracing::warn!(%error, "malformed execution event from the bridge"),
        }
    }
    Ok(())
}
