//! The packet-rate benchmark: a generator blasts UDP datagrams with `sendmmsg` for a fixed
//! time and the tool counts what came out on the far side.
//!
//! Directions:
//! - `reverse` (TUN → encrypt → wire): plain UDP sent from the server namespace to the
//!   client's tunnel address enters the server's TUN device; the server encrypts and sends.
//! - `forward` (wire → decrypt → TUN): pre-encrypted P_DATA_V2 packets for a configured
//!   peer, sent from the client namespace straight at the server's UDP port; the server
//!   decrypts and writes them to its TUN device. The packets come from
//!   [`super::datav2::DataV2Source`]; only our daemon lets the bench install the peer and
//!   key for them ([`super::pps_ours`]), so this direction exists for `ours` only.
//! - `underlay`: the same generator against the bare veth pair, to show the generator's
//!   own ceiling.
//!
//! Counting: for `underlay` and `stock`, packets arriving on the far veth end (interface
//! counters; neither sends GSO super-packets); for `ours`, packets reaching the receiving
//! socket (see [`super::pps_ours`]), with the daemon's own counters beside them.

use anyhow::{Context, Result};
use e2e::{Netns, OvpnConfig, StockOpenvpn, VethConfig};
use serde::Serialize;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::machine::Machine;
use super::pps_ours::OursPps;
use super::report::Stats;
use super::signal;
use super::sut::Topology;
use crate::ipc::StatsDelta;

/// Where the generator's packets come from. Implementations fill caller-owned buffers so
/// the send loop allocates nothing per packet.
pub trait PacketSource: Send {
    /// What the packets are, for the report.
    fn describe(&self) -> String;
    /// Writes the next packets (UDP payloads) into `batch`, resizing each buffer to its
    /// packet's length, and returns how many it wrote (≤ `batch.len()`).
    fn next_batch(&mut self, batch: &mut [Vec<u8>]) -> Result<usize>;
}

/// Plain datagrams of `len` bytes carrying a 64-bit sequence number (for the reverse
/// direction and the underlay).
#[derive(Debug)]
pub struct PlainPayload {
    len: usize,
    seq: u64,
}

impl PlainPayload {
    /// Datagrams of `len` (≥ 8) bytes.
    pub fn new(len: usize) -> PlainPayload {
        PlainPayload {
            len: len.max(8),
            seq: 0,
        }
    }
}

impl PacketSource for PlainPayload {
    fn describe(&self) -> String {
        format!("plain UDP, {} B payload", self.len)
    }

    fn next_batch(&mut self, batch: &mut [Vec<u8>]) -> Result<usize> {
        for buf in batch.iter_mut() {
            if buf.len() != self.len {
                buf.resize(self.len, 0x5a);
            }
            buf[..8].copy_from_slice(&self.seq.to_be_bytes());
            self.seq += 1;
        }
        Ok(batch.len())
    }
}

/// What the generator did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct GenReport {
    /// Datagrams the kernel accepted.
    pub sent: u64,
    /// sendmmsg calls that failed (ENOBUFS, EAGAIN ...).
    pub send_errors: u64,
    /// How long it ran.
    pub elapsed_s: f64,
}

/// Sends packets from `source` on the connected socket `sock` with `sendmmsg`, `batch` at a
/// time, until `duration` has passed.
pub fn blast(
    sock: &UdpSocket,
    source: &mut dyn PacketSource,
    duration: Duration,
    batch: usize,
) -> Result<GenReport> {
    let batch = batch.clamp(1, 1024);
    let mut bufs: Vec<Vec<u8>> = vec![Vec::with_capacity(2048); batch];
    let mut iovs: Vec<libc::iovec> = vec![
        libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0
        };
        batch
    ];
    // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; batch];
    let fd = sock.as_raw_fd();
    let start = Instant::now();
    let mut rep = GenReport::default();
    while start.elapsed() < duration && !signal::interrupted() {
        let n = source.next_batch(&mut bufs)?;
        if n == 0 {
            break;
        }
        for i in 0..n {
            iovs[i] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr().cast(),
                iov_len: bufs[i].len(),
            };
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        let mut off = 0;
        while off < n {
            // SAFETY: msgs[off..n] point at iovecs that point into `bufs`, all alive and
            // unmoved for the duration of the call; the socket is connected, so no address.
            let r = unsafe {
                libc::sendmmsg(fd, msgs[off..n].as_mut_ptr(), (n - off) as libc::c_uint, 0)
            };
            if r < 0 {
                rep.send_errors += 1;
                // Queue full: the packets of this batch are dropped at the source, not
                // counted as sent; move on to a fresh batch.
                break;
            }
            off += r as usize;
            rep.sent += r as u64;
        }
    }
    rep.elapsed_s = start.elapsed().as_secs_f64();
    Ok(rep)
}

