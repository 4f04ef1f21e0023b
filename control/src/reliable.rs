//! The reliability layer of one key state (one key_id): message ids, send and receive
//! windows, ACKs, retransmission, and the TLS byte stream on top (openvpn-protocol.md §2).
//!
//! Sans-IO: the caller passes `now` and packets in, and polls packets to send out. One
//! [`ReliableLayer`] per key_id, created at every hard or soft reset. It knows nothing of
//! session ids or wrapping: [`Transmit::to_packet`] adds the ids, and
//! [`crate::wrap::ControlWrap`] wraps the result.
//!
//! Driving it (see also the crate report):
//! 1. On every authenticated control packet for this key_id: [`ReliableLayer::on_packet`]
//!    (ACKs, then the message). Then drain [`ReliableLayer::tls_reader`] into the TLS engine,
//!    and put whatever the TLS engine wants to send into [`ReliableLayer::tls_writer`].
//! 2. Then call [`ReliableLayer::poll_transmit`] until it returns `None`, wrapping and
//!    sending each packet.
//! 3. Arm a timer for [`ReliableLayer::poll_timeout`]; when it fires, do step 2 again and
//!    check [`ReliableLayer::failure`].

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::packet::{
    AckIds, ControlPacket, DEFAULT_MAX_PACKET_SIZE, HEADER_LEN, IPV4_UDP_OVERHEAD,
    IPV6_UDP_OVERHEAD, KeyId, MAX_ACKS, MAX_MAX_PACKET_SIZE, MAX_PIGGYBACK_ACKS, MESSAGE_ID_LEN,
    MIN_MAX_PACKET_SIZE, Opcode, SessionId, ack_block_len,
};
use crate::wrap::WrapKind;

/// 2.6 sends at most this many unACKed control packets (`TLS_RELIABLE_N_SEND_BUFFERS`).
pub const DEFAULT_SEND_WINDOW: usize = 6;
/// A 2.6 receiver keeps this many out-of-order packets (`TLS_RELIABLE_N_REC_BUFFERS`); never
/// have more than this in flight to it.
pub const RECV_WINDOW: usize = 12;
/// First retransmit timeout (`--tls-timeout`).
pub const DEFAULT_INITIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Give up on a message unACKed this long (`--hand-window`).
pub const DEFAULT_HAND_WINDOW: Duration = Duration::from_secs(60);
/// Fast retransmit once this many later ids were ACKed (`N_ACK_RETRANSMIT`).
pub const FAST_RETRANSMIT_ACKS: u8 = 3;
/// Default cap on buffered TLS bytes in each direction.
pub const DEFAULT_MAX_BUFFERED: usize = 256 * 1024;

/// Address family of the transport; decides the IP/UDP bytes counted in the packet size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressFamily {
    /// 28 bytes of IPv4 + UDP.
    #[default]
    V4,
    /// 48 bytes of IPv6 + UDP (2.6 books 40 + 8).
    V6,
}

impl AddressFamily {
    /// IP + UDP header bytes.
    pub const fn ip_udp_overhead(self) -> usize {
        match self {
            Self::V4 => IPV4_UDP_OVERHEAD,
            Self::V6 => IPV6_UDP_OVERHEAD,
        }
    }
}

/// Settings of one reliability layer. `Default` is what a stock 2.6 peer uses, with no
/// wrapping over IPv4.
#[derive(Debug, Clone)]
pub struct ReliableConfig {
    /// Most unACKed packets in flight (and the widest id span in flight); 1..=12.
    pub send_window: usize,
    /// Receive window: ids `next_expected .. next_expected + recv_window` are kept; 1..=64.
    pub recv_window: usize,
    /// First retransmit timeout; doubles after every transmission.
    pub initial_timeout: Duration,
    /// A message unACKed this long after its first transmission fails the layer.
    pub hand_window: Duration,
    /// `--max-packet-size`: whole IP packet, clamped to 154..=2048.
    pub max_packet_size: usize,
    /// Wrapping in use (its overhead counts against the packet size).
    pub wrap: WrapKind,
    /// Transport address family.
    pub address_family: AddressFamily,
    /// Most ACKs in a dedicated P_ACK_V1 (8; 4 for 2.6's SoftEther-safe behaviour).
    pub max_acks_per_ack_packet: usize,
    /// Most ACKs piggy-backed on a reset or P_CONTROL_V1 (4).
    pub max_piggyback_acks: usize,
    /// Cap on TLS bytes queued for sending, and on received bytes not yet read.
    pub max_buffered: usize,
}

