//! A real-Redis test harness (feature `test-util`).
//!
//! Tests of Redis behaviour talk to a real `redis-server` that the test itself starts: a
//! [`RedisServer`] (one node) or a [`RedisCluster`] (three masters joined with
//! `redis-cli --cluster create`, optionally each with a replica so a test can SIGKILL a
//! master and wait for its replica's promotion), each on free loopback ports, in a
//! temporary directory, persisting nothing, killed on drop. A test never touches a
//! server it did not start.
//!
//! When `redis-server` is not installed, `start()` prints why and returns `None`, so the
//! test returns early (skipped). With `RELIABILITY_REQUIRE_REDIS=1` (set by CI) it panics
//! instead, so a CI box without Redis cannot pass silently.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() {
//! use reliability_core::harness::RedisServer;
//! use redis::AsyncCommands;
//!
//! let Some(server) = RedisServer::start() else { return };
//! let mut conn = server.config().connect().await.unwrap();
//! let _: () = conn.set("k", "v").await.unwrap();
//! # }
//! ```

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis::RedisConfig;

/// The environment variable that turns "skip when Redis is missing" into a failure.
pub const REQUIRE_REDIS_ENV: &str = "RELIABILITY_REQUIRE_REDIS";

/// How long a node may take to start or a cluster to converge.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a harness could not start.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// `redis-server` or `redis-cli` is not on `PATH`.
    #[error("`{0}` not found on PATH")]
    NotInstalled(&'static str),
    /// A process could not be started or did not become ready.
    #[error("redis harness: {0}")]
    Io(#[from] io::Error),
    /// Redis answered with an error while the harness set it up.
    #[error("redis harness: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered with something the harness did not expect.
    #[error("redis harness: {0}")]
    Parse(#[from] redis::ParsingError),
}

fn find_binary(name: &'static str) -> Result<PathBuf, HarnessError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or(HarnessError::NotInstalled(name))
}

/// Whether Redis tests must run (CI) rather than be skipped.
pub fn redis_required() -> bool {
    std::env::var(REQUIRE_REDIS_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn skip_or_panic<T>(what: &str, result: Result<T, HarnessError>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(HarnessError::NotInstalled(bin)) if !redis_required() => {
            eprintln!(
                "SKIPPED {what}: `{bin}` is not installed (set {REQUIRE_REDIS_ENV}=1 to fail instead)"
            );
            None
        }
        Err(e) => panic!("could not start {what}: {e}"),
    }
}

/// A free loopback port (the kernel picks; the listener is closed before use, so a rare
/// race with another process is possible and start-up retries on it).
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One `redis-server` process.
#[derive(Debug)]
struct Node {
    port: u16,
    bus_port: Option<u16>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn spawn(&mut self) -> Result<(), HarnessError> {
        let bin = find_binary("redis-server")?;
        let mut cmd = Command::new(bin);
        cmd.current_dir(&self.dir)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--dir", &self.dir.to_string_lossy()])
            .args(["--logfile", "redis.log"])
            .args(["--protected-mode", "no"]);
        if let Some(bus) = self.bus_port {
            cmd.args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "1000"])
                .args(["--cluster-port", &bus.to_string()])
                // Replicas sync at once (the default waits 5 s for more replicas), may
                // always be promoted however long their link was down, and stay with
                // their master.
                .args(["--repl-diskless-sync-delay", "0"])
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--cluster-allow-replica-migration", "no"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "redis-server on port {} exited with {status}; log: {}",
                    self.port,
                    read_log(&self.dir)
                ))
                .into());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                let ping = redis::Client::open(self.url())?
                    .get_connection_with_timeout(Duration::from_millis(500))
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
                if ping.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "redis-server on port {} not ready after {READY_TIMEOUT:?}",
                    self.port
                ))
                .into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn connection(&self) -> Result<redis::Connection, HarnessError> {
        Ok(redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))?)
    }

    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, HarnessError> {
        Ok(cmd.query(&mut self.connection()?)?)
    }
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("redis.log"))
        .map(|s| s.lines().rev().take(5).collect::<Vec<_>>().join(" | "))
        .unwrap_or_default()
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A single `redis-server` on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    node: Node,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server, or returns `None` (printing why) when Redis is not installed and
    /// not required.
    pub fn start() -> Option<Self> {
        skip_or_panic("redis-server", Self::try_start())
    }

    /// Starts a server.
    pub fn try_start() -> Result<Self, HarnessError> {
        find_binary("redis-server")?;
        let mut last = None;
        for _ in 0..3 {
            let dir = tempfile::tempdir()?;
            let mut node = Node {
                port: free_port()?,
                bus_port: None,
                dir: dir.path().to_path_buf(),
                child: None,
            };
            match node.spawn() {
                Ok(()) => return Ok(Self { node, _dir: dir }),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three attempts"))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.node.url()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.node.port
    }

    /// A [`RedisConfig`] for this server.
    pub fn config(&self) -> RedisConfig {
        RedisConfig::single(self.url())
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn stop(&mut self) {
        self.node.kill();
    }

    /// Starts the server again on the same port (its data is gone: nothing persists).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.node.kill();
        self.node.spawn()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.node
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

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

/// Total hash slots of a Redis Cluster.
const CLUSTER_SLOTS: u32 = 16384;

/// How often the cluster waits poll the nodes.
const POLL: Duration = Duration::from_millis(20);

/// One line of `CLUSTER NODES`: one node as some node sees it.
#[derive(Debug, Clone)]
struct NodeEntry {
    id: String,
    port: u16,
    myself: bool,
    master: bool,
    /// Flagged `fail` (agreed failure; a mere `fail?` suspicion does not count).
    failed: bool,
    master_id: Option<String>,
    slots: Vec<RangeInclusive<u16>>,
}

fn parse_cluster_nodes(text: &str) -> Vec<NodeEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let id = fields.next()?.to_owned();
            // `ip:port@cport[,hostname]`
            let addr = fields.next()?;
            let addr = addr.split('@').next()?;
            let port = addr.rsplit(':').next()?.parse().unwrap_or(0);
            let flags: Vec<&str> = fields.next()?.split(',').collect();
            let master_id = fields.next().filter(|m| *m != "-").map(str::to_owned);
            // ping-sent, pong-recv, config-epoch, link-state
            let mut fields = fields.skip(4);
            let slots = fields
                .by_ref()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((lo, hi)) => Some(lo.parse().ok()?..=hi.parse().ok()?),
                    None => {
                        let slot = s.parse().ok()?;
                        Some(slot..=slot)
                    }
                })
                .collect();
            Some(NodeEntry {
                id,
                port,
                myself: flags.contains(&"myself"),
                master: flags.contains(&"master"),
                failed: flags.contains(&"fail"),
                master_id,
                slots,
            })
        })
        .collect()
}

