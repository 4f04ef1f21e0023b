//! The command schema: if_ovpn's messages pack byte for byte as OpenVPN/if_ovpn build them
//! (golden vectors from libnv), every command and reply round-trips, and bad requests get
//! errors that name the key.

#[path = "golden/ovpn.rs"]
mod golden;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use control_ipc::codec::{self, Limits};
use control_ipc::message::{
    self, Command, Incoming, IpcError, Notification, Request, Response, decode_incoming,
    decode_request, encode_notification, encode_reply, encode_request,
};
use control_ipc::schema::*;
use control_ipc::types::{Bytes, InOut, IpPrefix, KeyBytes};
use control_ipc::{Nvlist, Value, from_nvlist, to_nvlist};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn pfx(s: &str) -> IpPrefix {
    s.parse().unwrap()
}

fn packed<T: serde::Serialize>(v: &T) -> String {
    hex::encode(codec::encode(&to_nvlist(v).unwrap()).unwrap())
}

fn golden(h: &str) -> String {
    h.to_owned()
}

fn key(seed: u8) -> KeyConfig {
    KeyConfig {
        cipher: Cipher::Aes256Gcm,
        key: KeyBytes::new((0..32).map(|i| seed + i).collect()),
        iv: KeyBytes::new((0..8).map(|i| 0xa0 + seed + i).collect()),
    }
}

fn new_peer() -> NewPeer {
    NewPeer {
        local: Some(sa("192.0.2.1:1194")),
        remote: sa("198.51.100.7:50000"),
        vpn_ipv4: Some(Ipv4Addr::new(10, 8, 0, 6)),
        vpn_ipv6: Some("fd00::6".parse().unwrap()),
        peerid: 5,
        common_name: None,
        iroutes: vec![],
    }
}

fn new_key() -> NewKey {
    NewKey {
        slot: KeySlot::Primary,
        keyid: 2,
        peerid: 5,
        encrypt: key(1),
        decrypt: key(0x41),
    }
}

#[test]
fn golden_new_peer_matches_openvpn() {
    assert_eq!(packed(&new_peer()), golden(golden::NEW_PEER));
    let v6 = NewPeer {
        local: None,
        remote: sa("[2001:db8::7]:1194"),
        vpn_ipv4: None,
        vpn_ipv6: None,
        peerid: 9,
        common_name: None,
        iroutes: vec![],
    };
    assert_eq!(packed(&v6), golden(golden::NEW_PEER6));
    // And back: the port comes out in host order again.
    let nvl = codec::decode(&hex::decode(golden::NEW_PEER).unwrap()).unwrap();
    let back: NewPeer = from_nvlist(&nvl).unwrap();
    assert_eq!(back, new_peer());
    assert_eq!(back.remote.port(), 50000);
}

#[test]
fn golden_key_and_peer_commands_match_openvpn() {
    assert_eq!(packed(&new_key()), golden(golden::NEW_KEY));
    let sp = SetPeer {
        peerid: 5,
        interval: 10,
        timeout: 60,
    };
    assert_eq!(packed(&sp), golden(golden::SET_PEER));
    let dk = DelKey {
        slot: KeySlot::Secondary,
        peerid: 5,
    };
    assert_eq!(packed(&dk), golden(golden::DEL_KEY));
    assert_eq!(packed(&PeerRef { peerid: 5 }), golden(golden::PEER_REF));
}

#[test]
fn golden_replies_match_if_ovpn() {
    let stats = InterfaceStats {
        lost_ctrl: InOut::new(1, 2),
        lost_data: InOut::new(3, 4),
        nomem_data: InOut::new(5, 6),
        data: InOut::new(7, 8),
        ctrl: InOut::new(9, 10),
        tunnel: InOut::new(11, 12),
        transport: InOut::new(13, 14),
        drops: vec![],
    };
    assert_eq!(packed(&stats), golden(golden::GET_STATS));
    let page = PeerStatsPage {
        peers: (1..=2)
            .map(|i| PeerStats {
                peerid: i,
                packets: InOut::new(100 * u64::from(i), 200 * u64::from(i)),
                bytes: InOut::new(1000 * u64::from(i), 2000 * u64::from(i)),
            })
            .collect(),
        next: None,
    };
    assert_eq!(packed(&page), golden(golden::PEER_STATS));
}

