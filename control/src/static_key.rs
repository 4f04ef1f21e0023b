//! "OpenVPN Static key V1" files (the keys of `tls-auth` and `tls-crypt`) and key direction
//! (openvpn-protocol.md §3.1, §3.2).
//!
//! The file holds a `struct key2`: two `struct key`, each `cipher[64] || hmac[64]`, 256 bytes
//! in all. The in-memory copy is zeroised on drop and never printed.

use std::fmt;

use thiserror::Error;
use zeroize::Zeroize;

/// Bytes in a static key file (`sizeof(struct key2.keys)`).
pub const STATIC_KEY_LEN: usize = 256;
/// Bytes of one cipher or hmac field of a `struct key`.
pub const KEY_FIELD_LEN: usize = 64;
/// Bytes of one `struct key` (cipher + hmac).
pub const KEY_LEN: usize = 2 * KEY_FIELD_LEN;

const HEADER: &str = "-----BEGIN OpenVPN Static key V1-----";
const FOOTER: &str = "-----END OpenVPN Static key V1-----";
const HEX_BYTES_PER_LINE: usize = 16;

/// A 256-byte pre-shared key2 (`keys[0]`, `keys[1]`). Zeroised on drop; `Debug` never shows
/// key bytes.
#[derive(Clone)]
pub struct StaticKey {
    // Boxed so that moving the key around does not leave copies in old stack frames.
    bytes: Box<[u8; STATIC_KEY_LEN]>,
}

impl Drop for StaticKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticKey(<256 bytes redacted>)")
    }
}

/// One `struct key` inside the key2: a cipher field and an hmac field of 64 bytes each.
/// An algorithm uses the first bytes of a field, as many as its key length.
#[derive(Clone, Copy)]
pub struct KeyHalf<'a> {
    /// `keys[i].cipher`.
    pub cipher: &'a [u8; KEY_FIELD_LEN],
    /// `keys[i].hmac`.
    pub hmac: &'a [u8; KEY_FIELD_LEN],
}

impl fmt::Debug for KeyHalf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHalf(<redacted>)")
    }
}

/// Which of the two keys is used for each direction (`--key-direction`, §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyDirection {
    /// No direction given: `keys[0]` both ways.
    #[default]
    Bidirectional,
    /// Direction `0`: send with `keys[0]`, receive with `keys[1]` (usual on servers).
    Normal,
    /// Direction `1`: send with `keys[1]`, receive with `keys[0]` (usual on clients).
    Inverse,
}

/// A `--key-direction` argument other than `0` or `1`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown key direction '{0}': must be '0' or '1'")]
pub struct BadKeyDirection(pub String);

impl KeyDirection {
    /// Parse the config argument: absent = bidirectional, `"0"`, `"1"`.
    pub fn from_config(arg: Option<&str>) -> Result<Self, BadKeyDirection> {
        match arg {
            None => Ok(Self::Bidirectional),
            Some("0") => Ok(Self::Normal),
            Some("1") => Ok(Self::Inverse),
            Some(other) => Err(BadKeyDirection(other.to_owned())),
        }
    }

    /// Index of the key used to send (sign / encrypt).
    pub const fn send_index(self) -> usize {
        match self {
            Self::Bidirectional | Self::Normal => 0,
            Self::Inverse => 1,
        }
    }

    /// Index of the key used to receive (verify / decrypt).
    pub const fn recv_index(self) -> usize {
        match self {
            Self::Bidirectional | Self::Inverse => 0,
            Self::Normal => 1,
        }
    }
}

/// Why a static key file was refused. Messages name the line where it helps.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StaticKeyError {
    /// No `-----BEGIN OpenVPN Static key V1-----` line.
    #[error("header '{HEADER}' not found")]
    NoHeader,
    /// A character that is neither a hex digit nor whitespace inside the key.
    #[error("line {line}: non-hex character {ch:?} in the key")]
    NonHex {
        /// 1-based line number.
        line: usize,
        /// The offending character.
        ch: char,
    },
    /// The footer line does not match.
    #[error("line {line}: expected footer '{FOOTER}'")]
    BadFooter {
        /// 1-based line number.
        line: usize,
    },
    /// The input ended before the footer.
    #[error("footer '{FOOTER}' not found")]
    NoFooter,
    /// Not exactly 256 bytes of hex between header and footer.
    #[error(
        "key has {found} bytes, expected exactly {STATIC_KEY_LEN} (plus {odd} stray hex digit)"
    )]
    WrongLength {
        /// Whole bytes found.
        found: usize,
        /// 1 if an odd hex digit was left over.
        odd: usize,
    },
    /// The system random generator failed.
    #[error("random generator failed")]
    Random,
}

impl StaticKey {
    /// A key from raw key2 bytes.
    pub fn from_bytes(bytes: &[u8; STATIC_KEY_LEN]) -> Self {
        let mut b = Box::new([0u8; STATIC_KEY_LEN]);
        b.copy_from_slice(bytes);
        Self { bytes: b }
    }

