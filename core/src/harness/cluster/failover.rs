//! Killing a master and waiting for its replica's promotion.

use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use super::topology::{info_field, parse_cluster_nodes};
use super::{POLL, RedisCluster, timed_out};
use crate::harness::HarnessError;

/// A master that [`RedisCluster::kill_master`] killed with SIGKILL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KilledMaster {
    /// Its node index in the cluster.
    pub index: usize,
    /// Its client address (`127.0.0.1:<port>`).
    pub addr: SocketAddr,
    /// Its cluster node id (`CLUSTER MYID`).
    pub node_id: String,
    /// The slot ranges it served (inclusive), now to be taken over by a replica.
    pub slots: Vec<RangeInclusive<u16>>,
    /// Node indices of its replicas when it was killed: the candidates for promotion.
    pub replicas: Vec<usize>,
    /// When the signal was sent.
    pub killed_at: Instant,
}

impl KilledMaster {
    /// Whether it served `slot` (see [`RedisCluster::key_slot`]).
    pub fn served(&self, slot: u16) -> bool {
        self.slots.iter().any(|r| r.contains(&slot))
    }
}

fn invalid(what: String) -> HarnessError {
    io::Error::new(io::ErrorKind::InvalidInput, what).into()
}

impl RedisCluster {
    /// Sends SIGKILL (not `SHUTDOWN`: no goodbye, no final sync) to node `which`, which
    /// must be a running master serving slots, and returns what it served. Its replica,
    /// if any, is promoted once the others agree it failed: wait with
    /// [`wait_failover`](Self::wait_failover). Writes not yet replicated are lost with
    /// it, as in production; [`wait_replicas_synced`](Self::wait_replicas_synced) first
    /// when a test needs them.
    pub fn kill_master(&mut self, which: usize) -> Result<KilledMaster, HarnessError> {
        let node = self
            .nodes
            .get(which)
            .filter(|n| n.child.is_some())
            .ok_or_else(|| invalid(format!("node {which} is not a running cluster node")))?;
        let text: String = node.query(redis::cmd("CLUSTER").arg("NODES"))?;
        let entries = parse_cluster_nodes(&text);
        let me = entries
            .iter()
            .find(|e| e.myself)
            .ok_or_else(|| io::Error::other("CLUSTER NODES lists no `myself`"))?;
        if !me.master || me.slots.is_empty() {
            return Err(invalid(format!(
                "node {which} is not a master serving slots"
            )));
        }
        let mut slots = me.slots.clone();
        slots.sort_by_key(|r| *r.start());
        let mut replicas: Vec<usize> = entries
            .iter()
            .filter(|e| e.master_id.as_deref() == Some(me.id.as_str()))
            .filter_map(|e| self.index_of_port(e.port))
            .collect();
        replicas.sort_unstable();
        let killed = KilledMaster {
            index: which,
            addr: SocketAddr::from(([127, 0, 0, 1], node.port)),
            node_id: me.id.clone(),
            slots,
            replicas,
            killed_at: Instant::now(),
        };
        self.nodes[which].kill();
        self.last_kill = Some(killed.killed_at);
        self.killed.push(killed.clone());
        Ok(killed)
    }

    /// Waits, polling every 20 ms, until the cluster has recovered from the masters
    /// killed by [`kill_master`](Self::kill_master): a replica of each was promoted, and
    /// the surviving nodes have [converged](Self::wait_converged) (`cluster_state:ok`,
    /// all 16384 slots served by three running masters). Returns the time from the
    /// latest kill to recovery.
    ///
    /// Fails at once when no master was killed or a killed master had no running
    /// replica to promote (a masters-only cluster), and with
    /// [`io::ErrorKind::TimedOut`] after `timeout`.
    pub fn wait_failover(&self, timeout: Duration) -> Result<Duration, HarnessError> {
        let since = self
            .last_kill
            .ok_or_else(|| invalid("no master was killed with kill_master".to_owned()))?;
        if let Some(k) = self
            .killed
            .iter()
            .find(|k| !k.replicas.iter().any(|&r| self.nodes[r].child.is_some()))
        {
            return Err(invalid(format!(
                "killed master {} has no running replica to promote",
                k.index
            )));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.converged() {
                return Ok(since.elapsed());
            }
            if Instant::now() > deadline {
                return Err(timed_out(format!(
                    "no failover within {timeout:?} of the kill"
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits, polling every 20 ms, until every running replica has processed its
    /// master's whole replication stream (`INFO replication` offsets equal), so that
    /// writes acknowledged so far survive a [`kill_master`](Self::kill_master).
    /// Fails with [`io::ErrorKind::TimedOut`] after `timeout`.
    pub fn wait_replicas_synced(&self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.replicas_synced() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(timed_out(format!(
                    "replicas did not catch up within {timeout:?}"
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    fn replicas_synced(&self) -> bool {
        self.running().all(|i| {
            let Ok(info) = self.nodes[i].query::<String>(redis::cmd("INFO").arg("replication"))
            else {
                return false;
            };
            if info_field(&info, "role") != Some("master") {
                return true;
            }
            let Some(offset) = info_field(&info, "master_repl_offset") else {
                return false;
            };
            info.lines()
                .filter(|l| l.starts_with("slave") && l.contains("ip="))
                .all(|l| {
                    l.split(',')
                        .any(|kv| kv.strip_prefix("offset=") == Some(offset.trim()))
                })
        })
    }
}
