//! The client shell (sans-IO): connects to the `remote`s in turn with backoff, sends
//! PUSH_REQUEST, applies the PUSH_REPLY through the data path (peer, interface address,
//! routes, keepalive, keys), restarts on ping-restart or a failed session, and says EXIT on
//! shutdown.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crypto::Role as KeyRole;

use crate::config::Options;
use crate::dataplane::{DaemonCmd, DaemonEvent, IfMode, Net, Slot, SlotMap};
use crate::push::{ControlMessage, PushReplyAssembler, PushedOptions, RouteGateway};
use crate::session::{ControlSession, DataParams, SessionConfig, SessionEvent};
use crate::setup::cipher_kind;

/// First wait before reconnecting; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Before options are pulled, a client restarts after 120 s without traffic.
const PRE_PULL_PING_RESTART: Duration = Duration::from_secs(120);

/// Where the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientState {
    Connecting,
    /// Options pushed and applied: "Initialization Sequence Completed".
    Connected,
    /// Waiting before the next attempt.
    Waiting {
        until: Instant,
    },
    /// Stopped for good (AUTH_FAILED, HALT, shutdown).
    Stopped {
        reason: String,
    },
}

/// What "Initialization Sequence Completed" reports, handed out by
/// [`Client::take_initialized`] once the daemon has everything it needs to carry data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initialized {
    pub remote: SocketAddr,
    pub peer_id: u32,
    pub cipher: &'static str,
    pub ekm: bool,
}

pub struct Client {
    opts: Arc<Options>,
    template: SessionConfig,
    remotes: Vec<SocketAddr>,
    next_remote: usize,
    remote: Option<SocketAddr>,
    session: Option<ControlSession>,
    state: ClientState,
    backoff: Duration,
    assembler: PushReplyAssembler,
    pushed: Option<PushedOptions>,
    peer_id: Option<u32>,
    slots: SlotMap,
    attempt_started: Option<Instant>,
    cmds: VecDeque<DaemonCmd>,
    /// Interface settings applied once; a reconnect re-applies only what changed.
    configured: bool,
    cc_exit: bool,
    /// Connected, not yet announced (see [`Client::take_initialized`]).
    announce: Option<Initialized>,
}

impl Client {
    /// `remotes` are the resolved `remote` entries, in the order to try.
    pub fn new(opts: Arc<Options>, template: SessionConfig, remotes: Vec<SocketAddr>) -> Self {
        Self {
            opts,
            template,
            remotes,
            next_remote: 0,
            remote: None,
            session: None,
            state: ClientState::Waiting {
                until: Instant::now(),
            },
            backoff: FIRST_BACKOFF,
            assembler: PushReplyAssembler::new(),
            pushed: None,
            peer_id: None,
            slots: SlotMap::default(),
            attempt_started: None,
            cmds: VecDeque::new(),
            configured: false,
            cc_exit: false,
            announce: None,
        }
    }

    pub fn state(&self) -> &ClientState {
        &self.state
    }

    pub fn pushed(&self) -> Option<&PushedOptions> {
        self.pushed.as_ref()
    }

    pub fn peer_id(&self) -> Option<u32> {
        self.peer_id
    }

    pub fn poll_command(&mut self) -> Option<DaemonCmd> {
        self.cmds.pop_front()
    }

    /// Once per connection, after the caller has executed every command polled so far: the
    /// peer, its interface settings and its first data key are in the daemon, so traffic
    /// can flow ("Initialization Sequence Completed" must not be said earlier: a packet
    /// sent on the strength of it would meet a daemon without the key).
    pub fn take_initialized(&mut self) -> Option<Initialized> {
        if self.cmds.is_empty() && self.slots.primary.is_some() {
            self.announce.take()
        } else {
            None
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Vec<Instant> = self
            .session
            .as_ref()
            .and_then(|s| s.poll_timeout())
            .into_iter()
            .collect();
        if let ClientState::Waiting { until } = self.state {
            t.push(until);
        }
        if let (ClientState::Connecting, Some(s)) = (&self.state, self.attempt_started) {
            t.push(s + PRE_PULL_PING_RESTART);
        }
        t.into_iter().min()
    }

    /// Starts the first connection attempt.
    pub fn start(&mut self, now: Instant) {
        self.connect(now);
    }

    fn connect(&mut self, now: Instant) {
        if self.remotes.is_empty() {
            self.state = ClientState::Stopped {
                reason: "no remote to connect to".into(),
            };
            return;
        }
        let remote = self.remotes[self.next_remote % self.remotes.len()];
        self.next_remote += 1;
        match ControlSession::client(self.template.clone(), now) {
            Ok(s) => {
                tracing::info!(%remote, "connecting");
                self.remote = Some(remote);
                self.session = Some(s);
                self.state = ClientState::Connecting;
                self.attempt_started = Some(now);
                self.assembler = PushReplyAssembler::new();
                self.drain(now);
            }
            Err(e) => {
                tracing::error!("cannot start a session: {e}");
                self.retry_later(now, &e.to_string());
            }
        }
    }

    fn retry_later(&mut self, now: Instant, why: &str) {
        if let Some(p) = self.peer_id.take() {
            self.cmds.push_back(DaemonCmd::DelPeer { peer_id: p });
        }
        self.session = None;
        self.announce = None;
        self.slots = SlotMap::default();
        self.pushed = None;
        let until = now + self.backoff;
        tracing::warn!(why, retry_in = ?self.backoff, "connection lost; will reconnect");
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.state = ClientState::Waiting { until };
    }

    fn stop(&mut self, reason: &str) {
        if let Some(p) = self.peer_id.take() {
            self.cmds.push_back(DaemonCmd::DelPeer { peer_id: p });
        }
        self.session = None;
        self.announce = None;
        tracing::error!(reason, "stopping");
        self.state = ClientState::Stopped {
            reason: reason.into(),
        };
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            ClientState::Waiting { until } if now >= until => self.connect(now),
            ClientState::Connecting
                if self
                    .attempt_started
                    .is_some_and(|s| now >= s + PRE_PULL_PING_RESTART) =>
            {
                self.retry_later(now, "no complete handshake and push within 120 s");
            }
            _ => {
                if let Some(s) = self.session.as_mut() {
                    s.handle_timeout(now);
                }
                self.drain(now);
            }
        }
    }

