//! The peer table: read-mostly, rebuilt and swapped whole on every change (RCU-like), so a
//! worker's lookup never takes a lock. Indexed by peer-id, by VPN address, and by routes
//! (iroutes and routes whose gateway is a peer's VPN address) with longest-prefix match.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::netlink::Prefix;
use crate::peer::Peer;
use crate::route::RouteTable;

type Fast = foldhash::fast::RandomState;

/// How peers are selected for outgoing packets (if_ovpn's SET_IFMODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IfMode {
    /// One peer takes everything (client side).
    P2p,
    /// Peers are chosen by destination address (server side).
    #[default]
    Multipoint,
}

/// A route installed through the IPC: `prefix` via the peer whose VPN address is `gateway`
/// (or via `peer` directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub prefix: Prefix,
    pub gateway: Option<IpAddr>,
}

#[derive(Default)]
pub struct PeerTable {
    by_id: HashMap<u32, Arc<Peer>, Fast>,
    by_v4: HashMap<Ipv4Addr, Arc<Peer>, Fast>,
    by_v6: HashMap<Ipv6Addr, Arc<Peer>, Fast>,
    routes: RouteTable<Arc<Peer>>,
    mode: IfMode,
}

impl PeerTable {
    /// Builds the indices from the authoritative peer list and route list.
    pub fn build(peers: &[Arc<Peer>], routes: &[RouteEntry], mode: IfMode) -> Self {
        let mut t = PeerTable {
            mode,
            ..Default::default()
        };
        for p in peers {
            t.by_id.insert(p.id.get(), p.clone());
            if let Some(a) = p.vpn_ipv4 {
                t.by_v4.insert(a, p.clone());
            }
            if let Some(a) = p.vpn_ipv6 {
                t.by_v6.insert(a, p.clone());
            }
        }
        // Routes via a gateway first, then iroutes, so a peer's own iroute wins a tie.
        for r in routes {
            if let Some(gw) = r.gateway.and_then(|gw| t.by_vpn(gw).cloned()) {
                t.routes.insert(r.prefix, gw);
            }
        }
        for p in peers {
            for pre in p.iroutes.load().iter() {
                t.routes.insert(*pre, p.clone());
            }
        }
        t
    }

    #[inline]
    pub fn peer(&self, id: u32) -> Option<&Arc<Peer>> {
        self.by_id.get(&id)
    }

    #[inline]
    pub fn by_vpn(&self, ip: IpAddr) -> Option<&Arc<Peer>> {
        match ip {
            IpAddr::V4(a) => self.by_v4.get(&a),
            IpAddr::V6(a) => self.by_v6.get(&a),
        }
    }

    /// The peer an inner packet to `dst` goes to (if_ovpn's `ovpn_route_peer`, with hash
    /// and LPM lookups instead of scans).
    #[inline]
    pub fn route(&self, dst: IpAddr) -> Option<&Arc<Peer>> {
        if self.mode == IfMode::P2p && self.by_id.len() == 1 {
            return self.by_id.values().next();
        }
        self.by_vpn(dst).or_else(|| self.routes.lookup(dst))
    }

    pub fn mode(&self) -> IfMode {
        self.mode
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn peers(&self) -> impl Iterator<Item = &Arc<Peer>> {
        self.by_id.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerConfig;
    use crypto::PeerId;

    fn peer(id: u32, v4: &str, iroutes: &[(&str, u8)]) -> Arc<Peer> {
        Arc::new(Peer::new(
            PeerConfig {
                id: PeerId::new(id).unwrap(),
                remote: "192.0.2.1:1194".parse().unwrap(),
                local: None,
                vpn_ipv4: Some(v4.parse().unwrap()),
                vpn_ipv6: None,
                iroutes: iroutes
                    .iter()
                    .map(|(a, l)| Prefix::new(a.parse().unwrap(), *l).unwrap())
                    .collect(),
                common_name: format!("client{id}"),
            },
            2,
            0,
        ))
    }

    #[test]
    fn route_peer_selection() {
        let a = peer(1, "10.8.0.2", &[("192.168.10.0", 24)]);
        let b = peer(2, "10.8.0.3", &[]);
        let routes = vec![RouteEntry {
            prefix: Prefix::new("172.16.0.0".parse().unwrap(), 12).unwrap(),
            gateway: Some("10.8.0.3".parse().unwrap()),
        }];
        let t = PeerTable::build(&[a.clone(), b.clone()], &routes, IfMode::Multipoint);
        let r = |s: &str| t.route(s.parse().unwrap()).map(|p| p.id.get());
        assert_eq!(r("10.8.0.2"), Some(1));
        assert_eq!(r("10.8.0.3"), Some(2));
        assert_eq!(r("192.168.10.77"), Some(1));
        assert_eq!(r("172.20.1.1"), Some(2));
        assert_eq!(r("10.8.0.9"), None);
        assert!(a.allows_source("192.168.10.5".parse().unwrap()));
        assert!(a.allows_source("10.8.0.2".parse().unwrap()));
        assert!(!a.allows_source("10.8.0.3".parse().unwrap()));
        assert!(!b.allows_source("192.168.10.5".parse().unwrap()));
        let p2p = PeerTable::build(&[a], &[], IfMode::P2p);
        assert_eq!(
            p2p.route("8.8.8.8".parse().unwrap()).map(|p| p.id.get()),
            Some(1)
        );
    }
}
