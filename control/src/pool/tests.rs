use super::*;
use crate::config::parse_str;
use crate::key_method::PeerInfo;
use crate::push::{ClientPush, build_push_reply, negotiate};

const CERTS: &str = "ca a\ncert b\nkey c\n";

fn server(extra: &str) -> Options {
    parse_str("s.conf", &format!("{CERTS}{extra}")).unwrap()
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn ipv4_pool_geometry_like_26() {
    let c = PoolConfig::from_options(&server("server 10.8.0.0 255.255.255.0\n"))
        .unwrap()
        .unwrap();
    assert_eq!(c.v4, Some((v4("10.8.0.2"), 253, v4("255.255.255.0"))));
    assert_eq!((c.v6, c.size), (None, 253));
    let c = PoolConfig::from_options(&server("server 10.9.0.0 255.255.255.248\n"))
        .unwrap()
        .unwrap();
    assert_eq!(c.v4, Some((v4("10.9.0.2"), 5, v4("255.255.255.248"))));
    let c = PoolConfig::from_options(&server(
        "server 10.8.0.0 255.255.255.0\nifconfig-pool 10.8.0.100 10.8.0.109\n",
    ))
    .unwrap()
    .unwrap();
    assert_eq!(c.v4, Some((v4("10.8.0.100"), 10, v4("255.255.255.0"))));
    assert_eq!(
        PoolConfig::from_options(&server("server 10.8.0.0 255.255.255.0 nopool\n")).unwrap(),
        None
    );
    let client = parse_str("c", &format!("{CERTS}client\nremote x\n")).unwrap();
    assert_eq!(PoolConfig::from_options(&client), Err(PoolError::NotServer));
    let e = PoolConfig::from_options(&server(
        "server 10.8.0.0 255.255.255.0\nifconfig-pool 10.8.0.100 10.8.0.100\n",
    ));
    assert_eq!(
        e,
        Err(PoolError::TooSmall {
            family: "IPv4",
            size: 1
        })
    );
}

#[test]
fn ipv6_pool_geometry_like_26() {
    for (net, base, size) in [
        ("fd00:1::/64", "fd00:1::1000", 65536),
        ("fd00:1::/100", "fd00:1::1000", 65536),
        ("fd00:1::/112", "fd00:1::2", 65534),
        ("fd00:1::/120", "fd00:1::2", 254),
        ("fd00:1::/124", "fd00:1::2", 14),
    ] {
        let o = server(&format!("server-ipv6 {net}\n"));
        let c = PoolConfig::from_options(&o).unwrap().unwrap();
        let bits: u8 = net.split('/').nth(1).unwrap().parse().unwrap();
        assert_eq!(c.v6, Some((v6(base), size, bits)), "{net}");
        assert_eq!(o.server_ipv6_addr(), Some(v6("fd00:1::1")));
    }
    // Both families: one index, the smaller size wins.
    let c = PoolConfig::from_options(&server(
        "server 10.8.0.0 255.255.255.0\nserver-ipv6 fd00::/124\n",
    ))
    .unwrap()
    .unwrap();
    assert_eq!(c.size, 14);
    let mut p = AddressPool::new(c);
    let l = p.acquire("a").unwrap();
    assert_eq!(
        (l.ipv4, l.ipv6),
        (Some(v4("10.8.0.2")), Some(v6("fd00::2")))
    );
    let l = p.acquire("b").unwrap();
    assert_eq!(
        (l.ipv4, l.ipv6),
        (Some(v4("10.8.0.3")), Some(v6("fd00::3")))
    );
}

#[test]
fn addresses_stick_to_common_names() {
    let mut p = AddressPool::new(
        PoolConfig::from_options(&server("server 10.8.0.0 255.255.255.0\n"))
            .unwrap()
            .unwrap(),
    );
    let a = p.acquire("alice").unwrap();
    let b = p.acquire("bob").unwrap();
    assert_eq!(
        (a.ipv4, b.ipv4),
        (Some(v4("10.8.0.2")), Some(v4("10.8.0.3")))
    );
    p.release(a.handle);
    // A new name takes a never-used address rather than alice's old one...
    let c = p.acquire("carol").unwrap();
    assert_eq!(c.ipv4, Some(v4("10.8.0.4")));
    // ...so alice gets hers back when she reconnects.
    let a2 = p.acquire("alice").unwrap();
    assert_eq!(a2.ipv4, Some(v4("10.8.0.2")));
    assert_eq!(p.in_use(), 3);
    // Releasing twice is harmless.
    p.release(b.handle);
    p.release(b.handle);
    assert_eq!(p.in_use(), 2);
}

#[test]
fn earliest_released_address_is_reused_first_when_full() {
    let mut p = AddressPool::new(
        PoolConfig::from_options(&server("server 10.9.0.0 255.255.255.248\n"))
            .unwrap()
            .unwrap(),
    );
    let leases: Vec<Lease> = (0..5)
        .map(|i| p.acquire(&format!("c{i}")).unwrap())
        .collect();
    assert!(p.acquire("x").is_none(), "exhausted");
    p.release(leases[3].handle);
    p.release(leases[1].handle);
    // c3's address was released first, so a stranger gets it.
    assert_eq!(p.acquire("x").unwrap().ipv4, leases[3].ipv4);
    assert_eq!(p.acquire("y").unwrap().ipv4, leases[1].ipv4);
}

#[test]
fn duplicate_cn_takes_first_free() {
    let o = server("server 10.8.0.0 255.255.255.0\nduplicate-cn\n");
    let mut p = AddressPool::new(PoolConfig::from_options(&o).unwrap().unwrap());
    let a = p.acquire("same").unwrap();
    let b = p.acquire("same").unwrap();
    assert_ne!(a.ipv4, b.ipv4);
    p.release(a.handle);
    assert_eq!(p.acquire("other").unwrap().ipv4, a.ipv4);
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ctls-ccd-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn ccd_file_parsing() {
    let c = CcdOptions::parse(
        "alice",
        "# static\nifconfig-push 10.8.0.50 255.255.255.0\nifconfig-ipv6-push fd00::50/64\niroute 192.168.50.0 255.255.255.0\niroute-ipv6 fd50::/48\npush \"route 192.168.60.0 255.255.255.0\"\npush-remove dhcp-option\n",
    )
    .unwrap();
    assert_eq!(
        c.ifconfig_push,
        Some((v4("10.8.0.50"), v4("255.255.255.0")))
    );
    assert_eq!(c.ifconfig_ipv6_push.unwrap().0.prefix_len, 64);
    assert_eq!(c.iroutes, [(v4("192.168.50.0"), v4("255.255.255.0"))]);
    assert_eq!(c.iroutes_ipv6[0].to_string(), "fd50::/48");
    assert_eq!(c.push, ["route 192.168.60.0 255.255.255.0"]);
    assert_eq!(c.push_remove, ["dhcp-option"]);
    let c = CcdOptions::parse("x", "push \"a\"\npush-reset\npush \"b\"\ndisable\n").unwrap();
    assert!(c.push_reset && c.disable);
    assert_eq!(c.push, ["b"]);
    for (text, want) in [
        ("iroute 10.0.0.1 255.255.255.0\n", "host bits"),
        ("ifconfig-push 10.8.0.5\n", "usage: ifconfig-push"),
        (
            "ifconfig-push 10.8.0.5 255.255.255.0 10.8.0.6\n",
            "alias form",
        ),
        ("verb 3\n", "option verb is not allowed here"),
        ("push \"a,b\"\n", "without commas"),
        ("iroute-ipv6 fd00::1/64\n", "host bits"),
    ] {
        let e = CcdOptions::parse("ccd/x", text).unwrap_err();
        assert!(e.to_string().starts_with("ccd/x:1:"), "{e}");
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
}

#[test]
fn ccd_file_names() {
    assert_eq!(ccd_file_name("alice"), Some("alice".into()));
    assert_eq!(ccd_file_name("a/b"), Some("a_b".into()));
    assert_eq!(ccd_file_name(".."), None);
    assert_eq!(ccd_file_name("."), None);
    assert_eq!(ccd_file_name(""), None);
}

#[test]
fn admission_with_ccd_default_and_exclusive() {
    let dir = tmpdir("adm");
    std::fs::write(dir.join("alice"), "ifconfig-push 10.8.0.50 255.255.255.0\niroute 192.168.50.0 255.255.255.0\npush \"route 192.168.60.0 255.255.255.0\"\n").unwrap();
    std::fs::write(dir.join("DEFAULT"), "push \"dhcp-option DNS 10.8.0.1\"\n").unwrap();
    std::fs::write(dir.join("mallory"), "disable\n").unwrap();
    std::fs::write(dir.join("reset"), "push-reset\npush \"ping 5\"\n").unwrap();
    std::fs::write(dir.join("broken"), "iroute nonsense\n").unwrap();
    std::fs::write(
        dir.join("outside"),
        "ifconfig-push 10.9.0.5 255.255.255.0\n",
    )
    .unwrap();
    std::fs::write(dir.join("thief"), "ifconfig-push 10.8.0.50 255.255.255.0\n").unwrap();
    std::fs::write(dir.join("a_b"), "push \"dhcp-option DOMAIN slash\"\n").unwrap();
    let o = server(&format!(
        "server 10.8.0.0 255.255.255.0\nserver-ipv6 fd00::/64\nkeepalive 10 60\nclient-config-dir {}\n",
        dir.display()
    ));
    let mut adm = ClientAddressing::from_options(&o).unwrap();

    let alice = adm.admit("alice").unwrap();
    assert_eq!(alice.ipv4, Some((v4("10.8.0.50"), v4("255.255.255.0"))));
    assert_eq!(
        alice.ipv6,
        Some((v6("fd00::1000"), 64, v6("fd00::1"))),
        "IPv6 still comes from the pool"
    );
    assert_eq!(alice.iroutes, [(v4("192.168.50.0"), v4("255.255.255.0"))]);
    assert_eq!(
        alice.push.last().unwrap(),
        "route 192.168.60.0 255.255.255.0"
    );
    assert_eq!(alice.push[0], "tun-ipv6");

    let bob = adm.admit("bob").unwrap();
    assert_eq!(
        bob.ipv4,
        Some((v4("10.8.0.3"), v4("255.255.255.0"))),
        "slot 0 (.2) is reserved by alice's lease"
    );
    assert_eq!(
        bob.push.last().unwrap(),
        "dhcp-option DNS 10.8.0.1",
        "DEFAULT applies"
    );

    assert_eq!(
        adm.admit("mallory").unwrap_err(),
        AdmitError::Disabled("mallory".into())
    );
    let r = adm.admit("reset").unwrap();
    assert_eq!(r.push, ["ping 5"]);
    let e = adm.admit("broken").unwrap_err();
    assert!(
        matches!(&e, AdmitError::CcdFile(m) if m.contains("broken:1:")),
        "{e}"
    );
    let e = adm.admit("outside").unwrap_err();
    assert!(matches!(e, AdmitError::OutsideSubnet { .. }), "{e}");
    let e = adm.admit("thief").unwrap_err();
    assert_eq!(
        e,
        AdmitError::AddressInUse {
            cn: "thief".into(),
            addr: "10.8.0.50".into()
        }
    );
    let ab = adm.admit("a/b").unwrap();
    assert_eq!(ab.push.last().unwrap(), "dhcp-option DOMAIN slash");
    assert_eq!(
        adm.admit("..").unwrap_err(),
        AdmitError::BadCommonName("..".into())
    );

    // Once alice is gone, her static address is free for the thief.
    adm.release(alice.id);
    assert_eq!(adm.admit("thief").unwrap().ipv4.unwrap().0, v4("10.8.0.50"));

    // ccd-exclusive: only clients with their own file.
    let o = server(&format!(
        "server 10.8.0.0 255.255.255.0\nclient-config-dir {}\nccd-exclusive\n",
        dir.display()
    ));
    let mut adm = ClientAddressing::from_options(&o).unwrap();
    assert!(adm.admit("alice").is_ok());
    assert!(matches!(
        adm.admit("bob"),
        Err(AdmitError::CcdExclusive { .. })
    ));
    assert!(matches!(
        adm.admit("DEFAULT"),
        Err(AdmitError::CcdExclusive { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn max_clients_and_duplicate_cn() {
    let o = server("server 10.8.0.0 255.255.255.0\nmax-clients 2\n");
    let mut adm = ClientAddressing::from_options(&o).unwrap();
    let a = adm.admit("a").unwrap();
    let b = adm.admit("b").unwrap();
    assert_eq!(adm.admit("c").unwrap_err(), AdmitError::MaxClients(2));
    // Same name again: replaces the old session, keeps the address, even at the limit.
    let a2 = adm.admit("a").unwrap();
    assert_eq!(a2.replaced, [a.id]);
    assert_eq!(a2.ipv4, a.ipv4);
    assert_eq!(adm.len(), 2);
    adm.release(b.id);
    assert!(adm.admit("c").is_ok());

    let o = server("server 10.8.0.0 255.255.255.0\nduplicate-cn\n");
    let mut adm = ClientAddressing::from_options(&o).unwrap();
    let x = adm.admit("shared").unwrap();
    let y = adm.admit("shared").unwrap();
    assert!(y.replaced.is_empty());
    assert_ne!(x.ipv4, y.ipv4);
    assert_eq!(adm.with_common_name("shared"), [x.id, y.id]);
}

#[test]
fn failed_admission_changes_nothing() {
    let dir = tmpdir("undo");
    let o = server(&format!(
        "server 10.8.0.0 255.255.255.0\nclient-config-dir {}\n",
        dir.display()
    ));
    let mut adm = ClientAddressing::from_options(&o).unwrap();
    let owner = adm.admit("owner").unwrap();
    let a = adm.admit("a").unwrap();
    // a's ccd now asks for owner's address: the new session is refused and the old one
    // stays admitted with its address.
    std::fs::write(
        dir.join("a"),
        format!("ifconfig-push {} 255.255.255.0\n", owner.ipv4.unwrap().0),
    )
    .unwrap();
    assert!(matches!(
        adm.admit("a"),
        Err(AdmitError::AddressInUse { .. })
    ));
    assert_eq!(adm.with_common_name("a"), [a.id]);
    assert!(
        adm.pool()
            .unwrap()
            .is_leased(adm.pool().unwrap().handle_of_v4(a.ipv4.unwrap().0).unwrap())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nopool_needs_ifconfig_push_and_exhaustion_is_reported() {
    let dir = tmpdir("nopool");
    std::fs::write(dir.join("s"), "ifconfig-push 10.8.0.9 255.255.255.0\n").unwrap();
    let o = server(&format!(
        "server 10.8.0.0 255.255.255.0 nopool\nclient-config-dir {}\n",
        dir.display()
    ));
    let mut adm = ClientAddressing::from_options(&o).unwrap();
    assert_eq!(
        adm.admit("s").unwrap().ipv4,
        Some((v4("10.8.0.9"), v4("255.255.255.0")))
    );
    assert_eq!(
        adm.admit("t").unwrap_err(),
        AdmitError::NoAddress("t".into())
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let o = server("server 10.9.0.0 255.255.255.248\n");
    let mut adm = ClientAddressing::from_options(&o).unwrap();
    for i in 0..5 {
        adm.admit(&format!("c{i}")).unwrap();
    }
    assert_eq!(adm.admit("c5").unwrap_err(), AdmitError::PoolExhausted);
}

/// End to end: the §10.2 server config, the pool and a Debian 2.6.14 client's peer-info
/// give exactly the PUSH_REPLY a stock 2.6.14 server sent (§7.5), minus dyn-tls-crypt.
#[test]
fn first_client_push_reply_matches_stock() {
    let o = parse_str(
        "server.conf",
        "port 1194\nproto udp\ndev tun\ntopology subnet\nserver 10.8.0.0 255.255.255.0\nca ca.crt\ncert server.crt\nkey server.key\ndh none\ndata-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\nkeepalive 10 60\ntls-crypt tc.key\nexplicit-exit-notify 1\n",
    )
    .unwrap();
    let mut adm = ClientAddressing::from_options(&o).unwrap();
    let client = adm.admit("client").unwrap();
    let peer = PeerInfo::parse(
        "IV_VER=2.6.14\nIV_PLAT=linux\nIV_TCPNL=1\nIV_MTU=1600\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\nIV_PROTO=990\nIV_LZO_STUB=1\nIV_COMP_STUB=1\nIV_COMP_STUBv2=1\n",
    );
    let n = negotiate(&o.data_ciphers, o.data_ciphers_fallback, &peer, "").unwrap();
    let per = ClientPush {
        ifconfig_ipv6: client.ipv6,
        ifconfig: client.ipv4,
        peer_id: 0,
        negotiated: n,
        tun_mtu: o.tun_mtu,
    };
    let msgs = build_push_reply(&client.push, &per.options()).unwrap();
    assert_eq!(
        msgs,
        [
            "PUSH_REPLY,route-gateway 10.8.0.1,topology subnet,ping 10,ping-restart 60,ifconfig 10.8.0.2 255.255.255.0,peer-id 0,cipher AES-256-GCM,protocol-flags cc-exit tls-ekm,tun-mtu 1500"
        ]
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Random connects and disconnects never hand one address to two clients, and
        /// the pool's count matches.
        #[test]
        fn no_address_is_shared(ops in proptest::collection::vec((0u8..12, any::<bool>()), 1..200)) {
            let o = server("server 10.9.0.0 255.255.255.240\nserver-ipv6 fd00::/120\n");
            let mut adm = ClientAddressing::from_options(&o).unwrap();
            let mut live: Vec<Admitted> = Vec::new();
            for (name, connect) in ops {
                if connect {
                    match adm.admit(&format!("n{name}")) {
                        Ok(a) => {
                            live.retain(|l| !a.replaced.contains(&l.id));
                            live.push(a);
                        }
                        Err(e) => prop_assert_eq!(e, AdmitError::PoolExhausted),
                    }
                } else if let Some(pos) = live.iter().position(|l| l.common_name == format!("n{name}")) {
                    let l = live.remove(pos);
                    adm.release(l.id);
                }
                let mut v4s: Vec<_> = live.iter().map(|l| l.ipv4).collect();
                let mut v6s: Vec<_> = live.iter().map(|l| l.ipv6).collect();
                v4s.sort();
                v4s.dedup();
                v6s.sort();
                v6s.dedup();
                prop_assert_eq!(v4s.len(), live.len());
                prop_assert_eq!(v6s.len(), live.len());
                prop_assert_eq!(adm.len(), live.len());
                prop_assert_eq!(adm.pool().unwrap().in_use(), live.len());
            }
        }

        #[test]
        fn ccd_parse_never_panics(text in "\\PC{0,300}") {
            let _ = CcdOptions::parse("p", &text);
        }
    }
}
