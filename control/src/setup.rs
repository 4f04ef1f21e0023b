//! Turning a parsed config into what sessions need: TLS context, control-channel wrapping,
//! reliability settings, the OCC options string and peer-info.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{DataCipher, Options, Role};
use crate::key_method::{Credentials, OccParams, PeerInfoBuilder, UserPass};
use crate::reliable::{AddressFamily, ReliableConfig};
use crate::session::SessionConfig;
use crate::tls::TlsContext;
use crate::wrap::WrapKeys;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{what}: {err}")]
    Read { what: String, err: std::io::Error },
    #[error("{0}")]
    Key(String),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// The wrap keys a config asks for.
pub fn wrap_keys(o: &Options) -> Result<WrapKeys, SetupError> {
    WrapKeys::from_config(&o.tls_wrap(), o.role).map_err(|e| SetupError::Key(e.to_string()))
}

/// `auth-user-pass FILE`: username on the first line, password on the second.
pub fn credentials(o: &Options) -> Result<Credentials, SetupError> {
    let Some(src) = &o.auth_user_pass else {
        return Ok(Credentials::Absent);
    };
    let bytes = src.load().map_err(|err| SetupError::Read {
        what: "auth-user-pass".into(),
        err,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    let user = lines.next().unwrap_or("").trim_end().to_string();
    let pass = lines.next().unwrap_or("").trim_end().to_string();
    if user.is_empty() {
        return Err(SetupError::Key(
            "auth-user-pass: the file has no username (interactive prompts are not supported)"
                .into(),
        ));
    }
    Ok(Credentials::Given(UserPass {
        username: zeroize::Zeroizing::new(user),
        password: zeroize::Zeroizing::new(pass),
    }))
}

/// The session template for this config. `ipv6_transport` picks the control MTU budget.
pub fn session_config(
    o: &Options,
    tls: Arc<TlsContext>,
    ipv6_transport: bool,
    unix_time: u32,
) -> Result<SessionConfig, SetupError> {
    let wrap = wrap_keys(o)?;
    let occ = OccParams::from_options(o).options_string();
    let ciphers: Vec<DataCipher> = o.data_ciphers.clone();
    Ok(SessionConfig {
        role: o.role,
        tls,
        reliable: ReliableConfig {
            wrap: wrap.kind(),
            address_family: if ipv6_transport {
                AddressFamily::V6
            } else {
                AddressFamily::V4
            },
            max_packet_size: usize::from(o.max_packet_size),
            initial_timeout: Duration::from_secs(u64::from(o.tls_timeout.max(1))),
            hand_window: Duration::from_secs(u64::from(o.hand_window.max(1))),
            ..Default::default()
        },
        wrap,
        occ_options: occ,
        peer_info: (o.role == Role::Client).then(|| PeerInfoBuilder::client(&ciphers).build()),
        credentials: if o.role == Role::Client {
            credentials(o)?
        } else {
            Credentials::Absent
        },
        reneg_sec: o.reneg_sec,
        reneg_bytes: o.reneg_bytes,
        reneg_pkts: o.reneg_pkts,
        hand_window: Duration::from_secs(u64::from(o.hand_window.max(1))),
        tran_window: Duration::from_secs(u64::from(o.tran_window.max(1))),
        unix_time,
    })
}

/// Our crypto crate's cipher for a config cipher.
pub fn cipher_kind(c: DataCipher) -> crypto::CipherKind {
    match c {
        DataCipher::Aes128Gcm => crypto::CipherKind::Aes128Gcm,
        DataCipher::Aes256Gcm => crypto::CipherKind::Aes256Gcm,
        DataCipher::Chacha20Poly1305 => crypto::CipherKind::Chacha20Poly1305,
    }
}
