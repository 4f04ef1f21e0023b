//! Control-channel packet codec: the cleartext layout of an OpenVPN control packet once the
//! tls-auth / tls-crypt wrapping is removed (openvpn-protocol.md §1.4, §1.5).
//!
//! ```text
//! op|kid(1) | own_sid(8) | ack_count(1) | ack_ids(4n) | [remote_sid(8) iff n>0] | [msg_id(4) unless P_ACK_V1] | payload
//! ```
//!
//! Parsing borrows the payload from the input; encoding writes into a caller buffer. Every
//! wire constant of the control channel lives at the top of this module.

use std::fmt;

use thiserror::Error;

// ---------------------------------------------------------------------------------------------
// Wire constants (openvpn-protocol.md §1, §2, §3, §9). One place for the whole control layer.
// ---------------------------------------------------------------------------------------------

/// `byte0 = opcode << OPCODE_SHIFT | key_id`.
pub const OPCODE_SHIFT: u8 = 3;
/// Low three bits of byte 0 are the key id.
pub const KEY_ID_MASK: u8 = 0x07;
/// Session ids are opaque 8-byte strings (`SID_SIZE`).
pub const SESSION_ID_LEN: usize = 8;
/// Opcode byte plus the sender's session id: the cleartext prefix of every control packet.
pub const HEADER_LEN: usize = 1 + SESSION_ID_LEN;
/// Size of one ACKed message id and of the message packet id.
pub const MESSAGE_ID_LEN: usize = 4;
/// Most ACKs one packet may carry; 2.6 drops a packet with more (`RELIABLE_ACK_SIZE`).
pub const MAX_ACKS: usize = 8;
/// Most ACKs piggy-backed on a P_CONTROL_V1 or reset (`CONTROL_SEND_ACK_MAX`).
pub const MAX_PIGGYBACK_ACKS: usize = 4;
/// Long-form replay id of tls-auth/tls-crypt: packet id (4) and Unix time (4).
pub const REPLAY_ID_LEN: usize = 8;
/// tls-crypt authentication tag (HMAC-SHA256).
pub const TLS_CRYPT_TAG_LEN: usize = 32;
/// 2.6 books one AES block more than tls-crypt spends when it sizes control payloads.
pub const TLS_CRYPT_BLOCK_RESERVE: usize = 16;
/// tls-crypt wire offsets: replay id, tag, ciphertext (`TLS_CRYPT_OFF_*`).
pub const TLS_CRYPT_OFF_PID: usize = HEADER_LEN;
/// See [`TLS_CRYPT_OFF_PID`].
pub const TLS_CRYPT_OFF_TAG: usize = TLS_CRYPT_OFF_PID + REPLAY_ID_LEN;
/// See [`TLS_CRYPT_OFF_PID`].
pub const TLS_CRYPT_OFF_CT: usize = TLS_CRYPT_OFF_TAG + TLS_CRYPT_TAG_LEN;
/// Default `--max-packet-size` (`TLS_MTU_DEFAULT`): the whole IP packet, headers included.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1250;
/// Lower clamp of `--max-packet-size` (`TLS_CHANNEL_MTU_MIN`).
pub const MIN_MAX_PACKET_SIZE: usize = 154;
/// Upper clamp of `--max-packet-size` (`TLS_CHANNEL_BUF_SIZE`).
pub const MAX_MAX_PACKET_SIZE: usize = 2048;
/// IPv4 + UDP header bytes counted against the max packet size.
pub const IPV4_UDP_OVERHEAD: usize = 28;
/// IPv6 + UDP header bytes counted against the max packet size.
pub const IPV6_UDP_OVERHEAD: usize = 48;
/// Reset TLV type carrying the early-negotiation flags (§9).
pub const TLV_TYPE_EARLY_NEG_FLAGS: u16 = 0x0001;
/// Early-negotiation flag: the server asks the client to resend its wrapped key (tls-crypt-v2).
pub const EARLY_NEG_FLAG_RESEND_WKC: u16 = 0x0001;
/// A tls-crypt-v2 client starts its replay counter here to announce early negotiation.
pub const EARLY_NEG_START: u32 = 0x0f00_0000;

/// Size of the ACK block for `n` ACKs: count byte, ids, and the remote session id if `n > 0`
/// (`ACK_SIZE(n)` in 2.6).
pub const fn ack_block_len(n: usize) -> usize {
    1 + if n > 0 {
        SESSION_ID_LEN + MESSAGE_ID_LEN * n
    } else {
        0
    }
}

// ---------------------------------------------------------------------------------------------
// Opcodes, key ids, session ids
// ---------------------------------------------------------------------------------------------

/// The 5-bit opcode of byte 0 (§1.1). Data opcodes are listed so callers can recognise and
/// route them, but the control codec refuses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Key method 1 client reset; obsolete, refused.
    HardResetClientV1 = 1,
    /// Key method 1 server reset; obsolete, refused.
    HardResetServerV1 = 2,
    /// Starts a renegotiation on a new key id.
    SoftResetV1 = 3,
    /// Reliable control packet carrying TLS ciphertext.
    ControlV1 = 4,
    /// ACK only: no message id, no payload.
    AckV1 = 5,
    /// Data packet without peer id.
    DataV1 = 6,
    /// First packet of a client (key method 2).
    HardResetClientV2 = 7,
    /// The server's answer to a client hard reset.
    HardResetServerV2 = 8,
    /// Data packet with a 24-bit peer id.
    DataV2 = 9,
    /// tls-crypt-v2 client reset (wrapped client key appended); not supported.
    HardResetClientV3 = 10,
    /// tls-crypt-v2 P_CONTROL_V1 with the wrapped client key; not supported.
    ControlWkcV1 = 11,
}

