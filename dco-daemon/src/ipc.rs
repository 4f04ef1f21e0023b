//! The daemon side of the IPC: every request of `control-ipc` mapped onto [`Daemon`]
//! operations, and the data path's events turned into notifications.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use control_ipc::message::{IpcError, Notification, Request, Response};
use control_ipc::schema::{
    Cipher, ControlPacketNote, CtEntry, CtFlushed, CtPage, CtStats, CtTuple, DelPeerNote,
    DelReason as IpcDelReason, Endpoint, FloatNote, FwCounters, FwLoaded, FwRule, FwRuleCounter,
    FwRules, Info, InterfaceStats, KeyConfig, KeySlot as IpcSlot, KeySlotInfo, NamedCounter, Page,
    PeerInfo as IpcPeerInfo, PeerRef, PeerStats, PeerStatsPage, PeersPage,
};
use control_ipc::types::{Bytes, InOut, IpPrefix};
use control_ipc::{Caller, Handler, Notifier};
use crypto::{CipherKind, DirectionalKey, PeerId};

use crate::core::{Daemon, DaemonError};
use crate::events::{DelReason, Event, EventSink};
use crate::netlink::Prefix;
use crate::peer::{KeySlot, PeerConfig};
use crate::stats::Ctr;
use crate::table::IfMode;

/// Notification type number of CONTROL_PACKET (see the control-ipc schema).
const NOTIFY_CONTROL_PACKET: u64 = 64;
/// DEL_PEER reason for an explicit-exit-notify seen on the data channel (ours, after
/// if_ovpn's 0..=3).
const DEL_REASON_EXIT: u64 = 4;

/// Turns data-path events into IPC notifications; never blocks a worker.
pub struct IpcSink {
    notifier: Notifier,
}

impl IpcSink {
    pub fn new(notifier: Notifier) -> Self {
        Self { notifier }
    }
}

impl EventSink for IpcSink {
    fn emit(&self, event: Event) -> bool {
        let n = match event {
            Event::DelPeer {
                peer_id,
                reason,
                traffic,
            } => Notification::DelPeer(DelPeerNote {
                peerid: peer_id,
                del_reason: IpcDelReason(match reason {
                    DelReason::Requested => IpcDelReason::REQUESTED.0,
                    DelReason::Expired => IpcDelReason::TIMEOUT.0,
                    DelReason::Shutdown => IpcDelReason::SHUTDOWN.0,
                    DelReason::Exit => DEL_REASON_EXIT,
                }),
                packets: InOut {
                    rx: traffic.pkts_in,
                    tx: traffic.pkts_out,
                },
                bytes: InOut {
                    rx: traffic.bytes_in,
                    tx: traffic.bytes_out,
                },
            }),
            Event::RotateKey { peer_id, .. } => {
                Notification::RotateKey(PeerRef { peerid: peer_id })
            }
            Event::Float {
                peer_id, remote, ..
            } => Notification::Float(FloatNote {
                peerid: peer_id,
                address: remote,
            }),
            Event::ControlPacket {
                remote,
                local,
                data,
            } => Notification::ControlPacket(ControlPacketNote {
                peerid: None,
                remote,
                local,
                packet: Bytes(data),
            }),
        };
        self.notifier.notify(n)
    }

    fn has_control_listener(&self) -> bool {
        self.notifier.subscribers_for(NOTIFY_CONTROL_PACKET) > 0
    }
}

/// Reports the GPU status line and its named counters.
pub type GpuStatusFn = Box<dyn Fn() -> (String, Vec<(String, u64)>) + Send + Sync>;

/// Maps requests onto the daemon.
pub struct DaemonHandler {
    pub daemon: Arc<Daemon>,
    pub started: Instant,
    /// What the crypto backend line of GET_INFO says.
    pub crypto_backend: String,
    /// GPU status line and counters for GET_INFO.
    pub gpu_status: GpuStatusFn,
    /// The last firewall rule text loaded (to reset counters by reloading it).
    pub fw_text: std::sync::Mutex<Option<String>>,
}

fn ct_tuple(t: &conntrack::Tuple) -> CtTuple {
    use conntrack::TupleL4;
    let (sport, dport, icmp_type, icmp_code, icmp_id) = match t.l4 {
        TupleL4::Ports { sport, dport } => (Some(sport), Some(dport), None, None, None),
        TupleL4::Icmp { typ, code, id } => (None, None, Some(typ), Some(code), Some(id)),
        TupleL4::None => (None, None, None, None, None),
    };
    CtTuple {
        src: t.src,
        dst: t.dst,
        sport,
        dport,
        icmp_type,
        icmp_code,
        icmp_id,
    }
}

