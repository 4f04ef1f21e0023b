//! The typed async client used by `dco-control` and `ovpnctl`.
//!
//! One method per command. Requests may be pipelined from several tasks at once (the client
//! is `Clone`); replies are matched by request id, and the daemon handles one connection's
//! requests in the order they were sent. Notifications arrive on a [`Subscription`] whose
//! local queue is bounded like the daemon's: a consumer that falls behind gets `MISSED`
//! instead of silent loss, and never holds up replies.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use zeroize::Zeroize;

use crate::codec::Limits;
use crate::message::{
    Command, Incoming, IpcError, MAX_MESSAGE, Request, Response, decode_incoming, encode_request,
};
use crate::notify::NotifyQueue;
use crate::nvlist::Nvlist;
use crate::schema::*;
use crate::transport::{Recv, SeqPacket};
use crate::types::IpPrefix;

/// Client failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to {}: {source}", path.display())]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The daemon refused the command.
    #[error("{cmd} failed: {error}")]
    Daemon {
        /// The command.
        cmd: Command,
        /// The daemon's error reply.
        error: IpcError,
    },
    /// The daemon refused the connection (e.g. the caller's uid is not allowed).
    #[error("the daemon refused the connection: {0}")]
    Rejected(IpcError),
    /// The request could not be packed.
    #[error("request could not be packed: {0}")]
    Encode(IpcError),
    /// A reply or notification did not make sense.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Socket I/O failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The connection is closed.
    #[error("connection to the daemon closed")]
    Closed,
}

impl ClientError {
    /// The daemon's error reply, if that is what this is.
    pub fn ipc_error(&self) -> Option<&IpcError> {
        match self {
            ClientError::Daemon { error, .. } | ClientError::Rejected(error) => Some(error),
            _ => None,
        }
    }
}

type Pending = oneshot::Sender<Result<Option<Nvlist>, IpcError>>;

struct Shared {
    pending: Mutex<HashMap<u64, Pending>>,
    sub: Mutex<Option<Arc<NotifyQueue>>>,
    rejected: Mutex<Option<IpcError>>,
    closed: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections are single map/option operations; a poisoned lock is still sound.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Inner {
    sock: Arc<SeqPacket>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    send_lock: tokio::sync::Mutex<()>,
    path: PathBuf,
    _reader: AbortOnDrop,
}

/// A connection to a daemon's IPC socket.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// A request that has been sent; [`PendingReply::wait`] gets its reply.
pub struct PendingReply {
    cmd: Command,
    rx: oneshot::Receiver<Result<Option<Nvlist>, IpcError>>,
    client: Client,
}

impl PendingReply {
    /// The command sent.
    pub fn command(&self) -> Command {
        self.cmd
    }

    /// Waits for the reply.
    pub async fn wait(self) -> Result<Response, ClientError> {
        let cmd = self.cmd;
        match self.rx.await {
            Ok(Ok(body)) => Response::from_result(cmd, body.as_ref())
                .map_err(|e| ClientError::Protocol(format!("{cmd} reply: {e}"))),
            Ok(Err(error)) => {
                if let Some(r) = lock(&self.client.inner.shared.rejected).clone() {
                    return Err(ClientError::Rejected(r));
                }
                Err(ClientError::Daemon { cmd, error })
            }
            Err(_) => Err(self.client.closed_error()),
        }
    }
}

/// Notifications received on a subscribed connection.
pub struct Subscription {
    queue: Arc<NotifyQueue>,
    _client: Client,
}

impl Subscription {
    /// The next notification, a `MISSED` marker where notifications were lost, or `None`
    /// once the connection is closed.
    pub async fn next(&mut self) -> Option<crate::message::Notification> {
        self.queue.pop().await.map(|n| (*n).clone())
    }

    /// The next notification if one is waiting.
    pub fn try_next(&mut self) -> Option<crate::message::Notification> {
        self.queue.try_pop().map(|n| (*n).clone())
    }

