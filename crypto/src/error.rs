//! Every way a data packet can be refused, with a counter-friendly reason code.

/// Why a data packet was not accepted. Peer bytes never cause a panic: they end up here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("packet too short: {len} bytes, need at least {min}")]
    TooShort { len: usize, min: usize },
    #[error("opcode {0} is not a data opcode")]
    WrongOpcode(u8),
    #[error("no key installed for key-id {0}")]
    UnknownKeyId(u8),
    #[error("peer-id {got} does not match the expected {expected}")]
    PeerIdMismatch { got: u32, expected: u32 },
    #[error("authentication tag mismatch")]
    TagMismatch,
    #[error("packet-id 0 is never valid")]
    ZeroPacketId,
    #[error("packet-id {0} was already received")]
    Replayed(u32),
    #[error("packet-id {0} is older than the replay window")]
    TooOld(u32),
    #[error("packet-id space of this key is exhausted; renegotiate")]
    PacketIdExhausted,
    #[error("buffer too small: {len} bytes, need {need}")]
    BufferTooSmall { len: usize, need: usize },
    #[error("payload of {len} bytes exceeds the cipher's limit")]
    TooLong { len: usize },
}

/// A compact reason code for per-reason drop counters (`counters[reason as usize]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    TooShort = 0,
    WrongOpcode,
    UnknownKeyId,
    PeerIdMismatch,
    TagMismatch,
    ZeroPacketId,
    Replayed,
    TooOld,
    PacketIdExhausted,
    BufferTooSmall,
    TooLong,
}

impl DropReason {
    /// Number of reasons: the size of a counter array indexed by `reason as usize`.
    pub const COUNT: usize = 11;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::TooShort,
        DropReason::WrongOpcode,
        DropReason::UnknownKeyId,
        DropReason::PeerIdMismatch,
        DropReason::TagMismatch,
        DropReason::ZeroPacketId,
        DropReason::Replayed,
        DropReason::TooOld,
        DropReason::PacketIdExhausted,
        DropReason::BufferTooSmall,
        DropReason::TooLong,
    ];

    /// A stable snake_case name for counters and logs.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::TooShort => "too_short",
            DropReason::WrongOpcode => "wrong_opcode",
            DropReason::UnknownKeyId => "unknown_key_id",
            DropReason::PeerIdMismatch => "peer_id_mismatch",
            DropReason::TagMismatch => "tag_mismatch",
            DropReason::ZeroPacketId => "zero_packet_id",
            DropReason::Replayed => "replayed",
            DropReason::TooOld => "too_old",
            DropReason::PacketIdExhausted => "packet_id_exhausted",
            DropReason::BufferTooSmall => "buffer_too_small",
            DropReason::TooLong => "too_long",
        }
    }
}

impl DataError {
    pub const fn reason(&self) -> DropReason {
        match self {
            DataError::TooShort { .. } => DropReason::TooShort,
            DataError::WrongOpcode(_) => DropReason::WrongOpcode,
            DataError::UnknownKeyId(_) => DropReason::UnknownKeyId,
            DataError::PeerIdMismatch { .. } => DropReason::PeerIdMismatch,
            DataError::TagMismatch => DropReason::TagMismatch,
            DataError::ZeroPacketId => DropReason::ZeroPacketId,
            DataError::Replayed(_) => DropReason::Replayed,
            DataError::TooOld(_) => DropReason::TooOld,
            DataError::PacketIdExhausted => DropReason::PacketIdExhausted,
            DataError::BufferTooSmall { .. } => DropReason::BufferTooSmall,
            DataError::TooLong { .. } => DropReason::TooLong,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_index_all() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