fn ct_entry(c: &conntrack::ConnSnapshot) -> CtEntry {
    let state = match c.tcp_state {
        Some(s) => s.to_string(),
        None if c.seen_reply => "REPLIED".into(),
        None => "UNREPLIED".into(),
    };
    CtEntry {
        proto: c.proto,
        state,
        orig: ct_tuple(&c.original),
        reply: ct_tuple(&c.reply),
        orig_packets: c.orig_packets,
        orig_bytes: c.orig_bytes,
        reply_packets: c.reply_packets,
        reply_bytes: c.reply_bytes,
        timeout: c.timeout,
        mark: 0,
        peerid: c.orig_peer.or(c.reply_peer),
        assured: c.assured,
    }
}

fn err(e: DaemonError) -> IpcError {
    IpcError::new(e.errno(), e.to_string())
}

fn prefix(p: &IpPrefix) -> Result<Prefix, IpcError> {
    Prefix::new(p.addr, p.len).map_err(|e| IpcError::invalid("prefix", e.to_string()))
}

fn to_ipc_prefix(p: &Prefix) -> IpPrefix {
    IpPrefix {
        addr: p.addr,
        len: p.len,
    }
}

fn peer_id(n: u32) -> Result<PeerId, IpcError> {
    PeerId::new(n)
        .filter(|p| p.get() != crypto::PEER_ID_UNDEF)
        .ok_or_else(|| IpcError::invalid("peerid", format!("{n} is not a valid 24-bit peer-id")))
}

fn slot(s: IpcSlot) -> KeySlot {
    match s {
        IpcSlot::Primary => KeySlot::Primary,
        IpcSlot::Secondary => KeySlot::Secondary,
    }
}

fn cipher_kind(c: Cipher, key: &'static str) -> Result<CipherKind, IpcError> {
    match c {
        Cipher::Aes128Gcm => Ok(CipherKind::Aes128Gcm),
        Cipher::Aes256Gcm => Ok(CipherKind::Aes256Gcm),
        Cipher::Chacha20Poly1305 => Ok(CipherKind::Chacha20Poly1305),
        Cipher::Aes192Gcm => Err(IpcError::unsupported(
            "AES-192-GCM is not supported by the dco data path; use AES-256-GCM",
        )
        .with_key(key)),
        Cipher::None => Err(IpcError::invalid(
            key,
            "cipher 'none' is not allowed in a data-channel offload",
        )),
    }
}

fn ipc_cipher(c: CipherKind) -> Cipher {
    match c {
        CipherKind::Aes128Gcm => Cipher::Aes128Gcm,
        CipherKind::Aes256Gcm => Cipher::Aes256Gcm,
        CipherKind::Chacha20Poly1305 => Cipher::Chacha20Poly1305,
    }
}

fn directional(k: &KeyConfig, key: &'static str) -> Result<DirectionalKey, IpcError> {
    let c = cipher_kind(k.cipher, key)?;
    DirectionalKey::new(c, k.key.expose(), k.iv.expose())
        .map_err(|e| IpcError::invalid(key, e.to_string()))
}

fn page<T>(items: Vec<(u32, T)>, p: &Page) -> (Vec<T>, Option<u64>) {
    let start = p.cursor.unwrap_or(0);
    let limit = p.limit.unwrap_or(256).clamp(1, 4096) as usize;
    let mut it = items.into_iter().filter(|(id, _)| u64::from(*id) >= start);
    let out: Vec<(u32, T)> = it.by_ref().take(limit).collect();
    let next = it.next().map(|(id, _)| u64::from(id));
    (out.into_iter().map(|(_, t)| t).collect(), next)
}

