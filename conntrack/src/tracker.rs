//! [`Conntrack`]: the sharded table, per-packet tracking and verdicts.
//!
//! # Concurrency
//!
//! The table is split into a power-of-two number of shards (by default about
//! 256 entries each, 64 to 512 shards), each behind its own lock (a spin lock
//! released by a plain store, see `spin.rs`) and padded to its own cache
//! lines; entries and indexes live in the tracker's huge-page arena
//! (`arena.rs`). A connection lives in the shard chosen by the high 32 bits
//! of its (direction-independent) key hash, so both directions of a flow take
//! the same lock, and two workers contend only when they touch the same shard
//! at the same instant: with `S` shards and `W` workers, a packet finds its
//! shard busy with probability about `(W-1)/S` times the fraction of time a
//! worker holds a lock (well under 1% with the defaults). The lock is held for
//! a lookup and a state update (tens of nanoseconds); rules run after it is
//! released, except for a connection's first packet, whose rules run under
//! the lock so the lookup, verdict and insertion are one step (no duplicate
//! inserts between workers).
//!
//! Rules are read through an `ArcSwap` (no lock); counters are per thread
//! stripe; the entry count is one atomic touched only on insert and delete.
//! Established flows allocate nothing: a packet of a known connection does a
//! hash, a lock, a probe and a few stores.
//!
//! On a table much larger than the caches, a packet's cost is its memory
//! misses (shard header, index bucket, entry). [`Conntrack::track_batch`]
//! overlaps them across a batch: it hashes every packet and prefetches the
//! shard and bucket lines, then, a few packets ahead of tracking each one,
//! reads its bucket without the lock to prefetch its entry.

use crate::arena::Arena;
use crate::config::{Config, ConfigError};
use crate::ctx::{CtState, NO_PEER, PacketCtx, Path, Timestamp};
use crate::entry::{Entry, S_ASSURED, S_ORIG_IS_A, S_SEEN_REPLY};
use crate::events::{EventHub, EventSubscription};
use crate::frag::{FragKey, FragRecord};
use crate::packet::{self, Frag, InnerFlow, InvalidReason, L4, Packet};
use crate::reject::{self, RejectKind};
use crate::rules::{Action, Facts, IcmpxCode, RejectWith, RuleSet};
use crate::snapshot::{ConnSnapshot, CtEvent, DestroyReason, EventKind};
use crate::stats::{self, Ctr, StatStripes, Stats};
use crate::table::{ShardCell, ShardGuard};
use crate::tcp::{Segment, Status, TcpConn, TcpResult};
use crate::tuple::{self, CtDir, FlowKey};
use crate::wire;
use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use foldhash::SharedSeed;
use foldhash::fast::SeedableRandomState;
use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Why a packet is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The IP layer could not be parsed.
    Malformed(InvalidReason),
    /// A rule said `drop` (or `reject` where no reply may be sent).
    Rule {
        /// Index of the rule in the ruleset.
        index: u32,
        /// Its line in the rules file.
        line: u32,
    },
    /// No rule decided and the policy is `drop`.
    Policy,
    /// A new connection could not be tracked: the table is full and nothing could be evicted.
    TableFull,
    /// A later fragment of a packet that was rejected.
    Fragment,
}

/// What the caller does with the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Accept,
    /// Discard it.
    Drop(DropReason),
    /// Discard it and send [`crate::build_reject`]'s reply back to its sender.
    Reject(RejectKind),
}

/// Everything the tracker decided about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The verdict.
    pub verdict: Verdict,
    /// `ct state` as the rules saw it.
    pub state: CtState,
    /// Direction within the connection, when one was found or created.
    pub dir: Option<CtDir>,
    /// Connection id, when one was found or created.
    pub conn_id: Option<u32>,
    /// Why the packet is invalid, if it is.
    pub invalid: Option<InvalidReason>,
    /// Index of the rule that decided; `None` when the policy did.
    pub rule: Option<u32>,
}

/// Result of one [`Conntrack::gc_slice`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Slots examined.
    pub scanned: usize,
    /// Entries removed.
    pub expired: usize,
    /// The cursor wrapped: every shard was visited since the previous wrap.
    pub wrapped: bool,
}

/// Memory held by the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes of entries, indexes (used or kept for reuse), fragment records
    /// and shard headers.
    pub bytes: usize,
    /// Entries stored.
    pub entries: usize,
    /// Size of one stored entry.
    pub entry_size: usize,
}

impl MemoryUsage {
    /// Bytes per stored entry, everything included (0 when empty).
    pub fn per_entry(&self) -> usize {
        self.bytes.checked_div(self.entries).unwrap_or(0)
    }
}

/// One packet of a [`Conntrack::track_batch`].
#[derive(Debug, Clone, Copy)]
pub struct BatchItem<'a> {
    /// Raw IPv4 or IPv6 packet.
    pub pkt: &'a [u8],
    /// Its context.
    pub ctx: PacketCtx<'a>,
}

/// Distance, in packets, between the stages of [`Conntrack::track_batch`]'s pipeline.
const DIST: usize = 4;
/// Packets in flight in the pipeline (a power of two above `3 * DIST`).
const RING: usize = 16;

/// Below this many entries the table fits the caches and batches are tracked
/// one by one.
const BATCH_PREFETCH_MIN: usize = 16_384;