impl Opcode {
    /// The opcode for a raw 5-bit value, if it is one OpenVPN defines.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::HardResetClientV1,
            2 => Self::HardResetServerV1,
            3 => Self::SoftResetV1,
            4 => Self::ControlV1,
            5 => Self::AckV1,
            6 => Self::DataV1,
            7 => Self::HardResetClientV2,
            8 => Self::HardResetServerV2,
            9 => Self::DataV2,
            10 => Self::HardResetClientV3,
            11 => Self::ControlWkcV1,
            _ => return None,
        })
    }

    /// Raw 5-bit value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Data-channel opcodes (P_DATA_V1/V2): never handled by the control layer.
    pub const fn is_data(self) -> bool {
        matches!(self, Self::DataV1 | Self::DataV2)
    }

    /// Hard resets of key method 2 (7, 8, 10): their payload is parsed as TLVs by 2.6.
    pub const fn is_hard_reset(self) -> bool {
        matches!(
            self,
            Self::HardResetClientV2 | Self::HardResetServerV2 | Self::HardResetClientV3
        )
    }

    /// Any reset that opens a key state (message id 0): hard resets and the soft reset.
    pub const fn is_reset(self) -> bool {
        self.is_hard_reset() || matches!(self, Self::SoftResetV1)
    }

    /// Whether the packet carries a message packet id (everything but P_ACK_V1).
    pub const fn has_message_id(self) -> bool {
        !matches!(self, Self::AckV1)
    }

    /// tls-crypt-v2 opcodes, which this implementation refuses.
    pub const fn is_tls_crypt_v2(self) -> bool {
        matches!(self, Self::HardResetClientV3 | Self::ControlWkcV1)
    }

    /// OpenVPN's name for the opcode, as in its logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::HardResetClientV1 => "P_CONTROL_HARD_RESET_CLIENT_V1",
            Self::HardResetServerV1 => "P_CONTROL_HARD_RESET_SERVER_V1",
            Self::SoftResetV1 => "P_CONTROL_SOFT_RESET_V1",
            Self::ControlV1 => "P_CONTROL_V1",
            Self::AckV1 => "P_ACK_V1",
            Self::DataV1 => "P_DATA_V1",
            Self::HardResetClientV2 => "P_CONTROL_HARD_RESET_CLIENT_V2",
            Self::HardResetServerV2 => "P_CONTROL_HARD_RESET_SERVER_V2",
            Self::DataV2 => "P_DATA_V2",
            Self::HardResetClientV3 => "P_CONTROL_HARD_RESET_CLIENT_V3",
            Self::ControlWkcV1 => "P_CONTROL_WKC_V1",
        }
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The 3-bit key id of byte 0 (§1.2): 0 for the first TLS session, then 1..=7 cycling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct KeyId(u8);

impl KeyId {
    /// Key id 0, used only by the first TLS session of a connection.
    pub const ZERO: Self = Self(0);

    /// A key id from its value; `None` if above 7.
    pub const fn new(v: u8) -> Option<Self> {
        if v <= KEY_ID_MASK {
            Some(Self(v))
        } else {
            None
        }
    }

