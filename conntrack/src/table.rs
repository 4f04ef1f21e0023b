//! One shard of the connection table: a slab of entries and a hash index.
//!
//! Entries live in one contiguous slab per shard, addressed by slot number
//! from the slab pointer that sits next to the shard's lock (no indirection,
//! no extra cache miss). The slab grows in steps of 32 entries (a shard holds
//! a few hundred, so a growth copies at most some tens of kilobytes and waste
//! stays under 32 entries per shard); free slots are chained through their
//! `id` field. The index is an open-addressing
//! table of 8-byte buckets (`hash32 << 32 | slot + 1`, 0 = empty) with linear
//! probing and backward-shift deletion: a lookup reads one bucket line and
//! then the entry. It grows by doubling at 3/4 load; a shard holds a few
//! hundred entries, so a rehash takes microseconds.
//!
//! The index's address and mask are also published outside the lock
//! ([`Hints`]) so a batch can prefetch bucket lines before taking locks. Hints
//! are only ever used as prefetch addresses, never dereferenced.

use crate::entry::Entry;
use crate::frag::FragTable;
use crate::tuple::FlowKey;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Slab growth step, in entries.
pub(crate) const GROW: usize = 32;
const NIL: u32 = u32::MAX;
const MIN_BUCKETS: usize = 8;

/// Where a shard's index lives, for prefetching without the lock. May be stale.
pub(crate) struct Hints {
    base: AtomicPtr<AtomicU64>,
    mask: AtomicUsize,
}

impl Hints {
    pub(crate) fn new() -> Hints {
        Hints {
            base: AtomicPtr::new(std::ptr::null_mut()),
            mask: AtomicUsize::new(0),
        }
    }

    /// Address of the bucket where a lookup for `h` starts (for prefetching only).
    #[inline]
    pub(crate) fn bucket_addr(&self, h: u32) -> *const u8 {
        let base = self.base.load(Ordering::Relaxed);
        let mask = self.mask.load(Ordering::Relaxed);
        base.wrapping_add(h as usize & mask) as *const u8
    }
}

