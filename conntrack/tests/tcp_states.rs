//! TCP state machine: every transition of the tracked handshake, data and
//! close, and the corner cases (simultaneous open, RST in and out of window,
//! retransmitted SYN, FIN/ACK races, pick-up, reopening).

mod common;

use common::*;
use conntrack::{Config, CtDir, CtState, InvalidReason, RuleSet, TcpConfig, TcpState, Verdict};

#[test]
fn three_way_handshake() {
    let p = Pair::new();
    let o = p.c2s(SYN, 1000, 0, 0);
    assert_eq!((o.state, o.dir), (CtState::New, Some(CtDir::Original)));
    let e = p.only();
    assert_eq!(e.tcp_state, Some(TcpState::SynSent));
    assert_eq!(e.timeout, 120);
    assert!(!e.seen_reply && !e.assured);

    let o = p.s2c(SYN | ACK, 5000, 1001, 0);
    assert_eq!((o.state, o.dir), (CtState::Established, Some(CtDir::Reply)));
    let e = p.only();
    assert_eq!(e.tcp_state, Some(TcpState::SynRecv));
    assert_eq!(e.timeout, 60);
    assert!(e.seen_reply && !e.assured);

    let o = p.c2s(ACK, 1001, 5001, 0);
    assert_eq!(o.state, CtState::Established);
    let e = p.only();
    assert_eq!(e.tcp_state, Some(TcpState::Established));
    assert_eq!(e.timeout, 432_000);
    assert!(e.assured);
    assert_eq!((e.orig_packets, e.reply_packets), (2, 1));
}

#[test]
fn data_then_orderly_close() {
    let p = Pair::new();
    p.handshake();
    // Data both ways; unacknowledged data shortens the timeout to 300 s.
    assert_eq!(
        p.c2s(ACK | PSH, 1001, 5001, 100).state,
        CtState::Established
    );
    assert_eq!(p.only().timeout, 300);
    p.s2c(ACK | PSH, 5001, 1101, 50);
    p.c2s(ACK, 1101, 5051, 0);
    assert_eq!(p.only().timeout, 432_000);

    // Client closes: FIN_WAIT, the server's ACK: CLOSE_WAIT.
    p.c2s(FIN | ACK, 1101, 5051, 0);
    assert_eq!(
        (p.state(), p.only().timeout),
        (Some(TcpState::FinWait), 120)
    );
    p.s2c(ACK, 5051, 1102, 0);
    assert_eq!(
        (p.state(), p.only().timeout),
        (Some(TcpState::CloseWait), 60)
    );
    // Server closes: LAST_ACK, the final ACK: TIME_WAIT.
    p.s2c(FIN | ACK, 5051, 1102, 0);
    assert_eq!((p.state(), p.only().timeout), (Some(TcpState::LastAck), 30));
    p.c2s(ACK, 1102, 5052, 0);
    assert_eq!(
        (p.state(), p.only().timeout),
        (Some(TcpState::TimeWait), 120)
    );
    // A retransmitted last ACK keeps TIME_WAIT.
    p.c2s(ACK, 1102, 5052, 0);
    assert_eq!(p.state(), Some(TcpState::TimeWait));
}

#[test]
fn fin_ack_race_both_close_at_once() {
    let p = Pair::new();
    p.handshake();
    // Both FINs cross on the wire.
    p.c2s(FIN | ACK, 1001, 5001, 0);
    assert_eq!(p.state(), Some(TcpState::FinWait));
    p.s2c(FIN | ACK, 5001, 1001, 0);
    assert_eq!(p.state(), Some(TcpState::LastAck));
    // Each side acknowledges the other's FIN.
    p.s2c(ACK, 5002, 1002, 0);
    assert_eq!(p.state(), Some(TcpState::TimeWait));
    p.c2s(ACK, 1002, 5002, 0);
    assert_eq!(p.state(), Some(TcpState::TimeWait));
}

#[test]
fn fin_with_ack_of_peer_fin_in_one_segment() {
    let p = Pair::new();
    p.handshake();
    p.c2s(FIN | ACK, 1001, 5001, 0);
    // The server acknowledges the FIN and sends its own in one segment.
    p.s2c(FIN | ACK, 5001, 1002, 0);
    assert_eq!(p.state(), Some(TcpState::LastAck));
    p.c2s(ACK, 1002, 5002, 0);
    assert_eq!(p.state(), Some(TcpState::TimeWait));
}

