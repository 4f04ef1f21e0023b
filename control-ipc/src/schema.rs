//! The command schema: every request, reply body and notification as a plain Rust struct.
//!
//! Names and keys are if_ovpn's (FreeBSD `sys/net/if_ovpn.c`, driven by OpenVPN's
//! `dco_freebsd.c`), so anyone who knows the kernel driver recognises them; fields are
//! declared in the order OpenVPN adds them, so our NEW_PEER/NEW_KEY/SET_PEER bodies pack to
//! the same bytes as OpenVPN's (less the `fd` key, which a user-space daemon has no use for).
//! Commands marked *ours* extend the set in the same style. Value encodings are in
//! [`crate::types`]: `sockaddr` = `{af, address, port, scopeid?}`, `prefix` =
//! `{af, address, prefixlen}`, `in/out` = `{in, out}`, `[..]` = nvlist array, `?` = optional.
//!
//! ## Requests (`cmd` → `args`) and replies (`result`)
//!
//! | cmd | args | result |
//! |---|---|---|
//! | `NEW_PEER` | `local: sockaddr?, remote: sockaddr, vpn_ipv4: binary(4)?, vpn_ipv6: binary(16)?, peerid, common_name: string?, iroutes: [prefix]?` | — |
//! | `DEL_PEER` | `peerid` | — |
//! | `SET_PEER` | `peerid, interval, timeout` (seconds; 0 disables) | — |
//! | `NEW_KEY` | `slot (0 primary, 1 secondary), keyid (0..7), peerid, encrypt: {cipher, key, iv}, decrypt: {cipher, key, iv}` | — |
//! | `SWAP_KEYS` | `peerid` | — |
//! | `DEL_KEY` | `slot, peerid` | — |
//! | `START_VPN` | — | — |
//! | `SET_IFMODE` | `ifmode` (`IFF_POINTOPOINT`/`IFF_BROADCAST` \| `IFF_MULTICAST`) | — |
//! | `GET_STATS` | — | `lost_ctrl, lost_data, nomem_data, data, ctrl` (packets), `tunnel, transport` (bytes), each in/out; `drops: [{name, value}]?` |
//! | `GET_PEER_STATS` | `cursor?, limit?` | `peers: [{peerid, packets: in/out, bytes: in/out}]?, next?` |
//! | `GET_PEERS` *ours* | `cursor?, limit?` | `peers: [peer]?, next?` (see [`PeerInfo`]) |
//! | `GET_INFO` *ours* | — | `version, ifname, workers, crypto_backend, gpu_status, gpu: [{name, value}]?, peers, uptime, running, listen: [sockaddr]?` |
//! | `LISTEN` *ours* | `local: sockaddr` | `local: sockaddr` (port 0 gets the bound port) |
//! | `SET_IFCONFIG` *ours* | `ipv4: prefix?, ipv6: prefix?, mtu?, up: bool?` | — |
//! | `ADD_ROUTE`, `DEL_ROUTE` *ours* | `dst: prefix, gateway: binary(4/16)?, metric?` | — |
//! | `ADD_IROUTE`, `DEL_IROUTE` *ours* | `peerid, iroutes: [prefix]` | — |
//! | `SEND_CONTROL` *ours* | `peerid?, remote: sockaddr, local: sockaddr?, packet: binary` | — |
//! | `SUBSCRIBE` *ours* | `notifications: number array?` (types; absent = all), `queue?` | `queue` (capacity granted) |
//! | `UNSUBSCRIBE` *ours* | — | — |
//! | `FW_LOAD` *ours* | `rules: string` (the whole rule set) | `rules` (count loaded) |
//! | `FW_LIST` *ours* | — | `policy, policy_packets, policy_bytes, rules: [{index, text, packets, bytes}]?` |
//! | `FW_COUNTERS` *ours* | `zero: bool?` | `policy_packets, policy_bytes, rules: [{index, packets, bytes}]?` |
//! | `CT_LIST` *ours* | `cursor?, limit?, peerid?` | `entries: [conn]?, next?` (see [`CtEntry`]) |
//! | `CT_FLUSH` *ours* | `peerid?` | `flushed` |
//! | `CT_STATS` *ours* | — | `entries, max, new, invalid, drop, early_drop, expired, insert_failed, counters: [{name, value}]?` |
//!
//! Paged commands: `cursor` is where to start (a peer id for the peer commands), `limit` the
//! most entries wanted (the daemon may return fewer); a reply with `next` has more after it.
//!
//! ## Notifications (`notification` = type number, then the fields)
//!
//! | type | name | fields |
//! |---|---|---|
//! | 0 | `DEL_PEER` | `peerid, del_reason (0 requested, 1 timeout, 2 transport error, 3 shutdown), packets: in/out, bytes: in/out` |
//! | 1 | `ROTATE_KEY` | `peerid` (the encrypting key's packet id passed 2^31: renegotiate) |
//! | 2 | `FLOAT` | `peerid, address: sockaddr` (the peer's new remote) |
//! | 64 | `CONTROL_PACKET` *ours* | `peerid?, remote: sockaddr, local: sockaddr?, packet: binary` |
//! | 65 | `MISSED` *ours* | `count` (notifications this subscriber lost because it fell behind) |
//! | 66 | `CT_EVENT` *ours* | `event, text` (as `conntrack -E` prints it), `peerid?`, `missed` |

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::types::{
    Bytes, InOut, IpPrefix, KeyBytes, opt_ip, opt_ipv4, opt_ipv6, opt_sockaddr, sockaddr,
};

