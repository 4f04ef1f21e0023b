//! nvlist IPC between `dco-control`/`ovpnctl` and `dco-daemon`, with FreeBSD if_ovpn's
//! command set, and the `ovpnctl` CLI.
//!
//! Layers, bottom up:
//!
//! - [`codec`]: libnv's packed nvlist format (`nvlist_pack`/`nvlist_unpack`), byte-exact
//!   with libnv (checked against libnv's own output), both byte orders, bounded decoding
//!   with typed errors that name the offending key. [`nvlist`] is the value model.
//! - [`ser`]/[`de`]: serde mapping, so each command is a plain struct; [`types`] holds the
//!   shared encodings (sockaddr, prefix, key bytes).
//! - [`schema`]: every request, reply and notification, with the key table;
//!   [`message`]: envelopes (`{id, cmd, args}`, `{id, error, message, key, result}`,
//!   `{notification, ...}`), [`Request`], [`Response`], [`Notification`], [`IpcError`].
//! - [`transport`]: UNIX `SOCK_SEQPACKET` under tokio (message boundaries kept by the
//!   kernel), `SO_PEERCRED`.
//! - [`server`] (the daemon implements [`Handler`] and pushes through a [`Notifier`]) and
//!   [`client`] (typed async [`Client`], one method per command, [`Subscription`]).
//! - [`mock`]: an in-memory daemon behind the real server, for tests.
//!
//! Daemon side:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use control_ipc::{Handler, Caller, Request, Response, IpcError, Server, ServerConfig, Notification};
//! # use control_ipc::schema::PeerRef;
//! # struct Daemon;
//! # impl Handler for Daemon {
//! #     async fn handle(&self, _r: Request, _c: &Caller) -> Result<Response, IpcError> { Ok(Response::Ok) }
//! # }
//! # async fn f() -> std::io::Result<()> {
//! let server = Server::bind(ServerConfig::for_interface("dco0").allow_uid(998))?;
//! let notifier = server.notifier(); // Clone into packet worker threads:
//! std::thread::spawn(move || {
//!     // never blocks; false if no subscriber queued it (count it as lost_ctrl)
//!     notifier.notify(Notification::RotateKey(PeerRef { peerid: 5 }));
//! });
//! server.serve(Arc::new(Daemon)).await
//! # }
//! ```
//!
//! Control side:
//!
//! ```no_run
//! # use control_ipc::Client;
//! # use control_ipc::schema::NotificationKind;
//! # async fn f() -> Result<(), control_ipc::ClientError> {
//! let c = Client::connect_interface("dco0").await?;
//! let mut notes = c.subscribe(&[], Some(4096)).await?; // all kinds
//! c.swap_keys(5).await?;
//! while let Some(n) = notes.next().await { /* CONTROL_PACKET, DEL_PEER, MISSED ... */ }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

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
