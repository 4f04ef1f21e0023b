//! `ovpnctl`: drive a dco-daemon by hand over its IPC socket, as `ifconfig`/ioctls drive
//! if_ovpn on FreeBSD. Every IPC command is reachable from here.

#[path = "ovpnctl/render.rs"]
mod render;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use control_ipc::client::{Client, ClientError};
use control_ipc::schema::*;
use control_ipc::types::{Bytes, IpPrefix, KeyBytes};
use control_ipc::{Notification, default_socket_path};
use zeroize::Zeroizing;

#[derive(Parser, Debug)]
#[command(
    name = "ovpnctl",
    version,
    about = "Control a dco-daemon (OpenVPN data-channel offload) over its IPC socket",
    long_about = "Control a dco-daemon (OpenVPN data-channel offload) over its nvlist IPC \
socket, the way ifconfig and if_ovpn's ioctls drive FreeBSD's DCO: install peers and keys, \
read counters, watch notifications, inspect the conntrack table and the firewall.",
    after_help = "Examples:\n  ovpnctl show\n  ovpnctl --ifname dco1 stats --json\n  \
ovpnctl peer add 5 --remote 198.51.100.7:50000 --vpn-ipv4 10.8.0.6\n  ovpnctl watch"
)]
struct Cli {
    /// The daemon's socket (default: /run/dco/<IFNAME>.sock).
    #[arg(long, global = true, value_name = "PATH", env = "OVPNCTL_SOCKET")]
    socket: Option<PathBuf>,
    /// Interface whose daemon to talk to.
    #[arg(
        long,
        global = true,
        default_value = "dco0",
        value_name = "NAME",
        env = "OVPNCTL_IFNAME"
    )]
    ifname: String,
    /// Print replies as JSON (read commands).
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for the daemon's reply.
    #[arg(long, global = true, default_value_t = 10, value_name = "SECS")]
    wait: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Interface, peers, endpoints, VPN addresses, key slots, keepalive and counters.
    #[command(after_help = "Example:\n  ovpnctl show\n  ovpnctl show 5 --json")]
    Show {
        /// Only this peer.
        peerid: Option<u32>,
    },
    /// Daemon information (GET_INFO).
    #[command(after_help = "Example:\n  ovpnctl info")]
    Info,
    /// Interface counters (GET_STATS), or per-peer counters (GET_PEER_STATS).
    #[command(after_help = "Example:\n  ovpnctl stats\n  ovpnctl stats --peers --json")]
    Stats {
        /// Per-peer counters instead.
        #[arg(long)]
        peers: bool,
    },
    /// Add, delete, configure or list peers.
    #[command(subcommand, after_help = "Example:\n  ovpnctl peer list")]
    Peer(PeerCmd),
    /// Install, swap or delete data-channel keys.
    #[command(subcommand, after_help = "Example:\n  ovpnctl key swap 5")]
    Key(KeyCmd),
    /// Print notifications as they arrive (SUBSCRIBE).
    #[command(
        after_help = "Example:\n  ovpnctl watch\n  ovpnctl watch --type del-peer --type float --json"
    )]
    Watch {
        /// Only these types (default: all but control packets; repeat for several).
        #[arg(long = "type", value_enum)]
        types: Vec<WatchType>,
        /// Include CONTROL_PACKET notifications.
        #[arg(long)]
        control: bool,
        /// Queue capacity to ask the daemon for.
        #[arg(long, default_value_t = 1024)]
        queue: u32,
        /// Stop after this many notifications.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Connection tracking table.
    #[command(subcommand, after_help = "Example:\n  ovpnctl ct list --peer 5")]
    Ct(CtCmd),
    /// Firewall rule set.
    #[command(subcommand, after_help = "Example:\n  ovpnctl fw list")]
    Fw(FwCmd),
    /// Bind an underlay UDP socket (LISTEN).
    #[command(after_help = "Example:\n  ovpnctl listen 0.0.0.0:1194\n  ovpnctl listen [::]:1194")]
    Listen {
        /// Address and port; port 0 picks one.
        addr: SocketAddr,
    },
    /// Set the tunnel interface's addresses, MTU and link state (SET_IFCONFIG).
    #[command(
        after_help = "Example:\n  ovpnctl ifconfig --ipv4 10.8.0.1/24 --ipv6 fd00::1/64 --mtu 1420 --up"
    )]
    Ifconfig {
        /// IPv4 address/prefix.
        #[arg(long)]
        ipv4: Option<IpPrefix>,
        /// IPv6 address/prefix.
        #[arg(long)]
        ipv6: Option<IpPrefix>,
        /// MTU.
        #[arg(long)]
        mtu: Option<u32>,
        /// Bring the link up.
        #[arg(long, conflicts_with = "down")]
        up: bool,
        /// Bring the link down.
        #[arg(long)]
        down: bool,
    },
    /// Routes through the tunnel (ADD_ROUTE / DEL_ROUTE).
    #[command(
        subcommand,
        after_help = "Example:\n  ovpnctl route add 192.168.10.0/24 --via 10.8.0.6"
    )]
    Route(RouteCmd),
    /// Networks behind a peer (ADD_IROUTE / DEL_IROUTE).
    #[command(
        subcommand,
        after_help = "Example:\n  ovpnctl iroute add 5 192.168.10.0/24"
    )]
    Iroute(IrouteCmd),
    /// Start the VPN: bring the data path up (START_VPN).
    #[command(after_help = "Example:\n  ovpnctl start")]
    Start,
    /// Interface mode, before `start` (SET_IFMODE), and whether peers reach each other
    /// inside the data path (`--client-to-client on|off`, left unchanged when not given).
    #[command(
        after_help = "Examples:\n  ovpnctl ifmode subnet\n  ovpnctl ifmode subnet --client-to-client off"
    )]
    Ifmode {
        /// p2p or subnet.
        #[arg(value_enum)]
        mode: IfmodeArg,
        /// Route packets between peers inside the data path (on) or hand them to the host
        /// through the TUN device (off).
        #[arg(long, value_parser = parse_on_off, value_name = "on|off")]
        client_to_client: Option<bool>,
    },
    /// Hand a control-channel packet to the daemon to send (SEND_CONTROL; for debugging).
    #[command(
        after_help = "Example:\n  ovpnctl send-control --remote 198.51.100.7:50000 --hex 38a1b2c3d4e5f60708"
    )]
    SendControl {
        /// Destination.
        #[arg(long)]
        remote: SocketAddr,
        /// Source address (which underlay socket).
        #[arg(long)]
        local: Option<SocketAddr>,
        /// Peer id it belongs to.
        #[arg(long)]
        peerid: Option<u32>,
        /// The packet in hex.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        hex: Option<String>,
        /// A file with the raw packet ("-" for stdin).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Print a shell completion script.
    #[command(after_help = "Example:\n  ovpnctl completions bash > /etc/bash_completion.d/ovpnctl")]
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
enum PeerCmd {
    /// Install a peer (NEW_PEER).
    #[command(
        after_help = "Example:\n  ovpnctl peer add 5 --remote 198.51.100.7:50000 --local 192.0.2.1:1194 \\\n      --vpn-ipv4 10.8.0.6 --vpn-ipv6 fd00::6 --cn alice --iroute 192.168.10.0/24"
    )]
    Add {
        /// Peer id (0..16777214).
        peerid: u32,
        /// The peer's address.
        #[arg(long)]
        remote: SocketAddr,
        /// Our address for it.
        #[arg(long)]
        local: Option<SocketAddr>,
        /// Its IPv4 address in the tunnel.
        #[arg(long)]
        vpn_ipv4: Option<std::net::Ipv4Addr>,
        /// Its IPv6 address in the tunnel.
        #[arg(long)]
        vpn_ipv6: Option<std::net::Ipv6Addr>,
        /// Certificate common name (for firewall rules).
        #[arg(long)]
        cn: Option<String>,
        /// A network behind it (repeat for several).
        #[arg(long = "iroute")]
        iroutes: Vec<IpPrefix>,
    },
    /// Delete a peer (DEL_PEER).
    #[command(after_help = "Example:\n  ovpnctl peer del 5")]
    Del {
        /// Peer id.
        peerid: u32,
    },
    /// Keepalive policy (SET_PEER).
    #[command(after_help = "Example:\n  ovpnctl peer set 5 --interval 10 --timeout 60")]
    Set {
        /// Peer id.
        peerid: u32,
        /// Ping after this many idle seconds (0: never).
        #[arg(long)]
        interval: u32,
        /// Drop the peer after this many silent seconds (0: never).
        #[arg(long)]
        timeout: u32,
    },
    /// One line per peer.
    #[command(after_help = "Example:\n  ovpnctl peer list --json")]
    List,
}

