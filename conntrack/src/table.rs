//! One shard of the connection table: its entries and its hash index, both
//! in the tracker's [`Arena`].
//!
//! A shard owns chunks of [`CHUNK`] entry slots; an entry is addressed by its
//! global slot number, so a lookup goes from bucket to entry without reading
//! anything of the shard's but the index's place. Free slots are chained
//! through their `id` field. The index is an open-addressing table of 8-byte
//! buckets (`hash32 << 32 | slot + 1`, 0 = empty) with linear probing and
//! backward-shift deletion: a lookup reads one bucket line and then the
//! entry. It starts at the shard's share of `max_entries` and doubles (into a
//! new block) at 3/4 load.
//!
//! The index's place and size are also published outside the lock
//! ([`Hints`]) so a batch can find where an entry lives before taking the
//! shard's lock, and prefetch it. Index memory stays mapped for the arena's
//! life and is only accessed as atomics, so such a read is sound even when
//! it races with a change (it may then name a wrong slot, which only makes a
//! useless prefetch).

use crate::arena::{Arena, Block, CHUNK};
use crate::entry::Entry;
use crate::frag::FragTable;
use crate::spin::{SpinGuard, SpinLock};
use crate::tuple::FlowKey;
use std::sync::atomic::{AtomicU64, Ordering};

const NIL: u32 = u32::MAX;
/// Buckets a lock-free probe looks at before giving up (a prefetch hint needs no more).
const PROBE_LIMIT: usize = 8;
/// Bits of a packed index hint that hold the address (user-space addresses
/// use 47 at most); log2 of the bucket count sits above them.
const ADDR_BITS: u32 = 56;

/// Where a shard's index lives, readable without the lock.
pub(crate) struct Hints {
    /// The index's first bucket's address, with log2 of its bucket count in
    /// the top byte (one atomic word, so a reader never pairs one block's
    /// address with another's size). 0: no hint.
    index: AtomicU64,
}

impl Hints {
    fn publish(&self, buckets: &[AtomicU64]) {
        let addr = buckets.as_ptr() as u64;
        let packed = if buckets.is_empty() || addr >> ADDR_BITS != 0 {
            0 // No hint: probes find nothing, lookups still work under the lock.
        } else {
            addr | u64::from(buckets.len().trailing_zeros()) << ADDR_BITS
        };
        self.index.store(packed, Ordering::Release);
    }

    #[inline]
    fn read(&self) -> (*const AtomicU64, usize) {
        let v = self.index.load(Ordering::Acquire);
        let base = (v & ((1 << ADDR_BITS) - 1)) as *const AtomicU64;
        (base, (1usize << (v >> ADDR_BITS)) - 1)
    }
}

/// A shard behind its lock, with its [`Hints`] beside it. Laid out so that
/// the hints, the lock word and the shard's index block share the first
/// cache line.
#[repr(C)]
pub(crate) struct ShardCell {
    hints: Hints,
    shard: SpinLock<Shard>,
}

impl ShardCell {
    pub(crate) fn new(index: Block, arena: &Arena, frag_cap: usize, seed: u64) -> ShardCell {
        let cell = ShardCell {
            hints: Hints {
                index: AtomicU64::new(0),
            },
            shard: SpinLock::new(Shard::new(index, frag_cap, seed)),
        };
        cell.hints.publish(arena.buckets(index));
        cell
    }

    /// The shard, locked (a panic while it is held releases it: every
    /// mutation leaves the shard consistent before anything that can panic).
    #[inline]
    pub(crate) fn lock<'a>(&'a self, arena: &'a Arena) -> ShardGuard<'a> {
        ShardGuard {
            shard: self.shard.lock(),
            hints: &self.hints,
            arena,
        }
    }

    /// Address of the bucket where a lookup for `h` starts (for prefetching).
    #[inline]
    pub(crate) fn bucket_addr(&self, h: u32) -> *const u8 {
        let (base, mask) = self.hints.read();
        base.wrapping_add(h as usize & mask) as *const u8
    }

