//! Control-channel text messages (PUSH_REQUEST, PUSH_REPLY, AUTH_FAILED, RESTART, HALT,
//! INFO, EXIT, ...), cipher negotiation, the server's PUSH_REPLY and the client's view of it.
//!
//! Framing (§7.4): each message is printable ASCII plus a terminating NUL, written as one
//! TLS write. A receiver takes one TLS read and splits it on NUL, strips trailing CR/LF,
//! and drops messages with other control or non-ASCII bytes; text without a terminating
//! NUL is dropped too (2.6's `extract_command_buffer`).
//!
//! PUSH_REPLY (§7.5): the server sends the global push list (explicit `push` lines, then
//! what the `server`/`keepalive` helpers add), then the per-client options in the order
//! of 2.6's `prepare_push_reply`: `ifconfig-ipv6`, `ifconfig`, `peer-id`, `cipher`,
//! `protocol-flags` (or `key-derivation tls-ekm`), `tun-mtu`. Messages are cut into parts
//! as 2.6 does (at 1024 − 84 bytes) with `push-continuation 2`/`1`. We never push
//! `dyn-tls-crypt` (not implemented) and refuse clients without DATA_V2, as a DCO server.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use crate::config::lexer::{Directive, tokenize_line};
use crate::config::options::{Args, parse_route, parse_route_ipv6};
use crate::config::{DataCipher, Ipv6Net, Location, Route, RouteIpv6};
use crate::key_method::{IvProtoFlag, PeerInfo};

/// Largest control message a 2.6 peer reads in one go (`TLS_CHANNEL_BUF_SIZE`), NUL
/// included.
pub const MAX_CONTROL_MESSAGE: usize = 2048;
/// 2.6's PUSH_REPLY buffer (`PUSH_BUNDLE_SIZE`).
pub const PUSH_BUNDLE_SIZE: usize = 1024;
/// Room 2.6 keeps free in each part for a trailing option and `push-continuation`.
const PUSH_EXTRA: usize = 84;
/// Largest reassembled push we accept from a server (a bound against a hostile server).
pub const MAX_PUSH_TOTAL: usize = 64 * 1024;

/// Errors in this module.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// A message to send is not printable ASCII.
    #[error("control message contains a byte that is not printable ASCII")]
    NotPrintable,
    /// A message to send is longer than a 2.6 peer reads.
    #[error("control message of {0} bytes is longer than {max} (NUL included)", max = MAX_CONTROL_MESSAGE)]
    TooLong(usize),
    /// One push option does not fit into a PUSH_REPLY part.
    #[error("push option too long for one PUSH_REPLY message: {0}")]
    OptionTooLong(String),
    /// A push option contains a comma (it would split into two).
    #[error("push option contains a comma: {0}")]
    Comma(String),
    /// The client lacks DATA_V2 (IV_PROTO bit 1), which DCO needs.
    #[error(
        "Data channel negotiation failed (missing DATA_V2): the client is too old for a DCO server"
    )]
    NoDataV2,
    /// No common data cipher.
    #[error("no common data cipher: server has {server}, client offers {client}")]
    NoCommonCipher {
        /// The server's data-ciphers.
        server: String,
        /// What the client offered.
        client: String,
    },
    /// A pushed option has a bad value.
    #[error("pushed option '{item}': {why}")]
    BadPushedOption {
        /// The option as received.
        item: String,
        /// What is wrong.
        why: String,
    },
    /// A pushed option DCO cannot work with (compression, ...).
    #[error("pushed option '{item}' is incompatible with data channel offload: {why}")]
    IncompatiblePushedOption {
        /// The option.
        item: String,
        /// Why.
        why: String,
    },
    /// The server pushed more than [`MAX_PUSH_TOTAL`] bytes or parts.
    #[error("PUSH_REPLY continuation exceeds {MAX_PUSH_TOTAL} bytes")]
    PushTooLarge,
    /// A PUSH_REPLY part after the final part.
    #[error("PUSH_REPLY received after the push was complete")]
    AlreadyComplete,
}

// ---------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------

