//! The packet-rate benchmark against our own `dco-daemon`, driven directly over its IPC
//! socket (no TLS, no `dco-control`): the bench installs its own peers and keys, so it can
//! feed the daemon pre-encrypted P_DATA_V2 packets.
//!
//! Setup, once per worker count `w`:
//! - `dco-daemon --workers w` in the server namespace, `SET_IFCONFIG` 10.9.0.1/24 up,
//!   `LISTEN` on the server's underlay address, port 1195;
//! - `w` flows; flow `k` is peer id `7 + k` at tunnel address `10.9.0.(2 + k)`, whose
//!   "client" is a UDP socket in the client namespace bound to port `40001 + k` and
//!   connected to the daemon (`NEW_PEER` with that remote, `SET_PEER` keepalive off);
//! - before every measurement a fresh random key is installed with `NEW_KEY` (so the
//!   generator's packet ids may start at 1 again without tripping the replay window).
//!
//! Directions:
//! - `forward` (wire → decrypt → TUN): each flow's socket blasts P_DATA_V2 packets sealed
//!   with the client → server key ([`DataV2Source`]) carrying IPv4/UDP to 10.9.0.1:9; the
//!   daemon decrypts them and writes them to its TUN, and the kernel delivers them to a
//!   sink socket bound on port 9 in the server namespace.
//! - `reverse` (TUN → encrypt → wire): plain UDP from the server namespace to each flow's
//!   tunnel address enters the TUN; the daemon encrypts and sends to the flow's socket.
//!
//! Delivered packets are counted at the receiving socket: what it still holds (drained
//! and counted) plus what the kernel dropped because it was full (the `drops` column of
//! `/proc/net/udp`). That counts every packet whatever offload (GSO/GRO) carried it, and
//! nothing else arriving in the same namespace. The daemon's own counters (`GET_STATS`)
//! and the TUN interface's counters are reported beside it.

use anyhow::{Context, Result, anyhow, bail};
use control_ipc::schema::{Cipher, KeyConfig, KeySlot, NewKey, NewPeer, SetIfconfig};
use control_ipc::types::{IpPrefix, KeyBytes};
use crypto::{CipherKind, Key2, KeyId, PeerId, Role};
use e2e::{IfStats, Netns};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use super::datav2::DataV2Source;
use super::pps::{GenReport, PacketSource, PlainPayload, blast};
use super::sut::{Daemon, Topology};
use crate::ipc::{DaemonIpc, StatsDelta};

/// The daemon's tunnel address.
pub const SERVER_VPN: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const PORT: u16 = 1195;
const FIRST_PEER_ID: u32 = 7;
const FIRST_FLOW_PORT: u16 = 40001;
const SINK_PORT: u16 = 9;
const IFNAME: &str = "dcopps0";
/// Receive buffer of the counting sockets: small, so a measurement mostly counts drops
/// and the final drain is short.
const SINK_RCVBUF: usize = 256 * 1024;

/// One measurement against our daemon.
#[derive(Debug, Clone)]
pub struct OursMeasure {
    /// The generators' reports, summed.
    pub generator: GenReport,
    /// Packets that reached the receiving socket(s).
    pub delivered: u64,
    /// The daemon's counters over the measurement.
    pub daemon: StatsDelta,
    /// Packets through the TUN interface (forward: written by the daemon; reverse: read by
    /// it). With TUN offloads one "packet" may be a GSO super-packet.
    pub tun_packets: u64,
}

struct Flow {
    peer_id: u32,
    vpn: Ipv4Addr,
    /// In the client namespace, bound to the flow's port, connected to the daemon.
    sock: UdpSocket,
}

/// A running daemon with `workers` workers and one peer per worker.
pub struct OursPps<'t> {
    topo: &'t Topology,
    // Field order: the IPC connection closes before the daemon is stopped.
    ipc: DaemonIpc,
    _daemon: Daemon,
    flows: Vec<Flow>,
    /// Sink for the forward direction, in the server namespace.
    sink: UdpSocket,
    cipher: CipherKind,
    next_key_id: u8,
}

