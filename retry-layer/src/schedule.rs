//! The pure decision core: given a failure, retry when, or stop why.
//!
//! No I/O, no async, no shared state: a [`Schedule`] holds the limits, an [`Attempts`]
//! value the progress of one request, and [`Attempts::on_failure`] takes `now` and a
//! random generator. The tower shell calls it; the property tests hammer it.
//!
//! Rules, in order:
//!
//! 1. permanent and critical failures stop at once;
//! 2. the attempt count stops at `max_attempts`;
//! 3. the first transient failure of a request is retried at once (a blip); later ones
//!    are treated as recoverable;
//! 4. a recoverable failure waits `max(backoff, retry_after)`, where `retry_after` (an
//!    upstream's `Retry-After`) is first clamped to `max_retry_after`;
//! 5. a retry whose wait would end after `max_elapsed` (counted from the first attempt)
//!    is not made: the total time spent never exceeds it.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use rand::SeedableRng;
//! use reliability_core::classify::RetryClass;
//! use retry_layer::backoff::Backoff;
//! use retry_layer::schedule::{Attempts, Decision, Schedule, StopReason};
//!
//! let schedule = Schedule::new(3, Backoff::constant(Duration::from_millis(100)));
//! let start = tokio::time::Instant::now();
//! let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
//! let mut attempts = Attempts::new(start);
//! let first = attempts.on_failure(&schedule, RetryClass::Recoverable, None, start, &mut rng);
//! assert_eq!(first, Decision::Retry { delay: Duration::from_millis(100) });
//! attempts.begin_retry();
//! attempts.on_failure(&schedule, RetryClass::Recoverable, None, start, &mut rng);
//! attempts.begin_retry();
//! let last = attempts.on_failure(&schedule, RetryClass::Recoverable, None, start, &mut rng);
//! assert_eq!(last, Decision::Stop(StopReason::AttemptsExhausted));
//! ```

use std::time::Duration;

use rand::Rng;
use reliability_core::classify::RetryClass;
use tokio::time::Instant;

use crate::backoff::Backoff;

/// The limits of a retry sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Attempts in total, the first included (1 disables retries).
    pub max_attempts: u32,
    /// The waiting rule.
    pub backoff: Backoff,
    /// No retry starts later than this after the first attempt began.
    pub max_elapsed: Option<Duration>,
    /// Upstream-requested delays are clamped to this.
    pub max_retry_after: Duration,
}

impl Schedule {
    /// `max_attempts` attempts with `backoff`, no elapsed limit, `Retry-After` clamped to
    /// 60 s.
    pub const fn new(max_attempts: u32, backoff: Backoff) -> Self {
        Self {
            max_attempts,
            backoff,
            max_elapsed: None,
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait `delay`, then try again.
    Retry {
        /// The wait.
        delay: Duration,
    },
    /// Give the failure to the caller.
    Stop(StopReason),
}

/// Why a request stopped being retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The failure cannot be fixed by retrying (a permanent or "do not retry" error).
    NotRetryable,
    /// The failure is critical: never retried, reported.
    Critical,
    /// The request cannot be replayed (a streamed body over the buffer cap, a
    /// non-idempotent method).
    NotReplayable,
    /// Every allowed attempt was made.
    AttemptsExhausted,
    /// The next wait would end past `max_elapsed`.
    ElapsedExhausted,
    /// The retry budget had no room for another retry.
    BudgetExhausted,
    /// The overall deadline passed.
    DeadlineExceeded,
}

impl StopReason {
    /// Whether the request was given up on while still failing for a retryable reason:
    /// these go to the dead-letter sink and count as give-ups.
    pub fn is_give_up(self) -> bool {
        matches!(
            self,
            Self::AttemptsExhausted
                | Self::ElapsedExhausted
                | Self::BudgetExhausted
                | Self::DeadlineExceeded
        )
    }

