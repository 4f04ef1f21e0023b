//! The firewall hook on both data paths. Conntrack plugs in here; without it every packet
//! passes.

/// Size of the reply buffer a filter may write a reject reply into.
pub const REPLY_BUF: usize = conntrack::REJECT_BUF_LEN;

/// Which way a packet crosses the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Decrypted from a peer, going to the TUN.
    FromPeer,
    /// Read from the TUN, going to a peer.
    ToPeer,
    /// From one peer to another, never leaving the daemon.
    BetweenPeers,
}

pub struct FilterCtx<'a> {
    pub dir: Direction,
    /// The peer (id, common name) the packet came from (FromPeer, BetweenPeers) or goes to
    /// (ToPeer).
    pub peer: (u32, &'a str),
    /// The destination peer of a BetweenPeers packet.
    pub to: Option<(u32, &'a str)>,
    pub now_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    /// Drop, and send back the first `n` bytes of the reply buffer (TCP RST / ICMP
    /// unreachable) to the originator through the tunnel.
    Reject(usize),
}

pub trait PacketFilter: Send + Sync {
    /// Decides on one packet; may write a reject reply into `reply` (at least
    /// [`REPLY_BUF`] bytes).
    fn check(&self, pkt: &[u8], ctx: &FilterCtx<'_>, reply: &mut [u8]) -> Verdict;
    /// A short description for `ovpnctl show`.
    fn name(&self) -> &str;
}

/// No firewall: every packet passes.
#[derive(Debug, Default)]
pub struct PassThrough;

impl PacketFilter for PassThrough {
    #[inline]
    fn check(&self, _pkt: &[u8], _ctx: &FilterCtx<'_>, _reply: &mut [u8]) -> Verdict {
        Verdict::Accept
    }
    fn name(&self) -> &str {
        "none"
    }
}