    /// Notifications dropped by this process because they were not consumed in time.
    pub fn dropped_locally(&self) -> u64 {
        self.queue.dropped()
    }
}

impl Client {
    /// Connects to the socket at `path`.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref().to_owned();
        let sock = SeqPacket::connect(&path)
            .await
            .map_err(|source| ClientError::Connect {
                path: path.clone(),
                source,
            })?;
        sock.set_send_buffer(MAX_MESSAGE + 4096);
        let sock = Arc::new(sock);
        let (closed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            sub: Mutex::new(None),
            rejected: Mutex::new(None),
            closed,
        });
        let reader = tokio::spawn(read_loop(Arc::clone(&sock), Arc::clone(&shared)));
        Ok(Client {
            inner: Arc::new(Inner {
                sock,
                shared,
                next_id: AtomicU64::new(1),
                send_lock: tokio::sync::Mutex::new(()),
                path,
                _reader: AbortOnDrop(reader),
            }),
        })
    }

    /// Connects to an interface's default socket (`/run/dco/<ifname>.sock`).
    pub async fn connect_interface(ifname: &str) -> Result<Client, ClientError> {
        Self::connect(crate::server::default_socket_path(ifname)).await
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn closed_error(&self) -> ClientError {
        match lock(&self.inner.shared.rejected).clone() {
            Some(e) => ClientError::Rejected(e),
            None => ClientError::Closed,
        }
    }

    /// Sends any request and waits for its reply.
    pub async fn request(&self, req: &Request) -> Result<Response, ClientError> {
        self.start(req).await?.wait().await
    }

    /// Sends a request and returns once it is written, without waiting for the reply:
    /// requests started one after another reach the daemon, and are handled, in that
    /// order (e.g. `NEW_PEER` then `NEW_KEY`), while their replies are awaited later.
    pub async fn start(&self, req: &Request) -> Result<PendingReply, ClientError> {
        let cmd = req.command();
        // Held from id allocation to the end of the send: sends leave in call order.
        let _order = self.inner.send_lock.lock().await;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut buf = encode_request(id, req).map_err(ClientError::Encode)?;
        let (tx, rx) = oneshot::channel();
        // Register, then check for closure: the reader marks the connection closed before
        // it drops the waiters, so one of the two always sees the other.
        lock(&self.inner.shared.pending).insert(id, tx);
        if *self.inner.shared.closed.borrow() {
            lock(&self.inner.shared.pending).remove(&id);
            buf.zeroize();
            return Err(self.closed_error());
        }
        let sent = self.inner.sock.send(&buf).await;
        buf.zeroize();
        if let Err(e) = sent {
            lock(&self.inner.shared.pending).remove(&id);
            // A refused connection is closed by the daemon right after its refusal: let
            // the reader pick the refusal up before reporting a bare I/O error.
            let mut closed = self.inner.shared.closed.subscribe();
            let _ = tokio::time::timeout(Duration::from_secs(1), closed.wait_for(|c| *c)).await;
            if let Some(r) = lock(&self.inner.shared.rejected).clone() {
                return Err(ClientError::Rejected(r));
            }
            return Err(ClientError::Io(e));
        }
        Ok(PendingReply {
            cmd,
            rx,
            client: self.clone(),
        })
    }

    async fn ok(&self, req: Request) -> Result<(), ClientError> {
        match self.request(&req).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected(req.command(), &other)),
        }
    }

    /// `NEW_PEER`.
    pub async fn new_peer(&self, peer: &NewPeer) -> Result<(), ClientError> {
        self.ok(Request::NewPeer(peer.clone())).await
    }

    /// `DEL_PEER`.
    pub async fn del_peer(&self, peerid: u32) -> Result<(), ClientError> {
        self.ok(Request::DelPeer(PeerRef { peerid })).await
    }

    /// `SET_PEER` (keepalive interval and timeout in seconds).
    pub async fn set_peer(
        &self,
        peerid: u32,
        interval: u32,
        timeout: u32,
    ) -> Result<(), ClientError> {
        self.ok(Request::SetPeer(SetPeer {
            peerid,
            interval,
            timeout,
        }))
        .await
    }

    /// `NEW_KEY`.
    pub async fn new_key(&self, key: &NewKey) -> Result<(), ClientError> {
        self.ok(Request::NewKey(key.clone())).await
    }

    /// `SWAP_KEYS`.
    pub async fn swap_keys(&self, peerid: u32) -> Result<(), ClientError> {
        self.ok(Request::SwapKeys(PeerRef { peerid })).await
    }

    /// `DEL_KEY`.
    pub async fn del_key(&self, peerid: u32, slot: KeySlot) -> Result<(), ClientError> {
        self.ok(Request::DelKey(DelKey { slot, peerid })).await
    }

    /// `START_VPN`.
    pub async fn start_vpn(&self) -> Result<(), ClientError> {
        self.ok(Request::StartVpn).await
    }

    /// `SET_IFMODE` ([`IFMODE_P2P`] or [`IFMODE_SUBNET`]).
    pub async fn set_ifmode(&self, ifmode: u32) -> Result<(), ClientError> {
        self.set_ifmode_with(SetIfmode {
            ifmode,
            client_to_client: None,
        })
        .await
    }

    /// `SET_IFMODE` with our optional keys (`client_to_client`).
    pub async fn set_ifmode_with(&self, m: SetIfmode) -> Result<(), ClientError> {
        self.ok(Request::SetIfmode(m)).await
    }

    /// `GET_STATS`.
    pub async fn get_stats(&self) -> Result<InterfaceStats, ClientError> {
        match self.request(&Request::GetStats).await? {
            Response::Stats(s) => Ok(s),
            other => Err(unexpected(Command::GetStats, &other)),
        }
    }

    /// `GET_PEER_STATS`, one page.
    pub async fn get_peer_stats(&self, page: Page) -> Result<PeerStatsPage, ClientError> {
        match self.request(&Request::GetPeerStats(page)).await? {
            Response::PeerStats(s) => Ok(s),
            other => Err(unexpected(Command::GetPeerStats, &other)),
        }
    }

    /// `GET_PEER_STATS`, every page.
    pub async fn get_peer_stats_all(&self) -> Result<Vec<PeerStats>, ClientError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let p = self
                .get_peer_stats(Page {
                    cursor,
                    limit: None,
                })
                .await?;
            out.extend(p.peers);
            match p.next {
                Some(n) if Some(n) != cursor => cursor = Some(n),
                _ => return Ok(out),
            }
        }
    }

    /// `GET_PEERS`, one page.
    pub async fn get_peers(&self, page: Page) -> Result<PeersPage, ClientError> {
        match self.request(&Request::GetPeers(page)).await? {
            Response::Peers(p) => Ok(p),
            other => Err(unexpected(Command::GetPeers, &other)),
        }
    }

    /// `GET_PEERS`, every page.
    pub async fn get_peers_all(&self) -> Result<Vec<PeerInfo>, ClientError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let p = self
                .get_peers(Page {
                    cursor,
                    limit: None,
                })
                .await?;
            out.extend(p.peers);
            match p.next {
                Some(n) if Some(n) != cursor => cursor = Some(n),
                _ => return Ok(out),
            }
        }
    }

    /// `GET_INFO`.
    pub async fn get_info(&self) -> Result<Info, ClientError> {
        match self.request(&Request::GetInfo).await? {
            Response::Info(i) => Ok(i),
            other => Err(unexpected(Command::GetInfo, &other)),
        }
    }

    /// `LISTEN`: returns the address actually bound.
    pub async fn listen(&self, local: SocketAddr) -> Result<SocketAddr, ClientError> {
        match self.request(&Request::Listen(Listen { local })).await? {
            Response::Listening(l) => Ok(l.local),
            other => Err(unexpected(Command::Listen, &other)),
        }
    }

    /// `SET_IFCONFIG`.
    pub async fn set_ifconfig(&self, cfg: &SetIfconfig) -> Result<(), ClientError> {
        self.ok(Request::SetIfconfig(cfg.clone())).await
    }

    /// `ADD_ROUTE`.
    pub async fn add_route(&self, route: &Route) -> Result<(), ClientError> {
        self.ok(Request::AddRoute(route.clone())).await
    }

    /// `DEL_ROUTE`.
    pub async fn del_route(&self, route: &Route) -> Result<(), ClientError> {
        self.ok(Request::DelRoute(route.clone())).await
    }

    /// `ADD_IROUTE`.
    pub async fn add_iroutes(&self, peerid: u32, iroutes: &[IpPrefix]) -> Result<(), ClientError> {
        self.ok(Request::AddIroute(Iroutes {
            peerid,
            iroutes: iroutes.to_vec(),
        }))
        .await
    }

    /// `DEL_IROUTE`.
    pub async fn del_iroutes(&self, peerid: u32, iroutes: &[IpPrefix]) -> Result<(), ClientError> {
        self.ok(Request::DelIroute(Iroutes {
            peerid,
            iroutes: iroutes.to_vec(),
        }))
        .await
    }

    /// `SEND_CONTROL`: hands a control packet to the daemon to send.
    pub async fn send_control(&self, pkt: &SendControl) -> Result<(), ClientError> {
        self.ok(Request::SendControl(pkt.clone())).await
    }

    /// `SUBSCRIBE`: notifications of the given types (empty = all) arrive on the returned
    /// subscription; `queue` sizes both the daemon's and this process's queue.
    pub async fn subscribe(
        &self,
        kinds: &[NotificationKind],
        queue: Option<u32>,
    ) -> Result<Subscription, ClientError> {
        let cap = queue.unwrap_or(1024).max(1) as usize;
        let q = Arc::new(NotifyQueue::new(cap));
        // Install before asking, so nothing sent right after the reply is lost.
        if let Some(old) = lock(&self.inner.shared.sub).replace(Arc::clone(&q)) {
            old.close();
        }
        let req = Request::Subscribe(Subscribe {
            notifications: kinds.iter().map(|k| k.number()).collect(),
            queue,
        });
        match self.request(&req).await {
            Ok(Response::Subscribed(_)) => Ok(Subscription {
                queue: q,
                _client: self.clone(),
            }),
            Ok(other) => Err(unexpected(Command::Subscribe, &other)),
            Err(e) => {
                lock(&self.inner.shared.sub).take();
                Err(e)
            }
        }
    }

    /// `UNSUBSCRIBE`.
    pub async fn unsubscribe(&self) -> Result<(), ClientError> {
        let r = self.ok(Request::Unsubscribe).await;
        if let Some(q) = lock(&self.inner.shared.sub).take() {
            q.close();
        }
        r
    }

    /// `FW_LOAD`: returns how many rules were loaded.
    pub async fn fw_load(&self, rules: &str) -> Result<u32, ClientError> {
        let req = Request::FwLoad(FwLoad {
            rules: rules.to_owned(),
        });
        match self.request(&req).await? {
            Response::FwLoaded(l) => Ok(l.rules),
            other => Err(unexpected(Command::FwLoad, &other)),
        }
    }

    /// `FW_LIST`.
    pub async fn fw_list(&self) -> Result<FwRules, ClientError> {
        match self.request(&Request::FwList).await? {
            Response::FwRules(r) => Ok(r),
            other => Err(unexpected(Command::FwList, &other)),
        }
    }

    /// `FW_COUNTERS`, optionally zeroing them.
    pub async fn fw_counters(&self, zero: bool) -> Result<FwCounters, ClientError> {
        let req = Request::FwCounters(FwCountersRequest {
            zero: zero.then_some(true),
        });
        match self.request(&req).await? {
            Response::FwCounters(c) => Ok(c),
            other => Err(unexpected(Command::FwCounters, &other)),
        }
    }

    /// `CT_LIST`, one page.
    pub async fn ct_list(&self, req: CtListRequest) -> Result<CtPage, ClientError> {
        match self.request(&Request::CtList(req)).await? {
            Response::CtList(p) => Ok(p),
            other => Err(unexpected(Command::CtList, &other)),
        }
    }

    /// `CT_LIST`, every page (optionally one peer's).
    pub async fn ct_list_all(&self, peerid: Option<u32>) -> Result<Vec<CtEntry>, ClientError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let p = self
                .ct_list(CtListRequest {
                    cursor,
                    limit: None,
                    peerid,
                })
                .await?;
            out.extend(p.entries);
            match p.next {
                Some(n) if Some(n) != cursor => cursor = Some(n),
                _ => return Ok(out),
            }
        }
    }

    /// `CT_FLUSH`: returns how many connections were removed.
    pub async fn ct_flush(&self, peerid: Option<u32>) -> Result<u64, ClientError> {
        match self.request(&Request::CtFlush(CtFlush { peerid })).await? {
            Response::CtFlushed(f) => Ok(f.flushed),
            other => Err(unexpected(Command::CtFlush, &other)),
        }
    }

    /// `CT_STATS`.
    pub async fn ct_stats(&self) -> Result<CtStats, ClientError> {
        match self.request(&Request::CtStats).await? {
            Response::CtStats(s) => Ok(s),
            other => Err(unexpected(Command::CtStats, &other)),
        }
    }
}

