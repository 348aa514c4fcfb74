//! Quotas: up to four windows decided together, atomically.
//!
//! A [`Quota`] is a list of [`Window`]s (say 2 per second, 60 per minute, 1,000 per hour and
//! 10,000 per day). [`decide`] evaluates every window for one request and either consumes
//! from all of them or from none: a request denied by the daily window leaves the per-second
//! window untouched. This is the pure core both backends run (the Redis backend runs its Lua
//! twin), so their answers agree for the same arrival times.
//!
//! No I/O and no clock: `decide` takes `now` (µs since the Unix epoch) and the key's
//! [`Cell`]s, which is what lets the property tests below replay any arrival sequence.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use ratelimit_layer::quota::{Cell, MAX_WINDOWS, Mode, decide};
//! use ratelimit_layer::Quota;
//!
//! // 2 per second and 3 per minute.
//! let quota = Quota::new([
//!     ratelimit_layer::Window::per(2, Duration::from_secs(1)).unwrap(),
//!     ratelimit_layer::Window::per(3, Duration::from_secs(60)).unwrap(),
//! ])
//! .unwrap();
//! let mut cells = [Cell::default(); MAX_WINDOWS];
//! let now = 1_700_000_000_000_000;
//! assert!(decide(&quota, &mut cells, now, 2, Mode::Consume).allowed);
//!
//! // A second later the per-second window has room again, the per-minute one has 1 unit:
//! // a request of 2 is refused by the minute window and consumes from neither.
//! let before = cells;
//! let refused = decide(&quota, &mut cells, now + 1_000_000, 2, Mode::Consume);
//! assert!(!refused.allowed);
//! assert_eq!(cells, before);
//! assert_eq!(refused.windows()[0].remaining, 2);
//! ```

mod decision;

use std::time::Duration;

use reliability_core::error::ConfigError;
use serde::{Deserialize, Serialize};

use crate::config::WindowConfig;

pub use self::decision::{Cell, Decision, Mode, WindowStatus, decide, idle_after, refund};

/// Most windows one quota may hold (second, minute, hour, day).
pub const MAX_WINDOWS: usize = 4;
/// Largest `limit` of one window.
pub const MAX_LIMIT: u64 = 100_000_000;
/// Longest `period` of one window.
pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);

/// How one window counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// GCRA (token bucket in one integer): smooth, allows `burst` at once. The default.
    #[default]
    Gcra,
    /// Sliding-window counter: no aligned window ever admits more than `limit`.
    SlidingWindow,
}

/// One validated window in integer microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    algorithm: Algorithm,
    limit: u64,
    period: u64,
    burst: u64,
    interval: u64,
}

impl Window {
    /// Validates a configured window.
    pub fn new(config: WindowConfig) -> Result<Self, ConfigError> {
        let WindowConfig {
            limit,
            period,
            burst,
            algorithm,
        } = config;
        if period < Duration::from_millis(1) || period > MAX_PERIOD {
            return Err(ConfigError::out_of_range(
                "window.period",
                "[1ms, 366days]",
                humantime_serde::re::humantime::format_duration(period),
            ));
        }
        if period.subsec_micros() % 1_000 != 0 {
            return Err(ConfigError::new(
                "window.period",
                "must be a whole number of milliseconds",
            ));
        }
        let period = period.as_micros() as u64;
        if limit == 0 || limit > MAX_LIMIT || limit > period {
            return Err(ConfigError::out_of_range(
                "window.limit",
                "[1, 10^8] and at most one per microsecond of the period",
                limit,
            ));
        }
        let burst = burst.unwrap_or(limit);
        if burst == 0 || burst > MAX_LIMIT {
            return Err(ConfigError::out_of_range(
                "window.burst",
                "[1, 10^8]",
                burst,
            ));
        }
        Ok(Self {
            algorithm,
            limit,
            period,
            burst,
            interval: period / limit,
        })
    }

