//! The typed option set and the rules that turn directives into it.
//!
//! # Supported options
//!
//! | option | notes |
//! |---|---|
//! | `cd dir` | later relative paths (files, `config` includes, ccd, status, log) are taken from `dir` |
//! | `server`, `client`, `mode server`, `tls-server`, `tls-client`, `pull` | role; `client` = `pull` + `tls-client`; point-to-point modes are refused |
//! | `dev tun`/`tunN`/name, `dev-type tun` | TUN only (DCO has no TAP) |
//! | `proto udp\|udp4\|udp6` | TCP is refused for now |
//! | `port`, `lport`, `rport`, `local host` | |
//! | `remote host [port] [proto]` (several), `remote-random` | client |
//! | `nobind` | client |
//! | `server network netmask [nopool]` | pool .2 … broadcast-1, server .1 |
//! | `server-ipv6 net/bits` | server ::1, pool from ::1000 (from ::2 for /112 and longer) |
//! | `topology subnet` | the default here; `net30`/`p2p` are refused (DCO needs subnet) |
//! | `ifconfig-pool start end [netmask]` | overrides the `server` pool (inside its subnet) |
//! | `ca`, `cert`, `key`, `extra-certs` | PEM files or inline blocks |
//! | `dh none\|file` | accepted; only ECDHE is used, a DH file is not read |
//! | `tls-auth file\|<inline> [0\|1]`, `key-direction 0\|1` | |
//! | `tls-crypt file\|<inline>` | |
//! | `auth SHA1\|SHA256\|SHA512` | tls-auth HMAC digest |
//! | `data-ciphers`, `ncp-ciphers` | AES-256-GCM, AES-128-GCM, CHACHA20-POLY1305; `?name` = optional |
//! | `data-ciphers-fallback`, `cipher` | AEAD only |
//! | `remote-cert-tls server\|client` | EKU + KU as OpenVPN checks |
//! | `verify-x509-name name [subject\|name\|name-prefix]` | |
//! | `crl-verify file\|<inline>` | re-read when the file changes; `dir` form refused |
//! | `firewall file\|<inline>` | ours: the data path's stateful firewall rule set (conntrack syntax), loaded at start |
//! | `peer-fingerprint sha256\|<inline>` | self-signed certificates pinned by SHA-256 |
//! | `tls-version-min 1.2\|1.3 [or-highest]` | 1.0/1.1 mean 1.2 (the lowest we speak) |
//! | `reneg-sec max [min]`, `reneg-bytes`, `reneg-pkts`, `tran-window`, `hand-window`, `tls-timeout` | |
//! | `keepalive interval timeout`, `ping`, `ping-restart`, `explicit-exit-notify [n]` | |
//! | `push "option"` | server |
//! | `client-config-dir`, `ccd-exclusive`, `max-clients`, `duplicate-cn`, `client-to-client` | server |
//! | `route net [mask] [gw] [metric]`, `route-ipv6 net/bits [gw] [metric]` | |
//! | `iroute`, `iroute-ipv6`, `ifconfig-push`, `ifconfig-ipv6-push`, `push-reset`, `disable` | client-config-dir files only |
//! | `tun-mtu n [occ-mtu]`, `mssfix [n] [mtu\|fixed]`, `max-packet-size` (alias `tls-mtu`) | |
//! | `auth-user-pass file\|<inline>` | client; a terminal prompt is not supported |
//! | `user`, `group`, `verb`, `status file [n]`, `status-version 2`, `log`, `log-append`, `replay-window n [t]` | |
//! | `allow-compression no` | other values are refused |
//! | `redirect-gateway ...`, `dhcp-option ...` | client, kept as text |
//! | accepted, no effect | `persist-key`, `persist-tun`, `script-security`, `resolv-retry`, `mute`, `mute-replay-warnings`, `auth-nocache`, `float`, `fast-io`, `tun-ipv6`, `ifconfig-pool-persist` (addresses are kept per common name in memory) |
//!
//! Refused with an explanation: `comp-lzo`, `compress`, `allow-compression yes`, `dev tap`,
//! `server-bridge`, non-AEAD `cipher`/`data-ciphers`, `secret`, `fragment`, `proto tcp*`,
//! `http-proxy`, `socks-proxy`, `tls-crypt-v2`, `<connection>`, `management`,
//! `auth-user-pass-verify`, `plugin`, scripts (`up`, `down`, `client-connect`, ...),
//! `pkcs12`, `pkcs11-*`, `askpass`, `tls-cipher`, `tls-ciphersuites`, `tls-groups`,
//! `tls-version-max`, `verify-client-cert`, `ns-cert-type`, `remote-cert-ku`,
//! `remote-cert-eku`, `verify-hash`, `ifconfig`, `ifconfig-ipv6`, `ifconfig-ipv6-pool`,
//! `mode p2p`, `topology net30|p2p`, `ncp-disable`, `disable-dco`. Anything else is an
//! unknown option.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use super::lexer::Directive;
use super::{ConfigError, ConfigErrorKind, Location, Source};

/// Which side of the VPN this config runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `server` / `mode server` + `tls-server`: many clients.
    Server,
    /// `client` / `pull` + `tls-client`.
    Client,
}

/// Transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// `udp`: IPv4 or IPv6 as resolution gives.
    Udp,
    /// `udp4`: IPv4 only.
    Udp4,
    /// `udp6`: IPv6 only.
    Udp6,
}

impl Proto {
    fn parse(s: &str) -> Result<Self, (String, String)> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Ok(Proto::Udp),
            "udp4" => Ok(Proto::Udp4),
            "udp6" => Ok(Proto::Udp6),
            "tcp" | "tcp4" | "tcp6" | "tcp-client" | "tcp-server" | "tcp4-client"
            | "tcp6-client" | "tcp4-server" | "tcp6-server" => Err((
                "TCP transport is not supported yet (DCO here runs over UDP)".into(),
                "use proto udp on both sides".into(),
            )),
            _ => Err(("unknown protocol".into(), "use udp, udp4 or udp6".into())),
        }
    }
}

/// One `remote` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// Host name or address, as written.
    pub host: String,
    /// Port (the line's, else `port`/`rport`, else 1194).
    pub port: u16,
    /// Protocol (the line's, else `proto`).
    pub proto: Proto,
}

/// `server network netmask [nopool]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerNet {
    /// Network address (no host bits).
    pub network: Ipv4Addr,
    /// Netmask.
    pub netmask: Ipv4Addr,
    /// Prefix length of the netmask.
    pub prefix_len: u8,
    /// `nopool`: addresses only from client-config-dir `ifconfig-push`.
    pub nopool: bool,
}

impl ServerNet {
    /// The server's own tunnel address: network + 1.
    pub fn server_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).wrapping_add(1))
    }

    /// The broadcast address of the subnet.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !u32::from(self.netmask))
    }

    /// True if `a` is inside the subnet.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & u32::from(self.netmask) == u32::from(self.network)
    }
}

/// An IPv6 network `addr/prefix_len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Net {
    /// The address as written (host bits kept).
    pub addr: Ipv6Addr,
    /// Prefix length.
    pub prefix_len: u8,
}

impl Ipv6Net {
    /// Parses `addr/bits` (bits default to 128 when `default_bits` allows it).
    pub fn parse(s: &str, default_bits: Option<u8>) -> Result<Self, String> {
        let (a, bits) = match s.split_once('/') {
            Some((a, b)) => {
                let bits: u8 = b
                    .parse()
                    .map_err(|_| format!("'{b}' is not a prefix length"))?;
                if bits > 128 {
                    return Err(format!("prefix length {bits} is more than 128"));
                }
                (a, bits)
            }
            None => (
                s,
                default_bits.ok_or_else(|| "a /prefix-length is required".to_string())?,
            ),
        };
        let addr = Ipv6Addr::from_str(a).map_err(|_| format!("'{a}' is not an IPv6 address"))?;
        Ok(Self {
            addr,
            prefix_len: bits,
        })
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv6Addr {
        let bits = u32::from(self.prefix_len);
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - bits)
        };
        Ipv6Addr::from(u128::from(self.addr) & mask)
    }

    /// True if `a` is inside the network.
    pub fn contains(&self, a: Ipv6Addr) -> bool {
        let bits = u32::from(self.prefix_len);
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - bits)
        };
        u128::from(a) & mask == u128::from(self.addr) & mask
    }
}

impl std::fmt::Display for Ipv6Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// `ifconfig-pool start end [netmask]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfconfigPool {
    /// First address handed out.
    pub start: Ipv4Addr,
    /// Last address handed out.
    pub end: Ipv4Addr,
    /// Netmask pushed with the address (defaults to the `server` netmask).
    pub netmask: Option<Ipv4Addr>,
}

/// tls-auth key direction (`0` or `1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyDirection {
    /// `0`: send with keys[0], receive with keys[1] (usually the server).
    Normal,
    /// `1`: send with keys[1], receive with keys[0] (usually the client).
    Inverse,
}

impl KeyDirection {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "0" => Some(KeyDirection::Normal),
            "1" => Some(KeyDirection::Inverse),
            _ => None,
        }
    }

    /// The digit as written in configs and OCC strings.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyDirection::Normal => "0",
            KeyDirection::Inverse => "1",
        }
    }
}

/// HMAC digest for tls-auth (`auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    /// SHA1 (OpenVPN's default), 20-byte HMAC.
    Sha1,
    /// SHA256, 32-byte HMAC.
    Sha256,
    /// SHA512, 64-byte HMAC.
    Sha512,
}

impl Digest {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "SHA1" | "SHA-1" => Some(Digest::Sha1),
            "SHA256" | "SHA-256" | "SHA2-256" => Some(Digest::Sha256),
            "SHA512" | "SHA-512" | "SHA2-512" => Some(Digest::Sha512),
            _ => None,
        }
    }

    /// OpenVPN's name (as in OCC strings).
    pub fn name(self) -> &'static str {
        match self {
            Digest::Sha1 => "SHA1",
            Digest::Sha256 => "SHA256",
            Digest::Sha512 => "SHA512",
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Digest::Sha1 => 20,
            Digest::Sha256 => 32,
            Digest::Sha512 => 64,
        }
    }
}

