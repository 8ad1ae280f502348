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
//! `ca.crt`, `node.crt` and `node.key` (PEM); an operator's client directory
//! (`roster cert client`) holds `ca.crt`, `client.crt` and `client.key`.
//!
//! Two kinds of certificate come from one CA. A *node* certificate (client
//! and server use, names [`CLUSTER_SERVER_NAME`]) admits a member to the
//! cluster's QUIC traffic. An *operator* certificate (client use only, its
//! subject's organizational unit [`OPERATOR_UNIT`]) authenticates a person
//! or program to the HTTPS API (`roster agent --http-tls`). Each is refused
//! where the other belongs: an operator certificate cannot join the cluster,
//! and a node certificate is no operator credential.
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
/// The organizational unit that marks an operator's client certificate.
pub const OPERATOR_UNIT: &str = "roster-operator";
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
        self.issue_with_names(id, days_valid, &[])
    }

    /// Issues a certificate for node `id`, valid from now for `days` days,
    /// that also names `names` (IP addresses or DNS names), so that HTTPS
    /// clients checking the host name (`curl`, a browser) accept the node's
    /// HTTPS API at those addresses.
    pub fn issue_with_names(
        &self,
        id: &NodeId,
        days_valid: u32,
        names: &[String],
    ) -> Result<NodeCert, TlsError> {
        let now = wall_now();
        self.issue_inner(id, now, now + days(days_valid), names)
    }

    /// Issues a certificate for node `id` valid from `from` until `until`
    /// (a past `until` makes an expired certificate, for tests and drills).
    pub fn issue_valid(
        &self,
        id: &NodeId,
        from: SystemTime,
        until: SystemTime,
    ) -> Result<NodeCert, TlsError> {
        self.issue_inner(id, from, until, &[])
    }

    fn issue_inner(
        &self,
        id: &NodeId,
        from: SystemTime,
        until: SystemTime,
        names: &[String],
    ) -> Result<NodeCert, TlsError> {
        let mut params = CertificateParams::new(vec![CLUSTER_SERVER_NAME.to_owned()])?;
        for n in names {
            let san = match n.parse::<std::net::IpAddr>() {
                Ok(ip) => rcgen::SanType::IpAddress(ip),
                Err(_) => rcgen::SanType::DnsName(n.as_str().try_into()?),
            };
            params.subject_alt_names.push(san);
        }
        validity(&mut params, from, until);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, id.as_str());
        params.distinguished_name = dn;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params)
    }

    /// Signs `params` (a leaf certificate for signatures) with a new key.
    fn sign(&self, mut params: CertificateParams) -> Result<NodeCert, TlsError> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(NodeCert {
            ca_pem: self.cert_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl ClusterCa {
    /// Issues an operator's client certificate named `name`, valid from now
    /// for `days` days. It authenticates to the HTTPS API of every node and
    /// is refused by the cluster's QUIC traffic.
    pub fn issue_client(&self, name: &NodeId, days_valid: u32) -> Result<NodeCert, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let now = wall_now();
        validity(&mut params, now, now + days(days_valid));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name.as_str());
        dn.push(DnType::OrganizationalUnitName, OPERATOR_UNIT);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A cluster member's (`node.crt`).
    Node,
    /// An operator's client certificate for the HTTPS API (`client.crt`).
    Operator,
}

impl Kind {
    fn stem(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Operator => "client",
        }
    }
}

/// Whether a certificate is an operator's (see [`OPERATOR_UNIT`]).
pub fn kind_of(der: &CertificateDer<'_>) -> Result<Kind, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("certificate does not parse: {e}"))?;
    let operator = cert
        .subject()
        .iter_organizational_unit()
        .any(|ou| ou.as_str() == Ok(OPERATOR_UNIT));
    Ok(if operator { Kind::Operator } else { Kind::Node })
}