/// Frames a message for one TLS write: the text plus a NUL.
pub fn frame(text: &str) -> Result<Vec<u8>, PushError> {
    if text.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        return Err(PushError::NotPrintable);
    }
    if text.len() + 1 > MAX_CONTROL_MESSAGE {
        return Err(PushError::TooLong(text.len() + 1));
    }
    let mut v = Vec::with_capacity(text.len() + 1);
    v.extend_from_slice(text.as_bytes());
    v.push(0);
    Ok(v)
}

/// Messages found in one TLS read, and how many pieces were dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Incoming {
    /// The messages, in order, without NUL and trailing CR/LF.
    pub messages: Vec<String>,
    /// Pieces dropped: bad characters, or text not terminated by NUL.
    pub dropped: usize,
}

/// Splits the plaintext of one TLS read into messages, exactly as 2.6 does.
pub fn split_incoming(plain: &[u8]) -> Incoming {
    let mut out = Incoming::default();
    let mut rest = plain;
    while rest.len() > 1 {
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            // No terminating NUL: 2.6 drops the rest.
            out.dropped += 1;
            break;
        };
        let mut cmd = &rest[..nul];
        rest = &rest[nul + 1..];
        while let Some((&last, head)) = cmd.split_last() {
            if last == b'\r' || last == b'\n' {
                cmd = head;
            } else {
                break;
            }
        }
        if cmd.iter().any(|&b| !(0x20..0x7f).contains(&b)) {
            out.dropped += 1;
            continue;
        }
        if !cmd.is_empty() {
            // All bytes are ASCII here, so this cannot fail.
            out.messages.push(String::from_utf8_lossy(cmd).into_owned());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

/// Flags of `RESTART,[flags]msg` / `HALT,[flags]msg`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalFlags {
    /// `P`: keep the cached password.
    pub keep_password: bool,
    /// `N`: advance to the next server.
    pub next_server: bool,
}

/// `AUTH_FAILED,TEMP[flags]:message`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthFailedTemp {
    /// `backoff N` seconds, if given.
    pub backoff: Option<u32>,
    /// `advance no|addr|remote`, if given.
    pub advance: Option<String>,
    /// The human-readable message after `:`.
    pub message: String,
}

/// A control-channel message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMessage {
    /// `PUSH_REQUEST` (client → server).
    PushRequest,
    /// `PUSH_REPLY[,options]`: the text after `PUSH_REPLY,` (empty for a bare
    /// `PUSH_REPLY`).
    PushReply(String),
    /// `AUTH_FAILED[,reason]`.
    AuthFailed {
        /// The text after `AUTH_FAILED,`.
        reason: Option<String>,
        /// Parsed `TEMP` form.
        temp: Option<AuthFailedTemp>,
    },
    /// `AUTH_PENDING[,keywords]`.
    AuthPending {
        /// `timeout N`, if given.
        timeout: Option<u32>,
    },
    /// `RESTART[,[flags]message]`.
    Restart {
        /// Flags.
        flags: SignalFlags,
        /// Message (flags removed).
        message: String,
    },
    /// `HALT[,[flags]message]`.
    Halt {
        /// Flags.
        flags: SignalFlags,
        /// Message.
        message: String,
    },
    /// `INFO_PRE,text`.
    InfoPre(String),
    /// `INFO,text`.
    Info(String),
    /// `CR_RESPONSE,base64`.
    CrResponse(String),
    /// `EXIT` (cc-exit).
    Exit,
    /// Anything else (2.6 logs and ignores it).
    Unknown(String),
}

fn after_comma(text: &str, prefix_len: usize) -> &str {
    text.get(prefix_len..)
        .and_then(|r| r.strip_prefix(','))
        .unwrap_or("")
}

fn signal_parts(m: &str) -> (SignalFlags, String) {
    let mut f = SignalFlags::default();
    if let Some(rest) = m.strip_prefix('[') {
        let end = rest.find(']').unwrap_or(rest.len());
        for c in rest[..end].chars() {
            match c {
                'P' => f.keep_password = true,
                'N' => f.next_server = true,
                _ => {}
            }
        }
        let msg = rest.get(end + 1..).unwrap_or("");
        return (f, msg.to_string());
    }
    (f, m.to_string())
}

