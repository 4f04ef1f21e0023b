//! An in-memory daemon implementing [`Handler`], for tests of this crate, of `dco-control`
//! and of `ovpnctl`. It keeps peers, keys, routes, a firewall rule list and a conntrack
//! table in memory and answers like the real daemon should (same errors for the same
//! mistakes), but moves no packets. It is a test double, not a data path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::message::{IpcError, Notification, Request, Response};
use crate::notify::Notifier;
use crate::schema::*;
use crate::server::{Caller, Handler};
use crate::types::{InOut, IpPrefix};

/// Most entries in one page when the caller gives no limit.
pub const DEFAULT_PAGE: u32 = 256;
/// Most entries in one page at all (a full `GET_PEERS` entry packs to about 1.5 KB, so
/// 512 of them stay under the 1 MiB message limit).
pub const MAX_PAGE: u32 = 512;

/// A peer as the mock keeps it.
#[derive(Clone, Debug)]
pub struct MockPeer {
    /// What `NEW_PEER` said.
    pub config: NewPeer,
    /// Key slots: (keyid, cipher, installed), by slot number.
    pub keys: [Option<(u8, Cipher, u64)>; 2],
    /// Keepalive.
    pub interval: u32,
    /// Keepalive timeout.
    pub timeout: u32,
    /// Counters.
    pub packets: InOut,
    /// Counters.
    pub bytes: InOut,
}

/// Everything the mock holds; public so tests can inspect and seed it.
#[derive(Debug, Default)]
pub struct MockState {
    /// Peers by id.
    pub peers: BTreeMap<u32, MockPeer>,
    /// `START_VPN` done.
    pub running: bool,
    /// Last `SET_IFMODE`.
    pub ifmode: Option<u32>,
    /// Last `SET_IFCONFIG`, merged.
    pub ifconfig: SetIfconfig,
    /// Routes.
    pub routes: Vec<Route>,
    /// Bound underlay addresses.
    pub listen: Vec<SocketAddr>,
    /// Control packets handed over with `SEND_CONTROL`.
    pub sent_control: Vec<SendControl>,
    /// Firewall rules.
    pub fw_rules: Vec<FwRule>,
    /// Firewall policy.
    pub fw_policy: String,
    /// Conntrack entries.
    pub conntrack: Vec<CtEntry>,
    /// Interface counters.
    pub stats: InterfaceStats,
}

/// The mock daemon.
pub struct MockDaemon {
    state: Mutex<MockState>,
    notifier: Mutex<Option<Notifier>>,
    ifname: String,
    started: Instant,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn page_bounds(cursor: Option<u64>, limit: Option<u32>) -> (u64, usize) {
    (
        cursor.unwrap_or(0),
        limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize,
    )
}

impl MockDaemon {
    /// A mock for interface `ifname`.
    pub fn new(ifname: &str) -> Self {
        MockDaemon {
            state: Mutex::new(MockState {
                fw_policy: "accept".into(),
                ..Default::default()
            }),
            notifier: Mutex::new(None),
            ifname: ifname.to_owned(),
            started: Instant::now(),
        }
    }

    /// Lets the mock push notifications (DEL_PEER on deletion) through the server's notifier.
    pub fn set_notifier(&self, n: Notifier) {
        *self.notifier.lock().unwrap_or_else(|p| p.into_inner()) = Some(n);
    }

    /// The notifier given with [`MockDaemon::set_notifier`].
    pub fn notifier(&self) -> Option<Notifier> {
        self.notifier
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The state, for inspection and seeding.
    pub fn state(&self) -> MutexGuard<'_, MockState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self, n: Notification) {
        if let Some(nt) = self
            .notifier
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            nt.notify(n);
        }
    }

    fn peer_info(p: &MockPeer) -> PeerInfo {
        PeerInfo {
            peerid: p.config.peerid,
            remote: p.config.remote,
            local: p.config.local,
            vpn_ipv4: p.config.vpn_ipv4,
            vpn_ipv6: p.config.vpn_ipv6,
            common_name: p.config.common_name.clone(),
            iroutes: p.config.iroutes.clone(),
            keys: p
                .keys
                .iter()
                .enumerate()
                .filter_map(|(i, k)| {
                    k.map(|(keyid, cipher, installed)| KeySlotInfo {
                        slot: if i == 0 {
                            KeySlot::Primary
                        } else {
                            KeySlot::Secondary
                        },
                        keyid,
                        cipher,
                        installed: Some(installed),
                    })
                })
                .collect(),
            interval: p.interval,
            timeout: p.timeout,
            last_rx: None,
            last_tx: None,
            packets: p.packets,
            bytes: p.bytes,
        }
    }