#[derive(Clone, Copy)]
struct Prepared<'a> {
    pkt: Packet<'a>,
    key: Option<Keyed>,
}

/// A packet's flow key, whether its source is the key's endpoint `a`, and the key's hash.
type Keyed = (FlowKey, bool, u64);

/// Ask the CPU to start loading the cache line at `p`.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint with no architectural effect: it never
    // faults, whatever the address (stale and dangling ones included), and
    // SSE is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

struct GcCursor {
    shard: usize,
}

/// Entries examined when looking for one to evict from a full table.
const EVICT_SCAN: u32 = 64;
/// Slots examined per lock hold in GC.
const GC_PER_LOCK: usize = 256;

/// Connection tracker and stateful firewall. Share it between workers (`&self` everywhere).
pub struct Conntrack {
    shards: Box<[CachePadded<ShardCell>]>,
    /// Entries and indexes of every shard.
    arena: Arena,
    mask: usize,
    shard_bits: u32,
    hasher: SeedableRandomState,
    cfg: Config,
    count: CachePadded<AtomicUsize>,
    rules: ArcSwap<RuleSet>,
    /// Bumped by every rules swap; threads keep the current set cached.
    rules_gen: CachePadded<AtomicU64>,
    /// Distinguishes trackers in the per-thread rules cache.
    instance: u64,
    stats: StatStripes,
    events: Arc<EventHub>,
    gc: Mutex<GcCursor>,
}

/// A secret 64-bit seed from the OS (through std's randomly keyed SipHash).
fn os_random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x6463_6f2d_6374_6b00);
    h.finish()
}

fn shared_seed() -> &'static SharedSeed {
    static SEED: OnceLock<SharedSeed> = OnceLock::new();
    SEED.get_or_init(|| SharedSeed::from_u64(os_random()))
}

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// (tracker instance, rules generation, rules) last used by this thread.
    static RULES_CACHE: RefCell<Option<(u64, u64, Arc<RuleSet>)>> = const { RefCell::new(None) };
}

#[inline(always)]
fn facts<'a>(p: &Packet<'_>, ctx: &PacketCtx<'a>, state: CtState, dir: Option<CtDir>) -> Facts<'a> {
    Facts {
        state,
        dir,
        family: p.family,
        proto: p.proto,
        src: u128::from_be_bytes(p.src),
        dst: u128::from_be_bytes(p.dst),
        ports: p.ports(),
        icmp: p.icmp_type_code(),
        tcp_flags: match p.l4 {
            L4::Tcp(t) => Some(t.flags),
            _ => None,
        },
        path: ctx.path,
    }
}

fn peers(path: &Path<'_>) -> (u32, u32) {
    (
        path.src_peer().map_or(NO_PEER, |p| p.id),
        path.dst_peer().map_or(NO_PEER, |p| p.id),
    )
}

enum Updated {
    Done {
        state: CtState,
        dir: CtDir,
        id: u32,
        invalid: Option<InvalidReason>,
    },
    Reopen,
}

impl Conntrack {
    /// A tracker with `policy accept` and no rules.
    pub fn new(cfg: Config) -> Result<Conntrack, ConfigError> {
        Conntrack::with_rules(cfg, RuleSet::default())
    }

