//! In-memory handshakes between our client and server configs.

use super::*;
use crate::config::{
    CertUsage, Role, Source, TlsVersion, X509NameCheck, X509NameKind, parse_fingerprint,
};
use rustls::Connection;
use std::path::PathBuf;

fn fx(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn src(name: &str) -> Source {
    Source::File(fx(name))
}

fn ca_policy() -> PeerPolicy {
    PeerPolicy {
        ca: load_certs("ca", &src("ca.crt")).unwrap(),
        ..Default::default()
    }
}

fn id(cert: &str, key: &str) -> Identity {
    Identity::from_sources(&src(cert), &src(key), None).unwrap()
}

fn ctx(role: Role, policy: &PeerPolicy, cert: &str, key: &str) -> TlsContext {
    TlsContext::new(role, policy, id(cert, key)).unwrap()
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Side {
    Client,
    Server,
}

/// Moves TLS bytes between the two in memory until both are done or one fails.
fn pump(c: &mut Connection, s: &mut Connection) -> Result<(), (Side, rustls::Error)> {
    for _ in 0..64 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                s.process_new_packets().map_err(|e| (Side::Server, e))?;
            }
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets().map_err(|e| (Side::Client, e))?;
            }
        }
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

fn handshake(
    client: &TlsContext,
    server: &TlsContext,
) -> Result<(Connection, Connection), (Side, rustls::Error)> {
    let mut c = client.new_session().unwrap();
    let mut s = server.new_session().unwrap();
    pump(&mut c, &mut s)?;
    Ok((c, s))
}

fn assert_ekm_equal(c: &Connection, s: &Connection) -> [u8; 256] {
    let a = export_data_keys_any(c).unwrap();
    let b = export_data_keys_any(s).unwrap();
    assert_eq!(&a[..], &b[..], "EKM differs between client and server");
    assert!(a.iter().any(|&x| x != 0));
    *a
}

fn common(conn: &Connection) -> &rustls::CommonState {
    match conn {
        Connection::Client(c) => c,
        Connection::Server(s) => s,
    }
}

fn refused_by(r: Result<(Connection, Connection), (Side, rustls::Error)>) -> (Side, rustls::Error) {
    match r {
        Ok(_) => panic!("handshake unexpectedly succeeded"),
        Err(e) => e,
    }
}

/// A client config limited to TLS 1.2 (to exercise the 1.2 suites our server offers).
fn tls12_client(policy: &PeerPolicy, cert: &str, key: &str) -> TlsContext {
    let provider = provider();
    let verifier = Arc::new(PeerVerifier::new(policy, CertUsage::Server, &provider).unwrap());
    let ident = id(cert, key);
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(ident.chain, ident.key)
        .unwrap();
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.enable_sni = false;
    TlsContext {
        role: Role::Client,
        client: Some(Arc::new(cfg)),
        server: None,
    }
}

