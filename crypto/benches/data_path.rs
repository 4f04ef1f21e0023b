//! Seal/open cost of the data path against the bare AEAD it wraps.
//!
//! For each cipher and payload size (64, 512, 1420, 9000 bytes) and each direction:
//! - `ring_raw`: ring's `LessSafeKey::seal_in_place_separate_tag` /
//!   `open_in_place_separate_tag` on the same buffers, nonces and AAD, nothing else;
//! - `single`: `EncryptKey::seal_v2` / `DecryptKey::open` one packet at a time (framing,
//!   shared atomic packet-id counter, replay window);
//! - `batch32`, `batch64`: `reserve` + `prepare_v2` (or `prepare_open`) per packet, one
//!   `CpuBatch` call per batch, `finish_open` per packet; the ops live on the stack;
//! - `rustcrypto_raw` (seal only): RustCrypto `aes-gcm` / `chacha20poly1305`, for the library
//!   choice.
//!
//! Every iteration handles 64 packets in 64 separate buffers (a receive batch), so all
//! variants report time per 64 packets. Opening needs fresh ciphertext and unused packet-ids:
//! the buffers are restored and the receiver's window is renewed outside the timed part.
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: the
//! build machine is shared, and CPU time does not count the slices other processes take.
//! Where the bench reads the clock per iteration (open), the clock's own cost, measured at
//! start-up, is subtracted.
//!
//! Run: `cargo bench -p dco-crypto --bench data_path -- --warm-up-time 1 --measurement-time 3`
//! and `python3 crypto/scripts/bench_ratios.py` for the ratio table (crypto/BENCHMARKS.md).

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crypto::{
    AeadOp, BatchAead, CipherKind, CpuBatch, DATA_V2_OVERHEAD, DecryptKey, DirectionalKey,
    EncryptKey, Key2, KeyId, PeerId, Role,
};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

/// CPU time of the calling thread.
fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID always exists on
    // Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The cost of one start/stop pair of [`thread_cpu_now`] (median of many).
fn clock_overhead() -> Duration {
    static O: OnceLock<Duration> = OnceLock::new();
    *O.get_or_init(|| {
        let mut v: Vec<Duration> = (0..20_001)
            .map(|_| {
                let a = thread_cpu_now();
                thread_cpu_now() - a
            })
            .collect();
        v.sort();
        v[v.len() / 2]
    })
}

/// Criterion measurement in thread CPU time.
struct ThreadCpu;

static WALL: WallTime = WallTime;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, i: Duration) -> Duration {
        thread_cpu_now().saturating_sub(i)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

type C = Criterion<ThreadCpu>;

const CHUNK: usize = 64;
const SIZES: [usize; 4] = [64, 512, 1420, 9000];
const PEER: u32 = 0x000102;

fn keys(c: CipherKind) -> (DirectionalKey, DirectionalKey) {
    let mut b = [0u8; 256];
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(13).wrapping_add(1);
    }
    let k = Key2::from_bytes(b);
    let (enc, _) = k.data_keys(Role::Client, c).unwrap();
    let (_, dec) = k.data_keys(Role::Server, c).unwrap();
    (enc, dec)
}

fn ring_key(c: CipherKind, key: &[u8]) -> LessSafeKey {
    let alg = match c {
        CipherKind::Aes128Gcm => &aead::AES_128_GCM,
        CipherKind::Aes256Gcm => &aead::AES_256_GCM,
        CipherKind::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
    };
    LessSafeKey::new(UnboundKey::new(alg, key).unwrap())
}

fn nonce(pid: u32, iv: &[u8; 8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&pid.to_be_bytes());
    n[4..].copy_from_slice(iv);
    n
}

fn buffers(size: usize) -> Vec<Vec<u8>> {
    (0..CHUNK)
        .map(|i| {
            let mut b = vec![0u8; DATA_V2_OVERHEAD + size];
            for (j, x) in b[DATA_V2_OVERHEAD..].iter_mut().enumerate() {
                *x = (i + j) as u8;
            }
            b[DATA_V2_OVERHEAD] = 0x45; // looks like IPv4
            b
        })
        .collect()
}

