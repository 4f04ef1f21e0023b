//! Value types shared by the commands, each with an nvlist form (as if_ovpn encodes it) and a
//! text form for JSON and the CLI.
//!
//! | Rust | nvlist form | text form |
//! |---|---|---|
//! | `SocketAddr` ([`sockaddr`]) | `{af, address (binary 4/16), port, scopeid?}` | `192.0.2.1:1194` |
//! | `Ipv4Addr`/`Ipv6Addr`/`IpAddr` ([`ipv4`], [`ipv6`], [`ip`]) | binary, 4 or 16 bytes | `10.8.0.2` |
//! | [`IpPrefix`] | `{af, address (binary), prefixlen}` | `10.0.0.0/24` |
//! | [`Bytes`] | binary | hex |
//! | [`KeyBytes`] | binary (zeroised, never printed) | `"<redacted>"` |
//! | [`InOut`] | `{in, out}` | same |
//!
//! `af` is the Linux address family (`AF_INET` 2, `AF_INET6` 10). `port` is, exactly as
//! if_ovpn and OpenVPN's `dco_freebsd.c` carry it, the `sin_port` field: the port in network
//! byte order, stored as a host number (1194 travels as 0xaa04 on a little-endian host).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Linux `AF_INET`.
pub const AF_INET: u64 = libc::AF_INET as u64;
/// Linux `AF_INET6`.
pub const AF_INET6: u64 = libc::AF_INET6 as u64;

fn af_of(ip: &IpAddr) -> u64 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

fn ip_octets(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn ip_from_bytes<E: de::Error>(b: &[u8], af: Option<u64>) -> Result<IpAddr, E> {
    let ip = match b.len() {
        4 => IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            IpAddr::V6(Ipv6Addr::from(a))
        }
        n => {
            return Err(E::custom(format!(
                "address of {n} bytes (want 4 for IPv4 or 16 for IPv6)"
            )));
        }
    };
    if let Some(af) = af
        && af != af_of(&ip)
    {
        return Err(E::custom(format!(
            "address family {af} does not match a {}-byte address",
            b.len()
        )));
    }
    Ok(ip)
}

/// Raw bytes carried as BINARY (hex in JSON).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("binary")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        hex::decode(v).map_err(|e| E::custom(format!("bad hex: {e}")))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(BytesVisitor).map(Bytes)
        } else {
            d.deserialize_bytes(BytesVisitor).map(Bytes)
        }
    }
}

/// Key material: zeroised on drop, never printed, never written to JSON.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KeyBytes(Zeroizing<Vec<u8>>);

impl KeyBytes {
    /// Wraps key bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        KeyBytes(Zeroizing::new(bytes))
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&[u8]> for KeyBytes {
    fn from(b: &[u8]) -> Self {
        KeyBytes::new(b.to_vec())
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyBytes(<redacted {} bytes>)", self.0.len())
    }
}

impl Serialize for KeyBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str("<redacted>")
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = KeyBytes;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("binary key material")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<KeyBytes, E> {
        Ok(KeyBytes::from(v))
    }
}

impl<'de> Deserialize<'de> for KeyBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(KeyVisitor)
    }
}

/// A `{in, out}` pair of counters, as if_ovpn reports them (`in` = received).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InOut {
    /// Received.
    #[serde(rename = "in")]
    pub rx: u64,
    /// Sent.
    #[serde(rename = "out")]
    pub tx: u64,
}

impl InOut {
    /// A pair of counters.
    pub fn new(rx: u64, tx: u64) -> Self {
        InOut { rx, tx }
    }
}

/// An IPv4 or IPv6 prefix (`10.0.0.0/24`). Host bits are kept as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length, at most 32 or 128.
    pub len: u8,
}

impl IpPrefix {
    /// A prefix, checking the length against the family.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, String> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!("prefix length {len} exceeds {max}"));
        }
        Ok(IpPrefix { addr, len })
    }

    /// Whether `ip` lies inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(p) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(p) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for IpPrefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| format!("bad address '{a}'"))?;
        let len = match l {
            Some(l) => l.parse().map_err(|_| format!("bad prefix length '{l}'"))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        IpPrefix::new(addr, len)
    }
}

impl Serialize for IpPrefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return s.collect_str(self);
        }
        let mut st = s.serialize_struct("IpPrefix", 3)?;
        st.serialize_field("af", &af_of(&self.addr))?;
        st.serialize_field("address", &Bytes(ip_octets(&self.addr)))?;
        st.serialize_field("prefixlen", &self.len)?;
        st.end()
    }
}

#[derive(Deserialize)]
struct PrefixWire {
    af: u64,
    address: Bytes,
    prefixlen: u8,
}

impl<'de> Deserialize<'de> for IpPrefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            return s.parse().map_err(de::Error::custom);
        }
        let w = PrefixWire::deserialize(d)?;
        let addr = ip_from_bytes::<D::Error>(&w.address.0, Some(w.af))?;
        IpPrefix::new(addr, w.prefixlen).map_err(de::Error::custom)
    }
}

