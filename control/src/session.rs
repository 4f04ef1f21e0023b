//! The OpenVPN control session as a sans-IO state machine: one per peer (a pair of session
//! ids), holding up to two key states (the primary and the lame duck of the previous key-id),
//! each with its own reliability layer, TLS session and key-method-2 exchange.
//!
//! Feed it datagrams ([`ControlSession::handle_datagram`]) and timer ticks
//! ([`ControlSession::handle_timeout`]), always with `now`; take datagrams to send with
//! [`ControlSession::poll_transmit`] and what happened with [`ControlSession::poll_event`].
//! The shells (server, client) turn events into daemon commands (NEW_KEY, SWAP_KEYS,
//! DEL_KEY), push replies and so on. Nothing here reads a clock or touches a socket.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crypto::{Key2, Tls1PrfInputs};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::config::{DataCipher, Role};
use crate::key_method::{Credentials, KeyMethod2, KeyMethodError, KeySource, PeerInfo, Sender};
use crate::packet::{ControlPacket, KeyId, Opcode, SessionId};
use crate::push::{ControlMessage, PushError};
use crate::reliable::{ReliableConfig, ReliableError, ReliableLayer};
use crate::tls::{PeerIdentity, TlsContext, TlsError, export_data_keys_any, peer_identity};
use crate::wrap::{ControlWrap, Opened, UnwrapError, WrapKeys};

/// How often a client repeats PUSH_REQUEST until it gets a reply (2.6's 5 s).
pub const PUSH_REQUEST_INTERVAL: Duration = Duration::from_secs(5);
/// Largest TLS plaintext we buffer from the peer before it is parsed.
const MAX_PLAINTEXT: usize = 64 * 1024;

/// Settings of a session, from the config.
#[derive(Clone)]
pub struct SessionConfig {
    pub role: Role,
    pub tls: Arc<TlsContext>,
    pub wrap: WrapKeys,
    pub reliable: ReliableConfig,
    /// Our OCC options string (sent in the key-method record).
    pub occ_options: String,
    /// The client's peer-info text (client role).
    pub peer_info: Option<String>,
    /// The client's username/password (client role).
    pub credentials: Credentials,
    /// `reneg-sec` (0 = off).
    pub reneg_sec: u32,
    /// `reneg-bytes` / `reneg-pkts` (checked against what the shell reports).
    pub reneg_bytes: Option<u64>,
    pub reneg_pkts: Option<u64>,
    /// `hand-window`: a key negotiation must finish within it.
    pub hand_window: Duration,
    /// `tran-window`: how long the previous key keeps decrypting after a renegotiation.
    pub tran_window: Duration,
    /// Unix time for the control-channel replay ids (the caller reads the clock).
    pub unix_time: u32,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("role", &self.role)
            .field("wrap", &self.wrap)
            .field("reneg_sec", &self.reneg_sec)
            .finish_non_exhaustive()
    }
}

/// How data-channel keys are made once both key-method records are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataParams {
    pub cipher: DataCipher,
    /// TLS-EKM; otherwise the legacy TLS1-PRF.
    pub ekm: bool,
}

/// What the shell has to act on.
#[derive(Debug)]
pub enum SessionEvent {
    /// Key-id 0 finished its key exchange; the peer's certificate was verified. A server
    /// now admits the client (pool, ccd, push) and calls [`ControlSession::set_data_params`]
    /// (or [`ControlSession::fail`] with AUTH_FAILED). A client waits for PUSH_REPLY.
    Established {
        identity: PeerIdentity,
        /// The peer's key-method record (options string, credentials, peer-info).
        peer_options: String,
        peer_info: Option<PeerInfo>,
        credentials: Credentials,
    },
    /// A text message on the control channel (PUSH_REQUEST, PUSH_REPLY, EXIT, ...).
    Message(ControlMessage),
    /// New data-channel key material for `key_id`: install it (NEW_KEY). `primary` is true
    /// for the first key of the session (nothing to swap with).
    InstallKey {
        key_id: u8,
        key2: Key2,
        cipher: DataCipher,
        primary: bool,
    },
    /// Start encrypting with `key_id` (SWAP_KEYS; the old primary becomes the lame duck).
    ActivateKey { key_id: u8 },
    /// The lame duck's transition window is over, or a newer key replaced it: DEL_KEY.
    RetireKey { key_id: u8 },
    /// A renegotiation failed; the current key stays in use.
    RenegotiationFailed { key_id: u8, reason: String },
    /// The session is dead (first handshake failed, protocol error): drop it.
    Failed(SessionError),
}