    /// Without the lock: the addresses of the entries a lookup for `h` would
    /// compare (their hash tags match), for prefetching. May name wrong
    /// addresses while another thread changes the shard; never dereference them.
    #[inline]
    pub(crate) fn candidates(&self, arena: &Arena, h: u32, mut f: impl FnMut(*const u8)) {
        let (base, mask) = self.hints.read();
        let mut i = h as usize & mask;
        for _ in 0..PROBE_LIMIT {
            let p = base.wrapping_add(i);
            if !arena.index_contains(p) {
                return;
            }
            // SAFETY: `p` points at a bucket inside the arena's index region
            // (checked just above), which stays mapped while `arena` is
            // borrowed; buckets are only ever accessed as atomics, so this
            // read races with no plain access.
            let b = unsafe { (*p).load(Ordering::Relaxed) };
            if b == 0 {
                return;
            }
            if bucket_hash(b) == h {
                f(arena.entry_ptr(bucket_slot(b)) as *const u8);
            }
            i = (i + 1) & mask;
        }
    }
}

/// `repr(C)` so what a lookup reads (the index block) comes first, in the
/// cell's first cache line (see [`ShardCell`]).
#[repr(C)]
pub(crate) struct Shard {
    index: Block,
    /// First slot of each chunk this shard owns; GC and listings walk them.
    chunks: Vec<u32>,
    free: u32,
    len: u32,
    pub(crate) next_id: u32,
    pub(crate) gc_cursor: u32,
    pub(crate) evict_cursor: u32,
    pub(crate) frags: FragTable,
}

#[inline]
fn bucket_hash(v: u64) -> u32 {
    (v >> 32) as u32
}

#[inline]
fn bucket_slot(v: u64) -> u32 {
    (v as u32).wrapping_sub(1)
}

impl Shard {
    fn new(index: Block, frag_cap: usize, seed: u64) -> Shard {
        Shard {
            index,
            chunks: Vec::new(),
            free: NIL,
            len: 0,
            next_id: 0,
            gc_cursor: 0,
            evict_cursor: 0,
            frags: FragTable::new(frag_cap, seed),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// Slot positions `0..high()` cover every slot this shard owns (see [`ShardGuard::slot_at`]).
    pub(crate) fn high(&self) -> u32 {
        (self.chunks.len() * CHUNK) as u32
    }
}

/// A locked shard; derefs to [`Shard`] for its bookkeeping, and reaches its
/// entries and index in the arena.
pub(crate) struct ShardGuard<'a> {
    shard: SpinGuard<'a, Shard>,
    hints: &'a Hints,
    arena: &'a Arena,
}

impl std::ops::Deref for ShardGuard<'_> {
    type Target = Shard;
    fn deref(&self) -> &Shard {
        &self.shard
    }
}

impl std::ops::DerefMut for ShardGuard<'_> {
    fn deref_mut(&mut self) -> &mut Shard {
        &mut self.shard
    }
}