#[test]
fn golden_notifications_match_if_ovpn_get_pkt() {
    let cases = [
        (
            Notification::DelPeer(DelPeerNote {
                peerid: 5,
                del_reason: DelReason::TIMEOUT,
                packets: InOut::new(10, 20),
                bytes: InOut::new(1000, 2000),
            }),
            golden::NOTIF_DEL_PEER,
        ),
        (
            Notification::RotateKey(PeerRef { peerid: 5 }),
            golden::NOTIF_ROTATE,
        ),
        (
            Notification::Float(FloatNote {
                peerid: 5,
                address: sa("203.0.113.9:4000"),
            }),
            golden::NOTIF_FLOAT,
        ),
    ];
    for (n, g) in cases {
        let b = encode_notification(&n).unwrap();
        assert_eq!(hex::encode(&b), g, "{n:?}");
        match decode_incoming(&b, &Limits::default()).unwrap() {
            Incoming::Notification(back) => assert_eq!(back, n),
            other => panic!("{other:?}"),
        }
    }
}

fn all_requests() -> Vec<Request> {
    let mut peer = new_peer();
    peer.common_name = Some("alice".into());
    peer.iroutes = vec![pfx("192.168.10.0/24"), pfx("2001:db8:1::/48")];
    vec![
        Request::NewPeer(peer),
        Request::DelPeer(PeerRef { peerid: 5 }),
        Request::SetPeer(SetPeer {
            peerid: 5,
            interval: 10,
            timeout: 60,
        }),
        Request::NewKey(new_key()),
        Request::NewKey(NewKey {
            slot: KeySlot::Secondary,
            keyid: 7,
            peerid: 1,
            encrypt: KeyConfig {
                cipher: Cipher::None,
                key: KeyBytes::default(),
                iv: KeyBytes::default(),
            },
            decrypt: KeyConfig {
                cipher: Cipher::None,
                key: KeyBytes::default(),
                iv: KeyBytes::default(),
            },
        }),
        Request::SwapKeys(PeerRef { peerid: 5 }),
        Request::DelKey(DelKey {
            slot: KeySlot::Secondary,
            peerid: 5,
        }),
        Request::StartVpn,
        Request::SetIfmode(SetIfmode {
            ifmode: IFMODE_SUBNET,
            client_to_client: Some(true),
        }),
        Request::GetStats,
        Request::GetPeerStats(Page {
            cursor: Some(100),
            limit: Some(50),
        }),
        Request::GetPeers(Page::default()),
        Request::GetInfo,
        Request::Listen(Listen {
            local: sa("[::]:1194"),
        }),
        Request::SetIfconfig(SetIfconfig {
            ipv4: Some(pfx("10.8.0.1/24")),
            ipv6: Some(pfx("fd00::1/64")),
            mtu: Some(1420),
            up: Some(true),
        }),
        Request::AddRoute(Route {
            dst: pfx("192.168.10.0/24"),
            gateway: Some(IpAddr::V4(Ipv4Addr::new(10, 8, 0, 6))),
            metric: Some(5),
        }),
        Request::DelRoute(Route {
            dst: pfx("2001:db8::/32"),
            gateway: None,
            metric: None,
        }),
        Request::AddIroute(Iroutes {
            peerid: 5,
            iroutes: vec![pfx("192.168.20.0/24")],
        }),
        Request::DelIroute(Iroutes {
            peerid: 5,
            iroutes: vec![pfx("192.168.20.0/24")],
        }),
        Request::SendControl(SendControl {
            peerid: Some(5),
            remote: sa("[2001:db8::9%3]:1194"),
            local: Some(sa("[2001:db8::1]:1194")),
            packet: Bytes(vec![0x38, 1, 2, 3]),
        }),
        Request::Subscribe(Subscribe {
            notifications: vec![0, 64],
            queue: Some(4096),
        }),
        Request::Unsubscribe,
        Request::FwLoad(FwLoad {
            rules: "ct state established,related accept\nct state invalid drop\n".into(),
        }),
        Request::FwList,
        Request::FwCounters(FwCountersRequest { zero: Some(true) }),
        Request::CtList(CtListRequest {
            cursor: Some(7),
            limit: Some(100),
            peerid: Some(5),
        }),
        Request::CtFlush(CtFlush { peerid: None }),
        Request::CtStats,
    ]
}

