//! Data-channel key material: the 256-byte `key2` block, its derivation (TLS-EKM or the
//! legacy TLS1-PRF) and its split into per-direction cipher keys and implicit IVs
//! (openvpn-protocol.md §5).

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::cipher::CipherKind;
use crate::prf::tls1_prf;

/// The TLS exporter label for data-channel keys (25 bytes, no NUL, no context).
pub const EKM_LABEL: &[u8] = b"EXPORTER-OpenVPN-datakeys";
/// Size of a key2 block: two `struct key` of 64 cipher + 64 hmac bytes.
pub const KEY2_LEN: usize = 256;
/// Implicit IV length: the AEAD nonce (12) minus the packet-id (4).
pub const IMPLICIT_IV_LEN: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{cipher} needs a {}-byte key, got {len}", cipher.key_len())]
    KeyLength { cipher: CipherKind, len: usize },
    #[error("implicit IV must be 8 bytes, got {0}")]
    IvLength(usize),
    #[error("key material must be {KEY2_LEN} bytes, got {0}")]
    Key2Length(usize),
    #[error("refusing an all-zero cipher key")]
    WeakKey,
}

/// Which end of the connection we are. The data channel uses client = keys[0] outgoing,
/// server = keys[1] outgoing (tls-crypt is the other way round; that is not this type's
/// business).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Client,
    Server,
}

/// 256 bytes of key material: `keys[0].cipher | keys[0].hmac | keys[1].cipher | keys[1].hmac`,
/// 64 bytes each. Zeroised on drop; `Debug` never shows the bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key2 {
    bytes: [u8; KEY2_LEN],
}

/// The inputs of the legacy TLS1-PRF derivation, taken from the two key-method-2 records and
/// the two session ids.
pub struct Tls1PrfInputs<'a> {
    pub pre_master: &'a [u8; 48],
    pub client_random1: &'a [u8; 32],
    pub server_random1: &'a [u8; 32],
    pub client_random2: &'a [u8; 32],
    pub server_random2: &'a [u8; 32],
    pub client_session_id: &'a [u8; 8],
    pub server_session_id: &'a [u8; 8],
}

impl Key2 {
    pub fn from_bytes(bytes: [u8; KEY2_LEN]) -> Self {
        Self { bytes }
    }

    /// From the output of `TLS-Exporter("EXPORTER-OpenVPN-datakeys", no context, 256)` on the
    /// TLS session of the key-id being installed.
    pub fn from_ekm(exported: &[u8]) -> Result<Self, KeyError> {
        let bytes: [u8; KEY2_LEN] = exported
            .try_into()
            .map_err(|_| KeyError::Key2Length(exported.len()))?;
        Ok(Self { bytes })
    }

    /// OpenVPN's legacy derivation:
    /// `master = PRF(pre_master, "OpenVPN master secret" || c.random1 || s.random1, 48)`,
    /// `key2 = PRF(master, "OpenVPN key expansion" || c.random2 || s.random2 || c.sid || s.sid, 256)`.
    pub fn from_tls1_prf(inputs: &Tls1PrfInputs<'_>) -> Self {
        let mut seed = [0u8; 21 + 64 + 16];
        let label = b"OpenVPN master secret";
        seed[..label.len()].copy_from_slice(label);
        seed[label.len()..label.len() + 32].copy_from_slice(inputs.client_random1);
        seed[label.len() + 32..label.len() + 64].copy_from_slice(inputs.server_random1);
        let mut master = [0u8; 48];
        tls1_prf(inputs.pre_master, &seed[..label.len() + 64], &mut master);

        let label = b"OpenVPN key expansion";
        let mut at = 0;
        for part in [
            &label[..],
            &inputs.client_random2[..],
            &inputs.server_random2[..],
            &inputs.client_session_id[..],
            &inputs.server_session_id[..],
        ] {
            seed[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        let mut bytes = [0u8; KEY2_LEN];
        tls1_prf(&master, &seed[..at], &mut bytes);
        master.zeroize();
        seed.zeroize();
        Self { bytes }
    }

    pub fn as_bytes(&self) -> &[u8; KEY2_LEN] {
        &self.bytes
    }

    /// The (encrypt, decrypt) keys for `role`: client→server traffic uses `keys[0].cipher`
    /// with the implicit IV from `keys[0].hmac`, server→client uses `keys[1]`.
    pub fn data_keys(
        &self,
        role: Role,
        cipher: CipherKind,
    ) -> Result<(DirectionalKey, DirectionalKey), KeyError> {
        let c2s = self.direction(0, cipher)?;
        let s2c = self.direction(1, cipher)?;
        Ok(match role {
            Role::Client => (c2s, s2c),
            Role::Server => (s2c, c2s),
        })
    }

    fn direction(&self, index: usize, cipher: CipherKind) -> Result<DirectionalKey, KeyError> {
        let base = index * 128;
        let key = &self.bytes[base..base + cipher.key_len()];
        let iv = &self.bytes[base + 64..base + 64 + IMPLICIT_IV_LEN];
        DirectionalKey::new(cipher, key, iv)
    }
}

impl std::fmt::Debug for Key2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key2(<redacted>)")
    }
}

/// One direction's data-channel key: cipher, key bytes and the 8-byte implicit IV. This is
/// what `NEW_KEY`'s `encrypt`/`decrypt` lists carry. Zeroised on drop, redacted in `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DirectionalKey {
    #[zeroize(skip)]
    cipher: CipherKind,
    key: [u8; 32],
    implicit_iv: [u8; IMPLICIT_IV_LEN],
}

