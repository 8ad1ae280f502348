//! Mutual TLS under a cluster CA.
//!
//! Every node holds a certificate signed by the cluster CA. The certificate's
//! common name is the node's [`NodeId`]; every certificate also names
//! [`CLUSTER_SERVER_NAME`] so that a node can dial a peer by address alone
//! (it does not know the peer's `NodeId` before the handshake) and still
//! check the chain with the standard verifier. The peer's `NodeId` is read
//! from its certificate after the handshake; a message claiming another
//! `NodeId` as its sender is refused by the node core. What a message
//! relays about third nodes (gossip) is not signed: every certified node is
//! trusted to relay honestly.
//!
//! Files: a CA directory holds `ca.crt` and `ca.key`; a node directory holds
//! `ca.crt`, `node.crt` and `node.key` (PEM).
//!
//! Lifetimes: a CA is valid for [`CA_DAYS`], a node certificate for
//! [`NODE_DAYS`] unless told otherwise. The handshake checks validity both
//! ways, so a peer with an expired (or not yet valid) certificate is refused
//! like one from another CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::node::NodeId;

/// Name every node certificate carries besides its `NodeId`.
pub const CLUSTER_SERVER_NAME: &str = "roster.cluster";
/// ALPN protocol of roster's QUIC connections.
pub const ALPN: &[u8] = b"roster/1";
/// Default lifetime of a cluster CA, days (ten years).
pub const CA_DAYS: u32 = 3650;
/// Default lifetime of a node certificate, days (one year).
pub const NODE_DAYS: u32 = 365;
/// A node warns at start, and every day after, when its certificate
/// expires within this many days.
pub const EXPIRY_WARNING_DAYS: u64 = 30;

/// The wall clock, for certificate validity (the runtime, not the core).
#[allow(clippy::disallowed_methods)]
pub(crate) fn wall_now() -> SystemTime {
    SystemTime::now()
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

/// Sets a certificate's validity. A minute of slack before `from` lets a
/// peer whose clock is a little behind accept a certificate made just now.
fn validity(params: &mut CertificateParams, from: SystemTime, until: SystemTime) {
    let from = from.checked_sub(Duration::from_secs(60)).unwrap_or(from);
    params.not_before = time::OffsetDateTime::from(from);
    params.not_after = time::OffsetDateTime::from(until);
}

/// A certificate's last valid moment.
pub fn not_after_of(der: &CertificateDer<'_>) -> Result<SystemTime, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("certificate does not parse: {e}"))?;
    let secs = cert.validity().not_after.timestamp();
    let secs =
        u64::try_from(secs).map_err(|_| format!("certificate expires before 1970 ({secs})"))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Why certificates could not be made, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A file did not hold what was expected.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Config(String),
    /// The node certificate has expired.
    #[error(
        "the node certificate expired {days_ago} days ago; issue a new one (roster cert node --name NAME --ca CA_DIR --out DIR) and restart, or reload with SIGHUP"
    )]
    Expired {
        /// Whole days since it expired.
        days_ago: u64,
    },
    /// A certificate already exists where a new one would be written.
    #[error("{0} already exists; remove it or choose another directory")]
    Exists(PathBuf),
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The permission bits of a secret file that its group or others may
/// read or write, `None` when it is its owner's only (or off Unix).
pub fn open_mode(meta: &std::fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// Reads a private key, refusing one that group or others may read (as
/// OpenSSH does).
fn read_key(path: &Path) -> Result<String, TlsError> {
    let meta = std::fs::metadata(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })?;
    if let Some(mode) = open_mode(&meta) {
        return Err(TlsError::Invalid {
            path: path.to_owned(),
            reason: format!(
                "private key readable by group or others (mode {mode:o}); run `chmod 600 {}`",
                path.display()
            ),
        });
    }
    read(path)
}

/// Writes a new file; refuses to overwrite, and keeps private keys private
/// (mode 0600 on Unix).
fn write(path: &Path, data: &str, private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let io = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            TlsError::Exists(path.to_owned())
        } else {
            io(e)
        }
    })?;
    f.write_all(data.as_bytes()).map_err(io)
}

/// A cluster certificate authority.
#[derive(Clone)]
pub struct ClusterCa {
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterCa { .. }")
    }
}

impl ClusterCa {
    /// A new CA named `name`, valid for [`CA_DAYS`].
    pub fn generate(name: &str) -> Result<Self, TlsError> {
        Self::generate_for_days(name, CA_DAYS)
    }

