//! Settings of the preset stacks: defaults from the source tables, overridable from a TOML
//! file, from environment variables and in code.
//!
//! Precedence, lowest to highest: the preset's defaults, the TOML file, the environment,
//! then whatever the code sets on the loaded [`Settings`] or on a preset builder.
//!
//! Environment variables follow one scheme: `RELIABILITY__` then the TOML path with `__`
//! between the parts, e.g. `RELIABILITY__CEX__BREAKER__OPEN_WAIT=45s` sets
//! `[cex.breaker] open_wait = "45s"`. Durations are human (`250ms`, `30s`, `2m`).
//!
//! Every error names the setting's path: an unknown key, a wrong type and an out-of-range
//! value are all reported at load time, before a single request is served.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use reliability::config::Settings;
//!
//! let toml = r#"
//!     [cex.breaker]
//!     open_wait = "45s"
//!
//!     [social.cache]
//!     ttl = "10m"
//!     max_ttl = "20m"
//! "#;
//! let settings = Settings::from_toml_str(toml).unwrap();
//! assert_eq!(settings.cex.breaker.open_wait, Duration::from_secs(45));
//! assert_eq!(settings.cex.breaker.failure_threshold, 5); // the preset's default
//! assert_eq!(settings.social.cache.ttl, Duration::from_secs(600));
//!
//! let err = Settings::from_toml_str("[cex.breaker]\nopen_wiat = \"1s\"").unwrap_err();
//! assert!(err.to_string().contains("open_wiat"), "{err}");
//! ```

use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use reliability_core::error::ConfigError;
use reliability_core::redis::RedisConfig;
use serde::{Deserialize, Serialize};

/// The prefix of every environment variable read by [`Settings::load`].
pub const ENV_PREFIX: &str = "RELIABILITY__";

/// The kinds of data source a preset is tuned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A centralized exchange: order books and prices, fast and strict.
    Cex,
    /// A DEX aggregator: quotes and liquidity, slower, more tolerant.
    Dex,
    /// A social API: search and timelines, slow, tight quotas.
    Social,
}

impl SourceKind {
    /// All kinds.
    pub const ALL: [SourceKind; 3] = [SourceKind::Cex, SourceKind::Dex, SourceKind::Social];

    /// `cex`, `dex` or `social`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Cex => "cex",
            SourceKind::Dex => "dex",
            SourceKind::Social => "social",
        }
    }
}

/// Every setting of every preset, plus the shared Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The CEX preset.
    pub cex: SourceSettings,
    /// The DEX preset.
    pub dex: SourceSettings,
    /// The social preset.
    pub social: SourceSettings,
    /// Redis for shared state (rate limits, L2 cache); in-process when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConfig>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cex: SourceSettings::preset(SourceKind::Cex),
            dex: SourceSettings::preset(SourceKind::Dex),
            social: SourceSettings::preset(SourceKind::Social),
            redis: None,
        }
    }
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file could not be read, a key is unknown or a value has the wrong type.
    #[error("configuration: {0}")]
    Load(Box<figment::Error>),
    /// A value is outside its allowed range.
    #[error("configuration: {0}")]
    Invalid(#[from] ConfigError),
}

impl From<figment::Error> for SettingsError {
    fn from(e: figment::Error) -> Self {
        Self::Load(Box::new(e))
    }
}

