//! The per-core data path. A worker owns one UDP socket (SO_REUSEPORT) and one TUN queue
//! (IFF_MULTI_QUEUE) and runs two threads on them:
//! - the receive thread: recvmmsg (+GRO) → demultiplex → decrypt → replay → ping/exit →
//!   source check → firewall → to another peer (re-encrypted in place) or to the TUN (GRO
//!   coalesced writes);
//! - the send thread: TUN read (TSO super-packets split into segments) → firewall → peer
//!   selection → encrypt in place → sendmmsg with UDP GSO.
//!
//! Buffers are allocated when the thread starts; the loops allocate nothing per packet
//! (relayed control packets, which leave the fast path, are copied into a message).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crypto::{DATA_V2_OVERHEAD, DataError, PacketClass, Plaintext, classify, classify_plaintext};
use tun_rs::{GROTable, SyncDevice, VIRTIO_NET_HDR_LEN};

use crate::core::{FilterBox, Shared};
use crate::events::{DelReason, Event, RateLimit};
use crate::filter::{Direction, FilterCtx, FilterItem, REPLY_BUF, Verdict};
use crate::gro::{TunBatch, TunWriter};
use crate::ip;
use crate::peer::{DataKey, Peer};
use crate::stats::{Ctr, Dropped, ThreadCounters};
use crate::table::{IfMode, PeerTable};
use crate::udp::{RxBatch, TxBatch, TxQueue, UdpSocket};

/// Datagrams per recvmmsg (each may be a 64 KiB GRO super-datagram).
const RX_BATCH: usize = 16;
/// Packets per TUN batch.
const TUN_BATCH: usize = 128;
/// Packet buffers of a send thread: it keeps reading from the TUN while at least
/// [`TUN_BATCH`] of them are free (so one read can always split a super-packet of up to
/// `TUN_BATCH` segments, as before), then seals and sends them all in one `sendmmsg` batch.
const TX_BUFS: usize = 2 * TUN_BATCH;
/// Room in front of a TUN packet: our header (24 bytes) covers the virtio header (10-12).
pub const HEADROOM: usize = DATA_V2_OVERHEAD;
/// Largest inner packet we send or accept.
const MAX_INNER: usize = 65_535;

/// One worker's I/O handles.
#[derive(Clone)]
pub struct WorkerIo {
    pub index: usize,
    pub sock: Arc<UdpSocket>,
    pub tun: Arc<SyncDevice>,
}

/// The receive thread's state.
pub struct RxThread {
    shared: Arc<Shared>,
    io: WorkerIo,
    slot: usize,
    rx: RxBatch,
    txq: TxQueue,
    tun_writer: TunWriter,
    relay: RateLimit,
    reply: Vec<u8>,
    reject_q: TxQueue,
    metas: Vec<BatchMeta>,
    hdrs: Vec<Result<crypto::DataHeader, DataError>>,
    oks: Vec<bool>,
    held: Vec<Held>,
    verdicts: Vec<Verdict>,
}

/// A packet through [`RxPath::open_and_admit`]: its peer, the inner packet's range, and the
/// peer it goes to (None: the TUN).
pub type Admitted<'a> = (&'a Arc<Peer>, std::ops::Range<usize>, Option<&'a Arc<Peer>>);

/// A received packet waiting for its batch's firewall verdict.
#[derive(Debug, Clone)]
struct Held {
    /// Segment number in the receive batch.
    seg: usize,
    peer: u32,
    /// Client-to-client destination.
    to: Option<u32>,
    payload: std::ops::Range<usize>,
}

/// A mutable chunk given up for a shared one of the same lifetime.
fn frozen(b: &mut [u8]) -> &[u8] {
    b
}

impl RxThread {
    pub fn new(shared: Arc<Shared>, io: WorkerIo, slot: usize) -> Self {
        let relay = RateLimit::new(shared.config.relay_rate, shared.config.relay_burst);
        Self {
            shared,
            io,
            slot,
            rx: RxBatch::new(RX_BATCH),
            txq: TxQueue::new(RX_BATCH * 64),
            tun_writer: TunWriter::new(TUN_BATCH),
            relay,
            reply: vec![0u8; DATA_V2_OVERHEAD + REPLY_BUF],
            reject_q: TxQueue::new(1),
            metas: Vec::with_capacity(RX_BATCH * 64),
            hdrs: Vec::with_capacity(RX_BATCH * 64),
            oks: Vec::with_capacity(RX_BATCH * 64),
            held: Vec::with_capacity(RX_BATCH * 64),
            verdicts: Vec::with_capacity(RX_BATCH * 64),
        }
    }

