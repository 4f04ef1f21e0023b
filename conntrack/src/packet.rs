//! Parsing of raw IPv4/IPv6 packets into what the tracker needs.
//!
//! The parser never panics and never allocates: every length is checked with
//! `get`, every malformed header becomes an [`InvalidReason`]. Headers that make
//! the IP layer itself unusable (bad version, truncated IP header, a broken
//! IPv6 extension-header chain) are returned as `Err`; the packet cannot be
//! attributed to a flow and is dropped. A malformed transport header is carried
//! inside an otherwise valid [`Packet`] as [`L4::Invalid`]: the packet gets
//! `ct state invalid` and the rules decide, as netfilter does.
//!
//! Checksums are deliberately not verified: packets from the TUN device may
//! carry partial checksums (offloads), and packets from a peer were already
//! authenticated by the data channel's AEAD.

use crate::wire::{self, icmp4, icmp6};
use serde::{Deserialize, Serialize};

/// An IP address in network byte order; IPv4 uses the first four bytes and
/// leaves the rest zero.
pub type Addr = [u8; 16];

/// IP version of a packet or a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl Family {
    /// The name `conntrack -o extended` prints.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    /// The `AF_*` number `conntrack -o extended` prints.
    pub fn af_number(self) -> u8 {
        match self {
            Family::Ipv4 => 2,
            Family::Ipv6 => 10,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Family::Ipv4 => 4,
            Family::Ipv6 => 6,
        }
    }
}

/// Why a packet is invalid. Every variant has its own counter
/// ([`crate::Stats::invalid_reasons`]) so "why was my packet dropped" has an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[repr(u8)]
pub enum InvalidReason {
    /// Zero-length packet.
    #[error("empty packet")]
    Empty,
    /// First nibble is neither 4 nor 6.
    #[error("IP version is neither 4 nor 6")]
    BadVersion,
    /// Shorter than the IPv4 header it announces.
    #[error("IPv4 header truncated")]
    Ipv4Truncated,
    /// IHL below 5 words.
    #[error("IPv4 header length below 20 bytes")]
    Ipv4BadIhl,
    /// Total length below the header length or beyond the buffer.
    #[error("IPv4 total length inconsistent with header or buffer")]
    Ipv4BadTotalLength,
    /// Shorter than the fixed IPv6 header.
    #[error("IPv6 header truncated")]
    Ipv6Truncated,
    /// Payload length runs past the buffer.
    #[error("IPv6 payload length exceeds the packet")]
    Ipv6BadPayloadLength,
    /// Payload length zero with a Hop-by-Hop header (jumbogram), not supported.
    #[error("IPv6 jumbograms are not supported")]
    Ipv6Jumbogram,
    /// An extension header runs past the end of the packet.
    #[error("IPv6 extension header truncated")]
    ExtHeaderTruncated,
    /// More extension headers than we are willing to walk.
    #[error("IPv6 extension header chain too long")]
    ExtHeaderChainTooLong,
    /// Hop-by-Hop options anywhere but first (RFC 8200 4.1).
    #[error("IPv6 Hop-by-Hop header not first")]
    HopByHopNotFirst,
    /// Two fragment headers in one chain.
    #[error("IPv6 fragment header repeated")]
    DuplicateFragmentHeader,
    /// TCP header shorter than 20 bytes or than its data offset.
    #[error("TCP header truncated")]
    TcpTruncated,
    /// TCP data offset below 5 words.
    #[error("TCP data offset below 20 bytes")]
    TcpBadDataOffset,
    /// A flag combination no TCP sends (SYN+FIN, no flags, ...).
    #[error("invalid TCP flag combination")]
    TcpBadFlags,
    /// UDP header truncated.
    #[error("UDP header truncated")]
    UdpTruncated,
    /// UDP length field below 8 or beyond the packet.
    #[error("UDP length field inconsistent")]
    UdpBadLength,
    /// ICMP header truncated.
    #[error("ICMP header truncated")]
    IcmpTruncated,
    /// ICMPv4 type above 18 (RFC 1122 3.2.2: discard).
    #[error("unknown ICMP type")]
    IcmpUnknownType,
    /// ICMPv4 inside IPv6 or ICMPv6 inside IPv4.
    #[error("ICMP version does not match IP version")]
    IcmpWrongFamily,
    /// ICMP type that cannot open a connection (a reply without request, router advertisement, ...).
    #[error("ICMP type cannot create a connection")]
    IcmpNoConnection,
    /// The packet quoted by an ICMP error is unparsable.
    #[error("ICMP error quotes an unparsable packet")]
    IcmpErrorBadInner,
    /// An ICMP error quoting another ICMP error.
    #[error("ICMP error quotes an ICMP error")]
    IcmpErrorNested,
    /// IPv6 "no next header": nothing to track.
    #[error("IPv6 no next header")]
    NoNextHeader,
    /// First fragment too short to hold the whole transport header (tiny-fragment attack).
    #[error("first fragment does not hold the transport header")]
    FirstFragmentTooShort,
    /// A later fragment overlapping the transport header of the first.
    #[error("fragment overlaps the transport header")]
    FragmentOverlapsHeader,
    /// A later fragment whose first fragment was not seen (or expired).
    #[error("fragment without a tracked first fragment")]
    FragmentUnmatched,
    /// A TCP packet that cannot open a connection (not a SYN, or pick-up disabled).
    #[error("TCP packet cannot create a connection")]
    TcpInvalidNew,
    /// A TCP packet invalid in the connection's state.
    #[error("TCP packet invalid in this state")]
    TcpInvalidState,
    /// Sequence number beyond the receiver's window.
    #[error("TCP sequence number over the window")]
    TcpSeqOverWindow,
    /// Acknowledges data never sent.
    #[error("TCP acknowledgement over the window")]
    TcpAckOverWindow,
    /// A RST below the last acknowledged sequence number.
    #[error("TCP RST out of window")]
    TcpInvalidRst,
    /// An ICMP error quoting a flow we do not know.
    #[error("ICMP error for an unknown connection")]
    RelatedNotFound,
    /// An ICMP error not addressed to the sender of the packet it quotes.
    #[error("ICMP error destination does not match the quoted packet")]
    RelatedAddressMismatch,
}

