//! TCP connection tracking: netfilter's state machine and window tracking.
//!
//! The tracker sits in the middle and guesses each end's state from what
//! passes. States and transitions are netfilter's (`nf_conntrack_proto_tcp`),
//! so `ovpnctl ct list` shows what `conntrack -L` would on a Linux router:
//! SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT,
//! CLOSE, plus SYN_SENT2 for simultaneous open.
//!
//! Window tracking (after Guido van Rooij's "Real Stateful TCP Packet
//! Filtering in IP Filter") keeps per direction the highest sequence end sent
//! (`end`), the highest end the receiver allowed (`maxend`) and the largest
//! window seen (`maxwin`). A segment is checked against four bounds:
//!
//! 1. `seq <= sender.maxend` (not beyond what the receiver allowed),
//! 2. `seq + len >= sender.end - receiver.maxwin` (not ancient),
//! 3. `ack <= receiver.end` (does not acknowledge unsent data),
//! 4. `ack >= receiver.end - max(sender.maxwin, 66000)` (not ancient).
//!
//! Failing 1 or 3 makes the packet INVALID; failing 2 or 4 (a retransmission
//! or a stale ACK) lets it through without moving the window. With
//! [`TcpConfig::liberal`] all four are waived. See [`TcpConfig`].

use crate::config::{TcpConfig, Timeouts};
use crate::packet::{InvalidReason, TcpInfo};
use crate::tuple::CtDir;
use crate::wire;
use serde::{Deserialize, Serialize};
use std::fmt;

/// TCP connection state, as netfilter names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum TcpState {
    /// Initial state, never shown for a tracked connection.
    #[serde(rename = "NONE")]
    None = 0,
    /// SYN seen.
    #[serde(rename = "SYN_SENT")]
    SynSent = 1,
    /// SYN/ACK seen.
    #[serde(rename = "SYN_RECV")]
    SynRecv = 2,
    /// Handshake completed (or picked up mid-stream).
    #[serde(rename = "ESTABLISHED")]
    Established = 3,
    /// FIN seen.
    #[serde(rename = "FIN_WAIT")]
    FinWait = 4,
    /// ACK of the first FIN seen.
    #[serde(rename = "CLOSE_WAIT")]
    CloseWait = 5,
    /// FIN seen both ways.
    #[serde(rename = "LAST_ACK")]
    LastAck = 6,
    /// Last ACK seen.
    #[serde(rename = "TIME_WAIT")]
    TimeWait = 7,
    /// Reset.
    #[serde(rename = "CLOSE")]
    Close = 8,
    /// SYN seen from both sides (simultaneous open).
    #[serde(rename = "SYN_SENT2")]
    SynSent2 = 9,
}

impl TcpState {
    /// Name as `conntrack -L` prints it.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    pub(crate) fn from_u8(v: u8) -> TcpState {
        match v {
            1 => TcpState::SynSent,
            2 => TcpState::SynRecv,
            3 => TcpState::Established,
            4 => TcpState::FinWait,
            5 => TcpState::CloseWait,
            6 => TcpState::LastAck,
            7 => TcpState::TimeWait,
            8 => TcpState::Close,
            9 => TcpState::SynSent2,
            _ => TcpState::None,
        }
    }

    fn timeout(self, t: &Timeouts) -> u32 {
        match self {
            TcpState::None | TcpState::SynSent => t.tcp_syn_sent,
            TcpState::SynRecv => t.tcp_syn_recv,
            TcpState::Established => t.tcp_established,
            TcpState::FinWait => t.tcp_fin_wait,
            TcpState::CloseWait => t.tcp_close_wait,
            TcpState::LastAck => t.tcp_last_ack,
            TcpState::TimeWait => t.tcp_time_wait,
            TcpState::Close => t.tcp_close,
            TcpState::SynSent2 => t.tcp_syn_sent2,
        }
    }

    /// Closing states may be evicted first when the table is full.
    pub(crate) fn closing(self) -> bool {
        matches!(
            self,
            TcpState::FinWait
                | TcpState::CloseWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
        )
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which of the six flag classes a segment belongs to (the table's row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum SegClass {
    Syn = 0,
    SynAck = 1,
    Fin = 2,
    Ack = 3,
    Rst = 4,
    None = 5,
}

impl SegClass {
    fn of(flags: u8) -> SegClass {
        if flags & wire::TCP_RST != 0 {
            SegClass::Rst
        } else if flags & wire::TCP_SYN != 0 {
            if flags & wire::TCP_ACK != 0 {
                SegClass::SynAck
            } else {
                SegClass::Syn
            }
        } else if flags & wire::TCP_FIN != 0 {
            SegClass::Fin
        } else if flags & wire::TCP_ACK != 0 {
            SegClass::Ack
        } else {
            SegClass::None
        }
    }
}

/// Outcome of the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    To(TcpState),
    /// Possibly valid, possibly not: let it pass without changing state.
    Ignore,
    Invalid,
}