/// Settings of a packet-rate run.
#[derive(Debug, Clone)]
pub struct PpsConfig {
    /// Systems: `underlay`, `stock`, `ours`.
    pub systems: Vec<String>,
    /// Directions: `reverse`, `forward`.
    pub directions: Vec<String>,
    /// UDP payload sizes.
    pub sizes: Vec<usize>,
    /// Worker counts to try (our daemon only).
    pub workers: Vec<u32>,
    /// Seconds per measurement.
    pub duration: Duration,
    /// Repetitions.
    pub reps: u32,
    /// Data cipher for the OpenVPN systems.
    pub cipher: String,
    /// Veth settings.
    pub veth: VethConfig,
    /// Namespace prefix.
    pub prefix: String,
    /// Where `dco-control` is looked for.
    pub dco_bin_dir: PathBuf,
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct PpsSample {
    /// System.
    pub system: String,
    /// Direction.
    pub direction: String,
    /// Worker threads of the system (1 for stock OpenVPN).
    pub workers: u32,
    /// Payload size.
    pub size: usize,
    /// Repetition.
    pub rep: u32,
    /// Generator's report.
    pub generator: GenReport,
    /// Packets counted on the far side.
    pub delivered: u64,
    /// Packets per second delivered.
    pub delivered_pps: f64,
    /// Payload Gbit/s delivered.
    pub delivered_gbps: f64,
    /// Where `delivered` was counted.
    pub counted_at: String,
    /// Our daemon's counters over the measurement (ours only).
    pub daemon: Option<StatsDelta>,
    /// Packets through our daemon's TUN device (ours only; a GSO super-packet counts once).
    pub tun_packets: Option<u64>,
}

/// Result of a packet-rate run.
#[derive(Debug, Clone, Serialize)]
pub struct PpsReport {
    /// The machine.
    pub machine: Machine,
    /// Every sample.
    pub samples: Vec<PpsSample>,
    /// (system, direction, why) that did not run.
    pub unavailable: Vec<(String, String, String)>,
}

/// Runs the packet-rate benchmark.
pub fn run_pps(cfg: &PpsConfig) -> Result<PpsReport> {
    signal::install();
    super::toolchain::ensure_debian_tools(false)?;
    let mut machine = Machine::describe();
    machine.add_tool_version("openvpn", "openvpn", &["--version"]);
    let mut report = PpsReport {
        machine,
        samples: Vec::new(),
        unavailable: Vec::new(),
    };
    let topo = Topology::build(&cfg.prefix, &cfg.veth)?;
    for system in &cfg.systems {
        for direction in &cfg.directions {
            signal::check()?;
            let why_not = match (system.as_str(), direction.as_str()) {
                ("underlay", _) if direction != "forward" => None,
                ("underlay", _) => Some("the underlay has one direction; use `reverse`".to_string()),
                ("stock", "reverse") => None,
                ("stock", "forward") => Some("stock OpenVPN negotiates its keys in TLS, so no packets can be pre-encrypted for it".into()),
                ("ours", _) if super::sut::ours_available(&cfg.dco_bin_dir).is_err() => super::sut::ours_available(&cfg.dco_bin_dir).err(),
                ("ours", "forward" | "reverse") => None,
                _ => Some(format!("unknown system/direction {system}/{direction}")),
            };
            if let Some(why) = why_not {
                eprintln!("SKIP pps {system} {direction}: {why}");
                report
                    .unavailable
                    .push((system.clone(), direction.clone(), why));
                continue;
            }
            if system == "ours" {
                run_ours(cfg, &topo, direction, &mut report)?;
                continue;
            }
            let _tunnel = match system.as_str() {
                "stock" => Some(start_stock(&topo, &cfg.cipher)?),
                _ => None,
            };
            // (sender ns, destination, counter ns, counter interface)
            let (src_ns, dst, count_ns, count_if): (&Netns, SocketAddr, &Netns, String) =
                match system.as_str() {
                    "underlay" => (
                        &topo.client_ns,
                        SocketAddr::new(topo.link.a_v4.into(), 9),
                        &topo.server_ns,
                        topo.link.a_if.clone(),
                    ),
                    _ => (
                        &topo.server_ns,
                        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 8, 0, 2)), 9),
                        &topo.client_ns,
                        topo.link.b_if.clone(),
                    ),
                };
            for &size in &cfg.sizes {
                for rep in 0..cfg.reps {
                    signal::check()?;
                    eprintln!(
                        "pps {system} {direction} {size} B rep {}/{}",
                        rep + 1,
                        cfg.reps
                    );
                    let before = count_ns.if_stats(&count_if)?;
                    let duration = cfg.duration;
                    let generator = src_ns
                        .spawn_thread(move || {
                            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                            sock.connect(dst)?;
                            let mut src = PlainPayload::new(size);
                            blast(&sock, &mut src, duration, 64)
                        })?
                        .join()
                        .map_err(|_| anyhow::anyhow!("generator panicked"))??;
                    // Let queues drain before reading the far side's counter.
                    std::thread::sleep(Duration::from_millis(300));
                    let after = count_ns.if_stats(&count_if)?;
                    let delivered = after.since(&before).rx_packets;
                    let pps = delivered as f64 / generator.elapsed_s.max(1e-9);
                    report.samples.push(PpsSample {
                        system: system.clone(),
                        direction: if system == "underlay" {
                            "one-way".into()
                        } else {
                            direction.clone()
                        },
                        workers: 1,
                        size,
                        rep,
                        generator,
                        delivered,
                        delivered_pps: pps,
                        delivered_gbps: pps * size as f64 * 8.0 / 1e9,
                        counted_at: format!("{count_if} rx packets"),
                        daemon: None,
                        tun_packets: None,
                    });
                }
            }
        }
    }
    Ok(report)
}

