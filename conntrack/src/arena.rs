//! The memory behind a tracker's table: one reservation of address space for
//! entries and one for hash indexes, mapped once, backed by huge pages where
//! the kernel allows it (`MADV_HUGEPAGE`).
//!
//! Why not the heap: at a million flows the table is some 200 MB, read at
//! random. With 4 KiB pages nearly every packet misses the TLB twice (bucket
//! and entry), and in a virtual machine a TLB miss walks two sets of page
//! tables; on the project's VM a random read of 256 MB costs 182 ns with
//! 4 KiB pages and 117 ns with 2 MiB ones. Huge pages need large, aligned,
//! contiguous memory; a shard's slab is a few tens of kilobytes, so shards
//! take their memory in chunks from one region instead.
//!
//! * Entries: an array of [`Entry`] addressed by a global slot number.
//!   Shards take chunks of [`CHUNK`] consecutive slots (bump allocation, so
//!   the memory in use stays one dense prefix of the region) and give them
//!   back on flush; a chunk belongs to one shard at a time, and only that
//!   shard, under its lock, touches its entries.
//! * Indexes: an array of 8-byte buckets. Each shard gets a block sized for
//!   its share of `max_entries` when the tracker is made; a shard that
//!   outgrows it (far above the average: the keyed hash spreads flows
//!   evenly) takes a block twice the size from the rest of the region and
//!   puts the old one on a free list. Buckets are only ever read and written
//!   as atomics, and the region stays mapped while the arena lives, which is
//!   what lets a batch read a bucket without the lock to find an entry to
//!   prefetch (a stale or reused block only gives a useless prefetch address).
//!
//! Untouched pages cost nothing (`MAP_NORESERVE`); the regions are sized with
//! headroom (twice what `max_entries` needs) so a shard never waits for
//! memory, and running out of it is handled like a full table.

use crate::entry::Entry;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Entries per chunk: the unit a shard's slab grows by.
pub(crate) const CHUNK: usize = 16;
/// Smallest index block, in buckets (one cache line).
pub(crate) const MIN_BUCKETS: usize = 8;

/// A private anonymous mapping, unmapped on drop.
struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Region is plain memory owned by the arena; what may be accessed
// from which thread is ruled by the arena's users (shard locks, atomics).
unsafe impl Send for Region {}
// SAFETY: as above; the Region itself is never mutated after creation.
unsafe impl Sync for Region {}

impl Region {
    fn map(len: usize) -> std::io::Result<Region> {
        let len = len.max(1);
        // SAFETY: a fresh anonymous private mapping at an address the kernel
        // picks; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: [p, p + len) is the mapping just made. The advice only
        // changes how the kernel backs it; failure (THP off or absent) is fine.
        unsafe {
            libc::madvise(p, len, libc::MADV_HUGEPAGE);
        }
        let ptr = NonNull::new(p as *mut u8).ok_or_else(std::io::Error::last_os_error)?;
        Ok(Region { ptr, len })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; nothing borrows
        // it any more (the arena that owns it is being dropped).
        unsafe {
            libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len);
        }
    }
}

/// An index block: where its buckets start and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    /// First bucket, counted from the start of the index region.
    pub start: usize,
    /// Bucket count (a power of two, at least [`MIN_BUCKETS`]).
    pub len: usize,
}

/// Entry and index memory of one tracker.
pub(crate) struct Arena {
    entries: Region,
    /// Chunks the entry region holds.
    chunk_cap: usize,
    /// Chunks handed out so far (the dense prefix in use).
    next_chunk: AtomicUsize,
    /// Chunks given back, for reuse before the prefix grows.
    free_chunks: Mutex<Vec<u32>>,
    free_chunk_count: AtomicUsize,
    index: Region,
    /// Buckets the index region holds.
    bucket_cap: usize,
    /// Buckets handed out so far.
    next_bucket: AtomicUsize,
    /// Blocks given back, by log2 of their size.
    free_blocks: Mutex<Vec<Vec<usize>>>,
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("chunk_cap", &self.chunk_cap)
            .field("next_chunk", &self.next_chunk)
            .field("bucket_cap", &self.bucket_cap)
            .field("next_bucket", &self.next_bucket)
            .finish()
    }
}

/// Buckets of a shard's first index block: its share of `max_entries` at
/// 3/4 load, rounded up to a power of two.
pub(crate) fn initial_buckets(max_entries: usize, shards: usize) -> usize {
    let share = max_entries.div_ceil(shards.max(1));
    (share * 4).div_ceil(3).next_power_of_two().max(MIN_BUCKETS)
}

impl Arena {
    /// Reserve memory for `max_entries` entries in `shards` shards (with
    /// headroom) and give every shard its first index block, returned in
    /// shard order.
    pub(crate) fn new(max_entries: usize, shards: usize) -> std::io::Result<(Arena, Vec<Block>)> {
        let chunk_cap = 2 * (max_entries.div_ceil(CHUNK) + shards);
        let first = initial_buckets(max_entries, shards);
        let bucket_cap = 3 * shards * first;
        let entries = Region::map(chunk_cap * CHUNK * std::mem::size_of::<Entry>())?;
        let index = Region::map(bucket_cap * std::mem::size_of::<AtomicU64>())?;
        let arena = Arena {
            entries,
            chunk_cap,
            next_chunk: AtomicUsize::new(0),
            free_chunks: Mutex::new(Vec::new()),
            free_chunk_count: AtomicUsize::new(0),
            index,
            bucket_cap,
            next_bucket: AtomicUsize::new(shards * first),
            free_blocks: Mutex::new(Vec::new()),
        };
        let blocks = (0..shards)
            .map(|i| Block {
                start: i * first,
                len: first,
            })
            .collect();
        Ok((arena, blocks))
    }