#[test]
fn simultaneous_open() {
    let p = Pair::new();
    // Both ends send SYN.
    assert_eq!(p.c2s(SYN, 1000, 0, 0).state, CtState::New);
    assert_eq!(p.s2c(SYN, 5000, 0, 0).state, CtState::Established);
    assert_eq!(p.state(), Some(TcpState::SynSent2));
    // Both answer with SYN/ACK.
    p.c2s(SYN | ACK, 1000, 5001, 0);
    assert_eq!(p.state(), Some(TcpState::SynRecv));
    p.s2c(SYN | ACK, 5000, 1001, 0);
    assert_eq!(p.state(), Some(TcpState::SynRecv));
    // The reply direction's ACK completes the simultaneous open.
    p.s2c(ACK, 5001, 1001, 0);
    assert_eq!(p.state(), Some(TcpState::Established));
    p.c2s(ACK, 1001, 5001, 0);
    let e = p.only();
    assert_eq!(e.tcp_state, Some(TcpState::Established));
    assert!(e.assured);
}

#[test]
fn retransmitted_syn_neither_counts_nor_refreshes() {
    let mut p = Pair::new();
    p.c2s(SYN, 1000, 0, 0);
    p.advance(30_000);
    let o = p.c2s(SYN, 1000, 0, 0);
    assert_eq!(o.state, CtState::New);
    let e = p.only();
    assert_eq!(e.tcp_state, Some(TcpState::SynSent));
    // Timer still counts down from the first SYN: 120 - 30.
    assert_eq!(e.timeout, 90);
    assert_eq!(e.orig_packets, 1);
    // The server answers the retransmission normally.
    p.s2c(SYN | ACK, 5000, 1001, 0);
    assert_eq!(p.state(), Some(TcpState::SynRecv));
}

#[test]
fn retransmitted_syn_ack_is_ignored_not_invalid() {
    let p = Pair::new();
    p.c2s(SYN, 1000, 0, 0);
    p.s2c(SYN | ACK, 5000, 1001, 0);
    let o = p.s2c(SYN | ACK, 5000, 1001, 0);
    assert_eq!(o.state, CtState::Established);
    assert_eq!(o.invalid, None);
    assert_eq!(p.state(), Some(TcpState::SynRecv));
    assert_eq!(p.ct.stats().total.ignore, 1);
}

#[test]
fn rst_in_window_closes() {
    let p = Pair::new();
    p.handshake();
    p.c2s(ACK | PSH, 1001, 5001, 10);
    p.s2c(ACK, 5001, 1011, 0);
    let o = p.s2c(RST | ACK, 5001, 1011, 0);
    assert_eq!(o.invalid, None);
    let e = p.only();
    assert_eq!(e.tcp_state, Some(TcpState::Close));
    assert_eq!(e.timeout, 10);
}

#[test]
fn rst_below_last_ack_is_invalid_and_keeps_state() {
    let p = Pair::new();
    p.handshake();
    p.c2s(ACK | PSH, 1001, 5001, 1000);
    p.s2c(ACK, 5001, 2001, 0);
    // The client's side acked up to 5001 from the server; a RST claiming to be
    // from the server with a sequence below that is forged or stale.
    let o = p.s2c(RST, 4000, 0, 0);
    assert_eq!(o.state, CtState::Invalid);
    assert_eq!(o.invalid, Some(InvalidReason::TcpInvalidRst));
    assert_eq!(p.state(), Some(TcpState::Established));
}

#[test]
fn rst_far_beyond_window_is_invalid() {
    let p = Pair::new();
    p.handshake();
    let o = p.c2s(RST, 1001 + 10_000_000, 0, 0);
    assert_eq!(o.state, CtState::Invalid);
    assert_eq!(o.invalid, Some(InvalidReason::TcpSeqOverWindow));
    assert_eq!(p.state(), Some(TcpState::Established));
}

#[test]
fn rst_with_inexact_sequence_keeps_established_for_challenge_ack() {
    let p = Pair::new();
    p.handshake();
    p.c2s(ACK | PSH, 1001, 5001, 100);
    p.s2c(ACK, 5001, 1101, 0);
    // In window but not exactly at the expected sequence (RFC 5961).
    let o = p.s2c(RST, 5100, 0, 0);
    assert_eq!(o.invalid, None);
    let e = p.only();
    assert_eq!(e.tcp_state, Some(TcpState::Established));
    assert_eq!(e.timeout, 10);
    // The challenge ACK refreshes the entry. The RST's sequence moved the
    // server's tracked end to 5100, which the client never acknowledges, so
    // (as in netfilter) the unacknowledged-data timeout applies.
    p.c2s(ACK, 1101, 5001, 0);
    let e = p.only();
    assert_eq!(e.tcp_state, Some(TcpState::Established));
    assert_eq!(e.timeout, 300);
}

#[test]
fn rst_answering_syn_removes_the_entry() {
    let p = Pair::new();
    p.c2s(SYN, 1000, 0, 0);
    let o = p.s2c(RST | ACK, 0, 1001, 0);
    assert_eq!(o.verdict, Verdict::Accept);
    assert!(p.entries().is_empty());
    assert_eq!(p.ct.stats().total.closed, 1);
}

