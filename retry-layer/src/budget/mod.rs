//! Retry budgets: a cap on retries shared by every clone of a layer.
//!
//! # Why budgets exist
//!
//! A retry is a bet that the failure was bad luck. When it was, the retry hides the
//! failure from the caller, which is the whole point. When it was not (the upstream is
//! overloaded or down), every retry is one more request sent to a server that is already
//! failing. Three attempts per request turn an outage into three times the load, and the
//! extra load is what keeps the upstream from recovering: retries amplify the very
//! failures they were meant to hide, and each client retrying "politely" with backoff only
//! spreads the extra load, it does not remove it.
//!
//! Per-request limits (`max_attempts`) cannot fix this, because the amplification comes
//! from all requests together. A budget looks at all of them: retries are allowed while
//! they are a small share of the traffic, and refused once failures are the norm. Then a
//! full outage costs the upstream little more than the requests themselves, and the
//! budget refills once calls succeed again.
//!
//! Two budgets are offered, after the two designs in wide use:
//!
//! - [`TokenBucket`]: the AWS SDKs' "standard" retry quota. A bucket starts full (500
//!   tokens); a retry costs 5 tokens (10 after a timeout, which is a stronger sign of
//!   overload); a success puts back 1 token, or the cost of its retry when it succeeded
//!   on a retry. Once the bucket cannot pay for a retry, failures return at once.
//! - [`RatioBudget`]: the ratio of retries to requests, with Envoy's defaults (20 % with a
//!   floor of 3): within a sliding window, `retries <= ratio * requests + floor`. Envoy
//!   applies its ratio to requests *in flight*, which does not bound a client that sends
//!   one request at a time; counting over a window, as tower's `TpsBudget` does, bounds
//!   both. The floor lets a quiet client still retry.
//!
//! Both are lock-free on the path every request takes (an atomic add at most); the ratio
//! budget takes a short lock only when it is asked for a retry, so that two threads
//! cannot both take the last slot.
//!
//! # Example
//!
//! ```
//! use retry_layer::budget::{RetryCause, TokenBucket, TokenBucketConfig};
//!
//! let bucket = TokenBucket::new(TokenBucketConfig { capacity: 10, ..Default::default() });
//! assert_eq!(bucket.try_acquire(RetryCause::Error), Some(5));
//! assert_eq!(bucket.try_acquire(RetryCause::Error), Some(5));
//! assert_eq!(bucket.try_acquire(RetryCause::Error), None, "empty: no more retries");
//! bucket.on_success(5);
//! assert_eq!(bucket.available(), 5);
//! ```

mod ratio;
mod token_bucket;

use reliability_core::error::ConfigError;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use self::ratio::{RatioBudget, RatioBudgetConfig};
pub use self::token_bucket::{TokenBucket, TokenBucketConfig};

/// What made a retry necessary; timeouts cost more in the token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryCause {
    /// A failed answer or error.
    Error,
    /// The attempt timed out.
    Timeout,
}

/// Which budget a layer uses, as configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BudgetConfig {
    /// No budget: every request may make all its attempts. Only for upstreams you own.
    Unlimited,
    /// The AWS-style token bucket (the default).
    TokenBucket(TokenBucketConfig),
    /// The Envoy-style ratio of retries to requests.
    Ratio(RatioBudgetConfig),
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self::TokenBucket(TokenBucketConfig::default())
    }
}

impl BudgetConfig {
    /// Checks the chosen budget's settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::Unlimited => Ok(()),
            Self::TokenBucket(c) => c.validate(),
            Self::Ratio(c) => c.validate(),
        }
    }
}

/// A live budget, shared by every clone of one layer.
// Lives once per layer behind its `Arc`: boxing the large variant would only add a
// pointer chase on every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Budget {
    /// No limit.
    Unlimited,
    /// The AWS-style token bucket.
    TokenBucket(TokenBucket),
    /// The Envoy-style ratio budget.
    Ratio(RatioBudget),
}

impl Budget {
    /// A fresh budget from its configuration.
    pub fn new(config: BudgetConfig, now: Instant) -> Self {
        match config {
            BudgetConfig::Unlimited => Self::Unlimited,
            BudgetConfig::TokenBucket(c) => Self::TokenBucket(TokenBucket::new(c)),
            BudgetConfig::Ratio(c) => Self::Ratio(RatioBudget::new(c, now)),
        }
    }

    /// Counts a new request.
    #[inline]
    pub fn on_request(&self, now: Instant) {
        if let Self::Ratio(r) = self {
            r.deposit(now);
        }
    }

    /// Asks for one retry; `Some(cost)` when granted (the cost is 0 except for the
    /// token bucket).
    pub fn try_acquire(&self, cause: RetryCause, now: Instant) -> Option<u32> {
        match self {
            Self::Unlimited => Some(0),
            Self::TokenBucket(b) => b.try_acquire(cause),
            Self::Ratio(r) => r.try_withdraw(now).then_some(0),
        }
    }

    /// Records a success; `last_retry_cost` as returned by [`try_acquire`](Self::try_acquire)
    /// for the retry that succeeded, 0 for a first attempt.
    #[inline]
    pub fn on_success(&self, last_retry_cost: u32) {
        if let Self::TokenBucket(b) = self {
            b.on_success(last_retry_cost);
        }
    }

    /// Whether a retry would be refused right now (for health reports).
    pub fn is_exhausted(&self, now: Instant) -> bool {
        match self {
            Self::Unlimited => false,
            Self::TokenBucket(b) => b.available() < b.config().retry_cost,
            Self::Ratio(r) => {
                let (requests, retries) = r.counts(now);
                (retries + 1) as f64
                    > f64::from(r.config().floor) + r.config().ratio * requests as f64
            }
        }
    }
}