/// Why a session (or one key negotiation) failed.
#[derive(Debug, Error)]
pub enum SessionError {
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("reliability layer: {0}")]
    Reliable(#[from] ReliableError),
    #[error("key method 2: {0}")]
    KeyMethod(#[from] KeyMethodError),
    #[error("control message: {0}")]
    Push(#[from] PushError),
    #[error("TLS key negotiation failed to occur within {0:?}")]
    HandWindow(Duration),
    #[error("peer sent {0} bytes of TLS plaintext without a complete record")]
    PlaintextOverflow(usize),
    #[error("cannot derive data keys: {0}")]
    KeyDerivation(String),
    #[error("cannot get random bytes")]
    Random,
    #[error("{0}")]
    Refused(String),
}

/// Why a datagram was not taken (the session goes on; the shell counts these).
#[derive(Debug, Error)]
pub enum DatagramError {
    #[error("{0}")]
    Unwrap(#[from] UnwrapError),
    #[error("session id does not match this session")]
    WrongSession,
    #[error("packet acknowledges a different session id")]
    WrongRemoteSession,
    #[error("key-id {0} is not in use")]
    UnknownKeyId(u8),
    #[error("{0}")]
    Reliable(#[from] ReliableError),
    #[error("session has failed")]
    Dead,
    #[error("renegotiation could not start: {0}")]
    Renegotiation(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Reset exchange and TLS handshake in progress.
    Handshake,
    /// Both key-method records exchanged.
    KeysExchanged,
    /// Data keys derived and handed to the shell.
    Generated,
}

struct KeyState {
    key_id: KeyId,
    reliable: ReliableLayer,
    tls: rustls::Connection,
    started: Instant,
    phase: Phase,
    local: KeySource,
    remote: Option<KeyMethod2>,
    sent_key_method: bool,
    plaintext: Vec<u8>,
    /// When the data keys were derived (renegotiation timer base).
    generated_at: Option<Instant>,
    /// Switch the daemon to this key at this time (renegotiated keys only).
    activate_at: Option<Instant>,
    activated: bool,
    /// Text messages waiting for the key exchange to finish.
    queued_messages: Vec<Vec<u8>>,
}

impl KeyState {
    fn new(cfg: &SessionConfig, key_id: KeyId, now: Instant) -> Result<Self, SessionError> {
        let sender = match cfg.role {
            Role::Client => Sender::Client,
            Role::Server => Sender::Server,
        };
        Ok(Self {
            key_id,
            reliable: ReliableLayer::new(cfg.reliable.clone())
                .map_err(|e| SessionError::Refused(e.to_string()))?,
            tls: cfg.tls.new_session()?,
            started: now,
            phase: Phase::Handshake,
            local: KeySource::random(sender)?,
            remote: None,
            sent_key_method: false,
            plaintext: Vec::new(),
            generated_at: None,
            activate_at: None,
            activated: false,
            queued_messages: Vec::new(),
        })
    }
}

/// One control session. See the module docs.
pub struct ControlSession {
    cfg: SessionConfig,
    local_sid: SessionId,
    remote_sid: Option<SessionId>,
    wrap: ControlWrap,
    primary: KeyState,
    lame_duck: Option<KeyState>,
    /// When the lame duck stops decrypting.
    lame_duck_until: Option<Instant>,
    data: Option<DataParams>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<SessionEvent>,
    next_push_request: Option<Instant>,
    scratch: Vec<u8>,
    dead: bool,
    /// Peer traffic counters reported by the shell (reneg-bytes/pkts).
    traffic_base: (u64, u64),
    /// The last traffic figures the shell reported.
    last_traffic: (u64, u64),
}

impl std::fmt::Debug for ControlSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlSession")
            .field("role", &self.cfg.role)
            .field("local_sid", &self.local_sid)
            .field("remote_sid", &self.remote_sid)
            .field("key_id", &self.primary.key_id)
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}

fn role_sender(role: Role) -> Sender {
    match role {
        Role::Client => Sender::Client,
        Role::Server => Sender::Server,
    }
}

fn peer_sender(role: Role) -> Sender {
    match role {
        Role::Client => Sender::Server,
        Role::Server => Sender::Client,
    }
}

/// Length of the key-method-2 record at the start of `b` written by `from`, or `None` if
/// it is not complete yet.
fn key_method_record_len(b: &[u8], from: Sender) -> Option<usize> {
    let mut at = 5 + if from == Sender::Client { 48 } else { 0 } + 64;
    for _ in 0..4 {
        let len = usize::from(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]));
        at += 2 + len;
    }
    (b.len() >= at).then_some(at)
}

impl ControlSession {
    /// A client session: queues HARD_RESET_CLIENT_V2 and the TLS ClientHello.
    pub fn client(cfg: SessionConfig, now: Instant) -> Result<Self, SessionError> {
        let mut s = Self::new(cfg, None, now)?;
        s.primary.reliable.send_reset(Opcode::HardResetClientV2)?;
        s.pump_tls(now)?;
        Ok(s)
    }

    /// A server session for a client's HARD_RESET_CLIENT_V2 (key-id 0) that the caller has
    /// already authenticated with [`WrapKeys::open`]; `opened` is that packet.
    pub fn server(
        cfg: SessionConfig,
        opened: &Opened<'_>,
        now: Instant,
    ) -> Result<Self, SessionError> {
        let mut s = Self::new(cfg, Some(opened.packet.session_id), now)?;
        let _ = s.wrap.accept_replay(now, opened.replay_id);
        s.primary.reliable.on_packet(&opened.packet)?;
        s.primary.reliable.send_reset(Opcode::HardResetServerV2)?;
        Ok(s)
    }

    fn new(
        cfg: SessionConfig,
        remote_sid: Option<SessionId>,
        now: Instant,
    ) -> Result<Self, SessionError> {
        let local_sid = SessionId::random().map_err(|_| SessionError::Random)?;
        let wrap = ControlWrap::new(cfg.wrap.clone(), cfg.unix_time);
        let primary = KeyState::new(&cfg, KeyId::ZERO, now)?;
        Ok(Self {
            cfg,
            local_sid,
            remote_sid,
            wrap,
            primary,
            lame_duck: None,
            lame_duck_until: None,
            data: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            next_push_request: None,
            scratch: Vec::new(),
            dead: false,
            traffic_base: (0, 0),
            last_traffic: (0, 0),
        })
    }

    pub fn local_session_id(&self) -> SessionId {
        self.local_sid
    }

    pub fn remote_session_id(&self) -> Option<SessionId> {
        self.remote_sid
    }

    /// The key-id currently used for control messages (the newest).
    pub fn key_id(&self) -> u8 {
        self.primary.key_id.get()
    }

    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// The first key exchange is complete and data keys exist.
    pub fn is_established(&self) -> bool {
        self.primary.phase == Phase::Generated || self.lame_duck.is_some()
    }

    pub fn data_params(&self) -> Option<DataParams> {
        self.data
    }

    /// Kills the session (e.g. after AUTH_FAILED was sent and delivered, or on shutdown).
    pub fn fail(&mut self, reason: impl Into<String>) {
        if !self.dead {
            self.dead = true;
            self.events
                .push_back(SessionEvent::Failed(SessionError::Refused(reason.into())));
        }
    }

    /// A datagram from the peer.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DatagramError> {
        if self.dead {
            return Err(DatagramError::Dead);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = self.handle_inner(now, datagram, &mut scratch);
        self.scratch = scratch;
        if let Err(e) = self.after_input(now) {
            self.die(e);
        }
        r
    }

    fn handle_inner(
        &mut self,
        now: Instant,
        datagram: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Result<(), DatagramError> {
        let opened = self.wrap.keys().open(datagram, scratch)?;
        let pkt = opened.packet;
        if let Some(r) = self.remote_sid
            && pkt.session_id != r
        {
            return Err(DatagramError::WrongSession);
        }
        if pkt.remote_session_id.is_some_and(|r| r != self.local_sid) {
            return Err(DatagramError::WrongRemoteSession);
        }
        self.wrap
            .accept_replay(now, opened.replay_id)
            .map_err(|e| DatagramError::Unwrap(e.into()))?;
        if self.remote_sid.is_none() {
            // A client learns the server's session id from its reset.
            if pkt.opcode != Opcode::HardResetServerV2 {
                return Err(DatagramError::WrongSession);
            }
            self.remote_sid = Some(pkt.session_id);
        }
        let kid = pkt.key_id;
        if kid == self.primary.key_id {
            self.primary.reliable.on_packet(&pkt)?;
            return Ok(());
        }
        if let Some(ld) = self.lame_duck.as_mut()
            && ld.key_id == kid
        {
            ld.reliable.on_packet(&pkt)?;
            return Ok(());
        }
        if pkt.opcode == Opcode::SoftResetV1 && kid == self.primary.key_id.next() {
            // The peer renegotiates. 2.6 takes it only once the current key is generated.
            if self.primary.phase != Phase::Generated {
                return Err(DatagramError::UnknownKeyId(kid.get()));
            }
            self.start_renegotiation(now, Some(&pkt))
                .map_err(|e| DatagramError::Renegotiation(e.to_string()))?;
            return Ok(());
        }
        Err(DatagramError::UnknownKeyId(kid.get()))
    }

    /// Timers: retransmissions, hand-window, activation of a new key, end of the lame duck,
    /// renegotiation by time, PUSH_REQUEST repeats.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.dead {
            return;
        }
        if let Err(e) = self.after_input(now) {
            self.die(e);
        }
    }

    /// The next time [`ControlSession::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.dead {
            return None;
        }
        let mut t: Vec<Instant> = Vec::new();
        t.extend(self.primary.reliable.poll_timeout());
        if let Some(ld) = &self.lame_duck {
            t.extend(ld.reliable.poll_timeout());
        }
        if self.primary.phase != Phase::Generated {
            t.push(self.primary.started + self.cfg.hand_window);
        }
        t.extend(self.primary.activate_at.filter(|_| !self.primary.activated));
        t.extend(self.lame_duck_until);
        t.extend(self.next_push_request);
        if let Some(g) = self.primary.generated_at
            && self.cfg.reneg_sec > 0
        {
            t.push(g + Duration::from_secs(u64::from(self.cfg.reneg_sec)));
        }
        t.into_iter().min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some(d) = self.out.pop_front() {
            return Some(d);
        }
        if self.dead {
            return None;
        }
        self.collect_transmits(now);
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Sends a control-channel text message on the newest key (queued until its key
    /// exchange is done).
    pub fn send_message(&mut self, now: Instant, text: &str) -> Result<(), SessionError> {
        let framed = crate::push::frame(text)?;
        if self.primary.phase >= Phase::KeysExchanged {
            self.primary
                .tls
                .writer()
                .write_all(&framed)
                .map_err(|e| SessionError::Refused(e.to_string()))?;
            self.pump_tls(now)?;
        } else {
            self.primary.queued_messages.push(framed);
        }
        Ok(())
    }

    /// Sets cipher and key derivation (server: after admitting the client; client: from
    /// PUSH_REPLY) and derives the keys of every key state that is ready.
    pub fn set_data_params(
        &mut self,
        now: Instant,
        params: DataParams,
    ) -> Result<(), SessionError> {
        self.data = Some(params);
        self.next_push_request = None;
        self.maybe_generate(now)
    }

    /// Starts a renegotiation now (ROTATE_KEY from the daemon, reneg-bytes/pkts).
    pub fn renegotiate(&mut self, now: Instant) -> Result<(), SessionError> {
        if self.primary.phase != Phase::Generated {
            return Ok(()); // one at a time; the current one is still running
        }
        self.start_renegotiation(now, None)
    }

    /// Traffic of the data channel so far (from the daemon's peer stats), for
    /// `reneg-bytes` / `reneg-pkts`.
    pub fn report_traffic(&mut self, now: Instant, bytes: u64, packets: u64) {
        self.last_traffic = (bytes, packets);
        let (b0, p0) = self.traffic_base;
        let over_bytes = self
            .cfg
            .reneg_bytes
            .is_some_and(|lim| bytes.saturating_sub(b0) >= lim);
        let over_pkts = self
            .cfg
            .reneg_pkts
            .is_some_and(|lim| packets.saturating_sub(p0) >= lim);
        if (over_bytes || over_pkts)
            && self.primary.phase == Phase::Generated
            && let Err(e) = self.start_renegotiation(now, None)
        {
            self.die(e);
        }
    }

    // ---------------------------------------------------------------- internals

    fn die(&mut self, e: SessionError) {
        if !self.dead {
            tracing::debug!("control session failed: {e}");
            self.dead = true;
            self.events.push_back(SessionEvent::Failed(e));
        }
    }

    fn start_renegotiation(
        &mut self,
        now: Instant,
        peer_reset: Option<&ControlPacket<'_>>,
    ) -> Result<(), SessionError> {
        // reneg-bytes/pkts count from the start of every key, however it was triggered.
        self.traffic_base = self.last_traffic;
        let kid = self.primary.key_id.next();
        let mut ks = KeyState::new(&self.cfg, kid, now)?;
        if let Some(p) = peer_reset {
            ks.reliable.on_packet(p)?;
        }
        ks.reliable.send_reset(Opcode::SoftResetV1)?;
        // The current key must be the encrypting one before it becomes the lame duck.
        if self.primary.phase == Phase::Generated && !self.primary.activated {
            self.primary.activated = true;
            self.events.push_back(SessionEvent::ActivateKey {
                key_id: self.primary.key_id.get(),
            });
        }
        if let Some(old) = self.lame_duck.take() {
            // The previous lame duck is replaced, as in 2.6.
            if old.phase == Phase::Generated {
                self.events.push_back(SessionEvent::RetireKey {
                    key_id: old.key_id.get(),
                });
            }
        }
        let old = std::mem::replace(&mut self.primary, ks);
        self.lame_duck_until = Some(now + self.cfg.tran_window);
        self.lame_duck = Some(old);
        tracing::debug!(
            key_id = kid.get(),
            initiator = peer_reset.is_none(),
            "renegotiation started"
        );
        self.pump_tls(now)?;
        Ok(())
    }

    /// Moves TLS bytes both ways for every key state and handles what arrived.
    fn after_input(&mut self, now: Instant) -> Result<(), SessionError> {
        self.pump_tls(now)?;
        self.check_timers(now)
    }

    fn check_timers(&mut self, now: Instant) -> Result<(), SessionError> {
        // Hand window of the newest key negotiation.
        let failed_reliable = self.primary.reliable.failure().is_some();
        if self.primary.phase != Phase::Generated
            && (now >= self.primary.started + self.cfg.hand_window || failed_reliable)
        {
            match self.lame_duck.take() {
                None => return Err(SessionError::HandWindow(self.cfg.hand_window)),
                Some(old) => {
                    // Keep using the old key; a later renegotiation tries again.
                    let failed = std::mem::replace(&mut self.primary, old);
                    self.lame_duck_until = None;
                    self.events.push_back(SessionEvent::RenegotiationFailed {
                        key_id: failed.key_id.get(),
                        reason: format!("not complete within {:?}", self.cfg.hand_window),
                    });
                    // Restart the renegotiation timer so we do not retry at once.
                    self.primary.generated_at = Some(now);
                }
            }
        }
        // Activation of a renegotiated key: once the peer has ACKed everything we sent on
        // it (our key-method record included), it has derived the key too and can decrypt.
        if self.primary.phase == Phase::Generated
            && !self.primary.activated
            && (self.primary.reliable.all_acked()
                || self.primary.activate_at.is_some_and(|at| now >= at))
        {
            self.primary.activated = true;
            self.events.push_back(SessionEvent::ActivateKey {
                key_id: self.primary.key_id.get(),
            });
        }
        // End of the lame duck.
        if let Some(until) = self.lame_duck_until
            && now >= until
        {
            self.lame_duck_until = None;
            if let Some(old) = self.lame_duck.take()
                && old.phase == Phase::Generated
            {
                self.events.push_back(SessionEvent::RetireKey {
                    key_id: old.key_id.get(),
                });
            }
        }
        // PUSH_REQUEST repeats.
        if let Some(t) = self.next_push_request
            && now >= t
        {
            self.next_push_request = Some(now + PUSH_REQUEST_INTERVAL);
            self.write_message(now, "PUSH_REQUEST")?;
        }
        // Renegotiation by time.
        if self.cfg.reneg_sec > 0
            && let Some(g) = self.primary.generated_at
            && self.primary.phase == Phase::Generated
            && now >= g + Duration::from_secs(u64::from(self.cfg.reneg_sec))
        {
            self.start_renegotiation(now, None)?;
        }
        Ok(())
    }

    fn write_message(&mut self, now: Instant, text: &str) -> Result<(), SessionError> {
        let framed = crate::push::frame(text)?;
        self.primary
            .tls
            .writer()
            .write_all(&framed)
            .map_err(|e| SessionError::Refused(e.to_string()))?;
        self.pump_tls(now)
    }

    fn pump_tls(&mut self, now: Instant) -> Result<(), SessionError> {
        // The lame duck may still have ACKs/retransmits to process; its TLS is finished.
        if let Some(ld) = self.lame_duck.as_mut() {
            let _ = pump_one(ld, &self.cfg);
            ld.plaintext.clear();
        }
        let newly = pump_one(&mut self.primary, &self.cfg)?;
        if newly {
            self.on_key_exchange_done(now)?;
        }
        if self.primary.phase >= Phase::KeysExchanged {
            self.read_messages()?;
        }
        Ok(())
    }

    /// Both key-method records are in (for the newest key state).
    fn on_key_exchange_done(&mut self, now: Instant) -> Result<(), SessionError> {
        let ks = &mut self.primary;
        for m in ks.queued_messages.drain(..) {
            ks.tls
                .writer()
                .write_all(&m)
                .map_err(|e| SessionError::Refused(e.to_string()))?;
        }
        if ks.key_id == KeyId::ZERO {
            let identity = peer_identity(&ks.tls)?;
            let remote = ks
                .remote
                .as_ref()
                .ok_or_else(|| SessionError::Refused("no key-method record".into()))?;
            self.events.push_back(SessionEvent::Established {
                identity,
                peer_options: remote.options.clone(),
                peer_info: remote.peer_info.as_deref().map(PeerInfo::parse),
                credentials: remote.credentials.clone(),
            });
            if self.cfg.role == Role::Client && self.data.is_none() {
                self.next_push_request = Some(now);
            }
        }
        // Flush any queued message bytes.
        let mut w = Vec::new();
        self.primary
            .tls
            .write_tls(&mut w)
            .map_err(|e| SessionError::Refused(e.to_string()))?;
        self.primary.reliable.queue_tls(&w)?;
        self.maybe_generate(now)?;
        self.check_timers(now)
    }

    fn maybe_generate(&mut self, now: Instant) -> Result<(), SessionError> {
        let Some(params) = self.data else {
            return Ok(());
        };
        if self.primary.phase != Phase::KeysExchanged {
            return Ok(());
        }
        let key2 = self.derive(&self.primary, params)?;
        let first = self.lame_duck.is_none() && self.primary.key_id == KeyId::ZERO;
        let ks = &mut self.primary;
        ks.phase = Phase::Generated;
        ks.generated_at = Some(now);
        self.events.push_back(SessionEvent::InstallKey {
            key_id: ks.key_id.get(),
            key2,
            cipher: params.cipher,
            primary: first,
        });
        if first {
            ks.activated = true;
        } else {
            // 2.6 starts sending on a new key once min(hand-window, reneg-sec/2) has passed
            // since its reset; before that the peer may not have the key yet.
            let half = if self.cfg.reneg_sec > 0 {
                Duration::from_secs(u64::from(self.cfg.reneg_sec) / 2)
            } else {
                self.cfg.hand_window
            };
            ks.activate_at = Some(ks.started + self.cfg.hand_window.min(half));
        }
        tracing::debug!(
            key_id = ks.key_id.get(),
            cipher = params.cipher.name(),
            ekm = params.ekm,
            "data keys derived"
        );
        Ok(())
    }

    fn derive(&self, ks: &KeyState, params: DataParams) -> Result<Key2, SessionError> {
        if params.ekm {
            let ekm = export_data_keys_any(&ks.tls)?;
            return Key2::from_ekm(&ekm[..])
                .map_err(|e| SessionError::KeyDerivation(e.to_string()));
        }
        let remote = ks
            .remote
            .as_ref()
            .ok_or_else(|| SessionError::KeyDerivation("no peer record".into()))?;
        let remote_sid = self
            .remote_sid
            .ok_or_else(|| SessionError::KeyDerivation("no peer session id".into()))?;
        let (client, server, csid, ssid) = match self.cfg.role {
            Role::Client => (&ks.local, &remote.key_source, self.local_sid, remote_sid),
            Role::Server => (&remote.key_source, &ks.local, remote_sid, self.local_sid),
        };
        let pre_master = client
            .pre_master
            .as_ref()
            .ok_or_else(|| SessionError::KeyDerivation("client record has no pre-master".into()))?;
        Ok(Key2::from_tls1_prf(&Tls1PrfInputs {
            pre_master,
            client_random1: &client.random1,
            server_random1: &server.random1,
            client_random2: &client.random2,
            server_random2: &server.random2,
            client_session_id: &csid.0,
            server_session_id: &ssid.0,
        }))
    }

    fn read_messages(&mut self) -> Result<(), SessionError> {
        let buf = std::mem::take(&mut self.primary.plaintext);
        let Some(last_nul) = buf.iter().rposition(|&b| b == 0) else {
            if buf.len() > MAX_PLAINTEXT {
                return Err(SessionError::PlaintextOverflow(buf.len()));
            }
            self.primary.plaintext = buf;
            return Ok(());
        };
        let incoming = crate::push::split_incoming(&buf[..=last_nul]);
        self.primary.plaintext = buf[last_nul + 1..].to_vec();
        for m in incoming.messages {
            self.events
                .push_back(SessionEvent::Message(ControlMessage::parse(&m)));
        }
        Ok(())
    }

    fn collect_transmits(&mut self, now: Instant) {
        let local = self.local_sid;
        let remote = self.remote_sid;
        let mut wire = Vec::new();
        for ks in std::iter::once(&mut self.primary).chain(self.lame_duck.as_mut()) {
            let kid = ks.key_id;
            while let Some(t) = ks.reliable.poll_transmit(now) {
                let pkt = t.to_packet(kid, local, remote);
                match self.wrap.wrap(&pkt, &mut wire) {
                    Ok(_) => self.out.push_back(std::mem::take(&mut wire)),
                    Err(e) => tracing::warn!("cannot wrap a control packet: {e}"),
                }
            }
        }
    }
}

/// Pumps one key state: reliable → TLS → plaintext, our key-method record, TLS → reliable.
/// Returns true when the key-method exchange has just completed.
fn pump_one(ks: &mut KeyState, cfg: &SessionConfig) -> Result<bool, SessionError> {
    let role = cfg.role;
    // Incoming TLS bytes.
    while ks.reliable.readable_len() > 0 {
        let mut r = ks.reliable.tls_reader();
        match ks.tls.read_tls(&mut r) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(SessionError::Refused(format!("TLS read: {e}"))),
        }
        if let Err(e) = ks.tls.process_new_packets() {
            // Send the alert before giving up.
            let mut w = Vec::new();
            let _ = ks.tls.write_tls(&mut w);
            let _ = ks.reliable.queue_tls(&w);
            return Err(e.into());
        }
    }
    // Plaintext from the peer.
    let mut chunk = [0u8; 4096];
    loop {
        match ks.tls.reader().read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                ks.plaintext.extend_from_slice(&chunk[..n]);
                if ks.plaintext.len() > MAX_PLAINTEXT {
                    return Err(SessionError::PlaintextOverflow(ks.plaintext.len()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(SessionError::Refused(format!("TLS plaintext: {e}"))),
        }
    }
    let mut newly_done = false;
    if ks.remote.is_none()
        && let Some(len) = key_method_record_len(&ks.plaintext, peer_sender(role))
    {
        let km = KeyMethod2::parse(&ks.plaintext[..len], peer_sender(role))?;
        ks.plaintext.drain(..len);
        ks.remote = Some(km);
    }
    // The client writes its record at once (TLS sends it after the handshake); the server
    // answers once it has read the client's.
    if !ks.sent_key_method && (role == Role::Client || ks.remote.is_some()) {
        let record = KeyMethod2 {
            key_source: ks.local.clone(),
            options: cfg.occ_options.clone(),
            credentials: if role == Role::Client {
                cfg.credentials.clone()
            } else {
                Credentials::Absent
            },
            peer_info: if role == Role::Client {
                cfg.peer_info.clone()
            } else {
                None
            },
        };
        let bytes = record.encode(role_sender(role))?;
        ks.tls
            .writer()
            .write_all(&bytes)
            .map_err(|e| SessionError::Refused(format!("TLS write: {e}")))?;
        ks.sent_key_method = true;
    }
    if ks.phase == Phase::Handshake
        && ks.remote.is_some()
        && ks.sent_key_method
        && !ks.tls.is_handshaking()
    {
        ks.phase = Phase::KeysExchanged;
        newly_done = true;
    }
    // Outgoing TLS bytes.
    let mut w = Zeroizing::new(Vec::new());
    while ks.tls.wants_write() {
        if ks.tls.write_tls(&mut *w).is_err() {
            break;
        }
    }
    if !w.is_empty() {
        ks.reliable.queue_tls(&w)?;
    }
    Ok(newly_done)
}
