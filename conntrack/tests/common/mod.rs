//! Shared helpers for the integration tests: a client/server pair and a
//! clock, speaking through the public API only.
#![allow(dead_code, clippy::too_many_arguments)]

use conntrack::build::{self, Tcp};
use conntrack::{
    Config, ConnSnapshot, Conntrack, Outcome, PacketCtx, PeerRef, RuleSet, TcpState, Timestamp,
};
use std::net::IpAddr;

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// A client (tunnel peer "alice", id 1) talking to a server on the host side.
pub struct Pair {
    pub ct: Conntrack,
    pub now: u64,
    pub client: IpAddr,
    pub server: IpAddr,
    pub cport: u16,
    pub sport: u16,
}

impl Pair {
    pub fn new() -> Pair {
        Pair::with(Config::default(), RuleSet::default())
    }

    pub fn with(cfg: Config, rules: RuleSet) -> Pair {
        Pair::v(cfg, rules, "10.8.0.2", "192.0.2.10")
    }

    pub fn v(cfg: Config, rules: RuleSet, client: &str, server: &str) -> Pair {
        Pair {
            ct: Conntrack::with_rules(cfg, rules).expect("config"),
            now: 1_000_000,
            client: ip(client),
            server: ip(server),
            cport: 40000,
            sport: 22,
        }
    }

    pub fn ctx_c2s(&self) -> PacketCtx<'static> {
        PacketCtx::from_peer(PeerRef::new(1, "alice"), Timestamp::from_millis(self.now))
    }

    pub fn ctx_s2c(&self) -> PacketCtx<'static> {
        PacketCtx::to_peer(PeerRef::new(1, "alice"), Timestamp::from_millis(self.now))
    }

    pub fn tcp_pkt(
        &self,
        from_client: bool,
        flags: u8,
        seq: u32,
        ack: u32,
        win: u16,
        len: usize,
        opts: &[u8],
    ) -> Vec<u8> {
        let (s, d, sp, dp) = if from_client {
            (self.client, self.server, self.cport, self.sport)
        } else {
            (self.server, self.client, self.sport, self.cport)
        };
        Tcp {
            sport: sp,
            dport: dp,
            seq,
            ack,
            flags,
            win,
            options: opts.to_vec(),
            payload: vec![0x61; len],
        }
        .packet(s, d)
    }

    pub fn c2s(&self, flags: u8, seq: u32, ack: u32, len: usize) -> Outcome {
        let p = self.tcp_pkt(true, flags, seq, ack, 64000, len, &[]);
        self.ct.track_detailed(&p, &self.ctx_c2s())
    }

    pub fn s2c(&self, flags: u8, seq: u32, ack: u32, len: usize) -> Outcome {
        let p = self.tcp_pkt(false, flags, seq, ack, 64000, len, &[]);
        self.ct.track_detailed(&p, &self.ctx_s2c())
    }

    pub fn send(&self, from_client: bool, pkt: &[u8]) -> Outcome {
        let ctx = if from_client {
            self.ctx_c2s()
        } else {
            self.ctx_s2c()
        };
        self.ct.track_detailed(pkt, &ctx)
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
    }

    pub fn entries(&self) -> Vec<ConnSnapshot> {
        self.ct.dump(Timestamp::from_millis(self.now))
    }

    pub fn only(&self) -> ConnSnapshot {
        let v = self.entries();
        assert_eq!(v.len(), 1, "expected one entry, have {v:#?}");
        v.into_iter().next().expect("one entry")
    }

    pub fn state(&self) -> Option<TcpState> {
        self.only().tcp_state
    }

    /// Client ISN 1000, server ISN 5000; returns after the handshake.
    pub fn handshake(&self) {
        self.c2s(SYN, 1000, 0, 0);
        self.s2c(SYN | ACK, 5000, 1001, 0);
        self.c2s(ACK, 1001, 5001, 0);
    }
}

pub fn udp(src: &str, dst: &str, sport: u16, dport: u16, len: usize) -> Vec<u8> {
    build::udp(ip(src), ip(dst), sport, dport, &vec![0x55; len])
}
