//! UNIX `SOCK_SEQPACKET` sockets under tokio.
//!
//! SEQPACKET keeps message boundaries in the kernel: one `send` is one message, one `recv`
//! returns exactly one, so framing cannot be desynchronised by a bad message. tokio has no
//! seqpacket type, so the descriptor is driven through `AsyncFd`; all socket calls go
//! through nix's safe wrappers.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr, sockopt,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Bytes of an oversized message kept to recover its request id.
const PREFIX_KEEP: usize = 4096;

fn nix_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open descriptor that nothing else closes; the
    // `AsyncFd` owns it from here on and its `as_raw_fd` always returns that descriptor.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}

/// What a receive produced.
#[derive(Debug)]
pub enum Recv {
    /// A whole message.
    Message(Vec<u8>),
    /// A message larger than allowed; it was discarded, its first bytes are kept.
    TooLarge {
        /// Its full length.
        len: usize,
        /// Its first bytes.
        prefix: Vec<u8>,
    },
    /// The peer closed the connection (or sent an empty message, which is the same on
    /// SEQPACKET and is treated as a close).
    Eof,
}

/// Credentials of the process at the other end, from `SO_PEERCRED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Process id.
    pub pid: i32,
}

/// A connected SEQPACKET socket.
pub struct SeqPacket {
    fd: AsyncFd<OwnedFd>,
}

fn new_socket() -> io::Result<OwnedFd> {
    socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(nix_err)
}

impl SeqPacket {
    fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        Ok(SeqPacket {
            fd: register(fd, Interest::READABLE | Interest::WRITABLE)?,
        })
    }

    /// Connects to a listening socket. A full accept backlog is retried for up to 2 s.
    pub async fn connect(path: &Path) -> io::Result<Self> {
        let addr = UnixAddr::new(path).map_err(nix_err)?;
        let mut delay = Duration::from_millis(2);
        for _ in 0..12 {
            let fd = new_socket()?;
            match socket::connect(fd.as_raw_fd(), &addr) {
                Ok(()) => return Self::from_fd(fd),
                Err(Errno::EAGAIN) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(nix_err(e)),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "the daemon's accept queue stayed full",
        ))
    }

    /// Sets the send buffer, forcing past `wmem_max` where the process may
    /// (`SO_SNDBUFFORCE` needs CAP_NET_ADMIN). A SEQPACKET message must fit in it.
    pub fn set_send_buffer(&self, bytes: usize) {
        let fd = self.fd.get_ref();
        if socket::setsockopt(fd, sockopt::SndBufForce, &bytes).is_err() {
            // Unprivileged: the kernel clamps to net.core.wmem_max; that is fine for
            // requests, which are small.
            let _ = socket::setsockopt(fd, sockopt::SndBuf, &bytes);
        }
    }

    /// The peer's credentials.
    pub fn peer_cred(&self) -> io::Result<PeerCred> {
        let c = socket::getsockopt(self.fd.get_ref(), sockopt::PeerCredentials).map_err(nix_err)?;
        Ok(PeerCred {
            uid: c.uid(),
            gid: c.gid(),
            pid: c.pid(),
        })
    }

    /// Sends one message.
    pub async fn send(&self, buf: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            let r = guard.try_io(|fd| {
                socket::send(
                    fd.get_ref().as_raw_fd(),
                    buf,
                    MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
                )
                .map_err(nix_err)
            });
            match r {
                Ok(Ok(n)) if n == buf.len() => return Ok(()),
                Ok(Ok(n)) => {
                    return Err(io::Error::other(format!(
                        "short send of {n} of {} bytes",
                        buf.len()
                    )));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "message of {} bytes exceeds the socket's send buffer",
                            buf.len()
                        ),
                    ));
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one message of at most `max` bytes.
    pub async fn recv(&self, max: usize) -> io::Result<Recv> {
        loop {
            let mut guard = self.fd.readable().await?;
            let r = guard.try_io(|fd| {
                let raw = fd.get_ref().as_raw_fd();
                // MSG_TRUNC with MSG_PEEK returns the real length of the next message.
                let len = socket::recv(
                    raw,
                    &mut [],
                    MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT,
                )
                .map_err(nix_err)?;
                if len == 0 {
                    // Consume a zero-length message if that is what it was.
                    let _ = socket::recv(raw, &mut [0u8; 1], MsgFlags::MSG_DONTWAIT);
                    return Ok(Recv::Eof);
                }
                if len > max {
                    let mut prefix = vec![0u8; PREFIX_KEEP.min(len)];
                    socket::recv(raw, &mut prefix, MsgFlags::MSG_DONTWAIT).map_err(nix_err)?;
                    return Ok(Recv::TooLarge { len, prefix });
                }
                let mut buf = vec![0u8; len];
                let n = socket::recv(raw, &mut buf, MsgFlags::MSG_DONTWAIT).map_err(nix_err)?;
                buf.truncate(n);
                Ok(Recv::Message(buf))
            });
            match r {
                // The peer closed with our message unread: the kernel reports that once,
                // before the messages it sent us. Read on to get them, then the EOF.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ECONNRESET) => continue,
                Ok(res) => return res,
                Err(_would_block) => continue,
            }
        }
    }
}

