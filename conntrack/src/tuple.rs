//! Flow keys and tuples.
//!
//! A connection is stored once, under a direction-independent key: the two
//! endpoints sorted by (address, port). A packet from either side builds the
//! same key, so one lookup finds the connection from either tuple and the
//! direction falls out of comparing the packet's source with the stored
//! original source. ICMP queries add the request type and which endpoint asked,
//! so an echo request from the responder is a new flow, as in netfilter.

use crate::packet::{Addr, Family, InnerFlow, InnerL4, L4, Packet};
use crate::wire::{self, icmp4, icmp6};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Direction of a packet within its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CtDir {
    /// Same direction as the packet that created the connection.
    Original,
    /// The other way.
    Reply,
}

impl CtDir {
    pub(crate) fn idx(self) -> usize {
        match self {
            CtDir::Original => 0,
            CtDir::Reply => 1,
        }
    }
}

/// Direction-independent key of a connection (40 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FlowKey {
    /// Lower endpoint address.
    pub a: Addr,
    /// Higher endpoint address.
    pub b: Addr,
    /// Port (or ICMP id) of `a`.
    pub pa: u16,
    /// Port (or ICMP id) of `b`.
    pub pb: u16,
    pub proto: u8,
    /// 4 or 6; 0 marks an empty slot.
    pub family: u8,
    /// ICMP queries: the request type.
    pub icmp_req: u8,
    /// ICMP queries: 1 when `a` asked, 2 when `b` asked.
    pub icmp_side: u8,
}

impl FlowKey {
    /// Build the key; returns it with whether the given source is endpoint `a`.
    pub(crate) fn new(
        family: Family,
        proto: u8,
        src: Addr,
        dst: Addr,
        sport: u16,
        dport: u16,
        icmp: Option<(u8, bool)>,
    ) -> (FlowKey, bool) {
        // Big-endian integers order like the byte arrays, in two compares
        // instead of a memcmp call.
        let (s, d) = (u128::from_be_bytes(src), u128::from_be_bytes(dst));
        let src_is_a = s < d || (s == d && sport <= dport);
        let (a, b, pa, pb) = if src_is_a {
            (src, dst, sport, dport)
        } else {
            (dst, src, dport, sport)
        };
        let (icmp_req, icmp_side) = match icmp {
            Some((req, requester_is_src)) => {
                (req, if requester_is_src == src_is_a { 1 } else { 2 })
            }
            None => (0, 0),
        };
        (
            FlowKey {
                a,
                b,
                pa,
                pb,
                proto,
                family: family.code(),
                icmp_req,
                icmp_side,
            },
            src_is_a,
        )
    }

    /// Key of a parsed packet; `None` when the packet has no trackable flow
    /// (malformed transport header, fragment, ICMP error or untracked ICMPv6).
    pub(crate) fn of_packet(p: &Packet<'_>) -> Option<(FlowKey, bool)> {
        let (sport, dport, icmp) = match p.l4 {
            L4::Tcp(t) => (t.sport, t.dport, None),
            L4::Udp { sport, dport } => (sport, dport, None),
            L4::IcmpQuery { typ, id, .. } => {
                let (req, requester_is_src) = icmp_request(p.family, typ)?;
                (id, id, Some((req, requester_is_src)))
            }
            L4::Other => (0, 0, None),
            _ => return None,
        };
        Some(FlowKey::new(
            p.family, p.proto, p.src, p.dst, sport, dport, icmp,
        ))
    }

    /// Key of the flow an ICMP error quotes.
    pub(crate) fn of_inner(family: Family, f: &InnerFlow) -> Option<(FlowKey, bool)> {
        let (sport, dport, icmp) = match f.l4 {
            InnerL4::Ports { sport, dport } => (sport, dport, None),
            InnerL4::Icmp { typ, id } => {
                let (req, requester_is_src) = icmp_request(family, typ)?;
                (id, id, Some((req, requester_is_src)))
            }
            InnerL4::Other => (0, 0, None),
        };
        Some(FlowKey::new(
            family, f.proto, f.src, f.dst, sport, dport, icmp,
        ))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.family == 0
    }

    pub(crate) fn family(&self) -> Family {
        if self.family == 6 {
            Family::Ipv6
        } else {
            Family::Ipv4
        }
    }

    /// 64-bit hash of the key with the table's secret seed.
    #[inline]
    pub(crate) fn hash_with<S: BuildHasher>(&self, s: &S) -> u64 {
        let mut h = s.build_hasher();
        let w = |x: &Addr, i: usize| {
            u64::from_ne_bytes([
                x[i],
                x[i + 1],
                x[i + 2],
                x[i + 3],
                x[i + 4],
                x[i + 5],
                x[i + 6],
                x[i + 7],
            ])
        };
        h.write_u64(w(&self.a, 0));
        h.write_u64(w(&self.a, 8));
        h.write_u64(w(&self.b, 0));
        h.write_u64(w(&self.b, 8));
        h.write_u64(
            u64::from(self.pa)
                | u64::from(self.pb) << 16
                | u64::from(self.proto) << 32
                | u64::from(self.family) << 40
                | u64::from(self.icmp_req) << 48
                | u64::from(self.icmp_side) << 56,
        );
        h.finish()
    }
}

