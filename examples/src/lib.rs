//! Demo and benchmark tools.
//!
//! [`demo`] is the one-command demo (`dco-demo`): our server against a stock OpenVPN 2.6
//! client and our own client in two network namespaces, with a results table.
//! [`bench`] is the iperf3 comparison (`dco-bench`): it builds two namespaces, runs the
//! underlay, stock OpenVPN, our daemon and userspace WireGuard side by side, and reports
//! medians, a CSV/JSON of every run and an SVG chart, plus a packet-rate benchmark.
//! [`ipc`] is a blocking handle on a daemon's IPC socket; [`cleanup`] removes what a run
//! created when it is interrupted.

pub mod bench;
pub mod cleanup;
pub mod demo;
pub mod ipc;
