//! Who may call mtml, checked in one place for every gRPC service and HTTP endpoint.
//!
//! - [`Role`]: `read` < `trade` < `admin`; a role may do what the roles below it may.
//! - [`Tokens`]: bearer tokens per role, each named, kept as SHA-256 digests and compared in
//!   constant time, with an optional expiry and a revoked list (a revoked token is refused as
//!   revoked by name rather than as unknown, so an operator sees who is still trying).
//! - [`required_role`]: the role each gRPC method needs; a method it does not know needs admin.
//! - [`Guard`]: the check itself, its refusals logged and counted; [`AuthLayer`] puts it in
//!   front of a tonic server, and HTTP endpoints call [`Guard::admit`] with their path.
//! - [`Bearer`]: the client side, presenting a token on every call.
//!
//! A guard with no tokens at all admits everyone as admin: the embedded defaults listen on
//! loopback only, and the binary refuses to listen beyond loopback without tokens.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a caller may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Features, predictions, inference, chains, metrics, the state of things.
    Read,
    /// A bridge streaming ticks and executing orders.
    Trade,
    /// Trading state, models (upload, rollout, promote, rollback, repository load and unload).
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Read, Role::Trade, Role::Admin];

    /// `read`, `trade` or `admin`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Trade => "trade",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One configured token: its name (shown in logs and the audit log; the token never is), its
/// role, its digest, and when it stops being valid.
#[derive(Clone)]
struct Entry {
    name: String,
    role: Role,
    digest: [u8; 32],
    expires_ms: Option<i64>,
    revoked: bool,
}

/// The bearer tokens a server accepts.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.entries.iter().map(|e| format!("{}:{}", e.name, e.role)).collect();
        f.debug_struct("Tokens").field("names", &names).finish_non_exhaustive()
    }
}

/// The hex SHA-256 of a token, as `name:sha256:<hex>` takes it (`mtml auth hash`).
pub fn token_digest_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(digest)
}

/// Whether two secrets are the same, in time that depends on neither (their SHA-256 digests
/// are compared in constant time, so not even the length leaks).
pub fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b): ([u8; 32], [u8; 32]) = (Sha256::digest(given.as_bytes()).into(), Sha256::digest(expected.as_bytes()).into());
    bool::from(a.ct_eq(&b))
}

/// When a token stops being valid: `2027-01-31` (the start of that day, UTC) or an RFC 3339
/// time; epoch ms.
pub fn parse_expiry(text: &str) -> Result<i64, String> {
    let at = match time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        Ok(at) => at,
        Err(_) => {
            let date = time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
                .map_err(|_| format!("{text:?} is not a date like 2027-01-31 or an RFC 3339 time"))?;
            date.midnight().assume_utc()
        }
    };
    Ok(i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
}

impl Tokens {
    /// Adds a token of `role` from `spec`: `name:token`, or `name:sha256:<64 hex digits>` to
    /// keep the token itself out of the configuration. The error names the entry by its name
    /// (or position) only, never its secret.
    pub fn add(&mut self, role: Role, spec: &str) -> Result<(), String> {
        let (name, secret) = spec.split_once(':').ok_or_else(|| format!("a {role} token entry has no name: write name:token"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) {
            return Err(format!("{role} token name {name:?}: use letters, digits and - _ . @"));
        }
        if self.entries.iter().any(|e| e.name == name) {
            return Err(format!("token name {name:?} is used twice"));
        }
        let digest = match secret.strip_prefix("sha256:") {
            Some(hex) => parse_hex_digest(hex).ok_or_else(|| format!("token {name:?}: sha256: needs 64 hex digits"))?,
            None if secret.len() < 16 => return Err(format!("token {name:?} is shorter than 16 characters")),
            None => Sha256::digest(secret.as_bytes()).into(),
        };
        self.entries.push(Entry { name: name.to_owned(), role, digest, expires_ms: None, revoked: false });
        Ok(())
    }

    /// Sets when the token named `name` expires.
    pub fn expire(&mut self, name: &str, at_ms: i64) -> Result<(), String> {
        let entry = self.entries.iter_mut().find(|e| e.name == name).ok_or_else(|| format!("no token is named {name:?}"))?;
        entry.expires_ms = Some(at_ms);
        Ok(())
    }

    /// Marks the token named `name` revoked.
    pub fn revoke(&mut self, name: &str) -> Result<(), String> {
        let entry = self.entries.iter_mut().find(|e| e.name == name).ok_or_else(|| format!("no token is named {name:?}"))?;
        entry.revoked = true;
        Ok(())
    }

    /// Adds a token of `role` named `name` with a fresh random secret, for a process calling
    /// itself (its own loopback streams, its Telegram console); returns the secret.
    pub fn add_internal(&mut self, name: &str, role: Role) -> String {
        let secret: String = (0..4).map(|_| format!("{:016x}", rand::random::<u64>())).collect();
        self.entries.retain(|e| e.name != name);
        self.entries.push(Entry { name: name.to_owned(), role, digest: Sha256::digest(secret.as_bytes()).into(), expires_ms: None, revoked: false });
        secret
    }

    /// Whether no token is configured (everyone is admitted).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller presenting `token`, if it is one of these. Every entry is compared, in
    /// constant time, whatever matches.
    fn find(&self, token: &str) -> Option<&Entry> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        found
    }
}