impl Settings {
    /// The preset defaults, then the TOML file at `path` (when given; a missing file is an
    /// error), then `RELIABILITY__*` environment variables. Validated.
    pub fn load(path: Option<&Path>) -> Result<Self, SettingsError> {
        let mut figment = Self::defaults_figment();
        if let Some(path) = path {
            if !path.is_file() {
                return Err(ConfigError::new(
                    "config_file",
                    format!("{} is not a readable file", path.display()),
                )
                .into());
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        Self::extract(figment.merge(env_provider()))
    }

    /// The preset defaults overridden by a TOML document (no environment). Validated.
    pub fn from_toml_str(toml: &str) -> Result<Self, SettingsError> {
        Self::extract(Self::defaults_figment().merge(Toml::string(toml)))
    }

    /// The preset defaults overridden by a TOML document, then by environment variables
    /// given as `(name, value)` pairs (for tests and embedding). Validated.
    pub fn from_sources<'a>(
        toml: &str,
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, SettingsError> {
        let mut figment = Self::defaults_figment().merge(Toml::string(toml));
        for (name, value) in env {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = path.to_ascii_lowercase().replace("__", ".");
            let value: figment::value::Value = value
                .parse()
                .unwrap_or_else(|_| figment::value::Value::from(value.to_owned()));
            figment = figment.merge(Serialized::global(&key, value));
        }
        Self::extract(figment)
    }

    fn defaults_figment() -> Figment {
        Figment::from(Serialized::defaults(Settings::default()))
    }

    fn extract(figment: Figment) -> Result<Self, SettingsError> {
        let settings: Settings = figment.extract()?;
        settings.validate()?;
        Ok(settings)
    }

    /// The settings of one source kind.
    pub fn source(&self, kind: SourceKind) -> &SourceSettings {
        match kind {
            SourceKind::Cex => &self.cex,
            SourceKind::Dex => &self.dex,
            SourceKind::Social => &self.social,
        }
    }

    /// The settings of one source kind, to change in code.
    pub fn source_mut(&mut self, kind: SourceKind) -> &mut SourceSettings {
        match kind {
            SourceKind::Cex => &mut self.cex,
            SourceKind::Dex => &mut self.dex,
            SourceKind::Social => &mut self.social,
        }
    }

    /// Checks every range; the error names the setting's full path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for kind in SourceKind::ALL {
            self.source(kind)
                .validate()
                .map_err(|e| e.within(kind.as_str()))?;
        }
        if let Some(redis) = &self.redis {
            redis.validate().map_err(|e| e.within("redis"))?;
        }
        Ok(())
    }
}

fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX).split("__")
}

/// Settings of one preset stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// SLA thresholds.
    pub sla: SlaSettings,
    /// Circuit breaker.
    pub breaker: BreakerSettings,
    /// Cache TTLs.
    pub cache: CacheSettings,
    /// Retries.
    pub retry: RetrySettings,
    /// Client-side rate limit: the upstream's quota.
    pub rate_limit: ClientRateLimitSettings,
    /// Time allowed for one attempt.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
}

/// SLA thresholds of a source (MISSION.md's SLA table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaSettings {
    /// p95 latency above which the source is DEGRADED.
    #[serde(with = "humantime_serde")]
    pub p95: Duration,
    /// p99 latency above which the source is DEGRADED.
    #[serde(with = "humantime_serde")]
    pub p99: Duration,
    /// Success rate (0..=1) under which the source is FAILED.
    pub min_success_rate: f64,
    /// Failures in a row at which the source is FAILED.
    pub max_consecutive_failures: u32,
    /// Calls in the rolling count window.
    pub window: u32,
    /// Span of the rolling time window (twelve intervals).
    #[serde(with = "humantime_serde")]
    pub time_window: Duration,
    /// Which window the status rules read: `count` (the last `window` calls, a status
    /// that does not fade when traffic stops) or `time` (the last `time_window`, a status
    /// that forgets old trouble).
    pub status_window: StatusWindow,
}

pub use sla_layer::WindowKind as StatusWindow;

/// Circuit-breaker settings of a source (MISSION.md's breaker table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// Time the circuit stays open before probing.
    #[serde(with = "humantime_serde")]
    pub open_wait: Duration,
    /// Successful probes that close the circuit again.
    pub success_threshold: u32,
    /// Failure rate (percent, over the window) that also opens the circuit.
    pub failure_rate: f64,
    /// Calls in the sliding window.
    pub window: u32,
    /// Calls needed in the window before the rate can trip.
    pub min_calls: u32,
}

/// Cache settings of a source (MISSION.md's TTL table; adaptive within `min_ttl..=max_ttl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Initial time an entry is fresh.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Lowest adaptive TTL.
    #[serde(with = "humantime_serde")]
    pub min_ttl: Duration,
    /// Highest adaptive TTL.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// After the TTL, how long a stale entry is served while one refresh runs.
    #[serde(with = "humantime_serde")]
    pub stale_while_revalidate: Duration,
    /// After the TTL, how long a stale entry is served when the upstream fails.
    #[serde(with = "humantime_serde")]
    pub stale_if_error: Duration,
    /// Most entries held in memory.
    pub max_entries: u64,
}