/// A data-channel AEAD cipher this implementation can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataCipher {
    /// AES-128-GCM.
    Aes128Gcm,
    /// AES-256-GCM.
    Aes256Gcm,
    /// CHACHA20-POLY1305.
    Chacha20Poly1305,
}

/// Why a cipher name was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CipherNameError {
    /// A real cipher, but not an AEAD: DCO refuses it.
    NotAead,
    /// An AEAD DCO knows but our data path does not implement.
    NotImplemented,
    /// Not a cipher name we know.
    Unknown,
}

impl DataCipher {
    /// All supported ciphers, in OpenVPN 2.6's default `data-ciphers` order.
    pub const ALL: [DataCipher; 3] = [
        DataCipher::Aes256Gcm,
        DataCipher::Aes128Gcm,
        DataCipher::Chacha20Poly1305,
    ];

    /// OpenVPN's canonical name.
    pub fn name(self) -> &'static str {
        match self {
            DataCipher::Aes128Gcm => "AES-128-GCM",
            DataCipher::Aes256Gcm => "AES-256-GCM",
            DataCipher::Chacha20Poly1305 => "CHACHA20-POLY1305",
        }
    }

    /// Key length in bytes (taken from the start of the 64-byte cipher key field).
    pub fn key_len(self) -> usize {
        match self {
            DataCipher::Aes128Gcm => 16,
            DataCipher::Aes256Gcm | DataCipher::Chacha20Poly1305 => 32,
        }
    }

    /// Parses a cipher name the way OpenVPN normalises it (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, CipherNameError> {
        let u = s.to_ascii_uppercase();
        match u.as_str() {
            "AES-128-GCM" | "ID-AES128-GCM" => Ok(DataCipher::Aes128Gcm),
            "AES-256-GCM" | "ID-AES256-GCM" => Ok(DataCipher::Aes256Gcm),
            "CHACHA20-POLY1305" => Ok(DataCipher::Chacha20Poly1305),
            "AES-192-GCM" | "ID-AES192-GCM" => Err(CipherNameError::NotImplemented),
            "NONE" | "[NULL-CIPHER]" => Err(CipherNameError::NotAead),
            _ if u.ends_with("-CBC")
                || u.ends_with("-CFB")
                || u.ends_with("-CFB1")
                || u.ends_with("-CFB8")
                || u.ends_with("-OFB")
                || u.ends_with("-CTR")
                || u.starts_with("BF-")
                || u.starts_with("DES")
                || u.starts_with("CAST5")
                || u.starts_with("RC2")
                || u.starts_with("SEED") =>
            {
                Err(CipherNameError::NotAead)
            }
            _ => Err(CipherNameError::Unknown),
        }
    }

    /// Formats a list as OpenVPN does (`A:B:C`).
    pub fn list_string(list: &[DataCipher]) -> String {
        list.iter().map(|c| c.name()).collect::<Vec<_>>().join(":")
    }
}

impl std::fmt::Display for DataCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `remote-cert-tls server|client`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertUsage {
    /// The peer must be a TLS server (EKU serverAuth).
    Server,
    /// The peer must be a TLS client (EKU clientAuth).
    Client,
}

/// How `verify-x509-name` compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X509NameKind {
    /// The whole subject, as OpenSSL prints it (`C=US, O=Org, CN=name`).
    Subject,
    /// The common name, exactly.
    Name,
    /// The common name starts with the given text.
    NamePrefix,
}

/// `verify-x509-name name [type]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X509NameCheck {
    /// The expected name.
    pub name: String,
    /// How to compare.
    pub kind: X509NameKind,
}

/// Lowest TLS version allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2 (OpenVPN 2.6's default minimum).
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

/// `keepalive interval timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Ping interval in seconds.
    pub interval: u32,
    /// Restart timeout in seconds (the value pushed; a server uses twice this itself).
    pub timeout: u32,
}

/// Local keepalive timers after OpenVPN's helper expansion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PingTimers {
    /// Send a ping when nothing was sent for this many seconds.
    pub ping: Option<u32>,
    /// Drop/restart when nothing authenticated arrived for this many seconds.
    pub ping_restart: Option<u32>,
}

/// `route network [netmask] [gateway] [metric]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination network.
    pub network: Ipv4Addr,
    /// Netmask (default 255.255.255.255).
    pub netmask: Ipv4Addr,
    /// Gateway: an address or `vpn_gateway`/`net_gateway`/`remote_host`.
    pub gateway: Option<String>,
    /// Metric.
    pub metric: Option<u32>,
}

/// `route-ipv6 network/bits [gateway] [metric]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteIpv6 {
    /// Destination.
    pub network: Ipv6Net,
    /// Gateway.
    pub gateway: Option<Ipv6Addr>,
    /// Metric.
    pub metric: Option<u32>,
}

/// `status file [interval]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusFile {
    /// Where to write.
    pub path: PathBuf,
    /// Seconds between writes (default 60).
    pub interval: u32,
}

/// `log file` / `log-append file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    /// The file.
    pub path: PathBuf,
    /// `log-append`: keep old content.
    pub append: bool,
}

/// `dh` setting (only ECDHE is used either way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DhParam {
    /// `dh none`.
    None,
    /// A DH parameter file: accepted and not read.
    File(Source),
}

/// `tls-auth` key with its direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsAuthKey {
    /// The static key file.
    pub key: Source,
    /// The direction given on the `tls-auth` line or by `key-direction`.
    pub direction: Option<KeyDirection>,
}

/// A warning that does not stop the start (logged by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Where.
    pub loc: Location,
    /// What.
    pub message: String,
}

/// The control-channel wrapping configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsWrap {
    /// Neither `tls-auth` nor `tls-crypt`.
    None,
    /// `tls-auth` with the HMAC digest from `auth`.
    Auth {
        /// Key and direction.
        key: TlsAuthKey,
        /// HMAC digest.
        digest: Digest,
    },
    /// `tls-crypt`.
    Crypt {
        /// The key.
        key: Source,
    },
}

/// A typed OpenVPN configuration (the subset in the module table). Defaults are
/// OpenVPN 2.6's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Server or client.
    pub role: Role,
    /// `dev` name (default `tun`).
    pub dev: String,
    /// `proto` (default udp).
    pub proto: Proto,
    /// Local port (`port`/`lport`, default 1194).
    pub local_port: u16,
    /// `local` address to bind.
    pub local: Option<String>,
    /// `remote` lines (client).
    pub remotes: Vec<Remote>,
    /// `remote-random`.
    pub remote_random: bool,
    /// `nobind`.
    pub nobind: bool,
    /// `server` (IPv4 pool and server address).
    pub server: Option<ServerNet>,
    /// `server-ipv6`.
    pub server_ipv6: Option<Ipv6Net>,
    /// `ifconfig-pool`.
    pub ifconfig_pool: Option<IfconfigPool>,
    /// `ca`.
    pub ca: Option<Source>,
    /// `cert`.
    pub cert: Option<Source>,
    /// `key`.
    pub key: Option<Source>,
    /// `extra-certs` (appended to the chain we send).
    pub extra_certs: Option<Source>,
    /// `dh`.
    pub dh: Option<DhParam>,
    /// `tls-auth` (direction merged with `key-direction`).
    pub tls_auth: Option<TlsAuthKey>,
    /// `tls-crypt`.
    pub tls_crypt: Option<Source>,
    /// `auth` (default SHA1).
    pub auth: Digest,
    /// `data-ciphers` (default AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305), legacy `cipher`
    /// appended when not in it.
    pub data_ciphers: Vec<DataCipher>,
    /// `data-ciphers-fallback`.
    pub data_ciphers_fallback: Option<DataCipher>,
    /// Legacy `cipher` (AEAD only).
    pub cipher: Option<DataCipher>,
    /// `remote-cert-tls`.
    pub remote_cert_tls: Option<CertUsage>,
    /// `verify-x509-name`.
    pub verify_x509_name: Option<X509NameCheck>,
    /// `crl-verify`.
    pub crl_verify: Option<Source>,
    /// `firewall FILE` (ours, not OpenVPN's): the data path's stateful firewall rules.
    pub firewall: Option<Source>,
    /// `peer-fingerprint` SHA-256 values.
    pub peer_fingerprints: Vec<[u8; 32]>,
    /// `tls-version-min` (default 1.2).
    pub tls_version_min: TlsVersion,
    /// `reneg-sec` max (default 3600; 0 = off).
    pub reneg_sec: u32,
    /// `reneg-sec` min, if given.
    pub reneg_sec_min: Option<u32>,
    /// `reneg-bytes` (off by default).
    pub reneg_bytes: Option<u64>,
    /// `reneg-pkts` (off by default).
    pub reneg_pkts: Option<u64>,
    /// `tran-window` (default 3600).
    pub tran_window: u32,
    /// `hand-window` (default 60).
    pub hand_window: u32,
    /// `tls-timeout` (default 2).
    pub tls_timeout: u32,
    /// `keepalive`.
    pub keepalive: Option<Keepalive>,
    /// `ping`.
    pub ping: Option<u32>,
    /// `ping-restart`.
    pub ping_restart: Option<u32>,
    /// `explicit-exit-notify` (n, default 1 when given without value).
    pub explicit_exit_notify: Option<u32>,
    /// Explicit `push` lines, in order.
    pub push: Vec<String>,
    /// `client-config-dir`.
    pub client_config_dir: Option<PathBuf>,
    /// `ccd-exclusive`.
    pub ccd_exclusive: bool,
    /// `max-clients` (default 1024).
    pub max_clients: u32,
    /// `duplicate-cn`.
    pub duplicate_cn: bool,
    /// `client-to-client`.
    pub client_to_client: bool,
    /// `route` lines.
    pub routes: Vec<Route>,
    /// `route-ipv6` lines.
    pub routes_ipv6: Vec<RouteIpv6>,
    /// `tun-mtu` (default 1500).
    pub tun_mtu: u16,
    /// Second `tun-mtu` argument (the MTU announced in the OCC string).
    pub occ_mtu: Option<u16>,
    /// `mssfix` value, if given (accepted; the data path clamps MSS to the tunnel MTU).
    pub mssfix: Option<u16>,
    /// `auth-user-pass` credentials file (client).
    pub auth_user_pass: Option<Source>,
    /// `user`.
    pub user: Option<String>,
    /// `group`.
    pub group: Option<String>,
    /// `persist-key` (no effect).
    pub persist_key: bool,
    /// `persist-tun` (no effect).
    pub persist_tun: bool,
    /// `verb` (default 1).
    pub verb: u8,
    /// `status`.
    pub status: Option<StatusFile>,
    /// `status-version` (2).
    pub status_version: u8,
    /// `log` / `log-append`.
    pub log: Option<LogFile>,
    /// `replay-window` size (default 64).
    pub replay_window: u32,
    /// `replay-window` time (default 15 s).
    pub replay_time: u32,
    /// `max-packet-size` for control packets (default 1250, clamped to 154..2048).
    pub max_packet_size: u16,
    /// `script-security` (accepted; no scripts are run).
    pub script_security: u8,
    /// `redirect-gateway` flags (client, kept as text).
    pub redirect_gateway: Option<Vec<String>>,
    /// `dhcp-option` lines (client, kept as text).
    pub dhcp_options: Vec<String>,
    /// Non-fatal notes for the log.
    pub warnings: Vec<ConfigWarning>,
}

