//! Copies of entries for listing, JSON and events, and their text forms.
//!
//! `ConnSnapshot`'s `Display` prints exactly what `conntrack -L` prints on a
//! router with accounting on (`nf_conntrack_acct=1`), minus the `mark=0
//! use=1` fields that mean nothing here:
//!
//! ```text
//! tcp      6 431999 ESTABLISHED src=10.8.0.2 dst=10.0.0.5 sport=40000 dport=22 packets=5 bytes=300 src=10.0.0.5 dst=10.8.0.2 sport=22 dport=40000 packets=4 bytes=250 [ASSURED]
//! ```

use crate::packet::Family;
use crate::tcp::TcpState;
use crate::tuple::Tuple;
use crate::wire;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A connection as listed by `ovpnctl ct list` (and its `--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnSnapshot {
    /// Connection id (stable while the entry lives).
    pub id: u32,
    /// IP version.
    pub family: Family,
    /// Transport protocol number.
    pub proto: u8,
    /// TCP state, for TCP only.
    pub tcp_state: Option<TcpState>,
    /// Seconds until the entry expires.
    pub timeout: u64,
    /// The original direction's tuple.
    pub original: Tuple,
    /// The reply direction's tuple.
    pub reply: Tuple,
    /// Packets in the original direction.
    pub orig_packets: u64,
    /// Bytes in the original direction.
    pub orig_bytes: u64,
    /// Packets in the reply direction.
    pub reply_packets: u64,
    /// Bytes in the reply direction.
    pub reply_bytes: u64,
    /// A reply has been seen (`[UNREPLIED]` when false).
    pub seen_reply: bool,
    /// Assured: survives early drop (`[ASSURED]`).
    pub assured: bool,
    /// Creation time (the caller's clock, ms).
    pub created_ms: u64,
    /// Last counted packet (the caller's clock, ms).
    pub last_seen_ms: u64,
    /// Peer on the original sender's side, if that side is a peer.
    pub orig_peer: Option<u32>,
    /// Peer on the reply sender's side, if that side is a peer.
    pub reply_peer: Option<u32>,
}

/// Options for the `conntrack -L` style line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListFormat {
    /// Prefix with the family, as `conntrack -o extended` (`ipv4     2 `).
    pub extended: bool,
    /// Append ` id=N`, as `conntrack -o id`.
    pub id: bool,
    /// Append ` peer=ORIG/REPLY` (peer ids, `-` for the host side).
    pub peers: bool,
}

impl ConnSnapshot {
    /// Protocol name as conntrack prints it.
    pub fn proto_name(&self) -> &'static str {
        wire::proto_name(self.proto)
    }

    /// The line in the given format.
    pub fn format(&self, fmt: ListFormat) -> String {
        let mut s = String::with_capacity(256);
        if fmt.extended {
            s.push_str(&format!(
                "{:<8} {} ",
                self.family.name(),
                self.family.af_number()
            ));
        }
        s.push_str(&format!(
            "{:<8} {} {} ",
            self.proto_name(),
            self.proto,
            self.timeout
        ));
        self.body(&mut s, true);
        if fmt.id {
            s.push_str(&format!(" id={}", self.id));
        }
        if fmt.peers {
            let p = |v: Option<u32>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            s.push_str(&format!(
                " peer={}/{}",
                p(self.orig_peer),
                p(self.reply_peer)
            ));
        }
        s
    }

    /// State, tuples, counters and flags; `counters` off for NEW/UPDATE events.
    fn body(&self, s: &mut String, counters: bool) {
        if let Some(st) = self.tcp_state {
            s.push_str(st.name());
            s.push(' ');
        }
        self.tuples(s, counters);
    }

    fn tuples(&self, s: &mut String, counters: bool) {
        s.push_str(&self.original.to_string());
        if counters {
            s.push_str(&format!(
                " packets={} bytes={}",
                self.orig_packets, self.orig_bytes
            ));
        }
        if !self.seen_reply {
            s.push_str(" [UNREPLIED]");
        }
        s.push(' ');
        s.push_str(&self.reply.to_string());
        if counters {
            s.push_str(&format!(
                " packets={} bytes={}",
                self.reply_packets, self.reply_bytes
            ));
        }
        if self.assured {
            s.push_str(" [ASSURED]");
        }
    }
}

impl fmt::Display for ConnSnapshot {
    /// The `conntrack -L` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format(ListFormat::default()))
    }
}

/// The summary `conntrack -L` writes to stderr after a listing.
pub fn list_footer(n: usize) -> String {
    format!("dco-conntrack: {n} flow entries have been shown.")
}

/// Kind of a connection event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// An entry was created.
    New,
    /// State changed, a reply was seen, or the entry became assured.
    Update,
    /// An entry was removed.
    Destroy,
}

/// Why an entry was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestroyReason {
    /// Timed out.
    Expired,
    /// Evicted to make room.
    EarlyDrop,
    /// Removed by a flush.
    Flush,
    /// A TCP reset answered an unanswered connection.
    Reset,
    /// A SYN reopened a closed connection; a new entry follows.
    Reopened,
}

/// A connection event, as `ovpnctl ct watch` prints it (`conntrack -E`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtEvent {
    /// What happened.
    pub kind: EventKind,
    /// Why, for destroy events.
    pub reason: Option<DestroyReason>,
    /// The connection at the time of the event.
    pub conn: ConnSnapshot,
}

impl fmt::Display for CtEvent {
    /// `    [NEW] tcp      6 120 SYN_SENT src=...`, as `conntrack -E` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.kind {
            EventKind::New => "[NEW]",
            EventKind::Update => "[UPDATE]",
            EventKind::Destroy => "[DESTROY]",
        };
        let c = &self.conn;
        let mut s = format!("{label:>9} {:<8} {} ", c.proto_name(), c.proto);
        match self.kind {
            EventKind::Destroy => c.tuples(&mut s, true),
            _ => {
                s.push_str(&format!("{} ", c.timeout));
                c.body(&mut s, false);
            }
        }
        f.write_str(&s)
    }
}