    /// `snake_case` name, as stored in dead letters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotRetryable => "not_retryable",
            Self::Critical => "critical",
            Self::NotReplayable => "not_replayable",
            Self::AttemptsExhausted => "attempts_exhausted",
            Self::ElapsedExhausted => "elapsed_exhausted",
            Self::BudgetExhausted => "budget_exhausted",
            Self::DeadlineExceeded => "deadline_exceeded",
        }
    }
}

/// The progress of one request through its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    started: Instant,
    made: u32,
    backoff_retries: u32,
    previous_delay: Duration,
    transient_used: bool,
}

impl Attempts {
    /// A request whose first attempt starts at `started`.
    pub const fn new(started: Instant) -> Self {
        Self {
            started,
            made: 1,
            backoff_retries: 0,
            previous_delay: Duration::ZERO,
            transient_used: false,
        }
    }

    /// Attempts made so far, the first included.
    pub const fn made(&self) -> u32 {
        self.made
    }

    /// When the first attempt started.
    pub const fn started(&self) -> Instant {
        self.started
    }

    /// Decides what follows a failed attempt that ended at `now`. When the caller goes
    /// ahead with a `Retry`, it calls [`begin_retry`](Self::begin_retry).
    pub fn on_failure<R: Rng + ?Sized>(
        &mut self,
        schedule: &Schedule,
        class: RetryClass,
        retry_after: Option<Duration>,
        now: Instant,
        rng: &mut R,
    ) -> Decision {
        let delay = match class {
            RetryClass::Permanent => return Decision::Stop(StopReason::NotRetryable),
            RetryClass::Critical => return Decision::Stop(StopReason::Critical),
            _ if self.made >= schedule.max_attempts => {
                return Decision::Stop(StopReason::AttemptsExhausted);
            }
            RetryClass::Transient if !self.transient_used && retry_after.is_none() => {
                self.transient_used = true;
                Duration::ZERO
            }
            RetryClass::Transient | RetryClass::Recoverable => {
                let backoff =
                    schedule
                        .backoff
                        .delay(self.backoff_retries, self.previous_delay, rng);
                self.backoff_retries = self.backoff_retries.saturating_add(1);
                self.previous_delay = backoff;
                retry_after.map_or(backoff, |asked| {
                    backoff.max(asked.min(schedule.max_retry_after))
                })
            }
        };
        if let Some(max) = schedule.max_elapsed {
            let spent = now.saturating_duration_since(self.started);
            if spent.saturating_add(delay) > max {
                return Decision::Stop(StopReason::ElapsedExhausted);
            }
        }
        Decision::Retry { delay }
    }

    /// Counts the retry the last `Retry` decision allowed as made.
    pub fn begin_retry(&mut self) {
        self.made = self.made.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Jitter;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    const MS: Duration = Duration::from_millis(1);

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(11)
    }

    #[test]
    fn permanent_and_critical_stop_at_once() {
        let s = Schedule::new(5, Backoff::default());
        let now = Instant::now();
        let mut a = Attempts::new(now);
        assert_eq!(
            a.on_failure(&s, RetryClass::Permanent, None, now, &mut rng()),
            Decision::Stop(StopReason::NotRetryable)
        );
        assert_eq!(
            a.on_failure(&s, RetryClass::Critical, None, now, &mut rng()),
            Decision::Stop(StopReason::Critical)
        );
        assert_eq!(a.made(), 1);
    }

    #[test]
    fn transient_retries_at_once_only_once() {
        let s = Schedule::new(5, Backoff::constant(300 * MS));
        let now = Instant::now();
        let mut a = Attempts::new(now);
        let mut r = rng();
        assert_eq!(
            a.on_failure(&s, RetryClass::Transient, None, now, &mut r),
            Decision::Retry {
                delay: Duration::ZERO
            }
        );
        assert_eq!(
            a.on_failure(&s, RetryClass::Transient, None, now, &mut r),
            Decision::Retry { delay: 300 * MS }
        );
    }

