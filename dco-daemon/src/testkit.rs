//! A ready data path for benchmarks and tests: one peer with keys installed in a detached
//! [`Shared`], the matching client-side keys, and builders for valid inner packets.

use std::net::SocketAddr;
use std::sync::Arc;

use crypto::{CipherKind, DATA_V2_OVERHEAD, DecryptKey, EncryptKey, Key2, KeyId, PeerId, Role};

use crate::core::{DaemonConfig, Shared};
use crate::events::{NullSink, RateLimit};
use crate::filter::REPLY_BUF;
use crate::gro::TunWriter;
use crate::peer::{DataKey, KeySlots, Peer, PeerConfig};
use crate::stats::Ctr;
use crate::worker::{HEADROOM, RxAction, RxPath, TxAction, TxPath};

/// The key material every scenario peer uses.
fn key2() -> Key2 {
    let mut km = [0u8; 256];
    for (i, b) in km.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    Key2::from_bytes(km)
}

/// A peer with the server side of [`key2`] as its primary key (key-id 0), installed.
fn new_peer(
    shared: &Arc<Shared>,
    id: u32,
    vpn_ipv4: &str,
    remote: SocketAddr,
    cipher: CipherKind,
) -> Arc<Peer> {
    let peer = Arc::new(Peer::new(
        PeerConfig {
            id: PeerId::new(id).expect("peer-id"),
            remote,
            local: None,
            vpn_ipv4: Some(vpn_ipv4.parse().expect("address")),
            vpn_ipv6: None,
            iroutes: Vec::new(),
            common_name: format!("peer{id}"),
        },
        shared.counters_slots(),
        0,
    ));
    let (s_enc, s_dec) = key2().data_keys(Role::Server, cipher).expect("server keys");
    let kid = KeyId::new(0).expect("key-id 0");
    let key = DataKey::new(kid, &s_enc, &s_dec, crypto::DEFAULT_REPLAY_WINDOW).expect("data key");
    peer.keys.store(Arc::new(KeySlots {
        primary: Some(Arc::new(key)),
        secondary: None,
    }));
    shared.install_peers(vec![peer.clone()]);
    peer
}

/// What the data path did with a packet ([`Scenario::receive`], [`Scenario::send`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Written to the TUN device.
    Tun,
    /// Sent on the UDP socket (to this or another peer).
    Udp,
    /// Refused by the firewall with a reply.
    Reject,
    /// Dropped, relayed or swallowed, and counted.
    Consumed,
}

/// What [`Scenario::send_batch`] did: each packet's fate with the wire bytes sent (empty
/// unless sent), and the reject replies written to the TUN.
pub type SentBatch = (Vec<(Delivered, Vec<u8>)>, Vec<Vec<u8>>);

/// The peer's address as the daemon sees it.
pub const PEER_ADDR: &str = "192.0.2.10:40000";

/// A daemon with one peer (id 1, VPN address 10.8.0.2) and the peer's own keys.
pub struct Scenario {
    pub shared: Arc<Shared>,
    pub peer: Arc<Peer>,
    /// What the peer encrypts with (the daemon decrypts).
    pub client_tx: EncryptKey,
    /// What the peer decrypts with (the daemon encrypts).
    pub client_rx: DecryptKey,
    pub peer_addr: SocketAddr,
}

impl Scenario {
    pub fn new(cipher: CipherKind) -> Self {
        let shared = Shared::detached(
            DaemonConfig {
                workers: 1,
                ..Default::default()
            },
            Arc::new(NullSink),
        );
        let (c_enc, c_dec) = key2().data_keys(Role::Client, cipher).expect("client keys");
        let kid = KeyId::new(0).expect("key-id 0");
        let peer_addr: SocketAddr = PEER_ADDR.parse().expect("address");
        let peer = new_peer(&shared, 1, "10.8.0.2", peer_addr, cipher);
        Self {
            shared,
            peer,
            client_tx: EncryptKey::new(kid, &c_enc).expect("key"),
            client_rx: DecryptKey::new(kid, &c_dec, crypto::DEFAULT_REPLAY_WINDOW).expect("key"),
            peer_addr,
        }
    }

