//! [`SampleWindow`]: many finished calls folded into one [`Sample`].

use std::time::Duration;

use reliability_core::clock::Instant;

use super::Sample;

/// Averages the calls that finish within a window, as Netflix's `WindowedLimit` does with
/// its `AverageSampleWindow`.
///
/// A window opens with its first call and closes on the first call that finds it at least
/// `duration` old **and** holding at least `min_samples` calls: a quiet upstream does not
/// move the limit on one or two calls, and a busy one moves it about once per `duration`.
#[derive(Debug, Clone)]
pub struct SampleWindow {
    duration: Duration,
    min_samples: u32,
    opened: Option<Instant>,
    count: u32,
    rtt_sum: Duration,
    max_in_flight: usize,
    dropped: bool,
}

impl SampleWindow {
    /// Windows at least `duration` long and `min_samples` calls (at least 1) large.
    pub fn new(duration: Duration, min_samples: u32) -> Self {
        Self {
            duration,
            min_samples: min_samples.max(1),
            opened: None,
            count: 0,
            rtt_sum: Duration::ZERO,
            max_in_flight: 0,
            dropped: false,
        }
    }

    /// Adds one call; returns the window's sample when this call closes it.
    pub fn record(
        &mut self,
        now: Instant,
        rtt: Duration,
        in_flight: usize,
        dropped: bool,
    ) -> Option<Sample> {
        let opened = *self.opened.get_or_insert(now);
        self.count = self.count.saturating_add(1);
        self.rtt_sum = self.rtt_sum.saturating_add(rtt);
        self.max_in_flight = self.max_in_flight.max(in_flight);
        self.dropped |= dropped;
        if self.count < self.min_samples || now.saturating_duration_since(opened) < self.duration {
            return None;
        }
        let sample = Sample {
            rtt: self.rtt_sum / self.count,
            in_flight: self.max_in_flight,
            dropped: self.dropped,
        };
        *self = Self::new(self.duration, self.min_samples);
        Some(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_on_time_and_count_and_averages() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = SampleWindow::new(ms(100), 3);
        assert_eq!(w.record(t0, ms(10), 4, false), None);
        // Old enough, but only two calls.
        assert_eq!(w.record(t0 + ms(200), ms(20), 9, false), None);
        let s = w.record(t0 + ms(200), ms(30), 2, true).unwrap();
        assert_eq!(
            s,
            Sample {
                rtt: ms(20),
                in_flight: 9,
                dropped: true
            }
        );
        // A fresh window: three calls, but not yet 100 ms old.
        for i in 0..5 {
            assert_eq!(w.record(t0 + ms(210 + i), ms(1), 1, false), None);
        }
        assert!(w.record(t0 + ms(310), ms(1), 1, false).is_some());
    }
}
