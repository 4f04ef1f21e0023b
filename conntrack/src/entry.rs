//! One tracked connection as stored in the table.
//!
//! Plain data, `Copy`, no pointers: entries live in fixed chunks of a shard's
//! slab and are copied out for listing. 192 bytes, three cache lines (see
//! [`Entry`]); a packet of an established connection touches the first two.

use crate::ctx::NO_PEER;
use crate::packet::Family;
use crate::snapshot::ConnSnapshot;
use crate::tcp::{TcpConn, TcpState};
use crate::tuple::{self, CtDir, FlowKey};
use crate::wire;

pub(crate) const S_ORIG_IS_A: u8 = 0x01;
pub(crate) const S_SEEN_REPLY: u8 = 0x02;
pub(crate) const S_ASSURED: u8 = 0x04;

/// Laid out in three cache lines so that a packet of an established
/// connection, TCP or not, reads and writes only the first two:
/// 1. key, timer, id, status and the packet counters' low bits;
/// 2. the TCP tracker and the byte counters' low bits;
/// 3. what only new connections, listings and the rare counter carry touch.
///
/// Counters are split: a packet adds to the low part in line 1 or 2 and
/// carries into the high part in line 3 when it wraps (every 65 536 packets,
/// every 4 GiB), so totals are full 64-bit values without a third line per
/// packet.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub(crate) struct Entry {
    // Line 1.
    pub key: FlowKey,
    /// Milliseconds, the tracker's clock.
    pub last_seen: u64,
    /// Expiry, in milliseconds after `last_seen` (timeouts are at most
    /// [`crate::config::Timeouts::MAX`] seconds, so this fits).
    pub ttl_ms: u32,
    /// Connection id; the free-list link while the slot is empty.
    pub id: u32,
    pub status: u8,
    pub icmp_code: u8,
    pub pkts_lo: [u16; 2],
    // Line 2.
    pub tcp: TcpConn,
    pub bytes_lo: [u32; 2],
    // Line 3.
    /// Low 32 bits of the key's hash (the in-shard index hash).
    pub hash: u32,
    pub bytes_hi: [u32; 2],
    pub pkts_hi: [u64; 2],
    pub created: u64,
    pub orig_peer: u32,
    pub reply_peer: u32,
}

impl Entry {
    pub(crate) fn orig_is_a(&self) -> bool {
        self.status & S_ORIG_IS_A != 0
    }

    pub(crate) fn seen_reply(&self) -> bool {
        self.status & S_SEEN_REPLY != 0
    }

    pub(crate) fn assured(&self) -> bool {
        self.status & S_ASSURED != 0
    }

    /// Direction of a packet whose source is endpoint `a` of the key or not.
    pub(crate) fn dir_of(&self, src_is_a: bool) -> CtDir {
        if src_is_a == self.orig_is_a() {
            CtDir::Original
        } else {
            CtDir::Reply
        }
    }

    /// When the entry expires (milliseconds).
    #[inline(always)]
    pub(crate) fn expires(&self) -> u64 {
        self.last_seen + u64::from(self.ttl_ms)
    }

    /// Move the expiry to `at`, keeping `last_seen`.
    pub(crate) fn set_expires(&mut self, at: u64) {
        self.ttl_ms = u32::try_from(at.saturating_sub(self.last_seen)).unwrap_or(u32::MAX);
    }

    /// A packet of `bytes` seen at `now` in direction `dir`; the entry now
    /// expires `timeout` seconds later.
    #[inline(always)]
    pub(crate) fn refresh(&mut self, dir: CtDir, bytes: u32, now: u64, timeout: u32) {
        self.last_seen = now;
        self.ttl_ms = timeout.saturating_mul(1000);
        let d = dir.idx();
        let (p, carry) = self.pkts_lo[d].overflowing_add(1);
        self.pkts_lo[d] = p;
        if carry {
            self.pkts_hi[d] += 1;
        }
        self.add_bytes(dir, bytes);
    }

    /// Bytes of a packet that do not refresh the timer (later fragments).
    #[inline(always)]
    pub(crate) fn add_bytes(&mut self, dir: CtDir, bytes: u32) {
        let d = dir.idx();
        let (b, carry) = self.bytes_lo[d].overflowing_add(bytes);
        self.bytes_lo[d] = b;
        if carry {
            self.bytes_hi[d] += 1;
        }
    }

    /// Set `last_seen` to `now` without moving the expiry.
    pub(crate) fn touch(&mut self, now: u64) {
        let at = self.expires();
        self.last_seen = now;
        self.set_expires(at);
    }

