//! [`RetryConfig`]: everything a retry layer can be told, as plain data.

use std::time::Duration;

use reliability_core::error::ConfigError;
use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::budget::BudgetConfig;

/// Everything a retry layer can be told, as plain data (TOML, env, code).
///
/// ```
/// let config: retry_layer::RetryConfig = toml::from_str(r#"
///     max_attempts = 4
///     max_elapsed = "20s"
///     attempt_timeout = "2s"
///     backoff = { kind = "exponential", base = "50ms", cap = "5s", jitter = "equal" }
///     budget = { kind = "ratio", ratio = 0.1, floor = 5, window = "10s" }
/// "#).unwrap();
/// let layer = retry_layer::RetryLayer::from_config(&config).unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// The layer's name in health reports.
    pub name: String,
    /// Attempts in total, the first included: `1..=100` (1 disables retries). Default 3.
    pub max_attempts: u32,
    /// The waiting rule. Default: exponential, 100 ms to 10 s, full jitter.
    pub backoff: Backoff,
    /// No retry is started if its wait would end later than this after the first attempt
    /// began. Default: none (`max_attempts` and the backoff cap bound the time).
    #[serde(with = "humantime_serde")]
    pub max_elapsed: Option<Duration>,
    /// Each attempt is cut off (and retried as a timeout) after this. Default: none.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Option<Duration>,
    /// A hard limit on the whole call, retries included: an attempt still running when it
    /// passes is dropped and the call fails with
    /// [`DeadlineExceeded`](crate::DeadlineExceeded); a wait that would end past it is not
    /// started, and the last failure is returned. Default: none.
    #[serde(with = "humantime_serde")]
    pub deadline: Option<Duration>,
    /// Upstream-requested delays (`Retry-After`, gRPC retry info) are clamped to this,
    /// at most 1 h. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// The retry budget shared by every clone. Default: the AWS token bucket.
    pub budget: BudgetConfig,
    /// Seed of the jitter generator, for reproducible delays. Default: random.
    pub seed: Option<u64>,
    /// HTTP layers only (a plain [`RetryLayer`](crate::RetryLayer) has no notion of methods): retry
    /// POST/PATCH (and other non-idempotent methods) even without an `Idempotency-Key`
    /// header or a per-request opt-in. Default false.
    pub retry_non_idempotent: bool,
    /// HTTP layers only: request bodies up to this many bytes are buffered for replay;
    /// longer ones are sent once and never retried. `0..=64 MiB`, default 64 KiB.
    pub max_body_bytes: usize,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            name: "retry".to_owned(),
            max_attempts: 3,
            backoff: Backoff::default(),
            max_elapsed: None,
            attempt_timeout: None,
            deadline: None,
            max_retry_after: Duration::from_secs(60),
            budget: BudgetConfig::default(),
            seed: None,
            retry_non_idempotent: false,
            max_body_bytes: 64 * 1024,
        }
    }
}

impl RetryConfig {
    /// Checks every setting; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const DAY: Duration = Duration::from_secs(86_400);
        if !(1..=100).contains(&self.max_attempts) {
            return Err(ConfigError::out_of_range(
                "max_attempts",
                "[1, 100]",
                self.max_attempts,
            ));
        }
        self.backoff.validate()?;
        for (field, value) in [
            ("max_elapsed", self.max_elapsed),
            ("attempt_timeout", self.attempt_timeout),
            ("deadline", self.deadline),
        ] {
            if let Some(d) = value
                && (d.is_zero() || d > DAY)
            {
                return Err(ConfigError::out_of_range(
                    field,
                    "(0s, 1day]",
                    humantime::format_duration(d),
                ));
            }
        }
        if self.max_retry_after > reliability_core::classify::MAX_RETRY_AFTER {
            return Err(ConfigError::out_of_range(
                "max_retry_after",
                "[0s, 1h]",
                humantime::format_duration(self.max_retry_after),
            ));
        }
        if self.max_body_bytes > 64 * 1024 * 1024 {
            return Err(ConfigError::out_of_range(
                "max_body_bytes",
                "[0, 67108864]",
                self.max_body_bytes,
            ));
        }
        self.budget.validate()
    }
}