/// A certificate, its key and the CA it trusts: a node's, or an operator's
/// client certificate (see [`Kind`]).
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
    /// parse and that the certificate is a node's.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        Self::load_kind(dir, Kind::Node)
    }

    /// Loads an operator's `ca.crt`, `client.crt` and `client.key` from
    /// `dir` (what `roster cert client` wrote).
    pub fn load_client(dir: &Path) -> Result<Self, TlsError> {
        Self::load_kind(dir, Kind::Operator)
    }

    fn load_kind(dir: &Path, kind: Kind) -> Result<Self, TlsError> {
        let stem = kind.stem();
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key"));
        let c = Self {
            ca_pem: read(&dir.join("ca.crt"))?,
            cert_pem: read(&cert_path)?,
            key_pem: read_key(&key_path)?,
        };
        let invalid = |reason: String| TlsError::Invalid {
            path: cert_path.clone(),
            reason,
        };
        c.node_id().map_err(invalid)?;
        let der = CertificateDer::from_pem_slice(c.cert_pem.as_bytes())
            .map_err(|e| invalid(e.to_string()))?;
        match (kind, kind_of(&der).map_err(invalid)?) {
            (Kind::Node, Kind::Operator) => {
                return Err(invalid(
                    "this is an operator's client certificate, not a node's (issue one with roster cert node)".into(),
                ));
            }
            (Kind::Operator, Kind::Node) => {
                return Err(invalid(
                    "this is a node certificate, not an operator's (issue one with roster cert client)".into(),
                ));
            }
            _ => {}
        }
        PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).map_err(|e| TlsError::Invalid {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        CertificateDer::from_pem_slice(c.ca_pem.as_bytes()).map_err(|e| TlsError::Invalid {
            path: dir.join("ca.crt"),
            reason: e.to_string(),
        })?;
        Ok(c)
    }

    /// Writes the three files into `dir` (`node.crt`/`node.key`, or
    /// `client.crt`/`client.key` for an operator's), refusing to overwrite.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        let der = CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let stem = kind_of(&der).map_err(TlsError::Config)?.stem();
        let (crt, key) = (format!("{stem}.crt"), format!("{stem}.key"));
        for f in ["ca.crt", crt.as_str(), key.as_str()] {
            if dir.join(f).exists() {
                return Err(TlsError::Exists(dir.join(f)));
            }
        }
        write(&dir.join(key), &self.key_pem, true)?;
        write(&dir.join(crt), &self.cert_pem, false)?;
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

    /// Refuses an operator's client certificate where a node's is needed
    /// (the cluster would refuse it at every handshake).
    pub fn check_is_node(&self) -> Result<(), TlsError> {
        let der = CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        match kind_of(&der).map_err(TlsError::Config)? {
            Kind::Node => Ok(()),
            Kind::Operator => Err(TlsError::Config(
                "this is an operator's client certificate; a node needs one from roster cert node"
                    .into(),
            )),
        }
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
        let tls = self.node_server_tls(revoked)?;
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
    }

    /// The TLS side of the QUIC server: TLS 1.3, ALPN [`ALPN`], a client
    /// must present a node certificate from the CA whose name is not
    /// revoked.
    fn node_server_tls(&self, revoked: &Revoked) -> Result<rustls::ServerConfig, TlsError> {
        self.server_tls(revoked, Kind::Node)
    }

    /// A TLS server with this certificate whose clients are of kind `want`:
    /// nodes (QUIC: TLS 1.3, ALPN [`ALPN`], a certificate required) or
    /// operators (HTTPS: TLS 1.2 or 1.3, ALPN `http/1.1`, a certificate
    /// optional). Either way a certificate of the other kind, or a revoked
    /// name, is refused.
    fn server_tls(&self, revoked: &Revoked, want: Kind) -> Result<rustls::ServerConfig, TlsError> {
        let (roots, chain, key) = self.parts()?;
        let provider = match want {
            Kind::Node => node_provider(),
            Kind::Operator => Arc::new(rustls::crypto::ring::default_provider()),
        };
        let mut builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        );
        if want == Kind::Operator {
            builder = builder.allow_unauthenticated();
        }
        let inner = builder
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let verifier = Arc::new(RefusingRevoked {
            inner,
            revoked: revoked.clone(),
            want,
        });
        let versions: &[&rustls::SupportedProtocolVersion] = match want {
            Kind::Node => &[&rustls::version::TLS13],
            Kind::Operator => rustls::DEFAULT_VERSIONS,
        };
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        tls.alpn_protocols = vec![match want {
            Kind::Node => ALPN.to_vec(),
            Kind::Operator => b"http/1.1".to_vec(),
        }];
        Ok(tls)
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
        let tls = self.node_client_tls(revoked)?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(quinn::ClientConfig::new(Arc::new(quic)))
    }

    /// The TLS side of the QUIC client: presents this certificate, accepts
    /// only a server with a node certificate from the CA whose name is not
    /// revoked.
    fn node_client_tls(&self, revoked: &Revoked) -> Result<rustls::ClientConfig, TlsError> {
        let (roots, chain, key) = self.parts()?;
        let provider = node_provider();
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let verifier = Arc::new(RefusingRevoked {
            inner,
            revoked: revoked.clone(),
            want: Kind::Node,
        });
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        Ok(tls)
    }
}

