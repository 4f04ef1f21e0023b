//! The underlay UDP socket: one per worker (SO_REUSEPORT), batched receive with recvmmsg and
//! UDP GRO, batched send with sendmmsg and UDP GSO, and the local address of every packet
//! (IP_PKTINFO / IPV6_PKTINFO) so replies leave from the address the peer sent to.
//!
//! Buffers, iovecs, headers and control-message space are allocated once per batch object;
//! a receive or send is one syscall for the whole batch.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;

/// Largest datagram (or GRO super-datagram) we accept.
pub const MAX_DATAGRAM: usize = 65_535;
/// The kernel's limit on segments in one GSO send (UDP_MAX_SEGMENTS).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Room for the control messages we send or receive (pktinfo + GRO/GSO size).
const CMSG_SPACE: usize = 128;

/// A UDP socket of the data path.
#[derive(Debug)]
pub struct UdpSocket {
    fd: OwnedFd,
    local: SocketAddr,
    /// The socket is AF_INET6 (possibly dual-stack): IPv4 peers appear v4-mapped.
    v6: bool,
    gro: bool,
    gso: std::sync::atomic::AtomicBool,
}

impl UdpSocket {
    /// Binds `addr` with SO_REUSEPORT (so each worker can own one), pktinfo, UDP GRO where
    /// the kernel has it, large buffers and a receive timeout (so workers notice shutdown).
    /// `[::]` binds a dual-stack socket.
    pub fn bind(addr: SocketAddr, reuseport: bool) -> io::Result<Self> {
        let domain = if addr.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let s = Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
        if reuseport {
            s.set_reuse_port(true)?;
        }
        if addr.is_ipv6() {
            // Dual-stack when bound to the unspecified address, as OpenVPN's `proto udp`.
            s.set_only_v6(!addr.ip().is_unspecified())?;
        }
        // Big buffers absorb bursts between batches; force past rmem_max when we are root.
        for (opt, size) in [
            (libc::SO_RCVBUFFORCE, 8 << 20),
            (libc::SO_SNDBUFFORCE, 8 << 20),
        ] {
            if setsockopt_int(s.as_raw_fd(), libc::SOL_SOCKET, opt, size).is_err() {
                let _ = if opt == libc::SO_RCVBUFFORCE {
                    s.set_recv_buffer_size(size as usize)
                } else {
                    s.set_send_buffer_size(size as usize)
                };
            }
        }
        if addr.is_ipv4() {
            setsockopt_int(s.as_raw_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        } else {
            setsockopt_int(s.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
            if addr.ip().is_unspecified() {
                // v4-mapped packets on a dual-stack socket report their local address
                // through IP_PKTINFO (a specific v6 address is a v6-only socket).
                let _ = setsockopt_int(s.as_raw_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, 1);
            }
        }
        let gro = setsockopt_int(s.as_raw_fd(), SOL_UDP, UDP_GRO, 1).is_ok();
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        s.bind(&addr.into())?;
        let local = s
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("no local address"))?;
        Ok(Self {
            fd: s.into(),
            local,
            v6: addr.is_ipv6(),
            gro,
            gso: std::sync::atomic::AtomicBool::new(true),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether the kernel coalesces received datagrams (UDP GRO).
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Whether sends use UDP GSO (turned off after the kernel refuses it once).
    pub fn gso(&self) -> bool {
        self.gso.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends one datagram (control packets, keepalives): not the batched fast path.
    pub fn send_one(&self, dst: SocketAddr, src: Option<IpAddr>, data: &[u8]) -> io::Result<()> {
        let mut q = TxQueue::new(1);
        let mut tx = q.batch();
        tx.push(dst, src, data);
        let sent = tx.flush(self)?;
        if sent.errors > 0 {
            Err(sent
                .last_error
                .unwrap_or_else(|| io::Error::other("send failed")))
        } else {
            Ok(())
        }
    }

    fn peer_sockaddr(&self, dst: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
        let dst = if self.v6 { to_v6(dst) } else { dst };
        write_sockaddr(dst, out)
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `val` lives across the call and its size is passed exactly.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// IPv4 peers on a dual-stack socket are v4-mapped; present them as plain IPv4.
pub fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => addr,
        },
        v4 => v4,
    }
}

fn to_v6(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        v6 => v6,
    }
}

fn write_sockaddr(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn read_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(normalize(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            ))))
        }
        _ => None,
    }
}

