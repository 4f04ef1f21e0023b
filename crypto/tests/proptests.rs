//! Property tests of the data channel: round trips for every cipher and size, ring against
//! the RustCrypto oracle, no panics on arbitrary peer bytes, the replay window against a
//! reference model, and the batch path against per-packet calls.

use std::collections::HashSet;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use crypto::{
    BatchAead, CipherKind, CpuBatch, DATA_V1_OVERHEAD, DATA_V2_OVERHEAD, DataError, DataFormat,
    DataHeader, DecryptKey, DirectionalKey, EncryptKey, Key2, KeyId, PacketClass, PeerId,
    ReplayWindow, Role, SendCounter, classify, classify_plaintext,
};
use proptest::prelude::*;

fn cipher() -> impl Strategy<Value = CipherKind> {
    prop::sample::select(CipherKind::ALL.to_vec())
}

/// Random key material; all-zero cipher keys are refused by design, so avoid them.
fn key2() -> impl Strategy<Value = Key2> {
    prop::collection::vec(any::<u8>(), 256).prop_map(|mut v| {
        for base in [0usize, 128] {
            v[base] |= 1;
        }
        Key2::from_bytes(v.try_into().unwrap())
    })
}

/// Client→server encrypt key and the server's matching decrypt key.
fn pair(k: &Key2, c: CipherKind, kid: u8, window: u32) -> (EncryptKey, DecryptKey) {
    let kid = KeyId::new(kid).unwrap();
    let (enc, _) = k.data_keys(Role::Client, c).unwrap();
    let (_, dec) = k.data_keys(Role::Server, c).unwrap();
    (
        EncryptKey::new(kid, &enc).unwrap(),
        DecryptKey::new(kid, &dec, window).unwrap(),
    )
}

/// The payload sizes a data channel sees: up to a 9000-byte jumbo frame, with the small and
/// MTU-sized ones weighted up.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..=64),
        3 => prop::collection::vec(any::<u8>(), 1300..=1500),
        2 => prop::collection::vec(any::<u8>(), 0..=9000),
        1 => prop::collection::vec(any::<u8>(), 8990..=9000),
    ]
}

/// RustCrypto's detached seal: the independent oracle.
fn oracle_seal(
    c: CipherKind,
    key: &[u8],
    nonce: [u8; 12],
    aad: &[u8],
    data: &mut [u8],
) -> [u8; 16] {
    let n = nonce.into();
    let tag = match c {
        CipherKind::Aes128Gcm => aes_gcm::Aes128Gcm::new_from_slice(key)
            .unwrap()
            .encrypt_in_place_detached(&n, aad, data),
        CipherKind::Aes256Gcm => aes_gcm::Aes256Gcm::new_from_slice(key)
            .unwrap()
            .encrypt_in_place_detached(&n, aad, data),
        CipherKind::Chacha20Poly1305 => chacha20poly1305::ChaCha20Poly1305::new_from_slice(key)
            .unwrap()
            .encrypt_in_place_detached(&n, aad, data),
    }
    .unwrap();
    tag.into()
}

