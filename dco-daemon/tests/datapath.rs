//! The data path in-process with a real TUN device in a private network namespace and a
//! simulated peer (our crypto crate over a real UDP socket): pings through the daemon, the
//! keepalive, the source check, replay and junk counters. Interop with stock OpenVPN is in
//! the workspace's end-to-end tests; this one pins the daemon's own behaviour. Needs root.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crypto::{
    CipherKind, DATA_V2_OVERHEAD, DecryptKey, EncryptKey, KEEPALIVE_PING, Key2, KeyId, PeerId, Role,
};
use dco_daemon::core::{Daemon, DaemonConfig};
use dco_daemon::events::{Event, EventSink};
use dco_daemon::netlink::Prefix;
use dco_daemon::peer::{KeySlot, PeerConfig};
use dco_daemon::stats::{Ctr, Dropped};

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl EventSink for Recorder {
    fn emit(&self, e: Event) -> bool {
        self.0.lock().unwrap().push(e);
        true
    }
    fn has_control_listener(&self) -> bool {
        true
    }
}

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/dev/net/tun").exists() {
        eprintln!("SKIP: needs root and /dev/net/tun");
        return false;
    }
    true
}

/// Runs `f` on a thread inside a fresh network namespace (threads it spawns inherit it).
fn in_netns<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread's namespaces.
        assert_eq!(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            0,
            "unshare: {}",
            std::io::Error::last_os_error()
        );
        let lo = dco_daemon::netlink::if_index("lo").unwrap();
        dco_daemon::netlink::set_link(lo, true, None).unwrap();
        f();
    })
    .join()
    .unwrap();
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn icmp_echo(src: [u8; 4], dst: [u8; 4], seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 20 + 8 + 32];
    p[0] = 0x45;
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20] = 8;
    p[24..26].copy_from_slice(&0x1234u16.to_be_bytes());
    p[26..28].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = checksum(&p[20..]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

struct SimPeer {
    sock: UdpSocket,
    tx: EncryptKey,
    rx: DecryptKey,
    peer_id: PeerId,
    server: SocketAddr,
}

impl SimPeer {
    fn send_plain(&self, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; DATA_V2_OVERHEAD + payload.len()];
        buf[DATA_V2_OVERHEAD..].copy_from_slice(payload);
        let s = self
            .tx
            .seal_v2(self.peer_id, &mut buf, payload.len())
            .unwrap();
        self.sock.send_to(&buf[..s.len], self.server).unwrap();
        buf[..s.len].to_vec()
    }

    /// Receives data packets until one decrypts to something other than a ping.
    fn recv_plain(&self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 2048];
        loop {
            let n = self.sock.recv(&mut buf).ok()?;
            let o = self
                .rx
                .open(&mut buf[..n])
                .expect("daemon sent a packet we cannot open");
            if buf[o.payload.clone()] != KEEPALIVE_PING {
                return Some(buf[o.payload].to_vec());
            }
        }
    }
}

fn setup(name: &str, sink: Arc<Recorder>) -> (Daemon, SimPeer) {
    let d = Daemon::new(
        DaemonConfig {
            ifname: name.into(),
            workers: 2,
            ..Default::default()
        },
        sink,
    )
    .unwrap();
    let bound = d.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    d.set_ifconfig(
        &[Prefix::new("10.77.0.1".parse().unwrap(), 24).unwrap()],
        Some(1500),
        true,
    )
    .unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut km = [0u8; 256];
    for (i, b) in km.iter_mut().enumerate() {
        *b = (i * 31 + 7) as u8;
    }
    let key2 = Key2::from_bytes(km);
    let (s_enc, s_dec) = key2.data_keys(Role::Server, CipherKind::Aes256Gcm).unwrap();
    let (c_enc, c_dec) = key2.data_keys(Role::Client, CipherKind::Aes256Gcm).unwrap();
    let peer_id = PeerId::new(7).unwrap();
    d.new_peer(PeerConfig {
        id: peer_id,
        remote: sock.local_addr().unwrap(),
        local: None,
        vpn_ipv4: Some("10.77.0.2".parse().unwrap()),
        vpn_ipv6: None,
        iroutes: vec![],
        common_name: "sim".into(),
    })
    .unwrap();
    d.new_key(7, KeySlot::Primary, 0, &s_enc, &s_dec).unwrap();
    let kid = KeyId::new(0).unwrap();
    let sim = SimPeer {
        sock,
        tx: EncryptKey::new(kid, &c_enc).unwrap(),
        rx: DecryptKey::new(kid, &c_dec, 64).unwrap(),
        peer_id,
        server: bound,
    };
    (d, sim)
}

