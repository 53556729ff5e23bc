//! The simulator's own certificate authority. Real printers present a certificate issued by
//! Bambu Lab's CA with `CN = <serial>`; simulated ones present one issued by this CA, whose PEM
//! is written to a file that clients trust exactly as production trusts Bambu's bundle.
//! Certificates are X.509 v3 (rcgen), since rustls refuses v1.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    pub fn generate() -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Printyard simulator");
        name.push(DnType::CommonName, "Printyard Simulator CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        Ok(Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM: what clients trust.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A leaf certificate for a printer: `CN = serial`, with its IP as a subject alt name.
    pub fn issue(&self, serial: &str, ip: std::net::IpAddr) -> anyhow::Result<ServerIdentity> {
        let (cert, key) = self.leaf(serial, ip)?;
        Ok(ServerIdentity {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        })
    }

    /// [`Ca::issue`] as PEM text (certificate, key), for a server outside this process that
    /// speaks for the printer (its RTSPS camera in the tests).
    pub fn issue_pem(
        &self,
        serial: &str,
        ip: std::net::IpAddr,
    ) -> anyhow::Result<(String, String)> {
        let (cert, key) = self.leaf(serial, ip)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    fn leaf(
        &self,
        serial: &str,
        ip: std::net::IpAddr,
    ) -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, serial);
        params.distinguished_name = name;
        params.subject_alt_names = vec![SanType::IpAddress(ip)];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert, key))
    }
}

/// A certificate chain and its key.
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// A TLS 1.2-only server config (printers speak TLS 1.2; some hang on a 1.3 hello), with a
/// session cache so that FTPS data connections can resume the control connection's session.
pub fn server_config(identity: &ServerIdentity) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(256);
    Ok(Arc::new(config))
}

/// A TLS 1.2 client config that trusts `ca_pem` (the simulator's CA), for tests and benches
/// that talk to simulated printers as a client would.
pub fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()).flatten() {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("TLS 1.2 is supported")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