    #[test]
    fn retry_after_raises_the_delay_and_is_clamped() {
        let mut s = Schedule::new(5, Backoff::constant(100 * MS));
        s.max_retry_after = Duration::from_secs(2);
        let now = Instant::now();
        let mut a = Attempts::new(now);
        let mut r = rng();
        let asked = Some(Duration::from_secs(1));
        assert_eq!(
            a.on_failure(&s, RetryClass::Recoverable, asked, now, &mut r),
            Decision::Retry { delay: 1000 * MS }
        );
        let hostile = Some(Duration::from_secs(86_400));
        assert_eq!(
            a.on_failure(&s, RetryClass::Recoverable, hostile, now, &mut r),
            Decision::Retry { delay: 2000 * MS }
        );
        let small = Some(Duration::from_millis(1));
        assert_eq!(
            a.on_failure(&s, RetryClass::Recoverable, small, now, &mut r),
            Decision::Retry { delay: 100 * MS }
        );
    }

    #[test]
    fn max_elapsed_refuses_a_wait_that_ends_too_late() {
        let mut s = Schedule::new(10, Backoff::constant(400 * MS));
        s.max_elapsed = Some(Duration::from_secs(1));
        let start = Instant::now();
        let mut a = Attempts::new(start);
        let mut r = rng();
        assert!(matches!(
            a.on_failure(&s, RetryClass::Recoverable, None, start + 500 * MS, &mut r),
            Decision::Retry { .. }
        ));
        assert_eq!(
            a.on_failure(&s, RetryClass::Recoverable, None, start + 700 * MS, &mut r),
            Decision::Stop(StopReason::ElapsedExhausted)
        );
    }

    #[test]
    fn one_attempt_means_no_retry() {
        let s = Schedule::new(1, Backoff::default());
        let now = Instant::now();
        assert_eq!(
            Attempts::new(now).on_failure(&s, RetryClass::Transient, None, now, &mut rng()),
            Decision::Stop(StopReason::AttemptsExhausted)
        );
    }

    proptest! {
        /// Whatever the attempts cost and whatever the upstream asks, the time from the
        /// first attempt to the start of the last one never exceeds `max_elapsed`, and the
        /// attempts never exceed `max_attempts`.
        #[test]
        fn total_elapsed_never_exceeds_the_max(
            max_attempts in 1u32..20,
            base_ms in 1u32..500,
            cap_ms in 500u32..5_000,
            jitter in prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal), Just(Jitter::Decorrelated)],
            max_elapsed_ms in 0u32..10_000,
            attempt_costs in proptest::collection::vec(0u32..2_000, 20),
            retry_after in proptest::collection::vec(proptest::option::of(0u32..100_000), 20),
            transient in proptest::collection::vec(any::<bool>(), 20),
            seed in any::<u64>(),
        ) {
            let mut s = Schedule::new(max_attempts, Backoff::exponential(base_ms * MS, cap_ms * MS, jitter));
            s.max_elapsed = Some(max_elapsed_ms * MS);
            let start = Instant::now();
            let mut now = start;
            let mut a = Attempts::new(start);
            let mut r = SmallRng::seed_from_u64(seed);
            for i in 0..20 {
                now += attempt_costs[i] * MS;
                let class = if transient[i] { RetryClass::Transient } else { RetryClass::Recoverable };
                match a.on_failure(&s, class, retry_after[i].map(|ms| ms * MS), now, &mut r) {
                    Decision::Retry { delay } => {
                        a.begin_retry();
                        now += delay;
                        prop_assert!(now - start <= max_elapsed_ms * MS);
                        prop_assert!(delay <= cap_ms.max(60_000) * MS);
                    }
                    Decision::Stop(_) => break,
                }
            }
            prop_assert!(a.made() <= max_attempts);
        }
    }
}
