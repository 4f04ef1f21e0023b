//! One tracked connection as stored in the table.
//!
//! Plain data, `Copy`, no pointers: entries live in fixed chunks of a shard's
//! slab and are copied out for listing. 192 bytes, three cache lines (see
//! [`Entry`]); a UDP packet touches lines 1 and 3, a TCP segment all three.

use crate::ctx::NO_PEER;
use crate::packet::Family;
use crate::snapshot::ConnSnapshot;
use crate::tcp::{TcpConn, TcpState};
use crate::tuple::{self, CtDir, FlowKey};
use crate::wire;

pub(crate) const S_ORIG_IS_A: u8 = 0x01;
pub(crate) const S_SEEN_REPLY: u8 = 0x02;
pub(crate) const S_ASSURED: u8 = 0x04;

/// Laid out in three cache lines: what every packet reads and writes first
/// (key, hash, timer, status), then the TCP tracker, then counters and the
/// fields only listings read.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub(crate) struct Entry {
    // Line 1.
    pub key: FlowKey,
    /// Low 32 bits of the key's hash (the in-shard index hash).
    pub hash: u32,
    pub status: u8,
    pub icmp_code: u8,
    pub expires: u64,
    pub last_seen: u64,
    // Line 2.
    pub tcp: TcpConn,
    // Line 3.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub created: u64,
    pub orig_peer: u32,
    pub reply_peer: u32,
    /// Connection id; the free-list link while the slot is empty.
    pub id: u32,
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

    pub(crate) fn count(&mut self, dir: CtDir, bytes: u32, now: u64) {
        self.packets[dir.idx()] += 1;
        self.bytes[dir.idx()] += u64::from(bytes);
        self.last_seen = now;
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
            timeout: self.expires.saturating_sub(now) / 1000,
            original,
            reply,
            orig_packets: self.packets[0],
            orig_bytes: self.bytes[0],
            reply_packets: self.packets[1],
            reply_bytes: self.bytes[1],
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
        assert_eq!(std::mem::offset_of!(Entry, tcp), 64);
        assert_eq!(std::mem::offset_of!(Entry, packets), 128);
    }
}