fn parse_temp(rest: &str) -> AuthFailedTemp {
    let mut t = AuthFailedTemp::default();
    let mut msg = rest;
    if let Some(r) = rest.strip_prefix('[') {
        let end = r.find(']').unwrap_or(r.len());
        for kw in r[..end].split(',') {
            let kw = kw.trim();
            if let Some(v) = kw.strip_prefix("backoff ") {
                t.backoff = v.trim().parse().ok();
            } else if let Some(v) = kw.strip_prefix("advance ") {
                t.advance = Some(v.trim().to_string());
            }
        }
        msg = r.get(end + 1..).unwrap_or("");
    }
    t.message = msg.strip_prefix(':').unwrap_or(msg).to_string();
    t
}

impl ControlMessage {
    /// Classifies a message by prefix, in 2.6's order.
    pub fn parse(text: &str) -> ControlMessage {
        if text.starts_with("AUTH_FAILED") {
            let reason = text
                .strip_prefix("AUTH_FAILED,")
                .filter(|r| !r.is_empty())
                .map(str::to_string);
            let temp = reason
                .as_deref()
                .and_then(|r| r.strip_prefix("TEMP"))
                .map(parse_temp);
            ControlMessage::AuthFailed { reason, temp }
        } else if text.starts_with("PUSH_") {
            if text.starts_with("PUSH_REQUEST") {
                ControlMessage::PushRequest
            } else if let Some(rest) = text.strip_prefix("PUSH_REPLY") {
                match rest.strip_prefix(',') {
                    Some(r) => ControlMessage::PushReply(r.to_string()),
                    None if rest.is_empty() => ControlMessage::PushReply(String::new()),
                    None => ControlMessage::Unknown(text.to_string()),
                }
            } else {
                ControlMessage::Unknown(text.to_string())
            }
        } else if text.starts_with("RESTART") {
            let (flags, message) = signal_parts(after_comma(text, 7));
            ControlMessage::Restart { flags, message }
        } else if text.starts_with("HALT") {
            let (flags, message) = signal_parts(after_comma(text, 4));
            ControlMessage::Halt { flags, message }
        } else if text.starts_with("INFO_PRE") {
            ControlMessage::InfoPre(after_comma(text, 8).to_string())
        } else if text.starts_with("INFO") {
            ControlMessage::Info(after_comma(text, 4).to_string())
        } else if text.starts_with("CR_RESPONSE") {
            ControlMessage::CrResponse(after_comma(text, 11).to_string())
        } else if text.starts_with("AUTH_PENDING") {
            let timeout = after_comma(text, 12).split(',').find_map(|kw| {
                kw.trim()
                    .strip_prefix("timeout ")
                    .and_then(|v| v.trim().parse().ok())
            });
            ControlMessage::AuthPending { timeout }
        } else if text.starts_with("EXIT") {
            ControlMessage::Exit
        } else {
            ControlMessage::Unknown(text.to_string())
        }
    }

    /// The message text (without NUL).
    pub fn to_text(&self) -> String {
        fn flags_text(f: &SignalFlags) -> String {
            if !f.keep_password && !f.next_server {
                return String::new();
            }
            let mut s = String::from("[");
            if f.keep_password {
                s.push('P');
            }
            if f.next_server {
                s.push('N');
            }
            s.push(']');
            s
        }
        fn with_arg(cmd: &str, arg: &str) -> String {
            if arg.is_empty() {
                cmd.to_string()
            } else {
                format!("{cmd},{arg}")
            }
        }
        match self {
            ControlMessage::PushRequest => "PUSH_REQUEST".into(),
            ControlMessage::PushReply(r) => with_arg("PUSH_REPLY", r),
            ControlMessage::AuthFailed { reason, .. } => {
                with_arg("AUTH_FAILED", reason.as_deref().unwrap_or(""))
            }
            ControlMessage::AuthPending { timeout } => match timeout {
                Some(t) => format!("AUTH_PENDING,timeout {t}"),
                None => "AUTH_PENDING".into(),
            },
            ControlMessage::Restart { flags, message } => {
                with_arg("RESTART", &(flags_text(flags) + message))
            }
            ControlMessage::Halt { flags, message } => {
                with_arg("HALT", &(flags_text(flags) + message))
            }
            ControlMessage::InfoPre(m) => with_arg("INFO_PRE", m),
            ControlMessage::Info(m) => with_arg("INFO", m),
            ControlMessage::CrResponse(m) => with_arg("CR_RESPONSE", m),
            ControlMessage::Exit => "EXIT".into(),
            ControlMessage::Unknown(t) => t.clone(),
        }
    }