/// The transition table (netfilter's `tcp_conntracks`), one row per segment
/// class, one column per current state in `TcpState` order.
fn transition(dir: CtDir, class: SegClass, state: TcpState) -> Next {
    use Next::{Ignore as IG, Invalid as IV};
    use TcpState::*;
    const SS: Next = Next::To(SynSent);
    const SR: Next = Next::To(SynRecv);
    const ES: Next = Next::To(Established);
    const FW: Next = Next::To(FinWait);
    const CW: Next = Next::To(CloseWait);
    const LA: Next = Next::To(LastAck);
    const TW: Next = Next::To(TimeWait);
    const CL: Next = Next::To(Close);
    const S2: Next = Next::To(SynSent2);
    //                       NONE SYN_SENT SYN_RECV ESTAB FIN_W CLOSE_W LAST_A TIME_W CLOSE SYN_SENT2
    const ORIG: [[Next; 10]; 6] = [
        /* syn    */ [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ];
    const REPLY: [[Next; 10]; 6] = [
        /* syn    */ [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ];
    let table = match dir {
        CtDir::Original => &ORIG,
        CtDir::Reply => &REPLY,
    };
    table[class as usize][state as usize]
}

// Per-direction flags.
const F_WINDOW_SCALE: u8 = 0x01;
const F_SACK_PERM: u8 = 0x02;
const F_CLOSE_INIT: u8 = 0x04;
const F_BE_LIBERAL: u8 = 0x08;
const F_DATA_UNACK: u8 = 0x10;
const F_MAXACK_SET: u8 = 0x20;
// `last_flags` only.
const F_CHALLENGE_ACK: u8 = 0x40;
const F_SIMULTANEOUS_OPEN: u8 = 0x80;

/// What the tracker knows of one direction's sender.
///
/// Packed to 2-byte alignment (18 bytes instead of 20) so that [`TcpConn`]
/// and the entry's byte counters share one cache line; the fields are only
/// ever read and written by value, never borrowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, packed(2))]
pub(crate) struct TcpSide {
    /// Highest `seq + len` sent.
    end: u32,
    /// Highest `ack + window` the other side allowed.
    maxend: u32,
    /// Largest window (scaled) advertised.
    maxwin: u32,
    /// Highest ACK sent.
    maxack: u32,
    /// Window scale shift.
    scale: u8,
    flags: u8,
}

impl TcpSide {
    fn reset(&mut self) {
        let liberal = self.flags & F_BE_LIBERAL;
        *self = TcpSide {
            flags: liberal,
            ..TcpSide::default()
        };
    }
}

/// TCP part of a connection entry (56 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TcpConn {
    seen: [TcpSide; 2],
    last_seq: u32,
    last_ack: u32,
    last_end: u32,
    last_win: u16,
    pub(crate) state: u8,
    last_dir: u8,
    last_index: u8,
    last_wscale: u8,
    last_flags: u8,
    retrans: u8,
}

/// A TCP segment as the tracker sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment<'a> {
    pub info: TcpInfo,
    pub options: &'a [u8],
}

