//! nvlist IPC (libnv packed format) with if_ovpn's command set, its transport, and the typed client.

pub mod client;
pub mod codec;
pub mod de;
pub mod map_error;
pub mod message;
pub mod mock;
pub mod notify;
pub mod nvlist;
pub mod schema;
pub mod ser;
pub mod server;
pub mod transport;
pub mod types;
pub mod wire;

pub use client::{Client, ClientError, Subscription};
pub use codec::{ByteOrder, DecodeError, DecodeErrorKind, EncodeError, EncodeErrorKind, Limits};
pub use de::{from_nvlist, from_value};
pub use map_error::{MapError, MapErrorKind};
pub use message::{Command, IpcError, Notification, Request, Response};
pub use notify::Notifier;
pub use nvlist::{Blob, Nvlist, Value};
pub use ser::{to_nvlist, to_value};
pub use server::{Caller, Handler, Server, ServerConfig, default_socket_path};