impl InvalidReason {
    /// Number of variants (size of per-reason counter arrays).
    pub const COUNT: usize = InvalidReason::RelatedAddressMismatch as usize + 1;

    /// All reasons in counter order.
    pub const ALL: [InvalidReason; InvalidReason::COUNT] = {
        use InvalidReason::*;
        [
            Empty,
            BadVersion,
            Ipv4Truncated,
            Ipv4BadIhl,
            Ipv4BadTotalLength,
            Ipv6Truncated,
            Ipv6BadPayloadLength,
            Ipv6Jumbogram,
            ExtHeaderTruncated,
            ExtHeaderChainTooLong,
            HopByHopNotFirst,
            DuplicateFragmentHeader,
            TcpTruncated,
            TcpBadDataOffset,
            TcpBadFlags,
            UdpTruncated,
            UdpBadLength,
            IcmpTruncated,
            IcmpUnknownType,
            IcmpWrongFamily,
            IcmpNoConnection,
            IcmpErrorBadInner,
            IcmpErrorNested,
            NoNextHeader,
            FirstFragmentTooShort,
            FragmentOverlapsHeader,
            FragmentUnmatched,
            TcpInvalidNew,
            TcpInvalidState,
            TcpSeqOverWindow,
            TcpAckOverWindow,
            TcpInvalidRst,
            RelatedNotFound,
            RelatedAddressMismatch,
        ]
    };

    /// Short snake_case name for counters and logs.
    pub fn name(self) -> &'static str {
        use InvalidReason::*;
        match self {
            Empty => "empty",
            BadVersion => "bad_version",
            Ipv4Truncated => "ipv4_truncated",
            Ipv4BadIhl => "ipv4_bad_ihl",
            Ipv4BadTotalLength => "ipv4_bad_total_length",
            Ipv6Truncated => "ipv6_truncated",
            Ipv6BadPayloadLength => "ipv6_bad_payload_length",
            Ipv6Jumbogram => "ipv6_jumbogram",
            ExtHeaderTruncated => "ext_header_truncated",
            ExtHeaderChainTooLong => "ext_header_chain_too_long",
            HopByHopNotFirst => "hop_by_hop_not_first",
            DuplicateFragmentHeader => "duplicate_fragment_header",
            TcpTruncated => "tcp_truncated",
            TcpBadDataOffset => "tcp_bad_data_offset",
            TcpBadFlags => "tcp_bad_flags",
            UdpTruncated => "udp_truncated",
            UdpBadLength => "udp_bad_length",
            IcmpTruncated => "icmp_truncated",
            IcmpUnknownType => "icmp_unknown_type",
            IcmpWrongFamily => "icmp_wrong_family",
            IcmpNoConnection => "icmp_no_connection",
            IcmpErrorBadInner => "icmp_error_bad_inner",
            IcmpErrorNested => "icmp_error_nested",
            NoNextHeader => "no_next_header",
            FirstFragmentTooShort => "first_fragment_too_short",
            FragmentOverlapsHeader => "fragment_overlaps_header",
            FragmentUnmatched => "fragment_unmatched",
            TcpInvalidNew => "tcp_invalid_new",
            TcpInvalidState => "tcp_invalid_state",
            TcpSeqOverWindow => "tcp_seq_over_window",
            TcpAckOverWindow => "tcp_ack_over_window",
            TcpInvalidRst => "tcp_invalid_rst",
            RelatedNotFound => "related_not_found",
            RelatedAddressMismatch => "related_address_mismatch",
        }
    }
}

/// Fragmentation of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frag {
    /// Not fragmented (IPv6 atomic fragments count as not fragmented, RFC 6946).
    None,
    /// Offset zero with more fragments to come: carries the transport header.
    First {
        /// IPv4 identification or IPv6 fragment identification.
        id: u32,
    },
    /// Offset above zero: no transport header.
    Later {
        /// IPv4 identification or IPv6 fragment identification.
        id: u32,
        /// Fragment offset in bytes.
        offset: u32,
    },
}

/// TCP header fields the tracker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Raw (unscaled) window.
    pub win: u16,
    /// Flag byte (FIN 0x01 ... CWR 0x80).
    pub flags: u8,
    /// Header length in bytes (data offset * 4).
    pub hdr_len: u8,
    /// Payload bytes carried by this segment.
    pub payload_len: u32,
}

impl TcpInfo {
    /// Whether all the given flag bits are set.
    pub fn has(&self, f: u8) -> bool {
        self.flags & f == f
    }
}

/// The transport part of an ICMP error's quoted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnerL4 {
    /// TCP or UDP ports.
    Ports {
        /// Source port of the quoted packet.
        sport: u16,
        /// Destination port of the quoted packet.
        dport: u16,
    },
    /// A quoted ICMP query (echo, timestamp ...).
    Icmp {
        /// Type of the quoted message.
        typ: u8,
        /// Its identifier.
        id: u16,
    },
    /// Any other protocol: addresses and protocol only.
    Other,
}

