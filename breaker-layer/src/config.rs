//! What a breaker counts and when it trips: [`CircuitBreakerConfig`], deserializable from
//! TOML, validated by [`CircuitBreakerConfig::validate`].

use std::time::Duration;

use reliability_core::error::ConfigError;
use serde::{Deserialize, Serialize};

/// Largest count window, in calls (one byte each).
pub const MAX_COUNT_WINDOW: u32 = 1_000_000;
/// Longest time window, in seconds (one 16-byte bucket each).
pub const MAX_TIME_WINDOW_SECS: u32 = 3_600;

/// The sliding window over which failure and slow-call rates are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowConfig {
    /// The last `size` calls.
    Count {
        /// Calls in the window, 1..=1,000,000.
        size: u32,
    },
    /// The calls of the current second and the `seconds - 1` before it.
    Time {
        /// Seconds in the window, 1..=3,600.
        seconds: u32,
    },
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self::Count { size: 100 }
    }
}

/// A breaker's settings.
///
/// ```
/// use breaker_layer::CircuitBreakerConfig;
///
/// let config: CircuitBreakerConfig = toml::from_str(r#"
///     window = { kind = "time", seconds = 30 }
///     failure_rate = 25.0
///     minimum_calls = 20
///     consecutive_failures = 5
///     open_wait = "30s"
///     slow_call_duration = "2s"
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.open_wait, std::time::Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// The window rates are computed over. Default: the last 100 calls.
    pub window: WindowConfig,
    /// Trip when this percentage of the window's calls failed, (0, 100]. Default 50.
    pub failure_rate: f64,
    /// A call at least this slow counts as slow. `None` (the default) disables slow-call
    /// tracking.
    #[serde(with = "humantime_serde")]
    pub slow_call_duration: Option<Duration>,
    /// Trip when this percentage of the window's calls was slow, (0, 100]. Default 100.
    pub slow_call_rate: f64,
    /// Rates are not judged before the window holds this many calls, >= 1. Default 10.
    pub minimum_calls: u32,
    /// Trip after this many failures in a row, whatever the window says. `None` (the
    /// default) disables it. Not held back by `minimum_calls`: N failures in a row are
    /// themselves N calls.
    pub consecutive_failures: Option<u32>,
    /// How long the circuit stays open before probing, > 0. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub open_wait: Duration,
    /// Each trip without a successful close in between multiplies the open wait by this,
    /// [1, 100]. Default 1 (no backoff).
    pub open_wait_multiplier: f64,
    /// Cap of the grown open wait, >= `open_wait`. Default 10 min.
    #[serde(with = "humantime_serde")]
    pub max_open_wait: Duration,
    /// Probe calls admitted in HALF_OPEN, 1..=4,194,303. Default 3.
    pub half_open_probes: u32,
    /// Successful probes that close the circuit, 1..=`half_open_probes`. Default 2.
    pub success_threshold: u32,
    /// Reopen when HALF_OPEN lasts longer than this (probes that never finish). `None`
    /// (the default): no limit.
    #[serde(with = "humantime_serde")]
    pub max_half_open: Option<Duration>,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            window: WindowConfig::default(),
            failure_rate: 50.0,
            slow_call_duration: None,
            slow_call_rate: 100.0,
            minimum_calls: 10,
            consecutive_failures: None,
            open_wait: Duration::from_secs(30),
            open_wait_multiplier: 1.0,
            max_open_wait: Duration::from_secs(600),
            half_open_probes: 3,
            success_threshold: 2,
            max_half_open: None,
        }
    }
}

fn rate(field: &str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value <= 100.0 {
        Ok(())
    } else {
        Err(ConfigError::out_of_range(field, "(0, 100]", value))
    }
}

