//! One connection after its handshake: the streaming loop (orders out, messages in sequence,
//! heartbeats, the silence timeout, order timeouts, periodic books), and the messages it
//! handles; the connection's state.

use super::*;

impl Bridge {

    /// Serves one terminal connection (TCP, or a named pipe on Windows) to its end, logging why
    /// it ended, and leaves the account's memory ready for the next connection. Whether its
    /// hello presented a wrong token.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut conn: Connection<S>,
        session: String,
        shutdown: CancellationToken,
    ) -> bool {
        let cancel = shutdown.child_token();
        let mut established = None;
        let result = self.serve_inner(&mut conn, &session, &cancel, &mut established).await;
        let lost_because = match &result {
            Ok(()) => "disconnected".to_owned(),
            Err(error) => error.to_string(),
        };
        let bad_token = matches!(result, Err(SessionError::BadToken(_)));
        match result {
            Ok(()) if cancel.is_cancelled() && !shutdown.is_cancelled() => {
                self.stats.taken_over.fetch_add(1, Ordering::Relaxed);
                info!("connection replaced by a newer one of the same account");
            }
            Ok(()) => info!("terminal disconnected"),
            Err(SessionError::Refused(reason) | SessionError::BadToken(reason)) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                warn!(%reason, "terminal refused");
            }
            Err(SessionError::Wire(error)) => {
                self.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                warn!(%error, "closing connection on bad input");
            }
            Err(SessionError::Protocol(reason)) => {
                self.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                warn!(%reason, "closing connection on protocol violation");
            }
            Err(SessionError::PipelineClosed) => info!("pipeline stopped; closing connection"),
            Err(SessionError::Silent) => {
                self.stats.silent_closed.fetch_add(1, Ordering::Relaxed);
                warn!(timeout = ?self.config.silence_timeout, "terminal silent too long; closing connection");
            }
        }
        self.router.unregister(&session);
        if let Some(state) = established {
            let replaced = cancel.is_cancelled() && !shutdown.is_cancelled();
            if !replaced {
                let account = state.account.to_string();
                self.config.notices.emit(|| mtml_core::Notice::TerminalLost { account, reason: lost_because });
            }
            self.end_session(state);
        }
        bad_token
    }

    /// Records where the streams stopped, and marks the session's unsettled orders as having an
    /// unknown outcome: the next snapshot of the account settles them.
    pub(super) fn end_session(&self, state: Session) {
        self.stats.connected.fetch_sub(1, Ordering::Relaxed);
        let unknown = self.accounts.with(&state.account, |account| {
            if account.session.as_ref().is_some_and(|(id, _)| *id == state.id) {
                account.session = None;
                account.lost_at = Some(std::time::Instant::now());
            }
            mark_unknown(&mut account.in_flight, &state.id)
        });
        self.announce_unknown(&state.account, unknown);
    }

    /// Tells execution which orders lost their answer with a connection.
    pub(super) fn announce_unknown(&self, account: &str, unknown: Vec<(String, ChainId)>) {
        if unknown.is_empty() {
            return;
        }
        warn!(%account, orders = unknown.len(), "connection lost with orders in flight; their outcome is settled from the next snapshot, never by resending");
        for (client_order_id, chain_id) in unknown {
            let event = ExecutionEvent::OutcomeUnknown { chain_id, client_order_id, account: Arc::from(account) };
            if self.outputs.events.try_send(event).is_err() {
                tracing::error!("execution event channel full or closed; unknown outcome not announced");
            }
        }
    }

    pub(super) async fn serve_inner<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        session: &str,
        cancel: &CancellationToken,
        established: &mut Option<Session>,
    ) -> Result<(), SessionError> {
        let handshake = self.handshake(conn, session, cancel);
        let state = tokio::time::timeout(self.config.hello_timeout, handshake)
            .await
            .map_err(|_| SessionError::Protocol("no complete hello and snapshot in time".into()))??;
        let state = established.insert(state);
        let (orders_tx, mut orders_rx) = mpsc::unbounded_channel();
        self.router.register(Route {
            session: session.to_owned(),
            account: Arc::clone(&state.account),
            symbols: state.specs.keys().cloned().collect::<HashSet<_>>(),
            orders: orders_tx,
        });
        info!(account = %state.account, symbols = state.specs.len(), "terminal streaming");
        let gone = self.accounts.with(&state.account, |account| account.lost_at.take().map(|at| at.elapsed()));
        let resumed = state.resume.lock().len() as u64;
        self.config.notices.emit(|| mtml_core::Notice::TerminalConnected {
            account: state.account.to_string(),
            gone_ms: gone.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            resumed,
        });
        self.stats.connected.fetch_add(1, Ordering::Relaxed);
        // The first heartbeat is one period away, not immediate: the handshake just spoke.
        let period = self.config.heartbeat_interval;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut last_heard = tokio::time::Instant::now();
        // Periodic reconciliation: ask for the books every `reconcile_every` (never if zero).
        let every = self.config.reconcile_every;
        let mut reconcile =
            (!every.is_zero()).then(|| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                Some(order) = orders_rx.recv() => self.send_order(conn, state, order).await?,
                _ = async {
                    match reconcile.as_mut() {
                        Some(interval) => interval.tick().await,
                        None => std::future::pending().await,
                    }
                } => self.request_books(conn, state).await?,
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > self.config.silence_timeout {
                        return Err(SessionError::Silent);
                    }
                    let expired = state.seq.expire(tokio::time::Instant::now(), self.config.resend_timeout);
                    self.handle_sequenced(conn, state, expired).await?;
                    self.time_out_orders(conn, state).await?;
                    state.send(conn, Message::Heartbeat { time_msc: 0 }).await?;
                    conn.flush().await?;
                }
                read = conn.read_envelope() => {
                    let Some(envelope) = read? else { return Ok(()) };
                    last_heard = tokio::time::Instant::now();
                    self.sequence(conn, state, envelope).await?;
                }
            }
        }
    }

    /// Asks the terminal for its books (SYNC), unless it is still answering the last request.
    pub(super) async fn request_books<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        state: &mut Session,
    ) -> Result<(), SessionError> {
        if state.sync.is_none() {
            state.sync = Some(Snapshot::default());
            state.send(conn, Message::Sync).await?;
            conn.flush().await?;
            self.stats.syncs_sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Orders this connection sent that are unanswered past `order_timeout`: their outcome is
    /// declared unknown (execution is told; nothing is resent) and the terminal is asked for its
    /// books, which settle them exactly as after a lost connection.
    pub(super) async fn time_out_orders<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        state: &mut Session,
    ) -> Result<(), SessionError> {
        let timeout_ns = u64::try_from(self.config.order_timeout.as_nanos()).unwrap_or(u64::MAX);
        let now = monotonic_ns();
        let timed_out = self.accounts.with(&state.account, |account| {
            let mut ids = Vec::new();
            for (id, order) in account.in_flight.iter_mut() {
                let unanswered = order.outcome_known && order.filled == 0.0 && !order.acked;
                if order.session == state.id && unanswered && now.saturating_sub(order.sent_ns) > timeout_ns {
                    order.outcome_known = false;
                    ids.push((id.clone(), order.chain_id));
                }
            }
            ids.sort();
            ids
        });
        if timed_out.is_empty() {
            return Ok(());
        }
        self.stats.orders_timed_out.fetch_add(timed_out.len() as u64, Ordering::Relaxed);
        warn!(orders = timed_out.len(), timeout = ?self.config.order_timeout, "orders unanswered in time; asking the terminal for its books, never resending");
        for (client_order_id, chain_id) in timed_out {
            let account = Arc::clone(&state.account);
            self.emit(ExecutionEvent::OutcomeUnknown { chain_id, client_order_id, account }).await?;
        }
        self.request_books(conn, state).await
    }

    /// Hands messages to [`Bridge::handle`] in sequence order (see [`crate::sequencer`]).
    pub(super) async fn sequence<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        state: &mut Session,
        envelope: Envelope,
    ) -> Result<(), SessionError> {
        let sequenced = state.seq.offer(envelope.seq, envelope, tokio::time::Instant::now());
        self.handle_sequenced(conn, state, sequenced).await
    }

    /// Asks for a gap's range, counts what was given up, and handles what is ready, in order.
    pub(super) async fn handle_sequenced<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        state: &mut Session,
        sequenced: Sequenced<Envelope>,
    ) -> Result<(), SessionError> {
        if let Some((from, to)) = sequenced.resend {
            self.stats.sequence_gaps.fetch_add(1, Ordering::Relaxed);
            warn!(from, to, "sequence gap from terminal; asking for the range again");
            state.send(conn, Message::Resend { from, to }).await?;
            conn.flush().await?;
        }
        if sequenced.lost > 0 {
            self.stats.messages_lost.fetch_add(sequenced.lost, Ordering::Relaxed);
            warn!(lost = sequenced.lost, "missing messages not resent in time; counted as lost");
        }
        for envelope in sequenced.ready {
            self.handle(state, envelope).await?;
        }
        Ok(())
    }

    pub(super) fn check_sequence(&self, state: &mut Session, seq: u64) {
        let expected = state.seq.last() + 1;
        if !state.seq.take_as_next(seq) {
            self.stats.sequence_gaps.fetch_add(1, Ordering::Relaxed);
            warn!(expected, received = seq, "sequence gap from terminal");
        }
    }

    pub(super) async fn handle(&self, state: &mut Session, envelope: Envelope) -> Result<(), SessionError> {
        match envelope.message {
            Message::Tick(tick) => self.on_tick(state, envelope.seq, tick).await?,
            Message::Ack { client_order_id, ticket } => {
                let known = self.accounts.with(&state.account, |account| {
                    account.in_flight.get_mut(&client_order_id).map(|order| {
                        order.outcome_known = true;
                        order.acked = true;
                        (order.chain_id, order.volume)
                    })
                });
                match known {
                    Some((chain_id, volume)) => {
                        let event = ExecutionEvent::Acked { chain_id, client_order_id, ticket, volume };
                        self.emit(event).await?;
                    }
                    None => warn!(%client_order_id, "ACK for an order not in flight"),
                }
            }
            Message::Reject { client_order_id, retcode, reason } => {
                let order =
                    self.accounts.with(&state.account, |a| a.in_flight.remove(&client_order_id));
                match order {
                    Some(order) => {
                        let chain_id = order.chain_id;
                        // The chain ends here, failed: the broker refused the order.
                        let now = monotonic_ns();
                        self.chain_log.record_outcome(chain_id, Stage::Fill, order.sent_ns, now.saturating_sub(order.sent_ns), mtml_core::Outcome::Error("broker_rejected"));
                        let event = ExecutionEvent::Rejected { chain_id, client_order_id, retcode, reason };
                        self.emit(event).await?;
                    }
                    None => warn!(%client_order_id, retcode, "REJECT for an order not in flight"),
                }
            }
            Message::Fill(fill) => self.on_fill(state, fill).await?,
            Message::Bar(_) => {
                self.stats.bars.fetch_add(1, Ordering::Relaxed);
            }
            Message::Heartbeat { .. } => {}
            Message::Account(money) => {
                self.emit(state.account_event(money)).await?;
            }
            // The answer to a SYNC: the books, interleaved with ticks, until SNAPSHOT_END.
            Message::Position(position) if state.sync.is_some() => {
                state.sync.get_or_insert_default().positions.push(position);
            }
            Message::Pending(pending) if state.sync.is_some() => {
                state.sync.get_or_insert_default().pending.push(pending);
            }
            Message::Deal(deal) if state.sync.is_some() => state.sync.get_or_insert_default().deals.push(deal),
            Message::SnapshotEnd if state.sync.is_some() => {
                let books = state.sync.take().unwrap_or_default();
                self.apply_books(state, &books, Books::Sync).await?;
                self.stats.syncs_completed.fetch_add(1, Ordering::Relaxed);
                debug!(positions = books.positions.len(), deals = books.deals.len(), "books reconciled");
            }
            other => {
                return Err(SessionError::Protocol(format!(
                    "unexpected {} from a terminal while streaming",
                    other.type_name()
                )));
            }
        }
        Ok(())
    }

    pub(super) async fn on_tick(
        &self,
        state: &mut Session,
        seq: u64,
        tick: wire::WireTick,
    ) -> Result<(), SessionError> {
        let received_ns = monotonic_ns();
        let chain_id = self.chain_ids.next_id();
        let symbol = state.canonical(&tick.symbol, &self.config.symbols);
        state.quotes.insert(symbol.clone(), (tick.bid.value, tick.ask.value));
        {
            let mut resume = state.resume.lock();
            let point = resume.entry(tick.symbol).or_default();
            *point = point.advance(tick.time_msc);
        }
        let tick = Tick {
            chain_id,
            symbol,
            time_msc: tick.time_msc,
            bid: tick.bid.value,
            ask: tick.ask.value,
            seq,
            terminal: Arc::clone(&state.terminal),
            received_ns,
        };
        match self.config.backpressure {
            Backpressure::Block => {
                self.outputs.ticks.send(tick).await.map_err(|_| SessionError::PipelineClosed)?;
            }
            Backpressure::DropNewest => match self.outputs.ticks.try_send(tick) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(tick)) => {
                    let dropped = self.stats.ticks_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if dropped.is_power_of_two() {
                        warn!(dropped, symbol = %tick.symbol, "pipeline full; dropping ticks as configured");
                    }
                    return Ok(());
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(SessionError::PipelineClosed),
            },
        }
        self.stats.ticks.fetch_add(1, Ordering::Relaxed);
        let now = monotonic_ns();
        self.chain_log.record(chain_id, Stage::BridgeReceive, received_ns, now - received_ns);
        // The bridge's part of the tick is done: a sampled chain keeps its receipt even when the
        // pipeline is another process.
        self.chain_log.end(chain_id);
        Ok(())
    }

    pub(super) async fn on_fill(&self, state: &mut Session, fill: wire::Fill) -> Result<(), SessionError> {
        let chain_id: ChainId = fill.chain_id.parse().map_err(|error| {
            SessionError::Protocol(format!("FILL with invalid chain id: {error}"))
        })?;
        let volume = fill.volume.value;
        let sent_ns = self.accounts.with(&state.account, |account| {
            let order = account.in_flight.get_mut(&fill.client_order_id)?;
            order.outcome_known = true;
            order.filled += volume;
            let sent_ns = order.sent_ns;
            if order.filled >= order.volume - 1e-9 {
                account.in_flight.remove(&fill.client_order_id);
            }
            Some(sent_ns)
        });
        match sent_ns {
            Some(sent_ns) => {
                let now = monotonic_ns();
                self.chain_log.record(chain_id, Stage::Fill, sent_ns, now.saturating_sub(sent_ns));
            }
            // Not written on a connection this bridge knows (a previous run's order, settled
            // pending from the books): execution knows the order; the fill goes to it all the same.
            None => debug!(client_order_id = %fill.client_order_id, "FILL of an order sent before this bridge's connections"),
        }
        let event = ExecutionEvent::Filled(Fill {
            chain_id,
            client_order_id: fill.client_order_id,
            ticket: fill.ticket,
            symbol: state.canonical(&fill.symbol, &self.config.symbols),
            side: fill.side.into(),
            volume,
            price: fill.price.value,
            time_msc: fill.time_msc,
        });
        self.emit(event).await
    }

    pub(super) async fn emit(&self, event: ExecutionEvent) -> Result<(), SessionError> {
        self.outputs.events.send(event).await.map_err(|_| SessionError::PipelineClosed)
    }

    pub(super) async fn send_order<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        state: &mut Session,
        order: OrderRequest,
    ) -> Result<(), SessionError> {
        let start = monotonic_ns();
        let Some(spec) = state.specs.get(&order.symbol) else {
            // Routes are registered from this map, so this is a routing bug, not bad input.
            let reason = format!("session does not trade {}", order.symbol);
            self.router.refuse(order, reason);
            return Ok(());
        };
        let limit = self.config.max_orders_in_flight;
        let in_flight = self.accounts.with(&state.account, |account| account.in_flight.len());
        if in_flight >= limit {
            self.stats.orders_refused.fetch_add(1, Ordering::Relaxed);
            self.stats.orders_refused_in_flight.fetch_add(1, Ordering::Relaxed);
            let reason = format!(
                "account {} already has {in_flight} orders unanswered or pending, the most bridge.max_orders_in_flight allows",
                state.account
            );
            self.router.refuse(order, reason);
            return Ok(());
        }
        let normalized = match normalize(&order, spec, state.quotes.get(&order.symbol).copied()) {
            Ok(normalized) => normalized,
            Err(unfit) => {
                self.stats.orders_refused.fetch_add(1, Ordering::Relaxed);
                self.router.refuse(order, unfit.to_string());
                return Ok(());
            }
        };
        let wire = wire::Order {
            client_order_id: order.client_order_id.clone(),
            chain_id: order.chain_id.to_string(),
            symbol: spec.name.clone(),
            side: order.side.into(),
            order_type: match order.order_type {
                OrderType::Market => "MARKET",
                OrderType::Limit => "LIMIT",
                OrderType::Stop => "STOP",
            }
            .to_owned(),
            volume: normalized.volume,
            price: normalized.price,
            stop_loss: Px::new(0.0, spec.digits),
            take_profit: Px::new(0.0, spec.digits),
            time_msc: order.market_time_msc,
        };
        // In flight before the first byte leaves: if the connection dies mid-write, the order's
        // outcome is unknown, not forgotten.
        self.accounts.with(&state.account, |account| {
            account.in_flight.insert(
                order.client_order_id.clone(),
                SentOrder {
                    chain_id: order.chain_id,
                    volume: normalized.volume.value,
                    filled: 0.0,
                    sent_ns: start,
                    outcome_known: true,
                    acked: false,
                    session: state.id.clone(),
                },
            );
        });
        state.send(conn, Message::Order(wire)).await?;
        conn.flush().await?;
        mtml_core::crash_point::crash_point(CRASH_AFTER_ORDER_WRITTEN);
        let written = monotonic_ns();
        self.stats.orders_sent.fetch_add(1, Ordering::Relaxed);
        self.chain_log.record(order.chain_id, Stage::BridgeSend, start, written - start);
        if order.origin_received_ns > 0 {
            self.chain_log.record_tick_to_order(written.saturating_sub(order.origin_received_ns));
        }
        debug!(chain_id = %order.chain_id, client_order_id = %order.client_order_id, "order sent");
        Ok(())
    }
}


