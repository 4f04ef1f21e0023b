//! TCP MSS clamping (OpenVPN's `mssfix`): SYN packets crossing the tunnel get their MSS
//! option lowered so that the encapsulated packets of the connection fit the link MTU and
//! are never fragmented. Only SYN segments are touched; every other packet costs a few byte
//! compares.

/// Bytes a DATA_V2 AEAD packet adds in front of the inner packet.
const TUNNEL_OVERHEAD: u16 = crypto::DATA_V2_OVERHEAD as u16;

/// The largest MSS allowed for an inner packet when encapsulated packets must stay within
/// `mssfix` bytes (outer IP and UDP headers included, as OpenVPN 2.6 counts them).
pub fn max_mss(mssfix: u16, outer_v6: bool, inner_v6: bool) -> u16 {
    let outer = if outer_v6 { 48 } else { 28 };
    let inner = if inner_v6 { 60 } else { 40 };
    mssfix.saturating_sub(outer + TUNNEL_OVERHEAD + inner)
}

/// Lowers the MSS option of a TCP SYN in `pkt` (IPv4 or IPv6, no extension headers) to at
/// most what `mssfix` allows; fixes the TCP checksum incrementally. Returns whether the
/// packet changed. Malformed packets are left alone.
#[inline]
pub fn clamp(pkt: &mut [u8], mssfix: u16, outer_v6: bool) -> bool {
    if mssfix == 0 {
        return false;
    }
    let (tcp_at, inner_v6) = match pkt.first().map(|b| b >> 4) {
        Some(4) if pkt.len() >= 40 && pkt[9] == 6 => {
            // Not a first/only fragment: no TCP header here.
            if u16::from_be_bytes([pkt[6], pkt[7]]) & 0x1fff != 0 {
                return false;
            }
            (usize::from(pkt[0] & 0x0f) * 4, false)
        }
        Some(6) if pkt.len() >= 60 && pkt[6] == 6 => (40, true),
        _ => return false,
    };
    let Some(tcp) = pkt.get_mut(tcp_at..) else {
        return false;
    };
    if tcp.len() < 20 || tcp[13] & 0x02 == 0 {
        return false; // not a SYN
    }
    let hlen = usize::from(tcp[12] >> 4) * 4;
    if hlen < 20 || hlen > tcp.len() {
        return false;
    }
    let limit = max_mss(mssfix, outer_v6, inner_v6);
    let mut i = 20;
    while i < hlen {
        match tcp[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = tcp.get(i + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || i + len > hlen {
                    return false;
                }
                if kind == 2 && len == 4 {
                    let old = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                    if old <= limit {
                        return false;
                    }
                    tcp[i + 2..i + 4].copy_from_slice(&limit.to_be_bytes());
                    // RFC 1624: HC' = ~(~HC + ~m + m')
                    let hc = u16::from_be_bytes([tcp[16], tcp[17]]);
                    let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(limit);
                    while sum > 0xffff {
                        sum = (sum & 0xffff) + (sum >> 16);
                    }
                    tcp[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csum(data: &[u8], init: u32) -> u16 {
        let mut sum = init;
        for c in data.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn syn_v4(mss: u16) -> Vec<u8> {
        let mut p = vec![0u8; 20 + 24];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&44u16.to_be_bytes());
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 8, 0, 2]);
        p[16..20].copy_from_slice(&[10, 8, 0, 1]);
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&1234u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[12] = 6 << 4;
        t[13] = 0x02;
        t[20] = 2;
        t[21] = 4;
        t[22..24].copy_from_slice(&mss.to_be_bytes());
        let c = tcp_checksum_v4(&p);
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn tcp_checksum_v4(p: &[u8]) -> u16 {
        let mut seg = p[20..].to_vec();
        seg[16] = 0;
        seg[17] = 0;
        let mut pseudo = 0u32;
        for c in p[12..20].chunks(2) {
            pseudo += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        pseudo += 6 + seg.len() as u32;
        csum(&seg, pseudo)
    }

    #[test]
    fn clamps_syn_and_keeps_checksum_valid() {
        let mut p = syn_v4(1460);
        assert!(clamp(&mut p, 1492, false));
        assert_eq!(u16::from_be_bytes([p[42], p[43]]), 1400);
        assert_eq!(u16::from_be_bytes([p[36], p[37]]), tcp_checksum_v4(&p));
        // Already small enough: untouched.
        let mut q = syn_v4(1300);
        assert!(!clamp(&mut q, 1492, false));
        // IPv6 outer leaves less room.
        let mut r = syn_v4(1460);
        assert!(clamp(&mut r, 1492, true));
        assert_eq!(u16::from_be_bytes([r[42], r[43]]), 1380);
        // Not a SYN.
        let mut s = syn_v4(1460);
        s[33] = 0x10;
        assert!(!clamp(&mut s, 1492, false));
        // Off.
        let mut z = syn_v4(1460);
        assert!(!clamp(&mut z, 0, false));
    }

    #[test]
    fn malformed_never_panics() {
        let mut p = syn_v4(1460);
        for cut in 0..p.len() {
            let mut q = p[..cut].to_vec();
            clamp(&mut q, 1492, false);
        }
        p[40] = 2;
        p[41] = 0; // zero-length option
        assert!(!clamp(&mut p, 1492, false));
        p[41] = 200; // runs past the header
        assert!(!clamp(&mut p, 1492, false));
        assert_eq!(max_mss(1492, false, true), 1380);
    }
}
