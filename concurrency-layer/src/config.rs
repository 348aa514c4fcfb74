//! How many calls a layer admits and what it does with the rest: [`ConcurrencyConfig`],
//! deserializable from TOML or the environment, checked by
//! [`ConcurrencyConfig::validate`].

use std::time::Duration;

use reliability_core::error::ConfigError;
use serde::{Deserialize, Serialize};

/// Largest limit, queue and key count a configuration may ask for.
pub const MAX_LIMIT: usize = 1_000_000;
/// Longest queue timeout and `Retry-After` hint.
pub const MAX_WAIT: Duration = Duration::from_secs(3_600);
/// Longest adaptive sample window.
pub const MAX_SAMPLE_WINDOW: Duration = Duration::from_secs(60);

/// A concurrency limiter's settings.
///
/// ```
/// use concurrency_layer::config::{AlgorithmConfig, ConcurrencyConfig};
///
/// let config: ConcurrencyConfig = toml::from_str(r#"
///     limit = 32
///     queue_capacity = 100
///     queue_timeout = "250ms"
///     critical_reserve = 0.2
///     adaptive = { kind = "gradient2", max_limit = 200 }
/// "#).unwrap();
/// config.validate().unwrap();
/// assert!(matches!(config.adaptive, Some(AlgorithmConfig::Gradient2(ref g)) if g.max_limit == 200));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConcurrencyConfig {
    /// Calls in flight at once: the fixed limit, or the adaptive limit's starting point,
    /// [1, 1 000 000]. Default 64.
    pub limit: usize,
    /// Calls that may wait for a place when the limit is reached, [0, 1 000 000]; 0 (the
    /// default) rejects at once.
    pub queue_capacity: usize,
    /// How long a queued call waits before it is rejected, (0 s, 1 h]. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Share of the limit only `Critical` calls may use, [0, 0.9]. Default 0.1.
    pub critical_reserve: f64,
    /// Whether the limit is enforced. `false` is shadow mode (Envoy's
    /// `filter_enabled`/`filter_enforced` split): every call is admitted, and the calls
    /// that would have been refused are counted. Default `true`.
    pub enforced: bool,
    /// The wait a refusal suggests (`Retry-After`), (0 s, 1 h]. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// The adaptive algorithm; `None` (the default) keeps `limit` fixed.
    pub adaptive: Option<AlgorithmConfig>,
    /// Shortest adaptive sample window, (0 s, 60 s]. Default 100 ms.
    #[serde(with = "humantime_serde")]
    pub sample_window: Duration,
    /// Fewest calls in an adaptive sample window, [1, 1 000 000]. Default 10.
    pub sample_window_min_samples: u32,
    /// Most keys a per-key layer tracks, [1, 1 000 000]. Default 1 024.
    pub max_keys: usize,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        Self {
            limit: 64,
            queue_capacity: 0,
            queue_timeout: Duration::from_secs(1),
            critical_reserve: 0.1,
            enforced: true,
            retry_after: Duration::from_secs(1),
            adaptive: None,
            sample_window: Duration::from_millis(100),
            sample_window_min_samples: 10,
            max_keys: 1_024,
        }
    }
}

impl ConcurrencyConfig {
    /// Checks every setting; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check_range("limit", self.limit, 1..=MAX_LIMIT)?;
        ConfigError::check_range("queue_capacity", self.queue_capacity, 0..=MAX_LIMIT)?;
        ConfigError::check_duration("queue_timeout", self.queue_timeout, MAX_WAIT)?;
        ConfigError::check_range("critical_reserve", self.critical_reserve, 0.0..=0.9)?;
        ConfigError::check_duration("retry_after", self.retry_after, MAX_WAIT)?;
        ConfigError::check_duration("sample_window", self.sample_window, MAX_SAMPLE_WINDOW)?;
        ConfigError::check_range(
            "sample_window_min_samples",
            self.sample_window_min_samples,
            1..=1_000_000,
        )?;
        ConfigError::check_range("max_keys", self.max_keys, 1..=MAX_LIMIT)?;
        if let Some(adaptive) = &self.adaptive {
            adaptive.validate().map_err(|e| e.within("adaptive"))?;
        }
        Ok(())
    }
}

