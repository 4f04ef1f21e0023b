//! Packet construction for tests, benchmarks, fuzz seeds and tools.
//!
//! Builds well-formed IPv4/IPv6 packets with correct checksums. It allocates
//! and is not meant for the data path.

use crate::checksum;
use crate::packet::Addr;
use crate::wire;
use std::net::IpAddr;

fn addr(ip: IpAddr) -> Addr {
    let mut a = [0u8; 16];
    match ip {
        IpAddr::V4(v) => a[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => a = v.octets(),
    }
    a
}

/// IP-level options of a built packet.
#[derive(Debug, Clone, Default)]
pub struct IpOpts {
    /// IPv4 identification / IPv6 fragment id.
    pub id: u32,
    /// Fragment: (offset in bytes, more fragments). IPv6 adds a fragment header.
    pub frag: Option<(u32, bool)>,
    /// IPv6 extension headers inserted before the payload (and before any
    /// fragment header): (header type, body bytes after the 2-byte next/len
    /// prefix; padded to the header's unit).
    pub ext: Vec<(u8, Vec<u8>)>,
}

/// Wrap a transport payload (with its checksum already set) in an IP header.
pub fn ip(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8], o: &IpOpts) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = vec![0u8; wire::IPV4_HDR_LEN];
            p[0] = 0x45;
            p[2..4].copy_from_slice(&((wire::IPV4_HDR_LEN + l4.len()) as u16).to_be_bytes());
            p[4..6].copy_from_slice(&(o.id as u16).to_be_bytes());
            if let Some((off, more)) = o.frag {
                let v = ((off / 8) as u16 & wire::IPV4_OFFSET_MASK)
                    | if more { wire::IPV4_MF } else { 0 };
                p[6..8].copy_from_slice(&v.to_be_bytes());
            }
            p[8] = 64;
            p[9] = proto;
            p[12..16].copy_from_slice(&s.octets());
            p[16..20].copy_from_slice(&d.octets());
            let c = checksum::finish(checksum::sum(&p, 0));
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p.extend_from_slice(l4);
            p
        }
        _ => {
            let (s, d) = (addr(src), addr(dst));
            let mut hdrs: Vec<(u8, Vec<u8>)> = o.ext.clone();
            if let Some((off, more)) = o.frag {
                let v = ((off / 8) << 3) as u16 | u16::from(more);
                let mut b = vec![0u8; 6];
                b[0..2].copy_from_slice(&v.to_be_bytes());
                b[2..6].copy_from_slice(&o.id.to_be_bytes());
                hdrs.push((wire::IPPROTO_FRAGMENT, b));
            }
            let mut chain = Vec::new();
            for (i, (t, body)) in hdrs.iter().enumerate() {
                let next = hdrs.get(i + 1).map_or(proto, |h| h.0);
                let mut h = vec![next, 0];
                h.extend_from_slice(body);
                let unit = if *t == wire::IPPROTO_AH { 4 } else { 8 };
                while !h.len().is_multiple_of(unit) || h.len() < 8 {
                    h.push(0);
                }
                h[1] = if *t == wire::IPPROTO_FRAGMENT {
                    0
                } else if *t == wire::IPPROTO_AH {
                    (h.len() / 4 - 2) as u8
                } else {
                    (h.len() / 8 - 1) as u8
                };
                chain.extend_from_slice(&h);
            }
            let first = hdrs.first().map_or(proto, |h| h.0);
            let mut p = vec![0u8; wire::IPV6_HDR_LEN];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&((chain.len() + l4.len()) as u16).to_be_bytes());
            p[6] = first;
            p[7] = 64;
            p[8..24].copy_from_slice(&s);
            p[24..40].copy_from_slice(&d);
            p.extend_from_slice(&chain);
            p.extend_from_slice(l4);
            p
        }
    }
}

fn l4_sum(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8]) -> u16 {
    let (s, d) = (addr(src), addr(dst));
    let acc = if src.is_ipv4() {
        checksum::pseudo_v4(&s, &d, proto, seg.len())
    } else {
        checksum::pseudo_v6(&s, &d, proto, seg.len())
    };
    checksum::finish(checksum::sum(seg, acc))
}

