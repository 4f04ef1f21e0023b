//! Sealing and opening data packets in place, in the exact 2.6 AEAD format (§6.1, §6.2):
//! `header | packet_id | tag | ciphertext`, AAD = `header | packet_id` (V2) or `packet_id`
//! (V1), nonce = `packet_id || implicit_iv`.

use std::ops::Range;

use zeroize::Zeroize;

use crate::aead::{AeadKey, NONCE_LEN, TAG_LEN};
use crate::batch::AeadOp;
use crate::cipher::CipherKind;
use crate::error::DataError;
use crate::keys::{DirectionalKey, KeyError};
use crate::packet_id::{PacketIdReservation, SendCounter};
use crate::replay::ReplayWindow;
use crate::wire::{
    DATA_V1_OVERHEAD, DATA_V2_OVERHEAD, DataFormat, DataHeader, KeyId, OPCODE_SHIFT, PeerId, opcode,
};

#[inline]
fn nonce(packet_id: u32, iv: &[u8; 8]) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..4].copy_from_slice(&packet_id.to_be_bytes());
    n[4..].copy_from_slice(iv);
    n
}

/// The result of sealing one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// Length of the wire packet at the start of the buffer.
    pub len: usize,
    pub packet_id: u32,
    /// This packet crossed the rotation threshold: ask the control process to renegotiate.
    pub rotate_now: bool,
}

/// The result of opening one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Where the plaintext is in the buffer.
    pub payload: Range<usize>,
    pub header: DataHeader,
}

/// A key that encrypts one direction, with its own packet-id counter. Shared by all workers.
/// The implicit IV is wiped on drop (the AEAD key wipes itself); `Debug` shows neither.
pub struct EncryptKey {
    key_id: KeyId,
    aead: AeadKey,
    implicit_iv: [u8; 8],
    counter: SendCounter,
}

impl EncryptKey {
    pub fn new(key_id: KeyId, key: &DirectionalKey) -> Result<Self, KeyError> {
        Self::with_counter(key_id, key, SendCounter::new())
    }

    /// With a counter in a given state (tests of the exhaustion paths).
    pub fn with_counter(
        key_id: KeyId,
        key: &DirectionalKey,
        counter: SendCounter,
    ) -> Result<Self, KeyError> {
        Ok(Self {
            key_id,
            aead: AeadKey::new(key.cipher(), key.key())?,
            implicit_iv: *key.implicit_iv(),
            counter,
        })
    }

    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub fn cipher(&self) -> CipherKind {
        self.aead.cipher()
    }

    pub fn aead(&self) -> &AeadKey {
        &self.aead
    }

    /// Packets sealed with this key so far.
    pub fn packets_sent(&self) -> u64 {
        self.counter.used()
    }

    /// Reserves packet-ids for a batch (one atomic operation).
    #[inline]
    pub fn reserve(&self, n: u32) -> Result<PacketIdReservation, DataError> {
        self.counter.reserve(n)
    }

