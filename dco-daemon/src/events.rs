//! What the data path tells the control process: if_ovpn's notifications and the relay of
//! packets that are not for the fast path.

use std::net::{IpAddr, SocketAddr};

use crate::stats::PeerTraffic;

/// Why a peer was deleted (DEL_PEER notification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelReason {
    /// Asked for through the IPC.
    Requested,
    /// Keepalive timeout: nothing authenticated received for `timeout` seconds.
    Expired,
    /// The peer sent an explicit-exit-notify (OCC_EXIT) on the data channel.
    Exit,
    /// The daemon is shutting down.
    Shutdown,
}

impl DelReason {
    pub const fn name(self) -> &'static str {
        match self {
            DelReason::Requested => "requested",
            DelReason::Expired => "expired",
            DelReason::Exit => "exit",
            DelReason::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    DelPeer {
        peer_id: u32,
        reason: DelReason,
        traffic: PeerTraffic,
    },
    RotateKey {
        peer_id: u32,
        key_id: u8,
    },
    Float {
        peer_id: u32,
        remote: SocketAddr,
        local: Option<IpAddr>,
    },
    /// A packet for the control process: control channel, unknown peer, DATA_V1.
    ControlPacket {
        remote: SocketAddr,
        local: Option<SocketAddr>,
        data: Vec<u8>,
    },
}

/// Where events go. `emit` never blocks a data-path thread: it returns false when the event
/// could not be queued (the caller counts it).
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event) -> bool;
    /// Whether anyone wants relayed control packets (else they are dropped and counted).
    fn has_control_listener(&self) -> bool;
}

/// Discards everything (tests, or a daemon nobody has connected to yet).
#[derive(Debug, Default)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: Event) -> bool {
        false
    }
    fn has_control_listener(&self) -> bool {
        false
    }
}

/// A token bucket for the control-packet relay, owned by one thread.
#[derive(Debug)]
pub struct RateLimit {
    rate_per_s: u64,
    burst: u64,
    tokens: u64,
    last_ms: u64,
}

impl RateLimit {
    pub fn new(rate_per_s: u32, burst: u32) -> Self {
        Self {
            rate_per_s: u64::from(rate_per_s),
            burst: u64::from(burst.max(1)),
            tokens: u64::from(burst.max(1)),
            last_ms: 0,
        }
    }

    #[inline]
    pub fn allow(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        if elapsed > 0 {
            let add = elapsed * self.rate_per_s / 1000;
            if add > 0 {
                self.tokens = (self.tokens + add).min(self.burst);
                self.last_ms = now_ms;
            }
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_refills() {
        let mut r = RateLimit::new(1000, 10);
        assert_eq!((0..20).filter(|_| r.allow(0)).count(), 10);
        assert!(r.allow(5));
        assert_eq!((0..20).filter(|_| r.allow(5)).count(), 4);
    }
}