    pub fn run(mut self) {
        while !self.shared.shutdown.load(Ordering::Relaxed) {
            match self.rx.recv(&self.io.sock) {
                Ok(0) => continue,
                Ok(_) => self.process_batch(),
                Err(e) => {
                    tracing::warn!(worker = self.io.index, "UDP receive failed: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
    }

    fn process_batch(&mut self) {
        if let Some(backend) = self.shared.batch.get().cloned() {
            return self.process_batch_offload(&*backend);
        }
        if self.shared.filter().batches() {
            return self.process_batch_filtered();
        }
        let Self {
            shared,
            io,
            slot,
            rx,
            txq,
            tun_writer,
            relay,
            reply,
            reject_q,
            ..
        } = self;
        let now = shared.now_ms();
        let table = shared.table.load();
        let ctr = shared.counters.slot(*slot);
        let mut tx = txq.batch();
        let mut tunb = tun_writer.batch();
        let mut ctx = RxPath {
            shared,
            table: &table,
            ctr,
            slot: *slot,
            now,
            relay,
            reply,
            local_port: io.sock.local_addr().port(),
        };
        for (meta, data) in rx.datagrams_mut() {
            let Some(src) = meta.src else { continue };
            let seg = meta.segment.max(1);
            for pkt in data.chunks_mut(seg) {
                ctr.add(Ctr::TransportBytesRecv, pkt.len() as u64);
                let action = ctx.packet(pkt, src, meta.dst_ip);
                dispatch(
                    action, pkt, ctx.reply, &mut tunb, &mut tx, reject_q, io, ctr,
                );
            }
        }
        if !tunb.is_empty() {
            flush_tun(&mut tunb, &io.tun, ctr);
        }
        if !tx.is_empty() {
            flush_udp(&mut tx, &io.sock, ctr);
        }
    }

    /// The receive batch with a batching firewall loaded: decrypt and check every packet up
    /// to the firewall, one firewall call per lane of packets (conntrack prefetches them),
    /// then deliver the accepted ones in arrival order.
    fn process_batch_filtered(&mut self) {
        let Self {
            shared,
            io,
            slot,
            rx,
            txq,
            tun_writer,
            relay,
            reply,
            reject_q,
            held,
            verdicts,
            ..
        } = self;
        let now = shared.now_ms();
        let table = shared.table.load();
        let ctr = shared.counters.slot(*slot);
        let filter = shared.filter();
        let mut ctx = RxPath {
            shared,
            table: &table,
            ctr,
            slot: *slot,
            now,
            relay,
            reply,
            local_port: io.sock.local_addr().port(),
        };
        // 1. Everything up to the firewall.
        held.clear();
        let mut seg = 0usize;
        for (meta, data) in rx.datagrams_mut() {
            let Some(src) = meta.src else { continue };
            for pkt in data.chunks_mut(meta.segment.max(1)) {
                ctr.add(Ctr::TransportBytesRecv, pkt.len() as u64);
                if let Some((peer, payload, to)) = ctx.open_and_admit(pkt, src, meta.dst_ip) {
                    held.push(Held {
                        seg,
                        peer: peer.id.get(),
                        to: to.map(|p| p.id.get()),
                        payload,
                    });
                }
                seg += 1;
            }
        }
        if held.is_empty() {
            return;
        }
        // 2. The firewall, a lane at a time; a reject's reply is sealed for the sender and
        // sent back at once.
        verdicts.clear();
        verdicts.resize(held.len(), Verdict::Drop);
        {
            let mut scratch = [0u8; REPLY_BUF];
            let mut items = [FilterItem::EMPTY; FILTER_LANE];
            let (mut m, mut base, mut j, mut seg) = (0usize, 0usize, 0usize, 0usize);
            let mut run = |items: &[FilterItem<'_>], base: usize, ctx: &mut RxPath<'_>| {
                filter.check_batch(
                    items,
                    &mut verdicts[base..base + items.len()],
                    &mut scratch,
                    &mut |i, r| {
                        let Some(peer) = table.peer(held[base + i].peer) else {
                            return;
                        };
                        ctx.reply[DATA_V2_OVERHEAD..DATA_V2_OVERHEAD + r.len()].copy_from_slice(r);
                        if let RxAction::Reject(dst, local, len) = ctx.seal_reject(peer, r.len()) {
                            let mut b = reject_q.batch();
                            b.push(dst, local, &ctx.reply[..len]);
                            flush_udp(&mut b, &io.sock, ctr);
                        }
                    },
                );
            };
            for (meta, data) in rx.datagrams_mut() {
                if meta.src.is_none() {
                    continue;
                }
                for pkt in data.chunks_mut(meta.segment.max(1)) {
                    let pkt = frozen(pkt);
                    if let Some(h) = held.get(j).filter(|h| h.seg == seg) {
                        j += 1;
                        // The table snapshot is the one phase 1 used: the peers are there.
                        if let Some(peer) = table.peer(h.peer) {
                            let to = h.to.and_then(|id| table.peer(id));
                            items[m] = FilterItem {
                                pkt: &pkt[h.payload.clone()],
                                ctx: RxPath::filter_ctx(peer, to, now),
                            };
                        } else {
                            items[m] = FilterItem::EMPTY;
                        }
                        m += 1;
                        if m == FILTER_LANE {
                            run(&items[..m], base, &mut ctx);
                            base += m;
                            m = 0;
                        }
                    }
                    seg += 1;
                }
            }
            if m > 0 {
                run(&items[..m], base, &mut ctx);
            }
        }
        // 3. Deliver what was accepted, in arrival order.
        let mut tx = txq.batch();
        let mut tunb = tun_writer.batch();
        let (mut j, mut seg) = (0usize, 0usize);
        for (meta, data) in rx.datagrams_mut() {
            if meta.src.is_none() {
                continue;
            }
            for pkt in data.chunks_mut(meta.segment.max(1)) {
                let this = seg;
                seg += 1;
                let Some(h) = held.get(j).filter(|h| h.seg == this) else {
                    continue;
                };
                let v = verdicts[j];
                j += 1;
                let action = match v {
                    Verdict::Accept => {
                        let to = h.to.and_then(|id| table.peer(id));
                        ctx.deliver(pkt, h.payload.clone(), to)
                    }
                    Verdict::Drop | Verdict::Reject(_) => {
                        ctr.drop(Dropped::Firewall);
                        RxAction::None
                    }
                };
                dispatch(
                    action, pkt, ctx.reply, &mut tunb, &mut tx, reject_q, io, ctr,
                );
            }
        }
        if !tunb.is_empty() {
            flush_tun(&mut tunb, &io.tun, ctr);
        }
        if !tx.is_empty() {
            flush_udp(&mut tx, &io.sock, ctr);
        }
    }

    /// The receive batch with the AEAD of every data packet done in one call of a batch
    /// backend (the GPU): demultiplex all, open all, then deliver all, in order.
    fn process_batch_offload(&mut self, backend: &dyn crypto::BatchAead) {
        let Self {
            shared,
            io,
            slot,
            rx,
            txq,
            tun_writer,
            relay,
            reply,
            reject_q,
            metas,
            hdrs,
            oks,
            ..
        } = self;
        let now = shared.now_ms();
        let table = shared.table.load();
        let ctr = shared.counters.slot(*slot);
        let mut ctx = RxPath {
            shared,
            table: &table,
            ctr,
            slot: *slot,
            now,
            relay,
            reply,
            local_port: io.sock.local_addr().port(),
        };
        // 1. Demultiplex: which segments go down the fast path, with which peer and key.
        metas.clear();
        let mut seg_no = 0usize;
        for (meta, data) in rx.datagrams_mut() {
            let Some(src) = meta.src else { continue };
            for pkt in data.chunks_mut(meta.segment.max(1)) {
                ctr.add(Ctr::TransportBytesRecv, pkt.len() as u64);
                if let Some((peer, key)) = ctx.lookup(pkt, src, meta.dst_ip) {
                    metas.push(BatchMeta {
                        seg: seg_no,
                        peer,
                        key,
                        src,
                        dst_ip: meta.dst_ip,
                    });
                }
                seg_no += 1;
            }
        }
        if metas.is_empty() {
            return;
        }
        // 2. One AEAD call for all of them (one allocation per batch for the operations,
        // which borrow the packets).
        hdrs.clear();
        oks.clear();
        {
            let mut ops = Vec::with_capacity(metas.len());
            let (mut j, mut seg_no) = (0usize, 0usize);
            for (meta, data) in rx.datagrams_mut() {
                if meta.src.is_none() {
                    continue;
                }
                for pkt in data.chunks_mut(meta.segment.max(1)) {
                    if j < metas.len() && metas[j].seg == seg_no {
                        match metas[j].key.dec.prepare_open(pkt) {
                            Ok((op, h)) => {
                                ops.push(op);
                                hdrs.push(Ok(h));
                            }
                            Err(e) => hdrs.push(Err(e)),
                        }
                        j += 1;
                    }
                    seg_no += 1;
                }
            }
            backend.open(&mut ops);
            oks.extend(ops.iter().map(|o| o.ok));
        }
        // 3. Replay check and delivery, in arrival order.
        let mut tx = txq.batch();
        let mut tunb = tun_writer.batch();
        let (mut j, mut k, mut seg_no) = (0usize, 0usize, 0usize);
        for (meta, data) in rx.datagrams_mut() {
            if meta.src.is_none() {
                continue;
            }
            for pkt in data.chunks_mut(meta.segment.max(1)) {
                let this = seg_no;
                seg_no += 1;
                if j >= metas.len() || metas[j].seg != this {
                    continue;
                }
                let m = &metas[j];
                let h = hdrs[j];
                j += 1;
                let action = match h {
                    Err(e) => {
                        ctr.crypto_drop(e.reason());
                        ctr.add(Ctr::LostDataIn, 1);
                        RxAction::None
                    }
                    Ok(h) => {
                        let ok = oks[k];
                        k += 1;
                        match m.key.dec.finish_open(&h, pkt.len(), ok) {
                            Ok(range) => ctx.after_open(&m.peer, pkt, range, m.src, m.dst_ip),
                            Err(e) => {
                                ctr.crypto_drop(e.reason());
                                ctr.add(Ctr::LostDataIn, 1);
                                RxAction::None
                            }
                        }
                    }
                };
                dispatch(
                    action, pkt, ctx.reply, &mut tunb, &mut tx, reject_q, io, ctr,
                );
            }
        }
        if !tunb.is_empty() {
            flush_tun(&mut tunb, &io.tun, ctr);
        }
        if !tx.is_empty() {
            flush_udp(&mut tx, &io.sock, ctr);
        }
    }
}

/// A fast-path packet of a receive batch handed to a batch backend.
struct BatchMeta {
    seg: usize,
    peer: Arc<Peer>,
    key: Arc<DataKey>,
    src: SocketAddr,
    dst_ip: Option<IpAddr>,
}

/// Carries out what the receive path decided for one packet.
#[allow(clippy::too_many_arguments)]
#[inline]
fn dispatch<'d>(
    action: RxAction,
    pkt: &'d [u8],
    reply: &[u8],
    tunb: &mut TunBatch<'_, 'd>,
    tx: &mut TxBatch<'_, 'd>,
    reject_q: &mut TxQueue,
    io: &WorkerIo,
    ctr: &ThreadCounters,
) {
    match action {
        RxAction::None => {}
        RxAction::Tun(range) => {
            if tunb.is_full() {
                flush_tun(tunb, &io.tun, ctr);
            }
            tunb.push(&pkt[range]);
        }
        RxAction::Udp(dst, local, len) => {
            if tx.is_full() {
                flush_udp(tx, &io.sock, ctr);
            }
            tx.push(dst, local, &pkt[..len]);
        }
        RxAction::Reject(dst, local, len) => {
            let mut b = reject_q.batch();
            b.push(dst, local, &reply[..len]);
            flush_udp(&mut b, &io.sock, ctr);
        }
    }
}

/// Writes a batch of decrypted packets to the TUN (TCP segments coalesced).
fn flush_tun(b: &mut TunBatch<'_, '_>, tun: &SyncDevice, ctr: &ThreadCounters) {
    let (_, errors, err) = b.flush(tun.as_raw_fd());
    if errors > 0 {
        for _ in 0..errors {
            ctr.drop(Dropped::TunWrite);
        }
        if let Some(e) = err {
            tracing::debug!("TUN write failed: {e}");
        }
    }
}

fn write_tun(tun: &SyncDevice, gro: &mut GROTable, bufs: &mut [Vec<u8>], ctr: &ThreadCounters) {
    if let Err(e) = tun.send_multiple(gro, bufs, HEADROOM) {
        ctr.drop(Dropped::TunWrite);
        tracing::debug!("TUN write failed: {e}");
    }
}

fn flush_udp(tx: &mut TxBatch<'_, '_>, sock: &UdpSocket, ctr: &ThreadCounters) {
    match tx.flush(sock) {
        Ok(rep) => {
            ctr.add(Ctr::SentData, rep.datagrams as u64);
            ctr.add(Ctr::TransportBytesSent, rep.bytes as u64);
            if rep.errors > 0 {
                for _ in 0..rep.errors {
                    ctr.drop(Dropped::UdpSend);
                    ctr.add(Ctr::LostDataOut, 1);
                }
                if let Some(e) = &rep.last_error {
                    tracing::debug!(datagrams = rep.errors, "UDP send failed: {e}");
                }
            }
        }
        Err(e) => {
            ctr.drop(Dropped::UdpSend);
            tracing::debug!("UDP send failed: {e}");
        }
    }
}

/// What to do with a received datagram after [`RxPath::packet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RxAction {
    /// Consumed (dropped and counted, relayed, a keepalive, ...).
    None,
    /// Plaintext at this range goes to the TUN.
    Tun(std::ops::Range<usize>),
    /// The packet was re-encrypted in place for another peer: send `len` bytes.
    Udp(SocketAddr, Option<IpAddr>, usize),
    /// The firewall rejected it: send the first `len` bytes of [`RxPath::reply`] (sealed for
    /// the sender) to this address.
    Reject(SocketAddr, Option<IpAddr>, usize),
}

/// The receive path for one datagram, free of I/O: the thread around it does the recvmmsg,
/// the TUN writes and the sends. Benchmarks and tests drive it directly.
pub struct RxPath<'a> {
    pub shared: &'a Shared,
    pub table: &'a PeerTable,
    pub ctr: &'a ThreadCounters,
    /// This thread's counter slot.
    pub slot: usize,
    /// Coarse time for this batch ([`Shared::now_ms`]).
    pub now: u64,
    pub relay: &'a mut RateLimit,
    /// Where reject replies are built: `DATA_V2_OVERHEAD + REPLY_BUF` bytes.
    pub reply: &'a mut Vec<u8>,
    /// Our UDP port (the local address of relayed packets).
    pub local_port: u16,
}

impl<'a> RxPath<'a> {
    /// Processes one datagram in place: demultiplex, decrypt, replay check, keepalive,
    /// source check, MSS clamp, firewall, route.
    #[inline]
    pub fn packet(&mut self, pkt: &mut [u8], src: SocketAddr, dst_ip: Option<IpAddr>) -> RxAction {
        let Some((peer, key_id)) = self.demux(pkt, src, dst_ip) else {
            return RxAction::None;
        };
        let keys = peer.keys.load();
        let Some(key) = keys.for_rx(key_id) else {
            self.ctr.drop(Dropped::NoKey);
            self.ctr.add(Ctr::LostDataIn, 1);
            return RxAction::None;
        };
        match key.dec.open(pkt) {
            Ok(o) => self.after_open(peer, pkt, o.payload, src, dst_ip),
            Err(e) => {
                self.ctr.crypto_drop(e.reason());
                self.ctr.add(Ctr::LostDataIn, 1);
                RxAction::None
            }
        }
    }

    /// Demultiplexing: a DATA_V2 packet of a known peer with an installed key-id gives the
    /// peer and key; anything else is relayed to the control process (or dropped, counted).
    /// (Shared handles, for batches whose AEAD runs after the lookup.)
    #[inline]
    pub fn lookup(
        &mut self,
        pkt: &[u8],
        src: SocketAddr,
        dst_ip: Option<IpAddr>,
    ) -> Option<(Arc<Peer>, Arc<DataKey>)> {
        let (peer, key_id) = self.demux(pkt, src, dst_ip)?;
        let keys = peer.keys.load();
        let Some(key) = keys.for_rx_arc(key_id) else {
            self.ctr.drop(Dropped::NoKey);
            self.ctr.add(Ctr::LostDataIn, 1);
            return None;
        };
        Some((peer.clone(), key.clone()))
    }

    /// [`Self::packet`] up to the firewall: demultiplex, decrypt, replay check, then
    /// [`Self::admit`]. Returns the peer, the inner packet's range and its destination peer
    /// (None: the TUN), or `None` when the packet ends here (counted, or relayed).
    #[inline]
    pub fn open_and_admit(
        &mut self,
        pkt: &mut [u8],
        src: SocketAddr,
        dst_ip: Option<IpAddr>,
    ) -> Option<Admitted<'a>> {
        let (peer, key_id) = self.demux(pkt, src, dst_ip)?;
        let keys = peer.keys.load();
        let Some(key) = keys.for_rx(key_id) else {
            self.ctr.drop(Dropped::NoKey);
            self.ctr.add(Ctr::LostDataIn, 1);
            return None;
        };
        match key.dec.open(pkt) {
            Ok(o) => {
                let (payload, to) = self.admit(peer, pkt, o.payload, src, dst_ip)?;
                Some((peer, payload, to))
            }
            Err(e) => {
                self.ctr.crypto_drop(e.reason());
                self.ctr.add(Ctr::LostDataIn, 1);
                None
            }
        }
    }

    /// The peer of a DATA_V2 packet; anything else is relayed.
    #[inline]
    fn demux(
        &mut self,
        pkt: &[u8],
        src: SocketAddr,
        dst_ip: Option<IpAddr>,
    ) -> Option<(&'a Arc<Peer>, crypto::KeyId)> {
        let table: &'a PeerTable = self.table;
        let PacketClass::DataV2 { peer_id, key_id } = classify(pkt) else {
            self.relay(pkt, src, dst_ip);
            return None;
        };
        let Some(peer) = table.peer(peer_id.get()) else {
            // Not ours (yet): the control process decides (if_ovpn passes it up too).
            self.relay(pkt, src, dst_ip);
            return None;
        };
        Some((peer, key_id))
    }

    /// Everything after a successful decryption and replay check: keepalive/OCC, source
    /// check, MSS clamp, firewall, route.
    #[inline]
    pub fn after_open(
        &mut self,
        peer: &Peer,
        pkt: &mut [u8],
        payload: std::ops::Range<usize>,
        src: SocketAddr,
        dst_ip: Option<IpAddr>,
    ) -> RxAction {
        let Some((payload, to_peer)) = self.admit(peer, pkt, payload, src, dst_ip) else {
            return RxAction::None;
        };
        let fctx = Self::filter_ctx(peer, to_peer, self.now);
        let verdict = self.shared.filter().check(
            &pkt[payload.clone()],
            &fctx,
            &mut self.reply[DATA_V2_OVERHEAD..],
        );
        match verdict {
            Verdict::Accept => self.deliver(pkt, payload, to_peer),
            Verdict::Drop => {
                self.ctr.drop(Dropped::Firewall);
                RxAction::None
            }
            Verdict::Reject(n) => {
                self.ctr.drop(Dropped::Firewall);
                self.seal_reject(peer, n)
            }
        }
    }

    /// The part of [`Self::after_open`] before the firewall: keepalive/OCC, source check,
    /// padding trim, MSS clamp, client-to-client route. Returns the inner packet's range and
    /// the peer it goes to (None: the TUN), or `None` when the packet ends here (counted).
    #[inline]
    pub fn admit(
        &mut self,
        peer: &Peer,
        pkt: &mut [u8],
        payload: std::ops::Range<usize>,
        src: SocketAddr,
        dst_ip: Option<IpAddr>,
    ) -> Option<(std::ops::Range<usize>, Option<&'a Arc<Peer>>)> {
        self.ctr.add(Ctr::RecvData, 1);
        peer.touch_rx(self.now);
        let ep = peer.endpoint();
        if ep.remote != src {
            self.float(peer, src, dst_ip);
        }
        let plen = payload.len();
        peer.counters.add_in(self.slot, 1, plen as u64);
        match classify_plaintext(&pkt[payload.clone()]) {
            Plaintext::Ping => return None,
            Plaintext::OccExit => {
                self.shared
                    .delete_peer_from_datapath(peer.id.get(), DelReason::Exit);
                return None;
            }
            Plaintext::Occ(_) => {
                self.ctr.drop(Dropped::Occ);
                return None;
            }
            Plaintext::Other => {
                self.ctr.drop(Dropped::NotIp);
                return None;
            }
            Plaintext::Ipv4 | Plaintext::Ipv6 => {}
        }
        let inner = &pkt[payload.clone()];
        let Some((isrc, idst)) = ip::addrs(inner) else {
            self.ctr.drop(Dropped::BadIpHeader);
            return None;
        };
        // A server checks that a client only sends from its own addresses; a client
        // accepts whatever its server routes to it, as OpenVPN does.
        if self.table.mode() == IfMode::Multipoint && !peer.allows_source(isrc) {
            self.ctr.drop(Dropped::BadSource);
            return None;
        }
        // Trim link padding beyond the IP header's own length.
        let payload = payload.start..payload.start + ip::declared_len(inner);
        crate::mss::clamp(
            &mut pkt[payload.clone()],
            self.shared.config.mssfix,
            src.is_ipv6(),
        );
        let table: &'a PeerTable = self.table;
        let to_peer = if self.shared.client_to_client.load(Ordering::Relaxed) {
            table.route(idst).filter(|p| p.id != peer.id)
        } else {
            None
        };
        Some((payload, to_peer))
    }

    /// What the firewall is told of a packet from `peer` (to `to_peer`, or the TUN).
    #[inline]
    fn filter_ctx<'p>(peer: &'p Peer, to_peer: Option<&'p Arc<Peer>>, now: u64) -> FilterCtx<'p> {
        FilterCtx {
            dir: if to_peer.is_some() {
                Direction::BetweenPeers
            } else {
                Direction::FromPeer
            },
            peer: (peer.id.get(), &peer.common_name),
            to: to_peer.map(|p| (p.id.get(), p.common_name.as_str())),
            now_ms: now,
        }
    }

    /// The reply (TCP RST / ICMP unreachable) at `reply[DATA_V2_OVERHEAD..][..n]`, sealed
    /// for `peer`, goes back through the tunnel to the peer that sent the packet.
    #[inline]
    fn seal_reject(&mut self, peer: &Peer, n: usize) -> RxAction {
        if let Some(wire) = seal_for(peer, self.reply, n, self.shared, self.ctr) {
            let ep = peer.endpoint();
            return RxAction::Reject(ep.remote, ep.local, wire);
        }
        RxAction::None
    }

    /// After the firewall accepted: to the TUN, or re-sealed for the destination peer.
    #[inline]
    pub fn deliver(
        &mut self,
        pkt: &mut [u8],
        payload: std::ops::Range<usize>,
        to_peer: Option<&Arc<Peer>>,
    ) -> RxAction {
        self.ctr.add(Ctr::TunnelBytesRecv, payload.len() as u64);
        let Some(dest) = to_peer else {
            return RxAction::Tun(payload);
        };
        // Client-to-client: the plaintext already sits behind 24 bytes of headroom (the old
        // header and tag), so it is re-sealed in place for the destination peer.
        let len = payload.len();
        if payload.start != DATA_V2_OVERHEAD {
            pkt.copy_within(payload.clone(), DATA_V2_OVERHEAD);
        }
        match seal_for(dest, pkt, len, self.shared, self.ctr) {
            Some(wire) => {
                dest.counters.add_out(self.slot, 1, len as u64);
                dest.touch_tx(self.now);
                self.ctr.add(Ctr::TunnelBytesSent, len as u64);
                let ep = dest.endpoint();
                RxAction::Udp(ep.remote, ep.local, wire)
            }
            None => RxAction::None,
        }
    }

    fn float(&mut self, peer: &Peer, src: SocketAddr, dst_ip: Option<IpAddr>) {
        let local = dst_ip.or(peer.endpoint().local);
        peer.set_endpoint(crate::peer::Endpoint { remote: src, local });
        tracing::info!(peer = peer.id.get(), %src, "peer floated");
        self.shared.sink.emit(Event::Float {
            peer_id: peer.id.get(),
            remote: src,
            local,
        });
    }

    fn relay(&mut self, pkt: &[u8], src: SocketAddr, dst_ip: Option<IpAddr>) {
        self.ctr.add(Ctr::RecvCtrl, 1);
        if !self.shared.sink.has_control_listener() {
            self.ctr.drop(Dropped::RelayNoListener);
            self.ctr.add(Ctr::LostCtrlIn, 1);
            return;
        }
        if !self.relay.allow(self.now) {
            self.ctr.drop(Dropped::RelayRate);
            self.ctr.add(Ctr::LostCtrlIn, 1);
            return;
        }
        let local = dst_ip.map(|ip| SocketAddr::new(ip, self.local_port));
        let ev = Event::ControlPacket {
            remote: src,
            local,
            data: pkt.to_vec(),
        };
        if !self.shared.sink.emit(ev) {
            self.ctr.drop(Dropped::RelayFull);
            self.ctr.add(Ctr::LostCtrlIn, 1);
        }
    }
}

/// Seals `buf[24..24+len]` for `peer` with its primary key; returns the wire length.
#[inline]
fn seal_for(
    peer: &Peer,
    buf: &mut [u8],
    len: usize,
    shared: &Shared,
    ctr: &ThreadCounters,
) -> Option<usize> {
    let keys = peer.keys.load();
    let Some(key) = keys.for_tx() else {
        ctr.drop(Dropped::NoKey);
        ctr.add(Ctr::LostDataOut, 1);
        return None;
    };
    match key.enc.seal_v2(peer.id, buf, len) {
        Ok(s) => {
            if s.rotate_now && !key.rotate_notified.swap(true, Ordering::Relaxed) {
                shared.sink.emit(Event::RotateKey {
                    peer_id: peer.id.get(),
                    key_id: key.key_id.get(),
                });
            }
            Some(s.len)
        }
        Err(DataError::PacketIdExhausted) => {
            ctr.drop(Dropped::KeyExhausted);
            ctr.add(Ctr::LostDataOut, 1);
            None
        }
        Err(e) => {
            ctr.crypto_drop(e.reason());
            ctr.add(Ctr::LostDataOut, 1);
            None
        }
    }
}

/// The send thread's state.
pub struct TxThread {
    shared: Arc<Shared>,
    io: WorkerIo,
    slot: usize,
    orig: Vec<u8>,
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    txq: TxQueue,
    reply: Vec<u8>,
    reject_buf: Vec<Vec<u8>>,
    gro: GROTable,
    actions: Vec<TxAction>,
}

impl TxThread {
    pub fn new(shared: Arc<Shared>, io: WorkerIo, slot: usize) -> Self {
        Self {
            shared,
            io,
            slot,
            orig: vec![0u8; VIRTIO_NET_HDR_LEN + MAX_INNER],
            bufs: (0..TX_BUFS).map(|_| vec![0u8; HEADROOM + 2048]).collect(),
            sizes: vec![0; TX_BUFS],
            txq: TxQueue::new(TX_BUFS),
            reply: vec![0u8; REPLY_BUF],
            reject_buf: vec![Vec::with_capacity(HEADROOM + REPLY_BUF)],
            gro: GROTable::default(),
            actions: vec![TxAction::None; TX_BUFS],
        }
    }

