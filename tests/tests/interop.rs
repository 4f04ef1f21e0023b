//! Stock OpenVPN 2.6 against our server and our client, and ours against ours, in network
//! namespaces: every AEAD cipher, tls-crypt / tls-auth / no wrapping, IPv4 and IPv6 both
//! inside and outside the tunnel, with pings and byte-checked TCP transfers both ways.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Result, anyhow};
use e2e::*;

const START: Duration = Duration::from_secs(40);
const CIPHERS: [&str; 3] = ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"];

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

#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Stock,
    Ours,
}

#[derive(Clone, Copy, Debug)]
enum Wrap {
    Crypt,
    Auth,
    None,
}

struct Case {
    server: Side,
    client: Side,
    wrap: Wrap,
    cipher: &'static str,
    /// IPv6 underlay.
    v6_outer: bool,
}

enum Proc {
    Stock(StockOpenvpn),
    Ours(Ours),
}

impl Proc {
    fn log(&self) -> String {
        match self {
            Proc::Stock(p) => p.log(),
            Proc::Ours(p) => p.log(),
        }
    }
}

fn wrap(cfg: OvpnConfig, w: Wrap, pki: &Pki) -> OvpnConfig {
    match w {
        Wrap::Crypt => cfg.tls_crypt(pki),
        Wrap::Auth => cfg.tls_auth(pki, Some("SHA256")),
        Wrap::None => cfg,
    }
}

fn start(side: Side, ns: &Netns, cfg: &OvpnConfig, t: &Topo, name: &str) -> Result<Proc> {
    Ok(match side {
        Side::Stock => Proc::Stock(StockOpenvpn::start(ns, cfg, t.work.path(), name, START)?),
        Side::Ours => Proc::Ours(Ours::start(ns, cfg, t.work.path(), name, START)?),
    })
}

/// Ping both ways over IPv4 and IPv6 inside, and a verified bulk transfer both ways.
fn traffic(t: &Topo) -> Result<()> {
    let (s4, c4): (IpAddr, IpAddr) = ("10.8.0.1".parse()?, "10.8.0.2".parse()?);
    let (s6, c6): (IpAddr, IpAddr) = ("fd00:8::1".parse()?, "fd00:8::1000".parse()?);
    for (s, c) in [(s4, c4), (s6, c6)] {
        ping(&t.client_ns, s, &PingOpts::count(2))?.expect_success()?;
        ping(&t.server_ns, c, &PingOpts::count(2))?.expect_success()?;
    }
    let opts = BulkOpts {
        bytes: 2 << 20,
        ..Default::default()
    };
    bulk_tcp_transfer(&t.client_ns, &t.server_ns, s4, &opts)?;
    bulk_tcp_transfer(&t.server_ns, &t.client_ns, c6, &opts)?;
    Ok(())
}

fn run_case(prefix: &str, c: &Case) -> Result<()> {
    let t = topo(prefix)?;
    let mut scfg = wrap(OvpnConfig::server(&t.pki), c.wrap, &t.pki)
        .server_ipv6("fd00:8::/64")
        .data_ciphers(&[c.cipher])
        .dev(&format!("{prefix}s"))
        .extra("dev-type tun");
    if c.v6_outer {
        scfg = scfg.proto(Proto::Udp6);
    }
    let server = start(c.server, &t.server_ns, &scfg, &t, "server")?;
    let mut ccfg = wrap(
        OvpnConfig::client(&t.pki, "client1", t.link.a_addr(c.v6_outer))?,
        c.wrap,
        &t.pki,
    )
    .data_ciphers(&CIPHERS)
    .dev(&format!("{prefix}c"))
    .extra("dev-type tun");
    if c.v6_outer {
        ccfg = ccfg.proto(Proto::Udp6);
    }
    let client = start(c.client, &t.client_ns, &ccfg, &t, "client")
        .map_err(|e| anyhow!("{e}\n--- server log ---\n{}", server.log()))?;
    traffic(&t).map_err(|e| {
        anyhow!(
            "{:?}/{:?} {:?} {} v6_outer={}: {e}\n--- server log ---\n{}\n--- client log ---\n{}",
            c.server,
            c.client,
            c.wrap,
            c.cipher,
            c.v6_outer,
            server.log(),
            client.log()
        )
    })?;
    // The negotiated cipher is the one the server allowed.
    let clog = client.log();
    assert!(
        clog.contains(c.cipher),
        "client never mentions {}:\n{clog}",
        c.cipher
    );
    Ok(())
}

fn matrix(prefix: &str, server: Side, client: Side, wrap: Wrap) -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    for (i, cipher) in CIPHERS.into_iter().enumerate() {
        // Alternate the underlay family so every pairing sees 4in4/6in4 and 4in6/6in6.
        run_case(
            prefix,
            &Case {
                server,
                client,
                wrap,
                cipher,
                v6_outer: i == 1,
            },
        )?;
    }
    Ok(())
}

#[test]
fn stock_client_our_server_tls_crypt() -> Result<()> {
    matrix("isc", Side::Ours, Side::Stock, Wrap::Crypt)
}

#[test]
fn stock_client_our_server_tls_auth() -> Result<()> {
    matrix("isa", Side::Ours, Side::Stock, Wrap::Auth)
}

#[test]
fn stock_client_our_server_no_wrap() -> Result<()> {
    matrix("isn", Side::Ours, Side::Stock, Wrap::None)
}

#[test]
fn our_client_stock_server_tls_crypt() -> Result<()> {
    matrix("ioc", Side::Stock, Side::Ours, Wrap::Crypt)
}

#[test]
fn our_client_stock_server_tls_auth() -> Result<()> {
    matrix("ioa", Side::Stock, Side::Ours, Wrap::Auth)
}

#[test]
fn ours_both_sides() -> Result<()> {
    matrix("ioo", Side::Ours, Side::Ours, Wrap::Crypt)
}