impl CircuitBreakerConfig {
    /// Checks every setting; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.window {
            WindowConfig::Count { size } => {
                if !(1..=MAX_COUNT_WINDOW).contains(&size) {
                    return Err(ConfigError::out_of_range(
                        "window.size",
                        "[1, 1000000]",
                        size,
                    ));
                }
                if self.minimum_calls > size {
                    return Err(ConfigError::new(
                        "minimum_calls",
                        format!(
                            "{} is larger than the window of {size} calls, so rates could never trip",
                            self.minimum_calls
                        ),
                    ));
                }
            }
            WindowConfig::Time { seconds } => {
                if !(1..=MAX_TIME_WINDOW_SECS).contains(&seconds) {
                    return Err(ConfigError::out_of_range(
                        "window.seconds",
                        "[1, 3600]",
                        seconds,
                    ));
                }
            }
        }
        rate("failure_rate", self.failure_rate)?;
        rate("slow_call_rate", self.slow_call_rate)?;
        if let Some(d) = self.slow_call_duration {
            ConfigError::check_positive("slow_call_duration", d)?;
        }
        if self.minimum_calls == 0 {
            return Err(ConfigError::out_of_range("minimum_calls", "[1, ∞)", 0));
        }
        if self.consecutive_failures == Some(0) {
            return Err(ConfigError::out_of_range(
                "consecutive_failures",
                "[1, ∞)",
                0,
            ));
        }
        ConfigError::check_positive("open_wait", self.open_wait)?;
        if !(1.0..=100.0).contains(&self.open_wait_multiplier) {
            return Err(ConfigError::out_of_range(
                "open_wait_multiplier",
                "[1, 100]",
                self.open_wait_multiplier,
            ));
        }
        if self.max_open_wait < self.open_wait {
            return Err(ConfigError::new(
                "max_open_wait",
                format!(
                    "{:?} is shorter than open_wait ({:?})",
                    self.max_open_wait, self.open_wait
                ),
            ));
        }
        if !(1..=crate::state::MAX_HALF_OPEN_PROBES).contains(&self.half_open_probes) {
            return Err(ConfigError::out_of_range(
                "half_open_probes",
                "[1, 4194303]",
                self.half_open_probes,
            ));
        }
        if !(1..=self.half_open_probes).contains(&self.success_threshold) {
            return Err(ConfigError::out_of_range(
                "success_threshold",
                &format!("[1, half_open_probes = {}]", self.half_open_probes),
                self.success_threshold,
            ));
        }
        if let Some(d) = self.max_half_open {
            ConfigError::check_positive("max_half_open", d)?;
        }
        Ok(())
    }

    /// The open wait after `trips` trips in a row (1 for the first): `open_wait ×
    /// multiplier^(trips-1)`, capped at `max_open_wait`.
    pub fn open_wait_after(&self, trips: u32) -> Duration {
        let exp = trips.saturating_sub(1).min(1_000);
        let m = self.open_wait_multiplier;
        if m.fract() == 0.0 {
            // Whole multipliers (the usual 1, 2, 3) are computed exactly in nanoseconds.
            let base = self.open_wait.as_nanos();
            let grown = (m as u128)
                .checked_pow(exp)
                .and_then(|f| f.checked_mul(base))
                .unwrap_or(u128::MAX);
            let capped = grown.min(self.max_open_wait.as_nanos());
            return Duration::from_nanos(u64::try_from(capped).unwrap_or(u64::MAX));
        }
        let secs = self.open_wait.as_secs_f64() * m.powi(exp as i32);
        if !secs.is_finite() || secs >= self.max_open_wait.as_secs_f64() {
            self.max_open_wait
        } else {
            Duration::from_secs_f64(secs).max(self.open_wait)
        }
    }
}

/// Bounds of a per-key registry (see [`registry`](crate::registry)).
///
/// ```
/// use breaker_layer::config::RegistryConfig;
///
/// let config: RegistryConfig = toml::from_str(r#"
///     max_breakers = 256
///     idle_timeout = "5m"
/// "#).unwrap();
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// The most breakers held at once, >= 1. Default 1,024.
    pub max_breakers: usize,
    /// Breakers unused this long are dropped, > 0. Default 10 min.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            max_breakers: 1_024,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