pub use retry_layer::backoff::Jitter as JitterKind;

/// Retry settings of a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff step.
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    /// Longest single backoff.
    #[serde(with = "humantime_serde")]
    pub cap: Duration,
    /// Jitter kind.
    pub jitter: JitterKind,
    /// Retries allowed as a share of requests (0..=1), so retries never amplify an outage.
    pub budget_ratio: f64,
}

/// Client-side rate limit: how fast the preset may call the upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRateLimitSettings {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed in a burst.
    pub burst: u32,
    /// Longest a call waits for quota before failing with a rate-limit error.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

impl SourceSettings {
    /// The preset's defaults: MISSION.md's SLA, breaker and TTL tables, and retry and quota
    /// settings typical of such sources.
    pub fn preset(kind: SourceKind) -> Self {
        match kind {
            SourceKind::Cex => Self {
                sla: SlaSettings {
                    p95: secs(1),
                    p99: secs(2),
                    min_success_rate: 0.95,
                    max_consecutive_failures: 3,
                    window: 100,
                    time_window: secs(60),
                    status_window: StatusWindow::Count,
                },
                breaker: BreakerSettings {
                    failure_threshold: 5,
                    open_wait: secs(30),
                    success_threshold: 2,
                    failure_rate: 50.0,
                    window: 20,
                    min_calls: 10,
                },
                cache: CacheSettings {
                    ttl: secs(5),
                    min_ttl: secs(2),
                    max_ttl: secs(15),
                    stale_while_revalidate: secs(5),
                    stale_if_error: secs(10),
                    max_entries: 10_000,
                },
                retry: RetrySettings {
                    max_attempts: 3,
                    base: millis(50),
                    cap: secs(1),
                    jitter: JitterKind::Full,
                    budget_ratio: 0.2,
                },
                rate_limit: ClientRateLimitSettings {
                    per_second: 20.0,
                    burst: 20,
                    max_wait: secs(2),
                },
                attempt_timeout: secs(2),
            },
            SourceKind::Dex => Self {
                sla: SlaSettings {
                    p95: secs(3),
                    p99: secs(5),
                    min_success_rate: 0.90,
                    max_consecutive_failures: 5,
                    window: 100,
                    time_window: secs(60),
                    status_window: StatusWindow::Count,
                },
                breaker: BreakerSettings {
                    failure_threshold: 10,
                    open_wait: secs(60),
                    success_threshold: 3,
                    failure_rate: 50.0,
                    window: 40,
                    min_calls: 20,
                },
                cache: CacheSettings {
                    ttl: secs(30),
                    min_ttl: secs(10),
                    max_ttl: secs(120),
                    stale_while_revalidate: secs(30),
                    stale_if_error: secs(60),
                    max_entries: 10_000,
                },
                retry: RetrySettings {
                    max_attempts: 3,
                    base: millis(200),
                    cap: secs(5),
                    jitter: JitterKind::Decorrelated,
                    budget_ratio: 0.2,
                },
                rate_limit: ClientRateLimitSettings {
                    per_second: 10.0,
                    burst: 10,
                    max_wait: secs(5),
                },
                attempt_timeout: secs(5),
            },
            SourceKind::Social => Self {
                sla: SlaSettings {
                    p95: secs(5),
                    p99: secs(10),
                    min_success_rate: 0.85,
                    max_consecutive_failures: 3,
                    window: 100,
                    time_window: secs(60),
                    status_window: StatusWindow::Count,
                },
                breaker: BreakerSettings {
                    failure_threshold: 3,
                    open_wait: secs(120),
                    success_threshold: 1,
                    failure_rate: 50.0,
                    window: 20,
                    min_calls: 10,
                },
                cache: CacheSettings {
                    ttl: secs(300),
                    min_ttl: secs(60),
                    max_ttl: secs(900),
                    stale_while_revalidate: secs(300),
                    stale_if_error: secs(600),
                    max_entries: 10_000,
                },
                retry: RetrySettings {
                    max_attempts: 4,
                    base: millis(500),
                    cap: secs(10),
                    jitter: JitterKind::Full,
                    budget_ratio: 0.1,
                },
                rate_limit: ClientRateLimitSettings {
                    per_second: 1.0,
                    burst: 5,
                    max_wait: secs(10),
                },
                attempt_timeout: secs(10),
            },
        }
    }

