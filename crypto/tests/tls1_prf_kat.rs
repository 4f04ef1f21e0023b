//! The legacy TLS1-PRF key expansion (openvpn-protocol.md §5.2) against vectors computed by
//! an independent implementation (Python's hmac/hashlib, `crypto/scripts/gen_openvpn_fixtures.py`,
//! output in `tests/fixtures/tls1_prf_kat.json`). The live PRF session in `openvpn_kat.rs`
//! checks the same derivation against keys a stock OpenVPN used.

use std::path::PathBuf;

use crypto::{CipherKind, Key2, Role, Tls1PrfInputs, tls1_prf};
use serde_json::Value;

fn kat() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls1_prf_kat.json");
    let text = std::fs::read_to_string(&path).expect("fixture present");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn h(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap_or_else(|| panic!("{key} missing"))).expect("hex")
}

fn a<const N: usize>(v: &Value, key: &str) -> [u8; N] {
    h(v, key).try_into().expect("field length")
}

#[test]
fn prf_primitive_vectors() {
    let k = kat();
    for name in ["prf_builtin", "prf_odd_secret"] {
        let v = &k[name];
        let want = h(v, "out");
        let mut out = vec![0u8; want.len()];
        tls1_prf(&h(v, "secret"), &h(v, "seed"), &mut out);
        assert_eq!(out, want, "{name}");
    }
    // OpenVPN's own self-test value, independent of the fixture.
    assert_eq!(
        h(&k["prf_builtin"], "out"),
        [0x71, 0x44, 0xfe, 0x25, 0x40, 0x73, 0x75, 0x95]
    );
}

#[test]
fn key_expansion_matches_python() {
    let k = kat();
    let v = &k["key_expansion"];
    let (pm, cr1, sr1, cr2, sr2, csid, ssid) = (
        a::<48>(v, "pre_master"),
        a::<32>(v, "client_random1"),
        a::<32>(v, "server_random1"),
        a::<32>(v, "client_random2"),
        a::<32>(v, "server_random2"),
        a::<8>(v, "client_session_id"),
        a::<8>(v, "server_session_id"),
    );
    // The intermediate master secret, through the public PRF.
    let mut seed = b"OpenVPN master secret".to_vec();
    seed.extend_from_slice(&cr1);
    seed.extend_from_slice(&sr1);
    let mut master = [0u8; 48];
    tls1_prf(&pm, &seed, &mut master);
    assert_eq!(&master[..], &h(v, "master")[..]);

    let key2 = Key2::from_tls1_prf(&Tls1PrfInputs {
        pre_master: &pm,
        client_random1: &cr1,
        server_random1: &sr1,
        client_random2: &cr2,
        server_random2: &sr2,
        client_session_id: &csid,
        server_session_id: &ssid,
    });
    let want = h(v, "key2");
    assert_eq!(&key2.as_bytes()[..], &want[..]);
    let (enc, dec) = key2.data_keys(Role::Client, CipherKind::Aes256Gcm).unwrap();
    assert_eq!(enc.key(), &want[0..32]);
    assert_eq!(enc.implicit_iv(), &want[64..72]);
    assert_eq!(dec.key(), &want[128..160]);
    assert_eq!(dec.implicit_iv(), &want[192..200]);

    // Swapping the session ids (the draft's ordering mistakes) gives a different key2.
    let swapped = Key2::from_tls1_prf(&Tls1PrfInputs {
        pre_master: &pm,
        client_random1: &cr1,
        server_random1: &sr1,
        client_random2: &cr2,
        server_random2: &sr2,
        client_session_id: &ssid,
        server_session_id: &csid,
    });
    assert_ne!(swapped.as_bytes(), key2.as_bytes());
}
