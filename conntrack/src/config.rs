//! Tracker configuration: table size, timeouts and TCP strictness.
//!
//! Defaults are netfilter's (the `net.netfilter.nf_conntrack_*` sysctls), so
//! a ruleset behaves here as it would on a Linux router.

use serde::{Deserialize, Serialize};

/// Per-protocol timeouts in seconds (netfilter's defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// `nf_conntrack_tcp_timeout_syn_sent` (120).
    pub tcp_syn_sent: u32,
    /// `nf_conntrack_tcp_timeout_syn_recv` (60).
    pub tcp_syn_recv: u32,
    /// `nf_conntrack_tcp_timeout_established` (432000, five days).
    pub tcp_established: u32,
    /// `nf_conntrack_tcp_timeout_fin_wait` (120).
    pub tcp_fin_wait: u32,
    /// `nf_conntrack_tcp_timeout_close_wait` (60).
    pub tcp_close_wait: u32,
    /// `nf_conntrack_tcp_timeout_last_ack` (30).
    pub tcp_last_ack: u32,
    /// `nf_conntrack_tcp_timeout_time_wait` (120).
    pub tcp_time_wait: u32,
    /// `nf_conntrack_tcp_timeout_close` (10).
    pub tcp_close: u32,
    /// Simultaneous open, SYN seen both ways (120).
    pub tcp_syn_sent2: u32,
    /// `nf_conntrack_tcp_timeout_max_retrans` (300): after too many retransmissions.
    pub tcp_max_retrans: u32,
    /// `nf_conntrack_tcp_timeout_unacknowledged` (300): while data is unacknowledged.
    pub tcp_unacknowledged: u32,
    /// `nf_conntrack_udp_timeout` (30): unreplied or short-lived UDP.
    pub udp: u32,
    /// `nf_conntrack_udp_timeout_stream` (120): UDP seen both ways for over 2 s.
    pub udp_stream: u32,
    /// `nf_conntrack_icmp_timeout` (30).
    pub icmp: u32,
    /// `nf_conntrack_icmpv6_timeout` (30).
    pub icmpv6: u32,
    /// `nf_conntrack_generic_timeout` (600): every other protocol.
    pub generic: u32,
}

impl Timeouts {
    /// Longest timeout accepted, in seconds (49.7 days): an entry keeps its
    /// expiry as 32-bit milliseconds. Netfilter's own limit is lower (its
    /// timeouts are 32-bit jiffies, 24.8 days at `HZ=1000`).
    pub const MAX: u32 = u32::MAX / 1000;
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: 120,
            tcp_syn_recv: 60,
            tcp_established: 432_000,
            tcp_fin_wait: 120,
            tcp_close_wait: 60,
            tcp_last_ack: 30,
            tcp_time_wait: 120,
            tcp_close: 10,
            tcp_syn_sent2: 120,
            tcp_max_retrans: 300,
            tcp_unacknowledged: 300,
            udp: 30,
            udp_stream: 120,
            icmp: 30,
            icmpv6: 30,
            generic: 600,
        }
    }
}

/// How strictly TCP segments are checked against the tracked windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpConfig {
    /// `false` (default, netfilter's `tcp_be_liberal=0`): a segment outside
    /// the window is `ct state invalid` when its sequence number is beyond the
    /// receiver's advertised window or it acknowledges data never sent; a
    /// segment that is merely old (retransmitted data, stale ACK) is let
    /// through as established but does not move the window.
    /// `true` (`tcp_be_liberal=1`): window failures are accepted; only invalid
    /// state transitions, bad flag combinations and RSTs below the last
    /// acknowledged sequence are invalid.
    pub liberal: bool,
    /// Pick up connections already established when first seen (an ACK with no
    /// SYN creates an ESTABLISHED entry, windows checked liberally until both
    /// sides are seen). netfilter's `tcp_loose`, default `true`; set `false`
    /// to require a SYN for every new connection.
    pub loose: bool,
    /// Identical retransmissions tolerated before the timeout drops to
    /// `tcp_max_retrans` (netfilter's `tcp_max_retrans`, 3).
    pub max_retrans: u8,
    /// Accept RSTs below the last acknowledged sequence number instead of
    /// marking them invalid (`tcp_ignore_invalid_rst`, default `false`).
    pub ignore_invalid_rst: bool,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            liberal: false,
            loose: true,
            max_retrans: 3,
            ignore_invalid_rst: false,
        }
    }
}

