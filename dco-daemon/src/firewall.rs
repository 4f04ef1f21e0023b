//! The conntrack firewall in the data path: [`ConntrackFilter`] adapts the `conntrack` crate
//! to the workers' [`PacketFilter`] hook, and builds the reject replies.

use std::sync::Arc;

use conntrack::{Conntrack, PacketCtx, PeerRef, Timestamp, Verdict as CtVerdict, build_reject};

use crate::filter::{Direction, FilterCtx, PacketFilter, Verdict};

/// Stateful filtering with a rule set loaded in the tracker.
pub struct ConntrackFilter {
    ct: Arc<Conntrack>,
}

impl ConntrackFilter {
    pub fn new(ct: Arc<Conntrack>) -> Self {
        Self { ct }
    }
}

impl PacketFilter for ConntrackFilter {
    #[inline]
    fn check(&self, pkt: &[u8], ctx: &FilterCtx<'_>, reply: &mut [u8]) -> Verdict {
        let now = Timestamp::from_millis(ctx.now_ms);
        let peer = PeerRef::new(ctx.peer.0, ctx.peer.1);
        let pctx = match (ctx.dir, ctx.to) {
            (Direction::FromPeer, _) => PacketCtx::from_peer(peer, now),
            (Direction::ToPeer, _) => PacketCtx::to_peer(peer, now),
            (Direction::BetweenPeers, Some((id, cn))) => {
                PacketCtx::between_peers(peer, PeerRef::new(id, cn), now)
            }
            (Direction::BetweenPeers, None) => PacketCtx::from_peer(peer, now),
        };
        match self.ct.track(pkt, &pctx) {
            CtVerdict::Accept => Verdict::Accept,
            CtVerdict::Drop(_) => Verdict::Drop,
            CtVerdict::Reject(kind) => match build_reject(pkt, kind, reply) {
                Ok(n) => Verdict::Reject(n),
                Err(_) => Verdict::Drop,
            },
        }
    }

    fn name(&self) -> &str {
        "conntrack"
    }
}
