use super::*;
use crate::config::parse_str;

const DEBIAN_PEER_INFO: &str = "IV_VER=2.6.14\nIV_PLAT=linux\nIV_TCPNL=1\nIV_MTU=1600\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\nIV_PROTO=990\nIV_LZO_STUB=1\nIV_COMP_STUB=1\nIV_COMP_STUBv2=1\n";
const CLIENT_OCC: &str = "V4,dev-type tun,link-mtu 1541,tun-mtu 1500,proto UDPv4,auth SHA1,keysize 128,key-method 2,tls-client";

/// The server of §10.2 (the config the stock PUSH_REPLY of §7.5 came from).
const SERVER_CONF: &str = "port 1194\nproto udp\ndev tun\ntopology subnet\nserver 10.8.0.0 255.255.255.0\nca ca.crt\ncert server.crt\nkey server.key\ndh none\ndata-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\nkeepalive 10 60\ntls-crypt tc.key\nexplicit-exit-notify 1\n";

/// §7.5, verbatim from a stock 2.6.14 server, minus ` dyn-tls-crypt`.
const STOCK_PUSH_REPLY: &str = "PUSH_REPLY,route-gateway 10.8.0.1,topology subnet,ping 10,ping-restart 60,ifconfig 10.8.0.2 255.255.255.0,peer-id 0,cipher AES-256-GCM,protocol-flags cc-exit tls-ekm,tun-mtu 1500";

#[test]
fn default_push_reply_matches_stock_2_6_14_byte_for_byte() {
    let o = parse_str("server.conf", SERVER_CONF).unwrap();
    let peer = PeerInfo::parse(DEBIAN_PEER_INFO);
    let n = negotiate(&o.data_ciphers, o.data_ciphers_fallback, &peer, CLIENT_OCC).unwrap();
    assert!(
        n.push_early,
        "IV_PROTO bit 2: push without waiting for PUSH_REQUEST"
    );
    let client = ClientPush {
        ifconfig_ipv6: None,
        ifconfig: Some((Ipv4Addr::new(10, 8, 0, 2), o.server.unwrap().netmask)),
        peer_id: 0,
        negotiated: n,
        tun_mtu: o.tun_mtu,
    };
    let msgs = build_push_reply(&o.global_push_list(), &client.options()).unwrap();
    assert_eq!(msgs, [STOCK_PUSH_REPLY]);
    let wire = ControlMessage::parse(&msgs[0]).encode().unwrap();
    let mut want = STOCK_PUSH_REPLY.as_bytes().to_vec();
    want.push(0);
    assert_eq!(wire, want);
}