#[test]
fn syn_ack_without_syn_is_invalid_and_not_tracked() {
    let p = Pair::new();
    let o = p.s2c(SYN | ACK, 5000, 1001, 0);
    assert_eq!(o.state, CtState::Invalid);
    assert_eq!(o.invalid, Some(InvalidReason::TcpInvalidNew));
    assert!(p.entries().is_empty());
}

#[test]
fn ack_before_syn_ack_is_invalid() {
    let p = Pair::new();
    p.c2s(SYN, 1000, 0, 0);
    let o = p.c2s(ACK, 1001, 5001, 0);
    assert_eq!(o.invalid, Some(InvalidReason::TcpInvalidState));
    assert_eq!(p.state(), Some(TcpState::SynSent));
}

#[test]
fn mid_stream_pickup_with_loose() {
    let p = Pair::new();
    let o = p.c2s(ACK | PSH, 77_000, 99_000, 100);
    assert_eq!(o.state, CtState::New);
    let e = p.only();
    assert_eq!(e.tcp_state, Some(TcpState::Established));
    // No reply seen yet: short timeout, not assured.
    assert_eq!(e.timeout, 300);
    assert!(!e.assured);
    p.s2c(ACK, 99_000, 77_100, 0);
    p.c2s(ACK, 77_100, 99_000, 0);
    let e = p.only();
    assert!(e.assured);
    assert_eq!(e.timeout, 432_000);
}

#[test]
fn mid_stream_pickup_refused_without_loose() {
    let cfg = Config {
        tcp: TcpConfig {
            loose: false,
            ..TcpConfig::default()
        },
        ..Config::default()
    };
    let p = Pair::with(cfg, RuleSet::default());
    let o = p.c2s(ACK, 77_000, 99_000, 0);
    assert_eq!(o.invalid, Some(InvalidReason::TcpInvalidNew));
    assert!(p.entries().is_empty());
}

#[test]
fn bad_flag_combinations_are_invalid() {
    let p = Pair::new();
    for flags in [SYN | FIN, 0, FIN, SYN | RST, FIN | PSH | 0x20] {
        let o = p.c2s(flags, 1000, 0, 0);
        assert_eq!(o.state, CtState::Invalid, "flags {flags:#x}");
        assert_eq!(
            o.invalid,
            Some(InvalidReason::TcpBadFlags),
            "flags {flags:#x}"
        );
    }
    assert!(p.entries().is_empty());
}

#[test]
fn data_beyond_receiver_window_is_invalid() {
    let p = Pair::new();
    p.handshake();
    // The server advertised 64000 bytes; one megabyte ahead is out of window.
    let o = p.c2s(ACK | PSH, 1001 + 1_000_000, 5001, 100);
    assert_eq!(o.invalid, Some(InvalidReason::TcpSeqOverWindow));
    // Acknowledging data the server never sent.
    let o = p.c2s(ACK, 1001, 5001 + 500_000, 0);
    assert_eq!(o.invalid, Some(InvalidReason::TcpAckOverWindow));
    assert_eq!(p.state(), Some(TcpState::Established));
}

#[test]
fn old_retransmission_passes_but_is_ignored() {
    let p = Pair::new();
    p.handshake();
    // More data than the receiver's window (64000) so old data falls below it.
    for i in 0..100u32 {
        p.c2s(ACK | PSH, 1001 + i * 1000, 5001, 1000);
        p.s2c(ACK, 5001, 1001 + (i + 1) * 1000, 0);
    }
    // A copy of the first segment, long acknowledged and far below the window.
    let before = p.ct.stats().total.ignore;
    let o = p.c2s(ACK | PSH, 1001, 5001, 1000);
    assert_eq!(o.state, CtState::Established);
    assert_eq!(o.invalid, None);
    assert_eq!(p.ct.stats().total.ignore, before + 1);
}

#[test]
fn liberal_mode_accepts_out_of_window() {
    let cfg = Config {
        tcp: TcpConfig {
            liberal: true,
            ..TcpConfig::default()
        },
        ..Config::default()
    };
    let p = Pair::with(cfg, RuleSet::default());
    p.handshake();
    let o = p.c2s(ACK | PSH, 1001 + 1_000_000, 5001, 100);
    assert_eq!(o.invalid, None);
    assert_eq!(o.state, CtState::Established);
}

