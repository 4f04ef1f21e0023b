//! Which device key slot holds which installed key. Pure bookkeeping, so it is tested without
//! a GPU: slots are pinned while a batch uses them, evicted least-recently-used when the table
//! is full, and a forgotten key (DEL_KEY) is wiped as soon as no batch in flight uses it.

use std::collections::HashMap;

/// Result of looking a key up for a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Already expanded in this slot.
    Hit(u32),
    /// Assigned this slot; the caller must expand the key into it before launching.
    Install(u32),
    /// Every slot is pinned by batches in flight: run this operation on the CPU.
    Full,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    id: Option<u64>,
    pins: u32,
    last_use: u64,
    /// Forgotten while pinned: wipe when the last pin goes.
    dead: bool,
}

#[derive(Debug)]
pub(crate) struct KeyCache {
    index: HashMap<u64, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    tick: u64,
    pub evictions: u64,
}

impl KeyCache {
    pub(crate) fn new(capacity: u32) -> Self {
        Self {
            index: HashMap::with_capacity(capacity as usize),
            slots: vec![Slot::default(); capacity as usize],
            free: (0..capacity).rev().collect(),
            tick: 0,
            evictions: 0,
        }
    }

    /// Starts a new batch (for LRU ordering).
    pub(crate) fn next_batch(&mut self) {
        self.tick += 1;
    }

    /// Finds or assigns the slot for key `id` and pins it for the current batch.
    pub(crate) fn lookup(&mut self, id: u64) -> Lookup {
        if let Some(&s) = self.index.get(&id) {
            let slot = &mut self.slots[s as usize];
            slot.pins += 1;
            slot.last_use = self.tick;
            return Lookup::Hit(s);
        }
        let s = match self.free.pop() {
            Some(s) => s,
            None => {
                // Least recently used among unpinned, live slots.
                let victim = self
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.pins == 0 && !s.dead && s.id.is_some())
                    .min_by_key(|(_, s)| s.last_use)
                    .map(|(i, _)| i as u32);
                let Some(v) = victim else {
                    return Lookup::Full;
                };
                if let Some(old) = self.slots[v as usize].id.take() {
                    self.index.remove(&old);
                }
                self.evictions += 1;
                v
            }
        };
        self.index.insert(id, s);
        self.slots[s as usize] = Slot {
            id: Some(id),
            pins: 1,
            last_use: self.tick,
            dead: false,
        };
        Lookup::Install(s)
    }

    /// Undoes an `Install` whose expansion failed: the slot goes back to the free list.
    pub(crate) fn abort_install(&mut self, s: u32) {
        if let Some(id) = self.slots[s as usize].id.take() {
            self.index.remove(&id);
        }
        self.slots[s as usize] = Slot::default();
        self.free.push(s);
    }

    /// Drops one pin. Returns true when the slot must be wiped now (forgotten while pinned).
    pub(crate) fn unpin(&mut self, s: u32) -> bool {
        let slot = &mut self.slots[s as usize];
        slot.pins = slot.pins.saturating_sub(1);
        if slot.pins == 0 && slot.dead {
            *slot = Slot::default();
            self.free.push(s);
            return true;
        }
        false
    }

    /// Forgets key `id` (DEL_KEY). Returns the slot to wipe now, if no batch pins it; a pinned
    /// slot is wiped by the `unpin` that releases it.
    pub(crate) fn forget(&mut self, id: u64) -> Option<u32> {
        let s = self.index.remove(&id)?;
        let slot = &mut self.slots[s as usize];
        slot.id = None;
        if slot.pins == 0 {
            *slot = Slot::default();
            self.free.push(s);
            Some(s)
        } else {
            slot.dead = true;
            None
        }
    }

    /// Number of keys installed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_install_and_lru_eviction() {
        let mut c = KeyCache::new(2);
        c.next_batch();
        let Lookup::Install(a) = c.lookup(10) else {
            panic!()
        };
        assert_eq!(c.lookup(10), Lookup::Hit(a));
        let Lookup::Install(b) = c.lookup(20) else {
            panic!()
        };
        assert_ne!(a, b);
        // Everything pinned: no room.
        assert_eq!(c.lookup(30), Lookup::Full);
        for s in [a, a, b] {
            assert!(!c.unpin(s));
        }
        c.next_batch();
        assert_eq!(c.lookup(20), Lookup::Hit(b)); // 20 now more recent than 10
        assert!(!c.unpin(b));
        c.next_batch();
        assert_eq!(c.lookup(30), Lookup::Install(a)); // 10 was least recently used
        assert_eq!(c.evictions, 1);
        assert!(!c.unpin(a));
        c.next_batch();
        assert!(matches!(c.lookup(10), Lookup::Install(_)));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn forget_wipes_now_or_after_the_last_batch() {
        let mut c = KeyCache::new(4);
        c.next_batch();
        let Lookup::Install(a) = c.lookup(1) else {
            panic!()
        };
        let Lookup::Install(b) = c.lookup(2) else {
            panic!()
        };
        assert!(!c.unpin(a));
        // Unpinned: wipe immediately, slot reusable.
        assert_eq!(c.forget(1), Some(a));
        assert_eq!(c.forget(1), None);
        // Pinned: wiped when released, and never handed out meanwhile.
        assert_eq!(c.forget(2), None);
        assert!(matches!(c.lookup(2), Lookup::Install(s) if s != b));
        assert!(c.unpin(b));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn abort_install_frees_the_slot() {
        let mut c = KeyCache::new(1);
        let Lookup::Install(a) = c.lookup(5) else {
            panic!()
        };
        c.abort_install(a);
        assert_eq!(c.len(), 0);
        assert_eq!(c.lookup(6), Lookup::Install(a));
    }
}