/// For an ICMP query type: (request type, whether the packet's source is the requester).
pub(crate) fn icmp_request(family: Family, typ: u8) -> Option<(u8, bool)> {
    type Map = fn(u8) -> Option<u8>;
    let (reply_of, request_of): (Map, Map) = match family {
        Family::Ipv4 => (icmp4::reply_of, icmp4::request_of),
        Family::Ipv6 => (icmp6::reply_of, icmp6::request_of),
    };
    if reply_of(typ).is_some() {
        Some((typ, true))
    } else {
        request_of(typ).map(|req| (req, false))
    }
}

/// Reply type for a request type of the family.
pub(crate) fn icmp_reply_type(family: Family, req: u8) -> u8 {
    match family {
        Family::Ipv4 => icmp4::reply_of(req),
        Family::Ipv6 => icmp6::reply_of(req),
    }
    .unwrap_or(req)
}

/// Convert a stored address to a `std` address.
pub fn to_ip(family: Family, a: &Addr) -> IpAddr {
    match family {
        Family::Ipv4 => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
        Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(*a)),
    }
}

/// Transport part of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum TupleL4 {
    /// TCP, UDP: ports.
    Ports {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ICMP queries: type, code and identifier.
    Icmp {
        /// ICMP type.
        #[serde(rename = "type")]
        typ: u8,
        /// ICMP code.
        code: u8,
        /// Identifier.
        id: u16,
    },
    /// Other protocols: addresses only.
    None,
}

/// One direction of a connection, as `conntrack -L` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Ports or ICMP identifiers.
    #[serde(flatten)]
    pub l4: TupleL4,
}

impl fmt::Display for Tuple {
    /// `src=A dst=B sport=X dport=Y` (or `type=T code=C id=I`), as conntrack prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "src={} dst={}", self.src, self.dst)?;
        match self.l4 {
            TupleL4::Ports { sport, dport } => write!(f, " sport={sport} dport={dport}"),
            TupleL4::Icmp { typ, code, id } => write!(f, " type={typ} code={code} id={id}"),
            TupleL4::None => Ok(()),
        }
    }
}

/// Both tuples of a key, given which endpoint sent the original packet.
pub(crate) fn tuples_of(key: &FlowKey, orig_is_a: bool, icmp_code: u8) -> (Tuple, Tuple) {
    let fam = key.family();
    let (os, od, osp, odp) = if orig_is_a {
        (key.a, key.b, key.pa, key.pb)
    } else {
        (key.b, key.a, key.pb, key.pa)
    };
    let (l4o, l4r) = match key.proto {
        wire::IPPROTO_TCP | wire::IPPROTO_UDP => (
            TupleL4::Ports {
                sport: osp,
                dport: odp,
            },
            TupleL4::Ports {
                sport: odp,
                dport: osp,
            },
        ),
        wire::IPPROTO_ICMP | wire::IPPROTO_ICMPV6 if key.icmp_side != 0 => (
            TupleL4::Icmp {
                typ: key.icmp_req,
                code: icmp_code,
                id: osp,
            },
            TupleL4::Icmp {
                typ: icmp_reply_type(fam, key.icmp_req),
                code: icmp_code,
                id: osp,
            },
        ),
        _ => (TupleL4::None, TupleL4::None),
    };
    (
        Tuple {
            src: to_ip(fam, &os),
            dst: to_ip(fam, &od),
            l4: l4o,
        },
        Tuple {
            src: to_ip(fam, &od),
            dst: to_ip(fam, &os),
            l4: l4r,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(x: u8) -> Addr {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[10, 0, 0, x]);
        a
    }

    #[test]
    fn both_directions_give_one_key() {
        let (k1, s1) = FlowKey::new(Family::Ipv4, 6, v4(1), v4(2), 1000, 80, None);
        let (k2, s2) = FlowKey::new(Family::Ipv4, 6, v4(2), v4(1), 80, 1000, None);
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
    }

    #[test]
    fn icmp_requester_side_is_part_of_the_key() {
        // Echo request 1->2 and its reply 2->1 share a key ...
        let (req, _) = FlowKey::new(Family::Ipv4, 1, v4(1), v4(2), 7, 7, Some((8, true)));
        let (rep, _) = FlowKey::new(Family::Ipv4, 1, v4(2), v4(1), 7, 7, Some((8, false)));
        assert_eq!(req, rep);
        // ... but an echo request 2->1 with the same id is another flow.
        let (other, _) = FlowKey::new(Family::Ipv4, 1, v4(2), v4(1), 7, 7, Some((8, true)));
        assert_ne!(req, other);
    }

    #[test]
    fn key_is_forty_bytes() {
        assert_eq!(std::mem::size_of::<FlowKey>(), 40);
    }
}
