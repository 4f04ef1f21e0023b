//! Arbitrary datagrams through everything a receiver does with peer bytes before and during
//! decryption: `classify`, `DataHeader::parse`, `DecryptKey::open` / `prepare_open` +
//! `CpuBatch` + `finish_open`, and `classify_plaintext`. Nothing may panic, nothing forged
//! may be accepted, and a refused packet never moves the replay window.
#![no_main]

use crypto::{
    BatchAead, CipherKind, CpuBatch, DataHeader, DecryptKey, Key2, KeyId, PacketClass, Role,
    classify, classify_plaintext,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, pkt)) = data.split_first() else {
        return;
    };
    let cipher = CipherKind::ALL[usize::from(sel % 3)];
    let window = if sel & 0x80 != 0 { 2048 } else { 64 };
    let key_id = KeyId::new((sel >> 3) & 7).unwrap();
    let mut material = [0u8; 256];
    for (i, b) in material.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    let (_, dec) = Key2::from_bytes(material)
        .data_keys(Role::Server, cipher)
        .unwrap();
    let rx = DecryptKey::new(key_id, &dec, window).unwrap();

    let class = classify(pkt);
    let header = DataHeader::parse(pkt);
    if let Ok(h) = &header {
        assert!(matches!(
            class,
            PacketClass::DataV1 { .. } | PacketClass::DataV2 { .. }
        ));
        assert!(pkt.len() >= h.format.overhead());
    }
    let _ = classify_plaintext(pkt);

    let mut a = pkt.to_vec();
    let single = rx.open(&mut a);
    assert!(single.is_err(), "a forged packet was accepted");
    let _ = single.unwrap_err().reason().name();

    let mut b = pkt.to_vec();
    let len = b.len();
    if let Ok((op, h)) = rx.prepare_open(&mut b) {
        let mut ops = [op];
        CpuBatch.open(&mut ops);
        let ok = ops[0].ok;
        assert!(!ok, "a forged tag verified in the batch path");
        assert!(rx.finish_open(&h, len, ok).is_err());
    }
    assert_eq!(rx.replay_window().highest(), 0);
});
