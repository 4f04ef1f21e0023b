//! The receive replay window (openvpn-protocol.md §6.5), lock-free so that any worker may
//! check any peer's packets.
//!
//! The window is a ring of 64-bit slots. Each slot holds a 32-id block: the upper half is
//! the block number (`packet_id / 32`), the lower half a bitmap of the ids seen in it. A
//! check is one load and one compare-and-swap on the slot plus a `fetch_max` of the highest
//! id. A slot only ever moves to a newer block, so an id, once accepted, is either still
//! marked in its slot or its slot has moved on and the id is rejected as too old: no id is
//! ever accepted twice, whatever the interleaving.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::error::DataError;

/// Linux ovpn's window (2048 ids); reordering across cores needs room.
pub const DEFAULT_REPLAY_WINDOW: u32 = 2048;
/// OpenVPN's default `--replay-window` is 64; smaller than 32 is not useful.
pub const MIN_REPLAY_WINDOW: u32 = 32;
/// OpenVPN accepts `--replay-window` up to 65536.
pub const MAX_REPLAY_WINDOW: u32 = 65536;

const BLOCK_BITS: u32 = 32;

pub struct ReplayWindow {
    slots: Box<[AtomicU64]>,
    mask: u32,
    /// Ids more than this far behind the highest seen are too old.
    size: u32,
    highest: AtomicU32,
}

impl ReplayWindow {
    /// A window accepting ids up to `size` behind the highest seen (clamped to
    /// [`MIN_REPLAY_WINDOW`]..=[`MAX_REPLAY_WINDOW`]).
    pub fn new(size: u32) -> Self {
        let size = size.clamp(MIN_REPLAY_WINDOW, MAX_REPLAY_WINDOW);
        // One spare block so a partly filled oldest block never aliases the newest.
        let nslots = (size / BLOCK_BITS + 2).next_power_of_two();
        Self {
            slots: (0..nslots).map(|_| AtomicU64::new(0)).collect(),
            mask: nslots - 1,
            size,
            highest: AtomicU32::new(0),
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Highest id accepted so far.
    pub fn highest(&self) -> u32 {
        self.highest.load(Ordering::Relaxed)
    }

    /// Accepts `id` once. Call only after the packet's tag was verified, so forged ids
    /// cannot move the window.
    #[inline]
    pub fn check_and_set(&self, id: u32) -> Result<(), DataError> {
        if id == 0 {
            return Err(DataError::ZeroPacketId);
        }
        let highest = self.highest.load(Ordering::Relaxed);
        if highest > id && highest - id > self.size {
            return Err(DataError::TooOld(id));
        }
        let block = id / BLOCK_BITS;
        let bit = 1u64 << (id % BLOCK_BITS);
        let slot = &self.slots[(block & self.mask) as usize];
        let mut cur = slot.load(Ordering::Acquire);
        loop {
            let tag = (cur >> 32) as u32;
            let new = if tag == block {
                if cur & bit != 0 {
                    return Err(DataError::Replayed(id));
                }
                cur | bit
            } else if tag < block {
                (u64::from(block) << 32) | bit
            } else {
                return Err(DataError::TooOld(id));
            };
            match slot.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(seen) => cur = seen,
            }
        }
        self.highest.fetch_max(id, Ordering::Relaxed);
        Ok(())
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("size", &self.size)
            .field("highest", &self.highest())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_duplicates() {
        let w = ReplayWindow::new(64);
        assert_eq!(w.check_and_set(0), Err(DataError::ZeroPacketId));
        for id in 1..1000 {
            w.check_and_set(id).unwrap();
            assert_eq!(w.check_and_set(id), Err(DataError::Replayed(id)));
        }
    }

    #[test]
    fn reordering_inside_window_accepted_outside_rejected() {
        let w = ReplayWindow::new(64);
        w.check_and_set(100).unwrap();
        w.check_and_set(40).unwrap(); // 60 behind
        assert_eq!(w.check_and_set(35), Err(DataError::TooOld(35))); // 65 behind
        assert_eq!(w.check_and_set(40), Err(DataError::Replayed(40)));
        w.check_and_set(99).unwrap();
        w.check_and_set(101).unwrap();
    }

    #[test]
    fn big_jump_then_old_ids() {
        let w = ReplayWindow::new(2048);
        w.check_and_set(5).unwrap();
        w.check_and_set(1_000_000).unwrap();
        assert_eq!(w.check_and_set(6), Err(DataError::TooOld(6)));
        w.check_and_set(1_000_000 - 2000).unwrap();
        assert_eq!(
            w.check_and_set(1_000_000 - 2049),
            Err(DataError::TooOld(1_000_000 - 2049))
        );
        assert_eq!(w.highest(), 1_000_000);
    }

    /// Every id within `size` of the highest is accepted exactly once in any order.
    #[test]
    fn whole_window_any_order() {
        for size in [32, 64, 100, 2048] {
            let w = ReplayWindow::new(size);
            let top = 10_000u32;
            w.check_and_set(top).unwrap();
            let mut ids: Vec<u32> = (top - size..top).collect();
            ids.reverse();
            for &id in &ids {
                w.check_and_set(id).unwrap();
            }
            for &id in &ids {
                assert_eq!(w.check_and_set(id), Err(DataError::Replayed(id)));
            }
        }
    }

    #[test]
    fn concurrent_checks_accept_each_id_once() {
        use std::sync::Arc;
        const N: u32 = 20_000;
        let w = Arc::new(ReplayWindow::new(4096));
        let hits: Arc<Vec<AtomicU32>> = Arc::new((0..=N + 8).map(|_| AtomicU32::new(0)).collect());
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let (w, hits) = (w.clone(), hits.clone());
                std::thread::spawn(move || {
                    // Every thread offers every id 1..=N exactly once, odd threads with each
                    // run of 8 reversed. Whichever thread leads offers each id while it is
                    // at the front of the window, so each is accepted exactly once.
                    for i in 0..N {
                        let id = if t % 2 == 0 { i + 1 } else { (i ^ 7) + 1 };
                        if w.check_and_set(id).is_ok() {
                            hits[id as usize].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut accepted = 0;
        for (id, h) in hits.iter().enumerate() {
            let h = h.load(Ordering::Relaxed);
            assert!(h <= 1, "id {id} accepted {h} times");
            accepted += h;
        }
        assert_eq!(accepted, N);
    }
}