    /// Seals a P_DATA_V2 packet in place. The plaintext is at
    /// `buf[DATA_V2_OVERHEAD..DATA_V2_OVERHEAD + payload_len]`; the header, packet-id and tag
    /// are written in front of it, so the wire packet is `buf[..Sealed::len]`.
    #[inline]
    pub fn seal_v2(
        &self,
        peer_id: PeerId,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<Sealed, DataError> {
        let (id, rotate_now) = self.counter.next()?;
        let op = self.prepare_v2(peer_id, id, buf, payload_len)?;
        *op.tag = self.aead.seal_in_place(op.nonce, op.aad, op.data)?;
        Ok(Sealed {
            len: DATA_V2_OVERHEAD + payload_len,
            packet_id: id,
            rotate_now,
        })
    }

    /// Seals a P_DATA_V1 packet in place (plaintext at `buf[DATA_V1_OVERHEAD..]`).
    pub fn seal_v1(&self, buf: &mut [u8], payload_len: usize) -> Result<Sealed, DataError> {
        let (id, rotate_now) = self.counter.next()?;
        let need = DATA_V1_OVERHEAD + payload_len;
        if buf.len() < need {
            return Err(DataError::BufferTooSmall {
                len: buf.len(),
                need,
            });
        }
        buf[0] = (opcode::P_DATA_V1 << OPCODE_SHIFT) | self.key_id.get();
        buf[1..5].copy_from_slice(&id.to_be_bytes());
        let (head, rest) = buf[..need].split_at_mut(5);
        let (tag, data) = rest.split_at_mut(TAG_LEN);
        let t = self
            .aead
            .seal_in_place(nonce(id, &self.implicit_iv), &head[1..5], data)?;
        tag.copy_from_slice(&t);
        Ok(Sealed {
            len: need,
            packet_id: id,
            rotate_now,
        })
    }

    /// Writes the V2 header for packet-id `id` (from [`EncryptKey::reserve`]) and returns the
    /// AEAD operation for a batch backend. After the backend sealed it, `buf[..24 +
    /// payload_len]` is the wire packet.
    #[inline]
    pub fn prepare_v2<'a>(
        &'a self,
        peer_id: PeerId,
        id: u32,
        buf: &'a mut [u8],
        payload_len: usize,
    ) -> Result<AeadOp<'a>, DataError> {
        let need = DATA_V2_OVERHEAD + payload_len;
        if buf.len() < need {
            return Err(DataError::BufferTooSmall {
                len: buf.len(),
                need,
            });
        }
        let word = (u32::from((opcode::P_DATA_V2 << OPCODE_SHIFT) | self.key_id.get()) << 24)
            | peer_id.get();
        buf[..4].copy_from_slice(&word.to_be_bytes());
        buf[4..8].copy_from_slice(&id.to_be_bytes());
        let (aad, rest) = buf[..need].split_at_mut(8);
        let (tag, data) = rest.split_at_mut(TAG_LEN);
        let tag: &mut [u8; TAG_LEN] = tag
            .try_into()
            .map_err(|_| DataError::BufferTooSmall { len: 0, need })?;
        Ok(AeadOp {
            key: &self.aead,
            nonce: nonce(id, &self.implicit_iv),
            aad,
            data,
            tag,
            ok: false,
        })
    }
}

/// A key that decrypts one direction, with its replay window. The implicit IV is wiped on
/// drop (the AEAD key wipes itself); `Debug` shows neither.
pub struct DecryptKey {
    key_id: KeyId,
    aead: AeadKey,
    implicit_iv: [u8; 8],
    replay: ReplayWindow,
}

impl DecryptKey {
    pub fn new(key_id: KeyId, key: &DirectionalKey, replay_window: u32) -> Result<Self, KeyError> {
        Ok(Self {
            key_id,
            aead: AeadKey::new(key.cipher(), key.key())?,
            implicit_iv: *key.implicit_iv(),
            replay: ReplayWindow::new(replay_window),
        })
    }

    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub fn cipher(&self) -> CipherKind {
        self.aead.cipher()
    }

    pub fn aead(&self) -> &AeadKey {
        &self.aead
    }

    pub fn replay_window(&self) -> &ReplayWindow {
        &self.replay
    }

    /// Verifies and decrypts a V1 or V2 AEAD packet in place, then checks the replay window.
    /// The plaintext is `pkt[Opened::payload]`.
    #[inline]
    pub fn open(&self, pkt: &mut [u8]) -> Result<Opened, DataError> {
        let (mut op, header) = self.prepare_open(pkt)?;
        op.ok = self
            .aead
            .open_in_place(op.nonce, op.aad, op.data, op.tag)
            .is_ok();
        let ok = op.ok;
        let payload = self.finish_open(&header, pkt.len(), ok)?;
        Ok(Opened { payload, header })
    }