    /// The framed bytes (text + NUL) for one TLS write.
    pub fn encode(&self) -> Result<Vec<u8>, PushError> {
        frame(&self.to_text())
    }
}

// ---------------------------------------------------------------------------------------
// Negotiation (server side)
// ---------------------------------------------------------------------------------------

/// How data-channel keys are derived for a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyDerivation {
    /// TLS exporter (`EXPORTER-OpenVPN-datakeys`), announced in the push.
    TlsEkm,
    /// Legacy TLS1-PRF from the key-method-2 randoms (clients without IV_PROTO bit 3).
    Tls1Prf,
}

/// What the server decided for one client from its peer-info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The data cipher.
    pub cipher: DataCipher,
    /// Push `cipher X` (the client negotiates ciphers).
    pub push_cipher: bool,
    /// Key derivation.
    pub key_derivation: KeyDerivation,
    /// The client understands `protocol-flags` and EXIT on the control channel.
    pub cc_exit: bool,
    /// The server may send PUSH_REPLY without waiting for PUSH_REQUEST.
    pub push_early: bool,
    /// The client announced IV_MTU, so `tun-mtu` is pushed.
    pub push_tun_mtu: bool,
}

/// The first cipher of `server` the client supports, as 2.6's `ncp_get_best_cipher`:
/// the client's list is IV_CIPHERS, else `AES-256-GCM:AES-128-GCM` for IV_NCP>=2, plus
/// the cipher of its OCC string when it sent no IV_CIPHERS.
pub fn best_cipher(
    server: &[DataCipher],
    peer: &PeerInfo,
    occ_cipher: Option<&str>,
) -> Option<DataCipher> {
    let list: Vec<String> = match peer.ciphers() {
        Some(c) => c.into_iter().map(str::to_string).collect(),
        None if peer.ncp_version() >= 2 => vec!["AES-256-GCM".into(), "AES-128-GCM".into()],
        None => Vec::new(),
    };
    let remote = if peer.get("IV_CIPHERS").is_some() {
        None
    } else {
        occ_cipher
    };
    server
        .iter()
        .copied()
        .find(|c| list.iter().any(|x| x == c.name()) || remote == Some(c.name()))
}

/// Decides cipher, key derivation and push form for a client, or refuses it like a DCO
/// server (no DATA_V2, no common cipher). `fallback` is `data-ciphers-fallback`.
pub fn negotiate(
    server_ciphers: &[DataCipher],
    fallback: Option<DataCipher>,
    peer: &PeerInfo,
    occ_options: &str,
) -> Result<Negotiated, PushError> {
    let proto = peer.iv_proto();
    if !proto.has(IvProtoFlag::DataV2) {
        return Err(PushError::NoDataV2);
    }
    let occ_cipher = crate::key_method::occ_option(occ_options, "cipher");
    let cipher = best_cipher(server_ciphers, peer, occ_cipher)
        .or(fallback)
        .ok_or_else(|| PushError::NoCommonCipher {
            server: DataCipher::list_string(server_ciphers),
            client: peer
                .get("IV_CIPHERS")
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!(
                        "IV_NCP={} cipher={}",
                        peer.ncp_version(),
                        occ_cipher.unwrap_or("(none)")
                    )
                }),
        })?;
    Ok(Negotiated {
        cipher,
        push_cipher: peer.supports_ncp(),
        key_derivation: if proto.has(IvProtoFlag::TlsKeyExport) {
            KeyDerivation::TlsEkm
        } else {
            KeyDerivation::Tls1Prf
        },
        cc_exit: proto.has(IvProtoFlag::CcExitNotify),
        push_early: proto.has(IvProtoFlag::RequestPush),
        push_tun_mtu: peer
            .get("IV_MTU")
            .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit())),
    })
}

// ---------------------------------------------------------------------------------------
// PUSH_REPLY (server side)
// ---------------------------------------------------------------------------------------

