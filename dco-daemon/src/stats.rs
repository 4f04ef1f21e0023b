//! Counters, per thread and summed on read (FreeBSD's counter(9) idea): every data-path
//! thread owns a slot and is its only writer, so an increment is a plain load and store on
//! a cache line no other core writes.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// Interface counters: if_ovpn's set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Ctr {
    LostCtrlIn = 0,
    LostCtrlOut,
    LostDataIn,
    LostDataOut,
    NomemDataIn,
    NomemDataOut,
    RecvCtrl,
    RecvData,
    SentCtrl,
    SentData,
    TransportBytesSent,
    TransportBytesRecv,
    TunnelBytesSent,
    TunnelBytesRecv,
}

impl Ctr {
    pub const COUNT: usize = 14;
}

/// Why a packet was dropped, beyond the crypto crate's reasons. Every drop is counted
/// under exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Dropped {
    /// A data packet for a key-id with no installed key.
    NoKey = 0,
    /// Inner source address is neither the peer's VPN address nor in its iroutes.
    BadSource,
    /// No peer routes to the inner destination.
    NoRoute,
    /// Decrypted payload is neither IP nor a keepalive/OCC message.
    NotIp,
    /// Inner IP header too short or inconsistent.
    BadIpHeader,
    /// The firewall said drop (or reject).
    Firewall,
    /// The relay queue to the control process was full.
    RelayFull,
    /// The relay rate limit was exceeded.
    RelayRate,
    /// No control process is subscribed to relayed packets.
    RelayNoListener,
    /// Writing to the TUN failed.
    TunWrite,
    /// Sending on the UDP socket failed.
    UdpSend,
    /// The send key ran out of packet-ids (2^32-1).
    KeyExhausted,
    /// A packet too large for our buffers.
    Oversize,
    /// An OCC message other than EXIT.
    Occ,
    /// Reading from the TUN failed (e.g. a GSO super-packet the offload could not split);
    /// what the read would have returned is lost with it.
    TunRead,
}

impl Dropped {
    pub const COUNT: usize = 15;
    pub const ALL: [Dropped; Self::COUNT] = [
        Dropped::NoKey,
        Dropped::BadSource,
        Dropped::NoRoute,
        Dropped::NotIp,
        Dropped::BadIpHeader,
        Dropped::Firewall,
        Dropped::RelayFull,
        Dropped::RelayRate,
        Dropped::RelayNoListener,
        Dropped::TunWrite,
        Dropped::UdpSend,
        Dropped::KeyExhausted,
        Dropped::Oversize,
        Dropped::Occ,
        Dropped::TunRead,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Dropped::NoKey => "no_key",
            Dropped::BadSource => "bad_source_address",
            Dropped::NoRoute => "no_route",
            Dropped::NotIp => "not_ip",
            Dropped::BadIpHeader => "bad_ip_header",
            Dropped::Firewall => "firewall",
            Dropped::RelayFull => "relay_queue_full",
            Dropped::RelayRate => "relay_rate_limited",
            Dropped::RelayNoListener => "relay_no_listener",
            Dropped::TunWrite => "tun_write_error",
            Dropped::UdpSend => "udp_send_error",
            Dropped::KeyExhausted => "key_exhausted",
            Dropped::Oversize => "oversize",
            Dropped::Occ => "occ_message",
            Dropped::TunRead => "tun_read_error",
        }
    }
}

const CRYPTO_DROPS: usize = crypto::DropReason::COUNT;

/// One thread's counters.
#[derive(Default)]
pub struct ThreadCounters {
    iface: [AtomicU64; Ctr::COUNT],
    drops: [AtomicU64; Dropped::COUNT],
    crypto_drops: [AtomicU64; CRYPTO_DROPS],
}

#[inline]
fn bump(c: &AtomicU64, v: u64) {
    // Single writer per slot: no read-modify-write instruction needed.
    c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
}

impl ThreadCounters {
    #[inline]
    pub fn add(&self, c: Ctr, v: u64) {
        bump(&self.iface[c as usize], v);
    }
    #[inline]
    pub fn drop(&self, d: Dropped) {
        bump(&self.drops[d as usize], 1);
    }
    #[inline]
    pub fn crypto_drop(&self, r: crypto::DropReason) {
        bump(&self.crypto_drops[r as usize], 1);
    }
    /// For the one slot several control-side threads share: an atomic add.
    pub fn add_shared(&self, c: Ctr, v: u64) {
        self.iface[c as usize].fetch_add(v, Ordering::Relaxed);
    }
}

/// All threads' counters. Slot 0 belongs to the control side (IPC, timers).
pub struct Counters {
    slots: Box<[CachePadded<ThreadCounters>]>,
}

/// A summed snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub iface: [u64; Ctr::COUNT],
    pub drops: [u64; Dropped::COUNT],
    pub crypto_drops: [u64; CRYPTO_DROPS],
}