impl Segment<'_> {
    fn syn(&self) -> bool {
        self.info.flags & wire::TCP_SYN != 0
    }
    fn ack_flag(&self) -> bool {
        self.info.flags & wire::TCP_ACK != 0
    }
    fn rst(&self) -> bool {
        self.info.flags & wire::TCP_RST != 0
    }
    /// Sequence number just past this segment (SYN and FIN count one each).
    fn end(&self) -> u32 {
        self.info
            .seq
            .wrapping_add(self.info.payload_len)
            .wrapping_add(u32::from(self.syn()))
            .wrapping_add(u32::from(self.info.flags & wire::TCP_FIN != 0))
    }
}

#[inline]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline]
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

const MAX_ACK_WIN_CONST: u32 = 66000;

fn max_ack_window(sender: &TcpSide) -> u32 {
    sender.maxwin.max(MAX_ACK_WIN_CONST)
}

/// Window scale and SACK-permitted options, applied to a side as a SYN
/// announces them. No options leaves the side untouched.
fn apply_options(side: &mut TcpSide, opts: &[u8]) {
    if opts.is_empty() {
        return;
    }
    side.scale = 0;
    side.flags &= F_BE_LIBERAL;
    let (scale, sack_perm) = parse_syn_options(opts);
    if sack_perm {
        side.flags |= F_SACK_PERM;
    }
    if let Some(s) = scale {
        side.scale = s;
        side.flags |= F_WINDOW_SCALE;
    }
}

/// Walk TCP options: (window scale, SACK permitted). Stops at anything malformed.
fn parse_syn_options(mut o: &[u8]) -> (Option<u8>, bool) {
    let (mut scale, mut sack_perm) = (None, false);
    while let Some((&kind, rest)) = o.split_first() {
        match kind {
            wire::TCPOPT_EOL => break,
            wire::TCPOPT_NOP => o = rest,
            _ => {
                let Some(&len) = rest.first() else { break };
                let len = usize::from(len);
                if len < 2 || len > o.len() {
                    break;
                }
                if kind == wire::TCPOPT_SACK_PERM && len == 2 {
                    sack_perm = true;
                } else if kind == wire::TCPOPT_WINDOW && len == 3 {
                    scale = Some(o[2].min(wire::TCP_MAX_WSCALE));
                }
                o = &o[len..];
            }
        }
    }
    (scale, sack_perm)
}

/// Highest right edge of the SACK blocks (if after `sack`), else `sack`.
fn highest_sack(mut o: &[u8], mut sack: u32) -> u32 {
    // The common timestamp-only layout carries no SACK.
    if o.len() == 12 && o[..4] == [1, 1, 8, 10] {
        return sack;
    }
    while let Some((&kind, rest)) = o.split_first() {
        match kind {
            wire::TCPOPT_EOL => break,
            wire::TCPOPT_NOP => o = rest,
            _ => {
                let Some(&len) = rest.first() else { break };
                let len = usize::from(len);
                if len < 2 || len > o.len() {
                    break;
                }
                if kind == wire::TCPOPT_SACK && len >= 10 && (len - 2) % 8 == 0 {
                    for block in o[2..len].chunks_exact(8) {
                        let right = u32::from_be_bytes([block[4], block[5], block[6], block[7]]);
                        if after(right, sack) {
                            sack = right;
                        }
                    }
                    break;
                }
                o = &o[len..];
            }
        }
    }
    sack
}

/// Connection status bits the TCP tracker reads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Status {
    pub seen_reply: bool,
    pub assured: bool,
}

/// What to do with a segment of a tracked connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpResult {
    /// In window: refresh the timer to `timeout` seconds and count the packet
    /// (unless `refresh` is false: a retransmitted SYN neither counts nor
    /// extends the entry), set ASSURED if asked, and delete the entry after
    /// counting if `kill` (a RST answering an unanswered connection).
    Accept {
        timeout: u32,
        refresh: bool,
        kill: bool,
        set_assured: bool,
    },
    /// Part of the connection but not trusted to move the state: passes as
    /// established/new, nothing is updated.
    Ignore,
    /// `ct state invalid`; if `shorten_to` is set, the entry's timeout drops to it.
    Invalid {
        reason: InvalidReason,
        shorten_to: Option<u32>,
    },
    /// A SYN reopening a closed connection: delete the entry and track the
    /// packet as a new connection.
    Reopen,
}