/// The per-client part of a PUSH_REPLY.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPush {
    /// `ifconfig-ipv6 addr/bits server-addr`.
    pub ifconfig_ipv6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
    /// `ifconfig addr netmask`.
    pub ifconfig: Option<(Ipv4Addr, Ipv4Addr)>,
    /// `peer-id N`.
    pub peer_id: u32,
    /// Negotiation result.
    pub negotiated: Negotiated,
    /// The server's `tun-mtu`.
    pub tun_mtu: u16,
}

impl ClientPush {
    /// The per-client options in 2.6's order.
    pub fn options(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some((a, bits, remote)) = self.ifconfig_ipv6 {
            v.push(format!("ifconfig-ipv6 {a}/{bits} {remote}"));
        }
        if let Some((a, m)) = self.ifconfig {
            v.push(format!("ifconfig {a} {m}"));
        }
        v.push(format!("peer-id {}", self.peer_id));
        let n = &self.negotiated;
        if n.push_cipher {
            v.push(format!("cipher {}", n.cipher.name()));
        }
        let ekm = n.key_derivation == KeyDerivation::TlsEkm;
        if n.cc_exit {
            v.push(if ekm {
                "protocol-flags cc-exit tls-ekm".into()
            } else {
                "protocol-flags cc-exit".into()
            });
        } else if ekm {
            v.push("key-derivation tls-ekm".into());
        }
        if n.push_tun_mtu {
            v.push(format!("tun-mtu {}", self.tun_mtu));
        }
        v
    }
}

/// Builds the PUSH_REPLY message(s): `global` (the instance's push list: global options
/// unless the ccd file said `push-reset`, then the ccd `push` lines) followed by
/// `per_client`, cut into parts like 2.6.
pub fn build_push_reply(
    global: &[String],
    per_client: &[String],
) -> Result<Vec<String>, PushError> {
    const CMD: &str = "PUSH_REPLY";
    let safe_cap = PUSH_BUNDLE_SIZE - PUSH_EXTRA;
    let mut out = Vec::new();
    let mut buf = String::from(CMD);
    let mut multi = false;
    for opt in global.iter().chain(per_client) {
        if opt.contains(',') {
            return Err(PushError::Comma(opt.clone()));
        }
        if buf.len() + opt.len() >= safe_cap {
            buf.push_str(",push-continuation 2");
            out.push(std::mem::replace(&mut buf, String::from(CMD)));
            multi = true;
        }
        if buf.len() + opt.len() >= safe_cap {
            return Err(PushError::OptionTooLong(opt.clone()));
        }
        buf.push(',');
        buf.push_str(opt);
    }
    if multi {
        buf.push_str(",push-continuation 1");
    }
    if buf.len() > CMD.len() || out.is_empty() {
        out.push(buf);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Pushed options (client side)
// ---------------------------------------------------------------------------------------

/// `topology` as pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// `topology subnet`.
    Subnet,
    /// `topology net30` (what 2.6 assumes when nothing is pushed).
    Net30,
    /// `topology p2p`.
    P2p,
}

/// `route-gateway` as pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteGateway {
    /// An address.
    Addr(Ipv4Addr),
    /// `dhcp` (TAP only).
    Dhcp,
}

/// `protocol-flags` keywords.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtocolFlags {
    /// `cc-exit`: send EXIT on the control channel.
    pub cc_exit: bool,
    /// `tls-ekm`: derive data keys with the TLS exporter.
    pub tls_ekm: bool,
    /// `dyn-tls-crypt`: not implemented; a push with it is refused.
    pub dyn_tls_crypt: bool,
    /// `aead-epoch` (2.7): not implemented; refused.
    pub aead_epoch: bool,
}