impl<'t> OursPps<'t> {
    /// Starts `dco-daemon` from `bin_dir` with `workers` workers in the server namespace
    /// and installs one peer per worker.
    pub fn start(
        topo: &'t Topology,
        bin_dir: &Path,
        workers: u32,
        cipher: &str,
    ) -> Result<OursPps<'t>> {
        let kind: CipherKind = cipher.parse().map_err(|e| anyhow!("{e}"))?;
        let work = topo.work.path();
        let socket = work.join(format!("pps-w{workers}.sock"));
        let _ = std::fs::remove_file(&socket);
        let bin = bin_dir.join("dco-daemon");
        let w = workers.max(1).to_string();
        let sock_arg = socket.to_string_lossy().into_owned();
        let daemon = Daemon::spawn_env(
            &topo.server_ns,
            &bin,
            &[
                "--ifname".as_ref(),
                IFNAME.as_ref(),
                "--socket".as_ref(),
                sock_arg.as_ref(),
                "--workers".as_ref(),
                w.as_ref(),
                "--gpu".as_ref(),
                "off".as_ref(),
            ],
            work,
            &format!("pps-daemon-w{workers}"),
            &[("DCO_LOG", "warn")],
        )?;
        let ipc = DaemonIpc::connect(&socket, Duration::from_secs(15))?;
        let server = SocketAddr::new(topo.link.a_v4.into(), PORT);
        ipc.call(|c| async move {
            c.set_ifconfig(&SetIfconfig {
                ipv4: Some(IpPrefix {
                    addr: SERVER_VPN.into(),
                    len: 24,
                }),
                ipv6: None,
                mtu: Some(1500),
                up: Some(true),
            })
            .await
        })
        .context("SET_IFCONFIG")?;
        ipc.call(|c| async move { c.listen(server).await })
            .context("LISTEN")?;
        let mut flows = Vec::new();
        for k in 0..workers.max(1) {
            let peer_id = FIRST_PEER_ID + k;
            let vpn = Ipv4Addr::new(10, 9, 0, 2 + k as u8);
            let local = SocketAddr::new(topo.link.b_v4.into(), FIRST_FLOW_PORT + k as u16);
            let sock = topo.client_ns.in_ns(move || {
                let s = UdpSocket::bind(local)?;
                s.connect(server)?;
                set_rcvbuf(&s, SINK_RCVBUF)?;
                Ok(s)
            })?;
            let peer = NewPeer {
                local: Some(server),
                remote: local,
                vpn_ipv4: Some(vpn),
                vpn_ipv6: None,
                peerid: peer_id,
                common_name: Some(format!("pps-flow-{k}")),
                iroutes: Vec::new(),
            };
            ipc.call(|c| async move { c.new_peer(&peer).await })
                .context("NEW_PEER")?;
            ipc.call(|c| async move { c.set_peer(peer_id, 0, 0).await })
                .context("SET_PEER")?;
            flows.push(Flow { peer_id, vpn, sock });
        }
        let sink = topo.server_ns.in_ns(|| {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, SINK_PORT))?;
            set_rcvbuf(&s, SINK_RCVBUF)?;
            Ok(s)
        })?;
        Ok(OursPps {
            topo,
            ipc,
            _daemon: daemon,
            flows,
            sink,
            cipher: kind,
            next_key_id: 0,
        })
    }

    /// Installs a fresh random key for every flow and returns them (client side).
    fn rekey(&mut self) -> Result<Vec<(Key2, KeyId)>> {
        let cipher: Cipher = self.cipher_name().parse().map_err(|e: String| anyhow!(e))?;
        let key_id = self.next_key_id;
        self.next_key_id = (self.next_key_id + 1) % 8;
        let mut out = Vec::new();
        for f in &self.flows {
            let key2 = random_key2()?;
            let (enc, dec) = key2
                .data_keys(Role::Server, self.cipher)
                .map_err(|e| anyhow!("{e}"))?;
            let conf = |k: &crypto::DirectionalKey| KeyConfig {
                cipher,
                key: KeyBytes::new(k.key().to_vec()),
                iv: KeyBytes::new(k.implicit_iv().to_vec()),
            };
            let nk = NewKey {
                slot: KeySlot::Primary,
                keyid: key_id,
                peerid: f.peer_id,
                encrypt: conf(&enc),
                decrypt: conf(&dec),
            };
            self.ipc
                .call(|c| async move { c.new_key(&nk).await })
                .context("NEW_KEY")?;
            out.push((key2, KeyId::new(key_id).context("key id")?));
        }
        Ok(out)
    }

    fn cipher_name(&self) -> &'static str {
        match self.cipher {
            CipherKind::Aes128Gcm => "AES-128-GCM",
            CipherKind::Aes256Gcm => "AES-256-GCM",
            CipherKind::Chacha20Poly1305 => "CHACHA20-POLY1305",
        }
    }

    /// Wire → decrypt → TUN for `duration`, inner UDP payloads of `size` bytes.
    pub fn forward(&mut self, size: usize, duration: Duration) -> Result<OursMeasure> {
        let keys = self.rekey()?;
        let mut sources = Vec::new();
        for (f, (key2, kid)) in self.flows.iter().zip(&keys) {
            sources.push(DataV2Source::new(
                key2,
                self.cipher,
                *kid,
                PeerId::new(f.peer_id).context("peer id")?,
                f.vpn,
                SocketAddrV4::new(SERVER_VPN, SINK_PORT),
                size,
            )?);
        }
        drain(&self.sink)?;
        let ns = &self.topo.server_ns;
        let drops0 = socket_drops(ns, &self.sink)?;
        let tun0 = ns.if_stats(IFNAME)?;
        let st0 = self.ipc.stats()?;
        let socks: Vec<&UdpSocket> = self.flows.iter().map(|f| &f.sock).collect();
        let generator = run_generators(&socks, sources, duration)?;
        std::thread::sleep(Duration::from_millis(300));
        let st1 = self.ipc.stats()?;
        let tun1 = ns.if_stats(IFNAME)?;
        let drops1 = socket_drops(ns, &self.sink)?;
        let queued = drain(&self.sink)?;
        Ok(OursMeasure {
            generator,
            delivered: queued + drops1.saturating_sub(drops0),
            daemon: StatsDelta::between(&st0, &st1),
            tun_packets: tun1.since(&tun0).rx_packets,
        })
    }

    /// TUN → encrypt → wire for `duration`, UDP payloads of `size` bytes.
    pub fn reverse(&mut self, size: usize, duration: Duration) -> Result<OursMeasure> {
        self.rekey()?;
        let ns = &self.topo.client_ns;
        let mut drops0 = Vec::new();
        for f in &self.flows {
            drain(&f.sock)?;
            drops0.push(socket_drops(ns, &f.sock)?);
        }
        let tun0 = self.topo.server_ns.if_stats(IFNAME)?;
        let st0 = self.ipc.stats()?;
        let mut senders = Vec::new();
        let mut sources: Vec<PlainPayload> = Vec::new();
        for f in &self.flows {
            let dst = SocketAddr::new(IpAddr::V4(f.vpn), SINK_PORT);
            senders.push(self.topo.server_ns.in_ns(move || {
                let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                s.connect(dst)?;
                Ok(s)
            })?);
            sources.push(PlainPayload::new(size));
        }
        let refs: Vec<&UdpSocket> = senders.iter().collect();
        let generator = run_generators(&refs, sources, duration)?;
        std::thread::sleep(Duration::from_millis(300));
        let st1 = self.ipc.stats()?;
        let tun1 = self.topo.server_ns.if_stats(IFNAME)?;
        let mut delivered = 0;
        for (f, d0) in self.flows.iter().zip(drops0) {
            let d1 = socket_drops(ns, &f.sock)?;
            delivered += drain(&f.sock)? + d1.saturating_sub(d0);
        }
        Ok(OursMeasure {
            generator,
            delivered,
            daemon: StatsDelta::between(&st0, &st1),
            tun_packets: tun1.since(&tun0).tx_packets,
        })
    }

    /// The client namespace's veth counters (for debugging counts).
    pub fn client_veth(&self) -> Result<IfStats> {
        self.topo.client_ns.if_stats(&self.topo.link.b_if)
    }
}