enum Window {
    Accept,
    Ignore,
    Invalid(InvalidReason),
}

impl TcpConn {
    pub(crate) fn state(&self) -> TcpState {
        TcpState::from_u8(self.state)
    }

    /// Start tracking from the first segment seen (netfilter's `tcp_new`),
    /// or `None` if such a segment cannot open a connection.
    pub(crate) fn new(seg: &Segment<'_>, cfg: &TcpConfig) -> Option<TcpConn> {
        let class = SegClass::of(seg.info.flags);
        let mut c = TcpConn::default();
        match transition(CtDir::Original, class, TcpState::None) {
            Next::To(TcpState::SynSent) => {
                let s = &mut c.seen[0];
                s.end = seg.end();
                s.maxwin = u32::from(seg.info.win).max(1);
                s.maxend = s.end;
                apply_options(s, seg.options);
            }
            Next::To(_) if cfg.loose => {
                // Picked up mid-stream: history is lost, trust this packet and
                // check windows liberally until both sides have been seen.
                let s = &mut c.seen[0];
                s.end = seg.end();
                s.maxwin = u32::from(seg.info.win).max(1);
                s.maxend = s.end.wrapping_add(s.maxwin);
                c.seen[0].flags = F_SACK_PERM | F_BE_LIBERAL;
                c.seen[1].flags = F_SACK_PERM | F_BE_LIBERAL;
            }
            _ => return None,
        }
        c.last_index = SegClass::None as u8;
        Some(c)
    }

    fn init_sender(&mut self, d: usize, seg: &Segment<'_>, end: u32, win: u32) {
        let s = &mut self.seen[d];
        s.end = end;
        s.maxend = end;
        s.maxwin = win.max(1);
        apply_options(s, seg.options);
        // RFC 7323: scaling only when both sides announced it.
        if d == 1
            && !(self.seen[0].flags & F_WINDOW_SCALE != 0
                && self.seen[1].flags & F_WINDOW_SCALE != 0)
        {
            self.seen[0].scale = 0;
            self.seen[1].scale = 0;
        }
    }

    fn sides(&mut self, d: usize) -> (&mut TcpSide, &mut TcpSide) {
        let [a, b] = &mut self.seen;
        if d == 0 { (a, b) } else { (b, a) }
    }

