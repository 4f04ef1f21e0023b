//! nvlist codec: byte-exact golden vectors produced by FreeBSD's libnv (`nvlist_pack`, run
//! from the portable libnv on x86-64), hand-built big-endian vectors, typed errors, and
//! property tests.

use control_ipc::codec::{self, ByteOrder, DecodeErrorKind, EncodeErrorKind, Limits};
use control_ipc::{Nvlist, Value, wire};
use proptest::prelude::*;

fn num(n: u64) -> Value {
    Value::Number(n)
}

fn bin(b: &[u8]) -> Value {
    Value::Binary(b.into())
}

fn check_golden(label: &str, nvl: &Nvlist, hex_bytes: &str) {
    let want = hex::decode(hex_bytes).expect("golden hex");
    let got = codec::encode_with_order(nvl, ByteOrder::Little).expect("encode");
    assert_eq!(
        hex::encode(&got),
        hex_bytes,
        "{label}: packed bytes differ from libnv's"
    );
    let back = codec::decode(&want).expect("decode golden");
    assert_eq!(&back, nvl, "{label}: decoded list differs");
}

// `nvlist_create(0)` packed.
#[test]
fn golden_empty() {
    check_golden(
        "empty",
        &Nvlist::new(),
        "6c000000000000000000000000000000000000",
    );
}

// null, bool, number, string, binary.
#[test]
fn golden_scalars() {
    let nvl = Nvlist::new()
        .with("n", Value::Null)
        .with("b", Value::Bool(true))
        .with("peerid", num(7))
        .with("cipher", Value::String("AES-256-GCM".into()))
        .with("vpn_ipv4", bin(&[10, 8, 0, 2]));
    check_golden(
        "scalars",
        &nvl,
        "6c000000000000000000009300000000000000010200000000000000000000000000000000006e0002020001\
         0000000000000000000000000000006200010307000800000000000000000000000000000070656572696400\
         07000000000000000407000c000000000000000000000000000000636970686572004145532d3235362d4743\
         4d000709000400000000000000000000000000000076706e5f69707634000a080002",
    );
}

// bool, number and string arrays.
#[test]
fn golden_arrays() {
    let nvl = Nvlist::new()
        .with("ba", Value::BoolArray(vec![true, false, true]))
        .with("na", Value::NumberArray(vec![1, 0x0102030405060708]))
        .with(
            "sa",
            Value::StringArray(vec!["x".into(), "".into(), "yz".into()]),
        );
    check_golden(
        "arrays",
        &nvl,
        "6c000000000000000000005b0000000000000008030003000000000000000300000000000000626100010001\
         090300100000000000000002000000000000006e6100010000000000000008070605040302010a0300060000\
         00000000000300000000000000736100780000797a00",
    );
}

// The shape of OpenVPN's NEW_PEER: a nested sockaddr list followed by more pairs. The
// nested pair's datasize (0xb2) counts the pairs after it, as libnv's nvlist_size() does.
#[test]
fn golden_nested_sockaddr() {
    let remote = Nvlist::new()
        .with("af", num(2))
        .with("address", bin(&[192, 0, 2, 1]))
        .with("port", num(0xaa04));
    let nvl = Nvlist::new()
        .with("remote", Value::Nvlist(remote))
        .with("vpn_ipv4", bin(&[10, 8, 0, 2]))
        .with("peerid", num(1));
    check_golden(
        "nested",
        &nvl,
        "6c00000000000000000000e000000000000000050700b200000000000000000000000000000072656d6f7465\
         006c00000000000000000000b300000000000000030300080000000000000000000000000000006166000200\
         000000000000070800040000000000000000000000000000006164647265737300c000020103050008000000\
         000000000000000000000000706f72740004aa000000000000ff010000000000000000000000000000000000\
         000709000400000000000000000000000000000076706e5f69707634000a0800020307000800000000000000\
         0000000000000000706565726964000100000000000000",
    );
}