/// What a server pushed, typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushedOptions {
    /// `ifconfig local netmask` (with topology subnet).
    pub ifconfig: Option<(Ipv4Addr, Ipv4Addr)>,
    /// `ifconfig-ipv6 addr/bits [remote]`.
    pub ifconfig_ipv6: Option<(Ipv6Net, Option<Ipv6Addr>)>,
    /// `route` options.
    pub routes: Vec<Route>,
    /// `route-ipv6` options.
    pub routes_ipv6: Vec<RouteIpv6>,
    /// `route-gateway`.
    pub route_gateway: Option<RouteGateway>,
    /// `topology`.
    pub topology: Option<Topology>,
    /// `peer-id`.
    pub peer_id: Option<u32>,
    /// `cipher`.
    pub cipher: Option<DataCipher>,
    /// `protocol-flags`.
    pub protocol_flags: ProtocolFlags,
    /// `key-derivation tls-ekm` (2.5 form).
    pub key_derivation_tls_ekm: bool,
    /// `ping`.
    pub ping: Option<u32>,
    /// `ping-restart`.
    pub ping_restart: Option<u32>,
    /// `tun-mtu`.
    pub tun_mtu: Option<u16>,
    /// `redirect-gateway` / `redirect-private` flags, as text.
    pub redirect_gateway: Option<Vec<String>>,
    /// `dhcp-option ...` lines, as text.
    pub dhcp_options: Vec<String>,
    /// `dns ...` lines, as text.
    pub dns: Vec<String>,
    /// Other options, kept for the log (2.6 warns about unknown pushed options and goes
    /// on).
    pub ignored: Vec<String>,
}

impl PushedOptions {
    /// True when data keys come from the TLS exporter.
    pub fn uses_tls_ekm(&self) -> bool {
        self.protocol_flags.tls_ekm || self.key_derivation_tls_ekm
    }

