//! Property tests of the control-channel wire layer: parsers never panic, encoding is the
//! exact inverse of parsing, every wrap mode round-trips and never panics on junk.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use control::packet::{self, AckIds, ControlPacket, KeyId, Opcode, ResetOptions, SessionId};
use control::reliable::{ReliableConfig, ReliableLayer};
use control::static_key::{KeyDirection, StaticKey};
use control::wrap::{AuthDigest, ReplayId, ReplayWindow, Role, WrapKeys};

fn all_wraps() -> Vec<(WrapKeys, WrapKeys)> {
    let mut b = [0u8; 256];
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    let k = StaticKey::from_bytes(&b);
    let mut v = vec![(WrapKeys::none(), WrapKeys::none())];
    for d in [
        AuthDigest::Sha1,
        AuthDigest::Sha256,
        AuthDigest::Sha384,
        AuthDigest::Sha512,
    ] {
        v.push((
            WrapKeys::tls_auth(&k, KeyDirection::Inverse, d),
            WrapKeys::tls_auth(&k, KeyDirection::Normal, d),
        ));
    }
    v.push((
        WrapKeys::tls_crypt(&k, Role::Client),
        WrapKeys::tls_crypt(&k, Role::Server),
    ));
    v
}

fn sendable_opcode() -> impl Strategy<Value = Opcode> {
    prop_oneof![
        Just(Opcode::SoftResetV1),
        Just(Opcode::ControlV1),
        Just(Opcode::AckV1),
        Just(Opcode::HardResetClientV2),
        Just(Opcode::HardResetServerV2),
    ]
}

/// Owned parts of a valid, sendable control packet.
#[derive(Debug, Clone)]
struct Parts {
    opcode: Opcode,
    key_id: u8,
    sid: [u8; 8],
    acks: Vec<u32>,
    remote: [u8; 8],
    msg_id: u32,
    payload: Vec<u8>,
}

impl Parts {
    fn packet(&self) -> ControlPacket<'_> {
        let acks = AckIds::from_slice(&self.acks).unwrap();
        ControlPacket {
            opcode: self.opcode,
            key_id: KeyId::new(self.key_id).unwrap(),
            session_id: SessionId(self.sid),
            acks,
            remote_session_id: (!acks.is_empty()).then_some(SessionId(self.remote)),
            message_id: self.opcode.has_message_id().then_some(self.msg_id),
            payload: if self.opcode == Opcode::ControlV1 {
                &self.payload
            } else {
                &[]
            },
        }
    }
}

