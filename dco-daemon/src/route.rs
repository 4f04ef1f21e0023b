//! Longest-prefix match for iroutes and routes: one hash map per prefix length in use,
//! probed from the longest length down. A lookup costs one hash probe per distinct length
//! present (usually two or three), never a scan of the routes.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::netlink::Prefix;

type Fast = foldhash::fast::RandomState;

/// LPM table over IPv4 (`u32` keys, lengths 0..=32) or IPv6 (`u128`, 0..=128).
#[derive(Debug, Clone)]
pub struct Lpm<K, V> {
    maps: Vec<HashMap<K, V, Fast>>,
    /// Prefix lengths with at least one entry, longest first.
    lengths: Vec<u8>,
}

pub trait LpmKey: Copy + Eq + std::hash::Hash {
    const BITS: u8;
    fn mask(self, len: u8) -> Self;
}

impl LpmKey for u32 {
    const BITS: u8 = 32;
    fn mask(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (32 - u32::from(len)))
        }
    }
}

impl LpmKey for u128 {
    const BITS: u8 = 128;
    fn mask(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (128 - u32::from(len)))
        }
    }
}

impl<K: LpmKey, V: Clone> Default for Lpm<K, V> {
    fn default() -> Self {
        Self {
            maps: (0..=K::BITS).map(|_| HashMap::default()).collect(),
            lengths: Vec::new(),
        }
    }
}

impl<K: LpmKey, V: Clone> Lpm<K, V> {
    /// Inserts (or replaces) `key/len`. Lengths above the key size are clamped.
    pub fn insert(&mut self, key: K, len: u8, value: V) {
        let len = len.min(K::BITS);
        self.maps[len as usize].insert(key.mask(len), value);
        if !self.lengths.contains(&len) {
            self.lengths.push(len);
            self.lengths.sort_unstable_by(|a, b| b.cmp(a));
        }
    }

    #[inline]
    pub fn lookup(&self, key: K) -> Option<&V> {
        for &len in &self.lengths {
            if let Some(v) = self.maps[len as usize].get(&key.mask(len)) {
                return Some(v);
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.maps.iter().map(|m| m.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Both families.
#[derive(Debug, Clone)]
pub struct RouteTable<V> {
    pub v4: Lpm<u32, V>,
    pub v6: Lpm<u128, V>,
}

impl<V: Clone> Default for RouteTable<V> {
    fn default() -> Self {
        Self {
            v4: Lpm::default(),
            v6: Lpm::default(),
        }
    }
}

impl<V: Clone> RouteTable<V> {
    pub fn insert(&mut self, p: Prefix, v: V) {
        match p.addr {
            IpAddr::V4(a) => self.v4.insert(u32::from(a), p.len, v),
            IpAddr::V6(a) => self.v6.insert(u128::from(a), p.len, v),
        }
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<&V> {
        match ip {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }
}

/// Whether `ip` is inside `p`.
pub fn contains(p: &Prefix, ip: IpAddr) -> bool {
    match (p.addr, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a).mask(p.len) == u32::from(n).mask(p.len),
        (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a).mask(p.len) == u128::from(n).mask(p.len),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        let (a, l) = s.split_once('/').unwrap();
        Prefix::new(a.parse().unwrap(), l.parse().unwrap()).unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = RouteTable::default();
        t.insert(p("10.0.0.0/8"), 1);
        t.insert(p("10.1.0.0/16"), 2);
        t.insert(p("10.1.2.0/24"), 3);
        t.insert(p("0.0.0.0/0"), 9);
        t.insert(p("fd00::/8"), 4);
        t.insert(p("fd00:1::/32"), 5);
        let l = |s: &str| t.lookup(s.parse().unwrap()).copied();
        assert_eq!(l("10.1.2.3"), Some(3));
        assert_eq!(l("10.1.3.3"), Some(2));
        assert_eq!(l("10.2.3.3"), Some(1));
        assert_eq!(l("192.168.1.1"), Some(9));
        assert_eq!(l("fd00:1::1"), Some(5));
        assert_eq!(l("fd00:2::1"), Some(4));
        assert_eq!(l("2001:db8::1"), None);
        assert!(contains(&p("10.1.0.0/16"), "10.1.255.1".parse().unwrap()));
        assert!(!contains(&p("10.1.0.0/16"), "10.2.0.1".parse().unwrap()));
        assert!(!contains(&p("10.1.0.0/16"), "fd00::1".parse().unwrap()));
        assert!(contains(&p("::/0"), "fd00::1".parse().unwrap()));
    }

    #[test]
    fn host_bits_ignored_on_insert() {
        let mut t = Lpm::<u32, u8>::default();
        t.insert(0x0a01_02ff, 24, 7);
        assert_eq!(t.lookup(0x0a01_0201), Some(&7));
        assert_eq!(t.len(), 1);
    }
}
