//! Counters: striped per worker thread, summed on read.
//!
//! Each thread that calls into the tracker gets a number on first use; the
//! first 64 threads own a stripe each (a cache-line-padded block of counters),
//! which only they write, with a plain load and store: no locked instruction,
//! no cache line shared between cores. Threads beyond 64 share stripes and
//! use atomic adds. [`crate::Conntrack::stats`] adds the stripes up.
//! `conntrack -S` prints one line per CPU; we print one per stripe (one per
//! worker thread).

use crate::packet::InvalidReason;
use crossbeam_utils::CachePadded;
use serde::Serialize;
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Number of counter stripes; threads beyond this share stripes.
pub(crate) const STRIPES: usize = 64;

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's number (stripe `n % STRIPES`, owned exclusively when `n < STRIPES`).
#[inline]
pub(crate) fn stripe() -> usize {
    THREAD.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
        s.set(v);
        v
    })
}

/// Add to a counter of stripe `thread`: a plain store when the stripe is the
/// thread's own, an atomic add when shared.
#[inline]
pub(crate) fn bump(c: &AtomicU64, thread: usize, n: u64) {
    if thread < STRIPES {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    } else {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy)]
        #[repr(usize)]
        pub(crate) enum Ctr { $($name),* }

        const N_COUNTERS: usize = [$(stringify!($name)),*].len();

        /// One set of counters (a stripe, or the sum of all).
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
        pub struct Counters {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl Counters {
            fn from_slice(a: &[u64; N_COUNTERS]) -> Counters {
                let mut it = a.iter().copied();
                Counters { $( $name: it.next().unwrap_or(0), )* }
            }

            /// (name, value) pairs in the order `conntrack -S` style output prints them.
            pub fn fields(&self) -> [(&'static str, u64); N_COUNTERS] {
                [$( (stringify!($name), self.$name) ),*]
            }

            fn add(&mut self, o: &Counters) {
                $( self.$name += o.$name; )*
            }
        }
    };
}

counters! {
    /// Packets that matched an existing entry.
    found,
    /// Packets with `ct state invalid` (malformed ones included).
    invalid,
    /// TCP segments let through without updating the state (retransmissions,
    /// segments that may belong to a connection we are out of sync with).
    ignore,
    /// Entries created.
    insert,
    /// Packets of new connections dropped because the table was full.
    drop,
    /// Unassured entries evicted to make room.
    early_drop,
    /// ICMP errors that could not be matched to a connection.
    error,
    /// ICMP errors matched to a connection (`ct state related`).
    related,
    /// Neighbour discovery / MLD packets, never tracked.
    untracked,
    /// Entries removed because they timed out.
    expired,
    /// Entries removed by a TCP reset of an unanswered connection or a reopening SYN.
    closed,
    /// Entries removed by flush.
    flushed,
    /// Packets dropped before tracking: unparsable IP layer.
    malformed,
    /// First fragments recorded.
    frag_first,
    /// Later fragments that inherited their first fragment's verdict.
    frag_matched,
    /// Fragment records evicted because the fragment table was full.
    frag_evicted,
    /// Packets accepted.
    accept,
    /// Packets dropped by a rule.
    rule_drop,
    /// Packets dropped by the default policy.
    policy_drop,
    /// Packets rejected (a reply packet was requested).
    reject,
}

pub(crate) struct Stripe {
    c: [AtomicU64; N_COUNTERS],
    invalid: [AtomicU64; InvalidReason::COUNT],
}

/// A thread's stripe of one tracker.
#[derive(Clone, Copy)]
pub(crate) struct StripeRef<'a> {
    s: &'a Stripe,
    thread: usize,
}

