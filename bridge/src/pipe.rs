//! The named-pipe server, on Windows only: an EA on the same machine can reach the bridge at
//! `\\.\pipe\NAME` through MQL5's file functions, with no socket permission to grant. Every
//! connection is served exactly as a TCP one ([`Bridge::serve`]).
//!
//! This module is compiled on Windows only; the project's CI runs on Linux, where terminals
//! (under Wine) use TCP.

use tokio::net::windows::named_pipe::ServerOptions;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info_span};

use crate::server::Bridge;
use crate::wire::Connection;

/// Serves terminals on `\\.\pipe\{name}` until `shutdown`, then waits for their tasks.
pub async fn run_pipe(bridge: Bridge, name: &str, shutdown: CancellationToken) -> std::io::Result<()> {
    let path = format!(r"\\.\pipe\{name}");
    // The first instance claims the name, so a second bridge cannot silently share it.
    let mut listening = ServerOptions::new().first_pipe_instance(true).create(&path)?;
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            connected = listening.connect() => {
                connected?;
                // Create the next instance before serving this one, so a client never finds
                // the pipe missing.
                let client = std::mem::replace(&mut listening, ServerOptions::new().create(&path)?);
                let session = bridge.next_session();
                let span = info_span!("terminal", %session, pipe = %path);
                let bridge = bridge.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(
                    async move { bridge.serve(Connection::new(client), session, shutdown).await }
                        .instrument(span),
                );
            }
        }
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}