#[derive(Subcommand, Debug)]
enum KeyCmd {
    /// Install keys in a slot (NEW_KEY). The key file holds, in hex or base64, the
    /// encrypt key, the encrypt implicit IV (8 bytes), the decrypt key and the decrypt
    /// implicit IV (8 bytes), concatenated: 80 bytes for AES-256-GCM.
    #[command(
        after_help = "Example:\n  head -c 80 /dev/urandom | xxd -p | ovpnctl key new 5 --slot primary --keyid 1 \\\n      --cipher AES-256-GCM --key-file -"
    )]
    New {
        /// Peer id.
        peerid: u32,
        /// Slot: primary (encrypts) or secondary.
        #[arg(long, default_value = "primary")]
        slot: KeySlot,
        /// Key id on the wire (0..7).
        #[arg(long)]
        keyid: u8,
        /// Cipher, by OpenVPN's name.
        #[arg(long, default_value = "AES-256-GCM")]
        cipher: Cipher,
        /// File with the key material ("-" for stdin).
        #[arg(long, value_name = "PATH")]
        key_file: PathBuf,
        /// Encoding of the key file.
        #[arg(long, value_enum, default_value = "auto")]
        format: KeyFormat,
    },
    /// Make the secondary key the primary (SWAP_KEYS).
    #[command(after_help = "Example:\n  ovpnctl key swap 5")]
    Swap {
        /// Peer id.
        peerid: u32,
    },
    /// Delete a slot's keys (DEL_KEY).
    #[command(after_help = "Example:\n  ovpnctl key del 5 --slot secondary")]
    Del {
        /// Peer id.
        peerid: u32,
        /// Slot.
        #[arg(long)]
        slot: KeySlot,
    },
}

