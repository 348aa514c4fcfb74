//! [`RedisServer`]: one `redis-server` node.

use super::process::{Node, free_port};
use super::{HarnessError, find_binary, skip_or_panic};
use crate::redis::RedisConfig;

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
