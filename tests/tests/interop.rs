//! Stock OpenVPN 2.6 against our server and client, in network namespaces.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;
use e2e::*;

const START: Duration = Duration::from_secs(40);

fn can_run() -> bool {
    require_root() && require_tools(&["openvpn", "ping"]) && require_ours()
}

struct Topo {
    server_ns: Netns,
    client_ns: Netns,
    link: VethPair,
    work: TempDir,
    pki: Pki,
}

fn topo(prefix: &str) -> Result<Topo> {
    let server_ns = Netns::new(prefix)?;
    let client_ns = Netns::new(prefix)?;
    let link = VethPair::new(&server_ns, &client_ns, &VethConfig::default())?;
    let work = TempDir::new(prefix)?;
    let pki = Pki::new(prefix, KeyAlgo::EcP256)?;
    Ok(Topo {
        server_ns,
        client_ns,
        link,
        work,
        pki,
    })
}

/// Ping both ways and a verified bulk transfer both ways.
fn traffic(t: &Topo, server_vpn: IpAddr, client_vpn: IpAddr) -> Result<()> {
    ping(&t.client_ns, server_vpn, &PingOpts::count(3))?.expect_success()?;
    ping(&t.server_ns, client_vpn, &PingOpts::count(3))?.expect_success()?;
    let opts = BulkOpts {
        bytes: 4 << 20,
        ..Default::default()
    };
    bulk_tcp_transfer(&t.client_ns, &t.server_ns, server_vpn, &opts)?;
    bulk_tcp_transfer(&t.server_ns, &t.client_ns, client_vpn, &opts)?;
    Ok(())
}

#[test]
fn stock_client_our_server_tls_crypt() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let t = topo("iosc")?;
    let server = Ours::start(
        &t.server_ns,
        &OvpnConfig::server(&t.pki).tls_crypt(&t.pki).dev("dcos0"),
        t.work.path(),
        "server",
        START,
    )?;
    let ccfg = OvpnConfig::client(&t.pki, "client1", t.link.a_addr(false))?.tls_crypt(&t.pki);
    let client = StockOpenvpn::start(&t.client_ns, &ccfg, t.work.path(), "client", START)
        .map_err(|e| anyhow::anyhow!("{e}\nserver log:\n{}", server.log()))?;
    traffic(&t, "10.8.0.1".parse()?, "10.8.0.2".parse()?).map_err(|e| {
        anyhow::anyhow!(
            "{e}\nserver log:\n{}\nclient log:\n{}",
            server.log(),
            client.log_tail(30)
        )
    })?;
    Ok(())
}