impl Default for ReliableConfig {
    fn default() -> Self {
        Self {
            send_window: DEFAULT_SEND_WINDOW,
            recv_window: RECV_WINDOW,
            initial_timeout: DEFAULT_INITIAL_TIMEOUT,
            hand_window: DEFAULT_HAND_WINDOW,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            wrap: WrapKind::None,
            address_family: AddressFamily::V4,
            max_acks_per_ack_packet: MAX_ACKS,
            max_piggyback_acks: MAX_PIGGYBACK_ACKS,
            max_buffered: DEFAULT_MAX_BUFFERED,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `send_window` outside 1..=12.
    #[error("send window {0} outside 1..={RECV_WINDOW} (a 2.6 peer keeps only {RECV_WINDOW})")]
    SendWindow(usize),
    /// `recv_window` outside 1..=64.
    #[error("receive window {0} outside 1..=64")]
    RecvWindow(usize),
    /// ACK limits outside 1..=8 / 0..=8.
    #[error("ACK limits must be 1..={MAX_ACKS} per P_ACK_V1 and 0..={MAX_ACKS} piggy-backed")]
    AckLimits,
    /// Zero timeout.
    #[error("initial retransmit timeout must be non-zero")]
    ZeroTimeout,
    /// Nothing left for payload once headers and overhead are counted.
    #[error(
        "max packet size {max_packet_size} leaves no room for a payload after {overhead} bytes of overhead"
    )]
    NoRoom {
        /// Effective max packet size.
        max_packet_size: usize,
        /// Worst-case overhead.
        overhead: usize,
    },
}

impl ReliableConfig {
    /// The max packet size after 2.6's clamping.
    pub fn effective_max_packet_size(&self) -> usize {
        self.max_packet_size
            .clamp(MIN_MAX_PACKET_SIZE, MAX_MAX_PACKET_SIZE)
    }

    /// Everything but payload and ACK block: opcode, sid, msg id, wrap (as 2.6 books it),
    /// IP/UDP.
    fn fixed_overhead(&self) -> usize {
        HEADER_LEN
            + MESSAGE_ID_LEN
            + self.wrap.budget_overhead()
            + self.address_family.ip_udp_overhead()
    }

    /// Payload budget of a control packet carrying `n_acks` ACKs (§2 formula).
    pub fn payload_budget(&self, n_acks: usize) -> usize {
        self.effective_max_packet_size()
            .saturating_sub(self.fixed_overhead() + ack_block_len(n_acks))
    }

    /// Check the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=RECV_WINDOW).contains(&self.send_window) {
            return Err(ConfigError::SendWindow(self.send_window));
        }
        if !(1..=64).contains(&self.recv_window) {
            return Err(ConfigError::RecvWindow(self.recv_window));
        }
        if !(1..=MAX_ACKS).contains(&self.max_acks_per_ack_packet)
            || self.max_piggyback_acks > MAX_ACKS
        {
            return Err(ConfigError::AckLimits);
        }
        if self.initial_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        let worst = self.fixed_overhead() + ack_block_len(self.max_piggyback_acks);
        if self.payload_budget(self.max_piggyback_acks) == 0 {
            return Err(ConfigError::NoRoom {
                max_packet_size: self.effective_max_packet_size(),
                overhead: worst,
            });
        }
        Ok(())
    }
}

/// What happened to a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvOutcome {
    /// New and stored; it will be ACKed. In-order data became readable if it closed a gap.
    Accepted,
    /// Already buffered (inside the window): ACKed again, dropped.
    Duplicate,
    /// Older than the next expected id: ACKed again, dropped (2.6 does the same).
    Replay,
    /// At or past `next_expected + recv_window`: dropped, not ACKed.
    BeyondWindow,
    /// P_ACK_V1: nothing to store.
    AckOnly,
    /// The receive buffer is full (unread data): dropped, not ACKed, so the peer retries.
    Backpressure,
}

