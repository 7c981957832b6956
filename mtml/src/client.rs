//! Naming a running instance on the command line: every command that talks to one takes
//! `--server URL` (`http://host:port`; `https://` once TLS is served), and every call through
//! it has a connect and a request timeout, so a server that accepts and never answers costs a
//! clear error, not a hang. Every call presents the caller's token: `MTML_CLIENT_TOKEN` from
//! the environment, unless the process set another ([`ServerUrl::with_token`]).

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use tonic::transport::{Channel, Endpoint};

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take by default (an upload of a large model included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

static TIMEOUT: OnceLock<Duration> = OnceLock::new();

/// Sets how long one call may take, for the whole process (the command line's `--timeout`);
/// the first setting holds.
pub fn set_request_timeout(timeout: Duration) {
    let _ = TIMEOUT.set(timeout);
}

/// How long one call may take: `--timeout`, else [`REQUEST_TIMEOUT`].
pub fn request_timeout() -> Duration {
    TIMEOUT.get().copied().unwrap_or(REQUEST_TIMEOUT)
}

/// The variable holding the token the command line presents (`[client] token` of a
/// configuration, for the services that load one).
pub const CLIENT_TOKEN_ENV: &str = "MTML_CLIENT_TOKEN";

/// A running instance's gRPC endpoint, as given with `--server`, and the token presented to it.
#[derive(Debug, Clone)]
pub struct ServerUrl(String, mtml_auth::Bearer);

impl PartialEq for ServerUrl {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for ServerUrl {}

/// The token of the environment, presented by default.
fn environment_bearer() -> anyhow::Result<mtml_auth::Bearer> {
    let token = std::env::var(CLIENT_TOKEN_ENV).unwrap_or_default();
    mtml_auth::Bearer::new(token.trim()).map_err(|e| anyhow::anyhow!("{CLIENT_TOKEN_ENV}: {e}"))
}

impl ServerUrl {
    /// Parses `http://host:port` (or `https://`); anything else is refused with the form to use.
    pub fn parse(given: &str) -> anyhow::Result<Self> {
        let url = given.trim_end_matches('/');
        let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
        match rest {
            Some(authority) if !authority.is_empty() && !authority.contains('/') => Ok(Self(url.to_owned(), environment_bearer()?)),
            _ => anyhow::bail!("--server {given:?}: give the instance's URL, for example http://127.0.0.1:50051"),
        }
    }

    /// The URL of the gRPC API a configuration listens on (a wildcard address is reached on
    /// loopback).
    pub fn of_listener(listen: std::net::SocketAddr) -> Self {
        let host = match listen.ip() {
            ip if ip.is_unspecified() && ip.is_ipv6() => "[::1]".to_owned(),
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        Self(format!("http://{host}:{}", listen.port()), environment_bearer().unwrap_or_default())
    }

    /// The same server, presenting `token` instead (empty: the environment's).
    pub fn with_token(self, token: &str) -> anyhow::Result<Self> {
        if token.is_empty() {
            return Ok(self);
        }
        let bearer = mtml_auth::Bearer::new(token).map_err(anyhow::Error::msg)?;
        Ok(Self(self.0, bearer))
    }

    /// The token presented.
    pub fn bearer(&self) -> &mtml_auth::Bearer {
        &self.1
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A connected channel whose calls time out after [`request_timeout`].
    pub async fn connect(&self) -> anyhow::Result<mtml_auth::AuthChannel> {
        let endpoint = Endpoint::from_shared(self.0.clone())
            .with_context(|| format!("{} is not a valid URL", self.0))?
            .connect_timeout(CONNECT_TIMEOUT.min(request_timeout()))
            .timeout(request_timeout());
        let channel: Channel = endpoint.connect().await.with_context(|| format!("connecting to mtml at {}", self.0))?;
        Ok(tonic::service::interceptor::InterceptedService::new(channel, self.1.clone()))
    }
}

impl std::str::FromStr for ServerUrl {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        Self::parse(s)
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A gRPC refusal as an error that keeps the server's words; a timeout says which call and how
/// long it waited.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    if status.code() == tonic::Code::Cancelled && status.message().contains("Timeout") {
        return anyhow::anyhow!(
            "no answer within {} s: the server accepted the call and never answered (is it an mtml gRPC port? --timeout waits longer)",
            request_timeout().as_secs_f64()
        );
    }
    if status.code() == tonic::Code::Unimplemented && status.message().is_empty() {
        return anyhow::anyhow!(
            "the instance does not serve this API (models commands need an instance running with model.from_registry = true)"
        );
    }
    anyhow::anyhow!("{}: {}", status.code().description(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_named_by_its_url() {
        assert_eq!(ServerUrl::parse("http://127.0.0.1:50051/").unwrap().as_str(), "http://127.0.0.1:50051");
        assert!(ServerUrl::parse("https://mtml.example:443").is_ok());
        for bad in ["127.0.0.1:50051", "http://", "grpc://host:1", "http://host:1/path"] {
            let error = ServerUrl::parse(bad).unwrap_err().to_string();
            assert!(error.contains("for example http://127.0.0.1:50051"), "{bad}: {error}");
        }
        assert_eq!(ServerUrl::of_listener("0.0.0.0:50051".parse().unwrap()).as_str(), "http://127.0.0.1:50051");
        assert_eq!(ServerUrl::of_listener("[::]:7".parse().unwrap()).as_str(), "http://[::1]:7");
        assert_eq!(ServerUrl::of_listener("10.1.2.3:9".parse().unwrap()).as_str(), "http://10.1.2.3:9");
    }
}
