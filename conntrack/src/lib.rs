//! Connection tracking and a stateful firewall for the dco data path.
//!
//! Netfilter's model, in user space and per packet: every packet crossing the
//! tunnel is parsed ([`packet`]), matched to a connection in a bounded,
//! sharded table (both directions under one key), run through its protocol's
//! state machine (TCP as `nf_conntrack_proto_tcp` tracks it, with sequence
//! and window checks; UDP unreplied/assured; ICMP queries; ICMP errors as
//! RELATED; anything else generic) and then through a ruleset that knows
//! which tunnel peer (certificate common name, peer-id) the packet comes from
//! or goes to.
//!
//! # Use from the data path
//!
//! ```
//! use conntrack::{Conntrack, Config, PacketCtx, PeerRef, RuleSet, Timestamp, Verdict};
//!
//! let rules = RuleSet::parse(r#"
//!     policy drop
//!     ct state established,related accept
//!     ct state invalid drop
//!     from-peer cn "alice" tcp dport 22 accept
//! "#).unwrap();
//! let ct = Conntrack::with_rules(Config::default(), rules).unwrap();
//!
//! let syn = conntrack::build::Tcp { sport: 40000, dport: 22, seq: 1, flags: 0x02, win: 65535, ..Default::default() }
//!     .packet("10.8.0.2".parse().unwrap(), "10.0.0.5".parse().unwrap());
//! let alice = PeerRef::new(1, "alice");
//! let now = Timestamp::from_millis(1_000);
//! assert_eq!(ct.track(&syn, &PacketCtx::from_peer(alice, now)), Verdict::Accept);
//!
//! let bob = PeerRef::new(2, "bob");
//! let other = conntrack::build::Tcp { sport: 40001, dport: 22, seq: 1, flags: 0x02, win: 65535, ..Default::default() }
//!     .packet("10.8.0.3".parse().unwrap(), "10.0.0.5".parse().unwrap());
//! assert!(matches!(ct.track(&other, &PacketCtx::from_peer(bob, now)), Verdict::Drop(_)));
//! ```
//!
//! The daemon calls [`Conntrack::track_batch`] on the receive path (after
//! decryption and the source check, with [`PacketCtx::from_peer`] or
//! [`PacketCtx::between_peers`] once the route is known) and on the send path
//! (after picking each packet's peer, with [`PacketCtx::to_peer`]): a batch
//! gets the same verdicts as [`Conntrack::track`] on its packets in order,
//! about twice as fast on tables of 100 k flows and more, because it
//! prefetches each packet's table lines a few packets ahead (see
//! `BENCHMARKS.md`). On
//! [`Verdict::Reject`] it calls [`build_reject`] with a [`REJECT_BUF_LEN`]
//! buffer and sends the reply back where the packet came from. It calls
//! [`Conntrack::gc_slice`] periodically, swaps rules with
//! [`Conntrack::set_rules`], and serves `ovpnctl ct list|flush|stats|watch`
//! with [`Conntrack::for_each`], [`Conntrack::flush`], [`Conntrack::stats`]
//! and [`Conntrack::subscribe`]; the `Display` impls print what `conntrack
//! -L`, `-S` and `-E` print.
//!
//! # Rules file
//!
//! One statement per line; `#` starts a comment. Statements:
//!
//! * `policy accept` or `policy drop`: the verdict when no rule decides
//!   (default `accept`); at most once.
//! * a rule: zero or more matches, all of which must hold, then optionally a
//!   verdict (`accept`, `drop`, `reject`). Rules are tried in order; the first
//!   matching rule with a verdict decides. A rule without a verdict only
//!   counts (e.g. `from-peer cn "alice" counter`). `counter` and
//!   `comment "text"` are accepted anywhere and change nothing (every rule
//!   counts packets and bytes).
//!
//! Matches (values may be a single value, a comma list `a,b`, or a set
//! `{ a, b, c }`; `!=` before the values negates, `==` is allowed):
//!
//! | match | values |
//! |---|---|
//! | `ct state` | `new`, `established`, `related`, `invalid`, `untracked` |
//! | `ct direction` | `original`, `reply` |
//! | `ip saddr`, `ip daddr` | IPv4 address or prefix `10.8.0.0/24` (IPv4 only) |
//! | `ip6 saddr`, `ip6 daddr` | IPv6 address or prefix `fd00::/64` (IPv6 only) |
//! | `meta l4proto`, `ip protocol`, `ip6 nexthdr` | `tcp`, `udp`, `icmp`, `icmpv6`, `gre`, `esp`, `ah`, `sctp`, or 0-255 |
//! | `meta nfproto` | `ipv4`, `ipv6` |
//! | `tcp sport`, `tcp dport`, `udp sport`, `udp dport` | port `22` or range `8000-8080` (implies the protocol) |
//! | `th sport`, `th dport` | ports of TCP or UDP |
//! | `tcp flags` | `syn,ack` (all set), `== syn` (exactly), `syn / syn,ack` (masked) |
//! | `icmp type`, `icmpv6 type` | nftables names (`echo-request`, `destination-unreachable`, ...) or numbers |
//! | `icmp code`, `icmpv6 code` | 0-255 |
//! | `from-peer [cn NAMES \| peer-id IDS]` | the packet comes from a tunnel peer (optionally this one) |
//! | `to-peer [cn NAMES \| peer-id IDS]` | the packet goes to a tunnel peer (optionally this one) |
//! | `between-peers` | client-to-client: from a peer to a peer |
//! | `from-host`, `to-host` | the packet comes from / goes to the host (TUN) side |
//!
//! `from-peer` also matches client-to-client packets (they come from a peer);
//! add `to-host` to mean "from a peer into the host's networks only".
//! Common names are quoted strings (`cn "alice"`, `cn { "alice", "bob" }`);
//! peer ids are numbers or ranges.
//!
//! Verdicts: `accept`, `drop`, `reject` (TCP gets a RST, other packets ICMP /
//! ICMPv6 port unreachable), `reject with tcp reset` (the rule must match
//! TCP), `reject with icmpx port-unreachable|host-unreachable|no-route|admin-prohibited`.
//! A reject that must not be answered (an ICMP error, a RST, a multicast
//! destination, a later fragment) is a drop.
//!
//! Contradictions (`tcp dport 22 udp dport 53`, `ip saddr` with `ip6
//! daddr`, `from-host` with `from-peer`) and typos are errors with line and
//! column: `3:14: unknown keyword 'acept' ...`.
//!
//! ```text
//! policy drop
//! ct state established,related accept
//! ct state invalid drop
//! from-peer cn "alice" ip daddr 10.8.0.0/24 tcp dport 22 accept
//! between-peers tcp dport 80 reject
//! icmp type echo-request accept
//! icmpv6 type { echo-request, nd-neighbor-solicit } accept
//! from-peer peer-id 100-199 to-host udp dport { 53, 123 } accept
//! ```
//!
//! # TCP strictness
//!
//! See [`TcpConfig`]: by default out-of-window segments whose sequence number
//! is beyond the receiver's window, or which acknowledge data never sent, are
//! `ct state invalid`; retransmissions pass. `liberal` waives window checks;
//! `loose` (default on) picks up connections first seen mid-stream.
//!
//! # Fragments
//!
//! No reassembly: the first fragment is tracked; later fragments inherit its
//! verdict for `frag.timeout` seconds and are otherwise invalid, as are tiny
//! first fragments and fragments overlapping the transport header.

#![deny(missing_docs)]

mod arena;
pub mod build;
mod checksum;
mod config;
mod ctx;
mod entry;
mod events;
mod frag;
pub mod packet;
mod reject;
mod rules;
mod snapshot;
mod spin;
mod stats;
mod table;
mod tcp;
mod tracker;
mod tuple;
pub mod wire;

pub use config::{Config, ConfigError, FragConfig, TcpConfig, Timeouts};
pub use ctx::{CtState, NO_PEER, PacketCtx, Path, PeerRef, Timestamp};
pub use events::EventSubscription;
pub use packet::{Family, InvalidReason};
pub use reject::{REJECT_BUF_LEN, RejectError, RejectKind, build_reject};
pub use rules::{
    Action, IcmpxCode, LoadError, Policy, RejectWith, Rule, RuleCounters, RuleError, RuleSet,
};
pub use snapshot::{ConnSnapshot, CtEvent, DestroyReason, EventKind, ListFormat, list_footer};
pub use stats::{Counters, Stats};
pub use tcp::TcpState;
pub use tracker::{BatchItem, Conntrack, DropReason, GcReport, MemoryUsage, Outcome, Verdict};
pub use tuple::{CtDir, Tuple, TupleL4};
