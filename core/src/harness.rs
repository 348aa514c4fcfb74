//! A real-Redis test harness (feature `test-util`).
//!
//! Tests of Redis behaviour talk to a real `redis-server` that the test itself starts: a
//! [`RedisServer`] (one node) or a [`RedisCluster`] (three masters joined with
//! `redis-cli --cluster create`), each on free loopback ports, in a temporary directory,
//! persisting nothing, killed on drop. A test never touches a server it did not start.
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
use std::net::{TcpListener, TcpStream};
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
                .args(["--cluster-port", &bus.to_string()]);
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

    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, HarnessError> {
        let mut conn =
            redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))?;
        Ok(cmd.query(&mut conn)?)
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

/// A 3-master Redis Cluster on free loopback ports, killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Number of masters.
    pub const MASTERS: usize = 3;

    /// Starts a cluster, or returns `None` (printing why) when Redis is not installed and
    /// not required.
    pub fn start() -> Option<Self> {
        skip_or_panic("redis cluster", Self::try_start())
    }

    /// Starts a cluster and waits until every node reports `cluster_state:ok`.
    pub fn try_start() -> Result<Self, HarnessError> {
        find_binary("redis-server")?;
        let cli = find_binary("redis-cli")?;
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start_once(&cli) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three attempts"))
    }

    fn try_start_once(cli: &Path) -> Result<Self, HarnessError> {
        let dir = tempfile::tempdir()?;
        let mut nodes = Vec::with_capacity(Self::MASTERS);
        for i in 0..Self::MASTERS {
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir(&node_dir)?;
            let mut node = Node {
                port: free_port()?,
                bus_port: Some(free_port()?),
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
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            ))
            .into());
        }
        let cluster = Self { nodes, _dir: dir };
        cluster.wait_converged()?;
        Ok(cluster)
    }

    /// Waits until every running node reports `cluster_state:ok` and knows all 16384 slots.
    pub fn wait_converged(&self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ok = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                n.query::<String>(redis::cmd("CLUSTER").arg("INFO"))
                    .is_ok_and(|info| {
                        info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                    })
            });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("cluster did not converge").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Seed URLs of every node.
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

    /// Kills node `i` (SIGKILL). Its slots become unavailable until it returns.
    pub fn stop_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again on its port with its cluster config, and waits until the
    /// cluster is whole again.
    pub fn restart_node(&mut self, i: usize) -> Result<(), HarnessError> {
        self.nodes[i].kill();
        self.nodes[i].spawn()?;
        self.wait_converged()
    }

    /// The port of the master that serves `key`'s slot (from `CLUSTER SLOTS`).
    pub fn master_port_for(&self, key: &str) -> Result<u16, HarnessError> {
        let slot: i64 = self.nodes[0].query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))?;
        let slots: Vec<Vec<redis::Value>> =
            self.nodes[0].query(redis::cmd("CLUSTER").arg("SLOTS"))?;
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
