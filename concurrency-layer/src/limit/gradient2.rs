//! Netflix concurrency-limits' `Gradient2Limit`: the limit follows the ratio of a long
//! RTT average to the current one.
//!
//! With `L` the limit, `short` the window's RTT and `long` an exponential average of the
//! windows' RTTs over `long_window` windows:
//!
//! ```text
//! gain      = 2 / (long_window + 1), a tenth of it while short > tolerance × long
//! long      = long + (short − long) × gain      (a plain mean over the first 10 windows)
//! long      = long × 0.95       if long / short > 2 (load went away: forget it faster)
//! L'        = L                 if in_flight < L / 2 (the caller sends too little)
//! gradient  = clamp(tolerance × long / short, 0.5, 1)
//! L'        = L × gradient + queue_size
//! L         = clamp(L + smoothing × (L' − L), min_limit, max_limit)
//! ```
//!
//! While the short RTT stays within `tolerance` of the long one, the limit grows by
//! `queue_size` per window (smoothed); once calls queue and the short RTT rises past it,
//! the gradient falls below 1 and the limit shrinks (at most by half per window). Unlike
//! Vegas it needs no no-load RTT, so it follows an upstream whose base latency moves.
//!
//! One departure from Netflix's code, and why: there the long average absorbs every
//! window alike, so a steady overload slowly becomes the new "long" latency and the limit
//! drifts upward with it (the limit settles where `short ≈ tolerance × long`, and `long`
//! follows `short`). Here a window that shows queueing (`short > tolerance × long`) moves
//! the long average at a tenth of the gain: the drift is ten times slower, while an
//! upstream that really got slower is still followed, only more slowly. A failed call counts like any other
//! (as in Netflix's implementation, failures reach Gradient2 only through their latency).

use crate::config::Gradient2Config;

use super::{Bounds, Sample, whole};

/// Windows averaged plainly before the long average turns exponential.
const WARMUP_WINDOWS: u32 = 10;
/// Share of the long average's gain a window gets while it shows queueing.
const QUEUEING_GAIN: f64 = 0.1;

/// The Gradient2 limit's state. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Gradient2 {
    limit: f64,
    bounds: Bounds,
    tolerance: f64,
    queue_size: f64,
    long_gain: f64,
    long_rtt: f64,
    windows: u32,
}

impl Gradient2 {
    /// Starts at `initial_limit`, clamped to the configured bounds.
    pub fn new(config: &Gradient2Config, initial_limit: usize) -> Self {
        let bounds = Bounds::new(config.min_limit, config.max_limit, config.smoothing);
        Self {
            limit: bounds.start(initial_limit),
            bounds,
            tolerance: config.tolerance,
            queue_size: config.queue_size,
            long_gain: 2.0 / (f64::from(config.long_window) + 1.0),
            long_rtt: 0.0,
            windows: 0,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        whole(self.limit)
    }

    /// The long RTT average, seconds (0 before the first window).
    pub fn long_rtt_secs(&self) -> f64 {
        self.long_rtt
    }

    /// Folds one window in and returns the new limit.
    pub fn update(&mut self, sample: &Sample) -> usize {
        let short = sample.rtt.as_secs_f64();
        if short <= 0.0 {
            return self.limit();
        }
        self.windows = self.windows.saturating_add(1);
        if self.windows <= WARMUP_WINDOWS {
            self.long_rtt += (short - self.long_rtt) / f64::from(self.windows);
        } else {
            let queueing = short > self.tolerance * self.long_rtt;
            let gain = if queueing {
                self.long_gain * QUEUEING_GAIN
            } else {
                self.long_gain
            };
            self.long_rtt += (short - self.long_rtt) * gain;
        }
        if self.long_rtt / short > 2.0 {
            self.long_rtt *= 0.95;
        }
        if (sample.in_flight as f64) * 2.0 < self.limit {
            return self.limit();
        }
        let gradient = (self.tolerance * self.long_rtt / short).clamp(0.5, 1.0);
        let target = self.limit * gradient + self.queue_size;
        self.limit = self.bounds.step(self.limit, target);
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sample(rtt_ms: u64, in_flight: usize) -> Sample {
        Sample {
            rtt: Duration::from_millis(rtt_ms),
            in_flight,
            dropped: false,
        }
    }

    #[test]
    fn grows_on_flat_latency_and_halves_at_most_on_a_spike() {
        let config = Gradient2Config {
            smoothing: 1.0,
            ..Gradient2Config::default()
        };
        let mut g = Gradient2::new(&config, 50);
        assert_eq!(g.update(&sample(10, 50)), 54, "gradient 1: + queue_size");
        assert_eq!(g.update(&sample(10, 54)), 58);
        // The RTT jumps tenfold: the gradient is floored at 0.5.
        let before = g.limit() as f64;
        assert_eq!(g.update(&sample(100, 58)), (before * 0.5 + 4.0) as usize);
        // An idle caller does not move it.
        let l = g.limit();
        assert_eq!(g.update(&sample(10, 1)), l);
    }
}