/// Who is calling: a token's name and role, or `anonymous` admin when no tokens are configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Caller {
    /// The caller of a call that went through a guard, from the request's extensions.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&Caller> {
        request.extensions().get::<Caller>()
    }
}

/// Why a call was refused. The text names the role needed and, for a known token, its name;
/// never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `authorization: Bearer` header.
    NoToken {
        /// The role the call needs.
        needed: Role,
    },
    /// A token no entry matches.
    UnknownToken {
        /// The role the call needs.
        needed: Role,
    },
    /// A token past its expiry.
    Expired {
        /// The token's name.
        name: String,
        /// The role the call needs.
        needed: Role,
    },
    /// A revoked token.
    Revoked {
        /// The token's name.
        name: String,
        /// The role the call needs.
        needed: Role,
    },
    /// A valid token of a lower role.
    Insufficient {
        /// The token's name.
        name: String,
        /// Its role.
        has: Role,
        /// The role the call needs.
        needed: Role,
    },
}

impl Refusal {
    /// The short name counted in the metrics (`mtml_auth_refusals_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoToken { .. } => "no_token",
            Refusal::UnknownToken { .. } => "unknown_token",
            Refusal::Expired { .. } => "expired",
            Refusal::Revoked { .. } => "revoked",
            Refusal::Insufficient { .. } => "insufficient_role",
        }
    }

    /// `UNAUTHENTICATED` for a caller not known, `PERMISSION_DENIED` for one known but not allowed.
    pub fn status(&self) -> tonic::Status {
        match self {
            Refusal::Insufficient { .. } => tonic::Status::permission_denied(self.to_string()),
            _ => tonic::Status::unauthenticated(self.to_string()),
        }
    }

    /// The HTTP status of the same refusal: 401 or 403.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            Refusal::Insufficient { .. } => http::StatusCode::FORBIDDEN,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoToken { needed } => write!(f, "no token: this needs the {needed} role (send authorization: Bearer <token>)"),
            Refusal::UnknownToken { needed } => write!(f, "unknown token: this needs the {needed} role"),
            Refusal::Expired { name, needed } => write!(f, "token {name:?} has expired: this needs the {needed} role"),
            Refusal::Revoked { name, needed } => write!(f, "token {name:?} was revoked: this needs the {needed} role"),
            Refusal::Insufficient { name, has, needed } => write!(f, "token {name:?} has the {has} role: this needs the {needed} role"),
        }
    }
}

/// The role a gRPC method (`/package.Service/Method`) needs, or `None` for the standard health
/// service, which probes call without a token. Anything not listed needs admin.
pub fn required_role(path: &str) -> Option<Role> {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    Some(match (service, method) {
        ("grpc.health.v1.Health", _) => return None,
        ("mtml.v1.Features" | "mtml.v1.Prediction" | "mtml.v1.Chains", _) => Role::Read,
        ("inference.GRPCInferenceService", "RepositoryModelLoad" | "RepositoryModelUnload") => Role::Admin,
        ("inference.GRPCInferenceService", _) => Role::Read,
        ("mtml.v1.Ingestion" | "mtml.v1.Bridge", _) => Role::Trade,
        ("mtml.v1.Admin", "GetTradingState" | "GetDesk") => Role::Read,
        ("mtml.v1.ModelAdmin", "ListModels" | "ShowModel" | "CompareModels") => Role::Read,
        _ => Role::Admin,
    })
}

