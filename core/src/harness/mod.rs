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

mod cluster;
mod process;
mod server;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use cluster::{KilledMaster, RedisCluster};
pub use server::RedisServer;

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