    fn in_window(
        &mut self,
        d: usize,
        class: SegClass,
        seg: &Segment<'_>,
        cfg: &TcpConfig,
    ) -> Window {
        let state = self.state();
        let mut seq = seg.info.seq;
        let mut ack = seg.info.ack;
        let win_raw = seg.info.win;
        let mut win = u32::from(win_raw);
        let mut end = seg.end();
        let mut sack = ack;
        if self.seen[1 - d].flags & F_SACK_PERM != 0 {
            sack = highest_sack(seg.options, sack);
        }

        if self.seen[d].maxwin == 0 {
            if seg.syn() {
                // SYN/ACK answering the SYN, or the other side's SYN in a simultaneous open.
                self.init_sender(d, seg, end, win);
                if !seg.ack_flag() {
                    return Window::Accept;
                }
            } else {
                // First packet of this direction of a picked-up connection.
                let (sender, receiver) = self.sides(d);
                sender.end = end;
                let swin = win << sender.scale;
                sender.maxwin = swin.max(1);
                sender.maxend = end.wrapping_add(sender.maxwin);
                if receiver.maxwin == 0 {
                    receiver.end = sack;
                    receiver.maxend = sack;
                } else if sack == receiver.end.wrapping_add(1) {
                    // Likely answering a keepalive.
                    receiver.end = receiver.end.wrapping_add(1);
                }
            }
        } else if seg.syn()
            && after(end, self.seen[d].end)
            && matches!(state, TcpState::SynSent | TcpState::SynRecv)
        {
            // A retransmitted SYN (or SYN/ACK) with a newer sequence: re-init.
            self.init_sender(d, seg, end, win);
            if d == 1 && !seg.ack_flag() {
                return Window::Accept;
            }
        }

        let (sender, receiver) = {
            let [a, b] = &mut self.seen;
            if d == 0 { (a, b) } else { (b, a) }
        };
        let liberal = cfg.liberal || sender.flags & F_BE_LIBERAL != 0;
        let verdict = |w: Window| if liberal { Window::Accept } else { w };

        if !seg.ack_flag() {
            // No ACK: pretend it acknowledged everything seen.
            ack = receiver.end;
            sack = receiver.end;
        } else if seg.info.flags & (wire::TCP_ACK | wire::TCP_RST)
            == (wire::TCP_ACK | wire::TCP_RST)
            && ack == 0
        {
            // Broken stacks send RST+ACK with a zero ack.
            ack = receiver.end;
            sack = receiver.end;
        }
        if seg.rst() && seq == 0 && state == TcpState::SynSent {
            // RST answering a SYN.
            seq = sender.end;
            end = sender.end;
        }

        if !before(seq, sender.maxend.wrapping_add(1)) {
            let overshot = end.wrapping_sub(sender.maxend).wrapping_add(1);
            let ack_ok = after(
                sack,
                receiver
                    .end
                    .wrapping_sub(max_ack_window(sender))
                    .wrapping_sub(1),
            );
            let in_recv_win = receiver.maxwin != 0
                && after(
                    end,
                    sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
                );
            if in_recv_win
                && ack_ok
                && overshot <= receiver.maxwin
                && before(sack, receiver.end.wrapping_add(1))
            {
                // Sent a little more than the window allows: remember it so
                // the ACK for it is not rejected, but do not trust the segment.
                sender.end = end;
                sender.flags |= F_DATA_UNACK;
                return verdict(Window::Ignore);
            }
            return verdict(Window::Invalid(InvalidReason::TcpSeqOverWindow));
        }
        if !before(sack, receiver.end.wrapping_add(1)) {
            return verdict(Window::Invalid(InvalidReason::TcpAckOverWindow));
        }
        let in_recv_win = receiver.maxwin == 0
            || after(
                end,
                sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
            );
        if !in_recv_win {
            // Retransmission of data already acknowledged.
            return verdict(Window::Ignore);
        }
        if !after(
            sack,
            receiver
                .end
                .wrapping_sub(max_ack_window(sender))
                .wrapping_sub(1),
        ) {
            // Overly delayed ACK.
            return verdict(Window::Ignore);
        }

        if !seg.syn() {
            win = win.wrapping_shl(u32::from(sender.scale));
        }
        let swin = win.wrapping_add(sack.wrapping_sub(ack));
        if sender.maxwin < swin {
            sender.maxwin = swin;
        }
        if after(end, sender.end) {
            sender.end = end;
            sender.flags |= F_DATA_UNACK;
        }
        if seg.ack_flag() {
            if sender.flags & F_MAXACK_SET == 0 {
                sender.maxack = ack;
                sender.flags |= F_MAXACK_SET;
            } else if after(ack, sender.maxack) {
                sender.maxack = ack;
            }
        }
        if receiver.maxwin != 0 && after(end, sender.maxend) {
            receiver.maxwin = receiver
                .maxwin
                .wrapping_add(end.wrapping_sub(sender.maxend));
        }
        if after(sack.wrapping_add(win), receiver.maxend.wrapping_sub(1)) {
            receiver.maxend = sack.wrapping_add(win);
            if win == 0 {
                receiver.maxend = receiver.maxend.wrapping_add(1);
            }
        }
        if ack == receiver.end {
            receiver.flags &= !F_DATA_UNACK;
        }

        if class == SegClass::Ack {
            if usize::from(self.last_dir) == d
                && self.last_seq == seq
                && self.last_ack == ack
                && self.last_end == end
                && self.last_win == win_raw
            {
                self.retrans = self.retrans.saturating_add(1);
            } else {
                self.last_dir = d as u8;
                self.last_seq = seq;
                self.last_ack = ack;
                self.last_end = end;
                self.last_win = win_raw;
                self.retrans = 0;
            }
        }
        Window::Accept
    }