/// A protocol violation by the peer; the packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReliableError {
    /// A reset with a non-zero id, a P_CONTROL_V1 with id 0, or an opcode we do not take.
    #[error("{opcode} with message id {message_id} is not allowed")]
    UnexpectedMessage {
        /// Opcode.
        opcode: Opcode,
        /// Its message id.
        message_id: u32,
    },
    /// A non-ACK packet without a message id.
    #[error("{0} without a message id")]
    MissingMessageId(Opcode),
    /// `send_reset` after messages were already sent, or with a non-reset opcode.
    #[error("{0} can only be the first message of a key state")]
    ResetNotFirst(Opcode),
    /// The send buffer cap was reached.
    #[error("send buffer full ({0} bytes queued)")]
    SendBufferFull(usize),
    /// The layer already failed.
    #[error("the reliability layer has failed: {0}")]
    Failed(ReliableFailure),
}

/// Why the layer gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReliableFailure {
    /// A message stayed unACKed for the hand window.
    #[error(
        "message {message_id} unacknowledged after {elapsed:?} ({transmissions} transmissions)"
    )]
    Unacknowledged {
        /// The oldest unACKed message.
        message_id: u32,
        /// Time since its first transmission.
        elapsed: Duration,
        /// How often it was sent.
        transmissions: u32,
    },
}

/// The peer's reset (message id 0), kept out of the TLS stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReset {
    /// Hard reset (7, 8) or soft reset (3).
    pub opcode: Opcode,
    /// Its payload: empty from a stock peer; TLVs for early negotiation (see
    /// [`crate::packet::ResetOptions`]).
    pub payload: Vec<u8>,
}

/// Counters (for `stats` and drop reasons).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReliableStats {
    /// Reset / P_CONTROL_V1 packets sent for the first time.
    pub messages_sent: u64,
    /// Retransmissions by timeout.
    pub retransmits: u64,
    /// Retransmissions because 3 later ids were ACKed.
    pub fast_retransmits: u64,
    /// Dedicated P_ACK_V1 packets sent.
    pub ack_packets_sent: u64,
    /// Messages accepted.
    pub accepted: u64,
    /// Duplicates inside the window.
    pub duplicates: u64,
    /// Ids older than the window start.
    pub replays: u64,
    /// Ids beyond the window.
    pub beyond_window: u64,
    /// Drops because the receive buffer was full.
    pub backpressure: u64,
    /// ACKs for ids not in flight: never sent, or already ACKed. 2.6 repeats recent ACKs
    /// in every packet, so this grows during a normal handshake.
    pub stale_acks: u64,
    /// Protocol violations.
    pub violations: u64,
}

#[derive(Debug)]
struct SendEntry {
    message_id: u32,
    opcode: Opcode,
    payload: Vec<u8>,
    first_sent: Option<Instant>,
    next_try: Option<Instant>,
    timeout: Duration,
    later_acks: u8,
    transmissions: u32,
}

#[derive(Debug)]
struct RecvSlot {
    opcode: Opcode,
    payload: Vec<u8>,
}

/// One packet to send, as the reliability layer sees it. Turn it into a
/// [`ControlPacket`] with [`to_packet`](Self::to_packet) and wrap that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// Reset, P_CONTROL_V1 or P_ACK_V1.
    pub opcode: Opcode,
    /// Message id; `None` for P_ACK_V1.
    pub message_id: Option<u32>,
    /// Ids this packet ACKs (new ones first, then repeats, like 2.6).
    pub acks: AckIds,
    /// TLS bytes (empty for resets and ACKs).
    pub payload: &'a [u8],
    /// 0 for the first transmission, then 1, 2, …
    pub retransmission: u32,
    /// This retransmission was triggered by 3 ACKs of later ids, not by the timer.
    pub fast_retransmit: bool,
}

impl<'a> Transmit<'a> {
    /// The control packet for this transmit. `peer_session_id` is `None` only before the
    /// peer's session id is known (a client's first reset); ACKs need it, so any ACKs are
    /// left out then.
    pub fn to_packet(
        &self,
        key_id: KeyId,
        own_session_id: SessionId,
        peer_session_id: Option<SessionId>,
    ) -> ControlPacket<'a> {
        let (acks, remote) = match peer_session_id {
            Some(p) if !self.acks.is_empty() => (self.acks, Some(p)),
            _ => (AckIds::new(), None),
        };
        ControlPacket {
            opcode: self.opcode,
            key_id,
            session_id: own_session_id,
            acks,
            remote_session_id: remote,
            message_id: self.message_id,
            payload: self.payload,
        }
    }
}