    /// Checks every range; the error names the setting's path within the source.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.sla;
        positive("sla.p95", s.p95)?;
        if s.p99 < s.p95 {
            return Err(ConfigError::new(
                "sla.p99",
                format!(
                    "must be >= sla.p95 ({}), got {}",
                    humantime::format_duration(s.p95),
                    humantime::format_duration(s.p99)
                ),
            ));
        }
        unit_interval("sla.min_success_rate", s.min_success_rate)?;
        at_least(
            "sla.max_consecutive_failures",
            s.max_consecutive_failures,
            1,
        )?;
        at_least("sla.window", s.window, 1)?;
        if s.time_window < secs(1) {
            return Err(ConfigError::new("sla.time_window", "must be at least 1s"));
        }

        let b = &self.breaker;
        at_least("breaker.failure_threshold", b.failure_threshold, 1)?;
        positive("breaker.open_wait", b.open_wait)?;
        at_least("breaker.success_threshold", b.success_threshold, 1)?;
        if !(b.failure_rate > 0.0 && b.failure_rate <= 100.0) {
            return Err(ConfigError::out_of_range(
                "breaker.failure_rate",
                "(0, 100]",
                b.failure_rate,
            ));
        }
        at_least("breaker.window", b.window, 1)?;
        at_least("breaker.min_calls", b.min_calls, 1)?;

        let c = &self.cache;
        positive("cache.min_ttl", c.min_ttl)?;
        if !(c.min_ttl <= c.ttl && c.ttl <= c.max_ttl) {
            return Err(ConfigError::new(
                "cache.ttl",
                format!(
                    "must lie within cache.min_ttl..=cache.max_ttl ({}..={}), got {}",
                    humantime::format_duration(c.min_ttl),
                    humantime::format_duration(c.max_ttl),
                    humantime::format_duration(c.ttl)
                ),
            ));
        }
        if c.max_entries == 0 {
            return Err(ConfigError::out_of_range(
                "cache.max_entries",
                "[1, 2^64)",
                0,
            ));
        }

        let r = &self.retry;
        if !(1..=10).contains(&r.max_attempts) {
            return Err(ConfigError::out_of_range(
                "retry.max_attempts",
                "[1, 10]",
                r.max_attempts,
            ));
        }
        positive("retry.base", r.base)?;
        if r.cap < r.base {
            return Err(ConfigError::new("retry.cap", "must be >= retry.base"));
        }
        unit_interval("retry.budget_ratio", r.budget_ratio)?;

        let q = &self.rate_limit;
        if !(q.per_second > 0.0 && q.per_second <= 1_000_000.0) {
            return Err(ConfigError::out_of_range(
                "rate_limit.per_second",
                "(0, 1000000]",
                q.per_second,
            ));
        }
        at_least("rate_limit.burst", q.burst, 1)?;
        positive("attempt_timeout", self.attempt_timeout)?;
        Ok(())
    }
}

fn positive(field: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(ConfigError::new(field, "must be longer than 0s"))
    } else {
        Ok(())
    }
}

fn unit_interval(field: &str, v: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::out_of_range(field, "[0, 1]", v))
    }
}