/// The role of a running node in one node's view.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// A master serving these slot ranges (sorted; empty for a master without slots).
    Master(Vec<RangeInclusive<u16>>),
    /// A replica of the node with this index (`None`: of a node the harness does not know).
    Replica(Option<usize>),
}

fn slot_count(ranges: &[RangeInclusive<u16>]) -> u32 {
    ranges
        .iter()
        .map(|r| u32::from(*r.end()) - u32::from(*r.start()) + 1)
        .sum()
}

fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
}

fn timed_out(what: String) -> HarnessError {
    io::Error::new(io::ErrorKind::TimedOut, what).into()
}

fn invalid(what: String) -> HarnessError {
    io::Error::new(io::ErrorKind::InvalidInput, what).into()
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

    /// Node `i`'s view of the running nodes, or `None` if `i` does not answer, is not
    /// `cluster_state:ok`, or sees a running node as failed.
    fn healthy_view(&self, i: usize) -> Option<Vec<Option<Role>>> {
        let mut conn = self.nodes[i].connection().ok()?;
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).ok()?;
        if info_field(&info, "cluster_state") != Some("ok")
            || info_field(&info, "cluster_slots_ok") != Some("16384")
        {
            return None;
        }
        let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).ok()?;
        self.view_from(&parse_cluster_nodes(&text), true)
    }

    /// Roles of the running nodes (index-aligned; `None` for stopped nodes) from a
    /// `CLUSTER NODES` listing. With `strict`, a running node that is missing or
    /// flagged `fail` makes the view `None`.
    fn view_from(&self, entries: &[NodeEntry], strict: bool) -> Option<Vec<Option<Role>>> {
        let mut view = vec![None; self.nodes.len()];
        for i in self.running() {
            let entry = entries.iter().find(|e| e.port == self.nodes[i].port);
            let Some(entry) = entry else {
                if strict {
                    return None;
                }
                continue;
            };
            if strict && entry.failed {
                return None;
            }
            view[i] = Some(if entry.master {
                let mut slots = entry.slots.clone();
                slots.sort_by_key(|r| *r.start());
                Role::Master(slots)
            } else {
                let of = entry
                    .master_id
                    .as_deref()
                    .and_then(|id| entries.iter().find(|e| e.id == id))
                    .and_then(|m| self.index_of_port(m.port));
                Role::Replica(of)
            });
        }
        Some(view)
    }

    fn converged(&self) -> bool {
        let running: Vec<usize> = self.running().collect();
        let mut common = None;
        for &i in &running {
            let Some(view) = self.healthy_view(i) else {
                return false;
            };
            match &common {
                None => common = Some(view),
                Some(c) if *c == view => {}
                Some(_) => return false,
            }
        }
        let Some(view) = common else {
            return false;
        };
        // Three running masters own every slot; every other running node replicates one.
        let mut masters = Vec::new();
        let mut total = 0;
        for &i in &running {
            match &view[i] {
                Some(Role::Master(slots)) if !slots.is_empty() => {
                    masters.push(i);
                    total += slot_count(slots);
                }
                Some(Role::Replica(Some(m))) if self.nodes[*m].child.is_some() => {}
                _ => return false,
            }
        }
        if masters.len() != Self::MASTERS || total != CLUSTER_SLOTS {
            return false;
        }
        let all_running = running.len() == self.nodes.len();
        for &m in &masters {
            let expected = running
                .iter()
                .filter(|&&r| view[r] == Some(Role::Replica(Some(m))))
                .count();
            if all_running && expected != self.replicas {
                return false;
            }
            let attached = self.nodes[m]
                .query::<String>(redis::cmd("INFO").arg("replication"))
                .is_ok_and(|info| {
                    let online = info
                        .lines()
                        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                        .count();
                    info_field(&info, "connected_slaves") == Some(&expected.to_string())
                        && online == expected
                });
            if !attached {
                return false;
            }
        }
        running.iter().filter(|r| !masters.contains(r)).all(|&r| {
            self.nodes[r]
                .query::<String>(redis::cmd("INFO").arg("replication"))
                .is_ok_and(|info| info_field(&info, "master_link_status") == Some("up"))
        })
    }

    /// The current topology as one running node sees it (no health requirements).
    fn view(&self) -> Result<Vec<Option<Role>>, HarnessError> {
        let mut last = None;
        for i in self.running() {
            match self.nodes[i].query::<String>(redis::cmd("CLUSTER").arg("NODES")) {
                Ok(text) => {
                    return Ok(self
                        .view_from(&parse_cluster_nodes(&text), false)
                        .expect("non-strict views always exist"));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no cluster node is running").into()))
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

    /// The index of the running master that serves `key`'s slot (`CLUSTER KEYSLOT` +
    /// `CLUSTER NODES` on a running node), e.g. to [`kill_master`](Self::kill_master)
    /// the node holding a key. Fails if no running master serves the slot (e.g. during a
    /// failover: [`wait_failover`](Self::wait_failover) first).
    pub fn master_for_key(&self, key: &str) -> Result<usize, HarnessError> {
        let slot = self.key_slot(key)?;
        let view = self.view()?;
        view.iter()
            .position(|role| {
                matches!(role, Some(Role::Master(slots)) if slots.iter().any(|r| r.contains(&slot)))
            })
            .ok_or_else(|| {
                io::Error::other(format!("no running master serves slot {slot}")).into()
            })
    }

    /// Indices of the running masters that serve slots, ascending.
    pub fn masters(&self) -> Result<Vec<usize>, HarnessError> {
        let view = self.view()?;
        Ok((0..view.len())
            .filter(|&i| matches!(&view[i], Some(Role::Master(s)) if !s.is_empty()))
            .collect())
    }

    /// Indices of the running replicas of node `master`, ascending.
    pub fn replicas_of(&self, master: usize) -> Result<Vec<usize>, HarnessError> {
        let view = self.view()?;
        Ok((0..view.len())
            .filter(|&i| view[i] == Some(Role::Replica(Some(master))))
            .collect())
    }

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

    /// Number of keys stored on node `i` (`DBSIZE`).
    pub fn node_dbsize(&self, i: usize) -> Result<u64, HarnessError> {
        self.nodes[i].query(&redis::cmd("DBSIZE"))
    }

    /// Ports of the nodes, in order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }
}
