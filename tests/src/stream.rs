//! A seeded pseudo-random byte stream that can be produced from any offset, so a receiver
//! can check bytes as they arrive without storing what was sent.

/// splitmix64 of one 8-byte block index.
#[inline]
fn block(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with the stream bytes `offset .. offset + buf.len()` for `seed`.
pub fn fill_stream(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut i = 0;
    // Leading partial block.
    while i < buf.len() && !pos.is_multiple_of(8) {
        buf[i] = block(seed, pos / 8).to_le_bytes()[(pos % 8) as usize];
        i += 1;
        pos += 1;
    }
    let mut chunks = buf[i..].chunks_exact_mut(8);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&block(seed, pos / 8).to_le_bytes());
        pos += 8;
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let b = block(seed, pos / 8).to_le_bytes();
        rest.copy_from_slice(&b[..rest.len()]);
    }
}

/// Index of the first byte of `data` that differs from the stream at `offset`, if any.
/// `scratch` is reused to avoid allocating per call.
pub fn stream_mismatch(
    seed: u64,
    offset: u64,
    data: &[u8],
    scratch: &mut Vec<u8>,
) -> Option<usize> {
    scratch.resize(data.len(), 0);
    fill_stream(seed, offset, scratch);
    data.iter().zip(scratch.iter()).position(|(a, b)| a != b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_split_gives_the_same_stream() {
        let mut whole = vec![0u8; 1000];
        fill_stream(7, 3, &mut whole);
        let mut parts = vec![0u8; 1000];
        let cuts = [0usize, 1, 9, 10, 17, 500, 999, 1000];
        for w in cuts.windows(2) {
            fill_stream(7, 3 + w[0] as u64, &mut parts[w[0]..w[1]]);
        }
        assert_eq!(whole, parts);
        let mut other = vec![0u8; 1000];
        fill_stream(8, 3, &mut other);
        assert_ne!(whole, other);
    }

    #[test]
    fn mismatch_finds_the_first_changed_byte() {
        let mut data = vec![0u8; 300];
        fill_stream(1, 40, &mut data);
        let mut scratch = Vec::new();
        assert_eq!(stream_mismatch(1, 40, &data, &mut scratch), None);
        data[123] ^= 1;
        data[200] ^= 1;
        assert_eq!(stream_mismatch(1, 40, &data, &mut scratch), Some(123));
    }
}
