//! Demo and benchmark tools.
//!
//! [`bench`] is the iperf3 comparison (`dco-bench`): it builds two namespaces, runs the
//! underlay, stock OpenVPN, our daemon and userspace WireGuard side by side, and reports
//! medians, a CSV/JSON of every run and an SVG chart.

pub mod bench;