impl StripeRef<'_> {
    #[inline]
    pub(crate) fn inc(&self, c: Ctr) {
        bump(&self.s.c[c as usize], self.thread, 1);
    }

    #[inline]
    pub(crate) fn add(&self, c: Ctr, n: u64) {
        if n != 0 {
            bump(&self.s.c[c as usize], self.thread, n);
        }
    }

    #[inline]
    pub(crate) fn invalid(&self, r: InvalidReason) {
        self.inc(Ctr::invalid);
        bump(&self.s.invalid[r as usize], self.thread, 1);
    }
}

impl Stripe {
    fn new() -> Stripe {
        Stripe {
            c: std::array::from_fn(|_| AtomicU64::new(0)),
            invalid: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn read(&self) -> Counters {
        let mut a = [0u64; N_COUNTERS];
        for (dst, src) in a.iter_mut().zip(self.c.iter()) {
            *dst = src.load(Ordering::Relaxed);
        }
        Counters::from_slice(&a)
    }
}

pub(crate) struct StatStripes {
    stripes: Box<[CachePadded<Stripe>]>,
}

impl StatStripes {
    pub(crate) fn new() -> StatStripes {
        StatStripes {
            stripes: (0..STRIPES)
                .map(|_| CachePadded::new(Stripe::new()))
                .collect(),
        }
    }

    #[inline]
    pub(crate) fn get(&self, thread: usize) -> StripeRef<'_> {
        StripeRef {
            s: &self.stripes[thread % STRIPES],
            thread,
        }
    }

    pub(crate) fn snapshot(&self, entries: usize, max_entries: usize) -> Stats {
        let mut per_cpu = Vec::new();
        let mut total = Counters::default();
        let mut reasons = [0u64; InvalidReason::COUNT];
        for (i, s) in self.stripes.iter().enumerate() {
            let c = s.read();
            if c != Counters::default() {
                total.add(&c);
                per_cpu.push((i, c));
            }
            for (r, v) in reasons.iter_mut().zip(s.invalid.iter()) {
                *r += v.load(Ordering::Relaxed);
            }
        }
        Stats {
            entries,
            max_entries,
            per_cpu,
            total,
            invalid_reasons: InvalidReason::ALL
                .iter()
                .zip(reasons)
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (*r, n))
                .collect(),
        }
    }
}

/// Counters of the tracker, as `ovpnctl ct stats` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Entries in the table now (`conntrack -C`).
    pub entries: usize,
    /// Configured bound.
    pub max_entries: usize,
    /// Counters per stripe (worker thread) that has counted anything, by stripe number.
    pub per_cpu: Vec<(usize, Counters)>,
    /// Sum over all stripes.
    pub total: Counters,
    /// Invalid packets by reason (only reasons seen).
    #[serde(serialize_with = "ser_reasons")]
    pub invalid_reasons: Vec<(InvalidReason, u64)>,
}

fn ser_reasons<S: serde::Serializer>(v: &[(InvalidReason, u64)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(v.len()))?;
    for (r, n) in v {
        m.serialize_entry(r.name(), n)?;
    }
    m.end()
}

impl fmt::Display for Counters {
    /// `found=1 invalid=0 ...` with a trailing space, like `conntrack -S`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, v) in self.fields() {
            write!(f, "{name}={v} ")?;
        }
        Ok(())
    }
}

impl fmt::Display for Stats {
    /// One `cpu=N   \tfound=...` line per stripe, as `conntrack -S` prints per CPU.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.per_cpu.is_empty() {
            return writeln!(f, "cpu={:<4}\t{}", 0, Counters::default());
        }
        for (cpu, c) in &self.per_cpu {
            writeln!(f, "cpu={cpu:<4}\t{c}")?;
        }
        Ok(())
    }
}

impl Stats {
    /// The summary and per-reason breakdown printed by `ovpnctl ct stats -v`.
    pub fn detail(&self) -> String {
        let mut s = format!(
            "entries={} max={}\ntotal   \t{}\n",
            self.entries, self.max_entries, self.total
        );
        for (r, n) in &self.invalid_reasons {
            s.push_str(&format!("invalid {}={} ({})\n", r.name(), n, r));
        }
        s
    }
}
