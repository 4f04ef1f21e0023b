//! nvlist IPC (libnv packed format) with if_ovpn's command set, its transport, and the typed client.

pub mod codec;
pub mod nvlist;
pub mod wire;

pub use codec::{ByteOrder, DecodeError, DecodeErrorKind, EncodeError, EncodeErrorKind, Limits};
pub use nvlist::{Blob, Nvlist, Value};
