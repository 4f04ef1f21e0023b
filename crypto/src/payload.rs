//! Plaintexts that are not IP packets: the keepalive ping and OCC messages (§7.1, §7.2).

/// The keepalive ping: a data packet whose plaintext is exactly these 16 bytes.
pub const KEEPALIVE_PING: [u8; 16] = [
    0x2a, 0x18, 0x7b, 0xf3, 0x64, 0x1e, 0xb4, 0xcb, 0x07, 0xed, 0x2d, 0x0a, 0x98, 0x1f, 0xc7, 0x48,
];

/// The OCC magic prefix; the next byte is the OCC opcode.
pub const OCC_MAGIC: [u8; 16] = [
    0x28, 0x7f, 0x34, 0x6b, 0xd4, 0xef, 0x7a, 0x81, 0x2d, 0x56, 0xb8, 0xd3, 0xaf, 0xc5, 0x45, 0x9c,
];

/// OCC opcode of the explicit-exit-notify message sent when cc-exit is not negotiated.
pub const OCC_EXIT: u8 = 6;

/// What a decrypted data-channel payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plaintext {
    /// An IPv4 packet (first nibble 4).
    Ipv4,
    /// An IPv6 packet (first nibble 6).
    Ipv6,
    /// The keepalive ping: refresh liveness, never hand it to the TUN.
    Ping,
    /// OCC_EXIT: the peer is going away (explicit-exit-notify without cc-exit).
    OccExit,
    /// Another OCC message (only used in static-key mode or with --mtu-test): drop.
    Occ(u8),
    /// Anything else (empty, compression framing, junk): drop and count.
    Other,
}

/// Classifies a decrypted payload. Exact-length match for the ping, as 2.6 and the kernel do.
#[inline]
pub fn classify_plaintext(p: &[u8]) -> Plaintext {
    match p.first().map(|b| b >> 4) {
        Some(4) => return Plaintext::Ipv4,
        Some(6) => return Plaintext::Ipv6,
        _ => {}
    }
    if p == KEEPALIVE_PING {
        Plaintext::Ping
    } else if p.len() > OCC_MAGIC.len() && p[..OCC_MAGIC.len()] == OCC_MAGIC {
        match p[OCC_MAGIC.len()] {
            OCC_EXIT => Plaintext::OccExit,
            op => Plaintext::Occ(op),
        }
    } else {
        Plaintext::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(classify_plaintext(&KEEPALIVE_PING), Plaintext::Ping);
        let mut longer = KEEPALIVE_PING.to_vec();
        longer.push(0);
        assert_eq!(classify_plaintext(&longer), Plaintext::Other);
        let mut exit = OCC_MAGIC.to_vec();
        exit.push(OCC_EXIT);
        assert_eq!(classify_plaintext(&exit), Plaintext::OccExit);
        exit[16] = 0;
        assert_eq!(classify_plaintext(&exit), Plaintext::Occ(0));
        assert_eq!(classify_plaintext(&OCC_MAGIC), Plaintext::Other);
        assert_eq!(classify_plaintext(&[0x45, 0]), Plaintext::Ipv4);
        assert_eq!(classify_plaintext(&[0x60]), Plaintext::Ipv6);
        assert_eq!(classify_plaintext(&[]), Plaintext::Other);
        assert_eq!(classify_plaintext(&[0xfa, 0x45]), Plaintext::Other);
    }
}