    pub fn handle_event(&mut self, now: Instant, ev: DaemonEvent) {
        match ev {
            DaemonEvent::ControlPacket { remote, packet, .. } => {
                if Some(remote) != self.remote {
                    return;
                }
                if let Some(s) = self.session.as_mut()
                    && let Err(e) = s.handle_datagram(now, &packet)
                {
                    tracing::debug!(%remote, "control packet dropped: {e}");
                }
                self.drain(now);
            }
            DaemonEvent::PeerDeleted { peer_id, reason } => {
                if Some(peer_id) == self.peer_id {
                    self.peer_id = None; // already gone in the daemon
                    self.retry_later(
                        now,
                        &format!("data path deleted the peer ({reason}): ping-restart"),
                    );
                }
            }
            DaemonEvent::RotateKey { peer_id } => {
                if Some(peer_id) == self.peer_id
                    && let Some(s) = self.session.as_mut()
                {
                    let _ = s.renegotiate(now);
                    self.drain(now);
                }
            }
            DaemonEvent::Float { .. } => {}
            DaemonEvent::Traffic { peer_id, traffic } => {
                if Some(peer_id) == self.peer_id
                    && let Some(s) = self.session.as_mut()
                {
                    s.report_traffic(now, traffic.bytes(), traffic.packets());
                    self.drain(now);
                }
            }
        }
    }

    /// Shutdown: tell the server (cc-exit) and stop.
    pub fn shutdown(&mut self, now: Instant) {
        if self.opts.explicit_exit_notify.is_some()
            && self.cc_exit
            && let Some(s) = self.session.as_mut()
        {
            let _ = s.send_message(now, "EXIT");
            self.drain(now);
        }
        self.state = ClientState::Stopped {
            reason: "shutdown".into(),
        };
    }

    fn drain(&mut self, now: Instant) {
        while let Some(ev) = self.session.as_mut().and_then(|s| s.poll_event()) {
            self.on_event(now, ev);
        }
        let Some(remote) = self.remote else { return };
        if let Some(s) = self.session.as_mut() {
            while let Some(packet) = s.poll_transmit(now) {
                self.cmds.push_back(DaemonCmd::SendControl {
                    remote,
                    local: None,
                    packet,
                });
            }
            if s.is_dead() && !matches!(self.state, ClientState::Stopped { .. }) {
                self.retry_later(now, "control session failed");
            }
        }
    }