/// Our daemon, one worker count after another, one direction.
fn run_ours(
    cfg: &PpsConfig,
    topo: &Topology,
    direction: &str,
    report: &mut PpsReport,
) -> Result<()> {
    for &workers in &cfg.workers {
        signal::check()?;
        let mut ours = OursPps::start(topo, &cfg.dco_bin_dir, workers, &cfg.cipher)
            .with_context(|| format!("starting dco-daemon with {workers} workers"))?;
        for &size in &cfg.sizes {
            for rep in 0..cfg.reps {
                signal::check()?;
                eprintln!(
                    "pps ours {direction} {workers} worker(s) {size} B rep {}/{}",
                    rep + 1,
                    cfg.reps
                );
                let m = if direction == "forward" {
                    ours.forward(size, cfg.duration)?
                } else {
                    ours.reverse(size, cfg.duration)?
                };
                let pps = m.delivered as f64 / m.generator.elapsed_s.max(1e-9);
                report.samples.push(PpsSample {
                    system: "ours".into(),
                    direction: direction.into(),
                    workers,
                    size,
                    rep,
                    generator: m.generator,
                    delivered: m.delivered,
                    delivered_pps: pps,
                    delivered_gbps: pps * size as f64 * 8.0 / 1e9,
                    counted_at: if direction == "forward" {
                        "sink socket behind the server's TUN (queued + dropped)".into()
                    } else {
                        "flow sockets in the client namespace (queued + dropped)".into()
                    },
                    daemon: Some(m.daemon),
                    tun_packets: Some(m.tun_packets),
                });
            }
        }
    }
    Ok(())
}

fn start_stock(topo: &Topology, cipher: &str) -> Result<(StockOpenvpn, StockOpenvpn)> {
    let pki = &topo.pki;
    let work = topo.work.path();
    let s = OvpnConfig::server(pki)
        .tls_crypt(pki)
        .data_ciphers(&[cipher]);
    let server = StockOpenvpn::start(
        &topo.server_ns,
        &s,
        work,
        "pps-server",
        Duration::from_secs(30),
    )?;
    let c = OvpnConfig::client(pki, "pps-client", topo.server_underlay())?
        .tls_crypt(pki)
        .data_ciphers(&[cipher]);
    let client = StockOpenvpn::start(
        &topo.client_ns,
        &c,
        work,
        "pps-client",
        Duration::from_secs(30),
    )?;
    topo.server_ns
        .wait_ping("10.8.0.2".parse()?, Duration::from_secs(20))
        .context("tunnel not passing traffic")?;
    Ok((client, server))
}

