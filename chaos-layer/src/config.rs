//! [`ChaosConfig`]: what to inject and how often; serde both ways, so it can be the body
//! of an admin `POST` and the answer of a `GET`.
//!
//! ```
//! use chaos_layer::{ChaosConfig, LatencyDistribution};
//! use std::time::Duration;
//!
//! let config: ChaosConfig = serde_json::from_str(r#"{
//!     "enabled": true,
//!     "seed": 7,
//!     "error_rate": 0.01,
//!     "latency_rate": 1.0,
//!     "latency": { "kind": "two_point", "fast": "10ms", "slow": "1s", "slow_share": 0.05 }
//! }"#).unwrap();
//! config.validate().unwrap();
//! assert_eq!(config.latency, LatencyDistribution::TwoPoint {
//!     fast: Duration::from_millis(10),
//!     slow: Duration::from_secs(1),
//!     slow_share: 0.05,
//! });
//! ```

use std::time::Duration;

use reliability_core::error::ConfigError;
use serde::{Deserialize, Serialize};

/// The longest latency that may be injected.
const MAX_LATENCY: Duration = Duration::from_secs(3600);

/// How long an injected delay is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LatencyDistribution {
    /// Always `delay`.
    Fixed {
        /// The delay.
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
    /// Uniform in `[min, max]`.
    Uniform {
        /// The shortest delay.
        #[serde(with = "humantime_serde")]
        min: Duration,
        /// The longest delay.
        #[serde(with = "humantime_serde")]
        max: Duration,
    },
    /// `slow` for a share `slow_share` of delayed calls, `fast` for the rest ("5 % take
    /// 1 s").
    TwoPoint {
        /// The usual delay.
        #[serde(with = "humantime_serde")]
        fast: Duration,
        /// The delay of the slow share.
        #[serde(with = "humantime_serde")]
        slow: Duration,
        /// The share of delayed calls that are slow, in `[0, 1]`.
        slow_share: f64,
    },
}

impl Default for LatencyDistribution {
    /// A fixed 100 ms.
    fn default() -> Self {
        LatencyDistribution::Fixed {
            delay: Duration::from_millis(100),
        }
    }
}

/// The settings of a [`ChaosLayer`](crate::ChaosLayer), and what a
/// [`ChaosHandle`](crate::ChaosHandle) applies at run time.
///
/// Each call draws its fault once: an error with probability `error_rate`, else a
/// replaced response with probability `response_rate`, else none; independently, a delay
/// with probability `latency_rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChaosConfig {
    /// Whether anything is injected (default `false`: chaos is off unless enabled).
    pub enabled: bool,
    /// The seed of the random draws: the same seed gives the same faults for the same
    /// sequence of calls.
    pub seed: u64,
    /// The share of calls answered with an injected error, in `[0, 1]`.
    pub error_rate: f64,
    /// The share of calls answered with the chosen response instead of the upstream's, in
    /// `[0, 1]`; with `error_rate`, at most 1.
    pub response_rate: f64,
    /// The share of calls delayed, in `[0, 1]`.
    pub latency_rate: f64,
    /// How long a delay is.
    pub latency: LatencyDistribution,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            seed: 0,
            error_rate: 0.0,
            response_rate: 0.0,
            latency_rate: 0.0,
            latency: LatencyDistribution::default(),
        }
    }
}

fn check_rate(field: &str, rate: f64) -> Result<(), ConfigError> {
    if rate.is_nan() {
        return Err(ConfigError::out_of_range(field, "[0, 1]", rate));
    }
    ConfigError::check_range(field, rate, 0.0..=1.0)
}

impl ChaosConfig {
    /// Checks every setting against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_rate("error_rate", self.error_rate)?;
        check_rate("response_rate", self.response_rate)?;
        check_rate("latency_rate", self.latency_rate)?;
        if self.error_rate + self.response_rate > 1.0 {
            return Err(ConfigError::new(
                "response_rate",
                format!(
                    "{} plus `error_rate` ({}) is over 1",
                    self.response_rate, self.error_rate
                ),
            ));
        }
        match &self.latency {
            LatencyDistribution::Fixed { delay } => {
                ConfigError::check_duration_or_zero("latency.delay", *delay, MAX_LATENCY)
            }
            LatencyDistribution::Uniform { min, max } => {
                ConfigError::check_duration_or_zero("latency.min", *min, MAX_LATENCY)?;
                ConfigError::check_duration_or_zero("latency.max", *max, MAX_LATENCY)?;
                if max < min {
                    return Err(ConfigError::new(
                        "latency.max",
                        format!(
                            "{} is below `latency.min` ({})",
                            humantime::format_duration(*max),
                            humantime::format_duration(*min)
                        ),
                    ));
                }
                Ok(())
            }
            LatencyDistribution::TwoPoint {
                fast,
                slow,
                slow_share,
            } => {
                ConfigError::check_duration_or_zero("latency.fast", *fast, MAX_LATENCY)?;
                ConfigError::check_duration_or_zero("latency.slow", *slow, MAX_LATENCY)?;
                check_rate("latency.slow_share", *slow_share)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_outside_zero_one_are_refused_by_name() {
        ChaosConfig::default().validate().unwrap();
        let field = |f: fn(&mut ChaosConfig)| {
            let mut c = ChaosConfig::default();
            f(&mut c);
            c.validate().unwrap_err().field
        };
        assert_eq!(field(|c| c.error_rate = 1.5), "error_rate");
        assert_eq!(field(|c| c.error_rate = -0.1), "error_rate");
        assert_eq!(field(|c| c.latency_rate = f64::NAN), "latency_rate");
        assert_eq!(
            field(|c| {
                c.error_rate = 0.6;
                c.response_rate = 0.6;
            }),
            "response_rate"
        );
        assert_eq!(
            field(|c| {
                c.latency = LatencyDistribution::Uniform {
                    min: Duration::from_secs(2),
                    max: Duration::from_secs(1),
                }
            }),
            "latency.max"
        );
        assert_eq!(
            field(|c| {
                c.latency = LatencyDistribution::TwoPoint {
                    fast: Duration::ZERO,
                    slow: Duration::ZERO,
                    slow_share: 2.0,
                }
            }),
            "latency.slow_share"
        );
    }

    #[test]
    fn round_trips_through_json() {
        let c = ChaosConfig {
            enabled: true,
            seed: 42,
            error_rate: 0.25,
            latency: LatencyDistribution::Uniform {
                min: Duration::from_millis(5),
                max: Duration::from_millis(50),
            },
            ..ChaosConfig::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ChaosConfig>(&json).unwrap(), c);
    }
}