/// One received datagram (or GRO super-datagram of equal-size segments but the last).
#[derive(Debug, Clone, Copy)]
pub struct RxMeta {
    pub len: usize,
    pub src: Option<SocketAddr>,
    /// The local address the datagram was sent to.
    pub dst_ip: Option<IpAddr>,
    /// Segment size when the kernel coalesced several datagrams; `len` otherwise.
    pub segment: usize,
}

/// A receive batch: `n` buffers of [`MAX_DATAGRAM`] bytes and their headers.
pub struct RxBatch {
    bufs: Vec<u8>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<[u64; CMSG_SPACE / 8]>,
    hdrs: Vec<libc::mmsghdr>,
    metas: Vec<RxMeta>,
    count: usize,
}

// SAFETY: the raw pointers in iovs/hdrs point into this struct's own heap allocations.
unsafe impl Send for RxBatch {}

impl RxBatch {
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        let mut b = Self {
            bufs: vec![0u8; n * MAX_DATAGRAM],
            // SAFETY: all-zero is a valid value for these plain C structs.
            iovs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            names: (0..n).map(|_| unsafe { zeroed() }).collect(),
            cmsgs: vec![[0u64; CMSG_SPACE / 8]; n],
            hdrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            metas: vec![
                RxMeta {
                    len: 0,
                    src: None,
                    dst_ip: None,
                    segment: 0
                };
                n
            ],
            count: 0,
        };
        for i in 0..n {
            b.iovs[i].iov_base = b.bufs[i * MAX_DATAGRAM..].as_mut_ptr().cast();
            b.iovs[i].iov_len = MAX_DATAGRAM;
        }
        b
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Receives up to `capacity()` datagrams in one recvmmsg. Blocks until at least one
    /// arrives or the socket's receive timeout passes (`Ok(0)`).
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let n = self.hdrs.len();
        for i in 0..n {
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            h.msg_controllen = CMSG_SPACE as _;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at buffers owned by self that outlive the call, with
        // lengths that match their allocations.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            self.count = 0;
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.count = r as usize;
        for i in 0..self.count {
            let len = self.hdrs[i].msg_len as usize;
            let (dst_ip, segment) = parse_rx_cmsgs(&self.hdrs[i].msg_hdr);
            self.metas[i] = RxMeta {
                len,
                src: read_sockaddr(&self.names[i]),
                dst_ip,
                segment: segment.filter(|&s| s > 0).unwrap_or(len),
            };
        }
        Ok(self.count)
    }