#[derive(Serialize, Deserialize)]
struct SockaddrWire {
    af: u64,
    address: Bytes,
    port: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scopeid: Option<u64>,
}

fn sockaddr_to_wire(a: &SocketAddr) -> SockaddrWire {
    let scopeid = match a {
        SocketAddr::V6(v6) if v6.scope_id() != 0 => Some(u64::from(v6.scope_id())),
        _ => None,
    };
    SockaddrWire {
        af: af_of(&a.ip()),
        address: Bytes(ip_octets(&a.ip())),
        // sin_port: network byte order, as a host integer.
        port: u64::from(a.port().to_be()),
        scopeid,
    }
}

fn sockaddr_from_wire<E: de::Error>(w: SockaddrWire) -> Result<SocketAddr, E> {
    let raw = u16::try_from(w.port).map_err(|_| E::custom(format!("port {} > 65535", w.port)))?;
    let port = u16::from_be(raw);
    Ok(match ip_from_bytes::<E>(&w.address.0, Some(w.af))? {
        IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, port)),
        IpAddr::V6(a) => {
            let scope = u32::try_from(w.scopeid.unwrap_or(0))
                .map_err(|_| E::custom("scopeid does not fit 32 bits"))?;
            SocketAddr::V6(SocketAddrV6::new(a, port, 0, scope))
        }
    })
}

/// `#[serde(with = "sockaddr")]` for `SocketAddr`: if_ovpn's sockaddr nvlist.
pub mod sockaddr {
    use super::*;

    /// Serialises a socket address.
    pub fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(a)
        } else {
            sockaddr_to_wire(a).serialize(s)
        }
    }

    /// Deserialises a socket address.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(de::Error::custom)
        } else {
            sockaddr_from_wire(SockaddrWire::deserialize(d)?)
        }
    }
}

/// `#[serde(default, with = "opt_sockaddr")]` for `Option<SocketAddr>`.
pub mod opt_sockaddr {
    use super::*;

    #[derive(Deserialize)]
    struct W(#[serde(with = "super::sockaddr")] SocketAddr);

    /// Serialises an optional socket address (absent when `None`).
    pub fn serialize<S: Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => super::sockaddr::serialize(a, s),
            None => s.serialize_none(),
        }
    }

    /// Deserialises an optional socket address.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

/// `#[serde(with = "ip")]` for `IpAddr` as 4 or 16 bytes of binary.
pub mod ip {
    use super::*;

    /// Serialises an address.
    pub fn serialize<S: Serializer>(a: &IpAddr, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(a)
        } else {
            s.serialize_bytes(&ip_octets(a))
        }
    }

    /// Deserialises an address.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(de::Error::custom)
        } else {
            ip_from_bytes(&Bytes::deserialize(d)?.0, None)
        }
    }
}

/// `#[serde(default, with = "opt_ip")]` for `Option<IpAddr>`.
pub mod opt_ip {
    use super::*;

    #[derive(Deserialize)]
    struct W(#[serde(with = "super::ip")] IpAddr);

    /// Serialises an optional address.
    pub fn serialize<S: Serializer>(a: &Option<IpAddr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => super::ip::serialize(a, s),
            None => s.serialize_none(),
        }
    }

    /// Deserialises an optional address.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

/// `#[serde(default, with = "opt_ipv4")]` for `Option<Ipv4Addr>` (if_ovpn's `vpn_ipv4`).
pub mod opt_ipv4 {
    use super::*;

    /// Serialises an optional IPv4 address as 4 bytes.
    pub fn serialize<S: Serializer>(a: &Option<Ipv4Addr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => super::ip::serialize(&IpAddr::V4(*a), s),
            None => s.serialize_none(),
        }
    }

    /// Deserialises an optional IPv4 address, refusing 16-byte ones.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
        match super::opt_ip::deserialize(d)? {
            None => Ok(None),
            Some(IpAddr::V4(a)) => Ok(Some(a)),
            Some(IpAddr::V6(_)) => Err(de::Error::custom("expected a 4-byte IPv4 address")),
        }
    }
}

/// `#[serde(default, with = "opt_ipv6")]` for `Option<Ipv6Addr>` (if_ovpn's `vpn_ipv6`).
pub mod opt_ipv6 {
    use super::*;

    /// Serialises an optional IPv6 address as 16 bytes.
    pub fn serialize<S: Serializer>(a: &Option<Ipv6Addr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => super::ip::serialize(&IpAddr::V6(*a), s),
            None => s.serialize_none(),
        }
    }

    /// Deserialises an optional IPv6 address, refusing 4-byte ones.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv6Addr>, D::Error> {
        match super::opt_ip::deserialize(d)? {
            None => Ok(None),
            Some(IpAddr::V6(a)) => Ok(Some(a)),
            Some(IpAddr::V4(_)) => Err(de::Error::custom("expected a 16-byte IPv6 address")),
        }
    }
}
