//! Tunnel addresses for clients: the `server`/`server-ipv6` pool, client-config-dir files,
//! `max-clients` and `duplicate-cn`.
//!
//! The pool follows OpenVPN 2.6 (`pool.c`, `helper.c`):
//! - IPv4 (`server net mask`, topology subnet): the server is network+1, clients get
//!   network+2 … broadcast−1 (or the `ifconfig-pool` range);
//! - IPv6 (`server-ipv6 net/bits`): the server is net::1, the pool starts at net::1000
//!   (net::2 for /112 and longer; an all-zero host part is skipped) and holds 65536
//!   addresses (fewer for /112 and longer);
//! - with both, one index serves both families (client *i* gets IPv4 start+i and IPv6
//!   base+i) and the smaller pool limits the count;
//! - a client gets back the address its common name had before, if that address is still
//!   free (2.6's `ifconfig-pool-persist`, in memory); otherwise the free address released
//!   longest ago; with `duplicate-cn`, simply the first free one.
//!
//! Client-config-dir (`ccd/<common name>`, else `ccd/DEFAULT`) may hold `ifconfig-push`,
//! `ifconfig-ipv6-push`, `iroute`, `iroute-ipv6`, `push`, `push-reset`, `push-remove` and
//! `disable`. `ccd-exclusive` refuses clients without their own file. A broken ccd file
//! refuses the client (fail closed) with the file's line in the message. Unlike 2.6, a
//! client with a static IPv4 from ccd still gets an IPv6 pool address, and a static
//! address already held by another client is refused instead of being shared.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::config::lexer::directives;
use crate::config::options::Args;
use crate::config::{ConfigError, ConfigErrorKind, Ipv6Net, Options, Role, ServerNet};

/// 2.6's `IFCONFIG_POOL_MAX`.
pub const POOL_MAX: u32 = 65536;
/// The name of the fallback client-config-dir file.
pub const CCD_DEFAULT: &str = "DEFAULT";

/// Errors building a pool from options.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Too few addresses.
    #[error("{family} pool size is too small ({size}), must be at least 2")]
    TooSmall {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The size.
        size: u32,
    },
    /// The options are not a server's.
    #[error("an address pool needs a server config")]
    NotServer,
}

/// Why a client cannot be admitted. The server answers `AUTH_FAILED` and logs this.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// `max-clients` reached.
    #[error("maximum number of clients ({0}) reached")]
    MaxClients(u32),
    /// No free address.
    #[error("no free address in the pool")]
    PoolExhausted,
    /// The common name cannot name a ccd file (".", "..").
    #[error("common name '{0}' cannot be used as a client-config-dir file name")]
    BadCommonName(String),
    /// `ccd-exclusive` and no file for this client.
    #[error("client-config-dir authentication failed for common name '{cn}': no file {path}")]
    CcdExclusive {
        /// The common name.
        cn: String,
        /// The file looked for.
        path: String,
    },
    /// The ccd file says `disable`.
    #[error("client '{0}' is disabled in its client-config-dir file")]
    Disabled(String),
    /// The ccd file could not be read or has an error.
    #[error("client-config-dir file: {0}")]
    CcdFile(String),
    /// A static address outside the server's subnet.
    #[error("ifconfig-push {addr} for '{cn}' is outside the tunnel subnet {net}")]
    OutsideSubnet {
        /// The common name.
        cn: String,
        /// The address.
        addr: String,
        /// The subnet.
        net: String,
    },
    /// A static address that another connected client holds.
    #[error("address {addr} for '{cn}' is already in use by another client")]
    AddressInUse {
        /// The common name.
        cn: String,
        /// The address.
        addr: String,
    },
    /// Neither a pool address nor an `ifconfig-push` (e.g. `server ... nopool`).
    #[error(
        "no tunnel address for '{0}': the pool is off and its client-config-dir file has no ifconfig-push"
    )]
    NoAddress(String),
}

/// Pool geometry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// IPv4: first address, count, netmask pushed with it.
    pub v4: Option<(Ipv4Addr, u32, Ipv4Addr)>,
    /// IPv6: first address, count, prefix length pushed with it.
    pub v6: Option<(Ipv6Addr, u32, u8)>,
    /// One index for both families: the smaller size.
    pub size: u32,
    /// `duplicate-cn`: no address memory per name.
    pub duplicate_cn: bool,
}