/// The largest peer id: if_ovpn and OpenVPN use 24 bits, and 0xFFFFFF means "none".
pub const MAX_PEER_ID: u32 = 0x00FF_FFFE;
/// Largest key id (3 bits on the wire).
pub const MAX_KEY_ID: u8 = 7;

/// `SET_IFMODE` value for a point-to-point interface (`IFF_POINTOPOINT | IFF_MULTICAST`).
pub const IFMODE_P2P: u32 = (libc::IFF_POINTOPOINT | libc::IFF_MULTICAST) as u32;
/// `SET_IFMODE` value for a subnet interface (`IFF_BROADCAST | IFF_MULTICAST`).
pub const IFMODE_SUBNET: u32 = (libc::IFF_BROADCAST | libc::IFF_MULTICAST) as u32;

fn is_false(b: &bool) -> bool {
    !*b
}

/// A request naming one peer (`DEL_PEER`, `SWAP_KEYS`; the `ROTATE_KEY` notification).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRef {
    /// Peer id.
    pub peerid: u32,
}

/// `NEW_PEER`: install a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPeer {
    /// Our local address for this peer (which of our sockets it talks to).
    #[serde(
        default,
        with = "opt_sockaddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub local: Option<SocketAddr>,
    /// The peer's address.
    #[serde(with = "sockaddr")]
    pub remote: SocketAddr,
    /// The peer's IPv4 address inside the tunnel.
    #[serde(default, with = "opt_ipv4", skip_serializing_if = "Option::is_none")]
    pub vpn_ipv4: Option<Ipv4Addr>,
    /// The peer's IPv6 address inside the tunnel.
    #[serde(default, with = "opt_ipv6", skip_serializing_if = "Option::is_none")]
    pub vpn_ipv6: Option<Ipv6Addr>,
    /// Peer id (24 bits).
    pub peerid: u32,
    /// *Ours*: the certificate's common name, for firewall rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// *Ours*: networks behind this peer (OpenVPN `iroute`/`iroute-ipv6`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iroutes: Vec<IpPrefix>,
}

/// `SET_PEER`: keepalive policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetPeer {
    /// Peer id.
    pub peerid: u32,
    /// Send a keepalive ping after this many seconds without sending (0: never).
    pub interval: u32,
    /// Delete the peer after this many seconds without receiving (0: never).
    pub timeout: u32,
}

/// Which of a peer's two key slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeySlot {
    /// Slot 0: encrypts outgoing traffic.
    Primary,
    /// Slot 1: decrypts only, until `SWAP_KEYS`.
    Secondary,
}

impl KeySlot {
    /// The wire number.
    pub fn number(self) -> u8 {
        match self {
            KeySlot::Primary => 0,
            KeySlot::Secondary => 1,
        }
    }

    /// From the wire number.
    pub fn from_number(n: u64) -> Option<Self> {
        match n {
            0 => Some(KeySlot::Primary),
            1 => Some(KeySlot::Secondary),
            _ => None,
        }
    }

    /// `primary` / `secondary`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySlot::Primary => "primary",
            KeySlot::Secondary => "secondary",
        }
    }
}

impl fmt::Display for KeySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeySlot {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "primary" | "0" => Ok(KeySlot::Primary),
            "secondary" | "1" => Ok(KeySlot::Secondary),
            _ => Err(format!("unknown key slot '{s}' (primary or secondary)")),
        }
    }
}

impl Serialize for KeySlot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(self.as_str())
        } else {
            s.serialize_u8(self.number())
        }
    }
}