/// The adaptive algorithm and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AlgorithmConfig {
    /// Additive increase, multiplicative decrease: see [`crate::limit::aimd`].
    Aimd(AimdConfig),
    /// TCP Vegas: see [`crate::limit::vegas`].
    Vegas(VegasConfig),
    /// Netflix's Gradient2: see [`crate::limit::gradient2`].
    Gradient2(Gradient2Config),
}

impl AlgorithmConfig {
    /// Checks the algorithm's settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::Aimd(c) => c.validate(),
            Self::Vegas(c) => c.validate(),
            Self::Gradient2(c) => c.validate(),
        }
    }
}

fn check_bounds(min: usize, max: usize) -> Result<(), ConfigError> {
    ConfigError::check_range("min_limit", min, 1..=MAX_LIMIT)?;
    ConfigError::check_range("max_limit", max, min..=MAX_LIMIT)
}

fn check_smoothing(smoothing: f64) -> Result<(), ConfigError> {
    if smoothing > 0.0 && smoothing <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::out_of_range("smoothing", "(0, 1]", smoothing))
    }
}

/// Settings of [`Aimd`](crate::limit::aimd::Aimd).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AimdConfig {
    /// Lowest limit, [1, 1 000 000]. Default 1.
    pub min_limit: usize,
    /// Highest limit, [`min_limit`, 1 000 000]. Default 1 000.
    pub max_limit: usize,
    /// A window whose mean RTT is above this counts as congested, (0 s, 1 h]. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub latency_threshold: Duration,
    /// Factor applied on congestion or failure, [0.5, 0.99]. Default 0.9.
    pub backoff_ratio: f64,
    /// Calls added per healthy window, [0.1, 1 000]. Default 1.
    pub increase: f64,
    /// Share of each step taken, (0, 1]. Default 1 (no smoothing).
    pub smoothing: f64,
}

impl Default for AimdConfig {
    fn default() -> Self {
        Self {
            min_limit: 1,
            max_limit: 1_000,
            latency_threshold: Duration::from_secs(1),
            backoff_ratio: 0.9,
            increase: 1.0,
            smoothing: 1.0,
        }
    }
}

impl AimdConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_bounds(self.min_limit, self.max_limit)?;
        ConfigError::check_duration("latency_threshold", self.latency_threshold, MAX_WAIT)?;
        ConfigError::check_range("backoff_ratio", self.backoff_ratio, 0.5..=0.99)?;
        ConfigError::check_range("increase", self.increase, 0.1..=1_000.0)?;
        check_smoothing(self.smoothing)
    }
}

/// Settings of [`Vegas`](crate::limit::vegas::Vegas).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VegasConfig {
    /// Lowest limit, [1, 1 000 000]. Default 1.
    pub min_limit: usize,
    /// Highest limit, [`min_limit`, 1 000 000]. Default 1 000.
    pub max_limit: usize,
    /// Below `alpha × log10(limit)` queued calls the limit grows, [0.5, 100]. Default 3.
    pub alpha: f64,
    /// Above `beta × log10(limit)` queued calls the limit shrinks, [`alpha`, 100].
    /// Default 6.
    pub beta: f64,
    /// Share of each step taken, (0, 1]. Default 1 (Netflix's default).
    pub smoothing: f64,
}

impl Default for VegasConfig {
    fn default() -> Self {
        Self {
            min_limit: 1,
            max_limit: 1_000,
            alpha: 3.0,
            beta: 6.0,
            smoothing: 1.0,
        }
    }
}