    fn apply(&self, req: Request) -> Result<Response, IpcError> {
        let missing = |id: u32| IpcError::not_found(format!("no peer with id {id}"));
        let mut st = self.state();
        match req {
            Request::NewPeer(p) => {
                if st.peers.contains_key(&p.peerid) {
                    return Err(IpcError::exists(format!(
                        "peer {} already exists",
                        p.peerid
                    )));
                }
                st.peers.insert(
                    p.peerid,
                    MockPeer {
                        config: p,
                        keys: [None, None],
                        interval: 0,
                        timeout: 0,
                        packets: InOut::default(),
                        bytes: InOut::default(),
                    },
                );
                Ok(Response::Ok)
            }
            Request::DelPeer(r) => {
                let p = st
                    .peers
                    .remove(&r.peerid)
                    .ok_or_else(|| missing(r.peerid))?;
                drop(st);
                self.notify(Notification::DelPeer(DelPeerNote {
                    peerid: r.peerid,
                    del_reason: DelReason::REQUESTED,
                    packets: p.packets,
                    bytes: p.bytes,
                }));
                Ok(Response::Ok)
            }
            Request::SetPeer(s) => {
                let p = st
                    .peers
                    .get_mut(&s.peerid)
                    .ok_or_else(|| missing(s.peerid))?;
                p.interval = s.interval;
                p.timeout = s.timeout;
                Ok(Response::Ok)
            }
            Request::NewKey(k) => {
                let p = st
                    .peers
                    .get_mut(&k.peerid)
                    .ok_or_else(|| missing(k.peerid))?;
                p.keys[usize::from(k.slot.number())] = Some((k.keyid, k.encrypt.cipher, now()));
                Ok(Response::Ok)
            }
            Request::SwapKeys(r) => {
                let p = st
                    .peers
                    .get_mut(&r.peerid)
                    .ok_or_else(|| missing(r.peerid))?;
                if p.keys[1].is_none() {
                    return Err(IpcError::new(libc::ENOLINK, "no secondary key to swap to"));
                }
                p.keys.swap(0, 1);
                Ok(Response::Ok)
            }
            Request::DelKey(k) => {
                let p = st
                    .peers
                    .get_mut(&k.peerid)
                    .ok_or_else(|| missing(k.peerid))?;
                p.keys[usize::from(k.slot.number())] = None;
                Ok(Response::Ok)
            }
            Request::StartVpn => {
                st.running = true;
                Ok(Response::Ok)
            }
            Request::SetIfmode(m) => {
                if st.running {
                    return Err(IpcError::busy(
                        "interface is up; set the mode before START_VPN",
                    ));
                }
                st.ifmode = Some(m.ifmode);
                Ok(Response::Ok)
            }
            Request::GetStats => Ok(Response::Stats(st.stats.clone())),
            Request::GetPeerStats(pg) => {
                let (from, limit) = page_bounds(pg.cursor, pg.limit);
                let mut it = st.peers.range(from.min(u64::from(u32::MAX)) as u32..);
                let peers: Vec<PeerStats> = it
                    .by_ref()
                    .take(limit)
                    .map(|(_, p)| PeerStats {
                        peerid: p.config.peerid,
                        packets: p.packets,
                        bytes: p.bytes,
                    })
                    .collect();
                let next = it.next().map(|(id, _)| u64::from(*id));
                Ok(Response::PeerStats(PeerStatsPage { peers, next }))
            }
            Request::GetPeers(pg) => {
                let (from, limit) = page_bounds(pg.cursor, pg.limit);
                let mut it = st.peers.range(from.min(u64::from(u32::MAX)) as u32..);
                let peers: Vec<PeerInfo> = it
                    .by_ref()
                    .take(limit)
                    .map(|(_, p)| Self::peer_info(p))
                    .collect();
                let next = it.next().map(|(id, _)| u64::from(*id));
                Ok(Response::Peers(PeersPage { peers, next }))
            }
            Request::GetInfo => Ok(Response::Info(Info {
                version: env!("CARGO_PKG_VERSION").into(),
                ifname: self.ifname.clone(),
                workers: 1,
                crypto_backend: "mock (no data path)".into(),
                gpu_status: "none".into(),
                gpu: vec![],
                peers: st.peers.len() as u32,
                uptime: self.started.elapsed().as_secs(),
                running: st.running,
                listen: st.listen.iter().copied().map(Endpoint).collect(),
            })),
            Request::Listen(l) => {
                // Bind for real, so port 0 reports the port the kernel picked.
                let sock = std::net::UdpSocket::bind(l.local).map_err(|e| {
                    IpcError::new(
                        e.raw_os_error().unwrap_or(libc::EIO),
                        format!("bind {}: {e}", l.local),
                    )
                    .with_key("args.local")
                })?;
                let local = sock
                    .local_addr()
                    .map_err(|e| IpcError::internal(e.to_string()))?;
                st.listen.push(local);
                Ok(Response::Listening(Listen { local }))
            }
            Request::SetIfconfig(c) => {
                if let Some(m) = c.mtu
                    && !(576..=65535).contains(&m)
                {
                    return Err(IpcError::invalid(
                        "args.mtu",
                        format!("MTU {m} outside 576..65535"),
                    ));
                }
                let cur = &mut st.ifconfig;
                cur.ipv4 = c.ipv4.or(cur.ipv4);
                cur.ipv6 = c.ipv6.or(cur.ipv6);
                cur.mtu = c.mtu.or(cur.mtu);
                cur.up = c.up.or(cur.up);
                Ok(Response::Ok)
            }
            Request::AddRoute(r) => {
                if st.routes.iter().any(|x| x.dst == r.dst) {
                    return Err(IpcError::exists(format!("route {} exists", r.dst)));
                }
                st.routes.push(r);
                Ok(Response::Ok)
            }
            Request::DelRoute(r) => {
                let before = st.routes.len();
                st.routes.retain(|x| x.dst != r.dst);
                if st.routes.len() == before {
                    return Err(IpcError::not_found(format!("no route {}", r.dst)));
                }
                Ok(Response::Ok)
            }
            Request::AddIroute(r) => {
                let p = st
                    .peers
                    .get_mut(&r.peerid)
                    .ok_or_else(|| missing(r.peerid))?;
                for i in r.iroutes {
                    if !p.config.iroutes.contains(&i) {
                        p.config.iroutes.push(i);
                    }
                }
                Ok(Response::Ok)
            }
            Request::DelIroute(r) => {
                let p = st
                    .peers
                    .get_mut(&r.peerid)
                    .ok_or_else(|| missing(r.peerid))?;
                let gone: Vec<IpPrefix> = r
                    .iroutes
                    .iter()
                    .filter(|i| !p.config.iroutes.contains(i))
                    .copied()
                    .collect();
                if let Some(g) = gone.first() {
                    return Err(IpcError::not_found(format!(
                        "peer {} has no iroute {g}",
                        r.peerid
                    )));
                }
                p.config.iroutes.retain(|i| !r.iroutes.contains(i));
                Ok(Response::Ok)
            }
            Request::SendControl(s) => {
                st.sent_control.push(s);
                st.stats.ctrl.tx += 1;
                Ok(Response::Ok)
            }
            Request::FwLoad(l) => {
                let mut rules = Vec::new();
                let mut policy = "accept".to_owned();
                for (n, line) in l.rules.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    if let Some(p) = line.strip_prefix("policy ") {
                        if p != "accept" && p != "drop" {
                            return Err(IpcError::invalid(
                                "args.rules",
                                format!("line {}: policy must be accept or drop", n + 1),
                            ));
                        }
                        policy = p.to_owned();
                        continue;
                    }
                    if !(line.ends_with("accept") || line.ends_with("drop")) {
                        return Err(IpcError::invalid(
                            "args.rules",
                            format!("line {}: a rule ends with accept or drop", n + 1),
                        ));
                    }
                    rules.push(FwRule {
                        index: rules.len() as u32,
                        text: line.to_owned(),
                        packets: 0,
                        bytes: 0,
                    });
                }
                let count = rules.len() as u32;
                st.fw_rules = rules;
                st.fw_policy = policy;
                Ok(Response::FwLoaded(FwLoaded { rules: count }))
            }
            Request::FwList => Ok(Response::FwRules(FwRules {
                policy: st.fw_policy.clone(),
                policy_packets: 0,
                policy_bytes: 0,
                rules: st.fw_rules.clone(),
            })),
            Request::FwCounters(z) => {
                let out = FwCounters {
                    policy_packets: 0,
                    policy_bytes: 0,
                    rules: st
                        .fw_rules
                        .iter()
                        .map(|r| FwRuleCounter {
                            index: r.index,
                            packets: r.packets,
                            bytes: r.bytes,
                        })
                        .collect(),
                };
                if z.zero == Some(true) {
                    for r in &mut st.fw_rules {
                        r.packets = 0;
                        r.bytes = 0;
                    }
                }
                Ok(Response::FwCounters(out))
            }
            Request::CtList(q) => {
                let (from, limit) = page_bounds(q.cursor, q.limit);
                let matching: Vec<&CtEntry> = st
                    .conntrack
                    .iter()
                    .filter(|e| q.peerid.is_none() || e.peerid == q.peerid)
                    .collect();
                let start = (from as usize).min(matching.len());
                let end = (start + limit).min(matching.len());
                let entries = matching[start..end].iter().map(|e| (*e).clone()).collect();
                let next = (end < matching.len()).then_some(end as u64);
                Ok(Response::CtList(CtPage { entries, next }))
            }
            Request::CtFlush(f) => {
                let before = st.conntrack.len();
                st.conntrack
                    .retain(|e| f.peerid.is_some() && e.peerid != f.peerid);
                Ok(Response::CtFlushed(CtFlushed {
                    flushed: (before - st.conntrack.len()) as u64,
                }))
            }
            Request::CtStats => Ok(Response::CtStats(CtStats {
                entries: st.conntrack.len() as u64,
                max: 65536,
                ..Default::default()
            })),
            Request::Subscribe(_) | Request::Unsubscribe => Err(IpcError::internal(
                "SUBSCRIBE is handled by the server, not the handler",
            )),
        }
    }
}

impl Handler for MockDaemon {
    async fn handle(&self, request: Request, _caller: &Caller) -> Result<Response, IpcError> {
        self.apply(request)
    }
}