/// Seals a chunk in batches of N through the batch seam, with the ops on the stack.
fn seal_batched<const N: usize>(tx: &EncryptKey, bufs: &mut [Vec<u8>], size: usize) {
    let peer = PeerId::new(PEER).unwrap();
    for chunk in bufs.chunks_mut(N) {
        let r = tx.reserve(N as u32).unwrap();
        let mut ids = r.ids.clone();
        let mut it = chunk.iter_mut();
        let mut ops: [AeadOp<'_>; N] = std::array::from_fn(|_| {
            let id = ids.next().unwrap() as u32;
            tx.prepare_v2(peer, id, it.next().unwrap(), size).unwrap()
        });
        CpuBatch.seal(&mut ops);
        debug_assert!(ops.iter().all(|o| o.ok));
    }
}

/// Opens a chunk in batches of N: prepare_open, one CpuBatch call, finish_open.
fn open_batched<const N: usize>(rx: &DecryptKey, bufs: &mut [Vec<u8>]) -> usize {
    let mut opened = 0;
    for chunk in bufs.chunks_mut(N) {
        let mut it = chunk.iter_mut();
        let mut headers = [None; N];
        let mut lens = [0usize; N];
        let mut ops: [AeadOp<'_>; N] = std::array::from_fn(|i| {
            let b = it.next().unwrap();
            lens[i] = b.len();
            let (op, h) = rx.prepare_open(b).unwrap();
            headers[i] = Some(h);
            op
        });
        CpuBatch.open(&mut ops);
        for i in 0..N {
            let h = headers[i].as_ref().unwrap();
            let r = rx.finish_open(h, lens[i], ops[i].ok).unwrap();
            opened += r.len();
        }
    }
    opened
}

fn bench_seal(c: &mut C, cipher: CipherKind, size: usize) {
    let (enc, _) = keys(cipher);
    let mut g = c.benchmark_group(format!("seal/{cipher}/{size}"));
    g.throughput(Throughput::Elements(CHUNK as u64));
    let mut bufs = buffers(size);

    let raw = ring_key(cipher, enc.key());
    let iv = *enc.implicit_iv();
    let mut pid = 0u32;
    g.bench_function("ring_raw", |b| {
        b.iter(|| {
            for buf in bufs.iter_mut() {
                pid = pid.wrapping_add(1);
                let (head, data) = buf.split_at_mut(DATA_V2_OVERHEAD);
                let tag = raw
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce(pid, &iv)),
                        Aad::from(&head[..8]),
                        data,
                    )
                    .unwrap();
                head[8..24].copy_from_slice(tag.as_ref());
            }
        })
    });

    let tx = EncryptKey::new(KeyId::new(0).unwrap(), &enc).unwrap();
    let peer = PeerId::new(PEER).unwrap();
    g.bench_function("single", |b| {
        b.iter(|| {
            for buf in bufs.iter_mut() {
                black_box(tx.seal_v2(peer, buf, size).unwrap());
            }
        })
    });
    let tx = EncryptKey::new(KeyId::new(0).unwrap(), &enc).unwrap();
    g.bench_function("batch32", |b| {
        b.iter(|| seal_batched::<32>(&tx, &mut bufs, size))
    });
    let tx = EncryptKey::new(KeyId::new(0).unwrap(), &enc).unwrap();
    g.bench_function("batch64", |b| {
        b.iter(|| seal_batched::<64>(&tx, &mut bufs, size))
    });

    let mut pid = 0u32;
    macro_rules! rustcrypto {
        ($ty:ty) => {{
            let k = <$ty>::new_from_slice(enc.key()).unwrap();
            g.bench_function("rustcrypto_raw", |b| {
                b.iter(|| {
                    for buf in bufs.iter_mut() {
                        pid = pid.wrapping_add(1);
                        let (head, data) = buf.split_at_mut(DATA_V2_OVERHEAD);
                        let n = nonce(pid, &iv);
                        let tag = k
                            .encrypt_in_place_detached(&n.into(), &head[..8], data)
                            .unwrap();
                        head[8..24].copy_from_slice(&tag);
                    }
                })
            });
        }};
    }
    match cipher {
        CipherKind::Aes128Gcm => rustcrypto!(aes_gcm::Aes128Gcm),
        CipherKind::Aes256Gcm => rustcrypto!(aes_gcm::Aes256Gcm),
        CipherKind::Chacha20Poly1305 => rustcrypto!(chacha20poly1305::ChaCha20Poly1305),
    }
    g.finish();
}

