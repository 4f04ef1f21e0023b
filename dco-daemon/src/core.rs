//! The daemon's state and the operations the IPC drives (if_ovpn's commands): peers, keys,
//! keepalive, interface configuration, listening sockets, the control-packet relay, stats.
//! Changes happen under one mutex on the control side and are published to the workers as
//! a new peer table (swapped whole) or a new key-slot set; workers never lock.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crypto::{DATA_V2_OVERHEAD, DirectionalKey, KEEPALIVE_PING, KeyId, PeerId};
use tun_rs::{DeviceBuilder, SyncDevice};

use crate::events::{DelReason, Event, EventSink};
use crate::filter::{PacketFilter, PassThrough};
use crate::netlink::{self, Prefix};
use crate::peer::{DataKey, KeySlot, KeySlots, Peer, PeerConfig};
use crate::stats::{CounterSnapshot, Counters, Ctr, Dropped};
use crate::table::{IfMode, PeerTable, RouteEntry};
use crate::udp::UdpSocket;
use crate::worker::{RxThread, TxThread, WorkerIo};

/// Start-up settings of the daemon.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub ifname: String,
    /// Worker count (each: one UDP socket, one TUN queue, a receive and a send thread).
    pub workers: usize,
    /// Replay window size for every receive key.
    pub replay_window: u32,
    /// Relayed control packets per second and burst, per worker.
    pub relay_rate: u32,
    pub relay_burst: u32,
    /// TUN offloads (virtio-net header, TSO/USO, GRO on write).
    pub offload: bool,
    /// OpenVPN's `mssfix`: TCP SYNs crossing the tunnel get an MSS that keeps encapsulated
    /// packets within this many bytes (outer IP/UDP included); 0 turns it off.
    pub mssfix: u16,
    /// Most connections the firewall tracks.
    pub ct_max_entries: usize,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            ifname: "dco0".into(),
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            replay_window: crypto::DEFAULT_REPLAY_WINDOW,
            relay_rate: 2000,
            relay_burst: 500,
            offload: true,
            mssfix: 1492,
            ct_max_entries: 262_144,
        }
    }
}

/// What went wrong with a command, with an errno for the IPC reply.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("peer {0} does not exist")]
    NoSuchPeer(u32),
    #[error("peer {0} already exists")]
    PeerExists(u32),
    #[error("VPN address {0} is already used by peer {1}")]
    AddressInUse(IpAddr, u32),
    #[error("no key in the {0:?} slot of peer {1}")]
    NoSuchKey(KeySlot, u32),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("already listening on {0}")]
    AlreadyListening(SocketAddr),
    #[error("not listening yet (send LISTEN first)")]
    NotListening,
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
}

