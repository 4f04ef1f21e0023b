//! Wire constants: protocol numbers, header sizes, ICMP types and TCP flags.
//!
//! One place for every number the parsers and state machines compare against.

/// IPv6 Hop-by-Hop options header (only allowed right after the IPv6 header).
pub const IPPROTO_HOPOPTS: u8 = 0;
/// Internet Control Message Protocol (IPv4).
pub const IPPROTO_ICMP: u8 = 1;
/// Transmission Control Protocol.
pub const IPPROTO_TCP: u8 = 6;
/// User Datagram Protocol.
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 routing header.
pub const IPPROTO_ROUTING: u8 = 43;
/// IPv6 fragment header.
pub const IPPROTO_FRAGMENT: u8 = 44;
/// Generic Routing Encapsulation (tracked as a generic protocol).
pub const IPPROTO_GRE: u8 = 47;
/// Encapsulating Security Payload: ends the IPv6 header chain.
pub const IPPROTO_ESP: u8 = 50;
/// Authentication Header: length counted in 4-byte words.
pub const IPPROTO_AH: u8 = 51;
/// ICMP for IPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 "no next header".
pub const IPPROTO_NONE: u8 = 59;
/// IPv6 destination options header.
pub const IPPROTO_DSTOPTS: u8 = 60;
/// Stream Control Transmission Protocol (tracked as a generic protocol).
pub const IPPROTO_SCTP: u8 = 132;

/// Minimum IPv4 header length.
pub const IPV4_HDR_LEN: usize = 20;
/// Fixed IPv6 header length.
pub const IPV6_HDR_LEN: usize = 40;
/// Minimum TCP header length.
pub const TCP_HDR_LEN: usize = 20;
/// UDP header length.
pub const UDP_HDR_LEN: usize = 8;
/// ICMP / ICMPv6 header length including the 4 type-specific bytes.
pub const ICMP_HDR_LEN: usize = 8;
/// IPv6 fragment header length.
pub const IPV6_FRAG_HDR_LEN: usize = 8;
/// Most extension headers walked before the packet is declared malformed.
pub const IPV6_MAX_EXT_HEADERS: usize = 8;

/// IPv4 "more fragments" flag in the flags/offset field.
pub const IPV4_MF: u16 = 0x2000;
/// IPv4 fragment offset mask (in 8-byte units).
pub const IPV4_OFFSET_MASK: u16 = 0x1fff;

/// TCP FIN flag.
pub const TCP_FIN: u8 = 0x01;
/// TCP SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// TCP RST flag.
pub const TCP_RST: u8 = 0x04;
/// TCP PSH flag.
pub const TCP_PSH: u8 = 0x08;
/// TCP ACK flag.
pub const TCP_ACK: u8 = 0x10;
/// TCP URG flag.
pub const TCP_URG: u8 = 0x20;
/// TCP ECE flag.
pub const TCP_ECE: u8 = 0x40;
/// TCP CWR flag.
pub const TCP_CWR: u8 = 0x80;

/// TCP option kinds used by the window tracker.
pub const TCPOPT_EOL: u8 = 0;
/// No-operation padding option.
pub const TCPOPT_NOP: u8 = 1;
/// Window scale option (RFC 7323).
pub const TCPOPT_WINDOW: u8 = 3;
/// SACK permitted option.
pub const TCPOPT_SACK_PERM: u8 = 4;
/// SACK blocks option.
pub const TCPOPT_SACK: u8 = 5;
/// Largest window scale shift allowed by RFC 7323.
pub const TCP_MAX_WSCALE: u8 = 14;

/// ICMPv4 types.
pub mod icmp4 {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (an error).
    pub const DEST_UNREACH: u8 = 3;
    /// Source quench (an error, deprecated).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect (an error for tracking purposes).
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Router advertisement.
    pub const ROUTER_ADVERT: u8 = 9;
    /// Router solicitation.
    pub const ROUTER_SOLICIT: u8 = 10;
    /// Time exceeded (an error).
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem (an error).
    pub const PARAM_PROBLEM: u8 = 12;
    /// Timestamp request.
    pub const TIMESTAMP: u8 = 13;
    /// Timestamp reply.
    pub const TIMESTAMP_REPLY: u8 = 14;
    /// Information request.
    pub const INFO_REQUEST: u8 = 15;
    /// Information reply.
    pub const INFO_REPLY: u8 = 16;
    /// Address mask request.
    pub const ADDRESS: u8 = 17;
    /// Address mask reply.
    pub const ADDRESS_REPLY: u8 = 18;
    /// Highest type number defined; anything above is discarded (RFC 1122 3.2.2).
    pub const MAX_KNOWN: u8 = 18;

