//! Known-answer tests from real stock OpenVPN 2.6 traffic.
//!
//! `tests/fixtures/openvpn_kat.json` holds data packets captured between two stock `openvpn`
//! processes (P_DATA_V2 with TLS-EKM keys for each cipher, one session that fell back to the
//! legacy TLS1-PRF, one that sent P_DATA_V1), with the key material the processes used. It is
//! made by `crypto/scripts/gen_openvpn_fixtures.py`. Every packet must decrypt with our
//! crate, carry an IPv4 ICMP packet or the keepalive ping, and re-encrypt to the identical
//! bytes. `live_stock_openvpn` runs the script again (as root) and checks fresh traffic.

use std::path::PathBuf;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use crypto::{
    BatchAead, CipherKind, CpuBatch, DATA_V1_OVERHEAD, DATA_V2_OVERHEAD, DataError, DataFormat,
    DecryptKey, DirectionalKey, EncryptKey, KEEPALIVE_PING, Key2, KeyId, PeerId, Plaintext, Role,
    SendCounter, Tls1PrfInputs, classify_plaintext,
};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; regenerate with crypto/scripts/", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn hexfield(v: &Value, key: &str) -> Vec<u8> {
    let s = v[key]
        .as_str()
        .unwrap_or_else(|| panic!("fixture field {key} missing"));
    hex::decode(s).unwrap_or_else(|e| panic!("fixture field {key}: {e}"))
}

