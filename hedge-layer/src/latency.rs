//! The live hedge delay: a latency percentile of the layer's own answers over a rolling
//! window.
//!
//! A fixed delay is right for one upstream on one day. A percentile follows the upstream:
//! hedging at p95 means "send a copy once this call is slower than 19 calls in 20", so
//! about 5 % of calls are hedged whatever the upstream's speed. The window keeps two
//! HdrHistograms, the current one and the one before it; the percentile is read from
//! the current one once it holds `min_samples`, else from the previous one, else there is
//! no delay yet and nothing is hedged (a percentile of ten calls is noise). The result is
//! held between `floor` and `ceiling`.
//!
//! Latencies are recorded in microseconds with two significant digits (1 % resolution),
//! up to one hour; longer ones count as one hour. The percentile is recomputed every
//! [`REFRESH_EVERY`] samples and at each rotation, not on every read.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use hedge_layer::latency::LatencyWindow;
//! use tokio::time::Instant;
//!
//! let now = Instant::now();
//! let ms = Duration::from_millis;
//! let mut window = LatencyWindow::new(95.0, Duration::from_secs(10), 100, ms(1), ms(500));
//! for i in 0..100 {
//!     window.record(now, if i < 96 { ms(10) } else { ms(900) });
//! }
//! let delay = window.delay().unwrap();
//! assert!(delay >= ms(10) && delay < ms(11), "{delay:?}");
//! ```

use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// How many samples pass between two readings of the percentile.
pub const REFRESH_EVERY: u64 = 32;

/// The largest latency tracked, in microseconds (one hour).
const MAX_MICROS: u64 = 3_600_000_000;

/// A rolling-window latency percentile (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct LatencyWindow {
    quantile: f64,
    window: Duration,
    min_samples: u64,
    floor: Duration,
    ceiling: Duration,
    current: Histogram<u64>,
    previous: Histogram<u64>,
    rotated_at: Option<Instant>,
    since_refresh: u64,
    delay: Option<Duration>,
}

impl LatencyWindow {
    /// A window reading the `percentile` (in `(0, 100]`) of the last one to two `window`s,
    /// once `min_samples` are in, held within `[floor, ceiling]`.
    pub fn new(
        percentile: f64,
        window: Duration,
        min_samples: u64,
        floor: Duration,
        ceiling: Duration,
    ) -> Self {
        let histogram = || {
            // Bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low,
            // sigfig <= 5), so this cannot fail; `new(2)` is the unbounded fallback.
            Histogram::new_with_bounds(1, MAX_MICROS, 2)
                .or_else(|_| Histogram::new(2))
                .unwrap_or_else(|_| unreachable!("two significant digits are always valid"))
        };
        Self {
            quantile: (percentile / 100.0).clamp(0.0, 1.0),
            window,
            min_samples: min_samples.max(1),
            floor,
            ceiling: ceiling.max(floor),
            current: histogram(),
            previous: histogram(),
            rotated_at: None,
            since_refresh: 0,
            delay: None,
        }
    }

    /// Records one answer's latency, seen at `now`.
    pub fn record(&mut self, now: Instant, latency: Duration) {
        self.rotate(now);
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        self.current.saturating_record(micros);
        self.since_refresh += 1;
        if self.since_refresh >= REFRESH_EVERY || self.delay.is_none() {
            self.refresh();
        }
    }

    /// Starts a new window once the current one is `window` old: the current histogram
    /// becomes the previous one.
    pub fn rotate(&mut self, now: Instant) {
        let started = *self.rotated_at.get_or_insert(now);
        if now.saturating_duration_since(started) < self.window {
            return;
        }
        std::mem::swap(&mut self.current, &mut self.previous);
        self.current.reset();
        self.rotated_at = Some(now);
        self.refresh();
    }

    /// The hedge delay: the percentile within `[floor, ceiling]`, or `None` while fewer
    /// than `min_samples` answers are in either histogram.
    pub fn delay(&self) -> Option<Duration> {
        self.delay
    }

    /// Samples in the current and the previous histogram.
    pub fn samples(&self) -> (u64, u64) {
        (self.current.len(), self.previous.len())
    }

    fn refresh(&mut self) {
        self.since_refresh = 0;
        let source = if self.current.len() >= self.min_samples {
            &self.current
        } else if self.previous.len() >= self.min_samples {
            &self.previous
        } else {
            self.delay = None;
            return;
        };
        let micros = source.value_at_quantile(self.quantile);
        self.delay = Some(Duration::from_micros(micros).clamp(self.floor, self.ceiling));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_delay_before_min_samples() {
        let now = Instant::now();
        let mut w = LatencyWindow::new(95.0, ms(1_000), 10, ms(1), ms(100));
        for _ in 0..9 {
            w.record(now, ms(5));
            assert_eq!(w.delay(), None);
        }
        w.record(now, ms(5));
        assert!(w.delay().is_some());
    }

    #[test]
    fn rotation_forgets_old_windows() {
        let now = Instant::now();
        let mut w = LatencyWindow::new(50.0, ms(1_000), 10, ms(1), ms(10_000));
        for _ in 0..100 {
            w.record(now, ms(200));
        }
        assert!(w.delay().unwrap() >= ms(200));
        // The next window is fast: once it holds enough samples it decides.
        let later = now + ms(1_000);
        for _ in 0..100 {
            w.record(later, ms(20));
        }
        assert!(w.delay().unwrap() < ms(21));
        // Two windows later with no samples at all, nothing is known.
        w.rotate(later + ms(1_000));
        assert!(
            w.delay().is_some(),
            "the previous window still holds samples"
        );
        w.rotate(later + ms(2_000));
        assert_eq!(w.delay(), None);
    }

    proptest! {
        /// The delay always lies within `[floor, ceiling]`, whatever was recorded.
        #[test]
        fn delay_within_floor_and_ceiling(
            samples in proptest::collection::vec((0u64..10_000_000, 0u64..5_000), 1..400),
            percentile in 1.0f64..=100.0,
            floor_ms in 0u64..50,
            span_ms in 0u64..5_000,
        ) {
            let start = Instant::now();
            let (floor, ceiling) = (ms(floor_ms), ms(floor_ms + span_ms));
            let mut w = LatencyWindow::new(percentile, ms(1_000), 20, floor, ceiling);
            let mut at = start;
            for (micros, step_ms) in samples {
                at += ms(step_ms / 100);
                w.record(at, Duration::from_micros(micros));
                if let Some(d) = w.delay() {
                    prop_assert!(d >= floor && d <= ceiling, "{d:?}");
                }
            }
        }
    }
}