/// Reliability layer of one key state. See the module docs for how to drive it.
#[derive(Debug)]
pub struct ReliableLayer {
    cfg: ReliableConfig,
    // ---- send side ----
    next_message_id: u32,
    unsent: VecDeque<u8>,
    in_flight: VecDeque<SendEntry>,
    reset_sent: bool,
    reset_acked: bool,
    // ---- receive side ----
    next_expected: u32,
    /// `slots[i]` holds message `next_expected + i`.
    slots: VecDeque<Option<RecvSlot>>,
    readable: VecDeque<u8>,
    peer_reset: Option<PeerReset>,
    pending_acks: AckIds,
    mru_acks: AckIds,
    // ----
    failure: Option<ReliableFailure>,
    stats: ReliableStats,
}

/// Wrapping "a < b" on 32-bit ids, as 2.6 compares them.
fn id_before(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

impl ReliableLayer {
    /// A fresh layer (message ids from 0 both ways).
    pub fn new(cfg: ReliableConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let slots = (0..cfg.recv_window).map(|_| None).collect::<VecDeque<_>>();
        Ok(Self {
            cfg,
            next_message_id: 0,
            unsent: VecDeque::new(),
            in_flight: VecDeque::new(),
            reset_sent: false,
            reset_acked: false,
            next_expected: 0,
            slots,
            readable: VecDeque::new(),
            peer_reset: None,
            pending_acks: AckIds::new(),
            mru_acks: AckIds::new(),
            failure: None,
            stats: ReliableStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ReliableConfig {
        &self.cfg
    }

    // ------------------------------------------------------------------ send side

    /// Queue our reset (hard reset 7/8 or soft reset 3) as message 0. Must be the first
    /// message. TLS bytes are held back until it is ACKed (2.6's S_START).
    pub fn send_reset(&mut self, opcode: Opcode) -> Result<(), ReliableError> {
        if !opcode.is_reset() || opcode.is_tls_crypt_v2() || self.next_message_id != 0 {
            return Err(ReliableError::ResetNotFirst(opcode));
        }
        self.push_entry(opcode, Vec::new());
        self.reset_sent = true;
        Ok(())
    }

    /// Queue TLS ciphertext for sending. It is cut into packets when they are polled, so
    /// queue everything the TLS engine has before polling. Nothing is sent before our reset
    /// ([`send_reset`](Self::send_reset)) has been ACKed.
    pub fn queue_tls(&mut self, bytes: &[u8]) -> Result<(), ReliableError> {
        if let Some(f) = self.failure {
            return Err(ReliableError::Failed(f));
        }
        let queued = self.unsent.len()
            + self
                .in_flight
                .iter()
                .map(|e| e.payload.len())
                .sum::<usize>();
        if queued + bytes.len() > self.cfg.max_buffered {
            return Err(ReliableError::SendBufferFull(queued));
        }
        self.unsent.extend(bytes);
        Ok(())
    }

    /// An `io::Write` that queues TLS ciphertext (for `rustls::Connection::write_tls`).
    pub fn tls_writer(&mut self) -> TlsWriter<'_> {
        TlsWriter { layer: self }
    }

    /// TLS bytes queued but not yet in a packet.
    pub fn unsent_len(&self) -> usize {
        self.unsent.len()
    }

    /// Packets sent and not yet ACKed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether our reset was sent and ACKed (TLS may flow).
    pub fn reset_acked(&self) -> bool {
        self.reset_acked
    }

    /// Everything we queued was sent and ACKed: no unsent bytes, nothing in flight. Together
    /// with a finished handshake this is 2.6's S_ACTIVE.
    pub fn all_acked(&self) -> bool {
        self.unsent.is_empty() && self.in_flight.is_empty()
    }

    /// Nothing to send now or later: all ACKed and no ACK owed.
    pub fn is_idle(&self) -> bool {
        self.all_acked() && self.pending_acks.is_empty()
    }

    fn push_entry(&mut self, opcode: Opcode, payload: Vec<u8>) {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1);
        self.in_flight.push_back(SendEntry {
            message_id: id,
            opcode,
            payload,
            first_sent: None,
            next_try: None,
            timeout: self.cfg.initial_timeout,
            later_acks: 0,
            transmissions: 0,
        });
    }

    /// Can a new message id be used without exceeding the send window or making the span
    /// of ids in flight wider than the window (2.6's `reliable_get_buf_output_sequenced`)?
    fn window_open(&self) -> bool {
        if self.in_flight.len() >= self.cfg.send_window {
            return false;
        }
        match self.in_flight.front() {
            None => true,
            Some(oldest) => {
                (self.next_message_id.wrapping_sub(oldest.message_id) as usize)
                    < self.cfg.send_window
            }
        }
    }

    /// Pick the ACKs for an outgoing packet like 2.6's `reliable_ack_write`: up to `max` new
    /// ids move to the front of the MRU list, then the first `max` MRU entries go out.
    fn take_acks(&mut self, max: usize) -> AckIds {
        let n = self.pending_acks.len().min(max);
        let fresh = self.pending_acks;
        for &id in fresh.as_slice()[..n].iter().rev() {
            let mut mru = AckIds::new();
            let _ = mru.push(id);
            for &old in self.mru_acks.as_slice() {
                if old != id && mru.len() < MAX_ACKS {
                    let _ = mru.push(old);
                }
            }
            self.mru_acks = mru;
        }
        let mut rest = AckIds::new();
        for &id in &fresh.as_slice()[n..] {
            let _ = rest.push(id);
        }
        self.pending_acks = rest;
        let total = max.min(self.mru_acks.len());
        AckIds::from_slice(&self.mru_acks.as_slice()[..total]).unwrap_or_default()
    }

    /// Most ACKs that fit next to a payload of `len` bytes within the packet size.
    fn ack_room(&self, len: usize) -> usize {
        let mut n = self.cfg.max_piggyback_acks;
        while n > 0 && self.cfg.payload_budget(n) < len {
            n -= 1;
        }
        n
    }

    /// Check the give-up rule.
    fn check_failure(&mut self, now: Instant) {
        if self.failure.is_some() {
            return;
        }
        for e in &self.in_flight {
            if let Some(first) = e.first_sent {
                let elapsed = now.saturating_duration_since(first);
                if elapsed >= self.cfg.hand_window {
                    self.failure = Some(ReliableFailure::Unacknowledged {
                        message_id: e.message_id,
                        elapsed,
                        transmissions: e.transmissions,
                    });
                    return;
                }
            }
        }
    }

    /// The next packet to send now, if any: a due (re)transmission first, then a new
    /// message from queued TLS bytes, then a dedicated P_ACK_V1 if ACKs are owed. Call
    /// repeatedly until `None` after every input and timer.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit<'_>> {
        self.check_failure(now);
        if self.failure.is_some() {
            return None;
        }
        // 1. The oldest due message.
        let due = self.in_flight.iter().position(|e| {
            e.next_try.is_none_or(|t| t <= now) || e.later_acks >= FAST_RETRANSMIT_ACKS
        });
        // 2. Otherwise a new message from queued TLS bytes, once our reset is ACKed.
        let idx = match due {
            Some(i) => i,
            None => {
                // Message 0 is always our reset; TLS flows only once it is ACKed.
                if self.reset_acked && !self.unsent.is_empty() && self.window_open() {
                    let est = (self.pending_acks.len() + self.mru_acks.len())
                        .min(self.cfg.max_piggyback_acks);
                    let take = self.unsent.len().min(self.cfg.payload_budget(est));
                    let payload: Vec<u8> = self.unsent.drain(..take).collect();
                    self.push_entry(Opcode::ControlV1, payload);
                    self.in_flight.len() - 1
                } else if !self.pending_acks.is_empty() {
                    // 3. A dedicated ACK.
                    let acks = self.take_acks(self.cfg.max_acks_per_ack_packet);
                    self.stats.ack_packets_sent += 1;
                    return Some(Transmit {
                        opcode: Opcode::AckV1,
                        message_id: None,
                        acks,
                        payload: &[],
                        retransmission: 0,
                        fast_retransmit: false,
                    });
                } else {
                    return None;
                }
            }
        };
        let room = self.ack_room(self.in_flight[idx].payload.len());
        let acks = self.take_acks(room);
        let e = &mut self.in_flight[idx];
        let fast = e.transmissions > 0 && e.next_try.is_none_or(|t| t > now);
        match (e.transmissions, fast) {
            (0, _) => self.stats.messages_sent += 1,
            (_, false) => self.stats.retransmits += 1,
            (_, true) => self.stats.fast_retransmits += 1,
        }
        let retransmission = e.transmissions;
        e.transmissions = e.transmissions.saturating_add(1);
        e.first_sent.get_or_insert(now);
        e.next_try = Some(now + e.timeout);
        // Exponential backoff: 2, 4, 8, ... s; the hand window ends it long before overflow.
        e.timeout = e.timeout.saturating_mul(2);
        e.later_acks = 0;
        Some(Transmit {
            opcode: e.opcode,
            message_id: Some(e.message_id),
            acks,
            payload: &e.payload,
            retransmission,
            fast_retransmit: fast,
        })
    }

    /// When [`poll_transmit`](Self::poll_transmit) should be called again at the latest
    /// (next retransmission or give-up), assuming no input arrives. `None` if nothing is in
    /// flight. Queued bytes and owed ACKs are sent by the next `poll_transmit` call, not by
    /// a timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failure.is_some() {
            return None;
        }
        self.in_flight
            .iter()
            .flat_map(|e| {
                let give_up = e.first_sent.map(|f| f + self.cfg.hand_window);
                [e.next_try, give_up]
            })
            .flatten()
            .min()
    }

    /// Reschedule every unACKed message for immediate retransmission with the initial
    /// timeout (2.6 does this when the peer's reset arrives).
    pub fn retransmit_all_now(&mut self, now: Instant) {
        for e in &mut self.in_flight {
            if e.transmissions > 0 {
                e.next_try = Some(now);
                e.timeout = self.cfg.initial_timeout;
            }
        }
    }

    /// Why the layer failed, if it did. A failed layer sends nothing more; 2.6 drops the key
    /// state ("TLS key negotiation failed to occur within 60 seconds").
    pub fn failure(&self) -> Option<ReliableFailure> {
        self.failure
    }

    // ------------------------------------------------------------------ receive side

    /// Process the ACKs of a received packet: ACKed messages leave the send window; an
    /// unACKed message older than an ACKed id counts towards fast retransmit. ACKs for
    /// unknown or already ACKed ids are ignored.
    pub fn on_acks(&mut self, acks: &[u32]) {
        for &id in acks {
            // Everything in flight lies within the last `send_window` ids sent; ACKs outside
            // that span (never sent, or long since ACKed) can neither remove an entry nor
            // count towards a fast retransmit.
            let age = self.next_message_id.wrapping_sub(id) as usize;
            if age == 0 || age > self.cfg.send_window {
                self.stats.stale_acks += 1;
                continue;
            }
            let before = self.in_flight.len();
            self.in_flight.retain(|e| e.message_id != id);
            if self.in_flight.len() == before {
                self.stats.stale_acks += 1;
            } else if id == 0 && self.reset_sent {
                self.reset_acked = true;
            }
            for e in &mut self.in_flight {
                if id_before(e.message_id, id) {
                    e.later_acks = e.later_acks.saturating_add(1);
                }
            }
        }
    }

    /// Process a received message (anything but P_ACK_V1): store it if it is in the
    /// window, owe an ACK for it (new or replayed), deliver in order.
    pub fn on_message(
        &mut self,
        opcode: Opcode,
        message_id: u32,
        payload: &[u8],
    ) -> Result<RecvOutcome, ReliableError> {
        if opcode == Opcode::AckV1 {
            return Ok(RecvOutcome::AckOnly);
        }
        let allowed = match opcode {
            Opcode::ControlV1 => message_id != 0,
            Opcode::HardResetClientV2 | Opcode::HardResetServerV2 | Opcode::SoftResetV1 => {
                message_id == 0
            }
            _ => false,
        };
        if !allowed {
            self.stats.violations += 1;
            return Err(ReliableError::UnexpectedMessage { opcode, message_id });
        }
        let offset = message_id.wrapping_sub(self.next_expected) as usize;
        if offset < self.cfg.recv_window {
            if self.slots[offset].is_some() {
                self.owe_ack(message_id);
                self.stats.duplicates += 1;
                return Ok(RecvOutcome::Duplicate);
            }
            let buffered: usize = self
                .slots
                .iter()
                .flatten()
                .map(|s| s.payload.len())
                .sum::<usize>()
                + self.readable.len();
            if buffered + payload.len() > self.cfg.max_buffered {
                self.stats.backpressure += 1;
                return Ok(RecvOutcome::Backpressure);
            }
            self.owe_ack(message_id);
            self.slots[offset] = Some(RecvSlot {
                opcode,
                payload: payload.to_vec(),
            });
            self.stats.accepted += 1;
            self.deliver_in_order();
            Ok(RecvOutcome::Accepted)
        } else if id_before(message_id, self.next_expected) {
            self.owe_ack(message_id);
            self.stats.replays += 1;
            Ok(RecvOutcome::Replay)
        } else {
            self.stats.beyond_window += 1;
            Ok(RecvOutcome::BeyondWindow)
        }
    }

    /// [`on_acks`](Self::on_acks) then [`on_message`](Self::on_message) for a packet the
    /// session has already checked (key id, remote session id).
    pub fn on_packet(&mut self, packet: &ControlPacket<'_>) -> Result<RecvOutcome, ReliableError> {
        if let Some(f) = self.failure {
            return Err(ReliableError::Failed(f));
        }
        self.on_acks(packet.acks.as_slice());
        match packet.message_id {
            Some(id) => self.on_message(packet.opcode, id, packet.payload),
            None if packet.opcode == Opcode::AckV1 => Ok(RecvOutcome::AckOnly),
            None => {
                self.stats.violations += 1;
                Err(ReliableError::MissingMessageId(packet.opcode))
            }
        }
    }

    fn owe_ack(&mut self, id: u32) {
        if !self.pending_acks.contains(id) {
            // A full list drops the ACK, as 2.6 does; the peer retransmits.
            let _ = self.pending_acks.push(id);
        }
    }

    fn deliver_in_order(&mut self) {
        while let Some(Some(_)) = self.slots.front() {
            let Some(Some(s)) = self.slots.pop_front() else {
                return;
            };
            self.slots.push_back(None);
            if s.opcode.is_reset() {
                self.peer_reset = Some(PeerReset {
                    opcode: s.opcode,
                    payload: s.payload,
                });
            } else {
                self.readable.extend(s.payload);
            }
            self.next_expected = self.next_expected.wrapping_add(1);
        }
    }

    /// The peer's reset, once received.
    pub fn peer_reset(&self) -> Option<&PeerReset> {
        self.peer_reset.as_ref()
    }

    /// In-order TLS bytes ready to read.
    pub fn readable_len(&self) -> usize {
        self.readable.len()
    }

    /// Move up to `out.len()` in-order TLS bytes into `out`; returns the count.
    pub fn read_tls(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.readable.len());
        for (d, s) in out.iter_mut().zip(self.readable.drain(..n)) {
            *d = s;
        }
        n
    }

    /// Append all in-order TLS bytes to `out`; returns the count.
    pub fn read_tls_to_end(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.readable.len();
        out.extend(self.readable.drain(..));
        n
    }

    /// An `io::Read` over in-order TLS bytes (for `rustls::Connection::read_tls`). It
    /// returns `WouldBlock` when empty so rustls does not take it for end-of-stream.
    pub fn tls_reader(&mut self) -> TlsReader<'_> {
        TlsReader { layer: self }
    }

    /// Next id expected from the peer.
    pub fn next_expected(&self) -> u32 {
        self.next_expected
    }

    /// ACKs owed and not yet sent.
    pub fn pending_acks(&self) -> &[u32] {
        self.pending_acks.as_slice()
    }

    /// Counters.
    pub fn stats(&self) -> &ReliableStats {
        &self.stats
    }
}

/// `io::Read` over a layer's in-order TLS bytes.
#[derive(Debug)]
pub struct TlsReader<'a> {
    layer: &'a mut ReliableLayer,
}

impl io::Read for TlsReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.layer.read_tls(buf) {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }
}

/// `io::Write` that queues TLS bytes on a layer.
#[derive(Debug)]
pub struct TlsWriter<'a> {
    layer: &'a mut ReliableLayer,
}

impl io::Write for TlsWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.layer
            .queue_tls(buf)
            .map(|()| buf.len())
            .map_err(|e| io::Error::new(io::ErrorKind::WouldBlock, e))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