fn at_least(field: &str, v: u32, min: u32) -> Result<(), ConfigError> {
    if v >= min {
        Ok(())
    } else {
        Err(ConfigError::out_of_range(field, &format!("[{min}, ..)"), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_the_tables() {
        let s = Settings::default();
        let rows = [
            (&s.cex, 1, 2, 0.95, 3, 5, 30, 2, 5, 2, 15),
            (&s.dex, 3, 5, 0.90, 5, 10, 60, 3, 30, 10, 120),
            (&s.social, 5, 10, 0.85, 3, 3, 120, 1, 300, 60, 900),
        ];
        for (src, p95, p99, rate, consec, fail, wait, succ, ttl, min, max) in rows {
            assert_eq!(src.sla.p95, secs(p95));
            assert_eq!(src.sla.p99, secs(p99));
            assert_eq!(src.sla.min_success_rate, rate);
            assert_eq!(src.sla.max_consecutive_failures, consec);
            assert_eq!(src.breaker.failure_threshold, fail);
            assert_eq!(src.breaker.open_wait, secs(wait));
            assert_eq!(src.breaker.success_threshold, succ);
            assert_eq!(src.cache.ttl, secs(ttl));
            assert_eq!(src.cache.min_ttl, secs(min));
            assert_eq!(src.cache.max_ttl, secs(max));
        }
        s.validate().unwrap();
    }

    #[test]
    fn precedence_env_over_file_over_preset() {
        let toml = "[cex.breaker]\nopen_wait = \"45s\"\nsuccess_threshold = 4\n";
        let env = [
            ("RELIABILITY__CEX__BREAKER__OPEN_WAIT", "50s"),
            ("RELIABILITY__DEX__RETRY__MAX_ATTEMPTS", "5"),
            ("UNRELATED", "x"),
        ];
        let mut s = Settings::from_sources(toml, env).unwrap();
        assert_eq!(s.cex.breaker.open_wait, secs(50), "env beats file");
        assert_eq!(s.cex.breaker.success_threshold, 4, "file beats preset");
        assert_eq!(s.cex.breaker.failure_threshold, 5, "preset stays");
        assert_eq!(s.dex.retry.max_attempts, 5);
        // Code comes last.
        s.cex.breaker.open_wait = secs(60);
        assert_eq!(s.cex.breaker.open_wait, secs(60));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Settings::from_toml_str("[dex.cache]\nttll = \"5s\"").unwrap_err();
        assert!(err.to_string().contains("ttll"), "{err}");
        let err = Settings::from_toml_str("[nope]\nx = 1").unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Settings::from_toml_str("[cex.breaker]\nopen_wait = 12").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("open_wait"), "{msg}");
        let err = Settings::from_toml_str("[cex.breaker]\nopen_wait = \"soon\"").unwrap_err();
        assert!(err.to_string().contains("open_wait"), "{err}");
        let err =
            Settings::from_sources("", [("RELIABILITY__CEX__SLA__WINDOW", "many")]).unwrap_err();
        assert!(err.to_string().contains("window"), "{err}");
    }

    #[test]
    fn out_of_range_is_named_with_its_path() {
        let cases = [
            (
                "[cex.breaker]\nfailure_rate = 150.0",
                "cex.breaker.failure_rate",
            ),
            (
                "[dex.sla]\nmin_success_rate = 1.5",
                "dex.sla.min_success_rate",
            ),
            ("[social.cache]\nttl = \"1h\"", "social.cache.ttl"),
            ("[cex.retry]\nmax_attempts = 0", "cex.retry.max_attempts"),
            ("[cex.sla]\np99 = \"10ms\"", "cex.sla.p99"),
            ("[dex.breaker]\nopen_wait = \"0s\"", "dex.breaker.open_wait"),
            (
                "[cex.rate_limit]\nper_second = -1.0",
                "cex.rate_limit.per_second",
            ),
            ("[redis]\nurl = \"http://x\"", "redis.url"),
        ];
        for (toml, path) in cases {
            match Settings::from_toml_str(toml) {
                Err(SettingsError::Invalid(e)) => assert_eq!(e.field, path, "{toml}"),
                other => panic!("{toml}: expected a range error, got {other:?}"),
            }
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Settings::load(Some(Path::new("/nonexistent/reliability.toml"))).unwrap_err();
        assert!(err.to_string().contains("config_file"), "{err}");
    }

    #[test]
    fn file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        std::fs::write(
            &path,
            "[redis]\nurl = \"redis://127.0.0.1:6379\"\nkey_prefix = \"app\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&path)).unwrap();
        assert_eq!(s.redis.unwrap().key_prefix, "app");
    }
}