// An empty nested list (datasize 19) and two levels of nesting.
#[test]
fn golden_deep() {
    let l2 = Nvlist::new().with("z", num(3));
    let l1 = Nvlist::new()
        .with("l2", Value::Nvlist(l2))
        .with("y", num(2));
    let nvl = Nvlist::new()
        .with("e", Value::Nvlist(Nvlist::new()))
        .with("l1", Value::Nvlist(l1))
        .with("x", num(1));
    check_golden(
        "deep",
        &nvl,
        "6c000000000000000000000d010000000000000502001300000000000000000000000000000065006c000000\
         00000000000000e500000000000000ff01000000000000000000000000000000000000050300a70000000000\
         000000000000000000006c31006c00000000000000000000a8000000000000000503006a0000000000000000\
         000000000000006c32006c000000000000000000007f00000000000000030200080000000000000000000000\
         000000007a000300000000000000ff0100000000000000000000000000000000000003020008000000000000\
         00000000000000000079000200000000000000ff010000000000000000000000000000000000000302000800\
         000000000000000000000000000078000100000000000000",
    );
}

// The shape of if_ovpn's GET_PEER_STATS reply: an nvlist array with nested lists inside
// its elements, then a pair after the array.
#[test]
fn golden_nvlist_array() {
    let peer = |id: u64, i: u64| {
        Nvlist::new().with("peerid", num(id)).with(
            "bytes",
            Value::Nvlist(
                Nvlist::new()
                    .with("in", num(10 * i))
                    .with("out", num(20 * i)),
            ),
        )
    };
    let nvl = Nvlist::new()
        .with("peers", Value::NvlistArray(vec![peer(1, 0), peer(2, 1)]))
        .with("after", num(9));
    check_golden(
        "nvarray",
        &nvl,
        "6c00000000000000000000c6010000000000000b060000000000000000000200000000000000706565727300\
         6c000000000000000000009a0100000000000003070008000000000000000000000000000000706565726964\
         000100000000000000050600100100000000000000000000000000006279746573006c000000000000000000\
         004c0100000000000003030008000000000000000000000000000000696e0000000000000000000304000800\
         00000000000000000000000000006f7574000000000000000000ff0100000000000000000000000000000000\
         0000fe010000000000000000000000000000000000006c00000000000000000000d400000000000000030700\
         0800000000000000000000000000000070656572696400020000000000000005060071000000000000000000\
         0000000000006279746573006c00000000000000000000860000000000000003030008000000000000000000\
         000000000000696e000a00000000000000030400080000000000000000000000000000006f75740014000000\
         00000000ff01000000000000000000000000000000000000fe01000000000000000000000000000000000000\
         030600080000000000000000000000000000006166746572000900000000000000",
    );
}

// Empty elements in an nvlist array: header and ARRAY_NEXT marker only.
#[test]
fn golden_nvlist_array_empty_elements() {
    let nvl = Nvlist::new().with(
        "arr",
        Value::NvlistArray(vec![
            Nvlist::new(),
            Nvlist::new().with("k", num(5)),
            Nvlist::new(),
        ]),
    );
    check_golden(
        "nvarray_empty_el",
        &nvl,
        "6c00000000000000000000a9000000000000000b040000000000000000000300000000000000617272006c00\
         0000000000000000007f00000000000000fe010000000000000000000000000000000000006c000000000000\
         000000005800000000000000030200080000000000000000000000000000006b000500000000000000fe0100\
         00000000000000000000000000000000006c000000000000000000001400000000000000fe01000000000000\
         000000000000000000000000",
    );
}

// Public flags are carried in the header.
#[test]
fn golden_flags() {
    let nvl = Nvlist::with_flags(wire::FLAG_IGNORE_CASE).with("A", num(1));
    check_golden(
        "flags",
        &nvl,
        "6c000100000000000000001d000000000000000302000800000000000000000000000000000041000100000000000000",
    );
    let back = codec::decode(&codec::encode(&nvl).unwrap()).unwrap();
    assert_eq!(back.get("a"), Some(&num(1)), "IGNORE_CASE lookup");
}

