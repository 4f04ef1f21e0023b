//! The stateful firewall's ruleset: matching and verdicts.
//!
//! A [`RuleSet`] is immutable once parsed and swapped whole at run time
//! (readers never lock). Rules are tried in file order; the first rule with a
//! verdict (`accept`, `drop`, `reject`) decides; a rule with none only counts.
//! If no rule decides, the `policy` does. Every rule and the policy count
//! packets and bytes, per worker stripe, summed on read. The file syntax is
//! documented in the crate root.

mod parse;

pub use parse::RuleError;

use crate::ctx::{CtState, Path};
use crate::packet::Family;
use crate::stats::STRIPES;
use crate::tuple::CtDir;
use crate::wire;
use std::fmt;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicU64, Ordering};

/// The default verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Accept what no rule decided.
    Accept,
    /// Drop what no rule decided.
    Drop,
}

/// ICMP code sent back by `reject with icmpx ...` (mapped to ICMP or ICMPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpxCode {
    /// Port unreachable (ICMP 3/3, ICMPv6 1/4).
    PortUnreachable,
    /// Host unreachable (ICMP 3/1, ICMPv6 1/3).
    HostUnreachable,
    /// No route (ICMP 3/0, ICMPv6 1/0).
    NoRoute,
    /// Administratively prohibited (ICMP 3/13, ICMPv6 1/1).
    AdminProhibited,
}

impl IcmpxCode {
    /// Keyword in the rules file.
    pub fn name(self) -> &'static str {
        match self {
            IcmpxCode::PortUnreachable => "port-unreachable",
            IcmpxCode::HostUnreachable => "host-unreachable",
            IcmpxCode::NoRoute => "no-route",
            IcmpxCode::AdminProhibited => "admin-prohibited",
        }
    }
}

/// How a `reject` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectWith {
    /// TCP gets a RST, everything else ICMP port unreachable.
    Auto,
    /// `reject with tcp reset`.
    TcpReset,
    /// `reject with icmpx <code>`.
    Icmpx(IcmpxCode),
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Let the packet through.
    Accept,
    /// Drop silently.
    Drop,
    /// Drop and send an error back to the sender.
    Reject(RejectWith),
    /// Count only; evaluation continues with the next rule.
    Continue,
}

/// An IP prefix over the 16-byte address form (IPv4 in the top 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Net {
    pub addr: u128,
    pub mask: u128,
}

/// 256-bit set of small numbers (protocols, ICMP types and codes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    pub(crate) fn insert(&mut self, v: u8) {
        self.0[usize::from(v >> 6)] |= 1 << (v & 63);
    }
    #[inline]
    pub(crate) fn contains(&self, v: u8) -> bool {
        self.0[usize::from(v >> 6)] & (1 << (v & 63)) != 0
    }
    pub(crate) fn single(&self) -> Option<u8> {
        let n: u32 = self.0.iter().map(|w| w.count_ones()).sum();
        if n != 1 {
            return None;
        }
        (0..=255u8).find(|v| self.contains(*v))
    }
}

/// One condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Match {
    CtState(u8),
    CtDirection(CtDir),
    Family(Family),
    L4Proto {
        neg: bool,
        set: ByteSet,
    },
    Addr {
        dst: bool,
        family: Family,
        neg: bool,
        nets: Vec<Net>,
    },
    Port {
        dst: bool,
        proto: Option<u8>,
        neg: bool,
        ranges: Vec<(u16, u16)>,
    },
    IcmpType {
        v6: bool,
        neg: bool,
        set: ByteSet,
    },
    IcmpCode {
        v6: bool,
        neg: bool,
        set: ByteSet,
    },
    TcpFlags {
        mask: u8,
        value: u8,
        neg: bool,
    },
    /// `from-peer` (true) / `from-host` (false).
    SrcIsPeer(bool),
    /// `to-peer` (true) / `to-host` (false).
    DstIsPeer(bool),
    PeerCn {
        dst: bool,
        neg: bool,
        names: Vec<Box<str>>,
    },
    PeerId {
        dst: bool,
        neg: bool,
        ranges: Vec<(u32, u32)>,
    },
}

