//! Where the shared state lives: a Redis node or a Redis Cluster.
//!
//! A [`RedisConfig`] names the server (one URL or a cluster seed list), the timeouts and
//! the key prefix of every key the layers write. [`RedisConfig::connect`] opens a
//! [`RedisConnection`]: a cheap-to-clone handle (redis-rs's `ConnectionManager` for one
//! node, the async cluster connection for a cluster) that reconnects by itself and that
//! every clone of every layer shares.
//!
//! Defaults favour failing fast over waiting: a layer whose Redis is gone must fall back
//! (to a local limiter, to L1) within milliseconds, not hang a request.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use reliability_core::redis::RedisConfig;
//!
//! let config = RedisConfig::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
//!     .key_prefix("myapp")
//!     .response_timeout(Duration::from_millis(200));
//! assert!(config.is_cluster());
//! assert_eq!(config.keyspace().unwrap().prefix(), "myapp");
//! ```

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::key::KeySpace;

pub mod pubsub;

/// How to reach Redis, and under which key prefix to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// A single node (`redis://host:port/db`). Exclusive with `cluster_nodes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Seed nodes of a Redis Cluster. Exclusive with `url`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_nodes: Vec<String>,
    /// Prefix of every key (see [`KeySpace`]).
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Time allowed to open a connection.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for one command's answer.
    #[serde(default = "default_response_timeout", with = "humantime_serde")]
    pub response_timeout: Duration,
}

fn default_prefix() -> String {
    "reliability".to_owned()
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_response_timeout() -> Duration {
    Duration::from_millis(500)
}

impl RedisConfig {
    /// A single node.
    pub fn single(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            cluster_nodes: Vec::new(),
            key_prefix: default_prefix(),
            connect_timeout: default_connect_timeout(),
            response_timeout: default_response_timeout(),
        }
    }

    /// A Redis Cluster, from one or more seed nodes.
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            url: None,
            cluster_nodes: nodes.into_iter().map(Into::into).collect(),
            key_prefix: default_prefix(),
            connect_timeout: default_connect_timeout(),
            response_timeout: default_response_timeout(),
        }
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the per-command response timeout.
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Whether this names a cluster.
    pub fn is_cluster(&self) -> bool {
        self.url.is_none()
    }

    /// The key space under [`key_prefix`](Self::key_prefix).
    pub fn keyspace(&self) -> Result<KeySpace, ConfigError> {
        KeySpace::new(self.key_prefix.clone())
    }

    /// Checks the settings without connecting. Field names in errors are relative
    /// (`url`, `response_timeout`); nest them with [`ConfigError::within`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.url, self.cluster_nodes.is_empty()) {
            (Some(_), false) => {
                return Err(ConfigError::new(
                    "url",
                    "set either `url` or `cluster_nodes`, not both",
                ));
            }
            (None, true) => {
                return Err(ConfigError::new(
                    "url",
                    "set `url` (one node) or `cluster_nodes` (a cluster)",
                ));
            }
            _ => {}
        }
        for (field, d) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
        ] {
            if d.is_zero() || d > Duration::from_secs(60) {
                return Err(ConfigError::out_of_range(
                    field,
                    "(0s, 60s]",
                    humantime::format_duration(d),
                ));
            }
        }
        for url in self.url.iter().chain(&self.cluster_nodes) {
            redis::parse_redis_url(url)
                .ok_or_else(|| ConfigError::new("url", format!("not a Redis URL: {url:?}")))?;
        }
        self.keyspace()?;
        Ok(())
    }

    /// A pub/sub-capable client for one node: the single node, or the first cluster seed
    /// (cluster pub/sub messages reach every node).
    pub fn client(&self) -> Result<redis::Client, RedisSetupError> {
        self.validate()?;
        let url = self
            .url
            .as_ref()
            .or_else(|| self.cluster_nodes.first())
            .expect("validated: one of url / cluster_nodes is set");
        Ok(redis::Client::open(url.as_str())?)
    }

    /// Opens a shared, self-reconnecting connection.
    pub async fn connect(&self) -> Result<RedisConnection, RedisSetupError> {
        self.validate()?;
        if let Some(url) = &self.url {
            let client = redis::Client::open(url.as_str())?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.response_timeout))
                // Fail fast while Redis is down; the next command tries again.
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(100));
            let manager = client.get_connection_manager_with_config(config).await?;
            Ok(RedisConnection::Single(manager))
        } else {
            let client = ClusterClientBuilder::new(self.cluster_nodes.iter().map(String::as_str))
                .connection_timeout(self.connect_timeout)
                .response_timeout(self.response_timeout)
                .retries(2)
                .build()?;
            let conn = client.get_async_connection().await?;
            Ok(RedisConnection::Cluster(conn))
        }
    }
}

/// Why a Redis connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A shared connection to one node or to a cluster. Clone it freely: clones multiplex
/// over the same sockets.
#[derive(Clone)]
pub enum RedisConnection {
    /// One node, through redis-rs's reconnecting `ConnectionManager`.
    Single(ConnectionManager),
    /// A cluster, through redis-rs's async cluster connection.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConnection::Single",
            Self::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl RedisConnection {
    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        assert!(
            RedisConfig::single("redis://127.0.0.1:6379")
                .validate()
                .is_ok()
        );
        let both = RedisConfig {
            cluster_nodes: vec!["redis://a:1".into()],
            ..RedisConfig::single("redis://b:2")
        };
        assert_eq!(both.validate().unwrap_err().field, "url");
        let none = RedisConfig::cluster(Vec::<String>::new());
        assert_eq!(none.validate().unwrap_err().field, "url");
        let bad = RedisConfig::single("http://x").validate().unwrap_err();
        assert_eq!(bad.field, "url");
        let t = RedisConfig::single("redis://x").response_timeout(Duration::ZERO);
        assert_eq!(t.validate().unwrap_err().field, "response_timeout");
        let p = RedisConfig::single("redis://x").key_prefix("a{b}");
        assert_eq!(p.validate().unwrap_err().field, "key_prefix");
    }

    #[test]
    fn deserializes_with_human_durations() {
        let c: RedisConfig = serde_json::from_str(
            r#"{"url":"redis://127.0.0.1:6379","response_timeout":"250ms","key_prefix":"app"}"#,
        )
        .unwrap();
        assert_eq!(c.response_timeout, Duration::from_millis(250));
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
        assert!(serde_json::from_str::<RedisConfig>(r#"{"url":"redis://x","nope":1}"#).is_err());
    }

    #[tokio::test]
    async fn dead_server_is_a_clear_error_not_a_hang() {
        // Port 1 on loopback: nothing listens, the connect is refused at once.
        let config =
            RedisConfig::single("redis://127.0.0.1:1").connect_timeout(Duration::from_millis(200));
        let err = config.connect().await.unwrap_err();
        assert!(matches!(err, RedisSetupError::Redis(_)), "{err}");
    }
}