    /// Datagram `i` of the last receive, mutable for in-place decryption.
    pub fn get_mut(&mut self, i: usize) -> (&RxMeta, &mut [u8]) {
        let meta = &self.metas[i];
        let start = i * MAX_DATAGRAM;
        (meta, &mut self.bufs[start..start + meta.len])
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The datagrams of the last receive with their metadata, as disjoint mutable slices.
    pub fn datagrams_mut(&mut self) -> impl Iterator<Item = (RxMeta, &mut [u8])> {
        let count = self.count;
        self.bufs
            .chunks_mut(MAX_DATAGRAM)
            .zip(self.metas.iter())
            .take(count)
            .map(|(b, m)| (*m, &mut b[..m.len]))
    }
}

fn parse_rx_cmsgs(h: &libc::msghdr) -> (Option<IpAddr>, Option<usize>) {
    let mut dst = None;
    let mut seg = None;
    // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG_* macros walk it within
    // those bounds, and each payload is read unaligned with the size its type dictates.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let pi: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                    dst = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr))));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let pi: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                    let ip = Ipv6Addr::from(pi.ipi6_addr.s6_addr);
                    dst = Some(match ip.to_ipv4_mapped() {
                        Some(v4) => IpAddr::V4(v4),
                        None => IpAddr::V6(ip),
                    });
                }
                (SOL_UDP, UDP_GRO) => {
                    let s: libc::c_int = std::ptr::read_unaligned(data.cast());
                    seg = Some(s as usize);
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    (dst, seg)
}

/// Result of a batched send.
#[derive(Debug, Default)]
pub struct SendReport {
    pub datagrams: usize,
    pub bytes: usize,
    pub errors: usize,
    pub last_error: Option<io::Error>,
}

struct TxMsg {
    dst: SocketAddr,
    src: Option<IpAddr>,
    first_iov: usize,
    iovs: usize,
    seg: usize,
    bytes: usize,
    /// The last segment was shorter than `seg`: nothing more may join this message.
    closed: bool,
}

/// Storage for batched sends, allocated once; [`TxQueue::batch`] starts a batch.
pub struct TxQueue {
    msgs: Vec<TxMsg>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<[u64; CMSG_SPACE / 8]>,
    hdrs: Vec<libc::mmsghdr>,
    max_datagrams: usize,
    /// Datagrams of this size or larger are not grouped for GSO: the kernel refused such a
    /// segment size (EMSGSIZE, larger than the path MTU) and fragments them one by one.
    gso_limit: usize,
}

// SAFETY: the raw pointers are only set and used while a TxBatch borrows the queue.
unsafe impl Send for TxQueue {}

/// A send batch: datagrams are grouped into GSO messages (same destination and source,
/// equal sizes but the last) and flushed with one sendmmsg. `'d` is the lifetime of the
/// queued data, which must outlive the batch: the borrow checker keeps every queued slice
/// alive and unchanged until the batch is flushed or dropped.
pub struct TxBatch<'q, 'd> {
    q: &'q mut TxQueue,
    _data: std::marker::PhantomData<&'d [u8]>,
}

impl TxQueue {
    /// Starts an empty batch over this storage.
    pub fn batch<'d>(&mut self) -> TxBatch<'_, 'd> {
        self.msgs.clear();
        TxBatch {
            q: self,
            _data: std::marker::PhantomData,
        }
    }

    pub fn new(max_datagrams: usize) -> Self {
        let n = max_datagrams.max(1);
        Self {
            msgs: Vec::with_capacity(n),
            // SAFETY: all-zero is a valid value for these plain C structs.
            iovs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            names: (0..n).map(|_| unsafe { zeroed() }).collect(),
            cmsgs: vec![[0u64; CMSG_SPACE / 8]; n],
            hdrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            max_datagrams: n,
            gso_limit: usize::MAX,
        }
    }

    fn used(&self) -> usize {
        self.msgs.last().map(|m| m.first_iov + m.iovs).unwrap_or(0)
    }

    fn push_raw(&mut self, dst: SocketAddr, src: Option<IpAddr>, data: &[u8]) {
        let used = self.used();
        if used >= self.max_datagrams {
            return;
        }
        self.iovs[used] = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        if let Some(m) = self.msgs.last_mut()
            && m.dst == dst
            && m.src == src
            && !m.closed
            && data.len() <= m.seg
            && m.seg < self.gso_limit
            && m.iovs < MAX_GSO_SEGMENTS
            && m.bytes + data.len() <= MAX_DATAGRAM - 48
        {
            m.iovs += 1;
            m.bytes += data.len();
            m.closed = data.len() < m.seg;
            return;
        }
        self.msgs.push(TxMsg {
            dst,
            src,
            first_iov: used,
            iovs: 1,
            seg: data.len(),
            bytes: data.len(),
            closed: false,
        });
    }

