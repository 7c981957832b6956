//! Execution talking to a bridge in another process: orders out and execution events back over
//! `mtml.v1.Bridge/ExecuteOrders`.

use mtml_core::{ExecutionEvent, OrderRequest};
use mtml_proto::v1;
use mtml_proto::v1::bridge_client::BridgeClient;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// Streams `orders` to the bridge at `endpoint` and hands what it reports to `events`, until the
/// order channel closes. A bridge not yet up (the pipeline started first) or gone is retried
/// with backoff; orders wait in the channel meanwhile. An order already handed to a stream that
/// broke is not sent again (the bridge never resends: such an order is settled from the
/// terminal's books).
pub async fn forward_orders(
    bridge: &crate::client::ServerUrl,
    mut orders: mpsc::UnboundedReceiver<OrderRequest>,
    events: mpsc::Sender<ExecutionEvent>,
) -> anyhow::Result<()> {
    let mut delay = RECONNECT_MIN;
    loop {
        match stream_orders(bridge, &mut orders, &events).await {
            Ok(()) => return Ok(()),
            // Stopping (no more orders will come) with the bridge gone: nothing to wait for.
            Err(error) if orders.is_closed() || events.is_closed() => {
                let unsent = orders.len();
                if unsent > 0 {
                    anyhow::bail!("{unsent} orders not sent: the bridge at {bridge} cannot be reached ({error})");
                }
                return Ok(());
            }
            Err(error) => {
                tracing::warn!(endpoint = %bridge, %error, retry_in = ?delay, "order stream to the bridge broken; reconnecting");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RECONNECT_MAX);
            }
        }
    }
}

const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// One stream: `Ok` once the order channel has closed (or nobody takes events) and the bridge
/// has answered what was sent; an error when the connection failed or the bridge ended the
/// stream while orders may still come.
async fn stream_orders(
    bridge: &crate::client::ServerUrl,
    orders: &mut mpsc::UnboundedReceiver<OrderRequest>,
    events: &mpsc::Sender<ExecutionEvent>,
) -> anyhow::Result<()> {
    let mut client = BridgeClient::connect(bridge.endpoint()?).await?;
    let (commands, to_send) = mpsc::unbounded_channel();
    let mut request = tonic::Request::new(UnboundedReceiverStream::new(to_send));
    bridge.bearer().authorize(&mut request);
    let mut replies = client.execute_orders(request).await?.into_inner();
    let mut commands = Some(commands);
    loop {
        tokio::select! {
            order = orders.recv(), if commands.is_some() => match (order, &commands) {
                (Some(order), Some(stream)) => stream.send(v1::OrderCommand::from(&order))?,
                // No more orders: the request stream ends, and the bridge ends its answers.
                _ => commands = None,
            },
            // The pipeline has stopped: nobody takes what the bridge would still report.
            () = events.closed() => return Ok(()),
            reply = replies.message() => match reply? {
                Some(reply) => match ExecutionEvent::try_from(reply) {
                    Ok(event) => {
                        if events.send(event).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(error) => tracing::warn!(%error, "malformed execution event from the bridge"),
                },
                None if commands.is_none() => return Ok(()),
                None => anyhow::bail!("the bridge ended the order stream"),
            },
        }
    }
}
