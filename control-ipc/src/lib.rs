//! nvlist IPC (libnv packed format) with if_ovpn's command set, its transport, and the typed client.

pub mod codec;
pub mod de;
pub mod map_error;
pub mod message;
pub mod nvlist;
pub mod schema;
pub mod ser;
pub mod types;
pub mod wire;

pub use codec::{ByteOrder, DecodeError, DecodeErrorKind, EncodeError, EncodeErrorKind, Limits};
pub use de::{from_nvlist, from_value};
pub use map_error::{MapError, MapErrorKind};
pub use message::{Command, IpcError, Notification, Request, Response};
pub use nvlist::{Blob, Nvlist, Value};
pub use ser::{to_nvlist, to_value};