    pub fn run(mut self) {
        if let Err(e) = self.io.tun.set_nonblocking(true) {
            tracing::error!("TUN queue cannot be non-blocking: {e}");
            return;
        }
        while !self.shared.shutdown.load(Ordering::Relaxed) {
            // Read until the TUN queue is empty or the buffers are half used: packets the
            // kernel did not bundle (UDP, ICMP, small TCP) arrive one per read, and this
            // batches them into one seal-and-sendmmsg pass instead of one per packet.
            let mut n = 0;
            let mut idle = false;
            while n + TUN_BATCH <= TX_BUFS {
                match self.io.tun.recv_multiple(
                    &mut self.orig,
                    &mut self.bufs[n..],
                    &mut self.sizes[n..],
                    HEADROOM,
                ) {
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        idle = n == 0;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.shared.counters.slot(self.slot).drop(Dropped::TunRead);
                        tracing::debug!("TUN read failed: {e}");
                        break;
                    }
                }
            }
            if n > 0 {
                self.process(n);
            } else if idle {
                wait_readable(self.io.tun.as_raw_fd(), 200);
            }
        }
    }

    fn process(&mut self, n: usize) {
        let Self {
            shared,
            io,
            slot,
            bufs,
            sizes,
            txq,
            reply,
            reject_buf,
            gro,
            actions,
            ..
        } = self;
        let now = shared.now_ms();
        let table = shared.table.load();
        let ctr = shared.counters.slot(*slot);
        let filter = shared.filter();
        let mut path = TxPath {
            shared,
            table: &table,
            filter: &filter,
            ctr,
            slot: *slot,
            now,
            reply,
        };
        // A firewall reject's reply goes back to the host that sent the packet, through
        // the TUN.
        let mut to_tun = |r: &[u8]| {
            let b = &mut reject_buf[0];
            b.clear();
            b.resize(HEADROOM, 0);
            b.extend_from_slice(r);
            write_tun(&io.tun, gro, reject_buf, ctr);
        };
        path.batch(&mut bufs[..n], &sizes[..n], &mut actions[..n], &mut to_tun);
        let mut tx = txq.batch();
        for (buf, act) in bufs.iter().zip(actions.iter()).take(n) {
            if let TxAction::Udp(dst, local, len) = *act {
                tx.push(dst, local, &buf[..len]);
            }
        }
        if !tx.is_empty() {
            flush_udp(&mut tx, &io.sock, ctr);
        }
    }
}