impl<'de> Deserialize<'de> for KeySlot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            return s.parse().map_err(de::Error::custom);
        }
        let n = u64::deserialize(d)?;
        KeySlot::from_number(n)
            .ok_or_else(|| de::Error::custom(format!("slot {n} is neither 0 nor 1")))
    }
}

/// Data-channel cipher, by OpenVPN's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cipher {
    /// No encryption (if_ovpn's `none`; for tests only).
    #[serde(rename = "none")]
    None,
    /// AES-128-GCM.
    #[serde(rename = "AES-128-GCM")]
    Aes128Gcm,
    /// AES-192-GCM.
    #[serde(rename = "AES-192-GCM")]
    Aes192Gcm,
    /// AES-256-GCM.
    #[serde(rename = "AES-256-GCM")]
    Aes256Gcm,
    /// ChaCha20-Poly1305.
    #[serde(rename = "CHACHA20-POLY1305")]
    Chacha20Poly1305,
}

impl Cipher {
    /// Every cipher, in OpenVPN's `dco_get_supported_ciphers` order.
    pub const ALL: [Cipher; 5] = [
        Cipher::None,
        Cipher::Aes256Gcm,
        Cipher::Aes192Gcm,
        Cipher::Aes128Gcm,
        Cipher::Chacha20Poly1305,
    ];

    /// OpenVPN's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Cipher::None => "none",
            Cipher::Aes128Gcm => "AES-128-GCM",
            Cipher::Aes192Gcm => "AES-192-GCM",
            Cipher::Aes256Gcm => "AES-256-GCM",
            Cipher::Chacha20Poly1305 => "CHACHA20-POLY1305",
        }
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Cipher::None => 0,
            Cipher::Aes128Gcm => 16,
            Cipher::Aes192Gcm => 24,
            Cipher::Aes256Gcm | Cipher::Chacha20Poly1305 => 32,
        }
    }

    /// Implicit IV length in bytes (the nonce tail; the packet id is the head).
    pub fn iv_len(self) -> usize {
        match self {
            Cipher::None => 0,
            _ => 8,
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Cipher {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Cipher::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Cipher::ALL.iter().map(|c| c.as_str()).collect();
                format!("unknown cipher '{s}' (one of {})", names.join(", "))
            })
    }
}

/// One direction's key: cipher, key and the 8-byte implicit IV.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyConfig {
    /// Cipher.
    pub cipher: Cipher,
    /// Key bytes (absent for `none`).
    #[serde(default)]
    pub key: KeyBytes,
    /// Implicit IV (absent for `none`).
    #[serde(default)]
    pub iv: KeyBytes,
}

/// `NEW_KEY`: install keys in a slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKey {
    /// Slot to fill.
    pub slot: KeySlot,
    /// Key id (0..7) the packets carry.
    pub keyid: u8,
    /// Peer id.
    pub peerid: u32,
    /// Key for what we send.
    pub encrypt: KeyConfig,
    /// Key for what we receive.
    pub decrypt: KeyConfig,
}

/// `DEL_KEY`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelKey {
    /// Slot to clear.
    pub slot: KeySlot,
    /// Peer id.
    pub peerid: u32,
}

/// `SET_IFMODE`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetIfmode {
    /// [`IFMODE_P2P`] or [`IFMODE_SUBNET`].
    pub ifmode: u32,
    /// Ours: whether packets between two peers are routed inside the data path
    /// (`client-to-client`); otherwise they go to the TUN device and the host routes them.
    /// Absent = unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_to_client: Option<bool>,
}

/// Paging for the list commands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Where to start (inclusive); absent = the beginning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    /// Most entries wanted; absent = the daemon's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A named counter (drop reasons, GPU counters, extra conntrack counters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCounter {
    /// What it counts.
    pub name: String,
    /// The count.
    pub value: u64,
}

impl NamedCounter {
    /// A counter.
    pub fn new(name: impl Into<String>, value: u64) -> Self {
        NamedCounter {
            name: name.into(),
            value,
        }
    }
}

/// `GET_STATS` reply: interface counters, as if_ovpn's `ovpn_get_stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStats {
    /// Control packets dropped (relay queue full, rate limit).
    pub lost_ctrl: InOut,
    /// Data packets dropped (decrypt failure, replay, no key, no route...).
    pub lost_data: InOut,
    /// Data packets dropped for lack of buffers.
    pub nomem_data: InOut,
    /// Data packets.
    pub data: InOut,
    /// Control packets.
    pub ctrl: InOut,
    /// Bytes inside the tunnel (plaintext).
    pub tunnel: InOut,
    /// Bytes on the underlay (UDP payload).
    pub transport: InOut,
    /// *Ours*: drops by reason, so "why was my packet dropped?" has an answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drops: Vec<NamedCounter>,
}