#[derive(Subcommand, Debug)]
enum CtCmd {
    /// List tracked connections, like `conntrack -L` (CT_LIST).
    #[command(after_help = "Example:\n  ovpnctl ct list\n  ovpnctl ct list --peer 5 --json")]
    List {
        /// Only this peer's connections.
        #[arg(long)]
        peer: Option<u32>,
    },
    /// Remove tracked connections (CT_FLUSH).
    #[command(after_help = "Example:\n  ovpnctl ct flush --peer 5")]
    Flush {
        /// Only this peer's connections.
        #[arg(long)]
        peer: Option<u32>,
    },
    /// Tracker counters, like `conntrack -S` (CT_STATS).
    #[command(after_help = "Example:\n  ovpnctl ct stats")]
    Stats,
    /// Connection events as they happen, like `conntrack -E` (CT_EVENT notifications).
    #[command(after_help = "Example:\n  ovpnctl ct watch\n  ovpnctl ct watch --count 10 --json")]
    Watch {
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Queue capacity to ask the daemon for.
        #[arg(long, default_value_t = 4096)]
        queue: u32,
    },
}

#[derive(Subcommand, Debug)]
enum FwCmd {
    /// Rules with their counters (FW_LIST).
    #[command(after_help = "Example:\n  ovpnctl fw list")]
    List,
    /// Replace the rule set from a file (FW_LOAD).
    #[command(
        after_help = "Example:\n  ovpnctl fw load /etc/dco/rules.conf\n  echo 'ct state established,related accept' | ovpnctl fw load -"
    )]
    Load {
        /// Rule file ("-" for stdin).
        file: PathBuf,
    },
    /// Per-rule counters (FW_COUNTERS).
    #[command(after_help = "Example:\n  ovpnctl fw counters --zero")]
    Counters {
        /// Reset them after reading.
        #[arg(long)]
        zero: bool,
    },
}

#[derive(Subcommand, Debug)]
enum RouteCmd {
    /// Add a route (ADD_ROUTE).
    #[command(after_help = "Example:\n  ovpnctl route add 192.168.10.0/24 --via 10.8.0.6")]
    Add {
        /// Destination prefix.
        dst: IpPrefix,
        /// Gateway: a peer's VPN address.
        #[arg(long)]
        via: Option<IpAddr>,
        /// Metric.
        #[arg(long)]
        metric: Option<u32>,
    },
    /// Delete a route (DEL_ROUTE).
    #[command(after_help = "Example:\n  ovpnctl route del 192.168.10.0/24")]
    Del {
        /// Destination prefix.
        dst: IpPrefix,
    },
}

