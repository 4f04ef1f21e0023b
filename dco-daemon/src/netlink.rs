//! Just enough rtnetlink to configure the TUN device: link up and MTU, addresses, routes.
//! One request per call with an ACK; this is configuration, never the packet path.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HDRLEN: usize = 16;
const RTA_HDRLEN: usize = 4;

// Attribute and message numbers from <linux/rtnetlink.h>, <linux/if_addr.h>, <linux/if_link.h>.
const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

/// An IP prefix (address + length), v4 or v6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    pub fn new(addr: IpAddr, len: u8) -> io::Result<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("prefix length {len} > {max}"),
            ));
        }
        Ok(Self { addr, len })
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The interface index of `name`.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: u16) -> Self {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(
            &(flags | libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16).to_ne_bytes(),
        );
        buf[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence
        Self { buf }
    }

    fn body(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.pad();
    }

    fn attr(&mut self, kind: u16, data: &[u8]) {
        let len = (RTA_HDRLEN + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn family(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    }
}

/// Sends one request and waits for its ACK; an error ACK becomes the matching io::Error.
fn request(msg: Vec<u8>) -> io::Result<()> {
    // SAFETY: plain socket(2) call; the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; all-zero addresses the kernel.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: msg and sa outlive the call; lengths are exact.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&sa as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: buf is writable for its whole length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut at = 0usize;
        let n = n as usize;
        while at + NLMSG_HDRLEN <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or([0; 4])) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if len < NLMSG_HDRLEN || at + len > n {
                return Err(io::Error::other("malformed netlink reply"));
            }
            if kind == libc::NLMSG_ERROR as u16 {
                let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap_or([0; 4]));
                return if code == 0 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(-code))
                };
            }
            at += (len + 3) & !3;
        }
    }
}

/// Sets the link up (or down) and, if given, its MTU.
pub fn set_link(ifindex: u32, up: bool, mtu: Option<u32>) -> io::Result<()> {
    let mut m = Msg::new(libc::RTM_NEWLINK, 0);
    // struct ifinfomsg { family u8, pad u8, type u16, index i32, flags u32, change u32 }
    let mut ifi = [0u8; 16];
    ifi[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    let flags: u32 = if up { libc::IFF_UP as u32 } else { 0 };
    ifi[8..12].copy_from_slice(&flags.to_ne_bytes());
    ifi[12..16].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    m.body(&ifi);
    if let Some(mtu) = mtu {
        m.attr(IFLA_MTU, &mtu.to_ne_bytes());
    }
    request(m.finish())
}

fn addr_msg(kind: u16, flags: u16, ifindex: u32, p: Prefix) -> Vec<u8> {
    let mut m = Msg::new(kind, flags);
    // struct ifaddrmsg { family u8, prefixlen u8, flags u8, scope u8, index u32 }
    let mut ifa = [0u8; 8];
    ifa[0] = family(p.addr);
    ifa[1] = p.len;
    ifa[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    m.body(&ifa);
    let b = ip_bytes(p.addr);
    m.attr(IFA_LOCAL, &b);
    m.attr(IFA_ADDRESS, &b);
    if p.addr.is_ipv6() {
        // A point-to-point tunnel has no neighbours to detect duplicates with.
        m.attr(IFA_FLAGS, &IFA_F_NODAD.to_ne_bytes());
    }
    m.finish()
}

/// Adds an address (replacing an identical one).
pub fn add_address(ifindex: u32, p: Prefix) -> io::Result<()> {
    request(addr_msg(
        libc::RTM_NEWADDR,
        (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16,
        ifindex,
        p,
    ))
}

pub fn del_address(ifindex: u32, p: Prefix) -> io::Result<()> {
    request(addr_msg(libc::RTM_DELADDR, 0, ifindex, p))
}

fn route_msg(
    kind: u16,
    flags: u16,
    ifindex: u32,
    dst: Prefix,
    gateway: Option<IpAddr>,
    metric: Option<u32>,
) -> Vec<u8> {
    let mut m = Msg::new(kind, flags);
    // struct rtmsg { family, dst_len, src_len, tos, table, protocol, scope, type: u8; flags u32 }
    let mut rt = [0u8; 12];
    rt[0] = family(dst.addr);
    rt[1] = dst.len;
    rt[4] = RT_TABLE_MAIN;
    rt[5] = RTPROT_STATIC;
    rt[6] = if gateway.is_some() {
        RT_SCOPE_UNIVERSE
    } else {
        RT_SCOPE_LINK
    };
    rt[7] = RTN_UNICAST;
    m.body(&rt);
    m.attr(RTA_DST, &ip_bytes(dst.addr));
    m.attr(RTA_OIF, &ifindex.to_ne_bytes());
    if let Some(gw) = gateway {
        m.attr(RTA_GATEWAY, &ip_bytes(gw));
    }
    if let Some(metric) = metric {
        m.attr(RTA_PRIORITY, &metric.to_ne_bytes());
    }
    m.finish()
}

/// Adds (or replaces) a route through the interface, optionally via a gateway.
pub fn add_route(
    ifindex: u32,
    dst: Prefix,
    gateway: Option<IpAddr>,
    metric: Option<u32>,
) -> io::Result<()> {
    request(route_msg(
        libc::RTM_NEWROUTE,
        (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16,
        ifindex,
        dst,
        gateway,
        metric,
    ))
}

pub fn del_route(ifindex: u32, dst: Prefix, gateway: Option<IpAddr>) -> io::Result<()> {
    request(route_msg(
        libc::RTM_DELROUTE,
        0,
        ifindex,
        dst,
        gateway,
        None,
    ))
}
