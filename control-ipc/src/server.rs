//! The daemon side: a UNIX socket per interface, caller checks, one reply per request, and
//! notification streams.
//!
//! The daemon implements [`Handler`] and runs [`Server::serve`]; it pushes notifications
//! through the [`Notifier`] from [`Server::notifier`], from any thread.
//!
//! ```no_run
//! use std::sync::Arc;
//! use control_ipc::server::{Caller, Handler, Server, ServerConfig};
//! use control_ipc::{IpcError, Request, Response};
//!
//! struct Daemon;
//! impl Handler for Daemon {
//!     async fn handle(&self, req: Request, _caller: &Caller) -> Result<Response, IpcError> {
//!         match req {
//!             Request::StartVpn => Ok(Response::Ok),
//!             other => Err(IpcError::unsupported(format!("{} not implemented", other.command()))),
//!         }
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = Server::bind(ServerConfig::for_interface("dco0"))?;
//! let notifier = server.notifier(); // hand to the packet workers
//! server.serve(Arc::new(Daemon)).await
//! # }
//! ```
//!
//! Requests on one connection are handled one after another, in order, so a caller may
//! pipeline `NEW_PEER` then `NEW_KEY` without waiting; connections run concurrently.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use zeroize::Zeroize;

use crate::codec::Limits;
use crate::message::{
    self, Command, IpcError, MAX_MESSAGE, Request, Response, decode_request, encode_notification,
    encode_reply,
};
use crate::notify::{Notifier, Subscriber};
use crate::schema::Subscribed;
use crate::transport::{Listener, PeerCred, Recv, SeqPacket, SocketPerms};

/// The default socket of an interface: `/run/dco/<ifname>.sock`, or
/// `/run/dco/<netns>/<ifname>.sock` inside a named network namespace (`ip netns`).
/// Interface names are per namespace and `/run` is not, so two namespaces may each have a
/// `tun0` without their daemons' sockets colliding; `ovpnctl` run in the same namespace
/// (`ip netns exec NAME ovpnctl ...`) finds the same path.
pub fn default_socket_path(ifname: &str) -> PathBuf {
    match current_netns_name() {
        Some(ns) => PathBuf::from(format!("/run/dco/{ns}/{ifname}.sock")),
        None => PathBuf::from(format!("/run/dco/{ifname}.sock")),
    }
}

/// The `ip netns` name of this process's network namespace, if it has one.
fn current_netns_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/self/ns/net").ok()?;
    for e in std::fs::read_dir("/run/netns").ok()?.flatten() {
        if let Ok(m) = std::fs::metadata(e.path())
            && m.ino() == own.ino()
            && m.dev() == own.dev()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.contains('/') && !name.starts_with('.') {
                return Some(name);
            }
        }
    }
    None
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Socket path.
    pub path: PathBuf,
    /// Users besides root (and the server's own user) allowed to connect.
    pub allowed_uids: Vec<u32>,
    /// Primary groups allowed to connect.
    pub allowed_gids: Vec<u32>,
    /// Socket file mode; 0o600 unless groups are allowed (then 0o660).
    pub mode: u32,
    /// Socket file owner to set (so an allowed user can open a 0600 socket).
    pub socket_uid: Option<u32>,
    /// Socket file group to set.
    pub socket_gid: Option<u32>,
    /// Decode bounds; `max_size` is also the largest message accepted.
    pub limits: Limits,
    /// Notification queue capacity when the subscriber asks for none.
    pub default_queue: usize,
    /// Largest notification queue a subscriber may ask for.
    pub max_queue: usize,
    /// Most simultaneous connections.
    pub max_connections: usize,
}

impl ServerConfig {
    /// Defaults for a socket at `path`: root only, mode 0600, 1 MiB messages.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ServerConfig {
            path: path.into(),
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            mode: 0o600,
            socket_uid: None,
            socket_gid: None,
            limits: Limits {
                max_size: MAX_MESSAGE,
                ..Limits::default()
            },
            default_queue: 1024,
            max_queue: 65536,
            max_connections: 64,
        }
    }

    /// Defaults for an interface's socket, [`default_socket_path`].
    pub fn for_interface(ifname: &str) -> Self {
        Self::new(default_socket_path(ifname))
    }

    /// Lets one more user in, and hands the socket file to it if it is the only one.
    pub fn allow_uid(mut self, uid: u32) -> Self {
        self.allowed_uids.push(uid);
        if self.allowed_uids.len() == 1 {
            self.socket_uid = Some(uid);
        } else {
            self.socket_uid = None;
        }
        self
    }

    /// Lets a group in: the socket file gets that group and mode 0660.
    pub fn allow_gid(mut self, gid: u32) -> Self {
        self.allowed_gids.push(gid);
        self.socket_gid = Some(gid);
        self.mode = 0o660;
        self
    }
}