/// The packet an ICMP error quotes, as its sender sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerFlow {
    /// Source of the quoted packet.
    pub src: Addr,
    /// Destination of the quoted packet.
    pub dst: Addr,
    /// Protocol of the quoted packet.
    pub proto: u8,
    /// Its transport identifiers.
    pub l4: InnerL4,
}

/// The transport layer of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// A well-formed TCP header.
    Tcp(TcpInfo),
    /// A well-formed UDP header.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// An ICMP/ICMPv6 query or reply (echo, timestamp, node information ...).
    IcmpQuery {
        /// ICMP type.
        typ: u8,
        /// ICMP code.
        code: u8,
        /// Identifier, used as the "port".
        id: u16,
    },
    /// An ICMP/ICMPv6 error quoting a packet.
    IcmpError {
        /// ICMP type.
        typ: u8,
        /// ICMP code.
        code: u8,
        /// The quoted flow.
        inner: InnerFlow,
    },
    /// An ICMPv6 neighbour-discovery or MLD message: never tracked.
    IcmpUntracked {
        /// ICMP type.
        typ: u8,
        /// ICMP code.
        code: u8,
    },
    /// Any other protocol: tracked by addresses and protocol only.
    Other,
    /// A non-first fragment: no transport header.
    Fragment,
    /// A malformed transport header.
    Invalid(InvalidReason),
}

/// A parsed packet, borrowing the caller's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// IP version.
    pub family: Family,
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// Transport protocol (after walking IPv6 extension headers).
    pub proto: u8,
    /// Bytes this packet adds to the connection's counters (the IP length,
    /// minus repeated headers for fragments, so reassembled totals match netfilter's).
    pub len: u32,
    /// Fragmentation.
    pub frag: Frag,
    /// Transport header.
    pub l4: L4,
    data: &'a [u8],
    l4_off: usize,
}

impl<'a> Packet<'a> {
    /// The packet bytes, trimmed to the IP length.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Offset of the transport header in [`Self::bytes`].
    pub fn l4_offset(&self) -> usize {
        self.l4_off
    }

    /// TCP option bytes (empty when not TCP).
    pub fn tcp_options(&self) -> &'a [u8] {
        match self.l4 {
            L4::Tcp(t) => self
                .data
                .get(self.l4_off + wire::TCP_HDR_LEN..self.l4_off + t.hdr_len as usize)
                .unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Source and destination ports for TCP/UDP.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.l4 {
            L4::Tcp(t) => Some((t.sport, t.dport)),
            L4::Udp { sport, dport } => Some((sport, dport)),
            _ => None,
        }
    }

    /// ICMP type and code for any ICMP/ICMPv6 message.
    pub fn icmp_type_code(&self) -> Option<(u8, u8)> {
        match self.l4 {
            L4::IcmpQuery { typ, code, .. }
            | L4::IcmpError { typ, code, .. }
            | L4::IcmpUntracked { typ, code } => Some((typ, code)),
            _ => None,
        }
    }
}

#[inline]
fn be16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

#[inline]
fn addr4(b: &[u8], off: usize) -> Option<Addr> {
    let s: [u8; 4] = b.get(off..off + 4)?.try_into().ok()?;
    // One 4-byte load widened in a register: building the array byte by byte
    // on the stack and reading it back whole stalls store forwarding.
    Some(u128::from(u32::from_le_bytes(s)).to_le_bytes())
}

#[inline]
fn addr6(b: &[u8], off: usize) -> Option<Addr> {
    let s = b.get(off..off + 16)?;
    let mut a = [0u8; 16];
    a.copy_from_slice(s);
    Some(a)
}

/// IP layer of a packet: where the transport header starts.
#[derive(Debug, Clone, Copy)]
struct IpLayer {
    family: Family,
    src: Addr,
    dst: Addr,
    proto: u8,
    /// Length of the packet per its IP header (outer) or of the quote (inner).
    total: usize,
    l4_off: usize,
    frag: Frag,
    /// Bytes to count for this packet.
    counted: usize,
}

/// Walk the IP header (and IPv6 extension headers). `quoted` relaxes the
/// total-length check for packets quoted inside ICMP errors, which are cut short.
#[inline(always)]
fn parse_ip(buf: &[u8], quoted: bool) -> Result<IpLayer, InvalidReason> {
    let first = *buf.first().ok_or(InvalidReason::Empty)?;
    match first >> 4 {
        4 => parse_ipv4(buf, quoted),
        6 => parse_ipv6(buf, quoted),
        _ => Err(InvalidReason::BadVersion),
    }
}

#[inline]
fn parse_ipv4(buf: &[u8], quoted: bool) -> Result<IpLayer, InvalidReason> {
    if buf.len() < wire::IPV4_HDR_LEN {
        return Err(InvalidReason::Ipv4Truncated);
    }
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    if ihl < wire::IPV4_HDR_LEN {
        return Err(InvalidReason::Ipv4BadIhl);
    }
    if buf.len() < ihl {
        return Err(InvalidReason::Ipv4Truncated);
    }
    let total_field = usize::from(be16(buf, 2).ok_or(InvalidReason::Ipv4Truncated)?);
    let total = if quoted {
        // A quote is cut short; keep what we have but never more than announced.
        if total_field < ihl {
            return Err(InvalidReason::Ipv4BadTotalLength);
        }
        buf.len().min(total_field)
    } else {
        if total_field < ihl || total_field > buf.len() {
            return Err(InvalidReason::Ipv4BadTotalLength);
        }
        total_field
    };
    let id = u32::from(be16(buf, 4).ok_or(InvalidReason::Ipv4Truncated)?);
    let fo = be16(buf, 6).ok_or(InvalidReason::Ipv4Truncated)?;
    let offset = u32::from(fo & wire::IPV4_OFFSET_MASK) * 8;
    let more = fo & wire::IPV4_MF != 0;
    let frag = if offset > 0 {
        Frag::Later { id, offset }
    } else if more {
        Frag::First { id }
    } else {
        Frag::None
    };
    let counted = match frag {
        Frag::Later { .. } => total - ihl,
        _ => total,
    };
    Ok(IpLayer {
        family: Family::Ipv4,
        src: addr4(buf, 12).ok_or(InvalidReason::Ipv4Truncated)?,
        dst: addr4(buf, 16).ok_or(InvalidReason::Ipv4Truncated)?,
        proto: buf[9],
        total,
        l4_off: ihl,
        frag,
        counted,
    })
}