#[test]
fn window_scaling_allows_large_windows() {
    let p = Pair::new();
    // NOP + window scale 7 on both SYNs: windows are 64000 << 7.
    let ws = [1u8, 3, 3, 7];
    p.send(true, &p.tcp_pkt(true, SYN, 1000, 0, 64000, 0, &ws));
    p.send(
        false,
        &p.tcp_pkt(false, SYN | ACK, 5000, 1001, 64000, 0, &ws),
    );
    p.c2s(ACK, 1001, 5001, 0);
    // SYN windows are never scaled; the server's first plain ACK announces
    // 64000 << 7 = 8 MB.
    p.send(false, &p.tcp_pkt(false, ACK, 5001, 1001, 64000, 0, &[]));
    // 4 MB ahead is within it.
    let o = p.c2s(ACK | PSH, 1001 + 4_000_000, 5001, 100);
    assert_eq!(o.invalid, None);
    // Without scaling the same segment is out of window.
    let q = Pair::new();
    q.handshake();
    q.s2c(ACK, 5001, 1001, 0);
    let o = q.c2s(ACK | PSH, 1001 + 4_000_000, 5001, 100);
    assert_eq!(o.invalid, Some(InvalidReason::TcpSeqOverWindow));
}

#[test]
fn syn_in_time_wait_reopens() {
    let p = Pair::new();
    p.handshake();
    p.c2s(FIN | ACK, 1001, 5001, 0);
    p.s2c(FIN | ACK, 5001, 1002, 0);
    p.c2s(ACK, 1002, 5002, 0);
    assert_eq!(p.state(), Some(TcpState::TimeWait));
    let old_id = p.only().id;
    let o = p.c2s(SYN, 90_000, 0, 0);
    assert_eq!(o.state, CtState::New);
    let e = p.only();
    assert_eq!(e.tcp_state, Some(TcpState::SynSent));
    assert_ne!(e.id, old_id);
    assert_eq!(e.orig_packets, 1);
}

#[test]
fn server_syn_in_time_wait_reopens_with_roles_swapped() {
    let p = Pair::new();
    p.handshake();
    p.c2s(FIN | ACK, 1001, 5001, 0);
    p.s2c(FIN | ACK, 5001, 1002, 0);
    p.c2s(ACK, 1002, 5002, 0);
    // The server reuses the tuple to connect back.
    let o = p.s2c(SYN, 123_456, 0, 0);
    assert_eq!(o.state, CtState::New);
    let e = p.only();
    assert_eq!(e.tcp_state, Some(TcpState::SynSent));
    assert_eq!(e.original.src, p.server);
}

#[test]
fn syn_on_established_is_ignored() {
    let p = Pair::new();
    p.handshake();
    let o = p.c2s(SYN, 777, 0, 0);
    assert_eq!(o.state, CtState::Established);
    assert_eq!(p.state(), Some(TcpState::Established));
}

#[test]
fn repeated_retransmissions_shorten_the_timeout() {
    let p = Pair::new();
    p.handshake();
    p.c2s(ACK | PSH, 1001, 5001, 100);
    p.s2c(ACK, 5001, 1101, 0);
    // The same ACK segment four times: retrans counter reaches 3.
    for _ in 0..4 {
        p.c2s(ACK, 1101, 5001, 0);
    }
    assert_eq!(p.only().timeout, 300);
}

#[test]
fn zero_window_shortens_the_timeout() {
    let p = Pair::new();
    p.handshake();
    let z = p.tcp_pkt(false, ACK, 5001, 1001, 0, 0, &[]);
    p.send(false, &z);
    assert_eq!(p.only().timeout, 300);
}

#[test]
fn out_of_window_fin_after_peer_fin_shortens_assured_timeout() {
    let p = Pair::new();
    p.handshake();
    // Data flows far ahead so the window moves.
    p.c2s(FIN | ACK, 1001, 5001, 0);
    // A FIN from the server far out of window, answering the client's FIN:
    // invalid, but an assured entry then drops to the unacknowledged timeout.
    let o = p.s2c(FIN | ACK, 5001 + 50_000_000, 1002, 0);
    assert_eq!(o.state, CtState::Invalid);
    assert!(p.only().timeout <= 300);
}

#[test]
fn counters_follow_directions() {
    let p = Pair::new();
    p.handshake();
    p.c2s(ACK | PSH, 1001, 5001, 100);
    p.s2c(ACK | PSH, 5001, 1101, 200);
    let e = p.only();
    assert_eq!((e.orig_packets, e.reply_packets), (3, 2));
    // 40-byte headers plus payload.
    assert_eq!(e.orig_bytes, 40 * 3 + 100);
    assert_eq!(e.reply_bytes, 40 * 2 + 200);
}

#[test]
fn entries_expire() {
    let mut p = Pair::new();
    p.c2s(SYN, 1000, 0, 0);
    p.advance(119_000);
    assert_eq!(p.entries().len(), 1);
    p.advance(1_000);
    assert!(p.entries().is_empty());
    // A packet for the expired flow starts a new connection.
    let o = p.c2s(SYN, 2000, 0, 0);
    assert_eq!(o.state, CtState::New);
    assert_eq!(p.ct.stats().total.expired, 1);
}