impl RegistryConfig {
    /// Checks both bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_breakers == 0 {
            return Err(ConfigError::out_of_range("max_breakers", "[1, ∞)", 0));
        }
        ConfigError::check_positive("idle_timeout", self.idle_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(c: CircuitBreakerConfig) -> String {
        c.validate().unwrap_err().field
    }

    #[test]
    fn defaults_are_valid() {
        CircuitBreakerConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_field() {
        let d = CircuitBreakerConfig::default;
        let cases: Vec<(CircuitBreakerConfig, &str)> = vec![
            (
                CircuitBreakerConfig {
                    failure_rate: 0.0,
                    ..d()
                },
                "failure_rate",
            ),
            (
                CircuitBreakerConfig {
                    failure_rate: 100.5,
                    ..d()
                },
                "failure_rate",
            ),
            (
                CircuitBreakerConfig {
                    failure_rate: f64::NAN,
                    ..d()
                },
                "failure_rate",
            ),
            (
                CircuitBreakerConfig {
                    slow_call_rate: -1.0,
                    ..d()
                },
                "slow_call_rate",
            ),
            (
                CircuitBreakerConfig {
                    window: WindowConfig::Count { size: 0 },
                    ..d()
                },
                "window.size",
            ),
            (
                CircuitBreakerConfig {
                    window: WindowConfig::Time { seconds: 0 },
                    ..d()
                },
                "window.seconds",
            ),
            (
                CircuitBreakerConfig {
                    window: WindowConfig::Time { seconds: 3601 },
                    ..d()
                },
                "window.seconds",
            ),
            (
                CircuitBreakerConfig {
                    window: WindowConfig::Count { size: 5 },
                    ..d()
                },
                "minimum_calls",
            ),
            (
                CircuitBreakerConfig {
                    minimum_calls: 0,
                    ..d()
                },
                "minimum_calls",
            ),
            (
                CircuitBreakerConfig {
                    consecutive_failures: Some(0),
                    ..d()
                },
                "consecutive_failures",
            ),
            (
                CircuitBreakerConfig {
                    open_wait: Duration::ZERO,
                    ..d()
                },
                "open_wait",
            ),
            (
                CircuitBreakerConfig {
                    open_wait_multiplier: 0.5,
                    ..d()
                },
                "open_wait_multiplier",
            ),
            (
                CircuitBreakerConfig {
                    max_open_wait: Duration::from_secs(1),
                    ..d()
                },
                "max_open_wait",
            ),
            (
                CircuitBreakerConfig {
                    half_open_probes: 0,
                    ..d()
                },
                "half_open_probes",
            ),
            (
                CircuitBreakerConfig {
                    success_threshold: 0,
                    ..d()
                },
                "success_threshold",
            ),
            (
                CircuitBreakerConfig {
                    success_threshold: 4,
                    ..d()
                },
                "success_threshold",
            ),
            (
                CircuitBreakerConfig {
                    slow_call_duration: Some(Duration::ZERO),
                    ..d()
                },
                "slow_call_duration",
            ),
            (
                CircuitBreakerConfig {
                    max_half_open: Some(Duration::ZERO),
                    ..d()
                },
                "max_half_open",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(field_of(config), field);
        }
        let msg = CircuitBreakerConfig {
            failure_rate: 150.0,
            ..d()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert_eq!(msg, "invalid `failure_rate`: 150 is outside (0, 100]");
    }

    #[test]
    fn open_wait_backs_off_and_caps() {
        let c = CircuitBreakerConfig {
            open_wait: Duration::from_secs(10),
            open_wait_multiplier: 2.0,
            max_open_wait: Duration::from_secs(60),
            ..Default::default()
        };
        let waits: Vec<u64> = (1..=6).map(|t| c.open_wait_after(t).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60, 60]);
        assert_eq!(c.open_wait_after(u32::MAX), Duration::from_secs(60));
        assert_eq!(c.open_wait_after(0), Duration::from_secs(10));
        let frac = CircuitBreakerConfig {
            open_wait_multiplier: 1.5,
            ..c
        };
        assert_eq!(frac.open_wait_after(2), Duration::from_secs(15));
        assert_eq!(frac.open_wait_after(200), Duration::from_secs(60));
    }

    #[test]
    fn toml_rejects_unknown_fields() {
        let r: Result<CircuitBreakerConfig, _> = toml::from_str("failure_treshold = 3");
        assert!(r.is_err());
    }
}
