//! The serializable settings: [`RateLimiterConfig`] (the whole limiter, backend included),
//! [`TiersConfig`] (a tier table) and [`WindowConfig`] (one window of a quota), so that a
//! limiter can come from TOML or the environment.

use std::collections::BTreeMap;
use std::time::Duration;

use reliability_core::error::ConfigError;
#[cfg(feature = "redis")]
use reliability_core::redis::{RedisConfig, RedisSetupError};
use serde::{Deserialize, Serialize};

use crate::backend::MemoryBackend;
#[cfg(feature = "redis")]
use crate::backend::{FailureMode, Leased, RedisBackend};
use crate::limiter::{RateLimiter, RateLimiterBuilder};
use crate::quota::{Algorithm, Quota};
use crate::tier::{Tier, TierTable};

/// Serializable limiter settings, backend included (TOML: `name`, `default_tier`,
/// `[[tiers.<name>]]`, `[[endpoints."<route>"]]`, `usage_capacity`, `max_keys`,
/// `system_clock`; with the `redis` feature also `[redis]`, `failure_mode`,
/// `fallback_share`, `lease`, `lease_ttl`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let config: ratelimit_layer::RateLimiterConfig = toml::from_str(r#"
///     name = "api"
///     default_tier = "free"
///     [[tiers.free]]
///     limit = 2
///     period = "1s"
///     [[tiers.pro]]
///     limit = 100
///     period = "1m"
///     algorithm = "sliding_window"
/// "#).unwrap();
/// let limiter = config.build().await.unwrap();
/// assert_eq!(limiter.tier_of("anyone").await, "free");
/// assert!(limiter.set_tier("acme", "pro").await.is_ok());
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimiterConfig {
    /// Name in health and metrics.
    pub name: String,
    /// The tier table.
    #[serde(flatten)]
    pub tiers: TiersConfig,
    /// Custom limits per endpoint.
    pub endpoints: BTreeMap<String, Vec<WindowConfig>>,
    /// Most users whose usage is counted (0 turns usage statistics off).
    pub usage_capacity: usize,
    /// Shared state in Redis (single node or cluster); in-process when absent.
    #[cfg(feature = "redis")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConfig>,
    /// What to do while Redis is down (fail open by default).
    #[cfg(feature = "redis")]
    pub failure_mode: FailureMode,
    /// Number of processes sharing the Redis limit: each fallback admits `1/n` of it.
    #[cfg(feature = "redis")]
    pub fallback_share: u64,
    /// Most keys of the in-process backend (or of the fallback).
    pub max_keys: usize,
    /// Read the CPU's time-stamp counter instead of tokio's clock in the in-process backend
    /// (faster; ignores `tokio::time::pause`).
    pub system_clock: bool,
    /// Units leased from Redis per round trip (0: no batching); see [`Leased`].
    #[cfg(feature = "redis")]
    pub lease: u64,
    /// How long a lease may be held.
    #[cfg(feature = "redis")]
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        Self {
            name: "ratelimit".into(),
            tiers: TiersConfig::default(),
            endpoints: BTreeMap::new(),
            usage_capacity: 100_000,
            #[cfg(feature = "redis")]
            redis: None,
            #[cfg(feature = "redis")]
            failure_mode: FailureMode::Open,
            #[cfg(feature = "redis")]
            fallback_share: 1,
            max_keys: 1_000_000,
            system_clock: false,
            #[cfg(feature = "redis")]
            lease: 0,
            #[cfg(feature = "redis")]
            lease_ttl: Duration::from_millis(100),
        }
    }
}

impl RateLimiterConfig {
    /// Builds the limiter, connecting to Redis when configured.
    #[cfg(feature = "redis")]
    pub async fn build(&self) -> Result<RateLimiter, RedisSetupError> {
        let memory = self.memory_backend()?;
        let builder = self.builder()?;
        let Some(redis) = &self.redis else {
            return Ok(builder.backend(memory).build()?);
        };
        let backend = RedisBackend::builder(redis.clone())
            .failure_mode(self.failure_mode)
            .fallback_share(self.fallback_share)
            .fallback(memory)
            .build()
            .await?;
        let builder = if self.lease == 0 {
            builder.backend(backend)
        } else {
            builder.backend(Leased::new(backend, self.lease, self.lease_ttl)?)
        };
        Ok(builder.build()?)
    }

