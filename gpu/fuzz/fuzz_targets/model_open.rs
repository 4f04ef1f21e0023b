//! Differential fuzzing of the kernels' code (host model) against ring on untrusted input:
//! arbitrary ciphertexts, tags, AAD and nonces must get the same verdict and, when accepted,
//! the same plaintext; sealing arbitrary input must give the same bytes.
#![no_main]

use crypto::{AeadKey, AeadOp, BatchAead, CipherKind};
use gpu::HostModel;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn models() -> &'static [HostModel; 3] {
    static M: OnceLock<[HostModel; 3]> = OnceLock::new();
    M.get_or_init(|| [HostModel::with_lanes(8), HostModel::with_lanes(16), HostModel::with_lanes(32)])
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 32 + 12 + 16 + 2 {
        return;
    }
    let (head, rest) = input.split_at(32 + 12 + 16 + 2);
    let cipher = CipherKind::ALL[head[0] as usize % 3];
    let model = &models()[head[1] as usize % 3];
    let key = AeadKey::new(cipher, &head[2..2 + cipher.key_len()]).unwrap();
    let nonce: [u8; 12] = head[34..46].try_into().unwrap();
    let tag: [u8; 16] = head[46..62].try_into().unwrap();
    let aad_len = (rest.first().copied().unwrap_or(0) as usize).min(rest.len().saturating_sub(1));
    let aad = &rest[1.min(rest.len())..1.min(rest.len()) + aad_len];
    let body = &rest[(1 + aad_len).min(rest.len())..];

    // Open untrusted bytes.
    let mut m_data = body.to_vec();
    let mut m_tag = tag;
    let mut ops = [AeadOp { key: &key, nonce, aad, data: &mut m_data, tag: &mut m_tag, ok: false }];
    model.open(&mut ops);
    let m_ok = ops[0].ok;
    let mut r_data = body.to_vec();
    let r_ok = key.open_in_place(nonce, aad, &mut r_data, &tag).is_ok();
    assert_eq!(m_ok, r_ok);
    if m_ok {
        assert_eq!(m_data, r_data);
    } else {
        assert_eq!(m_data, body);
    }

    // Seal the same bytes; then open what was sealed.
    let mut s_data = body.to_vec();
    let mut s_tag = [0u8; 16];
    let mut ops = [AeadOp { key: &key, nonce, aad, data: &mut s_data, tag: &mut s_tag, ok: false }];
    model.seal(&mut ops);
    let mut r_data = body.to_vec();
    let r_tag = key.seal_in_place(nonce, aad, &mut r_data).unwrap();
    assert_eq!(s_data, r_data);
    assert_eq!(s_tag, r_tag);
    let mut ops = [AeadOp { key: &key, nonce, aad, data: &mut s_data, tag: &mut s_tag, ok: false }];
    model.open(&mut ops);
    assert!(ops[0].ok);
    assert_eq!(s_data, body);
});