/// The cryptography of node-to-node QUIC: ring's, with TLS 1.3's
/// AES-128-GCM-SHA256 suite first. A cluster forming opens a connection
/// (a TLS handshake) to most of its members; with SHA-256 the handshake's
/// key schedule runs on the CPU's SHA instructions where it has them, which
/// ring's SHA-384 (the default first suite) does not use. AES-128-GCM is
/// also the suite QUIC's own initial packets use.
fn node_provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(p)
}

impl NodeCert {
    /// TLS configuration of the HTTPS API (`roster agent --http-tls`):
    /// serves this node's certificate; a client may present an operator
    /// certificate from the CA (which then authenticates it) or none (then
    /// it needs the token). Node certificates and revoked names are refused
    /// at the handshake.
    pub fn https_server_config(
        &self,
        revoked: &Revoked,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        self.server_tls(revoked, Kind::Operator).map(Arc::new)
    }
}

/// TLS configuration for a client of the HTTPS API: trusts the cluster CA
/// in `ca_pem` (a server must hold a node certificate, checked under
/// [`CLUSTER_SERVER_NAME`] whatever address it was reached at) and presents
/// `operator`'s certificate when given.
pub fn https_client_config(
    ca_pem: &str,
    operator: Option<&NodeCert>,
) -> Result<rustls::ClientConfig, TlsError> {
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
    let mut roots = RootCertStore::empty();
    roots
        .add(ca)
        .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut tls = match operator {
        Some(c) => {
            let (_, chain, key) = c.parts()?;
            b.with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Config(e.to_string()))?
        }
        None => b.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
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

    /// Refuses a revoked name, or a certificate of another kind than
    /// `want`.
    fn refuses(&self, end_entity: &CertificateDer<'_>, want: Kind) -> Result<(), rustls::Error> {
        if kind_of(end_entity).ok() != Some(want) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::InvalidPurpose,
            ));
        }
        match node_id_of(end_entity) {
            Ok(id) if self.contains(&id) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            )),
            _ => Ok(()),
        }
    }
}

/// A webpki verifier that also refuses revoked NodeIds and certificates
/// of the wrong [`Kind`].
#[derive(Debug)]
struct RefusingRevoked<V: ?Sized> {
    inner: Arc<V>,
    revoked: Revoked,
    want: Kind,
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

    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
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
        self.revoked.refuses(end_entity, self.want)?;
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
        self.revoked.refuses(end_entity, self.want)?;
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