/// What to do with a packet read from the TUN after [`TxPath::packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxAction {
    /// Consumed (dropped and counted).
    None,
    /// Sealed in place: send the first `len` bytes of the buffer to this peer address.
    Udp(SocketAddr, Option<IpAddr>, usize),
    /// The firewall rejected it: write the first `n` bytes of [`TxPath::reply`] to the TUN.
    RejectToTun(usize),
}

/// The send path for one packet read from the TUN, free of I/O.
pub struct TxPath<'a> {
    pub shared: &'a Shared,
    pub table: &'a PeerTable,
    pub filter: &'a FilterBox,
    pub ctr: &'a ThreadCounters,
    pub slot: usize,
    pub now: u64,
    /// Where reject replies are built (`REPLY_BUF` bytes).
    pub reply: &'a mut Vec<u8>,
}

/// Packets the send path gathers for one firewall batch (stack arrays of this size).
const FILTER_LANE: usize = 64;

impl<'a> TxPath<'a> {
    /// Processes one packet at `buf[HEADROOM..HEADROOM + size]`: peer selection, firewall,
    /// MSS clamp, encryption in place (the wire packet starts at `buf[0]`).
    #[inline]
    pub fn packet(&mut self, buf: &mut [u8], size: usize) -> TxAction {
        let Some(peer) = self.route(buf, size) else {
            return TxAction::None;
        };
        let fctx = Self::filter_ctx(peer, self.now);
        match self
            .filter
            .check(&buf[HEADROOM..HEADROOM + size], &fctx, self.reply)
        {
            Verdict::Accept => self.forward(buf, size, peer),
            Verdict::Drop => {
                self.ctr.drop(Dropped::Firewall);
                TxAction::None
            }
            Verdict::Reject(n) => {
                self.ctr.drop(Dropped::Firewall);
                TxAction::RejectToTun(n)
            }
        }
    }