    /// Parses the header, rejects what is certainly too old without spending an AEAD call,
    /// and returns the operation for a batch backend. Follow with [`DecryptKey::finish_open`].
    #[inline]
    pub fn prepare_open<'a>(
        &'a self,
        pkt: &'a mut [u8],
    ) -> Result<(AeadOp<'a>, DataHeader), DataError> {
        let header = DataHeader::parse(pkt)?;
        if header.key_id != self.key_id {
            return Err(DataError::UnknownKeyId(header.key_id.get()));
        }
        if header.packet_id == 0 {
            return Err(DataError::ZeroPacketId);
        }
        let highest = self.replay.highest();
        if highest > header.packet_id && highest - header.packet_id > self.replay.size() {
            return Err(DataError::TooOld(header.packet_id));
        }
        let n = nonce(header.packet_id, &self.implicit_iv);
        let (aad, rest) = match header.format {
            DataFormat::V2 => {
                let (aad, rest) = pkt.split_at_mut(8);
                (&aad[..], rest)
            }
            DataFormat::V1 => {
                let (head, rest) = pkt.split_at_mut(5);
                (&head[1..5], rest)
            }
        };
        let (tag, data) = rest.split_at_mut(TAG_LEN);
        let tag: &mut [u8; TAG_LEN] = tag.try_into().map_err(|_| DataError::TooShort {
            len: 0,
            min: header.format.overhead(),
        })?;
        Ok((
            AeadOp {
                key: &self.aead,
                nonce: n,
                aad,
                data,
                tag,
                ok: false,
            },
            header,
        ))
    }

    /// Completes an open after the AEAD ran: a failed tag is [`DataError::TagMismatch`];
    /// otherwise the packet-id goes through the replay window. Returns the plaintext range in
    /// a packet of `pkt_len` bytes.
    #[inline]
    pub fn finish_open(
        &self,
        header: &DataHeader,
        pkt_len: usize,
        tag_ok: bool,
    ) -> Result<Range<usize>, DataError> {
        if !tag_ok {
            return Err(DataError::TagMismatch);
        }
        self.replay.check_and_set(header.packet_id)?;
        Ok(header.format.overhead()..pkt_len)
    }
}

/// `base` shifted by `by`.
fn shifted(base: std::ops::Range<usize>, by: usize) -> std::ops::Range<usize> {
    base.start + by..base.end + by
}

impl EncryptKey {
    /// Byte ranges inside an `EncryptKey` that hold secrets (implicit IV, raw key, ring's
    /// schedule), for the wipe-on-drop tests (`tests/secrets.rs`). Not an API.
    #[doc(hidden)]
    pub fn secret_ranges() -> [std::ops::Range<usize>; 3] {
        let iv = std::mem::offset_of!(EncryptKey, implicit_iv);
        let [raw, ring] =
            AeadKey::secret_ranges().map(|r| shifted(r, std::mem::offset_of!(EncryptKey, aead)));
        [iv..iv + 8, raw, ring]
    }
}

impl DecryptKey {
    /// As [`EncryptKey::secret_ranges`]. Not an API.
    #[doc(hidden)]
    pub fn secret_ranges() -> [std::ops::Range<usize>; 3] {
        let iv = std::mem::offset_of!(DecryptKey, implicit_iv);
        let [raw, ring] =
            AeadKey::secret_ranges().map(|r| shifted(r, std::mem::offset_of!(DecryptKey, aead)));
        [iv..iv + 8, raw, ring]
    }
}

impl Drop for EncryptKey {
    fn drop(&mut self) {
        self.implicit_iv.zeroize();
    }
}

impl Drop for DecryptKey {
    fn drop(&mut self) {
        self.implicit_iv.zeroize();
    }
}

