//! The TLS 1.0/1.1 PRF (RFC 2246 §5) that OpenVPN's legacy data-key derivation uses when
//! TLS-EKM is not negotiated (openvpn-protocol.md §5.2).

use hmac::{Hmac, Mac};
use zeroize::Zeroize;

type HmacMd5 = Hmac<md5::Md5>;
type HmacSha1 = Hmac<sha1::Sha1>;

/// `PRF(secret, seed) = P_MD5(S1, seed) XOR P_SHA1(S2, seed)`, filling `out`. OpenVPN passes
/// the label as the first bytes of `seed`.
pub fn tls1_prf(secret: &[u8], seed: &[u8], out: &mut [u8]) {
    let half = secret.len().div_ceil(2);
    let s1 = &secret[..half];
    let s2 = &secret[secret.len() - half..];
    p_hash::<HmacMd5>(s1, seed, out, false);
    p_hash::<HmacSha1>(s2, seed, out, true);
}

/// `P_hash(secret, seed)`: A(0) = seed, A(i) = HMAC(secret, A(i-1)), output blocks
/// HMAC(secret, A(i) || seed). With `xor`, the output is XORed into `out`.
fn p_hash<M: Mac + hmac::digest::KeyInit + Clone>(
    secret: &[u8],
    seed: &[u8],
    out: &mut [u8],
    xor: bool,
) {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let Ok(base) = <M as hmac::digest::KeyInit>::new_from_slice(secret) else {
        unreachable!("HMAC takes keys of any length")
    };
    let mut a = {
        let mut m = base.clone();
        m.update(seed);
        m.finalize().into_bytes()
    };
    let mut done = 0;
    while done < out.len() {
        let mut m = base.clone();
        m.update(&a);
        m.update(seed);
        let mut block = m.finalize().into_bytes();
        let n = block.len().min(out.len() - done);
        for (o, b) in out[done..done + n].iter_mut().zip(block.iter()) {
            if xor { *o ^= *b } else { *o = *b }
        }
        block.as_mut_slice().zeroize();
        done += n;
        let mut m = base.clone();
        m.update(&a);
        a = m.finalize().into_bytes();
    }
    a.as_mut_slice().zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The self-test vector built into OpenVPN 2.6 (`check_tls_prf_working`).
    #[test]
    fn openvpn_builtin_vector() {
        let mut out = [0u8; 8];
        tls1_prf(b"tls1-prf-test-secret", b"tls1-prf-test", &mut out);
        assert_eq!(out, [0x71, 0x44, 0xfe, 0x25, 0x40, 0x73, 0x75, 0x95]);
    }

    #[test]
    fn odd_secret_halves_overlap() {
        // With an odd-length secret the halves share the middle byte (RFC 2246 §5).
        let mut a = [0u8; 40];
        let mut b = [0u8; 40];
        tls1_prf(b"abcde", b"seed", &mut a);
        tls1_prf(b"abcdf", b"seed", &mut b);
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 40]);
    }
}
