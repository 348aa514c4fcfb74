//! How long the L2 subscriber waits between attempts to subscribe while Redis is out of
//! reach: exponential, capped, with "equal jitter".
//!
//! Every instance of a service loses Redis at the same moment (a restart, a failover, a
//! network cut), so without jitter they would all knock again in lockstep. Equal jitter
//! (AWS Architecture Blog, "Exponential Backoff And Jitter") sleeps half the exponential
//! step plus a random part of the other half: the herd spreads out, yet no attempt comes
//! sooner than half the step, so a dead Redis is not hammered by unlucky zero draws as
//! with full jitter. Pure: the random draw is an argument.

use std::time::Duration;

/// Exponential back-off from `first` doubling up to `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    step: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self {
            step: first.min(max),
            max,
        }
    }

    /// The next delay, for a uniform draw `unit` in `[0, 1]` (clamped); in
    /// `[step / 2, step]`, after which the step doubles up to the cap.
    pub(crate) fn next_delay(&mut self, unit: f64) -> Duration {
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
    fn hostile_draws_stay_in_the_band() {
        for unit in [f64::NAN, -1.0, 7.0, f64::INFINITY] {
            let d = Backoff::new(100 * MS, 5_000 * MS).next_delay(unit);
            assert!(d >= 50 * MS && d <= 100 * MS, "{unit}: {d:?}");
        }
    }
}