impl PoolConfig {
    /// The pool a server config defines (`None` when `nopool` and no `ifconfig-pool`, and
    /// no `server-ipv6`).
    pub fn from_options(o: &Options) -> Result<Option<Self>, PoolError> {
        if o.role != Role::Server {
            return Err(PoolError::NotServer);
        }
        let v4 = match (o.server, o.ifconfig_pool) {
            (Some(s), Some(p)) => Some((
                p.start,
                u32::from(p.end) - u32::from(p.start) + 1,
                s.netmask,
            )),
            (Some(s), None) if !s.nopool => {
                let start = u32::from(s.network) + 2;
                let end = u32::from(s.broadcast()) - 1;
                Some((
                    Ipv4Addr::from(start),
                    end.saturating_sub(start) + 1,
                    s.netmask,
                ))
            }
            _ => None,
        };
        if let Some((_, size, _)) = v4
            && size < 2
        {
            return Err(PoolError::TooSmall {
                family: "IPv4",
                size,
            });
        }
        let v6 = o.server_ipv6.map(|n| {
            let bits = u32::from(n.prefix_len);
            let net = u128::from(n.network());
            let mut base = net + if bits < 112 { 0x1000 } else { 2 };
            // The host part within the last 32 bits; skip an all-zero host part.
            let mut host = (base & 0xFFFF_FFFF) as u32;
            if 128 - bits < 32 {
                host &= (1u32 << (128 - bits)) - 1;
            }
            if host == 0 {
                base += 1;
                host = 1;
            }
            let size = if bits >= 112 {
                (1u32 << (128 - bits)) - host
            } else {
                POOL_MAX
            };
            (Ipv6Addr::from(base), size, n.prefix_len)
        });
        if let Some((_, size, _)) = v6
            && size < 2
        {
            return Err(PoolError::TooSmall {
                family: "IPv6",
                size,
            });
        }
        let size = match (v4, v6) {
            (Some((_, a, _)), Some((_, b, _))) => a.min(b),
            (Some((_, a, _)), None) => a,
            (None, Some((_, b, _))) => b,
            (None, None) => return Ok(None),
        };
        Ok(Some(PoolConfig {
            v4,
            v6,
            size: size.min(POOL_MAX),
            duplicate_cn: o.duplicate_cn,
        }))
    }
}

#[derive(Clone, Debug, Default)]
struct Entry {
    in_use: bool,
    common_name: Option<String>,
    /// 0 = never released; else the release sequence number.
    last_release: u64,
}

/// One leased pool slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Slot index.
    pub handle: u32,
    /// The IPv4 address, if the pool has IPv4.
    pub ipv4: Option<Ipv4Addr>,
    /// The IPv6 address, if the pool has IPv6.
    pub ipv6: Option<Ipv6Addr>,
}

/// The address pool (2.6's `ifconfig_pool`).
#[derive(Clone, Debug)]
pub struct AddressPool {
    cfg: PoolConfig,
    entries: Vec<Entry>,
    releases: u64,
}

impl AddressPool {
    /// An empty pool.
    pub fn new(cfg: PoolConfig) -> Self {
        let entries = vec![Entry::default(); cfg.size as usize];
        AddressPool {
            cfg,
            entries,
            releases: 0,
        }
    }

    /// The geometry.
    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    fn lease(&self, handle: u32) -> Lease {
        Lease {
            handle,
            ipv4: self
                .cfg
                .v4
                .map(|(s, _, _)| Ipv4Addr::from(u32::from(s) + handle)),
            ipv6: self
                .cfg
                .v6
                .map(|(b, _, _)| Ipv6Addr::from(u128::from(b) + u128::from(handle))),
        }
    }

    /// Takes a slot for `common_name`: its previous one if free, else the free slot released
    /// longest ago (never-used slots first, lowest first); with duplicate-cn the first free.
    pub fn acquire(&mut self, common_name: &str) -> Option<Lease> {
        let mut new_usage: Option<usize> = None;
        let mut earliest = 0u64;
        let mut previous: Option<usize> = None;
        for (i, e) in self.entries.iter().enumerate() {
            if e.in_use {
                continue;
            }
            if self.cfg.duplicate_cn {
                new_usage = Some(i);
                break;
            }
            if new_usage.is_none() || e.last_release < earliest {
                earliest = e.last_release;
                new_usage = Some(i);
            }
            if previous.is_none() && e.common_name.as_deref() == Some(common_name) {
                previous = Some(i);
            }
        }
        let i = previous.or(new_usage)?;
        let e = &mut self.entries[i];
        e.in_use = true;
        e.common_name = Some(common_name.to_string());
        e.last_release = 0;
        Some(self.lease(i as u32))
    }