#[test]
fn ping_through_daemon_counters_and_drops() {
    if !can_run() {
        return;
    }
    in_netns(|| {
        let sink = Arc::new(Recorder::default());
        let (d, sim) = setup("dcot0", sink.clone());
        // The kernel answers our echo requests through the TUN, encrypted by the daemon.
        for seq in 1..=5u16 {
            sim.send_plain(&icmp_echo([10, 77, 0, 2], [10, 77, 0, 1], seq));
            let reply = sim.recv_plain().expect("no echo reply through the daemon");
            assert_eq!(reply[9], 1, "not ICMP");
            assert_eq!(&reply[12..16], &[10, 77, 0, 1]);
            assert_eq!(&reply[16..20], &[10, 77, 0, 2]);
            assert_eq!(reply[20], 0, "not an echo reply");
            assert_eq!(u16::from_be_bytes([reply[26], reply[27]]), seq);
        }
        // A spoofed inner source is dropped and counted, never delivered.
        sim.send_plain(&icmp_echo([10, 77, 0, 3], [10, 77, 0, 1], 99));
        // A replayed packet is dropped and counted.
        let wire = sim.send_plain(&icmp_echo([10, 77, 0, 2], [10, 77, 0, 1], 100));
        assert_eq!(
            sim.recv_plain().map(|r| u16::from_be_bytes([r[26], r[27]])),
            Some(100)
        );
        sim.sock.send_to(&wire, sim.server).unwrap();
        // Junk and a tampered packet.
        sim.sock.send_to(&[0xff, 1, 2, 3], sim.server).unwrap();
        let mut bad = wire.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        bad[4..8].copy_from_slice(&1000u32.to_be_bytes());
        sim.sock.send_to(&bad, sim.server).unwrap();
        // A keepalive ping is swallowed.
        sim.send_plain(&KEEPALIVE_PING);
        std::thread::sleep(Duration::from_millis(300));
        let s = d.stats();
        assert_eq!(s.dropped(Dropped::BadSource), 1, "{s:?}");
        assert_eq!(s.crypto_dropped(crypto::DropReason::Replayed), 1, "{s:?}");
        assert_eq!(
            s.crypto_dropped(crypto::DropReason::TagMismatch),
            1,
            "{s:?}"
        );
        assert!(s.get(Ctr::RecvData) >= 8, "{s:?}");
        assert!(
            s.get(Ctr::RecvCtrl) >= 1,
            "junk is relayed as non-data: {s:?}"
        );
        assert!(
            sink.0.lock().unwrap().iter().any(
                |e| matches!(e, Event::ControlPacket { data, .. } if data == &[0xff, 1, 2, 3])
            ),
            "junk relayed to the control process"
        );
        let peers = d.peers();
        assert_eq!(peers[0].traffic.pkts_in, 8);
        assert!(peers[0].traffic.pkts_out >= 6);
        d.shutdown();
    });
}

#[test]
fn keepalive_ping_and_expiry() {
    if !can_run() {
        return;
    }
    in_netns(|| {
        let sink = Arc::new(Recorder::default());
        let (d, sim) = setup("dcot1", sink.clone());
        d.set_peer(7, 1, 3).unwrap();
        // The daemon pings a quiet peer.
        let mut buf = [0u8; 2048];
        let n = sim.sock.recv(&mut buf).expect("no keepalive ping");
        let o = sim.rx.open(&mut buf[..n]).unwrap();
        assert_eq!(&buf[o.payload], &KEEPALIVE_PING);
        // And deletes it when it stays silent past the timeout.
        let deadline = std::time::Instant::now() + Duration::from_secs(6);
        loop {
            if sink.0.lock().unwrap().iter().any(|e| {
                matches!(
                    e,
                    Event::DelPeer {
                        peer_id: 7,
                        reason: dco_daemon::events::DelReason::Expired,
                        ..
                    }
                )
            }) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "peer not expired");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(d.peers().is_empty());
        d.shutdown();
    });
}
