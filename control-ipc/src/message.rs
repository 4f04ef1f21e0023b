//! Messages on the socket: requests, replies and notifications, each one nvlist.
//!
//! ```text
//! request      { id: number, cmd: string, args: nvlist? }
//! reply        { id: number, error: number (0 = success), message: string?, key: string?,
//!                result: nvlist? }
//! notification { notification: number, ...fields }   (if_ovpn's GET_PKT layout)
//! ```
//!
//! Every request gets exactly one reply with its `id`. A failure carries an errno, a
//! human message and, when one key is at fault, that key's path (`args.remote.port`).
//! A reply to a message whose id could not be read carries id 0.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, DecodeError, EncodeError, Limits};
use crate::de::from_nvlist;
use crate::map_error::{MapError, MapErrorKind};
use crate::nvlist::{Nvlist, Value};
use crate::schema::*;
use crate::ser::to_nvlist;

/// Largest message on the socket (1 MiB).
pub const MAX_MESSAGE: usize = 1 << 20;

/// An error reply: errno, message and the offending key if there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpcError {
    /// errno value (`EINVAL`, `ENOENT`, ...).
    pub errno: i32,
    /// Human message.
    pub message: String,
    /// Dotted path of the key at fault.
    pub key: Option<String>,
}

impl IpcError {
    /// An error with this errno and message.
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        IpcError {
            errno,
            message: message.into(),
            key: None,
        }
    }

    /// Names the key at fault.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// `EINVAL` about a key.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        IpcError::new(libc::EINVAL, message).with_key(key)
    }

    /// `ENOENT`.
    pub fn not_found(message: impl Into<String>) -> Self {
        IpcError::new(libc::ENOENT, message)
    }

    /// `EEXIST`.
    pub fn exists(message: impl Into<String>) -> Self {
        IpcError::new(libc::EEXIST, message)
    }

    /// `EBUSY`.
    pub fn busy(message: impl Into<String>) -> Self {
        IpcError::new(libc::EBUSY, message)
    }

    /// `EOPNOTSUPP`.
    pub fn unsupported(message: impl Into<String>) -> Self {
        IpcError::new(libc::EOPNOTSUPP, message)
    }

    /// `EIO`, for failures inside the daemon.
    pub fn internal(message: impl Into<String>) -> Self {
        IpcError::new(libc::EIO, message)
    }

    /// The errno's symbolic name (`EINVAL`).
    pub fn errno_name(&self) -> String {
        format!("{:?}", nix::errno::Errno::from_raw(self.errno))
    }
}

impl fmt::Display for IpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.errno_name())
    }
}

impl std::error::Error for IpcError {}

impl From<MapError> for IpcError {
    fn from(e: MapError) -> Self {
        let key = e.key();
        let errno = match e.kind {
            MapErrorKind::Unsupported(_) => libc::EOPNOTSUPP,
            _ => libc::EINVAL,
        };
        let err = IpcError::new(errno, e.to_string());
        if key.is_empty() {
            err
        } else {
            err.with_key(key)
        }
    }
}

impl From<DecodeError> for IpcError {
    fn from(e: DecodeError) -> Self {
        let errno = match e.kind {
            codec::DecodeErrorKind::TooLarge { .. } => libc::EMSGSIZE,
            _ => libc::EINVAL,
        };
        let err = IpcError::new(errno, e.to_string());
        if e.key.is_empty() {
            err
        } else {
            let k = e.key.clone();
            err.with_key(k)
        }
    }
}

impl From<EncodeError> for IpcError {
    fn from(e: EncodeError) -> Self {
        let k = e.key.clone();
        IpcError::new(libc::EINVAL, e.to_string()).with_key(k)
    }
}

