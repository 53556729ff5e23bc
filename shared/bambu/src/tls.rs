//! How Printyard trusts a printer's TLS certificate (MQTT on 8883, FTPS on 990, camera on 6000).
//!
//! Printers present a certificate issued by Bambu Lab's CA with `CN = <serial>`; we connect by
//! IP address, so the usual host name check is replaced by comparing the CN with the serial.
//! Per printer, in order:
//! 1. a certificate that chains to the Bambu CA bundle (or a CA added in config) with
//!    `CN = serial` is accepted;
//! 2. otherwise trust on first use: with no pin yet the certificate is accepted and its SHA-256
//!    fingerprint is reported for pinning (like SSH's known_hosts); with a pin, only a certificate
//!    with that fingerprint is accepted, and a changed one is refused with a clear error until
//!    the pin is cleared;
//! 3. `insecure` accepts anything, and only when chosen explicitly.
//!
//! Some printers' leaf certificates are X.509 v1, which webpki refuses even for the handshake
//! signature; the signature is then checked with the key taken from the certificate directly.

use std::sync::{Arc, Mutex};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::{Error, SignatureScheme};
use sha2::{Digest, Sha256};

/// The Bambu Lab printer CA bundle (BBL CA, BBL CA2 RSA/ECC and intermediates).
pub const BAMBU_CA_BUNDLE: &str = include_str!("../data/bambu-printer-ca-bundle.pem");

/// A SHA-256 certificate fingerprint.
pub type Fingerprint = [u8; 32];

/// Lower-case hex of a fingerprint, as pins are stored and shown.
pub fn fingerprint_hex(fp: &Fingerprint) -> String {
    fp.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse_fingerprint(hex: &str) -> Option<Fingerprint> {
    let hex = hex.trim().replace(':', "");
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// How one printer's certificate is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustMode {
    /// CA chain with `CN = serial`, else trust on first use / the pin.
    Verify { pin: Option<Fingerprint> },
    /// Anything goes (explicit choice only).
    Insecure,
}

/// How the last handshake's certificate was accepted (or why not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    ChainedToCa,
    Pinned,
    /// Accepted on first use: the caller stores this fingerprint as the printer's pin.
    FirstUse(Fingerprint),
    Insecure,
    Refused(String),
}

/// Trust anchors from PEM text (the Bambu bundle plus any added CA).
pub fn trust_anchors(pems: &[&str]) -> Vec<TrustAnchor<'static>> {
    let mut anchors = Vec::new();
    for pem in pems {
        for cert in <CertificateDer<'static> as rustls::pki_types::pem::PemObject>::pem_slice_iter(
            pem.as_bytes(),
        )
        .flatten()
        {
            if let Ok(anchor) = webpki::anchor_from_trusted_cert(&cert) {
                anchors.push(anchor.to_owned());
            }
        }
    }
    anchors
}

/// The certificate verifier of one printer connection.
#[derive(Debug)]
pub struct PrinterCertVerifier {
    serial: String,
    anchors: Arc<Vec<TrustAnchor<'static>>>,
    mode: TrustMode,
    algorithms: WebPkiSupportedAlgorithms,
    outcome: Arc<Mutex<Option<Acceptance>>>,
}

impl PrinterCertVerifier {
    pub fn new(
        serial: &str,
        anchors: Arc<Vec<TrustAnchor<'static>>>,
        mode: TrustMode,
        provider: &CryptoProvider,
    ) -> Self {
        Self {
            serial: serial.to_owned(),
            anchors,
            mode,
            algorithms: provider.signature_verification_algorithms,
            outcome: Arc::new(Mutex::new(None)),
        }
    }

    /// How the most recent certificate was judged.
    pub fn outcome(&self) -> Option<Acceptance> {
        self.outcome.lock().ok().and_then(|o| o.clone())
    }

    fn judge(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Acceptance {
        if self.mode == TrustMode::Insecure {
            return Acceptance::Insecure;
        }
        if self.chains_to_ca(leaf, intermediates, now)
            && common_name(leaf).as_deref() == Some(self.serial.as_str())
        {
            return Acceptance::ChainedToCa;
        }
        let fingerprint: Fingerprint = Sha256::digest(leaf.as_ref()).into();
        match &self.mode {
            TrustMode::Verify { pin: Some(pin) } if *pin == fingerprint => Acceptance::Pinned,
            TrustMode::Verify { pin: Some(pin) } => Acceptance::Refused(format!(
                "the certificate of printer {} changed: pinned {}, presented {}; clear the pin to trust the new one",
                self.serial,
                fingerprint_hex(pin),
                fingerprint_hex(&fingerprint)
            )),
            _ => Acceptance::FirstUse(fingerprint),
        }
    }

    fn chains_to_ca(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> bool {
        let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
            return false;
        };
        cert.verify_for_usage(
            self.algorithms.all,
            &self.anchors,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .is_ok()
    }
}

/// The subject's common name.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(cn)
}

impl ServerCertVerifier for PrinterCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verdict = self.judge(end_entity, intermediates, now);
        if let Ok(mut outcome) = self.outcome.lock() {
            *outcome = Some(verdict.clone());
        }
        match verdict {
            Acceptance::Refused(reason) => Err(Error::General(reason)),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms) {
            Ok(valid) => Ok(valid),
            // X.509 v1 leaves (some printers): check with the key taken from the certificate.
            Err(_) => verify_with_raw_key(message, cert, dss),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn verify_with_raw_key(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    use ring::signature as sig;
    let bad = || Error::General("the printer's handshake signature does not verify".into());
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| bad())?;
    let key = parsed.public_key().subject_public_key.data.as_ref();
    let algorithm: &dyn sig::VerificationAlgorithm = match dss.scheme {
        SignatureScheme::RSA_PKCS1_SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        SignatureScheme::RSA_PKCS1_SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        SignatureScheme::RSA_PKCS1_SHA512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        SignatureScheme::RSA_PSS_SHA256 => &sig::RSA_PSS_2048_8192_SHA256,
        SignatureScheme::RSA_PSS_SHA384 => &sig::RSA_PSS_2048_8192_SHA384,
        SignatureScheme::RSA_PSS_SHA512 => &sig::RSA_PSS_2048_8192_SHA512,
        SignatureScheme::ECDSA_NISTP256_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
        SignatureScheme::ECDSA_NISTP384_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
        _ => return Err(bad()),
    };
    sig::UnparsedPublicKey::new(algorithm, key)
        .verify(message, dss.signature())
        .map(|()| HandshakeSignatureValid::assertion())
        .map_err(|_| bad())
}

/// A TLS 1.2 client config for one printer (printers speak TLS 1.2; some hang on a 1.3 hello),
/// and the verifier, to read how the certificate was accepted after the handshake.
pub fn client_config(
    serial: &str,
    anchors: Arc<Vec<TrustAnchor<'static>>>,
    mode: TrustMode,
) -> Result<(Arc<rustls::ClientConfig>, Arc<PrinterCertVerifier>), Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PrinterCertVerifier::new(serial, anchors, mode, &provider));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok((Arc::new(config), verifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bambu_bundle_yields_trust_anchors() {
        assert!(trust_anchors(&[BAMBU_CA_BUNDLE]).len() >= 2);
    }

    #[test]
    fn fingerprints_round_trip_through_hex() {
        let fp: Fingerprint = Sha256::digest(b"x").into();
        assert_eq!(parse_fingerprint(&fingerprint_hex(&fp)), Some(fp));
        assert_eq!(parse_fingerprint("zz"), None);
    }
}
