//! Traffic through the namespaces: ping, iperf3, a verified bulk TCP transfer and a
//! sequence-numbered UDP stream.

use anyhow::{Context, Result, bail};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::netns::Netns;
use crate::proc::stop_child;
use crate::stream::{fill_stream, stream_mismatch};
use crate::tools::ensure_tools;

// ---------------------------------------------------------------------------------------
// ping

/// Options for [`ping`].
#[derive(Debug, Clone)]
pub struct PingOpts {
    /// Echo requests to send.
    pub count: u32,
    /// Time between requests.
    pub interval: Duration,
    /// How long to wait for each reply.
    pub wait: Duration,
    /// ICMP payload size (`-s`); None keeps 56.
    pub size: Option<u32>,
    /// Forbid fragmentation (`-M do`).
    pub dont_fragment: bool,
}

impl Default for PingOpts {
    fn default() -> Self {
        PingOpts {
            count: 3,
            interval: Duration::from_millis(200),
            wait: Duration::from_secs(2),
            size: None,
            dont_fragment: false,
        }
    }
}

impl PingOpts {
    /// `count` requests, other settings default.
    pub fn count(count: u32) -> Self {
        PingOpts {
            count,
            ..Default::default()
        }
    }
}

/// What `ping` reported.
#[derive(Debug, Clone, PartialEq)]
pub struct PingResult {
    /// Requests sent.
    pub transmitted: u32,
    /// Replies received.
    pub received: u32,
    /// Loss in percent as ping computed it.
    pub loss_pct: f64,
    /// Round-trip times in ms (min, avg, max, mdev), when any reply came back.
    pub rtt_ms: Option<(f64, f64, f64, f64)>,
    /// ping's output, for error messages.
    pub output: String,
}

impl PingResult {
    /// Fails unless every request got a reply.
    pub fn expect_success(self) -> Result<PingResult> {
        if self.transmitted == 0 || self.received != self.transmitted {
            bail!(
                "ping expected to succeed: {}/{} replies\n{}",
                self.received,
                self.transmitted,
                self.output.trim()
            );
        }
        Ok(self)
    }

    /// Fails if any reply came back.
    pub fn expect_failure(self) -> Result<PingResult> {
        if self.received != 0 {
            bail!(
                "ping expected to fail but got {}/{} replies\n{}",
                self.received,
                self.transmitted,
                self.output.trim()
            );
        }
        Ok(self)
    }

    /// Average round-trip time in ms.
    pub fn rtt_avg_ms(&self) -> Option<f64> {
        self.rtt_ms.map(|r| r.1)
    }

    fn parse(output: &str) -> PingResult {
        let mut r = PingResult {
            transmitted: 0,
            received: 0,
            loss_pct: 100.0,
            rtt_ms: None,
            output: output.to_string(),
        };
        for line in output.lines() {
            if line.contains("packets transmitted") {
                for part in line.split(',') {
                    let part = part.trim();
                    let num = part.split_whitespace().next().unwrap_or("");
                    if part.ends_with("packets transmitted") {
                        r.transmitted = num.parse().unwrap_or(0);
                    } else if part.ends_with("received") {
                        r.received = num.parse().unwrap_or(0);
                    } else if part.ends_with("packet loss") {
                        r.loss_pct = num.trim_end_matches('%').parse().unwrap_or(100.0);
                    }
                }
            } else if let Some(rest) = line
                .strip_prefix("rtt min/avg/max/mdev = ")
                .or_else(|| line.strip_prefix("round-trip min/avg/max = "))
            {
                let vals: Vec<f64> = rest
                    .trim_end_matches(" ms")
                    .split('/')
                    .filter_map(|v| v.trim().parse().ok())
                    .collect();
                if vals.len() >= 3 {
                    r.rtt_ms = Some((
                        vals[0],
                        vals[1],
                        vals[2],
                        vals.get(3).copied().unwrap_or(0.0),
                    ));
                }
            }
        }
        r
    }
}

