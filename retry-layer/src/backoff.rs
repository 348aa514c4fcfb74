//! Backoff: how long to wait before each retry.
//!
//! The exponential forms follow the AWS Architecture Blog's "Exponential Backoff And
//! Jitter" word for word (`retry` counts retries from 0, `base` and `cap` are durations):
//!
//! | jitter | delay |
//! |---|---|
//! | none | `min(cap, base * 2^retry)` |
//! | full | `random_between(0, min(cap, base * 2^retry))` |
//! | equal | `t = min(cap, base * 2^retry); t/2 + random_between(0, t/2)` |
//! | decorrelated | `min(cap, random_between(base, previous * 3))`, `previous` starting at `base` |
//!
//! Full jitter spreads a herd of clients best and is the default; decorrelated jitter keeps
//! some memory of the previous delay, which is what Polly's "decorrelated jitter" also
//! aims for. The randomness is passed in, so a seeded generator makes every delay
//! reproducible.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use rand::SeedableRng;
//! use retry_layer::backoff::{Backoff, Jitter};
//!
//! let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(2), Jitter::Full);
//! let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
//! let delay = backoff.delay(3, Duration::ZERO, &mut rng);
//! let (low, high) = backoff.bounds(3, Duration::ZERO);
//! assert!(low <= delay && delay <= high);
//! assert_eq!(high, Duration::from_millis(800));
//! ```

use std::time::Duration;

use rand::Rng;
use reliability_core::error::ConfigError;
use serde::{Deserialize, Serialize};

/// How a delay is randomised (AWS Architecture Blog definitions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// `min(cap, base * 2^retry)`: every client waits the same, so a herd stays a herd.
    None,
    /// `random_between(0, min(cap, base * 2^retry))`.
    #[default]
    Full,
    /// Half the exponential delay, plus a random half.
    Equal,
    /// `min(cap, random_between(base, previous * 3))`.
    Decorrelated,
}

/// The waiting rule between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Backoff {
    /// The same delay before every retry.
    Constant {
        /// The delay.
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
    /// A delay that doubles from `base` up to `cap`, randomised by `jitter`.
    Exponential {
        /// The first retry's (unjittered) delay.
        #[serde(with = "humantime_serde")]
        base: Duration,
        /// No delay is ever longer.
        #[serde(with = "humantime_serde")]
        cap: Duration,
        /// How the delay is randomised.
        #[serde(default)]
        jitter: Jitter,
    },
}

impl Default for Backoff {
    /// Exponential from 100 ms to 10 s with full jitter.
    fn default() -> Self {
        Self::exponential(
            Duration::from_millis(100),
            Duration::from_secs(10),
            Jitter::Full,
        )
    }
}

impl Backoff {
    /// The same `delay` before every retry.
    pub const fn constant(delay: Duration) -> Self {
        Self::Constant { delay }
    }

    /// Exponential backoff from `base`, capped at `cap`.
    pub const fn exponential(base: Duration, cap: Duration, jitter: Jitter) -> Self {
        Self::Exponential { base, cap, jitter }
    }

    /// The longest delay this backoff can produce.
    pub fn cap(&self) -> Duration {
        match *self {
            Self::Constant { delay } => delay,
            Self::Exponential { cap, .. } => cap,
        }
    }

