//! The shard lock: a spin lock whose release is a plain store.
//!
//! A shard is held for a few tens of nanoseconds per packet. `std`'s mutex
//! releases with an atomic exchange (it must see whether a waiter sleeps),
//! a locked instruction that also waits for every earlier store to drain;
//! measured on the established-flow benchmark it was the costliest single
//! instruction of the path. Here release is a `Release` store. Waiters spin
//! on a read (no cache-line ping-pong), and after [`SPINS`] rounds yield the
//! CPU each round, so a holder that was preempted (or one walking a whole
//! shard for a listing) costs waiters scheduling turns, not a busy core.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// Spin rounds before a waiter starts yielding.
const SPINS: u32 = 128;

/// `repr(C)` with the lock word first: callers lay out a lock and the data
/// a lookup reads in one cache line (Rust's default layout would move the
/// byte behind `value`, into another line).
#[repr(C)]
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one thread at a time (see
// `lock`), so sharing the lock between threads is sound whenever moving the
// value between them is.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: owning the lock is owning the value.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// Address of the lock word (layout tests).
    #[cfg(test)]
    pub(crate) fn lock_word(&self) -> *const AtomicBool {
        &self.locked
    }

    pub(crate) const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
        SpinGuard { lock: self }
    }

    #[cold]
    fn lock_slow(&self) {
        let mut rounds = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if rounds < SPINS {
                    std::hint::spin_loop();
                    rounds += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

/// Access to the value while the lock is held; releases on drop.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard exists only while the lock is held by its
        // thread, so no other reference to the value is live.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this reference unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_across_threads() {
        let l = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        // A read-modify-write in two steps: lost updates if two
                        // threads ever held the lock together.
                        let mut g = l.lock();
                        let v = *g;
                        std::hint::black_box(&v);
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*l.lock(), 400_000);
    }
}