    /// Track one segment of this connection (netfilter's `tcp_packet`).
    /// `remaining` is the entry's remaining lifetime in seconds.
    pub(crate) fn packet(
        &mut self,
        dir: CtDir,
        seg: &Segment<'_>,
        status: Status,
        remaining: u64,
        cfg: &TcpConfig,
        t: &Timeouts,
    ) -> TcpResult {
        let d = dir.idx();
        let mut old = self.state();
        let class = SegClass::of(seg.info.flags);
        let next = transition(dir, class, old);
        let mut new;
        let mut skip_window = false;

        let ignore = match next {
            Next::To(TcpState::SynSent) if old >= TcpState::TimeWait => {
                // A SYN on a closed or aborted connection reopens it.
                let closing = (self.seen[0].flags | self.seen[1].flags) & F_CLOSE_INIT != 0;
                if closing
                    || (usize::from(self.last_dir) == d && self.last_index == SegClass::Rst as u8)
                {
                    return TcpResult::Reopen;
                }
                new = TcpState::SynSent;
                true
            }
            Next::To(s) => {
                new = s;
                false
            }
            Next::Ignore => {
                new = old;
                true
            }
            Next::Invalid => {
                return TcpResult::Invalid {
                    reason: InvalidReason::TcpInvalidState,
                    shorten_to: None,
                };
            }
        };

        if ignore {
            let ld = usize::from(self.last_dir) & 1;
            if class == SegClass::SynAck
                && self.last_index == SegClass::Syn as u8
                && ld != d
                && seg.info.ack == self.last_end
            {
                // This SYN/ACK answers a SYN we ignored: both ends are in sync
                // and we are not. Resync from what we noted of that SYN.
                old = TcpState::SynSent;
                new = TcpState::SynRecv;
                let (end, win, wscale) = (self.last_end, self.last_win, self.last_wscale);
                let flags = self.last_flags & !(F_CHALLENGE_ACK | F_SIMULTANEOUS_OPEN);
                self.last_flags &= !F_CHALLENGE_ACK;
                let s = &mut self.seen[ld];
                s.end = end;
                s.maxend = end;
                s.maxwin = u32::from(win).max(1);
                s.scale = wscale;
                s.flags = flags;
                self.seen[d].reset();
            } else {
                self.last_index = class as u8;
                self.last_dir = d as u8;
                self.last_seq = seg.info.seq;
                self.last_end = seg.end();
                self.last_win = seg.info.win;
                if class == SegClass::Syn && dir == CtDir::Original {
                    // Note the SYN's options in case the server answers it.
                    let (scale, sack_perm) = parse_syn_options(seg.options);
                    self.last_flags = 0;
                    self.last_wscale = 0;
                    if let Some(s) = scale {
                        self.last_flags |= F_WINDOW_SCALE;
                        self.last_wscale = s;
                    }
                    if sack_perm {
                        self.last_flags |= F_SACK_PERM;
                    }
                    // An ACK to this SYN in LAST_ACK would be an RFC 5961
                    // challenge ACK, not the last ACK of the close.
                    if old == TcpState::LastAck {
                        self.last_flags |= F_CHALLENGE_ACK;
                    }
                }
                if old == TcpState::SynSent && class == SegClass::Ack && dir == CtDir::Reply {
                    // Possibly a challenge ACK answering the SYN.
                    self.last_ack = seg.info.ack;
                }
                return TcpResult::Ignore;
            }
        } else {
            match new {
                TcpState::TimeWait
                    if old == TcpState::LastAck
                        && class == SegClass::Ack
                        && usize::from(self.last_dir) != d
                        && self.last_index == SegClass::Syn as u8
                        && self.last_flags & F_CHALLENGE_ACK != 0 =>
                {
                    // RFC 5961 challenge ACK, not the last ACK.
                    self.last_flags &= !F_CHALLENGE_ACK;
                    return TcpResult::Ignore;
                }
                TcpState::SynSent2 => {
                    self.last_flags |= F_SIMULTANEOUS_OPEN;
                }
                TcpState::SynRecv
                    if dir == CtDir::Reply
                        && class == SegClass::Ack
                        && self.last_flags & F_SIMULTANEOUS_OPEN != 0 =>
                {
                    new = TcpState::Established;
                }
                TcpState::Close if class == SegClass::Rst => {
                    match self.check_rst(d, seg, old, status, cfg) {
                        RstCheck::Window => {}
                        RstCheck::SkipWindow => skip_window = true,
                        RstCheck::KeepState => new = old,
                        RstCheck::KeepStateSkipWindow => {
                            new = old;
                            skip_window = true;
                        }
                        RstCheck::Invalid => {
                            return TcpResult::Invalid {
                                reason: InvalidReason::TcpInvalidRst,
                                shorten_to: None,
                            };
                        }
                    }
                }
                _ => {}
            }
        }

        if !skip_window {
            match self.in_window(d, class, seg, cfg) {
                Window::Accept => {}
                Window::Ignore => return TcpResult::Ignore,
                Window::Invalid(reason) => {
                    let shorten_to = self.handle_invalid(d, class, status, remaining, t);
                    return TcpResult::Invalid { reason, shorten_to };
                }
            }
        }

        self.last_index = class as u8;
        self.last_dir = d as u8;
        self.state = new as u8;
        if old != new && new == TcpState::FinWait {
            self.seen[d].flags |= F_CLOSE_INIT;
        }

        let state_timeout = new.timeout(t);
        let mut timeout = if self.retrans >= cfg.max_retrans && state_timeout > t.tcp_max_retrans {
            t.tcp_max_retrans
        } else if class == SegClass::Rst {
            t.tcp_close
        } else if (self.seen[0].flags | self.seen[1].flags) & F_DATA_UNACK != 0
            && state_timeout > t.tcp_unacknowledged
        {
            t.tcp_unacknowledged
        } else if self.last_win == 0 && state_timeout > t.tcp_max_retrans {
            t.tcp_max_retrans
        } else {
            state_timeout
        };

        let mut set_assured = false;
        if !status.seen_reply {
            if seg.rst() {
                // The only answer was a RST: no connection worth keeping.
                return TcpResult::Accept {
                    timeout,
                    refresh: true,
                    kill: true,
                    set_assured: false,
                };
            }
            if class == SegClass::Syn && old == TcpState::SynSent {
                // A retransmitted SYN must not keep the entry alive forever.
                return TcpResult::Accept {
                    timeout,
                    refresh: false,
                    kill: false,
                    set_assured: false,
                };
            }
            if new == TcpState::Established && timeout > t.tcp_unacknowledged {
                // Picked up without seeing a reply: no long timeout yet.
                timeout = t.tcp_unacknowledged;
            }
        } else if !status.assured
            && matches!(old, TcpState::SynRecv | TcpState::Established)
            && new == TcpState::Established
        {
            set_assured = true;
        }
        TcpResult::Accept {
            timeout,
            refresh: true,
            kill: false,
            set_assured,
        }
    }

