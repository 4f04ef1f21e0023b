//! Wire constants and the data-packet header (openvpn-protocol.md §1.1, §6).

use crate::error::DataError;

/// `byte0 = opcode << 3 | key_id`.
pub const OPCODE_SHIFT: u8 = 3;
pub const KEY_ID_MASK: u8 = 0x07;

pub mod opcode {
    //! Opcodes (5 bits) of OpenVPN packets.
    pub const P_CONTROL_HARD_RESET_CLIENT_V1: u8 = 1;
    pub const P_CONTROL_HARD_RESET_SERVER_V1: u8 = 2;
    pub const P_CONTROL_SOFT_RESET_V1: u8 = 3;
    pub const P_CONTROL_V1: u8 = 4;
    pub const P_ACK_V1: u8 = 5;
    pub const P_DATA_V1: u8 = 6;
    pub const P_CONTROL_HARD_RESET_CLIENT_V2: u8 = 7;
    pub const P_CONTROL_HARD_RESET_SERVER_V2: u8 = 8;
    pub const P_DATA_V2: u8 = 9;
    pub const P_CONTROL_HARD_RESET_CLIENT_V3: u8 = 10;
    pub const P_CONTROL_WKC_V1: u8 = 11;
}

/// Length of the packet-id field (short form, 32-bit, big-endian).
pub const PACKET_ID_LEN: usize = 4;
/// `0x48|kid` + 24-bit peer-id.
pub const DATA_V2_OPCODE_LEN: usize = 4;
/// Bytes in front of the ciphertext of a P_DATA_V2 AEAD packet: header, packet-id, tag.
pub const DATA_V2_OVERHEAD: usize = DATA_V2_OPCODE_LEN + PACKET_ID_LEN + crate::TAG_LEN;
/// Bytes in front of the ciphertext of a P_DATA_V1 AEAD packet: opcode, packet-id, tag.
pub const DATA_V1_OVERHEAD: usize = 1 + PACKET_ID_LEN + crate::TAG_LEN;
/// The "undefined" peer-id (kernel `OVPN_PEER_ID_UNDEF`, OpenVPN `MAX_PEER_ID`).
pub const PEER_ID_UNDEF: u32 = 0x00FF_FFFF;

/// A 24-bit peer-id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(u32);

