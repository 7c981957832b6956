//! Certificates for TLS tests, made fresh by each test: a certificate authority, a server
//! certificate for `localhost` and `127.0.0.1` signed by it, a client certificate signed by it,
//! and a client certificate from another authority (which a server must refuse).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// PEM files in a folder.
pub struct TestPki {
    /// The folder.
    pub dir: PathBuf,
}

impl TestPki {
    /// `ca.pem`; `server.pem` and `server.key`; `client.pem` and `client.key` (same authority);
    /// `stranger.pem` and `stranger.key` (another authority); `other-server.key` (a key that
    /// belongs to no certificate here).
    pub fn create(dir: &Path) -> Self {
        let (ca, ca_key) = authority("mtml test CA");
        let (other_ca, other_key) = authority("someone else's CA");
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).expect("writing a PEM file");
        write("ca.pem", ca.pem());
        let leaf = |name: &str, sans: Vec<String>, issuer: &rcgen::Certificate, issuer_key: &KeyPair| {
            let mut params = CertificateParams::new(sans).expect("certificate names");
            params.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().expect("a key");
            let cert = params.signed_by(&key, issuer, issuer_key).expect("signing");
            (cert.pem(), key.serialize_pem())
        };
        let (server, server_key) = leaf("mtml server", vec!["localhost".into(), "127.0.0.1".into()], &ca, &ca_key);
        write("server.pem", server);
        write("server.key", server_key);
        let (client, client_key) = leaf("mtml client", vec!["client.mtml".into()], &ca, &ca_key);
        write("client.pem", client);
        write("client.key", client_key);
        let (stranger, stranger_key) = leaf("stranger", vec!["stranger.example".into()], &other_ca, &other_key);
        write("stranger.pem", stranger);
        write("stranger.key", stranger_key);
        write("other-server.key", KeyPair::generate().expect("a key").serialize_pem());
        Self { dir: dir.to_path_buf() }
    }

    /// A file of the set.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn authority(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("a key");
    let cert = params.self_signed(&key).expect("self-signing");
    (cert, key)
}