impl Options {
    /// The default data-ciphers list of OpenVPN 2.6.
    pub fn default_data_ciphers() -> Vec<DataCipher> {
        DataCipher::ALL.to_vec()
    }

    /// The control-channel wrapping (tls-auth with its resolved direction, or tls-crypt).
    pub fn tls_wrap(&self) -> TlsWrap {
        if let Some(k) = &self.tls_crypt {
            TlsWrap::Crypt { key: k.clone() }
        } else if let Some(a) = &self.tls_auth {
            TlsWrap::Auth {
                key: a.clone(),
                digest: self.auth,
            }
        } else {
            TlsWrap::None
        }
    }

    /// The timers this side runs itself. A server with `keepalive N M` uses ping N and
    /// ping-restart 2M (and pushes N and M); a client uses N and M.
    pub fn ping_timers(&self) -> PingTimers {
        match (self.keepalive, self.role) {
            (Some(k), Role::Server) => PingTimers {
                ping: Some(k.interval),
                ping_restart: Some(k.timeout.saturating_mul(2)),
            },
            (Some(k), Role::Client) => PingTimers {
                ping: Some(k.interval),
                ping_restart: Some(k.timeout),
            },
            (None, _) => PingTimers {
                ping: self.ping,
                ping_restart: self.ping_restart,
            },
        }
    }

    /// The server's tunnel IPv4 address (network + 1), if `server` is set.
    pub fn server_ipv4(&self) -> Option<Ipv4Addr> {
        self.server.map(|s| s.server_addr())
    }

    /// The server's tunnel IPv6 address (network + 1), if `server-ipv6` is set.
    pub fn server_ipv6_addr(&self) -> Option<Ipv6Addr> {
        self.server_ipv6
            .map(|n| Ipv6Addr::from(u128::from(n.network()).wrapping_add(1)))
    }

    /// The push list common to all clients, in stock 2.6 order: the explicit `push` lines,
    /// then what the `server-ipv6`, `server` and `keepalive` helpers add
    /// (`tun-ipv6`, `route-gateway`, `topology subnet`, `ping`, `ping-restart`).
    pub fn global_push_list(&self) -> Vec<String> {
        let mut v = self.push.clone();
        if self.role != Role::Server {
            return v;
        }
        if self.server_ipv6.is_some() {
            v.push("tun-ipv6".to_string());
        }
        if let Some(s) = self.server {
            v.push(format!("route-gateway {}", s.server_addr()));
            v.push("topology subnet".to_string());
        }
        if let Some(k) = self.keepalive {
            v.push(format!("ping {}", k.interval));
            v.push(format!("ping-restart {}", k.timeout));
        }
        v
    }

    /// Builds options from directives (already split and include-expanded). `top` names
    /// the config for errors that concern it as a whole.
    pub fn from_directives(dirs: &[Directive], top: &Arc<str>) -> Result<Options, ConfigError> {
        let mut b = Builder::new(top.clone());
        for d in dirs {
            b.apply(d)?;
        }
        b.finish()
    }
}

/// Collected state while reading directives.
struct Builder {
    top: Arc<str>,
    /// Directory set by `cd`: later relative paths are taken from there.
    base: Option<PathBuf>,
    seen: HashMap<&'static str, Location>,
    mode_server: bool,
    tls_server: bool,
    tls_client: bool,
    pull: bool,
    dev: Option<String>,
    proto: Proto,
    port: Option<u16>,
    lport: Option<u16>,
    rport: Option<u16>,
    local: Option<String>,
    remotes: Vec<(String, Option<u16>, Option<Proto>)>,
    remote_random: bool,
    nobind: bool,
    server: Option<ServerNet>,
    server_ipv6: Option<Ipv6Net>,
    topology_subnet: bool,
    ifconfig_pool: Option<IfconfigPool>,
    ca: Option<Source>,
    cert: Option<Source>,
    key: Option<Source>,
    extra_certs: Option<Source>,
    dh: Option<DhParam>,
    tls_auth: Option<(Source, Option<KeyDirection>)>,
    key_direction: Option<KeyDirection>,
    tls_crypt: Option<Source>,
    auth: Digest,
    data_ciphers: Option<Vec<DataCipher>>,
    data_ciphers_fallback: Option<DataCipher>,
    cipher: Option<DataCipher>,
    remote_cert_tls: Option<CertUsage>,
    verify_x509_name: Option<X509NameCheck>,
    crl_verify: Option<Source>,
    firewall: Option<Source>,
    peer_fingerprints: Vec<[u8; 32]>,
    tls_version_min: TlsVersion,
    reneg_sec: u32,
    reneg_sec_min: Option<u32>,
    reneg_bytes: Option<u64>,
    reneg_pkts: Option<u64>,
    tran_window: u32,
    hand_window: u32,
    tls_timeout: u32,
    keepalive: Option<Keepalive>,
    ping: Option<u32>,
    ping_restart: Option<u32>,
    explicit_exit_notify: Option<u32>,
    push: Vec<String>,
    client_config_dir: Option<PathBuf>,
    ccd_exclusive: bool,
    max_clients: u32,
    duplicate_cn: bool,
    client_to_client: bool,
    routes: Vec<Route>,
    routes_ipv6: Vec<RouteIpv6>,
    tun_mtu: u16,
    occ_mtu: Option<u16>,
    mssfix: Option<u16>,
    auth_user_pass: Option<Source>,
    user: Option<String>,
    group: Option<String>,
    persist_key: bool,
    persist_tun: bool,
    verb: u8,
    status: Option<StatusFile>,
    status_version: u8,
    log: Option<LogFile>,
    replay_window: u32,
    replay_time: u32,
    max_packet_size: u16,
    script_security: u8,
    redirect_gateway: Option<Vec<String>>,
    dhcp_options: Vec<String>,
    warnings: Vec<ConfigWarning>,
}

/// Argument access with errors located at the argument.
pub(crate) struct Args<'a> {
    pub(crate) d: &'a Directive,
}

impl<'a> Args<'a> {
    pub(crate) fn n(&self) -> usize {
        self.d.args.len()
    }

    pub(crate) fn s(&self, i: usize) -> &'a str {
        self.d.arg(i).unwrap_or("")
    }

    /// Checks the argument count (and refuses inline blocks unless `inline_ok`).
    pub(crate) fn need(
        &self,
        min: usize,
        max: usize,
        usage: &'static str,
    ) -> Result<(), ConfigError> {
        if self.d.inline.is_some() {
            return Err(ConfigError::new(
                self.d.loc.clone(),
                ConfigErrorKind::InlineNotAllowed {
                    option: self.d.name.clone(),
                },
            ));
        }
        let n = self.n();
        if n < min || n > max {
            let loc = if n > max {
                self.d.arg_loc(max)
            } else {
                self.d.loc.clone()
            };
            return Err(ConfigError::new(
                loc,
                ConfigErrorKind::WrongArgs {
                    option: self.d.name.clone(),
                    usage,
                },
            ));
        }
        Ok(())
    }

    pub(crate) fn bad(&self, i: usize, why: impl Into<String>) -> ConfigError {
        ConfigError::new(
            self.d.arg_loc(i),
            ConfigErrorKind::BadValue {
                option: self.d.name.clone(),
                value: self.s(i).to_string(),
                why: why.into(),
            },
        )
    }

    pub(crate) fn unsupported(
        &self,
        why: impl Into<String>,
        instead: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(
            self.d.loc.clone(),
            ConfigErrorKind::Unsupported {
                option: self.d.name.clone(),
                why: why.into(),
                instead: instead.into(),
            },
        )
    }

    /// Like `unsupported`, naming the option with its argument (`dev tap0`).
    pub(crate) fn unsupported_value(
        &self,
        i: usize,
        why: impl Into<String>,
        instead: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(
            self.d.arg_loc(i),
            ConfigErrorKind::Unsupported {
                option: format!("{} {}", self.d.name, self.s(i)),
                why: why.into(),
                instead: instead.into(),
            },
        )
    }

    pub(crate) fn num(&self, i: usize, min: u64, max: u64) -> Result<u64, ConfigError> {
        let s = self.s(i);
        let v: u64 = s
            .parse()
            .map_err(|_| self.bad(i, "not a non-negative whole number"))?;
        if v < min || v > max {
            return Err(self.bad(i, format!("must be between {min} and {max}")));
        }
        Ok(v)
    }

    pub(crate) fn u32(&self, i: usize, min: u32, max: u32) -> Result<u32, ConfigError> {
        self.num(i, u64::from(min), u64::from(max))
            .map(|v| v as u32)
    }

    pub(crate) fn port(&self, i: usize) -> Result<u16, ConfigError> {
        self.num(i, 1, 65535).map(|v| v as u16)
    }

    pub(crate) fn ipv4(&self, i: usize) -> Result<Ipv4Addr, ConfigError> {
        Ipv4Addr::from_str(self.s(i))
            .map_err(|_| self.bad(i, "not an IPv4 address (names are not resolved here)"))
    }

    pub(crate) fn netmask(&self, i: usize) -> Result<(Ipv4Addr, u8), ConfigError> {
        let m = self.ipv4(i)?;
        let v = u32::from(m);
        let bits = v.leading_ones();
        if v.checked_shl(bits).unwrap_or(0) != 0 {
            return Err(self.bad(i, "not a contiguous netmask"));
        }
        Ok((m, bits as u8))
    }

    pub(crate) fn ipv6net(
        &self,
        i: usize,
        default_bits: Option<u8>,
    ) -> Result<Ipv6Net, ConfigError> {
        Ipv6Net::parse(self.s(i), default_bits).map_err(|e| self.bad(i, e))
    }

    /// A file argument or the inline block.
    pub(crate) fn source(&self, usage: &'static str) -> Result<Source, ConfigError> {
        if let Some(b) = &self.d.inline {
            return Ok(Source::Inline(b.clone()));
        }
        if self.n() < 1 {
            return Err(ConfigError::new(
                self.d.loc.clone(),
                ConfigErrorKind::WrongArgs {
                    option: self.d.name.clone(),
                    usage,
                },
            ));
        }
        if self.s(0) == "[[inline]]" {
            return Err(self.bad(0, "write the content as an inline <tag> block"));
        }
        Ok(Source::File(PathBuf::from(self.s(0))))
    }
}

