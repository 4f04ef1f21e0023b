//! The conntrack firewall in the data path: [`ConntrackFilter`] adapts the `conntrack` crate
//! to the workers' [`PacketFilter`] hook, and builds the reject replies.

use std::sync::Arc;

use conntrack::{
    BatchItem, Conntrack, PacketCtx, PeerRef, Timestamp, Verdict as CtVerdict, build_reject,
};

use crate::filter::{Direction, FilterCtx, FilterItem, PacketFilter, Verdict};

/// Packets handed to the tracker per `track_batch` call (a stack array of this size).
const CHUNK: usize = 64;

/// Stateful filtering with a rule set loaded in the tracker.
pub struct ConntrackFilter {
    ct: Arc<Conntrack>,
}

impl ConntrackFilter {
    pub fn new(ct: Arc<Conntrack>) -> Self {
        Self { ct }
    }
}

/// The tracker's view of a packet's path through the tunnel.
#[inline]
fn packet_ctx<'a>(ctx: &FilterCtx<'a>) -> PacketCtx<'a> {
    let now = Timestamp::from_millis(ctx.now_ms);
    let peer = PeerRef::new(ctx.peer.0, ctx.peer.1);
    match (ctx.dir, ctx.to) {
        (Direction::FromPeer, _) => PacketCtx::from_peer(peer, now),
        (Direction::ToPeer, _) => PacketCtx::to_peer(peer, now),
        (Direction::BetweenPeers, Some((id, cn))) => {
            PacketCtx::between_peers(peer, PeerRef::new(id, cn), now)
        }
        (Direction::BetweenPeers, None) => PacketCtx::from_peer(peer, now),
    }
}

/// The data path's verdict from the tracker's; a reject's reply is built into `reply`.
#[inline]
fn verdict(v: CtVerdict, pkt: &[u8], reply: &mut [u8]) -> Verdict {
    match v {
        CtVerdict::Accept => Verdict::Accept,
        CtVerdict::Drop(_) => Verdict::Drop,
        CtVerdict::Reject(kind) => match build_reject(pkt, kind, reply) {
            Ok(n) => Verdict::Reject(n),
            Err(_) => Verdict::Drop,
        },
    }
}

impl PacketFilter for ConntrackFilter {
    #[inline]
    fn check(&self, pkt: &[u8], ctx: &FilterCtx<'_>, reply: &mut [u8]) -> Verdict {
        verdict(self.ct.track(pkt, &packet_ctx(ctx)), pkt, reply)
    }

    fn batches(&self) -> bool {
        true
    }

    fn check_batch(
        &self,
        items: &[FilterItem<'_>],
        out: &mut [Verdict],
        reply: &mut [u8],
        on_reject: &mut dyn FnMut(usize, &[u8]),
    ) {
        for (c, (items, out)) in items.chunks(CHUNK).zip(out.chunks_mut(CHUNK)).enumerate() {
            let mut batch = [BatchItem {
                pkt: &[],
                ctx: PacketCtx::to_peer(PeerRef::new(0, ""), Timestamp::from_millis(0)),
            }; CHUNK];
            for (b, it) in batch.iter_mut().zip(items) {
                *b = BatchItem {
                    pkt: it.pkt,
                    ctx: packet_ctx(&it.ctx),
                };
            }
            let mut ct = [CtVerdict::Accept; CHUNK];
            self.ct.track_batch(&batch[..items.len()], &mut ct);
            for (i, ((it, v), o)) in items.iter().zip(ct).zip(out.iter_mut()).enumerate() {
                *o = verdict(v, it.pkt, reply);
                if let Verdict::Reject(n) = *o {
                    on_reject(c * CHUNK + i, &reply[..n]);
                }
            }
        }
    }

    fn name(&self) -> &str {
        "conntrack"
    }
}