#[test]
fn easyrsa_rsa_tls13_handshake_ekm_and_identities() {
    let mut pol = ca_policy();
    pol.remote_cert_tls = Some(CertUsage::Client);
    let server = ctx(Role::Server, &pol, "server.crt", "server.key");
    pol.remote_cert_tls = Some(CertUsage::Server);
    let client = ctx(Role::Client, &pol, "client1.crt", "client1.key");
    let (c, s) = handshake(&client, &server).unwrap();
    assert_eq!(
        common(&c).protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(
        common(&c).negotiated_cipher_suite().unwrap().suite(),
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
    );
    assert_ekm_equal(&c, &s);
    let peer_of_server = peer_identity(common(&s)).unwrap();
    assert_eq!(peer_of_server.common_name, "client1");
    assert_eq!(peer_of_server.subject, "CN=client1");
    let peer_of_client = peer_identity(common(&c)).unwrap();
    assert_eq!(peer_of_client.common_name, "server");
    assert_eq!(peer_of_client.subject, "C=US, ST=CA, O=dco test, CN=server");
    assert_eq!(peer_of_client.serial, "1000");
    // No SNI was sent (OpenVPN sends none).
    match &s {
        Connection::Server(sc) => assert_eq!(sc.server_name(), None),
        Connection::Client(_) => unreachable!(),
    }
}

#[test]
fn tls12_ecdhe_handshake_and_ekm() {
    let pol = ca_policy();
    let server = ctx(Role::Server, &pol, "server.crt", "server.key");
    let client = tls12_client(&pol, "client1.crt", "client1.key");
    let (c, s) = handshake(&client, &server).unwrap();
    assert_eq!(
        common(&c).protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let suite = common(&c).negotiated_cipher_suite().unwrap().suite();
    assert_eq!(
        suite,
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    );
    assert_ekm_equal(&c, &s);
}

#[test]
fn ekm_differs_per_session_and_needs_a_finished_handshake() {
    let pol = ca_policy();
    let server = ctx(Role::Server, &pol, "server.crt", "server.key");
    let client = ctx(Role::Client, &pol, "client1.crt", "client1.key");
    let fresh = client.new_session().unwrap();
    assert!(export_data_keys_any(&fresh).is_err());
    let (c1, s1) = handshake(&client, &server).unwrap();
    let (c2, s2) = handshake(&client, &server).unwrap();
    let a = assert_ekm_equal(&c1, &s1);
    let b = assert_ekm_equal(&c2, &s2);
    assert_ne!(a, b, "each key_id's TLS session gives new keys");
    if let Connection::Client(cc) = &c1 {
        assert_eq!(&export_data_keys(cc).unwrap()[..], &a[..]);
    }
}

#[test]
fn key_formats_pkcs1_sec1_ed25519() {
    let pol = ca_policy();
    let server = ctx(Role::Server, &pol, "server.crt", "server.key");
    for (cert, key, cn) in [
        ("client2.crt", "client2.key", "client2"),
        ("client3.crt", "client3.key", "client3"),
        ("plain.crt", "plain.key", "plain"),
    ] {
        let client = ctx(Role::Client, &pol, cert, key);
        let (c, s) = handshake(&client, &server).unwrap_or_else(|e| panic!("{cert}: {e:?}"));
        assert_ekm_equal(&c, &s);
        assert_eq!(peer_identity(common(&s)).unwrap().common_name, cn);
    }
}

#[test]
fn rcgen_ecdsa_and_ed25519_chains() {
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ] {
        let ca_key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rcgen CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let leaf = |cn: &str, eku: rcgen::ExtendedKeyUsagePurpose| {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            p.extended_key_usages = vec![eku];
            p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
            let cert = p.signed_by(&key, &issuer).unwrap();
            Identity::from_der(
                vec![cert.der().clone()],
                PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
        };
        let pol = PeerPolicy {
            ca: vec![ca_cert.der().clone()],
            remote_cert_tls: Some(CertUsage::Client),
            ..Default::default()
        };
        let server = TlsContext::new(
            Role::Server,
            &pol,
            leaf("rc-server", rcgen::ExtendedKeyUsagePurpose::ServerAuth),
        )
        .unwrap();
        let pol = PeerPolicy {
            remote_cert_tls: Some(CertUsage::Server),
            ..pol
        };
        let client = TlsContext::new(
            Role::Client,
            &pol,
            leaf("rc-client", rcgen::ExtendedKeyUsagePurpose::ClientAuth),
        )
        .unwrap();
        let (c, s) = handshake(&client, &server).unwrap_or_else(|e| panic!("{alg:?}: {e:?}"));
        assert_ekm_equal(&c, &s);
        assert_eq!(peer_identity(common(&s)).unwrap().common_name, "rc-client");
        assert_eq!(peer_identity(common(&c)).unwrap().common_name, "rc-server");
        // TLS 1.2 too.
        let c12 = {
            let provider = provider();
            let verifier = Arc::new(PeerVerifier::new(&pol, CertUsage::Server, &provider).unwrap());
            let ident = leaf("rc-client", rcgen::ExtendedKeyUsagePurpose::ClientAuth);
            let cfg = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_client_auth_cert(ident.chain, ident.key)
                .unwrap();
            TlsContext {
                role: Role::Client,
                client: Some(Arc::new(cfg)),
                server: None,
            }
        };
        let (c, s) = handshake(&c12, &server).unwrap();
        assert_eq!(
            common(&c).protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        assert_ekm_equal(&c, &s);
    }
}

#[test]
fn wrong_eku_is_refused_both_ways() {
    let pol = ca_policy();
    // A client certificate (EKU clientAuth) used as the server's: the client refuses it,
    // even without remote-cert-tls (OpenSSL's default purpose check does the same).
    let server = ctx(Role::Server, &pol, "client1.crt", "client1.key");
    let client = ctx(Role::Client, &pol, "client3.crt", "client3.key");
    let (side, e) = refused_by(handshake(&client, &server));
    assert_eq!(side, Side::Client);
    assert_eq!(
        e,
        rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose),
        "{e}"
    );
    // A server certificate used by a client: the server refuses it.
    let server = ctx(Role::Server, &pol, "server.crt", "server.key");
    let client = ctx(Role::Client, &pol, "server.crt", "server.key");
    let (side, e) = refused_by(handshake(&client, &server));
    assert_eq!(side, Side::Server);
    assert_eq!(
        e,
        rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose),
        "{e}"
    );
}

#[test]
fn remote_cert_tls_requires_eku_and_key_usage() {
    // plain.crt has neither EKU nor KU: fine without remote-cert-tls, refused with it.
    let pol = ca_policy();
    let client = ctx(Role::Client, &pol, "client1.crt", "client1.key");
    let server = ctx(Role::Server, &pol, "plain.crt", "plain.key");
    assert!(handshake(&client, &server).is_ok());
    let strict = PeerPolicy {
        remote_cert_tls: Some(CertUsage::Server),
        ..ca_policy()
    };
    let client = ctx(Role::Client, &strict, "client1.crt", "client1.key");
    let (side, e) = refused_by(handshake(&client, &server));
    assert_eq!(side, Side::Client);
    assert_eq!(
        peer_check_error(&e),
        Some(&PeerCheckError::KeyUsageMissing),
        "{e}"
    );
    // Server side: remote-cert-tls client refuses the no-EKU client certificate too.
    let strict = PeerPolicy {
        remote_cert_tls: Some(CertUsage::Client),
        ..ca_policy()
    };
    let server = ctx(Role::Server, &strict, "server.crt", "server.key");
    let client = ctx(Role::Client, &pol, "plain.crt", "plain.key");
    let (side, e) = refused_by(handshake(&client, &server));
    assert_eq!(side, Side::Server);
    assert_eq!(peer_check_error(&e), Some(&PeerCheckError::KeyUsageMissing));
    let client = ctx(Role::Client, &pol, "client1.crt", "client1.key");
    assert!(handshake(&client, &server).is_ok());
}

#[test]
fn verify_x509_name_forms() {
    let server = ctx(Role::Server, &ca_policy(), "server.crt", "server.key");
    let cases = [
        ("server", X509NameKind::Name, true),
        ("serv", X509NameKind::Name, false),
        ("serv", X509NameKind::NamePrefix, true),
        ("client", X509NameKind::NamePrefix, false),
        (
            "C=US, ST=CA, O=dco test, CN=server",
            X509NameKind::Subject,
            true,
        ),
        ("CN=server", X509NameKind::Subject, false),
        ("other", X509NameKind::Name, false),
    ];
    for (name, kind, ok) in cases {
        let pol = PeerPolicy {
            verify_x509_name: Some(X509NameCheck {
                name: name.into(),
                kind,
            }),
            ..ca_policy()
        };
        let client = ctx(Role::Client, &pol, "client1.crt", "client1.key");
        let r = handshake(&client, &server);
        if ok {
            assert!(r.is_ok(), "{name} {kind:?}: {r:?}", r = r.err());
        } else {
            let (side, e) = refused_by(r);
            assert_eq!(side, Side::Client);
            assert!(
                matches!(
                    peer_check_error(&e),
                    Some(PeerCheckError::NameMismatch { .. })
                ),
                "{e}"
            );
        }
    }
}

#[test]
fn host_names_are_never_matched() {
    // The server certificate's SAN is DNS:server; the client never compares it with
    // anything, exactly like OpenVPN.
    let pol = ca_policy();
    let server = ctx(Role::Server, &pol, "server.crt", "server.key");
    let client = ctx(Role::Client, &pol, "client1.crt", "client1.key");
    assert!(handshake(&client, &server).is_ok());
}

#[test]
fn expired_and_unknown_issuer_are_refused() {
    let pol = ca_policy();
    let server = ctx(Role::Server, &pol, "server.crt", "server.key");
    let client = ctx(Role::Client, &pol, "expired.crt", "client1.key");
    let (side, e) = refused_by(handshake(&client, &server));
    assert_eq!(
        (side, e),
        (
            Side::Server,
            rustls::Error::InvalidCertificate(CertificateError::Expired)
        )
    );
    // A self-signed certificate (openssl req -x509 marks it CA:TRUE) is refused.
    let client = ctx(Role::Client, &pol, "ss-client.crt", "ss-client.key");
    let (side, e) = refused_by(handshake(&client, &server));
    assert!(
        side == Side::Server && matches!(e, rustls::Error::InvalidCertificate(_)),
        "{e}"
    );
    // A client issued by another CA: unknown issuer.
    let other_ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca_params, &other_ca_key);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "stranger");
    let cert = p.signed_by(&key, &issuer).unwrap();
    let stranger = Identity::from_der(
        vec![cert.der().clone()],
        PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    );
    let client = TlsContext::new(Role::Client, &pol, stranger).unwrap();
    let (side, e) = refused_by(handshake(&client, &server));
    assert_eq!(
        (side, e),
        (
            Side::Server,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        )
    );
}

