//! A connection's first phase: hello (version and token), then the snapshot until
//! SNAPSHOT_END, then RESUME and START.

use super::*;

impl Bridge {

    pub(super) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        session: &str,
        cancel: &CancellationToken,
    ) -> Result<Session, SessionError> {
        let first = conn
            .read_envelope()
            .await?
            .ok_or_else(|| SessionError::Protocol("connection closed before hello".into()))?;
        let Message::Hello(hello) = first.message else {
            return Err(SessionError::Protocol(format!(
                "expected HELLO first, got {}",
                first.message.type_name()
            )));
        };
        let refusal = if hello.version != PROTOCOL_VERSION {
            Some((
                "version",
                format!(
                    "protocol version {} is not supported; this bridge speaks version {PROTOCOL_VERSION}",
                    hello.version
                ),
            ))
        } else if !mtml_auth::same_secret(&hello.token, &self.config.token) {
            Some(("auth", "wrong auth token".to_owned()))
        } else {
            None
        };
        if let Some((code, reason)) = refusal {
            let refused = Message::Refused { code: code.into(), reason: reason.clone() };
            conn.write_envelope(&Envelope { seq: 1, message: refused }).await?;
            conn.flush().await?;
            let refused = format!("{reason} (login {} on {})", hello.login, hello.server);
            return Err(if code == "auth" { SessionError::BadToken(refused) } else { SessionError::Refused(refused) });
        }
        let account: Arc<str> = Arc::from(format!("{}@{}", hello.login, hello.server));
        let unknown = self.accounts.with(&account, |state| {
            match state.session.replace((session.to_owned(), cancel.clone())) {
                Some((old, token)) => {
                    info!(%old, "account reconnected; closing its previous connection");
                    token.cancel();
                    mark_unknown(&mut state.in_flight, &old)
                }
                None => Vec::new(),
            }
        });
        self.announce_unknown(&account, unknown);
        let mut state = Session {
            id: session.to_owned(),
            terminal: Arc::from(format!("{account}/{session}")),
            account,
            seq: Sequencer::new(first.seq, MAX_HELD),
            out_seq: 0,
            specs: HashMap::new(),
            canonical_by_broker: HashMap::new(),
            quotes: HashMap::new(),
            resume: Arc::default(),
            leverage: hello.leverage,
            sync: None,
        };
        let welcome = Message::Welcome { version: PROTOCOL_VERSION, session: session.to_owned() };
        state.send(conn, welcome).await?;
        conn.flush().await?;
        let mut snapshot = Snapshot::default();
        loop {
            let envelope = conn
                .read_envelope()
                .await?
                .ok_or_else(|| SessionError::Protocol("connection closed during snapshot".into()))?;
            self.check_sequence(&mut state, envelope.seq);
            match envelope.message {
                Message::Symbol(spec) => {
                    let canonical = Symbol::new(&self.config.symbols.to_canonical(&spec.name));
                    debug!(broker = %spec.name, %canonical, "symbol registered");
                    state.canonical_by_broker.insert(spec.name.clone(), canonical.clone());
                    state.specs.insert(canonical, spec);
                }
                Message::Position(position) => snapshot.positions.push(position),
                Message::Pending(pending) => snapshot.pending.push(pending),
                Message::Deal(deal) => snapshot.deals.push(deal),
                Message::Account(money) => snapshot.account = Some(money),
                Message::SnapshotEnd => break,
                other => {
                    return Err(SessionError::Protocol(format!(
                        "{} before SNAPSHOT_END",
                        other.type_name()
                    )));
                }
            }
        }
        let resume = self.apply_books(&state, &snapshot, Books::Connect).await?;
        let mut symbols: Vec<String> =
            state.specs.values().map(|spec| spec.name.clone()).collect();
        symbols.sort();
        let points: Vec<(String, ResumePoint)> = {
            let resume = resume.lock();
            symbols.into_iter().filter_map(|s| resume.get(&s).map(|p| (s, *p))).collect()
        };
        state.resume = resume;
        for (symbol, point) in points {
            {
                let message = Message::Resume { symbol, time_msc: point.time_msc, count: point.count };
                state.send(conn, message).await?;
            }
        }
        state.send(conn, Message::Start).await?;
        conn.flush().await?;
        Ok(state)
    }
}