/// Marks the orders a session sent and did not settle (and not already marked) as having an
/// unknown outcome; returns them.
pub(super) fn mark_unknown(in_flight: &mut HashMap<String, SentOrder>, session: &str) -> Vec<(String, ChainId)> {
    let mut marked = Vec::new();
    for (id, order) in in_flight.iter_mut().filter(|(_, o)| o.session == session && o.outcome_known) {
        order.outcome_known = false;
        marked.push((id.clone(), order.chain_id));
    }
    marked.sort();
    marked
}

/// One connection's state.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) id: String,
    /// `login@server`.
    pub(super) account: Arc<str>,
    /// `login@server/session`: ticks' source, unique per connection so that sequence numbers
    /// (which restart with each connection) never collide.
    pub(super) terminal: Arc<str>,
    /// Incoming messages in sequence order.
    pub(super) seq: Sequencer<Envelope>,
    pub(super) out_seq: u64,
    pub(super) specs: HashMap<Symbol, wire::SymbolSpec>,
    pub(super) canonical_by_broker: HashMap<String, Symbol>,
    /// Last (bid, ask) per canonical symbol, to check pending order prices.
    pub(super) quotes: HashMap<Symbol, (f64, f64)>,
    /// Last tick received per broker symbol: the account's map, shared.
    pub(super) resume: Arc<parking_lot::Mutex<HashMap<String, ResumePoint>>>,
    /// The account's leverage, from the hello.
    pub(super) leverage: u32,
    /// The books being received in answer to a SYNC, until SNAPSHOT_END.
    pub(super) sync: Option<Snapshot>,
}

impl Session {
    pub(super) async fn send<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
        message: Message,
    ) -> Result<(), WireError> {
        self.out_seq += 1;
        conn.write_envelope(&Envelope { seq: self.out_seq, message }).await
    }

    pub(super) fn account_event(&self, money: wire::AccountInfo) -> ExecutionEvent {
        ExecutionEvent::Account {
            account: Arc::clone(&self.account),
            leverage: self.leverage,
            balance: money.balance.value,
            equity: money.equity.value,
            margin: money.margin.value,
            free_margin: money.free_margin.value,
        }
    }

    pub(super) fn canonical(&self, broker: &str, mapper: &SymbolMapper) -> Symbol {
        self.canonical_by_broker
            .get(broker)
            .cloned()
            .unwrap_or_else(|| Symbol::new(&mapper.to_canonical(broker)))
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error("refused: {0}")]
    Refused(String),
    #[error("refused: {0}")]
    BadToken(String),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("{0}")]
    Protocol(String),
    #[error("pipeline closed")]
    PipelineClosed,
    #[error("silent longer than the silence timeout")]
    Silent,
}