impl PeerId {
    /// `None` when `id` does not fit in 24 bits.
    pub const fn new(id: u32) -> Option<Self> {
        if id <= PEER_ID_UNDEF {
            Some(Self(id))
        } else {
            None
        }
    }
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A 3-bit key-id (0 for the first key of a session, then 1..=7 wrapping to 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(u8);

impl KeyId {
    pub const fn new(id: u8) -> Option<Self> {
        if id <= KEY_ID_MASK {
            Some(Self(id))
        } else {
            None
        }
    }
    pub const fn get(self) -> u8 {
        self.0
    }
    /// The key-id a renegotiation moves to: 1..=7, wrapping to 1 (0 is never reused).
    pub const fn next(self) -> Self {
        if self.0 >= KEY_ID_MASK {
            Self(1)
        } else {
            Self(self.0 + 1)
        }
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The opcode of a packet's first byte.
pub const fn opcode_of(byte0: u8) -> u8 {
    byte0 >> OPCODE_SHIFT
}

/// The key-id of a packet's first byte.
pub const fn key_id_of(byte0: u8) -> KeyId {
    KeyId(byte0 & KEY_ID_MASK)
}

/// Which data-packet format a header is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// `0x30|kid, pid, tag, ct`; AAD = pid.
    V1,
    /// `0x48|kid, peer-id(3), pid, tag, ct`; AAD = the first 8 bytes.
    V2,
}

impl DataFormat {
    /// Bytes before the ciphertext.
    pub const fn overhead(self) -> usize {
        match self {
            DataFormat::V1 => DATA_V1_OVERHEAD,
            DataFormat::V2 => DATA_V2_OVERHEAD,
        }
    }
}

/// The cleartext fields of an AEAD data packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    pub format: DataFormat,
    pub key_id: KeyId,
    /// Present in V2 only.
    pub peer_id: Option<PeerId>,
    pub packet_id: u32,
}

impl DataHeader {
    /// Parses the header of an AEAD data packet (V1 or V2). The packet must be long enough to
    /// hold the header and the tag; the ciphertext may be empty.
    pub fn parse(pkt: &[u8]) -> Result<Self, DataError> {
        let Some(&b0) = pkt.first() else {
            return Err(DataError::TooShort { len: 0, min: 1 });
        };
        let format = match opcode_of(b0) {
            opcode::P_DATA_V2 => DataFormat::V2,
            opcode::P_DATA_V1 => DataFormat::V1,
            op => return Err(DataError::WrongOpcode(op)),
        };
        let min = format.overhead();
        if pkt.len() < min {
            return Err(DataError::TooShort {
                len: pkt.len(),
                min,
            });
        }
        let (peer_id, pid_at) = match format {
            DataFormat::V2 => {
                let id = u32::from_be_bytes([0, pkt[1], pkt[2], pkt[3]]);
                (Some(PeerId(id)), DATA_V2_OPCODE_LEN)
            }
            DataFormat::V1 => (None, 1),
        };
        let packet_id = u32::from_be_bytes([
            pkt[pid_at],
            pkt[pid_at + 1],
            pkt[pid_at + 2],
            pkt[pid_at + 3],
        ]);
        Ok(Self {
            format,
            key_id: key_id_of(b0),
            peer_id,
            packet_id,
        })
    }
}

/// What a datagram on the OpenVPN port is, from its first bytes alone (if_ovpn's
/// `ovpn_udp_input` demultiplexing). Never fails: junk is `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketClass {
    /// P_DATA_V2 with its peer-id and key-id (at least 4 bytes were present).
    DataV2 { peer_id: PeerId, key_id: KeyId },
    /// P_DATA_V1 (no peer-id): relayed to the control process, never on the fast path.
    DataV1 { key_id: KeyId },
    /// A control-channel opcode (3..=5, 7, 8, 10, 11): relayed to the control process.
    Control { opcode: u8, key_id: KeyId },
    /// Empty, truncated, or an opcode OpenVPN 2.6 does not know.
    Unknown,
}

/// Classifies a datagram by its opcode byte (and the peer-id for DATA_V2).
pub fn classify(pkt: &[u8]) -> PacketClass {
    let Some(&b0) = pkt.first() else {
        return PacketClass::Unknown;
    };
    let key_id = key_id_of(b0);
    match opcode_of(b0) {
        opcode::P_DATA_V2 if pkt.len() >= DATA_V2_OPCODE_LEN => PacketClass::DataV2 {
            peer_id: PeerId(u32::from_be_bytes([0, pkt[1], pkt[2], pkt[3]])),
            key_id,
        },
        opcode::P_DATA_V1 => PacketClass::DataV1 { key_id },
        op @ (opcode::P_CONTROL_SOFT_RESET_V1
        | opcode::P_CONTROL_V1
        | opcode::P_ACK_V1
        | opcode::P_CONTROL_HARD_RESET_CLIENT_V2
        | opcode::P_CONTROL_HARD_RESET_SERVER_V2
        | opcode::P_CONTROL_HARD_RESET_CLIENT_V3
        | opcode::P_CONTROL_WKC_V1) => PacketClass::Control { opcode: op, key_id },
        _ => PacketClass::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_v2_fields() {
        let mut pkt = [0u8; 24];
        pkt[..8].copy_from_slice(&[0x4a, 0x01, 0x02, 0x03, 0, 0, 0, 9]);
        let h = DataHeader::parse(&pkt).unwrap();
        assert_eq!(h.format, DataFormat::V2);
        assert_eq!(h.key_id.get(), 2);
        assert_eq!(h.peer_id.unwrap().get(), 0x010203);
        assert_eq!(h.packet_id, 9);
        assert_eq!(
            DataHeader::parse(&pkt[..23]),
            Err(DataError::TooShort { len: 23, min: 24 })
        );
    }

    #[test]
    fn header_v1_fields() {
        let mut pkt = [0u8; 21];
        pkt[..5].copy_from_slice(&[0x31, 0, 0, 1, 0]);
        let h = DataHeader::parse(&pkt).unwrap();
        assert_eq!(h.format, DataFormat::V1);
        assert_eq!(h.key_id.get(), 1);
        assert_eq!(h.peer_id, None);
        assert_eq!(h.packet_id, 256);
    }

    #[test]
    fn classify_opcodes() {
        assert_eq!(classify(&[]), PacketClass::Unknown);
        assert_eq!(classify(&[0x48, 0, 0]), PacketClass::Unknown);
        assert!(
            matches!(classify(&[0x48, 0, 0, 5]), PacketClass::DataV2 { peer_id, .. } if peer_id.get() == 5)
        );
        assert!(matches!(
            classify(&[0x38]),
            PacketClass::Control { opcode: 7, .. }
        ));
        assert!(matches!(
            classify(&[0x28]),
            PacketClass::Control { opcode: 5, .. }
        ));
        assert!(matches!(classify(&[0x31]), PacketClass::DataV1 { .. }));
        assert_eq!(classify(&[0x08]), PacketClass::Unknown); // key-method 1: removed in 2.5
        assert_eq!(classify(&[0xf8]), PacketClass::Unknown);
    }

    #[test]
    fn key_id_wraps_to_one() {
        let mut k = KeyId::new(0).unwrap();
        let seq: Vec<u8> = (0..9)
            .map(|_| {
                k = k.next();
                k.get()
            })
            .collect();
        assert_eq!(seq, [1, 2, 3, 4, 5, 6, 7, 1, 2]);
        assert!(KeyId::new(8).is_none());
        assert!(PeerId::new(0x1000000).is_none());
    }
}
