//! Shared helpers for the gpu crate's tests: random batches and the RustCrypto oracle.
#![allow(dead_code)]

use aes_gcm::aead::{AeadInPlace, KeyInit};
use crypto::{AeadKey, AeadOp, CipherKind, NONCE_LEN, TAG_LEN};
use rand::Rng;

/// One packet of a random batch, owning its buffers.
pub struct Packet {
    pub key: usize,
    pub nonce: [u8; NONCE_LEN],
    pub aad: Vec<u8>,
    pub data: Vec<u8>,
    pub tag: [u8; TAG_LEN],
}

/// Random keys (every cipher) and packets of random lengths in `0..=max_len` using them.
pub fn random_batch(
    rng: &mut impl Rng,
    nkeys: usize,
    n: usize,
    max_len: usize,
    max_aad: usize,
) -> (Vec<AeadKey>, Vec<Packet>) {
    let keys: Vec<AeadKey> = (0..nkeys)
        .map(|_| {
            let c = CipherKind::ALL[rng.random_range(0..3)];
            let mut k = [0u8; 32];
            rng.fill_bytes(&mut k);
            AeadKey::new(c, &k[..c.key_len()]).unwrap()
        })
        .collect();
    let pkts = (0..n)
        .map(|_| {
            // Favour the sizes the data channel sees, but cover every length.
            let len = match rng.random_range(0..4) {
                0 => rng.random_range(0..=64.min(max_len)),
                1 => rng.random_range(1300.min(max_len)..=max_len),
                _ => rng.random_range(0..=max_len),
            };
            let aad_len = match rng.random_range(0..3) {
                0 => 8.min(max_aad),
                1 => 4.min(max_aad),
                _ => rng.random_range(0..=max_aad),
            };
            let mut p = Packet {
                key: rng.random_range(0..nkeys),
                nonce: rng.random(),
                aad: vec![0; aad_len],
                data: vec![0; len],
                tag: [0; TAG_LEN],
            };
            rng.fill_bytes(&mut p.aad);
            rng.fill_bytes(&mut p.data);
            p
        })
        .collect();
    (keys, pkts)
}

pub fn ops<'a>(keys: &'a [AeadKey], pkts: &'a mut [Packet]) -> Vec<AeadOp<'a>> {
    pkts.iter_mut()
        .map(|p| AeadOp {
            key: &keys[p.key],
            nonce: p.nonce,
            aad: &p.aad,
            data: &mut p.data,
            tag: &mut p.tag,
            ok: false,
        })
        .collect()
}

/// Seals with RustCrypto (the second, independent oracle).
pub fn rustcrypto_seal(key: &AeadKey, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
    let raw = key.raw_bytes();
    let tag = match key.cipher() {
        CipherKind::Aes128Gcm => aes_gcm::Aes128Gcm::new_from_slice(raw)
            .unwrap()
            .encrypt_in_place_detached(nonce.into(), aad, data),
        CipherKind::Aes256Gcm => aes_gcm::Aes256Gcm::new_from_slice(raw)
            .unwrap()
            .encrypt_in_place_detached(nonce.into(), aad, data),
        CipherKind::Chacha20Poly1305 => chacha20poly1305::ChaCha20Poly1305::new_from_slice(raw)
            .unwrap()
            .encrypt_in_place_detached(nonce.into(), aad, data),
    }
    .unwrap();
    tag.into()
}

/// Opens with RustCrypto; true when the tag verified.
pub fn rustcrypto_open(
    key: &AeadKey,
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8; 16],
) -> bool {
    let raw = key.raw_bytes();
    match key.cipher() {
        CipherKind::Aes128Gcm => aes_gcm::Aes128Gcm::new_from_slice(raw)
            .unwrap()
            .decrypt_in_place_detached(nonce.into(), aad, data, tag.into()),
        CipherKind::Aes256Gcm => aes_gcm::Aes256Gcm::new_from_slice(raw)
            .unwrap()
            .decrypt_in_place_detached(nonce.into(), aad, data, tag.into()),
        CipherKind::Chacha20Poly1305 => chacha20poly1305::ChaCha20Poly1305::new_from_slice(raw)
            .unwrap()
            .decrypt_in_place_detached(nonce.into(), aad, data, tag.into()),
    }
    .is_ok()
}