impl ShardGuard<'_> {
    /// The slot at position `pos` (below [`Shard::high`]) of this shard's chunks.
    #[inline]
    pub(crate) fn slot_at(&self, pos: u32) -> u32 {
        self.shard.chunks[pos as usize / CHUNK] + pos % CHUNK as u32
    }

    /// The entry in `slot`, which must be one of this shard's.
    #[inline]
    pub(crate) fn get(&self, slot: u32) -> &Entry {
        assert!((slot as usize) < self.arena.slot_cap(), "slot out of range");
        debug_assert!(self.owns(slot));
        // SAFETY: `slot` is within the entry region (checked), which is
        // mapped and initialised for every slot of a chunk handed out (each
        // chunk is filled with default entries when a shard takes it, and
        // only this shard's slots reach its index and free list). The chunk
        // belongs to this shard alone and the shard's lock, held by this
        // guard, serialises every access to it; the shared borrow of `self`
        // keeps `get_mut` out while the reference lives.
        unsafe { &*self.arena.entry_ptr(slot) }
    }

    /// The entry in `slot`, which must be one of this shard's, for writing.
    #[inline]
    pub(crate) fn get_mut(&mut self, slot: u32) -> &mut Entry {
        assert!((slot as usize) < self.arena.slot_cap(), "slot out of range");
        debug_assert!(self.owns(slot));
        // SAFETY: as in `get`; the exclusive borrow of the guard makes this
        // the only reference into the shard's entries.
        unsafe { &mut *self.arena.entry_ptr(slot) }
    }

    fn owns(&self, slot: u32) -> bool {
        let first = slot - slot % CHUNK as u32;
        self.shard.chunks.contains(&first)
    }

    #[inline]
    fn buckets(&self) -> &[AtomicU64] {
        self.arena.buckets(self.shard.index)
    }

    #[inline]
    pub(crate) fn find(&self, key: &FlowKey, h: u32) -> Option<u32> {
        let index = self.buckets();
        let mask = index.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let v = index[i].load(Ordering::Relaxed);
            if v == 0 {
                return None;
            }
            if bucket_hash(v) == h {
                let slot = bucket_slot(v);
                if self.get(slot).key == *key {
                    return Some(slot);
                }
            }
            i = (i + 1) & mask;
        }
    }

    fn place(index: &[AtomicU64], v: u64) {
        let mask = index.len() - 1;
        let mut i = bucket_hash(v) as usize & mask;
        while index[i].load(Ordering::Relaxed) != 0 {
            i = (i + 1) & mask;
        }
        index[i].store(v, Ordering::Relaxed);
    }

    /// Move the index to a block twice the size; false when the arena has none.
    fn grow(&mut self) -> bool {
        let old = self.shard.index;
        let Some(new) = self.arena.take_block(old.len * 2) else {
            return false;
        };
        let to = self.arena.buckets(new);
        for b in self.arena.buckets(old) {
            let v = b.load(Ordering::Relaxed);
            if v != 0 {
                Self::place(to, v);
            }
        }
        self.shard.index = new;
        self.hints.publish(to);
        self.arena.give_block(old);
        true
    }

    /// A free slot: from the free list, else from a new chunk.
    fn take_slot(&mut self) -> Option<u32> {
        if self.shard.free == NIL {
            let first = self.arena.take_chunk()?;
            // Fill the chunk with empty entries chained into the free list,
            // lowest slot first.
            for s in (first..first + CHUNK as u32).rev() {
                let next = self.shard.free;
                let e = self.arena.entry_ptr(s);
                // SAFETY: the chunk was just handed to this shard by the
                // arena (nobody else uses it) and lies in the mapped entry
                // region; `write` initialises without reading the old bytes.
                unsafe {
                    e.write(Entry {
                        id: next,
                        ..Entry::default()
                    });
                }
                self.shard.free = s;
            }
            self.shard.chunks.push(first);
        }
        let s = self.shard.free;
        self.shard.free = self.get(s).id;
        Some(s)
    }

    /// Store an entry (its `hash` must be set); returns its slot, or `None`
    /// when the arena has no memory left for it.
    pub(crate) fn insert(&mut self, e: Entry) -> Option<u32> {
        if (self.shard.len as usize + 1) * 4 > self.shard.index.len * 3 && !self.grow() {
            return None;
        }
        let slot = self.take_slot()?;
        let h = e.hash;
        *self.get_mut(slot) = e;
        Self::place(self.buckets(), u64::from(h) << 32 | u64::from(slot + 1));
        self.shard.len += 1;
        Some(slot)
    }

    /// Remove the entry in `slot`, returning it.
    pub(crate) fn remove(&mut self, slot: u32) -> Entry {
        let e = *self.get(slot);
        let want = u64::from(e.hash) << 32 | u64::from(slot + 1);
        let index = self.buckets();
        let mask = index.len() - 1;
        let mut i = e.hash as usize & mask;
        // The bucket exists: every stored entry has one.
        while index[i].load(Ordering::Relaxed) != want {
            i = (i + 1) & mask;
        }
        // Backward-shift deletion keeps probe sequences unbroken without tombstones.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let v = index[j].load(Ordering::Relaxed);
            if v == 0 {
                break;
            }
            let home = bucket_hash(v) as usize & mask;
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                index[hole].store(v, Ordering::Relaxed);
                hole = j;
            }
        }
        index[hole].store(0, Ordering::Relaxed);

        let free = self.shard.free;
        let s = self.get_mut(slot);
        *s = Entry {
            id: free,
            ..Entry::default()
        };
        self.shard.free = slot;
        self.shard.len -= 1;
        e
    }

    /// Whether `slot` holds an entry.
    #[inline]
    pub(crate) fn used(&self, slot: u32) -> bool {
        !self.get(slot).key.is_empty()
    }

    /// Drop every entry and give the chunks back to the arena. The index is
    /// cleared in place and kept, so refilling the shard reuses it.
    pub(crate) fn reset(&mut self) {
        for b in self.buckets() {
            b.store(0, Ordering::Relaxed);
        }
        let chunks = std::mem::take(&mut self.shard.chunks);
        self.arena.give_chunks(&chunks);
        let s = &mut *self.shard;
        s.free = NIL;
        s.len = 0;
        s.gc_cursor = 0;
        s.evict_cursor = 0;
        s.frags.clear();
    }

    /// Heap bytes of this shard's own (its chunk list and fragment records;
    /// entries and index are counted by the arena).
    pub(crate) fn heap_memory(&self) -> usize {
        self.shard.chunks.capacity() * std::mem::size_of::<u32>() + self.shard.frags.memory()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Family;

    fn key(i: u32) -> FlowKey {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&i.to_be_bytes());
        FlowKey::new(Family::Ipv4, 17, a, [9; 16], 1, 2, None).0
    }

    fn entry(i: u32, h: u32) -> Entry {
        Entry {
            key: key(i),
            hash: h,
            ..Entry::default()
        }
    }

    /// Shard 0 of an arena made for `max` entries in 4 shards: it gets a
    /// quarter of the index, so storing more than `max / 4` makes it grow.
    fn one_shard(max: usize) -> (Arena, ShardCell) {
        let (arena, blocks) = Arena::new(max, 4).unwrap();
        let cell = ShardCell::new(blocks[0], &arena, 4, 0);
        (arena, cell)
    }

    #[test]
    fn lookup_fields_share_the_cells_first_line() {
        let (a, c) = one_shard(64);
        let base = &c as *const ShardCell as usize;
        let g = c.lock(&a);
        let shard = &*g as *const Shard as usize;
        assert_eq!(std::mem::offset_of!(ShardCell, hints), 0);
        assert!(&c.shard as *const _ as usize - base < 64);
        // The lock word itself, not only the lock's start.
        assert!(c.shard.lock_word() as usize - base < 64);
        assert_eq!(std::mem::offset_of!(Shard, index), 0);
        assert!(shard + std::mem::size_of::<Block>() - base <= 64);
    }

    #[test]
    fn insert_find_remove_with_colliding_hashes() {
        // An index for 100 entries at first: it grows.
        let (a, c) = one_shard(400);
        let first = c.lock(&a).index.len;
        let mut s = c.lock(&a);
        // Few distinct hashes: long probe runs, wrap-around, backward shifts.
        let hash = |i: u32| (i % 5) * 0x1000_0001 + 6;
        let mut slots = Vec::new();
        for i in 0..300 {
            slots.push(s.insert(entry(i, hash(i))).unwrap());
        }
        assert!(s.index.len > first);
        for i in 0..300 {
            assert_eq!(s.find(&key(i), hash(i)), Some(slots[i as usize]));
        }
        for i in (0..300).step_by(3) {
            s.remove(slots[i as usize]);
        }
        for i in 0..300 {
            let want = (i % 3 != 0).then(|| slots[i as usize]);
            assert_eq!(s.find(&key(i), hash(i)), want, "key {i}");
        }
        assert_eq!(s.len(), 200);
        // Freed slots are reused before new chunks are taken.
        let chunks = s.chunks.len();
        let slot = s.insert(entry(1000, 7)).unwrap();
        assert!(slots.contains(&slot));
        assert_eq!(s.chunks.len(), chunks);
        assert_eq!(s.find(&key(1000), 7), Some(slot));
        // Every owned position maps to an owned slot; used ones are the live entries.
        let used = (0..s.high()).filter(|&p| s.used(s.slot_at(p))).count();
        assert_eq!(used, 201);
    }

    #[test]
    fn lock_free_candidates_match_locked_lookups() {
        let (a, c) = one_shard(400);
        let hash = |i: u32| (i % 7) * 0x1000_0001 + 3;
        let mut slots = Vec::new();
        for i in 0..200 {
            slots.push(c.lock(&a).insert(entry(i, hash(i))).unwrap());
        }
        for i in 0..200u32 {
            let h = hash(i);
            let mut seen = Vec::new();
            c.candidates(&a, h, |p| seen.push(p as usize));
            // What the locked index says: hash-tag matches in the probe run
            // from the home bucket, cut at PROBE_LIMIT buckets.
            let g = c.lock(&a);
            let index = g.buckets();
            let mask = index.len() - 1;
            let mut want = Vec::new();
            let mut b = h as usize & mask;
            for _ in 0..PROBE_LIMIT {
                let v = index[b].load(Ordering::Relaxed);
                if v == 0 {
                    break;
                }
                if bucket_hash(v) == h {
                    want.push(a.entry_ptr(bucket_slot(v)) as usize);
                }
                b = (b + 1) & mask;
            }
            assert_eq!(seen, want, "key {i}");
            // The entry itself is among them whenever it sits within the limit.
            let slot = g.find(&key(i), h).expect("stored");
            assert_eq!(slots[i as usize], slot);
            let home = h as usize & mask;
            let pos = (0..index.len())
                .find(|d| bucket_slot(index[(home + d) & mask].load(Ordering::Relaxed)) == slot)
                .expect("bucket");
            assert_eq!(
                seen.contains(&(a.entry_ptr(slot) as usize)),
                pos < PROBE_LIMIT,
                "key {i}"
            );
        }
        // A flush clears the index in place: nothing to probe, nothing found,
        // and the chunks go back to the arena.
        let before = a.memory();
        c.lock(&a).reset();
        let mut n = 0;
        c.candidates(&a, hash(1), |_| n += 1);
        assert_eq!(n, 0);
        assert_eq!(c.lock(&a).find(&key(1), hash(1)), None);
        assert_eq!(c.lock(&a).high(), 0);
        // Refilling reuses the index and the returned chunks: no new memory.
        for i in 0..200 {
            c.lock(&a).insert(entry(i, hash(i))).unwrap();
        }
        assert_eq!(a.memory(), before);
        assert!(c.lock(&a).find(&key(5), hash(5)).is_some());
    }

    #[test]
    fn arena_exhaustion_is_an_error_not_a_panic() {
        let (a, c) = one_shard(4);
        let mut g = c.lock(&a);
        let mut stored = 0u32;
        for i in 0..100_000 {
            match g.insert(entry(i, i.wrapping_mul(0x9e37_79b9))) {
                Some(_) => stored += 1,
                None => break,
            }
        }
        assert!((1..100_000).contains(&stored), "stored {stored}");
        assert!(g.insert(entry(1_000_000, 1)).is_none());
        assert_eq!(g.len(), stored as usize);
    }
}