    /// Processes the packets at `bufs[k][HEADROOM..HEADROOM + sizes[k]]` as [`Self::packet`]
    /// would one by one, with one firewall call per batch when the filter
    /// [batches](crate::filter::PacketFilter::batches) (conntrack prefetches the whole
    /// batch's entries). `actions[k]` receives packet k's action; a firewall reject's reply
    /// is handed to `on_reject` (to write to the TUN) instead, and its action is `None`.
    pub fn batch(
        &mut self,
        bufs: &mut [Vec<u8>],
        sizes: &[usize],
        actions: &mut [TxAction],
        on_reject: &mut dyn FnMut(&[u8]),
    ) {
        if !self.filter.batches() {
            for ((buf, &size), act) in bufs.iter_mut().zip(sizes).zip(actions.iter_mut()) {
                *act = match self.packet(buf, size) {
                    TxAction::RejectToTun(n) => {
                        on_reject(&self.reply[..n]);
                        TxAction::None
                    }
                    a => a,
                };
            }
            return;
        }
        let ctr = self.ctr;
        for ((bufs, sizes), actions) in bufs
            .chunks_mut(FILTER_LANE)
            .zip(sizes.chunks(FILTER_LANE))
            .zip(actions.chunks_mut(FILTER_LANE))
        {
            // 1. Peer selection for every packet; the routed ones become filter items.
            let mut peers: [Option<&'a Arc<Peer>>; FILTER_LANE] = [None; FILTER_LANE];
            let mut verdicts = [Verdict::Drop; FILTER_LANE];
            {
                let mut items = [FilterItem::EMPTY; FILTER_LANE];
                let mut m = 0;
                for ((buf, &size), peer) in bufs.iter().zip(sizes).zip(peers.iter_mut()) {
                    *peer = self.route(buf, size);
                    if let Some(p) = *peer {
                        items[m] = FilterItem {
                            pkt: &buf[HEADROOM..HEADROOM + size],
                            ctx: Self::filter_ctx(p, self.now),
                        };
                        m += 1;
                    }
                }
                // 2. One firewall call for the batch.
                self.filter.check_batch(
                    &items[..m],
                    &mut verdicts[..m],
                    self.reply,
                    &mut |_, reply| on_reject(reply),
                );
            }
            // 3. Each packet in order: forward what was accepted.
            let mut verdict = verdicts.iter();
            for (((buf, &size), peer), act) in bufs
                .iter_mut()
                .zip(sizes)
                .zip(peers)
                .zip(actions.iter_mut())
            {
                let Some(peer) = peer else {
                    *act = TxAction::None;
                    continue;
                };
                *act = match verdict.next() {
                    Some(Verdict::Accept) => self.forward(buf, size, peer),
                    _ => {
                        ctr.drop(Dropped::Firewall);
                        TxAction::None
                    }
                };
            }
        }
    }

    /// The peer a packet goes to, or `None` (dropped and counted).
    #[inline]
    fn route(&self, buf: &[u8], size: usize) -> Option<&'a Arc<Peer>> {
        let table: &'a PeerTable = self.table;
        let ctr = self.ctr;
        let Some(inner) = buf.get(HEADROOM..HEADROOM + size) else {
            ctr.drop(Dropped::Oversize);
            return None;
        };
        let Some((_, dst)) = ip::addrs(inner) else {
            ctr.drop(Dropped::BadIpHeader);
            return None;
        };
        let Some(peer) = table.route(dst) else {
            ctr.drop(Dropped::NoRoute);
            ctr.add(Ctr::LostDataOut, 1);
            return None;
        };
        Some(peer)
    }

    #[inline]
    fn filter_ctx(peer: &'a Peer, now: u64) -> FilterCtx<'a> {
        FilterCtx {
            dir: Direction::ToPeer,
            peer: (peer.id.get(), &peer.common_name),
            to: None,
            now_ms: now,
        }
    }

    /// After the firewall: MSS clamp, encryption in place, counters.
    #[inline]
    fn forward(&mut self, buf: &mut [u8], size: usize, peer: &Peer) -> TxAction {
        let ctr = self.ctr;
        let ep = peer.endpoint();
        crate::mss::clamp(
            &mut buf[HEADROOM..HEADROOM + size],
            self.shared.config.mssfix,
            ep.remote.is_ipv6(),
        );
        let Some(len) = seal_for(peer, buf, size, self.shared, ctr) else {
            return TxAction::None;
        };
        peer.counters.add_out(self.slot, 1, size as u64);
        peer.touch_tx(self.now);
        ctr.add(Ctr::TunnelBytesSent, size as u64);
        TxAction::Udp(ep.remote, ep.local, len)
    }
}

/// Blocks until `fd` is readable or `timeout_ms` passes.
pub fn wait_readable(fd: i32, timeout_ms: i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe {
        libc::poll(&mut p, 1, timeout_ms);
    }
}