fn parse_ipv6(buf: &[u8], quoted: bool) -> Result<IpLayer, InvalidReason> {
    if buf.len() < wire::IPV6_HDR_LEN {
        return Err(InvalidReason::Ipv6Truncated);
    }
    let payload = usize::from(be16(buf, 4).ok_or(InvalidReason::Ipv6Truncated)?);
    let mut next = buf[6];
    if payload == 0 && next == wire::IPPROTO_HOPOPTS && !quoted {
        return Err(InvalidReason::Ipv6Jumbogram);
    }
    let total = if quoted {
        buf.len().min(wire::IPV6_HDR_LEN + payload)
    } else {
        let t = wire::IPV6_HDR_LEN + payload;
        if t > buf.len() {
            return Err(InvalidReason::Ipv6BadPayloadLength);
        }
        t
    };
    let data = &buf[..total];
    let src = addr6(buf, 8).ok_or(InvalidReason::Ipv6Truncated)?;
    let dst = addr6(buf, 24).ok_or(InvalidReason::Ipv6Truncated)?;

    let mut off = wire::IPV6_HDR_LEN;
    let mut frag = Frag::None;
    let mut frag_hdr_seen = false;
    let mut count = 0usize;
    while matches!(
        next,
        wire::IPPROTO_HOPOPTS
            | wire::IPPROTO_ROUTING
            | wire::IPPROTO_DSTOPTS
            | wire::IPPROTO_AH
            | wire::IPPROTO_FRAGMENT
    ) {
        if count >= wire::IPV6_MAX_EXT_HEADERS {
            return Err(InvalidReason::ExtHeaderChainTooLong);
        }
        if next == wire::IPPROTO_HOPOPTS && count != 0 {
            return Err(InvalidReason::HopByHopNotFirst);
        }
        count += 1;
        let hdr = data
            .get(off..off + 8)
            .ok_or(InvalidReason::ExtHeaderTruncated)?;
        let this = next;
        next = hdr[0];
        if this == wire::IPPROTO_FRAGMENT {
            if frag_hdr_seen {
                return Err(InvalidReason::DuplicateFragmentHeader);
            }
            frag_hdr_seen = true;
            let fo = u16::from_be_bytes([hdr[2], hdr[3]]);
            let offset = u32::from(fo >> 3) * 8;
            let more = fo & 1 != 0;
            let id = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
            off += wire::IPV6_FRAG_HDR_LEN;
            if offset > 0 {
                // Everything after this header is fragment payload, not headers.
                frag = Frag::Later { id, offset };
                break;
            } else if more {
                frag = Frag::First { id };
            }
            // offset 0 and no more fragments: an atomic fragment (RFC 6946),
            // processed as an unfragmented packet.
            continue;
        }
        let len = if this == wire::IPPROTO_AH {
            (usize::from(hdr[1]) + 2) * 4
        } else {
            (usize::from(hdr[1]) + 1) * 8
        };
        if off + len > data.len() {
            return Err(InvalidReason::ExtHeaderTruncated);
        }
        off += len;
    }
    // Counted bytes mirror what netfilter's reassembly would show: the fragment
    // header vanishes, later fragments add only their payload.
    let counted = match frag {
        Frag::None if frag_hdr_seen => total - wire::IPV6_FRAG_HDR_LEN,
        Frag::None => total,
        Frag::First { .. } => total - wire::IPV6_FRAG_HDR_LEN,
        Frag::Later { .. } => total - off,
    };
    Ok(IpLayer {
        family: Family::Ipv6,
        src,
        dst,
        proto: next,
        total,
        l4_off: off,
        frag,
        counted,
    })
}

/// TCP flag combinations (ignoring PSH, ECE, CWR) that a real stack sends;
/// anything else (SYN+FIN, no flags, Xmas ...) is invalid.
fn tcp_flags_valid(flags: u8) -> bool {
    use wire::{TCP_ACK as A, TCP_FIN as F, TCP_RST as R, TCP_SYN as S, TCP_URG as U};
    const VALID: [u8; 9] = [S, S | U, S | A, R, R | A, F | A, F | A | U, A, A | U];
    let f = flags & !(wire::TCP_PSH | wire::TCP_ECE | wire::TCP_CWR);
    VALID.contains(&f)
}