fn nonce_of(pid: [u8; 4], key: &DirectionalKey) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&pid);
    n[4..].copy_from_slice(key.implicit_iv());
    n
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// seal_v2 → open and seal_v1 → open give back the plaintext, for every cipher and size.
    #[test]
    fn seal_open_round_trip(k in key2(), c in cipher(), kid in 0u8..8, peer in 0u32..=0xff_ffff,
                            plain in payload(), v1 in any::<bool>()) {
        let (tx, rx) = pair(&k, c, kid, 64);
        let over = if v1 { DATA_V1_OVERHEAD } else { DATA_V2_OVERHEAD };
        let mut buf = vec![0u8; over + plain.len() + 7]; // spare room after the packet
        buf[over..over + plain.len()].copy_from_slice(&plain);
        let s = if v1 {
            tx.seal_v1(&mut buf, plain.len())
        } else {
            tx.seal_v2(PeerId::new(peer).unwrap(), &mut buf, plain.len())
        }.unwrap();
        prop_assert_eq!(s.len, over + plain.len());
        prop_assert_eq!(s.packet_id, 1);
        let o = rx.open(&mut buf[..s.len]).unwrap();
        prop_assert_eq!(&buf[o.payload.clone()], &plain[..]);
        prop_assert_eq!(o.header.key_id.get(), kid);
        prop_assert_eq!(o.header.format, if v1 { DataFormat::V1 } else { DataFormat::V2 });
        prop_assert_eq!(o.header.peer_id, if v1 { None } else { PeerId::new(peer) });
    }

    /// ring's ciphertext and tag equal RustCrypto's for the same key, nonce
    /// (`packet_id || implicit_iv`) and AAD (`header || packet_id` for V2, `packet_id` for V1).
    #[test]
    fn ring_matches_rustcrypto_oracle(k in key2(), c in cipher(), kid in 0u8..8,
                                      peer in 0u32..=0xff_ffff, plain in payload(),
                                      start in 0u32..u32::MAX, v1 in any::<bool>()) {
        let kid = KeyId::new(kid).unwrap();
        let (enc, _) = k.data_keys(Role::Client, c).unwrap();
        let tx = EncryptKey::with_counter(kid, &enc, SendCounter::starting_after(start)).unwrap();
        let over = if v1 { DATA_V1_OVERHEAD } else { DATA_V2_OVERHEAD };
        let mut buf = vec![0u8; over + plain.len()];
        buf[over..].copy_from_slice(&plain);
        let s = if v1 {
            tx.seal_v1(&mut buf, plain.len())
        } else {
            tx.seal_v2(PeerId::new(peer).unwrap(), &mut buf, plain.len())
        }.unwrap();
        prop_assert_eq!(s.packet_id, start + 1);
        let pid = (start + 1).to_be_bytes();
        let mut expect = plain.clone();
        let (aad, hdr): (Vec<u8>, Vec<u8>) = if v1 {
            (pid.to_vec(), [&[0x30 | kid.get()][..], &pid[..]].concat())
        } else {
            let w = ((0x48u32 | u32::from(kid.get())) << 24) | peer;
            let h = [&w.to_be_bytes()[..], &pid[..]].concat();
            (h.clone(), h)
        };
        let tag = oracle_seal(c, enc.key(), nonce_of(pid, &enc), &aad, &mut expect);
        prop_assert_eq!(&buf[..hdr.len()], &hdr[..]);
        prop_assert_eq!(&buf[hdr.len()..over], &tag[..]);
        prop_assert_eq!(&buf[over..], &expect[..]);
    }

    /// Parsing and classifying arbitrary bytes never panics, and agrees with itself.
    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let h = DataHeader::parse(&bytes);
        let class = classify(&bytes);
        if let Ok(h) = h {
            let ok = match (h.format, class) {
                (DataFormat::V2, PacketClass::DataV2 { peer_id, key_id }) =>
                    Some(peer_id) == h.peer_id && key_id == h.key_id,
                (DataFormat::V1, PacketClass::DataV1 { key_id }) => key_id == h.key_id,
                _ => false,
            };
            prop_assert!(ok, "{:?} vs {:?}", h, class);
            prop_assert!(bytes.len() >= h.format.overhead());
        }
        let _ = classify_plaintext(&bytes);
    }

    /// Opening arbitrary bytes never panics, and never succeeds (the chance of forging a tag
    /// is 2^-128). Headers are forced into the data-packet shape half of the time so the AEAD
    /// and replay paths run, not just the header checks.
    #[test]
    fn open_arbitrary_bytes_is_a_typed_error(k in key2(), c in cipher(),
                                             mut bytes in prop::collection::vec(any::<u8>(), 0..2048),
                                             shape in 0u8..3) {
        let (_, rx) = pair(&k, c, 2, 64);
        if !bytes.is_empty() {
            match shape {
                0 => bytes[0] = 0x4a, // DATA_V2, key-id 2
                1 => bytes[0] = 0x32, // DATA_V1, key-id 2
                _ => {}
            }
        }
        let r = rx.open(&mut bytes);
        prop_assert!(r.is_err());
        let _ = r.unwrap_err().reason().name();
        // The window never moves on a forged packet.
        prop_assert_eq!(rx.replay_window().highest(), 0);
    }

    /// Any change to a sealed packet is refused; the untouched packet still opens afterwards.
    #[test]
    fn tampering_is_detected(k in key2(), c in cipher(), plain in prop::collection::vec(any::<u8>(), 0..200),
                             at in any::<prop::sample::Index>(), flip in 1u8..=255, cut in 0usize..30) {
        let (tx, rx) = pair(&k, c, 0, 64);
        let mut buf = vec![0u8; DATA_V2_OVERHEAD + plain.len()];
        buf[DATA_V2_OVERHEAD..].copy_from_slice(&plain);
        tx.seal_v2(PeerId::new(7).unwrap(), &mut buf, plain.len()).unwrap();
        let mut t = buf.clone();
        t[at.index(buf.len())] ^= flip;
        prop_assert!(rx.open(&mut t).is_err());
        let mut short = buf[..buf.len().saturating_sub(cut.max(1))].to_vec();
        prop_assert!(rx.open(&mut short).is_err());
        let mut good = buf.clone();
        let range = rx.open(&mut good).unwrap().payload;
        prop_assert_eq!(&good[range], &plain[..]);
    }
}

