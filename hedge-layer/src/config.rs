//! [`HedgeConfig`]: when to hedge, how many copies, and the budget; serde-deserializable
//! for presets.
//!
//! ```
//! use hedge_layer::{HedgeConfig, HedgeDelay};
//!
//! let config: HedgeConfig = serde_json::from_str(r#"{
//!     "delay": { "mode": "percentile", "percentile": 99.0, "min_samples": 50 },
//!     "budget_ratio": 0.05
//! }"#).unwrap();
//! assert!(matches!(config.delay, HedgeDelay::Percentile { percentile, .. } if percentile == 99.0));
//! config.validate().unwrap();
//! ```

use std::time::Duration;

use reliability_core::error::ConfigError;
use serde::{Deserialize, Serialize};

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// When a hedge is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum HedgeDelay {
    /// A fixed time after the previous copy was sent.
    Fixed {
        /// The delay (zero sends every copy at once).
        #[serde(with = "humantime_serde")]
        after: Duration,
    },
    /// A live percentile of this layer's own answer latencies (module
    /// [`latency`](crate::latency)).
    Percentile {
        /// The percentile, in `[1, 100]` (95 is p95).
        #[serde(default = "default_percentile")]
        percentile: f64,
        /// How long one histogram collects before it is rotated out.
        #[serde(default = "default_window", with = "humantime_serde")]
        window: Duration,
        /// Answers needed in a histogram before its percentile is trusted; until then
        /// nothing is hedged.
        #[serde(default = "default_min_samples")]
        min_samples: u64,
        /// The least delay.
        #[serde(default = "default_floor", with = "humantime_serde")]
        floor: Duration,
        /// The greatest delay.
        #[serde(default = "default_ceiling", with = "humantime_serde")]
        ceiling: Duration,
    },
}

fn default_percentile() -> f64 {
    95.0
}
fn default_window() -> Duration {
    Duration::from_secs(10)
}
fn default_min_samples() -> u64 {
    100
}
fn default_floor() -> Duration {
    Duration::from_millis(1)
}
fn default_ceiling() -> Duration {
    Duration::from_secs(1)
}

impl Default for HedgeDelay {
    /// p95 over 10 s windows, after 100 answers, within `[1 ms, 1 s]`.
    fn default() -> Self {
        HedgeDelay::Percentile {
            percentile: default_percentile(),
            window: default_window(),
            min_samples: default_min_samples(),
            floor: default_floor(),
            ceiling: default_ceiling(),
        }
    }
}

/// The settings of a [`HedgeLayer`](crate::HedgeLayer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HedgeConfig {
    /// When a hedge is sent (default: p95).
    pub delay: HedgeDelay,
    /// Copies sent besides the first, in `[0, 8]` (default 1; 0 never hedges).
    pub max_hedges: u32,
    /// Hedges earned per request that could be hedged, in `[0, 1]` (default 0.1: at most
    /// one request in ten is hedged once the reserve is spent).
    pub budget_ratio: f64,
    /// Tokens the budget starts with and holds at most, in `[0, 10000]` (default 10).
    pub budget_reserve: u32,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            delay: HedgeDelay::default(),
            max_hedges: 1,
            budget_ratio: 0.1,
            budget_reserve: 10,
        }
    }
}

impl HedgeConfig {
    /// Checks every setting against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check_range("max_hedges", self.max_hedges, 0..=8)?;
        if !self.budget_ratio.is_finite() {
            return Err(ConfigError::out_of_range(
                "budget_ratio",
                "[0, 1]",
                self.budget_ratio,
            ));
        }
        ConfigError::check_range("budget_ratio", self.budget_ratio, 0.0..=1.0)?;
        ConfigError::check_range("budget_reserve", self.budget_reserve, 0..=10_000)?;
        match &self.delay {
            HedgeDelay::Fixed { after } => {
                ConfigError::check_duration_or_zero("delay.after", *after, HOUR)
            }
            HedgeDelay::Percentile {
                percentile,
                window,
                min_samples,
                floor,
                ceiling,
            } => {
                if !percentile.is_finite() {
                    return Err(ConfigError::out_of_range(
                        "delay.percentile",
                        "[1, 100]",
                        percentile,
                    ));
                }
                ConfigError::check_range("delay.percentile", *percentile, 1.0..=100.0)?;
                ConfigError::check_duration("delay.window", *window, HOUR)?;
                ConfigError::check_range("delay.min_samples", *min_samples, 1..=1_000_000)?;
                ConfigError::check_duration_or_zero("delay.floor", *floor, MINUTE)?;
                ConfigError::check_duration("delay.ceiling", *ceiling, HOUR)?;
                if ceiling < floor {
                    return Err(ConfigError::new(
                        "delay.ceiling",
                        format!(
                            "{} is below `delay.floor` ({})",
                            humantime::format_duration(*ceiling),
                            humantime::format_duration(*floor)
                        ),
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        HedgeConfig::default().validate().unwrap();
        let bad = |f: fn(&mut HedgeConfig)| {
            let mut c = HedgeConfig::default();
            f(&mut c);
            c.validate().unwrap_err().field
        };
        assert_eq!(bad(|c| c.budget_ratio = 1.5), "budget_ratio");
        assert_eq!(bad(|c| c.budget_ratio = f64::NAN), "budget_ratio");
        assert_eq!(bad(|c| c.max_hedges = 9), "max_hedges");
        assert_eq!(
            bad(|c| {
                c.delay = HedgeDelay::Percentile {
                    percentile: 0.0,
                    window: default_window(),
                    min_samples: 1,
                    floor: default_floor(),
                    ceiling: default_ceiling(),
                }
            }),
            "delay.percentile"
        );
        assert_eq!(
            bad(|c| {
                c.delay = HedgeDelay::Percentile {
                    percentile: 95.0,
                    window: default_window(),
                    min_samples: 1,
                    floor: Duration::from_secs(2),
                    ceiling: Duration::from_secs(1),
                }
            }),
            "delay.ceiling"
        );
    }

    #[test]
    fn fixed_delay_from_json() {
        let c: HedgeConfig =
            serde_json::from_str(r#"{"delay":{"mode":"fixed","after":"25ms"},"max_hedges":2}"#)
                .unwrap();
        assert_eq!(
            c.delay,
            HedgeDelay::Fixed {
                after: Duration::from_millis(25)
            }
        );
        assert_eq!(c.max_hedges, 2);
    }
}
