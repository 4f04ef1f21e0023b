//! Configs for stock OpenVPN 2.6 (typed builder) and the `openvpn` process in a namespace.
//!
//! The defaults are the minimal server/client pair of `openvpn-protocol.md` §10.2. The same
//! file is meant to be accepted by our `dco-control --config`, so tests can run either
//! implementation from one config.

use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netns::Netns;
use crate::pki::Pki;
use crate::process::NsProcess;
use crate::tools::ensure_tools;

/// Server or client, with what only that role needs.
#[derive(Debug, Clone)]
pub enum OvpnRole {
    /// `server NET MASK` + `topology subnet`; the server takes the first address (.1).
    Server {
        /// The VPN IPv4 network.
        network: Ipv4Addr,
        /// Its prefix length.
        prefix_len: u8,
        /// `server-ipv6` network, e.g. `fd00:8::/64`.
        ipv6: Option<String>,
        /// `client-config-dir` entries: common name and lines (e.g. `iroute ...`).
        ccd: Vec<(String, Vec<String>)>,
    },
    /// `client` (pull + tls-client) connecting to `remote`.
    Client {
        /// Server address on the underlay.
        remote: IpAddr,
    },
}

/// Underlay transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// `proto udp4`.
    Udp4,
    /// `proto udp6`.
    Udp6,
}

/// Control-channel wrapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsWrap {
    /// No tls-auth/tls-crypt.
    None,
    /// `tls-auth KEY DIR` (server 0, client 1), with an optional `auth` digest.
    Auth {
        /// Static key file.
        key: PathBuf,
        /// `auth` digest (`SHA256` ...); None keeps the default SHA1.
        digest: Option<String>,
    },
    /// `tls-crypt KEY`.
    Crypt {
        /// Static key file.
        key: PathBuf,
    },
    /// `tls-crypt-v2 KEY` (server key on the server, the wrapped client key on a client).
    CryptV2 {
        /// Key file.
        key: PathBuf,
    },
}

/// A stock OpenVPN config, built with chained calls and written with [`OvpnConfig::write`].
#[derive(Debug, Clone)]
pub struct OvpnConfig {
    /// Role and role-specific settings.
    pub role: OvpnRole,
    /// TUN device name (`dev`); `tun0` by default (each namespace has its own).
    pub dev: String,
    /// UDP port (server `port`, client `remote ... PORT`).
    pub port: u16,
    /// Underlay family.
    pub proto: Proto,
    /// Server `local` address; None listens on all.
    pub local: Option<IpAddr>,
    /// CA certificate.
    pub ca: PathBuf,
    /// Own certificate.
    pub cert: PathBuf,
    /// Own key.
    pub key: PathBuf,
    /// `crl-verify` file (server).
    pub crl: Option<PathBuf>,
    /// Control-channel wrapping.
    pub tls_wrap: TlsWrap,
    /// `data-ciphers`; None keeps the stock default.
    pub data_ciphers: Option<Vec<String>>,
    /// `keepalive PING RESTART` (server) or `ping`/`ping-restart` (client); None omits it.
    pub keepalive: Option<(u32, u32)>,
    /// `reneg-sec`.
    pub reneg_sec: Option<u32>,
    /// `verb`.
    pub verb: u8,
    /// `disable-dco`; on by default so the stock peer never looks for a kernel module.
    pub disable_dco: bool,
    /// Put ca/cert/key/tls keys inline (`<ca>...</ca>`) instead of as file paths.
    pub inline: bool,
    /// Extra lines appended verbatim.
    pub extra: Vec<String>,
}

impl OvpnConfig {
    /// The §10.2 server: `server 10.8.0.0 255.255.255.0`, `topology subnet`, `dh none`,
    /// `keepalive 10 60`, no tls wrap, the PKI's server certificate.
    pub fn server(pki: &Pki) -> OvpnConfig {
        OvpnConfig {
            role: OvpnRole::Server {
                network: Ipv4Addr::new(10, 8, 0, 0),
                prefix_len: 24,
                ipv6: None,
                ccd: Vec::new(),
            },
            dev: "tun0".into(),
            port: 1194,
            proto: Proto::Udp4,
            local: None,
            ca: pki.ca_cert(),
            cert: pki.server().cert.clone(),
            key: pki.server().key.clone(),
            crl: None,
            tls_wrap: TlsWrap::None,
            data_ciphers: None,
            keepalive: Some((10, 60)),
            reneg_sec: None,
            verb: 3,
            disable_dco: true,
            inline: false,
            extra: Vec::new(),
        }
    }

