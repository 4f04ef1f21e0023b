//! A blocking handle on a running `dco-daemon`'s IPC socket, for the demo and the benchmark
//! (both are plain threaded programs): a current-thread tokio runtime that only runs while a
//! request is in flight, wrapped around [`control_ipc::Client`].

use anyhow::{Context, Result, bail};
use control_ipc::Client;
use control_ipc::schema::{InterfaceStats, NamedCounter, PeerInfo, PeerStats};
use control_ipc::types::InOut;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A connection to one daemon.
pub struct DaemonIpc {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl std::fmt::Debug for DaemonIpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonIpc")
            .field("path", &self.client.path())
            .finish()
    }
}

impl DaemonIpc {
    /// Connects to the socket at `path`, retrying until it answers or `timeout` passes (a
    /// daemon that was just started needs a moment to bind it).
    pub fn connect(path: &Path, timeout: Duration) -> Result<DaemonIpc> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a tokio runtime")?;
        let deadline = Instant::now() + timeout;
        loop {
            match rt.block_on(Client::connect(path)) {
                Ok(client) => return Ok(DaemonIpc { rt, client }),
                Err(e) if Instant::now() >= deadline => {
                    bail!("cannot reach the daemon at {}: {e}", path.display())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The socket path.
    pub fn path(&self) -> PathBuf {
        self.client.path().to_path_buf()
    }

    /// Runs any request future built from the client (for commands without a wrapper here).
    pub fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, control_ipc::ClientError>>,
    {
        let client = self.client.clone();
        let fut = f(client);
        self.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), fut).await })
            .context("the daemon did not answer within 10 s")?
            .map_err(anyhow::Error::from)
    }

    /// `GET_STATS`.
    pub fn stats(&self) -> Result<InterfaceStats> {
        self.call(|c| async move { c.get_stats().await })
    }

    /// `GET_PEER_STATS`, every page.
    pub fn peer_stats(&self) -> Result<Vec<PeerStats>> {
        self.call(|c| async move { c.get_peer_stats_all().await })
    }

    /// `GET_PEERS`, every page.
    pub fn peers(&self) -> Result<Vec<PeerInfo>> {
        self.call(|c| async move { c.get_peers_all().await })
    }
}

/// What the daemon's interface counters did between two `GET_STATS` snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsDelta {
    /// Data packets received from peers (decrypted) and sent to peers (encrypted).
    pub data: (u64, u64),
    /// Control packets in / out.
    pub ctrl: (u64, u64),
    /// Data packets dropped in / out.
    pub lost_data: (u64, u64),
    /// Data packets dropped for lack of buffers in / out.
    pub nomem_data: (u64, u64),
    /// Plaintext bytes in / out.
    pub tunnel_bytes: (u64, u64),
    /// Drop reasons that grew, with how much.
    pub drops: Vec<(String, u64)>,
}

impl StatsDelta {
    /// `after - before`, saturating (a counter never goes back, but a restarted daemon's
    /// would).
    pub fn between(before: &InterfaceStats, after: &InterfaceStats) -> StatsDelta {
        let d = |a: &InOut, b: &InOut| (a.rx.saturating_sub(b.rx), a.tx.saturating_sub(b.tx));
        let old = |name: &str| {
            before
                .drops
                .iter()
                .find(|c| c.name == name)
                .map_or(0, |c: &NamedCounter| c.value)
        };
        StatsDelta {
            data: d(&after.data, &before.data),
            ctrl: d(&after.ctrl, &before.ctrl),
            lost_data: d(&after.lost_data, &before.lost_data),
            nomem_data: d(&after.nomem_data, &before.nomem_data),
            tunnel_bytes: d(&after.tunnel, &before.tunnel),
            drops: after
                .drops
                .iter()
                .map(|c| (c.name.clone(), c.value.saturating_sub(old(&c.name))))
                .filter(|(_, v)| *v > 0)
                .collect(),
        }
    }

    /// Every dropped data packet, both directions.
    pub fn dropped(&self) -> u64 {
        self.lost_data.0 + self.lost_data.1 + self.nomem_data.0 + self.nomem_data.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_subtracts_and_keeps_grown_drop_reasons() {
        let before = InterfaceStats {
            data: InOut::new(10, 20),
            lost_data: InOut::new(1, 0),
            drops: vec![
                NamedCounter::new("replay", 1),
                NamedCounter::new("no_key", 5),
            ],
            ..Default::default()
        };
        let after = InterfaceStats {
            data: InOut::new(110, 220),
            lost_data: InOut::new(4, 0),
            drops: vec![
                NamedCounter::new("replay", 4),
                NamedCounter::new("no_key", 5),
                NamedCounter::new("no_route", 2),
            ],
            ..Default::default()
        };
        let d = StatsDelta::between(&before, &after);
        assert_eq!(d.data, (100, 200));
        assert_eq!(d.lost_data, (3, 0));
        assert_eq!(d.dropped(), 3);
        assert_eq!(
            d.drops,
            vec![("replay".to_string(), 3), ("no_route".to_string(), 2)]
        );
        // A restarted daemon (counters back at zero) gives zeros, not a wrap-around.
        assert_eq!(
            StatsDelta::between(&after, &InterfaceStats::default()).data,
            (0, 0)
        );
    }
}