    /// Gives a slot back; the common name is remembered so the client can get the same
    /// address next time.
    pub fn release(&mut self, handle: u32) {
        if let Some(e) = self.entries.get_mut(handle as usize)
            && e.in_use
        {
            self.releases += 1;
            e.in_use = false;
            e.last_release = self.releases;
        }
    }

    /// Marks a released slot as used again (undo of [`release`](Self::release)).
    fn reclaim(&mut self, handle: u32) {
        if let Some(e) = self.entries.get_mut(handle as usize) {
            e.in_use = true;
            e.last_release = 0;
        }
    }

    /// Number of slots in use.
    pub fn in_use(&self) -> usize {
        self.entries.iter().filter(|e| e.in_use).count()
    }

    /// The slot an IPv4 address belongs to, if it is inside the pool.
    pub fn handle_of_v4(&self, a: Ipv4Addr) -> Option<u32> {
        let (start, _, _) = self.cfg.v4?;
        let off = u32::from(a).checked_sub(u32::from(start))?;
        (off < self.cfg.size).then_some(off)
    }

    /// True if slot `handle` is leased.
    pub fn is_leased(&self, handle: u32) -> bool {
        self.entries.get(handle as usize).is_some_and(|e| e.in_use)
    }
}

// ---------------------------------------------------------------------------------------
// client-config-dir
// ---------------------------------------------------------------------------------------

/// What a client-config-dir file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CcdOptions {
    /// `ifconfig-push local netmask`.
    pub ifconfig_push: Option<(Ipv4Addr, Ipv4Addr)>,
    /// `ifconfig-ipv6-push addr/bits [remote]`.
    pub ifconfig_ipv6_push: Option<(Ipv6Net, Option<Ipv6Addr>)>,
    /// `iroute network [netmask]`.
    pub iroutes: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// `iroute-ipv6 network/bits`.
    pub iroutes_ipv6: Vec<Ipv6Net>,
    /// `push` lines (added after the global list).
    pub push: Vec<String>,
    /// `push-reset`: drop the global push list for this client.
    pub push_reset: bool,
    /// `push-remove prefix`: drop global options starting with it.
    pub push_remove: Vec<String>,
    /// `disable`.
    pub disable: bool,
}

impl CcdOptions {
    /// Parses a ccd file's text (`name` is used in error locations).
    pub fn parse(name: &str, text: &str) -> Result<Self, ConfigError> {
        let file: Arc<str> = Arc::from(name);
        let mut c = CcdOptions::default();
        for d in directives(text, &file)? {
            let a = Args { d: &d };
            match d.name.as_str() {
                "ifconfig-push" => {
                    a.need(2, 3, "ifconfig-push local netmask [alias]")?;
                    if a.n() == 3 {
                        return Err(a.unsupported_value(
                            2,
                            "the alias form is not supported",
                            "give local and netmask",
                        ));
                    }
                    c.ifconfig_push = Some((a.ipv4(0)?, a.netmask(1)?.0));
                }
                "ifconfig-ipv6-push" => {
                    a.need(1, 2, "ifconfig-ipv6-push addr/bits [remote]")?;
                    let net = a.ipv6net(0, None)?;
                    let remote = if a.n() == 2 {
                        Some(
                            Ipv6Addr::from_str(a.s(1))
                                .map_err(|_| a.bad(1, "not an IPv6 address"))?,
                        )
                    } else {
                        None
                    };
                    c.ifconfig_ipv6_push = Some((net, remote));
                }
                "iroute" => {
                    a.need(1, 2, "iroute network [netmask]")?;
                    let net = a.ipv4(0)?;
                    let mask = if a.n() == 2 {
                        a.netmask(1)?.0
                    } else {
                        Ipv4Addr::BROADCAST
                    };
                    if u32::from(net) & !u32::from(mask) != 0 {
                        return Err(a.bad(0, format!("has host bits set for netmask {mask}")));
                    }
                    c.iroutes.push((net, mask));
                }
                "iroute-ipv6" => {
                    a.need(1, 1, "iroute-ipv6 network/bits")?;
                    let n = a.ipv6net(0, Some(128))?;
                    if n.addr != n.network() {
                        return Err(a.bad(0, "has host bits set"));
                    }
                    c.iroutes_ipv6.push(n);
                }
                "push" => {
                    a.need(1, 1, "push \"option args\"")?;
                    let v = a.s(0);
                    if v.contains(',')
                        || v.trim().is_empty()
                        || v.bytes().any(|b| !(0x20..0x7f).contains(&b))
                    {
                        return Err(a.bad(
                            0,
                            "a pushed option is non-empty printable ASCII without commas",
                        ));
                    }
                    c.push.push(v.to_string());
                }
                "push-reset" => {
                    a.need(0, 0, "push-reset")?;
                    c.push_reset = true;
                    c.push.clear();
                }
                "push-remove" => {
                    a.need(1, 1, "push-remove option-prefix")?;
                    c.push_remove.push(a.s(0).to_string());
                }
                "disable" => {
                    a.need(0, 0, "disable")?;
                    c.disable = true;
                }
                other => {
                    return Err(ConfigError::new(
                        d.loc.clone(),
                        ConfigErrorKind::NotAllowedHere {
                            option: other.to_string(),
                            why: "a client-config-dir file takes ifconfig-push, ifconfig-ipv6-push, iroute, iroute-ipv6, push, push-reset, push-remove and disable".into(),
                        },
                    ));
                }
            }
        }
        Ok(c)
    }
}