#[derive(Subcommand, Debug)]
enum IrouteCmd {
    /// Add networks behind a peer (ADD_IROUTE).
    #[command(after_help = "Example:\n  ovpnctl iroute add 5 192.168.10.0/24 2001:db8:10::/48")]
    Add {
        /// Peer id.
        peerid: u32,
        /// Prefixes.
        #[arg(required = true)]
        prefixes: Vec<IpPrefix>,
    },
    /// Remove networks behind a peer (DEL_IROUTE).
    #[command(after_help = "Example:\n  ovpnctl iroute del 5 192.168.10.0/24")]
    Del {
        /// Peer id.
        peerid: u32,
        /// Prefixes.
        #[arg(required = true)]
        prefixes: Vec<IpPrefix>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum WatchType {
    DelPeer,
    RotateKey,
    Float,
    ControlPacket,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum IfmodeArg {
    P2p,
    Subnet,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum KeyFormat {
    Auto,
    Hex,
    Base64,
}

/// What went wrong, as one line for stderr.
#[derive(Debug)]
struct Failure(String);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure(e.to_string())
    }
}

/// `on`/`off` (also `yes`/`no`, `true`/`false`, `1`/`0`).
fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "yes" | "true" | "1" => Ok(true),
        "off" | "no" | "false" | "0" => Ok(false),
        other => Err(format!("expected on or off, got {other:?}")),
    }
}

fn read_input(path: &PathBuf) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut buf = Zeroizing::new(Vec::new());
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Failure(format!("reading stdin: {e}")))?;
    } else {
        let mut f =
            std::fs::File::open(path).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        f.read_to_end(&mut buf)
            .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    }
    Ok(buf)
}

/// Decodes key material text: whitespace ignored, hex or base64.
fn decode_key_text(raw: &[u8], format: KeyFormat) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let text: Zeroizing<Vec<u8>> = Zeroizing::new(
        raw.iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect(),
    );
    let is_hex = text.len().is_multiple_of(2) && text.iter().all(|b| b.is_ascii_hexdigit());
    let use_hex = match format {
        KeyFormat::Hex => true,
        KeyFormat::Base64 => false,
        KeyFormat::Auto => is_hex,
    };
    if use_hex {
        hex::decode(&*text)
            .map(Zeroizing::new)
            .map_err(|e| Failure(format!("key file is not valid hex: {e}")))
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(&*text)
            .map(Zeroizing::new)
            .map_err(|e| Failure(format!("key file is neither hex nor base64: {e}")))
    }
}

fn split_keys(material: &[u8], cipher: Cipher) -> Result<(KeyConfig, KeyConfig), Failure> {
    let (k, iv) = (cipher.key_len(), cipher.iv_len());
    let want = 2 * (k + iv);
    if material.len() != want {
        return Err(Failure(format!(
            "{cipher} needs {want} bytes of key material (encrypt key {k}, IV {iv}, decrypt key {k}, IV {iv}), got {}",
            material.len()
        )));
    }
    let dir = |b: &[u8]| KeyConfig {
        cipher,
        key: KeyBytes::from(&b[..k]),
        iv: KeyBytes::from(&b[k..k + iv]),
    };
    Ok((dir(&material[..k + iv]), dir(&material[k + iv..])))
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Failure(e.to_string()))?;
    println!("{s}");
    Ok(())
}