#[test]
fn every_request_round_trips() {
    let reqs = all_requests();
    let covered: std::collections::HashSet<Command> = reqs.iter().map(|r| r.command()).collect();
    for c in Command::ALL {
        assert!(covered.contains(c), "no round-trip case for {c}");
    }
    for (i, req) in reqs.into_iter().enumerate() {
        let id = 1000 + i as u64;
        let b = encode_request(id, &req).unwrap();
        // `DCO_IPC_FUZZ_SEEDS=dir` also writes each request there as a fuzzing seed.
        if let Ok(dir) = std::env::var("DCO_IPC_FUZZ_SEEDS") {
            std::fs::write(format!("{dir}/request-{i}"), &b).unwrap();
        }
        let (got_id, back) = decode_request(&b, &Limits::default()).unwrap();
        assert_eq!((got_id, &back), (id, &req));
    }
}

fn ct_tuple(a: &str, b: &str) -> CtTuple {
    CtTuple {
        src: a.parse().unwrap(),
        dst: b.parse().unwrap(),
        sport: Some(40000),
        dport: Some(443),
        icmp_type: None,
        icmp_code: None,
        icmp_id: None,
    }
}

fn all_responses() -> Vec<(Command, Response)> {
    let peer = PeerInfo {
        peerid: 5,
        remote: sa("198.51.100.7:50000"),
        local: Some(sa("192.0.2.1:1194")),
        vpn_ipv4: Some(Ipv4Addr::new(10, 8, 0, 6)),
        vpn_ipv6: Some(Ipv6Addr::LOCALHOST),
        common_name: Some("alice".into()),
        iroutes: vec![pfx("192.168.10.0/24")],
        keys: vec![
            KeySlotInfo {
                slot: KeySlot::Primary,
                keyid: 2,
                cipher: Cipher::Aes256Gcm,
                installed: Some(1_700_000_000),
            },
            KeySlotInfo {
                slot: KeySlot::Secondary,
                keyid: 1,
                cipher: Cipher::Chacha20Poly1305,
                installed: None,
            },
        ],
        interval: 10,
        timeout: 60,
        last_rx: Some(1_700_000_100),
        last_tx: None,
        packets: InOut::new(1, 2),
        bytes: InOut::new(3, 4),
    };
    vec![
        (Command::NewPeer, Response::Ok),
        (
            Command::GetStats,
            Response::Stats(InterfaceStats {
                data: InOut::new(5, 6),
                drops: vec![NamedCounter::new("replay", 3)],
                ..Default::default()
            }),
        ),
        (
            Command::GetPeerStats,
            Response::PeerStats(PeerStatsPage {
                peers: vec![PeerStats {
                    peerid: 1,
                    packets: InOut::new(1, 1),
                    bytes: InOut::new(2, 2),
                }],
                next: Some(2),
            }),
        ),
        (
            Command::GetPeers,
            Response::Peers(PeersPage {
                peers: vec![peer],
                next: None,
            }),
        ),
        (
            Command::GetInfo,
            Response::Info(Info {
                version: "0.1.0".into(),
                ifname: "dco0".into(),
                workers: 2,
                crypto_backend: "ring".into(),
                gpu_status: "none".into(),
                gpu: vec![NamedCounter::new("batches", 0)],
                peers: 1,
                uptime: 5,
                running: true,
                listen: vec![Endpoint(sa("0.0.0.0:1194"))],
            }),
        ),
        (
            Command::Listen,
            Response::Listening(Listen {
                local: sa("0.0.0.0:41000"),
            }),
        ),
        (
            Command::Subscribe,
            Response::Subscribed(Subscribed { queue: 1024 }),
        ),
        (Command::FwLoad, Response::FwLoaded(FwLoaded { rules: 2 })),
        (
            Command::FwList,
            Response::FwRules(FwRules {
                policy: "drop".into(),
                policy_packets: 1,
                policy_bytes: 60,
                rules: vec![FwRule {
                    index: 0,
                    text: "ct state established accept".into(),
                    packets: 10,
                    bytes: 1000,
                }],
            }),
        ),
        (
            Command::FwCounters,
            Response::FwCounters(FwCounters {
                policy_packets: 1,
                policy_bytes: 2,
                rules: vec![FwRuleCounter {
                    index: 0,
                    packets: 3,
                    bytes: 4,
                }],
            }),
        ),
        (
            Command::CtList,
            Response::CtList(CtPage {
                entries: vec![CtEntry {
                    proto: 6,
                    state: "ESTABLISHED".into(),
                    orig: ct_tuple("10.8.0.6", "192.0.2.80"),
                    reply: ct_tuple("192.0.2.80", "10.8.0.6"),
                    orig_packets: 1,
                    orig_bytes: 2,
                    reply_packets: 3,
                    reply_bytes: 4,
                    timeout: 431999,
                    mark: 0,
                    peerid: Some(5),
                    assured: true,
                }],
                next: Some(99),
            }),
        ),
        (
            Command::CtFlush,
            Response::CtFlushed(CtFlushed { flushed: 3 }),
        ),
        (
            Command::CtStats,
            Response::CtStats(CtStats {
                entries: 1,
                max: 65536,
                early_drop: 2,
                ..Default::default()
            }),
        ),
    ]
}