    /// The value 0..=7.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The key id of the next renegotiation: 1, 2, …, 7, then back to 1 (never 0 again).
    pub const fn next(self) -> Self {
        if self.0 >= KEY_ID_MASK {
            Self(1)
        } else {
            Self(self.0 + 1)
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An 8-byte session id (§1.3). Opaque: a 2.6 server's is an HMAC cookie.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SessionId(pub [u8; SESSION_ID_LEN]);

impl SessionId {
    /// A fresh random, never all-zero, session id from the system CSPRNG.
    pub fn random() -> Result<Self, ring::error::Unspecified> {
        use ring::rand::SecureRandom;
        let rng = ring::rand::SystemRandom::new();
        loop {
            let mut b = [0u8; SESSION_ID_LEN];
            rng.fill(&mut b)?;
            if b != [0u8; SESSION_ID_LEN] {
                return Ok(Self(b));
            }
        }
    }

    /// The all-zero id: 2.6 treats it as "undefined" and never sends it.
    pub fn is_zero(&self) -> bool {
        self.0 == [0u8; SESSION_ID_LEN]
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; SESSION_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// Up to [`MAX_ACKS`] ACKed message ids, in wire order; fixed capacity, no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct AckIds {
    len: u8,
    ids: [u32; MAX_ACKS],
}

/// Returned when an [`AckIds`] is already full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("ACK list already holds {MAX_ACKS} ids")]
pub struct AckListFull;

impl AckIds {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            len: 0,
            ids: [0; MAX_ACKS],
        }
    }

    /// A list from a slice; `None` if it has more than [`MAX_ACKS`] ids.
    pub fn from_slice(ids: &[u32]) -> Option<Self> {
        let mut a = Self::new();
        for &id in ids {
            a.push(id).ok()?;
        }
        Some(a)
    }

    /// Append an id.
    pub fn push(&mut self, id: u32) -> Result<(), AckListFull> {
        let i = usize::from(self.len);
        if i >= MAX_ACKS {
            return Err(AckListFull);
        }
        self.ids[i] = id;
        self.len += 1;
        Ok(())
    }

    /// The ids in wire order.
    pub fn as_slice(&self) -> &[u32] {
        &self.ids[..usize::from(self.len)]
    }

    /// Number of ids.
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// No ids.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `id` is in the list.
    pub fn contains(&self, id: u32) -> bool {
        self.as_slice().contains(&id)
    }
}

impl fmt::Debug for AckIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Packet
// ---------------------------------------------------------------------------------------------

/// A control packet in cleartext layout. `payload` borrows from the parsed buffer.
///
/// Invariants (checked by [`ControlPacket::encode`], guaranteed by [`parse`]):
/// `remote_session_id.is_some() == !acks.is_empty()`, and
/// `message_id.is_some() == opcode.has_message_id()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlPacket<'a> {
    /// A control opcode (3, 4, 5, 7 or 8).
    pub opcode: Opcode,
    /// Key id of the key state the packet belongs to.
    pub key_id: KeyId,
    /// The sender's own session id.
    pub session_id: SessionId,
    /// Message ids the sender acknowledges.
    pub acks: AckIds,
    /// The receiver's session id, echoed; present exactly when `acks` is non-empty.
    pub remote_session_id: Option<SessionId>,
    /// Reliability sequence number; absent in P_ACK_V1.
    pub message_id: Option<u32>,
    /// TLS ciphertext (P_CONTROL_V1), TLVs (hard resets), empty otherwise.
    pub payload: &'a [u8],
}

/// Which field of a control packet ran out of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Byte 0.
    Opcode,
    /// The sender's session id.
    SessionId,
    /// The ACK count byte.
    AckCount,
    /// The ACKed ids.
    AckIds,
    /// The remote session id after the ACKs.
    RemoteSessionId,
    /// The message packet id.
    MessageId,
    /// The long-form replay id (pid + time) of a wrapped packet.
    ReplayId,
    /// The tls-auth HMAC or tls-crypt tag.
    Authenticator,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Opcode => "opcode",
            Self::SessionId => "session id",
            Self::AckCount => "ack count",
            Self::AckIds => "ack ids",
            Self::RemoteSessionId => "remote session id",
            Self::MessageId => "message packet id",
            Self::ReplayId => "replay packet id/time",
            Self::Authenticator => "HMAC/tag",
        })
    }
}

/// Why a control packet could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The packet ended inside a field.
    #[error("control packet truncated in the {0} field")]
    Truncated(Field),
    /// Opcode 0 or 12..=31.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u8),
    /// Opcodes 1 and 2.
    #[error("{0} uses key-method 1, which is not supported")]
    KeyMethod1(Opcode),
    /// P_DATA_V1 / P_DATA_V2 handed to the control codec.
    #[error("{0} is a data-channel packet, not a control packet")]
    NotControl(Opcode),
    /// Opcodes 10 and 11.
    #[error("{0}: tls-crypt-v2 is not supported")]
    TlsCryptV2Unsupported(Opcode),
    /// More than 8 ACKs: 2.6 rejects the whole packet.
    #[error("{0} ACKs in one packet (at most {MAX_ACKS} allowed)")]
    TooManyAcks(u8),
    /// Bytes after a P_ACK_V1, which has no payload.
    #[error("{0} trailing bytes after a P_ACK_V1")]
    TrailingBytes(usize),
}

/// Why a control packet could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The caller's buffer is too small.
    #[error("output buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The opcode is not one this codec sends (data, key-method 1 or tls-crypt-v2).
    #[error("{0} cannot be sent as a control packet")]
    UnsupportedOpcode(Opcode),
    /// ACKs without the remote session id, or a remote session id without ACKs.
    #[error("remote session id must be present exactly when ACKs are present")]
    AckSessionMismatch,
    /// A message id on P_ACK_V1, or none on another opcode.
    #[error("message id presence does not match {0}")]
    MessageIdMismatch(Opcode),
    /// Payload on P_ACK_V1 or on a reset (we never send reset TLVs, §1.5).
    #[error("{0} must not carry a payload")]
    PayloadNotAllowed(Opcode),
}

/// The ACK block names a session other than the receiver's; 2.6 drops the whole packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("ACKs name session {got}, but ours is {expected}")]
pub struct WrongRemoteSession {
    /// Our own session id.
    pub expected: SessionId,
    /// The id the packet carried.
    pub got: SessionId,
}

/// Decode byte 0: the opcode (if defined) and key id.
pub fn split_byte0(b: u8) -> (u8, KeyId) {
    (b >> OPCODE_SHIFT, KeyId(b & KEY_ID_MASK))
}

/// Encode byte 0.
pub const fn byte0(op: Opcode, key_id: KeyId) -> u8 {
    (op.as_u8() << OPCODE_SHIFT) | key_id.0
}

