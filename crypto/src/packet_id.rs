//! The per-key send counter (openvpn-protocol.md §6.5): ids start at 1, a nonce is never
//! reused, the control process is told to renegotiate once half the space is used.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::DataError;

/// At this packet-id the key should be replaced: the daemon raises ROTATE_KEY once.
pub const ROTATE_THRESHOLD: u32 = 1 << 31;

/// Packet-ids handed out by one [`SendCounter::reserve`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIdReservation {
    /// The ids, all valid (1..=u32::MAX).
    pub ids: Range<u64>,
    /// True for exactly one reservation per key: the one that crossed [`ROTATE_THRESHOLD`].
    pub rotate_now: bool,
}

/// A lock-free send counter shared by every worker that encrypts with the key. One atomic
/// add reserves a whole batch of ids.
#[derive(Debug, Default)]
pub struct SendCounter {
    /// The last id handed out (0 = none yet). 64-bit so it never wraps past u32::MAX.
    last: AtomicU64,
}

impl SendCounter {
    pub const fn new() -> Self {
        Self {
            last: AtomicU64::new(0),
        }
    }

    /// Starts after `last` (for tests of the exhaustion paths).
    pub const fn starting_after(last: u32) -> Self {
        Self {
            last: AtomicU64::new(last as u64),
        }
    }

    /// The next packet-id, or an error once 2^32-1 has been used (never a reuse).
    #[inline]
    pub fn next(&self) -> Result<(u32, bool), DataError> {
        let r = self.reserve(1)?;
        Ok((r.ids.start as u32, r.rotate_now))
    }

    /// Reserves `n` consecutive ids with one atomic operation. If fewer than `n` remain, the
    /// remaining ones are returned (possibly none, which is an error).
    #[inline]
    pub fn reserve(&self, n: u32) -> Result<PacketIdReservation, DataError> {
        let n = u64::from(n.max(1));
        let prev = self.last.fetch_add(n, Ordering::Relaxed);
        let start = prev + 1;
        let end = (start + n).min(u64::from(u32::MAX) + 1);
        if start > u64::from(u32::MAX) {
            // Keep the counter saturated far below u64 overflow.
            self.last.store(u64::from(u32::MAX), Ordering::Relaxed);
            return Err(DataError::PacketIdExhausted);
        }
        let t = u64::from(ROTATE_THRESHOLD);
        Ok(PacketIdReservation {
            ids: start..end,
            rotate_now: start <= t && t < end,
        })
    }

    /// Ids used so far.
    pub fn used(&self) -> u64 {
        self.last.load(Ordering::Relaxed).min(u64::from(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_one() {
        let c = SendCounter::new();
        assert_eq!(c.next().unwrap(), (1, false));
        assert_eq!(c.next().unwrap(), (2, false));
        let r = c.reserve(10).unwrap();
        assert_eq!(r.ids, 3..13);
    }

    #[test]
    fn rotate_signal_once_at_threshold() {
        let c = SendCounter::starting_after(ROTATE_THRESHOLD - 3);
        assert!(!c.reserve(2).unwrap().rotate_now); // ids T-2, T-1
        assert!(c.reserve(4).unwrap().rotate_now); // T .. T+3
        assert!(!c.reserve(4).unwrap().rotate_now);
    }

    #[test]
    fn refuses_past_u32_max_never_reuses() {
        let c = SendCounter::starting_after(u32::MAX - 2);
        let r = c.reserve(5).unwrap();
        assert_eq!(r.ids, u64::from(u32::MAX) - 1..u64::from(u32::MAX) + 1);
        assert_eq!(c.next(), Err(DataError::PacketIdExhausted));
        assert_eq!(c.next(), Err(DataError::PacketIdExhausted));
        assert_eq!(c.used(), u64::from(u32::MAX));
    }
}
