//! The `redis-server` child processes behind the harness, and the free ports they bind.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{HarnessError, READY_TIMEOUT, find_binary};

/// A free loopback port (the kernel picks; the listener is closed before use, so a rare
/// race with another process is possible and start-up retries on it).
pub(super) fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One `redis-server` process.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) port: u16,
    pub(super) bus_port: Option<u16>,
    pub(super) dir: PathBuf,
    pub(super) child: Option<Child>,
}

impl Node {
    pub(super) fn spawn(&mut self) -> Result<(), HarnessError> {
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

    pub(super) fn url(&self) -> String {
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

    pub(super) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(super) fn connection(&self) -> Result<redis::Connection, HarnessError> {
        Ok(redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))?)
    }

    pub(super) fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, HarnessError> {
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