    fn check_rst(
        &self,
        d: usize,
        seg: &Segment<'_>,
        old: TcpState,
        status: Status,
        cfg: &TcpConfig,
    ) -> RstCheck {
        if old.closing() {
            // Closing: the tuple may already be reused, skip validation.
            return RstCheck::SkipWindow;
        }
        let other = &self.seen[1 - d];
        let mut keep = false;
        if other.flags & F_MAXACK_SET != 0 && self.last_index != SegClass::Syn as u8 {
            let seq = seg.info.seq;
            let established = old == TcpState::Established && status.assured;
            if seq == 0 && !established {
                // Most likely answering a SYN we let through.
                return RstCheck::Window;
            }
            if before(seq, other.maxack) && !cfg.ignore_invalid_rst {
                return RstCheck::Invalid;
            }
            if !established || seq == other.maxack {
                return RstCheck::Window;
            }
            // Part of a train: data then RST at its end.
            if self.last_index == SegClass::Ack as u8
                && usize::from(self.last_dir) == d
                && seq == self.last_end
            {
                return RstCheck::Window;
            }
            // Not an exact match: keep the state so a challenge ACK can follow.
            keep = true;
        }
        let ack_matches = seg.info.ack == self.last_end;
        if ((status.seen_reply && self.last_index == SegClass::Syn as u8)
            || (!status.assured && self.last_index == SegClass::Ack as u8))
            && ack_matches
        {
            // RST to a SYN or ACK we let through while out of sync.
            return if keep {
                RstCheck::KeepStateSkipWindow
            } else {
                RstCheck::SkipWindow
            };
        }
        if old == TcpState::SynSent
            && self.last_index == SegClass::Ack as u8
            && self.last_dir == 1
            && seg.info.seq == self.last_ack
        {
            // RST answering a challenge ACK we let through.
            return if keep {
                RstCheck::KeepStateSkipWindow
            } else {
                RstCheck::SkipWindow
            };
        }
        if keep {
            RstCheck::KeepState
        } else {
            RstCheck::Window
        }
    }