/// Parses a SHA-256 fingerprint `AB:CD:...` (32 bytes, colon separated).
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    let parts: Vec<&str> = s.trim().split(':').collect();
    if parts.len() != 32 {
        return Err(format!(
            "a SHA-256 fingerprint has 32 colon-separated hex bytes, this has {}",
            parts.len()
        ));
    }
    for (o, p) in out.iter_mut().zip(&parts) {
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("'{p}' is not a two-digit hex byte"));
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| format!("'{p}' is not a hex byte"))?;
    }
    Ok(out)
}

/// Options refused with a fixed explanation: (name, why, instead).
const REFUSED: &[(&str, &str, &str)] = &[
    (
        "comp-lzo",
        "compression is not allowed with data channel offload (DCO refuses it; it also enables VORACLE-style attacks)",
        "remove the line on server and clients",
    ),
    (
        "compress",
        "compression is not allowed with data channel offload (DCO refuses it; it also enables VORACLE-style attacks)",
        "remove the line on server and clients",
    ),
    (
        "comp-noadapt",
        "compression is not allowed with data channel offload",
        "remove the line",
    ),
    (
        "secret",
        "static-key mode has no TLS handshake, and DCO needs TLS mode",
        "use ca/cert/key, or self-signed certificates with peer-fingerprint",
    ),
    (
        "fragment",
        "DCO does not fragment packets",
        "use mssfix and tun-mtu",
    ),
    (
        "server-bridge",
        "layer-2 (TAP) bridging is not supported by DCO",
        "use server with dev tun",
    ),
    (
        "tap-sleep",
        "layer-2 (TAP) devices are not supported by DCO",
        "use dev tun",
    ),
    (
        "http-proxy",
        "DCO cannot run through a proxy",
        "connect directly over UDP",
    ),
    (
        "http-proxy-option",
        "DCO cannot run through a proxy",
        "connect directly over UDP",
    ),
    (
        "socks-proxy",
        "DCO cannot run through a proxy",
        "connect directly over UDP",
    ),
    (
        "tls-crypt-v2",
        "tls-crypt-v2 is not implemented yet",
        "use tls-crypt with one shared key",
    ),
    (
        "tls-crypt-v2-verify",
        "tls-crypt-v2 is not implemented yet",
        "use tls-crypt with one shared key",
    ),
    (
        "connection",
        "<connection> blocks are not supported",
        "use several remote lines",
    ),
    (
        "management",
        "there is no management interface",
        "use ovpnctl (show, peer, stats) on the dco IPC socket",
    ),
    (
        "management-client-auth",
        "there is no management interface",
        "use client certificates",
    ),
    (
        "management-query-passwords",
        "there is no management interface",
        "use auth-user-pass with a file",
    ),
    (
        "auth-user-pass-verify",
        "username/password verification scripts are not supported",
        "authenticate clients by certificate (ccd-exclusive gives an allow-list)",
    ),
    (
        "plugin",
        "plugins are not supported",
        "authenticate clients by certificate and client-config-dir",
    ),
    (
        "up",
        "scripts are not run",
        "set routes with route/route-ipv6 and push",
    ),
    (
        "down",
        "scripts are not run",
        "set routes with route/route-ipv6 and push",
    ),
    (
        "route-up",
        "scripts are not run",
        "set routes with route/route-ipv6",
    ),
    ("route-pre-down", "scripts are not run", "remove the line"),
    ("ipchange", "scripts are not run", "remove the line"),
    (
        "client-connect",
        "scripts are not run",
        "use client-config-dir files",
    ),
    (
        "client-disconnect",
        "scripts are not run",
        "remove the line",
    ),
    (
        "learn-address",
        "scripts are not run",
        "use iroute in client-config-dir files",
    ),
    (
        "tls-verify",
        "scripts are not run",
        "use verify-x509-name, remote-cert-tls, crl-verify or peer-fingerprint",
    ),
    (
        "auth-user-pass-optional",
        "username/password authentication is not supported on the server",
        "authenticate clients by certificate",
    ),
    (
        "username-as-common-name",
        "username/password authentication is not supported on the server",
        "authenticate clients by certificate",
    ),
    (
        "auth-gen-token",
        "auth tokens are not supported",
        "authenticate clients by certificate",
    ),
    (
        "pkcs12",
        "PKCS#12 files are not read",
        "convert them: openssl pkcs12 -in f.p12 -nokeys -out cert.pem and openssl pkcs12 -in f.p12 -nocerts -nodes -out key.pem",
    ),
    (
        "pkcs11-providers",
        "hardware tokens are not supported",
        "use PEM cert and key files",
    ),
    (
        "pkcs11-id",
        "hardware tokens are not supported",
        "use PEM cert and key files",
    ),
    (
        "cryptoapicert",
        "the Windows certificate store is not supported",
        "use PEM cert and key files",
    ),
    (
        "askpass",
        "encrypted private keys are not supported",
        "decrypt the key: openssl pkey -in key.pem -out key-plain.pem (and protect the file)",
    ),
    (
        "tls-cipher",
        "the TLS suites are fixed (TLS 1.3 AES-GCM/ChaCha20; TLS 1.2 ECDHE with AES-GCM/ChaCha20)",
        "remove the line",
    ),
    (
        "tls-ciphersuites",
        "the TLS suites are fixed (TLS 1.3 AES-GCM/ChaCha20; TLS 1.2 ECDHE with AES-GCM/ChaCha20)",
        "remove the line",
    ),
    (
        "tls-groups",
        "the key-exchange groups are fixed (X25519, P-256, P-384)",
        "remove the line",
    ),
    (
        "ecdh-curve",
        "the key-exchange groups are fixed (X25519, P-256, P-384)",
        "remove the line",
    ),
    (
        "tls-cert-profile",
        "certificate profiles are fixed (RSA >= 2048, ECDSA P-256/P-384, Ed25519)",
        "remove the line",
    ),
    (
        "tls-version-max",
        "TLS 1.3 is always allowed",
        "remove the line; use tls-version-min to raise the minimum",
    ),
    (
        "verify-client-cert",
        "client certificates are always required",
        "give every client a certificate, or use peer-fingerprint",
    ),
    (
        "client-cert-not-required",
        "client certificates are always required",
        "give every client a certificate, or use peer-fingerprint",
    ),
    (
        "ns-cert-type",
        "the deprecated nsCertType check is not supported",
        "use remote-cert-tls server|client",
    ),
    (
        "remote-cert-ku",
        "custom key-usage lists are not supported",
        "use remote-cert-tls server|client",
    ),
    (
        "remote-cert-eku",
        "custom extended-key-usage checks are not supported",
        "use remote-cert-tls server|client",
    ),
    (
        "verify-hash",
        "verify-hash is deprecated",
        "use peer-fingerprint (or the issuing CA as ca)",
    ),
    (
        "ifconfig",
        "manual point-to-point addressing is not supported",
        "use server (server side); clients take the pushed ifconfig",
    ),
    (
        "ifconfig-ipv6",
        "manual addressing is not supported",
        "use server-ipv6",
    ),
    (
        "ifconfig-ipv6-pool",
        "a separate IPv6 pool is not supported",
        "use server-ipv6",
    ),
    (
        "ncp-disable",
        "ncp-disable was removed in OpenVPN 2.6",
        "use data-ciphers",
    ),
    (
        "disable-dco",
        "this implementation is the data channel offload",
        "remove the line",
    ),
    (
        "opt-verify",
        "OCC option strings are only compared for warnings",
        "remove the line",
    ),
    (
        "secret-key",
        "static-key mode is not supported",
        "use TLS mode",
    ),
    ("tls-exit", "not supported", "remove the line"),
    (
        "inetd",
        "inetd mode is not supported",
        "run dco as a service",
    ),
    (
        "daemon",
        "daemonizing is left to the service manager",
        "run under systemd (Type=simple)",
    ),
    (
        "chroot",
        "chroot is not supported; the control process already runs unprivileged",
        "remove the line",
    ),
    ("tcp-nodelay", "TCP is not supported yet", "remove the line"),
];

/// Options accepted without effect.
const NO_OPS: &[&str] = &[
    "resolv-retry",
    "mute",
    "mute-replay-warnings",
    "auth-nocache",
    "float",
    "fast-io",
    "tun-ipv6",
    "ifconfig-pool-persist",
];