/// One generator thread per socket, each with its own source; the reports are summed
/// (elapsed = the longest).
fn run_generators<S: PacketSource + 'static>(
    socks: &[&UdpSocket],
    sources: Vec<S>,
    duration: Duration,
) -> Result<GenReport> {
    let reports: Vec<Result<GenReport>> = std::thread::scope(|sc| {
        let handles: Vec<_> = socks
            .iter()
            .zip(sources)
            .map(|(s, mut src)| sc.spawn(move || blast(s, &mut src, duration, 64)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("generator panicked")))
            })
            .collect()
    });
    let mut total = GenReport::default();
    for r in reports {
        let r = r?;
        total.sent += r.sent;
        total.send_errors += r.send_errors;
        total.elapsed_s = total.elapsed_s.max(r.elapsed_s);
    }
    Ok(total)
}

/// Reads everything queued on `s` without blocking; returns how many datagrams.
fn drain(s: &UdpSocket) -> Result<u64> {
    s.set_nonblocking(true)?;
    let mut buf = vec![0u8; 65536];
    let mut n = 0u64;
    loop {
        match s.recv(&mut buf) {
            Ok(_) => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // An ICMP error queued on a connected socket; not a datagram.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e.into()),
        }
    }
    s.set_nonblocking(false)?;
    Ok(n)
}