    /// Destination unreachable codes used by reject.
    pub const CODE_NET_UNREACH: u8 = 0;
    /// Host unreachable.
    pub const CODE_HOST_UNREACH: u8 = 1;
    /// Port unreachable.
    pub const CODE_PORT_UNREACH: u8 = 3;
    /// Communication administratively prohibited.
    pub const CODE_ADMIN_PROHIBITED: u8 = 13;

    /// Whether this type quotes an offending packet.
    pub fn is_error(t: u8) -> bool {
        matches!(
            t,
            DEST_UNREACH | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAM_PROBLEM
        )
    }

    /// For a request type, the reply type that answers it.
    pub fn reply_of(request: u8) -> Option<u8> {
        match request {
            ECHO_REQUEST => Some(ECHO_REPLY),
            TIMESTAMP => Some(TIMESTAMP_REPLY),
            INFO_REQUEST => Some(INFO_REPLY),
            ADDRESS => Some(ADDRESS_REPLY),
            _ => None,
        }
    }

    /// For a reply type, the request type it answers.
    pub fn request_of(reply: u8) -> Option<u8> {
        match reply {
            ECHO_REPLY => Some(ECHO_REQUEST),
            TIMESTAMP_REPLY => Some(TIMESTAMP),
            INFO_REPLY => Some(INFO_REQUEST),
            ADDRESS_REPLY => Some(ADDRESS),
            _ => None,
        }
    }
}

/// ICMPv6 types.
pub mod icmp6 {
    /// Destination unreachable (an error).
    pub const DEST_UNREACH: u8 = 1;
    /// Packet too big (an error).
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded (an error).
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem (an error).
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Multicast listener query.
    pub const MLD_QUERY: u8 = 130;
    /// Multicast listener report.
    pub const MLD_REPORT: u8 = 131;
    /// Multicast listener done.
    pub const MLD_DONE: u8 = 132;
    /// Router solicitation.
    pub const ND_ROUTER_SOLICIT: u8 = 133;
    /// Router advertisement.
    pub const ND_ROUTER_ADVERT: u8 = 134;
    /// Neighbour solicitation.
    pub const ND_NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbour advertisement.
    pub const ND_NEIGHBOR_ADVERT: u8 = 136;
    /// Redirect.
    pub const ND_REDIRECT: u8 = 137;
    /// Node information query.
    pub const NI_QUERY: u8 = 139;
    /// Node information reply.
    pub const NI_REPLY: u8 = 140;
    /// MLDv2 report.
    pub const MLD2_REPORT: u8 = 143;

    /// Destination unreachable codes used by reject.
    pub const CODE_NO_ROUTE: u8 = 0;
    /// Communication administratively prohibited.
    pub const CODE_ADMIN_PROHIBITED: u8 = 1;
    /// Address unreachable.
    pub const CODE_ADDR_UNREACH: u8 = 3;
    /// Port unreachable.
    pub const CODE_PORT_UNREACH: u8 = 4;

    /// Types below 128 are errors and quote the offending packet (RFC 4443).
    pub fn is_error(t: u8) -> bool {
        t < 128
    }

    /// Neighbour discovery and multicast listener messages: link-local
    /// housekeeping that is never tracked (netfilter marks them untracked).
    pub fn is_untracked(t: u8) -> bool {
        matches!(
            t,
            MLD_QUERY
                | MLD_REPORT
                | MLD_DONE
                | ND_ROUTER_SOLICIT
                | ND_ROUTER_ADVERT
                | ND_NEIGHBOR_SOLICIT
                | ND_NEIGHBOR_ADVERT
                | MLD2_REPORT
        )
    }

    /// For a request type, the reply type that answers it.
    pub fn reply_of(request: u8) -> Option<u8> {
        match request {
            ECHO_REQUEST => Some(ECHO_REPLY),
            NI_QUERY => Some(NI_REPLY),
            _ => None,
        }
    }

    /// For a reply type, the request type it answers.
    pub fn request_of(reply: u8) -> Option<u8> {
        match reply {
            ECHO_REPLY => Some(ECHO_REQUEST),
            NI_REPLY => Some(NI_QUERY),
            _ => None,
        }
    }
}

/// Name of an IP protocol number as `conntrack -L` prints it.
pub fn proto_name(proto: u8) -> &'static str {
    match proto {
        IPPROTO_ICMP => "icmp",
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_GRE => "gre",
        IPPROTO_ESP => "esp",
        IPPROTO_AH => "ah",
        IPPROTO_ICMPV6 => "icmpv6",
        IPPROTO_SCTP => "sctp",
        33 => "dccp",
        136 => "udplite",
        _ => "unknown",
    }
}
