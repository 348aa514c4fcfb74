//! Settings of the preset stacks: each layer's own configuration, with the values of the
//! preset tables, overridable from a TOML file, from environment variables and in code.
//!
//! A source's [`SourceSettings`] *are* the layers' configuration types, under the layers'
//! own field names, checked by the layers' own `validate()`: a setting has one name and
//! one set of allowed values, wherever it is set.
//!
//! | table | type | notes |
//! |---|---|---|
//! | `[cex.sla]`, `[cex.sla.thresholds]` | [`SlaConfig`] | p95, p99, success rate, windows |
//! | `[cex.breaker]` | [`CircuitBreakerConfig`] | `window = { kind = "count", size = 20 }` |
//! | `[cex.cache]`, `[cex.cache.adaptive]` | [`CacheConfig`] | `ttl`, `adaptive.min`/`max` |
//! | `[cex.retry]`, `.backoff`, `.budget` | [`RetryConfig`] | `backoff = { kind = "exponential", ... }` |
//! | `[cex.rate_limit]` | [`ClientRateLimitConfig`] | the upstream's quota and the longest wait |
//! | `cex.attempt_timeout` | the facade's own | time allowed for one attempt |
//! | `cex.deadline` | the facade's own | total time for a call, retries and waits included (optional) |
//! | `[cex.hedge]`, `.delay` | [`HedgeConfig`] | `max_hedges`, `budget_ratio`, `delay = { mode = "percentile", percentile = 95.0 }` |
//!
//! The `name` of the cache, retry and SLA configurations is the preset's name
//! ([`Preset::new`](crate::presets::Preset::new)), whatever the file says, so that every
//! layer of a source reports under one name.
//!
//! Precedence, lowest to highest: the preset's defaults ([`presets::defaults`]), the TOML
//! file, the environment, then whatever the code sets on the loaded [`Settings`] or on a
//! preset builder.
//!
//! Environment variables follow one scheme: `RELIABILITY__` then the TOML path with `__`
//! between the parts, e.g. `RELIABILITY__CEX__BREAKER__CONSECUTIVE_FAILURES=7` sets
//! `[cex.breaker] consecutive_failures = 7`. Durations are human (`250ms`, `30s`, `2m`).
//!
//! Every error names the setting's path: an unknown key, a wrong type, an out-of-range
//! value, and a key of an older release (with the name that replaced it) are all reported
//! at load time, before a single request is served.
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
//!     adaptive = { rule = "popularity", min = "5m", max = "20m" }
//! "#;
//! let settings = Settings::from_toml_str(toml).unwrap();
//! assert_eq!(settings.cex.breaker.open_wait, Duration::from_secs(45));
//! assert_eq!(settings.cex.breaker.consecutive_failures, Some(5)); // the preset's default
//! assert_eq!(settings.social.cache.ttl, Duration::from_secs(600));
//!
//! let err = Settings::from_toml_str("[cex.breaker]\nopen_wiat = \"1s\"").unwrap_err();
//! assert!(err.to_string().contains("open_wiat"), "{err}");
//!
//! let err = Settings::from_toml_str("[cex.breaker]\nfailure_threshold = 3").unwrap_err();
//! assert!(err.to_string().contains("`failure_threshold` is now `consecutive_failures`"));
//! ```
//!
//! [`presets::defaults`]: crate::presets::defaults

mod renamed;

use std::path::Path;
use std::time::Duration;

pub use breaker_layer::CircuitBreakerConfig;
pub use cache_layer::CacheConfig;
pub use concurrency_layer::ConcurrencyConfig;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
pub use hedge_layer::HedgeConfig;
pub use ratelimit_layer::WindowConfig;
use ratelimit_layer::{Quota, Window};
use reliability_core::error::ConfigError;
use reliability_core::redis::RedisConfig;
pub use retry_layer::RetryConfig;
use serde::{Deserialize, Serialize};
pub use sla_layer::SlaConfig;
/// Which window the SLA status rules read: the SLA layer's `WindowKind`.
pub use sla_layer::WindowKind as StatusWindow;