    /// A tracker with the given rules.
    pub fn with_rules(cfg: Config, rules: RuleSet) -> Result<Conntrack, ConfigError> {
        cfg.validate()?;
        let n = cfg.shard_count();
        let frag_cap = (cfg.frag.max_entries / n).max(4);
        let seed = os_random();
        let (arena, blocks) =
            Arena::new(cfg.max_entries, n).map_err(|e| ConfigError::Memory(e.to_string()))?;
        let shards = blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| CachePadded::new(ShardCell::new(b, &arena, frag_cap, seed ^ i as u64)))
            .collect();
        Ok(Conntrack {
            shards,
            arena,
            mask: n - 1,
            shard_bits: n.trailing_zeros(),
            hasher: SeedableRandomState::with_seed(os_random(), shared_seed()),
            cfg,
            count: CachePadded::new(AtomicUsize::new(0)),
            rules: ArcSwap::from_pointee(rules),
            rules_gen: CachePadded::new(AtomicU64::new(0)),
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            stats: StatStripes::new(),
            events: Arc::new(EventHub::new()),
            gc: Mutex::new(GcCursor { shard: 0 }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Replace the ruleset atomically; packets in flight finish with the old
    /// one. Returns the old one (with its final counters).
    pub fn set_rules(&self, rules: RuleSet) -> Arc<RuleSet> {
        let old = self.rules.swap(Arc::new(rules));
        self.rules_gen.fetch_add(1, Ordering::Release);
        old
    }

    /// Run `f` with the current rules. Each thread keeps the set it last used
    /// (for the last tracker it served) and checks one shared, read-mostly
    /// generation counter per packet, so the packet path takes no reference
    /// count and no lock. After a swap, a thread moves to the new set on its
    /// next packet.
    #[inline]
    fn with_current_rules<R>(&self, f: impl FnOnce(&RuleSet) -> R) -> R {
        let generation = self.rules_gen.load(Ordering::Acquire);
        RULES_CACHE.with(|c| {
            let mut c = c.borrow_mut();
            match &*c {
                Some((inst, g, _)) if *inst == self.instance && *g == generation => {}
                _ => *c = Some((self.instance, generation, self.rules.load_full())),
            }
            match &*c {
                Some((_, _, rules)) => f(rules),
                None => f(&self.rules.load()),
            }
        })
    }

    /// The ruleset in use (with live counters).
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// The table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Subscribe to NEW/UPDATE/DESTROY events; at most `capacity` are queued.
    pub fn subscribe(&self, capacity: usize) -> EventSubscription {
        self.events.subscribe(capacity)
    }

    /// Counters summed over all worker stripes.
    pub fn stats(&self) -> Stats {
        self.stats.snapshot(self.len(), self.cfg.max_entries)
    }

    /// Memory held by the table: the entry and index memory it has taken
    /// from its reservation (in use or kept for reuse), shard headers and
    /// heap bookkeeping.
    pub fn memory_usage(&self) -> MemoryUsage {
        let mut bytes =
            self.shards.len() * std::mem::size_of::<CachePadded<ShardCell>>() + self.arena.memory();
        for s in self.shards.iter() {
            bytes += s.lock(&self.arena).heap_memory();
        }
        MemoryUsage {
            bytes,
            entries: self.len(),
            entry_size: std::mem::size_of::<Entry>(),
        }
    }

    #[inline]
    fn shard_of(&self, h: u64) -> (usize, u32) {
        ((h >> 32) as usize & self.mask, h as u32)
    }

    /// Track a packet and decide its fate. `pkt` is a raw IPv4 or IPv6 packet.
    #[inline]
    pub fn track(&self, pkt: &[u8], ctx: &PacketCtx<'_>) -> Verdict {
        self.track_detailed(pkt, ctx).verdict
    }

    /// [`Self::track`] with the state, direction, connection and rule behind the verdict.
    pub fn track_detailed(&self, buf: &[u8], ctx: &PacketCtx<'_>) -> Outcome {
        let stripe = stats::stripe();
        match packet::parse(buf) {
            Ok(p) => self.dispatch(&p, ctx, stripe, None),
            Err(r) => self.malformed(r, stripe),
        }
    }

    /// Track a batch: `out[i]` receives the verdict for `items[i]`.
    ///
    /// Same results as calling [`Self::track`] in order, but faster: the rules
    /// and this thread's counter stripe are looked up once per batch, and on
    /// large tables the packets go through a software pipeline that hides
    /// memory latency. While packet `i` is tracked, packet `i + 4` has its
    /// bucket read without the lock to prefetch the entry it names, packet
    /// `i + 8` has its index bucket prefetched and packet `i + 12` is parsed
    /// and hashed while its shard's lock line loads: by the time a packet is
    /// tracked, the lines it needs (shard header, bucket, the entry's first two) have had
    /// several packets' work to arrive. Tables under 16384 entries fit the
    /// caches; their packets are tracked one by one.
    ///
    /// # Panics
    /// If `out` is shorter than `items`.
    pub fn track_batch(&self, items: &[BatchItem<'_>], out: &mut [Verdict]) {
        assert!(
            out.len() >= items.len(),
            "track_batch: out shorter than items"
        );
        let stripe = stats::stripe();
        self.with_current_rules(|rules| {
            if self.len() < BATCH_PREFETCH_MIN {
                // A small table stays in the caches; prefetching would only cost.
                for (it, v) in items.iter().zip(out.iter_mut()) {
                    *v = match packet::parse(it.pkt) {
                        Ok(p) => self.dispatch_with(&p, &it.ctx, stripe, None, rules).verdict,
                        Err(r) => self.malformed(r, stripe).verdict,
                    };
                }
                return;
            }
            let n = items.len();
            let mut ring: [Result<Prepared<'_>, InvalidReason>; RING] =
                [Err(InvalidReason::Empty); RING];
            for i in 0..n + 3 * DIST {
                // Stage 0: parse and hash; the shard's lock and hints start loading.
                if let Some(it) = items.get(i) {
                    ring[i % RING] = self.prepare(it.pkt);
                }
                // Stage 1: the index bucket starts loading.
                if let Some(j) = i.checked_sub(DIST).filter(|&j| j < n)
                    && let Ok(Prepared {
                        key: Some((_, _, h)),
                        ..
                    }) = &ring[j % RING]
                {
                    let (si, h32) = self.shard_of(*h);
                    prefetch(self.shards[si].bucket_addr(h32));
                }
                // Stage 2: read the bucket (no lock) and start loading the entry's two lines
                // an established connection's packet touches.
                if let Some(j) = i.checked_sub(2 * DIST).filter(|&j| j < n)
                    && let Ok(Prepared {
                        key: Some((_, _, h)),
                        ..
                    }) = &ring[j % RING]
                {
                    let (si, h32) = self.shard_of(*h);
                    self.shards[si].candidates(&self.arena, h32, |e| {
                        prefetch(e);
                        prefetch(e.wrapping_add(64));
                    });
                }
                // Stage 3: track.
                if let Some(j) = i.checked_sub(3 * DIST) {
                    out[j] = match &ring[j % RING] {
                        Ok(p) => {
                            self.dispatch_with(&p.pkt, &items[j].ctx, stripe, p.key.as_ref(), rules)
                                .verdict
                        }
                        Err(r) => self.malformed(*r, stripe).verdict,
                    };
                }
            }
        })
    }

    /// Parse a packet and compute its flow key and hash (when it has a flow
    /// of its own), prefetching its shard.
    #[inline]
    fn prepare<'a>(&self, buf: &'a [u8]) -> Result<Prepared<'a>, InvalidReason> {
        let p = packet::parse(buf)?;
        if !matches!(
            p.l4,
            L4::Tcp(_) | L4::Udp { .. } | L4::IcmpQuery { .. } | L4::Other
        ) {
            return Ok(Prepared { pkt: p, key: None });
        }
        let key = FlowKey::of_packet(&p).map(|(k, a)| {
            let h = k.hash_with(&self.hasher);
            // The cell's first line holds all a lookup reads: hints, lock, index place.
            prefetch(&*self.shards[self.shard_of(h).0] as *const ShardCell as *const u8);
            (k, a, h)
        });
        Ok(Prepared { pkt: p, key })
    }

    fn malformed(&self, r: InvalidReason, stripe: usize) -> Outcome {
        let st = self.stats.get(stripe);
        st.inc(Ctr::malformed);
        st.invalid(r);
        Outcome {
            verdict: Verdict::Drop(DropReason::Malformed(r)),
            state: CtState::Invalid,
            dir: None,
            conn_id: None,
            invalid: Some(r),
            rule: None,
        }
    }

    /// Track a parsed packet; `key` is its flow key and hash when already computed.
    fn dispatch(
        &self,
        pkt: &Packet<'_>,
        ctx: &PacketCtx<'_>,
        stripe: usize,
        key: Option<&Keyed>,
    ) -> Outcome {
        self.with_current_rules(|rules| self.dispatch_with(pkt, ctx, stripe, key, rules))
    }

    #[inline(always)]
    fn dispatch_with(
        &self,
        pkt: &Packet<'_>,
        ctx: &PacketCtx<'_>,
        stripe: usize,
        key: Option<&Keyed>,
        rules: &RuleSet,
    ) -> Outcome {
        match pkt.l4 {
            L4::Invalid(r) => self.stateless(pkt, ctx, rules, stripe, CtState::Invalid, Some(r)),
            L4::IcmpUntracked { .. } => {
                self.stats.get(stripe).inc(Ctr::untracked);
                self.stateless(pkt, ctx, rules, stripe, CtState::Untracked, None)
            }
            L4::Fragment => self.later_fragment(pkt, ctx, rules, stripe),
            L4::IcmpError { inner, .. } => self.related(pkt, &inner, ctx, rules, stripe),
            _ => {
                let computed;
                let key = match key {
                    Some(k) => Some(k),
                    None => {
                        computed = FlowKey::of_packet(pkt).map(|(k, a)| {
                            let h = k.hash_with(&self.hasher);
                            // Start loading the index bucket while the lock is
                            // being taken (a batch has prefetched it already).
                            let (si, h32) = self.shard_of(h);
                            prefetch(self.shards[si].bucket_addr(h32));
                            (k, a, h)
                        });
                        computed.as_ref()
                    }
                };
                let out = self.flow(pkt, key, ctx, rules, stripe);
                if let Frag::First { id } = pkt.frag {
                    let conn = match (key, out.conn_id, out.dir) {
                        (Some(&(k, _, h)), Some(_), Some(d)) => Some((k, h, d)),
                        _ => None,
                    };
                    // By value, not `&out`: borrowing it would keep the
                    // outcome in memory on the hot path.
                    let (v, st, c) = (out.verdict, out.state, out.conn_id);
                    self.record_first_fragment(
                        pkt,
                        id,
                        (v, st, c),
                        conn,
                        ctx.now.as_millis(),
                        stripe,
                    );
                }
                out
            }
        }
    }

    /// Rules without a connection: invalid, untracked, unmatched fragments.
    fn stateless(
        &self,
        pkt: &Packet<'_>,
        ctx: &PacketCtx<'_>,
        rules: &RuleSet,
        stripe: usize,
        state: CtState,
        invalid: Option<InvalidReason>,
    ) -> Outcome {
        if let Some(r) = invalid {
            self.stats.get(stripe).invalid(r);
        }
        let f = facts(pkt, ctx, state, None);
        let (verdict, rule) = self.decide(rules, &f, pkt, stripe);
        self.count_verdict(stripe, verdict);
        Outcome {
            verdict,
            state,
            dir: None,
            conn_id: None,
            invalid,
            rule,
        }
    }

    /// Evaluate the rules; reject falls back to drop where no reply may be sent.
    #[inline(always)]
    fn decide(
        &self,
        rules: &RuleSet,
        f: &Facts<'_>,
        pkt: &Packet<'_>,
        stripe: usize,
    ) -> (Verdict, Option<u32>) {
        let d = rules.evaluate(f, stripe, pkt.len);
        let drop_reason = match d.rule {
            Some(index) => DropReason::Rule {
                index,
                line: d.line,
            },
            None => DropReason::Policy,
        };
        let v = match d.action {
            Action::Accept | Action::Continue => Verdict::Accept,
            Action::Drop => Verdict::Drop(drop_reason),
            Action::Reject(w) => {
                let kind = match w {
                    RejectWith::Auto if matches!(pkt.l4, L4::Tcp(_)) => RejectKind::TcpReset,
                    RejectWith::Auto => RejectKind::Icmp(IcmpxCode::PortUnreachable),
                    RejectWith::TcpReset => RejectKind::TcpReset,
                    RejectWith::Icmpx(c) => RejectKind::Icmp(c),
                };
                if reject::rejectable(pkt, kind).is_ok() {
                    Verdict::Reject(kind)
                } else {
                    Verdict::Drop(drop_reason)
                }
            }
        };
        (v, d.rule)
    }

    #[inline(always)]
    fn count_verdict(&self, stripe: usize, v: Verdict) {
        let st = self.stats.get(stripe);
        st.inc(match v {
            Verdict::Accept => Ctr::accept,
            Verdict::Reject(_) => Ctr::reject,
            Verdict::Drop(DropReason::Policy) => Ctr::policy_drop,
            Verdict::Drop(DropReason::TableFull) => Ctr::drop,
            Verdict::Drop(_) => Ctr::rule_drop,
        });
    }

    fn publish(&self, kind: EventKind, reason: Option<DestroyReason>, e: &Entry, now: u64) {
        if self.events.active() {
            self.events.publish(CtEvent {
                kind,
                reason,
                conn: e.snapshot(now),
            });
        }
    }

    /// Remove an entry, count it and tell subscribers.
    fn destroy(
        &self,
        shard: &mut ShardGuard<'_>,
        slot: u32,
        now: u64,
        why: DestroyReason,
        stripe: usize,
    ) {
        let e = shard.remove(slot);
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.stats.get(stripe).inc(match why {
            DestroyReason::Expired => Ctr::expired,
            DestroyReason::EarlyDrop => Ctr::early_drop,
            DestroyReason::Flush => Ctr::flushed,
            DestroyReason::Reset | DestroyReason::Reopened => Ctr::closed,
        });
        self.publish(EventKind::Destroy, Some(why), &e, now);
    }

    /// A packet with a trackable flow.
    #[inline(always)]
    fn flow(
        &self,
        pkt: &Packet<'_>,
        key: Option<&Keyed>,
        ctx: &PacketCtx<'_>,
        rules: &RuleSet,
        stripe: usize,
    ) -> Outcome {
        let Some(&(ref key, src_is_a, h)) = key else {
            let out = self.stateless(
                pkt,
                ctx,
                rules,
                stripe,
                CtState::Invalid,
                Some(InvalidReason::IcmpNoConnection),
            );
            return out;
        };
        let (si, h32) = self.shard_of(h);
        let now = ctx.now.as_millis();
        let mut shard = self.shards[si].lock(&self.arena);
        if let Some(slot) = shard.find(key, h32) {
            if shard.get(slot).expires() > now {
                match self.update(&mut shard, slot, pkt, src_is_a, now, stripe) {
                    Updated::Done {
                        state,
                        dir,
                        id,
                        invalid,
                    } => {
                        drop(shard);
                        if let Some(r) = invalid {
                            self.stats.get(stripe).invalid(r);
                        }
                        let f = facts(pkt, ctx, state, Some(dir));
                        let (verdict, rule) = self.decide(rules, &f, pkt, stripe);
                        self.count_verdict(stripe, verdict);
                        let out = Outcome {
                            verdict,
                            state,
                            dir: Some(dir),
                            conn_id: Some(id),
                            invalid,
                            rule,
                        };
                        return out;
                    }
                    Updated::Reopen => {}
                }
            } else {
                self.destroy(&mut shard, slot, now, DestroyReason::Expired, stripe);
            }
        }

        // A new connection: its first packet's rules run under the shard lock.
        let entry = match self.new_entry(pkt, *key, h32, src_is_a, &ctx.path, now) {
            Ok(e) => e,
            Err(r) => {
                drop(shard);
                return self.stateless(pkt, ctx, rules, stripe, CtState::Invalid, Some(r));
            }
        };
        let f = facts(pkt, ctx, CtState::New, Some(CtDir::Original));
        let (mut verdict, rule) = self.decide(rules, &f, pkt, stripe);
        let mut conn_id = None;
        if verdict == Verdict::Accept {
            match self.insert(&mut shard, si, entry, now, stripe) {
                Some(id) => conn_id = Some(id),
                None => verdict = Verdict::Drop(DropReason::TableFull),
            }
        }
        drop(shard);
        self.count_verdict(stripe, verdict);
        Outcome {
            verdict,
            state: CtState::New,
            dir: Some(CtDir::Original),
            conn_id,
            invalid: None,
            rule,
        }
    }

    /// First packet's entry, or why this packet cannot open a connection.
    fn new_entry(
        &self,
        pkt: &Packet<'_>,
        key: FlowKey,
        h32: u32,
        src_is_a: bool,
        path: &Path<'_>,
        now: u64,
    ) -> Result<Entry, InvalidReason> {
        let t = &self.cfg.timeouts;
        let (orig_peer, reply_peer) = peers(path);
        let mut e = Entry {
            key,
            hash: h32,
            created: now,
            last_seen: now,
            status: if src_is_a { S_ORIG_IS_A } else { 0 },
            orig_peer,
            reply_peer,
            ..Entry::default()
        };
        let timeout = match pkt.l4 {
            L4::Tcp(info) => {
                let seg = Segment {
                    info,
                    options: pkt.tcp_options(),
                };
                let mut c =
                    TcpConn::new(&seg, &self.cfg.tcp).ok_or(InvalidReason::TcpInvalidNew)?;
                match c.packet(
                    CtDir::Original,
                    &seg,
                    Status::default(),
                    0,
                    &self.cfg.tcp,
                    t,
                ) {
                    TcpResult::Accept { timeout, .. } => {
                        e.tcp = c;
                        timeout
                    }
                    TcpResult::Invalid { reason, .. } => return Err(reason),
                    TcpResult::Ignore | TcpResult::Reopen => {
                        return Err(InvalidReason::TcpInvalidNew);
                    }
                }
            }
            L4::Udp { .. } => t.udp,
            L4::IcmpQuery { typ, code, .. } => {
                match tuple::icmp_request(pkt.family, typ) {
                    Some((_, true)) => {}
                    // A reply with no request cannot open a connection.
                    _ => return Err(InvalidReason::IcmpNoConnection),
                }
                e.icmp_code = code;
                if pkt.proto == wire::IPPROTO_ICMPV6 {
                    t.icmpv6
                } else {
                    t.icmp
                }
            }
            _ => t.generic,
        };
        e.refresh(CtDir::Original, pkt.len, now, timeout);
        Ok(e)
    }

    /// Update an existing entry with a packet.
    #[inline(always)]
    fn update(
        &self,
        shard: &mut ShardGuard<'_>,
        slot: u32,
        pkt: &Packet<'_>,
        src_is_a: bool,
        now: u64,
        stripe: usize,
    ) -> Updated {
        let st = self.stats.get(stripe);
        let t = &self.cfg.timeouts;
        st.inc(Ctr::found);
        let e = shard.get_mut(slot);
        let dir = e.dir_of(src_is_a);
        let mut invalid = None;
        let mut changed = false;
        let mut kill = false;
        match pkt.l4 {
            L4::Tcp(info) => {
                let seg = Segment {
                    info,
                    options: pkt.tcp_options(),
                };
                let status = Status {
                    seen_reply: e.seen_reply(),
                    assured: e.assured(),
                };
                let remaining = e.expires().saturating_sub(now) / 1000;
                let before = e.tcp.state;
                match e.tcp.packet(dir, &seg, status, remaining, &self.cfg.tcp, t) {
                    TcpResult::Accept {
                        timeout,
                        refresh,
                        kill: k,
                        set_assured,
                    } => {
                        if refresh {
                            e.refresh(dir, pkt.len, now, timeout);
                        }
                        if set_assured {
                            e.status |= S_ASSURED;
                            changed = true;
                        }
                        kill = k;
                    }
                    TcpResult::Ignore => st.inc(Ctr::ignore),
                    TcpResult::Invalid { reason, shorten_to } => {
                        if let Some(s) = shorten_to {
                            e.set_expires(now + u64::from(s) * 1000);
                        }
                        invalid = Some(reason);
                    }
                    TcpResult::Reopen => {
                        self.destroy(shard, slot, now, DestroyReason::Reopened, stripe);
                        return Updated::Reopen;
                    }
                }
                changed |= e.tcp.state != before;
            }
            L4::Udp { .. } => {
                // Both ways for over two seconds: a stream, keep it longer
                // (`created` is read only until then: it lives in the cold line).
                let timeout = if e.assured() || (e.seen_reply() && now > e.created + 2000) {
                    if !e.assured() {
                        e.status |= S_ASSURED;
                        changed = true;
                    }
                    t.udp_stream
                } else {
                    t.udp
                };
                e.refresh(dir, pkt.len, now, timeout);
            }
            L4::IcmpQuery { .. } => {
                let timeout = if pkt.proto == wire::IPPROTO_ICMPV6 {
                    t.icmpv6
                } else {
                    t.icmp
                };
                e.refresh(dir, pkt.len, now, timeout);
            }
            _ => e.refresh(dir, pkt.len, now, t.generic),
        }
        if invalid.is_none() && dir == CtDir::Reply && !e.seen_reply() {
            e.status |= S_SEEN_REPLY;
            changed = true;
        }
        let state = if invalid.is_some() {
            CtState::Invalid
        } else if dir == CtDir::Reply || e.seen_reply() {
            CtState::Established
        } else {
            CtState::New
        };
        let id = e.id;
        if kill {
            self.destroy(shard, slot, now, DestroyReason::Reset, stripe);
        } else if changed {
            let e = *shard.get(slot);
            self.publish(EventKind::Update, None, &e, now);
        }
        Updated::Done {
            state,
            dir,
            id,
            invalid,
        }
    }

    /// Take one unit of the global bound.
    fn reserve(&self) -> bool {
        let max = self.cfg.max_entries;
        self.count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c < max).then_some(c + 1)
            })
            .is_ok()
    }