impl PpsReport {
    /// Markdown table of medians.
    pub fn markdown(&self) -> String {
        let mut m = format!("```\n{}```\n\n", self.machine.summary());
        m.push_str("| system | direction | workers | payload B | sent pps (generator) | delivered pps | delivered Gbit/s (payload) | delivered % |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
        let mut keys: Vec<(String, String, u32, usize)> = Vec::new();
        for s in &self.samples {
            let k = (s.system.clone(), s.direction.clone(), s.workers, s.size);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        for (sys, dir, w, size) in keys {
            let group: Vec<&PpsSample> = self
                .samples
                .iter()
                .filter(|s| {
                    s.system == sys && s.direction == dir && s.workers == w && s.size == size
                })
                .collect();
            let sent = Stats::of(
                group
                    .iter()
                    .map(|s| s.generator.sent as f64 / s.generator.elapsed_s.max(1e-9)),
            );
            let pps = Stats::of(group.iter().map(|s| s.delivered_pps));
            let gbps = Stats::of(group.iter().map(|s| s.delivered_gbps));
            let pct = Stats::of(
                group
                    .iter()
                    .map(|s| s.delivered as f64 * 100.0 / s.generator.sent.max(1) as f64),
            );
            let f = |s: Option<Stats>, d: usize| {
                s.map(|s| format!("{:.*}", d, s.median))
                    .unwrap_or_else(|| "–".into())
            };
            let _ = writeln!(
                m,
                "| {sys} | {dir} | {w} | {size} | {} | {} | {} | {} |",
                f(sent, 0),
                f(pps, 0),
                f(gbps, 3),
                f(pct, 1)
            );
        }
        let ours: Vec<&PpsSample> = self.samples.iter().filter(|s| s.daemon.is_some()).collect();
        if !ours.is_empty() {
            m.push_str("\nOur daemon's own counters over each measurement (medians): data packets decrypted (in) and encrypted (out), data packets it dropped (all reasons), packets through its TUN device (a GSO super-packet counts once):\n\n| direction | workers | payload B | daemon data in | daemon data out | daemon dropped | TUN packets | drop reasons (last rep) |\n|---|---:|---:|---:|---:|---:|---:|---|\n");
            let mut keys: Vec<(String, u32, usize)> = Vec::new();
            for s in &ours {
                let k = (s.direction.clone(), s.workers, s.size);
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            for (dir, w, size) in keys {
                let group: Vec<&&PpsSample> = ours
                    .iter()
                    .filter(|s| s.direction == dir && s.workers == w && s.size == size)
                    .collect();
                let med = |f: &dyn Fn(&StatsDelta) -> u64| {
                    Stats::of(
                        group
                            .iter()
                            .filter_map(|s| s.daemon.as_ref())
                            .map(|d| f(d) as f64),
                    )
                    .map(|s| format!("{:.0}", s.median))
                    .unwrap_or_else(|| "–".into())
                };
                let tun = Stats::of(group.iter().filter_map(|s| s.tun_packets).map(|v| v as f64))
                    .map(|s| format!("{:.0}", s.median))
                    .unwrap_or_else(|| "–".into());
                let reasons = group
                    .last()
                    .and_then(|s| s.daemon.as_ref())
                    .map(|d| {
                        d.drops
                            .iter()
                            .map(|(n, v)| format!("{n} {v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                let _ = writeln!(
                    m,
                    "| {dir} | {w} | {size} | {} | {} | {} | {tun} | {reasons} |",
                    med(&|d| d.data.0),
                    med(&|d| d.data.1),
                    med(&|d| d.dropped()),
                );
            }
        }
        if !self.unavailable.is_empty() {
            m.push_str("\nNot measured:\n\n");
        }
        for (sys, dir, why) in &self.unavailable {
            let _ = writeln!(m, "- {sys} {dir}: {why}");
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_payload_numbers_packets() {
        let mut src = PlainPayload::new(100);
        let mut batch = vec![Vec::new(); 3];
        assert_eq!(src.next_batch(&mut batch).unwrap(), 3);
        assert_eq!(src.next_batch(&mut batch).unwrap(), 3);
        assert!(batch.iter().all(|b| b.len() == 100));
        assert_eq!(u64::from_be_bytes(batch[2][..8].try_into().unwrap()), 5);
    }

    #[test]
    fn blast_sends_on_loopback() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let mut src = PlainPayload::new(64);
        let rep = blast(&tx, &mut src, Duration::from_millis(20), 16).unwrap();
        assert!(rep.sent > 0);
        let mut buf = [0u8; 128];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(n, 64);
        assert_eq!(u64::from_be_bytes(buf[..8].try_into().unwrap()), 0);
    }
}