    /// Checks the settings: `base <= cap`, and `cap` at most a day.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const DAY: Duration = Duration::from_secs(86_400);
        match *self {
            Self::Constant { delay } if delay > DAY => Err(ConfigError::out_of_range(
                "backoff.delay",
                "[0s, 1day]",
                humantime::format_duration(delay),
            )),
            Self::Exponential { cap, .. } if cap > DAY => Err(ConfigError::out_of_range(
                "backoff.cap",
                "[0s, 1day]",
                humantime::format_duration(cap),
            )),
            Self::Exponential { base, cap, .. } if base > cap => Err(ConfigError::new(
                "backoff.base",
                format!(
                    "must not exceed `backoff.cap` ({}), got {}",
                    humantime::format_duration(cap),
                    humantime::format_duration(base)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The delay before retry number `retry` (0 for the first retry). `previous` is the
    /// delay before the previous retry (`Duration::ZERO` for the first); only decorrelated
    /// jitter reads it.
    pub fn delay<R: Rng + ?Sized>(&self, retry: u32, previous: Duration, rng: &mut R) -> Duration {
        let (low, high) = self.bounds(retry, previous);
        random_between(low, high, rng)
    }

    /// The smallest and largest delay [`delay`](Self::delay) can return for these
    /// arguments. The largest never exceeds the cap.
    pub fn bounds(&self, retry: u32, previous: Duration) -> (Duration, Duration) {
        match *self {
            Self::Constant { delay } => (delay, delay),
            Self::Exponential { base, cap, jitter } => {
                let exp = exponential(base, cap, retry);
                match jitter {
                    Jitter::None => (exp, exp),
                    Jitter::Full => (Duration::ZERO, exp),
                    // `t/2 + random_between(0, t/2)`: the upper end is `t/2 + t/2`, which
                    // rounds down to at most `t` for odd nanosecond counts.
                    Jitter::Equal => (exp / 2, exp / 2 + exp / 2),
                    Jitter::Decorrelated => {
                        let low = base.min(cap);
                        let previous = if previous.is_zero() { base } else { previous };
                        let high = previous.saturating_mul(3).max(low).min(cap);
                        (low, high)
                    }
                }
            }
        }
    }
}

/// `min(cap, base * 2^retry)` without overflow.
fn exponential(base: Duration, cap: Duration, retry: u32) -> Duration {
    // 2^31 already overflows any cap of a day from a base of one nanosecond... almost; the
    // saturating multiply covers the rest.
    base.saturating_mul(1u32 << retry.min(31)).min(cap)
}

/// A uniformly random duration in `[low, high]`, at nanosecond resolution.
fn random_between<R: Rng + ?Sized>(low: Duration, high: Duration, rng: &mut R) -> Duration {
    if high <= low {
        return low;
    }
    let low_ns = nanos(low);
    let high_ns = nanos(high);
    Duration::from_nanos(rng.random_range(low_ns..=high_ns))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn no_jitter_doubles_up_to_the_cap() {
        let b = Backoff::exponential(100 * MS, 1000 * MS, Jitter::None);
        let mut rng = SmallRng::seed_from_u64(1);
        let delays: Vec<_> = (0..6)
            .map(|r| b.delay(r, Duration::ZERO, &mut rng))
            .collect();
        assert_eq!(
            delays,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
    }

    #[test]
    fn constant_is_constant() {
        let b = Backoff::constant(250 * MS);
        let mut rng = SmallRng::seed_from_u64(1);
        assert!((0..10).all(|r| b.delay(r, 250 * MS, &mut rng) == 250 * MS));
    }

    #[test]
    fn full_jitter_spreads_over_zero_to_exp() {
        let b = Backoff::exponential(100 * MS, 10_000 * MS, Jitter::Full);
        let mut rng = SmallRng::seed_from_u64(2);
        let delays: Vec<_> = (0..2000)
            .map(|_| b.delay(3, Duration::ZERO, &mut rng))
            .collect();
        assert!(delays.iter().all(|d| *d <= 800 * MS));
        assert!(delays.iter().any(|d| *d < 100 * MS), "reaches the low end");
        assert!(delays.iter().any(|d| *d > 700 * MS), "reaches the high end");
    }

    #[test]
    fn equal_jitter_keeps_half() {
        let b = Backoff::exponential(100 * MS, 10_000 * MS, Jitter::Equal);
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..1000 {
            let d = b.delay(2, Duration::ZERO, &mut rng);
            assert!((200 * MS..=400 * MS).contains(&d), "{d:?}");
        }
    }

    #[test]
    fn decorrelated_grows_from_previous() {
        let b = Backoff::exponential(100 * MS, 5000 * MS, Jitter::Decorrelated);
        let mut rng = SmallRng::seed_from_u64(4);
        let mut previous = Duration::ZERO;
        for retry in 0..50 {
            let d = b.delay(retry, previous, &mut rng);
            let upper = if previous.is_zero() {
                300 * MS
            } else {
                (previous * 3).min(5000 * MS)
            };
            assert!(
                d >= 100 * MS && d <= upper.max(100 * MS),
                "{d:?} after {previous:?}"
            );
            previous = d;
        }
    }

    #[test]
    fn seeded_generators_repeat() {
        let b = Backoff::default();
        let run = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..8)
                .map(|r| b.delay(r, Duration::ZERO, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        let b = Backoff::exponential(
            Duration::from_secs(3600),
            Duration::from_secs(86_400),
            Jitter::None,
        );
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(
            b.delay(u32::MAX, Duration::MAX, &mut rng),
            Duration::from_secs(86_400)
        );
        let d = Backoff::exponential(MS, Duration::from_secs(86_400), Jitter::Decorrelated);
        assert!(d.delay(7, Duration::MAX, &mut rng) <= Duration::from_secs(86_400));
    }

    #[test]
    fn validation_names_fields() {
        let e = Backoff::exponential(2000 * MS, 1000 * MS, Jitter::Full)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "backoff.base");
        let e = Backoff::constant(Duration::from_secs(100_000))
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "backoff.delay");
        assert!(Backoff::default().validate().is_ok());
    }

    #[test]
    fn deserializes_from_toml_like_json() {
        let b: Backoff = serde_json::from_str(
            r#"{"kind":"exponential","base":"50ms","cap":"2s","jitter":"decorrelated"}"#,
        )
        .unwrap();
        assert_eq!(
            b,
            Backoff::exponential(50 * MS, 2000 * MS, Jitter::Decorrelated)
        );
    }

    fn any_backoff() -> impl Strategy<Value = Backoff> {
        let jitter = prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated)
        ];
        prop_oneof![
            (0u32..10_000).prop_map(|ms| Backoff::constant(ms * MS)),
            (0u32..5_000, 0u32..60_000, jitter).prop_map(|(base, extra, jitter)| {
                Backoff::exponential(base * MS, (base + extra) * MS, jitter)
            }),
        ]
    }

    proptest! {
        /// Every delay lies inside its jitter formula's bounds and never above the cap,
        /// along a whole sequence of retries (decorrelated jitter feeds on its previous).
        #[test]
        fn delays_inside_formula_bounds_and_cap(
            backoff in any_backoff(),
            seed in any::<u64>(),
            retries in 1u32..64,
        ) {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut previous = Duration::ZERO;
            for retry in 0..retries {
                let d = backoff.delay(retry, previous, &mut rng);
                prop_assert!(d <= backoff.cap(), "{d:?} above cap {:?}", backoff.cap());
                if let Backoff::Exponential { base, cap, jitter } = backoff {
                    let t = base.saturating_mul(1u32 << retry.min(31)).min(cap);
                    match jitter {
                        Jitter::None => prop_assert_eq!(d, t),
                        Jitter::Full => prop_assert!(d <= t),
                        Jitter::Equal => prop_assert!(d >= t / 2 && d <= t),
                        Jitter::Decorrelated => {
                            let prev = if previous.is_zero() { base } else { previous };
                            prop_assert!(d >= base.min(cap));
                            prop_assert!(d <= (prev * 3).max(base).min(cap));
                        }
                    }
                }
                previous = d;
            }
        }
    }
}