// A big-endian sender's message, written out by hand from the format description:
// { "peerid": 7, "remote": { "port": 0x04aa } }.
#[test]
fn big_endian_hand_built_decodes() {
    let mut b: Vec<u8> = Vec::new();
    let hdr = |b: &mut Vec<u8>, size: u64| {
        b.extend_from_slice(&[0x6c, 0x00, 0x80]);
        b.extend_from_slice(&0u64.to_be_bytes());
        b.extend_from_slice(&size.to_be_bytes());
    };
    let pair = |b: &mut Vec<u8>, t: u8, name: &str, ds: u64| {
        b.push(t);
        b.extend_from_slice(&((name.len() + 1) as u16).to_be_bytes());
        b.extend_from_slice(&ds.to_be_bytes());
        b.extend_from_slice(&0u64.to_be_bytes());
        b.extend_from_slice(name.as_bytes());
        b.push(0);
    };
    // Total: 19 + (19+7+8) + (19+7) + 19 + (19+5+8) + 20 = 150.
    hdr(&mut b, 150 - 19);
    pair(&mut b, 3, "peerid", 8);
    b.extend_from_slice(&7u64.to_be_bytes());
    pair(&mut b, 5, "remote", 19 + 19 + 5 + 8);
    let rest = 150 - b.len() as u64 - 19;
    hdr(&mut b, rest);
    pair(&mut b, 3, "port", 8);
    b.extend_from_slice(&0x04aau64.to_be_bytes());
    pair(&mut b, 255, "", 0);
    assert_eq!(b.len(), 150);

    let nvl = codec::decode(&b).expect("big-endian decode");
    assert_eq!(nvl.get("peerid"), Some(&num(7)));
    let Some(Value::Nvlist(remote)) = nvl.get("remote") else {
        panic!("remote missing")
    };
    assert_eq!(remote.get("port"), Some(&num(0x04aa)));
}

// Our big-endian encoder agrees with the hand-built layout rules and with the decoder.
#[test]
fn big_endian_encoder_round_trips() {
    let nvl = Nvlist::new()
        .with(
            "peers",
            Value::NvlistArray(vec![Nvlist::new().with("a", num(1))]),
        )
        .with("s", Value::StringArray(vec!["q".into()]))
        .with("n", Value::NumberArray(vec![u64::MAX, 3]));
    let be = codec::encode_with_order(&nvl, ByteOrder::Big).unwrap();
    let le = codec::encode_with_order(&nvl, ByteOrder::Little).unwrap();
    assert_eq!(be.len(), le.len());
    assert_eq!(be[2], wire::FLAG_BIG_ENDIAN);
    assert_eq!(codec::decode(&be).unwrap(), nvl);
    assert_eq!(codec::decode(&le).unwrap(), nvl);
}

fn decode_err(b: &[u8]) -> codec::DecodeError {
    codec::decode(b).expect_err("decode must fail")
}

fn sample() -> Vec<u8> {
    let remote = Nvlist::new().with("af", num(2)).with("port", num(1));
    let nvl = Nvlist::new()
        .with("peerid", num(1))
        .with("remote", Value::Nvlist(remote))
        .with("cn", Value::String("alice".into()));
    codec::encode(&nvl).unwrap()
}

#[test]
fn errors_name_the_key() {
    let mut b = sample();
    // Make remote.port a string: flip its type byte.
    let pos = b.windows(5).position(|w| w == b"port\0").unwrap() - wire::PAIR_HEADER_LEN;
    b[pos] = wire::ty::BOOL;
    let e = decode_err(&b);
    assert_eq!(e.key, "remote.port");
    assert!(matches!(e.kind, DecodeErrorKind::BadData(_)), "{e}");
}

#[test]
fn truncated_message_is_typed_error() {
    let b = sample();
    for cut in 0..b.len() {
        let e = decode_err(&b[..cut]);
        assert!(
            matches!(
                e.kind,
                DecodeErrorKind::Truncated { .. } | DecodeErrorKind::SizeMismatch { .. }
            ),
            "cut {cut}: {e}"
        );
    }
}

#[test]
fn header_faults() {
    let mut b = sample();
    b[0] = 0x6d;
    assert_eq!(decode_err(&b).kind, DecodeErrorKind::BadMagic(0x6d));
    let mut b = sample();
    b[1] = 1;
    assert_eq!(decode_err(&b).kind, DecodeErrorKind::BadVersion(1));
    let mut b = sample();
    b[2] = 0x40;
    assert_eq!(decode_err(&b).kind, DecodeErrorKind::BadFlags(0x40));
    let mut b = sample();
    b[3] = 1; // one descriptor announced, none received
    assert!(matches!(
        decode_err(&b).kind,
        DecodeErrorKind::TooManyDescriptors { .. }
    ));
    let mut b = sample();
    b.push(0); // trailing byte: size no longer matches
    assert!(matches!(
        decode_err(&b).kind,
        DecodeErrorKind::SizeMismatch { .. }
    ));
}

