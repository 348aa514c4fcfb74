//! The serde form of a cache's settings, so presets can come from TOML.

use std::time::Duration;

use reliability_core::error::ConfigError;
use serde::{Deserialize, Serialize};

use crate::adaptive::AdaptiveRule;

/// Every setting of a cache that is data (closures are set on the builder).
///
/// ```
/// use std::time::Duration;
/// use cache_layer::CacheConfig;
///
/// let c: CacheConfig = serde_json::from_str(r#"{
///     "name": "cex", "ttl": "5s",
///     "adaptive": { "rule": "popularity", "min": "2s", "max": "15s" }
/// }"#).unwrap();
/// assert_eq!(c.ttl, Duration::from_secs(5));
/// assert_eq!(c.effective_stale_if_error(), Duration::from_secs(10));
/// assert!(c.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Name in metrics, health and `Cache-Status` (ASCII letters, digits, `_ - .`).
    pub name: String,
    /// Time to live of a value.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Stale-while-revalidate window after the TTL.
    #[serde(with = "humantime_serde")]
    pub stale_while_revalidate: Duration,
    /// Stale-if-error window after the TTL; `None` means twice the TTL.
    #[serde(with = "humantime_serde")]
    pub stale_if_error: Option<Duration>,
    /// Hard cap on how stale anything served may be.
    #[serde(with = "humantime_serde")]
    pub max_staleness: Duration,
    /// Random shortening of each TTL, as a fraction in `[0, 1)` (0 = off).
    pub ttl_jitter: f64,
    /// XFetch's β (0 = no early refresh; 1 is the paper's choice).
    pub xfetch_beta: f64,
    /// Adaptive TTL, off when absent.
    pub adaptive: Option<AdaptiveConfig>,
    /// TTL of cached negative answers; negative caching is off when absent.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Option<Duration>,
    /// Most L1 entries.
    pub max_entries: Option<u64>,
    /// Most L1 bytes.
    pub max_bytes: Option<u64>,
    /// L1 eviction policy.
    pub eviction: EvictionPolicy,
    /// Key and value limits.
    pub validation: ValidationMode,
    /// Most keys with an upstream call in flight (single-flight table bound).
    pub max_in_flight: usize,
    /// How upstream answers reach the lower tiers (L2, L3).
    pub write_policy: WritePolicy,
}

/// Which entries L1 evicts first when full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvictionPolicy {
    /// TinyLFU admission with LRU eviction: keeps frequently used keys under scans.
    #[default]
    TinyLfu,
    /// Plain least-recently-used.
    Lru,
}

/// How strict the key and value limits are (the table in [`validation`](crate::validation)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationMode {
    /// Small limits, printable ASCII keys.
    Strict,
    /// Limits for typical API payloads.
    #[default]
    Normal,
    /// Large limits for big documents.
    Relaxed,
}

/// How upstream answers reach the tiers below L1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WritePolicy {
    /// Through a bounded queue, after answering (overflow counted, never blocking).
    #[default]
    WriteBehind,
    /// Written to every tier before the caller gets its answer (a tier's failure is
    /// counted, not returned). Explicit writes (`put`) stay write-behind.
    WriteThrough,
}

/// Adaptive TTL settings.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// Which rule.
    pub rule: AdaptiveRule,
    /// Lowest TTL.
    #[serde(with = "humantime_serde")]
    pub min: Duration,
    /// Highest TTL.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            name: "cache".to_owned(),
            ttl: Duration::from_secs(60),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: None,
            max_staleness: Duration::from_secs(24 * 3600),
            ttl_jitter: 0.0,
            xfetch_beta: 0.0,
            adaptive: None,
            negative_ttl: None,
            max_entries: Some(10_000),
            max_bytes: None,
            eviction: EvictionPolicy::TinyLfu,
            validation: ValidationMode::Normal,
            max_in_flight: 10_000,
            write_policy: WritePolicy::WriteBehind,
        }
    }
}

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

impl CacheConfig {
    /// The stale-if-error window in force (twice the TTL unless set).
    pub fn effective_stale_if_error(&self) -> Duration {
        self.stale_if_error
            .unwrap_or_else(|| self.ttl.saturating_mul(2))
    }

    /// Checks every setting; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(ConfigError::new(
                "name",
                "must be 1 to 64 ASCII letters, digits or `_ - .`",
            ));
        }
        ConfigError::check_duration("ttl", self.ttl, YEAR)?;
        ConfigError::check_duration_or_zero(
            "stale_while_revalidate",
            self.stale_while_revalidate,
            YEAR,
        )?;
        ConfigError::check_duration_or_zero(
            "stale_if_error",
            self.effective_stale_if_error(),
            YEAR,
        )?;
        ConfigError::check_duration_or_zero("max_staleness", self.max_staleness, YEAR)?;
        if !(0.0..1.0).contains(&self.ttl_jitter) {
            return Err(ConfigError::out_of_range(
                "ttl_jitter",
                "[0, 1)",
                self.ttl_jitter,
            ));
        }
        if !(0.0..=100.0).contains(&self.xfetch_beta) {
            return Err(ConfigError::out_of_range(
                "xfetch_beta",
                "[0, 100]",
                self.xfetch_beta,
            ));
        }
        if let Some(a) = &self.adaptive {
            ConfigError::check_duration("adaptive.min", a.min, YEAR)?;
            ConfigError::check_duration("adaptive.max", a.max, YEAR)?;
            if a.min > a.max {
                return Err(ConfigError::new(
                    "adaptive.min",
                    format!("{:?} is above adaptive.max {:?}", a.min, a.max),
                ));
            }
        }
        if let Some(n) = self.negative_ttl {
            ConfigError::check_duration("negative_ttl", n, YEAR)?;
        }
        if self.max_entries == Some(0) {
            return Err(ConfigError::out_of_range("max_entries", "[1, 2^64)", 0));
        }
        if self.max_bytes == Some(0) {
            return Err(ConfigError::out_of_range("max_bytes", "[1, 2^64)", 0));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 10_000_000 {
            return Err(ConfigError::out_of_range(
                "max_in_flight",
                "[1, 10000000]",
                self.max_in_flight,
            ));
        }
        Ok(())
    }
}

