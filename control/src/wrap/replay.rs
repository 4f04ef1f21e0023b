//! Long-form packet ids of tls-auth / tls-crypt: the send counter and the receive replay
//! window in 2.6's backtrack mode (openvpn-protocol.md §1.5, §11 items 4–5).

use std::time::{Duration, Instant};

use thiserror::Error;

/// Default `--replay-window` size (ids).
pub const DEFAULT_REPLAY_WINDOW: usize = 64;
/// Default `--replay-window` time (seconds of backtrack).
pub const DEFAULT_REPLAY_TIME: Duration = Duration::from_secs(15);
/// Largest window 2.6 allows (`MAX_SEQ_BACKTRACK`).
pub const MAX_REPLAY_WINDOW: usize = 65536;

/// The 8-byte long-form packet id in front of every wrapped control packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayId {
    /// Counter, from 1, one per transmission (retransmits and ACKs included).
    pub packet_id: u32,
    /// Unix seconds taken when the sender's counter was first used; constant afterwards.
    pub time: u32,
}

impl ReplayId {
    /// Wire bytes: `packet_id(4) || time(4)`, big-endian.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.packet_id.to_be_bytes());
        b[4..].copy_from_slice(&self.time.to_be_bytes());
        b
    }

    /// Parse the 8 wire bytes.
    pub fn from_bytes(b: [u8; 8]) -> Self {
        Self {
            packet_id: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            time: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// The sending side: one counter per tls-wrap context (per session, kept across
/// renegotiations).
#[derive(Debug, Clone)]
pub struct SendCounter {
    last: u32,
    time: u32,
}

/// The send counter reached 2^32-1. 2.6 would restart it with a newer time; a control
/// channel never sends that many packets, so we stop instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("control-channel replay packet id exhausted")]
pub struct PacketIdExhausted;

impl SendCounter {
    /// A counter whose first id will be 1, stamped with `unix_time` (seconds).
    pub fn new(unix_time: u32) -> Self {
        Self::starting_after(0, unix_time)
    }

    /// A counter whose next id is `last + 1` (e.g. [`crate::packet::EARLY_NEG_START`]
    /// for tls-crypt-v2 clients, or to continue a stateless reply's counter).
    pub fn starting_after(last: u32, unix_time: u32) -> Self {
        Self {
            last,
            time: unix_time,
        }
    }

    /// Take the next id.
    pub fn next_id(&mut self) -> Result<ReplayId, PacketIdExhausted> {
        if self.last == u32::MAX {
            return Err(PacketIdExhausted);
        }
        self.last += 1;
        Ok(ReplayId {
            packet_id: self.last,
            time: self.time,
        })
    }

    /// The last id handed out (0 if none).
    pub fn last(&self) -> u32 {
        self.last
    }
}

/// Why a replay id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReplayError {
    /// Packet id 0 is never sent.
    #[error("replay packet id 0 is invalid")]
    ZeroPacketId,
    /// Already accepted once.
    #[error("replayed packet id {0}")]
    Replayed(u32),
    /// Older than the window.
    #[error("packet id {packet_id} is older than the replay window (highest {highest})")]
    TooOld {
        /// Offending id.
        packet_id: u32,
        /// Highest id accepted so far.
        highest: u32,
    },
    /// Its time is lower than the highest seen.
    #[error("replay time {time} is older than the current {current}")]
    TimeBacktrack {
        /// Offending time.
        time: u32,
        /// Current time of the window.
        current: u32,
    },
    /// Inside the window but a newer id was accepted more than the backtrack time ago.
    #[error("packet id {0} arrived after the replay time window")]
    Expired(u32),
}

/// Receive-side replay protection, 2.6 backtrack mode: a window of ids (64) and of time
/// (15 s). A time lower than the current one is refused; a higher time restarts the window.
///
/// Time backtrack: an id older than the highest is refused once any newer accepted id was
/// accepted more than the backtrack time ago (2.6 applies this every 5 s when it reaps; we
/// apply it exactly).
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    started: bool,
    time: u32,
    highest: u32,
    /// `slots[id % len]` = when `id` was accepted, for ids in `(highest - len, highest]`.
    slots: Vec<Option<Instant>>,
    time_backtrack: Duration,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_WINDOW, DEFAULT_REPLAY_TIME)
    }
}

impl ReplayWindow {
    /// A window of `size` ids (clamped to 1..=65536) and `time_backtrack`.
    pub fn new(size: usize, time_backtrack: Duration) -> Self {
        Self {
            started: false,
            time: 0,
            highest: 0,
            slots: vec![None; size.clamp(1, MAX_REPLAY_WINDOW)],
            time_backtrack,
        }
    }

    fn slot(&self, id: u32) -> usize {
        // Window sizes are <= 65536, so the remainder always fits a usize.
        (id as usize) % self.slots.len()
    }

    /// Would `id` be accepted now? Does not change state.
    pub fn check(&self, now: Instant, id: ReplayId) -> Result<(), ReplayError> {
        if id.packet_id == 0 {
            return Err(ReplayError::ZeroPacketId);
        }
        if !self.started || id.time > self.time {
            return Ok(());
        }
        if id.time < self.time {
            return Err(ReplayError::TimeBacktrack {
                time: id.time,
                current: self.time,
            });
        }
        if id.packet_id > self.highest {
            return Ok(());
        }
        let diff = self.highest - id.packet_id;
        if diff as usize >= self.slots.len() {
            return Err(ReplayError::TooOld {
                packet_id: id.packet_id,
                highest: self.highest,
            });
        }
        if self.slots[self.slot(id.packet_id)].is_some() {
            return Err(ReplayError::Replayed(id.packet_id));
        }
        // Any newer id accepted longer ago than the backtrack time expires this one.
        for newer in (id.packet_id + 1)..=self.highest {
            if let Some(t) = self.slots[self.slot(newer)]
                && now.saturating_duration_since(t) > self.time_backtrack
            {
                return Err(ReplayError::Expired(id.packet_id));
            }
        }
        Ok(())
    }

