//! A [`PacketSource`] of real P_DATA_V2 packets: IPv4/UDP packets sealed with the client →
//! server data key of a known `key2`, as a stock 2.6 client would send them to a peer whose
//! peer-id and key the bench installed itself. Each packet gets the next packet-id, so a
//! receiver's replay window accepts every one.

use anyhow::{Context, Result, bail};
use crypto::{CipherKind, DATA_V2_OVERHEAD, EncryptKey, Key2, KeyId, PeerId, Role};
use std::net::{Ipv4Addr, SocketAddrV4};

use super::pps::PacketSource;

/// Sealed DATA_V2 packets carrying UDP datagrams from `src` to `dst` inside the tunnel.
pub struct DataV2Source {
    key: EncryptKey,
    peer_id: PeerId,
    inner: Vec<u8>,
    seq: u64,
}

impl std::fmt::Debug for DataV2Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No key bytes.
        f.debug_struct("DataV2Source")
            .field("peer_id", &self.peer_id)
            .field("inner_len", &self.inner.len())
            .finish()
    }
}

impl DataV2Source {
    /// Packets for `peer_id` under `key_id`, sealed with `key2`'s client → server key of
    /// `cipher`, carrying UDP datagrams of `payload_len` bytes from `src` to `dst`.
    pub fn new(
        key2: &Key2,
        cipher: CipherKind,
        key_id: KeyId,
        peer_id: PeerId,
        src: Ipv4Addr,
        dst: SocketAddrV4,
        payload_len: usize,
    ) -> Result<DataV2Source> {
        let (enc, _dec) = key2
            .data_keys(Role::Client, cipher)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let key = EncryptKey::new(key_id, &enc).map_err(|e| anyhow::anyhow!("{e}"))?;
        let inner = ipv4_udp(src, *dst.ip(), 40000, dst.port(), payload_len)?;
        Ok(DataV2Source {
            key,
            peer_id,
            inner,
            seq: 0,
        })
    }
}

impl PacketSource for DataV2Source {
    fn describe(&self) -> String {
        format!(
            "P_DATA_V2 {} peer-id {}, {} B inner IPv4/UDP packets",
            self.key.cipher(),
            self.peer_id,
            self.inner.len()
        )
    }

    fn next_batch(&mut self, batch: &mut [Vec<u8>]) -> Result<usize> {
        let total = DATA_V2_OVERHEAD + self.inner.len();
        for buf in batch.iter_mut() {
            if buf.len() != total {
                buf.resize(total, 0);
            }
            let body = &mut buf[DATA_V2_OVERHEAD..];
            body.copy_from_slice(&self.inner);
            // Sequence number in the first UDP payload bytes (checksum 0: not computed).
            let seq = self.seq.to_be_bytes();
            let n = seq.len().min(body.len() - 28);
            body[28..28 + n].copy_from_slice(&seq[..n]);
            self.seq += 1;
            let sealed = self
                .key
                .seal_v2(self.peer_id, buf, self.inner.len())
                .map_err(|e| anyhow::anyhow!("sealing: {e}"))?;
            debug_assert_eq!(sealed.len, total);
        }
        Ok(batch.len())
    }
}

/// An IPv4/UDP packet with a valid header checksum and UDP checksum 0 (allowed for IPv4).
pub fn ipv4_udp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload_len: usize,
) -> Result<Vec<u8>> {
    let total = 28 + payload_len;
    if total > 65535 {
        bail!("packet too large");
    }
    let total16 = u16::try_from(total).context("length")?;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&total16.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let csum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&csum.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&((total16 - 20).to_be_bytes()));
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    Ok(p)
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto::DecryptKey;

    #[test]
    fn packets_open_with_the_servers_key_in_order() {
        let key2 = Key2::from_bytes([0x42; 256]);
        let kid = KeyId::new(0).unwrap();
        let mut src = DataV2Source::new(
            &key2,
            CipherKind::Aes256Gcm,
            kid,
            PeerId::new(7).unwrap(),
            Ipv4Addr::new(10, 8, 0, 2),
            SocketAddrV4::new(Ipv4Addr::new(10, 8, 0, 1), 9),
            100,
        )
        .unwrap();
        let (_enc, dec) = key2.data_keys(Role::Server, CipherKind::Aes256Gcm).unwrap();
        let rx = DecryptKey::new(kid, &dec, 2048).unwrap();
        let mut batch = vec![Vec::new(); 4];
        assert_eq!(src.next_batch(&mut batch).unwrap(), 4);
        for (i, pkt) in batch.iter_mut().enumerate() {
            assert_eq!(pkt[0], 0x48);
            assert_eq!(&pkt[1..4], &[0, 0, 7]);
            assert_eq!(
                u32::from_be_bytes(pkt[4..8].try_into().unwrap()),
                i as u32 + 1,
                "packet-ids count from 1"
            );
            let opened = rx.open(pkt).unwrap();
            let ip = &pkt[opened.payload];
            assert_eq!(ip.len(), 128);
            assert_eq!(checksum(&ip[..20]), 0, "valid IPv4 header checksum");
            assert_eq!(&ip[16..20], &[10, 8, 0, 1]);
            assert_eq!(u64::from_be_bytes(ip[28..36].try_into().unwrap()), i as u64);
        }
        // A replayed packet is refused by the receiver's window.
        let mut again = vec![Vec::new(); 1];
        src.next_batch(&mut again).unwrap();
        let mut copy = again[0].clone();
        rx.open(&mut again[0]).unwrap();
        assert!(rx.open(&mut copy).is_err());
    }
}