    fn on_event(&mut self, now: Instant, ev: SessionEvent) {
        match ev {
            SessionEvent::Established { identity, .. } => {
                tracing::info!(
                    server = identity.common_name,
                    "TLS handshake done; requesting options"
                );
            }
            SessionEvent::Message(ControlMessage::PushReply(body)) => {
                match self.assembler.feed(&body) {
                    Ok(Some(p)) => self.apply_push(now, p),
                    Ok(None) => {}
                    Err(e) => self.stop(&format!("bad PUSH_REPLY: {e}")),
                }
            }
            SessionEvent::Message(ControlMessage::AuthFailed { reason, .. }) => {
                self.stop(&format!(
                    "AUTH_FAILED{}",
                    reason.map(|r| format!(": {r}")).unwrap_or_default()
                ));
            }
            SessionEvent::Message(ControlMessage::Halt { message, .. }) => {
                self.stop(&format!("HALT from server: {message}"))
            }
            SessionEvent::Message(ControlMessage::Restart { message, .. }) => {
                self.backoff = FIRST_BACKOFF;
                self.retry_later(now, &format!("RESTART from server: {message}"));
            }
            SessionEvent::Message(m) => tracing::debug!("control message ignored: {m:?}"),
            SessionEvent::InstallKey {
                key_id,
                key2,
                cipher,
                primary,
            } => {
                let Some(peer_id) = self.peer_id else { return };
                match key2.data_keys(KeyRole::Client, cipher_kind(cipher)) {
                    Ok((encrypt, decrypt)) => {
                        let slot = self.slots.install(key_id, primary);
                        self.cmds.push_back(DaemonCmd::NewKey {
                            peer_id,
                            slot,
                            key_id,
                            encrypt,
                            decrypt,
                        });
                    }
                    Err(e) => self.stop(&format!("key material refused: {e}")),
                }
            }
            SessionEvent::ActivateKey { key_id } => {
                if let Some(peer_id) = self.peer_id
                    && self.slots.activate(key_id)
                {
                    self.cmds.push_back(DaemonCmd::SwapKeys { peer_id });
                }
            }
            SessionEvent::RetireKey { key_id } => {
                if let Some(peer_id) = self.peer_id
                    && self.slots.retire(key_id)
                {
                    self.cmds.push_back(DaemonCmd::DelKey {
                        peer_id,
                        slot: Slot::Secondary,
                    });
                }
            }
            SessionEvent::RenegotiationFailed { key_id, reason } => {
                tracing::warn!(key_id, "renegotiation failed: {reason}")
            }
            SessionEvent::Failed(e) => tracing::warn!("session failed: {e}"),
        }
    }

    fn apply_push(&mut self, now: Instant, p: PushedOptions) {
        let Some(peer_id) = p.peer_id else {
            return self.stop("the server pushed no peer-id: pushed options are incompatible with data channel offload");
        };
        let cipher = match p.cipher {
            Some(c) if self.opts.data_ciphers.contains(&c) => c,
            Some(c) => {
                return self.stop(&format!(
                    "the server pushed cipher {}, which is not in data-ciphers",
                    c.name()
                ));
            }
            None => match self.opts.data_ciphers_fallback.or(self.opts.cipher) {
                Some(c) => c,
                None => {
                    return self
                        .stop("the server pushed no cipher and no data-ciphers-fallback is set");
                }
            },
        };
        let Some(remote) = self.remote else { return };
        self.cc_exit = p.protocol_flags.cc_exit;
        if !self.configured {
            self.cmds.push_back(DaemonCmd::SetIfMode {
                mode: IfMode::P2p,
                client_to_client: false,
            });
        }
        self.cmds.push_back(DaemonCmd::NewPeer {
            peer_id,
            remote,
            local: None,
            vpn_ipv4: None,
            vpn_ipv6: None,
            iroutes: Vec::new(),
            common_name: String::new(),
        });
        self.peer_id = Some(peer_id);
        let mut addresses = Vec::new();
        if let Some((a, m)) = p.ifconfig {
            addresses.push(Net::v4(a, m));
        }
        if let Some((n, _)) = p.ifconfig_ipv6 {
            addresses.push(Net::v6(n.addr, n.prefix_len));
        }
        let mtu = p
            .tun_mtu
            .map(u32::from)
            .unwrap_or(u32::from(self.opts.tun_mtu));
        self.cmds.push_back(DaemonCmd::SetIfconfig {
            addresses,
            mtu: Some(mtu),
            up: true,
        });
        let gw: Option<IpAddr> = match p.route_gateway {
            Some(RouteGateway::Addr(a)) => Some(IpAddr::V4(a)),
            _ => None,
        };
        for r in &p.routes {
            self.cmds.push_back(DaemonCmd::AddRoute {
                dst: Net::v4(r.network, r.netmask),
                gateway: gw,
                metric: r.metric,
            });
        }
        for r in &p.routes_ipv6 {
            self.cmds.push_back(DaemonCmd::AddRoute {
                dst: Net::v6(r.network.addr, r.network.prefix_len),
                gateway: None,
                metric: r.metric,
            });
        }
        let ping = p.ping.or(self.opts.ping_timers().ping).unwrap_or(0);
        let restart = p
            .ping_restart
            .or(self.opts.ping_timers().ping_restart)
            .unwrap_or(0);
        if ping > 0 || restart > 0 {
            self.cmds.push_back(DaemonCmd::SetPeer {
                peer_id,
                interval: ping,
                timeout: restart,
            });
        }
        let params = DataParams {
            cipher,
            ekm: p.uses_tls_ekm(),
        };
        self.pushed = Some(p);
        if let Some(s) = self.session.as_mut()
            && let Err(e) = s.set_data_params(now, params)
        {
            return self.stop(&format!("cannot derive data keys: {e}"));
        }
        self.configured = true;
        self.backoff = FIRST_BACKOFF;
        self.state = ClientState::Connected;
        self.announce = Some(Initialized {
            remote,
            peer_id,
            cipher: cipher.name(),
            ekm: params.ekm,
        });
    }
}