fn unexpected(cmd: Command, got: &Response) -> ClientError {
    ClientError::Protocol(format!("{cmd} answered with {got:?}"))
}

async fn read_loop(sock: Arc<SeqPacket>, shared: Arc<Shared>) {
    let limits = Limits {
        max_size: MAX_MESSAGE,
        ..Limits::default()
    };
    loop {
        let mut msg = match sock.recv(limits.max_size).await {
            Ok(Recv::Message(m)) => m,
            Ok(Recv::TooLarge { len, prefix }) => {
                let id = crate::message::peek_id(&prefix);
                let err = IpcError::new(
                    libc::EMSGSIZE,
                    format!(
                        "the daemon sent a {len}-byte message, over the {MAX_MESSAGE}-byte limit"
                    ),
                );
                match lock(&shared.pending).remove(&id) {
                    Some(w) => {
                        let _ = w.send(Err(err));
                    }
                    None => tracing::warn!("ipc client: {}", err.message),
                }
                continue;
            }
            Ok(Recv::Eof) | Err(_) => break,
        };
        let decoded = decode_incoming(&msg, &limits);
        msg.zeroize();
        match decoded {
            Ok(Incoming::Reply { id, result }) => {
                let waiter = lock(&shared.pending).remove(&id);
                match (waiter, result) {
                    (Some(w), r) => {
                        let _ = w.send(r);
                    }
                    (None, Err(e)) if id == 0 => {
                        // A connection-level refusal: every waiter gets it.
                        *lock(&shared.rejected) = Some(e.clone());
                        for (_, w) in lock(&shared.pending).drain() {
                            let _ = w.send(Err(e.clone()));
                        }
                    }
                    (None, _) => tracing::debug!("ipc client: reply to unknown request {id}"),
                }
            }
            Ok(Incoming::Notification(n)) => {
                if let Some(q) = lock(&shared.sub).as_ref() {
                    q.push(Arc::new(n));
                }
            }
            Err(e) => tracing::warn!("ipc client: undecodable message from the daemon: {e}"),
        }
    }
    let _ = shared.closed.send(true);
    lock(&shared.pending).clear();
    if let Some(q) = lock(&shared.sub).take() {
        q.close();
    }
}