impl Builder {
    fn new(top: Arc<str>) -> Self {
        Self {
            top,
            base: None,
            seen: HashMap::new(),
            mode_server: false,
            tls_server: false,
            tls_client: false,
            pull: false,
            dev: None,
            proto: Proto::Udp,
            port: None,
            lport: None,
            rport: None,
            local: None,
            remotes: Vec::new(),
            remote_random: false,
            nobind: false,
            server: None,
            server_ipv6: None,
            topology_subnet: true,
            ifconfig_pool: None,
            ca: None,
            cert: None,
            key: None,
            extra_certs: None,
            dh: None,
            tls_auth: None,
            key_direction: None,
            tls_crypt: None,
            auth: Digest::Sha1,
            data_ciphers: None,
            data_ciphers_fallback: None,
            cipher: None,
            remote_cert_tls: None,
            verify_x509_name: None,
            crl_verify: None,
            firewall: None,
            peer_fingerprints: Vec::new(),
            tls_version_min: TlsVersion::V1_2,
            reneg_sec: 3600,
            reneg_sec_min: None,
            reneg_bytes: None,
            reneg_pkts: None,
            tran_window: 3600,
            hand_window: 60,
            tls_timeout: 2,
            keepalive: None,
            ping: None,
            ping_restart: None,
            explicit_exit_notify: None,
            push: Vec::new(),
            client_config_dir: None,
            ccd_exclusive: false,
            max_clients: 1024,
            duplicate_cn: false,
            client_to_client: false,
            routes: Vec::new(),
            routes_ipv6: Vec::new(),
            tun_mtu: 1500,
            occ_mtu: None,
            mssfix: None,
            auth_user_pass: None,
            user: None,
            group: None,
            persist_key: false,
            persist_tun: false,
            verb: 1,
            status: None,
            status_version: 2,
            log: None,
            replay_window: 64,
            replay_time: 15,
            max_packet_size: 1250,
            script_security: 1,
            redirect_gateway: None,
            dhcp_options: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn warn(&mut self, loc: Location, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            loc,
            message: message.into(),
        });
    }

    fn mark(&mut self, name: &'static str, loc: &Location) {
        self.seen.insert(name, loc.clone());
    }

    fn loc_of(&self, name: &str) -> Location {
        self.seen
            .get(name)
            .cloned()
            .unwrap_or_else(|| Location::whole(&self.top))
    }

