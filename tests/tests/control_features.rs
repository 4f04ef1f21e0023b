//! Control-channel behaviour against stock OpenVPN 2.6: a revoked client cannot reconnect
//! once the CRL file changes, our client reconnects after the server comes back
//! (ping-restart with backoff), our client says EXIT on shutdown (explicit-exit-notify), and
//! self-signed certificates pinned with `peer-fingerprint` (no CA) work both ways.

use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use e2e::*;

const START: Duration = Duration::from_secs(40);

fn can_run() -> bool {
    require_root() && require_tools(&["openvpn", "ping"]) && require_ours()
}

#[test]
fn revoked_client_cannot_reconnect_after_crl_update() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let server_ns = Netns::new("ccrl")?;
    let client_ns = Netns::new("ccrl")?;
    let link = VethPair::new(&server_ns, &client_ns, &VethConfig::default())?;
    let work = TempDir::new("ccrl")?;
    let pki = Pki::new("ccrl", KeyAlgo::EcP256)?;
    pki.client("good")?;
    pki.client("evil")?;
    let scfg = OvpnConfig::server(&pki)
        .tls_crypt(&pki)
        .crl_verify(&pki)
        .dev("ccrls")
        .extra("dev-type tun");
    make_world_readable(pki.dir());
    let server = Ours::start(&server_ns, &scfg, work.path(), "server", START)?;
    let cfg = |cn: &str| -> Result<OvpnConfig> {
        Ok(OvpnConfig::client(&pki, cn, link.a_addr(false))?
            .tls_crypt(&pki)
            .dev("ccrlc")
            .extra("dev-type tun"))
    };
    // Before revocation "evil" connects.
    let evil = StockOpenvpn::start(&client_ns, &cfg("evil")?, work.path(), "evil1", START)
        .map_err(|e| anyhow!("{e}\n--- server ---\n{}", server.log()))?;
    ping(&client_ns, "10.8.0.1".parse()?, &PingOpts::count(1))?.expect_success()?;
    drop(evil);
    // Revoke it: the server re-reads the changed CRL at the next handshake.
    pki.revoke("evil")?;
    make_world_readable(pki.dir());
    std::thread::sleep(Duration::from_millis(1100));
    let mut evil = StockOpenvpn::spawn(&client_ns, &cfg("evil")?, work.path(), "evil2")?;
    let refused = evil.wait_initialized(Duration::from_secs(12));
    ensure!(
        refused.is_err(),
        "a revoked client completed the handshake\n--- server ---\n{}",
        server.log()
    );
    drop(evil);
    ensure!(
        server.log().to_lowercase().contains("revoked"),
        "the server never said why it refused\n{}",
        server.log()
    );
    // An unrevoked client still gets in.
    let _good = StockOpenvpn::start(&client_ns, &cfg("good")?, work.path(), "good", START)
        .map_err(|e| anyhow!("{e}\n--- server ---\n{}", server.log()))?;
    ping(&client_ns, "10.8.0.1".parse()?, &PingOpts::count(1))?.expect_success()?;
    Ok(())
}

#[test]
fn our_client_reconnects_after_server_restart_and_says_exit() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let server_ns = Netns::new("crc")?;
    let client_ns = Netns::new("crc")?;
    let link = VethPair::new(&server_ns, &client_ns, &VethConfig::default())?;
    let work = TempDir::new("crc")?;
    let pki = Pki::new("crc", KeyAlgo::EcP256)?;
    // Short timers so a dead server is noticed in seconds: the server pushes ping 1 /
    // ping-restart 4.
    let scfg = OvpnConfig::server(&pki)
        .tls_crypt(&pki)
        .keepalive(Some((1, 4)))
        .extra("explicit-exit-notify 1")
        .dev("crcs")
        .extra("dev-type tun");
    let ccfg = OvpnConfig::client(&pki, "client1", link.a_addr(false))?
        .tls_crypt(&pki)
        .extra("explicit-exit-notify 1")
        .dev("crcc")
        .extra("dev-type tun");
    let mut server = StockOpenvpn::start(&server_ns, &scfg, work.path(), "server1", START)?;
    let mut client = Ours::start(&client_ns, &ccfg, work.path(), "client", START)?;
    ping(&client_ns, "10.8.0.1".parse()?, &PingOpts::count(2))?.expect_success()?;
    // The server goes away hard (no RESTART message); the client notices by ping-restart and
    // keeps retrying with backoff until the server is back.
    server.signal(libc::SIGKILL);
    let _ = server.stop();
    std::thread::sleep(Duration::from_secs(6));
    let mut server = StockOpenvpn::start(&server_ns, &scfg, work.path(), "server2", START)?;
    client
        .process
        .wait_for_log_count(
            "Initialization Sequence Completed",
            2,
            Duration::from_secs(60),
        )
        .map_err(|e| anyhow!("{e}\n--- server ---\n{}", server.log()))?;
    ping(&client_ns, "10.8.0.1".parse()?, &PingOpts::count(2))?.expect_success()?;
    // On SIGTERM our client tells the server (cc-exit was pushed): the server logs it.
    client.process.signal(libc::SIGTERM);
    server
        .wait_for_log("exit message received", Duration::from_secs(10))
        .map_err(|e| anyhow!("{e}\n--- client ---\n{}", client.log()))?;
    Ok(())
}