fn set_rcvbuf(s: &UdpSocket, bytes: usize) -> Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on an open socket with a pointer to a c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_RCVBUF");
    }
    Ok(())
}

/// The socket's inode (what `/proc/net/udp` lists it by).
fn inode(s: &UdpSocket) -> Result<u64> {
    // SAFETY: fstat on an open descriptor with a zeroed stat buffer it fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstat(s.as_raw_fd(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("fstat");
    }
    Ok(st.st_ino)
}

/// The kernel's drop counter of socket `s` (in namespace `ns`), from `/proc/net/udp`.
fn socket_drops(ns: &Netns, s: &UdpSocket) -> Result<u64> {
    let ino = inode(s)?;
    let table = ns.run(&["cat", "/proc/net/udp"])?;
    parse_udp_drops(&table, ino)
        .with_context(|| format!("socket inode {ino} not in /proc/net/udp of {}", ns.name()))
}

/// The `drops` column of the `/proc/net/udp` line whose inode is `ino`.
fn parse_udp_drops(table: &str, ino: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        if f.len() >= 13 && f[9].parse::<u64>().ok()? == ino {
            f[12].parse().ok()
        } else {
            None
        }
    })
}

fn random_key2() -> Result<Key2> {
    let mut bytes = [0u8; 256];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    if bytes.iter().all(|&b| b == 0) {
        bail!("/dev/urandom returned zeros");
    }
    Ok(Key2::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_column_of_the_matching_inode() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:0009 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17
  124: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 99 2 0000000000000000 0
";
        assert_eq!(parse_udp_drops(table, 4242), Some(17));
        assert_eq!(parse_udp_drops(table, 99), Some(0));
        assert_eq!(parse_udp_drops(table, 7), None);
    }

    #[test]
    fn drain_counts_queued_datagrams_and_the_drop_counter_is_found() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        for _ in 0..5 {
            tx.send(b"x").unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(drain(&rx).unwrap(), 5);
        assert_eq!(drain(&rx).unwrap(), 0);
        let table = std::fs::read_to_string("/proc/thread-self/net/udp").unwrap();
        assert_eq!(parse_udp_drops(&table, inode(&rx).unwrap()), Some(0));
    }
}
