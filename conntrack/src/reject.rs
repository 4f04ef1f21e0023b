//! Building the reply a `reject` rule sends back: a TCP RST or an ICMP /
//! ICMPv6 destination unreachable, written into a caller-provided buffer.
//!
//! The reply goes back to the packet's sender through the way it came (to
//! the peer if the packet came from a peer, to the TUN device otherwise). Its
//! source address is the rejected packet's destination, as if the target
//! answered, which is what a client expects from a firewall in the path.
//! Never answered: ICMP errors, RSTs, non-first fragments, neighbour
//! discovery, and packets to or from multicast, broadcast or unspecified
//! addresses (RFC 1122 3.2.2, RFC 4443 2.4).

use crate::checksum;
use crate::packet::{self, Family, Frag, L4, Packet};
use crate::rules::IcmpxCode;
use crate::wire::{self, icmp4, icmp6};

/// A buffer of this size always holds a reject reply (IPv6 minimum MTU).
pub const REJECT_BUF_LEN: usize = 1280;

/// Largest IPv4 ICMP error (RFC 1812 4.3.2.3).
const ICMP4_MAX: usize = 576;

/// What to send back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    /// A TCP RST.
    TcpReset,
    /// ICMP (IPv4) or ICMPv6 destination unreachable with this code.
    Icmp(IcmpxCode),
}

/// Why no reply was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RejectError {
    /// The packet does not parse.
    #[error("packet is malformed: {0}")]
    Malformed(packet::InvalidReason),
    /// The packet must not be answered.
    #[error("packet must not be answered: {0}")]
    NotRejectable(&'static str),
    /// `out` is too small.
    #[error("reply buffer too small: {need} bytes needed")]
    BufferTooSmall {
        /// Minimum size for this reply.
        need: usize,
    },
}

fn bad_addr(family: Family, a: &packet::Addr, is_src: bool) -> bool {
    match family {
        Family::Ipv4 => {
            let b = &a[..4];
            b[0] >= 224 // multicast, reserved, broadcast
                || (is_src && b == [0, 0, 0, 0])
        }
        Family::Ipv6 => a[0] == 0xff || (is_src && *a == [0u8; 16]),
    }
}

