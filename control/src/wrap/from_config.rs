//! Glue from the parsed config (`crate::config`) to wrap keys: load the static key named by
//! `tls-auth` / `tls-crypt` and pick directions for our role.

use thiserror::Error;

use super::{AuthDigest, Role, WrapKeys};
use crate::config::{self, TlsWrap};
use crate::static_key::{KeyDirection, StaticKey, StaticKeyError};

impl From<config::Role> for Role {
    fn from(r: config::Role) -> Self {
        match r {
            config::Role::Server => Role::Server,
            config::Role::Client => Role::Client,
        }
    }
}

impl From<config::Digest> for AuthDigest {
    fn from(d: config::Digest) -> Self {
        match d {
            config::Digest::Sha1 => AuthDigest::Sha1,
            config::Digest::Sha256 => AuthDigest::Sha256,
            config::Digest::Sha512 => AuthDigest::Sha512,
        }
    }
}

impl From<Option<config::KeyDirection>> for KeyDirection {
    fn from(d: Option<config::KeyDirection>) -> Self {
        match d {
            None => KeyDirection::Bidirectional,
            Some(config::KeyDirection::Normal) => KeyDirection::Normal,
            Some(config::KeyDirection::Inverse) => KeyDirection::Inverse,
        }
    }
}

/// The configured static key could not be used.
#[derive(Debug, Error)]
pub enum WrapConfigError {
    /// Reading the key file failed.
    #[error("{what}: cannot read static key: {source}")]
    Io {
        /// The file (or `[inline]`).
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The key is not text.
    #[error("{0}: static key is not valid UTF-8 text")]
    NotText(String),
    /// The key file is malformed.
    #[error("{what}: {source}")]
    Key {
        /// The file (or `[inline]`).
        what: String,
        /// Why.
        source: StaticKeyError,
    },
}

fn load(src: &config::Source) -> Result<StaticKey, WrapConfigError> {
    let what = src.describe();
    let bytes = src.load().map_err(|source| WrapConfigError::Io {
        what: what.clone(),
        source,
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| WrapConfigError::NotText(what.clone()))?;
    StaticKey::parse(text).map_err(|source| WrapConfigError::Key { what, source })
}

impl WrapKeys {
    /// Keys for the configured wrapping and our role: tls-auth uses the configured key
    /// direction (none = bidirectional) and `auth` digest; tls-crypt derives directions from
    /// the role.
    pub fn from_config(wrap: &TlsWrap, role: config::Role) -> Result<Self, WrapConfigError> {
        Ok(match wrap {
            TlsWrap::None => WrapKeys::none(),
            TlsWrap::Auth { key, digest } => WrapKeys::tls_auth(
                &load(&key.key)?,
                KeyDirection::from(key.direction),
                AuthDigest::from(*digest),
            ),
            TlsWrap::Crypt { key } => WrapKeys::tls_crypt(&load(key)?, Role::from(role)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wrap::WrapKind;

    #[test]
    fn config_glue() {
        let dir = std::env::temp_dir().join(format!("cw-wrapcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ta.key");
        let key = StaticKey::from_bytes(&[7u8; 256]);
        std::fs::write(&path, key.to_file_string().as_bytes()).unwrap();
        let auth = TlsWrap::Auth {
            key: config::TlsAuthKey {
                key: config::Source::File(path.clone()),
                direction: Some(config::KeyDirection::Inverse),
            },
            digest: config::Digest::Sha256,
        };
        let k = WrapKeys::from_config(&auth, config::Role::Client).unwrap();
        assert_eq!(k.kind(), WrapKind::TlsAuth(AuthDigest::Sha256));
        let c = WrapKeys::from_config(
            &TlsWrap::Crypt {
                key: config::Source::File(path.clone()),
            },
            config::Role::Server,
        )
        .unwrap();
        assert_eq!(c.kind(), WrapKind::TlsCrypt);
        let missing = TlsWrap::Crypt {
            key: config::Source::File(dir.join("nope.key")),
        };
        let e = WrapKeys::from_config(&missing, config::Role::Server).unwrap_err();
        assert!(e.to_string().contains("nope.key"), "{e}");
        std::fs::write(&path, "garbage").unwrap();
        let e = WrapKeys::from_config(&auth, config::Role::Client).unwrap_err();
        assert!(matches!(e, WrapConfigError::Key { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            KeyDirection::from(None::<config::KeyDirection>),
            KeyDirection::Bidirectional
        );
    }
}
