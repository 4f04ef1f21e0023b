use super::*;
use crate::config::parse_str;

/// Peer-info of a Debian 2.6.14 `client`, as captured live (§4).
const DEBIAN_PEER_INFO: &str = "IV_VER=2.6.14\nIV_PLAT=linux\nIV_TCPNL=1\nIV_MTU=1600\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\nIV_PROTO=990\nIV_LZO_STUB=1\nIV_COMP_STUB=1\nIV_COMP_STUBv2=1\n";
const CLIENT_OPTIONS: &str = "V4,dev-type tun,link-mtu 1541,tun-mtu 1500,proto UDPv4,auth SHA1,keysize 128,key-method 2,tls-client";
const SERVER_OPTIONS: &str = "V4,dev-type tun,link-mtu 1541,tun-mtu 1500,proto UDPv4,auth SHA1,keysize 128,key-method 2,tls-server";

fn lp(s: &str) -> Vec<u8> {
    let mut v = ((s.len() + 1) as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// A client record assembled by hand, byte by byte, exactly as §4 describes.
fn golden_client_record() -> Vec<u8> {
    let mut v = vec![0, 0, 0, 0, 2];
    v.extend((0..48).map(|i| 0xA0u8.wrapping_add(i))); // pre_master
    v.extend((0..32).map(|i| 0x10u8 + i)); // random1
    v.extend((0..32).map(|i| 0x40u8 + i)); // random2
    v.extend(lp(CLIENT_OPTIONS));
    v.extend([0, 0, 0, 0]); // no username, no password
    v.extend(lp(DEBIAN_PEER_INFO));
    v
}

fn golden_server_record() -> Vec<u8> {
    let mut v = vec![0, 0, 0, 0, 2];
    v.extend([0x77u8; 32]);
    v.extend([0x88u8; 32]);
    v.extend(lp(SERVER_OPTIONS));
    v.extend([0, 0, 0, 0, 0, 0]); // username, password, peer-info all absent
    v
}

#[test]
fn golden_client_record_parses_and_round_trips() {
    let bytes = golden_client_record();
    assert_eq!(
        bytes.len(),
        117 + 2 + CLIENT_OPTIONS.len() + 1 + 4 + 2 + DEBIAN_PEER_INFO.len() + 1
    );
    let r = KeyMethod2::parse(&bytes, Sender::Client).unwrap();
    let pm = r.key_source.pre_master.unwrap();
    assert_eq!((pm[0], pm[47]), (0xA0, 0xA0 + 47));
    assert_eq!(
        (r.key_source.random1[0], r.key_source.random2[31]),
        (0x10, 0x40 + 31)
    );
    assert_eq!(r.options, CLIENT_OPTIONS);
    assert_eq!(r.credentials, Credentials::Absent);
    assert_eq!(r.peer_info.as_deref(), Some(DEBIAN_PEER_INFO));
    assert_eq!(&*r.encode(Sender::Client).unwrap(), &bytes);

    let pi = PeerInfo::parse(r.peer_info.as_deref().unwrap());
    assert_eq!(pi.version(), Some("2.6.14"));
    assert_eq!(pi.platform(), Some("linux"));
    assert_eq!(pi.mtu(), Some(1600));
    assert_eq!(pi.ncp_version(), 2);
    assert_eq!(
        pi.ciphers().unwrap(),
        ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"]
    );
    assert!(pi.supports_ncp());
    let p = pi.iv_proto();
    assert_eq!(p.0, 990);
    assert_eq!(
        p.flags(),
        [
            IvProtoFlag::DataV2,
            IvProtoFlag::RequestPush,
            IvProtoFlag::TlsKeyExport,
            IvProtoFlag::AuthPendingKw,
            IvProtoFlag::DnsOption,
            IvProtoFlag::CcExitNotify,
            IvProtoFlag::AuthFailTemp,
            IvProtoFlag::DynTlsCrypt
        ]
    );
    assert!(!p.has(IvProtoFlag::NcpP2p));
    assert_eq!(p.unknown_bits(), 0);
    assert_eq!(pi.get("IV_COMP_STUBv2"), Some("1"));
}

#[test]
fn golden_server_record_parses_and_round_trips() {
    let bytes = golden_server_record();
    assert_eq!(bytes.len(), 69 + 2 + SERVER_OPTIONS.len() + 1 + 6);
    let r = KeyMethod2::parse(&bytes, Sender::Server).unwrap();
    assert!(r.key_source.pre_master.is_none());
    assert_eq!(r.key_source.random1, [0x77; 32]);
    assert_eq!(r.options, SERVER_OPTIONS);
    assert_eq!(r.peer_info, None);
    assert_eq!(&*r.encode(Sender::Server).unwrap(), &bytes);
    // Read as if a client had sent it, the layout is wrong and parsing fails or differs.
    let as_client = KeyMethod2::parse(&bytes, Sender::Client);
    assert!(as_client.is_err() || as_client.unwrap().options != SERVER_OPTIONS);
}

#[test]
fn every_truncation_is_a_typed_error() {
    for (bytes, sender) in [
        (golden_client_record(), Sender::Client),
        (golden_server_record(), Sender::Server),
    ] {
        for n in 0..bytes.len() {
            match KeyMethod2::parse(&bytes[..n], sender) {
                Err(KeyMethodError::Truncated { field, need, have }) => {
                    assert!(need > have, "{n}: {field} {need} {have}");
                }
                other => panic!("prefix of {n} bytes gave {other:?}"),
            }
        }
    }
}

#[test]
fn trailing_bytes_are_ignored_like_26() {
    let mut b = golden_server_record();
    b.extend([1, 2, 3]);
    assert_eq!(
        KeyMethod2::parse(&b, Sender::Server).unwrap().options,
        SERVER_OPTIONS
    );
}

#[test]
fn key_method_byte_and_leading_word() {
    let mut b = golden_server_record();
    b[4] = 1;
    assert_eq!(
        KeyMethod2::parse(&b, Sender::Server),
        Err(KeyMethodError::BadKeyMethod(1))
    );
    b[4] = 0xF2; // upper flag bits are masked off
    assert!(KeyMethod2::parse(&b, Sender::Server).is_ok());
    b[0] = 0xFF; // the leading u32 is not checked (2.6 skips it)
    assert!(KeyMethod2::parse(&b, Sender::Server).is_ok());
}

#[test]
fn options_length_limits() {
    let base = || {
        let mut v = vec![0, 0, 0, 0, 2];
        v.extend([0u8; 64]);
        v
    };
    let mut b = base();
    b.extend([0, 0]);
    assert_eq!(
        KeyMethod2::parse(&b, Sender::Server),
        Err(KeyMethodError::OptionsLength(0))
    );
    let mut b = base();
    b.extend(513u16.to_be_bytes());
    b.extend([b'x'; 513]);
    assert_eq!(
        KeyMethod2::parse(&b, Sender::Server),
        Err(KeyMethodError::OptionsLength(513))
    );
    // 511 characters + NUL = 512 is the longest accepted.
    let s = "V".repeat(511);
    let mut b = base();
    b.extend(lp(&s));
    b.extend([0; 6]);
    assert_eq!(KeyMethod2::parse(&b, Sender::Server).unwrap().options, s);
    let rec = KeyMethod2 {
        key_source: KeySource {
            pre_master: None,
            random1: [0; 32],
            random2: [0; 32],
        },
        options: "V".repeat(512),
        credentials: Credentials::Absent,
        peer_info: None,
    };
    assert_eq!(
        rec.encode(Sender::Server).unwrap_err(),
        KeyMethodError::FieldTooLong {
            field: "options",
            len: 513,
            max: 512
        }
    );
}

#[test]
fn credentials_round_trip_and_limits() {
    let ks = KeySource::random(Sender::Client).unwrap();
    let rec = KeyMethod2 {
        key_source: ks,
        options: CLIENT_OPTIONS.into(),
        credentials: Credentials::Given(UserPass {
            username: Zeroizing::new("alice".into()),
            password: Zeroizing::new("s3cret".into()),
        }),
        peer_info: Some(PeerInfoBuilder::client(&DataCipher::ALL).build()),
    };
    let b = rec.encode(Sender::Client).unwrap();
    let back = KeyMethod2::parse(&b, Sender::Client).unwrap();
    assert_eq!(back, rec);
    assert!(
        !format!("{back:?}").contains("s3cret"),
        "password must not be printed"
    );

    // A 4096-byte username (with NUL) is accepted; 4097 is "too long" but the rest parses.
    for (len, too_long) in [(4096usize, false), (4097, true)] {
        let mut v = vec![0, 0, 0, 0, 2];
        v.extend([1u8; 48 + 64]);
        v.extend(lp("V4"));
        v.extend((len as u16).to_be_bytes());
        v.extend(std::iter::repeat_n(b'u', len - 1));
        v.push(0);
        v.extend(lp("pw"));
        v.extend(lp("IV_PROTO=2\n"));
        let r = KeyMethod2::parse(&v, Sender::Client).unwrap();
        assert_eq!(r.peer_info.as_deref(), Some("IV_PROTO=2\n"));
        if too_long {
            assert_eq!(
                r.credentials,
                Credentials::TooLong {
                    username_len: 4097,
                    password_len: 3
                }
            );
        } else {
            assert!(
                matches!(r.credentials, Credentials::Given(ref up) if up.username.len() == 4095)
            );
        }
    }
    // Empty-but-given credentials and an empty peer-info survive a round trip.
    let rec = KeyMethod2 {
        key_source: KeySource::random(Sender::Client).unwrap(),
        options: "V4".into(),
        credentials: Credentials::Given(UserPass {
            username: Zeroizing::new(String::new()),
            password: Zeroizing::new(String::new()),
        }),
        peer_info: Some(String::new()),
    };
    let back = KeyMethod2::parse(&rec.encode(Sender::Client).unwrap(), Sender::Client).unwrap();
    assert_eq!(back.credentials, rec.credentials);
    assert_eq!(back.peer_info, None, "empty peer-info reads as none");
    let rec = KeyMethod2 {
        key_source: KeySource::random(Sender::Client).unwrap(),
        options: "V4".into(),
        credentials: Credentials::Given(UserPass {
            username: Zeroizing::new("a\0b".into()),
            password: Zeroizing::new(String::new()),
        }),
        peer_info: None,
    };
    assert_eq!(
        rec.encode(Sender::Client).unwrap_err(),
        KeyMethodError::EmbeddedNul("username")
    );
}

#[test]
fn key_source_shape_is_checked() {
    let rec = KeyMethod2 {
        key_source: KeySource::random(Sender::Server).unwrap(),
        options: "V4".into(),
        credentials: Credentials::Absent,
        peer_info: None,
    };
    assert_eq!(
        rec.encode(Sender::Client).unwrap_err(),
        KeyMethodError::WrongKeySource(Sender::Client)
    );
    let c = KeySource::random(Sender::Client).unwrap();
    let s = KeySource::random(Sender::Server).unwrap();
    assert_ne!(c.random1, s.random1);
    let inputs = Tls1PrfInputs::new(&c, &s, [1; 8], [2; 8]).unwrap();
    assert_eq!(inputs.pre_master, c.pre_master.as_ref().unwrap());
    assert_eq!(inputs.server_random2, &s.random2);
    assert!(Tls1PrfInputs::new(&s, &c, [1; 8], [2; 8]).is_err());
    assert!(
        !format!("{c:?}").contains(&format!("{:?}", c.random1)),
        "no key bytes in Debug"
    );
}

#[test]
fn occ_strings_match_stock_26() {
    let server = parse_str(
        "s",
        "server 10.8.0.0 255.255.255.0\nca a\ncert b\nkey c\ntls-crypt tc.key\n",
    )
    .unwrap();
    let p = OccParams::from_options(&server);
    assert_eq!(p.options_string(), SERVER_OPTIONS);
    assert_eq!(p.expected_remote_string(), CLIENT_OPTIONS);
    let client = parse_str(
        "c",
        "client\nremote x\nca a\ncert b\nkey c\ntls-crypt tc.key\n",
    )
    .unwrap();
    assert_eq!(
        OccParams::from_options(&client).options_string(),
        CLIENT_OPTIONS
    );
    // tls-auth + auth SHA256, seen live from a 2.6.14 client (§4).
    let client = parse_str(
        "c",
        "client\nremote x\nca a\ncert b\nkey c\ntls-auth ta.key 1\nauth SHA256\n",
    )
    .unwrap();
    let s = OccParams::from_options(&client).options_string();
    assert!(
        s.ends_with(",keydir 1,auth SHA256,keysize 128,tls-auth,key-method 2,tls-client"),
        "{s}"
    );
    assert!(s.contains("link-mtu 1553"), "{s}");
    assert!(
        OccParams::from_options(&client)
            .expected_remote_string()
            .contains(",keydir 0,")
    );
    // A legacy AEAD cipher is announced with the null digest.
    let client = parse_str(
        "c",
        "client\nremote x\nca a\ncert b\nkey c\ncipher AES-256-GCM\n",
    )
    .unwrap();
    assert_eq!(
        OccParams::from_options(&client).options_string(),
        "V4,dev-type tun,link-mtu 1534,tun-mtu 1500,proto UDPv4,cipher AES-256-GCM,auth [null-digest],keysize 256,key-method 2,tls-client"
    );
}

#[test]
fn occ_comparison_and_extraction() {
    assert!(occ_differences(CLIENT_OPTIONS, CLIENT_OPTIONS).is_empty());
    let d = occ_differences(
        CLIENT_OPTIONS,
        &CLIENT_OPTIONS.replace("tun-mtu 1500", "tun-mtu 1400"),
    );
    assert_eq!(d, ["peer has 'tun-mtu 1400'", "peer lacks 'tun-mtu 1500'"]);
    assert!(
        occ_differences(CLIENT_OPTIONS, "V3,foo").is_empty(),
        "other versions are not compared"
    );
    assert_eq!(
        occ_option("V4,cipher AES-128-GCM,auth SHA1", "cipher"),
        Some("AES-128-GCM")
    );
    assert_eq!(occ_option(CLIENT_OPTIONS, "cipher"), None);
}

#[test]
fn our_peer_info() {
    let s = PeerInfoBuilder::client(&DataCipher::ALL).build();
    assert_eq!(
        s,
        "IV_VER=2.6.14\nIV_PLAT=linux\nIV_TCPNL=1\nIV_MTU=1600\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\nIV_PROTO=398\n"
    );
    let pi = PeerInfo::parse(&s);
    assert_eq!(
        pi.iv_proto().flags(),
        [
            IvProtoFlag::DataV2,
            IvProtoFlag::RequestPush,
            IvProtoFlag::TlsKeyExport,
            IvProtoFlag::CcExitNotify,
            IvProtoFlag::AuthFailTemp
        ]
    );
    let s = PeerInfoBuilder::client(&[DataCipher::Chacha20Poly1305]).build();
    assert!(!s.contains("IV_NCP"));
}

#[test]
fn peer_info_parsing_edge_cases() {
    let pi = PeerInfo::parse("IV_PROTO=6junk\r\nnoequals\n=x\nIV_NCP=2\nIV_NCP=3\nUV_X=a=b\n");
    assert_eq!(pi.iv_proto(), IvProto(6));
    assert_eq!(pi.ncp_version(), 2, "the first value counts");
    assert_eq!(pi.get("UV_X"), Some("a=b"));
    assert_eq!(pi.vars.len(), 4);
    assert_eq!(PeerInfo::parse("").iv_proto(), IvProto(0));
    assert!(!PeerInfo::parse("IV_PROTO=2\n").supports_ncp());
    assert_eq!(IvProto(1 | 8192).unknown_bits(), 1 | 8192);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..700), client in any::<bool>()) {
            let s = if client { Sender::Client } else { Sender::Server };
            let _ = KeyMethod2::parse(&bytes, s);
        }

        #[test]
        fn mutated_golden_never_panics(idx in 0usize..400, val in any::<u8>()) {
            let mut b = golden_client_record();
            let i = idx % b.len();
            b[i] = val;
            let _ = KeyMethod2::parse(&b, Sender::Client);
        }

        #[test]
        fn round_trip(options in "[ -~]{1,511}", user in "[ -~]{0,40}", pass in "[ -~]{0,40}", pi in "([A-Z_]{1,8}=[ -~]{0,10}\n){0,5}", client in any::<bool>()) {
            let sender = if client { Sender::Client } else { Sender::Server };
            let creds = if user.is_empty() && pass.is_empty() {
                Credentials::Absent
            } else {
                Credentials::Given(UserPass { username: Zeroizing::new(user), password: Zeroizing::new(pass) })
            };
            let rec = KeyMethod2 {
                key_source: KeySource::random(sender).unwrap(),
                options,
                credentials: creds,
                peer_info: (!pi.is_empty()).then_some(pi),
            };
            let b = rec.encode(sender).unwrap();
            prop_assert_eq!(KeyMethod2::parse(&b, sender).unwrap(), rec);
        }
    }
}
