//! The CUDA backend: kernels compiled by NVRTC at start, expanded keys cached on the device,
//! pinned staging buffers, two streams per staging set for double buffering.
//!
//! A call to `seal`/`open` takes one staging set from a bounded pool (the queue between the
//! workers and the GPU: when all sets are busy the caller either waits or, with
//! `wait_when_busy = false`, runs the batch on the CPU and counts a fallback). The batch is cut
//! into chunks that fit half a staging buffer; chunk k is packed while chunk k-1 is copied and
//! computed on the other stream, so packing, PCIe copies and kernels overlap. Each chunk is one
//! copy in, one launch and one copy out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crypto::{AeadOp, BatchAead, CpuBatch};
use cudarc::driver::sys::{CUdevice_attribute, CUdeviceptr};
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg, result};

use crate::abi::{BLOCK_THREADS, KEY_SLOT_BYTES, KeyReq};
use crate::keycache::{KeyCache, Lookup};
use crate::layout::{Packed, ops_fitting, pack, unpack};
use crate::model::lanes_for;
use crate::probe::{NoGpu, probe};
use crate::status::GpuCounters;

/// Settings of the CUDA backend.
#[derive(Debug, Clone)]
pub struct GpuConfig {
    /// CUDA device ordinal.
    pub ordinal: usize,
    /// Expanded keys kept on the device (8448 bytes each).
    pub key_slots: u32,
    /// Bytes of one pinned staging buffer (two chunks of half this size are in flight).
    pub staging_bytes: usize,
    /// Staging sets: how many batches may be on the GPU at once.
    pub queue_depth: usize,
    /// When every staging set is busy: wait (true) or run the batch on the CPU (false).
    pub wait_when_busy: bool,
    /// NVRTC target; `None` picks the device's own compute capability.
    pub arch: Option<&'static str>,
}

impl Default for GpuConfig {
    fn default() -> Self {
        Self {
            ordinal: 0,
            key_slots: 4096,
            staging_bytes: 16 << 20,
            queue_depth: 4,
            wait_when_busy: false,
            arch: None,
        }
    }
}

/// Device memory owned by the backend.
struct DevBuf {
    ptr: CUdeviceptr,
    len: usize,
}

impl DevBuf {
    fn new(len: usize) -> Result<Self, result::DriverError> {
        // SAFETY: plain allocation in the current context; the memory is zeroed before use.
        let ptr = unsafe { result::malloc_sync(len) }?;
        let buf = Self { ptr, len };
        // SAFETY: `ptr` addresses `len` bytes we just allocated.
        unsafe { result::memset_d8_sync(ptr, 0, len) }?;
        Ok(buf)
    }
}

impl Drop for DevBuf {
    fn drop(&mut self) {
        // SAFETY: wipe then free our own allocation; the owner has synchronised its streams.
        unsafe {
            let _ = result::memset_d8_sync(self.ptr, 0, self.len);
            let _ = result::free_sync(self.ptr);
        }
    }
}

/// Page-locked host memory (not write-combined: results are read back from it).
struct PinnedBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is plain memory owned by this value; access goes through `&mut self`.
unsafe impl Send for PinnedBuf {}