/// Refusals by reason, for the metrics.
#[derive(Debug, Default)]
pub struct RefusalCounts {
    counts: [AtomicU64; 5],
}

const REASONS: [&str; 5] = ["no_token", "unknown_token", "expired", "revoked", "insufficient_role"];

impl RefusalCounts {
    fn add(&self, refusal: &Refusal) {
        if let Some(i) = REASONS.iter().position(|r| *r == refusal.reason()) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Each reason with its count.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        REASONS.iter().zip(&self.counts).map(|(r, c)| (*r, c.load(Ordering::Relaxed))).collect()
    }
}

/// An admin call as the audit log keeps it: who, what, how it ended, and its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audited {
    /// The caller's token name (`anonymous` without tokens, `?` when refused before one was known).
    pub actor: String,
    /// The method (`/mtml.v1.Admin/SetTradingState`).
    pub action: String,
    /// `done`, or `failed: <code>: <message>`, or `refused: <why>`.
    pub outcome: String,
    /// The trace id of the call's `traceparent` header, or empty.
    pub chain_id: String,
}

/// Where audited calls go; called on the serving task, so it must not block.
pub type AuditSink = Arc<dyn Fn(Audited) + Send + Sync>;

/// The check every call goes through.
#[derive(Default)]
pub struct Guard {
    tokens: Tokens,
    refusals: RefusalCounts,
    audit: Option<AuditSink>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("tokens", &self.tokens).field("refusals", &self.refusals).field("audited", &self.audit.is_some()).finish()
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

impl Guard {
    /// A guard over `tokens` (none: everyone is admin).
    pub fn new(tokens: Tokens) -> Arc<Self> {
        Arc::new(Self { tokens, refusals: RefusalCounts::default(), audit: None })
    }

    /// A guard that also hands every call needing the admin role, admitted or refused, to `audit`.
    pub fn audited(tokens: Tokens, audit: AuditSink) -> Arc<Self> {
        Arc::new(Self { tokens, refusals: RefusalCounts::default(), audit: Some(audit) })
    }

    /// Whether calls are checked at all.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Refusals so far, by reason.
    pub fn refusals(&self) -> &RefusalCounts {
        &self.refusals
    }

    /// Admits a call to `what` (a gRPC path or an HTTP path, for the log) needing `needed`, with
    /// the `authorization` header given; a refusal is logged and counted.
    pub fn admit(&self, what: &str, needed: Role, authorization: Option<&http::HeaderValue>) -> Result<Caller, Refusal> {
        let decided = self.decide(needed, authorization, now_ms());
        if let Err(refusal) = &decided {
            self.refusals.add(refusal);
            tracing::warn!(call = what, reason = refusal.reason(), "refused: {refusal}");
        }
        decided
    }

    fn decide(&self, needed: Role, authorization: Option<&http::HeaderValue>, now_ms: i64) -> Result<Caller, Refusal> {
        if self.tokens.is_empty() {
            return Ok(Caller { name: "anonymous".into(), role: Role::Admin });
        }
        let token = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::NoToken { needed })?;
        let entry = self.tokens.find(token).ok_or(Refusal::UnknownToken { needed })?;
        let name = entry.name.clone();
        if entry.revoked {
            return Err(Refusal::Revoked { name, needed });
        }
        if entry.expires_ms.is_some_and(|at| now_ms >= at) {
            return Err(Refusal::Expired { name, needed });
        }
        if entry.role < needed {
            return Err(Refusal::Insufficient { name, has: entry.role, needed });
        }
        Ok(Caller { name, role: entry.role })
    }
}

/// Puts a [`Guard`] in front of a tonic server (`Server::builder().layer(AuthLayer::new(..))`).
#[derive(Debug, Clone)]
pub struct AuthLayer {
    guard: Arc<Guard>,
}

impl AuthLayer {
    /// A layer checking with `guard`.
    pub fn new(guard: Arc<Guard>) -> Self {
        Self { guard }
    }
}