#[inline]
fn parse_tcp(data: &[u8], off: usize, first_frag: bool) -> L4 {
    let Some(h) = data.get(off..off + wire::TCP_HDR_LEN) else {
        return L4::Invalid(if first_frag {
            InvalidReason::FirstFragmentTooShort
        } else {
            InvalidReason::TcpTruncated
        });
    };
    let hdr_len = usize::from(h[12] >> 4) * 4;
    if hdr_len < wire::TCP_HDR_LEN {
        return L4::Invalid(InvalidReason::TcpBadDataOffset);
    }
    if off + hdr_len > data.len() {
        return L4::Invalid(if first_frag {
            InvalidReason::FirstFragmentTooShort
        } else {
            InvalidReason::TcpTruncated
        });
    }
    let flags = h[13];
    if !tcp_flags_valid(flags) {
        return L4::Invalid(InvalidReason::TcpBadFlags);
    }
    L4::Tcp(TcpInfo {
        sport: u16::from_be_bytes([h[0], h[1]]),
        dport: u16::from_be_bytes([h[2], h[3]]),
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        win: u16::from_be_bytes([h[14], h[15]]),
        flags,
        // hdr_len <= 60 always (4-bit field * 4).
        hdr_len: hdr_len as u8,
        payload_len: (data.len() - off - hdr_len) as u32,
    })
}

#[inline]
fn parse_udp(data: &[u8], off: usize, first_frag: bool) -> L4 {
    let Some(h) = data.get(off..off + wire::UDP_HDR_LEN) else {
        return L4::Invalid(if first_frag {
            InvalidReason::FirstFragmentTooShort
        } else {
            InvalidReason::UdpTruncated
        });
    };
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    // In a first fragment the length covers the whole datagram, not what we hold.
    if len < wire::UDP_HDR_LEN || (!first_frag && len > data.len() - off) {
        return L4::Invalid(InvalidReason::UdpBadLength);
    }
    L4::Udp {
        sport: u16::from_be_bytes([h[0], h[1]]),
        dport: u16::from_be_bytes([h[2], h[3]]),
    }
}

/// Parse the packet quoted in an ICMP error (starting at `off` in `data`).
fn parse_inner(family: Family, data: &[u8], off: usize) -> Result<InnerFlow, InvalidReason> {
    let quote = data.get(off..).ok_or(InvalidReason::IcmpErrorBadInner)?;
    let ip = parse_ip(quote, true).map_err(|_| InvalidReason::IcmpErrorBadInner)?;
    if ip.family != family || matches!(ip.frag, Frag::Later { .. }) {
        return Err(InvalidReason::IcmpErrorBadInner);
    }
    let l4 = quote.get(ip.l4_off..).unwrap_or(&[]);
    let inner_l4 = match ip.proto {
        wire::IPPROTO_TCP | wire::IPPROTO_UDP => {
            // RFC 792 guarantees 64 bits of the original datagram.
            if l4.len() < 8 {
                return Err(InvalidReason::IcmpErrorBadInner);
            }
            InnerL4::Ports {
                sport: u16::from_be_bytes([l4[0], l4[1]]),
                dport: u16::from_be_bytes([l4[2], l4[3]]),
            }
        }
        wire::IPPROTO_ICMP | wire::IPPROTO_ICMPV6 => {
            let v6 = ip.proto == wire::IPPROTO_ICMPV6;
            if v6 != (family == Family::Ipv6) || l4.len() < 8 {
                return Err(InvalidReason::IcmpErrorBadInner);
            }
            let typ = l4[0];
            let is_err = if v6 {
                icmp6::is_error(typ)
            } else {
                icmp4::is_error(typ)
            };
            if is_err {
                return Err(InvalidReason::IcmpErrorNested);
            }
            let query = if v6 {
                icmp6::reply_of(typ).is_some() || icmp6::request_of(typ).is_some()
            } else {
                icmp4::reply_of(typ).is_some() || icmp4::request_of(typ).is_some()
            };
            if !query {
                return Err(InvalidReason::IcmpErrorBadInner);
            }
            InnerL4::Icmp {
                typ,
                id: u16::from_be_bytes([l4[4], l4[5]]),
            }
        }
        wire::IPPROTO_NONE => return Err(InvalidReason::IcmpErrorBadInner),
        _ => InnerL4::Other,
    };
    Ok(InnerFlow {
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        l4: inner_l4,
    })
}

fn parse_icmp(family: Family, data: &[u8], off: usize, first_frag: bool) -> L4 {
    let Some(h) = data.get(off..off + wire::ICMP_HDR_LEN) else {
        return L4::Invalid(if first_frag {
            InvalidReason::FirstFragmentTooShort
        } else {
            InvalidReason::IcmpTruncated
        });
    };
    let (typ, code) = (h[0], h[1]);
    let id = u16::from_be_bytes([h[4], h[5]]);
    let (is_err, is_query) = match family {
        Family::Ipv4 => {
            if typ > icmp4::MAX_KNOWN {
                return L4::Invalid(InvalidReason::IcmpUnknownType);
            }
            (
                icmp4::is_error(typ),
                icmp4::reply_of(typ).is_some() || icmp4::request_of(typ).is_some(),
            )
        }
        Family::Ipv6 => {
            if icmp6::is_untracked(typ) {
                return L4::IcmpUntracked { typ, code };
            }
            (
                icmp6::is_error(typ),
                icmp6::reply_of(typ).is_some() || icmp6::request_of(typ).is_some(),
            )
        }
    };
    if is_err {
        return match parse_inner(family, data, off + wire::ICMP_HDR_LEN) {
            Ok(inner) => L4::IcmpError { typ, code, inner },
            Err(e) => L4::Invalid(e),
        };
    }
    if is_query {
        L4::IcmpQuery { typ, code, id }
    } else {
        L4::Invalid(InvalidReason::IcmpNoConnection)
    }
}