#[test]
fn every_reply_round_trips() {
    for (cmd, resp) in all_responses() {
        assert!(resp.answers(cmd), "{cmd}");
        let b = encode_reply(42, &Ok(resp.clone()));
        let Incoming::Reply { id, result } = decode_incoming(&b, &Limits::default()).unwrap()
        else {
            panic!("not a reply")
        };
        assert_eq!(id, 42);
        let back = Response::from_result(cmd, result.unwrap().as_ref()).unwrap();
        assert_eq!(back, resp);
    }
}

#[test]
fn error_reply_round_trips() {
    let e = IpcError::invalid("args.remote.port", "remote port is 0");
    let b = encode_reply(7, &Err(e.clone()));
    let Incoming::Reply { id, result } = decode_incoming(&b, &Limits::default()).unwrap() else {
        panic!()
    };
    assert_eq!(id, 7);
    assert_eq!(result.unwrap_err(), e);
}

#[test]
fn every_notification_round_trips() {
    let notes = [
        Notification::ControlPacket(ControlPacketNote {
            peerid: None,
            remote: sa("198.51.100.7:50000"),
            local: Some(sa("192.0.2.1:1194")),
            packet: Bytes(vec![0x38; 60]),
        }),
        Notification::Missed(MissedNote { count: 17 }),
        Notification::Unknown {
            notification: 200,
            body: Nvlist::new()
                .with("notification", Value::Number(200))
                .with("x", Value::Number(1)),
        },
    ];
    for n in notes {
        let b = encode_notification(&n).unwrap();
        let Incoming::Notification(back) = decode_incoming(&b, &Limits::default()).unwrap() else {
            panic!()
        };
        assert_eq!(back, n);
    }
}

fn request_nvl(cmd: &str, args: Option<Nvlist>) -> Vec<u8> {
    let mut n = Nvlist::new()
        .with("id", Value::Number(9))
        .with("cmd", Value::String(cmd.into()));
    if let Some(a) = args {
        n.push("args", Value::Nvlist(a));
    }
    codec::encode(&n).unwrap()
}

fn req_err(b: &[u8]) -> (u64, IpcError) {
    decode_request(b, &Limits::default()).unwrap_err()
}

#[test]
fn missing_and_wrongly_typed_keys_are_named() {
    let (id, e) = req_err(&request_nvl("DEL_PEER", None));
    assert_eq!(id, 9);
    assert_eq!(
        (e.errno, e.key.as_deref()),
        (libc::EINVAL, Some("args.peerid"))
    );
    assert!(e.message.contains("missing key 'args.peerid'"), "{e}");

    let args = Nvlist::new().with("peerid", Value::String("5".into()));
    let (_, e) = req_err(&request_nvl("DEL_PEER", Some(args)));
    assert_eq!(e.key.as_deref(), Some("args.peerid"));
    assert!(e.message.contains("expected number"), "{e}");

    // Nested: remote without its port.
    let mut nvl = to_nvlist(&new_peer()).unwrap();
    let Some(Value::Nvlist(mut remote)) = nvl.remove("remote") else {
        panic!()
    };
    remote.remove("port");
    nvl.push("remote", Value::Nvlist(remote));
    let (_, e) = req_err(&request_nvl("NEW_PEER", Some(nvl)));
    assert_eq!(e.key.as_deref(), Some("args.remote.port"), "{e}");

    // A u8 field given 300.
    let mut nvl = to_nvlist(&new_key()).unwrap();
    nvl.remove("keyid");
    nvl.push("keyid", Value::Number(300));
    let (_, e) = req_err(&request_nvl("NEW_KEY", Some(nvl)));
    assert_eq!(e.key.as_deref(), Some("args.keyid"), "{e}");

    // Unknown cipher.
    let mut k = to_nvlist(&new_key()).unwrap();
    let Some(Value::Nvlist(mut enc)) = k.remove("encrypt") else {
        panic!()
    };
    enc.remove("cipher");
    enc.push("cipher", Value::String("BF-CBC".into()));
    k.push("encrypt", Value::Nvlist(enc));
    let (_, e) = req_err(&request_nvl("NEW_KEY", Some(k)));
    assert_eq!(e.key.as_deref(), Some("args.encrypt.cipher"), "{e}");
}