    /// The §10.2 client for common name `cn` (its certificate is issued if needed),
    /// connecting to `remote` (UDP over IPv6 when `remote` is IPv6).
    pub fn client(pki: &Pki, cn: &str, remote: IpAddr) -> Result<OvpnConfig> {
        let pair = pki.client(cn)?;
        Ok(OvpnConfig {
            role: OvpnRole::Client { remote },
            proto: if remote.is_ipv6() {
                Proto::Udp6
            } else {
                Proto::Udp4
            },
            cert: pair.cert,
            key: pair.key,
            keepalive: None,
            ..OvpnConfig::server(pki)
        })
    }

    /// `tls-crypt` with the PKI's static key.
    pub fn tls_crypt(mut self, pki: &Pki) -> Self {
        self.tls_wrap = TlsWrap::Crypt { key: pki.tls_key() };
        self
    }

    /// `tls-auth` with the PKI's static key (direction 0 on the server, 1 on a client).
    pub fn tls_auth(mut self, pki: &Pki, digest: Option<&str>) -> Self {
        self.tls_wrap = TlsWrap::Auth {
            key: pki.tls_key(),
            digest: digest.map(String::from),
        };
        self
    }

    /// Any wrapping, e.g. [`TlsWrap::None`] or tls-crypt-v2.
    pub fn tls_wrap(mut self, wrap: TlsWrap) -> Self {
        self.tls_wrap = wrap;
        self
    }

    /// `data-ciphers` list.
    pub fn data_ciphers(mut self, ciphers: &[&str]) -> Self {
        self.data_ciphers = Some(ciphers.iter().map(|c| c.to_string()).collect());
        self
    }

    /// Underlay family (server `proto udp4`/`udp6`).
    pub fn proto(mut self, proto: Proto) -> Self {
        self.proto = proto;
        self
    }

    /// UDP port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Server `local` address.
    pub fn local(mut self, addr: IpAddr) -> Self {
        self.local = Some(addr);
        self
    }

    /// TUN device name.
    pub fn dev(mut self, dev: &str) -> Self {
        self.dev = dev.into();
        self
    }

    /// Server VPN network (`server NET MASK`); ignored on a client.
    pub fn network(mut self, net: Ipv4Addr, prefix_len: u8) -> Self {
        if let OvpnRole::Server {
            network,
            prefix_len: p,
            ..
        } = &mut self.role
        {
            *network = net;
            *p = prefix_len;
        }
        self
    }

    /// `server-ipv6 NET` (e.g. `fd00:8::/64`); ignored on a client.
    pub fn server_ipv6(mut self, net: &str) -> Self {
        if let OvpnRole::Server { ipv6, .. } = &mut self.role {
            *ipv6 = Some(net.into());
        }
        self
    }

    /// A `client-config-dir` entry for `cn` (e.g. `["iroute 10.9.0.0 255.255.255.0"]`);
    /// ignored on a client.
    pub fn ccd(mut self, cn: &str, lines: &[&str]) -> Self {
        if let OvpnRole::Server { ccd, .. } = &mut self.role {
            ccd.push((cn.into(), lines.iter().map(|l| l.to_string()).collect()));
        }
        self
    }

    /// `crl-verify` with the PKI's CRL.
    pub fn crl_verify(mut self, pki: &Pki) -> Self {
        self.crl = Some(pki.crl());
        self
    }

    /// `keepalive` (server) / `ping`+`ping-restart` (client); None omits it.
    pub fn keepalive(mut self, k: Option<(u32, u32)>) -> Self {
        self.keepalive = k;
        self
    }

    /// `reneg-sec`.
    pub fn reneg_sec(mut self, secs: u32) -> Self {
        self.reneg_sec = Some(secs);
        self
    }

