//! What the control side asks of the data path, as values: the server and client shells
//! emit these in order and an I/O adapter carries them to `dco-daemon` over the IPC
//! (NEW_PEER, NEW_KEY, SWAP_KEYS, ...). Keeping them as data keeps the shells sans-IO and
//! lets tests check the exact command stream.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crypto::DirectionalKey;

/// A key slot in the daemon (if_ovpn's primary/secondary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Primary,
    Secondary,
}

/// An IP prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl Net {
    pub fn v4(addr: Ipv4Addr, mask: Ipv4Addr) -> Self {
        Net {
            addr: IpAddr::V4(addr),
            prefix_len: u32::from(mask).leading_ones() as u8,
        }
    }
    pub fn v6(addr: Ipv6Addr, prefix_len: u8) -> Self {
        Net {
            addr: IpAddr::V6(addr),
            prefix_len,
        }
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Interface mode (if_ovpn SET_IFMODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMode {
    P2p,
    Multipoint,
}

/// One command for the data path.
#[derive(Debug)]
pub enum DaemonCmd {
    Listen {
        addr: SocketAddr,
    },
    /// The interface mode and whether peers reach each other inside the data path
    /// (`client-to-client`).
    SetIfMode {
        mode: IfMode,
        client_to_client: bool,
    },
    SetIfconfig {
        addresses: Vec<Net>,
        mtu: Option<u32>,
        up: bool,
    },
    AddRoute {
        dst: Net,
        gateway: Option<IpAddr>,
        metric: Option<u32>,
    },
    NewPeer {
        peer_id: u32,
        remote: SocketAddr,
        local: Option<IpAddr>,
        vpn_ipv4: Option<Ipv4Addr>,
        vpn_ipv6: Option<Ipv6Addr>,
        iroutes: Vec<Net>,
        common_name: String,
    },
    SetPeer {
        peer_id: u32,
        interval: u32,
        timeout: u32,
    },
    DelPeer {
        peer_id: u32,
    },
    NewKey {
        peer_id: u32,
        slot: Slot,
        key_id: u8,
        encrypt: DirectionalKey,
        decrypt: DirectionalKey,
    },
    SwapKeys {
        peer_id: u32,
    },
    DelKey {
        peer_id: u32,
        slot: Slot,
    },
    SendControl {
        remote: SocketAddr,
        local: Option<IpAddr>,
        packet: Vec<u8>,
    },
}

/// Notifications from the data path the shells react to.
#[derive(Debug, Clone)]
pub enum DaemonEvent {
    /// A packet that is not for the fast path (control channel, unknown peer).
    ControlPacket {
        remote: SocketAddr,
        local: Option<IpAddr>,
        packet: Vec<u8>,
    },
    /// The daemon deleted a peer (keepalive timeout, exit notify, shutdown).
    PeerDeleted { peer_id: u32, reason: String },
    /// A peer's send key is half used: renegotiate.
    RotateKey { peer_id: u32 },
    /// A peer moved to a new address.
    Float { peer_id: u32, remote: SocketAddr },
    /// Data-channel traffic of a peer so far (for reneg-bytes/pkts and the status file).
    Traffic { peer_id: u32, traffic: PeerTraffic },
}

/// A peer's data-channel counters as the daemon reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerTraffic {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
}

impl PeerTraffic {
    pub fn bytes(&self) -> u64 {
        self.bytes_in + self.bytes_out
    }
    pub fn packets(&self) -> u64 {
        self.packets_in + self.packets_out
    }
}

/// Which key-id sits in which daemon slot, so session events map to slot commands.
#[derive(Debug, Default, Clone, Copy)]
pub struct SlotMap {
    pub primary: Option<u8>,
    pub secondary: Option<u8>,
}

impl SlotMap {
    /// Where a new key goes: the primary slot for the first key, else the secondary (which
    /// replaces an older lame duck, as 2.6 does).
    pub fn install(&mut self, key_id: u8, first: bool) -> Slot {
        if first || self.primary.is_none() {
            self.primary = Some(key_id);
            Slot::Primary
        } else {
            self.secondary = Some(key_id);
            Slot::Secondary
        }
    }

    /// Whether activating `key_id` needs a swap; updates the map if so.
    pub fn activate(&mut self, key_id: u8) -> bool {
        if self.secondary == Some(key_id) {
            std::mem::swap(&mut self.primary, &mut self.secondary);
            true
        } else {
            false
        }
    }

    /// Whether retiring `key_id` deletes the secondary slot; updates the map if so.
    pub fn retire(&mut self, key_id: u8) -> bool {
        if self.secondary == Some(key_id) {
            self.secondary = None;
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
    fn slots_follow_renegotiation() {
        let mut m = SlotMap::default();
        assert_eq!(m.install(0, true), Slot::Primary);
        assert_eq!(m.install(1, false), Slot::Secondary);
        assert!(m.activate(1));
        assert_eq!((m.primary, m.secondary), (Some(1), Some(0)));
        assert_eq!(m.install(2, false), Slot::Secondary); // replaces lame duck 0
        assert!(!m.retire(0));
        assert!(m.activate(2));
        assert!(m.retire(1));
        assert_eq!((m.primary, m.secondary), (Some(2), None));
        assert_eq!(
            Net::v4(
                "10.8.0.0".parse().unwrap(),
                "255.255.255.0".parse().unwrap()
            )
            .prefix_len,
            24
        );
    }
}