#[test]
fn the_stock_push_reply_parses_on_the_client() {
    let ControlMessage::PushReply(body) = ControlMessage::parse(STOCK_PUSH_REPLY) else {
        panic!()
    };
    let mut asm = PushReplyAssembler::new();
    let p = asm.feed(&body).unwrap().unwrap();
    assert!(asm.is_complete());
    assert_eq!(
        p.route_gateway,
        Some(RouteGateway::Addr(Ipv4Addr::new(10, 8, 0, 1)))
    );
    assert_eq!(p.topology, Some(Topology::Subnet));
    assert_eq!((p.ping, p.ping_restart), (Some(10), Some(60)));
    assert_eq!(
        p.ifconfig,
        Some((Ipv4Addr::new(10, 8, 0, 2), Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(p.peer_id, Some(0));
    assert_eq!(p.cipher, Some(DataCipher::Aes256Gcm));
    assert_eq!(
        p.protocol_flags,
        ProtocolFlags {
            cc_exit: true,
            tls_ekm: true,
            ..Default::default()
        }
    );
    assert!(p.uses_tls_ekm());
    assert_eq!(p.tun_mtu, Some(1500));
    assert!(p.ignored.is_empty());
    // The unmodified stock message announces dyn-tls-crypt, which we do not implement.
    let stock = STOCK_PUSH_REPLY.replace("tls-ekm", "tls-ekm dyn-tls-crypt");
    let ControlMessage::PushReply(body) = ControlMessage::parse(&stock) else {
        panic!()
    };
    assert!(matches!(
        PushedOptions::parse(&body),
        Err(PushError::IncompatiblePushedOption { .. })
    ));
}

#[test]
fn per_client_options_order_and_variants() {
    let peer = PeerInfo::parse(DEBIAN_PEER_INFO);
    let n = negotiate(&DataCipher::ALL, None, &peer, CLIENT_OCC).unwrap();
    let c = ClientPush {
        ifconfig_ipv6: Some((
            "fd00::1000".parse().unwrap(),
            64,
            "fd00::1".parse().unwrap(),
        )),
        ifconfig: Some((Ipv4Addr::new(10, 8, 0, 5), Ipv4Addr::new(255, 255, 255, 0))),
        peer_id: 7,
        negotiated: n.clone(),
        tun_mtu: 1400,
    };
    assert_eq!(
        c.options(),
        [
            "ifconfig-ipv6 fd00::1000/64 fd00::1",
            "ifconfig 10.8.0.5 255.255.255.0",
            "peer-id 7",
            "cipher AES-256-GCM",
            "protocol-flags cc-exit tls-ekm",
            "tun-mtu 1400"
        ]
    );
    // A 2.5 client: tls-ekm but no cc-exit -> key-derivation; no IV_MTU -> no tun-mtu.
    let p25 = PeerInfo::parse(
        "IV_VER=2.5.9\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM\nIV_PROTO=30\n",
    );
    let n25 = negotiate(&DataCipher::ALL, None, &p25, "").unwrap();
    let c25 = ClientPush {
        negotiated: n25,
        ifconfig_ipv6: None,
        ..c.clone()
    };
    assert_eq!(
        c25.options(),
        [
            "ifconfig 10.8.0.5 255.255.255.0",
            "peer-id 7",
            "cipher AES-256-GCM",
            "key-derivation tls-ekm"
        ]
    );
    // A 2.4 client: no key export -> TLS1-PRF, nothing pushed about key derivation.
    let p24 = PeerInfo::parse("IV_VER=2.4.12\nIV_NCP=2\nIV_PROTO=2\n");
    let n24 = negotiate(&DataCipher::ALL, None, &p24, "").unwrap();
    assert_eq!(n24.key_derivation, KeyDerivation::Tls1Prf);
    assert_eq!(n24.cipher, DataCipher::Aes256Gcm);
    let c24 = ClientPush {
        negotiated: n24,
        ifconfig_ipv6: None,
        ..c
    };
    assert_eq!(
        c24.options(),
        [
            "ifconfig 10.8.0.5 255.255.255.0",
            "peer-id 7",
            "cipher AES-256-GCM"
        ]
    );
}

#[test]
fn ncp_cipher_choice() {
    let server = [DataCipher::Chacha20Poly1305, DataCipher::Aes128Gcm];
    let peer = PeerInfo::parse(DEBIAN_PEER_INFO);
    assert_eq!(
        best_cipher(&server, &peer, None),
        Some(DataCipher::Chacha20Poly1305),
        "server order wins"
    );
    let only_ncp2 = PeerInfo::parse("IV_NCP=2\nIV_PROTO=2\n");
    assert_eq!(
        best_cipher(&server, &only_ncp2, None),
        Some(DataCipher::Aes128Gcm)
    );
    assert_eq!(
        best_cipher(&[DataCipher::Chacha20Poly1305], &only_ncp2, None),
        None
    );
    // Poor man's NCP: the OCC cipher counts only without IV_CIPHERS.
    let old = PeerInfo::parse("IV_PROTO=2\n");
    assert_eq!(
        best_cipher(&server, &old, Some("AES-128-GCM")),
        Some(DataCipher::Aes128Gcm)
    );
    let with_list = PeerInfo::parse("IV_PROTO=2\nIV_CIPHERS=AES-256-GCM\n");
    assert_eq!(best_cipher(&server, &with_list, Some("AES-128-GCM")), None);
    // No common cipher: error naming both sides, unless a fallback is configured.
    let e = negotiate(&[DataCipher::Chacha20Poly1305], None, &with_list, "").unwrap_err();
    assert_eq!(
        e.to_string(),
        "no common data cipher: server has CHACHA20-POLY1305, client offers AES-256-GCM"
    );
    let n = negotiate(
        &[DataCipher::Chacha20Poly1305],
        Some(DataCipher::Aes256Gcm),
        &with_list,
        "",
    )
    .unwrap();
    assert_eq!(n.cipher, DataCipher::Aes256Gcm);
    // A client without NCP gets no `cipher` push.
    let n = negotiate(&server, None, &old, "V4,cipher AES-128-GCM").unwrap();
    assert!(!n.push_cipher);
}

#[test]
fn clients_without_data_v2_are_refused() {
    for pi in [
        "IV_VER=2.3.18\nIV_NCP=2\n",
        "IV_PROTO=1\n",
        "IV_PROTO=988\n",
        "",
    ] {
        let e = negotiate(&DataCipher::ALL, None, &PeerInfo::parse(pi), "").unwrap_err();
        assert_eq!(e, PushError::NoDataV2, "{pi:?}");
    }
    assert!(PushError::NoDataV2.to_string().contains("missing DATA_V2"));
}

#[test]
fn keepalive_pushes_n_and_m_server_uses_2m() {
    let o = parse_str(
        "s",
        "server 10.8.0.0 255.255.255.0\nca a\ncert b\nkey c\nkeepalive 5 30\n",
    )
    .unwrap();
    let g = o.global_push_list();
    assert!(g.contains(&"ping 5".to_string()) && g.contains(&"ping-restart 30".to_string()));
    let t = o.ping_timers();
    assert_eq!((t.ping, t.ping_restart), (Some(5), Some(60)));
}

#[test]
fn ipv6_server_push_list_has_tun_ipv6_first() {
    let o = parse_str(
        "s",
        "push \"route 192.168.1.0 255.255.255.0\"\nserver 10.8.0.0 255.255.255.0\nserver-ipv6 fd00:8::/64\nca a\ncert b\nkey c\nkeepalive 10 60\n",
    )
    .unwrap();
    assert_eq!(
        o.global_push_list(),
        [
            "route 192.168.1.0 255.255.255.0",
            "tun-ipv6",
            "route-gateway 10.8.0.1",
            "topology subnet",
            "ping 10",
            "ping-restart 60"
        ]
    );
}

#[test]
fn long_push_lists_are_split_like_26() {
    let global: Vec<String> = (0..100)
        .map(|i| format!("route 10.{i}.0.0 255.255.0.0"))
        .collect();
    let per = vec![
        "ifconfig 10.8.0.2 255.255.255.0".to_string(),
        "peer-id 3".to_string(),
    ];
    let msgs = build_push_reply(&global, &per).unwrap();
    assert!(msgs.len() >= 3, "{}", msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        assert!(m.starts_with("PUSH_REPLY,"));
        assert!(
            m.len() < PUSH_BUNDLE_SIZE - PUSH_EXTRA + 21,
            "part {i} is {} bytes",
            m.len()
        );
        let last = i + 1 == msgs.len();
        assert!(
            m.ends_with(if last {
                ",push-continuation 1"
            } else {
                ",push-continuation 2"
            }),
            "{m}"
        );
    }
    // The client puts them back together, in order.
    let mut asm = PushReplyAssembler::new();
    let mut result = None;
    for m in &msgs {
        let ControlMessage::PushReply(body) = ControlMessage::parse(m) else {
            panic!()
        };
        assert!(result.is_none());
        result = asm.feed(&body).unwrap();
    }
    let p = result.unwrap();
    assert_eq!(p.routes.len(), 100);
    assert_eq!(p.routes[99].network, Ipv4Addr::new(10, 99, 0, 0));
    assert_eq!(p.peer_id, Some(3));
    assert_eq!(asm.feed("x"), Err(PushError::AlreadyComplete));
    // An option that can never fit is an error; a comma inside an option too.
    assert!(matches!(
        build_push_reply(&["x".repeat(2000)], &[]),
        Err(PushError::OptionTooLong(_))
    ));
    assert!(matches!(
        build_push_reply(&["a,b".into()], &[]),
        Err(PushError::Comma(_))
    ));
    // Nothing to push still sends a bare PUSH_REPLY (the client waits for one).
    assert_eq!(build_push_reply(&[], &[]).unwrap(), ["PUSH_REPLY"]);
}

#[test]
fn assembler_bounds_a_hostile_server() {
    let mut asm = PushReplyAssembler::new();
    let part = format!("{},push-continuation 2", "dhcp-option DOMAIN x,".repeat(40));
    let mut err = None;
    for _ in 0..200 {
        if let Err(e) = asm.feed(&part) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(PushError::PushTooLarge));
}

#[test]
fn pushed_option_parsing() {
    let p = PushedOptions::parse(
        "route 192.168.0.0 255.255.0.0 vpn_gateway 10,route-ipv6 2001:db8::/32,ifconfig-ipv6 fd00::1000/64 fd00::1,redirect-gateway def1 bypass-dhcp,dhcp-option DNS 10.8.0.1,dns server 0 address 10.8.0.1,route-gateway dhcp,topology net30,,explicit-exit-notify 1,compress stub-v2",
    )
    .unwrap();
    assert_eq!(p.routes[0].gateway.as_deref(), Some("vpn_gateway"));
    assert_eq!(p.routes_ipv6[0].network.prefix_len, 32);
    assert_eq!(p.ifconfig_ipv6.unwrap().1, Some("fd00::1".parse().unwrap()));
    assert_eq!(
        p.redirect_gateway,
        Some(vec!["def1".into(), "bypass-dhcp".into()])
    );
    assert_eq!(p.dhcp_options, ["DNS 10.8.0.1"]);
    assert_eq!(p.dns, ["server 0 address 10.8.0.1"]);
    assert_eq!(p.route_gateway, Some(RouteGateway::Dhcp));
    assert_eq!(p.topology, Some(Topology::Net30));
    assert_eq!(p.ignored, ["explicit-exit-notify 1"]);
    for (bad, incompatible) in [
        ("comp-lzo no", true),
        ("compress lz4-v2", true),
        ("compress", true),
        ("cipher BF-CBC", true),
        ("protocol-flags cc-exit aead-epoch", true),
        ("peer-id x", false),
        ("peer-id 16777215", false),
        ("ifconfig 10.8.0.2", false),
        ("route 10.0.0.1 255.0.0.0", false),
        ("topology star", false),
        ("protocol-flags cc-exit bogus", false),
        ("key-derivation prf", false),
        ("tun-mtu 10", false),
        ("route \"unterminated", false),
    ] {
        match PushedOptions::parse(bad) {
            Err(PushError::IncompatiblePushedOption { .. }) if incompatible => {}
            Err(PushError::BadPushedOption { .. }) if !incompatible => {}
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn message_classification_like_26() {
    use ControlMessage as M;
    assert_eq!(M::parse("PUSH_REQUEST"), M::PushRequest);
    assert_eq!(M::parse("PUSH_REPLY"), M::PushReply(String::new()));
    assert_eq!(
        M::parse("PUSH_REPLY,ping 10"),
        M::PushReply("ping 10".into())
    );
    assert_eq!(M::parse("PUSH_REPLYX"), M::Unknown("PUSH_REPLYX".into()));
    assert_eq!(
        M::parse("PUSH_UPDATE,x"),
        M::Unknown("PUSH_UPDATE,x".into())
    );
    assert_eq!(
        M::parse("AUTH_FAILED"),
        M::AuthFailed {
            reason: None,
            temp: None
        }
    );
    assert_eq!(
        M::parse("AUTH_FAILED,bad password"),
        M::AuthFailed {
            reason: Some("bad password".into()),
            temp: None
        }
    );
    let M::AuthFailed { temp: Some(t), .. } =
        M::parse("AUTH_FAILED,TEMP[backoff 30,advance no]:try later")
    else {
        panic!()
    };
    assert_eq!(
        (t.backoff, t.advance.as_deref(), t.message.as_str()),
        (Some(30), Some("no"), "try later")
    );
    assert_eq!(
        M::parse("AUTH_PENDING,timeout 120"),
        M::AuthPending { timeout: Some(120) }
    );
    assert_eq!(M::parse("AUTH_PENDING"), M::AuthPending { timeout: None });
    assert_eq!(
        M::parse("RESTART"),
        M::Restart {
            flags: SignalFlags::default(),
            message: String::new()
        }
    );
    assert_eq!(
        M::parse("RESTART,[PN]server going down"),
        M::Restart {
            flags: SignalFlags {
                keep_password: true,
                next_server: true
            },
            message: "server going down".into()
        }
    );
    assert_eq!(
        M::parse("HALT,bye"),
        M::Halt {
            flags: SignalFlags::default(),
            message: "bye".into()
        }
    );
    assert_eq!(
        M::parse("INFO_PRE,WEB_AUTH::https://x"),
        M::InfoPre("WEB_AUTH::https://x".into())
    );
    assert_eq!(M::parse("INFO,hello"), M::Info("hello".into()));
    assert_eq!(M::parse("CR_RESPONSE,abc="), M::CrResponse("abc=".into()));
    assert_eq!(M::parse("EXIT"), M::Exit);
    assert_eq!(M::parse("FOO"), M::Unknown("FOO".into()));
    for m in [
        M::PushRequest,
        M::PushReply("ping 10,ping-restart 60".into()),
        M::AuthFailed {
            reason: Some("x".into()),
            temp: None,
        },
        M::Restart {
            flags: SignalFlags {
                keep_password: false,
                next_server: true,
            },
            message: "m".into(),
        },
        M::Halt {
            flags: SignalFlags::default(),
            message: String::new(),
        },
        M::Info("i".into()),
        M::Exit,
        M::AuthPending { timeout: Some(60) },
    ] {
        assert_eq!(M::parse(&m.to_text()), m);
    }
    assert_eq!(M::Exit.encode().unwrap(), b"EXIT\0");
    assert_eq!(M::parse("RESTART,[N]").to_text(), "RESTART,[N]");
}

#[test]
fn framing_and_splitting_like_26() {
    assert_eq!(frame("PUSH_REQUEST").unwrap(), b"PUSH_REQUEST\0");
    assert_eq!(frame("a\nb"), Err(PushError::NotPrintable));
    assert_eq!(frame("é"), Err(PushError::NotPrintable));
    assert_eq!(frame(&"x".repeat(2048)), Err(PushError::TooLong(2049)));
    assert!(frame(&"x".repeat(2047)).is_ok());

    let r = split_incoming(b"PUSH_REQUEST\0");
    assert_eq!(
        (r.messages, r.dropped),
        (vec!["PUSH_REQUEST".to_string()], 0)
    );
    // Several messages in one read; trailing CR/LF stripped; empty ones skipped.
    let r = split_incoming(b"INFO,a\r\n\0\0EXIT\0");
    assert_eq!(r.messages, ["INFO,a", "EXIT"]);
    // Interior newline or non-ASCII: dropped, counted.
    let r = split_incoming(b"INFO,a\nb\0INFO,\xc3\xa9\0EXIT\0");
    assert_eq!((r.messages, r.dropped), (vec!["EXIT".to_string()], 2));
    // A message without NUL (split across TLS records) is dropped, as 2.6 does.
    let r = split_incoming(b"PUSH_REP");
    assert_eq!((r.messages.len(), r.dropped), (0, 1));
    let r = split_incoming(b"EXIT\0PUSH_");
    assert_eq!((r.messages, r.dropped), (vec!["EXIT".to_string()], 1));
    // A single trailing byte is ignored (2.6 loops while more than one byte is left).
    assert_eq!(
        split_incoming(b"EXIT\0x"),
        Incoming {
            messages: vec!["EXIT".into()],
            dropped: 0
        }
    );
    assert_eq!(split_incoming(b""), Incoming::default());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn split_and_parse_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let inc = split_incoming(&bytes);
            for m in inc.messages {
                prop_assert!(m.bytes().all(|b| (0x20..0x7f).contains(&b)));
                let msg = ControlMessage::parse(&m);
                if let ControlMessage::PushReply(body) = msg {
                    let _ = PushedOptions::parse(&body);
                    let _ = PushReplyAssembler::new().feed(&body);
                }
            }
        }

        #[test]
        fn pushed_options_never_panic(body in "[ -~]{0,300}") {
            let _ = PushedOptions::parse(&body);
        }

        #[test]
        fn frame_then_split_round_trips(texts in proptest::collection::vec("[!-~][ -~]{0,60}[!-~]", 1..6)) {
            let mut wire = Vec::new();
            for t in &texts {
                wire.extend(frame(t).unwrap());
            }
            let inc = split_incoming(&wire);
            prop_assert_eq!(inc.messages, texts);
            prop_assert_eq!(inc.dropped, 0);
        }

        #[test]
        fn push_reply_parts_reassemble(n in 0usize..80, len in 1usize..60) {
            let global: Vec<String> = (0..n).map(|i| format!("dhcp-option DOMAIN {}{i}", "d".repeat(len))).collect();
            let msgs = build_push_reply(&global, &["peer-id 1".to_string()]).unwrap();
            let mut asm = PushReplyAssembler::new();
            let mut out = None;
            for m in &msgs {
                prop_assert!(m.len() < PUSH_BUNDLE_SIZE);
                let ControlMessage::PushReply(body) = ControlMessage::parse(m) else { panic!() };
                out = asm.feed(&body).unwrap();
            }
            let p = out.unwrap();
            prop_assert_eq!(p.dhcp_options.len(), n);
            prop_assert_eq!(p.peer_id, Some(1));
        }
    }
}