fn copy(from: &str, to: &std::path::Path) {
    std::fs::copy(fx(from), to).unwrap();
}

#[test]
fn crl_reload_refuses_a_revoked_client() {
    let dir = std::env::temp_dir().join(format!("ctls-crl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let crl = dir.join("crl.pem");
    copy("crl-empty.pem", &crl);
    let pol = PeerPolicy {
        crl: Some(Source::File(crl.clone())),
        ..ca_policy()
    };
    let server = ctx(Role::Server, &pol, "server.crt", "server.key");
    let client2 = ctx(Role::Client, &ca_policy(), "client2.crt", "client2.key");
    let client1 = ctx(Role::Client, &ca_policy(), "client1.crt", "client1.key");
    assert!(handshake(&client2, &server).is_ok(), "not revoked yet");

    // The CA revokes client2; the operator drops the new CRL in place. The running server
    // notices the change at the next handshake.
    copy("crl-revoked.pem", &crl);
    let (side, e) = refused_by(handshake(&client2, &server));
    assert_eq!(
        (side, e),
        (
            Side::Server,
            rustls::Error::InvalidCertificate(CertificateError::Revoked)
        )
    );
    assert!(handshake(&client1, &server).is_ok(), "others still get in");

    // An expired CRL refuses everyone (OpenSSL: "CRL has expired").
    copy("crl-expired.pem", &crl);
    let (_, e) = refused_by(handshake(&client1, &server));
    assert_eq!(
        e,
        rustls::Error::InvalidCertificate(CertificateError::ExpiredRevocationList)
    );

    // A missing or broken CRL file refuses everyone too.
    std::fs::remove_file(&crl).unwrap();
    let (_, e) = refused_by(handshake(&client1, &server));
    assert!(
        matches!(peer_check_error(&e), Some(PeerCheckError::CrlNotLoaded(_))),
        "{e}"
    );
    std::fs::write(&crl, "garbage").unwrap();
    let (_, e) = refused_by(handshake(&client1, &server));
    assert!(
        matches!(peer_check_error(&e), Some(PeerCheckError::CrlNotLoaded(_))),
        "{e}"
    );
    copy("crl-empty.pem", &crl);
    assert!(
        handshake(&client2, &server).is_ok(),
        "a good CRL lets client2 back in"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn crl_problems_at_start_are_errors() {
    let pol = PeerPolicy {
        crl: Some(Source::File(fx("nonexistent.pem"))),
        ..ca_policy()
    };
    let e = TlsContext::new(Role::Server, &pol, id("server.crt", "server.key")).unwrap_err();
    assert!(matches!(e, TlsError::BadCrl { .. }), "{e}");
    let pol = PeerPolicy {
        crl: Some(Source::File(fx("ca.crt"))),
        ..ca_policy()
    };
    let e = TlsContext::new(Role::Server, &pol, id("server.crt", "server.key")).unwrap_err();
    assert!(e.to_string().contains("no PEM CRL"), "{e}");
}

fn fp_file(name: &str) -> [u8; 32] {
    parse_fingerprint(&std::fs::read_to_string(fx(name)).unwrap()).unwrap()
}

#[test]
fn peer_fingerprint_without_ca() {
    // The fingerprints were printed by `openssl x509 -fingerprint -sha256`.
    let server_pol = PeerPolicy {
        fingerprints: vec![fp_file("ss-client.sha256")],
        ..Default::default()
    };
    let client_pol = PeerPolicy {
        fingerprints: vec![fp_file("ss-server.sha256")],
        ..Default::default()
    };
    let server = ctx(Role::Server, &server_pol, "ss-server.crt", "ss-server.key");
    let client = ctx(Role::Client, &client_pol, "ss-client.crt", "ss-client.key");
    let (c, s) = handshake(&client, &server).unwrap();
    assert_ekm_equal(&c, &s);
    let ident = peer_identity(common(&s)).unwrap();
    assert_eq!(ident.common_name, "ss-client");
    assert_eq!(ident.fingerprint, fp_file("ss-client.sha256"));

    // An unknown self-signed client (or a CA-issued one) is refused by fingerprint.
    let other = ctx(Role::Client, &client_pol, "client1.crt", "client1.key");
    let (side, e) = refused_by(handshake(&other, &server));
    assert_eq!(side, Side::Server);
    match peer_check_error(&e) {
        Some(PeerCheckError::FingerprintMismatch(fp)) => assert_eq!(fp.len(), 32 * 3 - 1),
        other => panic!("{other:?}"),
    }
    // And the client refuses a server whose fingerprint it does not know.
    let wrong = PeerPolicy {
        fingerprints: vec![[0xAB; 32]],
        ..Default::default()
    };
    let client = ctx(Role::Client, &wrong, "ss-client.crt", "ss-client.key");
    let (side, e) = refused_by(handshake(&client, &server));
    assert_eq!(side, Side::Client);
    assert!(matches!(
        peer_check_error(&e),
        Some(PeerCheckError::FingerprintMismatch(_))
    ));
}

#[test]
fn tls_version_min_13() {
    let pol = PeerPolicy {
        tls_version_min: Some(TlsVersion::V1_3),
        ..ca_policy()
    };
    let server = ctx(Role::Server, &pol, "server.crt", "server.key");
    let client = tls12_client(&ca_policy(), "client1.crt", "client1.key");
    assert!(handshake(&client, &server).is_err());
    let client = ctx(Role::Client, &ca_policy(), "client1.crt", "client1.key");
    assert!(handshake(&client, &server).is_ok());
}

#[test]
fn no_tickets_no_resumption() {
    let pol = ca_policy();
    let server = ctx(Role::Server, &pol, "server.crt", "server.key");
    let client = ctx(Role::Client, &pol, "client1.crt", "client1.key");
    let s = server.server_config().unwrap();
    assert_eq!(s.send_tls13_tickets, 0);
    assert!(!s.ticketer.enabled());
    let c = client.client_config().unwrap();
    assert!(!c.enable_sni);
    // Two handshakes in a row are both full handshakes (no PSK resumption).
    for _ in 0..2 {
        let (c, _) = handshake(&client, &server).unwrap();
        assert_eq!(
            common(&c).handshake_kind(),
            Some(rustls::HandshakeKind::Full)
        );
    }
}

#[test]
fn credential_errors_are_clear() {
    let e = Identity::from_sources(&src("client1.crt"), &src("client1-encrypted.key"), None)
        .unwrap_err();
    assert!(matches!(e, TlsError::EncryptedKey { .. }), "{e}");
    assert!(e.to_string().contains("openssl pkey"), "{e}");
    let e = Identity::from_sources(&src("client1.crt"), &src("ca.crt"), None).unwrap_err();
    assert!(matches!(e, TlsError::NoPrivateKey { .. }), "{e}");
    let e = Identity::from_sources(&src("client1.key"), &src("client1.key"), None).unwrap_err();
    assert!(
        matches!(e, TlsError::NoCertificates { what: "cert", .. }),
        "{e}"
    );
    let e = Identity::from_sources(&src("nope.crt"), &src("client1.key"), None).unwrap_err();
    assert!(matches!(e, TlsError::Read { .. }), "{e}");
    let e =
        TlsContext::new(Role::Client, &ca_policy(), id("client1.crt", "client2.key")).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch), "{e}");
    let e = TlsContext::new(
        Role::Server,
        &PeerPolicy::default(),
        id("server.crt", "server.key"),
    )
    .unwrap_err();
    assert!(matches!(e, TlsError::NoPeerCheck), "{e}");
    assert!(!format!("{:?}", id("client1.crt", "client1.key")).contains("BEGIN"));
}

#[test]
fn context_from_options() {
    let text = format!(
        "client\nremote 127.0.0.1\nca {}\ncert {}\nkey {}\nremote-cert-tls server\nverify-x509-name server name\n",
        fx("ca.crt").display(),
        fx("client1.crt").display(),
        fx("client1.key").display()
    );
    let o = crate::config::parse_str("c", &text).unwrap();
    let client = TlsContext::from_options(&o).unwrap();
    assert_eq!(client.role(), Role::Client);
    let text = format!(
        "server 10.8.0.0 255.255.255.0\ncert {}\nkey {}\n<ca>\n{}</ca>\ncrl-verify {}\nremote-cert-tls client\n",
        fx("server.crt").display(),
        fx("server.key").display(),
        std::fs::read_to_string(fx("ca.crt")).unwrap(),
        fx("crl-revoked.pem").display()
    );
    let o = crate::config::parse_str("s", &text).unwrap();
    let server = TlsContext::from_options(&o).unwrap();
    assert!(handshake(&client, &server).is_ok());
    let bad = ctx(Role::Client, &ca_policy(), "client2.crt", "client2.key");
    assert!(
        handshake(&bad, &server).is_err(),
        "client2 is revoked in crl-revoked.pem"
    );
}

#[test]
fn name_remapping_like_openvpn() {
    assert_eq!(remap_name("ok-name_1.2@x"), "ok-name_1.2@x");
    assert_eq!(remap_name("a\nb\rc\u{7f}"), "a_b_c_");
    assert_eq!(remap_name("é"), "__", "each non-ASCII byte becomes _");
    // A long CN is refused; an empty one too.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mk = |cn: &str| {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        if !cn.is_empty() {
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "-Org");
        p.self_signed(&key).unwrap().der().clone()
    };
    assert_eq!(
        identity_of(&mk(&"x".repeat(64))).unwrap().common_name.len(),
        64
    );
    assert!(identity_of(&mk(&"x".repeat(65))).is_err());
    assert!(identity_of(&mk("")).is_err());
    let i = identity_of(&mk("ü-name")).unwrap();
    assert_eq!(i.common_name, "__-name");
    assert_eq!(i.subject, "CN=__-name, O=-Org");
}
