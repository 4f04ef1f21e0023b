//! Control-channel behaviour against stock OpenVPN 2.6: a revoked client cannot reconnect
//! once the CRL file changes, our client reconnects after the server comes back
//! (ping-restart with backoff), and our client says EXIT on shutdown (explicit-exit-notify).

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
