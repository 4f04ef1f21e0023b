//! The host model: `kernels/dco_aead.h` compiled for the CPU (by `build.rs`) and driven lane by
//! lane exactly as the CUDA kernels drive it. It implements [`BatchAead`] so tests can compare
//! it with ring and RustCrypto on any machine, and benchmarks can report its speed (which says
//! nothing about GPU speed: it runs the GPU's work on one CPU core).

use std::collections::HashMap;
use std::sync::Mutex;

use crypto::{AeadOp, BatchAead};
use zeroize::Zeroize;

use crate::abi::{KEY_SLOT_BYTES, KeyReq};
use crate::layout::{AlignedBuf, CHUNK_SLACK, ops_fitting, pack, unpack};

unsafe extern "C" {
    fn dco_model_tables(sbox: *mut u8, te0: *mut u32);
    fn dco_model_key_setup(sbox: *const u8, te0: *const u32, req: *const KeyReq, out: *mut u8);
    #[allow(clippy::too_many_arguments)]
    fn dco_model_run(
        sbox: *const u8,
        te0: *const u32,
        open: i32,
        keys: *const u8,
        nkeys: u32,
        chunk: *mut u8,
        n: u32,
        status_off: u32,
        lanes: u32,
    );
}

/// One expanded key, laid out as `dco_key`.
#[repr(C, align(16))]
#[derive(Clone)]
pub(crate) struct KeySlot(pub(crate) [u8; KEY_SLOT_BYTES]);

impl Drop for KeySlot {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The AES S-box and T0 table, built by the same code the kernels run per block.
pub(crate) struct Tables {
    pub sbox: [u8; 256],
    pub te0: [u32; 256],
}

impl Tables {
    pub(crate) fn new() -> Self {
        let mut t = Self {
            sbox: [0; 256],
            te0: [0; 256],
        };
        // SAFETY: both pointers address arrays of exactly 256 elements, as the C side writes.
        unsafe { dco_model_tables(t.sbox.as_mut_ptr(), t.te0.as_mut_ptr()) };
        t
    }
}

/// Threads per packet for a batch whose longest payload is `max_len` bytes: short packets
/// waste fewer idle lanes with a narrower group.
pub fn lanes_for(max_len: usize) -> u32 {
    match max_len {
        0..=256 => 8,
        257..=768 => 16,
        _ => 32,
    }
}

const MODEL_KEY_CAP: usize = 4096;
const MODEL_CHUNK_OPS: usize = 1024;
const MODEL_CHUNK_BYTES: usize = 8 << 20;

struct ModelState {
    keys: Vec<KeySlot>,
    index: HashMap<u64, u32>,
    buf: AlignedBuf,
    slots: Vec<u32>,
}

/// The kernels' code run on the host, one lane after another.
pub struct HostModel {
    tables: Tables,
    lanes: Option<u32>,
    state: Mutex<ModelState>,
}

impl Default for HostModel {
    fn default() -> Self {
        Self::new()
    }
}

impl HostModel {
    /// A model that picks the lanes per packet the way the GPU backend does.
    pub fn new() -> Self {
        Self {
            tables: Tables::new(),
            lanes: None,
            state: Mutex::new(ModelState {
                keys: Vec::new(),
                index: HashMap::new(),
                buf: AlignedBuf::new(),
                slots: Vec::new(),
            }),
        }
    }

    /// A model that always uses `lanes` (8, 16 or 32) threads per packet.
    pub fn with_lanes(lanes: u32) -> Self {
        assert!(matches!(lanes, 8 | 16 | 32), "lanes must be 8, 16 or 32");
        Self {
            lanes: Some(lanes),
            ..Self::new()
        }
    }

    /// Expands a key into a `dco_key` record with the kernels' key-setup code.
    pub(crate) fn expand(&self, key: &crypto::AeadKey) -> KeySlot {
        let mut req = KeyReq::new(0, key);
        let mut slot = KeySlot([0; KEY_SLOT_BYTES]);
        // SAFETY: the tables are 256 entries each, `req` is a valid `dco_key_req`, and `slot`
        // has the size and alignment of `dco_key`.
        unsafe {
            dco_model_key_setup(
                self.tables.sbox.as_ptr(),
                self.tables.te0.as_ptr(),
                &req,
                slot.0.as_mut_ptr(),
            )
        };
        req.wipe();
        slot
    }

    fn run(&self, ops: &mut [AeadOp<'_>], open: bool) {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let st = &mut *guard;
        let mut rest = ops;
        while !rest.is_empty() {
            let window = rest.len().min(MODEL_CHUNK_OPS);
            let mut n = ops_fitting(&rest[..window], MODEL_CHUNK_BYTES);
            if n == 0 {
                // Larger than a whole chunk: give it a chunk of its own.
                n = 1;
            }
            let (chunk, tail) = rest.split_at_mut(n);
            self.run_chunk(st, chunk, open);
            rest = tail;
        }
    }

    fn run_chunk(&self, st: &mut ModelState, ops: &mut [AeadOp<'_>], open: bool) {
        if st.index.len() + ops.len() > MODEL_KEY_CAP {
            st.index.clear();
            st.keys.clear();
        }
        st.slots.clear();
        for op in ops.iter() {
            let id = op.key.id();
            let slot = match st.index.get(&id) {
                Some(&s) => s,
                None => {
                    let s = st.keys.len() as u32;
                    st.keys.push(self.expand(op.key));
                    st.index.insert(id, s);
                    s
                }
            };
            st.slots.push(slot);
        }
        let need: usize = ops
            .iter()
            .map(|o| crate::layout::op_bytes(o.aad.len(), o.data.len()))
            .sum::<usize>()
            + CHUNK_SLACK;
        let lanes = self
            .lanes
            .unwrap_or_else(|| lanes_for(ops.iter().map(|o| o.data.len()).max().unwrap_or(0)));
        let buf = st.buf.get(need);
        let p = pack(ops, &st.slots, open, buf);
        // SAFETY: `buf` holds the packed chunk (descriptors, AAD, tags, payloads, status words)
        // with every offset inside it, as `pack` guarantees; `keys` is a contiguous array of
        // `dco_key` records and every descriptor's slot indexes into it.
        unsafe {
            dco_model_run(
                self.tables.sbox.as_ptr(),
                self.tables.te0.as_ptr(),
                i32::from(open),
                st.keys.as_ptr().cast::<u8>(),
                st.keys.len() as u32,
                buf.as_mut_ptr(),
                p.n,
                p.status_off,
                lanes,
            )
        };
        unpack(ops, buf, &p, open);
    }
}

impl BatchAead for HostModel {
    fn name(&self) -> &str {
        "host-model"
    }

    fn seal(&self, ops: &mut [AeadOp<'_>]) {
        self.run(ops, false);
    }

    fn open(&self, ops: &mut [AeadOp<'_>]) {
        self.run(ops, true);
    }
}
