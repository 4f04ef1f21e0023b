//! TLS for the control channel: rustls configs that behave like stock OpenVPN 2.6 on
//! OpenSSL 3, and the OpenVPN-style peer checks.
//!
//! What OpenVPN does and this module reproduces:
//! - both sides present certificates; the server requires one from every client;
//! - the peer's chain must lead to `ca`; validity dates are checked; there is **no**
//!   host-name matching (the server's name is not compared with anything) unless
//!   `verify-x509-name` asks for a subject or common-name match;
//! - an EKU extension, when present, must allow the peer's role (OpenSSL's default purpose
//!   check); `remote-cert-tls server|client` additionally requires the EKU
//!   (serverAuth/clientAuth) and a key-usage extension that allows a TLS key
//!   (digitalSignature, keyEncipherment or keyAgreement);
//! - `crl-verify`: every certificate of the chain is checked against the CRLs (a missing
//!   CRL for an issuer is ignored, an expired CRL fails, as with OpenSSL's CRL_CHECK_ALL);
//!   the file is re-read when its mtime or size changes, checked at every handshake, so a
//!   revoked client cannot reconnect; an unreadable CRL refuses everyone;
//! - `peer-fingerprint`: the peer's certificate is pinned by SHA-256; without `ca` no chain
//!   or date is checked at all (OpenVPN's behaviour for self-signed set-ups);
//! - the peer's common name (the last CN of the subject, at most 64 bytes, bytes outside
//!   printable ASCII replaced by `_`) is required and exposed after the handshake;
//! - no session tickets, no resumption, no SNI; TLS 1.2 (ECDHE + AEAD suites) and 1.3.
//!
//! [`export_data_keys`] gives the 256-byte `EXPORTER-OpenVPN-datakeys` material (no
//! context) from which both sides derive the data-channel keys.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, TrustAnchor, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, DistinguishedName,
    OtherError, ServerConfig, ServerConnection, SignatureScheme,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::config::{CertUsage, Options, Role, Source, TlsVersion, X509NameCheck, X509NameKind};

/// The TLS exporter label OpenVPN uses for data-channel keys.
pub const EKM_LABEL: &[u8] = b"EXPORTER-OpenVPN-datakeys";
/// Length of the exported key material (a `key2`).
pub const EKM_LEN: usize = 256;
/// OpenVPN's limit on the common-name length (`TLS_USERNAME_LEN`).
pub const MAX_COMMON_NAME_LEN: usize = 64;

/// Errors setting up TLS or reading the peer's identity.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A credential file could not be read.
    #[error("cannot read {what} {source_name}: {error}")]
    Read {
        /// `ca`, `cert`, `key`, ...
        what: &'static str,
        /// The file name or `[inline]`.
        source_name: String,
        /// The OS error text.
        error: String,
    },
    /// No PEM certificate was found.
    #[error("{what} {source_name}: no PEM certificate (-----BEGIN CERTIFICATE-----) found")]
    NoCertificates {
        /// `ca`, `cert`, `extra-certs`.
        what: &'static str,
        /// The file name or `[inline]`.
        source_name: String,
    },
    /// The key file holds no usable private key.
    #[error(
        "key {source_name}: no private key found (PEM 'PRIVATE KEY', 'RSA PRIVATE KEY' or 'EC PRIVATE KEY')"
    )]
    NoPrivateKey {
        /// The file name or `[inline]`.
        source_name: String,
    },
    /// The key is encrypted with a passphrase.
    #[error(
        "key {source_name} is encrypted with a passphrase, which is not supported; decrypt it with `openssl pkey -in KEY -out KEY.plain` and protect the file (chmod 600)"
    )]
    EncryptedKey {
        /// The file name or `[inline]`.
        source_name: String,
    },
    /// rustls could not use the key.
    #[error("key {source_name}: {error}")]
    BadKey {
        /// The file name or `[inline]`.
        source_name: String,
        /// Why.
        error: String,
    },
    /// The certificate and the key do not belong together.
    #[error("cert and key do not match (the key is not the certificate's private key)")]
    KeyMismatch,
    /// A CA certificate cannot be used as a trust anchor.
    #[error("ca: certificate {index} cannot be used as a trust anchor: {error}")]
    BadCa {
        /// 0-based position in the file.
        index: usize,
        /// Why.
        error: String,
    },
    /// The CRL file could not be read or parsed.
    #[error("crl-verify {source_name}: {error}")]
    BadCrl {
        /// The file name or `[inline]`.
        source_name: String,
        /// Why.
        error: String,
    },
    /// Neither `ca` nor `peer-fingerprint` given.
    #[error("no way to check the peer: give ca or peer-fingerprint")]
    NoPeerCheck,
    /// A rustls error (config building, exporter).
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The peer presented no certificate (before the handshake finished).
    #[error("the peer has not presented a certificate (handshake not finished?)")]
    NoPeerCertificate,
    /// The peer's certificate could not be parsed.
    #[error("the peer's certificate cannot be parsed: {0}")]
    BadPeerCertificate(String),
}

