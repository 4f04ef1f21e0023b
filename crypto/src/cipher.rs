//! The AEAD ciphers a DCO data channel negotiates, by OpenVPN's names.

use std::fmt;
use std::str::FromStr;

/// A data-channel AEAD cipher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherKind {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error(
        "cipher {0} is not supported by the dco data path (ring has no AES-192); use AES-256-GCM or AES-128-GCM"
    )]
    Aes192Unsupported(String),
    #[error(
        "cipher {0} is not an AEAD cipher; data channel offload supports only AES-128-GCM, AES-256-GCM and CHACHA20-POLY1305"
    )]
    NotAead(String),
    #[error("unknown cipher {0}; supported: AES-128-GCM, AES-256-GCM, CHACHA20-POLY1305")]
    Unknown(String),
}

impl CipherKind {
    pub const ALL: [CipherKind; 3] = [
        CipherKind::Aes256Gcm,
        CipherKind::Aes128Gcm,
        CipherKind::Chacha20Poly1305,
    ];

    /// OpenVPN's canonical name, as pushed in `cipher` and listed in `IV_CIPHERS`.
    pub const fn openvpn_name(self) -> &'static str {
        match self {
            CipherKind::Aes128Gcm => "AES-128-GCM",
            CipherKind::Aes256Gcm => "AES-256-GCM",
            CipherKind::Chacha20Poly1305 => "CHACHA20-POLY1305",
        }
    }

    /// Key length in bytes (the first bytes of the 64-byte cipher field are used).
    pub const fn key_len(self) -> usize {
        match self {
            CipherKind::Aes128Gcm => 16,
            CipherKind::Aes256Gcm | CipherKind::Chacha20Poly1305 => 32,
        }
    }

    /// Parses a cipher name the way OpenVPN accepts it: case-insensitive, with OpenSSL's
    /// lowercase aliases (`id-aes256-GCM`, `chacha20-poly1305`).
    pub fn from_openvpn_name(name: &str) -> Result<Self, CipherError> {
        let n = name.trim().to_ascii_uppercase();
        match n.as_str() {
            "AES-128-GCM" | "ID-AES128-GCM" => Ok(CipherKind::Aes128Gcm),
            "AES-256-GCM" | "ID-AES256-GCM" => Ok(CipherKind::Aes256Gcm),
            "CHACHA20-POLY1305" => Ok(CipherKind::Chacha20Poly1305),
            "AES-192-GCM" | "ID-AES192-GCM" => Err(CipherError::Aes192Unsupported(name.into())),
            _ if n.contains("-CBC")
                || n.contains("-CFB")
                || n.contains("-OFB")
                || n == "BF-CBC"
                || n == "NONE" =>
            {
                Err(CipherError::NotAead(name.into()))
            }
            _ => Err(CipherError::Unknown(name.into())),
        }
    }
}

impl FromStr for CipherKind {
    type Err = CipherError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_openvpn_name(s)
    }
}

impl fmt::Display for CipherKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.openvpn_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases() {
        for c in CipherKind::ALL {
            assert_eq!(CipherKind::from_openvpn_name(c.openvpn_name()), Ok(c));
            assert_eq!(
                CipherKind::from_openvpn_name(&c.openvpn_name().to_lowercase()),
                Ok(c)
            );
        }
        assert_eq!("id-aes256-GCM".parse(), Ok(CipherKind::Aes256Gcm));
        assert!(matches!(
            "AES-192-GCM".parse::<CipherKind>(),
            Err(CipherError::Aes192Unsupported(_))
        ));
        assert!(matches!(
            "AES-256-CBC".parse::<CipherKind>(),
            Err(CipherError::NotAead(_))
        ));
        assert!(matches!(
            "BF-CBC".parse::<CipherKind>(),
            Err(CipherError::NotAead(_))
        ));
        assert!(matches!(
            "ROT13".parse::<CipherKind>(),
            Err(CipherError::Unknown(_))
        ));
    }
}
