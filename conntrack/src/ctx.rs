//! What the caller tells the tracker about a packet: where it came from,
//! where it goes, and the time.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A coarse monotonic time in milliseconds, supplied by the caller so the
/// packet path never reads a clock. Any epoch works as long as it is the same
/// for every call (e.g. `CLOCK_MONOTONIC_COARSE` read once per batch).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(u64);

impl Timestamp {
    /// From milliseconds.
    pub const fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    /// From whole seconds.
    pub const fn from_secs(s: u64) -> Timestamp {
        Timestamp(s.saturating_mul(1000))
    }

    /// Milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Later by `ms` milliseconds.
    pub const fn add_millis(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}

/// Peer id value that means "no peer" in stored entries.
pub const NO_PEER: u32 = u32::MAX;

/// A tunnel peer: its id and the common name of its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRef<'a> {
    /// The data channel's peer-id.
    pub id: u32,
    /// Certificate common name (rules match on it; borrowed, never copied).
    pub cn: &'a str,
}

impl<'a> PeerRef<'a> {
    /// A peer reference.
    pub const fn new(id: u32, cn: &'a str) -> PeerRef<'a> {
        PeerRef { id, cn }
    }
}

/// Which way a packet crosses the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path<'a> {
    /// Decrypted from a peer, going to the host (TUN).
    FromPeer(PeerRef<'a>),
    /// Read from the host (TUN), going to a peer.
    ToPeer(PeerRef<'a>),
    /// Decrypted from one peer, going to another (client-to-client).
    BetweenPeers {
        /// The sending peer.
        from: PeerRef<'a>,
        /// The receiving peer.
        to: PeerRef<'a>,
    },
}

impl<'a> Path<'a> {
    /// The peer that sent the packet, if any.
    pub fn src_peer(&self) -> Option<PeerRef<'a>> {
        match *self {
            Path::FromPeer(p) => Some(p),
            Path::ToPeer(_) => None,
            Path::BetweenPeers { from, .. } => Some(from),
        }
    }

    /// The peer that receives the packet, if any.
    pub fn dst_peer(&self) -> Option<PeerRef<'a>> {
        match *self {
            Path::FromPeer(_) => None,
            Path::ToPeer(p) => Some(p),
            Path::BetweenPeers { to, .. } => Some(to),
        }
    }
}

/// Per-packet context passed to [`crate::Conntrack::track`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketCtx<'a> {
    /// Which way the packet goes and which peers are involved.
    pub path: Path<'a>,
    /// Current time.
    pub now: Timestamp,
}

impl<'a> PacketCtx<'a> {
    /// A packet decrypted from `peer`, going to the host.
    pub const fn from_peer(peer: PeerRef<'a>, now: Timestamp) -> PacketCtx<'a> {
        PacketCtx {
            path: Path::FromPeer(peer),
            now,
        }
    }

    /// A packet from the host, going to `peer`.
    pub const fn to_peer(peer: PeerRef<'a>, now: Timestamp) -> PacketCtx<'a> {
        PacketCtx {
            path: Path::ToPeer(peer),
            now,
        }
    }

    /// A packet from one peer to another.
    pub const fn between_peers(
        from: PeerRef<'a>,
        to: PeerRef<'a>,
        now: Timestamp,
    ) -> PacketCtx<'a> {
        PacketCtx {
            path: Path::BetweenPeers { from, to },
            now,
        }
    }
}

/// Connection-tracking state of a packet, as rules see it (`ct state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    /// First packet(s) of a connection, original direction, no reply seen yet.
    New,
    /// Part of a connection that has seen traffic both ways (or a reply).
    Established,
    /// An ICMP error about a tracked connection.
    Related,
    /// Malformed, out of window, or impossible in the connection's state.
    Invalid,
    /// Never tracked (IPv6 neighbour discovery and MLD).
    Untracked,
}

impl CtState {
    pub(crate) fn bit(self) -> u8 {
        match self {
            CtState::New => 1,
            CtState::Established => 2,
            CtState::Related => 4,
            CtState::Invalid => 8,
            CtState::Untracked => 16,
        }
    }

    /// Keyword used in rules.
    pub fn name(self) -> &'static str {
        match self {
            CtState::New => "new",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::Invalid => "invalid",
            CtState::Untracked => "untracked",
        }
    }
}

impl fmt::Display for CtState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