/// What a rule sees of a packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    pub state: CtState,
    pub dir: Option<CtDir>,
    pub family: Family,
    pub proto: u8,
    pub src: u128,
    pub dst: u128,
    pub ports: Option<(u16, u16)>,
    pub icmp: Option<(u8, u8)>,
    pub tcp_flags: Option<u8>,
    pub path: Path<'a>,
}

impl Match {
    #[inline]
    fn eval(&self, f: &Facts<'_>) -> bool {
        match self {
            Match::CtState(mask) => mask & f.state.bit() != 0,
            Match::CtDirection(d) => f.dir == Some(*d),
            Match::Family(fam) => f.family == *fam,
            Match::L4Proto { neg, set } => set.contains(f.proto) != *neg,
            Match::Addr {
                dst,
                family,
                neg,
                nets,
            } => {
                if f.family != *family {
                    return false;
                }
                let a = if *dst { f.dst } else { f.src };
                nets.iter().any(|n| a & n.mask == n.addr) != *neg
            }
            Match::Port {
                dst,
                proto,
                neg,
                ranges,
            } => {
                if proto.is_some_and(|p| p != f.proto) {
                    return false;
                }
                let Some((s, d)) = f.ports else { return false };
                let p = if *dst { d } else { s };
                ranges.iter().any(|&(lo, hi)| lo <= p && p <= hi) != *neg
            }
            Match::IcmpType { v6, neg, set } | Match::IcmpCode { v6, neg, set } => {
                let want = if *v6 {
                    (Family::Ipv6, wire::IPPROTO_ICMPV6)
                } else {
                    (Family::Ipv4, wire::IPPROTO_ICMP)
                };
                if (f.family, f.proto) != want {
                    return false;
                }
                let Some((t, c)) = f.icmp else { return false };
                let v = if matches!(self, Match::IcmpType { .. }) {
                    t
                } else {
                    c
                };
                set.contains(v) != *neg
            }
            Match::TcpFlags { mask, value, neg } => match f.tcp_flags {
                Some(fl) => (fl & mask == *value) != *neg,
                None => false,
            },
            Match::SrcIsPeer(b) => f.path.src_peer().is_some() == *b,
            Match::DstIsPeer(b) => f.path.dst_peer().is_some() == *b,
            Match::PeerCn { dst, neg, names } => {
                let p = if *dst {
                    f.path.dst_peer()
                } else {
                    f.path.src_peer()
                };
                match p {
                    Some(p) => names.iter().any(|n| **n == *p.cn) != *neg,
                    None => false,
                }
            }
            Match::PeerId { dst, neg, ranges } => {
                let p = if *dst {
                    f.path.dst_peer()
                } else {
                    f.path.src_peer()
                };
                match p {
                    Some(p) => ranges.iter().any(|&(lo, hi)| lo <= p.id && p.id <= hi) != *neg,
                    None => false,
                }
            }
        }
    }
}

/// One rule: conditions (all must hold) and an action. Two rules are equal
/// when they match the same packets with the same action, wherever written.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) matches: Vec<Match>,
    pub(crate) action: Action,
    pub(crate) line: u32,
    pub(crate) text: Box<str>,
}

impl PartialEq for Rule {
    fn eq(&self, o: &Rule) -> bool {
        self.matches == o.matches && self.action == o.action
    }
}

impl Eq for Rule {}

impl Rule {
    /// What the rule does.
    pub fn action(&self) -> Action {
        self.action
    }

    /// Line in the source text (1-based).
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The rule as written (comments stripped).
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The outcome of evaluating the rules for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub action: Action,
    /// Index of the deciding rule; `None` when the policy decided.
    pub rule: Option<u32>,
    pub line: u32,
}

/// Counters of one rule (or the policy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCounters {
    /// Packets matched.
    pub packets: u64,
    /// Bytes matched.
    pub bytes: u64,
}

/// A parsed ruleset with its counters.
#[derive(Debug)]
pub struct RuleSet {
    policy: Policy,
    policy_line: u32,
    rules: Vec<Rule>,
    /// `[stripe][slot]` with slot = 2*rule (+1 for bytes); the policy is rule `len`.
    counters: Box<[AtomicU64]>,
    stride: usize,
}

