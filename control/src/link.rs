//! The I/O adapter between the sans-IO shells and `dco-daemon`: carries [`DaemonCmd`]s over
//! the IPC and turns notifications into [`DaemonEvent`]s.

use std::net::SocketAddr;

use control_ipc::schema::{
    Cipher, IFMODE_P2P, IFMODE_SUBNET, KeyConfig, KeySlot, NewKey, NewPeer, NotificationKind,
    Route, SendControl, SetIfconfig, SetIfmode,
};
use control_ipc::types::{Bytes, IpPrefix, KeyBytes};
use control_ipc::{Client, ClientError, Notification, Subscription};
use crypto::{CipherKind, DirectionalKey};

use crate::dataplane::{DaemonCmd, DaemonEvent, IfMode, Net, PeerTraffic, Slot};

/// A connection to the daemon with a notification subscription.
pub struct DaemonLink {
    client: Client,
    sub: Subscription,
    /// Notifications the daemon could not deliver to us (we fell behind).
    pub missed: u64,
}

fn prefix(n: &Net) -> IpPrefix {
    IpPrefix {
        addr: n.addr,
        len: n.prefix_len,
    }
}

fn cipher(c: CipherKind) -> Cipher {
    match c {
        CipherKind::Aes128Gcm => Cipher::Aes128Gcm,
        CipherKind::Aes256Gcm => Cipher::Aes256Gcm,
        CipherKind::Chacha20Poly1305 => Cipher::Chacha20Poly1305,
    }
}

fn key(k: &DirectionalKey) -> KeyConfig {
    KeyConfig {
        cipher: cipher(k.cipher()),
        key: KeyBytes::from(k.key()),
        iv: KeyBytes::from(&k.implicit_iv()[..]),
    }
}

fn slot(s: Slot) -> KeySlot {
    match s {
        Slot::Primary => KeySlot::Primary,
        Slot::Secondary => KeySlot::Secondary,
    }
}

impl DaemonLink {
    /// Connects and subscribes to every notification (control packets included).
    pub async fn connect(path: &std::path::Path) -> Result<Self, ClientError> {
        let client = Client::connect(path).await?;
        let kinds = [
            NotificationKind::DelPeer,
            NotificationKind::RotateKey,
            NotificationKind::Float,
            NotificationKind::ControlPacket,
        ];
        let sub = client.subscribe(&kinds, Some(8192)).await?;
        Ok(Self {
            client,
            sub,
            missed: 0,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends one command and waits for its reply.
    pub async fn execute(&self, cmd: DaemonCmd) -> Result<Option<SocketAddr>, ClientError> {
        let c = &self.client;
        match cmd {
            DaemonCmd::Listen { addr } => return c.listen(addr).await.map(Some),
            DaemonCmd::SetIfMode {
                mode,
                client_to_client,
            } => {
                c.set_ifmode_with(SetIfmode {
                    ifmode: if mode == IfMode::P2p {
                        IFMODE_P2P
                    } else {
                        IFMODE_SUBNET
                    },
                    client_to_client: Some(client_to_client),
                })
                .await?
            }
            DaemonCmd::SetIfconfig { addresses, mtu, up } => {
                c.set_ifconfig(&SetIfconfig {
                    ipv4: addresses.iter().find(|a| a.addr.is_ipv4()).map(prefix),
                    ipv6: addresses.iter().find(|a| a.addr.is_ipv6()).map(prefix),
                    mtu,
                    up: Some(up),
                })
                .await?
            }
            DaemonCmd::AddRoute {
                dst,
                gateway,
                metric,
            } => {
                c.add_route(&Route {
                    dst: prefix(&dst),
                    gateway,
                    metric,
                })
                .await?
            }
            DaemonCmd::NewPeer {
                peer_id,
                remote,
                local,
                vpn_ipv4,
                vpn_ipv6,
                iroutes,
                common_name,
            } => {
                c.new_peer(&NewPeer {
                    local: local.map(|ip| SocketAddr::new(ip, 0)),
                    remote,
                    vpn_ipv4,
                    vpn_ipv6,
                    peerid: peer_id,
                    common_name: (!common_name.is_empty()).then_some(common_name),
                    iroutes: iroutes.iter().map(prefix).collect(),
                })
                .await?
            }
            DaemonCmd::SetPeer {
                peer_id,
                interval,
                timeout,
            } => c.set_peer(peer_id, interval, timeout).await?,
            DaemonCmd::DelPeer { peer_id } => c.del_peer(peer_id).await?,
            DaemonCmd::NewKey {
                peer_id,
                slot: s,
                key_id,
                encrypt,
                decrypt,
            } => {
                c.new_key(&NewKey {
                    slot: slot(s),
                    keyid: key_id,
                    peerid: peer_id,
                    encrypt: key(&encrypt),
                    decrypt: key(&decrypt),
                })
                .await?
            }
            DaemonCmd::SwapKeys { peer_id } => c.swap_keys(peer_id).await?,
            DaemonCmd::DelKey { peer_id, slot: s } => c.del_key(peer_id, slot(s)).await?,
            DaemonCmd::SendControl {
                remote,
                local,
                packet,
            } => {
                c.send_control(&SendControl {
                    peerid: None,
                    remote,
                    local: local.map(|ip| SocketAddr::new(ip, 0)),
                    packet: Bytes(packet),
                })
                .await?
            }
        }
        Ok(None)
    }

    /// The next notification as a shell event; `None` when the daemon went away.
    pub async fn next_event(&mut self) -> Option<DaemonEvent> {
        loop {
            let n = self.sub.next().await?;
            match n {
                Notification::ControlPacket(p) => {
                    return Some(DaemonEvent::ControlPacket {
                        remote: p.remote,
                        local: p.local.map(|l| l.ip()),
                        packet: p.packet.0,
                    });
                }
                Notification::DelPeer(d) => {
                    return Some(DaemonEvent::PeerDeleted {
                        peer_id: d.peerid,
                        reason: d.del_reason.to_string(),
                    });
                }
                Notification::RotateKey(r) => {
                    return Some(DaemonEvent::RotateKey { peer_id: r.peerid });
                }
                Notification::Float(f) => {
                    return Some(DaemonEvent::Float {
                        peer_id: f.peerid,
                        remote: f.address,
                    });
                }
                Notification::Missed(m) => {
                    self.missed += m.count;
                    tracing::warn!(count = m.count, "missed notifications from the daemon");
                }
                Notification::CtEvent(_) => {}
                Notification::Unknown { notification, .. } => {
                    tracing::debug!(notification, "unknown notification ignored")
                }
            }
        }
    }

    /// Per-peer traffic, for reneg-bytes/pkts and the status file.
    pub async fn traffic(&self) -> Result<Vec<DaemonEvent>, ClientError> {
        Ok(self
            .client
            .get_peer_stats_all()
            .await?
            .into_iter()
            .map(|s| DaemonEvent::Traffic {
                peer_id: s.peerid,
                traffic: PeerTraffic {
                    bytes_in: s.bytes.rx,
                    bytes_out: s.bytes.tx,
                    packets_in: s.packets.rx,
                    packets_out: s.packets.tx,
                },
            })
            .collect())
    }
}
