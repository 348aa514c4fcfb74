//! The AWS SDK standard retry quota.

use std::sync::atomic::{AtomicU32, Ordering};

use reliability_core::error::ConfigError;
use serde::{Deserialize, Serialize};

use super::RetryCause;

/// Settings of the AWS-style [`TokenBucket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenBucketConfig {
    /// Tokens in a full bucket, and at start (AWS: 500).
    pub capacity: u32,
    /// Tokens a retry after an error costs (AWS: 5).
    pub retry_cost: u32,
    /// Tokens a retry after a timeout costs (AWS: 10).
    pub timeout_cost: u32,
    /// Tokens a success without retries puts back (AWS: 1).
    pub success_refund: u32,
}

impl Default for TokenBucketConfig {
    fn default() -> Self {
        Self {
            capacity: 500,
            retry_cost: 5,
            timeout_cost: 10,
            success_refund: 1,
        }
    }
}

impl TokenBucketConfig {
    /// Checks that a retry can ever be paid for: `1 <= retry_cost, timeout_cost <=
    /// capacity <= 1_000_000`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1_000_000).contains(&self.capacity) {
            return Err(ConfigError::out_of_range(
                "budget.capacity",
                "[1, 1000000]",
                self.capacity,
            ));
        }
        let range = format!("[1, capacity = {}]", self.capacity);
        if !(1..=self.capacity).contains(&self.retry_cost) {
            return Err(ConfigError::out_of_range(
                "budget.retry_cost",
                &range,
                self.retry_cost,
            ));
        }
        if !(1..=self.capacity).contains(&self.timeout_cost) {
            return Err(ConfigError::out_of_range(
                "budget.timeout_cost",
                &range,
                self.timeout_cost,
            ));
        }
        Ok(())
    }
}

/// The AWS SDK standard retry quota: a bucket of tokens that retries spend and successes
/// refill.
#[derive(Debug)]
pub struct TokenBucket {
    tokens: AtomicU32,
    config: TokenBucketConfig,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(config: TokenBucketConfig) -> Self {
        Self {
            tokens: AtomicU32::new(config.capacity),
            config,
        }
    }

    /// Tokens left.
    pub fn available(&self) -> u32 {
        self.tokens.load(Ordering::Relaxed)
    }

    /// The settings.
    pub fn config(&self) -> &TokenBucketConfig {
        &self.config
    }

    /// Takes the cost of one retry; `Some(cost)` when the bucket could pay it.
    pub fn try_acquire(&self, cause: RetryCause) -> Option<u32> {
        let cost = match cause {
            RetryCause::Error => self.config.retry_cost,
            RetryCause::Timeout => self.config.timeout_cost,
        };
        self.tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(cost))
            .ok()
            .map(|_| cost)
    }

    /// Records a success. `last_retry_cost` is what the retry that succeeded paid (0 when
    /// the first attempt succeeded): AWS gives that back, and `success_refund` otherwise.
    pub fn on_success(&self, last_retry_cost: u32) {
        let refund = if last_retry_cost > 0 {
            last_retry_cost
        } else {
            self.config.success_refund
        };
        if refund == 0 || self.tokens.load(Ordering::Relaxed) >= self.config.capacity {
            // The common healthy case: a full bucket needs no write, and no cache line
            // bounces between threads.
            return;
        }
        let capacity = self.config.capacity;
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(refund).min(capacity))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_follows_the_aws_quota() {
        let b = TokenBucket::new(TokenBucketConfig::default());
        assert_eq!(b.available(), 500);
        assert_eq!(b.try_acquire(RetryCause::Timeout), Some(10));
        assert_eq!(b.try_acquire(RetryCause::Error), Some(5));
        assert_eq!(b.available(), 485);
        b.on_success(5);
        assert_eq!(b.available(), 490);
        b.on_success(0);
        assert_eq!(b.available(), 491);
        let granted = (0..1000)
            .filter(|_| b.try_acquire(RetryCause::Error).is_some())
            .count();
        assert_eq!(granted, 98);
        assert_eq!(b.available(), 1);
        for _ in 0..10_000 {
            b.on_success(0);
        }
        assert_eq!(b.available(), 500, "refills to capacity, never above");
    }

    #[test]
    fn bucket_rejects_bad_settings() {
        let c = TokenBucketConfig {
            retry_cost: 0,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "budget.retry_cost");
        let c = TokenBucketConfig {
            timeout_cost: 501,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "budget.timeout_cost");
        let c = TokenBucketConfig {
            capacity: 0,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "budget.capacity");
    }

    proptest! {
        /// The bucket never goes below zero nor above capacity, and grants exactly while it
        /// can pay.
        #[test]
        fn bucket_stays_within_capacity(
            capacity in 1u32..1_000,
            ops in proptest::collection::vec(0u8..4, 1..500),
        ) {
            let config = TokenBucketConfig { capacity, retry_cost: 5.min(capacity), timeout_cost: 10.min(capacity), success_refund: 1 };
            let b = TokenBucket::new(config);
            for op in ops {
                let before = b.available();
                match op {
                    0 => { let got = b.try_acquire(RetryCause::Error); prop_assert_eq!(got.is_some(), before >= config.retry_cost); }
                    1 => { let got = b.try_acquire(RetryCause::Timeout); prop_assert_eq!(got.is_some(), before >= config.timeout_cost); }
                    2 => b.on_success(0),
                    _ => b.on_success(config.retry_cost),
                }
                prop_assert!(b.available() <= capacity);
            }
        }
    }
}