    /// `verb`.
    pub fn verb(mut self, verb: u8) -> Self {
        self.verb = verb;
        self
    }

    /// Whether `disable-dco` is written.
    pub fn disable_dco(mut self, yes: bool) -> Self {
        self.disable_dco = yes;
        self
    }

    /// Inline the key and certificate files.
    pub fn inline_files(mut self, yes: bool) -> Self {
        self.inline = yes;
        self
    }

    /// An extra config line, appended verbatim.
    pub fn extra(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }

    /// True for a server config.
    pub fn is_server(&self) -> bool {
        matches!(self.role, OvpnRole::Server { .. })
    }

    /// The server's own VPN IPv4 address (first host of the network), if a server.
    pub fn server_vpn_v4(&self) -> Option<Ipv4Addr> {
        match &self.role {
            OvpnRole::Server { network, .. } => Some(Ipv4Addr::from(u32::from(*network) + 1)),
            OvpnRole::Client { .. } => None,
        }
    }

    /// The config text. `ccd_dir` is where [`OvpnConfig::write`] puts the ccd files.
    pub fn render(&self, ccd_dir: &Path) -> Result<String> {
        let mut c = String::new();
        let w = &mut c;
        let proto = match self.proto {
            Proto::Udp4 => "udp4",
            Proto::Udp6 => "udp6",
        };
        match &self.role {
            OvpnRole::Server {
                network,
                prefix_len,
                ipv6,
                ccd,
            } => {
                writeln!(w, "port {}", self.port)?;
                writeln!(w, "proto {proto}")?;
                if let Some(local) = self.local {
                    writeln!(w, "local {local}")?;
                }
                writeln!(w, "dev {}", self.dev)?;
                writeln!(w, "topology subnet")?;
                writeln!(w, "server {network} {}", mask(*prefix_len)?)?;
                if let Some(v6) = ipv6 {
                    writeln!(w, "server-ipv6 {v6}")?;
                }
                writeln!(w, "dh none")?;
                if !ccd.is_empty() {
                    writeln!(w, "client-config-dir {}", ccd_dir.display())?;
                }
                if let Some((ping, restart)) = self.keepalive {
                    writeln!(w, "keepalive {ping} {restart}")?;
                }
            }
            OvpnRole::Client { remote } => {
                writeln!(w, "client")?;
                writeln!(w, "dev {}", self.dev)?;
                writeln!(w, "proto {proto}")?;
                writeln!(w, "remote {remote} {}", self.port)?;
                writeln!(w, "nobind")?;
                writeln!(w, "remote-cert-tls server")?;
                if let Some((ping, restart)) = self.keepalive {
                    writeln!(w, "ping {ping}")?;
                    writeln!(w, "ping-restart {restart}")?;
                }
            }
        }
        if let Some(ciphers) = &self.data_ciphers {
            writeln!(w, "data-ciphers {}", ciphers.join(":"))?;
        }
        if let Some(secs) = self.reneg_sec {
            writeln!(w, "reneg-sec {secs}")?;
        }
        if self.disable_dco {
            writeln!(w, "disable-dco")?;
        }
        writeln!(w, "verb {}", self.verb)?;
        self.file_option(w, "ca", &self.ca, None)?;
        self.file_option(w, "cert", &self.cert, None)?;
        self.file_option(w, "key", &self.key, None)?;
        if let Some(crl) = &self.crl {
            self.file_option(w, "crl-verify", crl, None)?;
        }
        match &self.tls_wrap {
            TlsWrap::None => {}
            TlsWrap::Auth { key, digest } => {
                let dir = if self.is_server() { "0" } else { "1" };
                if let Some(d) = digest {
                    writeln!(w, "auth {d}")?;
                }
                self.file_option(w, "tls-auth", key, Some(dir))?;
            }
            TlsWrap::Crypt { key } => self.file_option(w, "tls-crypt", key, None)?,
            TlsWrap::CryptV2 { key } => self.file_option(w, "tls-crypt-v2", key, None)?,
        }
        for line in &self.extra {
            writeln!(w, "{line}")?;
        }
        Ok(c)
    }

