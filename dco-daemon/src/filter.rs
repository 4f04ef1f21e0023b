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

#[derive(Debug, Clone, Copy)]
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

/// One packet of a batch for [`PacketFilter::check_batch`].
#[derive(Debug, Clone, Copy)]
pub struct FilterItem<'a> {
    pub pkt: &'a [u8],
    pub ctx: FilterCtx<'a>,
}

impl FilterItem<'_> {
    /// A placeholder for filling fixed-size arrays.
    pub const EMPTY: FilterItem<'static> = FilterItem {
        pkt: &[],
        ctx: FilterCtx {
            dir: Direction::ToPeer,
            peer: (0, ""),
            to: None,
            now_ms: 0,
        },
    };
}

pub trait PacketFilter: Send + Sync {
    /// Decides on one packet; may write a reject reply into `reply` (at least
    /// [`REPLY_BUF`] bytes).
    fn check(&self, pkt: &[u8], ctx: &FilterCtx<'_>, reply: &mut [u8]) -> Verdict;
    /// Whether [`Self::check_batch`] beats calling [`Self::check`] per packet; the data
    /// paths only gather batches for filters that say so.
    fn batches(&self) -> bool {
        false
    }
    /// Decides on a batch: `out[i]` is what [`Self::check`] would say of `items[i]`, the
    /// items taken in order. Each reject reply is built in `reply` (at least [`REPLY_BUF`]
    /// bytes) and handed to `on_reject` with its item's index before the next is built.
    ///
    /// # Panics
    /// If `out` is shorter than `items`.
    fn check_batch(
        &self,
        items: &[FilterItem<'_>],
        out: &mut [Verdict],
        reply: &mut [u8],
        on_reject: &mut dyn FnMut(usize, &[u8]),
    ) {
        for (i, (it, v)) in items.iter().zip(out.iter_mut()).enumerate() {
            *v = self.check(it.pkt, &it.ctx, reply);
            if let Verdict::Reject(n) = *v {
                on_reject(i, &reply[..n]);
            }
        }
    }
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