/// Who sent a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// User id (SO_PEERCRED).
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Process id.
    pub pid: i32,
    /// Connection number, unique in this server.
    pub conn: u64,
}

/// What the daemon implements: one call per request, in order per connection.
/// `SUBSCRIBE` and `UNSUBSCRIBE` are handled by the server and never reach it.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request. An `Err` becomes the error reply.
    fn handle(
        &self,
        request: Request,
        caller: &Caller,
    ) -> impl Future<Output = Result<Response, IpcError>> + Send;
}

/// Stops a running [`Server::serve`].
#[derive(Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// Stops accepting, closes every connection, removes the socket file.
    pub fn shutdown(&self) {
        // send_replace stores the value even before `serve` has subscribed.
        self.0.send_replace(true);
    }
}

/// A bound IPC server.
pub struct Server {
    listener: Listener,
    config: Arc<ServerConfig>,
    notifier: Notifier,
    shutdown_tx: watch::Sender<bool>,
}

impl Server {
    /// Binds the socket. Must run inside a tokio runtime.
    pub fn bind(config: ServerConfig) -> io::Result<Server> {
        let perms = SocketPerms {
            mode: config.mode,
            uid: config.socket_uid,
            gid: config.socket_gid,
        };
        let listener = Listener::bind(&config.path, &perms)?;
        let (shutdown_tx, _) = watch::channel(false);
        Ok(Server {
            listener,
            config: Arc::new(config),
            notifier: Notifier::new(),
            shutdown_tx,
        })
    }

    /// The notification handle for the daemon's workers.
    pub fn notifier(&self) -> Notifier {
        self.notifier.clone()
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        self.listener.path()
    }

    /// A handle that stops [`Server::serve`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown_tx.clone())
    }

    /// Serves until shut down. Accept errors other than a lack of descriptors end it.
    pub async fn serve<H: Handler>(self, handler: Arc<H>) -> io::Result<()> {
        let mut shutdown = self.shutdown_tx.subscribe();
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        let mut conns = JoinSet::new();
        let next_conn = AtomicU64::new(1);
        let own_uid = nix::unistd::geteuid().as_raw();
        loop {
            let sock = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                r = self.listener.accept() => r,
            };
            let sock = match sock {
                Ok(s) => s,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    tracing::warn!("ipc: out of descriptors accepting a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let conn = next_conn.fetch_add(1, Ordering::Relaxed);
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                let err = IpcError::new(libc::EAGAIN, "too many connections to the daemon");
                let _ = sock.send(&encode_reply(0, &Err(err))).await;
                continue;
            };
            let ctx = ConnCtx {
                sock: Arc::new(sock),
                config: Arc::clone(&self.config),
                notifier: self.notifier.clone(),
                conn,
                own_uid,
            };
            let handler = Arc::clone(&handler);
            conns.spawn(async move {
                ctx.run(handler).await;
                drop(permit);
            });
        }
        conns.shutdown().await;
        Ok(())
    }
}

struct ConnCtx {
    sock: Arc<SeqPacket>,
    config: Arc<ServerConfig>,
    notifier: Notifier,
    conn: u64,
    own_uid: u32,
}

impl ConnCtx {
    fn allowed(&self, cred: &PeerCred) -> bool {
        cred.uid == 0
            || cred.uid == self.own_uid
            || self.config.allowed_uids.contains(&cred.uid)
            || self.config.allowed_gids.contains(&cred.gid)
    }

    async fn reply(&self, id: u64, r: &Result<Response, IpcError>) -> io::Result<()> {
        let mut b = encode_reply(id, r);
        if b.len() > self.config.limits.max_size {
            // Never send what the peer must refuse: say so instead.
            let err = IpcError::new(
                libc::E2BIG,
                format!(
                    "reply of {} bytes exceeds the {}-byte message limit; ask for fewer entries",
                    b.len(),
                    self.config.limits.max_size
                ),
            );
            b.zeroize();
            b = encode_reply(id, &Err(err));
        }
        let res = self.sock.send(&b).await;
        b.zeroize();
        res
    }