impl DaemonHandler {
    fn fw_rules(&self) -> FwRules {
        let rs = self.daemon.conntrack().rules();
        let policy = rs.policy_counters();
        FwRules {
            policy: if self.daemon.firewall_active() {
                match rs.policy() {
                    conntrack::Policy::Accept => "accept".into(),
                    conntrack::Policy::Drop => "drop".into(),
                }
            } else {
                "none (no rule set loaded)".into()
            },
            policy_packets: policy.packets,
            policy_bytes: policy.bytes,
            rules: rs
                .rules()
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let c = rs.counters(i);
                    FwRule {
                        index: i as u32,
                        text: r.text().to_string(),
                        packets: c.packets,
                        bytes: c.bytes,
                    }
                })
                .collect(),
        }
    }

    fn stats(&self) -> InterfaceStats {
        let s = self.daemon.stats();
        let io = |i: Ctr, o: Ctr| InOut {
            rx: s.get(i),
            tx: s.get(o),
        };
        InterfaceStats {
            lost_ctrl: io(Ctr::LostCtrlIn, Ctr::LostCtrlOut),
            lost_data: io(Ctr::LostDataIn, Ctr::LostDataOut),
            nomem_data: io(Ctr::NomemDataIn, Ctr::NomemDataOut),
            data: io(Ctr::RecvData, Ctr::SentData),
            ctrl: io(Ctr::RecvCtrl, Ctr::SentCtrl),
            tunnel: io(Ctr::TunnelBytesRecv, Ctr::TunnelBytesSent),
            transport: io(Ctr::TransportBytesRecv, Ctr::TransportBytesSent),
            drops: s
                .drop_reasons()
                .into_iter()
                .map(|(n, v)| NamedCounter::new(n, v))
                .collect(),
        }
    }

    fn peers_info(&self) -> Vec<(u32, IpcPeerInfo)> {
        self.daemon
            .peers()
            .into_iter()
            .map(|p| {
                (
                    p.id,
                    IpcPeerInfo {
                        peerid: p.id,
                        remote: p.remote,
                        local: p.local.map(|ip| std::net::SocketAddr::new(ip, 0)),
                        vpn_ipv4: p.vpn_ipv4,
                        vpn_ipv6: p.vpn_ipv6,
                        common_name: (!p.common_name.is_empty()).then(|| p.common_name.clone()),
                        iroutes: p.iroutes.iter().map(to_ipc_prefix).collect(),
                        keys: p
                            .keys
                            .iter()
                            .map(|(s, kid, c, sent)| KeySlotInfo {
                                slot: match s {
                                    KeySlot::Primary => IpcSlot::Primary,
                                    KeySlot::Secondary => IpcSlot::Secondary,
                                },
                                keyid: *kid,
                                cipher: ipc_cipher(*c),
                                installed: Some(*sent),
                            })
                            .collect(),
                        interval: p.keepalive.0,
                        timeout: p.keepalive.1,
                        last_rx: Some(p.last_rx_ms_ago / 1000),
                        last_tx: Some(p.last_tx_ms_ago / 1000),
                        packets: InOut {
                            rx: p.traffic.pkts_in,
                            tx: p.traffic.pkts_out,
                        },
                        bytes: InOut {
                            rx: p.traffic.bytes_in,
                            tx: p.traffic.bytes_out,
                        },
                    },
                )
            })
            .collect()
    }

    fn dispatch(&self, req: Request) -> Result<Response, IpcError> {
        let d = &self.daemon;
        match req {
            Request::NewPeer(p) => {
                let iroutes = p
                    .iroutes
                    .iter()
                    .map(prefix)
                    .collect::<Result<Vec<_>, _>>()?;
                d.new_peer(PeerConfig {
                    id: peer_id(p.peerid)?,
                    remote: p.remote,
                    local: p.local.map(|s| s.ip()).filter(|ip| !ip.is_unspecified()),
                    vpn_ipv4: p.vpn_ipv4,
                    vpn_ipv6: p.vpn_ipv6,
                    iroutes,
                    common_name: p.common_name.unwrap_or_default(),
                })
                .map_err(err)?;
                Ok(Response::Ok)
            }
            Request::DelPeer(p) => d.del_peer(p.peerid).map(|_| Response::Ok).map_err(err),
            Request::SetPeer(p) => d
                .set_peer(p.peerid, p.interval, p.timeout)
                .map(|_| Response::Ok)
                .map_err(err),
            Request::NewKey(k) => {
                let enc = directional(&k.encrypt, "encrypt")?;
                let dec = directional(&k.decrypt, "decrypt")?;
                d.new_key(k.peerid, slot(k.slot), k.keyid, &enc, &dec)
                    .map(|_| Response::Ok)
                    .map_err(err)
            }
            Request::SwapKeys(p) => d.swap_keys(p.peerid).map(|_| Response::Ok).map_err(err),
            Request::DelKey(k) => d
                .del_key(k.peerid, slot(k.slot))
                .map(|_| Response::Ok)
                .map_err(err),
            Request::StartVpn => Ok(Response::Ok),
            Request::SetIfmode(m) => {
                let mode = if m.ifmode & libc::IFF_POINTOPOINT as u32 != 0 {
                    IfMode::P2p
                } else {
                    IfMode::Multipoint
                };
                d.set_ifmode(mode);
                if let Some(on) = m.client_to_client {
                    d.set_client_to_client(on);
                }
                Ok(Response::Ok)
            }
            Request::GetStats => Ok(Response::Stats(self.stats())),
            Request::GetPeerStats(p) => {
                let items = self
                    .daemon
                    .peers()
                    .into_iter()
                    .map(|i| {
                        (
                            i.id,
                            PeerStats {
                                peerid: i.id,
                                packets: InOut {
                                    rx: i.traffic.pkts_in,
                                    tx: i.traffic.pkts_out,
                                },
                                bytes: InOut {
                                    rx: i.traffic.bytes_in,
                                    tx: i.traffic.bytes_out,
                                },
                            },
                        )
                    })
                    .collect();
                let (peers, next) = page(items, &p);
                Ok(Response::PeerStats(PeerStatsPage { peers, next }))
            }
            Request::GetPeers(p) => {
                let (peers, next) = page(self.peers_info(), &p);
                Ok(Response::Peers(PeersPage { peers, next }))
            }
            Request::GetInfo => {
                let (gpu_status, gpu) = (self.gpu_status)();
                Ok(Response::Info(Info {
                    version: env!("CARGO_PKG_VERSION").into(),
                    ifname: d.ifname().into(),
                    workers: d.workers() as u32,
                    crypto_backend: self.crypto_backend.clone(),
                    gpu_status,
                    gpu: gpu
                        .into_iter()
                        .map(|(n, v)| NamedCounter::new(n, v))
                        .collect(),
                    peers: d.peers().len() as u32,
                    uptime: self.started.elapsed().as_secs(),
                    running: d.listening().is_some(),
                    listen: d.listening().into_iter().map(Endpoint).collect(),
                }))
            }
            Request::Listen(l) => {
                let bound = d.listen(l.local).map_err(err)?;
                Ok(Response::Listening(control_ipc::schema::Listen {
                    local: bound,
                }))
            }
            Request::SetIfconfig(c) => {
                let mut addrs = Vec::new();
                for p in c.ipv4.iter().chain(c.ipv6.iter()) {
                    addrs.push(prefix(p)?);
                }
                d.set_ifconfig(&addrs, c.mtu, c.up.unwrap_or(true))
                    .map(|_| Response::Ok)
                    .map_err(err)
            }
            Request::AddRoute(r) => d
                .add_route(prefix(&r.dst)?, r.gateway, r.metric)
                .map(|_| Response::Ok)
                .map_err(err),
            Request::DelRoute(r) => d
                .del_route(prefix(&r.dst)?)
                .map(|_| Response::Ok)
                .map_err(err),
            Request::AddIroute(i) => {
                let add = i
                    .iroutes
                    .iter()
                    .map(prefix)
                    .collect::<Result<Vec<_>, _>>()?;
                let mut cur = self.current_iroutes(i.peerid)?;
                for p in add {
                    if !cur.contains(&p) {
                        cur.push(p);
                    }
                }
                d.set_iroutes(i.peerid, cur)
                    .map(|_| Response::Ok)
                    .map_err(err)
            }
            Request::DelIroute(i) => {
                let del = i
                    .iroutes
                    .iter()
                    .map(prefix)
                    .collect::<Result<Vec<_>, _>>()?;
                let mut cur = self.current_iroutes(i.peerid)?;
                cur.retain(|p| !del.contains(p));
                d.set_iroutes(i.peerid, cur)
                    .map(|_| Response::Ok)
                    .map_err(err)
            }
            Request::SendControl(s) => {
                let local: Option<IpAddr> =
                    s.local.map(|l| l.ip()).filter(|ip| !ip.is_unspecified());
                d.send_control(s.remote, local, &s.packet.0)
                    .map(|_| Response::Ok)
                    .map_err(err)
            }
            Request::Subscribe(_) | Request::Unsubscribe => Err(IpcError::unsupported(
                "SUBSCRIBE is handled by the IPC server",
            )),
            Request::FwLoad(f) => match d.load_firewall(&f.rules) {
                Ok(n) => {
                    *self.fw_text.lock().unwrap_or_else(|p| p.into_inner()) = Some(f.rules);
                    Ok(Response::FwLoaded(FwLoaded { rules: n as u32 }))
                }
                Err(e) => Err(IpcError::invalid(
                    "rules",
                    format!("line {}, column {}: {}", e.line, e.col, e.msg),
                )),
            },
            Request::FwList => Ok(Response::FwRules(self.fw_rules())),
            Request::FwCounters(c) => {
                let rules = self.fw_rules();
                if c.zero == Some(true) {
                    // Reloading the same text starts every counter from zero.
                    let text = self
                        .fw_text
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    if let Some(t) = text {
                        let _ = d.load_firewall(&t);
                    }
                }
                Ok(Response::FwCounters(FwCounters {
                    policy_packets: rules.policy_packets,
                    policy_bytes: rules.policy_bytes,
                    rules: rules
                        .rules
                        .iter()
                        .map(|r| FwRuleCounter {
                            index: r.index,
                            packets: r.packets,
                            bytes: r.bytes,
                        })
                        .collect(),
                }))
            }
            Request::CtList(req) => {
                let mut all = Vec::new();
                d.conntrack().for_each(d.ct_now(), |c| {
                    if req
                        .peerid
                        .is_none_or(|p| c.orig_peer == Some(p) || c.reply_peer == Some(p))
                    {
                        all.push((c.id, ct_entry(c)));
                    }
                });
                all.sort_by_key(|(id, _)| *id);
                let (entries, next) = page(
                    all,
                    &Page {
                        cursor: req.cursor,
                        limit: req.limit,
                    },
                );
                Ok(Response::CtList(CtPage { entries, next }))
            }
            Request::CtFlush(f) => {
                let n = match f.peerid {
                    None => d.conntrack().flush(d.ct_now()),
                    Some(p) => d.conntrack().flush_matching(d.ct_now(), |c| {
                        c.orig_peer == Some(p) || c.reply_peer == Some(p)
                    }),
                };
                Ok(Response::CtFlushed(CtFlushed { flushed: n as u64 }))
            }
            Request::CtStats => Ok(Response::CtStats(ct_stats_reply(&d.conntrack().stats()))),
        }
    }

    fn current_iroutes(&self, id: u32) -> Result<Vec<Prefix>, IpcError> {
        self.daemon
            .peers()
            .into_iter()
            .find(|p| p.id == id)
            .map(|p| p.iroutes)
            .ok_or_else(|| IpcError::not_found(format!("peer {id} does not exist")))
    }
}