/// One peer's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStats {
    /// Peer id.
    pub peerid: u32,
    /// Data packets.
    pub packets: InOut,
    /// Tunnel bytes.
    pub bytes: InOut,
}

/// `GET_PEER_STATS` reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatsPage {
    /// Peers in this page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerStats>,
    /// Cursor of the next page, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// A key slot as `GET_PEERS` shows it: never the key bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySlotInfo {
    /// Slot.
    pub slot: KeySlot,
    /// Key id.
    pub keyid: u8,
    /// Cipher.
    pub cipher: Cipher,
    /// When it was installed (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<u64>,
}

/// One peer as `GET_PEERS` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Peer id.
    pub peerid: u32,
    /// The peer's address.
    #[serde(with = "sockaddr")]
    pub remote: SocketAddr,
    /// Our address for it.
    #[serde(
        default,
        with = "opt_sockaddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub local: Option<SocketAddr>,
    /// Tunnel IPv4 address.
    #[serde(default, with = "opt_ipv4", skip_serializing_if = "Option::is_none")]
    pub vpn_ipv4: Option<Ipv4Addr>,
    /// Tunnel IPv6 address.
    #[serde(default, with = "opt_ipv6", skip_serializing_if = "Option::is_none")]
    pub vpn_ipv6: Option<Ipv6Addr>,
    /// Certificate common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Networks behind the peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iroutes: Vec<IpPrefix>,
    /// Installed keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeySlotInfo>,
    /// Keepalive interval (seconds, 0 = off).
    #[serde(default)]
    pub interval: u32,
    /// Keepalive timeout (seconds, 0 = off).
    #[serde(default)]
    pub timeout: u32,
    /// Last authenticated packet received (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rx: Option<u64>,
    /// Last packet sent (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tx: Option<u64>,
    /// Data packets.
    #[serde(default)]
    pub packets: InOut,
    /// Tunnel bytes.
    #[serde(default)]
    pub bytes: InOut,
}

/// `GET_PEERS` reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersPage {
    /// Peers in this page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerInfo>,
    /// Cursor of the next page, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// A socket address that can sit in a list (`Vec<Endpoint>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint(#[serde(with = "sockaddr")] pub SocketAddr);

/// `GET_INFO` reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Daemon version.
    pub version: String,
    /// Interface name.
    pub ifname: String,
    /// Packet worker threads.
    pub workers: u32,
    /// Crypto backend in use (e.g. `ring (AES-NI)`).
    pub crypto_backend: String,
    /// GPU status in words (`none`, `ready: NVIDIA H100`, ...).
    pub gpu_status: String,
    /// GPU counters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu: Vec<NamedCounter>,
    /// Installed peers.
    #[serde(default)]
    pub peers: u32,
    /// Seconds since the daemon started.
    #[serde(default)]
    pub uptime: u64,
    /// Whether `START_VPN` was done.
    #[serde(default, skip_serializing_if = "is_false")]
    pub running: bool,
    /// Underlay sockets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<Endpoint>,
}

/// `LISTEN` request and reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listen {
    /// Address to bind (request) or bound (reply).
    #[serde(with = "sockaddr")]
    pub local: SocketAddr,
}

/// `SET_IFCONFIG`: the TUN's addresses, MTU and state; absent fields are left alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetIfconfig {
    /// IPv4 address and prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<IpPrefix>,
    /// IPv6 address and prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<IpPrefix>,
    /// MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Link up or down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up: Option<bool>,
}

/// `ADD_ROUTE` / `DEL_ROUTE`: a route through the TUN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination.
    pub dst: IpPrefix,
    /// Gateway (a peer's VPN address, which is how iroutes reach a peer).
    #[serde(default, with = "opt_ip", skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
}

/// `ADD_IROUTE` / `DEL_IROUTE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Iroutes {
    /// Peer id.
    pub peerid: u32,
    /// Networks.
    pub iroutes: Vec<IpPrefix>,
}