fn parts() -> impl Strategy<Value = Parts> {
    (
        sendable_opcode(),
        0u8..8,
        any::<[u8; 8]>(),
        prop::collection::vec(any::<u32>(), 0..=8),
        any::<[u8; 8]>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..1300),
    )
        .prop_map(
            |(opcode, key_id, sid, acks, remote, msg_id, payload)| Parts {
                opcode,
                key_id,
                sid,
                acks,
                remote,
                msg_id,
                payload,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_and_reencodes_exactly(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = packet::peek(&bytes);
        if let Ok(p) = packet::parse(&bytes) {
            // Whatever parses and is sendable encodes back to the very same bytes.
            if p.validate_for_send().is_ok() {
                let mut out = vec![0u8; p.encoded_len()];
                let n = p.encode(&mut out).unwrap();
                prop_assert_eq!(&out[..n], &bytes[..]);
            }
            prop_assert_eq!(p.encoded_len(), bytes.len());
            if let Some(tlvs) = p.reset_tlvs() {
                for t in tlvs { let _ = t; }
            }
        }
    }

    #[test]
    fn structured_junk_parse_never_panics(
        b0 in any::<u8>(),
        sid in any::<[u8; 8]>(),
        count in any::<u8>(),
        tail in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        // Valid-looking headers with hostile counts reach deeper code paths.
        let mut v = vec![b0];
        v.extend_from_slice(&sid);
        v.push(count);
        v.extend_from_slice(&tail);
        let _ = packet::parse(&v);
    }

    #[test]
    fn encode_parse_round_trip(p in parts()) {
        let pkt = p.packet();
        let mut out = vec![0u8; pkt.encoded_len()];
        let n = pkt.encode(&mut out).unwrap();
        prop_assert_eq!(n, out.len());
        prop_assert_eq!(packet::parse(&out).unwrap(), pkt);
    }

    #[test]
    fn wrap_round_trip_every_mode(p in parts(), pid in 1u32.., time in any::<u32>()) {
        let pkt = p.packet();
        let rid = ReplayId { packet_id: pid, time };
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        for (client, server) in all_wraps() {
            client.seal(&pkt, Some(rid), &mut out).unwrap();
            prop_assert_eq!(out.len(), client.wrapped_len(&pkt));
            let o = server.open(&out, &mut scratch).unwrap();
            prop_assert_eq!(o.packet, pkt);
            if client.kind().has_replay_id() {
                prop_assert_eq!(o.replay_id, Some(rid));
            }
        }
    }

    #[test]
    fn unwrap_of_junk_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1600)) {
        let mut scratch = Vec::new();
        for (client, server) in all_wraps() {
            let _ = server.open(&bytes, &mut scratch);
            let _ = client.open(&bytes, &mut scratch);
        }
    }

    #[test]
    fn unwrap_of_mutated_packets_never_panics(
        p in parts(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let pkt = p.packet();
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        for (client, server) in all_wraps() {
            client.seal(&pkt, Some(ReplayId { packet_id: 1, time: 1 }), &mut out).unwrap();
            let mut bad = out.clone();
            for &(i, x) in &flips {
                let i = i % bad.len();
                bad[i] ^= x;
            }
            bad.truncate(cut % (bad.len() + 1));
            let r = server.open(&bad, &mut scratch);
            // Authenticated modes detect every change (no-wrap has nothing to detect).
            if client.kind().has_replay_id() && bad != out {
                prop_assert!(r.is_err());
            }
        }
    }

    #[test]
    fn static_key_parse_never_panics(text in ".{0,600}") {
        let _ = StaticKey::parse(&text);
        let _ = StaticKey::parse(&format!("-----BEGIN OpenVPN Static key V1-----\n{text}\n-----END OpenVPN Static key V1-----\n"));
    }

    #[test]
    fn static_key_round_trip(bytes in prop::collection::vec(any::<u8>(), 256)) {
        let arr: [u8; 256] = bytes.try_into().unwrap();
        let k = StaticKey::from_bytes(&arr);
        let back = StaticKey::parse(&k.to_file_string()).unwrap();
        prop_assert_eq!(back.as_bytes(), &arr);
    }

    #[test]
    fn reset_tlvs_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = ResetOptions::parse(&bytes);
    }

    #[test]
    fn replay_window_never_accepts_twice(
        ids in prop::collection::vec((1u32..200, 0u32..3, 0u64..40), 1..300)
    ) {
        let t0 = Instant::now();
        let mut w = ReplayWindow::default();
        let mut seen = HashSet::new();
        let mut max_time = 0;
        let mut now = t0;
        for (pid, time, dt) in ids {
            now += Duration::from_millis(dt * 100);
            let id = ReplayId { packet_id: pid, time };
            if w.check_and_accept(now, id).is_ok() {
                prop_assert!(seen.insert((pid, time)), "accepted {pid}/{time} twice");
                prop_assert!(time >= max_time, "accepted an older time");
                max_time = time;
            }
        }
    }

    #[test]
    fn reliable_layer_survives_arbitrary_input(
        ops in prop::collection::vec((0u8..4, any::<u32>(), 0u8..16, prop::collection::vec(any::<u8>(), 0..40)), 1..200)
    ) {
        let t0 = Instant::now();
        let mut l = ReliableLayer::new(ReliableConfig::default()).unwrap();
        let _ = l.send_reset(Opcode::HardResetClientV2);
        let mut now = t0;
        let mut sink = Vec::new();
        for (kind, id, small, bytes) in ops {
            now += Duration::from_millis(u64::from(small) * 250);
            // Ids near the window are the interesting ones.
            let near = if small % 2 == 0 { u32::from(small) } else { id };
            match kind {
                0 => { let _ = l.on_message(Opcode::ControlV1, near, &bytes); }
                1 => l.on_acks(&[near, id]),
                2 => { let _ = l.queue_tls(&bytes); }
                _ => { let _ = l.on_message(Opcode::HardResetServerV2, near, &bytes); }
            }
            while let Some(t) = l.poll_transmit(now) {
                let n = t.acks.len();
                prop_assert!(n <= 8);
                prop_assert!(l.in_flight() <= 6);
            }
            l.read_tls_to_end(&mut sink);
        }
    }
}