    /// `limit` per `period` (GCRA, burst = limit).
    pub fn per(limit: u64, period: Duration) -> Result<Self, ConfigError> {
        Self::new(WindowConfig::new(limit, period))
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    /// Units per period.
    pub fn limit(&self) -> u64 {
        self.limit
    }
    /// The period.
    pub fn period(&self) -> Duration {
        Duration::from_micros(self.period)
    }
    /// The period in µs.
    pub fn period_micros(&self) -> u64 {
        self.period
    }
    /// GCRA capacity (the sliding window ignores it).
    pub fn burst(&self) -> u64 {
        self.burst
    }
    /// GCRA emission interval in µs (`period / limit`).
    pub fn emission_interval(&self) -> u64 {
        self.interval
    }

    /// This window with its limit and burst divided by `n` (at least 1 each): the share of
    /// one of `n` processes when a shared limit falls back to local limiters.
    #[must_use]
    pub fn share(self, n: u64) -> Self {
        let n = n.max(1);
        let limit = (self.limit / n).max(1);
        Self {
            limit,
            burst: (self.burst / n).max(1),
            interval: self.period / limit,
            ..self
        }
    }

    /// Back to the configuration form.
    pub fn config(&self) -> WindowConfig {
        WindowConfig {
            limit: self.limit,
            period: self.period(),
            burst: (self.burst != self.limit).then_some(self.burst),
            algorithm: self.algorithm,
        }
    }
}

/// Up to [`MAX_WINDOWS`] windows decided together. `Copy`: resolving a quota on the hot
/// path copies it instead of counting references.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    windows: [Window; MAX_WINDOWS],
    len: u8,
    layout: u64,
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.windows()).finish()
    }
}

impl Quota {
    /// A quota from validated windows (1 to [`MAX_WINDOWS`]).
    pub fn new(windows: impl IntoIterator<Item = Window>) -> Result<Self, ConfigError> {
        let placeholder = Window {
            algorithm: Algorithm::Gcra,
            limit: 1,
            period: 1,
            burst: 1,
            interval: 1,
        };
        let mut out = [placeholder; MAX_WINDOWS];
        let mut len = 0;
        for w in windows {
            if len == MAX_WINDOWS {
                return Err(ConfigError::out_of_range(
                    "windows",
                    "1 to 4 windows",
                    "more than 4",
                ));
            }
            out[len] = w;
            len += 1;
        }
        if len == 0 {
            return Err(ConfigError::out_of_range("windows", "1 to 4 windows", 0));
        }
        let mut quota = Self {
            windows: out,
            len: len as u8,
            layout: 0,
        };
        quota.layout = quota.fingerprint();
        Ok(quota)
    }

    /// A quota from configured windows.
    pub fn from_config(windows: &[WindowConfig]) -> Result<Self, ConfigError> {
        let validated: Result<Vec<_>, _> = windows.iter().map(|w| Window::new(*w)).collect();
        Self::new(validated?)
    }

    /// A single-window quota of `limit` per `period`.
    pub fn per(limit: u64, period: Duration) -> Result<Self, ConfigError> {
        Self::new([Window::per(limit, period)?])
    }

    /// A quota of per-second, per-minute, per-hour and per-day GCRA windows.
    pub fn tiered(second: u64, minute: u64, hour: u64, day: u64) -> Result<Self, ConfigError> {
        const S: u64 = 1;
        Self::new([
            Window::per(second, Duration::from_secs(S))?,
            Window::per(minute, Duration::from_secs(60 * S))?,
            Window::per(hour, Duration::from_secs(3600 * S))?,
            Window::per(day, Duration::from_secs(86_400 * S))?,
        ])
    }

    /// The windows.
    pub fn windows(&self) -> &[Window] {
        &self.windows[..self.len as usize]
    }

    /// Configured form of the windows.
    pub fn config(&self) -> Vec<WindowConfig> {
        self.windows().iter().map(Window::config).collect()
    }

    /// Every window's share for one of `n` processes (see [`Window::share`]).
    #[must_use]
    pub fn share(mut self, n: u64) -> Self {
        for w in &mut self.windows[..self.len as usize] {
            *w = w.share(n);
        }
        self
    }

    /// Layout fingerprint (algorithms and periods). In process, a key moving to a quota
    /// of another layout (tier change) starts fresh; in Redis, state is kept per
    /// (algorithm, period), so windows a new quota shares with the old one keep theirs.
    pub(crate) fn layout(&self) -> u64 {
        self.layout
    }

    fn fingerprint(&self) -> u64 {
        // FNV-1a over (algorithm, period) pairs: stable, only compared for equality.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for w in self.windows() {
            for x in [w.algorithm as u64, w.period] {
                h = (h ^ x).wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_fields() {
        assert_eq!(
            Window::per(0, Duration::from_secs(1)).unwrap_err().field,
            "window.limit"
        );
        assert_eq!(
            Window::per(1, Duration::ZERO).unwrap_err().field,
            "window.period"
        );
        assert_eq!(
            Window::per(1, Duration::from_micros(1500))
                .unwrap_err()
                .field,
            "window.period"
        );
        assert_eq!(Quota::new([]).unwrap_err().field, "windows");
        let w = Window::per(1, Duration::from_secs(1)).unwrap();
        assert_eq!(Quota::new([w; 5]).unwrap_err().field, "windows");
        let burst = Window::new(WindowConfig {
            burst: Some(0),
            ..WindowConfig::new(1, Duration::from_secs(1))
        });
        assert_eq!(burst.unwrap_err().field, "window.burst");
    }
}
