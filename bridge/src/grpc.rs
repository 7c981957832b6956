//! The `mtml.v1.Bridge` gRPC service: execution in another process sends orders and receives what
//! terminals report about them, through the same router and events as in-process execution.

use std::pin::Pin;
use std::sync::Arc;

use mtml_core::{ExecutionEvent, OrderRequest};
use mtml_proto::v1;
use mtml_proto::v1::bridge_server::{Bridge as BridgeApi, BridgeServer};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::router::OrderRouter;

/// Serves one execution client at a time: its orders go to the router, and the bridge's execution
/// events go back on its response stream. When the client goes, the events wait for the next one.
#[derive(Debug, Clone)]
pub struct BridgeService {
    router: OrderRouter,
    events: Arc<Mutex<Option<mpsc::Receiver<ExecutionEvent>>>>,
    shutdown: CancellationToken,
}

impl BridgeService {
    /// A service submitting to `router` and streaming `events` (the receiving end of the bridge's
    /// [`crate::BridgeOutputs::events`]) until `shutdown`.
    pub fn new(
        router: OrderRouter,
        events: mpsc::Receiver<ExecutionEvent>,
        shutdown: CancellationToken,
    ) -> Self {
        Self { router, events: Arc::new(Mutex::new(Some(events))), shutdown }
    }

    /// The tonic server.
    pub fn into_server(self) -> BridgeServer<Self> {
        BridgeServer::new(self)
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::ExecutionEvent, Status>> + Send>>;

#[tonic::async_trait]
impl BridgeApi for BridgeService {
    type ExecuteOrdersStream = EventStream;

    async fn execute_orders(
        &self,
        request: Request<Streaming<v1::OrderCommand>>,
    ) -> Result<Response<Self::ExecuteOrdersStream>, Status> {
        let mut events = self.events.lock().take().ok_or_else(|| {
            Status::failed_precondition("another execution client is attached to this bridge")
        })?;
        let mut commands = request.into_inner();
        let router = self.router.clone();
        let slot = Arc::clone(&self.events);
        let shutdown = self.shutdown.clone();
        let (out, out_rx) = mpsc::channel(1024);
        let span = tracing::info_span!("task", name = "execution_stream");
        tokio::spawn(tracing::Instrument::instrument(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    command = commands.next() => match command {
                        Some(Ok(command)) => match OrderRequest::try_from(command) {
                            Ok(order) => router.submit(order),
                            Err(error) => {
                                let _ = out.send(Err(Status::invalid_argument(error.to_string()))).await;
                                break;
                            }
                        },
                        Some(Err(status)) => {
                            tracing::warn!(%status, "execution client stream failed");
                            break;
                        }
                        None => break,
                    },
                    event = events.recv() => match event {
                        Some(event) => {
                            if out.send(Ok(v1::ExecutionEvent::from(&event))).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
            *slot.lock() = Some(events);
        }, span));
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}