#[test]
fn semantic_validation_names_the_key() {
    let mut k = new_key();
    k.decrypt.key = KeyBytes::new(vec![0; 16]);
    let b = encode_request(3, &Request::NewKey(k)).unwrap();
    let (id, e) = req_err(&b);
    assert_eq!(id, 3);
    assert_eq!(e.key.as_deref(), Some("args.decrypt.key"), "{e}");

    let b = encode_request(4, &Request::DelPeer(PeerRef { peerid: 0xFFFFFF })).unwrap();
    assert_eq!(req_err(&b).1.key.as_deref(), Some("args.peerid"));

    let b = encode_request(
        5,
        &Request::SetIfmode(SetIfmode {
            ifmode: 1,
            client_to_client: None,
        }),
    )
    .unwrap();
    assert_eq!(req_err(&b).1.key.as_deref(), Some("args.ifmode"));
}

#[test]
fn unknown_keys_are_ignored_and_unknown_commands_refused() {
    let mut nvl = to_nvlist(&new_peer()).unwrap();
    nvl.push("fd", Value::Number(3)); // OpenVPN's if_ovpn key, meaningless here
    nvl.push("future_option", Value::StringArray(vec!["x".into()]));
    let (_, req) = decode_request(&request_nvl("NEW_PEER", Some(nvl)), &Limits::default()).unwrap();
    assert_eq!(req, Request::NewPeer(new_peer()));

    let (id, e) = req_err(&request_nvl("POLL_PKT", None));
    assert_eq!((id, e.errno), (9, libc::EOPNOTSUPP));
    assert!(e.message.contains("POLL_PKT"));
}

#[test]
fn peek_id_recovers_ids_from_broken_messages() {
    let b = encode_request(77, &Request::NewPeer(new_peer())).unwrap();
    assert_eq!(message::peek_id(&b), 77);
    let cut = &b[..b.len() / 2];
    let (id, e) = req_err(cut);
    assert_eq!(id, 77);
    assert_eq!(e.errno, libc::EINVAL);
    assert_eq!(message::peek_id(b"junk"), 0);
}

#[test]
fn keys_never_appear_in_debug_or_json() {
    let k = new_key();
    let dbg = format!("{:?}", Request::NewKey(k.clone()));
    assert!(dbg.contains("redacted"), "{dbg}");
    assert!(!dbg.contains("33, 34"), "{dbg}");
    let json = serde_json::to_string(&k).unwrap();
    assert!(json.contains("<redacted>"), "{json}");
    assert!(!json.contains("0102"), "{json}");
}

#[test]
fn json_forms_are_readable() {
    let (_, resp) = all_responses()
        .into_iter()
        .find(|(c, _)| *c == Command::GetPeers)
        .unwrap();
    let Response::Peers(p) = resp else { panic!() };
    let j = serde_json::to_value(&p).unwrap();
    let peer = &j["peers"][0];
    assert_eq!(peer["remote"], "198.51.100.7:50000");
    assert_eq!(peer["vpn_ipv4"], "10.8.0.6");
    assert_eq!(peer["iroutes"][0], "192.168.10.0/24");
    assert_eq!(peer["keys"][0]["slot"], "primary");
    assert_eq!(peer["keys"][0]["cipher"], "AES-256-GCM");
    assert_eq!(peer["bytes"]["in"], 3);
    // JSON reads back too.
    let back: PeersPage = serde_json::from_value(j).unwrap();
    assert_eq!(back, p);
}