fn arr<const N: usize>(v: &Value, key: &str) -> [u8; N] {
    hexfield(v, key)
        .try_into()
        .unwrap_or_else(|b: Vec<u8>| panic!("fixture field {key}: {} bytes, want {N}", b.len()))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dir {
    ClientToServer,
    ServerToClient,
}

struct Packet {
    dir: Dir,
    keepalive: bool,
    wire: Vec<u8>,
}

struct Session {
    name: String,
    cipher: CipherKind,
    key2: Key2,
    key_id: KeyId,
    format: DataFormat,
    /// None for P_DATA_V1 (no peer-id pushed).
    peer_id: Option<PeerId>,
    packets: Vec<Packet>,
    raw: Value,
}

/// The key2 of a session, derived the way the session did it.
fn session_key2(s: &Value) -> Key2 {
    match s["key_derivation"].as_str() {
        Some("tls-ekm") => Key2::from_ekm(&hexfield(s, "ekm")).expect("256-byte EKM output"),
        Some("tls1-prf") => {
            let i = &s["prf_inputs"];
            let (pm, cr1, sr1, cr2, sr2, csid, ssid) = (
                arr::<48>(i, "pre_master"),
                arr::<32>(i, "client_random1"),
                arr::<32>(i, "server_random1"),
                arr::<32>(i, "client_random2"),
                arr::<32>(i, "server_random2"),
                arr::<8>(i, "client_session_id"),
                arr::<8>(i, "server_session_id"),
            );
            Key2::from_tls1_prf(&Tls1PrfInputs {
                pre_master: &pm,
                client_random1: &cr1,
                server_random1: &sr1,
                client_random2: &cr2,
                server_random2: &sr2,
                client_session_id: &csid,
                server_session_id: &ssid,
            })
        }
        other => panic!("unknown key_derivation {other:?}"),
    }
}

fn sessions() -> Vec<Session> {
    sessions_from(&fixture("openvpn_kat.json"))
}

fn sessions_from(kat: &Value) -> Vec<Session> {
    let list = kat["sessions"].as_array().expect("sessions array");
    list.iter()
        .map(|s| {
            let cipher = CipherKind::from_openvpn_name(s["cipher"].as_str().expect("cipher"))
                .expect("supported cipher");
            let packets = s["packets"]
                .as_array()
                .expect("packets")
                .iter()
                .map(|p| Packet {
                    dir: match p["dir"].as_str() {
                        Some("c2s") => Dir::ClientToServer,
                        Some("s2c") => Dir::ServerToClient,
                        d => panic!("bad dir {d:?}"),
                    },
                    keepalive: p["kind"] == "ping",
                    wire: hexfield(p, "wire"),
                })
                .collect();
            Session {
                name: format!("{} {} {}", s["cipher"], s["key_derivation"], s["format"]),
                cipher,
                key2: session_key2(s),
                key_id: KeyId::new(s["key_id"].as_u64().expect("key_id") as u8).expect("key id"),
                format: match s["format"].as_str() {
                    Some("v2") => DataFormat::V2,
                    Some("v1") => DataFormat::V1,
                    f => panic!("bad format {f:?}"),
                },
                peer_id: s["peer_id"]
                    .as_u64()
                    .map(|p| PeerId::new(p as u32).expect("peer id")),
                packets,
                raw: s.clone(),
            }
        })
        .collect()
}

/// (sender's encrypt key, receiver's decrypt key) for a direction.
fn keys_for(s: &Session, dir: Dir) -> (DirectionalKey, DirectionalKey) {
    let (sender, receiver) = match dir {
        Dir::ClientToServer => (Role::Client, Role::Server),
        Dir::ServerToClient => (Role::Server, Role::Client),
    };
    let (enc, _) = s.key2.data_keys(sender, s.cipher).expect("sender keys");
    let (_, dec) = s.key2.data_keys(receiver, s.cipher).expect("receiver keys");
    (enc, dec)
}

/// An RFC 1071 checksum over an IPv4 header; 0 when the header's own checksum is right.
fn ipv4_header_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The plaintext is exactly what stock OpenVPN put there: a keepalive ping, or an IPv4 ICMP
/// packet with a valid header checksum between the tunnel addresses of the right direction.
fn check_plaintext(s: &Session, p: &Packet, plain: &[u8]) {
    if p.keepalive {
        assert_eq!(plain, KEEPALIVE_PING, "{}: keepalive plaintext", s.name);
        assert_eq!(classify_plaintext(plain), Plaintext::Ping);
        return;
    }
    assert_eq!(
        classify_plaintext(plain),
        Plaintext::Ipv4,
        "{}: {plain:02x?}",
        s.name
    );
    let ihl = usize::from(plain[0] & 0x0f) * 4;
    assert!(
        ihl >= 20 && plain.len() >= ihl + 8,
        "{}: short IPv4",
        s.name
    );
    assert_eq!(
        usize::from(u16::from_be_bytes([plain[2], plain[3]])),
        plain.len(),
        "IPv4 total length"
    );
    assert_eq!(plain[9], 1, "{}: IP protocol is ICMP", s.name);
    assert_eq!(
        ipv4_header_checksum(&plain[..ihl]),
        0,
        "IPv4 header checksum"
    );
    let (server, client) = ([10, 8, 0, 1], [10, 8, 0, 2]);
    let (src, dst) = match p.dir {
        Dir::ClientToServer => (client, server),
        Dir::ServerToClient => (server, client),
    };
    assert_eq!(&plain[12..16], &src, "{}: source address", s.name);
    assert_eq!(&plain[16..20], &dst, "{}: destination address", s.name);
    let icmp_type = plain[ihl];
    assert!(
        icmp_type == 0 || icmp_type == 8,
        "ICMP echo or reply, got {icmp_type}"
    );
}

/// Seals `plain` with `tx` in the session's format.
fn seal(s: &Session, tx: &EncryptKey, plain: &[u8]) -> (Vec<u8>, crypto::Sealed) {
    let over = s.format.overhead();
    let mut out = vec![0u8; over + plain.len()];
    out[over..].copy_from_slice(plain);
    let sealed = match (s.format, s.peer_id) {
        (DataFormat::V2, Some(peer)) => tx.seal_v2(peer, &mut out, plain.len()),
        (DataFormat::V1, None) => tx.seal_v1(&mut out, plain.len()),
        other => panic!("{}: inconsistent format/peer-id {other:?}", s.name),
    }
    .expect("seal");
    (out, sealed)
}

fn check_coverage(all: &[Session]) {
    for c in CipherKind::ALL {
        assert!(
            all.iter().any(|s| s.cipher == c
                && s.raw["key_derivation"] == "tls-ekm"
                && s.format == DataFormat::V2),
            "no EKM DATA_V2 session for {c}"
        );
    }
    assert!(
        all.iter().any(|s| s.raw["key_derivation"] == "tls1-prf"),
        "no TLS1-PRF session"
    );
    assert!(
        all.iter().any(|s| s.format == DataFormat::V1),
        "no DATA_V1 session"
    );
    for s in all {
        for dir in [Dir::ClientToServer, Dir::ServerToClient] {
            let n = |ka: bool| {
                s.packets
                    .iter()
                    .filter(|p| p.dir == dir && p.keepalive == ka)
                    .count()
            };
            assert!(n(true) >= 1, "{}: no keepalive {dir:?}", s.name);
            assert!(n(false) >= 1, "{}: no ICMP {dir:?}", s.name);
        }
    }
}

/// The key split of openvpn-protocol.md §5.3 reproduces the cipher keys each stock process
/// printed as its own outgoing key.
fn check_key_split(all: &[Session]) {
    for s in all {
        let (c_enc, c_dec) = s.key2.data_keys(Role::Client, s.cipher).unwrap();
        let (s_enc, s_dec) = s.key2.data_keys(Role::Server, s.cipher).unwrap();
        let c2s = hexfield(&s.raw, "logged_client_to_server_key");
        let s2c = hexfield(&s.raw, "logged_server_to_client_key");
        assert_eq!(c_enc.key(), &c2s[..], "{}", s.name);
        assert_eq!(s_dec.key(), &c2s[..], "{}", s.name);
        assert_eq!(s_enc.key(), &s2c[..], "{}", s.name);
        assert_eq!(c_dec.key(), &s2c[..], "{}", s.name);
        assert_eq!(c_enc.implicit_iv(), s_dec.implicit_iv());
        assert_eq!(s_enc.implicit_iv(), c_dec.implicit_iv());
    }
}

/// Our TLS1-PRF derivation from the live key-method-2 inputs gives the key2 that the Python
/// PRF computed (and both give the keys OpenVPN used, proven by decryption).
fn check_prf(all: &[Session]) {
    let mut seen = 0;
    for s in all {
        if s.raw["key_derivation"] == "tls1-prf" {
            assert_eq!(
                &s.key2.as_bytes()[..],
                &hexfield(&s.raw, "key2_python_prf")[..],
                "{}",
                s.name
            );
            seen += 1;
        }
    }
    assert!(seen > 0);
}

/// Every captured packet opens with our crate, in capture order per direction, the plaintext
/// is what the stock peer sent, and the same packet again is a replay.
fn check_decrypt(all: &[Session]) {
    for s in all {
        for dir in [Dir::ClientToServer, Dir::ServerToClient] {
            let (_, dec) = keys_for(s, dir);
            let rx = DecryptKey::new(s.key_id, &dec, 64).unwrap();
            for p in s.packets.iter().filter(|p| p.dir == dir) {
                let mut buf = p.wire.clone();
                let o = rx
                    .open(&mut buf)
                    .unwrap_or_else(|e| panic!("{} {dir:?}: {e}", s.name));
                assert_eq!(o.header.format, s.format);
                assert_eq!(o.header.key_id, s.key_id);
                assert_eq!(o.header.peer_id, s.peer_id);
                assert_eq!(o.payload, s.format.overhead()..p.wire.len());
                check_plaintext(s, p, &buf[o.payload.clone()]);
                let mut again = p.wire.clone();
                assert_eq!(
                    rx.open(&mut again),
                    Err(DataError::Replayed(o.header.packet_id))
                );
            }
        }
    }
}

/// Re-encrypting each plaintext with a counter positioned at the captured packet-id gives
/// the captured bytes exactly: header, packet-id, tag and ciphertext.
fn check_reencrypt(all: &[Session]) {
    for s in all {
        for p in &s.packets {
            let (enc, dec) = keys_for(s, p.dir);
            let rx = DecryptKey::new(s.key_id, &dec, 64).unwrap();
            let mut buf = p.wire.clone();
            let o = rx.open(&mut buf).unwrap();
            let pid = o.header.packet_id;
            let tx = EncryptKey::with_counter(s.key_id, &enc, SendCounter::starting_after(pid - 1))
                .unwrap();
            let (out, sealed) = seal(s, &tx, &buf[o.payload.clone()]);
            assert_eq!(sealed.packet_id, pid);
            assert_eq!(sealed.len, p.wire.len());
            assert!(!sealed.rotate_now);
            assert_eq!(out, p.wire, "{} {:?} pid {pid}", s.name, p.dir);
        }
    }
}

/// The batch path (prepare_open/CpuBatch/finish_open; reserve/prepare_v2/CpuBatch for V2)
/// gives the same results on the captured traffic.
fn check_batch(all: &[Session]) {
    for s in all {
        for dir in [Dir::ClientToServer, Dir::ServerToClient] {
            let (enc, dec) = keys_for(s, dir);
            let rx = DecryptKey::new(s.key_id, &dec, 64).unwrap();
            let pkts: Vec<&Packet> = s.packets.iter().filter(|p| p.dir == dir).collect();
            let mut bufs: Vec<Vec<u8>> = pkts.iter().map(|p| p.wire.clone()).collect();
            let mut ops = Vec::new();
            let mut headers = Vec::new();
            for b in bufs.iter_mut() {
                let (op, h) = rx.prepare_open(b).unwrap();
                ops.push(op);
                headers.push(h);
            }
            CpuBatch.open(&mut ops);
            let oks: Vec<bool> = ops.iter().map(|o| o.ok).collect();
            drop(ops);
            let mut plains = Vec::new();
            for ((h, ok), b) in headers.iter().zip(oks).zip(&bufs) {
                let range = rx.finish_open(h, b.len(), ok).expect("batch open");
                plains.push((h.packet_id, b[range].to_vec()));
            }
            for (p, (_, plain)) in pkts.iter().zip(&plains) {
                check_plaintext(s, p, plain);
            }
            let Some(peer) = s.peer_id else {
                continue; // the batch seal path is DATA_V2 only
            };
            // Re-seal each run of consecutive packet-ids as one batch: one reservation,
            // prepare_v2 per packet, one CpuBatch call.
            let mut start = 0;
            while start < plains.len() {
                let mut end = start + 1;
                while end < plains.len() && plains[end].0 == plains[end - 1].0 + 1 {
                    end += 1;
                }
                let run = &plains[start..end];
                let first = run[0].0;
                let tx = EncryptKey::with_counter(
                    s.key_id,
                    &enc,
                    SendCounter::starting_after(first - 1),
                )
                .unwrap();
                let r = tx.reserve(run.len() as u32).unwrap();
                assert_eq!(r.ids, u64::from(first)..u64::from(first) + run.len() as u64);
                let mut outs: Vec<Vec<u8>> = run
                    .iter()
                    .map(|(_, plain)| {
                        let mut out = vec![0u8; DATA_V2_OVERHEAD + plain.len()];
                        out[DATA_V2_OVERHEAD..].copy_from_slice(plain);
                        out
                    })
                    .collect();
                let mut ops: Vec<_> = outs
                    .iter_mut()
                    .zip(r.ids.clone())
                    .map(|(out, id)| {
                        let len = out.len() - DATA_V2_OVERHEAD;
                        tx.prepare_v2(peer, id as u32, out, len).unwrap()
                    })
                    .collect();
                CpuBatch.seal(&mut ops);
                assert!(ops.iter().all(|o| o.ok));
                drop(ops);
                for (out, p) in outs.iter().zip(&pkts[start..end]) {
                    assert_eq!(out, &p.wire, "{} batch re-seal", s.name);
                }
                start = end;
            }
        }
    }
}

/// RustCrypto, an implementation independent of ring, decrypts the captured packets with the
/// nonce and AAD layout of openvpn-protocol.md §6.1/§6.2 (V2: AAD = header and packet-id;
/// V1: AAD = packet-id only) to the same plaintext.
fn check_oracle(all: &[Session]) {
    for s in all {
        for p in &s.packets {
            let (_, dec) = keys_for(s, p.dir);
            let (pid_at, over) = match s.format {
                DataFormat::V2 => (4, DATA_V2_OVERHEAD),
                DataFormat::V1 => (1, DATA_V1_OVERHEAD),
            };
            let pid = &p.wire[pid_at..pid_at + 4];
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(pid);
            nonce[4..].copy_from_slice(dec.implicit_iv());
            let aad = match s.format {
                DataFormat::V2 => &p.wire[..8],
                DataFormat::V1 => pid,
            };
            let tag = &p.wire[over - 16..over];
            let mut data = p.wire[over..].to_vec();
            let res = match s.cipher {
                CipherKind::Aes128Gcm => aes_gcm::Aes128Gcm::new_from_slice(dec.key())
                    .unwrap()
                    .decrypt_in_place_detached(&nonce.into(), aad, &mut data, tag.into()),
                CipherKind::Aes256Gcm => aes_gcm::Aes256Gcm::new_from_slice(dec.key())
                    .unwrap()
                    .decrypt_in_place_detached(&nonce.into(), aad, &mut data, tag.into()),
                CipherKind::Chacha20Poly1305 => {
                    chacha20poly1305::ChaCha20Poly1305::new_from_slice(dec.key())
                        .unwrap()
                        .decrypt_in_place_detached(&nonce.into(), aad, &mut data, tag.into())
                }
            };
            res.unwrap_or_else(|_| panic!("{}: oracle rejected a captured packet", s.name));
            check_plaintext(s, p, &data);
        }
    }
}

/// A captured packet with any single bit flipped is refused with a typed error (V1's opcode
/// byte is not authenticated, but a flipped key-id or opcode still cannot pass).
fn check_tamper(all: &[Session]) {
    for s in all {
        let p = &s.packets[0];
        let (_, dec) = keys_for(s, p.dir);
        for bit in 0..p.wire.len() * 8 {
            let rx = DecryptKey::new(s.key_id, &dec, 64).unwrap();
            let mut t = p.wire.clone();
            t[bit / 8] ^= 1 << (bit % 8);
            let e = rx.open(&mut t).expect_err("tampered packet accepted");
            assert!(
                matches!(
                    e,
                    DataError::TagMismatch
                        | DataError::UnknownKeyId(_)
                        | DataError::WrongOpcode(_)
                        | DataError::ZeroPacketId
                        | DataError::TooShort { .. }
                ),
                "{} bit {bit}: {e:?}",
                s.name
            );
        }
    }
}

#[test]
fn fixture_covers_ciphers_derivations_formats_and_keepalives() {
    check_coverage(&sessions());
}

#[test]
fn key_split_matches_what_openvpn_logged() {
    check_key_split(&sessions());
}

#[test]
fn live_tls1_prf_session_matches_python() {
    check_prf(&sessions());
}

#[test]
fn captured_packets_decrypt() {
    check_decrypt(&sessions());
}

#[test]
fn re_encryption_is_byte_identical() {
    check_reencrypt(&sessions());
}

#[test]
fn batch_path_on_captured_traffic() {
    check_batch(&sessions());
}

#[test]
fn rustcrypto_oracle_decrypts_captures() {
    check_oracle(&sessions());
}

#[test]
fn tampered_captures_are_refused() {
    check_tamper(&sessions());
}

/// Runs the fixture generator against the stock `openvpn` on this machine (root: network
/// namespaces; it installs openvpn/tcpdump/gcc with apt-get when missing) and runs every
/// check above on the fresh capture. Skips loudly when not root or without python3.
#[test]
fn live_stock_openvpn() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED live_stock_openvpn: needs root (network namespaces)");
        return;
    }
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED live_stock_openvpn: python3 not found");
        return;
    }
    let dir = std::env::temp_dir().join(format!("dco-crypto-live-kat-{}", std::process::id()));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/gen_openvpn_fixtures.py");
    let status = std::process::Command::new("timeout")
        .args(["300", "python3"])
        .arg(&script)
        .arg("--out")
        .arg(&dir)
        .status()
        .expect("run the fixture generator");
    assert!(status.success(), "fixture generator failed: {status}");
    let text = std::fs::read_to_string(dir.join("openvpn_kat.json")).expect("fresh fixture");
    let _ = std::fs::remove_dir_all(&dir);
    let all = sessions_from(&serde_json::from_str(&text).expect("JSON"));
    check_coverage(&all);
    check_key_split(&all);
    check_prf(&all);
    check_decrypt(&all);
    check_reencrypt(&all);
    check_batch(&all);
    check_oracle(&all);
    check_tamper(&all);
}