/// Fragment tracking: first fragments are tracked, later fragments inherit
/// the first fragment's verdict while its record lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FragConfig {
    /// Most first-fragment records kept (oldest evicted first within a shard).
    pub max_entries: usize,
    /// Seconds a record lives after its first fragment (netfilter's ipfrag_time, 30).
    pub timeout: u32,
}

impl Default for FragConfig {
    fn default() -> Self {
        FragConfig {
            max_entries: 4096,
            timeout: 30,
        }
    }
}

/// Configuration of a [`crate::Conntrack`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Most connections tracked (netfilter's `nf_conntrack_max`). When full,
    /// an unassured entry of the same shard is evicted (early drop), else the
    /// new connection's packet is dropped.
    pub max_entries: usize,
    /// Number of shards (rounded up to a power of two). `None` picks one from
    /// `max_entries`: about 256 entries per shard, at least 64 and at most
    /// 512 shards (more would only make the shard headers outgrow the L2
    /// cache: with 512, two workers meet on a shard about once in 512 packets).
    pub shards: Option<usize>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// TCP strictness.
    pub tcp: TcpConfig,
    /// Fragment handling.
    pub frag: FragConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_entries: 262_144,
            shards: None,
            timeouts: Timeouts::default(),
            tcp: TcpConfig::default(),
            frag: FragConfig::default(),
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `max_entries` is zero or above 2^28.
    #[error("max_entries must be between 1 and 268435456, got {0}")]
    MaxEntries(usize),
    /// `shards` is zero or above 65536.
    #[error("shards must be between 1 and 65536, got {0}")]
    Shards(usize),
    /// A timeout of zero seconds.
    #[error("timeout {0} must be at least 1 second")]
    ZeroTimeout(&'static str),
    /// A timeout above [`Timeouts::MAX`].
    #[error("timeout {0} must be at most {max} seconds, got {1}", max = Timeouts::MAX)]
    LongTimeout(&'static str, u32),
    /// The table's address space could not be reserved.
    #[error("cannot reserve memory for the connection table: {0}")]
    Memory(String),
}

impl Config {
    /// Largest table accepted.
    pub const MAX_ENTRIES_LIMIT: usize = 1 << 28;

    /// Check every value; [`crate::Conntrack::new`] calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_entries == 0 || self.max_entries > Self::MAX_ENTRIES_LIMIT {
            return Err(ConfigError::MaxEntries(self.max_entries));
        }
        if let Some(s) = self.shards
            && (s == 0 || s > 65536)
        {
            return Err(ConfigError::Shards(s));
        }
        let t = &self.timeouts;
        for (name, v) in [
            ("tcp_syn_sent", t.tcp_syn_sent),
            ("tcp_syn_recv", t.tcp_syn_recv),
            ("tcp_established", t.tcp_established),
            ("tcp_fin_wait", t.tcp_fin_wait),
            ("tcp_close_wait", t.tcp_close_wait),
            ("tcp_last_ack", t.tcp_last_ack),
            ("tcp_time_wait", t.tcp_time_wait),
            ("tcp_close", t.tcp_close),
            ("tcp_syn_sent2", t.tcp_syn_sent2),
            ("tcp_max_retrans", t.tcp_max_retrans),
            ("tcp_unacknowledged", t.tcp_unacknowledged),
            ("udp", t.udp),
            ("udp_stream", t.udp_stream),
            ("icmp", t.icmp),
            ("icmpv6", t.icmpv6),
            ("generic", t.generic),
            ("frag.timeout", self.frag.timeout),
        ] {
            if v == 0 {
                return Err(ConfigError::ZeroTimeout(name));
            }
            if v > Timeouts::MAX {
                return Err(ConfigError::LongTimeout(name, v));
            }
        }
        Ok(())
    }

    /// The shard count actually used.
    pub fn shard_count(&self) -> usize {
        let want = self
            .shards
            .unwrap_or_else(|| (self.max_entries / 256).clamp(64, 512));
        want.clamp(1, 65536).next_power_of_two()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_bounded_both_ways() {
        assert_eq!(Config::default().validate(), Ok(()));
        let mut c = Config::default();
        c.timeouts.udp = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroTimeout("udp")));
        c.timeouts.udp = Timeouts::MAX;
        assert_eq!(c.validate(), Ok(()));
        c.timeouts.tcp_established = Timeouts::MAX + 1;
        let e = c.validate().unwrap_err();
        assert_eq!(
            e,
            ConfigError::LongTimeout("tcp_established", Timeouts::MAX + 1)
        );
        assert!(e.to_string().contains("at most 4294967 seconds"), "{e}");
    }
}