#[test]
fn duplicate_keys_rejected_unless_no_unique() {
    let dup = Nvlist::new().with("a", num(1)).with("a", num(2));
    let e = codec::encode(&dup).unwrap_err();
    assert_eq!(e.kind, EncodeErrorKind::DuplicateKey);
    assert_eq!(e.key, "a");
    let ok = Nvlist::with_flags(wire::FLAG_NO_UNIQUE)
        .with("a", num(1))
        .with("a", num(2));
    let b = codec::encode(&ok).unwrap();
    assert_eq!(codec::decode(&b).unwrap(), ok);
    // A hand-made duplicate without the flag is refused by the decoder.
    let mut b2 = b.clone();
    b2[2] = 0;
    let e = decode_err(&b2);
    assert_eq!(
        (e.kind, e.key.as_str()),
        (DecodeErrorKind::DuplicateKey, "a")
    );
}

#[test]
fn unencodable_values() {
    let cases = [
        (
            Value::Binary(Vec::new().into()),
            EncodeErrorKind::EmptyBinary,
        ),
        (Value::NumberArray(vec![]), EncodeErrorKind::EmptyArray),
        (Value::NvlistArray(vec![]), EncodeErrorKind::EmptyArray),
        (Value::String("a\0b".into()), EncodeErrorKind::StringHasNul),
    ];
    for (v, kind) in cases {
        let e = codec::encode(&Nvlist::new().with("k", v)).unwrap_err();
        assert_eq!((e.kind, e.key.as_str()), (kind, "k"));
    }
    let long = "x".repeat(wire::NV_NAME_MAX);
    let e = codec::encode(&Nvlist::new().with(long, Value::Null)).unwrap_err();
    assert_eq!(e.kind, EncodeErrorKind::NameTooLong(wire::NV_NAME_MAX + 1));
    // 2047 characters + NUL is libnv's maximum and packs.
    let max = "x".repeat(wire::NV_NAME_MAX - 1);
    let b = codec::encode(&Nvlist::new().with(max, Value::Null)).unwrap();
    assert!(codec::decode(&b).is_ok());
}

fn nest(depth: usize) -> Nvlist {
    let mut nvl = Nvlist::new().with("leaf", num(1));
    for _ in 0..depth {
        nvl = Nvlist::new().with("d", Value::Nvlist(nvl));
    }
    nvl
}

#[test]
fn depth_and_count_limits() {
    let limits = Limits::default();
    let ok = codec::encode(&nest(limits.max_depth)).unwrap();
    assert!(codec::decode(&ok).is_ok());
    let deep = codec::encode(&nest(limits.max_depth + 1)).unwrap();
    let e = decode_err(&deep);
    assert!(matches!(e.kind, DecodeErrorKind::TooDeep { .. }), "{e}");
    assert!(e.key.starts_with("d.d."), "{e}");

    let mut big = Nvlist::new();
    for i in 0..100 {
        big.push(format!("k{i}"), num(i));
    }
    let b = codec::encode(&big).unwrap();
    let tight = Limits {
        max_pairs: 50,
        ..Limits::default()
    };
    let e = codec::decode_with(&b, &tight, 0).unwrap_err();
    assert!(matches!(e.kind, DecodeErrorKind::TooManyPairs { max: 50 }));
    assert_eq!(e.key, "k50");
    let small = Limits {
        max_size: 64,
        ..Limits::default()
    };
    let e = codec::decode_with(&b, &small, 0).unwrap_err();
    assert!(matches!(e.kind, DecodeErrorKind::TooLarge { .. }));
    let items = Limits {
        max_array_items: 2,
        ..Limits::default()
    };
    let arr = codec::encode(&Nvlist::new().with("a", Value::NumberArray(vec![1, 2, 3]))).unwrap();
    let e = codec::decode_with(&arr, &items, 0).unwrap_err();
    assert_eq!(e.key, "a");
    assert!(matches!(
        e.kind,
        DecodeErrorKind::TooManyItems { nitems: 3, max: 2 }
    ));
}

#[test]
fn huge_announced_array_is_refused_without_allocating() {
    // An NVLIST_ARRAY pair claiming 2^40 elements in a tiny buffer.
    let mut b = vec![0x6c, 0, 0];
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&(19u64 + 2).to_le_bytes());
    b.push(wire::ty::NVLIST_ARRAY);
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&(1u64 << 40).to_le_bytes());
    b.extend_from_slice(b"a\0");
    let e = decode_err(&b);
    assert!(
        matches!(e.kind, DecodeErrorKind::TooManyItems { .. }),
        "{e}"
    );
}