/// `SEND_CONTROL`: a control-channel packet for the daemon to send on the underlay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendControl {
    /// Peer id, when the packet belongs to an installed peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peerid: Option<u32>,
    /// Destination.
    #[serde(with = "sockaddr")]
    pub remote: SocketAddr,
    /// Source (which of our sockets); absent = the one the peer talks to, or the first.
    #[serde(
        default,
        with = "opt_sockaddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub local: Option<SocketAddr>,
    /// The UDP payload.
    pub packet: Bytes,
}

/// `SUBSCRIBE`: receive notifications on this connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    /// Notification types wanted ([`NotificationKind`] numbers); empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<u64>,
    /// Queue capacity wanted (bounded by the daemon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<u32>,
}

/// `SUBSCRIBE` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    /// Queue capacity granted.
    pub queue: u32,
}

/// `FW_LOAD`: replace the firewall rule set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwLoad {
    /// The rule set, one rule per line (nftables-like syntax of the conntrack crate).
    pub rules: String,
}

/// `FW_LOAD` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwLoaded {
    /// Rules loaded.
    pub rules: u32,
}

/// One firewall rule and its counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwRule {
    /// Position (0-based).
    pub index: u32,
    /// The rule as text.
    pub text: String,
    /// Packets matched.
    pub packets: u64,
    /// Bytes matched.
    pub bytes: u64,
}

/// `FW_LIST` reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwRules {
    /// Default policy (`accept` / `drop`).
    pub policy: String,
    /// Packets that fell through to the policy.
    #[serde(default)]
    pub policy_packets: u64,
    /// Bytes that fell through to the policy.
    #[serde(default)]
    pub policy_bytes: u64,
    /// Rules in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<FwRule>,
}

/// `FW_COUNTERS` request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwCountersRequest {
    /// Reset the counters after reading them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero: Option<bool>,
}

/// A rule's counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwRuleCounter {
    /// Position.
    pub index: u32,
    /// Packets matched.
    pub packets: u64,
    /// Bytes matched.
    pub bytes: u64,
}

/// `FW_COUNTERS` reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwCounters {
    /// Packets that fell through to the policy.
    #[serde(default)]
    pub policy_packets: u64,
    /// Bytes that fell through to the policy.
    #[serde(default)]
    pub policy_bytes: u64,
    /// Per rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<FwRuleCounter>,
}

/// `CT_LIST` request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtListRequest {
    /// Where to start; absent = the beginning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    /// Most entries wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only this peer's connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peerid: Option<u32>,
}

/// One direction of a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtTuple {
    /// Source address.
    #[serde(with = "crate::types::ip")]
    pub src: IpAddr,
    /// Destination address.
    #[serde(with = "crate::types::ip")]
    pub dst: IpAddr,
    /// Source port (TCP/UDP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// Destination port (TCP/UDP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// ICMP type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// ICMP echo id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_id: Option<u16>,
}

/// One tracked connection, as `conntrack -L` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtEntry {
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub proto: u8,
    /// State (`ESTABLISHED`, `SYN_SENT`, ... or `UNREPLIED`/`REPLIED` pseudo-states).
    pub state: String,
    /// Original direction.
    pub orig: CtTuple,
    /// Reply direction.
    pub reply: CtTuple,
    /// Packets in the original direction.
    #[serde(default)]
    pub orig_packets: u64,
    /// Bytes in the original direction.
    #[serde(default)]
    pub orig_bytes: u64,
    /// Packets in the reply direction.
    #[serde(default)]
    pub reply_packets: u64,
    /// Bytes in the reply direction.
    #[serde(default)]
    pub reply_bytes: u64,
    /// Seconds until it expires.
    pub timeout: u64,
    /// Mark.
    #[serde(default)]
    pub mark: u32,
    /// The peer the connection came from or goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peerid: Option<u32>,
    /// Seen both ways long enough not to be dropped early.
    #[serde(default, skip_serializing_if = "is_false")]
    pub assured: bool,
}

/// `CT_LIST` reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtPage {
    /// Connections in this page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<CtEntry>,
    /// Cursor of the next page, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// `CT_FLUSH` request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtFlush {
    /// Only this peer's connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peerid: Option<u32>,
}

/// `CT_FLUSH` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtFlushed {
    /// Connections removed.
    pub flushed: u64,
}

/// `CT_STATS` reply, after `conntrack -S`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtStats {
    /// Connections in the table.
    pub entries: u64,
    /// Table capacity.
    pub max: u64,
    /// Connections created.
    #[serde(default)]
    pub new: u64,
    /// Packets that could not be tracked (invalid state).
    #[serde(default)]
    pub invalid: u64,
    /// Packets dropped by the tracker.
    #[serde(default)]
    pub drop: u64,
    /// Connections evicted early because the table was full.
    #[serde(default)]
    pub early_drop: u64,
    /// Connections that timed out.
    #[serde(default)]
    pub expired: u64,
    /// Insertions that failed.
    #[serde(default)]
    pub insert_failed: u64,
    /// Anything else the tracker counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counters: Vec<NamedCounter>,
}

