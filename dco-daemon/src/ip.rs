//! The few inner IP header facts the data path needs: version, addresses, a sane length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Source and destination of an inner IPv4/IPv6 packet whose header is consistent with its
/// length; `None` for anything malformed.
#[inline]
pub fn addrs(p: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match p.first()? >> 4 {
        4 => {
            if p.len() < 20 {
                return None;
            }
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            if ihl < 20 || total < ihl || total > p.len() {
                return None;
            }
            let s: [u8; 4] = p[12..16].try_into().ok()?;
            let d: [u8; 4] = p[16..20].try_into().ok()?;
            Some((IpAddr::V4(Ipv4Addr::from(s)), IpAddr::V4(Ipv4Addr::from(d))))
        }
        6 => {
            if p.len() < 40 {
                return None;
            }
            let payload = usize::from(u16::from_be_bytes([p[4], p[5]]));
            if 40 + payload > p.len() {
                return None;
            }
            let s: [u8; 16] = p[8..24].try_into().ok()?;
            let d: [u8; 16] = p[24..40].try_into().ok()?;
            Some((IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d))))
        }
        _ => None,
    }
}

/// The packet's length according to its own header (trailing bytes beyond it are padding).
#[inline]
pub fn declared_len(p: &[u8]) -> usize {
    match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 4 => usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len()),
        Some(6) if p.len() >= 6 => {
            (40 + usize::from(u16::from_be_bytes([p[4], p[5]]))).min(p.len())
        }
        _ => p.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v6() {
        let mut v4 = [0u8; 28];
        v4[0] = 0x45;
        v4[3] = 28;
        v4[12..16].copy_from_slice(&[10, 8, 0, 2]);
        v4[16..20].copy_from_slice(&[10, 8, 0, 1]);
        let (s, d) = addrs(&v4).unwrap();
        assert_eq!(s, "10.8.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(d, "10.8.0.1".parse::<IpAddr>().unwrap());
        v4[3] = 29;
        assert!(addrs(&v4).is_none());
        v4[3] = 28;
        v4[0] = 0x44;
        assert!(addrs(&v4).is_none());
        let mut v6 = [0u8; 48];
        v6[0] = 0x60;
        v6[5] = 8;
        v6[23] = 2;
        v6[39] = 1;
        let (s, d) = addrs(&v6).unwrap();
        assert_eq!(s, "::2".parse::<IpAddr>().unwrap());
        assert_eq!(d, "::1".parse::<IpAddr>().unwrap());
        assert!(addrs(&v6[..47]).is_none());
        assert!(addrs(&[]).is_none());
        assert!(addrs(&[0x50; 60]).is_none());
        assert_eq!(declared_len(&v6), 48);
    }
}