    /// Runs a TLS handshake between `client` and `server` in memory.
    /// Runs a TLS handshake in memory; the suite it agreed on.
    fn handshake(
        client: rustls::ClientConfig,
        server: Arc<rustls::ServerConfig>,
    ) -> Result<Option<rustls::CipherSuite>, rustls::Error> {
        let name = rustls_pki_types::ServerName::try_from(CLUSTER_SERVER_NAME).unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name)?;
        let mut s = rustls::ServerConnection::new(server)?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(c.negotiated_cipher_suite().map(|x| x.suite()));
            }
        }
        Err(rustls::Error::General(
            "the handshake did not finish".into(),
        ))
    }

    fn purpose<T>(r: Result<T, rustls::Error>) -> bool {
        matches!(
            r,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::InvalidPurpose
            ))
        )
    }

    /// An operator certificate authenticates to the HTTPS API and cannot
    /// join the cluster's traffic; a node certificate is the reverse; a
    /// revoked operator is refused; no certificate at all reaches the HTTPS
    /// API (which then asks for the token).
    #[test]
    fn each_kind_of_certificate_is_refused_where_the_other_belongs() {
        let ca = ClusterCa::generate("test").unwrap();
        let node = ca.issue(&NodeId::new("n1").unwrap()).unwrap();
        let other = ca.issue(&NodeId::new("n2").unwrap()).unwrap();
        let alice = ca.issue_client(&NodeId::new("alice").unwrap(), 30).unwrap();
        let revoked = Revoked::default();
        let https = node.https_server_config(&revoked).unwrap();
        let https_client = |c: Option<&NodeCert>| https_client_config(&ca.cert_pem, c).unwrap();

        handshake(https_client(Some(&alice)), https.clone()).unwrap();
        handshake(https_client(None), https.clone()).unwrap();
        assert!(purpose(handshake(
            https_client(Some(&other)),
            https.clone()
        )));
        revoked.set([NodeId::new("alice").unwrap()]);
        assert!(matches!(
            handshake(https_client(Some(&alice)), https.clone()),
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))
        ));
        revoked.set([]);

        let quic = Arc::new(node.node_server_tls(&revoked).unwrap());
        // Between nodes, the SHA-256 suite (see `node_provider`).
        assert_eq!(
            handshake(other.node_client_tls(&revoked).unwrap(), quic.clone()).unwrap(),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        let mut as_node = https_client(Some(&alice));
        as_node.alpn_protocols = vec![ALPN.to_vec()];
        assert!(purpose(handshake(as_node, quic.clone())));
        // A node dialing an HTTPS API server is not fooled into taking it
        // for a peer either: the API's certificate is the node's own, so
        // that holds; an operator certificate cannot serve at all.
        assert_eq!(kind_of(&der(&alice.cert_pem)).unwrap(), Kind::Operator);
        assert_eq!(kind_of(&der(&node.cert_pem)).unwrap(), Kind::Node);
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn operator_and_node_files_are_told_apart() {
        let dir = std::env::temp_dir().join(format!("roster-tls-kind-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = ClusterCa::generate("test").unwrap();
        let alice = ca.issue_client(&NodeId::new("alice").unwrap(), 30).unwrap();
        alice.save(&dir.join("alice")).unwrap();
        assert!(dir.join("alice/client.crt").exists() && !dir.join("alice/node.crt").exists());
        NodeCert::load_client(&dir.join("alice")).unwrap();
        // The same files under a node's names are refused as a node's.
        std::fs::create_dir_all(dir.join("fake")).unwrap();
        for (from, to) in [
            ("client.crt", "node.crt"),
            ("client.key", "node.key"),
            ("ca.crt", "ca.crt"),
        ] {
            std::fs::copy(dir.join("alice").join(from), dir.join("fake").join(to)).unwrap();
        }
        let e = NodeCert::load(&dir.join("fake")).unwrap_err().to_string();
        assert!(e.contains("operator's client certificate"), "{e}");
        let n = ca.issue(&NodeId::new("n").unwrap()).unwrap();
        n.save(&dir.join("n")).unwrap();
        std::fs::copy(dir.join("n/node.crt"), dir.join("n/client.crt")).unwrap();
        std::fs::copy(dir.join("n/node.key"), dir.join("n/client.key")).unwrap();
        let e = NodeCert::load_client(&dir.join("n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("node certificate, not an operator's"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
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
