//! A stream of authentic packets, sealed by our sender and then reordered, duplicated,
//! corrupted or truncated as the fuzzer says, through one receiver. Checks against a
//! reference model: an intact packet opens exactly once (while in the window) with its
//! plaintext, a duplicate is `Replayed`, anything altered is refused, and the counters
//! never hand out an id twice.
#![no_main]

use std::collections::HashSet;

use crypto::{
    CipherKind, DATA_V1_OVERHEAD, DATA_V2_OVERHEAD, DataError, DecryptKey, EncryptKey, Key2, KeyId,
    PeerId, Role, SendCounter,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut it = data.iter().copied();
    let mut next = move || it.next();
    let Some(sel) = next() else { return };
    let cipher = CipherKind::ALL[usize::from(sel % 3)];
    let window: u32 = if sel & 0x80 != 0 { 2048 } else { 64 };
    let mut material = [0u8; 256];
    for (i, b) in material.iter_mut().enumerate() {
        *b = (i as u8) ^ sel ^ 0x5a;
    }
    material[0] |= 1;
    material[128] |= 1;
    let k = Key2::from_bytes(material);
    let (enc, _) = k.data_keys(Role::Client, cipher).unwrap();
    let (_, dec) = k.data_keys(Role::Server, cipher).unwrap();
    let kid = KeyId::new(sel & 7).unwrap();
    let start = u32::from_be_bytes([
        next().unwrap_or(0),
        next().unwrap_or(0),
        next().unwrap_or(0),
        0,
    ]);
    let tx = EncryptKey::with_counter(kid, &enc, SendCounter::starting_after(start)).unwrap();
    let rx = DecryptKey::new(kid, &dec, window).unwrap();

    // Sent packets, kept so later commands can replay them: (wire, plaintext, packet id).
    let mut sent: Vec<(Vec<u8>, Vec<u8>, u32)> = Vec::new();
    let mut accepted: HashSet<u32> = HashSet::new();
    let mut highest = 0u32;
    let mut ids_used = HashSet::new();

    while let Some(cmd) = next() {
        match cmd % 4 {
            // Seal a new packet of a fuzzer-chosen length (V2, or V1 if bit 2 is set).
            0 | 1 => {
                let len = usize::from(next().unwrap_or(0)) * 8 + usize::from(cmd >> 5);
                let v1 = cmd & 4 != 0;
                let over = if v1 {
                    DATA_V1_OVERHEAD
                } else {
                    DATA_V2_OVERHEAD
                };
                let plain: Vec<u8> = (0..len).map(|i| (i as u8) ^ cmd).collect();
                let mut buf = vec![0u8; over + len];
                buf[over..].copy_from_slice(&plain);
                let r = if v1 {
                    tx.seal_v1(&mut buf, len)
                } else {
                    tx.seal_v2(PeerId::new(u32::from(cmd)).unwrap(), &mut buf, len)
                };
                match r {
                    Ok(s) => {
                        assert!(s.packet_id != 0 && ids_used.insert(s.packet_id));
                        sent.push((buf, plain, s.packet_id));
                    }
                    Err(e) => assert_eq!(e, DataError::PacketIdExhausted),
                }
                // Deliver it now unless told to hold it back.
                if cmd & 8 == 0 {
                    deliver(
                        &rx,
                        &sent,
                        sent.len().wrapping_sub(1),
                        None,
                        window,
                        &mut accepted,
                        &mut highest,
                    );
                }
            }
            // Deliver an earlier packet again (reordering or duplicate).
            2 => {
                let pick = usize::from(next().unwrap_or(0));
                if !sent.is_empty() {
                    deliver(
                        &rx,
                        &sent,
                        pick % sent.len(),
                        None,
                        window,
                        &mut accepted,
                        &mut highest,
                    );
                }
            }
            // Deliver an altered copy of an earlier packet.
            _ => {
                let pick = usize::from(next().unwrap_or(0));
                let at = usize::from(next().unwrap_or(0)) | usize::from(next().unwrap_or(0)) << 8;
                let flip = next().unwrap_or(1).max(1);
                if !sent.is_empty() {
                    deliver(
                        &rx,
                        &sent,
                        pick % sent.len(),
                        Some((at, flip, cmd & 4 != 0)),
                        window,
                        &mut accepted,
                        &mut highest,
                    );
                }
            }
        }
    }
});

fn deliver(
    rx: &DecryptKey,
    sent: &[(Vec<u8>, Vec<u8>, u32)],
    i: usize,
    alter: Option<(usize, u8, bool)>,
    window: u32,
    accepted: &mut HashSet<u32>,
    highest: &mut u32,
) {
    let Some((wire, plain, id)) = sent.get(i) else {
        return;
    };
    let mut pkt = wire.clone();
    if let Some((at, flip, truncate)) = alter {
        if truncate {
            pkt.truncate(at % pkt.len());
        } else {
            let n = pkt.len();
            pkt[at % n] ^= flip;
        }
        let r = rx.open(&mut pkt);
        assert!(r.is_err(), "altered packet accepted");
        return;
    }
    let r = rx.open(&mut pkt);
    let too_old = *highest > *id && *highest - *id > window;
    if too_old {
        assert_eq!(r, Err(DataError::TooOld(*id)));
    } else if accepted.contains(id) {
        assert_eq!(r, Err(DataError::Replayed(*id)));
    } else {
        let o = r.expect("intact packet refused");
        assert_eq!(&pkt[o.payload], &plain[..]);
        assert_eq!(o.header.packet_id, *id);
        accepted.insert(*id);
        *highest = (*highest).max(*id);
    }
}