    fn file_option(
        &self,
        w: &mut String,
        name: &str,
        path: &Path,
        dir: Option<&str>,
    ) -> Result<()> {
        if self.inline {
            let body = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            if let Some(dir) = dir {
                writeln!(w, "key-direction {dir}")?;
            }
            writeln!(w, "<{name}>\n{}\n</{name}>", body.trim_end())?;
        } else {
            match dir {
                Some(dir) => writeln!(w, "{name} {} {dir}", path.display())?,
                None => writeln!(w, "{name} {}", path.display())?,
            }
        }
        Ok(())
    }

    /// Writes `{dir}/{name}.conf` (and `{dir}/{name}-ccd/CN` files) and returns the config
    /// path.
    pub fn write(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        let ccd_dir = dir.join(format!("{name}-ccd"));
        if let OvpnRole::Server { ccd, .. } = &self.role {
            if !ccd.is_empty() {
                std::fs::create_dir_all(&ccd_dir)?;
            }
            for (cn, lines) in ccd {
                let mut body = lines.join("\n");
                body.push('\n');
                std::fs::write(ccd_dir.join(cn), body)?;
            }
        }
        let path = dir.join(format!("{name}.conf"));
        std::fs::write(&path, self.render(&ccd_dir)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

fn mask(prefix_len: u8) -> Result<Ipv4Addr> {
    if prefix_len > 32 {
        bail!("IPv4 prefix length {prefix_len} > 32");
    }
    let bits = if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - prefix_len)
    };
    Ok(Ipv4Addr::from(bits))
}

/// A stock `openvpn` process inside a namespace, logging to `{workdir}/{name}.log`.
/// Stopped with SIGTERM, then SIGKILL, on drop. Everything about the running process (log
/// waits, signals, CPU time, stop) is [`NsProcess`]'s, reached through `Deref`.
#[derive(Debug)]
pub struct StockOpenvpn {
    process: NsProcess,
    config: PathBuf,
}

impl StockOpenvpn {
    /// Writes the config and spawns `openvpn --config FILE` in `ns` without waiting.
    pub fn spawn(ns: &Netns, cfg: &OvpnConfig, workdir: &Path, name: &str) -> Result<StockOpenvpn> {
        let config = cfg.write(workdir, name)?;
        Self::spawn_config(ns, &config, workdir, name)
    }

    /// Spawns `openvpn --config CONFIG` in `ns` for an existing config file.
    pub fn spawn_config(
        ns: &Netns,
        config: &Path,
        workdir: &Path,
        name: &str,
    ) -> Result<StockOpenvpn> {
        ensure_tools(&["openvpn"])?;
        let args = [std::ffi::OsStr::new("--config"), config.as_os_str()];
        let process = NsProcess::spawn(ns, "openvpn", &args, workdir, name, &[])
            .context("spawning openvpn")?;
        Ok(StockOpenvpn {
            process,
            config: config.into(),
        })
    }

    /// [`StockOpenvpn::spawn`] and wait for "Initialization Sequence Completed".
    pub fn start(
        ns: &Netns,
        cfg: &OvpnConfig,
        workdir: &Path,
        name: &str,
        timeout: Duration,
    ) -> Result<StockOpenvpn> {
        let mut p = Self::spawn(ns, cfg, workdir, name)?;
        p.wait_initialized(timeout)?;
        Ok(p)
    }

    /// Waits (bounded) for "Initialization Sequence Completed"; on timeout or exit fails
    /// with the log's tail.
    pub fn wait_initialized(&mut self, timeout: Duration) -> Result<()> {
        self.process
            .wait_for_log("Initialization Sequence Completed", timeout)
    }

    /// Config file path.
    pub fn config_path(&self) -> &Path {
        &self.config
    }
}

impl std::ops::Deref for StockOpenvpn {
    type Target = NsProcess;
    fn deref(&self) -> &NsProcess {
        &self.process
    }
}

impl std::ops::DerefMut for StockOpenvpn {
    fn deref_mut(&mut self) -> &mut NsProcess {
        &mut self.process
    }
}