impl DirectionalKey {
    /// Checks lengths and refuses an all-zero key (OpenVPN's weak-key check).
    pub fn new(cipher: CipherKind, key: &[u8], implicit_iv: &[u8]) -> Result<Self, KeyError> {
        if key.len() != cipher.key_len() {
            return Err(KeyError::KeyLength {
                cipher,
                len: key.len(),
            });
        }
        let implicit_iv: [u8; IMPLICIT_IV_LEN] = implicit_iv
            .try_into()
            .map_err(|_| KeyError::IvLength(implicit_iv.len()))?;
        if key.iter().all(|&b| b == 0) {
            return Err(KeyError::WeakKey);
        }
        let mut k = [0u8; 32];
        k[..key.len()].copy_from_slice(key);
        Ok(Self {
            cipher,
            key: k,
            implicit_iv,
        })
    }

    pub fn cipher(&self) -> CipherKind {
        self.cipher
    }

    /// The cipher key bytes (`cipher.key_len()` of them). Never log them.
    pub fn key(&self) -> &[u8] {
        &self.key[..self.cipher.key_len()]
    }

    pub fn implicit_iv(&self) -> &[u8; IMPLICIT_IV_LEN] {
        &self.implicit_iv
    }
}

impl std::fmt::Debug for DirectionalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectionalKey")
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Key2 {
        let mut b = [0u8; 256];
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8;
        }
        Key2::from_bytes(b)
    }

    #[test]
    fn split_matches_openvpn_layout() {
        let k = sample();
        let (c_enc, c_dec) = k.data_keys(Role::Client, CipherKind::Aes256Gcm).unwrap();
        assert_eq!(c_enc.key(), &k.as_bytes()[0..32]);
        assert_eq!(c_enc.implicit_iv(), &k.as_bytes()[64..72]);
        assert_eq!(c_dec.key(), &k.as_bytes()[128..160]);
        assert_eq!(c_dec.implicit_iv(), &k.as_bytes()[192..200]);
        let (s_enc, s_dec) = k.data_keys(Role::Server, CipherKind::Aes128Gcm).unwrap();
        assert_eq!(s_enc.key(), &k.as_bytes()[128..144]);
        assert_eq!(s_dec.key(), &k.as_bytes()[0..16]);
        assert_eq!(s_enc.implicit_iv(), &k.as_bytes()[192..200]);
    }

    #[test]
    fn debug_redacts() {
        let k = sample();
        assert_eq!(format!("{k:?}"), "Key2(<redacted>)");
        let (e, _) = k
            .data_keys(Role::Client, CipherKind::Chacha20Poly1305)
            .unwrap();
        let s = format!("{e:?}");
        assert!(s.contains("Chacha20Poly1305") && !s.contains("[0"), "{s}");
    }

    #[test]
    fn weak_and_bad_lengths_refused() {
        assert_eq!(
            DirectionalKey::new(CipherKind::Aes128Gcm, &[0; 16], &[1; 8]).unwrap_err(),
            KeyError::WeakKey
        );
        assert!(matches!(
            DirectionalKey::new(CipherKind::Aes128Gcm, &[1; 32], &[1; 8]),
            Err(KeyError::KeyLength { .. })
        ));
        assert_eq!(
            DirectionalKey::new(CipherKind::Aes256Gcm, &[1; 32], &[1; 7]).unwrap_err(),
            KeyError::IvLength(7)
        );
        assert_eq!(
            Key2::from_ekm(&[0; 255]).unwrap_err(),
            KeyError::Key2Length(255)
        );
    }

    #[test]
    fn prf_derivation_depends_on_every_input() {
        let pm = [1u8; 48];
        let r = [[2u8; 32], [3u8; 32], [4u8; 32], [5u8; 32]];
        let sids = [[6u8; 8], [7u8; 8]];
        let base = Tls1PrfInputs {
            pre_master: &pm,
            client_random1: &r[0],
            server_random1: &r[1],
            client_random2: &r[2],
            server_random2: &r[3],
            client_session_id: &sids[0],
            server_session_id: &sids[1],
        };
        let k0 = Key2::from_tls1_prf(&base);
        let other_sid = [8u8; 8];
        let k1 = Key2::from_tls1_prf(&Tls1PrfInputs {
            server_session_id: &other_sid,
            ..base
        });
        assert_ne!(k0.as_bytes(), k1.as_bytes());
        // Deterministic.
        let base2 = Tls1PrfInputs {
            server_session_id: &sids[1],
            ..Tls1PrfInputs {
                ..k_inputs(&pm, &r, &sids)
            }
        };
        assert_eq!(Key2::from_tls1_prf(&base2).as_bytes(), k0.as_bytes());
    }

    fn k_inputs<'a>(
        pm: &'a [u8; 48],
        r: &'a [[u8; 32]; 4],
        sids: &'a [[u8; 8]; 2],
    ) -> Tls1PrfInputs<'a> {
        Tls1PrfInputs {
            pre_master: pm,
            client_random1: &r[0],
            server_random1: &r[1],
            client_random2: &r[2],
            server_random2: &r[3],
            client_session_id: &sids[0],
            server_session_id: &sids[1],
        }
    }
}
