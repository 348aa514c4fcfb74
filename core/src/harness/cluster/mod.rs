//! [`RedisCluster`]: three masters, optionally each with a replica.

mod failover;
mod topology;

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{Node, free_port};
use super::{HarnessError, READY_TIMEOUT, find_binary, skip_or_panic};
use crate::redis::RedisConfig;

pub use failover::KilledMaster;

/// A Redis Cluster on free loopback ports, killed on drop: three masters, each with
/// either no replica ([`RedisCluster::start`]) or one replica
/// ([`RedisCluster::start_with_replicas`]).
///
/// Nodes are addressed by index (`0..node_count()`), stable for the cluster's life.
/// Which index is a master is decided by `redis-cli --cluster create` and changes on
/// failover: ask [`masters`](Self::masters), [`replicas_of`](Self::replicas_of) or
/// [`master_for_key`](Self::master_for_key) instead of assuming an order. In a
/// masters-only cluster (`start()`), nodes `0..MASTERS` are the masters and stay so.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    replicas: usize,
    /// Masters killed by [`kill_master`](Self::kill_master) and not restarted since.
    killed: Vec<KilledMaster>,
    last_kill: Option<Instant>,
    _dir: tempfile::TempDir,
}

/// How often the cluster waits poll the nodes.
const POLL: Duration = Duration::from_millis(20);

fn timed_out(what: String) -> HarnessError {
    io::Error::new(io::ErrorKind::TimedOut, what).into()
}

impl RedisCluster {
    /// Number of masters.
    pub const MASTERS: usize = 3;

    /// Starts a 3-master cluster without replicas, or returns `None` (printing why) when
    /// Redis is not installed and not required.
    pub fn start() -> Option<Self> {
        skip_or_panic("redis cluster", Self::try_start())
    }

    /// Starts a 3-master cluster without replicas and waits until every node reports
    /// `cluster_state:ok`.
    pub fn try_start() -> Result<Self, HarnessError> {
        Self::try_start_replicated(0)
    }

    /// Starts a cluster of three masters with one replica each (six nodes), or returns
    /// `None` (printing why) when Redis is not installed and not required.
    ///
    /// Nodes use a 1 s `cluster-node-timeout`, so a killed master's replica is promoted
    /// within a few seconds (see [`kill_master`](Self::kill_master)).
    pub fn start_with_replicas() -> Option<Self> {
        skip_or_panic(
            "redis cluster with replicas",
            Self::try_start_with_replicas(),
        )
    }

    /// Starts three masters with one replica each and waits until the cluster has
    /// converged: every node reports `cluster_state:ok` with all 16384 slots ok, all
    /// nodes agree on who replicates whom, every master has its replica attached
    /// (`connected_slaves:1`) and every replica's link is up (`master_link_status:up`).
    pub fn try_start_with_replicas() -> Result<Self, HarnessError> {
        Self::try_start_replicated(1)
    }

    fn try_start_replicated(replicas: usize) -> Result<Self, HarnessError> {
        find_binary("redis-server")?;
        let cli = find_binary("redis-cli")?;
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start_once(&cli, replicas) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three attempts"))
    }

