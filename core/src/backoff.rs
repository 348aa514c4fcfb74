//! How long a Redis link waits between attempts to reconnect or resubscribe while Redis is
//! out of reach: exponential, capped, with "equal jitter".
//!
//! Every instance of a service loses Redis at the same moment (a restart, a failover, a
//! network cut), so without jitter they would all knock again in lockstep. Equal jitter
//! (AWS Architecture Blog, "Exponential Backoff And Jitter") sleeps half the exponential
//! step plus a random part of the other half: the herd spreads out, yet no attempt comes
//! sooner than half the step, so a dead Redis is not hammered by unlucky zero draws as
//! with full jitter. Pure: the random draw is an argument; [`unit_draw`] gives one.
//!
//! ```
//! use std::time::Duration;
//! use reliability_core::backoff::{Backoff, unit_draw};
//!
//! let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
//! let first = backoff.next_delay(unit_draw());
//! assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
//! ```

use std::time::Duration;

/// Exponential back-off from `first` doubling up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    step: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `first` (at most `max`).
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            step: first.min(max),
            max,
        }
    }

    /// The next delay, for a uniform draw `unit` in `[0, 1]` (clamped); in
    /// `[step / 2, step]`, after which the step doubles up to the cap.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        // NaN would panic in `mul_f64`; it counts as the lowest draw.
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let half = self.step / 2;
        let delay = half + half.mul_f64(unit);
        self.step = self.step.saturating_mul(2).min(self.max);
        delay
    }
}

/// A uniform draw in `[0, 1)` for [`Backoff::next_delay`], from the standard library's
/// randomly seeded hasher: different in every process and on every call, with no
/// dependency and no lock. Not for cryptography.
pub fn unit_draw() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap_within_the_jitter_band() {
        let mut b = Backoff::new(100 * MS, 5_000 * MS);
        let lows: Vec<_> = (0..8).map(|_| b.next_delay(0.0)).collect();
        assert_eq!(
            lows,
            [50, 100, 200, 400, 800, 1600, 2500, 2500].map(|ms| ms * MS)
        );
        let mut b = Backoff::new(100 * MS, 5_000 * MS);
        let highs: Vec<_> = (0..8).map(|_| b.next_delay(1.0)).collect();
        assert_eq!(
            highs,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000].map(|ms| ms * MS)
        );
    }

    #[test]
    fn draws_are_in_the_unit_interval_and_vary() {
        let draws: Vec<f64> = (0..1000).map(|_| unit_draw()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let low = draws.iter().filter(|d| **d < 0.5).count();
        assert!((300..700).contains(&low), "{low} of 1000 below one half");
    }

    #[test]
    fn hostile_draws_stay_in_the_band() {
        for unit in [f64::NAN, -1.0, 7.0, f64::INFINITY] {
            let d = Backoff::new(100 * MS, 5_000 * MS).next_delay(unit);
            assert!(d >= 50 * MS && d <= 100 * MS, "{unit}: {d:?}");
        }
    }
}
