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

/// `[client]`: how this process calls another mtml (the command line's `--server` commands, a
/// bridge streaming to a pipeline, a pipeline sending orders to a bridge, the Telegram bot beside
/// a remote instance, an instance calling itself). The command line takes them from the
/// environment: `MTML_CLIENT_TOKEN`, `MTML_CLIENT_CA`, `MTML_CLIENT_CERT`, `MTML_CLIENT_KEY`.
#[derive(Clone, PartialEq, Default)]
pub struct ClientSettings {
    /// The bearer token; empty for none. Never logged or shown.
    pub token: String,
    /// The authority that signs the servers' certificates (for `https://` URLs); `None`: the
    /// system's roots are not used, so an `https://` server needs it.
    pub ca: Option<std::path::PathBuf>,
    /// This process's certificate, for servers that ask for one (mTLS).
    pub cert: Option<std::path::PathBuf>,
    /// Its private key.
    pub key: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("token", &if self.token.is_empty() { "" } else { "<hidden>" })
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key.as_ref().map(|_| "<file>"))
            .finish()
    }
}

impl ClientSettings {
    /// The command line's: from `MTML_CLIENT_*` variables.
    pub fn from_environment() -> Self {
        let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        Self {
            token: var(CLIENT_TOKEN_ENV).unwrap_or_default(),
            ca: var("MTML_CLIENT_CA").map(Into::into),
            cert: var("MTML_CLIENT_CERT").map(Into::into),
            key: var("MTML_CLIENT_KEY").map(Into::into),
        }
    }

    /// The TLS side of calls to `https://` servers.
    fn tls(&self) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
        let mut tls = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(crate::tls::read_pem("client.ca", ca)?));
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let identity = tonic::transport::Identity::from_pem(crate::tls::read_pem("client.cert", cert)?, crate::tls::read_pem("client.key", key)?);
                tls = tls.identity(identity);
            }
            (None, None) => {}
            _ => anyhow::bail!("client.cert and client.key go together: give both or neither"),
        }
        Ok(tls)
    }
}

/// A running instance's gRPC endpoint, as given with `--server`, and how to call it: the token
/// presented, and TLS for an `https://` URL.
#[derive(Debug, Clone)]
pub struct ServerUrl {
    url: String,
    bearer: mtml_auth::Bearer,
    tls: Option<Box<tonic::transport::ClientTlsConfig>>,
}

impl PartialEq for ServerUrl {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl Eq for ServerUrl {}

impl ServerUrl {
    /// Parses `http://host:port` (or `https://`); anything else is refused with the form to use.
    /// Calls present the environment's client settings.
    pub fn parse(given: &str) -> anyhow::Result<Self> {
        let url = given.trim_end_matches('/');
        let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
        match rest {
            Some(authority) if !authority.is_empty() && !authority.contains('/') => {
                Self { url: url.to_owned(), bearer: mtml_auth::Bearer::default(), tls: None }.with_client(&ClientSettings::from_environment())
            }
            _ => anyhow::bail!("--server {given:?}: give the instance's URL, for example http://127.0.0.1:50051"),
        }
    }

    /// The URL of the gRPC API a configuration listens on (a wildcard address is reached on
    /// loopback); `https://` when it serves TLS.
    pub fn of_listener(listen: std::net::SocketAddr, tls: bool) -> Self {
        let host = match listen.ip() {
            ip if ip.is_unspecified() && ip.is_ipv6() => "[::1]".to_owned(),
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let scheme = if tls { "https" } else { "http" };
        Self { url: format!("{scheme}://{host}:{}", listen.port()), bearer: mtml_auth::Bearer::default(), tls: None }
    }

    /// The same server, called with `client`'s token (when it has one) and TLS settings.
    pub fn with_client(mut self, client: &ClientSettings) -> anyhow::Result<Self> {
        self = self.with_token(&client.token)?;
        if self.url.starts_with("https://") {
            self.tls = Some(Box::new(client.tls()?));
        }
        Ok(self)
    }

    /// The same server, presenting `token` instead (empty: no change).
    pub fn with_token(self, token: &str) -> anyhow::Result<Self> {
        if token.is_empty() {
            return Ok(self);
        }
        let bearer = mtml_auth::Bearer::new(token).map_err(anyhow::Error::msg)?;
        Ok(Self { bearer, ..self })
    }

    /// The token presented.
    pub fn bearer(&self) -> &mtml_auth::Bearer {
        &self.bearer
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The endpoint, with TLS for `https://`, without timeouts (for long-lived streams).
    pub fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let endpoint = Endpoint::from_shared(self.url.clone()).with_context(|| format!("{} is not a valid URL", self.url))?;
        match &self.tls {
            Some(tls) => endpoint.tls_config(tls.as_ref().clone()).with_context(|| format!("TLS settings for {}", self.url)),
            None => Ok(endpoint),
        }
    }

    /// A connected channel whose calls time out after [`request_timeout`].
    pub async fn connect(&self) -> anyhow::Result<mtml_auth::AuthChannel> {
        let endpoint = self.endpoint()?.connect_timeout(CONNECT_TIMEOUT.min(request_timeout())).timeout(request_timeout());
        let channel: Channel = endpoint.connect().await.map_err(|e| connect_error(&self.url, &e))?;
        Ok(tonic::service::interceptor::InterceptedService::new(channel, self.bearer.clone()))
    }
}

/// Why connecting failed, with the TLS cause named (a transport error's own text is only
/// "transport error").
fn connect_error(url: &str, error: &tonic::transport::Error) -> anyhow::Error {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let why = if causes.is_empty() { error.to_string() } else { causes.join(": ") };
    anyhow::anyhow!("connecting to mtml at {url}: {why}")
}

impl std::str::FromStr for ServerUrl {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        Self::parse(s)
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
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
    // Transport failures that only say "h2", "canceled" or "transport error": what they most
    // likely mean for a caller (a TLS server called in plain text, or refusing the client's
    // certificate, breaks off the connection in one of these ways).
    let broke = (status.code() == tonic::Code::Internal && status.message().contains("h2 protocol error"))
        || (status.code() == tonic::Code::Cancelled && status.message().contains("operation was canceled"))
        || (status.code() == tonic::Code::Unknown && status.message() == "transport error");
    if broke {
        return anyhow::anyhow!(
            "the server closed the connection before answering ({}): if it serves TLS, call it with https:// and MTML_CLIENT_CA; if it asks for client certificates, also MTML_CLIENT_CERT and MTML_CLIENT_KEY",
            status.message()
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
        assert_eq!(ServerUrl::of_listener("0.0.0.0:50051".parse().unwrap(), false).as_str(), "http://127.0.0.1:50051");
        assert_eq!(ServerUrl::of_listener("[::]:7".parse().unwrap(), false).as_str(), "http://[::1]:7");
        assert_eq!(ServerUrl::of_listener("10.1.2.3:9".parse().unwrap(), true).as_str(), "https://10.1.2.3:9");
    }
}