impl DaemonError {
    /// The errno an if_ovpn-style reply carries.
    pub fn errno(&self) -> i32 {
        match self {
            DaemonError::NoSuchPeer(_) | DaemonError::NoSuchKey(..) => libc::ENOENT,
            DaemonError::PeerExists(_) | DaemonError::AddressInUse(..) => libc::EEXIST,
            DaemonError::Invalid(_) => libc::EINVAL,
            DaemonError::AlreadyListening(_) => libc::EALREADY,
            DaemonError::NotListening => libc::ENOTCONN,
            DaemonError::Io { err, .. } => err.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |err| DaemonError::Io { what, err }
}

/// The installed firewall, swapped whole.
pub struct FilterBox(Box<dyn PacketFilter>);

/// State shared with the workers.
pub struct Shared {
    pub config: DaemonConfig,
    pub table: ArcSwap<PeerTable>,
    pub counters: Counters,
    pub shutdown: AtomicBool,
    pub client_to_client: AtomicBool,
    pub sink: Arc<dyn EventSink>,
    filter: ArcSwap<FilterBox>,
    /// Connection tracking; it filters once a rule set is loaded ([`Daemon::load_firewall`]).
    pub conntrack: Arc<conntrack::Conntrack>,
    /// A batch AEAD backend (GPU) for the receive path; unset = per-packet CPU decryption.
    pub batch: std::sync::OnceLock<Arc<dyn crypto::BatchAead>>,
    epoch: Instant,
    state: Mutex<State>,
}

/// The authoritative control-side state; the peer table is derived from it.
struct State {
    peers: BTreeMap<u32, Arc<Peer>>,
    routes: Vec<RouteEntry>,
    mode: IfMode,
    tun: Vec<Arc<SyncDevice>>,
    ifindex: u32,
    io: Vec<WorkerIo>,
    threads: Vec<JoinHandle<()>>,
    listen: Option<SocketAddr>,
}

/// Counter slots: 0 = control side (shared, atomic adds), 1 = keepalive, then two per worker.
const SLOT_CONTROL: usize = 0;
const SLOT_KEEPALIVE: usize = 1;

impl Shared {
    /// State for driving the data path without I/O (benchmarks, tests): no TUN device, no
    /// sockets, no threads. Install peers with [`Shared::install_peers`].
    pub fn detached(config: DaemonConfig, sink: Arc<dyn EventSink>) -> Arc<Shared> {
        Shared::new(config, sink, Vec::new(), 0)
            .unwrap_or_else(|e| panic!("default conntrack config refused: {e}"))
    }

    /// The state every daemon starts from: no peers, no routes, no workers yet, the given TUN
    /// queues (none for [`Shared::detached`]), pass-through filter and an empty conntrack.
    fn new(
        config: DaemonConfig,
        sink: Arc<dyn EventSink>,
        tun: Vec<Arc<SyncDevice>>,
        ifindex: u32,
    ) -> Result<Arc<Shared>, conntrack::ConfigError> {
        let workers = config.workers.max(1);
        let ct = conntrack::Conntrack::new(conntrack::Config {
            max_entries: config.ct_max_entries,
            ..Default::default()
        })?;
        Ok(Arc::new(Shared {
            counters: Counters::new(2 + 2 * workers),
            config: DaemonConfig { workers, ..config },
            table: ArcSwap::from_pointee(PeerTable::default()),
            shutdown: AtomicBool::new(false),
            client_to_client: AtomicBool::new(true),
            sink,
            filter: ArcSwap::from_pointee(FilterBox(Box::new(PassThrough))),
            conntrack: Arc::new(ct),
            batch: std::sync::OnceLock::new(),
            epoch: Instant::now(),
            state: Mutex::new(State {
                peers: BTreeMap::new(),
                routes: Vec::new(),
                mode: IfMode::Multipoint,
                tun,
                ifindex,
                io: Vec::new(),
                threads: Vec::new(),
                listen: None,
            }),
        }))
    }

    /// Adds peers and publishes the table (for [`Shared::detached`] users).
    pub fn install_peers(&self, peers: Vec<Arc<Peer>>) {
        let mut st = self.lock();
        for p in peers {
            st.peers.insert(p.id.get(), p);
        }
        self.publish(&st);
    }

    /// Milliseconds since the daemon started (coarse time for liveness).
    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    #[inline]
    pub fn filter(&self) -> arc_swap::Guard<Arc<FilterBox>> {
        self.filter.load()
    }

    /// Replaces the firewall (see [`Daemon::set_filter`]).
    pub(crate) fn store_filter(&self, f: Box<dyn PacketFilter>) {
        self.filter.store(Arc::new(FilterBox(f)));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every change publishes at
        // the end); keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, st: &State) {
        let peers: Vec<Arc<Peer>> = st.peers.values().cloned().collect();
        self.table
            .store(Arc::new(PeerTable::build(&peers, &st.routes, st.mode)));
    }

    /// Tells the batch backend (GPU key cache) that a key is gone.
    fn forget_key(&self, k: &DataKey) {
        if let Some(b) = self.batch.get() {
            b.forget_key(k.enc.aead().id());
            b.forget_key(k.dec.aead().id());
        }
    }

    fn remove_peer(&self, st: &mut State, id: u32, reason: DelReason) -> Option<Arc<Peer>> {
        let peer = st.peers.remove(&id)?;
        let keys = peer.keys.load();
        for k in [&keys.primary, &keys.secondary].into_iter().flatten() {
            self.forget_key(k);
        }
        self.publish(st);
        tracing::info!(peer = id, cn = %peer.common_name, reason = reason.name(), "peer deleted");
        self.sink.emit(Event::DelPeer {
            peer_id: id,
            reason,
            traffic: peer.counters.snapshot(),
        });
        Some(peer)
    }

    /// Called by a worker (explicit-exit-notify) or the keepalive timer.
    pub fn delete_peer_from_datapath(&self, id: u32, reason: DelReason) {
        let mut st = self.lock();
        self.remove_peer(&mut st, id, reason);
    }
}

impl std::ops::Deref for FilterBox {
    type Target = dyn PacketFilter;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// A snapshot of one peer for `show` and GET_PEER_STATS.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub id: u32,
    pub common_name: String,
    pub remote: SocketAddr,
    pub local: Option<IpAddr>,
    pub vpn_ipv4: Option<std::net::Ipv4Addr>,
    pub vpn_ipv6: Option<std::net::Ipv6Addr>,
    pub iroutes: Vec<Prefix>,
    pub keys: Vec<(KeySlot, u8, crypto::CipherKind, u64)>,
    pub keepalive: (u32, u32),
    pub last_rx_ms_ago: u64,
    pub last_tx_ms_ago: u64,
    pub traffic: crate::stats::PeerTraffic,
}

/// The daemon: a TUN device, workers, peers.
pub struct Daemon {
    shared: Arc<Shared>,
    keepalive: Mutex<Option<JoinHandle<()>>>,
}

impl Daemon {
    /// Creates the TUN device (one queue per worker) and the keepalive timer. Workers start
    /// with [`Daemon::listen`].
    pub fn new(config: DaemonConfig, sink: Arc<dyn EventSink>) -> Result<Self, DaemonError> {
        let workers = config.workers.max(1);
        let first = DeviceBuilder::new()
            .name(config.ifname.clone())
            .multi_queue(workers > 1)
            .offload(config.offload)
            .build_sync()
            .map_err(io_err(format!(
                "cannot create TUN device {}",
                config.ifname
            )))?;
        // One queue per worker: the first from the builder, the rest cloned from it.
        let mut tun = Vec::with_capacity(workers);
        tun.push(Arc::new(first));
        for _ in 1..workers {
            let queue = tun[0]
                .try_clone()
                .map_err(io_err("cannot open another TUN queue"))?;
            tun.push(Arc::new(queue));
        }
        let ifindex =
            netlink::if_index(&config.ifname).map_err(io_err("TUN device has no index"))?;
        let shared = Shared::new(config, sink, tun, ifindex)
            .map_err(|e| DaemonError::Invalid(format!("conntrack: {e}")))?;
        let ka = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("dco-keepalive".into())
                .spawn(move || keepalive_loop(&shared))
                .map_err(io_err("cannot start the keepalive thread"))?
        };
        Ok(Self {
            shared,
            keepalive: Mutex::new(Some(ka)),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn ifname(&self) -> &str {
        &self.shared.config.ifname
    }

    pub fn workers(&self) -> usize {
        self.shared.config.workers
    }

    /// Whether the TUN device has offloads (virtio-net header, TSO/USO).
    pub fn offload(&self) -> bool {
        self.shared
            .lock()
            .tun
            .first()
            .map(|t| t.tcp_gso())
            .unwrap_or(false)
    }

    /// Binds one UDP socket per worker on `addr` (port 0 picks one, shared by all) and
    /// starts the workers. Returns the bound address.
    pub fn listen(&self, addr: SocketAddr) -> Result<SocketAddr, DaemonError> {
        let mut st = self.shared.lock();
        if let Some(l) = st.listen {
            return Err(DaemonError::AlreadyListening(l));
        }
        let workers = self.shared.config.workers;
        let first = UdpSocket::bind(addr, workers > 1)
            .map_err(io_err(format!("cannot bind UDP {addr}")))?;
        let bound = first.local_addr();
        let mut socks = vec![Arc::new(first)];
        for _ in 1..workers {
            let s = UdpSocket::bind(SocketAddr::new(addr.ip(), bound.port()), true).map_err(
                io_err(format!("cannot bind UDP {bound} again (SO_REUSEPORT)")),
            )?;
            socks.push(Arc::new(s));
        }
        tracing::info!(%bound, gro = socks[0].gro(), workers, "listening");
        for (i, sock) in socks.into_iter().enumerate() {
            let io = WorkerIo {
                index: i,
                sock,
                tun: st.tun[i].clone(),
            };
            let rx = RxThread::new(self.shared.clone(), io.clone(), 2 + 2 * i);
            let tx = TxThread::new(self.shared.clone(), io.clone(), 3 + 2 * i);
            let h1 = std::thread::Builder::new()
                .name(format!("dco-rx{i}"))
                .spawn(move || rx.run());
            let h2 = std::thread::Builder::new()
                .name(format!("dco-tx{i}"))
                .spawn(move || tx.run());
            for h in [h1, h2] {
                st.threads
                    .push(h.map_err(io_err("cannot start a worker thread"))?);
            }
            st.io.push(io);
        }
        st.listen = Some(bound);
        Ok(bound)
    }

    pub fn listening(&self) -> Option<SocketAddr> {
        self.shared.lock().listen
    }

    /// NEW_PEER.
    pub fn new_peer(&self, cfg: PeerConfig) -> Result<(), DaemonError> {
        let mut st = self.shared.lock();
        let id = cfg.id.get();
        if st.peers.contains_key(&id) {
            return Err(DaemonError::PeerExists(id));
        }
        for p in st.peers.values() {
            for (mine, theirs) in [
                (cfg.vpn_ipv4.map(IpAddr::V4), p.vpn_ipv4.map(IpAddr::V4)),
                (cfg.vpn_ipv6.map(IpAddr::V6), p.vpn_ipv6.map(IpAddr::V6)),
            ] {
                if let (Some(a), Some(b)) = (mine, theirs)
                    && a == b
                {
                    return Err(DaemonError::AddressInUse(a, p.id.get()));
                }
            }
        }
        let peer = Arc::new(Peer::new(
            cfg,
            self.shared.counters_slots(),
            self.shared.now_ms(),
        ));
        tracing::info!(peer = id, cn = %peer.common_name, remote = %peer.endpoint().remote, "peer added");
        st.peers.insert(id, peer);
        self.shared.publish(&st);
        Ok(())
    }

    /// DEL_PEER (on request).
    pub fn del_peer(&self, id: u32) -> Result<(), DaemonError> {
        let mut st = self.shared.lock();
        self.shared
            .remove_peer(&mut st, id, DelReason::Requested)
            .map(|_| ())
            .ok_or(DaemonError::NoSuchPeer(id))
    }

    fn peer(&self, id: u32) -> Result<Arc<Peer>, DaemonError> {
        self.shared
            .lock()
            .peers
            .get(&id)
            .cloned()
            .ok_or(DaemonError::NoSuchPeer(id))
    }

    /// SET_PEER: keepalive interval and timeout in seconds (0 = off).
    pub fn set_peer(&self, id: u32, interval: u32, timeout: u32) -> Result<(), DaemonError> {
        let p = self.peer(id)?;
        p.set_keepalive(interval, timeout);
        // Restart the timeout from now so a long-quiet peer is not expired at once.
        p.touch_rx(self.shared.now_ms());
        Ok(())
    }

    /// NEW_KEY into a slot (replacing what was there).
    pub fn new_key(
        &self,
        id: u32,
        slot: KeySlot,
        key_id: u8,
        encrypt: &DirectionalKey,
        decrypt: &DirectionalKey,
    ) -> Result<(), DaemonError> {
        let kid = KeyId::new(key_id)
            .ok_or_else(|| DaemonError::Invalid(format!("key-id {key_id} > 7")))?;
        if encrypt.cipher() != decrypt.cipher() {
            return Err(DaemonError::Invalid(
                "encrypt and decrypt ciphers differ".into(),
            ));
        }
        let key = DataKey::new(kid, encrypt, decrypt, self.shared.config.replay_window)
            .map_err(|e| DaemonError::Invalid(e.to_string()))?;
        let p = self.peer(id)?;
        let mut slots = KeySlots::clone(&p.keys.load());
        let old = match slot {
            KeySlot::Primary => slots.primary.replace(Arc::new(key)),
            KeySlot::Secondary => slots.secondary.replace(Arc::new(key)),
        };
        p.keys.store(Arc::new(slots));
        if let Some(old) = old {
            self.shared.forget_key(&old);
        }
        tracing::info!(peer = id, ?slot, key_id, cipher = %encrypt.cipher(), "key installed");
        Ok(())
    }

    /// SWAP_KEYS: the secondary becomes primary (encrypting) and vice versa.
    pub fn swap_keys(&self, id: u32) -> Result<(), DaemonError> {
        let p = self.peer(id)?;
        let cur = p.keys.load();
        p.keys.store(Arc::new(KeySlots {
            primary: cur.secondary.clone(),
            secondary: cur.primary.clone(),
        }));
        Ok(())
    }

    /// DEL_KEY.
    pub fn del_key(&self, id: u32, slot: KeySlot) -> Result<(), DaemonError> {
        let p = self.peer(id)?;
        let mut slots = KeySlots::clone(&p.keys.load());
        let removed = match slot {
            KeySlot::Primary => slots.primary.take(),
            KeySlot::Secondary => slots.secondary.take(),
        };
        let Some(removed) = removed else {
            return Err(DaemonError::NoSuchKey(slot, id));
        };
        p.keys.store(Arc::new(slots));
        self.shared.forget_key(&removed);
        Ok(())
    }

    /// SET_IFMODE.
    pub fn set_ifmode(&self, mode: IfMode) {
        let mut st = self.shared.lock();
        st.mode = mode;
        self.shared.publish(&st);
    }

    pub fn set_client_to_client(&self, on: bool) {
        self.shared.client_to_client.store(on, Ordering::Relaxed);
    }

    /// Interface addresses, MTU and link state.
    pub fn set_ifconfig(
        &self,
        addresses: &[Prefix],
        mtu: Option<u32>,
        up: bool,
    ) -> Result<(), DaemonError> {
        let idx = self.shared.lock().ifindex;
        if let Some(mtu) = mtu
            && !(576..=65_535).contains(&mtu)
        {
            return Err(DaemonError::Invalid(format!(
                "MTU {mtu} outside 576..=65535"
            )));
        }
        for a in addresses {
            netlink::add_address(idx, *a).map_err(io_err(format!("cannot add address {a}")))?;
        }
        netlink::set_link(idx, up, mtu).map_err(io_err("cannot set link state/MTU"))?;
        Ok(())
    }

    /// A route through the TUN; with a gateway that is a peer's VPN address, the data path
    /// sends the prefix to that peer.
    pub fn add_route(
        &self,
        prefix: Prefix,
        gateway: Option<IpAddr>,
        metric: Option<u32>,
    ) -> Result<(), DaemonError> {
        let mut st = self.shared.lock();
        netlink::add_route(st.ifindex, prefix, gateway, metric)
            .map_err(io_err(format!("cannot add route {prefix}")))?;
        st.routes.retain(|r| r.prefix != prefix);
        st.routes.push(RouteEntry { prefix, gateway });
        self.shared.publish(&st);
        Ok(())
    }

    pub fn del_route(&self, prefix: Prefix) -> Result<(), DaemonError> {
        let mut st = self.shared.lock();
        let Some(pos) = st.routes.iter().position(|r| r.prefix == prefix) else {
            return Err(DaemonError::Invalid(format!("no route {prefix}")));
        };
        let r = st.routes.remove(pos);
        let _ = netlink::del_route(st.ifindex, prefix, r.gateway);
        self.shared.publish(&st);
        Ok(())
    }

    /// Replaces a peer's iroutes.
    pub fn set_iroutes(&self, id: u32, iroutes: Vec<Prefix>) -> Result<(), DaemonError> {
        let st = self.shared.lock();
        let p = st.peers.get(&id).ok_or(DaemonError::NoSuchPeer(id))?;
        p.iroutes.store(Arc::new(iroutes));
        self.shared.publish(&st);
        Ok(())
    }

    /// Sends a control packet for the control process, from the right local address.
    pub fn send_control(
        &self,
        remote: SocketAddr,
        local: Option<IpAddr>,
        data: &[u8],
    ) -> Result<(), DaemonError> {
        let sock = self
            .shared
            .lock()
            .io
            .first()
            .map(|io| io.sock.clone())
            .ok_or(DaemonError::NotListening)?;
        let ctr = self.shared.counters.slot(SLOT_CONTROL);
        match sock.send_one(remote, local, data) {
            Ok(()) => {
                ctr.add_shared(Ctr::SentCtrl, 1);
                ctr.add_shared(Ctr::TransportBytesSent, data.len() as u64);
                Ok(())
            }
            Err(e) => {
                ctr.add_shared(Ctr::LostCtrlOut, 1);
                Err(DaemonError::Io {
                    what: format!("cannot send to {remote}"),
                    err: e,
                })
            }
        }
    }

    /// Replaces the firewall.
    pub fn set_filter(&self, f: Box<dyn PacketFilter>) {
        self.shared.store_filter(f);
    }

    /// Loads (or atomically replaces) the firewall rule set; from then on every packet is
    /// tracked and filtered. Returns the number of rules.
    pub fn load_firewall(&self, text: &str) -> Result<usize, conntrack::RuleError> {
        let rules = conntrack::RuleSet::parse(text)?;
        let n = rules.len();
        self.shared.conntrack.set_rules(rules);
        if !self.firewall_active() {
            self.set_filter(Box::new(crate::firewall::ConntrackFilter::new(
                self.shared.conntrack.clone(),
            )));
        }
        tracing::info!(rules = n, "firewall rule set loaded");
        Ok(n)
    }

    /// Whether a firewall rule set is active.
    pub fn firewall_active(&self) -> bool {
        self.shared.filter.load().name() == "conntrack"
    }

    pub fn conntrack(&self) -> &conntrack::Conntrack {
        &self.shared.conntrack
    }

    /// The tracker's clock (the data path's milliseconds).
    pub fn ct_now(&self) -> conntrack::Timestamp {
        conntrack::Timestamp::from_millis(self.shared.now_ms())
    }

    pub fn stats(&self) -> CounterSnapshot {
        self.shared.counters.snapshot()
    }

    pub fn peers(&self) -> Vec<PeerInfo> {
        let now = self.shared.now_ms();
        let st = self.shared.lock();
        st.peers
            .values()
            .map(|p| {
                let ep = p.endpoint();
                let ks = p.keys.load();
                let keys = [KeySlot::Primary, KeySlot::Secondary]
                    .into_iter()
                    .filter_map(|s| {
                        ks.get(s)
                            .map(|k| (s, k.key_id.get(), k.cipher, k.enc.packets_sent()))
                    })
                    .collect();
                PeerInfo {
                    id: p.id.get(),
                    common_name: p.common_name.clone(),
                    remote: ep.remote,
                    local: ep.local,
                    vpn_ipv4: p.vpn_ipv4,
                    vpn_ipv6: p.vpn_ipv6,
                    iroutes: p.iroutes.load().to_vec(),
                    keys,
                    keepalive: p.keepalive(),
                    last_rx_ms_ago: now.saturating_sub(p.last_rx_ms()),
                    last_tx_ms_ago: now.saturating_sub(p.last_tx_ms()),
                    traffic: p.counters.snapshot(),
                }
            })
            .collect()
    }

    /// Stops the workers and timers; the TUN device goes away with the last queue.
    pub fn shutdown(&self) {
        let s = self.stats();
        let drops: Vec<String> = s
            .drop_reasons()
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        tracing::info!(
            data_in = s.get(Ctr::RecvData),
            data_out = s.get(Ctr::SentData),
            ctrl_in = s.get(Ctr::RecvCtrl),
            ctrl_out = s.get(Ctr::SentCtrl),
            drops = %drops.join(" "),
            "final counters"
        );
        self.shared.shutdown.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut self.shared.lock().threads);
        for t in threads {
            let _ = t.join();
        }
        if let Some(k) = self
            .keepalive
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = k.join();
        }
        let mut st = self.shared.lock();
        let ids: Vec<u32> = st.peers.keys().copied().collect();
        for id in ids {
            self.shared.remove_peer(&mut st, id, DelReason::Shutdown);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.shared.shutdown.load(Ordering::Relaxed) {
            self.shutdown();
        }
    }
}

impl Shared {
    pub fn counters_slots(&self) -> usize {
        2 + 2 * self.config.workers
    }
}

/// Every half second: expire silent peers, send keepalive pings to quiet ones.
fn keepalive_loop(shared: &Shared) {
    let ctr = shared.counters.slot(SLOT_KEEPALIVE);
    let mut buf = [0u8; DATA_V2_OVERHEAD + KEEPALIVE_PING.len()];
    while !shared.shutdown.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(500));
        let now = shared.now_ms();
        let table = shared.table.load();
        let sock = shared.lock().io.first().map(|io| io.sock.clone());
        let mut expired = Vec::new();
        for p in table.peers() {
            if p.expired(now) {
                expired.push(p.id.get());
                continue;
            }
            let Some(sock) = &sock else { continue };
            if !p.ping_due(now) {
                continue;
            }
            let keys = p.keys.load();
            let Some(k) = keys.for_tx() else { continue };
            buf[DATA_V2_OVERHEAD..].copy_from_slice(&KEEPALIVE_PING);
            match k.enc.seal_v2(
                PeerId::new(p.id.get()).unwrap_or(p.id),
                &mut buf,
                KEEPALIVE_PING.len(),
            ) {
                Ok(s) => {
                    let ep = p.endpoint();
                    if sock.send_one(ep.remote, ep.local, &buf[..s.len]).is_ok() {
                        ctr.add(Ctr::SentData, 1);
                        ctr.add(Ctr::TransportBytesSent, s.len as u64);
                        p.touch_tx(now);
                    } else {
                        ctr.drop(Dropped::UdpSend);
                    }
                }
                Err(e) => ctr.crypto_drop(e.reason()),
            }
        }
        for id in expired {
            shared.delete_peer_from_datapath(id, DelReason::Expired);
        }
        // Expire tracked connections a slice at a time: never a long pause.
        shared
            .conntrack
            .gc_slice(conntrack::Timestamp::from_millis(now), 4096);
    }
}
