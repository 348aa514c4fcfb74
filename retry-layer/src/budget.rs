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

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use reliability_core::error::ConfigError;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// What made a retry necessary; timeouts cost more in the token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryCause {
    /// A failed answer or error.
    Error,
    /// The attempt timed out.
    Timeout,
}

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

/// Settings of the [`RatioBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RatioBudgetConfig {
    /// Retries allowed per request, `0.0..=1.0` (Envoy: 0.2).
    pub ratio: f64,
    /// Retries always allowed within a window, whatever the traffic (Envoy: 3).
    pub floor: u32,
    /// How far back requests and retries are counted (tower: 10 s).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for RatioBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            floor: 3,
            window: Duration::from_secs(10),
        }
    }
}

impl RatioBudgetConfig {
    /// Checks `ratio` in `[0, 1]`, `floor <= 1_000_000` and `window` in `[100ms, 1h]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.ratio) {
            return Err(ConfigError::out_of_range(
                "budget.ratio",
                "[0.0, 1.0]",
                self.ratio,
            ));
        }
        if self.floor > 1_000_000 {
            return Err(ConfigError::out_of_range(
                "budget.floor",
                "[0, 1000000]",
                self.floor,
            ));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&self.window) {
            return Err(ConfigError::out_of_range(
                "budget.window",
                "[100ms, 1h]",
                humantime::format_duration(self.window),
            ));
        }
        Ok(())
    }
}

/// Slots the window is cut into: the window slides in steps of `window / SLOTS`.
const SLOTS: usize = 10;