/// The reference model of the replay window: a set of seen ids and the highest; an id is
/// too old once it is more than `size` behind the highest.
struct Model {
    size: u32,
    highest: u32,
    seen: HashSet<u32>,
}

impl Model {
    fn check(&mut self, id: u32) -> Result<(), DataError> {
        if id == 0 {
            return Err(DataError::ZeroPacketId);
        }
        if self.highest > id && self.highest - id > self.size {
            return Err(DataError::TooOld(id));
        }
        if !self.seen.insert(id) {
            return Err(DataError::Replayed(id));
        }
        self.highest = self.highest.max(id);
        Ok(())
    }
}

/// One step of a packet-id stream: mostly forward, some reordering and duplicates around the
/// window edge, rare big jumps, rare zero.
#[derive(Debug, Clone)]
enum Step {
    Forward(u32),
    Back(u32),
    Jump(u32),
    Zero,
}

fn steps(size: u32) -> impl Strategy<Value = Vec<Step>> {
    let edge = size + 40;
    prop::collection::vec(
        prop_oneof![
            6 => (1u32..8).prop_map(Step::Forward),
            4 => (0u32..edge).prop_map(Step::Back),
            2 => (size - 8..size + 8).prop_map(Step::Back),
            1 => (1u32..100_000).prop_map(Step::Jump),
            1 => Just(Step::Zero),
        ],
        1..600,
    )
}