    fn try_start_once(cli: &Path, replicas: usize) -> Result<Self, HarnessError> {
        let dir = tempfile::tempdir()?;
        let count = Self::MASTERS * (1 + replicas);
        let mut nodes = Vec::with_capacity(count);
        let mut taken = std::collections::HashSet::new();
        let mut port = || -> io::Result<u16> {
            loop {
                let p = free_port()?;
                if taken.insert(p) {
                    return Ok(p);
                }
            }
        };
        for i in 0..count {
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir(&node_dir)?;
            let mut node = Node {
                port: port()?,
                bus_port: Some(port()?),
                dir: node_dir,
                child: None,
            };
            node.spawn()?;
            nodes.push(node);
        }
        let output = Command::new(cli)
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            ))
            .into());
        }
        let cluster = Self {
            nodes,
            replicas,
            killed: Vec::new(),
            last_kill: None,
            _dir: dir,
        };
        cluster.wait_converged()?;
        Ok(cluster)
    }

    /// Waits until the running nodes form a healthy cluster: each reports
    /// `cluster_state:ok` with all 16384 slots ok; all agree on the topology; three
    /// running masters serve every slot, every other running node replicates one of them
    /// with its link up (`master_link_status:up`), and each master counts its running
    /// replicas as connected (`connected_slaves`). While every node runs, each master
    /// must also have its full set of replicas.
    pub fn wait_converged(&self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.converged() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(timed_out(format!(
                    "cluster did not converge within {READY_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].child.is_some())
    }

    fn index_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.port == port)
    }

    /// A running node to ask about the cluster.
    fn any_running(&self) -> Result<&Node, HarnessError> {
        self.running()
            .next()
            .map(|i| &self.nodes[i])
            .ok_or_else(|| io::Error::other("no cluster node is running").into())
    }

    /// Seed URLs of every node, masters and replicas, running or not: redis-rs needs
    /// only one live seed, so killed nodes do not stop a client from (re)connecting.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// The URL of node `i`.
    pub fn node_url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// A [`RedisConfig`] naming every node as a seed.
    pub fn config(&self) -> RedisConfig {
        RedisConfig::cluster(self.urls())
    }

    /// Number of nodes: `MASTERS * (1 + replicas_per_master())`.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Replicas each master was started with (0 for [`start`](Self::start), 1 for
    /// [`start_with_replicas`](Self::start_with_replicas)).
    pub fn replicas_per_master(&self) -> usize {
        self.replicas
    }

    /// Whether node `i`'s process runs (it was not stopped or killed by the harness,
    /// and has not exited).
    pub fn is_node_running(&mut self, i: usize) -> bool {
        self.nodes[i]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills node `i` (SIGKILL). In a masters-only cluster its slots become unavailable
    /// until it returns; to take a master down so its replica takes over, prefer
    /// [`kill_master`](Self::kill_master), which [`wait_failover`](Self::wait_failover)
    /// then waits on.
    pub fn stop_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again on its port with its cluster config, and waits until the
    /// cluster is whole again ([`wait_converged`](Self::wait_converged)).
    ///
    /// Works in both layouts. With replicas, a master whose replica was promoted
    /// rejoins as a replica of the promoted node (its data is resynchronised from it),
    /// so the roles of indices change: ask [`masters`](Self::masters) again.
    pub fn restart_node(&mut self, i: usize) -> Result<(), HarnessError> {
        self.nodes[i].kill();
        self.killed.retain(|k| k.index != i);
        self.nodes[i].spawn()?;
        self.wait_converged()
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn key_slot(&self, key: &str) -> Result<u16, HarnessError> {
        self.any_running()?
            .query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
    }

    /// The port of the master that serves `key`'s slot (from `CLUSTER SLOTS`).
    pub fn master_port_for(&self, key: &str) -> Result<u16, HarnessError> {
        let node = self.any_running()?;
        let slot: i64 = node.query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))?;
        let slots: Vec<Vec<redis::Value>> = node.query(redis::cmd("CLUSTER").arg("SLOTS"))?;
        for range in slots {
            let [lo, hi, master, ..] = range.as_slice() else {
                continue;
            };
            let (lo, hi): (i64, i64) = (
                redis::from_redis_value_ref(lo)?,
                redis::from_redis_value_ref(hi)?,
            );
            if (lo..=hi).contains(&slot) {
                let master: Vec<redis::Value> = redis::from_redis_value_ref(master)?;
                if let Some(port) = master.get(1) {
                    return Ok(redis::from_redis_value_ref(port)?);
                }
            }
        }
        Err(io::Error::other("slot not covered").into())
    }

    /// Number of keys stored on node `i` (`DBSIZE`).
    pub fn node_dbsize(&self, i: usize) -> Result<u64, HarnessError> {
        self.nodes[i].query(&redis::cmd("DBSIZE"))
    }

    /// Ports of the nodes, in order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }
}