impl Handler for DaemonHandler {
    async fn handle(&self, request: Request, _caller: &Caller) -> Result<Response, IpcError> {
        self.dispatch(request)
    }
}

/// The `CT_STATS` reply: the schema's fixed fields, then every other tracker counter under
/// its own name (a counter already given as a fixed field is not repeated).
fn ct_stats_reply(s: &conntrack::Stats) -> CtStats {
    let t = &s.total;
    const FIXED: [&str; 4] = ["invalid", "drop", "early_drop", "expired"];
    CtStats {
        entries: s.entries as u64,
        max: s.max_entries as u64,
        new: t.insert,
        invalid: t.invalid,
        drop: t.drop,
        early_drop: t.early_drop,
        expired: t.expired,
        // An insert fails only when the table is full and nothing could be dropped early
        // (inserts run under the shard lock, so netfilter's insert race does not exist):
        // the same event as `drop`.
        insert_failed: t.drop,
        counters: t
            .fields()
            .iter()
            .filter(|(n, _)| !FIXED.contains(n))
            .map(|(n, v)| NamedCounter::new(*n, *v))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_stats_reply_names_each_counter_once() {
        let ct = conntrack::Conntrack::new(conntrack::Config::default()).expect("tracker");
        let r = ct_stats_reply(&ct.stats());
        let fixed = [
            "entries",
            "max",
            "new",
            "invalid",
            "drop",
            "early_drop",
            "expired",
            "insert_failed",
        ];
        let mut names = std::collections::HashSet::new();
        for n in &r.counters {
            assert!(
                !fixed.contains(&n.name.as_str()),
                "{} repeats a field",
                n.name
            );
            assert!(names.insert(n.name.clone()), "{} named twice", n.name);
        }
        // Everything else the tracker counts is there (conntrack -S's `found`, `insert`).
        assert!(
            names.contains("found") && names.contains("insert"),
            "{names:?}"
        );
        assert_eq!(names.len() + 4, ct.stats().total.fields().len());
    }
}