/// The file name 2.6 uses for a common name: `/` becomes `_`; `.` and `..` are refused.
pub fn ccd_file_name(common_name: &str) -> Option<String> {
    let s: String = common_name
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    (!s.is_empty() && s != "." && s != "..").then_some(s)
}

/// A client-config-dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfigDir {
    /// The directory.
    pub dir: PathBuf,
    /// `ccd-exclusive`.
    pub exclusive: bool,
}

impl ClientConfigDir {
    /// Reads the file for `common_name` (or `DEFAULT` unless exclusive). `Ok(None)` means
    /// no file applies.
    pub fn lookup(&self, common_name: &str) -> Result<Option<CcdOptions>, AdmitError> {
        let name = ccd_file_name(common_name)
            .ok_or_else(|| AdmitError::BadCommonName(common_name.into()))?;
        let own = self.dir.join(&name);
        if self.exclusive && (common_name == CCD_DEFAULT || !own.is_file()) {
            return Err(AdmitError::CcdExclusive {
                cn: common_name.into(),
                path: own.display().to_string(),
            });
        }
        let path = if own.is_file() {
            own
        } else {
            let d = self.dir.join(CCD_DEFAULT);
            if !d.is_file() {
                return Ok(None);
            }
            d
        };
        read_ccd(&path).map(Some)
    }
}

