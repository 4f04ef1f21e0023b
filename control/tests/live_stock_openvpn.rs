//! Live interop of the control-channel wire layer (packet codec + wrapping + reliability
//! layer) with the stock `openvpn` 2.6 binary, with rustls as the TLS engine on our side:
//!
//! - our client ↔ stock server (P2P `--tls-server --dev null` on loopback; and, as root, a
//!   real multi-client `server` in a network namespace, which uses 2.6's stateless
//!   HMAC-cookie session ids);
//! - stock client ↔ our server (loopback).
//!
//! Each runs the full TLS handshake over our wire layer and then exchanges the first
//! application record (key method 2), for tls-crypt, tls-auth (SHA256, key-direction) and
//! no wrapping. The static key files are written by our own writer. Skips loudly when
//! `openvpn` is missing and cannot be installed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use control::packet::{KeyId, Opcode, SessionId};
use control::reliable::{ReliableConfig, ReliableLayer};
use control::static_key::{KeyDirection, StaticKey};
use control::wrap::{AuthDigest, ControlWrap, Role, WrapKeys};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

// ------------------------------------------------------------------ environment

fn have_openvpn() -> bool {
    let ok = || {
        Command::new("openvpn")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if ok() {
        return true;
    }
    if is_root() {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "openvpn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    ok()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! skip_without_openvpn {
    () => {
        if !have_openvpn() {
            eprintln!("SKIPPED: stock `openvpn` binary not available (and could not be installed)");
            return;
        }
    };
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("cw-live-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("temp dir");
        Self(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop; its log is kept for failure messages.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf) -> Self {
        let f = std::fs::File::create(&log).expect("log file");
        let f2 = f.try_clone().expect("log file");
        cmd.stdout(f).stderr(f2).stdin(Stdio::null());
        let child = cmd.spawn().expect("spawn openvpn");
        Self { child, log }
    }
    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}

// ------------------------------------------------------------------ PKI (rcgen)

struct Pki {
    ca_der: CertificateDer<'static>,
    server: (CertificateDer<'static>, Vec<u8>),
    client: (CertificateDer<'static>, Vec<u8>),
}

fn pki(dir: &TempDir) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cw-live-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.path("ca.crt"), ca.pem()).unwrap();
    let leaf = |name: &str, eku: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![eku];
        let cert = p.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.path(&format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
        (cert.der().clone(), key.serialize_der())
    };
    let server = leaf("server", ExtendedKeyUsagePurpose::ServerAuth);
    let client = leaf("client", ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca_der: ca.der().clone(),
        server,
        client,
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(p: &Pki) -> rustls::RootCertStore {
    let mut r = rustls::RootCertStore::empty();
    r.add(p.ca_der.clone()).unwrap();
    r
}

fn tls_client(p: &Pki) -> rustls::Connection {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(p))
        .with_client_auth_cert(
            vec![p.client.0.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p.client.1.clone())),
        )
        .unwrap();
    let name = ServerName::try_from("server").unwrap();
    rustls::ClientConnection::new(Arc::new(cfg), name)
        .unwrap()
        .into()
}

fn tls_server(p: &Pki) -> rustls::Connection {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(p)), provider())
            .build()
            .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![p.server.0.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p.server.1.clone())),
        )
        .unwrap();
    rustls::ServerConnection::new(Arc::new(cfg)).unwrap().into()
}

// ------------------------------------------------------------------ wrap modes

#[derive(Clone, Copy, Debug)]
enum Mode {
    TlsCrypt,
    TlsAuth,
    None,
}

const MODES: [Mode; 3] = [Mode::TlsCrypt, Mode::TlsAuth, Mode::None];

/// Write the static key with our own writer; return (openvpn args for `role`, our keys).
fn mode_setup(mode: Mode, dir: &TempDir, ours: Role) -> (Vec<String>, WrapKeys) {
    let key = StaticKey::generate().unwrap();
    let file = dir.path("static.key");
    std::fs::write(&file, key.to_file_string().as_bytes()).unwrap();
    let f = file.display().to_string();
    match mode {
        Mode::TlsCrypt => (
            vec!["--tls-crypt".into(), f],
            WrapKeys::tls_crypt(&key, ours),
        ),
        Mode::TlsAuth => {
            // Server direction 0, client direction 1, as usual.
            let (their_dir, our_dir) = match ours {
                Role::Client => ("0", KeyDirection::Inverse),
                Role::Server => ("1", KeyDirection::Normal),
            };
            (
                vec![
                    "--tls-auth".into(),
                    f,
                    their_dir.into(),
                    "--auth".into(),
                    "SHA256".into(),
                ],
                WrapKeys::tls_auth(&key, our_dir, AuthDigest::Sha256),
            )
        }
        Mode::None => (vec![], WrapKeys::none()),
    }
}