    /// Slots the entry region holds (every slot number is below this).
    pub(crate) fn slot_cap(&self) -> usize {
        self.chunk_cap * CHUNK
    }

    /// Address of slot `slot`'s entry. Pointer arithmetic only: no access.
    #[inline]
    pub(crate) fn entry_ptr(&self, slot: u32) -> *mut Entry {
        (self.entries.ptr.as_ptr() as *mut Entry).wrapping_add(slot as usize)
    }

    /// Whether `p` points into the index region, at a bucket.
    #[inline]
    pub(crate) fn index_contains(&self, p: *const AtomicU64) -> bool {
        let base = self.index.ptr.as_ptr() as usize;
        let a = p as usize;
        a >= base
            && a < base + self.bucket_cap * std::mem::size_of::<AtomicU64>()
            && (a - base).is_multiple_of(std::mem::size_of::<AtomicU64>())
    }

    /// The buckets of `b`.
    #[inline]
    pub(crate) fn buckets(&self, b: Block) -> &[AtomicU64] {
        assert!(
            b.start + b.len <= self.bucket_cap,
            "index block out of range"
        );
        // SAFETY: in bounds of the index region (checked above), which is
        // mapped, zero-initialised and aligned for u64 while `self` lives;
        // AtomicU64 has u64's layout and any bit pattern is valid; all access
        // goes through atomics, so shared slices may overlap other readers.
        unsafe {
            std::slice::from_raw_parts(
                (self.index.ptr.as_ptr() as *const AtomicU64).add(b.start),
                b.len,
            )
        }
    }

    /// A fresh chunk (its first slot), or `None` when the region is used up.
    /// The caller initialises its entries.
    pub(crate) fn take_chunk(&self) -> Option<u32> {
        if self.free_chunk_count.load(Ordering::Relaxed) > 0 {
            let mut free = self
                .free_chunks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(c) = free.pop() {
                self.free_chunk_count.store(free.len(), Ordering::Relaxed);
                return Some(c * CHUNK as u32);
            }
        }
        let c = self
            .next_chunk
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.chunk_cap).then_some(n + 1)
            })
            .ok()?;
        Some((c * CHUNK) as u32)
    }

    /// Give chunks (by first slot) back; their owner has stopped using them.
    pub(crate) fn give_chunks(&self, first_slots: &[u32]) {
        if first_slots.is_empty() {
            return;
        }
        let mut free = self
            .free_chunks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        free.extend(first_slots.iter().map(|s| s / CHUNK as u32));
        self.free_chunk_count.store(free.len(), Ordering::Relaxed);
    }

    /// A zeroed index block of `len` buckets, or `None` when the region is used up.
    pub(crate) fn take_block(&self, len: usize) -> Option<Block> {
        let class = len.trailing_zeros() as usize;
        let reused = {
            let mut free = self
                .free_blocks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            free.get_mut(class).and_then(Vec::pop)
        };
        let start = match reused {
            Some(s) => s,
            None => self
                .next_bucket
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n + len <= self.bucket_cap).then_some(n + len)
                })
                .ok()?,
        };
        let b = Block { start, len };
        for x in self.buckets(b) {
            x.store(0, Ordering::Relaxed);
        }
        Some(b)
    }

    /// Give an index block back (lock-free readers may still look at it).
    pub(crate) fn give_block(&self, b: Block) {
        let class = b.len.trailing_zeros() as usize;
        let mut free = self
            .free_blocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if free.len() <= class {
            free.resize_with(class + 1, Vec::new);
        }
        free[class].push(b.start);
    }

    /// Bytes of both regions in use or held for reuse (what the table has
    /// touched, give or take the last huge page).
    pub(crate) fn memory(&self) -> usize {
        self.next_chunk.load(Ordering::Relaxed) * CHUNK * std::mem::size_of::<Entry>()
            + self.next_bucket.load(Ordering::Relaxed) * std::mem::size_of::<AtomicU64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_dense_and_reused() {
        let (a, blocks) = Arena::new(100, 4).unwrap();
        assert_eq!(blocks.len(), 4);
        assert!(
            blocks
                .windows(2)
                .all(|w| w[0].start + w[0].len == w[1].start)
        );
        let c: Vec<u32> = (0..3).map(|_| a.take_chunk().unwrap()).collect();
        assert_eq!(c, vec![0, CHUNK as u32, 2 * CHUNK as u32]);
        a.give_chunks(&c[1..2]);
        assert_eq!(a.take_chunk(), Some(CHUNK as u32));
        assert_eq!(a.take_chunk(), Some(3 * CHUNK as u32));
        // The region runs out: None, not a panic.
        while a.take_chunk().is_some() {}
        assert!(a.take_chunk().is_none());
        assert!(a.slot_cap() >= 2 * 100);
    }

    #[test]
    fn blocks_are_zeroed_and_recycled() {
        let (a, blocks) = Arena::new(1000, 8).unwrap();
        let b0 = blocks[0];
        assert!(b0.len >= MIN_BUCKETS && b0.len.is_power_of_two());
        a.buckets(b0)[1].store(7, Ordering::Relaxed);
        let big = a.take_block(b0.len * 2).unwrap();
        assert!(
            a.buckets(big)
                .iter()
                .all(|x| x.load(Ordering::Relaxed) == 0)
        );
        a.give_block(b0);
        let again = a.take_block(b0.len).unwrap();
        assert_eq!(again, b0);
        assert_eq!(a.buckets(again)[1].load(Ordering::Relaxed), 0);
        assert!(a.index_contains(a.buckets(again).as_ptr()));
        assert!(!a.index_contains(std::ptr::null()));
        while a.take_block(b0.len * 4).is_some() {}
        assert!(a.take_block(b0.len * 4).is_none());
    }
}