pub(crate) struct Shard {
    index: Box<[AtomicU64]>,
    mask: usize,
    slab: Vec<Entry>,
    free: u32,
    /// Slots ever handed out; GC scans `0..high`.
    high: u32,
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
    pub(crate) fn new(frag_cap: usize, seed: u64) -> Shard {
        Shard {
            index: Box::new([]),
            mask: 0,
            slab: Vec::new(),
            free: NIL,
            high: 0,
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

    pub(crate) fn high(&self) -> u32 {
        self.high
    }

    #[inline]
    pub(crate) fn get(&self, slot: u32) -> &Entry {
        &self.slab[slot as usize]
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, slot: u32) -> &mut Entry {
        &mut self.slab[slot as usize]
    }

    #[inline]
    pub(crate) fn find(&self, key: &FlowKey, h: u32) -> Option<u32> {
        if self.index.is_empty() {
            return None;
        }
        let mut i = h as usize & self.mask;
        loop {
            let v = self.index[i].load(Ordering::Relaxed);
            if v == 0 {
                return None;
            }
            if bucket_hash(v) == h {
                let slot = bucket_slot(v);
                if self.get(slot).key == *key {
                    return Some(slot);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Addresses of the entries a lookup for `h` will compare (hash tags
    /// match), without reading the entries: for prefetching them.
    #[inline]
    pub(crate) fn candidates(&self, h: u32, mut f: impl FnMut(*const u8)) {
        if self.index.is_empty() {
            return;
        }
        let mut i = h as usize & self.mask;
        loop {
            let v = self.index[i].load(Ordering::Relaxed);
            if v == 0 {
                return;
            }
            if bucket_hash(v) == h
                && let Some(e) = self.slab.get(bucket_slot(v) as usize)
            {
                f(e as *const Entry as *const u8);
            }
            i = (i + 1) & self.mask;
        }
    }

    fn place(index: &[AtomicU64], mask: usize, v: u64) {
        let mut i = bucket_hash(v) as usize & mask;
        while index[i].load(Ordering::Relaxed) != 0 {
            i = (i + 1) & mask;
        }
        index[i].store(v, Ordering::Relaxed);
    }

    fn grow(&mut self, hints: &Hints) {
        let n = (self.index.len() * 2).max(MIN_BUCKETS);
        let index: Box<[AtomicU64]> = (0..n).map(|_| AtomicU64::new(0)).collect();
        for b in self.index.iter() {
            let v = b.load(Ordering::Relaxed);
            if v != 0 {
                Self::place(&index, n - 1, v);
            }
        }
        self.index = index;
        self.mask = n - 1;
        hints
            .base
            .store(self.index.as_ptr() as *mut AtomicU64, Ordering::Relaxed);
        hints.mask.store(self.mask, Ordering::Relaxed);
    }

    /// Store an entry (its `hash` must be set); returns its slot.
    pub(crate) fn insert(&mut self, e: Entry, hints: &Hints) -> u32 {
        if (self.len as usize + 1) * 4 > self.index.len() * 3 {
            self.grow(hints);
        }
        let slot = if self.free != NIL {
            let s = self.free;
            self.free = self.get(s).id;
            s
        } else {
            if self.slab.len() == self.slab.capacity() {
                self.slab.reserve_exact(GROW);
            }
            self.slab.push(Entry::default());
            self.high += 1;
            self.high - 1
        };
        let h = e.hash;
        *self.get_mut(slot) = e;
        Self::place(
            &self.index,
            self.mask,
            u64::from(h) << 32 | u64::from(slot + 1),
        );
        self.len += 1;
        slot
    }

    /// Remove the entry in `slot`, returning it.
    pub(crate) fn remove(&mut self, slot: u32) -> Entry {
        let e = *self.get(slot);
        let want = u64::from(e.hash) << 32 | u64::from(slot + 1);
        let mask = self.mask;
        let mut i = e.hash as usize & mask;
        // The bucket exists: every stored entry has one.
        while self.index[i].load(Ordering::Relaxed) != want {
            i = (i + 1) & mask;
        }
        // Backward-shift deletion keeps probe sequences unbroken without tombstones.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let v = self.index[j].load(Ordering::Relaxed);
            if v == 0 {
                break;
            }
            let home = bucket_hash(v) as usize & mask;
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.index[hole].store(v, Ordering::Relaxed);
                hole = j;
            }
        }
        self.index[hole].store(0, Ordering::Relaxed);

        let free = self.free;
        let s = self.get_mut(slot);
        *s = Entry::default();
        s.id = free;
        self.free = slot;
        self.len -= 1;
        e
    }

    /// Whether `slot` holds an entry.
    #[inline]
    pub(crate) fn used(&self, slot: u32) -> bool {
        slot < self.high && !self.get(slot).key.is_empty()
    }

    /// Drop every entry and give the memory back.
    pub(crate) fn reset(&mut self, hints: &Hints) {
        hints.base.store(std::ptr::null_mut(), Ordering::Relaxed);
        hints.mask.store(0, Ordering::Relaxed);
        self.index = Box::new([]);
        self.mask = 0;
        self.slab = Vec::new();
        self.free = NIL;
        self.high = 0;
        self.len = 0;
        self.gc_cursor = 0;
        self.evict_cursor = 0;
        self.frags.clear();
    }

    /// Heap bytes held by this shard.
    pub(crate) fn memory(&self) -> usize {
        self.slab.capacity() * std::mem::size_of::<Entry>()
            + self.index.len() * std::mem::size_of::<AtomicU64>()
            + self.frags.memory()
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

    #[test]
    fn insert_find_remove_with_colliding_hashes() {
        let hints = Hints::new();
        let mut s = Shard::new(4, 0);
        // Few distinct hashes: long probe runs, wrap-around, backward shifts.
        let hash = |i: u32| (i % 5) * 0x1000_0001 + 6;
        let mut slots = Vec::new();
        for i in 0..300 {
            let e = Entry {
                key: key(i),
                hash: hash(i),
                ..Entry::default()
            };
            slots.push(s.insert(e, &hints));
        }
        for i in 0..300 {
            assert_eq!(s.find(&key(i), hash(i)), Some(slots[i as usize]));
        }
        for i in (0..300).step_by(3) {
            s.remove(slots[i as usize]);
        }
        for i in 0..300 {
            let want = if i % 3 == 0 {
                None
            } else {
                Some(slots[i as usize])
            };
            assert_eq!(s.find(&key(i), hash(i)), want, "key {i}");
        }
        assert_eq!(s.len(), 200);
        // Freed slots are reused.
        let e = Entry {
            key: key(1000),
            hash: 7,
            ..Entry::default()
        };
        let slot = s.insert(e, &hints);
        assert!(slot < 300);
        assert_eq!(s.find(&key(1000), 7), Some(slot));
    }
}