// ------------------------------------------------------------------ our endpoint

/// Our side of one control session: UDP socket, wrap context, reliability layer of key_id
/// 0 and a rustls connection, driven the way `ControlSession` will drive them.
struct Endpoint {
    sock: UdpSocket,
    wrap: ControlWrap,
    rel: ReliableLayer,
    tls: rustls::Connection,
    own: SessionId,
    peer: Option<SessionId>,
    plaintext: Vec<u8>,
    out: Vec<u8>,
    scratch: Vec<u8>,
    received: usize,
    sent: usize,
}

impl Endpoint {
    fn new(sock: UdpSocket, keys: WrapKeys, tls: rustls::Connection) -> Self {
        let cfg = ReliableConfig {
            wrap: keys.kind(),
            ..Default::default()
        };
        Self {
            sock,
            wrap: ControlWrap::new(keys, unix_now()),
            rel: ReliableLayer::new(cfg).unwrap(),
            tls,
            own: SessionId::random().unwrap(),
            peer: None,
            plaintext: Vec::new(),
            out: Vec::new(),
            scratch: Vec::new(),
            received: 0,
            sent: 0,
        }
    }

    /// TLS output into the reliability layer, then every due packet onto the wire.
    fn flush(&mut self, now: Instant) -> Result<(), String> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.rel.tls_writer()) {
                Ok(_) => {}
                Err(e) => return Err(format!("write_tls: {e}")),
            }
        }
        while let Some(t) = self.rel.poll_transmit(now) {
            let p = t.to_packet(KeyId::ZERO, self.own, self.peer);
            self.wrap
                .wrap(&p, &mut self.out)
                .map_err(|e| format!("wrap: {e}"))?;
            self.sock
                .send(&self.out)
                .map_err(|e| format!("send: {e}"))?;
            self.sent += 1;
        }
        Ok(())
    }

    fn on_datagram(&mut self, now: Instant, dg: &[u8]) -> Result<(), String> {
        let opened = self
            .wrap
            .unwrap(now, dg, &mut self.scratch)
            .map_err(|e| format!("unwrap of a stock packet failed: {e}"))?;
        let p = opened.packet;
        self.received += 1;
        if p.key_id != KeyId::ZERO {
            return Err(format!("unexpected key id {}", p.key_id));
        }
        p.check_remote_session(self.own)
            .map_err(|e| format!("stock peer: {e}"))?;
        match self.peer {
            None => self.peer = Some(p.session_id),
            Some(s) if s != p.session_id => {
                return Err(format!("peer session id changed {s} -> {}", p.session_id));
            }
            _ => {}
        }
        self.rel
            .on_packet(&p)
            .map_err(|e| format!("reliable: {e}"))?;
        loop {
            match self.tls.read_tls(&mut self.rel.tls_reader()) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("read_tls: {e}")),
            }
        }
        self.tls
            .process_new_packets()
            .map_err(|e| format!("TLS error: {e}"))?;
        let mut buf = [0u8; 4096];
        loop {
            match self.tls.reader().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.plaintext.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("TLS read: {e}")),
            }
        }
        Ok(())
    }

    /// Run the event loop until `done` holds or the deadline passes.
    fn pump(
        &mut self,
        deadline: Duration,
        peer: &Proc,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> Result<(), String> {
        let end = Instant::now() + deadline;
        let mut buf = vec![0u8; 4096];
        loop {
            let now = Instant::now();
            self.flush(now)?;
            if done(self) {
                return Ok(());
            }
            if now > end {
                return Err(format!(
                    "timed out (sent {}, received {}, handshaking {}, in flight {}, stats {:?})\n--- openvpn log ---\n{}",
                    self.sent,
                    self.received,
                    self.tls.is_handshaking(),
                    self.rel.in_flight(),
                    self.rel.stats(),
                    peer.log_tail()
                ));
            }
            if let Some(f) = self.rel.failure() {
                return Err(format!("reliability layer failed: {f}"));
            }
            let wait = self
                .rel
                .poll_timeout()
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_millis(200))
                .clamp(Duration::from_millis(5), Duration::from_millis(200));
            self.sock.set_read_timeout(Some(wait)).unwrap();
            match self.sock.recv(&mut buf) {
                Ok(n) => self.on_datagram(Instant::now(), &buf[..n])?,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => return Err(format!("recv: {e}")),
            }
        }
    }
}

