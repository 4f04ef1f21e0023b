//! The server shell (sans-IO): a table of control sessions keyed by the client's address,
//! admission (pool, client-config-dir, limits), NCP, PUSH_REPLY, and the translation of
//! session events into data-path commands. The binary carries the commands to the daemon
//! and feeds back its notifications.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crypto::Role as KeyRole;

use crate::config::{DataCipher, Options};
use crate::dataplane::{DaemonCmd, DaemonEvent, Net, PeerTraffic, Slot, SlotMap};
use crate::key_method::PeerInfo;
use crate::packet::{self, Opcode, Peek};
use crate::pool::{Admitted, ClientAddressing, ClientId};
use crate::push::{ClientPush, ControlMessage, Negotiated, build_push_reply, negotiate};
use crate::session::{ControlSession, DataParams, SessionConfig, SessionEvent};
use crate::setup::cipher_kind;

/// How long a client that sent EXIT (or was refused) is kept so its last packets are ACKed.
const LINGER: Duration = Duration::from_secs(2);

/// Counters of the server shell (logged by `dco-control` when it shuts down).
#[derive(Debug, Default, Clone, Copy)]
pub struct ServerStats {
    pub sessions_created: u64,
    pub handshakes_completed: u64,
    pub auth_failed: u64,
    pub dropped_unknown: u64,
    pub dropped_bad_packets: u64,
}

/// One connected (or connecting) client.
pub struct Conn {
    pub session: ControlSession,
    pub remote: SocketAddr,
    pub local: Option<IpAddr>,
    pub peer_id: Option<u32>,
    pub common_name: Option<String>,
    pub admitted: Option<Admitted>,
    pub negotiated: Option<Negotiated>,
    pub connected_since: Instant,
    pub traffic: PeerTraffic,
    /// When the client was admitted.
    pub admitted_at: Option<Instant>,
    slots: SlotMap,
    push_reply: Vec<String>,
    pushed: bool,
    close_at: Option<Instant>,
}

pub struct Server {
    opts: Arc<Options>,
    template: SessionConfig,
    addressing: ClientAddressing,
    conns: HashMap<SocketAddr, Conn>,
    by_peer: HashMap<u32, SocketAddr>,
    by_client: HashMap<ClientId, SocketAddr>,
    cmds: VecDeque<DaemonCmd>,
    pub stats: ServerStats,
    scratch: Vec<u8>,
}

impl Server {
    pub fn new(
        opts: Arc<Options>,
        template: SessionConfig,
    ) -> Result<Self, crate::pool::PoolError> {
        let addressing = ClientAddressing::from_options(&opts)?;
        Ok(Self {
            opts,
            template,
            addressing,
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            by_client: HashMap::new(),
            cmds: VecDeque::new(),
            stats: ServerStats::default(),
            scratch: Vec::new(),
        })
    }

    /// The next command for the daemon.
    pub fn poll_command(&mut self) -> Option<DaemonCmd> {
        self.cmds.pop_front()
    }

    pub fn connections(&self) -> impl Iterator<Item = &Conn> {
        self.conns.values()
    }

