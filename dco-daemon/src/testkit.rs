//! A ready data path for benchmarks and tests: one peer with keys installed in a detached
//! [`Shared`], the matching client-side keys, and builders for valid inner packets.

use std::net::SocketAddr;
use std::sync::Arc;

use crypto::{CipherKind, DATA_V2_OVERHEAD, DecryptKey, EncryptKey, Key2, KeyId, PeerId, Role};

use crate::core::{DaemonConfig, Shared};
use crate::events::NullSink;
use crate::peer::{DataKey, KeySlots, Peer, PeerConfig};

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
        let mut km = [0u8; 256];
        for (i, b) in km.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        let key2 = Key2::from_bytes(km);
        let (s_enc, s_dec) = key2.data_keys(Role::Server, cipher).expect("server keys");
        let (c_enc, c_dec) = key2.data_keys(Role::Client, cipher).expect("client keys");
        let kid = KeyId::new(0).expect("key-id 0");
        let peer_addr: SocketAddr = PEER_ADDR.parse().expect("address");
        let peer = Arc::new(Peer::new(
            PeerConfig {
                id: PeerId::new(1).expect("peer-id"),
                remote: peer_addr,
                local: None,
                vpn_ipv4: Some("10.8.0.2".parse().expect("address")),
                vpn_ipv6: None,
                iroutes: Vec::new(),
                common_name: "bench".into(),
            },
            shared.counters_slots(),
            0,
        ));
        let key =
            DataKey::new(kid, &s_enc, &s_dec, crypto::DEFAULT_REPLAY_WINDOW).expect("data key");
        peer.keys.store(Arc::new(KeySlots {
            primary: Some(Arc::new(key)),
            secondary: None,
        }));
        shared.install_peers(vec![peer.clone()]);
        Self {
            shared,
            peer,
            client_tx: EncryptKey::new(kid, &c_enc).expect("key"),
            client_rx: DecryptKey::new(kid, &c_dec, crypto::DEFAULT_REPLAY_WINDOW).expect("key"),
            peer_addr,
        }
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