    async fn run<H: Handler>(self, handler: Arc<H>) {
        let cred = match self.sock.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("ipc: cannot read peer credentials: {e}");
                return;
            }
        };
        if !self.allowed(&cred) {
            tracing::warn!(
                uid = cred.uid,
                pid = cred.pid,
                "ipc: refused connection from a user that is not allowed"
            );
            let err = IpcError::new(
                libc::EACCES,
                format!(
                    "uid {} is not allowed to use {} (root or a configured user/group only)",
                    cred.uid,
                    self.config.path.display()
                ),
            );
            let _ = self.reply(0, &Err(err)).await;
            return;
        }
        self.sock
            .set_send_buffer(self.config.limits.max_size + 4096);
        let caller = Caller {
            uid: cred.uid,
            gid: cred.gid,
            pid: cred.pid,
            conn: self.conn,
        };
        // Dropped however this task ends (EOF, error, or aborted at shutdown).
        let mut sub_guard = SubGuard {
            notifier: self.notifier.clone(),
            conn: self.conn,
            writer: None,
        };
        loop {
            let msg = match self.sock.recv(self.config.limits.max_size).await {
                Ok(Recv::Message(m)) => m,
                Ok(Recv::Eof) => break,
                Ok(Recv::TooLarge { len, prefix }) => {
                    let err = IpcError::new(
                        libc::EMSGSIZE,
                        format!(
                            "message of {len} bytes exceeds the {}-byte limit",
                            self.config.limits.max_size
                        ),
                    );
                    if self
                        .reply(message::peek_id(&prefix), &Err(err))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::debug!(conn = self.conn, "ipc: receive failed: {e}");
                    break;
                }
            };
            let mut msg = msg;
            let decoded = decode_request(&msg, &self.config.limits);
            msg.zeroize();
            let (id, result) = match decoded {
                Err((id, e)) => {
                    tracing::debug!(conn = self.conn, "ipc: bad request: {e}");
                    (id, Err(e))
                }
                Ok((id, Request::Subscribe(s))) => {
                    let cap = s
                        .queue
                        .map(|q| q as usize)
                        .unwrap_or(self.config.default_queue)
                        .clamp(1, self.config.max_queue);
                    let sub = self.notifier.subscribe(self.conn, s.notifications, cap);
                    sub_guard.stop_writer();
                    // Reply first, so the subscription's reply precedes its notifications.
                    let reply = Ok(Response::Subscribed(Subscribed { queue: cap as u32 }));
                    if self.reply(id, &reply).await.is_err() {
                        break;
                    }
                    sub_guard.writer = Some(tokio::spawn(write_notifications(
                        Arc::clone(&self.sock),
                        sub,
                    )));
                    continue;
                }
                Ok((id, Request::Unsubscribe)) => {
                    self.notifier.unsubscribe(self.conn);
                    sub_guard.stop_writer();
                    (id, Ok(Response::Ok))
                }
                Ok((id, req)) => {
                    let cmd = req.command();
                    let r = handler.handle(req, &caller).await;
                    (id, check_answer(cmd, r))
                }
            };
            if self.reply(id, &result).await.is_err() {
                break;
            }
        }
    }
}

struct SubGuard {
    notifier: Notifier,
    conn: u64,
    writer: Option<tokio::task::JoinHandle<()>>,
}

impl SubGuard {
    fn stop_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.abort();
        }
    }
}

impl Drop for SubGuard {
    fn drop(&mut self) {
        self.notifier.unsubscribe(self.conn);
        self.stop_writer();
    }
}

fn check_answer(cmd: Command, r: Result<Response, IpcError>) -> Result<Response, IpcError> {
    match r {
        Ok(resp) if !resp.answers(cmd) => Err(IpcError::internal(format!(
            "the daemon answered {cmd} with the wrong kind of reply"
        ))),
        other => other,
    }
}

async fn write_notifications(sock: Arc<SeqPacket>, sub: Arc<Subscriber>) {
    while let Some(n) = sub.queue().pop().await {
        match encode_notification(&n) {
            Ok(mut b) => {
                let r = sock.send(&b).await;
                b.zeroize();
                if r.is_err() {
                    break;
                }
            }
            Err(e) => tracing::warn!("ipc: notification could not be packed: {e}"),
        }
    }
}