    /// Builds the limiter on the in-process backend.
    // `async` without the `redis` feature too, so that calling code does not depend on it.
    #[cfg(not(feature = "redis"))]
    pub async fn build(&self) -> Result<RateLimiter, ConfigError> {
        self.builder()?.backend(self.memory_backend()?).build()
    }

    fn memory_backend(&self) -> Result<MemoryBackend, ConfigError> {
        let memory = MemoryBackend::builder().max_keys(self.max_keys);
        if self.system_clock {
            memory.system_clock()
        } else {
            memory
        }
        .build()
    }

    /// A builder preloaded with this configuration (name, tiers, endpoint limits, usage
    /// capacity; the backend is left to the caller).
    pub fn builder(&self) -> Result<RateLimiterBuilder, ConfigError> {
        let mut b = RateLimiter::builder()
            .name(self.name.clone())
            .tiers(self.tiers.build()?)
            .usage_capacity(self.usage_capacity);
        for (endpoint, windows) in &self.endpoints {
            let q = Quota::from_config(windows)
                .map_err(|e| e.within(&format!("endpoints.{endpoint}")))?;
            b = b.endpoint_limit(endpoint.clone(), q);
        }
        Ok(b)
    }
}

/// Serializable form of a tier table (`[[tiers.free]]` windows, `default_tier`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiersConfig {
    /// Tier of users without an assignment.
    pub default_tier: String,
    /// Tier name → windows.
    pub tiers: BTreeMap<String, Vec<WindowConfig>>,
}

impl Default for TiersConfig {
    /// The standard table ([`TierTable::standard`]).
    fn default() -> Self {
        let table = TierTable::standard();
        Self {
            default_tier: table.default_tier().name().to_owned(),
            tiers: table
                .tiers()
                .iter()
                .map(|t| (t.name().to_owned(), t.quota().config()))
                .collect(),
        }
    }
}

impl TiersConfig {
    /// Validates into a table.
    pub fn build(&self) -> Result<TierTable, ConfigError> {
        let tiers = self
            .tiers
            .iter()
            .map(|(name, windows)| {
                let quota =
                    Quota::from_config(windows).map_err(|e| e.within(&format!("tiers.{name}")))?;
                Tier::new(name.clone(), quota)
            })
            .collect::<Result<Vec<_>, _>>()?;
        TierTable::new(tiers, &self.default_tier)
    }
}

/// One window of a quota as configured: `limit` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Units admitted per period.
    pub limit: u64,
    /// Length of the window, e.g. `"1s"`, `"1m"`, `"1h"`, `"1day"`.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// GCRA capacity (units at once after idling); defaults to `limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Counting algorithm; GCRA by default.
    #[serde(default)]
    pub algorithm: Algorithm,
}

impl WindowConfig {
    /// `limit` per `period`, GCRA, burst = limit.
    #[must_use]
    pub fn new(limit: u64, period: Duration) -> Self {
        Self {
            limit,
            period,
            burst: None,
            algorithm: Algorithm::Gcra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_toml() {
        let text = r#"
            default_tier = "gold"
            [[tiers.gold]]
            limit = 5
            period = "1s"
            [[tiers.gold]]
            limit = 100
            period = "1h"
            algorithm = "sliding_window"
        "#;
        let c: TiersConfig = toml::from_str(text).unwrap();
        let table = c.build().unwrap();
        assert_eq!(table.default_tier().quota().windows().len(), 2);
        let rebuilt = TiersConfig::default().build().unwrap();
        for t in TierTable::standard().tiers() {
            assert_eq!(rebuilt.get(rebuilt.index_of(t.name()).unwrap()), t);
        }
        assert_eq!(rebuilt.default_tier().name(), "free");
        let bad = TiersConfig {
            default_tier: "nope".into(),
            ..TiersConfig::default()
        };
        assert_eq!(bad.build().unwrap_err().field, "default_tier");
        assert!(
            Tier::new(
                "a b",
                Quota::per(1, std::time::Duration::from_secs(1)).unwrap()
            )
            .is_err()
        );
    }
}