// ---------------------------------------------------------------------------------------
// Notifications

/// Notification type numbers (if_ovpn's `enum ovpn_notif_type`, then ours from 64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotificationKind {
    /// 0: a peer was deleted.
    DelPeer,
    /// 1: a key needs renegotiating.
    RotateKey,
    /// 2: a peer's address changed.
    Float,
    /// 64: a control packet arrived.
    ControlPacket,
    /// 65: the subscriber missed notifications.
    Missed,
    /// 66: a connection-tracking event (new, destroy...) for `ovpnctl ct watch`.
    CtEvent,
}

impl NotificationKind {
    /// Every kind.
    pub const ALL: [NotificationKind; 6] = [
        NotificationKind::DelPeer,
        NotificationKind::RotateKey,
        NotificationKind::Float,
        NotificationKind::ControlPacket,
        NotificationKind::Missed,
        NotificationKind::CtEvent,
    ];

    /// Wire number.
    pub fn number(self) -> u64 {
        match self {
            NotificationKind::DelPeer => 0,
            NotificationKind::RotateKey => 1,
            NotificationKind::Float => 2,
            NotificationKind::ControlPacket => 64,
            NotificationKind::Missed => 65,
            NotificationKind::CtEvent => 66,
        }
    }

    /// From the wire number.
    pub fn from_number(n: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.number() == n)
    }

    /// if_ovpn-style name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::DelPeer => "DEL_PEER",
            NotificationKind::RotateKey => "ROTATE_KEY",
            NotificationKind::Float => "FLOAT",
            NotificationKind::ControlPacket => "CONTROL_PACKET",
            NotificationKind::Missed => "MISSED",
            NotificationKind::CtEvent => "CT_EVENT",
        }
    }
}

impl FromStr for NotificationKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let up = s.to_ascii_uppercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == up)
            .ok_or_else(|| format!("unknown notification '{s}'"))
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a peer was deleted (if_ovpn's `enum ovpn_del_reason`, extended).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DelReason(pub u64);

impl DelReason {
    /// `DEL_PEER` was requested.
    pub const REQUESTED: DelReason = DelReason(0);
    /// Keepalive timeout expired.
    pub const TIMEOUT: DelReason = DelReason(1);
    /// The underlay failed for this peer.
    pub const TRANSPORT_ERROR: DelReason = DelReason(2);
    /// The daemon is shutting down.
    pub const SHUTDOWN: DelReason = DelReason(3);
}

impl fmt::Display for DelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("requested"),
            1 => f.write_str("timeout"),
            2 => f.write_str("transport error"),
            3 => f.write_str("shutdown"),
            n => write!(f, "reason {n}"),
        }
    }
}

/// `DEL_PEER` notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelPeerNote {
    /// Peer id.
    pub peerid: u32,
    /// Why.
    pub del_reason: DelReason,
    /// Final packet counters.
    #[serde(default)]
    pub packets: InOut,
    /// Final byte counters.
    #[serde(default)]
    pub bytes: InOut,
}

/// `FLOAT` notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatNote {
    /// Peer id.
    pub peerid: u32,
    /// The new remote address.
    #[serde(with = "sockaddr")]
    pub address: SocketAddr,
}

/// `CONTROL_PACKET` notification: a packet the data path does not handle, for dco-control.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPacketNote {
    /// The installed peer it came from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peerid: Option<u32>,
    /// Sender.
    #[serde(with = "sockaddr")]
    pub remote: SocketAddr,
    /// Our address it arrived on.
    #[serde(
        default,
        with = "opt_sockaddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub local: Option<SocketAddr>,
    /// The UDP payload.
    pub packet: Bytes,
}

/// `CT_EVENT` notification: one connection-tracking event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtEventNote {
    /// `new`, `update`, `destroy`.
    pub event: String,
    /// The event as `conntrack -E` prints it.
    pub text: String,
    /// The peer on the original sender's side, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peerid: Option<u32>,
    /// Events the tracker could not queue before this one (the daemon fell behind).
    #[serde(default)]
    pub missed: u64,
}

/// `MISSED` notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissedNote {
    /// How many notifications were lost at this point of the stream.
    pub count: u64,
}