/// Check that a raw opcode value is a control opcode this codec handles.
pub(crate) fn control_opcode(raw: u8) -> Result<Opcode, ParseError> {
    match Opcode::from_u8(raw) {
        None => Err(ParseError::UnknownOpcode(raw)),
        Some(op @ (Opcode::HardResetClientV1 | Opcode::HardResetServerV1)) => {
            Err(ParseError::KeyMethod1(op))
        }
        Some(op) if op.is_data() => Err(ParseError::NotControl(op)),
        Some(op) if op.is_tls_crypt_v2() => Err(ParseError::TlsCryptV2Unsupported(op)),
        Some(op) => Ok(op),
    }
}

/// Small cursor over untrusted bytes; every read is checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: Field) -> Result<&'a [u8], ParseError> {
        if self.buf.len() < n {
            return Err(ParseError::Truncated(field));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self, field: Field) -> Result<u8, ParseError> {
        Ok(self.take(1, field)?[0])
    }

    fn u32(&mut self, field: Field) -> Result<u32, ParseError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn sid(&mut self, field: Field) -> Result<SessionId, ParseError> {
        let b = self.take(SESSION_ID_LEN, field)?;
        let mut s = [0u8; SESSION_ID_LEN];
        s.copy_from_slice(b);
        Ok(SessionId(s))
    }
}

/// Parse a cleartext control packet (after unwrapping).
///
/// Resets may carry a payload (2.6 parses it as TLVs); it is exposed, see
/// [`ControlPacket::reset_tlvs`]. P_ACK_V1 must end after its ACK block.
pub fn parse(buf: &[u8]) -> Result<ControlPacket<'_>, ParseError> {
    let mut r = Reader { buf };
    let (raw, key_id) = split_byte0(r.u8(Field::Opcode)?);
    let opcode = control_opcode(raw)?;
    let session_id = r.sid(Field::SessionId)?;
    let (acks, remote_session_id) = parse_ack_block(&mut r)?;
    let message_id = if opcode.has_message_id() {
        Some(r.u32(Field::MessageId)?)
    } else {
        None
    };
    let payload = r.buf;
    if opcode == Opcode::AckV1 && !payload.is_empty() {
        return Err(ParseError::TrailingBytes(payload.len()));
    }
    Ok(ControlPacket {
        opcode,
        key_id,
        session_id,
        acks,
        remote_session_id,
        message_id,
        payload,
    })
}

fn parse_ack_block(r: &mut Reader<'_>) -> Result<(AckIds, Option<SessionId>), ParseError> {
    let count = r.u8(Field::AckCount)?;
    if usize::from(count) > MAX_ACKS {
        return Err(ParseError::TooManyAcks(count));
    }
    let mut acks = AckIds::new();
    for _ in 0..count {
        let id = r.u32(Field::AckIds)?;
        // Capacity was checked against `count` above.
        acks.push(id)
            .map_err(|AckListFull| ParseError::TooManyAcks(count))?;
    }
    let remote = if count > 0 {
        Some(r.sid(Field::RemoteSessionId)?)
    } else {
        None
    };
    Ok((acks, remote))
}

impl<'a> ControlPacket<'a> {
    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + ack_block_len(self.acks.len())
            + if self.message_id.is_some() {
                MESSAGE_ID_LEN
            } else {
                0
            }
            + self.payload.len()
    }

    /// Check the invariants a packet must meet before it goes on the wire.
    pub fn validate_for_send(&self) -> Result<(), EncodeError> {
        match self.opcode {
            Opcode::SoftResetV1
            | Opcode::ControlV1
            | Opcode::AckV1
            | Opcode::HardResetClientV2
            | Opcode::HardResetServerV2 => {}
            op => return Err(EncodeError::UnsupportedOpcode(op)),
        }
        if self.acks.is_empty() != self.remote_session_id.is_none() {
            return Err(EncodeError::AckSessionMismatch);
        }
        if self.message_id.is_some() != self.opcode.has_message_id() {
            return Err(EncodeError::MessageIdMismatch(self.opcode));
        }
        if !self.payload.is_empty() && (self.opcode == Opcode::AckV1 || self.opcode.is_reset()) {
            return Err(EncodeError::PayloadNotAllowed(self.opcode));
        }
        Ok(())
    }

    /// Write the packet into `out`; returns the number of bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        self.validate_for_send()?;
        let needed = self.encoded_len();
        if out.len() < needed {
            return Err(EncodeError::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        let mut w = 0usize;
        let mut put = |bytes: &[u8]| {
            out[w..w + bytes.len()].copy_from_slice(bytes);
            w += bytes.len();
        };
        put(&[byte0(self.opcode, self.key_id)]);
        put(&self.session_id.0);
        self.write_ack_block(&mut put);
        if let Some(id) = self.message_id {
            put(&id.to_be_bytes());
        }
        put(self.payload);
        Ok(w)
    }

    /// Encode everything after `op|kid|own_sid` (the part tls-crypt encrypts) into `out`.
    pub(crate) fn encode_body(&self, out: &mut [u8]) -> usize {
        let mut w = 0usize;
        let mut put = |bytes: &[u8]| {
            out[w..w + bytes.len()].copy_from_slice(bytes);
            w += bytes.len();
        };
        self.write_ack_block(&mut put);
        if let Some(id) = self.message_id {
            put(&id.to_be_bytes());
        }
        put(self.payload);
        w
    }

    fn write_ack_block(&self, put: &mut impl FnMut(&[u8])) {
        // Bounded by MAX_ACKS, so it fits a u8.
        put(&[self.acks.len() as u8]);
        for id in self.acks.as_slice() {
            put(&id.to_be_bytes());
        }
        if let Some(remote) = &self.remote_session_id {
            put(&remote.0);
        }
    }

    /// §1.5: a packet with ACKs must name the receiver's own session id after them, or the
    /// whole packet is refused (its ACKs and its message).
    pub fn check_remote_session(&self, own: SessionId) -> Result<(), WrongRemoteSession> {
        match self.remote_session_id {
            Some(got) if got != own => Err(WrongRemoteSession { expected: own, got }),
            _ => Ok(()),
        }
    }

    /// The TLVs of a hard-reset payload (§1.5, §9); `None` for other opcodes.
    pub fn reset_tlvs(&self) -> Option<TlvIter<'a>> {
        self.opcode
            .is_hard_reset()
            .then(|| parse_tlvs(self.payload))
    }
}