/// The setters every cache builder shares; each builder has `config: CacheConfig` and
/// `clock: Option<SharedClock>` fields.
macro_rules! config_setters {
    () => {
        /// Replaces every data setting with `config` (closures set on the builder stay).
        pub fn config(mut self, config: $crate::CacheConfig) -> Self {
            self.config = config;
            self
        }

        /// The cache's name in metrics, health and `Cache-Status`.
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.config.name = name.into();
            self
        }

        /// Time to live of values (in HTTP mode, a response's `s-maxage` / `max-age`
        /// wins when honoured).
        pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
            self.config.ttl = ttl;
            self
        }

        /// Stale-while-revalidate window: stale values served at once while one refresh
        /// runs.
        pub fn stale_while_revalidate(mut self, window: std::time::Duration) -> Self {
            self.config.stale_while_revalidate = window;
            self
        }

        /// Stale-if-error window (default 2× TTL): stale values served when the upstream
        /// fails.
        pub fn stale_if_error(mut self, window: std::time::Duration) -> Self {
            self.config.stale_if_error = Some(window);
            self
        }

        /// Hard cap on staleness.
        pub fn max_staleness(mut self, cap: std::time::Duration) -> Self {
            self.config.max_staleness = cap;
            self
        }

        /// Random TTL shortening of up to `fraction` (in `[0, 1)`).
        pub fn ttl_jitter(mut self, fraction: f64) -> Self {
            self.config.ttl_jitter = fraction;
            self
        }

        /// XFetch probabilistic early refresh with this β (1.0 is the paper's choice).
        pub fn xfetch(mut self, beta: f64) -> Self {
            self.config.xfetch_beta = beta;
            self
        }

        /// Most L1 entries.
        pub fn max_entries(mut self, n: u64) -> Self {
            self.config.max_entries = Some(n);
            self
        }

        /// Most L1 bytes (as measured by the value size function plus key lengths).
        pub fn max_bytes(mut self, n: u64) -> Self {
            self.config.max_bytes = Some(n);
            self
        }

        /// L1 eviction policy.
        pub fn eviction(mut self, policy: $crate::EvictionPolicy) -> Self {
            self.config.eviction = policy;
            self
        }

        /// Key and value limits.
        pub fn validation(mut self, mode: $crate::ValidationMode) -> Self {
            self.config.validation = mode;
            self
        }

        /// Most keys with an upstream call in flight.
        pub fn max_in_flight(mut self, n: usize) -> Self {
            self.config.max_in_flight = n;
            self
        }

        /// How upstream answers reach L2 and L3 (default write-behind).
        pub fn write_policy(mut self, policy: $crate::WritePolicy) -> Self {
            self.config.write_policy = policy;
            self
        }

        /// The clock (default: tokio's, which follows paused time in tests).
        pub fn clock(mut self, clock: reliability_core::clock::SharedClock) -> Self {
            self.clock = Some(clock);
            self
        }
    };
}

pub(crate) use config_setters;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_their_field() {
        let ok = CacheConfig::default();
        assert!(ok.validate().is_ok());
        let cases: Vec<(CacheConfig, &str)> = vec![
            (
                CacheConfig {
                    ttl: Duration::ZERO,
                    ..ok.clone()
                },
                "ttl",
            ),
            (
                CacheConfig {
                    name: "a b".into(),
                    ..ok.clone()
                },
                "name",
            ),
            (
                CacheConfig {
                    ttl_jitter: 1.0,
                    ..ok.clone()
                },
                "ttl_jitter",
            ),
            (
                CacheConfig {
                    xfetch_beta: -1.0,
                    ..ok.clone()
                },
                "xfetch_beta",
            ),
            (
                CacheConfig {
                    max_entries: Some(0),
                    ..ok.clone()
                },
                "max_entries",
            ),
            (
                CacheConfig {
                    max_in_flight: 0,
                    ..ok.clone()
                },
                "max_in_flight",
            ),
            (
                CacheConfig {
                    negative_ttl: Some(Duration::ZERO),
                    ..ok.clone()
                },
                "negative_ttl",
            ),
            (
                CacheConfig {
                    adaptive: Some(AdaptiveConfig {
                        rule: AdaptiveRule::Popularity,
                        min: Duration::from_secs(10),
                        max: Duration::from_secs(1),
                    }),
                    ..ok.clone()
                },
                "adaptive.min",
            ),
        ];
        for (c, field) in cases {
            assert_eq!(c.validate().unwrap_err().field, field);
        }
    }
}
