//! The binary interface shared with `kernels/dco_aead.h`: descriptor and key-request records,
//! cipher and status codes, and the size of a device key slot. Sizes are checked at compile
//! time so a change on one side cannot silently desynchronise the other.

use crypto::{CipherKind, NONCE_LEN};

pub(crate) const CIPHER_AES128_GCM: u32 = 1;
pub(crate) const CIPHER_AES256_GCM: u32 = 2;
pub(crate) const CIPHER_CHACHA20_POLY1305: u32 = 3;

/// Status word the kernels write for an operation that succeeded (2: bad tag, 3: bad key).
pub(crate) const ST_OK: u32 = 1;

/// `sizeof(dco_key)`: one expanded key on the device (AES round keys + 32 GHASH tables).
pub const KEY_SLOT_BYTES: usize = 8448;

/// Threads per block of both kernels (the AES tables are built one entry per thread).
pub(crate) const BLOCK_THREADS: u32 = 256;

pub(crate) fn cipher_code(c: CipherKind) -> u32 {
    match c {
        CipherKind::Aes128Gcm => CIPHER_AES128_GCM,
        CipherKind::Aes256Gcm => CIPHER_AES256_GCM,
        CipherKind::Chacha20Poly1305 => CIPHER_CHACHA20_POLY1305,
    }
}

/// `dco_desc`: one operation of a chunk. Offsets are bytes from the chunk start.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Desc {
    pub key_slot: u32,
    pub len: u32,
    pub aad_len: u32,
    pub data_off: u32,
    pub aad_off: u32,
    pub tag_off: u32,
    pub nonce: [u32; 3],
    pub reserved: [u32; 3],
}

/// `dco_key_req`: expand `raw` for `cipher` into key slot `slot`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KeyReq {
    pub slot: u32,
    pub cipher: u32,
    pub pad: [u32; 2],
    pub raw: [u32; 8],
}

impl KeyReq {
    pub(crate) fn new(slot: u32, key: &crypto::AeadKey) -> Self {
        let mut raw = [0u32; 8];
        for (w, c) in raw.iter_mut().zip(key.raw_bytes().chunks(4)) {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            *w = u32::from_le_bytes(b);
        }
        Self {
            slot,
            cipher: cipher_code(key.cipher()),
            pad: [0; 2],
            raw,
        }
    }

    /// Wipes the raw key words.
    pub(crate) fn wipe(&mut self) {
        for w in self.raw.iter_mut() {
            // SAFETY: `w` is a valid, aligned, exclusive reference; the volatile write only
            // keeps the compiler from dropping a store it considers dead.
            unsafe { std::ptr::write_volatile(w, 0) };
        }
    }
}

pub(crate) fn nonce_words(nonce: &[u8; NONCE_LEN]) -> [u32; 3] {
    [
        u32::from_le_bytes([nonce[0], nonce[1], nonce[2], nonce[3]]),
        u32::from_le_bytes([nonce[4], nonce[5], nonce[6], nonce[7]]),
        u32::from_le_bytes([nonce[8], nonce[9], nonce[10], nonce[11]]),
    ]
}

const _: () = assert!(std::mem::size_of::<Desc>() == 48);
const _: () = assert!(std::mem::size_of::<KeyReq>() == 48);
const _: () = assert!(KEY_SLOT_BYTES == 16 + 240 + 32 * 16 * 16);