impl VegasConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_bounds(self.min_limit, self.max_limit)?;
        ConfigError::check_range("alpha", self.alpha, 0.5..=100.0)?;
        ConfigError::check_range("beta", self.beta, self.alpha..=100.0)?;
        check_smoothing(self.smoothing)
    }
}

/// Settings of [`Gradient2`](crate::limit::gradient2::Gradient2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gradient2Config {
    /// Lowest limit, [1, 1 000 000]. Default 1.
    pub min_limit: usize,
    /// Highest limit, [`min_limit`, 1 000 000]. Default 1 000.
    pub max_limit: usize,
    /// How much the short RTT may exceed the long one before the limit shrinks, [1, 10].
    /// Default 1.1. The limit settles about this factor above the upstream's capacity, so
    /// Netflix's 1.5 lets calls queue half as long again as they are served.
    pub tolerance: f64,
    /// Share of each step taken, (0, 1]. Default 0.2 (Netflix's default).
    pub smoothing: f64,
    /// Windows the long RTT average spans, [1, 100 000]. Default 600 (Netflix's).
    pub long_window: u32,
    /// Calls added on each healthy window (Netflix's `queueSize`), [0, 1 000]. Default 4.
    pub queue_size: f64,
}

impl Default for Gradient2Config {
    fn default() -> Self {
        Self {
            min_limit: 1,
            max_limit: 1_000,
            tolerance: 1.1,
            smoothing: 0.2,
            long_window: 600,
            queue_size: 4.0,
        }
    }
}

impl Gradient2Config {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_bounds(self.min_limit, self.max_limit)?;
        ConfigError::check_range("tolerance", self.tolerance, 1.0..=10.0)?;
        check_smoothing(self.smoothing)?;
        ConfigError::check_range("long_window", self.long_window, 1..=100_000)?;
        ConfigError::check_range("queue_size", self.queue_size, 0.0..=1_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let mut config = ConcurrencyConfig::default();
        config.validate().unwrap();
        for adaptive in [
            AlgorithmConfig::Aimd(AimdConfig::default()),
            AlgorithmConfig::Vegas(VegasConfig::default()),
            AlgorithmConfig::Gradient2(Gradient2Config::default()),
        ] {
            config.adaptive = Some(adaptive);
            config.validate().unwrap();
            let text = toml::to_string(&config).unwrap();
            let back: ConcurrencyConfig = toml::from_str(&text).unwrap();
            assert_eq!(back, config);
        }
    }

    #[test]
    fn errors_name_the_field_and_range() {
        let bad = |edit: fn(&mut ConcurrencyConfig)| {
            let mut c = ConcurrencyConfig::default();
            edit(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert_eq!(
            bad(|c| c.limit = 0),
            "invalid `limit`: 0 is outside [1, 1000000]"
        );
        assert_eq!(
            bad(|c| c.critical_reserve = 1.0),
            "invalid `critical_reserve`: 1 is outside [0, 0.9]"
        );
        assert_eq!(
            bad(|c| c.queue_timeout = Duration::ZERO),
            "invalid `queue_timeout`: 0s is outside (0s, 1h]"
        );
        assert_eq!(
            bad(|c| {
                c.adaptive = Some(AlgorithmConfig::Vegas(VegasConfig {
                    min_limit: 10,
                    max_limit: 5,
                    ..VegasConfig::default()
                }))
            }),
            "invalid `adaptive.max_limit`: 5 is outside [10, 1000000]"
        );
        assert_eq!(
            bad(|c| {
                c.adaptive = Some(AlgorithmConfig::Gradient2(Gradient2Config {
                    smoothing: 0.0,
                    ..Gradient2Config::default()
                }))
            }),
            "invalid `adaptive.smoothing`: 0 is outside (0, 1]"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(toml::from_str::<ConcurrencyConfig>("limt = 3").is_err());
        assert!(
            toml::from_str::<ConcurrencyConfig>("adaptive = { kind = \"aimd\", bogus = 1 }")
                .is_err()
        );
    }
}