    /// Another peer (same key material, key-id 0, the scenario's cipher) at VPN address
    /// `vpn_ipv4`, installed beside the first.
    pub fn add_peer(&self, id: u32, vpn_ipv4: &str, remote: SocketAddr) -> Arc<Peer> {
        let cipher = self.client_tx.cipher();
        let p = new_peer(&self.shared, id, vpn_ipv4, remote, cipher);
        self.shared.install_peers(vec![p.clone()]);
        p
    }

    /// A DATA_V2 packet from the peer carrying `inner`.
    pub fn sealed(&self, inner: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; DATA_V2_OVERHEAD + inner.len()];
        let n = self.seal_from_peer(inner, &mut buf);
        buf.truncate(n);
        buf
    }

    /// Packets the data path consumed with a count: every drop reason, plus control packets
    /// relayed to the control process.
    fn accounted(&self) -> u64 {
        let snap = self.shared.counters.snapshot();
        snap.drop_reasons().iter().map(|(_, n)| n).sum::<u64>() + snap.get(Ctr::RecvCtrl)
    }

    /// Runs one datagram from the peer's address through the receive path (a delivered
    /// packet also through the TUN batcher) and checks what must hold for any input: ranges
    /// and lengths lie inside their buffers, and a packet the path consumes is counted under a
    /// reason. Panics when one does not (property tests and fuzz targets call this).
    pub fn receive(&self, wire: &mut [u8]) -> Delivered {
        let table = self.shared.table.load_full();
        let mut relay = RateLimit::new(1000, 100);
        let mut reply = vec![0u8; DATA_V2_OVERHEAD + REPLY_BUF];
        let before = self.accounted();
        let len = wire.len();
        let mut rx = RxPath {
            shared: &self.shared,
            table: &table,
            ctr: self.shared.counters.slot(2),
            slot: 2,
            now: 1,
            relay: &mut relay,
            reply: &mut reply,
            local_port: 1194,
        };
        match rx.packet(wire, self.peer_addr, None) {
            RxAction::Tun(r) => {
                assert!(
                    r.start <= r.end && r.end <= len,
                    "range {r:?} outside {len}"
                );
                let mut tun = TunWriter::new(8);
                tun.batch().push(&wire[r]);
                Delivered::Tun
            }
            RxAction::Udp(_, _, n) => {
                assert!(n <= len, "{n} bytes to send from a {len}-byte buffer");
                Delivered::Udp
            }
            RxAction::Reject(_, _, n) => {
                assert!(n <= DATA_V2_OVERHEAD + REPLY_BUF, "reject of {n} bytes");
                Delivered::Reject
            }
            RxAction::None => {
                assert!(
                    self.accounted() > before,
                    "a packet vanished without a count"
                );
                Delivered::Consumed
            }
        }
    }

    /// Runs one packet read from the TUN through the send path with the same checks.
    pub fn send(&self, pkt: &[u8]) -> Delivered {
        let table = self.shared.table.load_full();
        let filter = self.shared.filter();
        let mut reply = vec![0u8; REPLY_BUF];
        let mut buf = vec![0u8; HEADROOM + pkt.len() + 64];
        buf[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(pkt);
        let before = self.accounted();
        let mut tx = TxPath {
            shared: &self.shared,
            table: &table,
            filter: &filter,
            ctr: self.shared.counters.slot(3),
            slot: 3,
            now: 1,
            reply: &mut reply,
        };
        match tx.packet(&mut buf, pkt.len()) {
            TxAction::Udp(_, _, n) => {
                assert!(
                    n <= buf.len(),
                    "{n} bytes to send from a {}-byte buffer",
                    buf.len()
                );
                Delivered::Udp
            }
            TxAction::RejectToTun(n) => {
                assert!(n <= REPLY_BUF, "reject of {n} bytes");
                Delivered::Reject
            }
            TxAction::None => {
                assert!(
                    self.accounted() > before,
                    "a TUN packet vanished without a count"
                );
                Delivered::Consumed
            }
        }
    }

    /// Loads a conntrack firewall rule set into this scenario's daemon state.
    pub fn load_firewall(&self, rules: &str) {
        let rules = conntrack::RuleSet::parse(rules).expect("rule set");
        self.shared.conntrack.set_rules(rules);
        self.shared
            .store_filter(Box::new(crate::firewall::ConntrackFilter::new(
                self.shared.conntrack.clone(),
            )));
    }

    /// Runs packets read from the TUN through the send path as one batch
    /// ([`TxPath::batch`]); returns what became of each, in order, with the wire bytes of
    /// those sent, and the reject replies written to the TUN, in order.
    pub fn send_batch(&self, pkts: &[Vec<u8>]) -> SentBatch {
        let table = self.shared.table.load_full();
        let filter = self.shared.filter();
        let mut reply = vec![0u8; REPLY_BUF];
        let mut bufs: Vec<Vec<u8>> = pkts
            .iter()
            .map(|p| {
                let mut b = vec![0u8; HEADROOM + p.len() + 64];
                b[HEADROOM..HEADROOM + p.len()].copy_from_slice(p);
                b
            })
            .collect();
        let sizes: Vec<usize> = pkts.iter().map(Vec::len).collect();
        let mut actions = vec![TxAction::None; pkts.len()];
        let mut rejects = Vec::new();
        let before = self.accounted();
        let mut tx = TxPath {
            shared: &self.shared,
            table: &table,
            filter: &filter,
            ctr: self.shared.counters.slot(3),
            slot: 3,
            now: 1,
            reply: &mut reply,
        };
        tx.batch(&mut bufs, &sizes, &mut actions, &mut |r| {
            assert!(r.len() <= REPLY_BUF, "reject of {} bytes", r.len());
            rejects.push(r.to_vec());
        });
        let mut consumed = 0u64;
        let out = bufs
            .iter()
            .zip(&actions)
            .map(|(b, a)| match *a {
                TxAction::Udp(_, _, n) => (Delivered::Udp, b[..n].to_vec()),
                TxAction::RejectToTun(_) => panic!("batch() hands rejects to the callback"),
                TxAction::None => {
                    consumed += 1;
                    (Delivered::Consumed, Vec::new())
                }
            })
            .collect();
        assert!(
            self.accounted() >= before + consumed,
            "TUN packets vanished without a count"
        );
        (out, rejects)
    }

    /// A DATA_V2 packet from the peer carrying `inner`, written into `buf`; returns its length.
    pub fn seal_from_peer(&self, inner: &[u8], buf: &mut [u8]) -> usize {
        buf[DATA_V2_OVERHEAD..DATA_V2_OVERHEAD + inner.len()].copy_from_slice(inner);
        self.client_tx
            .seal_v2(self.peer.id, buf, inner.len())
            .expect("seal")
            .len
    }
}

fn sum(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// A TCP/IPv4 segment `src -> dst` with `payload_len` bytes and valid checksums.
pub fn tcp4(src: [u8; 4], dst: [u8; 4], seq: u32, payload_len: usize) -> Vec<u8> {
    let total = 40 + payload_len;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let c = !fold(sum(&p[..20], 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&5201u16.to_be_bytes());
    p[22..24].copy_from_slice(&40000u16.to_be_bytes());
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[28..32].copy_from_slice(&1u32.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x10;
    p[34..36].copy_from_slice(&1000u16.to_be_bytes());
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let pseudo = sum(&p[12..20], 6 + (total - 20) as u32);
    let c = !fold(sum(&p[20..], pseudo));
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}
