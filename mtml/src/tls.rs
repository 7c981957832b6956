//! TLS for the gRPC API (rustls, through tonic): the server's certificate and key, and the
//! authority its clients' certificates must be signed by (mTLS), from PEM files named in the
//! configuration; every problem names the setting and the file.

use std::path::Path;

use anyhow::Context as _;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use std::path::PathBuf;

/// `[tls]`: the gRPC API speaks TLS with this certificate and key (PEM
/// files); with `client_ca`, every client must present a certificate signed by it (mTLS).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsSettings {
    /// The certificate chain.
    pub cert: Option<PathBuf>,
    /// Its private key.
    pub key: Option<PathBuf>,
    /// The authority clients' certificates must be signed by; `None` asks for none.
    pub client_ca: Option<PathBuf>,
}

/// The PEM file `path` given as `setting`, checked to hold at least one PEM block.
pub fn read_pem(setting: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("{setting} {}: cannot read it", path.display()))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        anyhow::bail!("{setting} {}: no PEM block in it (expected -----BEGIN …-----)", path.display());
    }
    Ok(bytes)
}

/// The servers' TLS settings, `None` when `tls.cert` and `tls.key` are not set; checked now, so
/// a key that does not belong to the certificate stops the start with its name.
pub fn server_tls(settings: &TlsSettings) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (cert, key) = match (&settings.cert, &settings.key) {
        (None, None) if settings.client_ca.is_some() => anyhow::bail!("tls.client_ca needs tls.cert and tls.key: client certificates are asked for over TLS"),
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => anyhow::bail!("tls.cert and tls.key go together: give both or neither"),
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read_pem("tls.cert", cert)?, read_pem("tls.key", key)?));
    if let Some(ca) = &settings.client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read_pem("tls.client_ca", ca)?));
    }
    tonic::transport::Server::builder().tls_config(tls.clone()).map_err(|e| {
        anyhow::anyhow!("tls.key {} does not go with tls.cert {}: {}", key.display(), cert.display(), causes(&e))
    })?;
    Ok(Some(tls))
}

/// TLS of the terminal port (`bridge.tls = true`): the same certificate and key as the gRPC API.
/// Terminals authenticate with `bridge.token`, so no client certificate is asked for.
pub fn terminal_tls(settings: &TlsSettings) -> anyhow::Result<mtml_bridge::TerminalTls> {
    match http_tls(settings)? {
        Some(acceptor) => Ok(mtml_bridge::TerminalTls(acceptor)),
        None => anyhow::bail!("bridge.tls needs tls.cert and tls.key"),
    }
}

/// TLS of the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`) whenever `tls.cert` is set: a
/// rustls acceptor with the gRPC API's certificate and key. Scrapers authenticate with the read
/// token and probes need none, so no client certificate is asked for; `None` without
/// `tls.cert` and `tls.key`.
pub fn http_tls(settings: &TlsSettings) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&settings.cert, &settings.key) else {
        return Ok(None);
    };
    let chain = CertificateDer::pem_slice_iter(&read_pem("tls.cert", cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("tls.cert {}: {e}", cert.display()))?;
    let private = PrivateKeyDer::from_pem_slice(&read_pem("tls.key", key)?).map_err(|e| anyhow::anyhow!("tls.key {}: {e}", key.display()))?;
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| anyhow::anyhow!("tls.key {} does not go with tls.cert {}: {e}", key.display(), cert.display()))?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))))
}

fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