/// Why the OpenVPN-style checks refused a peer certificate. Carried inside
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))`; see
/// [`peer_check_error`] to get it back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerCheckError {
    /// The subject has no CN.
    #[error("the certificate has no common name (CN)")]
    NoCommonName,
    /// The CN is longer than 64 bytes.
    #[error("the common name is {0} bytes, more than the 64 OpenVPN allows")]
    CommonNameTooLong(usize),
    /// `peer-fingerprint` did not match.
    #[error("certificate fingerprint {0} is not in peer-fingerprint")]
    FingerprintMismatch(String),
    /// `remote-cert-tls`: no key-usage extension.
    #[error("remote-cert-tls: the certificate has no key usage extension")]
    KeyUsageMissing,
    /// `remote-cert-tls`: key usage without a TLS-capable bit.
    #[error(
        "remote-cert-tls: key usage allows neither digitalSignature, keyEncipherment nor keyAgreement"
    )]
    KeyUsageUnsuitable,
    /// `remote-cert-tls`: the EKU is missing or lacks the role.
    #[error("remote-cert-tls {0}: the certificate's extended key usage does not include {1}")]
    EkuMissing(&'static str, &'static str),
    /// `verify-x509-name` did not match.
    #[error("verify-x509-name: '{got}' does not match '{want}'")]
    NameMismatch {
        /// What the certificate has.
        got: String,
        /// What was asked for.
        want: String,
    },
    /// The CRL could not be loaded, so nobody is let in.
    #[error("crl-verify: CRL not loaded ({0}); refusing all peers")]
    CrlNotLoaded(String),
    /// The certificate could not be parsed.
    #[error("the certificate cannot be parsed: {0}")]
    Unparsable(String),
}

/// Finds the [`PeerCheckError`] inside a rustls error, if that is why a handshake failed.
pub fn peer_check_error(e: &rustls::Error) -> Option<&PeerCheckError> {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<PeerCheckError>()
        }
        _ => None,
    }
}

/// Who we are: the certificate chain we send and its key.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("chain_len", &self.chain.len())
            .field("key", &"<hidden>")
            .finish()
    }
}

impl Identity {
    /// From PEM: `cert` (leaf first, then any intermediates), optional `extra-certs`, and
    /// `key` (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub fn from_sources(
        cert: &Source,
        key: &Source,
        extra: Option<&Source>,
    ) -> Result<Self, TlsError> {
        let mut chain = load_certs("cert", cert)?;
        if let Some(e) = extra {
            chain.extend(load_certs("extra-certs", e)?);
        }
        Ok(Identity {
            chain,
            key: load_key(key)?,
        })
    }

    /// From DER parts (tests, generated identities).
    pub fn from_der(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Identity { chain, key }
    }
}

/// How the peer is checked (the OpenVPN options that say so).
#[derive(Clone, Debug, Default)]
pub struct PeerPolicy {
    /// `ca`: trust anchors (DER certificates).
    pub ca: Vec<CertificateDer<'static>>,
    /// `peer-fingerprint`: SHA-256 of acceptable peer certificates.
    pub fingerprints: Vec<[u8; 32]>,
    /// `remote-cert-tls`.
    pub remote_cert_tls: Option<CertUsage>,
    /// `verify-x509-name`.
    pub verify_x509_name: Option<X509NameCheck>,
    /// `crl-verify`.
    pub crl: Option<Source>,
    /// `tls-version-min`.
    pub tls_version_min: Option<TlsVersion>,
}

impl PeerPolicy {
    /// The policy a parsed config asks for (reads `ca`).
    pub fn from_options(o: &Options) -> Result<Self, TlsError> {
        Ok(PeerPolicy {
            ca: match &o.ca {
                Some(s) => load_certs("ca", s)?,
                None => Vec::new(),
            },
            fingerprints: o.peer_fingerprints.clone(),
            remote_cert_tls: o.remote_cert_tls,
            verify_x509_name: o.verify_x509_name.clone(),
            crl: o.crl_verify.clone(),
            tls_version_min: Some(o.tls_version_min),
        })
    }
}

/// Reads all PEM certificates of a source.
pub fn load_certs(
    what: &'static str,
    src: &Source,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = src.load().map_err(|e| TlsError::Read {
        what,
        source_name: src.describe(),
        error: e.to_string(),
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificates {
            what,
            source_name: src.describe(),
        });
    }
    Ok(certs)
}

/// Reads a private key (PKCS#8, PKCS#1 or SEC1 PEM; other PEM sections such as
/// `EC PARAMETERS` are skipped).
pub fn load_key(src: &Source) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = src.load().map_err(|e| TlsError::Read {
        what: "key",
        source_name: src.describe(),
        error: e.to_string(),
    })?;
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(TlsError::EncryptedKey {
            source_name: src.describe(),
        });
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsError::NoPrivateKey {
        source_name: src.describe(),
    })
}

/// The CRL file, re-read when it changes.
struct CrlWatcher {
    source: Source,
    state: Mutex<CrlState>,
}

struct CrlState {
    stamp: Option<(Option<SystemTime>, u64)>,
    loaded: Result<Vec<webpki::CertRevocationList<'static>>, String>,
}

impl CrlWatcher {
    fn new(source: Source) -> Result<Self, TlsError> {
        let w = CrlWatcher {
            source,
            state: Mutex::new(CrlState {
                stamp: None,
                loaded: Err("not read yet".into()),
            }),
        };
        // Read once now so a broken CRL stops the start with a clear message.
        let first = w.refresh();
        if let Err(e) = first {
            return Err(TlsError::BadCrl {
                source_name: w.source.describe(),
                error: e,
            });
        }
        Ok(w)
    }

    fn parse(bytes: &[u8]) -> Result<Vec<webpki::CertRevocationList<'static>>, String> {
        let mut out = Vec::new();
        for der in CertificateRevocationListDer::pem_slice_iter(bytes) {
            let der = der.map_err(|e| format!("bad PEM: {e:?}"))?;
            let crl = webpki::BorrowedCertRevocationList::from_der(der.as_ref())
                .and_then(|c| c.to_owned())
                .map_err(|e| format!("bad CRL: {e}"))?;
            out.push(webpki::CertRevocationList::from(crl));
        }
        if out.is_empty() {
            return Err("no PEM CRL (-----BEGIN X509 CRL-----) found".into());
        }
        Ok(out)
    }

    /// Re-reads the file if its mtime or size changed; returns the load state.
    fn refresh(&self) -> Result<(), String> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| "CRL state lock poisoned".to_string())?;
        match &self.source {
            Source::Inline(b) => {
                if st.stamp.is_none() {
                    st.loaded = Self::parse(b.as_str().as_bytes());
                    st.stamp = Some((None, 0));
                }
            }
            Source::File(path) => {
                let stamp = std::fs::metadata(path).map(|m| (m.modified().ok(), m.len()));
                match stamp {
                    Err(e) => {
                        st.loaded = Err(format!("cannot read {}: {e}", path.display()));
                        st.stamp = None;
                    }
                    Ok(s) if st.stamp != Some(s) => {
                        st.loaded = std::fs::read(path)
                            .map_err(|e| format!("cannot read {}: {e}", path.display()))
                            .and_then(|b| Self::parse(&b));
                        st.stamp = Some(s);
                        if let Err(e) = &st.loaded {
                            tracing::warn!(crl = %path.display(), error = %e, "CRL reload failed; refusing peers until it is fixed");
                        } else {
                            tracing::info!(crl = %path.display(), "CRL loaded");
                        }
                    }
                    Ok(_) => {}
                }
            }
        }
        st.loaded.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    /// Runs `f` with the current CRLs (after a refresh).
    fn with_crls<T>(
        &self,
        f: impl FnOnce(&[&webpki::CertRevocationList<'static>]) -> T,
    ) -> Result<T, PeerCheckError> {
        self.refresh().map_err(PeerCheckError::CrlNotLoaded)?;
        let st = self
            .state
            .lock()
            .map_err(|_| PeerCheckError::CrlNotLoaded("lock poisoned".into()))?;
        match &st.loaded {
            Ok(list) => {
                let refs: Vec<&webpki::CertRevocationList<'static>> = list.iter().collect();
                Ok(f(&refs))
            }
            Err(e) => Err(PeerCheckError::CrlNotLoaded(e.clone())),
        }
    }
}

/// The OpenVPN-style verifier, used for both directions.
struct PeerVerifier {
    /// The role the *peer* must have.
    peer_role: CertUsage,
    roots: Vec<TrustAnchor<'static>>,
    root_subjects: Vec<DistinguishedName>,
    fingerprints: Vec<[u8; 32]>,
    remote_cert_tls: Option<CertUsage>,
    x509_name: Option<X509NameCheck>,
    crl: Option<CrlWatcher>,
    algs: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("peer_role", &self.peer_role)
            .field("roots", &self.roots.len())
            .field("fingerprints", &self.fingerprints.len())
            .field("remote_cert_tls", &self.remote_cert_tls)
            .field("x509_name", &self.x509_name)
            .field("crl", &self.crl.as_ref().map(|c| c.source.describe()))
            .finish()
    }
}

fn other(e: PeerCheckError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Maps webpki's verdicts onto rustls certificate errors.
#[allow(deprecated)] // older variants are still produced on some paths
fn map_webpki(e: webpki::Error) -> rustls::Error {
    use webpki::Error as W;
    let ce = match e {
        W::BadDer | W::BadDerTime | W::TrailingData(_) => CertificateError::BadEncoding,
        W::CertExpired { .. } => CertificateError::Expired,
        W::CertNotValidYet { .. } => CertificateError::NotValidYet,
        W::CertRevoked => CertificateError::Revoked,
        W::UnknownIssuer => CertificateError::UnknownIssuer,
        W::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus,
        W::CrlExpired { .. } => CertificateError::ExpiredRevocationList,
        W::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) => {
            CertificateError::InvalidPurpose
        }
        W::UnsupportedSignatureAlgorithm
        | W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKey
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => CertificateError::BadSignature,
        W::UnsupportedCriticalExtension => CertificateError::UnhandledCriticalExtension,
        e => CertificateError::Other(OtherError(Arc::new(e))),
    };
    rustls::Error::InvalidCertificate(ce)
}

impl PeerVerifier {
    fn new(
        policy: &PeerPolicy,
        peer_role: CertUsage,
        provider: &CryptoProvider,
    ) -> Result<Self, TlsError> {
        if policy.ca.is_empty() && policy.fingerprints.is_empty() {
            return Err(TlsError::NoPeerCheck);
        }
        let mut roots = Vec::new();
        let mut root_subjects = Vec::new();
        for (index, c) in policy.ca.iter().enumerate() {
            let ta = webpki::anchor_from_trusted_cert(c)
                .map_err(|e| TlsError::BadCa {
                    index,
                    error: e.to_string(),
                })?
                .to_owned();
            root_subjects.push(DistinguishedName::in_sequence(ta.subject.as_ref()));
            roots.push(ta);
        }
        let crl = match &policy.crl {
            Some(s) => Some(CrlWatcher::new(s.clone())?),
            None => None,
        };
        Ok(PeerVerifier {
            peer_role,
            roots,
            root_subjects,
            fingerprints: policy.fingerprints.clone(),
            remote_cert_tls: policy.remote_cert_tls,
            x509_name: policy.verify_x509_name.clone(),
            crl,
            algs: provider.signature_verification_algorithms,
        })
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        if !self.roots.is_empty() {
            let ee = webpki::EndEntityCert::try_from(end_entity).map_err(map_webpki)?;
            let usage = match self.peer_role {
                CertUsage::Server => webpki::KeyUsage::server_auth(),
                CertUsage::Client => webpki::KeyUsage::client_auth(),
            };
            let run = |revocation: Option<webpki::RevocationOptions<'_>>| {
                ee.verify_for_usage(
                    self.algs.all,
                    &self.roots,
                    intermediates,
                    now,
                    usage,
                    revocation,
                    None,
                )
                .map(|_| ())
                .map_err(map_webpki)
            };
            match &self.crl {
                None => run(None)?,
                Some(w) => w
                    .with_crls(|crls| match webpki::RevocationOptionsBuilder::new(crls) {
                        Ok(b) => run(Some(
                            b.with_depth(webpki::RevocationCheckDepth::Chain)
                                .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                                .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                                .build(),
                        )),
                        Err(_) => Err(other(PeerCheckError::CrlNotLoaded("empty CRL list".into()))),
                    })
                    .map_err(other)??,
            }
        } else if let Some(w) = &self.crl {
            // Fingerprint-only set-ups have no chain to check a CRL against, but a broken
            // CRL still refuses everyone, as in OpenVPN.
            w.with_crls(|_| ()).map_err(other)?;
        }

        if !self.fingerprints.is_empty() {
            let fp = sha256(end_entity.as_ref());
            if !self.fingerprints.contains(&fp) {
                return Err(other(PeerCheckError::FingerprintMismatch(hex_colon(&fp))));
            }
        }

        let (_, cert) = X509Certificate::from_der(end_entity.as_ref())
            .map_err(|e| other(PeerCheckError::Unparsable(e.to_string())))?;
        let cn = common_name(&cert).map_err(other)?;

        if let Some(want) = self.remote_cert_tls {
            check_remote_cert_tls(&cert, want).map_err(other)?;
        }
        if let Some(check) = &self.x509_name {
            let got = match check.kind {
                X509NameKind::Subject => subject_string(&cert),
                X509NameKind::Name | X509NameKind::NamePrefix => cn.clone(),
            };
            let ok = match check.kind {
                X509NameKind::Subject | X509NameKind::Name => got == check.name,
                X509NameKind::NamePrefix => got.starts_with(&check.name),
            };
            if !ok {
                return Err(other(PeerCheckError::NameMismatch {
                    got,
                    want: check.name.clone(),
                }));
            }
        }
        Ok(())
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now)
            .map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.root_subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now)
            .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// `remote-cert-tls`: KU present with a TLS-capable bit, EKU present with the role.
fn check_remote_cert_tls(
    cert: &X509Certificate<'_>,
    want: CertUsage,
) -> Result<(), PeerCheckError> {
    let ku = cert
        .key_usage()
        .map_err(|e| PeerCheckError::Unparsable(e.to_string()))?;
    let ku = ku.ok_or(PeerCheckError::KeyUsageMissing)?.value;
    if !(ku.digital_signature() || ku.key_encipherment() || ku.key_agreement()) {
        return Err(PeerCheckError::KeyUsageUnsuitable);
    }
    let (role, purpose) = match want {
        CertUsage::Server => ("server", "TLS Web Server Authentication (serverAuth)"),
        CertUsage::Client => ("client", "TLS Web Client Authentication (clientAuth)"),
    };
    let eku = cert
        .extended_key_usage()
        .map_err(|e| PeerCheckError::Unparsable(e.to_string()))?;
    let ok = match eku {
        None => false,
        Some(e) => match want {
            CertUsage::Server => e.value.server_auth,
            CertUsage::Client => e.value.client_auth,
        },
    };
    if !ok {
        return Err(PeerCheckError::EkuMissing(role, purpose));
    }
    Ok(())
}

/// OpenVPN's character rule for names: bytes outside printable ASCII become `_`.
fn remap_name(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '_'
            }
        })
        .collect()
}

/// The last CN of the subject, checked and remapped like OpenVPN.
fn common_name(cert: &X509Certificate<'_>) -> Result<String, PeerCheckError> {
    let raw = cert
        .subject()
        .iter_common_name()
        .last()
        .ok_or(PeerCheckError::NoCommonName)?;
    let s = attr_text(raw);
    if s.len() > MAX_COMMON_NAME_LEN {
        return Err(PeerCheckError::CommonNameTooLong(s.len()));
    }
    if s.is_empty() {
        return Err(PeerCheckError::NoCommonName);
    }
    Ok(remap_name(&s))
}

fn attr_text(a: &x509_parser::x509::AttributeTypeAndValue<'_>) -> String {
    match a.as_str() {
        Ok(s) => s.to_string(),
        Err(_) => {
            let data = a.attr_value().data;
            // BMPString (UTF-16BE) is common in old Windows CAs.
            if a.attr_value().header.tag() == x509_parser::asn1_rs::Tag::BmpString
                && data.len() % 2 == 0
            {
                let units: Vec<u16> = data
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
                String::from_utf16_lossy(&units)
            } else {
                String::from_utf8_lossy(data).into_owned()
            }
        }
    }
}

/// OpenSSL's short name for a subject attribute (as `X509_NAME_print_ex` with
/// `XN_FLAG_FN_SN` prints it), or the dotted OID.
fn short_name(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.12" => "title",
        "2.5.4.15" => "businessCategory",
        "2.5.4.17" => "postalCode",
        "2.5.4.41" => "name",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "2.5.4.97" => "organizationIdentifier",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        other => return other.to_string(),
    }
    .to_string()
}

/// The subject as OpenVPN compares it for `verify-x509-name ... subject`: OpenSSL's
/// one-line form (`C=US, ST=CA, O=Org, CN=name`, multi-valued RDNs joined with ` + `,
/// control characters escaped as `\XX`), then non-printable bytes turned into `_` and a
/// leading `-` into `_`.
fn subject_string(cert: &X509Certificate<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in cert.subject().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push_str(" + ");
            }
            out.push_str(&short_name(&atv.attr_type().to_id_string()));
            out.push('=');
            for ch in attr_text(atv).chars() {
                if (ch as u32) < 0x20 || ch as u32 == 0x7f {
                    out.push_str(&format!("\\{:02X}", ch as u32));
                } else {
                    out.push(ch);
                }
            }
        }
    }
    let mut s = remap_name(&out);
    if s.starts_with('-') {
        s.replace_range(0..1, "_");
    }
    s
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// `AB:CD:...` as OpenVPN prints fingerprints.
pub fn hex_colon(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What we know about the peer after the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Common name (remapped as OpenVPN does): used for logs, client-config-dir, the
    /// address pool and firewall rules.
    pub common_name: String,
    /// The subject in OpenSSL's one-line form.
    pub subject: String,
    /// SHA-256 of the certificate.
    pub fingerprint: [u8; 32],
    /// Serial number, hex.
    pub serial: String,
}

/// Reads the peer's identity from a connection (after its certificate was verified).
pub fn peer_identity(conn: &rustls::CommonState) -> Result<PeerIdentity, TlsError> {
    let certs = conn
        .peer_certificates()
        .ok_or(TlsError::NoPeerCertificate)?;
    let leaf = certs.first().ok_or(TlsError::NoPeerCertificate)?;
    identity_of(leaf)
}

/// The identity of a DER certificate (what [`peer_identity`] returns).
pub fn identity_of(leaf: &CertificateDer<'_>) -> Result<PeerIdentity, TlsError> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| TlsError::BadPeerCertificate(e.to_string()))?;
    let common_name =
        common_name(&cert).map_err(|e| TlsError::BadPeerCertificate(e.to_string()))?;
    Ok(PeerIdentity {
        common_name,
        subject: subject_string(&cert),
        fingerprint: sha256(leaf.as_ref()),
        serial: cert.raw_serial_as_string().replace(':', ""),
    })
}

/// Exports OpenVPN's data-channel key material: TLS exporter with label
/// `EXPORTER-OpenVPN-datakeys`, no context, 256 bytes. Fails before the handshake is done.
pub fn export_data_keys<D>(
    conn: &rustls::ConnectionCommon<D>,
) -> Result<Zeroizing<[u8; EKM_LEN]>, TlsError> {
    let mut out = Zeroizing::new([0u8; EKM_LEN]);
    conn.export_keying_material(&mut out[..], EKM_LABEL, None)?;
    Ok(out)
}

/// The same for the `rustls::Connection` enum.
pub fn export_data_keys_any(
    conn: &rustls::Connection,
) -> Result<Zeroizing<[u8; EKM_LEN]>, TlsError> {
    let mut out = Zeroizing::new([0u8; EKM_LEN]);
    conn.export_keying_material(&mut out[..], EKM_LABEL, None)?;
    Ok(out)
}

/// Ready-made TLS configuration for one side; makes a fresh TLS session per key_id.
#[derive(Clone)]
pub struct TlsContext {
    role: Role,
    client: Option<Arc<ClientConfig>>,
    server: Option<Arc<ServerConfig>>,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext")
            .field("role", &self.role)
            .finish()
    }
}

/// The crypto provider used everywhere (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
static TLS13_AND_12: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn versions(min: Option<TlsVersion>) -> &'static [&'static rustls::SupportedProtocolVersion] {
    match min {
        Some(TlsVersion::V1_3) => TLS13_ONLY,
        _ => TLS13_AND_12,
    }
}

fn map_cert_key_error(e: rustls::Error) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch,
        rustls::Error::General(g) => TlsError::BadKey {
            source_name: "key".into(),
            error: g,
        },
        e => TlsError::Rustls(e),
    }
}

impl TlsContext {
    /// Builds the context for a parsed config (reads ca/cert/key/extra-certs/crl files).
    pub fn from_options(o: &Options) -> Result<Self, TlsError> {
        let (Some(cert), Some(key)) = (&o.cert, &o.key) else {
            return Err(TlsError::NoCertificates {
                what: "cert",
                source_name: "(not configured)".into(),
            });
        };
        let id = Identity::from_sources(cert, key, o.extra_certs.as_ref())?;
        Self::new(o.role, &PeerPolicy::from_options(o)?, id)
    }

    /// Builds the context from parts.
    pub fn new(role: Role, policy: &PeerPolicy, identity: Identity) -> Result<Self, TlsError> {
        let provider = provider();
        match role {
            Role::Server => {
                let verifier = Arc::new(PeerVerifier::new(policy, CertUsage::Client, &provider)?);
                let mut cfg = ServerConfig::builder_with_provider(provider)
                    .with_protocol_versions(versions(policy.tls_version_min))?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(identity.chain, identity.key)
                    .map_err(map_cert_key_error)?;
                cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
                cfg.send_tls13_tickets = 0;
                cfg.ignore_client_order = true;
                Ok(TlsContext {
                    role,
                    client: None,
                    server: Some(Arc::new(cfg)),
                })
            }
            Role::Client => {
                let verifier = Arc::new(PeerVerifier::new(policy, CertUsage::Server, &provider)?);
                let mut cfg = ClientConfig::builder_with_provider(provider)
                    .with_protocol_versions(versions(policy.tls_version_min))?
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_client_auth_cert(identity.chain, identity.key)
                    .map_err(map_cert_key_error)?;
                cfg.resumption = rustls::client::Resumption::disabled();
                cfg.enable_sni = false;
                Ok(TlsContext {
                    role,
                    client: Some(Arc::new(cfg)),
                    server: None,
                })
            }
        }
    }

    /// Which side this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The rustls client config (client side).
    pub fn client_config(&self) -> Option<&Arc<ClientConfig>> {
        self.client.as_ref()
    }

    /// The rustls server config (server side).
    pub fn server_config(&self) -> Option<&Arc<ServerConfig>> {
        self.server.as_ref()
    }

    /// A fresh TLS session (one per key_id, as OpenVPN renegotiates with a new handshake).
    pub fn new_session(&self) -> Result<rustls::Connection, TlsError> {
        match (&self.client, &self.server) {
            (Some(c), _) => {
                // The name is never checked or sent (SNI is off); rustls needs one anyway.
                let name = ServerName::try_from("openvpn-server").map_err(|_| {
                    TlsError::Rustls(rustls::Error::General("bad placeholder server name".into()))
                })?;
                Ok(rustls::Connection::Client(ClientConnection::new(
                    c.clone(),
                    name,
                )?))
            }
            (None, Some(s)) => Ok(rustls::Connection::Server(ServerConnection::new(
                s.clone(),
            )?)),
            (None, None) => Err(TlsError::Rustls(rustls::Error::General(
                "empty TLS context".into(),
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
