//! Internet checksum (RFC 1071) and the pseudo-headers TCP, UDP and ICMPv6 cover.

use crate::packet::Addr;

/// Add `data` as big-endian 16-bit words to a running sum.
pub(crate) fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Fold a running sum to the one's-complement checksum field value.
pub(crate) fn finish(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Pseudo-header sum for IPv4.
pub(crate) fn pseudo_v4(src: &Addr, dst: &Addr, proto: u8, len: usize) -> u64 {
    let mut acc = sum(&src[..4], 0);
    acc = sum(&dst[..4], acc);
    acc + u64::from(proto) + len as u64
}

/// Pseudo-header sum for IPv6.
pub(crate) fn pseudo_v6(src: &Addr, dst: &Addr, next: u8, len: usize) -> u64 {
    let mut acc = sum(src, 0);
    acc = sum(dst, acc);
    acc + u64::from(next) + len as u64
}