// ---------------------------------------------------------------------------------------------
// Reset TLVs (early negotiation, §9)
// ---------------------------------------------------------------------------------------------

/// One TLV of a hard-reset payload: `type u16 | len u16 | value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// TLV type (1 = early-negotiation flags).
    pub kind: u16,
    /// TLV value.
    pub value: &'a [u8],
}

/// A malformed reset TLV; 2.6 aborts the handshake on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TlvError {
    /// Fewer than 4 bytes left for a TLV header.
    #[error("reset TLV header truncated ({0} bytes left)")]
    TruncatedHeader(usize),
    /// The value is longer than what is left.
    #[error("reset TLV type {kind} announces {len} bytes, {available} left")]
    TruncatedValue {
        /// TLV type.
        kind: u16,
        /// Announced length.
        len: u16,
        /// Bytes left.
        available: usize,
    },
    /// EARLY_NEG_FLAGS must be exactly 2 bytes.
    #[error("early-negotiation flags TLV has length {0}, expected 2")]
    BadFlagsLength(u16),
}

/// Iterator over reset TLVs; stops after the first error.
#[derive(Debug, Clone)]
pub struct TlvIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Iterate the TLVs of a hard-reset payload.
pub fn parse_tlvs(payload: &[u8]) -> TlvIter<'_> {
    TlvIter {
        rest: payload,
        failed: false,
    }
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Result<Tlv<'a>, TlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let r = self.next_inner();
        self.failed = r.is_err();
        Some(r)
    }
}

impl<'a> TlvIter<'a> {
    fn next_inner(&mut self) -> Result<Tlv<'a>, TlvError> {
        let b = self.rest;
        if b.len() < 4 {
            return Err(TlvError::TruncatedHeader(b.len()));
        }
        let kind = u16::from_be_bytes([b[0], b[1]]);
        let len = u16::from_be_bytes([b[2], b[3]]);
        let body = &b[4..];
        if body.len() < usize::from(len) {
            return Err(TlvError::TruncatedValue {
                kind,
                len,
                available: body.len(),
            });
        }
        if kind == TLV_TYPE_EARLY_NEG_FLAGS && len != 2 {
            return Err(TlvError::BadFlagsLength(len));
        }
        let (value, rest) = body.split_at(usize::from(len));
        self.rest = rest;
        Ok(Tlv { kind, value })
    }
}

/// What a hard-reset payload says, validated the way 2.6 validates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResetOptions {
    /// EARLY_NEG_FLAGS value, if the TLV was present.
    pub early_negotiation_flags: Option<u16>,
    /// Number of TLVs of unknown types (skipped, as 2.6 does).
    pub unknown_tlvs: usize,
}