/// Parse a raw IPv4 or IPv6 packet (no link-layer header).
///
/// Returns `Err` only when the IP layer itself is unusable; transport-layer
/// problems come back as [`L4::Invalid`].
#[inline(always)]
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, InvalidReason> {
    let ip = parse_ip(buf, false)?;
    let data = &buf[..ip.total];
    let first_frag = matches!(ip.frag, Frag::First { .. });
    let l4 = if matches!(ip.frag, Frag::Later { .. }) {
        L4::Fragment
    } else {
        match (ip.proto, ip.family) {
            (wire::IPPROTO_TCP, _) => parse_tcp(data, ip.l4_off, first_frag),
            (wire::IPPROTO_UDP, _) => parse_udp(data, ip.l4_off, first_frag),
            (wire::IPPROTO_ICMP, Family::Ipv4) | (wire::IPPROTO_ICMPV6, Family::Ipv6) => {
                parse_icmp(ip.family, data, ip.l4_off, first_frag)
            }
            (wire::IPPROTO_ICMP, Family::Ipv6) | (wire::IPPROTO_ICMPV6, Family::Ipv4) => {
                L4::Invalid(InvalidReason::IcmpWrongFamily)
            }
            (wire::IPPROTO_NONE, Family::Ipv6) => L4::Invalid(InvalidReason::NoNextHeader),
            _ => L4::Other,
        }
    };
    Ok(Packet {
        family: ip.family,
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        len: ip.counted as u32,
        frag: ip.frag,
        l4,
        data,
        l4_off: ip.l4_off,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{self, IpOpts, Tcp};
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn tcp_seg(src: &str, dst: &str) -> Vec<u8> {
        Tcp {
            sport: 1234,
            dport: 80,
            seq: 7,
            flags: wire::TCP_SYN,
            win: 1000,
            ..Tcp::default()
        }
        .segment(ip(src), ip(dst))
    }

    #[test]
    fn ipv4_tcp() {
        let p = Tcp {
            sport: 1234,
            dport: 80,
            seq: 7,
            ack: 9,
            flags: wire::TCP_ACK | wire::TCP_PSH,
            win: 1000,
            options: vec![1, 1, 1, 1],
            payload: vec![1, 2, 3],
        }
        .packet(ip("10.0.0.1"), ip("10.0.0.2"));
        let pk = parse(&p).unwrap();
        assert_eq!(pk.family, Family::Ipv4);
        assert_eq!(pk.len as usize, p.len());
        assert_eq!(pk.frag, Frag::None);
        let L4::Tcp(t) = pk.l4 else {
            panic!("{:?}", pk.l4)
        };
        assert_eq!(
            (t.sport, t.dport, t.seq, t.ack, t.win),
            (1234, 80, 7, 9, 1000)
        );
        assert_eq!((t.hdr_len, t.payload_len), (24, 3));
        assert_eq!(pk.tcp_options(), &[1, 1, 1, 1]);
    }

    #[test]
    fn trailing_padding_is_ignored_and_short_buffers_rejected() {
        let mut p = build::udp(ip("10.0.0.1"), ip("10.0.0.2"), 1, 2, b"xy");
        let n = p.len();
        p.extend_from_slice(&[0; 6]); // Ethernet minimum-frame padding
        let pk = parse(&p).unwrap();
        assert_eq!(pk.len as usize, n);
        assert_eq!(pk.bytes().len(), n);
        assert_eq!(
            parse(&p[..n - 1]).unwrap_err(),
            InvalidReason::Ipv4BadTotalLength
        );
        assert_eq!(parse(&p[..19]).unwrap_err(), InvalidReason::Ipv4Truncated);
        assert_eq!(parse(&[]).unwrap_err(), InvalidReason::Empty);
        assert_eq!(parse(&[0x55; 40]).unwrap_err(), InvalidReason::BadVersion);
        let mut bad = p.clone();
        bad[0] = 0x44;
        assert_eq!(parse(&bad).unwrap_err(), InvalidReason::Ipv4BadIhl);
        // IHL claims options beyond the buffer.
        let mut bad = p[..20].to_vec();
        bad[0] = 0x4f;
        assert_eq!(parse(&bad).unwrap_err(), InvalidReason::Ipv4Truncated);
    }

    #[test]
    fn truncated_transport_headers_are_invalid_not_errors() {
        let full = build::udp(ip("10.0.0.1"), ip("10.0.0.2"), 1, 2, b"");
        // Keep the IP header consistent but cut the UDP header.
        let mut p = full[..24].to_vec();
        p[2..4].copy_from_slice(&24u16.to_be_bytes());
        assert_eq!(
            parse(&p).unwrap().l4,
            L4::Invalid(InvalidReason::UdpTruncated)
        );

        let seg = tcp_seg("10.0.0.1", "10.0.0.2");
        let p = build::ip(
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            6,
            &seg[..19],
            &IpOpts::default(),
        );
        assert_eq!(
            parse(&p).unwrap().l4,
            L4::Invalid(InvalidReason::TcpTruncated)
        );
        let mut seg2 = seg.clone();
        seg2[12] = 4 << 4;
        let p = build::ip(ip("10.0.0.1"), ip("10.0.0.2"), 6, &seg2, &IpOpts::default());
        assert_eq!(
            parse(&p).unwrap().l4,
            L4::Invalid(InvalidReason::TcpBadDataOffset)
        );
        let mut seg3 = seg.clone();
        seg3[12] = 15 << 4; // 60-byte header in a 20-byte segment
        let p = build::ip(ip("10.0.0.1"), ip("10.0.0.2"), 6, &seg3, &IpOpts::default());
        assert_eq!(
            parse(&p).unwrap().l4,
            L4::Invalid(InvalidReason::TcpTruncated)
        );

        let mut u = build::udp_segment(ip("10.0.0.1"), ip("10.0.0.2"), 1, 2, b"abc");
        u[4..6].copy_from_slice(&100u16.to_be_bytes());
        let p = build::ip(ip("10.0.0.1"), ip("10.0.0.2"), 17, &u, &IpOpts::default());
        assert_eq!(
            parse(&p).unwrap().l4,
            L4::Invalid(InvalidReason::UdpBadLength)
        );

        let p = build::ip(
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            1,
            &[8, 0, 0],
            &IpOpts::default(),
        );
        assert_eq!(
            parse(&p).unwrap().l4,
            L4::Invalid(InvalidReason::IcmpTruncated)
        );
    }

    #[test]
    fn ipv6_extension_header_chain() {
        let seg = tcp_seg("fd00::1", "fd00::2");
        let o = IpOpts {
            ext: vec![
                (wire::IPPROTO_HOPOPTS, vec![1, 4, 0, 0, 0, 0]),
                (wire::IPPROTO_DSTOPTS, vec![0; 14]),
                (wire::IPPROTO_ROUTING, vec![0, 0, 0, 0, 0, 0]),
                (wire::IPPROTO_AH, vec![0; 10]),
                (wire::IPPROTO_DSTOPTS, vec![0; 6]),
            ],
            ..IpOpts::default()
        };
        let p = build::ip(ip("fd00::1"), ip("fd00::2"), 6, &seg, &o);
        let pk = parse(&p).unwrap();
        assert_eq!(pk.proto, 6);
        assert!(matches!(pk.l4, L4::Tcp(t) if t.dport == 80));
        // 40 + 8 + 16 + 8 + 12 + 8
        assert_eq!(pk.l4_offset(), 92);
    }

    #[test]
    fn ipv6_bad_chains() {
        let seg = tcp_seg("fd00::1", "fd00::2");
        let mk = |ext: Vec<(u8, Vec<u8>)>| {
            build::ip(
                ip("fd00::1"),
                ip("fd00::2"),
                6,
                &seg,
                &IpOpts {
                    ext,
                    ..IpOpts::default()
                },
            )
        };
        let p = mk(vec![
            (wire::IPPROTO_DSTOPTS, vec![0; 6]),
            (wire::IPPROTO_HOPOPTS, vec![0; 6]),
        ]);
        assert_eq!(parse(&p).unwrap_err(), InvalidReason::HopByHopNotFirst);
        let p = mk(vec![(wire::IPPROTO_DSTOPTS, vec![0; 6]); 9]);
        assert_eq!(parse(&p).unwrap_err(), InvalidReason::ExtHeaderChainTooLong);
        // Routing header claiming 2 KB.
        let mut p = mk(vec![(wire::IPPROTO_ROUTING, vec![0; 6])]);
        p[41] = 255;
        assert_eq!(parse(&p).unwrap_err(), InvalidReason::ExtHeaderTruncated);
        // Extension header cut by the payload length.
        let mut p = mk(vec![(wire::IPPROTO_DSTOPTS, vec![0; 6])]);
        p[4..6].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(parse(&p).unwrap_err(), InvalidReason::ExtHeaderTruncated);
        let mut p = mk(vec![]);
        p[4..6].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(parse(&p).unwrap_err(), InvalidReason::Ipv6BadPayloadLength);
        let mut p = mk(vec![(wire::IPPROTO_HOPOPTS, vec![0; 6])]);
        p[4..6].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(parse(&p).unwrap_err(), InvalidReason::Ipv6Jumbogram);
        assert_eq!(parse(&p[..39]).unwrap_err(), InvalidReason::Ipv6Truncated);
        // Two fragment headers.
        let frag = vec![0, 0, 0, 0, 0, 1];
        let p = mk(vec![
            (wire::IPPROTO_FRAGMENT, frag.clone()),
            (wire::IPPROTO_FRAGMENT, frag),
        ]);
        assert_eq!(
            parse(&p).unwrap_err(),
            InvalidReason::DuplicateFragmentHeader
        );
        // No next header.
        let p = build::ip(
            ip("fd00::1"),
            ip("fd00::2"),
            wire::IPPROTO_NONE,
            &[],
            &IpOpts::default(),
        );
        assert_eq!(
            parse(&p).unwrap().l4,
            L4::Invalid(InvalidReason::NoNextHeader)
        );
    }

    #[test]
    fn fragments_v4_and_v6() {
        let seg = tcp_seg("10.0.0.1", "10.0.0.2");
        let first = build::ip(
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            6,
            &seg,
            &IpOpts {
                id: 77,
                frag: Some((0, true)),
                ..IpOpts::default()
            },
        );
        let pk = parse(&first).unwrap();
        assert_eq!(pk.frag, Frag::First { id: 77 });
        assert!(matches!(pk.l4, L4::Tcp(_)));
        let later = build::ip(
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            6,
            &[0; 16],
            &IpOpts {
                id: 77,
                frag: Some((24, false)),
                ..IpOpts::default()
            },
        );
        let pk = parse(&later).unwrap();
        assert_eq!(pk.frag, Frag::Later { id: 77, offset: 24 });
        assert_eq!(pk.l4, L4::Fragment);
        assert_eq!(pk.len, 16);
        // Tiny first fragment: not even the TCP header.
        let tiny = build::ip(
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            6,
            &seg[..8],
            &IpOpts {
                id: 78,
                frag: Some((0, true)),
                ..IpOpts::default()
            },
        );
        assert_eq!(
            parse(&tiny).unwrap().l4,
            L4::Invalid(InvalidReason::FirstFragmentTooShort)
        );

        let seg6 = tcp_seg("fd00::1", "fd00::2");
        let first6 = build::ip(
            ip("fd00::1"),
            ip("fd00::2"),
            6,
            &seg6,
            &IpOpts {
                id: 0xdead_beef,
                frag: Some((0, true)),
                ..IpOpts::default()
            },
        );
        let pk = parse(&first6).unwrap();
        assert_eq!(pk.frag, Frag::First { id: 0xdead_beef });
        assert_eq!(pk.proto, 6);
        assert_eq!(pk.len as usize, first6.len() - 8);
        let later6 = build::ip(
            ip("fd00::1"),
            ip("fd00::2"),
            6,
            &[0; 16],
            &IpOpts {
                id: 0xdead_beef,
                frag: Some((1232, true)),
                ..IpOpts::default()
            },
        );
        let pk = parse(&later6).unwrap();
        assert_eq!(
            pk.frag,
            Frag::Later {
                id: 0xdead_beef,
                offset: 1232
            }
        );
        assert_eq!(pk.len, 16);
        // Atomic fragment (offset 0, no more): an ordinary packet.
        let atomic = build::ip(
            ip("fd00::1"),
            ip("fd00::2"),
            6,
            &seg6,
            &IpOpts {
                id: 5,
                frag: Some((0, false)),
                ..IpOpts::default()
            },
        );
        let pk = parse(&atomic).unwrap();
        assert_eq!(pk.frag, Frag::None);
        assert!(matches!(pk.l4, L4::Tcp(_)));
    }

    #[test]
    fn icmp_kinds() {
        let a = ip("10.0.0.1");
        let b = ip("10.0.0.2");
        let buf = build::echo_request(a, b, 9, 1);
        let pk = parse(&buf).unwrap();
        assert_eq!(
            pk.l4,
            L4::IcmpQuery {
                typ: 8,
                code: 0,
                id: 9
            }
        );
        let buf = build::icmp(a, b, 9, 0, [0; 4], &[]);
        let pk = parse(&buf).unwrap();
        assert_eq!(pk.l4, L4::Invalid(InvalidReason::IcmpNoConnection));
        let buf = build::icmp(a, b, 40, 0, [0; 4], &[]);
        let pk = parse(&buf).unwrap();
        assert_eq!(pk.l4, L4::Invalid(InvalidReason::IcmpUnknownType));

        let quoted = build::udp(b, ip("192.0.2.1"), 5000, 53, b"q");
        let buf = build::icmp_error(a, b, 3, 3, &quoted);
        let pk = parse(&buf).unwrap();
        let L4::IcmpError {
            typ: 3,
            code: 3,
            inner,
        } = pk.l4
        else {
            panic!("{:?}", pk.l4)
        };
        assert_eq!(inner.proto, 17);
        assert_eq!(
            inner.l4,
            InnerL4::Ports {
                sport: 5000,
                dport: 53
            }
        );
        // Quote cut to the IP header + 8 bytes still parses.
        let buf = build::icmp_error(a, b, 11, 0, &quoted[..28]);
        let pk = parse(&buf).unwrap();
        assert!(matches!(pk.l4, L4::IcmpError { .. }));
        let buf = build::icmp_error(a, b, 11, 0, &quoted[..24]);
        let pk = parse(&buf).unwrap();
        assert_eq!(pk.l4, L4::Invalid(InvalidReason::IcmpErrorBadInner));
        // An error quoting an error.
        let err = build::icmp_error(b, a, 3, 1, &quoted);
        let buf = build::icmp_error(a, b, 3, 1, &err);
        let pk = parse(&buf).unwrap();
        assert_eq!(pk.l4, L4::Invalid(InvalidReason::IcmpErrorNested));
        // An IPv6 packet quoted in an ICMPv4 error.
        let q6 = build::udp(ip("fd00::1"), ip("fd00::2"), 1, 2, b"");
        let buf = build::icmp_error(a, b, 3, 1, &q6);
        let pk = parse(&buf).unwrap();
        assert_eq!(pk.l4, L4::Invalid(InvalidReason::IcmpErrorBadInner));

        let a6 = ip("fd00::1");
        let b6 = ip("fd00::2");
        let buf = build::icmp(a6, b6, 135, 0, [0; 4], &[0; 16]);
        let pk = parse(&buf).unwrap();
        assert_eq!(pk.l4, L4::IcmpUntracked { typ: 135, code: 0 });
        let buf = build::echo_reply(a6, b6, 3, 1);
        let pk = parse(&buf).unwrap();
        assert_eq!(
            pk.l4,
            L4::IcmpQuery {
                typ: 129,
                code: 0,
                id: 3
            }
        );
        let q = build::udp(b6, ip("fd00::9"), 7, 8, b"x");
        let buf = build::icmp_error(a6, b6, 2, 0, &q);
        let pk = parse(&buf).unwrap();
        assert!(matches!(pk.l4, L4::IcmpError { typ: 2, .. }));
        // ICMPv4 in IPv6.
        let p = build::ip(a6, b6, 1, &[8, 0, 0, 0, 0, 0, 0, 0], &IpOpts::default());
        assert_eq!(
            parse(&p).unwrap().l4,
            L4::Invalid(InvalidReason::IcmpWrongFamily)
        );
    }

    #[test]
    fn reasons_are_listed_once_in_order() {
        for (i, r) in InvalidReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert!(!r.name().is_empty());
        }
    }
}