    fn flush_raw(&mut self, sock: &UdpSocket) -> io::Result<SendReport> {
        let mut report = SendReport::default();
        let mut use_gso = sock.gso();
        let mut start = 0;
        while start < self.msgs.len() {
            let n = self.build(sock, start, use_gso);
            // SAFETY: headers [start..start+n] point at iovecs, names and cmsgs owned by self
            // and at data slices the caller keeps alive until flush returns.
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                    Some(libc::EMSGSIZE) if use_gso && self.msgs[start].iovs > 1 => {
                        // Segments larger than the path MTU: send them singly (the kernel
                        // fragments) and stop grouping datagrams this large.
                        self.gso_limit = self.gso_limit.min(self.msgs[start].seg);
                        self.split_all(start);
                        continue;
                    }
                    Some(libc::EIO) | Some(libc::EINVAL)
                        if use_gso && self.msgs[start].iovs > 1 =>
                    {
                        // The route's device cannot segment: retry without GSO, for good.
                        sock.gso.store(false, std::sync::atomic::Ordering::Relaxed);
                        use_gso = false;
                        self.split_all(start);
                        continue;
                    }
                    _ => {
                        // Skip the failing message (e.g. ICMP-reported unreachable peer).
                        report.errors += self.msgs[start].iovs;
                        report.last_error = Some(e);
                        start += 1;
                        continue;
                    }
                }
            }
            for m in &self.msgs[start..start + r as usize] {
                report.datagrams += m.iovs;
                report.bytes += m.bytes;
            }
            start += r as usize;
        }
        self.msgs.clear();
        Ok(report)
    }

    /// Turns every GSO message from `from` on into single-datagram messages.
    fn split_all(&mut self, from: usize) {
        let tail: Vec<TxMsg> = self.msgs.drain(from..).collect();
        for m in tail {
            for k in 0..m.iovs {
                let len = self.iovs[m.first_iov + k].iov_len;
                self.msgs.push(TxMsg {
                    dst: m.dst,
                    src: m.src,
                    first_iov: m.first_iov + k,
                    iovs: 1,
                    seg: len,
                    bytes: len,
                    closed: true,
                });
            }
        }
    }

    /// Fills headers for msgs[start..] (as many as fit); returns how many.
    fn build(&mut self, sock: &UdpSocket, start: usize, gso: bool) -> usize {
        let n = (self.msgs.len() - start).min(self.hdrs.len());
        for k in 0..n {
            let m = &self.msgs[start + k];
            let namelen = sock.peer_sockaddr(m.dst, &mut self.names[k]);
            let h = &mut self.hdrs[k];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.names[k] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = namelen;
            h.msg_hdr.msg_iov = &mut self.iovs[m.first_iov];
            h.msg_hdr.msg_iovlen = m.iovs as _;
            h.msg_hdr.msg_flags = 0;
            let clen = write_tx_cmsgs(
                &mut self.cmsgs[k],
                h,
                sock.v6,
                m.src,
                if gso && m.iovs > 1 { m.seg } else { 0 },
            );
            h.msg_hdr.msg_controllen = clen as _;
            if clen == 0 {
                h.msg_hdr.msg_control = std::ptr::null_mut();
            }
        }
        n
    }
}

impl<'d> TxBatch<'_, 'd> {
    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.q.used()
    }

    pub fn is_empty(&self) -> bool {
        self.q.msgs.is_empty()
    }

    /// No room for another datagram: flush first.
    pub fn is_full(&self) -> bool {
        self.q.used() >= self.q.max_datagrams
    }

    /// Queues one datagram (ignored when full: check `is_full`).
    pub fn push(&mut self, dst: SocketAddr, src: Option<IpAddr>, data: &'d [u8]) {
        self.q.push_raw(dst, src, data);
    }

    /// Sends everything queued (sendmmsg, GSO where grouped) and empties the batch. Queued
    /// data stays borrowed until the batch is dropped.
    pub fn flush(&mut self, sock: &UdpSocket) -> io::Result<SendReport> {
        self.q.flush_raw(sock)
    }
}