/// Runs `ping` from `ns` to `dst` (IPv4 or IPv6) and parses the summary. Loss is not an
/// error; use [`PingResult::expect_success`] / [`PingResult::expect_failure`].
pub fn ping(ns: &Netns, dst: IpAddr, opts: &PingOpts) -> Result<PingResult> {
    ensure_tools(&["ping"])?;
    let mut args = vec![
        "ping".to_string(),
        "-n".into(),
        "-q".into(),
        "-c".into(),
        opts.count.to_string(),
        "-i".into(),
        format!("{:.3}", opts.interval.as_secs_f64()),
        "-W".into(),
        format!("{:.3}", opts.wait.as_secs_f64()),
    ];
    if let Some(size) = opts.size {
        args.extend(["-s".into(), size.to_string()]);
    }
    if opts.dont_fragment {
        args.extend(["-M".into(), "do".into()]);
    }
    args.push(dst.to_string());
    let limit = opts.interval * opts.count + opts.wait + Duration::from_secs(10);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ns.run_output(&argv, limit)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(PingResult::parse(&text))
}

impl Netns {
    /// Pings `dst` once every 200 ms until a reply comes back or `timeout` passes.
    pub fn wait_ping(&self, dst: IpAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let opts = PingOpts {
            count: 1,
            wait: Duration::from_millis(500),
            ..Default::default()
        };
        loop {
            let r = ping(self, dst, &opts)?;
            if r.received > 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "[{}] no ping reply from {dst} within {timeout:?}: {}",
                    self.name(),
                    r.output.trim()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

// ---------------------------------------------------------------------------------------
// iperf3

/// An `iperf3 -s` server in a namespace, killed on drop.
#[derive(Debug)]
pub struct Iperf3Server {
    child: Child,
    port: u16,
}

impl Iperf3Server {
    /// Starts `iperf3 -s -p PORT` in `ns` and waits (≤ 10 s) until it listens.
    pub fn start(ns: &Netns, port: u16) -> Result<Iperf3Server> {
        ensure_tools(&["iperf3", "ss"])?;
        let child = ns
            .command("iperf3")
            .args(["-s", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning iperf3 -s")?;
        let mut server = Iperf3Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = ns.run(&["ss", "-Htln", &format!("sport = :{port}")])?;
            if !out.trim().is_empty() {
                return Ok(server);
            }
            if server.child.try_wait()?.is_some() || Instant::now() >= deadline {
                bail!("iperf3 server on port {port} did not start listening");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Iperf3Server {
    fn drop(&mut self) {
        let _ = stop_child(&mut self.child, Duration::from_secs(2));
    }
}

/// Options for [`iperf3_client`].
#[derive(Debug, Clone)]
pub struct Iperf3Opts {
    /// Test length (`-t`).
    pub duration: Duration,
    /// Parallel streams (`-P`).
    pub streams: u32,
    /// Server sends, client receives (`-R`).
    pub reverse: bool,
    /// UDP at this offered rate in bit/s (`-u -b`); None = TCP.
    pub udp_rate: Option<u64>,
    /// Buffer / datagram length (`-l`).
    pub len: Option<u32>,
    /// Seconds to omit at the start (`-O`).
    pub omit: u32,
}

impl Default for Iperf3Opts {
    fn default() -> Self {
        Iperf3Opts {
            duration: Duration::from_secs(10),
            streams: 1,
            reverse: false,
            udp_rate: None,
            len: None,
            omit: 0,
        }
    }
}

/// The numbers of one iperf3 run (from `-J`).
#[derive(Debug, Clone, PartialEq)]
pub struct Iperf3Result {
    /// Bits per second as the sender counted.
    pub sent_bps: f64,
    /// Bits per second the receiver got (goodput).
    pub received_bps: f64,
    /// TCP retransmissions (sender side).
    pub retransmits: Option<u64>,
    /// UDP datagrams lost, in percent.
    pub lost_percent: Option<f64>,
    /// UDP jitter.
    pub jitter_ms: Option<f64>,
    /// CPU use of the client host process in percent.
    pub cpu_local_pct: Option<f64>,
    /// CPU use of the server host process in percent.
    pub cpu_remote_pct: Option<f64>,
    /// Whole JSON report.
    pub json: serde_json::Value,
}

impl Iperf3Result {
    /// Parses iperf3's `-J` report.
    pub fn from_json(text: &str) -> Result<Iperf3Result> {
        let json: serde_json::Value = serde_json::from_str(text).context("parsing iperf3 JSON")?;
        if let Some(err) = json.get("error").and_then(|e| e.as_str()) {
            bail!("iperf3: {err}");
        }
        let end = json.get("end").context("iperf3 JSON has no `end`")?;
        let f = |v: Option<&serde_json::Value>, k: &str| {
            v.and_then(|x| x.get(k)).and_then(|x| x.as_f64())
        };
        let udp = end.get("sum").is_some_and(|s| s.get("jitter_ms").is_some());
        let (sent_bps, received_bps, lost, jitter) = if udp {
            let sum = end.get("sum");
            let sent = f(end.get("sum_sent"), "bits_per_second")
                .or_else(|| f(sum, "bits_per_second"))
                .unwrap_or(0.0);
            let lost =
                f(end.get("sum_received"), "lost_percent").or_else(|| f(sum, "lost_percent"));
            let received = f(end.get("sum_received"), "bits_per_second")
                .unwrap_or_else(|| sent * (1.0 - lost.unwrap_or(0.0) / 100.0));
            let jitter = f(end.get("sum_received"), "jitter_ms").or_else(|| f(sum, "jitter_ms"));
            (sent, received, lost, jitter)
        } else {
            (
                f(end.get("sum_sent"), "bits_per_second").context("no sum_sent")?,
                f(end.get("sum_received"), "bits_per_second").context("no sum_received")?,
                None,
                None,
            )
        };
        let retransmits = end
            .get("sum_sent")
            .and_then(|s| s.get("retransmits"))
            .and_then(|r| r.as_u64());
        let cpu = end.get("cpu_utilization_percent");
        Ok(Iperf3Result {
            sent_bps,
            received_bps,
            retransmits: if udp { None } else { retransmits },
            lost_percent: lost,
            jitter_ms: jitter,
            cpu_local_pct: f(cpu, "host_total"),
            cpu_remote_pct: f(cpu, "remote_total"),
            json,
        })
    }
}

/// Runs `iperf3 -c SERVER -J` from `ns` against an [`Iperf3Server`] and parses the result.
/// Bounded by the test duration plus 20 s.
pub fn iperf3_client(
    ns: &Netns,
    server: IpAddr,
    port: u16,
    opts: &Iperf3Opts,
) -> Result<Iperf3Result> {
    ensure_tools(&["iperf3"])?;
    let secs = opts.duration.as_secs_f64().max(1.0);
    let mut args = vec![
        "iperf3".to_string(),
        "-c".into(),
        server.to_string(),
        "-p".into(),
        port.to_string(),
        "-t".into(),
        format!("{secs:.0}"),
        "-J".into(),
        "--connect-timeout".into(),
        "5000".into(),
        "-P".into(),
        opts.streams.max(1).to_string(),
    ];
    if opts.reverse {
        args.push("-R".into());
    }
    if let Some(rate) = opts.udp_rate {
        args.extend(["-u".into(), "-b".into(), rate.to_string()]);
    }
    if let Some(len) = opts.len {
        args.extend(["-l".into(), len.to_string()]);
    }
    if opts.omit > 0 {
        args.extend(["-O".into(), opts.omit.to_string()]);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let limit = Duration::from_secs_f64(secs + opts.omit as f64 + 20.0);
    let out = ns.run_output(&argv, limit)?;
    let text = String::from_utf8_lossy(&out.stdout);
    Iperf3Result::from_json(&text).with_context(|| {
        format!(
            "iperf3 {} ({}); stderr: {}",
            args[1..].join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

// ---------------------------------------------------------------------------------------
// Verified bulk TCP transfer

/// Options for [`bulk_tcp_transfer`].
#[derive(Debug, Clone)]
pub struct BulkOpts {
    /// Bytes to send.
    pub bytes: u64,
    /// Seed of the pseudo-random stream.
    pub seed: u64,
    /// TCP port the receiver listens on.
    pub port: u16,
    /// Limit for the whole transfer.
    pub timeout: Duration,
}

impl Default for BulkOpts {
    fn default() -> Self {
        BulkOpts {
            bytes: 16 << 20,
            seed: 0x5eed,
            port: 5201,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Result of a verified transfer (only returned when every byte matched).
#[derive(Debug, Clone, PartialEq)]
pub struct BulkReport {
    /// Bytes received and verified.
    pub bytes: u64,
    /// From connect to the receiver's acknowledgement.
    pub elapsed: Duration,
}

impl BulkReport {
    /// Goodput in bit/s.
    pub fn bps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

const BULK_CHUNK: usize = 64 * 1024;

/// Sends `opts.bytes` of a seeded pseudo-random stream over TCP from `sender` to
/// `receiver_addr` (an address inside `receiver`), where every byte is compared with the
/// expected stream as it arrives. Fails on any difference (with its offset), a short
/// stream, or time running out.
pub fn bulk_tcp_transfer(
    sender: &Netns,
    receiver: &Netns,
    receiver_addr: IpAddr,
    opts: &BulkOpts,
) -> Result<BulkReport> {
    let deadline = Instant::now() + opts.timeout;
    let bind: SocketAddr = (unspecified(receiver_addr), opts.port).into();
    let listener =
        receiver.in_ns(move || TcpListener::bind(bind).with_context(|| format!("bind {bind}")))?;
    listener.set_nonblocking(true)?;
    let o = opts.clone();
    let rx = std::thread::spawn(move || -> Result<u64> {
        let (mut s, _) = loop {
            match listener.accept() {
                Ok(c) => break c,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        bail!("receiver: no connection before the deadline");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        };
        s.set_nonblocking(false)?;
        let mut buf = vec![0u8; BULK_CHUNK];
        let mut scratch = Vec::with_capacity(BULK_CHUNK);
        let mut got: u64 = 0;
        loop {
            s.set_read_timeout(Some(remaining(deadline)?))?;
            let n = s.read(&mut buf).context("receiver read")?;
            if n == 0 {
                break;
            }
            if got + n as u64 > o.bytes {
                bail!("receiver: more than the {} bytes sent arrived", o.bytes);
            }
            if let Some(i) = stream_mismatch(o.seed, got, &buf[..n], &mut scratch) {
                bail!(
                    "receiver: byte {} differs from what was sent",
                    got + i as u64
                );
            }
            got += n as u64;
        }
        if got != o.bytes {
            bail!("receiver: stream ended after {got} of {} bytes", o.bytes);
        }
        s.write_all(&got.to_be_bytes())?;
        Ok(got)
    });

    let o = opts.clone();
    let target: SocketAddr = (receiver_addr, opts.port).into();
    let tx = sender.spawn_thread(move || -> Result<Duration> {
        let start = Instant::now();
        let mut s =
            TcpStream::connect_timeout(&target, remaining(deadline)?.min(Duration::from_secs(10)))
                .with_context(|| format!("connect {target}"))?;
        let mut buf = vec![0u8; BULK_CHUNK];
        let mut sent: u64 = 0;
        while sent < o.bytes {
            let n = (o.bytes - sent).min(BULK_CHUNK as u64) as usize;
            fill_stream(o.seed, sent, &mut buf[..n]);
            s.set_write_timeout(Some(remaining(deadline)?))?;
            s.write_all(&buf[..n]).context("sender write")?;
            sent += n as u64;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        let mut ack = [0u8; 8];
        s.set_read_timeout(Some(remaining(deadline)?))?;
        s.read_exact(&mut ack)
            .context("sender: no acknowledgement from the receiver")?;
        if u64::from_be_bytes(ack) != o.bytes {
            bail!(
                "receiver acknowledged {} bytes, sent {}",
                u64::from_be_bytes(ack),
                o.bytes
            );
        }
        Ok(start.elapsed())
    })?;
    let tx = tx
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))?;
    let rx = rx
        .join()
        .map_err(|_| anyhow::anyhow!("receiver thread panicked"))?;
    let bytes = rx?;
    let elapsed = tx?;
    Ok(BulkReport { bytes, elapsed })
}

fn remaining(deadline: Instant) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("time limit reached");
    }
    Ok(left)
}

fn unspecified(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

// ---------------------------------------------------------------------------------------
// Sequence-numbered UDP stream

/// Options for [`udp_stream`].
#[derive(Debug, Clone)]
pub struct UdpStreamOpts {
    /// Datagrams to send.
    pub count: u64,
    /// UDP payload length (≥ 24: header + sequence number).
    pub payload_len: usize,
    /// Send rate in datagrams per second; None = as fast as the socket takes them.
    pub rate_pps: Option<u32>,
    /// Seed of the payload stream.
    pub seed: u64,
    /// UDP port the receiver listens on.
    pub port: u16,
    /// How long the receiver waits after the sender finished for stragglers.
    pub linger: Duration,
    /// Limit for the whole run.
    pub timeout: Duration,
}

impl Default for UdpStreamOpts {
    fn default() -> Self {
        UdpStreamOpts {
            count: 5000,
            payload_len: 1000,
            rate_pps: Some(10_000),
            seed: 0xd00d,
            port: 5301,
            linger: Duration::from_millis(800),
            timeout: Duration::from_secs(60),
        }
    }
}

/// What the receiver saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpStreamReport {
    /// Datagrams the sender sent.
    pub sent: u64,
    /// Datagrams received (including duplicates).
    pub received: u64,
    /// Distinct sequence numbers received.
    pub unique: u64,
    /// Sequence numbers never received.
    pub lost: u64,
    /// Datagrams whose sequence number had been received before.
    pub duplicates: u64,
    /// Datagrams that arrived after a higher sequence number.
    pub reordered: u64,
    /// Datagrams with a bad header, sequence number or payload.
    pub corrupted: u64,
}

impl UdpStreamReport {
    /// Fails unless nothing was lost, duplicated or corrupted (reordering is allowed).
    pub fn expect_perfect(self) -> Result<UdpStreamReport> {
        if self.lost != 0 || self.duplicates != 0 || self.corrupted != 0 || self.unique != self.sent
        {
            bail!("UDP stream not delivered intact: {self:?}");
        }
        Ok(self)
    }

    /// Fails when more than `max_loss_pct` percent was lost, or anything was duplicated or
    /// corrupted.
    pub fn expect_loss_below(self, max_loss_pct: f64) -> Result<UdpStreamReport> {
        let loss = self.lost as f64 * 100.0 / self.sent.max(1) as f64;
        if loss > max_loss_pct || self.duplicates != 0 || self.corrupted != 0 {
            bail!("UDP stream: {loss:.2}% lost (limit {max_loss_pct}%) or damaged: {self:?}");
        }
        Ok(self)
    }
}

const UDP_MAGIC: u32 = 0x6463_6f75; // "dcou"

/// Sends `opts.count` datagrams `[magic u32][run u32][seq u64][stream bytes]` from `sender`
/// to `receiver_addr` and reports lost, duplicate, reordered and corrupted datagrams as the
/// receiver in `receiver` saw them.
pub fn udp_stream(
    sender: &Netns,
    receiver: &Netns,
    receiver_addr: IpAddr,
    opts: &UdpStreamOpts,
) -> Result<UdpStreamReport> {
    if opts.payload_len < 24 || opts.payload_len > 65507 {
        bail!("payload_len must be 24..=65507");
    }
    let deadline = Instant::now() + opts.timeout;
    let bind: SocketAddr = (unspecified(receiver_addr), opts.port).into();
    let sock = receiver
        .in_ns(move || UdpSocket::bind(bind).with_context(|| format!("bind udp {bind}")))?;
    let run_id: u32 =
        std::process::id() ^ (Instant::now().elapsed().subsec_nanos()) ^ opts.port as u32;
    let done = Arc::new(AtomicBool::new(false));
    let done_rx = done.clone();
    let o = opts.clone();
    let rx = std::thread::spawn(move || -> Result<UdpStreamReport> {
        let mut seen = vec![0u64; (o.count as usize).div_ceil(64)];
        let mut r = UdpStreamReport {
            sent: 0,
            received: 0,
            unique: 0,
            lost: 0,
            duplicates: 0,
            reordered: 0,
            corrupted: 0,
        };
        let mut highest: Option<u64> = None;
        let mut buf = vec![0u8; 65536];
        let mut scratch = Vec::new();
        let mut done_at: Option<Instant> = None;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        loop {
            if done_at.is_none() && done_rx.load(Ordering::Acquire) {
                done_at = Some(Instant::now());
            }
            if done_at.is_some_and(|t| t.elapsed() >= o.linger) || Instant::now() >= deadline {
                break;
            }
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let d = &buf[..n];
            if n < 16 || u32::from_be_bytes([d[0], d[1], d[2], d[3]]) != UDP_MAGIC {
                r.corrupted += 1;
                continue;
            }
            if u32::from_be_bytes([d[4], d[5], d[6], d[7]]) != run_id {
                continue; // a straggler from another run on the same port
            }
            r.received += 1;
            let mut s8 = [0u8; 8];
            s8.copy_from_slice(&d[8..16]);
            let seq = u64::from_be_bytes(s8);
            if seq >= o.count
                || n != o.payload_len
                || stream_mismatch(o.seed, seq * o.payload_len as u64, &d[16..], &mut scratch)
                    .is_some()
            {
                r.corrupted += 1;
                continue;
            }
            let (w, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
            if seen[w] & bit != 0 {
                r.duplicates += 1;
                continue;
            }
            seen[w] |= bit;
            r.unique += 1;
            match highest {
                Some(h) if seq < h => r.reordered += 1,
                _ => highest = Some(seq),
            }
        }
        Ok(r)
    });

    let o = opts.clone();
    let target: SocketAddr = (receiver_addr, opts.port).into();
    let tx = sender.spawn_thread(move || -> Result<u64> {
        let sock = UdpSocket::bind((unspecified(target.ip()), 0))?;
        sock.connect(target)?;
        let mut pkt = vec![0u8; o.payload_len];
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < o.count {
            if Instant::now() >= deadline {
                bail!("sender: time limit reached after {sent} datagrams");
            }
            if let Some(pps) = o.rate_pps {
                let due = start + Duration::from_secs_f64(sent as f64 / pps.max(1) as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            pkt[0..4].copy_from_slice(&UDP_MAGIC.to_be_bytes());
            pkt[4..8].copy_from_slice(&run_id.to_be_bytes());
            pkt[8..16].copy_from_slice(&sent.to_be_bytes());
            fill_stream(o.seed, sent * o.payload_len as u64, &mut pkt[16..]);
            match sock.send(&pkt) {
                Ok(_) => sent += 1,
                // A full queue (ENOBUFS) or ICMP errors: retry shortly, the datagram is not sent.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::ECONNREFUSED)
                    ) =>
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => return Err(anyhow::Error::from(e).context("sender send")),
            }
        }
        Ok(sent)
    })?;
    let sent = tx
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"));
    done.store(true, Ordering::Release);
    let report = rx
        .join()
        .map_err(|_| anyhow::anyhow!("receiver thread panicked"))?;
    let sent = sent??;
    let mut report = report?;
    report.sent = sent;
    report.lost = sent - report.unique.min(sent);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_summary() {
        let out = "PING 10.8.0.1 (10.8.0.1) 56(84) bytes of data.\n\n--- 10.8.0.1 ping statistics ---\n\
                   5 packets transmitted, 4 received, 20% packet loss, time 802ms\n\
                   rtt min/avg/max/mdev = 0.512/0.734/1.020/0.180 ms\n";
        let r = PingResult::parse(out);
        assert_eq!((r.transmitted, r.received), (5, 4));
        assert_eq!(r.loss_pct, 20.0);
        assert_eq!(r.rtt_ms, Some((0.512, 0.734, 1.020, 0.180)));
        assert!(r.clone().expect_success().is_err());
        assert!(r.expect_failure().is_err());
    }

    #[test]
    fn parses_ping_without_replies() {
        let out = "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2040ms\n";
        let r = PingResult::parse(out);
        assert_eq!((r.transmitted, r.received, r.rtt_ms), (3, 0, None));
        assert!(r.expect_failure().is_ok());
    }

    #[test]
    fn parses_iperf3_tcp_and_udp() {
        let tcp = r#"{"end":{"sum_sent":{"bits_per_second":1.5e9,"retransmits":7},
            "sum_received":{"bits_per_second":1.4e9},
            "cpu_utilization_percent":{"host_total":50.0,"remote_total":20.0}}}"#;
        let r = Iperf3Result::from_json(tcp).unwrap();
        assert_eq!(
            (r.sent_bps, r.received_bps, r.retransmits),
            (1.5e9, 1.4e9, Some(7))
        );
        let udp = r#"{"end":{"sum":{"bits_per_second":1e8,"jitter_ms":0.1,"lost_percent":10.0}}}"#;
        let r = Iperf3Result::from_json(udp).unwrap();
        assert_eq!(r.lost_percent, Some(10.0));
        assert!((r.received_bps - 9e7).abs() < 1.0);
        assert!(Iperf3Result::from_json(r#"{"error":"unable to connect"}"#).is_err());
    }
}