fn read_ccd(path: &Path) -> Result<CcdOptions, AdmitError> {
    let bytes =
        std::fs::read(path).map_err(|e| AdmitError::CcdFile(format!("{}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| AdmitError::CcdFile(format!("{}: not UTF-8 text", path.display())))?;
    CcdOptions::parse(&path.display().to_string(), &text)
        .map_err(|e| AdmitError::CcdFile(e.to_string()))
}

// ---------------------------------------------------------------------------------------
// Admission: pool + ccd + limits
// ---------------------------------------------------------------------------------------

/// Identifies an admitted client within a [`ClientAddressing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// What an admitted client gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// Handle to release later.
    pub id: ClientId,
    /// The common name.
    pub common_name: String,
    /// `ifconfig` to push: address and netmask.
    pub ipv4: Option<(Ipv4Addr, Ipv4Addr)>,
    /// `ifconfig-ipv6` to push: address, prefix length, server address.
    pub ipv6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
    /// Networks behind this client (`iroute`).
    pub iroutes: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// IPv6 networks behind this client.
    pub iroutes_ipv6: Vec<Ipv6Net>,
    /// The push list for this client (global unless `push-reset`, minus `push-remove`,
    /// plus ccd `push` lines), before the per-client options.
    pub push: Vec<String>,
    /// Earlier clients with the same common name that were released to make room
    /// (without `duplicate-cn`, a new connection replaces the old one, as in 2.6); the
    /// caller closes their sessions.
    pub replaced: Vec<ClientId>,
}

#[derive(Clone, Debug)]
struct Record {
    common_name: String,
    lease: Option<u32>,
    static_v4: Option<Ipv4Addr>,
    static_v6: Option<Ipv6Addr>,
}

/// The server's address bookkeeping for connected clients.
#[derive(Clone, Debug)]
pub struct ClientAddressing {
    pool: Option<AddressPool>,
    ccd: Option<ClientConfigDir>,
    server_v4: Option<ServerNet>,
    server_v6: Option<Ipv6Net>,
    server_v6_addr: Option<Ipv6Addr>,
    global_push: Vec<String>,
    max_clients: u32,
    duplicate_cn: bool,
    clients: HashMap<ClientId, Record>,
    next_id: u64,
}

impl ClientAddressing {
    /// From a server config.
    pub fn from_options(o: &Options) -> Result<Self, PoolError> {
        let pool = PoolConfig::from_options(o)?.map(AddressPool::new);
        Ok(ClientAddressing {
            pool,
            ccd: o.client_config_dir.clone().map(|dir| ClientConfigDir {
                dir,
                exclusive: o.ccd_exclusive,
            }),
            server_v4: o.server,
            server_v6: o.server_ipv6,
            server_v6_addr: o.server_ipv6_addr(),
            global_push: o.global_push_list(),
            max_clients: o.max_clients,
            duplicate_cn: o.duplicate_cn,
            clients: HashMap::new(),
            next_id: 1,
        })
    }

    /// The pool, if any.
    pub fn pool(&self) -> Option<&AddressPool> {
        self.pool.as_ref()
    }

    /// Number of admitted clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// True when no client is admitted.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Admitted clients with this common name.
    pub fn with_common_name(&self, cn: &str) -> Vec<ClientId> {
        let mut v: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, r)| r.common_name == cn)
            .map(|(id, _)| *id)
            .collect();
        v.sort();
        v
    }

    fn v4_taken(&self, a: Ipv4Addr) -> bool {
        if self.clients.values().any(|r| r.static_v4 == Some(a)) {
            return true;
        }
        match &self.pool {
            Some(p) => p.handle_of_v4(a).is_some_and(|h| p.is_leased(h)),
            None => false,
        }
    }

    /// Admits a client after its certificate was verified: applies its ccd file, the
    /// limits, and gives it addresses. Release with [`release`](Self::release). On error
    /// nothing changes (earlier clients with the same name stay admitted).
    pub fn admit(&mut self, common_name: &str) -> Result<Admitted, AdmitError> {
        let ccd = match &self.ccd {
            Some(dir) => dir.lookup(common_name)?,
            None => None,
        }
        .unwrap_or_default();
        if ccd.disable {
            return Err(AdmitError::Disabled(common_name.into()));
        }
        if let (Some((a, _)), Some(s)) = (ccd.ifconfig_push, self.server_v4)
            && (!s.contains(a) || a == s.network || a == s.broadcast() || a == s.server_addr())
        {
            return Err(AdmitError::OutsideSubnet {
                cn: common_name.into(),
                addr: a.to_string(),
                net: format!("{}/{}", s.network, s.prefix_len),
            });
        }
        let replaced = if self.duplicate_cn {
            Vec::new()
        } else {
            self.with_common_name(common_name)
        };
        if self.clients.len() - replaced.len() >= self.max_clients as usize {
            return Err(AdmitError::MaxClients(self.max_clients));
        }
        // Take the old sessions out; put them back if admission fails below.
        let removed: Vec<(ClientId, Record)> = replaced
            .iter()
            .filter_map(|id| self.clients.remove(id).map(|r| (*id, r)))
            .collect();
        for (_, r) in &removed {
            if let (Some(h), Some(p)) = (r.lease, self.pool.as_mut()) {
                p.release(h);
            }
        }
        match self.assign(common_name, &ccd) {
            Ok((ipv4, ipv6, record)) => {
                let mut push: Vec<String> = if ccd.push_reset {
                    Vec::new()
                } else {
                    self.global_push.clone()
                };
                push.retain(|o| !ccd.push_remove.iter().any(|p| o.starts_with(p.as_str())));
                push.extend(ccd.push.iter().cloned());
                let id = ClientId(self.next_id);
                self.next_id += 1;
                self.clients.insert(id, record);
                Ok(Admitted {
                    id,
                    common_name: common_name.to_string(),
                    ipv4,
                    ipv6,
                    iroutes: ccd.iroutes,
                    iroutes_ipv6: ccd.iroutes_ipv6,
                    push,
                    replaced,
                })
            }
            Err(e) => {
                for (id, r) in removed {
                    if let (Some(h), Some(p)) = (r.lease, self.pool.as_mut()) {
                        p.reclaim(h);
                    }
                    self.clients.insert(id, r);
                }
                Err(e)
            }
        }
    }

    /// Picks the addresses; changes only the pool (and only on success).
    #[allow(clippy::type_complexity)]
    fn assign(
        &mut self,
        common_name: &str,
        ccd: &CcdOptions,
    ) -> Result<
        (
            Option<(Ipv4Addr, Ipv4Addr)>,
            Option<(Ipv6Addr, u8, Ipv6Addr)>,
            Record,
        ),
        AdmitError,
    > {
        let static_v4 = ccd.ifconfig_push;
        if let Some((a, _)) = static_v4
            && self.v4_taken(a)
        {
            return Err(AdmitError::AddressInUse {
                cn: common_name.into(),
                addr: a.to_string(),
            });
        }
        let mut static_v6 = None;
        if let Some((net, remote)) = ccd.ifconfig_ipv6_push {
            if self.clients.values().any(|r| r.static_v6 == Some(net.addr)) {
                return Err(AdmitError::AddressInUse {
                    cn: common_name.into(),
                    addr: net.addr.to_string(),
                });
            }
            let remote = remote
                .or(self.server_v6_addr)
                .unwrap_or(Ipv6Addr::UNSPECIFIED);
            static_v6 = Some((net.addr, net.prefix_len, remote));
        }

        // A pool slot unless both families are static (or there is no pool).
        let need_v4 =
            static_v4.is_none() && self.pool.as_ref().is_some_and(|p| p.config().v4.is_some());
        let need_v6 =
            static_v6.is_none() && self.pool.as_ref().is_some_and(|p| p.config().v6.is_some());
        let mut lease = None;
        if need_v4 || need_v6 {
            let statics: Vec<Ipv4Addr> =
                self.clients.values().filter_map(|r| r.static_v4).collect();
            let pool = self.pool.as_mut().ok_or(AdmitError::PoolExhausted)?;
            // Skip slots whose IPv4 a static client holds.
            let mut skipped = Vec::new();
            let got = loop {
                match pool.acquire(common_name) {
                    None => break None,
                    Some(l) => {
                        let clash = l.ipv4.is_some_and(|a| statics.contains(&a))
                            || static_v4.is_some_and(|(a, _)| l.ipv4 == Some(a));
                        if clash {
                            skipped.push(l.handle);
                            continue;
                        }
                        break Some(l);
                    }
                }
            };
            for h in skipped {
                pool.release(h);
            }
            lease = Some(got.ok_or(AdmitError::PoolExhausted)?);
        }
        let pool_v4_mask = self
            .pool
            .as_ref()
            .and_then(|p| p.config().v4)
            .map(|(_, _, m)| m);
        let ipv4 = static_v4.or_else(|| {
            if need_v4 {
                lease.and_then(|l| l.ipv4).zip(pool_v4_mask)
            } else {
                None
            }
        });
        let ipv6 = static_v6.or_else(|| {
            if !need_v6 {
                return None;
            }
            let bits = self.server_v6.map(|n| n.prefix_len)?;
            let server = self.server_v6_addr?;
            lease.and_then(|l| l.ipv6).map(|a| (a, bits, server))
        });
        if ipv4.is_none() && ipv6.is_none() {
            return Err(AdmitError::NoAddress(common_name.into()));
        }
        let record = Record {
            common_name: common_name.to_string(),
            lease: lease.map(|l| l.handle),
            static_v4: static_v4.map(|(a, _)| a),
            static_v6: static_v6.map(|(a, _, _)| a),
        };
        Ok((ipv4, ipv6, record))
    }

    /// Releases a client's addresses (its pool slot stays reserved for its common name
    /// until someone else needs it).
    pub fn release(&mut self, id: ClientId) {
        if let Some(r) = self.clients.remove(&id)
            && let (Some(h), Some(p)) = (r.lease, self.pool.as_mut())
        {
            p.release(h);
        }
    }
}

#[cfg(test)]
mod tests;