impl PartialEq for RuleSet {
    fn eq(&self, o: &RuleSet) -> bool {
        self.policy == o.policy && self.rules == o.rules
    }
}

/// A rules file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file has a syntax error.
    #[error("{path}:{err}")]
    Parse {
        /// The file.
        path: String,
        /// Where and what.
        err: RuleError,
    },
}

impl Default for RuleSet {
    /// `policy accept` and no rules: track everything, filter nothing.
    fn default() -> Self {
        RuleSet::new(Policy::Accept, 0, Vec::new())
    }
}

impl RuleSet {
    pub(crate) fn new(policy: Policy, policy_line: u32, rules: Vec<Rule>) -> RuleSet {
        // Pad each stripe's block to whole 128-byte lines so stripes never share one.
        let slots = (rules.len() + 1) * 2;
        let stride = slots.div_ceil(16) * 16;
        RuleSet {
            policy,
            policy_line,
            rules,
            counters: (0..stride * STRIPES).map(|_| AtomicU64::new(0)).collect(),
            stride,
        }
    }

    /// Parse a ruleset (see the crate documentation for the syntax).
    pub fn parse(text: &str) -> Result<RuleSet, RuleError> {
        parse::parse(text)
    }

    /// Read and parse a rules file; errors name the file, line and column.
    pub fn from_file(path: impl AsRef<FsPath>) -> Result<RuleSet, LoadError> {
        let p = path.as_ref();
        let text = std::fs::read_to_string(p).map_err(|source| LoadError::Io {
            path: p.display().to_string(),
            source,
        })?;
        RuleSet::parse(&text).map_err(|err| LoadError::Parse {
            path: p.display().to_string(),
            err,
        })
    }

    /// The default policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The rules in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// No rules (the policy decides everything).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn read(&self, idx: usize) -> RuleCounters {
        let mut c = RuleCounters::default();
        for s in 0..STRIPES {
            let base = s * self.stride + idx * 2;
            c.packets += self.counters[base].load(Ordering::Relaxed);
            c.bytes += self.counters[base + 1].load(Ordering::Relaxed);
        }
        c
    }

    /// Counters of rule `idx` (summed over stripes).
    pub fn counters(&self, idx: usize) -> RuleCounters {
        if idx >= self.rules.len() {
            return RuleCounters::default();
        }
        self.read(idx)
    }

    /// Counters of the policy.
    pub fn policy_counters(&self) -> RuleCounters {
        self.read(self.rules.len())
    }

    #[inline]
    fn count(&self, thread: usize, idx: usize, bytes: u32) {
        let base = (thread % STRIPES) * self.stride + idx * 2;
        crate::stats::bump(&self.counters[base], thread, 1);
        crate::stats::bump(&self.counters[base + 1], thread, u64::from(bytes));
    }

    /// First deciding rule, or the policy.
    #[inline]
    pub(crate) fn evaluate(&self, f: &Facts<'_>, stripe: usize, bytes: u32) -> Decision {
        for (i, r) in self.rules.iter().enumerate() {
            if r.matches.iter().all(|m| m.eval(f)) {
                self.count(stripe, i, bytes);
                if r.action != Action::Continue {
                    return Decision {
                        action: r.action,
                        rule: Some(i as u32),
                        line: r.line,
                    };
                }
            }
        }
        self.count(stripe, self.rules.len(), bytes);
        Decision {
            action: match self.policy {
                Policy::Accept => Action::Accept,
                Policy::Drop => Action::Drop,
            },
            rule: None,
            line: self.policy_line,
        }
    }
}

impl fmt::Display for RuleSet {
    /// The ruleset with its counters as comments; the output parses back to the same rules.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.policy_counters();
        let name = match self.policy {
            Policy::Accept => "accept",
            Policy::Drop => "drop",
        };
        writeln!(
            f,
            "policy {name}  # packets {} bytes {}",
            p.packets, p.bytes
        )?;
        for (i, r) in self.rules.iter().enumerate() {
            let c = self.read(i);
            writeln!(
                f,
                "{}  # line {}: packets {} bytes {}",
                r.text, r.line, c.packets, c.bytes
            )?;
        }
        Ok(())
    }
}