/// A listening SEQPACKET socket at a path; removes the path when dropped.
pub struct Listener {
    fd: AsyncFd<OwnedFd>,
    path: PathBuf,
}

/// Who may use the socket file.
#[derive(Clone, Debug)]
pub struct SocketPerms {
    /// File mode (0o600 by default).
    pub mode: u32,
    /// Owner to set.
    pub uid: Option<u32>,
    /// Group to set.
    pub gid: Option<u32>,
}

impl Listener {
    /// Binds at `path`: creates the parent directory (0755) if needed, replaces a stale
    /// socket left by a dead daemon, refuses to replace a live one or a non-socket file.
    pub fn bind(path: &Path, perms: &SocketPerms) -> io::Result<Listener> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(md) if md.file_type().is_socket() => {
                let probe = new_socket()?;
                let addr = UnixAddr::new(path).map_err(nix_err)?;
                match socket::connect(probe.as_raw_fd(), &addr) {
                    Ok(()) | Err(Errno::EAGAIN) => {
                        return Err(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            format!("{} is in use by a running server", path.display()),
                        ));
                    }
                    Err(_) => std::fs::remove_file(path)?,
                }
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let fd = new_socket()?;
        let addr = UnixAddr::new(path).map_err(nix_err)?;
        socket::bind(fd.as_raw_fd(), &addr).map_err(nix_err)?;
        // Until the chmod below the file has the umask's mode; the SO_PEERCRED check on
        // every connection is the real gate, the mode is the first one.
        let restrict = || -> io::Result<()> {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(perms.mode))?;
            if perms.uid.is_some() || perms.gid.is_some() {
                std::os::unix::fs::chown(path, perms.uid, perms.gid)?;
            }
            socket::listen(&fd, Backlog::new(128).map_err(nix_err)?).map_err(nix_err)
        };
        if let Err(e) = restrict() {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(Listener {
            fd: register(fd, Interest::READABLE)?,
            path: path.to_owned(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts a connection.
    pub async fn accept(&self) -> io::Result<SeqPacket> {
        loop {
            let mut guard = self.fd.readable().await?;
            let r = guard.try_io(|fd| {
                socket::accept4(
                    fd.get_ref().as_fd().as_raw_fd(),
                    SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                )
                .map_err(nix_err)
            });
            match r {
                Ok(Ok(raw)) => {
                    // SAFETY: accept4 just returned this descriptor; nothing else owns it.
                    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                    return SeqPacket::from_fd(fd);
                }
                Ok(Err(e))
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO)
                    ) =>
                {
                    continue;
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