    /// Free one slot of this shard: an expired entry, else an evictable one.
    fn evict_one(&self, shard: &mut ShardGuard<'_>, now: u64, stripe: usize) -> bool {
        let high = shard.high();
        if high == 0 {
            return false;
        }
        let mut candidate = None;
        let mut cur = shard.evict_cursor % high;
        for _ in 0..EVICT_SCAN.min(high) {
            let slot = shard.slot_at(cur);
            if shard.used(slot) {
                let e = shard.get(slot);
                if e.expires() <= now {
                    candidate = Some((slot, DestroyReason::Expired));
                    break;
                }
                if candidate.is_none() && e.evictable() {
                    candidate = Some((slot, DestroyReason::EarlyDrop));
                }
            }
            cur = (cur + 1) % high;
        }
        shard.evict_cursor = cur;
        match candidate {
            Some((slot, why)) => {
                self.destroy(shard, slot, now, why, stripe);
                true
            }
            None => false,
        }
    }

    /// Insert within the bound (evicting if needed); returns the new id.
    fn insert(
        &self,
        shard: &mut ShardGuard<'_>,
        si: usize,
        mut e: Entry,
        now: u64,
        stripe: usize,
    ) -> Option<u32> {
        if !(self.reserve() || self.evict_one(shard, now, stripe) && self.reserve()) {
            return None;
        }
        e.id = (shard.next_id << self.shard_bits) | si as u32;
        if shard.insert(e).is_none() {
            // The arena is out of memory (only a shard far above its share
            // gets here): the same as a full table.
            self.count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        shard.next_id = shard.next_id.wrapping_add(1);
        self.stats.get(stripe).inc(Ctr::insert);
        self.publish(EventKind::New, None, &e, now);
        Some(e.id)
    }

    /// An ICMP error: RELATED if it quotes a tracked flow and goes back to its sender.
    fn related(
        &self,
        pkt: &Packet<'_>,
        inner: &InnerFlow,
        ctx: &PacketCtx<'_>,
        rules: &RuleSet,
        stripe: usize,
    ) -> Outcome {
        let st = self.stats.get(stripe);
        let now = ctx.now.as_millis();
        let found = FlowKey::of_inner(pkt.family, inner).and_then(|(key, inner_src_is_a)| {
            let h = key.hash_with(&self.hasher);
            let (si, h32) = self.shard_of(h);
            let shard = self.shards[si].lock(&self.arena);
            let slot = shard.find(&key, h32)?;
            let e = shard.get(slot);
            (e.expires() > now).then(|| (e.dir_of(inner_src_is_a), e.id))
        });
        let (inner_dir, id) = match found {
            Some(f) => f,
            None => {
                st.inc(Ctr::error);
                return self.stateless(
                    pkt,
                    ctx,
                    rules,
                    stripe,
                    CtState::Invalid,
                    Some(InvalidReason::RelatedNotFound),
                );
            }
        };
        if pkt.dst != inner.src {
            st.inc(Ctr::error);
            return self.stateless(
                pkt,
                ctx,
                rules,
                stripe,
                CtState::Invalid,
                Some(InvalidReason::RelatedAddressMismatch),
            );
        }
        st.inc(Ctr::related);
        // The error travels against the quoted packet.
        let dir = match inner_dir {
            CtDir::Original => CtDir::Reply,
            CtDir::Reply => CtDir::Original,
        };
        let f = facts(pkt, ctx, CtState::Related, Some(dir));
        let (verdict, rule) = self.decide(rules, &f, pkt, stripe);
        self.count_verdict(stripe, verdict);
        Outcome {
            verdict,
            state: CtState::Related,
            dir: Some(dir),
            conn_id: Some(id),
            invalid: None,
            rule,
        }
    }

    fn frag_shard(&self, k: &FragKey) -> usize {
        (self.hasher.hash_one(k) >> 32) as usize & self.mask
    }

    #[cold]
    #[inline(never)]
    fn record_first_fragment(
        &self,
        pkt: &Packet<'_>,
        id: u32,
        (verdict, state, conn_id): (Verdict, CtState, Option<u32>),
        conn: Option<(FlowKey, u64, CtDir)>,
        now: u64,
        stripe: usize,
    ) {
        let hdr_len = match pkt.l4 {
            L4::Tcp(t) => u16::from(t.hdr_len),
            L4::Udp { .. } => wire::UDP_HDR_LEN as u16,
            L4::IcmpQuery { .. } | L4::IcmpError { .. } => wire::ICMP_HDR_LEN as u16,
            _ => 0,
        };
        let k = FragKey::new(pkt.family, pkt.src, pkt.dst, pkt.proto, id);
        let rec = FragRecord {
            expires: now + u64::from(self.cfg.frag.timeout) * 1000,
            verdict,
            state,
            conn,
            hdr_len,
            conn_id,
        };
        let st = self.stats.get(stripe);
        st.inc(Ctr::frag_first);
        if self.shards[self.frag_shard(&k)]
            .lock(&self.arena)
            .frags
            .insert(k, rec, now)
        {
            st.inc(Ctr::frag_evicted);
        }
    }

    fn later_fragment(
        &self,
        pkt: &Packet<'_>,
        ctx: &PacketCtx<'_>,
        rules: &RuleSet,
        stripe: usize,
    ) -> Outcome {
        let Frag::Later { id, offset } = pkt.frag else {
            return self.stateless(
                pkt,
                ctx,
                rules,
                stripe,
                CtState::Invalid,
                Some(InvalidReason::FragmentUnmatched),
            );
        };
        let now = ctx.now.as_millis();
        let k = FragKey::new(pkt.family, pkt.src, pkt.dst, pkt.proto, id);
        let rec = self.shards[self.frag_shard(&k)]
            .lock(&self.arena)
            .frags
            .get(&k, now);
        let Some(rec) = rec else {
            return self.stateless(
                pkt,
                ctx,
                rules,
                stripe,
                CtState::Invalid,
                Some(InvalidReason::FragmentUnmatched),
            );
        };
        if offset < u32::from(rec.hdr_len) {
            return self.stateless(
                pkt,
                ctx,
                rules,
                stripe,
                CtState::Invalid,
                Some(InvalidReason::FragmentOverlapsHeader),
            );
        }
        self.stats.get(stripe).inc(Ctr::frag_matched);
        let verdict = match rec.verdict {
            Verdict::Reject(_) => Verdict::Drop(DropReason::Fragment),
            v => v,
        };
        if let (Verdict::Accept, Some((key, h, dir))) = (verdict, rec.conn) {
            let (si, h32) = self.shard_of(h);
            let mut shard = self.shards[si].lock(&self.arena);
            if let Some(slot) = shard.find(&key, h32) {
                let e = shard.get_mut(slot);
                e.add_bytes(dir, pkt.len);
                e.touch(now);
            }
        }
        self.count_verdict(stripe, verdict);
        Outcome {
            verdict,
            state: rec.state,
            dir: rec.conn.map(|c| c.2),
            conn_id: rec.conn_id,
            invalid: None,
            rule: None,
        }
    }

    /// Remove expired entries, examining about `budget` slots, a shard at a
    /// time and at most 256 slots per lock hold. Call it periodically (e.g.
    /// every 100 ms with `budget = max_entries / 100` sweeps the table every
    /// 10 s); expired entries are also replaced lazily when their flow is seen.
    pub fn gc_slice(&self, now: Timestamp, budget: usize) -> GcReport {
        let now = now.as_millis();
        let stripe = stats::stripe();
        let mut cur = self.gc.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rep = GcReport::default();
        let mut spent = 0usize;
        while spent < budget {
            let si = cur.shard & self.mask;
            let mut shard = self.shards[si].lock(&self.arena);
            if shard.gc_cursor == 0 {
                shard.frags.expire(now);
            }
            let chunk = GC_PER_LOCK.min(budget - spent);
            let mut n = 0;
            while n < chunk && shard.gc_cursor < shard.high() {
                let slot = shard.slot_at(shard.gc_cursor);
                shard.gc_cursor += 1;
                n += 1;
                if shard.used(slot) && shard.get(slot).expires() <= now {
                    self.destroy(&mut shard, slot, now, DestroyReason::Expired, stripe);
                    rep.expired += 1;
                }
            }
            rep.scanned += n;
            // Visiting a shard costs at least one unit so empty tables finish.
            spent += n.max(1);
            if shard.gc_cursor >= shard.high() {
                shard.gc_cursor = 0;
                cur.shard = (si + 1) & self.mask;
                if cur.shard == 0 {
                    rep.wrapped = true;
                }
            }
        }
        rep
    }

    /// Visit a copy of every live entry. Each shard is locked only to copy
    /// its raw entries; `f` runs with no lock held.
    pub fn for_each(&self, now: Timestamp, mut f: impl FnMut(&ConnSnapshot)) {
        let now = now.as_millis();
        let mut buf = Vec::new();
        for s in self.shards.iter() {
            {
                let shard = s.lock(&self.arena);
                for pos in 0..shard.high() {
                    let slot = shard.slot_at(pos);
                    if shard.used(slot) && shard.get(slot).expires() > now {
                        buf.push(*shard.get(slot));
                    }
                }
            }
            for e in buf.drain(..) {
                f(&e.snapshot(now));
            }
        }
    }

    /// Every live entry (see [`Self::for_each`] to avoid collecting).
    pub fn dump(&self, now: Timestamp) -> Vec<ConnSnapshot> {
        let mut v = Vec::with_capacity(self.len());
        self.for_each(now, |s| v.push(s.clone()));
        v
    }

    /// Remove entries for which `pred` holds; returns how many.
    pub fn flush_matching(
        &self,
        now: Timestamp,
        mut pred: impl FnMut(&ConnSnapshot) -> bool,
    ) -> usize {
        let now = now.as_millis();
        let stripe = stats::stripe();
        let mut n = 0;
        for s in self.shards.iter() {
            let mut shard = s.lock(&self.arena);
            for pos in 0..shard.high() {
                let slot = shard.slot_at(pos);
                if shard.used(slot) && pred(&shard.get(slot).snapshot(now)) {
                    self.destroy(&mut shard, slot, now, DestroyReason::Flush, stripe);
                    n += 1;
                }
            }
        }
        n
    }

    /// Remove every entry (and fragment record); returns how many entries.
    pub fn flush(&self, now: Timestamp) -> usize {
        let nowm = now.as_millis();
        let stripe = stats::stripe();
        let mut n = 0;
        for s in self.shards.iter() {
            let mut shard = s.lock(&self.arena);
            if self.events.active() {
                for pos in 0..shard.high() {
                    let slot = shard.slot_at(pos);
                    if shard.used(slot) {
                        let e = *shard.get(slot);
                        self.publish(EventKind::Destroy, Some(DestroyReason::Flush), &e, nowm);
                    }
                }
            }
            let len = shard.len();
            shard.reset();
            self.count.fetch_sub(len, Ordering::Relaxed);
            self.stats.get(stripe).add(Ctr::flushed, len as u64);
            n += len;
        }
        n
    }
}