#[test]
fn markers_must_match_their_list() {
    // An NVLIST_UP at the root.
    let mut b = vec![0x6c, 0, 0];
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&20u64.to_le_bytes());
    b.push(wire::ty::NVLIST_UP);
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&[0u8; 16]);
    b.push(0);
    assert_eq!(
        decode_err(&b).kind,
        DecodeErrorKind::UnexpectedMarker(wire::ty::NVLIST_UP)
    );
    // A nested list that never closes.
    let nvl = Nvlist::new().with("c", Value::Nvlist(Nvlist::new().with("x", num(1))));
    let full = codec::encode(&nvl).unwrap();
    let mut cut = full[..full.len() - wire::MARKER_LEN].to_vec();
    let new_size = (cut.len() - 19) as u64;
    cut[11..19].copy_from_slice(&new_size.to_le_bytes());
    // Fix the nested header's size too.
    let nested_hdr = 19 + 19 + 2;
    let nested_size = (cut.len() - nested_hdr - 19) as u64;
    cut[nested_hdr + 11..nested_hdr + 19].copy_from_slice(&nested_size.to_le_bytes());
    let e = decode_err(&cut);
    assert_eq!(e.kind, DecodeErrorKind::Unterminated);
    assert_eq!(e.key, "c");
}

// ---------------------------------------------------------------------------------------
// Property tests

fn name() -> impl Strategy<Value = String> {
    "[a-z_]{0,12}"
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::Number),
        "[^\u{0}]{0,20}".prop_map(Value::String),
        prop::collection::vec(any::<u8>(), 1..40).prop_map(|v| Value::Binary(v.into())),
        prop::collection::vec(any::<bool>(), 1..8).prop_map(Value::BoolArray),
        prop::collection::vec(any::<u64>(), 1..8).prop_map(Value::NumberArray),
        prop::collection::vec("[^\u{0}]{0,6}", 1..5).prop_map(Value::StringArray),
    ]
}

fn unique(pairs: Vec<(String, Value)>) -> Nvlist {
    let mut nvl = Nvlist::new();
    for (n, v) in pairs {
        if !nvl.contains(&n) {
            nvl.push(n, v);
        }
    }
    nvl
}

fn arb_nvlist() -> impl Strategy<Value = Nvlist> {
    let leaf_list = prop::collection::vec((name(), leaf()), 0..6).prop_map(unique);
    leaf_list.prop_recursive(4, 64, 6, |inner| {
        prop::collection::vec(
            (
                name(),
                prop_oneof![
                    leaf(),
                    inner.clone().prop_map(Value::Nvlist),
                    prop::collection::vec(inner, 1..4).prop_map(Value::NvlistArray),
                ],
            ),
            0..6,
        )
        .prop_map(unique)
    })
}

proptest! {
    #[test]
    fn round_trip_both_orders(nvl in arb_nvlist()) {
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let b = codec::encode_with_order(&nvl, order).unwrap();
            prop_assert_eq!(codec::decode(&b).unwrap(), nvl.clone());
        }
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode(&bytes);
    }

    #[test]
    fn mutated_messages_decode_or_fail_cleanly(
        nvl in arb_nvlist(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut b = codec::encode(&nvl).unwrap();
        for (i, v) in flips {
            let i = i.index(b.len());
            b[i] = v;
        }
        if let Ok(back) = codec::decode(&b) {
            // Whatever decodes must pack again.
            prop_assert!(codec::encode(&back).is_ok());
        }
    }
}

// Cross-check against libnv itself: every list proptest generates is unpacked and packed
// again by libnv (`DCO_LIBNV_REPACK` = a program reading hex lines on stdin and printing
// libnv's repacking of each), and must come back byte-identical. Needs a libnv build, so it
// skips loudly without one.
#[test]
fn libnv_repacks_our_encoding_identically() {
    let Ok(prog) = std::env::var("DCO_LIBNV_REPACK") else {
        eprintln!("SKIP libnv_repacks_our_encoding_identically: DCO_LIBNV_REPACK not set");
        return;
    };
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::io::Write;
    let mut runner = TestRunner::deterministic();
    let mut input = String::new();
    let mut expected = Vec::new();
    for _ in 0..500 {
        let nvl = arb_nvlist().new_tree(&mut runner).unwrap().current();
        let b = codec::encode(&nvl).unwrap();
        input.push_str(&hex::encode(&b));
        input.push('\n');
        expected.push(hex::encode(&b));
    }
    let mut child = std::process::Command::new(prog)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run libnv repack");
    // Feed stdin from a thread: the child's output would fill its pipe otherwise.
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), expected.len());
    for (i, (got, want)) in lines.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "case {i}: libnv repacked differently");
    }
}
