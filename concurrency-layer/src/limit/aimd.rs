//! Additive increase, multiplicative decrease: TCP Reno's congestion control, applied to
//! calls in flight (Netflix concurrency-limits `AIMDLimit`).
//!
//! Per window, with `L` the limit:
//!
//! ```text
//! L' = L × backoff_ratio        if a call failed or the mean RTT > latency_threshold
//! L' = L + increase             else, if in_flight ≥ L / 2 (the limit is what holds calls back)
//! L' = L                        else (the caller sends too little for the limit to matter)
//! L  = clamp(L + smoothing × (L' − L), min_limit, max_limit)
//! ```
//!
//! AIMD knows nothing of the no-load latency: it needs a `latency_threshold` that marks
//! "queueing" for this upstream. It saws between `threshold / base RTT × C × backoff_ratio`
//! and the point where the threshold is crossed, so a threshold a little above the
//! upstream's normal latency keeps the limit close to its capacity `C`.

use crate::config::AimdConfig;

use super::{Bounds, Sample, whole};

/// The AIMD limit's state. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Aimd {
    limit: f64,
    bounds: Bounds,
    latency_threshold: std::time::Duration,
    backoff_ratio: f64,
    increase: f64,
}

impl Aimd {
    /// Starts at `initial_limit`, clamped to the configured bounds.
    pub fn new(config: &AimdConfig, initial_limit: usize) -> Self {
        let bounds = Bounds::new(config.min_limit, config.max_limit, config.smoothing);
        Self {
            limit: bounds.start(initial_limit),
            bounds,
            latency_threshold: config.latency_threshold,
            backoff_ratio: config.backoff_ratio,
            increase: config.increase,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        whole(self.limit)
    }

    /// Folds one window in and returns the new limit.
    pub fn update(&mut self, sample: &Sample) -> usize {
        let target = if sample.dropped || sample.rtt > self.latency_threshold {
            self.limit * self.backoff_ratio
        } else if (sample.in_flight as f64) * 2.0 >= self.limit {
            self.limit + self.increase
        } else {
            self.limit
        };
        self.limit = self.bounds.step(self.limit, target);
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::sample;
    use super::*;

    #[test]
    fn grows_by_one_backs_off_by_ratio_and_stays_in_bounds() {
        let config = AimdConfig {
            min_limit: 5,
            max_limit: 12,
            latency_threshold: Duration::from_millis(100),
            ..AimdConfig::default()
        };
        let mut aimd = Aimd::new(&config, 10);
        assert_eq!(aimd.update(&sample(50, 10, false)), 11);
        // Too few calls in flight to say anything about the limit.
        assert_eq!(aimd.update(&sample(50, 2, false)), 11);
        assert_eq!(aimd.update(&sample(50, 11, false)), 12);
        assert_eq!(aimd.update(&sample(50, 12, false)), 12, "max_limit");
        assert_eq!(aimd.update(&sample(150, 12, false)), 10, "12 × 0.9 = 10.8");
        assert_eq!(aimd.update(&sample(50, 10, true)), 9, "a failure backs off");
        for _ in 0..20 {
            aimd.update(&sample(50, 10, true));
        }
        assert_eq!(aimd.limit(), 5, "min_limit");
    }
}
