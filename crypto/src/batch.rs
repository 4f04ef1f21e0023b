//! The batch seam: seal or open many packets, each with its own key, nonce, AAD and buffer,
//! in one call. The CPU backend is a loop over ring; the GPU crate implements the same trait.

use crate::aead::{AeadKey, NONCE_LEN, TAG_LEN};

/// One AEAD operation of a batch. For `seal`, `data` holds plaintext on entry and ciphertext
/// on return and `tag` is written; for `open`, `data` holds ciphertext, `tag` is read, and
/// `ok` tells whether the tag verified (on failure `data` must be discarded).
pub struct AeadOp<'a> {
    pub key: &'a AeadKey,
    pub nonce: [u8; NONCE_LEN],
    pub aad: &'a [u8],
    pub data: &'a mut [u8],
    pub tag: &'a mut [u8; TAG_LEN],
    pub ok: bool,
}

/// A backend that seals/opens batches. Results are per operation; order is preserved.
pub trait BatchAead: Send + Sync {
    /// A short name for `ovpnctl show` ("cpu-ring", "cuda:0 H100", ...).
    fn name(&self) -> &str;
    fn seal(&self, ops: &mut [AeadOp<'_>]);
    fn open(&self, ops: &mut [AeadOp<'_>]);
    /// The key with this [`AeadKey::id`] is gone (DEL_KEY, peer deleted): a backend that
    /// caches expanded keys drops and wipes its copy.
    fn forget_key(&self, _key_id: u64) {}
}

/// The CPU backend: ring (AES-NI/VAES/CLMUL, or ChaCha20-Poly1305 with AVX2), one packet at
/// a time on the calling core.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBatch;

impl BatchAead for CpuBatch {
    fn name(&self) -> &str {
        "cpu-ring"
    }

    fn seal(&self, ops: &mut [AeadOp<'_>]) {
        for op in ops {
            match op.key.seal_in_place(op.nonce, op.aad, op.data) {
                Ok(tag) => {
                    *op.tag = tag;
                    op.ok = true;
                }
                Err(_) => op.ok = false,
            }
        }
    }

    fn open(&self, ops: &mut [AeadOp<'_>]) {
        for op in ops {
            op.ok = op
                .key
                .open_in_place(op.nonce, op.aad, op.data, op.tag)
                .is_ok();
        }
    }
}