    /// A new CA named `name`, valid from now for `days` days.
    pub fn generate_for_days(name: &str, days_valid: u32) -> Result<Self, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let now = wall_now();
        validity(&mut params, now, now + days(days_valid));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Loads `ca.crt` and `ca.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            cert_pem: read(&dir.join("ca.crt"))?,
            key_pem: read_key(&dir.join("ca.key"))?,
        })
    }

    /// Writes `ca.crt` and `ca.key` into `dir`, refusing to overwrite.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        for f in ["ca.crt", "ca.key"] {
            if dir.join(f).exists() {
                return Err(TlsError::Exists(dir.join(f)));
            }
        }
        write(&dir.join("ca.key"), &self.key_pem, true)?;
        write(&dir.join("ca.crt"), &self.cert_pem, false)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate for node `id`, valid for [`NODE_DAYS`].
    pub fn issue(&self, id: &NodeId) -> Result<NodeCert, TlsError> {
        self.issue_for_days(id, NODE_DAYS)
    }

    /// Issues a certificate for node `id`, valid from now for `days` days.
    pub fn issue_for_days(&self, id: &NodeId, days_valid: u32) -> Result<NodeCert, TlsError> {
        let now = wall_now();
        self.issue_valid(id, now, now + days(days_valid))
    }

    /// Issues a certificate for node `id` valid from `from` until `until`
    /// (a past `until` makes an expired certificate, for tests and drills).
    pub fn issue_valid(
        &self,
        id: &NodeId,
        from: SystemTime,
        until: SystemTime,
    ) -> Result<NodeCert, TlsError> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)?;
        let mut params = CertificateParams::new(vec![CLUSTER_SERVER_NAME.to_owned()])?;
        validity(&mut params, from, until);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, id.as_str());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(NodeCert {
            ca_pem: self.cert_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A node's certificate, key and the CA it trusts.
#[derive(Clone)]
pub struct NodeCert {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeCert { .. }")
    }
}

impl NodeCert {
    /// Loads `ca.crt`, `node.crt` and `node.key` from `dir`, checking they
    /// parse.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let c = Self {
            ca_pem: read(&dir.join("ca.crt"))?,
            cert_pem: read(&dir.join("node.crt"))?,
            key_pem: read_key(&dir.join("node.key"))?,
        };
        c.node_id().map_err(|reason| TlsError::Invalid {
            path: dir.join("node.crt"),
            reason,
        })?;
        PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).map_err(|e| TlsError::Invalid {
            path: dir.join("node.key"),
            reason: e.to_string(),
        })?;
        CertificateDer::from_pem_slice(c.ca_pem.as_bytes()).map_err(|e| TlsError::Invalid {
            path: dir.join("ca.crt"),
            reason: e.to_string(),
        })?;
        Ok(c)
    }

    /// Writes the three files into `dir`, refusing to overwrite.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        for f in ["ca.crt", "node.crt", "node.key"] {
            if dir.join(f).exists() {
                return Err(TlsError::Exists(dir.join(f)));
            }
        }
        write(&dir.join("node.key"), &self.key_pem, true)?;
        write(&dir.join("node.crt"), &self.cert_pem, false)?;
        write(&dir.join("ca.crt"), &self.ca_pem, false)
    }

    /// The `NodeId` this certificate names.
    pub fn node_id(&self) -> Result<NodeId, String> {
        let der =
            CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).map_err(|e| e.to_string())?;
        node_id_of(&der)
    }

    /// The last moment the node certificate is valid.
    pub fn not_after(&self) -> Result<SystemTime, String> {
        let der =
            CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).map_err(|e| e.to_string())?;
        not_after_of(&der)
    }

    /// Refuses a certificate that has expired: a node starting with one
    /// could reach no peer.
    pub fn check_not_expired(&self) -> Result<(), TlsError> {
        let until = self.not_after().map_err(TlsError::Config)?;
        if until <= wall_now() {
            let ago = wall_now().duration_since(until).unwrap_or_default();
            return Err(TlsError::Expired {
                days_ago: ago.as_secs() / 86_400,
            });
        }
        Ok(())
    }

    fn parts(
        &self,
    ) -> Result<
        (
            RootCertStore,
            Vec<CertificateDer<'static>>,
            PrivateKeyDer<'static>,
        ),
        TlsError,
    > {
        let bad = |what: &str, e: String| TlsError::Config(format!("{what}: {e}"));
        let ca = CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .map_err(|e| bad("CA certificate", e.to_string()))?;
        let mut roots = RootCertStore::empty();
        roots
            .add(ca)
            .map_err(|e| bad("CA certificate", e.to_string()))?;
        let cert = CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| bad("node certificate", e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| bad("node key", e.to_string()))?;
        Ok((roots, vec![cert], key))
    }

    /// QUIC server configuration: requires a client certificate from the CA.
    pub fn server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        self.server_config_refusing(&Revoked::default())
    }

    /// QUIC server configuration that also refuses the NodeIds in
    /// `revoked` (read at each handshake).
    pub fn server_config_refusing(
        &self,
        revoked: &Revoked,
    ) -> Result<quinn::ServerConfig, TlsError> {
        let (roots, chain, key) = self.parts()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let verifier = Arc::new(RefusingRevoked {
            inner,
            revoked: revoked.clone(),
        });
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
    }

    /// QUIC client configuration: presents this node's certificate and
    /// accepts only servers certified by the CA.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        self.client_config_refusing(&Revoked::default())
    }

    /// QUIC client configuration that also refuses servers whose NodeId is
    /// in `revoked`.
    pub fn client_config_refusing(
        &self,
        revoked: &Revoked,
    ) -> Result<quinn::ClientConfig, TlsError> {
        let (roots, chain, key) = self.parts()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let verifier = Arc::new(RefusingRevoked {
            inner,
            revoked: revoked.clone(),
        });
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(quinn::ClientConfig::new(Arc::new(quic)))
    }
}

/// NodeIds whose certificates are revoked, shared by the running node (which
/// updates it from the metadata) and its TLS verifiers (which read it at
/// every handshake).
#[derive(Debug, Clone, Default)]
pub struct Revoked(Arc<std::sync::RwLock<std::collections::BTreeSet<NodeId>>>);

impl Revoked {
    /// Replaces the set; `true` when it changed.
    pub fn set(&self, ids: impl IntoIterator<Item = NodeId>) -> bool {
        let new: std::collections::BTreeSet<NodeId> = ids.into_iter().collect();
        let mut cur = self.0.write().unwrap_or_else(|e| e.into_inner());
        let changed = *cur != new;
        *cur = new;
        changed
    }

    /// Whether `id` is revoked.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    fn refuses(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        match node_id_of(end_entity) {
            Ok(id) if self.contains(&id) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            )),
            _ => Ok(()),
        }
    }
}

/// A webpki verifier that also refuses revoked NodeIds.
#[derive(Debug)]
struct RefusingRevoked<V: ?Sized> {
    inner: Arc<V>,
    revoked: Revoked,
}

/// The handshake-signature methods both verifier traits share, passed to
/// the wrapped webpki verifier unchanged.
macro_rules! signatures_from_inner {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

impl rustls::server::danger::ClientCertVerifier
    for RefusingRevoked<dyn rustls::server::danger::ClientCertVerifier>
{
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.revoked.refuses(end_entity)?;
        Ok(ok)
    }

    signatures_from_inner!();
}

impl rustls::client::danger::ServerCertVerifier
    for RefusingRevoked<rustls::client::WebPkiServerVerifier>
{
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let ok = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.revoked.refuses(end_entity)?;
        Ok(ok)
    }

    signatures_from_inner!();
}

/// The `NodeId` in a certificate's common name.
pub fn node_id_of(der: &CertificateDer<'_>) -> Result<NodeId, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("certificate does not parse: {e}"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .ok_or("certificate has no common name")?
        .as_str()
        .map_err(|e| format!("common name is not text: {e}"))?;
    NodeId::new(cn).map_err(|e| format!("common name {cn:?} is not a node id: {e}"))
}

/// The `NodeId` a QUIC peer's certificate names.
pub fn peer_node_id(conn: &quinn::Connection) -> Result<NodeId, String> {
    let identity = conn
        .peer_identity()
        .ok_or("peer presented no certificate")?;
    let chain = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| "peer identity is not a certificate chain")?;
    let first = chain.first().ok_or("peer certificate chain is empty")?;
    node_id_of(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_name_their_node() {
        let ca = ClusterCa::generate("test").unwrap();
        let id = NodeId::new("node-7").unwrap();
        let cert = ca.issue(&id).unwrap();
        assert_eq!(cert.node_id().unwrap(), id);
        cert.server_config().unwrap();
        cert.client_config().unwrap();
    }

    #[test]
    fn files_round_trip_and_are_not_overwritten() {
        let dir = std::env::temp_dir().join(format!("roster-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = ClusterCa::generate("test").unwrap();
        ca.save(&dir.join("ca")).unwrap();
        assert!(matches!(ca.save(&dir.join("ca")), Err(TlsError::Exists(_))));
        let ca = ClusterCa::load(&dir.join("ca")).unwrap();
        let id = NodeId::new("a").unwrap();
        ca.issue(&id).unwrap().save(&dir.join("a")).unwrap();
        assert_eq!(
            NodeCert::load(&dir.join("a")).unwrap().node_id().unwrap(),
            id
        );
        assert!(NodeCert::load(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