#[derive(Debug, Default)]
struct Slot {
    /// Which step of time this slot currently counts (`u64::MAX`: never used).
    step: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// Retries at most `ratio` of the requests seen in a sliding window, plus a floor.
///
/// Invariant (proptested): at every granted retry, the retries counted in the window,
/// that one included, are at most `floor + ratio * requests` counted in the same window.
#[derive(Debug)]
pub struct RatioBudget {
    config: RatioBudgetConfig,
    origin: Instant,
    step_len: Duration,
    slots: [Slot; SLOTS],
    withdraw: Mutex<()>,
}

impl RatioBudget {
    /// An empty window starting at `now`.
    pub fn new(config: RatioBudgetConfig, now: Instant) -> Self {
        let slots: [Slot; SLOTS] = Default::default();
        for slot in &slots {
            slot.step.store(u64::MAX, Ordering::Relaxed);
        }
        Self {
            config,
            origin: now,
            step_len: (config.window / SLOTS as u32).max(Duration::from_millis(1)),
            slots,
            withdraw: Mutex::new(()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RatioBudgetConfig {
        &self.config
    }

    fn step(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        u64::try_from(since.as_nanos() / self.step_len.as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// The slot counting `step`, emptied first if it still counts an older step.
    fn slot(&self, step: u64) -> &Slot {
        let slot = &self.slots[(step % SLOTS as u64) as usize];
        let seen = slot.step.load(Ordering::Acquire);
        if seen != step
            && (seen == u64::MAX || seen < step)
            && slot
                .step
                .compare_exchange(seen, step, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // A deposit racing with this reset may be lost: that only makes the budget
            // stricter, never looser.
            slot.requests.store(0, Ordering::Release);
            slot.retries.store(0, Ordering::Release);
        }
        slot
    }

    /// Counts one request (a first attempt).
    pub fn deposit(&self, now: Instant) {
        self.slot(self.step(now))
            .requests
            .fetch_add(1, Ordering::AcqRel);
    }

    /// Requests and retries counted in the window ending at `now`.
    pub fn counts(&self, now: Instant) -> (u64, u64) {
        let step = self.step(now);
        let oldest = step.saturating_sub(SLOTS as u64 - 1);
        self.slots
            .iter()
            .filter(|s| {
                let st = s.step.load(Ordering::Acquire);
                st != u64::MAX && st >= oldest && st <= step
            })
            .fold((0, 0), |(req, ret), s| {
                (
                    req + s.requests.load(Ordering::Acquire),
                    ret + s.retries.load(Ordering::Acquire),
                )
            })
    }

    /// Takes one retry if the window has room for it.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        // Retries are the cold path; the lock makes "check, then count" one step so the
        // bound holds under any number of threads.
        let _guard = self
            .withdraw
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (requests, retries) = self.counts(now);
        let allowed = f64::from(self.config.floor) + self.config.ratio * requests as f64;
        if (retries + 1) as f64 > allowed {
            return false;
        }
        self.slot(self.step(now))
            .retries
            .fetch_add(1, Ordering::AcqRel);
        true
    }
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
                (retries + 1) as f64 > f64::from(r.config.floor) + r.config.ratio * requests as f64
            }
        }
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

    #[test]
    fn ratio_rejects_bad_settings() {
        for (c, field) in [
            (
                RatioBudgetConfig {
                    ratio: 1.5,
                    ..Default::default()
                },
                "budget.ratio",
            ),
            (
                RatioBudgetConfig {
                    ratio: f64::NAN,
                    ..Default::default()
                },
                "budget.ratio",
            ),
            (
                RatioBudgetConfig {
                    window: Duration::ZERO,
                    ..Default::default()
                },
                "budget.window",
            ),
        ] {
            assert_eq!(c.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn ratio_floor_then_ratio_then_window_slides() {
        let now = Instant::now();
        let r = RatioBudget::new(RatioBudgetConfig::default(), now);
        assert!((0..3).all(|_| r.try_withdraw(now)), "the floor");
        assert!(!r.try_withdraw(now));
        for _ in 0..10 {
            r.deposit(now);
        }
        assert!(r.try_withdraw(now) && r.try_withdraw(now), "20% of 10");
        assert!(!r.try_withdraw(now));
        let later = now + Duration::from_secs(11);
        assert_eq!(r.counts(later), (0, 0), "the window forgot");
        assert!(r.try_withdraw(later));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Request,
        Retry,
        Tick(u64),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![
                5 => Just(Op::Request),
                5 => Just(Op::Retry),
                1 => (0u64..3_000).prop_map(Op::Tick),
            ],
            1..2_000,
        )
    }

    proptest! {
        /// Over a long random run, at every granted retry the window holds at most
        /// `ratio * requests + floor` retries; and with time standing still (one window),
        /// the whole run obeys `retries <= ratio * requests + floor`.
        #[test]
        fn retries_stay_within_ratio_and_floor(
            ratio in 0.0f64..=1.0,
            floor in 0u32..10,
            ops in ops(),
            frozen in any::<bool>(),
        ) {
            let config = RatioBudgetConfig { ratio, floor, window: Duration::from_secs(10) };
            let start = Instant::now();
            let r = RatioBudget::new(config, start);
            let step = Duration::from_secs(1);
            let mut now = start;
            // Model: (step index, requests, retries) of every event.
            let mut events: Vec<(u64, u64, u64)> = Vec::new();
            let (mut requests, mut retries) = (0u64, 0u64);
            for op in ops {
                let idx = (now - start).as_nanos() as u64 / step.as_nanos() as u64;
                match op {
                    Op::Request => {
                        r.deposit(now);
                        requests += 1;
                        events.push((idx, 1, 0));
                    }
                    Op::Retry => {
                        if r.try_withdraw(now) {
                            retries += 1;
                            events.push((idx, 0, 1));
                            let oldest = idx.saturating_sub(SLOTS as u64 - 1);
                            let (req, ret) = events.iter()
                                .filter(|e| e.0 >= oldest)
                                .fold((0, 0), |a, e| (a.0 + e.1, a.1 + e.2));
                            prop_assert!(ret as f64 <= ratio * req as f64 + f64::from(floor) + 1e-9);
                        }
                    }
                    Op::Tick(ms) if !frozen => now += Duration::from_millis(ms),
                    Op::Tick(_) => {}
                }
            }
            if frozen {
                prop_assert!(retries as f64 <= ratio * requests as f64 + f64::from(floor) + 1e-9);
            }
        }

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
