//! Shared harness for end-to-end tests: network namespaces, a throwaway PKI, stock OpenVPN
//! processes and traffic checks.
//!
//! Everything here works on real parts: `ip netns` namespaces joined by veth pairs, the
//! `openssl` and `openvpn` command-line tools, and sockets created inside the namespaces.
//! Every resource is owned by a guard that removes it on `Drop` (namespaces, processes,
//! temporary directories), and every wait is bounded in time.
//!
//! Names: each test passes its own prefix (a few letters). Namespaces are named
//! `{prefix}-{pid}-{n}`, so parallel tests and parallel test processes never collide, and
//! namespaces left behind by a killed process are removed by the next one that uses the same
//! prefix. Interfaces are created directly inside the namespaces, never in the root one.
//!
//! A typical test:
//! ```no_run
//! use e2e::*;
//! use std::time::Duration;
//! # fn main() -> anyhow::Result<()> {
//! if !require_root() || !require_tools(&["openvpn", "ping"]) { return Ok(()); }
//! let server_ns = Netns::new("ex")?;
//! let client_ns = Netns::new("ex")?;
//! let link = VethPair::new(&server_ns, &client_ns, &VethConfig::default())?;
//! let pki = Pki::new("ex", KeyAlgo::EcP256)?;
//! let work = TempDir::new("ex")?;
//! let server = StockOpenvpn::start(&server_ns, &OvpnConfig::server(&pki).tls_crypt(&pki),
//!     work.path(), "server", Duration::from_secs(20))?;
//! let client_cfg = OvpnConfig::client(&pki, "client1", link.a_v4.into())?.tls_crypt(&pki);
//! let client = StockOpenvpn::start(&client_ns, &client_cfg, work.path(), "client",
//!     Duration::from_secs(30))?;
//! ping(&client_ns, "10.8.0.1".parse()?, &PingOpts::default())?.expect_success()?;
//! # drop((server, client)); Ok(()) }
//! ```

mod netns;
mod openvpn;
mod ours;
mod pki;
mod proc;
mod process;
mod stream;
mod tools;
mod traffic;

pub use netns::{IfStats, Netns, Offloads, VethConfig, VethPair};
pub use openvpn::{OvpnConfig, OvpnRole, Proto, StockOpenvpn, TlsWrap};
pub use ours::{Ours, bin_dir, make_world_readable, require_ours};
pub use pki::{CertPair, KeyAlgo, Pki};
pub use proc::{TempDir, cpu_seconds, run_timeout, stop_child};
pub use process::NsProcess;
pub use stream::{fill_stream, stream_mismatch};
pub use tools::{ensure_tools, find_tool, require_root, require_tools};
pub use traffic::{
    BulkOpts, BulkReport, Iperf3Opts, Iperf3Result, Iperf3Server, PingOpts, PingResult,
    UdpStreamOpts, UdpStreamReport, bulk_tcp_transfer, iperf3_client, ping, udp_stream,
};