    #[allow(clippy::too_many_lines)]
    fn apply(&mut self, d: &Directive) -> Result<(), ConfigError> {
        let a = Args { d };
        let name = d.name.as_str();
        if let Some((_, why, instead)) = REFUSED.iter().find(|(n, _, _)| *n == name) {
            return Err(a.unsupported(*why, *instead));
        }
        if name.starts_with("pkcs11-") {
            return Err(a.unsupported(
                "hardware tokens are not supported",
                "use PEM cert and key files",
            ));
        }
        if name.starts_with("management-") {
            return Err(a.unsupported(
                "there is no management interface",
                "use ovpnctl (show, peer, stats) on the dco IPC socket",
            ));
        }
        if NO_OPS.contains(&name) {
            a.need(0, 16, "takes any arguments")?;
            if name == "tun-ipv6" {
                self.warn(
                    d.loc.clone(),
                    "tun-ipv6 is ignored (IPv6 needs no special TUN handling)",
                );
            }
            return Ok(());
        }
        match name {
            "cd" => {
                a.need(1, 1, "cd directory")?;
                self.base = Some(self.path(a.s(0)));
            }
            "client" => {
                a.need(0, 0, "client")?;
                self.pull = true;
                self.tls_client = true;
                self.mark("client", &d.loc);
            }
            "pull" => {
                a.need(0, 0, "pull")?;
                self.pull = true;
                self.mark("client", &d.loc);
            }
            "tls-client" => {
                a.need(0, 0, "tls-client")?;
                self.tls_client = true;
                self.mark("client", &d.loc);
            }
            "tls-server" => {
                a.need(0, 0, "tls-server")?;
                self.tls_server = true;
                self.mark("server-role", &d.loc);
            }
            "mode" => {
                a.need(1, 1, "mode server")?;
                match a.s(0) {
                    "server" => {
                        self.mode_server = true;
                        self.mark("server-role", &d.loc);
                    }
                    "p2p" => {
                        return Err(a.unsupported_value(
                            0,
                            "point-to-point mode is not supported",
                            "use server on one side and client on the other",
                        ));
                    }
                    _ => return Err(a.bad(0, "mode is server or p2p")),
                }
            }
            "dev" => {
                a.need(1, 1, "dev tun")?;
                let v = a.s(0);
                if v.starts_with("tap") {
                    return Err(a.unsupported_value(
                        0,
                        "layer-2 (TAP) devices are not supported by DCO",
                        "use dev tun",
                    ));
                }
                if v == "null" {
                    return Err(a.unsupported_value(
                        0,
                        "the null device is not supported",
                        "use dev tun",
                    ));
                }
                if v.is_empty()
                    || v.len() > 15
                    || v.contains('/')
                    || v.chars().any(char::is_whitespace)
                {
                    return Err(a.bad(
                        0,
                        "an interface name is 1 to 15 characters without '/' or spaces",
                    ));
                }
                self.dev = Some(v.to_string());
            }
            "dev-type" => {
                a.need(1, 1, "dev-type tun")?;
                match a.s(0) {
                    "tun" => {}
                    "tap" => {
                        return Err(a.unsupported_value(
                            0,
                            "layer-2 (TAP) devices are not supported by DCO",
                            "use dev-type tun",
                        ));
                    }
                    _ => return Err(a.bad(0, "only tun is supported")),
                }
            }
            "proto" => {
                a.need(1, 1, "proto udp|udp4|udp6")?;
                self.proto = Proto::parse(a.s(0))
                    .map_err(|(why, instead)| a.unsupported_value(0, why, instead))?;
            }
            "port" => {
                a.need(1, 1, "port n")?;
                self.port = Some(a.port(0)?);
            }
            "lport" => {
                a.need(1, 1, "lport n")?;
                self.lport = Some(a.port(0)?);
            }
            "rport" => {
                a.need(1, 1, "rport n")?;
                self.rport = Some(a.port(0)?);
            }
            "local" => {
                a.need(1, 1, "local host")?;
                self.local = Some(a.s(0).to_string());
            }
            "remote" => {
                a.need(1, 3, "remote host [port] [proto]")?;
                let host = a.s(0).to_string();
                let port = if a.n() >= 2 { Some(a.port(1)?) } else { None };
                let proto = if a.n() >= 3 {
                    Some(
                        Proto::parse(a.s(2))
                            .map_err(|(why, instead)| a.unsupported_value(2, why, instead))?,
                    )
                } else {
                    None
                };
                self.remotes.push((host, port, proto));
                self.mark("remote", &d.loc);
            }
            "remote-random" => {
                a.need(0, 0, "remote-random")?;
                self.remote_random = true;
            }
            "nobind" => {
                a.need(0, 0, "nobind")?;
                self.nobind = true;
            }
            "server" => {
                a.need(2, 3, "server network netmask [nopool]")?;
                let network = a.ipv4(0)?;
                let (netmask, bits) = a.netmask(1)?;
                if u32::from(network) & !u32::from(netmask) != 0 {
                    return Err(a.bad(0, format!("has host bits set for netmask {netmask}")));
                }
                if !(16..=29).contains(&bits) {
                    return Err(a.bad(
                        1,
                        "the subnet must be /16 to /29 (255.255.0.0 to 255.255.255.248)",
                    ));
                }
                let nopool = match a.d.arg(2) {
                    None => false,
                    Some("nopool") => true,
                    Some(_) => return Err(a.bad(2, "the only flag is nopool")),
                };
                self.server = Some(ServerNet {
                    network,
                    netmask,
                    prefix_len: bits,
                    nopool,
                });
                self.mark("server", &d.loc);
            }
            "server-ipv6" => {
                a.need(1, 1, "server-ipv6 network/bits")?;
                let n = a.ipv6net(0, None)?;
                if !(64..=124).contains(&n.prefix_len) {
                    return Err(a.bad(0, "the network must be /64 to /124"));
                }
                if n.addr != n.network() {
                    return Err(a.bad(0, "has host bits set"));
                }
                self.server_ipv6 = Some(n);
                self.mark("server", &d.loc);
            }
            "topology" => {
                a.need(1, 1, "topology subnet")?;
                match a.s(0) {
                    "subnet" => self.topology_subnet = true,
                    "net30" | "p2p" => {
                        return Err(a.unsupported_value(
                            0,
                            "DCO requires topology subnet",
                            "use topology subnet (clients take it from the push)",
                        ));
                    }
                    _ => return Err(a.bad(0, "topology is subnet, net30 or p2p")),
                }
            }
            "ifconfig-pool" => {
                a.need(2, 3, "ifconfig-pool start end [netmask]")?;
                let start = a.ipv4(0)?;
                let end = a.ipv4(1)?;
                if u32::from(start) > u32::from(end) {
                    return Err(a.bad(1, "the end is before the start"));
                }
                if u32::from(end) - u32::from(start) >= 65536 {
                    return Err(a.bad(1, "a pool holds at most 65536 addresses"));
                }
                let netmask = if a.n() == 3 {
                    Some(a.netmask(2)?.0)
                } else {
                    None
                };
                self.ifconfig_pool = Some(IfconfigPool {
                    start,
                    end,
                    netmask,
                });
                self.mark("ifconfig-pool", &d.loc);
            }
            "ca" => {
                self.ca = Some(self.file_arg(&a, "ca file")?);
                self.mark("ca", &d.loc);
            }
            "cert" => {
                self.cert = Some(self.file_arg(&a, "cert file")?);
                self.mark("cert", &d.loc);
            }
            "key" => {
                self.key = Some(self.file_arg(&a, "key file")?);
                self.mark("key", &d.loc);
            }
            "extra-certs" => {
                self.extra_certs = Some(self.file_arg(&a, "extra-certs file")?);
            }
            "dh" => {
                if d.inline.is_none() && a.n() == 1 && a.s(0) == "none" {
                    self.dh = Some(DhParam::None);
                } else {
                    let s = self.file_arg(&a, "dh none|file")?;
                    self.warn(
                        d.loc.clone(),
                        "dh parameters are not used: only ECDHE key exchange is offered (dh none says so)",
                    );
                    self.dh = Some(DhParam::File(s));
                }
            }
            "tls-auth" => {
                let (src, dir) = if d.inline.is_some() {
                    a.need_inline_only()?;
                    (a.source("tls-auth file [direction]")?, None)
                } else {
                    a.need(1, 2, "tls-auth file [0|1]")?;
                    let dir = if a.n() == 2 {
                        Some(
                            KeyDirection::parse(a.s(1))
                                .ok_or_else(|| a.bad(1, "key direction is 0 or 1"))?,
                        )
                    } else {
                        None
                    };
                    (a.source("tls-auth file [0|1]")?, dir)
                };
                self.tls_auth = Some((src, dir));
                self.mark("tls-auth", &d.loc);
            }
            "key-direction" => {
                a.need(1, 1, "key-direction 0|1")?;
                self.key_direction = Some(
                    KeyDirection::parse(a.s(0))
                        .ok_or_else(|| a.bad(0, "key direction is 0 or 1"))?,
                );
            }
            "tls-crypt" => {
                self.tls_crypt = Some(self.file_arg(&a, "tls-crypt file")?);
                self.mark("tls-crypt", &d.loc);
            }
            "auth" => {
                a.need(1, 1, "auth SHA1|SHA256|SHA512")?;
                self.auth = Digest::parse(a.s(0)).ok_or_else(|| {
                    a.unsupported_value(
                        0,
                        "only SHA1, SHA256 and SHA512 are implemented",
                        "use auth SHA256",
                    )
                })?;
            }
            "data-ciphers" | "ncp-ciphers" => {
                a.need(
                    1,
                    1,
                    "data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305",
                )?;
                let mut list = Vec::new();
                for tok in a.s(0).split(':').filter(|t| !t.is_empty()) {
                    let (optional, t) = match tok.strip_prefix('?') {
                        Some(t) => (true, t),
                        None => (false, tok),
                    };
                    match DataCipher::parse(t) {
                        Ok(c) => {
                            if !list.contains(&c) {
                                list.push(c);
                            }
                        }
                        Err(e) if optional => {
                            self.warn(
                                d.arg_loc(0),
                                format!("optional cipher {t} dropped: {}", cipher_err_text(&e)),
                            );
                        }
                        Err(CipherNameError::NotAead) => {
                            return Err(ConfigError::new(
                                d.arg_loc(0),
                                ConfigErrorKind::Unsupported {
                                    option: format!("{name} {t}"),
                                    why: "DCO only runs AEAD ciphers".into(),
                                    instead: "use AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305".into(),
                                },
                            ));
                        }
                        Err(e) => return Err(a.bad(0, format!("{t}: {}", cipher_err_text(&e)))),
                    }
                }
                if list.is_empty() {
                    return Err(a.bad(0, "no usable cipher in the list"));
                }
                if name == "ncp-ciphers" {
                    self.warn(d.loc.clone(), "ncp-ciphers is the old name of data-ciphers");
                }
                self.data_ciphers = Some(list);
            }
            "data-ciphers-fallback" | "cipher" => {
                a.need(
                    1,
                    1,
                    if name == "cipher" {
                        "cipher AES-256-GCM"
                    } else {
                        "data-ciphers-fallback AES-256-GCM"
                    },
                )?;
                let c = DataCipher::parse(a.s(0)).map_err(|e| match e {
                    CipherNameError::NotAead => a.unsupported_value(
                        0,
                        "DCO only runs AEAD ciphers",
                        if name == "cipher" {
                            "remove the line and use data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305"
                        } else {
                            "remove the line; all OpenVPN 2.4+ peers negotiate an AEAD cipher"
                        },
                    ),
                    e => a.bad(0, cipher_err_text(&e)),
                })?;
                if name == "cipher" {
                    self.cipher = Some(c);
                    self.mark("cipher", &d.loc);
                } else {
                    self.data_ciphers_fallback = Some(c);
                }
            }
            "remote-cert-tls" => {
                a.need(1, 1, "remote-cert-tls server|client")?;
                self.remote_cert_tls = Some(match a.s(0) {
                    "server" => CertUsage::Server,
                    "client" => CertUsage::Client,
                    _ => return Err(a.bad(0, "must be server or client")),
                });
            }
            "verify-x509-name" => {
                a.need(1, 2, "verify-x509-name name [subject|name|name-prefix]")?;
                if a.s(0).is_empty() {
                    return Err(a.bad(0, "the name is empty"));
                }
                let kind = match a.d.arg(1) {
                    None | Some("subject") => X509NameKind::Subject,
                    Some("name") => X509NameKind::Name,
                    Some("name-prefix") => X509NameKind::NamePrefix,
                    Some(_) => return Err(a.bad(1, "the type is subject, name or name-prefix")),
                };
                self.verify_x509_name = Some(X509NameCheck {
                    name: a.s(0).to_string(),
                    kind,
                });
            }
            "crl-verify" => {
                if d.inline.is_none() && a.n() == 2 && a.s(1) == "dir" {
                    return Err(a.unsupported_value(
                        1,
                        "CRL directories are not supported",
                        "give one PEM file holding the CRL(s)",
                    ));
                }
                self.crl_verify = Some(self.file_arg(&a, "crl-verify file")?);
            }
            "firewall" => {
                self.firewall = Some(self.file_arg(&a, "firewall rules file")?);
            }
            "peer-fingerprint" => {
                if let Some(b) = &d.inline {
                    for (i, line) in b.as_str().lines().enumerate() {
                        let t = line.trim();
                        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
                            continue;
                        }
                        let fp = parse_fingerprint(t).map_err(|why| {
                            ConfigError::new(
                                Location {
                                    file: d.loc.file.clone(),
                                    line: d
                                        .loc
                                        .line
                                        .saturating_add(u32::try_from(i + 1).unwrap_or(0)),
                                    column: 0,
                                },
                                ConfigErrorKind::BadValue {
                                    option: name.into(),
                                    value: t.into(),
                                    why,
                                },
                            )
                        })?;
                        self.peer_fingerprints.push(fp);
                    }
                } else {
                    a.need(
                        1,
                        1,
                        "peer-fingerprint AB:CD:...(32 bytes) or an inline block",
                    )?;
                    let fp = parse_fingerprint(a.s(0)).map_err(|why| a.bad(0, why))?;
                    self.peer_fingerprints.push(fp);
                }
                self.mark("peer-fingerprint", &d.loc);
            }
            "tls-version-min" => {
                a.need(1, 2, "tls-version-min 1.2|1.3 [or-highest]")?;
                if a.n() == 2 && a.s(1) != "or-highest" {
                    return Err(a.bad(1, "the only flag is or-highest"));
                }
                self.tls_version_min = match a.s(0) {
                    "1.0" | "1.1" => {
                        self.warn(
                            d.loc.clone(),
                            "TLS below 1.2 is never used; the minimum is 1.2",
                        );
                        TlsVersion::V1_2
                    }
                    "1.2" => TlsVersion::V1_2,
                    "1.3" => TlsVersion::V1_3,
                    _ if a.n() == 2 => TlsVersion::V1_3,
                    _ => return Err(a.bad(0, "the version is 1.2 or 1.3")),
                };
            }
            "reneg-sec" => {
                a.need(1, 2, "reneg-sec max [min]")?;
                self.reneg_sec = a.u32(0, 0, u32::MAX)?;
                self.reneg_sec_min = if a.n() == 2 {
                    Some(a.u32(1, 0, u32::MAX)?)
                } else {
                    None
                };
                self.mark("reneg-sec", &d.loc);
            }
            "reneg-bytes" => {
                a.need(1, 1, "reneg-bytes n")?;
                let v = a.num(0, 0, u64::MAX)?;
                self.reneg_bytes = (v > 0).then_some(v);
            }
            "reneg-pkts" => {
                a.need(1, 1, "reneg-pkts n")?;
                let v = a.num(0, 0, u64::MAX)?;
                self.reneg_pkts = (v > 0).then_some(v);
            }
            "tran-window" => {
                a.need(1, 1, "tran-window seconds")?;
                self.tran_window = a.u32(0, 1, u32::MAX)?;
            }
            "hand-window" => {
                a.need(1, 1, "hand-window seconds")?;
                self.hand_window = a.u32(0, 1, u32::MAX)?;
            }
            "tls-timeout" => {
                a.need(1, 1, "tls-timeout seconds")?;
                self.tls_timeout = a.u32(0, 1, 3600)?;
            }
            "keepalive" => {
                a.need(2, 2, "keepalive interval timeout")?;
                let interval = a.u32(0, 1, 86400)?;
                let timeout = a.u32(1, 1, 86400 * 7)?;
                if u64::from(interval) * 2 > u64::from(timeout) {
                    return Err(a.bad(
                        1,
                        format!(
                            "the timeout must be at least twice the interval ({interval}); keepalive 10 60 is the usual choice"
                        ),
                    ));
                }
                self.keepalive = Some(Keepalive { interval, timeout });
                self.mark("keepalive", &d.loc);
            }
            "ping" => {
                a.need(1, 1, "ping seconds")?;
                self.ping = Some(a.u32(0, 1, 86400)?);
                self.mark("ping", &d.loc);
            }
            "ping-restart" => {
                a.need(1, 1, "ping-restart seconds")?;
                self.ping_restart = Some(a.u32(0, 1, 86400 * 7)?);
                self.mark("ping", &d.loc);
            }
            "explicit-exit-notify" => {
                a.need(0, 1, "explicit-exit-notify [n]")?;
                self.explicit_exit_notify = Some(if a.n() == 1 { a.u32(0, 0, 3600)? } else { 1 });
            }
            "push" => {
                a.need(1, 1, "push \"option args\"")?;
                let v = a.s(0);
                if v.contains(',') {
                    return Err(a.bad(
                        0,
                        "a pushed option cannot contain a comma; use one push line per option",
                    ));
                }
                if v.trim().is_empty() {
                    return Err(a.bad(0, "empty push option"));
                }
                if v.len() > 900 {
                    return Err(a.bad(
                        0,
                        "a pushed option must fit in one PUSH_REPLY message (at most 900 bytes)",
                    ));
                }
                if v.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
                    return Err(a.bad(0, "pushed options are printable ASCII"));
                }
                self.push.push(v.to_string());
                self.mark("push", &d.loc);
            }
            "client-config-dir" => {
                a.need(1, 1, "client-config-dir directory")?;
                self.client_config_dir = Some(self.path(a.s(0)));
                self.mark("client-config-dir", &d.loc);
            }
            "ccd-exclusive" => {
                a.need(0, 0, "ccd-exclusive")?;
                self.ccd_exclusive = true;
                self.mark("ccd-exclusive", &d.loc);
            }
            "max-clients" => {
                a.need(1, 1, "max-clients n")?;
                self.max_clients = a.u32(0, 1, 0xFF_FFFE)?;
                self.mark("max-clients", &d.loc);
            }
            "duplicate-cn" => {
                a.need(0, 0, "duplicate-cn")?;
                self.duplicate_cn = true;
            }
            "client-to-client" => {
                a.need(0, 0, "client-to-client")?;
                self.client_to_client = true;
            }
            "route" => {
                a.need(1, 4, "route network [netmask] [gateway] [metric]")?;
                self.routes.push(parse_route(&a)?);
            }
            "route-ipv6" => {
                a.need(1, 3, "route-ipv6 network/bits [gateway] [metric]")?;
                self.routes_ipv6.push(parse_route_ipv6(&a)?);
            }
            "iroute" | "iroute-ipv6" | "ifconfig-push" | "ifconfig-ipv6-push" | "push-reset"
            | "disable" | "push-remove" => {
                return Err(ConfigError::new(
                    d.loc.clone(),
                    ConfigErrorKind::NotAllowedHere {
                        option: name.into(),
                        why: "it belongs in a client-config-dir file (one file per client common name)".into(),
                    },
                ));
            }
            "tun-mtu" => {
                a.need(1, 2, "tun-mtu n [occ-mtu]")?;
                self.tun_mtu = a.u32(0, 576, 65535)? as u16;
                self.occ_mtu = if a.n() == 2 {
                    Some(a.u32(1, 576, 65535)? as u16)
                } else {
                    None
                };
            }
            "mssfix" => {
                a.need(0, 2, "mssfix [n] [mtu|fixed]")?;
                self.mssfix = if a.n() >= 1 {
                    Some(a.u32(0, 0, 65535)? as u16)
                } else {
                    None
                };
                if a.n() == 2 && !matches!(a.s(1), "mtu" | "fixed") {
                    return Err(a.bad(1, "the flag is mtu or fixed"));
                }
            }
            "max-packet-size" | "tls-mtu" => {
                a.need(1, 1, "max-packet-size bytes")?;
                let v = a.u32(0, 1, 65535)?;
                let c = v.clamp(154, 2048);
                if c != v {
                    self.warn(
                        d.loc.clone(),
                        format!("{name} {v} is outside 154..2048, using {c}"),
                    );
                }
                self.max_packet_size = c as u16;
            }
            "auth-user-pass" => {
                if d.inline.is_none() && a.n() == 0 {
                    return Err(a.unsupported(
                        "there is no terminal prompt for credentials",
                        "give a file (or an inline <auth-user-pass> block) with the username on the first line and the password on the second",
                    ));
                }
                self.auth_user_pass = Some(self.file_arg(&a, "auth-user-pass file")?);
                self.mark("auth-user-pass", &d.loc);
            }
            "user" => {
                a.need(1, 1, "user name")?;
                self.user = Some(a.s(0).to_string());
            }
            "group" => {
                a.need(1, 1, "group name")?;
                self.group = Some(a.s(0).to_string());
            }
            "persist-key" => {
                a.need(0, 0, "persist-key")?;
                self.persist_key = true;
            }
            "persist-tun" => {
                a.need(0, 0, "persist-tun")?;
                self.persist_tun = true;
            }
            "verb" => {
                a.need(1, 1, "verb 0..11")?;
                self.verb = a.u32(0, 0, 11)? as u8;
            }
            "status" => {
                a.need(1, 2, "status file [seconds]")?;
                let interval = if a.n() == 2 { a.u32(1, 1, 86400)? } else { 60 };
                self.status = Some(StatusFile {
                    path: self.path(a.s(0)),
                    interval,
                });
            }
            "status-version" => {
                a.need(1, 1, "status-version 2")?;
                let v = a.u32(0, 1, 3)?;
                if v != 2 {
                    return Err(a.unsupported_value(
                        0,
                        "only the version 2 (CSV) status format is written",
                        "use status-version 2",
                    ));
                }
                self.status_version = 2;
            }
            "log" | "log-append" => {
                a.need(1, 1, "log file")?;
                self.log = Some(LogFile {
                    path: self.path(a.s(0)),
                    append: name == "log-append",
                });
            }
            "replay-window" => {
                a.need(1, 2, "replay-window n [seconds]")?;
                self.replay_window = a.u32(0, 0, 65536)?;
                if a.n() == 2 {
                    self.replay_time = a.u32(1, 0, 600)?;
                }
            }
            "script-security" => {
                a.need(1, 1, "script-security 0..3")?;
                self.script_security = a.u32(0, 0, 3)? as u8;
            }
            "allow-compression" => {
                a.need(1, 1, "allow-compression no")?;
                match a.s(0) {
                    "no" => {}
                    "yes" | "asym" => {
                        return Err(a.unsupported_value(
                            0,
                            "compression is not allowed with data channel offload",
                            "use allow-compression no (the default) or remove the line",
                        ));
                    }
                    _ => return Err(a.bad(0, "allow-compression is no, asym or yes")),
                }
            }
            "redirect-gateway" => {
                a.need(0, 8, "redirect-gateway [flags]")?;
                self.redirect_gateway = Some(d.args.iter().map(|w| w.text.clone()).collect());
                self.mark("redirect-gateway", &d.loc);
            }
            "dhcp-option" => {
                a.need(1, 2, "dhcp-option type [value]")?;
                self.dhcp_options.push(
                    d.args
                        .iter()
                        .map(|w| w.text.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                );
                self.mark("dhcp-option", &d.loc);
            }
            _ => {
                return Err(ConfigError::new(
                    d.loc.clone(),
                    ConfigErrorKind::UnknownOption { name: name.into() },
                ));
            }
        }
        Ok(())
    }

    /// A file argument or inline block; exactly one argument when not inline.
    fn file_arg(&self, a: &Args<'_>, usage: &'static str) -> Result<Source, ConfigError> {
        if a.d.inline.is_none() {
            a.need(1, 1, usage)?;
        }
        Ok(match a.source(usage)? {
            Source::File(p) => Source::File(self.path(&p.to_string_lossy())),
            inline => inline,
        })
    }

    /// A path as written, taken relative to the `cd` directory when there is one.
    fn path(&self, p: &str) -> PathBuf {
        resolve(self.base.as_deref(), p)
    }

    fn conflict(&self, a: &str, b: &str, why: &str) -> ConfigError {
        ConfigError::new(
            self.loc_of(a),
            ConfigErrorKind::Conflict {
                option: a.into(),
                other: b.into(),
                why: why.into(),
            },
        )
    }

    fn missing(&self, what: &str, why: &str) -> ConfigError {
        ConfigError::new(
            Location::whole(&self.top),
            ConfigErrorKind::Missing {
                what: what.into(),
                why: why.into(),
            },
        )
    }

    fn server_only(&self, opt: &'static str) -> ConfigError {
        ConfigError::new(
            self.loc_of(opt),
            ConfigErrorKind::NotAllowedHere {
                option: opt.into(),
                why: "it is a server option".into(),
            },
        )
    }

    fn client_only(&self, opt: &'static str) -> ConfigError {
        ConfigError::new(
            self.loc_of(opt),
            ConfigErrorKind::NotAllowedHere {
                option: opt.into(),
                why: "it is a client option".into(),
            },
        )
    }

    fn finish(mut self) -> Result<Options, ConfigError> {
        let server_side = self.mode_server || self.server.is_some() || self.server_ipv6.is_some();
        let client_side = self.pull || self.tls_client;
        if server_side && client_side {
            return Err(self.conflict(
                "client",
                "server",
                "a config is either a server or a client",
            ));
        }
        let role = if server_side {
            if self.server.is_none() && self.server_ipv6.is_none() {
                return Err(self.missing(
                    "server network netmask (or server-ipv6)",
                    "the server needs a tunnel subnet and a client address pool",
                ));
            }
            Role::Server
        } else if client_side {
            if !self.pull {
                return Err(ConfigError::new(
                    self.loc_of("client"),
                    ConfigErrorKind::Unsupported {
                        option: "tls-client".into(),
                        why: "point-to-point TLS mode (tls-client without pull) is not supported"
                            .into(),
                        instead: "use client".into(),
                    },
                ));
            }
            if !self.tls_client {
                return Err(self.missing("tls-client", "pull needs TLS mode; use client"));
            }
            Role::Client
        } else if self.tls_server {
            return Err(ConfigError::new(
                self.loc_of("server-role"),
                ConfigErrorKind::Unsupported {
                    option: "tls-server".into(),
                    why:
                        "point-to-point TLS mode (tls-server without mode server) is not supported"
                            .into(),
                    instead: "use server network netmask".into(),
                },
            ));
        } else {
            return Err(self.missing("server or client", "say which side this config runs"));
        };

        // TLS credentials.
        if self.ca.is_none() && self.peer_fingerprints.is_empty() {
            return Err(self.missing(
                "ca (or peer-fingerprint)",
                "the peer's certificate must be checked against a CA or a pinned fingerprint",
            ));
        }
        if self.cert.is_none() {
            return Err(self.missing("cert", "both sides present a certificate"));
        }
        if self.key.is_none() {
            return Err(self.missing("key", "the private key of cert is needed"));
        }
        if self.tls_auth.is_some() && self.tls_crypt.is_some() {
            return Err(self.conflict(
                "tls-crypt",
                "tls-auth",
                "choose one control-channel protection",
            ));
        }
        if self.keepalive.is_some() && (self.ping.is_some() || self.ping_restart.is_some()) {
            return Err(self.conflict(
                "keepalive",
                "ping/ping-restart",
                "keepalive already sets both; keep only keepalive",
            ));
        }
        if let Some(min) = self.reneg_sec_min
            && self.reneg_sec != 0
            && min > self.reneg_sec
        {
            return Err(ConfigError::new(
                self.loc_of("reneg-sec"),
                ConfigErrorKind::BadValue {
                    option: "reneg-sec".into(),
                    value: min.to_string(),
                    why: "the minimum is larger than the maximum".into(),
                },
            ));
        }

        let mut data_ciphers = self
            .data_ciphers
            .take()
            .unwrap_or_else(Options::default_data_ciphers);
        if let Some(c) = self.cipher
            && !data_ciphers.contains(&c)
        {
            let loc = self.loc_of("cipher");
            self.warn(loc, format!("cipher {c} is not in data-ciphers; appending it (better: list it in data-ciphers)"));
            data_ciphers.push(c);
        }

        match role {
            Role::Server => {
                if !self.remotes.is_empty() {
                    return Err(self.client_only("remote"));
                }
                if self.auth_user_pass.is_some() {
                    return Err(self.client_only("auth-user-pass"));
                }
                if self.redirect_gateway.is_some() {
                    return Err(ConfigError::new(
                        self.loc_of("redirect-gateway"),
                        ConfigErrorKind::NotAllowedHere {
                            option: "redirect-gateway".into(),
                            why:
                                "it is a client option; push it with push \"redirect-gateway def1\""
                                    .into(),
                        },
                    ));
                }
                if !self.dhcp_options.is_empty() {
                    return Err(ConfigError::new(
                        self.loc_of("dhcp-option"),
                        ConfigErrorKind::NotAllowedHere {
                            option: "dhcp-option".into(),
                            why: "it is a client option; push it with push \"dhcp-option DNS 10.8.0.1\"".into(),
                        },
                    ));
                }
                if self.ccd_exclusive && self.client_config_dir.is_none() {
                    return Err(self.missing(
                        "client-config-dir",
                        "ccd-exclusive needs a client-config-dir",
                    ));
                }
                if let (Some(p), Some(s)) = (self.ifconfig_pool, self.server) {
                    let inside = |a: Ipv4Addr| {
                        s.contains(a)
                            && a != s.network
                            && a != s.broadcast()
                            && a != s.server_addr()
                    };
                    if !inside(p.start) || !inside(p.end) {
                        return Err(ConfigError::new(
                            self.loc_of("ifconfig-pool"),
                            ConfigErrorKind::BadValue {
                                option: "ifconfig-pool".into(),
                                value: format!("{} {}", p.start, p.end),
                                why: format!(
                                    "the pool must lie inside {}/{} and leave out the network, broadcast and server ({}) addresses",
                                    s.network,
                                    s.prefix_len,
                                    s.server_addr()
                                ),
                            },
                        ));
                    }
                    if let Some(m) = p.netmask
                        && m != s.netmask
                    {
                        return Err(ConfigError::new(
                            self.loc_of("ifconfig-pool"),
                            ConfigErrorKind::BadValue {
                                option: "ifconfig-pool".into(),
                                value: m.to_string(),
                                why: format!("the netmask must be the server's ({})", s.netmask),
                            },
                        ));
                    }
                } else if self.ifconfig_pool.is_some() {
                    return Err(self.missing(
                        "server network netmask",
                        "ifconfig-pool needs the server subnet",
                    ));
                }
            }
            Role::Client => {
                if self.remotes.is_empty() {
                    return Err(self.missing("remote", "the client needs a server to connect to"));
                }
                for (opt, set) in [
                    ("push", !self.push.is_empty()),
                    ("client-config-dir", self.client_config_dir.is_some()),
                    ("ccd-exclusive", self.ccd_exclusive),
                    ("ifconfig-pool", self.ifconfig_pool.is_some()),
                ] {
                    if set {
                        return Err(self.server_only(opt));
                    }
                }
                if self.seen.contains_key("max-clients") {
                    return Err(self.server_only("max-clients"));
                }
            }
        }

        let dev = self.dev.clone().unwrap_or_else(|| "tun".to_string());
        let default_port = self.port.unwrap_or(1194);
        let local_port = self.lport.unwrap_or(default_port);
        let remote_port = self.rport.unwrap_or(default_port);
        let proto = self.proto;
        let remotes = self
            .remotes
            .iter()
            .map(|(h, p, pr)| Remote {
                host: h.clone(),
                port: p.unwrap_or(remote_port),
                proto: pr.unwrap_or(proto),
            })
            .collect();
        let tls_auth = self.tls_auth.take().map(|(key, dir)| TlsAuthKey {
            key,
            direction: dir.or(self.key_direction),
        });
        let _ = self.topology_subnet;

        Ok(Options {
            role,
            dev,
            proto,
            local_port,
            local: self.local,
            remotes,
            remote_random: self.remote_random,
            nobind: self.nobind,
            server: self.server,
            server_ipv6: self.server_ipv6,
            ifconfig_pool: self.ifconfig_pool,
            ca: self.ca,
            cert: self.cert,
            key: self.key,
            extra_certs: self.extra_certs,
            dh: self.dh,
            tls_auth,
            tls_crypt: self.tls_crypt,
            auth: self.auth,
            data_ciphers,
            data_ciphers_fallback: self.data_ciphers_fallback,
            cipher: self.cipher,
            remote_cert_tls: self.remote_cert_tls,
            verify_x509_name: self.verify_x509_name,
            crl_verify: self.crl_verify,
            firewall: self.firewall,
            peer_fingerprints: self.peer_fingerprints,
            tls_version_min: self.tls_version_min,
            reneg_sec: self.reneg_sec,
            reneg_sec_min: self.reneg_sec_min,
            reneg_bytes: self.reneg_bytes,
            reneg_pkts: self.reneg_pkts,
            tran_window: self.tran_window,
            hand_window: self.hand_window,
            tls_timeout: self.tls_timeout,
            keepalive: self.keepalive,
            ping: self.ping,
            ping_restart: self.ping_restart,
            explicit_exit_notify: self.explicit_exit_notify,
            push: self.push,
            client_config_dir: self.client_config_dir,
            ccd_exclusive: self.ccd_exclusive,
            max_clients: self.max_clients,
            duplicate_cn: self.duplicate_cn,
            client_to_client: self.client_to_client,
            routes: self.routes,
            routes_ipv6: self.routes_ipv6,
            tun_mtu: self.tun_mtu,
            occ_mtu: self.occ_mtu,
            mssfix: self.mssfix,
            auth_user_pass: self.auth_user_pass,
            user: self.user,
            group: self.group,
            persist_key: self.persist_key,
            persist_tun: self.persist_tun,
            verb: self.verb,
            status: self.status,
            status_version: self.status_version,
            log: self.log,
            replay_window: self.replay_window,
            replay_time: self.replay_time,
            max_packet_size: self.max_packet_size,
            script_security: self.script_security,
            redirect_gateway: self.redirect_gateway,
            dhcp_options: self.dhcp_options,
            warnings: self.warnings,
        })
    }
}