    /// A fresh random key, as `openvpn --genkey secret` makes.
    pub fn generate() -> Result<Self, StaticKeyError> {
        use ring::rand::SecureRandom;
        let mut b = Box::new([0u8; STATIC_KEY_LEN]);
        ring::rand::SystemRandom::new()
            .fill(&mut b[..])
            .map_err(|_| StaticKeyError::Random)?;
        Ok(Self { bytes: b })
    }

    /// All 256 bytes (for deriving keys; never log them).
    pub fn as_bytes(&self) -> &[u8; STATIC_KEY_LEN] {
        &self.bytes
    }

    /// `keys[index]`; `index` is 0 or 1 (anything else is treated as 1).
    pub fn key(&self, index: usize) -> KeyHalf<'_> {
        let base = if index == 0 { 0 } else { KEY_LEN };
        let field = |off: usize| -> &[u8; KEY_FIELD_LEN] {
            let s = &self.bytes[off..off + KEY_FIELD_LEN];
            // A 64-byte sub-slice of a 256-byte array always converts.
            s.try_into().unwrap_or(&[0u8; KEY_FIELD_LEN])
        };
        KeyHalf {
            cipher: field(base),
            hmac: field(base + KEY_FIELD_LEN),
        }
    }

    /// Parse the text of a key file (or an inline `<tls-auth>`/`<tls-crypt>` block).
    ///
    /// As 2.6: text before the header line is ignored, whitespace between hex digits is
    /// ignored, the footer is required. Stricter than 2.6: exactly 256 bytes, not 128 or
    /// more than 256.
    pub fn parse(text: &str) -> Result<Self, StaticKeyError> {
        let mut lines = text.lines().enumerate();
        // Header: a line that starts with the header text.
        loop {
            match lines.next() {
                None => return Err(StaticKeyError::NoHeader),
                Some((_, l)) if l.starts_with(HEADER) => break,
                Some(_) => {}
            }
        }
        // Owned by a StaticKey from the start so every exit path zeroises it.
        let mut key = Self {
            bytes: Box::new([0u8; STATIC_KEY_LEN]),
        };
        let out = &mut key.bytes;
        let mut count = 0usize;
        let mut pending: Option<u8> = None;
        let mut extra = 0usize;
        let result = loop {
            let Some((idx, line)) = lines.next() else {
                break Err(StaticKeyError::NoFooter);
            };
            let line_no = idx + 1;
            if line.starts_with('-') {
                if !line.starts_with(FOOTER) {
                    break Err(StaticKeyError::BadFooter { line: line_no });
                }
                if count != STATIC_KEY_LEN || pending.is_some() || extra > 0 {
                    break Err(StaticKeyError::WrongLength {
                        found: count + extra,
                        odd: usize::from(pending.is_some()),
                    });
                }
                break Ok(());
            }
            let mut bad = None;
            for ch in line.chars() {
                if ch.is_ascii_whitespace() {
                    continue;
                }
                let Some(v) = ch.to_digit(16) else {
                    bad = Some(ch);
                    break;
                };
                // to_digit(16) is < 16, so it fits a u8.
                let v = v as u8;
                match pending.take() {
                    None => pending = Some(v),
                    Some(hi) => {
                        if count < STATIC_KEY_LEN {
                            out[count] = (hi << 4) | v;
                            count += 1;
                        } else {
                            extra += 1;
                        }
                    }
                }
            }
            if let Some(ch) = bad {
                break Err(StaticKeyError::NonHex { line: line_no, ch });
            }
        };
        pending.zeroize();
        result.map(|()| key)
    }

    /// The key file text exactly as `openvpn --genkey secret` writes it.
    pub fn to_file_string(&self) -> zeroize::Zeroizing<String> {
        let mut s = zeroize::Zeroizing::new(String::with_capacity(700));
        s.push_str("#\n# 2048 bit OpenVPN static key\n#\n");
        s.push_str(HEADER);
        s.push('\n');
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for line in self.bytes.chunks(HEX_BYTES_PER_LINE) {
            for b in line {
                s.push(char::from(HEX[usize::from(b >> 4)]));
                s.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
            s.push('\n');
        }
        s.push_str(FOOTER);
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_bytes() -> [u8; STATIC_KEY_LEN] {
        let mut b = [0u8; STATIC_KEY_LEN];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(7).wrapping_add(3);
        }
        b
    }

    #[test]
    fn write_then_parse_round_trip_and_format() {
        let k = StaticKey::from_bytes(&sample_bytes());
        let text = k.to_file_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#");
        assert_eq!(lines[1], "# 2048 bit OpenVPN static key");
        assert_eq!(lines[3], HEADER);
        assert_eq!(lines.len(), 4 + 16 + 1);
        assert!(lines[4..20].iter().all(|l| l.len() == 32));
        assert_eq!(lines[4], "030a11181f262d343b424950575e656c");
        assert_eq!(lines[20], FOOTER);
        let back = StaticKey::parse(&text).unwrap();
        assert_eq!(back.as_bytes(), k.as_bytes());
    }

    #[test]
    fn tolerant_reader() {
        let k = StaticKey::from_bytes(&sample_bytes());
        let text = k.to_file_string();
        // Junk before the header, hex split oddly with spaces/tabs, CRLF, upper case,
        // text after the footer.
        let body: String = text
            .lines()
            .skip(4)
            .take(16)
            .collect::<Vec<_>>()
            .concat()
            .to_uppercase();
        let mut odd = String::from("garbage line\r\n# comment\r\n");
        odd.push_str(HEADER);
        odd.push_str("\r\n");
        for (i, c) in body.chars().enumerate() {
            odd.push(c);
            if i % 7 == 0 {
                odd.push_str(" \t");
            }
            if i % 50 == 49 {
                odd.push_str("\r\n");
            }
        }
        odd.push_str("\r\n");
        odd.push_str(FOOTER);
        odd.push_str("\r\ntrailing stuff\n");
        let back = StaticKey::parse(&odd).unwrap();
        assert_eq!(back.as_bytes(), k.as_bytes());
    }

    #[test]
    fn errors() {
        let good = StaticKey::from_bytes(&sample_bytes()).to_file_string();
        assert_eq!(
            StaticKey::parse("nothing here").unwrap_err(),
            StaticKeyError::NoHeader
        );
        let no_footer: String = good.lines().take(20).collect::<Vec<_>>().join("\n");
        assert_eq!(
            StaticKey::parse(&no_footer).unwrap_err(),
            StaticKeyError::NoFooter
        );
        // 128 bytes only: 2.6 would accept one key; we require 256.
        let short: String = good
            .lines()
            .enumerate()
            .filter(|(i, _)| !(12..20).contains(i))
            .map(|(_, l)| l)
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            StaticKey::parse(&short).unwrap_err(),
            StaticKeyError::WrongLength { found: 128, odd: 0 }
        );
        let long = good.replace(FOOTER, &format!("ab\n{FOOTER}"));
        assert_eq!(
            StaticKey::parse(&long).unwrap_err(),
            StaticKeyError::WrongLength { found: 257, odd: 0 }
        );
        let odd = good.replace(FOOTER, &format!("a\n{FOOTER}"));
        assert_eq!(
            StaticKey::parse(&odd).unwrap_err(),
            StaticKeyError::WrongLength { found: 256, odd: 1 }
        );
        let nonhex = good.replacen("030a", "03xa", 1);
        assert_eq!(
            StaticKey::parse(&nonhex).unwrap_err(),
            StaticKeyError::NonHex { line: 5, ch: 'x' }
        );
        let badfoot = good.replace(FOOTER, "-----END something-----");
        assert_eq!(
            StaticKey::parse(&badfoot).unwrap_err(),
            StaticKeyError::BadFooter { line: 21 }
        );
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let k = StaticKey::from_bytes(&[0xab; STATIC_KEY_LEN]);
        let d = format!("{k:?} {:?}", k.key(0));
        assert!(!d.to_lowercase().contains("ab"), "{d}");
        assert!(!d.contains("171"), "{d}");
    }

    #[test]
    fn key_halves_at_fixed_offsets() {
        let b = sample_bytes();
        let k = StaticKey::from_bytes(&b);
        assert_eq!(&k.key(0).cipher[..], &b[0..64]);
        assert_eq!(&k.key(0).hmac[..], &b[64..128]);
        assert_eq!(&k.key(1).cipher[..], &b[128..192]);
        assert_eq!(&k.key(1).hmac[..], &b[192..256]);
    }

    #[test]
    fn key_direction_table() {
        use KeyDirection::*;
        assert_eq!(KeyDirection::from_config(None), Ok(Bidirectional));
        assert_eq!(KeyDirection::from_config(Some("0")), Ok(Normal));
        assert_eq!(KeyDirection::from_config(Some("1")), Ok(Inverse));
        assert!(KeyDirection::from_config(Some("2")).is_err());
        assert_eq!(
            (Bidirectional.send_index(), Bidirectional.recv_index()),
            (0, 0)
        );
        assert_eq!((Normal.send_index(), Normal.recv_index()), (0, 1));
        assert_eq!((Inverse.send_index(), Inverse.recv_index()), (1, 0));
    }

    #[test]
    fn generate_is_random() {
        let a = StaticKey::generate().unwrap();
        let b = StaticKey::generate().unwrap();
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(
            StaticKey::parse(&a.to_file_string()).unwrap().as_bytes(),
            a.as_bytes()
        );
    }
}