impl ResetOptions {
    /// Parse a whole hard-reset payload; any malformed TLV is an error.
    pub fn parse(payload: &[u8]) -> Result<Self, TlvError> {
        let mut o = Self::default();
        for tlv in parse_tlvs(payload) {
            let tlv = tlv?;
            if tlv.kind == TLV_TYPE_EARLY_NEG_FLAGS {
                o.early_negotiation_flags = Some(u16::from_be_bytes([tlv.value[0], tlv.value[1]]));
            } else {
                o.unknown_tlvs += 1;
            }
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------------------------------------
// Header peek (valid on wrapped datagrams too: op|kid|sid is cleartext in every wrap mode)
// ---------------------------------------------------------------------------------------------

/// What the first bytes of any datagram say, before authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// A control packet: opcode, key id and the sender's session id.
    Control {
        /// Control opcode (3, 4, 5, 7 or 8).
        opcode: Opcode,
        /// Key id.
        key_id: KeyId,
        /// The sender's session id (unauthenticated).
        session_id: SessionId,
    },
    /// A data packet (P_DATA_V1/V2); route it to the data channel.
    Data {
        /// DataV1 or DataV2.
        opcode: Opcode,
        /// Key id.
        key_id: KeyId,
    },
}

/// Look at opcode, key id and session id of a raw (possibly wrapped) datagram without
/// authenticating it. Errors are the same as [`parse`]'s for those fields.
pub fn peek(datagram: &[u8]) -> Result<Peek, ParseError> {
    let mut r = Reader { buf: datagram };
    let (raw, key_id) = split_byte0(r.u8(Field::Opcode)?);
    match Opcode::from_u8(raw) {
        Some(op) if op.is_data() => {
            return Ok(Peek::Data { opcode: op, key_id });
        }
        _ => {}
    }
    let opcode = control_opcode(raw)?;
    let session_id = r.sid(Field::SessionId)?;
    Ok(Peek::Control {
        opcode,
        key_id,
        session_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID_A: SessionId = SessionId([0xc0, 0x79, 0x5b, 0x80, 0x02, 0xbd, 0xae, 0x13]);
    const SID_B: SessionId = SessionId([0x6c, 0xfa, 0x5c, 0x93, 0xb1, 0xf2, 0x85, 0xd8]);

    fn enc(p: &ControlPacket<'_>) -> Vec<u8> {
        let mut v = vec![0u8; p.encoded_len()];
        let n = p.encode(&mut v).expect("encode");
        assert_eq!(n, v.len());
        v
    }

    #[test]
    fn opcode_byte_layout() {
        // §11 item 2: DATA_V2 kid 0 is 0x48; ACK 0x28 vs CONTROL 0x20.
        assert_eq!(byte0(Opcode::DataV2, KeyId::ZERO), 0x48);
        assert_eq!(byte0(Opcode::AckV1, KeyId::ZERO), 0x28);
        assert_eq!(byte0(Opcode::ControlV1, KeyId::ZERO), 0x20);
        assert_eq!(byte0(Opcode::HardResetClientV2, KeyId::ZERO), 0x38);
        assert_eq!(byte0(Opcode::HardResetServerV2, KeyId::ZERO), 0x40);
        assert_eq!(byte0(Opcode::SoftResetV1, KeyId::new(1).unwrap()), 0x19);
        assert_eq!(split_byte0(0x21), (4, KeyId::new(1).unwrap()));
    }

    #[test]
    fn key_id_wraps_to_one_never_zero() {
        let mut k = KeyId::ZERO;
        let mut seen = vec![];
        for _ in 0..9 {
            k = k.next();
            seen.push(k.get());
        }
        assert_eq!(seen, [1, 2, 3, 4, 5, 6, 7, 1, 2]);
        assert!(KeyId::new(8).is_none());
    }

    #[test]
    fn live_example_client_reset_plain() {
        // §1.4 example, decrypted plaintext of the client's hard reset: `00 00000000`.
        let mut wire = vec![0x38];
        wire.extend_from_slice(&SID_A.0);
        wire.extend_from_slice(&[0x00, 0, 0, 0, 0]);
        let p = parse(&wire).unwrap();
        assert_eq!(p.opcode, Opcode::HardResetClientV2);
        assert_eq!(p.key_id, KeyId::ZERO);
        assert_eq!(p.session_id, SID_A);
        assert!(p.acks.is_empty());
        assert_eq!(p.remote_session_id, None);
        assert_eq!(p.message_id, Some(0));
        assert!(p.payload.is_empty());
        assert_eq!(enc(&p), wire);
        // 14 bytes unwrapped, as §1.4 says.
        assert_eq!(wire.len(), 14);
    }

    #[test]
    fn live_example_server_reset_and_ack() {
        // Server reset: `01 00000000 <client sid> 00000000`.
        let mut wire = vec![0x40];
        wire.extend_from_slice(&SID_B.0);
        wire.extend_from_slice(&[1, 0, 0, 0, 0]);
        wire.extend_from_slice(&SID_A.0);
        wire.extend_from_slice(&[0, 0, 0, 0]);
        let p = parse(&wire).unwrap();
        assert_eq!(p.acks.as_slice(), &[0]);
        assert_eq!(p.remote_session_id, Some(SID_A));
        assert_eq!(p.message_id, Some(0));
        assert_eq!(enc(&p), wire);

        // Client ACK_V1: `02 00000001 00000000 <server sid>`, no message id.
        let mut ack = vec![0x28];
        ack.extend_from_slice(&SID_A.0);
        ack.extend_from_slice(&[2, 0, 0, 0, 1, 0, 0, 0, 0]);
        ack.extend_from_slice(&SID_B.0);
        let p = parse(&ack).unwrap();
        assert_eq!(p.opcode, Opcode::AckV1);
        assert_eq!(p.acks.as_slice(), &[1, 0]);
        assert_eq!(p.message_id, None);
        assert_eq!(enc(&p), ack);
    }

    #[test]
    fn remote_sid_only_with_acks() {
        // ack_count 0: the next 4 bytes are the message id, not a session id.
        let mut wire = vec![0x20];
        wire.extend_from_slice(&SID_A.0);
        wire.extend_from_slice(&[0, 0, 0, 0, 7, 0x16, 0x03]);
        let p = parse(&wire).unwrap();
        assert_eq!(p.remote_session_id, None);
        assert_eq!(p.message_id, Some(7));
        assert_eq!(p.payload, &[0x16, 0x03]);

        let bad = ControlPacket {
            remote_session_id: Some(SID_B),
            ..p
        };
        assert_eq!(
            bad.encode(&mut [0u8; 64]),
            Err(EncodeError::AckSessionMismatch)
        );
        let bad = ControlPacket {
            acks: AckIds::from_slice(&[1]).unwrap(),
            ..p
        };
        assert_eq!(
            bad.encode(&mut [0u8; 64]),
            Err(EncodeError::AckSessionMismatch)
        );
    }

    #[test]
    fn acks_must_name_our_session() {
        let mut wire = vec![0x28];
        wire.extend_from_slice(&SID_A.0);
        wire.extend_from_slice(&[1, 0, 0, 0, 0]);
        wire.extend_from_slice(&SID_B.0);
        let p = parse(&wire).unwrap();
        assert_eq!(p.check_remote_session(SID_B), Ok(()));
        assert_eq!(
            p.check_remote_session(SID_A),
            Err(WrongRemoteSession {
                expected: SID_A,
                got: SID_B
            })
        );
        // No ACKs: nothing to check.
        let reset = ControlPacket {
            opcode: Opcode::HardResetClientV2,
            acks: AckIds::new(),
            remote_session_id: None,
            message_id: Some(0),
            ..p
        };
        assert_eq!(reset.check_remote_session(SID_A), Ok(()));
    }

    #[test]
    fn ack_v1_has_no_message_id_and_no_payload() {
        let mut wire = vec![0x28];
        wire.extend_from_slice(&SID_A.0);
        wire.extend_from_slice(&[1, 0, 0, 0, 3]);
        wire.extend_from_slice(&SID_B.0);
        let copy = wire.clone();
        let p = parse(&copy).unwrap();
        assert_eq!(p.message_id, None);
        wire.push(0xee);
        assert_eq!(parse(&wire), Err(ParseError::TrailingBytes(1)));
        let bad = ControlPacket {
            message_id: Some(1),
            ..p
        };
        assert_eq!(
            bad.encode(&mut [0u8; 64]),
            Err(EncodeError::MessageIdMismatch(Opcode::AckV1))
        );
        let bad = ControlPacket { payload: b"x", ..p };
        assert_eq!(
            bad.encode(&mut [0u8; 64]),
            Err(EncodeError::PayloadNotAllowed(Opcode::AckV1))
        );
    }

    #[test]
    fn eight_acks_ok_nine_rejected() {
        let mut wire = vec![0x28];
        wire.extend_from_slice(&SID_A.0);
        wire.push(8);
        for i in 0..8u32 {
            wire.extend_from_slice(&i.to_be_bytes());
        }
        wire.extend_from_slice(&SID_B.0);
        assert_eq!(parse(&wire).unwrap().acks.len(), 8);
        wire[9] = 9;
        wire.extend_from_slice(&[0, 0, 0, 9]);
        assert_eq!(parse(&wire), Err(ParseError::TooManyAcks(9)));
        wire[9] = 255;
        assert_eq!(parse(&wire), Err(ParseError::TooManyAcks(255)));
    }

    #[test]
    fn truncation_reports_field() {
        let mut full = vec![0x40];
        full.extend_from_slice(&SID_B.0);
        full.extend_from_slice(&[1, 0, 0, 0, 0]);
        full.extend_from_slice(&SID_A.0);
        full.extend_from_slice(&[0, 0, 0, 0]);
        let expect = |n: usize| match n {
            0 => Field::Opcode,
            1..=8 => Field::SessionId,
            9 => Field::AckCount,
            10..=13 => Field::AckIds,
            14..=21 => Field::RemoteSessionId,
            _ => Field::MessageId,
        };
        for n in 0..full.len() {
            assert_eq!(
                parse(&full[..n]),
                Err(ParseError::Truncated(expect(n))),
                "len {n}"
            );
        }
        assert!(parse(&full).is_ok());
    }

    #[test]
    fn opcode_classes() {
        let mk = |op: u8| {
            let mut v = vec![op << 3];
            v.extend_from_slice(&[0u8; 20]);
            v
        };
        assert_eq!(parse(&mk(0)), Err(ParseError::UnknownOpcode(0)));
        assert_eq!(parse(&mk(12)), Err(ParseError::UnknownOpcode(12)));
        assert_eq!(parse(&mk(31)), Err(ParseError::UnknownOpcode(31)));
        assert_eq!(
            parse(&mk(1)),
            Err(ParseError::KeyMethod1(Opcode::HardResetClientV1))
        );
        assert_eq!(
            parse(&mk(2)),
            Err(ParseError::KeyMethod1(Opcode::HardResetServerV1))
        );
        assert_eq!(parse(&mk(6)), Err(ParseError::NotControl(Opcode::DataV1)));
        assert_eq!(parse(&mk(9)), Err(ParseError::NotControl(Opcode::DataV2)));
        let e = parse(&mk(10)).unwrap_err();
        assert_eq!(
            e,
            ParseError::TlsCryptV2Unsupported(Opcode::HardResetClientV3)
        );
        assert!(e.to_string().contains("tls-crypt-v2 is not supported"));
        assert_eq!(
            parse(&mk(11)),
            Err(ParseError::TlsCryptV2Unsupported(Opcode::ControlWkcV1))
        );
        for op in [3u8, 4, 7, 8] {
            assert!(parse(&mk(op)).is_ok(), "opcode {op}");
        }
    }

    #[test]
    fn reset_payload_tolerated_exposed_never_sent() {
        // Server reset carrying EARLY_NEG_FLAGS(RESEND_WKC) plus an unknown TLV.
        let mut wire = vec![0x40];
        wire.extend_from_slice(&SID_B.0);
        wire.extend_from_slice(&[1, 0, 0, 0, 0]);
        wire.extend_from_slice(&SID_A.0);
        wire.extend_from_slice(&[0, 0, 0, 0]);
        wire.extend_from_slice(&[0, 1, 0, 2, 0, 1, 0x12, 0x34, 0, 1, 0xaa]);
        let p = parse(&wire).unwrap();
        assert_eq!(p.payload.len(), 11);
        let tlvs: Vec<_> = p.reset_tlvs().unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(tlvs.len(), 2);
        assert_eq!(
            tlvs[1],
            Tlv {
                kind: 0x1234,
                value: &[0xaa]
            }
        );
        let o = ResetOptions::parse(p.payload).unwrap();
        assert_eq!(o.early_negotiation_flags, Some(EARLY_NEG_FLAG_RESEND_WKC));
        assert_eq!(o.unknown_tlvs, 1);
        // We never send reset payloads.
        assert_eq!(
            p.encode(&mut [0u8; 64]),
            Err(EncodeError::PayloadNotAllowed(Opcode::HardResetServerV2))
        );
        // Control packets have no TLVs.
        let c = ControlPacket {
            opcode: Opcode::ControlV1,
            ..p
        };
        assert!(c.reset_tlvs().is_none());
    }

    #[test]
    fn malformed_tlvs() {
        assert_eq!(
            ResetOptions::parse(&[0, 1, 0]),
            Err(TlvError::TruncatedHeader(3))
        );
        assert_eq!(
            ResetOptions::parse(&[0, 7, 0, 5, 1]),
            Err(TlvError::TruncatedValue {
                kind: 7,
                len: 5,
                available: 1
            })
        );
        assert_eq!(
            ResetOptions::parse(&[0, 1, 0, 3, 0, 0, 0]),
            Err(TlvError::BadFlagsLength(3))
        );
        assert_eq!(ResetOptions::parse(&[]), Ok(ResetOptions::default()));
        // The iterator stops after an error.
        let mut it = parse_tlvs(&[0, 1]);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn encode_refuses_unsupported_opcodes_and_small_buffers() {
        let base = ControlPacket {
            opcode: Opcode::ControlV1,
            key_id: KeyId::ZERO,
            session_id: SID_A,
            acks: AckIds::new(),
            remote_session_id: None,
            message_id: Some(1),
            payload: b"hello",
        };
        for op in [
            Opcode::DataV1,
            Opcode::DataV2,
            Opcode::HardResetClientV1,
            Opcode::HardResetClientV3,
            Opcode::ControlWkcV1,
        ] {
            let p = ControlPacket { opcode: op, ..base };
            assert_eq!(
                p.encode(&mut [0u8; 64]),
                Err(EncodeError::UnsupportedOpcode(op))
            );
        }
        assert_eq!(
            base.encode(&mut [0u8; 10]),
            Err(EncodeError::BufferTooSmall {
                needed: 19,
                available: 10
            })
        );
    }

    #[test]
    fn peek_works_on_any_wrapping() {
        let mut d = vec![0x48, 0, 0, 1, 1, 2, 3];
        assert_eq!(
            peek(&d),
            Ok(Peek::Data {
                opcode: Opcode::DataV2,
                key_id: KeyId::ZERO
            })
        );
        d = vec![0x21];
        d.extend_from_slice(&SID_A.0);
        d.extend_from_slice(&[0xff; 40]); // junk after the header is not looked at
        assert_eq!(
            peek(&d),
            Ok(Peek::Control {
                opcode: Opcode::ControlV1,
                key_id: KeyId::new(1).unwrap(),
                session_id: SID_A
            })
        );
        assert_eq!(peek(&d[..5]), Err(ParseError::Truncated(Field::SessionId)));
        assert_eq!(peek(&[]), Err(ParseError::Truncated(Field::Opcode)));
        assert_eq!(
            peek(&[0x50, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(ParseError::TlsCryptV2Unsupported(Opcode::HardResetClientV3))
        );
    }

    #[test]
    fn ack_block_len_formula() {
        assert_eq!(ack_block_len(0), 1);
        assert_eq!(ack_block_len(1), 13);
        assert_eq!(ack_block_len(4), 25);
        assert_eq!(ack_block_len(8), 41);
    }

    #[test]
    fn random_session_id_is_nonzero_and_distinct() {
        let a = SessionId::random().unwrap();
        let b = SessionId::random().unwrap();
        assert!(!a.is_zero());
        assert_ne!(a, b);
        assert_eq!(format!("{}", SID_A), "c0795b8002bdae13");
    }
}