/// A key-method-2 client record (§4), enough for a stock server to answer with its own.
fn km2_client_record() -> Vec<u8> {
    let mut v = vec![0, 0, 0, 0, 2];
    v.extend_from_slice(&[0x11; 48]); // pre_master
    v.extend_from_slice(&[0x22; 64]); // random1, random2
    let mut string = |s: &str| {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        v.extend_from_slice(&(b.len() as u16).to_be_bytes());
        v.extend_from_slice(&b);
    };
    string(
        "V4,dev-type tun,link-mtu 1541,tun-mtu 1500,proto UDPv4,auth SHA1,keysize 128,key-method 2,tls-client",
    );
    v.extend_from_slice(&[0, 0, 0, 0]); // no username, no password
    let mut pi = b"IV_VER=2.6.14\nIV_PLAT=linux\nIV_PROTO=990\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM\n\0".to_vec();
    let mut rec = (pi.len() as u16).to_be_bytes().to_vec();
    rec.append(&mut pi);
    v.extend_from_slice(&rec);
    v
}

/// A key-method-2 server record (§4).
fn km2_server_record() -> Vec<u8> {
    let mut v = vec![0, 0, 0, 0, 2];
    v.extend_from_slice(&[0x33; 64]);
    let opts = b"V4,dev-type tun,link-mtu 1541,tun-mtu 1500,proto UDPv4,auth SHA1,keysize 128,key-method 2,tls-server\0";
    v.extend_from_slice(&(opts.len() as u16).to_be_bytes());
    v.extend_from_slice(opts);
    v.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    v
}

fn is_km2(rec: &[u8]) -> bool {
    rec.len() > 69 && rec[..4] == [0, 0, 0, 0] && rec[4] & 0x0f == 2
}

// ------------------------------------------------------------------ our client ↔ stock server

fn client_against(
    mode: Mode,
    target: SocketAddr,
    bind: &str,
    our: WrapKeys,
    pki: &Pki,
    srv: &Proc,
) {
    let sock = UdpSocket::bind(bind).unwrap();
    sock.connect(target).unwrap();
    let mut ep = Endpoint::new(sock, our, tls_client(pki));
    ep.rel.send_reset(Opcode::HardResetClientV2).unwrap();
    let mut km2_sent = false;
    let r = ep.pump(Duration::from_secs(25), srv, |ep| {
        if !ep.tls.is_handshaking() && !km2_sent {
            ep.tls.writer().write_all(&km2_client_record()).unwrap();
            km2_sent = true;
        }
        km2_sent && is_km2(&ep.plaintext) && ep.rel.all_acked()
    });
    if let Err(e) = r {
        panic!("{mode:?}: {e}");
    }
    // The stock server's reset ACKed ours with our session id, we ACKed its reset with its
    // (possibly HMAC-cookie) session id, the whole handshake went through.
    assert!(ep.rel.reset_acked());
    assert_eq!(
        ep.rel.peer_reset().map(|r| r.opcode),
        Some(Opcode::HardResetServerV2)
    );
    assert!(ep.rel.peer_reset().is_some_and(|r| r.payload.is_empty()));
    assert!(ep.plaintext.len() >= 69);
    let opts_len = usize::from(u16::from_be_bytes([ep.plaintext[69], ep.plaintext[70]]));
    let opts = &ep.plaintext[71..71 + opts_len.saturating_sub(1)];
    assert!(
        opts.starts_with(b"V4,") && opts.ends_with(b"tls-server"),
        "{mode:?}: server options {:?}",
        String::from_utf8_lossy(opts)
    );
    let log = srv.log();
    assert!(
        !log.contains("TLS Error"),
        "{mode:?}: server log has TLS errors:\n{log}"
    );
    // The stock server accepted our key-method record, not just the TLS handshake: once our
    // ACKs of its records are out, it logs the connection as initiated.
    let r = ep.pump(Duration::from_secs(10), srv, |_| {
        srv.log().contains("Peer Connection Initiated")
    });
    assert!(
        r.is_ok(),
        "{mode:?}: stock server did not complete the key exchange: {r:?}"
    );
    eprintln!(
        "{mode:?}: handshake + key method 2 with stock server: {} packets sent, {} received, {:?}",
        ep.sent,
        ep.received,
        ep.rel.stats()
    );
}