fn replay_against_model(size: u32, start: u32, steps: &[Step]) -> Result<(), TestCaseError> {
    let w = ReplayWindow::new(size);
    prop_assert_eq!(w.size(), size);
    let mut m = Model {
        size,
        highest: 0,
        seen: HashSet::new(),
    };
    let mut cur = start;
    for s in steps {
        let id = match *s {
            Step::Forward(d) => {
                cur = cur.saturating_add(d);
                cur
            }
            Step::Back(d) => cur.saturating_sub(d),
            Step::Jump(d) => {
                cur = cur.saturating_add(d);
                cur
            }
            Step::Zero => 0,
        };
        prop_assert_eq!(w.check_and_set(id), m.check(id), "id {} after {:?}", id, s);
        prop_assert_eq!(w.highest(), m.highest);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn replay_window_64_matches_model(start in prop_oneof![Just(0u32), 0u32..1_000_000, (u32::MAX - 5000)..u32::MAX],
                                      s in steps(64)) {
        replay_against_model(64, start, &s)?;
    }

    #[test]
    fn replay_window_2048_matches_model(start in prop_oneof![Just(0u32), 0u32..1_000_000, (u32::MAX - 50_000)..u32::MAX],
                                        s in steps(2048)) {
        replay_against_model(2048, start, &s)?;
    }
}

/// A batch member for the batch-vs-single property: a payload and what to do to the sealed
/// packet before opening it.
#[derive(Debug, Clone)]
enum Fate {
    Intact,
    Corrupt(usize),
    Duplicate,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// reserve + prepare_v2 + CpuBatch::seal gives the bytes seal_v2 gives, and
    /// prepare_open + CpuBatch::open + finish_open gives the results open gives, including
    /// for corrupted and duplicated packets.
    #[test]
    fn cpu_batch_equals_per_packet(k in key2(), c in cipher(),
                                   items in prop::collection::vec(
                                       (prop::collection::vec(any::<u8>(), 0..1600),
                                        prop_oneof![6 => Just(Fate::Intact),
                                                    1 => any::<usize>().prop_map(Fate::Corrupt),
                                                    1 => Just(Fate::Duplicate)]),
                                       1..64),
                                   start in 0u32..1000) {
        let kid = KeyId::new(5).unwrap();
        let peer = PeerId::new(0x123456).unwrap();
        let (enc, _) = k.data_keys(Role::Client, c).unwrap();
        let (_, dec) = k.data_keys(Role::Server, c).unwrap();

        // Seal: per packet and batched, from counters in the same state.
        let single = EncryptKey::with_counter(kid, &enc, SendCounter::starting_after(start)).unwrap();
        let batch = EncryptKey::with_counter(kid, &enc, SendCounter::starting_after(start)).unwrap();
        let mk = |p: &Vec<u8>| {
            let mut b = vec![0u8; DATA_V2_OVERHEAD + p.len()];
            b[DATA_V2_OVERHEAD..].copy_from_slice(p);
            b
        };
        let mut a: Vec<Vec<u8>> = items.iter().map(|(p, _)| mk(p)).collect();
        let mut b: Vec<Vec<u8>> = a.clone();
        for (buf, (p, _)) in a.iter_mut().zip(&items) {
            single.seal_v2(peer, buf, p.len()).unwrap();
        }
        let r = batch.reserve(items.len() as u32).unwrap();
        prop_assert_eq!(r.ids.clone().count(), items.len());
        let mut ops: Vec<_> = b.iter_mut().zip(r.ids.clone()).zip(&items)
            .map(|((buf, id), (p, _))| batch.prepare_v2(peer, id as u32, buf, p.len()).unwrap())
            .collect();
        CpuBatch.seal(&mut ops);
        prop_assert!(ops.iter().all(|o| o.ok));
        drop(ops);
        prop_assert_eq!(&a, &b);

        // What arrives: corrupted, duplicated, in order.
        let mut wire: Vec<Vec<u8>> = Vec::new();
        for (pkt, (_, fate)) in a.iter().zip(&items) {
            match fate {
                Fate::Intact => wire.push(pkt.clone()),
                Fate::Corrupt(i) => {
                    let mut t = pkt.clone();
                    let n = t.len();
                    t[i % n] ^= 0x80;
                    wire.push(t);
                }
                Fate::Duplicate => {
                    wire.push(pkt.clone());
                    wire.push(pkt.clone());
                }
            }
        }
        let rx1 = DecryptKey::new(kid, &dec, 64).unwrap();
        let rx2 = DecryptKey::new(kid, &dec, 64).unwrap();
        let mut w1 = wire.clone();
        let singles: Vec<_> = w1.iter_mut()
            .map(|p| rx1.open(p).map(|o| (o.payload, o.header)))
            .collect();
        let mut w2 = wire.clone();
        let mut ops = Vec::new();
        let mut pre = Vec::new();
        for p in w2.iter_mut() {
            let len = p.len();
            match rx2.prepare_open(p) {
                Ok((op, h)) => { ops.push(op); pre.push(Ok((h, len))); }
                Err(e) => pre.push(Err(e)),
            }
        }
        CpuBatch.open(&mut ops);
        let mut oks = ops.iter().map(|o| o.ok).collect::<Vec<_>>().into_iter();
        drop(ops);
        let batched: Vec<_> = pre.into_iter().map(|p| {
            let (h, len) = p?;
            let ok = oks.next().unwrap();
            rx2.finish_open(&h, len, ok).map(|r| (r, h))
        }).collect();
        prop_assert_eq!(singles.len(), batched.len());
        for (one, many) in singles.iter().zip(&batched) {
            // A forged packet-id far behind the window is refused before the AEAD when the
            // window has already moved (one at a time), and by its tag when the whole batch
            // was prepared first: both are refusals, only the counted reason differs.
            let same = one == many
                || matches!((one, many), (Err(DataError::TooOld(_)), Err(DataError::TagMismatch)));
            prop_assert!(same, "single {:?} vs batch {:?}", one, many);
        }
        for (i, (r, p)) in singles.iter().zip(&w1).enumerate() {
            if let Ok((range, _)) = r {
                prop_assert_eq!(&p[range.clone()], &w2[i][range.clone()]);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Reservations hand out consecutive, disjoint ids in 1..=u32::MAX, raise the rotate
    /// signal exactly once (on the reservation holding 2^31), and once the space is used up
    /// every later call is refused.
    #[test]
    fn send_counter_never_reuses(start in prop_oneof![
                                     Just(0u32),
                                     (crypto::ROTATE_THRESHOLD - 300)..(crypto::ROTATE_THRESHOLD + 10),
                                     (u32::MAX - 300)..=u32::MAX],
                                 sizes in prop::collection::vec(0u32..40, 1..40)) {
        let c = SendCounter::starting_after(start);
        let mut next = u64::from(start) + 1;
        let mut rotations = 0;
        let mut exhausted = false;
        for n in sizes {
            match c.reserve(n) {
                Ok(r) => {
                    prop_assert!(!exhausted, "ids handed out after exhaustion");
                    prop_assert_eq!(r.ids.start, next);
                    prop_assert!(r.ids.end > r.ids.start);
                    prop_assert!(r.ids.end - r.ids.start <= u64::from(n.max(1)));
                    prop_assert!(r.ids.end <= u64::from(u32::MAX) + 1);
                    let t = u64::from(crypto::ROTATE_THRESHOLD);
                    prop_assert_eq!(r.rotate_now, r.ids.contains(&t));
                    rotations += usize::from(r.rotate_now);
                    next = r.ids.end;
                }
                Err(e) => {
                    prop_assert_eq!(e, DataError::PacketIdExhausted);
                    prop_assert_eq!(next, u64::from(u32::MAX) + 1);
                    exhausted = true;
                }
            }
        }
        prop_assert!(rotations <= 1);
        prop_assert_eq!(c.used(), (next - 1).min(u64::from(u32::MAX)));
    }
}

/// Workers racing for the last ids of a key: every id up to u32::MAX is handed out exactly
/// once, and nothing after.
#[test]
fn send_counter_exhaustion_under_contention() {
    use std::sync::Arc;
    let c = Arc::new(SendCounter::starting_after(u32::MAX - 10_000));
    let handles: Vec<_> = (0..4u32)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match c.reserve(1 + t * 3) {
                        Ok(r) => got.extend(r.ids),
                        Err(e) => {
                            assert_eq!(e, DataError::PacketIdExhausted);
                            break;
                        }
                    }
                }
                got
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    let want: Vec<u64> = (u64::from(u32::MAX) - 9_999..=u64::from(u32::MAX)).collect();
    assert_eq!(all, want);
    assert_eq!(c.used(), u64::from(u32::MAX));
}