async fn connect(cli: &Cli) -> Result<Client, Failure> {
    let path = cli
        .socket
        .clone()
        .unwrap_or_else(|| default_socket_path(&cli.ifname));
    Client::connect(&path).await.map_err(|e| match e {
        ClientError::Connect { path, source } => {
            let hint = match source.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ECONNREFUSED) => {
                    format!(" (is dco-daemon running for {}?)", cli.ifname)
                }
                Some(libc::EACCES) | Some(libc::EPERM) => {
                    " (the socket is for root or a configured user only)".into()
                }
                _ => String::new(),
            };
            Failure(format!(
                "cannot connect to {}: {source}{hint}",
                path.display()
            ))
        }
        other => Failure(other.to_string()),
    })
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Cmd::Completions { shell } = &cli.cmd {
        let mut cmd = Cli::command();
        clap_complete::generate(*shell, &mut cmd, "ovpnctl", &mut std::io::stdout());
        return Ok(());
    }
    let c = connect(&cli).await?;
    let json = cli.json;
    match cli.cmd {
        Cmd::Completions { .. } => {}
        Cmd::Show { peerid } => {
            let info = c.get_info().await?;
            let peers: Vec<PeerInfo> = match peerid {
                Some(id) => {
                    let page = c
                        .get_peers(Page {
                            cursor: Some(u64::from(id)),
                            limit: Some(1),
                        })
                        .await?;
                    let p: Vec<PeerInfo> =
                        page.peers.into_iter().filter(|p| p.peerid == id).collect();
                    if p.is_empty() {
                        return Err(Failure(format!("no peer with id {id}")));
                    }
                    p
                }
                None => c.get_peers_all().await?,
            };
            if json {
                print_json(&serde_json::json!({ "interface": info, "peers": peers }))?;
            } else {
                let mut out = String::new();
                if peerid.is_none() {
                    out.push_str(&render::interface(&info));
                }
                for p in &peers {
                    out.push('\n');
                    out.push_str(&render::peer(p));
                }
                print!("{out}");
            }
        }
        Cmd::Info => {
            let info = c.get_info().await?;
            if json {
                print_json(&info)?;
            } else {
                print!("{}", render::interface(&info));
            }
        }
        Cmd::Stats { peers } => {
            if peers {
                let p = c.get_peer_stats_all().await?;
                if json {
                    print_json(&p)?;
                } else {
                    print!("{}", render::peer_stats(&p));
                }
            } else {
                let s = c.get_stats().await?;
                if json {
                    print_json(&s)?;
                } else {
                    print!("{}", render::stats(&s));
                }
            }
        }
        Cmd::Peer(PeerCmd::Add {
            peerid,
            remote,
            local,
            vpn_ipv4,
            vpn_ipv6,
            cn,
            iroutes,
        }) => {
            c.new_peer(&NewPeer {
                local,
                remote,
                vpn_ipv4,
                vpn_ipv6,
                peerid,
                common_name: cn,
                iroutes,
            })
            .await?;
        }
        Cmd::Peer(PeerCmd::Del { peerid }) => c.del_peer(peerid).await?,
        Cmd::Peer(PeerCmd::Set {
            peerid,
            interval,
            timeout,
        }) => c.set_peer(peerid, interval, timeout).await?,
        Cmd::Peer(PeerCmd::List) => {
            let peers = c.get_peers_all().await?;
            if json {
                print_json(&peers)?;
            } else {
                for p in &peers {
                    let vpn: Vec<String> = p
                        .vpn_ipv4
                        .map(|a| a.to_string())
                        .into_iter()
                        .chain(p.vpn_ipv6.map(|a| a.to_string()))
                        .collect();
                    println!(
                        "{:>8}  {:<24} {:<28} {}",
                        p.peerid,
                        p.remote,
                        vpn.join(","),
                        p.common_name.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        Cmd::Key(KeyCmd::New {
            peerid,
            slot,
            keyid,
            cipher,
            key_file,
            format,
        }) => {
            let raw = read_input(&key_file)?;
            let material = decode_key_text(&raw, format)?;
            let (encrypt, decrypt) = split_keys(&material, cipher)?;
            c.new_key(&NewKey {
                slot,
                keyid,
                peerid,
                encrypt,
                decrypt,
            })
            .await?;
        }
        Cmd::Key(KeyCmd::Swap { peerid }) => c.swap_keys(peerid).await?,
        Cmd::Key(KeyCmd::Del { peerid, slot }) => c.del_key(peerid, slot).await?,
        Cmd::Watch {
            types,
            control,
            queue,
            count,
        } => {
            let mut kinds: Vec<NotificationKind> = types
                .iter()
                .map(|t| match t {
                    WatchType::DelPeer => NotificationKind::DelPeer,
                    WatchType::RotateKey => NotificationKind::RotateKey,
                    WatchType::Float => NotificationKind::Float,
                    WatchType::ControlPacket => NotificationKind::ControlPacket,
                })
                .collect();
            if kinds.is_empty() {
                kinds = vec![
                    NotificationKind::DelPeer,
                    NotificationKind::RotateKey,
                    NotificationKind::Float,
                ];
            }
            if control && !kinds.contains(&NotificationKind::ControlPacket) {
                kinds.push(NotificationKind::ControlPacket);
            }
            let mut sub = c.subscribe(&kinds, Some(queue)).await?;
            let mut seen = 0u64;
            let stdout = std::io::stdout();
            while let Some(n) = sub.next().await {
                let line = if json {
                    render::notification_json(&n).to_string()
                } else {
                    render::notification(&n)
                };
                let mut out = stdout.lock();
                if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                    return Ok(()); // stdout closed (e.g. piped into head)
                }
                if !matches!(n, Notification::Missed(_)) {
                    seen += 1;
                }
                if count.is_some_and(|c| seen >= c) {
                    return Ok(());
                }
            }
            return Err(Failure("the daemon closed the connection".into()));
        }
        Cmd::Ct(CtCmd::List { peer }) => {
            let entries = c.ct_list_all(peer).await?;
            if json {
                print_json(&entries)?;
            } else {
                for e in &entries {
                    println!("{}", render::ct_entry(e));
                }
                eprintln!("ovpnctl: {} flow entries have been shown.", entries.len());
            }
        }
        Cmd::Ct(CtCmd::Flush { peer }) => {
            let n = c.ct_flush(peer).await?;
            if json {
                print_json(&serde_json::json!({ "flushed": n }))?;
            } else {
                println!("{n} connections flushed");
            }
        }
        Cmd::Ct(CtCmd::Watch { count, queue }) => {
            let mut sub = c
                .subscribe(&[NotificationKind::CtEvent], Some(queue))
                .await?;
            let mut seen = 0u64;
            let stdout = std::io::stdout();
            while let Some(n) = sub.next().await {
                let line = if json {
                    render::notification_json(&n).to_string()
                } else {
                    render::notification(&n)
                };
                let mut out = stdout.lock();
                if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                    return Ok(());
                }
                if matches!(n, Notification::CtEvent(_)) {
                    seen += 1;
                }
                if count.is_some_and(|c| seen >= c) {
                    return Ok(());
                }
            }
            return Err(Failure("the daemon closed the connection".into()));
        }
        Cmd::Ct(CtCmd::Stats) => {
            let s = c.ct_stats().await?;
            if json {
                print_json(&s)?;
            } else {
                print!("{}", render::ct_stats(&s));
            }
        }
        Cmd::Fw(FwCmd::List) => {
            let r = c.fw_list().await?;
            if json {
                print_json(&r)?;
            } else {
                print!("{}", render::fw_rules(&r));
            }
        }
        Cmd::Fw(FwCmd::Load { file }) => {
            let raw = read_input(&file)?;
            let text = String::from_utf8(raw.to_vec())
                .map_err(|_| Failure(format!("{} is not UTF-8 text", file.display())))?;
            let n = c.fw_load(&text).await?;
            if json {
                print_json(&serde_json::json!({ "rules": n }))?;
            } else {
                println!("{n} rules loaded");
            }
        }
        Cmd::Fw(FwCmd::Counters { zero }) => {
            let r = c.fw_counters(zero).await?;
            if json {
                print_json(&r)?;
            } else {
                print!("{}", render::fw_counters(&r));
            }
        }
        Cmd::Listen { addr } => {
            let bound = c.listen(addr).await?;
            if json {
                print_json(&serde_json::json!({ "local": bound.to_string() }))?;
            } else {
                println!("listening on {bound}");
            }
        }
        Cmd::Ifconfig {
            ipv4,
            ipv6,
            mtu,
            up,
            down,
        } => {
            let up = if up {
                Some(true)
            } else if down {
                Some(false)
            } else {
                None
            };
            if ipv4.is_none() && ipv6.is_none() && mtu.is_none() && up.is_none() {
                return Err(Failure(
                    "nothing to set: give --ipv4, --ipv6, --mtu, --up or --down".into(),
                ));
            }
            c.set_ifconfig(&SetIfconfig {
                ipv4,
                ipv6,
                mtu,
                up,
            })
            .await?;
        }
        Cmd::Route(RouteCmd::Add { dst, via, metric }) => {
            c.add_route(&Route {
                dst,
                gateway: via,
                metric,
            })
            .await?
        }
        Cmd::Route(RouteCmd::Del { dst }) => {
            c.del_route(&Route {
                dst,
                gateway: None,
                metric: None,
            })
            .await?
        }
        Cmd::Iroute(IrouteCmd::Add { peerid, prefixes }) => {
            c.add_iroutes(peerid, &prefixes).await?
        }
        Cmd::Iroute(IrouteCmd::Del { peerid, prefixes }) => {
            c.del_iroutes(peerid, &prefixes).await?
        }
        Cmd::Start => c.start_vpn().await?,
        Cmd::Ifmode {
            mode,
            client_to_client,
        } => {
            c.set_ifmode_with(SetIfmode {
                ifmode: match mode {
                    IfmodeArg::P2p => IFMODE_P2P,
                    IfmodeArg::Subnet => IFMODE_SUBNET,
                },
                client_to_client,
            })
            .await?
        }
        Cmd::SendControl {
            remote,
            local,
            peerid,
            hex: hex_text,
            file,
        } => {
            let packet = match (hex_text, file) {
                (Some(h), _) => hex::decode(h.trim())
                    .map_err(|e| Failure(format!("--hex is not valid hex: {e}")))?,
                (None, Some(f)) => read_input(&f)?.to_vec(),
                (None, None) => return Err(Failure("give --hex or --file".into())),
            };
            c.send_control(&SendControl {
                peerid,
                remote,
                local,
                packet: Bytes(packet),
            })
            .await?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ovpnctl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let watch = matches!(cli.cmd, Cmd::Watch { .. } | Cmd::Ct(CtCmd::Watch { .. }));
    let timeout = Duration::from_secs(cli.wait.max(1));
    let result = runtime.block_on(async {
        if watch {
            run(cli).await
        } else {
            match tokio::time::timeout(timeout, run(cli)).await {
                Ok(r) => r,
                Err(_) => Err(Failure(format!(
                    "no reply from the daemon within {} s",
                    timeout.as_secs()
                ))),
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("ovpnctl: {msg}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let p = format!("{path} {}", sub.get_name());
            let after = sub
                .get_after_help()
                .map(|s| s.to_string())
                .unwrap_or_default();
            if !after.contains("Example") || !after.contains("ovpnctl") {
                missing.push(p.clone());
            }
            walk(sub, &p, missing);
        }
    }

    #[test]
    fn every_command_documents_an_example() {
        Cli::command().debug_assert();
        let mut missing = Vec::new();
        walk(&Cli::command(), "ovpnctl", &mut missing);
        assert!(
            missing.is_empty(),
            "commands without an example: {missing:?}"
        );
    }

    #[test]
    fn key_material_is_split_and_checked() {
        let hexed = hex::encode((0u8..80).collect::<Vec<_>>());
        let m = decode_key_text(hexed.as_bytes(), KeyFormat::Auto).unwrap();
        let (e, d) = split_keys(&m, Cipher::Aes256Gcm).unwrap();
        assert_eq!(e.key.expose()[0], 0);
        assert_eq!(e.iv.expose(), &[32, 33, 34, 35, 36, 37, 38, 39]);
        assert_eq!(d.key.expose()[0], 40);
        assert_eq!(d.iv.expose()[7], 79);
        let b64 = base64::engine::general_purpose::STANDARD.encode((0u8..48).collect::<Vec<_>>());
        let m = decode_key_text(format!("{b64}\n").as_bytes(), KeyFormat::Auto).unwrap();
        assert!(split_keys(&m, Cipher::Aes128Gcm).is_ok());
        assert!(split_keys(&m, Cipher::Aes256Gcm).is_err());
    }

    #[test]
    fn ct_stats_prints_fields_then_counters() {
        let named = |name: &str, value| NamedCounter {
            name: name.into(),
            value,
        };
        let s = CtStats {
            entries: 2,
            max: 8,
            new: 2,
            invalid: 1,
            drop: 0,
            early_drop: 0,
            expired: 0,
            insert_failed: 0,
            counters: vec![named("found", 9), named("related", 0)],
        };
        let line = render::ct_stats(&s);
        assert_eq!(
            line,
            "entries=2 max=8 new=2 invalid=1 drop=0 early_drop=0 expired=0 insert_failed=0 found=9 related=0\n"
        );
    }
}