impl CounterSnapshot {
    pub fn get(&self, c: Ctr) -> u64 {
        self.iface[c as usize]
    }
    pub fn dropped(&self, d: Dropped) -> u64 {
        self.drops[d as usize]
    }
    pub fn crypto_dropped(&self, r: crypto::DropReason) -> u64 {
        self.crypto_drops[r as usize]
    }
    /// Every drop reason with its count, named (for `ovpnctl stats`).
    pub fn drop_reasons(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = Dropped::ALL
            .iter()
            .map(|d| (d.name(), self.dropped(*d)))
            .collect();
        v.extend(
            crypto::DropReason::ALL
                .iter()
                .map(|r| (r.name(), self.crypto_dropped(*r))),
        );
        v
    }
}

impl Counters {
    pub fn new(threads: usize) -> Self {
        Self {
            slots: (0..threads.max(1))
                .map(|_| CachePadded::new(ThreadCounters::default()))
                .collect(),
        }
    }

    pub fn slot(&self, i: usize) -> &ThreadCounters {
        &self.slots[i % self.slots.len()]
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let mut s = CounterSnapshot::default();
        for slot in self.slots.iter() {
            for (a, c) in s.iface.iter_mut().zip(slot.iface.iter()) {
                *a += c.load(Ordering::Relaxed);
            }
            for (a, c) in s.drops.iter_mut().zip(slot.drops.iter()) {
                *a += c.load(Ordering::Relaxed);
            }
            for (a, c) in s.crypto_drops.iter_mut().zip(slot.crypto_drops.iter()) {
                *a += c.load(Ordering::Relaxed);
            }
        }
        s
    }
}

/// Per-peer traffic counters, one slot per thread.
#[derive(Default)]
pub struct PeerSlot {
    pub pkts_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub pkts_out: AtomicU64,
    pub bytes_out: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerTraffic {
    pub pkts_in: u64,
    pub bytes_in: u64,
    pub pkts_out: u64,
    pub bytes_out: u64,
}

pub struct PeerCounters {
    slots: Box<[CachePadded<PeerSlot>]>,
}

impl PeerCounters {
    pub fn new(threads: usize) -> Self {
        Self {
            slots: (0..threads.max(1))
                .map(|_| CachePadded::new(PeerSlot::default()))
                .collect(),
        }
    }

    #[inline]
    pub fn add_in(&self, slot: usize, pkts: u64, bytes: u64) {
        let s = &self.slots[slot % self.slots.len()];
        bump(&s.pkts_in, pkts);
        bump(&s.bytes_in, bytes);
    }

    #[inline]
    pub fn add_out(&self, slot: usize, pkts: u64, bytes: u64) {
        let s = &self.slots[slot % self.slots.len()];
        bump(&s.pkts_out, pkts);
        bump(&s.bytes_out, bytes);
    }

    pub fn snapshot(&self) -> PeerTraffic {
        let mut t = PeerTraffic::default();
        for s in self.slots.iter() {
            t.pkts_in += s.pkts_in.load(Ordering::Relaxed);
            t.bytes_in += s.bytes_in.load(Ordering::Relaxed);
            t.pkts_out += s.pkts_out.load(Ordering::Relaxed);
            t.bytes_out += s.bytes_out.load(Ordering::Relaxed);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_across_threads() {
        let c = std::sync::Arc::new(Counters::new(4));
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.slot(i).add(Ctr::RecvData, 1);
                        c.slot(i).drop(Dropped::BadSource);
                        c.slot(i).crypto_drop(crypto::DropReason::Replayed);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let s = c.snapshot();
        assert_eq!(s.get(Ctr::RecvData), 4000);
        assert_eq!(s.dropped(Dropped::BadSource), 4000);
        assert_eq!(s.crypto_dropped(crypto::DropReason::Replayed), 4000);
        assert!(
            s.drop_reasons()
                .iter()
                .any(|(n, v)| *n == "replayed" && *v == 4000)
        );
    }

    #[test]
    fn every_drop_reason_has_its_own_slot_and_name() {
        let mut names = std::collections::HashSet::new();
        for (i, d) in Dropped::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i, "ALL is in discriminant order");
            assert!(names.insert(d.name()), "{} named twice", d.name());
        }
        // A TUN read error is its own reason, apart from oversize packets.
        let c = Counters::new(1);
        c.slot(0).drop(Dropped::TunRead);
        let s = c.snapshot();
        assert_eq!(s.dropped(Dropped::TunRead), 1);
        assert_eq!(s.dropped(Dropped::Oversize), 0);
        assert!(
            s.drop_reasons()
                .iter()
                .any(|(n, v)| *n == "tun_read_error" && *v == 1)
        );
    }
}