/// A TCP segment to build.
#[derive(Debug, Clone, Default)]
pub struct Tcp {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags byte.
    pub flags: u8,
    /// Window.
    pub win: u16,
    /// Option bytes (padded to 4 with NOPs... EOL zeros).
    pub options: Vec<u8>,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Tcp {
    /// The TCP header and payload with checksum.
    pub fn segment(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let mut opts = self.options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let hl = wire::TCP_HDR_LEN + opts.len();
        let mut h = vec![0u8; wire::TCP_HDR_LEN];
        h[0..2].copy_from_slice(&self.sport.to_be_bytes());
        h[2..4].copy_from_slice(&self.dport.to_be_bytes());
        h[4..8].copy_from_slice(&self.seq.to_be_bytes());
        h[8..12].copy_from_slice(&self.ack.to_be_bytes());
        h[12] = ((hl / 4) as u8) << 4;
        h[13] = self.flags;
        h[14..16].copy_from_slice(&self.win.to_be_bytes());
        h.extend_from_slice(&opts);
        h.extend_from_slice(&self.payload);
        let c = l4_sum(src, dst, wire::IPPROTO_TCP, &h);
        h[16..18].copy_from_slice(&c.to_be_bytes());
        h
    }

    /// A whole IP packet.
    pub fn packet(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        ip(
            src,
            dst,
            wire::IPPROTO_TCP,
            &self.segment(src, dst),
            &IpOpts::default(),
        )
    }
}

/// A UDP datagram segment (header + payload, with checksum).
pub fn udp_segment(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; wire::UDP_HDR_LEN];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&((wire::UDP_HDR_LEN + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(payload);
    let c = l4_sum(src, dst, wire::IPPROTO_UDP, &h);
    h[6..8].copy_from_slice(&c.to_be_bytes());
    h
}

/// A whole UDP packet.
pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    ip(
        src,
        dst,
        wire::IPPROTO_UDP,
        &udp_segment(src, dst, sport, dport, payload),
        &IpOpts::default(),
    )
}

/// An ICMP (IPv4) or ICMPv6 message (header + body) with checksum; `rest`
/// is the 4 type-specific bytes, `body` what follows.
pub fn icmp_message(
    src: IpAddr,
    dst: IpAddr,
    typ: u8,
    code: u8,
    rest: [u8; 4],
    body: &[u8],
) -> Vec<u8> {
    let mut m = vec![typ, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    let c = if src.is_ipv4() {
        checksum::finish(checksum::sum(&m, 0))
    } else {
        l4_sum(src, dst, wire::IPPROTO_ICMPV6, &m)
    };
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A whole ICMP/ICMPv6 packet.
pub fn icmp(src: IpAddr, dst: IpAddr, typ: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let proto = if src.is_ipv4() {
        wire::IPPROTO_ICMP
    } else {
        wire::IPPROTO_ICMPV6
    };
    ip(
        src,
        dst,
        proto,
        &icmp_message(src, dst, typ, code, rest, body),
        &IpOpts::default(),
    )
}

/// An echo request (ICMP 8 / ICMPv6 128) with identifier and sequence.
pub fn echo_request(src: IpAddr, dst: IpAddr, id: u16, seq: u16) -> Vec<u8> {
    let t = if src.is_ipv4() { 8 } else { 128 };
    let mut rest = [0u8; 4];
    rest[..2].copy_from_slice(&id.to_be_bytes());
    rest[2..].copy_from_slice(&seq.to_be_bytes());
    icmp(src, dst, t, 0, rest, b"dco-ping")
}

/// An echo reply (ICMP 0 / ICMPv6 129).
pub fn echo_reply(src: IpAddr, dst: IpAddr, id: u16, seq: u16) -> Vec<u8> {
    let t = if src.is_ipv4() { 0 } else { 129 };
    let mut rest = [0u8; 4];
    rest[..2].copy_from_slice(&id.to_be_bytes());
    rest[2..].copy_from_slice(&seq.to_be_bytes());
    icmp(src, dst, t, 0, rest, b"dco-ping")
}

/// An ICMP error of `typ`/`code` from `src` quoting `quoted` (sent to the quoted packet's source).
pub fn icmp_error(src: IpAddr, dst: IpAddr, typ: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    icmp(src, dst, typ, code, [0; 4], quoted)
}