/// The layer's place in a tonic server's type: `Router<Guarded>`.
pub type Guarded = tower_layer::Stack<AuthLayer, tower_layer::Identity>;

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, guard: Arc::clone(&self.guard) }
    }
}

/// A service whose calls are admitted by a [`Guard`] first; the caller goes into the request's
/// extensions ([`Caller::of`]).
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S, B> tower_service::Service<http::Request<B>> for AuthService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let Some(needed) = required_role(&path) else { return Box::pin(self.inner.call(request)) };
        let admitted = self.guard.admit(&path, needed, request.headers().get(http::header::AUTHORIZATION));
        let audit = self.guard.audit.clone().filter(|_| needed == Role::Admin);
        // Only an audited call needs its chain.
        let chain_id = match audit {
            Some(_) => request.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(trace_id).unwrap_or_default(),
            None => String::new(),
        };
        match admitted {
            Ok(caller) => {
                let actor = caller.name.clone();
                request.extensions_mut().insert(caller);
                let answer = self.inner.call(request);
                Box::pin(async move {
                    let response = answer.await?;
                    if let Some(audit) = audit {
                        audit(Audited { actor, action: path, outcome: outcome_of(&response), chain_id });
                    }
                    Ok(response)
                })
            }
            Err(refusal) => {
                if let Some(audit) = audit {
                    let actor = match &refusal {
                        Refusal::Expired { name, .. } | Refusal::Revoked { name, .. } | Refusal::Insufficient { name, .. } => name.clone(),
                        Refusal::NoToken { .. } | Refusal::UnknownToken { .. } => "?".into(),
                    };
                    audit(Audited { actor, action: path, outcome: format!("refused: {refusal}"), chain_id });
                }
                let response = refusal.status().into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`).
fn trace_id(header: &str) -> Option<String> {
    let id = header.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

/// How a gRPC call ended, from its response headers: a handler's error comes back as a
/// trailers-only response with `grpc-status` in the headers; a success carries it in trailers.
fn outcome_of<B>(response: &http::Response<B>) -> String {
    let status = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok());
    match status {
        None | Some(0) => "done".into(),
        Some(code) => {
            let message = response.headers().get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or_default();
            format!("failed: {:?}: {}", tonic::Code::from_i32(code), percent_decode(message))
        }
    }
}

/// `grpc-message` is percent-encoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The client side: presents a bearer token on every call (none when empty).
#[derive(Clone, Default)]
pub struct Bearer {
    header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bearer").field("token", &self.header.as_ref().map(|_| "<hidden>")).finish()
    }
}

impl Bearer {
    /// Presents `token`; an empty one presents nothing. A token that cannot be a header value
    /// is refused by name of the problem, never shown.
    pub fn new(token: &str) -> Result<Self, String> {
        if token.is_empty() {
            return Ok(Self::default());
        }
        let mut header: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            format!("Bearer {token}").parse().map_err(|_| "the client token has characters a header cannot carry".to_owned())?;
        header.set_sensitive(true);
        Ok(Self { header: Some(header) })
    }

    /// Adds the token to one request (for clients built without the interceptor).
    pub fn authorize<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(header) = &self.header {
            request.metadata_mut().insert("authorization", header.clone());
        }
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.authorize(&mut request);
        Ok(request)
    }
}

/// A channel whose every call presents a [`Bearer`] token.
pub type AuthChannel = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

#[cfg(test)]
mod tests {
    use super::*;

    fn header(token: &str) -> http::HeaderValue {
        http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
    }

    fn tokens() -> Tokens {
        let mut tokens = Tokens::default();
        tokens.add(Role::Read, "grafana:read-token-0123456789").unwrap();
        tokens.add(Role::Trade, &format!("ea:sha256:{}", token_digest_hex("trade-token-0123456789"))).unwrap();
        tokens.add(Role::Admin, "desk:admin-token-0123456789").unwrap();
        tokens.add(Role::Admin, "old:old-admin-token-0123456789").unwrap();
        tokens.add(Role::Read, "ci:ci-read-token-0123456789").unwrap();
        tokens.revoke("old").unwrap();
        tokens.expire("ci", 1_000).unwrap();
        tokens
    }

    #[test]
    fn each_role_may_do_what_those_below_it_may_and_each_refusal_says_why() {
        let guard = Guard { tokens: tokens(), ..Guard::default() };
        let decide = |needed, token: Option<&str>, now| guard.decide(needed, token.map(header).as_ref(), now);
        assert_eq!(decide(Role::Read, Some("read-token-0123456789"), 0).unwrap(), Caller { name: "grafana".into(), role: Role::Read });
        assert_eq!(decide(Role::Trade, Some("trade-token-0123456789"), 0).unwrap().name, "ea", "a hashed token matches");
        assert_eq!(decide(Role::Read, Some("admin-token-0123456789"), 0).unwrap().role, Role::Admin);
        let refused = decide(Role::Trade, Some("read-token-0123456789"), 0).unwrap_err();
        assert_eq!(refused.to_string(), "token \"grafana\" has the read role: this needs the trade role");
        assert_eq!(refused.status().code(), tonic::Code::PermissionDenied);
        let refused = decide(Role::Read, None, 0).unwrap_err();
        assert_eq!((refused.reason(), refused.status().code()), ("no_token", tonic::Code::Unauthenticated));
        assert!(refused.to_string().contains("needs the read role"));
        let refused = decide(Role::Read, Some("guess-0123456789abcdef"), 0).unwrap_err();
        assert_eq!(refused, Refusal::UnknownToken { needed: Role::Read });
        assert!(!refused.to_string().contains("guess"), "the token is never repeated");
        assert_eq!(decide(Role::Read, Some("old-admin-token-0123456789"), 0).unwrap_err(), Refusal::Revoked { name: "old".into(), needed: Role::Read });
        assert!(decide(Role::Read, Some("ci-read-token-0123456789"), 999).is_ok(), "valid until its expiry");
        assert_eq!(decide(Role::Read, Some("ci-read-token-0123456789"), 1_000).unwrap_err(), Refusal::Expired { name: "ci".into(), needed: Role::Read });
        let open = Guard::default();
        assert_eq!(open.decide(Role::Admin, None, 0).unwrap().role, Role::Admin, "no tokens: open");
    }

    #[test]
    fn bad_entries_are_named_without_their_secret() {
        let mut tokens = Tokens::default();
        assert!(tokens.add(Role::Read, "no-name-here").unwrap_err().contains("no name"));
        let short = tokens.add(Role::Read, "x:short-secret").unwrap_err();
        assert!(short.contains("shorter than 16") && !short.contains("short-secret"), "{short}");
        assert!(tokens.add(Role::Read, "x:sha256:abc").unwrap_err().contains("64 hex digits"));
        tokens.add(Role::Read, "x:0123456789abcdef0").unwrap();
        assert!(tokens.add(Role::Admin, "x:another-long-secret").unwrap_err().contains("used twice"));
        assert!(tokens.revoke("y").unwrap_err().contains("no token is named \"y\""));
        assert_eq!(parse_expiry("1970-01-02").unwrap(), 86_400_000);
        assert_eq!(parse_expiry("1970-01-01T00:00:01Z").unwrap(), 1_000);
        assert!(parse_expiry("soon").unwrap_err().contains("not a date"));
    }

    #[test]
    fn every_method_needs_the_role_its_service_says() {
        assert_eq!(required_role("/grpc.health.v1.Health/Check"), None);
        assert_eq!(required_role("/mtml.v1.Features/GetLatest"), Some(Role::Read));
        assert_eq!(required_role("/inference.GRPCInferenceService/ModelInfer"), Some(Role::Read));
        assert_eq!(required_role("/inference.GRPCInferenceService/RepositoryModelLoad"), Some(Role::Admin));
        assert_eq!(required_role("/mtml.v1.Bridge/ExecuteOrders"), Some(Role::Trade));
        assert_eq!(required_role("/mtml.v1.Ingestion/StreamTicks"), Some(Role::Trade));
        assert_eq!(required_role("/mtml.v1.Admin/GetDesk"), Some(Role::Read));
        assert_eq!(required_role("/mtml.v1.Admin/SetTradingState"), Some(Role::Admin));
        assert_eq!(required_role("/mtml.v1.ModelAdmin/UploadModel"), Some(Role::Admin));
        assert_eq!(required_role("/mtml.v1.ModelAdmin/CompareModels"), Some(Role::Read));
        assert_eq!(required_role("/mtml.v2.Something/New"), Some(Role::Admin), "unknown: admin");
    }
}
