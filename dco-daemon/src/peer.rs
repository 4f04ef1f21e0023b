//! A peer of the data path: its remote endpoint, VPN addresses, iroutes, the two key slots,
//! keepalive timers and counters. Everything a worker touches per packet is lock-free.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use crypto::{CipherKind, DecryptKey, DirectionalKey, EncryptKey, KeyError, KeyId, PeerId};

use crate::netlink::Prefix;
use crate::route::contains;
use crate::stats::PeerCounters;

/// Where a peer is: its address and the local address we answer from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub remote: SocketAddr,
    pub local: Option<IpAddr>,
}

/// A key slot, as in if_ovpn and the Linux ovpn driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySlot {
    Primary,
    Secondary,
}

/// One installed key: both directions under one key-id.
#[derive(Debug)]
pub struct DataKey {
    pub key_id: KeyId,
    pub cipher: CipherKind,
    pub enc: EncryptKey,
    pub dec: DecryptKey,
    /// Set once ROTATE_KEY was raised for this key.
    pub rotate_notified: AtomicBool,
}

impl DataKey {
    pub fn new(
        key_id: KeyId,
        encrypt: &DirectionalKey,
        decrypt: &DirectionalKey,
        replay_window: u32,
    ) -> Result<Self, KeyError> {
        Ok(Self {
            key_id,
            cipher: encrypt.cipher(),
            enc: EncryptKey::new(key_id, encrypt)?,
            dec: DecryptKey::new(key_id, decrypt, replay_window)?,
            rotate_notified: AtomicBool::new(false),
        })
    }
}

/// The primary key encrypts; either slot decrypts, chosen by key-id.
#[derive(Debug, Default, Clone)]
pub struct KeySlots {
    pub primary: Option<Arc<DataKey>>,
    pub secondary: Option<Arc<DataKey>>,
}

impl KeySlots {
    #[inline]
    pub fn for_rx(&self, key_id: KeyId) -> Option<&DataKey> {
        if let Some(k) = self.primary.as_deref().filter(|k| k.key_id == key_id) {
            return Some(k);
        }
        self.secondary.as_deref().filter(|k| k.key_id == key_id)
    }

    /// The key for `key_id`, shared (for batches that outlive the slot lookup).
    #[inline]
    pub fn for_rx_arc(&self, key_id: KeyId) -> Option<&Arc<DataKey>> {
        if let Some(k) = self.primary.as_ref().filter(|k| k.key_id == key_id) {
            return Some(k);
        }
        self.secondary.as_ref().filter(|k| k.key_id == key_id)
    }

    #[inline]
    pub fn for_tx(&self) -> Option<&DataKey> {
        self.primary.as_deref()
    }

    pub fn get(&self, slot: KeySlot) -> Option<&Arc<DataKey>> {
        match slot {
            KeySlot::Primary => self.primary.as_ref(),
            KeySlot::Secondary => self.secondary.as_ref(),
        }
    }
}

/// What NEW_PEER gives us.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub id: PeerId,
    pub remote: SocketAddr,
    pub local: Option<IpAddr>,
    pub vpn_ipv4: Option<Ipv4Addr>,
    pub vpn_ipv6: Option<Ipv6Addr>,
    pub iroutes: Vec<Prefix>,
    pub common_name: String,
}

pub struct Peer {
    pub id: PeerId,
    pub vpn_ipv4: Option<Ipv4Addr>,
    pub vpn_ipv6: Option<Ipv6Addr>,
    pub common_name: String,
    pub iroutes: ArcSwap<Vec<Prefix>>,
    endpoint: ArcSwap<Endpoint>,
    pub keys: ArcSwap<KeySlots>,
    keepalive_interval_ms: AtomicU64,
    keepalive_timeout_ms: AtomicU64,
    last_rx_ms: AtomicU64,
    last_tx_ms: AtomicU64,
    pub created_ms: u64,
    pub counters: PeerCounters,
}

impl Peer {
    pub fn new(cfg: PeerConfig, threads: usize, now_ms: u64) -> Self {
        Self {
            id: cfg.id,
            vpn_ipv4: cfg.vpn_ipv4,
            vpn_ipv6: cfg.vpn_ipv6,
            common_name: cfg.common_name,
            iroutes: ArcSwap::from_pointee(cfg.iroutes),
            endpoint: ArcSwap::from_pointee(Endpoint {
                remote: cfg.remote,
                local: cfg.local,
            }),
            keys: ArcSwap::from_pointee(KeySlots::default()),
            keepalive_interval_ms: AtomicU64::new(0),
            keepalive_timeout_ms: AtomicU64::new(0),
            last_rx_ms: AtomicU64::new(now_ms),
            last_tx_ms: AtomicU64::new(now_ms),
            created_ms: now_ms,
            counters: PeerCounters::new(threads),
        }
    }

    #[inline]
    pub fn endpoint(&self) -> Endpoint {
        **self.endpoint.load()
    }

    pub fn set_endpoint(&self, e: Endpoint) {
        self.endpoint.store(Arc::new(e));
    }

    pub fn set_keepalive(&self, interval_s: u32, timeout_s: u32) {
        self.keepalive_interval_ms
            .store(u64::from(interval_s) * 1000, Ordering::Relaxed);
        self.keepalive_timeout_ms
            .store(u64::from(timeout_s) * 1000, Ordering::Relaxed);
    }

    /// (interval, timeout) in seconds; 0 = off.
    pub fn keepalive(&self) -> (u32, u32) {
        (
            (self.keepalive_interval_ms.load(Ordering::Relaxed) / 1000) as u32,
            (self.keepalive_timeout_ms.load(Ordering::Relaxed) / 1000) as u32,
        )
    }

    /// Records an authenticated packet. The store is skipped when the value would not
    /// change, so a busy peer's cache line is not written per packet.
    #[inline]
    pub fn touch_rx(&self, now_ms: u64) {
        if self.last_rx_ms.load(Ordering::Relaxed) != now_ms {
            self.last_rx_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn touch_tx(&self, now_ms: u64) {
        if self.last_tx_ms.load(Ordering::Relaxed) != now_ms {
            self.last_tx_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    pub fn last_rx_ms(&self) -> u64 {
        self.last_rx_ms.load(Ordering::Relaxed)
    }

    pub fn last_tx_ms(&self) -> u64 {
        self.last_tx_ms.load(Ordering::Relaxed)
    }

    /// A keepalive ping is due (nothing sent for `interval`).
    pub fn ping_due(&self, now_ms: u64) -> bool {
        let i = self.keepalive_interval_ms.load(Ordering::Relaxed);
        i > 0 && now_ms.saturating_sub(self.last_tx_ms()) >= i
    }

    /// Nothing authenticated received for `timeout`.
    pub fn expired(&self, now_ms: u64) -> bool {
        let t = self.keepalive_timeout_ms.load(Ordering::Relaxed);
        t > 0 && now_ms.saturating_sub(self.last_rx_ms()) >= t
    }

    /// OpenVPN's source check: the inner source must be the peer's VPN address or inside one
    /// of its iroutes.
    #[inline]
    pub fn allows_source(&self, src: IpAddr) -> bool {
        match src {
            IpAddr::V4(a) if Some(a) == self.vpn_ipv4 => return true,
            IpAddr::V6(a) if Some(a) == self.vpn_ipv6 => return true,
            _ => {}
        }
        self.iroutes.load().iter().any(|p| contains(p, src))
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint())
            .field("vpn_ipv4", &self.vpn_ipv4)
            .field("vpn_ipv6", &self.vpn_ipv6)
            .field("common_name", &self.common_name)
            .finish_non_exhaustive()
    }
}
