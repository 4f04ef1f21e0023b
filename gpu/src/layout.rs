//! How a batch is laid out in one contiguous staging buffer, so that it crosses PCIe as one
//! copy in and one copy out:
//!
//! ```text
//! [descriptors 48 B x n][AAD, each padded to 16][tags 16 B x n][payloads, each padded to 64][status 4 B x n]
//! |<------------------------------- copied in -------------------------------->|
//!                                             |<-------------- copied out -------------------------->|
//! ```
//!
//! The GPU path and the host model use the same packer, so the model tests check it too.

use crypto::{AeadOp, TAG_LEN};

use crate::abi::{Desc, ST_OK, nonce_words};

const DESC_BYTES: usize = std::mem::size_of::<Desc>();

fn pad16(n: usize) -> usize {
    n.div_ceil(16) * 16
}

fn pad64(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// Bytes one operation adds to a chunk.
pub(crate) fn op_bytes(aad_len: usize, len: usize) -> usize {
    DESC_BYTES + pad16(aad_len) + TAG_LEN + pad64(len) + 4
}

/// Fixed slack per chunk (alignment of the payload area).
pub(crate) const CHUNK_SLACK: usize = 64;

/// How many operations from the start of `ops` fit into `capacity` bytes (may be 0).
pub(crate) fn ops_fitting(ops: &[AeadOp<'_>], capacity: usize) -> usize {
    let mut used = CHUNK_SLACK;
    for (i, op) in ops.iter().enumerate() {
        used += op_bytes(op.aad.len(), op.data.len());
        if used > capacity {
            return i;
        }
    }
    ops.len()
}

/// Where the regions of a packed chunk are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Packed {
    pub n: u32,
    pub tags_off: u32,
    pub status_off: u32,
    pub total: u32,
}

impl Packed {
    /// Bytes to copy to the device: everything before the status words.
    pub fn copy_in(&self) -> std::ops::Range<usize> {
        0..self.status_off as usize
    }

    /// Bytes to copy back: tags, payloads and status words.
    pub fn copy_out(&self) -> std::ops::Range<usize> {
        self.tags_off as usize..self.total as usize
    }
}

/// Packs `ops` (all of which must fit: see [`ops_fitting`]) into `buf`. `slots[i]` is the
/// device key slot of `ops[i]`. For `open` the received tags are packed too.
pub(crate) fn pack(ops: &[AeadOp<'_>], slots: &[u32], open: bool, buf: &mut [u8]) -> Packed {
    debug_assert_eq!(ops.len(), slots.len());
    let n = ops.len();
    let aad_base = n * DESC_BYTES;
    let tags_off = aad_base + ops.iter().map(|o| pad16(o.aad.len())).sum::<usize>();
    let data_base = (tags_off + n * TAG_LEN).div_ceil(64) * 64;
    let status_off = data_base + ops.iter().map(|o| pad64(o.data.len())).sum::<usize>();
    let total = status_off + 4 * n;
    assert!(
        total <= buf.len() && u32::try_from(total).is_ok(),
        "chunk of {total} bytes does not fit the staging buffer"
    );

    let (mut aad_at, mut data_at) = (aad_base, data_base);
    for (i, (op, &slot)) in ops.iter().zip(slots).enumerate() {
        let tag_at = tags_off + i * TAG_LEN;
        let desc = Desc {
            key_slot: slot,
            len: op.data.len() as u32,
            aad_len: op.aad.len() as u32,
            data_off: data_at as u32,
            aad_off: aad_at as u32,
            tag_off: tag_at as u32,
            nonce: nonce_words(&op.nonce),
            reserved: [0; 3],
        };
        write_desc(&mut buf[i * DESC_BYTES..(i + 1) * DESC_BYTES], &desc);
        buf[aad_at..aad_at + op.aad.len()].copy_from_slice(op.aad);
        buf[data_at..data_at + op.data.len()].copy_from_slice(op.data);
        if open {
            buf[tag_at..tag_at + TAG_LEN].copy_from_slice(&op.tag[..]);
        }
        aad_at += pad16(op.aad.len());
        data_at += pad64(op.data.len());
    }
    Packed {
        n: n as u32,
        tags_off: tags_off as u32,
        status_off: status_off as u32,
        total: total as u32,
    }
}

/// Copies results back into `ops` and sets `ok`. A failed open leaves `data` as it was (the
/// ciphertext), so no unauthenticated plaintext ever reaches the caller. Returns how many
/// operations succeeded.
pub(crate) fn unpack(ops: &mut [AeadOp<'_>], buf: &[u8], p: &Packed, open: bool) -> usize {
    let mut ok_count = 0;
    let mut data_at = (p.tags_off as usize + ops.len() * TAG_LEN).div_ceil(64) * 64;
    for (i, op) in ops.iter_mut().enumerate() {
        let s = p.status_off as usize + 4 * i;
        let status = u32::from_le_bytes([buf[s], buf[s + 1], buf[s + 2], buf[s + 3]]);
        op.ok = status == ST_OK;
        let len = op.data.len();
        if op.ok {
            ok_count += 1;
            op.data.copy_from_slice(&buf[data_at..data_at + len]);
            if !open {
                let t = p.tags_off as usize + i * TAG_LEN;
                op.tag.copy_from_slice(&buf[t..t + TAG_LEN]);
            }
        }
        data_at += pad64(len);
    }
    ok_count
}

fn write_desc(out: &mut [u8], d: &Desc) {
    let words = [
        d.key_slot,
        d.len,
        d.aad_len,
        d.data_off,
        d.aad_off,
        d.tag_off,
        d.nonce[0],
        d.nonce[1],
        d.nonce[2],
        d.reserved[0],
        d.reserved[1],
        d.reserved[2],
    ];
    for (c, w) in out.chunks_exact_mut(4).zip(words) {
        c.copy_from_slice(&w.to_le_bytes());
    }
}

/// A heap buffer aligned to 64 bytes (the host model's staging buffer).
pub(crate) struct AlignedBuf {
    lines: Vec<[u64; 8]>,
}

impl AlignedBuf {
    pub(crate) fn new() -> Self {
        Self { lines: Vec::new() }
    }

    /// A zeroed-or-reused buffer of at least `len` bytes.
    pub(crate) fn get(&mut self, len: usize) -> &mut [u8] {
        let lines = len.div_ceil(64);
        if self.lines.len() < lines {
            self.lines.resize(lines, [0; 8]);
        }
        let bytes: &mut [u8] = bytemuck_lines(&mut self.lines);
        &mut bytes[..len]
    }
}

fn bytemuck_lines(lines: &mut [[u64; 8]]) -> &mut [u8] {
    let len = std::mem::size_of_val(lines);
    // SAFETY: `[u64; 8]` has no padding and every byte pattern is a valid `u8`; the slice
    // covers exactly the memory of `lines`, which stays mutably borrowed for the result's life.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u8>(), len) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto::{AeadKey, CipherKind};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pack_then_unpack_round_trips(
            items in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40),
                 proptest::collection::vec(any::<u8>(), 0..300),
                 any::<[u8; 12]>(), any::<[u8; 16]>()), 1..20),
            open in any::<bool>(),
        ) {
            let key = AeadKey::new(CipherKind::Aes128Gcm, &[1u8; 16]).unwrap();
            let mut store: Vec<_> = items.clone();
            let mut ops: Vec<AeadOp<'_>> = store
                .iter_mut()
                .map(|(aad, data, nonce, tag)| AeadOp {
                    key: &key, nonce: *nonce, aad: aad.as_slice(), data: data.as_mut_slice(),
                    tag, ok: false,
                })
                .collect();
            let need: usize = ops.iter().map(|o| op_bytes(o.aad.len(), o.data.len())).sum::<usize>()
                + CHUNK_SLACK;
            prop_assert_eq!(ops_fitting(&ops, need), ops.len());
            prop_assert_eq!(ops_fitting(&ops, need - 1), ops.len() - 1);
            let slots: Vec<u32> = (0..ops.len() as u32).collect();
            let mut buf = AlignedBuf::new();
            let b = buf.get(need);
            let p = pack(&ops, &slots, open, b);
            prop_assert!(p.total as usize <= need);
            // Every payload region is 64-aligned and inside the chunk; descriptors read back.
            for (i, op) in ops.iter().enumerate() {
                let w = |k: usize| u32::from_le_bytes(b[i * 48 + 4 * k..i * 48 + 4 * k + 4].try_into().unwrap());
                prop_assert_eq!(w(0), i as u32);
                prop_assert_eq!(w(1) as usize, op.data.len());
                prop_assert_eq!(w(2) as usize, op.aad.len());
                let (d, a, t) = (w(3) as usize, w(4) as usize, w(5) as usize);
                prop_assert_eq!(d % 64, 0);
                prop_assert_eq!(a % 16, 0);
                prop_assert_eq!(&b[d..d + op.data.len()], &*op.data);
                prop_assert_eq!(&b[a..a + op.aad.len()], op.aad);
                if open { prop_assert_eq!(&b[t..t + 16], &op.tag[..]); }
                prop_assert!(d + op.data.len() <= p.status_off as usize);
            }
            // Mark every other op as OK, scramble payloads, and check what comes back.
            for i in 0..ops.len() {
                let s = p.status_off as usize + 4 * i;
                let st: u32 = if i % 2 == 0 { ST_OK } else { 2 };
                b[s..s + 4].copy_from_slice(&st.to_le_bytes());
            }
            let d0: Vec<usize> = (0..ops.len()).map(|i| u32::from_le_bytes(b[i * 48 + 12..i * 48 + 16].try_into().unwrap()) as usize).collect();
            for (i, op) in ops.iter().enumerate() {
                for x in &mut b[d0[i]..d0[i] + op.data.len()] { *x ^= 0x5a; }
            }
            let before: Vec<Vec<u8>> = ops.iter().map(|o| o.data.to_vec()).collect();
            let okc = unpack(&mut ops, b, &p, open);
            prop_assert_eq!(okc, ops.len().div_ceil(2));
            for (i, op) in ops.iter().enumerate() {
                prop_assert_eq!(op.ok, i % 2 == 0);
                let expect: Vec<u8> = if op.ok { before[i].iter().map(|x| x ^ 0x5a).collect() } else { before[i].clone() };
                prop_assert_eq!(&*op.data, &expect[..]);
            }
        }
    }
}