    /// Parses the option list of a (reassembled) PUSH_REPLY body, items separated by
    /// commas, each tokenized like a config line. Later items override earlier ones.
    pub fn parse(body: &str) -> Result<Self, PushError> {
        let mut p = PushedOptions::default();
        let file: Arc<str> = Arc::from("[PUSH-OPTIONS]");
        for (i, item) in body.split(',').enumerate() {
            let bad = |why: &str| PushError::BadPushedOption {
                item: item.to_string(),
                why: why.to_string(),
            };
            let words = tokenize_line(item, &file, u32::try_from(i + 1).unwrap_or(u32::MAX))
                .map_err(|e| bad(&e.kind.to_string()))?;
            let Some((first, rest)) = words.split_first() else {
                continue;
            };
            let d = Directive {
                name: first.text.clone(),
                args: rest.to_vec(),
                inline: None,
                loc: Location {
                    file: file.clone(),
                    line: 1,
                    column: first.column,
                },
            };
            let a = Args { d: &d };
            let n = rest.len();
            let arity = |min: usize, max: usize| {
                if n < min || n > max {
                    Err(bad("wrong number of arguments"))
                } else {
                    Ok(())
                }
            };
            let cfg = |e: crate::config::ConfigError| bad(&e.kind.to_string());
            match d.name.as_str() {
                "ifconfig" => {
                    arity(2, 2)?;
                    p.ifconfig = Some((a.ipv4(0).map_err(cfg)?, a.ipv4(1).map_err(cfg)?));
                }
                "ifconfig-ipv6" => {
                    arity(1, 2)?;
                    let net = a.ipv6net(0, None).map_err(cfg)?;
                    let remote = if n == 2 {
                        Some(Ipv6Addr::from_str(a.s(1)).map_err(|_| bad("not an IPv6 address"))?)
                    } else {
                        None
                    };
                    p.ifconfig_ipv6 = Some((net, remote));
                }
                "route" => {
                    arity(1, 4)?;
                    p.routes.push(parse_route(&a).map_err(cfg)?);
                }
                "route-ipv6" => {
                    arity(1, 3)?;
                    p.routes_ipv6.push(parse_route_ipv6(&a).map_err(cfg)?);
                }
                "route-gateway" => {
                    arity(1, 1)?;
                    p.route_gateway = Some(if a.s(0) == "dhcp" {
                        RouteGateway::Dhcp
                    } else {
                        RouteGateway::Addr(a.ipv4(0).map_err(cfg)?)
                    });
                }
                "topology" => {
                    arity(1, 1)?;
                    p.topology = Some(match a.s(0) {
                        "subnet" => Topology::Subnet,
                        "net30" => Topology::Net30,
                        "p2p" => Topology::P2p,
                        _ => return Err(bad("topology is subnet, net30 or p2p")),
                    });
                }
                "peer-id" => {
                    arity(1, 1)?;
                    p.peer_id = Some(a.u32(0, 0, 0xFF_FFFE).map_err(cfg)?);
                }
                "cipher" => {
                    arity(1, 1)?;
                    p.cipher = Some(DataCipher::parse(a.s(0)).map_err(|_| {
                        PushError::IncompatiblePushedOption {
                            item: item.to_string(),
                            why: "not an AEAD cipher this data path runs".into(),
                        }
                    })?);
                }
                "protocol-flags" => {
                    let mut f = ProtocolFlags::default();
                    for w in rest {
                        match w.text.as_str() {
                            "cc-exit" => f.cc_exit = true,
                            "tls-ekm" => f.tls_ekm = true,
                            "dyn-tls-crypt" => f.dyn_tls_crypt = true,
                            "aead-epoch" => f.aead_epoch = true,
                            _ => return Err(bad("unknown protocol flag")),
                        }
                    }
                    if f.dyn_tls_crypt || f.aead_epoch {
                        return Err(PushError::IncompatiblePushedOption {
                            item: item.to_string(),
                            why: "dyn-tls-crypt and aead-epoch are not implemented (we never announce them)".into(),
                        });
                    }
                    p.protocol_flags = f;
                }
                "key-derivation" => {
                    arity(1, 1)?;
                    if a.s(0) != "tls-ekm" {
                        return Err(bad("the only key derivation is tls-ekm"));
                    }
                    p.key_derivation_tls_ekm = true;
                }
                "ping" => {
                    arity(1, 1)?;
                    p.ping = Some(a.u32(0, 1, 86400).map_err(cfg)?);
                }
                "ping-restart" => {
                    arity(1, 1)?;
                    p.ping_restart = Some(a.u32(0, 1, 86400 * 7).map_err(cfg)?);
                }
                "tun-mtu" => {
                    arity(1, 1)?;
                    p.tun_mtu = Some(a.u32(0, 576, 65535).map_err(cfg)? as u16);
                }
                "redirect-gateway" | "redirect-private" => {
                    p.redirect_gateway = Some(rest.iter().map(|w| w.text.clone()).collect());
                }
                "dhcp-option" => {
                    arity(1, 2)?;
                    p.dhcp_options.push(
                        rest.iter()
                            .map(|w| w.text.as_str())
                            .collect::<Vec<_>>()
                            .join(" "),
                    );
                }
                "dns" => {
                    p.dns.push(
                        rest.iter()
                            .map(|w| w.text.as_str())
                            .collect::<Vec<_>>()
                            .join(" "),
                    );
                }
                "comp-lzo" | "compress" => {
                    if d.name == "compress" && a.s(0) == "stub-v2" {
                        // stub-v2 adds no framing to IP packets: harmless, as in 2.6 DCO.
                        continue;
                    }
                    return Err(PushError::IncompatiblePushedOption {
                        item: item.to_string(),
                        why: "compression is not supported with data channel offload".into(),
                    });
                }
                "push-continuation" => {}
                _ => p.ignored.push(item.to_string()),
            }
        }
        Ok(p)
    }
}

/// Collects PUSH_REPLY parts until the last one (`push-continuation 1`, or none).
#[derive(Clone, Debug, Default)]
pub struct PushReplyAssembler {
    body: String,
    parts: usize,
    complete: bool,
}

impl PushReplyAssembler {
    /// A fresh assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the body of one PUSH_REPLY (the text after `PUSH_REPLY,`). Returns the
    /// options once the last part has arrived.
    pub fn feed(&mut self, body: &str) -> Result<Option<PushedOptions>, PushError> {
        if self.complete {
            return Err(PushError::AlreadyComplete);
        }
        if self.body.len() + body.len() > MAX_PUSH_TOTAL || self.parts >= 64 {
            return Err(PushError::PushTooLarge);
        }
        let more = body.split(',').any(|i| i.trim() == "push-continuation 2");
        if !body.is_empty() {
            if !self.body.is_empty() {
                self.body.push(',');
            }
            self.body.push_str(body);
        }
        self.parts += 1;
        if more {
            return Ok(None);
        }
        self.complete = true;
        PushedOptions::parse(&self.body).map(Some)
    }

    /// True once the final part was seen.
    pub fn is_complete(&self) -> bool {
        self.complete
    }
}

#[cfg(test)]
mod tests;