    /// Packets counted in direction `dir`.
    pub(crate) fn packets(&self, dir: CtDir) -> u64 {
        let d = dir.idx();
        self.pkts_hi[d] << 16 | u64::from(self.pkts_lo[d])
    }

    /// Bytes counted in direction `dir`.
    pub(crate) fn bytes(&self, dir: CtDir) -> u64 {
        let d = dir.idx();
        u64::from(self.bytes_hi[d]) << 32 | u64::from(self.bytes_lo[d])
    }

    pub(crate) fn tcp_state(&self) -> Option<TcpState> {
        (self.key.proto == wire::IPPROTO_TCP).then(|| self.tcp.state())
    }

    /// May be evicted to make room for a new connection.
    pub(crate) fn evictable(&self) -> bool {
        !self.assured() || self.tcp_state().is_some_and(TcpState::closing)
    }

    pub(crate) fn family(&self) -> Family {
        self.key.family()
    }

    pub(crate) fn snapshot(&self, now: u64) -> ConnSnapshot {
        let (original, reply) = tuple::tuples_of(&self.key, self.orig_is_a(), self.icmp_code);
        let peer = |p: u32| (p != NO_PEER).then_some(p);
        ConnSnapshot {
            id: self.id,
            family: self.family(),
            proto: self.key.proto,
            tcp_state: self.tcp_state(),
            timeout: self.expires().saturating_sub(now) / 1000,
            original,
            reply,
            orig_packets: self.packets(CtDir::Original),
            orig_bytes: self.bytes(CtDir::Original),
            reply_packets: self.packets(CtDir::Reply),
            reply_bytes: self.bytes(CtDir::Reply),
            seen_reply: self.seen_reply(),
            assured: self.assured(),
            created_ms: self.created,
            last_seen_ms: self.last_seen,
            orig_peer: peer(self.orig_peer),
            reply_peer: peer(self.reply_peer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(std::mem::size_of::<Entry>(), 192);
        assert_eq!(std::mem::align_of::<Entry>(), 64);
        // What a packet of an established connection touches: lines 1 and 2.
        for end in [
            std::mem::offset_of!(Entry, pkts_lo) + 4,
            std::mem::offset_of!(Entry, id) + 4,
            std::mem::offset_of!(Entry, ttl_ms) + 4,
            std::mem::offset_of!(Entry, last_seen) + 8,
            std::mem::offset_of!(Entry, status) + 1,
        ] {
            assert!(end <= 64, "{end}");
        }
        assert_eq!(std::mem::offset_of!(Entry, tcp), 64);
        assert_eq!(std::mem::size_of::<TcpConn>(), 56);
        assert_eq!(std::mem::offset_of!(Entry, bytes_lo) + 8, 128);
        assert_eq!(std::mem::offset_of!(Entry, hash), 128);
    }

    #[test]
    fn counters_carry_into_the_high_parts() {
        let mut e = Entry::default();
        for _ in 0..70_000 {
            e.refresh(CtDir::Reply, 1 << 20, 5, 30);
        }
        e.refresh(CtDir::Original, u32::MAX, 7, 30);
        e.refresh(CtDir::Original, u32::MAX, 9, 30);
        assert_eq!(e.packets(CtDir::Reply), 70_000);
        assert_eq!(e.bytes(CtDir::Reply), 70_000 << 20);
        assert_eq!(e.packets(CtDir::Original), 2);
        assert_eq!(e.bytes(CtDir::Original), 2 * u64::from(u32::MAX));
        assert_eq!(e.expires(), 9 + 30_000);
    }

    #[test]
    fn expiry_survives_touch_and_set() {
        let mut e = Entry::default();
        e.refresh(CtDir::Original, 10, 1_000, 60);
        assert_eq!(e.expires(), 61_000);
        e.touch(5_000);
        assert_eq!((e.last_seen, e.expires()), (5_000, 61_000));
        e.set_expires(20_000);
        assert_eq!((e.last_seen, e.expires()), (5_000, 20_000));
        // Past expiry: expired at once, never before `last_seen`.
        e.touch(70_000);
        assert_eq!(e.expires(), 70_000);
        e.refresh(CtDir::Original, 10, 80_000, crate::config::Timeouts::MAX);
        assert_eq!(
            e.expires(),
            80_000 + u64::from(crate::config::Timeouts::MAX) * 1000
        );
    }
}