macro_rules! commands {
    ($($variant:ident = $name:literal),* $(,)?) => {
        /// A command name, as on the wire.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Command {
            $(#[doc = concat!("`", $name, "`")] $variant,)*
        }

        impl Command {
            /// Every command.
            pub const ALL: &'static [Command] = &[$(Command::$variant),*];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Command::$variant => $name,)*
                }
            }

            /// From the wire name.
            pub fn from_name(s: &str) -> Option<Command> {
                match s {
                    $($name => Some(Command::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

commands! {
    NewPeer = "NEW_PEER",
    DelPeer = "DEL_PEER",
    SetPeer = "SET_PEER",
    NewKey = "NEW_KEY",
    SwapKeys = "SWAP_KEYS",
    DelKey = "DEL_KEY",
    StartVpn = "START_VPN",
    SetIfmode = "SET_IFMODE",
    GetStats = "GET_STATS",
    GetPeerStats = "GET_PEER_STATS",
    GetPeers = "GET_PEERS",
    GetInfo = "GET_INFO",
    Listen = "LISTEN",
    SetIfconfig = "SET_IFCONFIG",
    AddRoute = "ADD_ROUTE",
    DelRoute = "DEL_ROUTE",
    AddIroute = "ADD_IROUTE",
    DelIroute = "DEL_IROUTE",
    SendControl = "SEND_CONTROL",
    Subscribe = "SUBSCRIBE",
    Unsubscribe = "UNSUBSCRIBE",
    FwLoad = "FW_LOAD",
    FwList = "FW_LIST",
    FwCounters = "FW_COUNTERS",
    CtList = "CT_LIST",
    CtFlush = "CT_FLUSH",
    CtStats = "CT_STATS",
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request with its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `NEW_PEER`.
    NewPeer(NewPeer),
    /// `DEL_PEER`.
    DelPeer(PeerRef),
    /// `SET_PEER`.
    SetPeer(SetPeer),
    /// `NEW_KEY`.
    NewKey(NewKey),
    /// `SWAP_KEYS`.
    SwapKeys(PeerRef),
    /// `DEL_KEY`.
    DelKey(DelKey),
    /// `START_VPN`.
    StartVpn,
    /// `SET_IFMODE`.
    SetIfmode(SetIfmode),
    /// `GET_STATS`.
    GetStats,
    /// `GET_PEER_STATS`.
    GetPeerStats(Page),
    /// `GET_PEERS`.
    GetPeers(Page),
    /// `GET_INFO`.
    GetInfo,
    /// `LISTEN`.
    Listen(Listen),
    /// `SET_IFCONFIG`.
    SetIfconfig(SetIfconfig),
    /// `ADD_ROUTE`.
    AddRoute(Route),
    /// `DEL_ROUTE`.
    DelRoute(Route),
    /// `ADD_IROUTE`.
    AddIroute(Iroutes),
    /// `DEL_IROUTE`.
    DelIroute(Iroutes),
    /// `SEND_CONTROL`.
    SendControl(SendControl),
    /// `SUBSCRIBE` (handled by the server itself, never passed to the handler).
    Subscribe(Subscribe),
    /// `UNSUBSCRIBE` (handled by the server itself).
    Unsubscribe,
    /// `FW_LOAD`.
    FwLoad(FwLoad),
    /// `FW_LIST`.
    FwList,
    /// `FW_COUNTERS`.
    FwCounters(FwCountersRequest),
    /// `CT_LIST`.
    CtList(CtListRequest),
    /// `CT_FLUSH`.
    CtFlush(CtFlush),
    /// `CT_STATS`.
    CtStats,
}

/// A successful reply's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// No result (most set commands).
    Ok,
    /// `GET_STATS`.
    Stats(InterfaceStats),
    /// `GET_PEER_STATS`.
    PeerStats(PeerStatsPage),
    /// `GET_PEERS`.
    Peers(PeersPage),
    /// `GET_INFO`.
    Info(Info),
    /// `LISTEN`: the bound address.
    Listening(Listen),
    /// `SUBSCRIBE`.
    Subscribed(Subscribed),
    /// `FW_LOAD`.
    FwLoaded(FwLoaded),
    /// `FW_LIST`.
    FwRules(FwRules),
    /// `FW_COUNTERS`.
    FwCounters(FwCounters),
    /// `CT_LIST`.
    CtList(CtPage),
    /// `CT_FLUSH`.
    CtFlushed(CtFlushed),
    /// `CT_STATS`.
    CtStats(CtStats),
}

fn body<T: Serialize>(v: &T) -> Result<Option<Nvlist>, MapError> {
    to_nvlist(v).map(Some)
}

impl Request {
    /// The command.
    pub fn command(&self) -> Command {
        match self {
            Request::NewPeer(_) => Command::NewPeer,
            Request::DelPeer(_) => Command::DelPeer,
            Request::SetPeer(_) => Command::SetPeer,
            Request::NewKey(_) => Command::NewKey,
            Request::SwapKeys(_) => Command::SwapKeys,
            Request::DelKey(_) => Command::DelKey,
            Request::StartVpn => Command::StartVpn,
            Request::SetIfmode(_) => Command::SetIfmode,
            Request::GetStats => Command::GetStats,
            Request::GetPeerStats(_) => Command::GetPeerStats,
            Request::GetPeers(_) => Command::GetPeers,
            Request::GetInfo => Command::GetInfo,
            Request::Listen(_) => Command::Listen,
            Request::SetIfconfig(_) => Command::SetIfconfig,
            Request::AddRoute(_) => Command::AddRoute,
            Request::DelRoute(_) => Command::DelRoute,
            Request::AddIroute(_) => Command::AddIroute,
            Request::DelIroute(_) => Command::DelIroute,
            Request::SendControl(_) => Command::SendControl,
            Request::Subscribe(_) => Command::Subscribe,
            Request::Unsubscribe => Command::Unsubscribe,
            Request::FwLoad(_) => Command::FwLoad,
            Request::FwList => Command::FwList,
            Request::FwCounters(_) => Command::FwCounters,
            Request::CtList(_) => Command::CtList,
            Request::CtFlush(_) => Command::CtFlush,
            Request::CtStats => Command::CtStats,
        }
    }

    /// The `args` list (`None` for commands without arguments).
    pub fn args(&self) -> Result<Option<Nvlist>, MapError> {
        match self {
            Request::NewPeer(a) => body(a),
            Request::DelPeer(a) | Request::SwapKeys(a) => body(a),
            Request::SetPeer(a) => body(a),
            Request::NewKey(a) => body(a),
            Request::DelKey(a) => body(a),
            Request::SetIfmode(a) => body(a),
            Request::GetPeerStats(a) | Request::GetPeers(a) => body(a),
            Request::Listen(a) => body(a),
            Request::SetIfconfig(a) => body(a),
            Request::AddRoute(a) | Request::DelRoute(a) => body(a),
            Request::AddIroute(a) | Request::DelIroute(a) => body(a),
            Request::SendControl(a) => body(a),
            Request::Subscribe(a) => body(a),
            Request::FwLoad(a) => body(a),
            Request::FwCounters(a) => body(a),
            Request::CtList(a) => body(a),
            Request::CtFlush(a) => body(a),
            Request::StartVpn
            | Request::GetStats
            | Request::GetInfo
            | Request::Unsubscribe
            | Request::FwList
            | Request::CtStats => Ok(None),
        }
    }

    /// Builds a request from its command and `args` (absent args read as an empty list, so
    /// a missing required key is reported by name).
    pub fn from_parts(cmd: Command, args: Option<&Nvlist>) -> Result<Request, MapError> {
        let empty = Nvlist::new();
        let a = args.unwrap_or(&empty);
        fn p<T: DeserializeOwned>(a: &Nvlist) -> Result<T, MapError> {
            from_nvlist(a).map_err(|e| e.within("args"))
        }
        Ok(match cmd {
            Command::NewPeer => Request::NewPeer(p(a)?),
            Command::DelPeer => Request::DelPeer(p(a)?),
            Command::SetPeer => Request::SetPeer(p(a)?),
            Command::NewKey => Request::NewKey(p(a)?),
            Command::SwapKeys => Request::SwapKeys(p(a)?),
            Command::DelKey => Request::DelKey(p(a)?),
            Command::StartVpn => Request::StartVpn,
            Command::SetIfmode => Request::SetIfmode(p(a)?),
            Command::GetStats => Request::GetStats,
            Command::GetPeerStats => Request::GetPeerStats(p(a)?),
            Command::GetPeers => Request::GetPeers(p(a)?),
            Command::GetInfo => Request::GetInfo,
            Command::Listen => Request::Listen(p(a)?),
            Command::SetIfconfig => Request::SetIfconfig(p(a)?),
            Command::AddRoute => Request::AddRoute(p(a)?),
            Command::DelRoute => Request::DelRoute(p(a)?),
            Command::AddIroute => Request::AddIroute(p(a)?),
            Command::DelIroute => Request::DelIroute(p(a)?),
            Command::SendControl => Request::SendControl(p(a)?),
            Command::Subscribe => Request::Subscribe(p(a)?),
            Command::Unsubscribe => Request::Unsubscribe,
            Command::FwLoad => Request::FwLoad(p(a)?),
            Command::FwList => Request::FwList,
            Command::FwCounters => Request::FwCounters(p(a)?),
            Command::CtList => Request::CtList(p(a)?),
            Command::CtFlush => Request::CtFlush(p(a)?),
            Command::CtStats => Request::CtStats,
        })
    }

    /// Checks what types alone cannot: id ranges, key lengths for the cipher, non-empty
    /// lists. The server runs this before the handler sees a request.
    pub fn validate(&self) -> Result<(), IpcError> {
        fn peer(id: u32) -> Result<(), IpcError> {
            if id > MAX_PEER_ID {
                return Err(IpcError::invalid(
                    "args.peerid",
                    format!("peer id {id} exceeds {MAX_PEER_ID} (24 bits, 0xFFFFFF reserved)"),
                ));
            }
            Ok(())
        }
        fn key(dir: &str, k: &KeyConfig) -> Result<(), IpcError> {
            let want = k.cipher.key_len();
            if k.key.len() != want {
                return Err(IpcError::invalid(
                    format!("args.{dir}.key"),
                    format!(
                        "{} needs a {want}-byte key, got {} bytes",
                        k.cipher,
                        k.key.len()
                    ),
                ));
            }
            if k.iv.len() != k.cipher.iv_len() {
                return Err(IpcError::invalid(
                    format!("args.{dir}.iv"),
                    format!(
                        "{} needs an {}-byte implicit IV, got {} bytes",
                        k.cipher,
                        k.cipher.iv_len(),
                        k.iv.len()
                    ),
                ));
            }
            Ok(())
        }
        match self {
            Request::NewPeer(p) => {
                peer(p.peerid)?;
                if let Some(l) = p.local
                    && l.is_ipv4() != p.remote.is_ipv4()
                {
                    return Err(IpcError::invalid(
                        "args.local",
                        "local and remote addresses are of different families",
                    ));
                }
                if p.remote.port() == 0 {
                    return Err(IpcError::invalid("args.remote.port", "remote port is 0"));
                }
                Ok(())
            }
            Request::DelPeer(p) | Request::SwapKeys(p) => peer(p.peerid),
            Request::SetPeer(p) => peer(p.peerid),
            Request::NewKey(k) => {
                peer(k.peerid)?;
                if k.keyid > MAX_KEY_ID {
                    return Err(IpcError::invalid(
                        "args.keyid",
                        format!("key id {} exceeds {MAX_KEY_ID}", k.keyid),
                    ));
                }
                key("encrypt", &k.encrypt)?;
                key("decrypt", &k.decrypt)
            }
            Request::DelKey(k) => peer(k.peerid),
            Request::SetIfmode(m) => {
                if m.ifmode != IFMODE_P2P && m.ifmode != IFMODE_SUBNET {
                    return Err(IpcError::invalid(
                        "args.ifmode",
                        format!(
                            "ifmode 0x{:x} is neither point-to-point (0x{IFMODE_P2P:x}) nor subnet (0x{IFMODE_SUBNET:x})",
                            m.ifmode
                        ),
                    ));
                }
                Ok(())
            }
            Request::AddIroute(r) | Request::DelIroute(r) => {
                peer(r.peerid)?;
                if r.iroutes.is_empty() {
                    return Err(IpcError::invalid("args.iroutes", "no iroutes given"));
                }
                Ok(())
            }
            Request::SendControl(s) => {
                if let Some(id) = s.peerid {
                    peer(id)?;
                }
                if s.packet.0.is_empty() {
                    return Err(IpcError::invalid("args.packet", "empty packet"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl Response {
    /// The reply body (`None` for [`Response::Ok`]).
    pub fn result(&self) -> Result<Option<Nvlist>, MapError> {
        match self {
            Response::Ok => Ok(None),
            Response::Stats(r) => body(r),
            Response::PeerStats(r) => body(r),
            Response::Peers(r) => body(r),
            Response::Info(r) => body(r),
            Response::Listening(r) => body(r),
            Response::Subscribed(r) => body(r),
            Response::FwLoaded(r) => body(r),
            Response::FwRules(r) => body(r),
            Response::FwCounters(r) => body(r),
            Response::CtList(r) => body(r),
            Response::CtFlushed(r) => body(r),
            Response::CtStats(r) => body(r),
        }
    }

    /// Whether this is the kind of reply `cmd` has.
    pub fn answers(&self, cmd: Command) -> bool {
        matches!(
            (cmd, self),
            (Command::GetStats, Response::Stats(_))
                | (Command::GetPeerStats, Response::PeerStats(_))
                | (Command::GetPeers, Response::Peers(_))
                | (Command::GetInfo, Response::Info(_))
                | (Command::Listen, Response::Listening(_))
                | (Command::Subscribe, Response::Subscribed(_))
                | (Command::FwLoad, Response::FwLoaded(_))
                | (Command::FwList, Response::FwRules(_))
                | (Command::FwCounters, Response::FwCounters(_))
                | (Command::CtList, Response::CtList(_))
                | (Command::CtFlush, Response::CtFlushed(_))
                | (Command::CtStats, Response::CtStats(_))
        ) || (matches!(self, Response::Ok)
            && matches!(
                cmd,
                Command::NewPeer
                    | Command::DelPeer
                    | Command::SetPeer
                    | Command::NewKey
                    | Command::SwapKeys
                    | Command::DelKey
                    | Command::StartVpn
                    | Command::SetIfmode
                    | Command::SetIfconfig
                    | Command::AddRoute
                    | Command::DelRoute
                    | Command::AddIroute
                    | Command::DelIroute
                    | Command::SendControl
                    | Command::Unsubscribe
            ))
    }

    /// Reads the reply body of `cmd`.
    pub fn from_result(cmd: Command, result: Option<&Nvlist>) -> Result<Response, MapError> {
        let empty = Nvlist::new();
        let r = result.unwrap_or(&empty);
        fn p<T: DeserializeOwned>(a: &Nvlist) -> Result<T, MapError> {
            from_nvlist(a).map_err(|e| e.within("result"))
        }
        Ok(match cmd {
            Command::GetStats => Response::Stats(p(r)?),
            Command::GetPeerStats => Response::PeerStats(p(r)?),
            Command::GetPeers => Response::Peers(p(r)?),
            Command::GetInfo => Response::Info(p(r)?),
            Command::Listen => Response::Listening(p(r)?),
            Command::Subscribe => Response::Subscribed(p(r)?),
            Command::FwLoad => Response::FwLoaded(p(r)?),
            Command::FwList => Response::FwRules(p(r)?),
            Command::FwCounters => Response::FwCounters(p(r)?),
            Command::CtList => Response::CtList(p(r)?),
            Command::CtFlush => Response::CtFlushed(p(r)?),
            Command::CtStats => Response::CtStats(p(r)?),
            _ => Response::Ok,
        })
    }
}

/// A notification pushed to subscribers.
#[derive(Clone, Debug, PartialEq)]
pub enum Notification {
    /// A peer was deleted, with its final counters.
    DelPeer(DelPeerNote),
    /// A peer's key must be renegotiated.
    RotateKey(PeerRef),
    /// A peer moved to a new address.
    Float(FloatNote),
    /// A control packet for dco-control.
    ControlPacket(ControlPacketNote),
    /// This subscriber lost `count` notifications here.
    Missed(MissedNote),
    /// A connection-tracking event.
    CtEvent(CtEventNote),
    /// A type this build does not know (from a newer daemon), kept whole.
    Unknown {
        /// The type number.
        notification: u64,
        /// All fields.
        body: Nvlist,
    },
}

impl Notification {
    /// The type number.
    pub fn number(&self) -> u64 {
        match self {
            Notification::Unknown { notification, .. } => *notification,
            other => other.kind().map(|k| k.number()).unwrap_or(u64::MAX),
        }
    }

    /// The kind, unless unknown.
    pub fn kind(&self) -> Option<NotificationKind> {
        Some(match self {
            Notification::DelPeer(_) => NotificationKind::DelPeer,
            Notification::RotateKey(_) => NotificationKind::RotateKey,
            Notification::Float(_) => NotificationKind::Float,
            Notification::ControlPacket(_) => NotificationKind::ControlPacket,
            Notification::Missed(_) => NotificationKind::Missed,
            Notification::CtEvent(_) => NotificationKind::CtEvent,
            Notification::Unknown { .. } => return None,
        })
    }

    /// The wire list: `notification` first, then the fields.
    pub fn to_nvlist(&self) -> Result<Nvlist, MapError> {
        let fields = match self {
            Notification::DelPeer(n) => to_nvlist(n)?,
            Notification::RotateKey(n) => to_nvlist(n)?,
            Notification::Float(n) => to_nvlist(n)?,
            Notification::ControlPacket(n) => to_nvlist(n)?,
            Notification::Missed(n) => to_nvlist(n)?,
            Notification::CtEvent(n) => to_nvlist(n)?,
            Notification::Unknown { body, .. } => {
                let mut b = body.clone();
                b.remove("notification");
                b
            }
        };
        // if_ovpn's GET_PKT puts `peerid` first, then `notification`: keep that layout.
        let mut out = Nvlist::new();
        let mut pairs = fields.into_pairs().into_iter().peekable();
        if let Some((k, _)) = pairs.peek()
            && k == "peerid"
            && let Some((k, v)) = pairs.next()
        {
            out.push(k, v);
        }
        out.push("notification", Value::Number(self.number()));
        for (k, v) in pairs {
            out.push(k, v);
        }
        Ok(out)
    }

    /// Reads a notification list.
    pub fn from_nvlist(nvl: &Nvlist) -> Result<Notification, MapError> {
        let n = match nvl.get("notification") {
            Some(Value::Number(n)) => *n,
            Some(other) => {
                return Err(MapError::new(MapErrorKind::WrongType {
                    expected: "number".into(),
                    found: other.type_name().into(),
                })
                .within("notification"));
            }
            None => return Err(MapError::new(MapErrorKind::MissingKey).within("notification")),
        };
        Ok(match NotificationKind::from_number(n) {
            Some(NotificationKind::DelPeer) => Notification::DelPeer(from_nvlist(nvl)?),
            Some(NotificationKind::RotateKey) => Notification::RotateKey(from_nvlist(nvl)?),
            Some(NotificationKind::Float) => Notification::Float(from_nvlist(nvl)?),
            Some(NotificationKind::ControlPacket) => Notification::ControlPacket(from_nvlist(nvl)?),
            Some(NotificationKind::Missed) => Notification::Missed(from_nvlist(nvl)?),
            Some(NotificationKind::CtEvent) => Notification::CtEvent(from_nvlist(nvl)?),
            None => Notification::Unknown {
                notification: n,
                body: nvl.clone(),
            },
        })
    }
}

// ---------------------------------------------------------------------------------------
// Envelopes

/// Packs a request.
pub fn encode_request(id: u64, req: &Request) -> Result<Vec<u8>, IpcError> {
    let mut nvl = Nvlist::new()
        .with("id", Value::Number(id))
        .with("cmd", Value::String(req.command().as_str().to_owned()));
    if let Some(args) = req.args()? {
        nvl.push("args", Value::Nvlist(args));
    }
    Ok(codec::encode(&nvl)?)
}

/// Reads the id of a message, leniently, even from a message that does not decode (a
/// truncated or oversized one): scans the root list's leading pairs for a NUMBER `id`.
/// Returns 0 when there is none.
pub fn peek_id(buf: &[u8]) -> u64 {
    use crate::wire::{self, ty};
    if buf.len() < wire::LIST_HEADER_LEN || buf[0] != wire::HEADER_MAGIC {
        return 0;
    }
    let be = buf[2] & wire::FLAG_BIG_ENDIAN != 0;
    let rd16 = |b: &[u8]| {
        let a = [b[0], b[1]];
        if be {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    };
    let rd64 = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        if be {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        }
    };
    let mut pos = wire::LIST_HEADER_LEN;
    for _ in 0..8 {
        let Some(h) = buf.get(pos..pos + wire::PAIR_HEADER_LEN) else {
            return 0;
        };
        let code = h[0];
        let namesize = rd16(&h[1..3]) as usize;
        let datasize = rd64(&h[3..11]);
        pos += wire::PAIR_HEADER_LEN;
        let Some(name) = buf.get(pos..pos + namesize) else {
            return 0;
        };
        pos += namesize;
        if code == ty::NUMBER && name == b"id\0" && datasize == 8 {
            return buf.get(pos..pos + 8).map(rd64).unwrap_or(0);
        }
        // Only flat scalar pairs can be skipped without parsing their content.
        if !matches!(
            code,
            ty::NULL | ty::BOOL | ty::NUMBER | ty::STRING | ty::BINARY
        ) {
            return 0;
        }
        let Ok(ds) = usize::try_from(datasize) else {
            return 0;
        };
        pos = match pos.checked_add(ds) {
            Some(p) => p,
            None => return 0,
        };
    }
    0
}

/// Reads a request: `Ok((id, request))`, or `Err((id, error))` to reply with.
pub fn decode_request(buf: &[u8], limits: &Limits) -> Result<(u64, Request), (u64, IpcError)> {
    let nvl = codec::decode_with(buf, limits, 0).map_err(|e| (peek_id(buf), IpcError::from(e)))?;
    let id = match nvl.get("id") {
        Some(Value::Number(n)) => *n,
        Some(other) => {
            return Err((
                0,
                IpcError::invalid(
                    "id",
                    format!("id must be a number, not {}", other.type_name()),
                ),
            ));
        }
        None => return Err((0, IpcError::invalid("id", "missing key 'id'"))),
    };
    let cmd = match nvl.get("cmd") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err((
                id,
                IpcError::invalid(
                    "cmd",
                    format!("cmd must be a string, not {}", other.type_name()),
                ),
            ));
        }
        None => return Err((id, IpcError::invalid("cmd", "missing key 'cmd'"))),
    };
    let Some(command) = Command::from_name(cmd) else {
        return Err((
            id,
            IpcError::unsupported(format!("unknown command '{cmd}'")).with_key("cmd"),
        ));
    };
    let args = match nvl.get("args") {
        Some(Value::Nvlist(a)) => Some(a),
        Some(other) => {
            return Err((
                id,
                IpcError::invalid(
                    "args",
                    format!("args must be an nvlist, not {}", other.type_name()),
                ),
            ));
        }
        None => None,
    };
    let req = Request::from_parts(command, args).map_err(|e| (id, IpcError::from(e)))?;
    req.validate().map_err(|e| (id, e))?;
    Ok((id, req))
}

/// Packs a reply.
pub fn encode_reply(id: u64, reply: &Result<Response, IpcError>) -> Vec<u8> {
    let build = |reply: &Result<Response, IpcError>| -> Result<Vec<u8>, IpcError> {
        let mut nvl = Nvlist::new().with("id", Value::Number(id));
        match reply {
            Ok(resp) => {
                nvl.push("error", Value::Number(0));
                if let Some(r) = resp.result()? {
                    nvl.push("result", Value::Nvlist(r));
                }
            }
            Err(e) => {
                nvl.push("error", Value::Number(e.errno.max(1) as u64));
                nvl.push("message", Value::String(e.message.replace('\0', " ")));
                if let Some(k) = &e.key {
                    nvl.push("key", Value::String(k.replace('\0', " ")));
                }
            }
        }
        Ok(codec::encode(&nvl)?)
    };
    match build(reply) {
        Ok(b) => b,
        Err(e) => {
            // The reply itself could not be packed (a handler bug); say so instead.
            let fallback = Err(IpcError::internal(format!(
                "reply could not be packed: {e}"
            )));
            build(&fallback).unwrap_or_default()
        }
    }
}

/// Packs a notification.
pub fn encode_notification(n: &Notification) -> Result<Vec<u8>, IpcError> {
    Ok(codec::encode(&n.to_nvlist()?)?)
}

/// A message received by a client.
#[derive(Debug)]
pub enum Incoming {
    /// A reply.
    Reply {
        /// The request id.
        id: u64,
        /// The body or the error.
        result: Result<Option<Nvlist>, IpcError>,
    },
    /// A notification.
    Notification(Notification),
}

/// Reads a message arriving at a client.
pub fn decode_incoming(buf: &[u8], limits: &Limits) -> Result<Incoming, IpcError> {
    let mut nvl = codec::decode_with(buf, limits, 0)?;
    if nvl.contains("notification") {
        return Ok(Incoming::Notification(Notification::from_nvlist(&nvl)?));
    }
    let id = match nvl.get("id") {
        Some(Value::Number(n)) => *n,
        _ => return Err(IpcError::invalid("id", "reply without a numeric id")),
    };
    let errno = match nvl.get("error") {
        Some(Value::Number(n)) => *n,
        _ => return Err(IpcError::invalid("error", "reply without a numeric error")),
    };
    if errno != 0 {
        let message = match nvl.get("message") {
            Some(Value::String(s)) => s.clone(),
            _ => String::from("(no message)"),
        };
        let key = match nvl.get("key") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        return Ok(Incoming::Reply {
            id,
            result: Err(IpcError {
                errno: i32::try_from(errno).unwrap_or(libc::EIO),
                message,
                key,
            }),
        });
    }
    let result = match nvl.remove("result") {
        Some(Value::Nvlist(r)) => Some(r),
        Some(_) => return Err(IpcError::invalid("result", "result must be an nvlist")),
        None => None,
    };
    Ok(Incoming::Reply {
        id,
        result: Ok(result),
    })
}
