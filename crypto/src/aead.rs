//! The one small AEAD seam under the data channel. ring carries it: it measured fastest here
//! at MTU sizes (crates-survey.md §1: AES-256-GCM ~5.1 GB/s, ChaCha20-Poly1305 ~1.9 GB/s per
//! core at 1420 B). Tests use RustCrypto as an independent oracle.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroize;

use crate::cipher::CipherKind;
use crate::error::DataError;

/// AEAD tag length: always 16 for the data channel.
pub const TAG_LEN: usize = 16;
/// AEAD nonce length: `packet_id(4) || implicit_iv(8)`.
pub const NONCE_LEN: usize = 12;

static NEXT_KEY_ID: AtomicU64 = AtomicU64::new(1);

/// An installed AEAD key. The raw bytes are kept (zeroised on drop) so a batch backend (GPU)
/// can expand and cache its own schedule under [`AeadKey::id`]; the prepared ring key is
/// wiped on drop as well.
pub struct AeadKey {
    id: u64,
    cipher: CipherKind,
    raw: [u8; 32],
    ring: ManuallyDrop<LessSafeKey>,
}

impl AeadKey {
    /// `key` must be exactly `cipher.key_len()` bytes.
    pub fn new(cipher: CipherKind, key: &[u8]) -> Result<Self, crate::keys::KeyError> {
        if key.len() != cipher.key_len() {
            return Err(crate::keys::KeyError::KeyLength {
                cipher,
                len: key.len(),
            });
        }
        let alg = match cipher {
            CipherKind::Aes128Gcm => &aead::AES_128_GCM,
            CipherKind::Aes256Gcm => &aead::AES_256_GCM,
            CipherKind::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        };
        let unbound = UnboundKey::new(alg, key).map_err(|_| crate::keys::KeyError::KeyLength {
            cipher,
            len: key.len(),
        })?;
        let mut raw = [0u8; 32];
        raw[..key.len()].copy_from_slice(key);
        Ok(Self {
            id: NEXT_KEY_ID.fetch_add(1, Ordering::Relaxed),
            cipher,
            raw,
            ring: ManuallyDrop::new(LessSafeKey::new(unbound)),
        })
    }

    /// A process-unique id, stable for the key's lifetime (for backend-side key caches).
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn cipher(&self) -> CipherKind {
        self.cipher
    }

    /// The raw key bytes, for batch backends that expand their own schedule. Never log them.
    pub fn raw_bytes(&self) -> &[u8] {
        &self.raw[..self.cipher.key_len()]
    }

    /// Encrypts `data` in place and returns the tag.
    #[inline]
    pub fn seal_in_place(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN], DataError> {
        // ring fails only when the input exceeds the cipher's maximum length.
        let tag = self
            .ring
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), data)
            .map_err(|_| DataError::TooLong { len: data.len() })?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Verifies `tag` and decrypts `data` in place. On failure `data` is left scrambled and
    /// must be discarded.
    #[inline]
    pub fn open_in_place(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), DataError> {
        self.ring
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                aead::Tag::from(*tag),
                data,
                0..,
            )
            .map(|_| ())
            .map_err(|_| DataError::TagMismatch)
    }
}

impl AeadKey {
    /// Byte ranges inside an `AeadKey` that hold secrets (the raw key, ring's schedule), for
    /// the wipe-on-drop tests (`tests/secrets.rs`). Not an API.
    #[doc(hidden)]
    pub fn secret_ranges() -> [std::ops::Range<usize>; 2] {
        let raw = std::mem::offset_of!(AeadKey, raw);
        let ring = std::mem::offset_of!(AeadKey, ring);
        [
            raw..raw + 32,
            ring..ring + std::mem::size_of::<LessSafeKey>(),
        ]
    }
}

impl Drop for AeadKey {
    fn drop(&mut self) {
        self.raw.zeroize();
        // SAFETY: `LessSafeKey` (ring 0.17) is plain data: AES/GHASH or ChaCha key schedules
        // in fixed arrays and a `&'static Algorithm`, with no `Drop` impl and no heap
        // pointers. It sits in a `ManuallyDrop` that is never read or dropped after this
        // point, so overwriting its bytes cannot be observed as an invalid value; volatile
        // writes keep the compiler from eliding the wipe.
        unsafe {
            let p = (&mut *self.ring as *mut LessSafeKey).cast::<u8>();
            for i in 0..std::mem::size_of::<LessSafeKey>() {
                std::ptr::write_volatile(p.add(i), 0);
            }
        }
    }
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AeadKey")
            .field("id", &self.id)
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}