    /// The earliest time [`Server::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter_map(|c| c.session.poll_timeout().into_iter().chain(c.close_at).min())
            .min()
    }

    /// A notification from the daemon.
    pub fn handle_event(&mut self, now: Instant, ev: DaemonEvent) {
        match ev {
            DaemonEvent::ControlPacket {
                remote,
                local,
                packet,
            } => self.handle_packet(now, remote, local, &packet),
            DaemonEvent::PeerDeleted { peer_id, reason } => {
                if let Some(addr) = self.by_peer.get(&peer_id).copied() {
                    tracing::info!(peer_id, %addr, reason, "peer deleted by the data path");
                    self.remove(addr, false);
                }
            }
            DaemonEvent::RotateKey { peer_id } => {
                if let Some(c) = self
                    .by_peer
                    .get(&peer_id)
                    .and_then(|a| self.conns.get_mut(a))
                {
                    let _ = c.session.renegotiate(now);
                    self.drain(now, self.by_peer[&peer_id]);
                }
            }
            DaemonEvent::Float { peer_id, remote } => {
                if let Some(old) = self.by_peer.get(&peer_id).copied()
                    && let Some(mut c) = self.conns.remove(&old)
                {
                    tracing::info!(peer_id, from = %old, to = %remote, "client floated");
                    c.remote = remote;
                    if let Some(a) = &c.admitted {
                        self.by_client.insert(a.id, remote);
                    }
                    self.by_peer.insert(peer_id, remote);
                    if let Some(stale) = self.conns.insert(remote, c) {
                        self.close_conn(stale, true);
                    }
                }
            }
            DaemonEvent::Traffic { peer_id, traffic } => {
                if let Some(addr) = self.by_peer.get(&peer_id).copied()
                    && let Some(c) = self.conns.get_mut(&addr)
                {
                    c.traffic = traffic;
                    c.session
                        .report_traffic(now, traffic.bytes(), traffic.packets());
                    self.drain(now, addr);
                }
            }
        }
    }

    /// Timers of every session.
    pub fn handle_timeout(&mut self, now: Instant) {
        let addrs: Vec<SocketAddr> = self.conns.keys().copied().collect();
        for a in addrs {
            let Some(c) = self.conns.get_mut(&a) else {
                continue;
            };
            if c.close_at.is_some_and(|t| now >= t) {
                self.remove(a, true);
                continue;
            }
            c.session.handle_timeout(now);
            self.drain(now, a);
        }
    }

    /// Tells every client we are going away (explicit-exit-notify on the server side).
    pub fn shutdown(&mut self, now: Instant) {
        let restart = self.opts.explicit_exit_notify.is_some_and(|n| n > 0);
        let addrs: Vec<SocketAddr> = self.conns.keys().copied().collect();
        for a in addrs {
            if restart && let Some(c) = self.conns.get_mut(&a) {
                let msg = if self.opts.explicit_exit_notify == Some(2) {
                    "RESTART,[N]"
                } else {
                    "RESTART"
                };
                let _ = c.session.send_message(now, msg);
            }
            self.drain(now, a);
        }
    }

    fn handle_packet(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local: Option<IpAddr>,
        data: &[u8],
    ) {
        let peek = match packet::peek(data) {
            Ok(Peek::Control {
                opcode,
                key_id,
                session_id,
            }) => (opcode, key_id, session_id),
            Ok(Peek::Data { .. }) | Err(_) => {
                // Data for a peer the daemon does not know, DATA_V1, junk.
                self.stats.dropped_unknown += 1;
                return;
            }
        };
        let (opcode, key_id, sid) = peek;
        let is_new = opcode == Opcode::HardResetClientV2 && key_id == packet::KeyId::ZERO;
        if let Some(c) = self.conns.get_mut(&remote) {
            // A fresh hard reset with another session id: the client restarted.
            if !(is_new && c.session.remote_session_id() != Some(sid)) {
                if let Err(e) = c.session.handle_datagram(now, data) {
                    tracing::debug!(%remote, "control packet dropped: {e}");
                    self.stats.dropped_bad_packets += 1;
                }
                self.drain(now, remote);
                return;
            }
            tracing::info!(%remote, "client restarted its session");
            self.remove(remote, true);
        }
        if !is_new {
            self.stats.dropped_unknown += 1;
            return;
        }
        // Authenticate before keeping any state (tls-auth/tls-crypt make this a real check).
        let mut scratch = std::mem::take(&mut self.scratch);
        let opened = match self.template.wrap.open(data, &mut scratch) {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(%remote, "unauthenticated hard reset dropped: {e}");
                self.stats.dropped_bad_packets += 1;
                self.scratch = scratch;
                return;
            }
        };
        let session = ControlSession::server(self.template.clone(), &opened, now);
        self.scratch = scratch;
        match session {
            Ok(session) => {
                self.stats.sessions_created += 1;
                self.conns.insert(
                    remote,
                    Conn {
                        session,
                        remote,
                        local,
                        peer_id: None,
                        common_name: None,
                        admitted: None,
                        negotiated: None,
                        connected_since: now,
                        traffic: PeerTraffic::default(),
                        admitted_at: None,
                        slots: SlotMap::default(),
                        push_reply: Vec::new(),
                        pushed: false,
                        close_at: None,
                    },
                );
                self.drain(now, remote);
            }
            Err(e) => tracing::warn!(%remote, "cannot start a session: {e}"),
        }
    }

    /// Handles a session's events, then queues its datagrams (after any key commands, so
    /// the daemon has the keys before the client hears PUSH_REPLY).
    fn drain(&mut self, now: Instant, addr: SocketAddr) {
        loop {
            let Some(c) = self.conns.get_mut(&addr) else {
                return;
            };
            let Some(ev) = c.session.poll_event() else {
                break;
            };
            self.on_event(now, addr, ev);
        }
        let Some(c) = self.conns.get_mut(&addr) else {
            return;
        };
        while let Some(packet) = c.session.poll_transmit(now) {
            self.cmds.push_back(DaemonCmd::SendControl {
                remote: c.remote,
                local: c.local,
                packet,
            });
        }
        if c.session.is_dead() && c.close_at.is_none() {
            self.remove(addr, true);
        }
    }

    fn on_event(&mut self, now: Instant, addr: SocketAddr, ev: SessionEvent) {
        match ev {
            SessionEvent::Established {
                identity,
                peer_options,
                peer_info,
                ..
            } => {
                self.admit(now, addr, identity.common_name, peer_info, &peer_options);
            }
            SessionEvent::InstallKey {
                key_id,
                key2,
                cipher,
                primary,
            } => {
                let Some(c) = self.conns.get_mut(&addr) else {
                    return;
                };
                let Some(peer_id) = c.peer_id else { return };
                match key2.data_keys(KeyRole::Server, cipher_kind(cipher)) {
                    Ok((encrypt, decrypt)) => {
                        let slot = c.slots.install(key_id, primary);
                        self.cmds.push_back(DaemonCmd::NewKey {
                            peer_id,
                            slot,
                            key_id,
                            encrypt,
                            decrypt,
                        });
                    }
                    Err(e) => {
                        tracing::error!(peer_id, "key material refused: {e}");
                        c.session.fail(e.to_string());
                    }
                }
            }
            SessionEvent::ActivateKey { key_id } => {
                let Some(c) = self.conns.get_mut(&addr) else {
                    return;
                };
                if let Some(peer_id) = c.peer_id
                    && c.slots.activate(key_id)
                {
                    self.cmds.push_back(DaemonCmd::SwapKeys { peer_id });
                }
            }
            SessionEvent::RetireKey { key_id } => {
                let Some(c) = self.conns.get_mut(&addr) else {
                    return;
                };
                if let Some(peer_id) = c.peer_id
                    && c.slots.retire(key_id)
                {
                    self.cmds.push_back(DaemonCmd::DelKey {
                        peer_id,
                        slot: Slot::Secondary,
                    });
                }
            }
            SessionEvent::Message(m) => self.on_message(now, addr, m),
            SessionEvent::RenegotiationFailed { key_id, reason } => {
                tracing::warn!(%addr, key_id, "renegotiation failed: {reason}");
            }
            SessionEvent::Failed(e) => {
                tracing::info!(%addr, "session ended: {e}");
                if let Some(c) = self.conns.get_mut(&addr) {
                    c.close_at = Some(now);
                }
            }
        }
    }

    fn on_message(&mut self, now: Instant, addr: SocketAddr, m: ControlMessage) {
        let Some(c) = self.conns.get_mut(&addr) else {
            return;
        };
        match m {
            ControlMessage::PushRequest => {
                if c.close_at.is_some() {
                    let _ = c.session.send_message(now, "AUTH_FAILED");
                } else if !c.push_reply.is_empty() && !c.pushed {
                    send_push(c, now);
                }
            }
            ControlMessage::Exit => {
                tracing::info!(%addr, cn = c.common_name.as_deref().unwrap_or("?"), "client sent EXIT");
                c.close_at = Some(now + LINGER);
            }
            other => tracing::debug!(%addr, "control message ignored: {other:?}"),
        }
    }

    fn refuse(&mut self, now: Instant, addr: SocketAddr, why: &str) {
        self.stats.auth_failed += 1;
        let Some(c) = self.conns.get_mut(&addr) else {
            return;
        };
        tracing::warn!(%addr, cn = c.common_name.as_deref().unwrap_or("?"), "client refused: {why}");
        let _ = c.session.send_message(now, "AUTH_FAILED");
        c.close_at = Some(now + LINGER);
    }

    fn admit(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        cn: String,
        peer_info: Option<PeerInfo>,
        occ: &str,
    ) {
        if let Some(c) = self.conns.get_mut(&addr) {
            c.common_name = Some(cn.clone());
        }
        let peer_info = peer_info.unwrap_or_else(|| PeerInfo::parse(""));
        let ciphers: Vec<DataCipher> = self.opts.data_ciphers.clone();
        let negotiated = match negotiate(&ciphers, self.opts.data_ciphers_fallback, &peer_info, occ)
        {
            Ok(n) => n,
            Err(e) => {
                return self.refuse(now, addr, &format!("data channel negotiation failed: {e}"));
            }
        };
        let admitted = match self.addressing.admit(&cn) {
            Ok(a) => a,
            Err(e) => return self.refuse(now, addr, &e.to_string()),
        };
        for old in &admitted.replaced {
            if let Some(a) = self.by_client.remove(old)
                && a != addr
            {
                tracing::info!(cn, old = %a, "new connection replaces the old one (no duplicate-cn)");
                self.remove(a, true);
            }
        }
        self.by_client.insert(admitted.id, addr);
        let peer_id = (0u32..)
            .find(|id| !self.by_peer.contains_key(id))
            .unwrap_or(0);
        self.by_peer.insert(peer_id, addr);
        let mut iroutes: Vec<Net> = admitted
            .iroutes
            .iter()
            .map(|(n, m)| Net::v4(*n, *m))
            .collect();
        iroutes.extend(
            admitted
                .iroutes_ipv6
                .iter()
                .map(|n| Net::v6(n.addr, n.prefix_len)),
        );
        let Some(c) = self.conns.get_mut(&addr) else {
            return;
        };
        c.peer_id = Some(peer_id);
        self.cmds.push_back(DaemonCmd::NewPeer {
            peer_id,
            remote: c.remote,
            local: c.local,
            vpn_ipv4: admitted.ipv4.map(|(a, _)| a),
            vpn_ipv6: admitted.ipv6.map(|(a, _, _)| a),
            iroutes,
            common_name: cn.clone(),
        });
        let timers = self.opts.ping_timers();
        if timers.ping.is_some() || timers.ping_restart.is_some() {
            self.cmds.push_back(DaemonCmd::SetPeer {
                peer_id,
                interval: timers.ping.unwrap_or(0),
                timeout: timers.ping_restart.unwrap_or(0),
            });
        }
        let per_client = ClientPush {
            ifconfig_ipv6: admitted.ipv6,
            ifconfig: admitted.ipv4,
            peer_id,
            negotiated: negotiated.clone(),
            tun_mtu: self.opts.tun_mtu,
        }
        .options();
        let reply = match build_push_reply(&admitted.push, &per_client) {
            Ok(r) => r,
            Err(e) => return self.refuse(now, addr, &format!("cannot build PUSH_REPLY: {e}")),
        };
        let params = DataParams {
            cipher: negotiated.cipher,
            ekm: negotiated.key_derivation == crate::push::KeyDerivation::TlsEkm,
        };
        c.push_reply = reply;
        c.negotiated = Some(negotiated.clone());
        c.admitted = Some(admitted);
        c.admitted_at = Some(now);
        self.stats.handshakes_completed += 1;
        tracing::info!(%addr, cn, peer_id, cipher = params.cipher.name(), ekm = params.ekm, "client admitted");
        if let Err(e) = c.session.set_data_params(now, params) {
            tracing::error!(%addr, "cannot derive data keys: {e}");
            c.session.fail(e.to_string());
            return;
        }
        if negotiated.push_early {
            // The InstallKey event is handled before the PUSH_REPLY datagrams are queued.
            send_push(c, now);
        }
    }

    /// Drops a connection: releases its address and, if asked, deletes its peer.
    fn remove(&mut self, addr: SocketAddr, del_peer: bool) {
        if let Some(c) = self.conns.remove(&addr) {
            self.close_conn(c, del_peer);
        }
    }

    fn close_conn(&mut self, c: Conn, del_peer: bool) {
        if let Some(p) = c.peer_id {
            if self.by_peer.get(&p) == Some(&c.remote) {
                self.by_peer.remove(&p);
            }
            if del_peer {
                self.cmds.push_back(DaemonCmd::DelPeer { peer_id: p });
            }
        }
        if let Some(a) = c.admitted {
            if self.by_client.get(&a.id) == Some(&c.remote) {
                self.by_client.remove(&a.id);
            }
            self.addressing.release(a.id);
        }
    }
}

fn send_push(c: &mut Conn, now: Instant) {
    for part in &c.push_reply {
        if let Err(e) = c.session.send_message(now, part) {
            tracing::error!("cannot send PUSH_REPLY: {e}");
        }
    }
    c.pushed = true;
}