/// A self-signed EC certificate for `cn` in `dir`; returns (cert, key, SHA-256 fingerprint as
/// OpenVPN and `openssl x509 -fingerprint` print it).
fn self_signed(dir: &std::path::Path, cn: &str) -> Result<(String, String, String)> {
    let cert = dir.join(format!("{cn}.crt"));
    let key = dir.join(format!("{cn}.key"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "30", "-subj", &format!("/CN={cn}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()?;
    ensure!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()?;
    ensure!(
        out.status.success(),
        "openssl x509: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let fp = text
        .trim()
        .split_once('=')
        .map(|(_, f)| f.to_string())
        .ok_or_else(|| anyhow!("no fingerprint in {text:?}"))?;
    Ok((cert.display().to_string(), key.display().to_string(), fp))
}

fn fingerprint_server(dev: &str, cert: &str, key: &str, clients: &[&str]) -> String {
    format!(
        "port 1194\nproto udp4\ndev {dev}\ndev-type tun\ntopology subnet\n\
         server 10.8.0.0 255.255.255.0\ndh none\nkeepalive 10 60\ncert {cert}\nkey {key}\n\
         <peer-fingerprint>\n{}\n</peer-fingerprint>\nverb 3\n",
        clients.join("\n")
    )
}

fn fingerprint_client(
    dev: &str,
    remote: std::net::IpAddr,
    cert: &str,
    key: &str,
    server: &str,
) -> String {
    format!(
        "client\ndev {dev}\ndev-type tun\nproto udp4\nremote {remote} 1194\nnobind\n\
         cert {cert}\nkey {key}\npeer-fingerprint {server}\nverb 3\n"
    )
}

/// The set-up the OpenVPN manual recommends for small networks: no CA, each side pins the
/// other's self-signed certificate by its SHA-256 fingerprint. Our server accepts a pinned
/// stock client and refuses an unpinned one; our client completes against a stock server
/// configured the same way.
#[test]
fn peer_fingerprint_without_ca_both_ways() -> Result<()> {
    if !can_run() || !require_tools(&["openssl"]) {
        return Ok(());
    }
    let server_ns = Netns::new("cpf")?;
    let client_ns = Netns::new("cpf")?;
    let link = VethPair::new(&server_ns, &client_ns, &VethConfig::default())?;
    let work = TempDir::new("cpf")?;
    let d = work.path();
    let (s_crt, s_key, s_fp) = self_signed(d, "server")?;
    let (a_crt, a_key, a_fp) = self_signed(d, "alice")?;
    let (m_crt, m_key, _) = self_signed(d, "mallory")?;
    let remote = link.a_addr(false);

    // Our server, a stock client.
    let scfg = d.join("ours-server.conf");
    std::fs::write(
        &scfg,
        fingerprint_server("cpfs", &s_crt, &s_key, &[a_fp.as_str()]),
    )?;
    let server = Ours::start_config(&server_ns, &scfg, d, "ours-server", START, &[])?;
    let write = |name: &str, text: String| -> Result<std::path::PathBuf> {
        let p = d.join(name);
        std::fs::write(&p, text)?;
        Ok(p)
    };
    let alice_cfg = write(
        "alice.conf",
        fingerprint_client("cpfc", remote, &a_crt, &a_key, &s_fp),
    )?;
    let mut alice = StockOpenvpn::spawn_config(&client_ns, &alice_cfg, d, "alice")?;
    alice
        .wait_initialized(START)
        .map_err(|e| anyhow!("{e}\n--- server ---\n{}", server.log()))?;
    ping(&client_ns, "10.8.0.1".parse()?, &PingOpts::count(2))?.expect_success()?;
    drop(alice);
    let m_cfg = write(
        "mallory.conf",
        fingerprint_client("cpfc", remote, &m_crt, &m_key, &s_fp),
    )?;
    let mut mallory = StockOpenvpn::spawn_config(&client_ns, &m_cfg, d, "mallory")?;
    ensure!(
        mallory.wait_initialized(Duration::from_secs(12)).is_err(),
        "an unpinned client completed the handshake\n--- server ---\n{}",
        server.log()
    );
    drop(mallory);
    ensure!(
        server.log().to_lowercase().contains("fingerprint"),
        "the server never said why it refused mallory\n{}",
        server.log()
    );
    drop(server);
    // Clean teardown: the server's TUN device goes away with it.
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        server_ns.run(&["ip", "link", "show", "cpfs"]).is_err()
    });
    ensure!(gone, "our server's TUN device outlived it by 10 s");

    // A stock server, our client (fresh device names: our server's may still be going away).
    let scfg = write(
        "stock-server.conf",
        fingerprint_server("cpfs2", &s_crt, &s_key, &[a_fp.as_str()]),
    )?;
    let mut stock = StockOpenvpn::spawn_config(&server_ns, &scfg, d, "stock-server")?;
    stock.wait_initialized(START)?;
    let ccfg = write(
        "ours-alice.conf",
        fingerprint_client("cpfc2", remote, &a_crt, &a_key, &s_fp),
    )?;
    let _ours = Ours::start_config(&client_ns, &ccfg, d, "ours-alice", START, &[])
        .map_err(|e| anyhow!("{e}\n--- stock server ---\n{}", stock.log()))?;
    ping(&client_ns, "10.8.0.1".parse()?, &PingOpts::count(2))?.expect_success()?;
    Ok(())
}