impl Args<'_> {
    /// For options whose inline form takes no extra arguments.
    fn need_inline_only(&self) -> Result<(), ConfigError> {
        if !self.d.args.is_empty() {
            return Err(self.bad(0, "an inline block takes no arguments"));
        }
        Ok(())
    }
}

/// `p` relative to `base` (unless absolute or there is no base).
pub fn resolve(base: Option<&std::path::Path>, p: &str) -> PathBuf {
    match base {
        Some(b) if !std::path::Path::new(p).is_absolute() => b.join(p),
        _ => PathBuf::from(p),
    }
}

fn cipher_err_text(e: &CipherNameError) -> &'static str {
    match e {
        CipherNameError::NotAead => "not an AEAD cipher (DCO only runs AEAD ciphers)",
        CipherNameError::NotImplemented => {
            "AES-192-GCM is not implemented by this data path; use AES-256-GCM"
        }
        CipherNameError::Unknown => {
            "unknown cipher; use AES-256-GCM, AES-128-GCM or CHACHA20-POLY1305"
        }
    }
}

/// `route network [netmask] [gateway] [metric]` (also used for pushed routes).
pub(crate) fn parse_route(a: &Args<'_>) -> Result<Route, ConfigError> {
    let network = a.ipv4(0)?;
    let netmask = if a.n() >= 2 && a.s(1) != "default" {
        a.netmask(1)?.0
    } else {
        Ipv4Addr::BROADCAST
    };
    if u32::from(network) & !u32::from(netmask) != 0 {
        return Err(a.bad(0, format!("has host bits set for netmask {netmask}")));
    }
    let gateway = if a.n() >= 3 && a.s(2) != "default" {
        let g = a.s(2);
        if !matches!(g, "vpn_gateway" | "net_gateway" | "remote_host")
            && Ipv4Addr::from_str(g).is_err()
        {
            return Err(a.bad(
                2,
                "the gateway is an IPv4 address, vpn_gateway, net_gateway or remote_host",
            ));
        }
        Some(g.to_string())
    } else {
        None
    };
    let metric = if a.n() >= 4 {
        Some(a.u32(3, 0, u32::MAX)?)
    } else {
        None
    };
    Ok(Route {
        network,
        netmask,
        gateway,
        metric,
    })
}

/// `route-ipv6 network/bits [gateway] [metric]`.
pub(crate) fn parse_route_ipv6(a: &Args<'_>) -> Result<RouteIpv6, ConfigError> {
    let network = a.ipv6net(0, Some(128))?;
    let gateway = if a.n() >= 2 {
        Some(Ipv6Addr::from_str(a.s(1)).map_err(|_| a.bad(1, "not an IPv6 address"))?)
    } else {
        None
    };
    let metric = if a.n() >= 3 {
        Some(a.u32(2, 0, u32::MAX)?)
    } else {
        None
    };
    Ok(RouteIpv6 {
        network,
        gateway,
        metric,
    })
}

#[cfg(test)]
mod tests;