impl PinnedBuf {
    fn new(len: usize) -> Result<Self, result::DriverError> {
        // SAFETY: cuMemHostAlloc with no flags; the pointer is checked and owned below.
        let ptr = unsafe { result::malloc_host(len, 0) }?.cast::<u8>();
        assert!(!ptr.is_null());
        // SAFETY: `ptr` addresses `len` writable bytes.
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
        Ok(Self { ptr, len })
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` addresses `len` bytes owned by `self`, borrowed mutably here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for PinnedBuf {
    fn drop(&mut self) {
        // SAFETY: wipe and free our own allocation; no copy is pending (streams synchronised).
        unsafe {
            std::ptr::write_bytes(self.ptr, 0, self.len);
            let _ = result::free_host(self.ptr.cast());
        }
    }
}

/// One staging set: a pinned buffer and a device buffer, each split in two halves, and a
/// stream per half.
struct Staging {
    host: PinnedBuf,
    dev: DevBuf,
    streams: [Arc<CudaStream>; 2],
    slots: Vec<u32>,
    pins: Vec<u32>,
}

struct Pool {
    free: Mutex<Vec<Staging>>,
    ready: Condvar,
}

impl Pool {
    fn take(&self, wait: bool) -> Option<Staging> {
        let mut free = lock(&self.free);
        loop {
            if let Some(s) = free.pop() {
                return Some(s);
            }
            if !wait {
                return None;
            }
            free = match self.ready.wait(free) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }

    fn put(&self, s: Staging) {
        lock(&self.free).push(s);
        self.ready.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

struct Keys {
    cache: KeyCache,
    reqs: Vec<KeyReq>,
}

/// Up to this many keys are expanded by one setup launch.
const SETUP_BATCH: usize = 1024;

/// A CUDA device running the batch AEAD kernels.
pub struct GpuBatch {
    name: String,
    batch_fn: CudaFunction,
    setup_fn: CudaFunction,
    setup_stream: Arc<CudaStream>,
    keys_dev: DevBuf,
    setup_dev: DevBuf,
    key_slots: u32,
    keys: Mutex<Keys>,
    pool: Pool,
    half_bytes: usize,
    wait_when_busy: bool,
    counters: Arc<GpuCounters>,
    failed: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Last, so that everything above is dropped (and wiped) while the context is alive.
    ctx: Arc<CudaContext>,
}

fn cuda(e: result::DriverError) -> NoGpu {
    NoGpu::Cuda(e.to_string())
}

/// A GPU failure in the middle of a batch (the batch is finished on the CPU).
#[derive(Debug, Clone, thiserror::Error)]
#[error("CUDA error: {0}")]
pub struct GpuError(pub String);

impl From<result::DriverError> for GpuError {
    fn from(e: result::DriverError) -> Self {
        GpuError(e.to_string())
    }
}

impl GpuBatch {
    /// Probes for a GPU, compiles the kernels, and allocates the key table and staging sets.
    /// Returns why not when there is no usable GPU; never panics on a machine without CUDA.
    pub fn new(cfg: &GpuConfig, counters: Arc<GpuCounters>) -> Result<Self, NoGpu> {
        let found = probe()?;
        if cfg.ordinal >= found.devices {
            return Err(NoGpu::NoSuchDevice {
                ordinal: cfg.ordinal,
                count: found.devices,
            });
        }
        let ordinal = cfg.ordinal;
        let ctx = match std::panic::catch_unwind(|| CudaContext::new(ordinal)) {
            Ok(r) => r.map_err(cuda)?,
            Err(p) => return Err(NoGpu::Panicked(crate::kernels::panic_text(&*p))),
        };
        // We order all work ourselves (one stream per chunk, explicit synchronisation).
        // SAFETY: no CudaSlice of this context is shared between streams by this crate.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx.compute_capability().map_err(cuda)?;
        let sms = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .unwrap_or(0);
        let arch = cfg.arch.unwrap_or(match (major, minor) {
            (m, _) if m >= 10 => "compute_90",
            (9, _) => "compute_90",
            (8, n) if n >= 9 => "compute_89",
            (8, n) if n >= 6 => "compute_86",
            (8, _) => "compute_80",
            (7, n) if n >= 5 => "compute_75",
            _ => "compute_70",
        });
        let ptx = crate::kernels::compile(arch).map_err(|e| NoGpu::Compile(e.to_string()))?;
        let module = ctx.load_module(ptx).map_err(cuda)?;
        let batch_fn = module.load_function("dco_aead_batch").map_err(cuda)?;
        let setup_fn = module.load_function("dco_key_setup_kernel").map_err(cuda)?;
        let setup_stream = ctx.new_stream().map_err(cuda)?;

        let key_slots = cfg.key_slots.max(1);
        let keys_dev = DevBuf::new(key_slots as usize * KEY_SLOT_BYTES).map_err(cuda)?;
        let setup_dev = DevBuf::new(SETUP_BATCH * std::mem::size_of::<KeyReq>()).map_err(cuda)?;
        let half_bytes = (cfg.staging_bytes.max(1 << 16) / 2) / 64 * 64;
        let mut sets = Vec::with_capacity(cfg.queue_depth.max(1));
        for _ in 0..cfg.queue_depth.max(1) {
            sets.push(Staging {
                host: PinnedBuf::new(2 * half_bytes).map_err(cuda)?,
                dev: DevBuf::new(2 * half_bytes).map_err(cuda)?,
                streams: [
                    ctx.new_stream().map_err(cuda)?,
                    ctx.new_stream().map_err(cuda)?,
                ],
                slots: Vec::new(),
                pins: Vec::new(),
            });
        }
        let dev_name = ctx.name().unwrap_or_else(|_| "unknown".into());
        Ok(Self {
            name: format!("cuda:{ordinal} {dev_name} (sm_{major}{minor}, {sms} SMs)"),
            ctx,
            batch_fn,
            setup_fn,
            setup_stream,
            keys_dev,
            setup_dev,
            key_slots,
            keys: Mutex::new(Keys {
                cache: KeyCache::new(key_slots),
                reqs: Vec::with_capacity(SETUP_BATCH),
            }),
            pool: Pool {
                free: Mutex::new(sets),
                ready: Condvar::new(),
            },
            half_bytes,
            wait_when_busy: cfg.wait_when_busy,
            counters,
            failed: AtomicBool::new(false),
            last_error: Mutex::new(None),
        })
    }

    /// The device, as shown by `ovpnctl show`.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// True after a CUDA error: the backend stops taking batches (they run on the CPU).
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// The CUDA error that disabled the backend, if any.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// Drops key `id` from the device (DEL_KEY): its slot is zeroed now, or as soon as the
    /// batches in flight that use it complete.
    pub fn forget_key(&self, id: u64) {
        let mut k = lock(&self.keys);
        if let Some(slot) = k.cache.forget(id) {
            self.wipe_slot(slot);
        }
    }

    fn wipe_slot(&self, slot: u32) {
        if self.ctx.bind_to_thread().is_err() {
            return;
        }
        let at = self.keys_dev.ptr + slot as u64 * KEY_SLOT_BYTES as u64;
        // SAFETY: the slot lies inside `keys_dev`; no batch in flight uses it (unpinned).
        let r = unsafe { result::memset_d8_sync(at, 0, KEY_SLOT_BYTES) };
        if r.is_ok() {
            GpuCounters::add(&self.counters.key_wipes, 1);
        }
    }

    /// Expands the queued key requests on the device and waits for it.
    fn flush_setup(&self, reqs: &mut Vec<KeyReq>) -> Result<(), GpuError> {
        if reqs.is_empty() {
            return Ok(());
        }
        let n = reqs.len() as u32;
        let stream = self.setup_stream.cu_stream();
        let res = (|| -> Result<(), GpuError> {
            // SAFETY: `setup_dev` holds SETUP_BATCH requests and `reqs` never exceeds that;
            // the copy is synchronised below before `reqs` is wiped or reused.
            unsafe { result::memcpy_htod_async(self.setup_dev.ptr, reqs.as_slice(), stream) }?;
            let cfg = LaunchConfig {
                grid_dim: (n.div_ceil(BLOCK_THREADS), 1, 1),
                block_dim: (BLOCK_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = self.setup_stream.launch_builder(&self.setup_fn);
            b.arg(&self.keys_dev.ptr)
                .arg(&self.key_slots)
                .arg(&self.setup_dev.ptr)
                .arg(&n);
            // SAFETY: the arguments match `dco_key_setup_kernel`'s signature; every request's
            // slot is below `key_slots` (the kernel checks again).
            unsafe { b.launch(cfg) }?;
            self.setup_stream.synchronize()?;
            Ok(())
        })();
        for r in reqs.iter_mut() {
            r.wipe();
        }
        GpuCounters::add(&self.counters.key_installs, u64::from(n));
        reqs.clear();
        res
    }

    /// Resolves every operation's key slot (`u32::MAX`: run it on the CPU), expanding new keys.
    fn resolve_keys(&self, ops: &[AeadOp<'_>], st: &mut Staging) -> Result<(), GpuError> {
        st.slots.clear();
        st.pins.clear();
        let mut guard = lock(&self.keys);
        let k = &mut *guard;
        k.cache.next_batch();
        let evictions_before = k.cache.evictions;
        let mut installed: Vec<u32> = Vec::new();
        let mut result = Ok(());
        for op in ops {
            let slot = match k.cache.lookup(op.key.id()) {
                Lookup::Hit(s) => s,
                Lookup::Install(s) => {
                    k.reqs.push(KeyReq::new(s, op.key));
                    installed.push(s);
                    if k.reqs.len() == SETUP_BATCH {
                        let mut reqs = std::mem::take(&mut k.reqs);
                        if let Err(e) = self.flush_setup(&mut reqs) {
                            result = Err(e);
                        }
                        k.reqs = reqs;
                    }
                    s
                }
                Lookup::Full => u32::MAX,
            };
            if slot != u32::MAX {
                st.pins.push(slot);
            }
            st.slots.push(slot);
        }
        let mut reqs = std::mem::take(&mut k.reqs);
        if let Err(e) = self.flush_setup(&mut reqs) {
            result = Err(e);
        }
        k.reqs = reqs;
        if result.is_err() {
            for s in installed {
                k.cache.abort_install(s);
            }
        }
        GpuCounters::add(
            &self.counters.key_evictions,
            k.cache.evictions - evictions_before,
        );
        result
    }

    fn release_keys(&self, st: &mut Staging) {
        let mut k = lock(&self.keys);
        let mut wipe = Vec::new();
        for &s in &st.pins {
            if k.cache.unpin(s) {
                wipe.push(s);
            }
        }
        drop(k);
        for s in wipe {
            self.wipe_slot(s);
        }
        st.pins.clear();
    }

    fn fail(&self, e: &GpuError) {
        GpuCounters::add(&self.counters.gpu_errors, 1);
        if !self.failed.swap(true, Ordering::Relaxed) {
            tracing::error!(error = %e, "GPU batch crypto failed; continuing on the CPU");
        }
        *lock(&self.last_error) = Some(e.0.clone());
    }

    /// Runs a batch. Operations the GPU cannot take (busy, key table full, too large, error)
    /// run on the CPU and are counted as fallbacks; the results are the same either way.
    fn run(&self, ops: &mut [AeadOp<'_>], open: bool) {
        if ops.is_empty() {
            return;
        }
        if self.has_failed() {
            self.cpu_fallback(ops, open);
            return;
        }
        let Some(mut st) = self.pool.take(self.wait_when_busy) else {
            self.cpu_fallback(ops, open);
            return;
        };
        let r = self.run_on(&mut st, ops, open);
        self.release_keys(&mut st);
        self.pool.put(st);
        if let Err(e) = r {
            self.fail(&e);
        }
    }

    fn cpu_fallback(&self, ops: &mut [AeadOp<'_>], open: bool) {
        GpuCounters::add(&self.counters.fallbacks, ops.len() as u64);
        if open {
            CpuBatch.open(ops)
        } else {
            CpuBatch.seal(ops)
        }
    }

    fn run_on(&self, st: &mut Staging, ops: &mut [AeadOp<'_>], open: bool) -> Result<(), GpuError> {
        self.ctx.bind_to_thread()?;
        if let Err(e) = self.resolve_keys(ops, st) {
            self.cpu_fallback(ops, open);
            return Err(e);
        }
        let slots = std::mem::take(&mut st.slots);
        let r = self.pipeline(st, &slots, ops, open);
        st.slots = slots;
        r
    }

    /// Chunks `ops` over the two halves of the staging set, overlapping the packing of one
    /// chunk with the copies and kernel of the other.
    fn pipeline(
        &self,
        st: &mut Staging,
        slots: &[u32],
        ops: &mut [AeadOp<'_>],
        open: bool,
    ) -> Result<(), GpuError> {
        let mut pending: [Option<(usize, usize, Packed)>; 2] = [None, None];
        let mut i = 0;
        let mut k = 0usize;
        let mut failure: Option<GpuError> = None;
        while i < ops.len() {
            // Operations the GPU will not take go to the CPU in place.
            if slots[i] == u32::MAX || ops_fitting(&ops[i..i + 1], self.half_bytes) == 0 {
                self.cpu_fallback(&mut ops[i..i + 1], open);
                i += 1;
                continue;
            }
            let mut end = i;
            while end < ops.len() && slots[end] != u32::MAX {
                end += 1;
            }
            let n = ops_fitting(&ops[i..end], self.half_bytes).max(1);
            let half = k % 2;
            // Wait for the chunk that used this half two rounds ago, and hand back its results.
            if let Some((a, b, p)) = pending[half].take()
                && let Err(e) = self.finish(st, half, &mut ops[a..b], &p, open)
            {
                failure.get_or_insert(e);
                self.cpu_fallback(&mut ops[a..b], open);
            }
            if failure.is_some() {
                self.cpu_fallback(&mut ops[i..i + n], open);
            } else {
                match self.launch(st, half, &ops[i..i + n], &slots[i..i + n], open) {
                    Ok(p) => pending[half] = Some((i, i + n, p)),
                    Err(e) => {
                        failure = Some(e);
                        self.cpu_fallback(&mut ops[i..i + n], open);
                    }
                }
            }
            i += n;
            k += 1;
        }
        for half in [k % 2, (k + 1) % 2] {
            if let Some((a, b, p)) = pending[half].take() {
                if failure.is_none() {
                    if let Err(e) = self.finish(st, half, &mut ops[a..b], &p, open) {
                        failure = Some(e);
                        self.cpu_fallback(&mut ops[a..b], open);
                    }
                } else {
                    let _ = st.streams[half].synchronize();
                    self.cpu_fallback(&mut ops[a..b], open);
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Packs one chunk into a half and queues copy in, kernel and copy out on its stream.
    fn launch(
        &self,
        st: &mut Staging,
        half: usize,
        ops: &[AeadOp<'_>],
        slots: &[u32],
        open: bool,
    ) -> Result<Packed, GpuError> {
        let hb = self.half_bytes;
        let host = &mut st.host.bytes()[half * hb..(half + 1) * hb];
        let p = pack(ops, slots, open, host);
        let dev = st.dev.ptr + (half * hb) as u64;
        let stream = &st.streams[half];
        let lanes = lanes_for(ops.iter().map(|o| o.data.len()).max().unwrap_or(0));
        let threads =
            p.n.checked_mul(lanes)
                .ok_or_else(|| GpuError("batch too large".into()))?;
        let cfg = LaunchConfig {
            grid_dim: (threads.div_ceil(BLOCK_THREADS), 1, 1),
            block_dim: (BLOCK_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let open_flag = u32::from(open);
        // SAFETY: the source range lies in this half of the pinned buffer and the destination in
        // the matching half of the device buffer; the host side is not touched again until
        // `finish` synchronises this stream.
        unsafe { result::memcpy_htod_async(dev, &host[p.copy_in()], stream.cu_stream()) }?;
        let mut b = stream.launch_builder(&self.batch_fn);
        b.arg(&self.keys_dev.ptr)
            .arg(&self.key_slots)
            .arg(&dev)
            .arg(&p.n)
            .arg(&p.status_off)
            .arg(&lanes)
            .arg(&open_flag);
        // SAFETY: the arguments match `dco_aead_batch`; every offset in the chunk lies inside
        // this half (`pack` checked it against the half's length) and every key slot is pinned.
        unsafe { b.launch(cfg) }?;
        let out = p.copy_out();
        let src = dev + out.start as u64;
        // SAFETY: as above, for the copy back into the same half.
        unsafe { result::memcpy_dtoh_async(&mut host[out], src, stream.cu_stream()) }?;
        Ok(p)
    }

    /// Waits for a half's chunk and copies its results into the operations.
    fn finish(
        &self,
        st: &mut Staging,
        half: usize,
        ops: &mut [AeadOp<'_>],
        p: &Packed,
        open: bool,
    ) -> Result<(), GpuError> {
        st.streams[half].synchronize()?;
        let hb = self.half_bytes;
        let host = &st.host.bytes()[half * hb..(half + 1) * hb];
        unpack(ops, host, p, open);
        Ok(())
    }

    /// Benchmark helper: packs `ops` once, copies them to the device once, then times `iters`
    /// kernel launches on device-resident data (no PCIe copies), returning the mean kernel
    /// time. The data is not copied back. `ops` must fit half a staging buffer.
    pub fn time_kernel_only(
        &self,
        ops: &[AeadOp<'_>],
        open: bool,
        iters: u32,
    ) -> Result<Duration, GpuError> {
        let mut st = self
            .pool
            .take(true)
            .ok_or_else(|| GpuError("no staging set".into()))?;
        let r = (|| {
            self.ctx.bind_to_thread()?;
            if ops_fitting(ops, self.half_bytes) != ops.len() {
                return Err(GpuError("batch larger than half a staging buffer".into()));
            }
            self.resolve_keys(ops, &mut st)?;
            if st.slots.contains(&u32::MAX) {
                return Err(GpuError("key table full".into()));
            }
            let hb = self.half_bytes;
            let slots = std::mem::take(&mut st.slots);
            let host = &mut st.host.bytes()[..hb];
            let p = pack(ops, &slots, open, host);
            st.slots = slots;
            let stream = &st.streams[0];
            // SAFETY: copy of the packed chunk into the first device half; synchronised below.
            unsafe {
                result::memcpy_htod_async(st.dev.ptr, &host[p.copy_in()], stream.cu_stream())
            }?;
            stream.synchronize()?;
            let lanes = lanes_for(ops.iter().map(|o| o.data.len()).max().unwrap_or(0));
            let cfg = LaunchConfig {
                grid_dim: ((p.n * lanes).div_ceil(BLOCK_THREADS), 1, 1),
                block_dim: (BLOCK_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // Seal is idempotent in cost; for open, re-running on decrypted data still does the
            // full work (the tags just fail), which is what is being timed.
            let open_flag = u32::from(open);
            let start = std::time::Instant::now();
            for _ in 0..iters.max(1) {
                let mut b = stream.launch_builder(&self.batch_fn);
                b.arg(&self.keys_dev.ptr)
                    .arg(&self.key_slots)
                    .arg(&st.dev.ptr)
                    .arg(&p.n)
                    .arg(&p.status_off)
                    .arg(&lanes)
                    .arg(&open_flag);
                // SAFETY: as in `launch`.
                unsafe { b.launch(cfg) }?;
            }
            stream.synchronize()?;
            Ok(start.elapsed() / iters.max(1))
        })();
        self.release_keys(&mut st);
        self.pool.put(st);
        r
    }
}

impl Drop for GpuBatch {
    fn drop(&mut self) {
        // Make sure nothing is in flight before the buffers (and key table) are wiped and freed.
        let _ = self.ctx.bind_to_thread();
        let _ = self.ctx.synchronize();
    }
}

impl BatchAead for GpuBatch {
    fn name(&self) -> &str {
        &self.name
    }

    fn seal(&self, ops: &mut [AeadOp<'_>]) {
        self.run(ops, false);
    }

    fn open(&self, ops: &mut [AeadOp<'_>]) {
        self.run(ops, true);
    }

    fn forget_key(&self, key_id: u64) {
        GpuBatch::forget_key(self, key_id)
    }
}