impl std::fmt::Debug for EncryptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptKey")
            .field("key_id", &self.key_id)
            .field("aead", &self.aead)
            .field("packets_sent", &self.counter.used())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DecryptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptKey")
            .field("key_id", &self.key_id)
            .field("aead", &self.aead)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Key2, Role};

    fn pair(cipher: CipherKind) -> (EncryptKey, DecryptKey) {
        let mut b = [0u8; 256];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i * 7 + 1) as u8;
        }
        let k = Key2::from_bytes(b);
        let (c_enc, _) = k.data_keys(Role::Client, cipher).unwrap();
        let (_, s_dec) = k.data_keys(Role::Server, cipher).unwrap();
        let kid = KeyId::new(3).unwrap();
        (
            EncryptKey::new(kid, &c_enc).unwrap(),
            DecryptKey::new(kid, &s_dec, 64).unwrap(),
        )
    }

    #[test]
    fn v2_round_trip_every_cipher() {
        for c in CipherKind::ALL {
            let (tx, rx) = pair(c);
            for len in [0usize, 1, 15, 16, 17, 100, 1420] {
                let mut buf = vec![0u8; DATA_V2_OVERHEAD + len];
                for (i, b) in buf[DATA_V2_OVERHEAD..].iter_mut().enumerate() {
                    *b = i as u8;
                }
                let s = tx
                    .seal_v2(PeerId::new(0xabcdef).unwrap(), &mut buf, len)
                    .unwrap();
                assert_eq!(s.len, buf.len());
                assert_eq!(&buf[..4], &[0x4b, 0xab, 0xcd, 0xef]);
                assert_eq!(
                    u32::from_be_bytes(buf[4..8].try_into().unwrap()),
                    s.packet_id
                );
                let o = rx.open(&mut buf).unwrap();
                assert!(
                    buf[o.payload.clone()]
                        .iter()
                        .enumerate()
                        .all(|(i, &b)| b == i as u8)
                );
                assert_eq!(o.header.peer_id.unwrap().get(), 0xabcdef);
            }
        }
    }

    #[test]
    fn v1_round_trip() {
        let (tx, rx) = pair(CipherKind::Aes128Gcm);
        let mut buf = vec![0u8; DATA_V1_OVERHEAD + 40];
        buf[DATA_V1_OVERHEAD..].fill(0x45);
        let s = tx.seal_v1(&mut buf, 40).unwrap();
        assert_eq!(buf[0], 0x33);
        let o = rx.open(&mut buf[..s.len]).unwrap();
        assert_eq!(o.header.format, DataFormat::V1);
        assert!(buf[o.payload].iter().all(|&b| b == 0x45));
    }

    #[test]
    fn tamper_replay_and_wrong_key_id() {
        let (tx, rx) = pair(CipherKind::Chacha20Poly1305);
        let mut buf = vec![0u8; DATA_V2_OVERHEAD + 32];
        let s = tx.seal_v2(PeerId::new(1).unwrap(), &mut buf, 32).unwrap();
        let wire = buf[..s.len].to_vec();
        for i in 0..wire.len() {
            if i == 0 {
                continue; // opcode/key-id: covered below
            }
            let mut t = wire.clone();
            t[i] ^= 0x01;
            let e = rx.open(&mut t).unwrap_err();
            assert!(
                matches!(e, DataError::TagMismatch | DataError::ZeroPacketId),
                "byte {i}: {e:?}"
            );
        }
        let mut t = wire.clone();
        t[0] ^= 0x01; // key-id 3 -> 2
        assert_eq!(rx.open(&mut t), Err(DataError::UnknownKeyId(2)));
        let mut t = wire.clone();
        rx.open(&mut t).unwrap();
        let mut t = wire.clone();
        assert_eq!(rx.open(&mut t), Err(DataError::Replayed(1)));
        assert!(matches!(
            rx.open(&mut [0x4b, 0, 0, 1]),
            Err(DataError::TooShort { .. })
        ));
    }

    #[test]
    fn refuses_to_send_past_exhaustion() {
        let mut b = [9u8; 256];
        b[0] = 1;
        let k = Key2::from_bytes(b);
        let (enc, _) = k.data_keys(Role::Client, CipherKind::Aes256Gcm).unwrap();
        let tx = EncryptKey::with_counter(
            KeyId::new(0).unwrap(),
            &enc,
            SendCounter::starting_after(u32::MAX - 1),
        )
        .unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            tx.seal_v2(PeerId::new(0).unwrap(), &mut buf, 10)
                .unwrap()
                .packet_id,
            u32::MAX
        );
        assert_eq!(
            tx.seal_v2(PeerId::new(0).unwrap(), &mut buf, 10),
            Err(DataError::PacketIdExhausted)
        );
    }

    #[test]
    fn buffer_too_small_is_an_error() {
        let (tx, _) = pair(CipherKind::Aes256Gcm);
        let mut buf = [0u8; 30];
        assert!(matches!(
            tx.seal_v2(PeerId::new(0).unwrap(), &mut buf, 10),
            Err(DataError::BufferTooSmall { .. })
        ));
    }
}