/// Whether a reply of this kind may be sent for this packet.
pub(crate) fn rejectable(p: &Packet<'_>, kind: RejectKind) -> Result<(), &'static str> {
    if matches!(p.frag, Frag::Later { .. }) {
        return Err("non-first fragment");
    }
    if bad_addr(p.family, &p.dst, false) || bad_addr(p.family, &p.src, true) {
        return Err("multicast, broadcast or unspecified address");
    }
    match (p.l4, kind) {
        (L4::Tcp(t), _) if t.flags & wire::TCP_RST != 0 => Err("TCP RST"),
        (L4::Tcp(_), _) => Ok(()),
        (_, RejectKind::TcpReset) => Err("not TCP"),
        (L4::IcmpError { .. }, _) => Err("ICMP error"),
        (L4::IcmpUntracked { .. }, _) => Err("neighbour discovery or MLD"),
        _ => Ok(()),
    }
}

/// Write the reply to `pkt` into `out`; returns its length.
/// [`REJECT_BUF_LEN`] bytes are always enough.
pub fn build_reject(pkt: &[u8], kind: RejectKind, out: &mut [u8]) -> Result<usize, RejectError> {
    let p = packet::parse(pkt).map_err(RejectError::Malformed)?;
    rejectable(&p, kind).map_err(RejectError::NotRejectable)?;
    match (kind, p.l4) {
        (RejectKind::TcpReset, L4::Tcp(t)) => tcp_reset(&p, t, out),
        (RejectKind::TcpReset, _) => Err(RejectError::NotRejectable("not TCP")),
        (RejectKind::Icmp(code), _) => icmp_unreach(&p, code, out),
    }
}

fn write_ip_header(
    family: Family,
    src: &packet::Addr,
    dst: &packet::Addr,
    proto: u8,
    payload: usize,
    out: &mut [u8],
) -> usize {
    match family {
        Family::Ipv4 => {
            let h = &mut out[..wire::IPV4_HDR_LEN];
            h.fill(0);
            h[0] = 0x45;
            h[2..4].copy_from_slice(&((wire::IPV4_HDR_LEN + payload) as u16).to_be_bytes());
            h[6] = 0x40; // DF
            h[8] = 64;
            h[9] = proto;
            h[12..16].copy_from_slice(&src[..4]);
            h[16..20].copy_from_slice(&dst[..4]);
            let c = checksum::finish(checksum::sum(h, 0));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            wire::IPV4_HDR_LEN
        }
        Family::Ipv6 => {
            let h = &mut out[..wire::IPV6_HDR_LEN];
            h.fill(0);
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
            h[6] = proto;
            h[7] = 64;
            h[8..24].copy_from_slice(src);
            h[24..40].copy_from_slice(dst);
            wire::IPV6_HDR_LEN
        }
    }
}

fn ip_hdr_len(f: Family) -> usize {
    match f {
        Family::Ipv4 => wire::IPV4_HDR_LEN,
        Family::Ipv6 => wire::IPV6_HDR_LEN,
    }
}

fn l4_checksum(
    family: Family,
    src: &packet::Addr,
    dst: &packet::Addr,
    proto: u8,
    seg: &[u8],
) -> u16 {
    let acc = match family {
        Family::Ipv4 => checksum::pseudo_v4(src, dst, proto, seg.len()),
        Family::Ipv6 => checksum::pseudo_v6(src, dst, proto, seg.len()),
    };
    checksum::finish(checksum::sum(seg, acc))
}

fn tcp_reset(p: &Packet<'_>, t: packet::TcpInfo, out: &mut [u8]) -> Result<usize, RejectError> {
    let hl = ip_hdr_len(p.family);
    let need = hl + wire::TCP_HDR_LEN;
    if out.len() < need {
        return Err(RejectError::BufferTooSmall { need });
    }
    // Reply from the destination back to the source.
    let (src, dst) = (p.dst, p.src);
    write_ip_header(
        p.family,
        &src,
        &dst,
        wire::IPPROTO_TCP,
        wire::TCP_HDR_LEN,
        out,
    );
    let (seq, ack, flags) = if t.flags & wire::TCP_ACK != 0 {
        (t.ack, 0u32, wire::TCP_RST)
    } else {
        let end = t
            .seq
            .wrapping_add(t.payload_len)
            .wrapping_add(u32::from(t.flags & wire::TCP_SYN != 0))
            .wrapping_add(u32::from(t.flags & wire::TCP_FIN != 0));
        (0u32, end, wire::TCP_RST | wire::TCP_ACK)
    };
    let h = &mut out[hl..need];
    h.fill(0);
    h[0..2].copy_from_slice(&t.dport.to_be_bytes());
    h[2..4].copy_from_slice(&t.sport.to_be_bytes());
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    h[8..12].copy_from_slice(&ack.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    let c = l4_checksum(p.family, &src, &dst, wire::IPPROTO_TCP, h);
    h[16..18].copy_from_slice(&c.to_be_bytes());
    Ok(need)
}

fn icmp_unreach(p: &Packet<'_>, code: IcmpxCode, out: &mut [u8]) -> Result<usize, RejectError> {
    let hl = ip_hdr_len(p.family);
    let head = hl + wire::ICMP_HDR_LEN;
    let orig = p.bytes();
    // At least the offending IP header and 8 bytes of it, as RFC 792 asks.
    let min_quote = orig.len().min(p.l4_offset() + 8);
    if out.len() < head + min_quote {
        return Err(RejectError::BufferTooSmall {
            need: head + min_quote,
        });
    }
    let limit = match p.family {
        Family::Ipv4 => ICMP4_MAX,
        Family::Ipv6 => REJECT_BUF_LEN,
    };
    let quote = orig.len().min(limit - head).min(out.len() - head);
    let (typ, c, proto) = match p.family {
        Family::Ipv4 => (
            icmp4::DEST_UNREACH,
            match code {
                IcmpxCode::PortUnreachable => icmp4::CODE_PORT_UNREACH,
                IcmpxCode::HostUnreachable => icmp4::CODE_HOST_UNREACH,
                IcmpxCode::NoRoute => icmp4::CODE_NET_UNREACH,
                IcmpxCode::AdminProhibited => icmp4::CODE_ADMIN_PROHIBITED,
            },
            wire::IPPROTO_ICMP,
        ),
        Family::Ipv6 => (
            icmp6::DEST_UNREACH,
            match code {
                IcmpxCode::PortUnreachable => icmp6::CODE_PORT_UNREACH,
                IcmpxCode::HostUnreachable => icmp6::CODE_ADDR_UNREACH,
                IcmpxCode::NoRoute => icmp6::CODE_NO_ROUTE,
                IcmpxCode::AdminProhibited => icmp6::CODE_ADMIN_PROHIBITED,
            },
            wire::IPPROTO_ICMPV6,
        ),
    };
    let (src, dst) = (p.dst, p.src);
    let icmp_len = wire::ICMP_HDR_LEN + quote;
    write_ip_header(p.family, &src, &dst, proto, icmp_len, out);
    let m = &mut out[hl..hl + icmp_len];
    m[..wire::ICMP_HDR_LEN].fill(0);
    m[0] = typ;
    m[1] = c;
    m[wire::ICMP_HDR_LEN..].copy_from_slice(&orig[..quote]);
    let csum = match p.family {
        Family::Ipv4 => checksum::finish(checksum::sum(m, 0)),
        Family::Ipv6 => l4_checksum(p.family, &src, &dst, proto, m),
    };
    m[2..4].copy_from_slice(&csum.to_be_bytes());
    Ok(hl + icmp_len)
}
