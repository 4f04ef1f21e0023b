//! One shard of the connection table: a slab of entries and a hash index.
//!
//! Entries live in fixed chunks of 64 that are never moved or freed while
//! the shard lives (no reallocation pause, stable slot numbers); free slots
//! are chained through their `id` field. The index is a SwissTable of 4-byte
//! slot numbers keyed by the entry's stored hash, so growing it rehashes
//! small integers, never entries. A shard holds a few hundred entries, so
//! even its rehash is short.

use crate::entry::Entry;
use crate::frag::FragTable;
use crate::tuple::FlowKey;
use hashbrown::HashTable;

pub(crate) const CHUNK: usize = 64;
const NIL: u32 = u32::MAX;

/// The index hash: the stored 32 bits in both halves, so SwissTable's control
/// byte (top 7 bits) and bucket (low bits) both come from the key's hash.
#[inline]
fn widen(h: u32) -> u64 {
    (u64::from(h) << 32) | u64::from(h)
}

pub(crate) struct Shard {
    index: HashTable<u32>,
    chunks: Vec<Box<[Entry]>>,
    free: u32,
    /// Slots ever handed out; GC scans `0..high`.
    high: u32,
    len: u32,
    pub(crate) next_id: u32,
    pub(crate) gc_cursor: u32,
    pub(crate) evict_cursor: u32,
    pub(crate) frags: FragTable,
}

impl Shard {
    pub(crate) fn new(frag_cap: usize, seed: u64) -> Shard {
        Shard {
            index: HashTable::new(),
            chunks: Vec::new(),
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
        let s = slot as usize;
        &self.chunks[s / CHUNK][s % CHUNK]
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, slot: u32) -> &mut Entry {
        let s = slot as usize;
        &mut self.chunks[s / CHUNK][s % CHUNK]
    }

    #[inline]
    pub(crate) fn find(&self, key: &FlowKey, h: u32) -> Option<u32> {
        let chunks = &self.chunks;
        self.index
            .find(widen(h), |&s| {
                let e = &chunks[s as usize / CHUNK][s as usize % CHUNK];
                e.hash == h && e.key == *key
            })
            .copied()
    }

    /// Store an entry (its `hash` must be set); returns its slot.
    pub(crate) fn insert(&mut self, e: Entry) -> u32 {
        let slot = if self.free != NIL {
            let s = self.free;
            self.free = self.get(s).id;
            s
        } else {
            if self.high as usize == self.chunks.len() * CHUNK {
                self.chunks
                    .push(vec![Entry::default(); CHUNK].into_boxed_slice());
            }
            self.high += 1;
            self.high - 1
        };
        let h = e.hash;
        *self.get_mut(slot) = e;
        let chunks = &self.chunks;
        self.index.insert_unique(widen(h), slot, |&s| {
            widen(chunks[s as usize / CHUNK][s as usize % CHUNK].hash)
        });
        self.len += 1;
        slot
    }

    /// Remove the entry in `slot`, returning it.
    pub(crate) fn remove(&mut self, slot: u32) -> Entry {
        let e = *self.get(slot);
        if let Ok(o) = self.index.find_entry(widen(e.hash), |&s| s == slot) {
            o.remove();
        }
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
    pub(crate) fn reset(&mut self) {
        self.index = HashTable::new();
        self.chunks = Vec::new();
        self.free = NIL;
        self.high = 0;
        self.len = 0;
        self.gc_cursor = 0;
        self.evict_cursor = 0;
        self.frags.clear();
    }

    /// Heap bytes held by this shard.
    pub(crate) fn memory(&self) -> usize {
        self.chunks.len() * CHUNK * std::mem::size_of::<Entry>()
            + self.chunks.capacity() * std::mem::size_of::<Box<[Entry]>>()
            + self.index.allocation_size()
            + self.frags.memory()
    }
}
