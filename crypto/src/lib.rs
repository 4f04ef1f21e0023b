//! The OpenVPN 2.6 data channel, bit-exact with stock OpenVPN: P_DATA_V2/V1 framing with
//! AEAD (AES-128/256-GCM, ChaCha20-Poly1305), key material layout and derivation (TLS-EKM and
//! the legacy TLS1-PRF), per-key send counters and receive replay windows, recognition of the
//! keepalive ping and OCC payloads, and the [`BatchAead`] seam the GPU backend implements.
//!
//! Buffers are caller-owned and processed in place: nothing here allocates per packet.
//!
//! ```
//! use crypto::{CipherKind, Key2, Role, EncryptKey, DecryptKey, KeyId, PeerId, DATA_V2_OVERHEAD};
//! let key2 = Key2::from_bytes([7u8; 256]);
//! let (c_enc, _c_dec) = key2.data_keys(Role::Client, CipherKind::Aes256Gcm).unwrap();
//! let (_s_enc, s_dec) = key2.data_keys(Role::Server, CipherKind::Aes256Gcm).unwrap();
//! let tx = EncryptKey::new(KeyId::new(0).unwrap(), &c_enc).unwrap();
//! let rx = DecryptKey::new(KeyId::new(0).unwrap(), &s_dec, 2048).unwrap();
//! let mut buf = [0u8; 128];
//! buf[DATA_V2_OVERHEAD..DATA_V2_OVERHEAD + 5].copy_from_slice(b"hello");
//! let sealed = tx.seal_v2(PeerId::new(1).unwrap(), &mut buf, 5).unwrap();
//! let opened = rx.open(&mut buf[..sealed.len]).unwrap();
//! assert_eq!(&buf[opened.payload], b"hello");
//! ```

mod aead;
mod batch;
mod cipher;
mod data;
mod error;
mod keys;
mod packet_id;
mod payload;
mod prf;
mod replay;
mod wire;

pub use aead::{AeadKey, NONCE_LEN, TAG_LEN};
pub use batch::{AeadOp, BatchAead, CpuBatch};
pub use cipher::{CipherError, CipherKind};
pub use data::{DecryptKey, EncryptKey, Opened, Sealed};
pub use error::{DataError, DropReason};
pub use keys::{DirectionalKey, EKM_LABEL, Key2, KeyError, Role, Tls1PrfInputs};
pub use packet_id::{PacketIdReservation, ROTATE_THRESHOLD, SendCounter};
pub use payload::{KEEPALIVE_PING, OCC_EXIT, OCC_MAGIC, Plaintext, classify_plaintext};
pub use prf::tls1_prf;
pub use replay::{DEFAULT_REPLAY_WINDOW, MAX_REPLAY_WINDOW, MIN_REPLAY_WINDOW, ReplayWindow};
pub use wire::{
    DATA_V1_OVERHEAD, DATA_V2_OVERHEAD, DataFormat, DataHeader, KeyId, PEER_ID_UNDEF, PacketClass,
    PeerId, classify, key_id_of, opcode, opcode_of,
};