/// Writes the source-address and GSO control messages; returns the control length.
fn write_tx_cmsgs(
    space: &mut [u64; CMSG_SPACE / 8],
    h: &mut libc::mmsghdr,
    v6_socket: bool,
    src: Option<IpAddr>,
    seg: usize,
) -> usize {
    space.fill(0);
    h.msg_hdr.msg_control = space.as_mut_ptr().cast();
    h.msg_hdr.msg_controllen = CMSG_SPACE as _;
    let mut total = 0usize;
    // SAFETY: the control buffer is CMSG_SPACE bytes, 8-aligned, and large enough for one
    // pktinfo and one u16 cmsg; CMSG_FIRSTHDR/NXTHDR stay within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
        if let Some(src) = src {
            match (src, v6_socket) {
                (IpAddr::V4(ip), false) => {
                    (*c).cmsg_level = libc::IPPROTO_IP;
                    (*c).cmsg_type = libc::IP_PKTINFO;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
                    let pi = libc::in_pktinfo {
                        ipi_ifindex: 0,
                        ipi_spec_dst: libc::in_addr {
                            s_addr: u32::from_ne_bytes(ip.octets()),
                        },
                        ipi_addr: libc::in_addr { s_addr: 0 },
                    };
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), pi);
                    total += libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize;
                }
                (ip, true) => {
                    let v6 = match ip {
                        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                        IpAddr::V6(v6) => v6,
                    };
                    (*c).cmsg_level = libc::IPPROTO_IPV6;
                    (*c).cmsg_type = libc::IPV6_PKTINFO;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as _;
                    let pi = libc::in6_pktinfo {
                        ipi6_addr: libc::in6_addr {
                            s6_addr: v6.octets(),
                        },
                        ipi6_ifindex: 0,
                    };
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), pi);
                    total += libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) as usize;
                }
                (IpAddr::V6(_), false) => {}
            }
            if total > 0 {
                // The next header starts right after the first one's aligned space.
                c = (c as *mut u8).add(total).cast::<libc::cmsghdr>();
            }
        }
        if seg > 0 && !c.is_null() {
            (*c).cmsg_level = SOL_UDP;
            (*c).cmsg_type = UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), seg as u16);
            total += libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let b = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        (a, b)
    }

    #[test]
    fn batch_round_trip_with_gso_and_pktinfo() {
        let (a, b) = pair();
        let mut q = TxQueue::new(64);
        let payloads: Vec<Vec<u8>> = (0..10u8)
            .map(|i| vec![i; if i == 9 { 300 } else { 1000 }])
            .collect();
        let mut tx = q.batch();
        for p in &payloads {
            tx.push(b.local_addr(), Some("127.0.0.1".parse().unwrap()), p);
        }
        let rep = tx.flush(&a).unwrap();
        assert_eq!(rep.datagrams, 10);
        assert_eq!(rep.bytes, 9 * 1000 + 300);
        let mut rx = RxBatch::new(16);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut messages = 0;
        while got.len() < 10 {
            let n = rx.recv(&b).unwrap();
            assert!(n > 0, "timed out with {} datagrams", got.len());
            for i in 0..n {
                let (meta, data) = rx.get_mut(i);
                assert_eq!(meta.src, Some(a.local_addr()));
                assert_eq!(meta.dst_ip, Some("127.0.0.1".parse().unwrap()));
                let meta = *meta;
                messages += 1;
                for seg in data.chunks(meta.segment) {
                    got.push(seg.to_vec());
                }
            }
        }
        assert_eq!(got, payloads);
        if b.gro() {
            // GSO on send and GRO on receive: the kernel kept the ten as one super-datagram.
            assert_eq!(messages, 1);
        }
    }

    #[test]
    fn dual_stack_reports_plain_ipv4() {
        let b = match UdpSocket::bind("[::]:0".parse().unwrap(), false) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("SKIP: no IPv6 here: {e}");
                return;
            }
        };
        let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let port = b.local_addr().port();
        a.send_one(SocketAddr::from(([127, 0, 0, 1], port)), None, b"hi")
            .unwrap();
        let mut rx = RxBatch::new(2);
        assert_eq!(rx.recv(&b).unwrap(), 1);
        let (meta, data) = rx.get_mut(0);
        assert_eq!(data, b"hi");
        assert_eq!(meta.src, Some(a.local_addr()));
        assert_eq!(meta.dst_ip, Some("127.0.0.1".parse().unwrap()));
        // And back through the dual-stack socket to a plain IPv4 address.
        b.send_one(a.local_addr(), Some("127.0.0.1".parse().unwrap()), b"yo")
            .unwrap();
        assert_eq!(rx.recv(&a).unwrap(), 1);
        assert_eq!(rx.get_mut(0).1, b"yo");
    }
}