use crate::presets::defaults;

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
    /// A key of an older release, now spelled the way the layer spells it.
    #[error("configuration: `{key}` is no longer read: `{old}` is now {now}")]
    Renamed {
        /// The key as found, e.g. `cex.breaker.failure_threshold`.
        key: String,
        /// Its last part, e.g. `failure_threshold`.
        old: &'static str,
        /// What replaced it, within the same table, e.g. `` `consecutive_failures` ``.
        now: &'static str,
    },
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
        let mut user = Figment::new();
        if let Some(path) = path {
            if !path.is_file() {
                return Err(ConfigError::new(
                    "config_file",
                    format!("{} is not a readable file", path.display()),
                )
                .into());
            }
            user = user.merge(Toml::file_exact(path));
        }
        Self::extract(user.merge(Env::prefixed(ENV_PREFIX).split("__")))
    }

    /// The preset defaults overridden by a TOML document (no environment). Validated.
    pub fn from_toml_str(toml: &str) -> Result<Self, SettingsError> {
        Self::extract(Figment::from(Toml::string(toml)))
    }

    /// The preset defaults overridden by a TOML document, then by environment variables
    /// given as `(name, value)` pairs (for tests and embedding). Validated.
    pub fn from_sources<'a>(
        toml: &str,
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, SettingsError> {
        let mut user = Figment::from(Toml::string(toml));
        for (name, value) in env {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = path.to_ascii_lowercase().replace("__", ".");
            let value: Value = value
                .parse()
                .unwrap_or_else(|_| Value::from(value.to_owned()));
            user = user.merge(Serialized::global(&key, value));
        }
        Self::extract(user)
    }

    /// The preset defaults under `user` (file and environment), validated.
    fn extract(user: Figment) -> Result<Self, SettingsError> {
        renamed::check(&user)?;
        let defaults = defaults_under(&user)?;
        let settings: Settings = Figment::from(Serialized::defaults(defaults))
            .merge(user)
            .extract()?;
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

    /// Checks every setting with its layer's rules; the error names the full path
    /// (`cex.breaker.open_wait`).
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

/// Settings whose TOML form is an internally tagged enum (`kind = "..."`).
const TAGGED: [&str; 3] = ["breaker.window", "retry.backoff", "retry.budget"];

/// The preset defaults as a figment value, without the defaults of a tagged setting whose
/// variant `user` changes: figment merges tables key by key, and the old variant's fields
/// (a count window's `size`) would be unknown fields of the new one (a time window).
fn defaults_under(user: &Figment) -> Result<Value, SettingsError> {
    let mut defaults = Value::serialize(Settings::default())?;
    for kind in SourceKind::ALL {
        for setting in TAGGED {
            let path = format!("{}.{setting}", kind.as_str());
            let kind_key = format!("{path}.kind");
            let Ok(chosen) = user.find_value(&kind_key) else {
                continue;
            };
            let preset = defaults.find_ref(&kind_key).and_then(Value::as_str);
            if chosen.as_str() != preset {
                remove_path(&mut defaults, &path);
            }
        }
    }
    Ok(defaults)
}

/// Removes the value at a dotted `path`, if there is one.
fn remove_path(value: &mut Value, path: &str) {
    let (parents, last) = path.rsplit_once('.').unwrap_or(("", path));
    let mut value = value;
    for key in parents.split('.').filter(|k| !k.is_empty()) {
        value = match value {
            Value::Dict(_, dict) => match dict.get_mut(key) {
                Some(inner) => inner,
                None => return,
            },
            _ => return,
        };
    }
    if let Value::Dict(_, dict) = value {
        dict.remove(last);
    }
}

/// Settings of one preset stack: the layers' configurations, and the time allowed for one
/// attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// The SLA monitor: windows and the thresholds of HEALTHY / DEGRADED / FAILED.
    pub sla: SlaConfig,
    /// The circuit breaker.
    pub breaker: CircuitBreakerConfig,
    /// The cache: TTL, adaptive TTL bounds, stale windows, size.
    pub cache: CacheConfig,
    /// Retries: attempts, backoff, budget.
    pub retry: RetryConfig,
    /// Client-side rate limit: the upstream's quota.
    pub rate_limit: ClientRateLimitConfig,
    /// The bulkhead: calls in flight to the upstream at once, fixed or adaptive.
    pub concurrency: ConcurrencyConfig,
    /// Hedging of idempotent reads by the HTTP client: a second copy after a live
    /// percentile of the source's latency, within a budget (`max_hedges = 0`: off).
    pub hedge: HedgeConfig,
    /// Time allowed for one attempt, innermost in the stack (the SLA monitor sees a
    /// timeout at its true latency). Prefer it to `retry.attempt_timeout`, which would
    /// also count the wait for quota.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// Total time a call may take, retries, back-off and waits for quota or a bulkhead
    /// place included, outermost in the stack; a caller's own earlier deadline (a
    /// `Deadline` in the request, or an inbound `grpc-timeout`) wins. Unset: only the
    /// caller's deadline. No attempt starts after it, and the call answers 504 /
    /// `DEADLINE_EXCEEDED` when it passes.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub deadline: Option<Duration>,
}

impl SourceSettings {
    /// The preset's defaults: the preset tables (see [`presets::defaults`]).
    ///
    /// [`presets::defaults`]: crate::presets::defaults
    pub fn preset(kind: SourceKind) -> Self {
        Self {
            sla: defaults::sla(kind),
            breaker: defaults::breaker(kind),
            cache: defaults::cache(kind),
            retry: defaults::retry(kind),
            rate_limit: defaults::rate_limit(kind),
            concurrency: defaults::concurrency(kind),
            hedge: defaults::hedge(kind),
            attempt_timeout: defaults::attempt_timeout(kind),
            deadline: None,
        }
    }

    /// Checks every setting with its layer's own rules; the error names the setting's
    /// path within the source (`breaker.open_wait`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.sla.validate().map_err(|e| e.within("sla"))?;
        self.breaker.validate().map_err(|e| e.within("breaker"))?;
        self.cache.validate().map_err(|e| e.within("cache"))?;
        self.retry.validate().map_err(|e| e.within("retry"))?;
        self.rate_limit
            .validate()
            .map_err(|e| e.within("rate_limit"))?;
        self.concurrency
            .validate()
            .map_err(|e| e.within("concurrency"))?;
        self.hedge.validate().map_err(|e| e.within("hedge"))?;
        if self.attempt_timeout.is_zero() {
            return Err(ConfigError::new(
                "attempt_timeout",
                "must be longer than 0s",
            ));
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new("deadline", "must be longer than 0s"));
        }
        Ok(())
    }
}

/// How fast a preset may call its upstream: one window of the rate-limit layer's quota,
/// and how long a call may wait for it.
///
/// ```toml
/// [social.rate_limit]
/// window = { limit = 5, period = "5s" }  # 1 call a second on average, 5 at once
/// max_wait = "10s"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRateLimitConfig {
    /// The quota: `limit` calls per `period`; GCRA allows `burst` (default `limit`) at
    /// once.
    pub window: WindowConfig,
    /// Longest a call waits for quota before failing with a rate-limit error.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl ClientRateLimitConfig {
    /// Checks the window with the rate-limit layer's rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Window::new(self.window).map(drop)
    }

    /// The quota of the window.
    pub fn quota(&self) -> Result<Quota, ConfigError> {
        Quota::from_config(&[self.window])
    }
}