#[test]
fn our_client_with_stock_p2p_server() {
    skip_without_openvpn!();
    for mode in MODES {
        let dir = TempDir::new("p2ps");
        let pki = pki(&dir);
        let (args, ours) = mode_setup(mode, &dir, Role::Client);
        // Pick a free port by binding and releasing it.
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new("openvpn");
        cmd.args(["--dev", "null", "--proto", "udp", "--local", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--tls-server", "--dh", "none", "--verb", "4"])
            .arg("--ca")
            .arg(dir.path("ca.crt"))
            .arg("--cert")
            .arg(dir.path("server.crt"))
            .arg("--key")
            .arg(dir.path("server.key"))
            .args(&args);
        let srv = Proc::spawn(cmd, dir.path("server.log"));
        std::thread::sleep(Duration::from_millis(500));
        client_against(
            mode,
            SocketAddr::from(([127, 0, 0, 1], port)),
            "127.0.0.1:0",
            ours,
            &pki,
            &srv,
        );
    }
}

/// A veth pair: `cwlv-h` in the root namespace, `cwlv-s` in `cwlive-s`.
struct NetnsGuard;

impl NetnsGuard {
    fn up() -> Option<Self> {
        let run = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        let _ = run(&["netns", "del", "cwlive-s"]);
        let _ = run(&["link", "del", "cwlv-h"]);
        let g = Self;
        let ok = run(&["netns", "add", "cwlive-s"])
            && run(&[
                "link", "add", "cwlv-h", "type", "veth", "peer", "name", "cwlv-s", "netns",
                "cwlive-s",
            ])
            && run(&["addr", "add", "10.231.79.1/30", "dev", "cwlv-h"])
            && run(&["link", "set", "cwlv-h", "up"])
            && run(&[
                "-n",
                "cwlive-s",
                "addr",
                "add",
                "10.231.79.2/30",
                "dev",
                "cwlv-s",
            ])
            && run(&["-n", "cwlive-s", "link", "set", "cwlv-s", "up"])
            && run(&["-n", "cwlive-s", "link", "set", "lo", "up"]);
        ok.then_some(g)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", "cwlv-h"]).status();
        let _ = Command::new("ip")
            .args(["netns", "del", "cwlive-s"])
            .status();
    }
}

#[test]
fn our_client_with_stock_multi_server_in_netns() {
    skip_without_openvpn!();
    if !is_root() {
        eprintln!("SKIPPED: needs root for a network namespace and a tun device");
        return;
    }
    if !Path::new("/dev/net/tun").exists() {
        eprintln!("SKIPPED: /dev/net/tun missing");
        return;
    }
    let Some(_ns) = NetnsGuard::up() else {
        eprintln!("SKIPPED: could not create network namespace cwlive-s");
        return;
    };
    for mode in MODES {
        let dir = TempDir::new("multi");
        let pki = pki(&dir);
        let (args, ours) = mode_setup(mode, &dir, Role::Client);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", "cwlive-s", "openvpn"])
            .args([
                "--server",
                "10.231.80.0",
                "255.255.255.0",
                "--topology",
                "subnet",
            ])
            .args(["--dev", "cwlvt", "--dev-type", "tun", "--proto", "udp"])
            .args(["--local", "10.231.79.2", "--port", "1194", "--dh", "none"])
            .args(["--keepalive", "10", "60", "--verb", "4", "--disable-dco"])
            .arg("--ca")
            .arg(dir.path("ca.crt"))
            .arg("--cert")
            .arg(dir.path("server.crt"))
            .arg("--key")
            .arg(dir.path("server.key"))
            .args(&args);
        let srv = Proc::spawn(cmd, dir.path("server.log"));
        std::thread::sleep(Duration::from_millis(800));
        client_against(
            mode,
            SocketAddr::from(([10, 231, 79, 2], 1194)),
            "10.231.79.1:0",
            ours,
            &pki,
            &srv,
        );
        drop(srv);
    }
}

// ------------------------------------------------------------------ stock client ↔ our server

#[test]
fn stock_client_with_our_server() {
    skip_without_openvpn!();
    for mode in MODES {
        let dir = TempDir::new("srv");
        let pki = pki(&dir);
        let (args, ours) = mode_setup(mode, &dir, Role::Server);
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let mut cmd = Command::new("openvpn");
        cmd.args(["--client", "--dev", "null", "--proto", "udp", "--nobind"])
            .args(["--remote", "127.0.0.1", &port.to_string()])
            .args(["--remote-cert-tls", "server", "--verb", "4"])
            .arg("--ca")
            .arg(dir.path("ca.crt"))
            .arg("--cert")
            .arg(dir.path("client.crt"))
            .arg("--key")
            .arg(dir.path("client.key"))
            .args(&args);
        let cli = Proc::spawn(cmd, dir.path("client.log"));

        // Stateless phase: vet the client's first packet before making any state.
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, from) = sock.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!(
                "{mode:?}: no packet from the stock client: {e}\n{}",
                cli.log_tail()
            )
        });
        let mut scratch = Vec::new();
        let opened = ours
            .open(&buf[..n], &mut scratch)
            .unwrap_or_else(|e| panic!("{mode:?}: client reset did not authenticate: {e}"));
        assert_eq!(opened.packet.opcode, Opcode::HardResetClientV2);
        assert_eq!(opened.packet.key_id, KeyId::ZERO);
        assert_eq!(opened.packet.message_id, Some(0));
        assert!(opened.packet.acks.is_empty());
        let (client_sid, rid) = (opened.packet.session_id, opened.replay_id);
        if !matches!(mode, Mode::None) {
            assert_eq!(
                rid.map(|r| r.packet_id),
                Some(1),
                "client replay ids start at 1"
            );
        }
        let opcode = opened.packet.opcode;

        // Now create the session.
        sock.connect(from).unwrap();
        let mut ep = Endpoint::new(sock.try_clone().unwrap(), ours.clone(), tls_server(&pki));
        ep.peer = Some(client_sid);
        ep.wrap.accept_replay(Instant::now(), rid).unwrap();
        ep.rel.on_message(opcode, 0, b"").unwrap();
        ep.rel.send_reset(Opcode::HardResetServerV2).unwrap();

        let mut km2_sent = false;
        let r = ep.pump(Duration::from_secs(25), &cli, |ep| {
            if is_km2(&ep.plaintext) && !km2_sent {
                ep.tls.writer().write_all(&km2_server_record()).unwrap();
                km2_sent = true;
            }
            km2_sent && ep.rel.all_acked()
        });
        if let Err(e) = r {
            panic!("{mode:?}: {e}");
        }
        // The client's key-method-2 record arrived whole through our layer.
        let rec = &ep.plaintext;
        let opts_len = usize::from(u16::from_be_bytes([rec[117], rec[118]]));
        let opts = String::from_utf8_lossy(&rec[119..119 + opts_len - 1]).to_string();
        assert!(
            opts.starts_with("V4,") && opts.ends_with("tls-client"),
            "{mode:?}: {opts}"
        );
        let text = String::from_utf8_lossy(rec);
        assert!(
            text.contains("IV_VER=2.6"),
            "{mode:?}: peer info missing: {text}"
        );
        // The stock client accepted our reset, TLS flight and key-method record.
        let log = cli.log();
        assert!(
            !log.contains("TLS Error"),
            "{mode:?}: client log has TLS errors:\n{log}"
        );
        assert!(
            log.contains("Peer Connection Initiated"),
            "{mode:?}: stock client did not complete the key exchange:\n{}",
            cli.log_tail()
        );
        eprintln!(
            "{mode:?}: stock client handshake + key method 2 with our server: {} sent, {} received, {:?}",
            ep.sent,
            ep.received,
            ep.rel.stats()
        );
    }
}