    /// Record an accepted id. Call only after [`check`](Self::check) succeeded and the
    /// packet was authenticated.
    pub fn accept(&mut self, now: Instant, id: ReplayId) {
        let restart = !self.started
            || id.time > self.time
            || (id.packet_id > self.highest
                && id.packet_id - self.highest >= self.slots.len() as u32);
        if restart {
            self.slots.iter_mut().for_each(|s| *s = None);
            self.started = true;
            self.time = id.time;
            self.highest = id.packet_id;
        } else if id.packet_id > self.highest {
            for gone in (self.highest + 1)..=id.packet_id {
                let i = self.slot(gone);
                self.slots[i] = None;
            }
            self.highest = id.packet_id;
        }
        let i = self.slot(id.packet_id);
        self.slots[i] = Some(now);
    }

    /// [`check`](Self::check) then [`accept`](Self::accept).
    pub fn check_and_accept(&mut self, now: Instant, id: ReplayId) -> Result<(), ReplayError> {
        self.check(now, id)?;
        self.accept(now, id);
        Ok(())
    }

    /// Highest id accepted under the current time, if any.
    pub fn highest(&self) -> Option<ReplayId> {
        self.started.then_some(ReplayId {
            packet_id: self.highest,
            time: self.time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: u32, t: u32) -> ReplayId {
        ReplayId {
            packet_id: p,
            time: t,
        }
    }

    #[test]
    fn send_counter_starts_at_one_constant_time() {
        let mut c = SendCounter::new(0x6b02470c);
        assert_eq!(c.next_id(), Ok(id(1, 0x6b02470c)));
        assert_eq!(c.next_id(), Ok(id(2, 0x6b02470c)));
        assert_eq!(
            id(1, 0x6b02470c).to_bytes(),
            [0, 0, 0, 1, 0x6b, 0x02, 0x47, 0x0c]
        );
        let mut e = SendCounter::starting_after(u32::MAX - 1, 5);
        assert_eq!(e.next_id().map(|i| i.packet_id), Ok(u32::MAX));
        assert_eq!(e.next_id(), Err(PacketIdExhausted));
    }

    #[test]
    fn zero_rejected_first_accepted() {
        let now = Instant::now();
        let mut w = ReplayWindow::default();
        assert_eq!(w.check(now, id(0, 5)), Err(ReplayError::ZeroPacketId));
        assert!(w.check_and_accept(now, id(7, 5)).is_ok());
        assert_eq!(w.check(now, id(7, 5)), Err(ReplayError::Replayed(7)));
        assert_eq!(w.check(now, id(0, 9)), Err(ReplayError::ZeroPacketId));
    }

    #[test]
    fn backtrack_within_64() {
        let now = Instant::now();
        let mut w = ReplayWindow::default();
        w.check_and_accept(now, id(100, 1)).unwrap();
        // Out of order inside the window: fine once each.
        for p in [99, 37, 50, 98] {
            w.check_and_accept(now, id(p, 1)).unwrap();
            assert_eq!(w.check(now, id(p, 1)), Err(ReplayError::Replayed(p)));
        }
        assert_eq!(
            w.check(now, id(36, 1)),
            Err(ReplayError::TooOld {
                packet_id: 36,
                highest: 100
            })
        );
        // Moving forward by more than the window forgets everything older.
        w.check_and_accept(now, id(300, 1)).unwrap();
        assert!(matches!(
            w.check(now, id(100, 1)),
            Err(ReplayError::TooOld { .. })
        ));
        assert!(w.check(now, id(299, 1)).is_ok());
        assert!(w.check(now, id(237, 1)).is_ok());
        assert!(w.check(now, id(236, 1)).is_err());
    }

    #[test]
    fn time_rules() {
        let now = Instant::now();
        let mut w = ReplayWindow::default();
        w.check_and_accept(now, id(10, 1000)).unwrap();
        assert_eq!(
            w.check(now, id(11, 999)),
            Err(ReplayError::TimeBacktrack {
                time: 999,
                current: 1000
            })
        );
        // A higher time restarts the window, even with a lower id.
        w.check_and_accept(now, id(1, 1001)).unwrap();
        assert!(w.check(now, id(10, 1000)).is_err());
        assert!(w.check(now, id(2, 1001)).is_ok());
        assert_eq!(w.highest(), Some(id(1, 1001)));
    }

    #[test]
    fn time_backtrack_expires_old_ids() {
        let t0 = Instant::now();
        let mut w = ReplayWindow::default();
        w.check_and_accept(t0, id(1, 1)).unwrap();
        w.check_and_accept(t0, id(3, 1)).unwrap();
        // id 2 within 15 s: fine.
        assert!(w.check(t0 + Duration::from_secs(15), id(2, 1)).is_ok());
        // After 15 s since id 3 was seen, id 2 is no longer acceptable...
        assert_eq!(
            w.check(t0 + Duration::from_secs(16), id(2, 1)),
            Err(ReplayError::Expired(2))
        );
        // ...but new ids are.
        assert!(w.check(t0 + Duration::from_secs(16), id(4, 1)).is_ok());
    }
}