    /// An out-of-window FIN or RST answering the other side's FIN/RST on an
    /// assured connection: shorten the timeout so a dead entry does not sit
    /// in ESTABLISHED for days.
    fn handle_invalid(
        &mut self,
        d: usize,
        class: SegClass,
        status: Status,
        remaining: u64,
        t: &Timeouts,
    ) -> Option<u32> {
        if !status.assured || !matches!(class, SegClass::Rst | SegClass::Fin) {
            return None;
        }
        let last = self.last_index;
        if usize::from(self.last_dir) != d
            && (last == SegClass::Fin as u8 || last == SegClass::Rst as u8)
        {
            if remaining < 120 {
                return None;
            }
            if remaining > u64::from(t.tcp_unacknowledged) {
                return Some(t.tcp_unacknowledged);
            }
            None
        } else {
            self.last_index = class as u8;
            self.last_dir = d as u8;
            None
        }
    }
}

enum RstCheck {
    Window,
    SkipWindow,
    KeepState,
    KeepStateSkipWindow,
    Invalid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_spot_checks() {
        use TcpState::*;
        assert_eq!(
            transition(CtDir::Original, SegClass::Syn, None),
            Next::To(SynSent)
        );
        assert_eq!(
            transition(CtDir::Reply, SegClass::SynAck, SynSent),
            Next::To(SynRecv)
        );
        assert_eq!(
            transition(CtDir::Original, SegClass::Ack, SynRecv),
            Next::To(Established)
        );
        assert_eq!(
            transition(CtDir::Reply, SegClass::Syn, SynSent),
            Next::To(SynSent2)
        );
        assert_eq!(
            transition(CtDir::Original, SegClass::SynAck, SynSent),
            Next::Invalid
        );
        assert_eq!(
            transition(CtDir::Reply, SegClass::SynAck, Established),
            Next::Ignore
        );
        assert_eq!(
            transition(CtDir::Original, SegClass::None, Established),
            Next::Invalid
        );
        assert_eq!(
            transition(CtDir::Reply, SegClass::Syn, TimeWait),
            Next::To(SynSent)
        );
    }

    #[test]
    fn options_parse_scale_and_sack_perm() {
        // MSS, SACK-perm, TS, NOP, WS=7 (Linux's SYN layout).
        let opts = [
            2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        assert_eq!(parse_syn_options(&opts), (Some(7), true));
        // Scale above 14 is clamped.
        assert_eq!(parse_syn_options(&[3, 3, 20]), (Some(14), false));
        // Truncated option stops the walk without panicking.
        assert_eq!(parse_syn_options(&[3, 3]), (None, false));
        assert_eq!(parse_syn_options(&[2]), (None, false));
        assert_eq!(parse_syn_options(&[5, 1, 0]), (None, false));
    }

    #[test]
    fn sack_takes_highest_right_edge() {
        let mut o = vec![1, 1, 5, 18];
        o.extend_from_slice(&100u32.to_be_bytes());
        o.extend_from_slice(&200u32.to_be_bytes());
        o.extend_from_slice(&300u32.to_be_bytes());
        o.extend_from_slice(&400u32.to_be_bytes());
        assert_eq!(highest_sack(&o, 50), 400);
        assert_eq!(highest_sack(&o, 500), 500);
        assert_eq!(highest_sack(&[1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0], 7), 7);
    }

    #[test]
    fn conn_state_is_small() {
        assert!(std::mem::size_of::<TcpConn>() <= 64);
    }
}