fn bench_open(c: &mut C, cipher: CipherKind, size: usize) {
    let (enc, dec) = keys(cipher);
    let mut g = c.benchmark_group(format!("open/{cipher}/{size}"));
    g.throughput(Throughput::Elements(CHUNK as u64));
    let kid = KeyId::new(0).unwrap();
    // 64 authentic packets with ids 1..=64.
    let tx = EncryptKey::new(kid, &enc).unwrap();
    let mut pristine = buffers(size);
    for b in pristine.iter_mut() {
        tx.seal_v2(PeerId::new(PEER).unwrap(), b, size).unwrap();
    }
    let mut bufs = pristine.clone();
    let restore = |bufs: &mut [Vec<u8>]| {
        for (b, p) in bufs.iter_mut().zip(&pristine) {
            b.copy_from_slice(p);
        }
    };

    let raw = ring_key(cipher, dec.key());
    let iv = *dec.implicit_iv();
    g.bench_function("ring_raw", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                restore(&mut bufs);
                let start = thread_cpu_now();
                for (i, buf) in bufs.iter_mut().enumerate() {
                    let (head, data) = buf.split_at_mut(DATA_V2_OVERHEAD);
                    let tag: [u8; 16] = head[8..24].try_into().unwrap();
                    raw.open_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce(i as u32 + 1, &iv)),
                        Aad::from(&head[..8]),
                        aead::Tag::from(tag),
                        data,
                        0..,
                    )
                    .unwrap();
                }
                t += (thread_cpu_now() - start).saturating_sub(clock_overhead());
            }
            t
        })
    });

    macro_rules! ours {
        ($name:literal, $open:expr) => {
            g.bench_function($name, |b| {
                b.iter_custom(|iters| {
                    let mut t = Duration::ZERO;
                    for _ in 0..iters {
                        restore(&mut bufs);
                        // A fresh receiver so ids 1..=64 are new again (untimed).
                        let rx = DecryptKey::new(kid, &dec, 2048).unwrap();
                        let start = thread_cpu_now();
                        black_box($open(&rx, &mut bufs));
                        t += (thread_cpu_now() - start).saturating_sub(clock_overhead());
                    }
                    t
                })
            });
        };
    }
    ours!("single", |rx: &DecryptKey, bufs: &mut Vec<Vec<u8>>| {
        let mut n = 0;
        for buf in bufs.iter_mut() {
            n += rx.open(buf).unwrap().payload.len();
        }
        n
    });
    ours!("batch32", |rx: &DecryptKey, bufs: &mut Vec<Vec<u8>>| {
        open_batched::<32>(rx, bufs)
    });
    ours!("batch64", |rx: &DecryptKey, bufs: &mut Vec<Vec<u8>>| {
        open_batched::<64>(rx, bufs)
    });
    g.finish();
}

fn all(c: &mut C) {
    eprintln!("thread CPU clock start/stop cost: {:?}", clock_overhead());
    for cipher in CipherKind::ALL {
        for size in SIZES {
            bench_seal(c, cipher, size);
            bench_open(c, cipher, size);
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = all
}
criterion_main!(benches);
