//! TCP Vegas (Brakmo & Peterson, "TCP Vegas: End to End Congestion Avoidance on a Global
//! Internet", 1994), applied to calls in flight as Netflix concurrency-limits'
//! `VegasLimit` does.
//!
//! Vegas estimates how many calls are *queued* at the upstream rather than served, from
//! the no-load RTT (the smallest seen) and the window's RTT. With `L` the limit and
//! `log = max(1, log10 L)`:
//!
//! ```text
//! queue = L × (1 − rtt_noload / rtt)
//! L' = L − log                  if a call failed
//! L' = L                        if in_flight < L / 2 (the caller sends too little)
//! L' = L + beta × log           if queue ≤ log        (nothing queues: grow fast)
//! L' = L + log                  if queue < alpha × log
//! L' = L − log                  if queue > beta × log
//! L' = L                        else                  (alpha·log ≤ queue ≤ beta·log)
//! L  = clamp(L + smoothing × (L' − L), min_limit, max_limit)
//! ```
//!
//! So the limit settles where between `alpha·log` and `beta·log` calls wait upstream:
//! a few calls above its capacity, enough to keep it busy. The no-load RTT only ever
//! falls; an upstream that got permanently slower reads as congested until a new
//! limiter is built.

use std::time::Duration;

use crate::config::VegasConfig;

use super::{Bounds, Sample, log10_step, whole};

/// The Vegas limit's state. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Vegas {
    limit: f64,
    bounds: Bounds,
    alpha: f64,
    beta: f64,
    rtt_noload: Option<Duration>,
}

impl Vegas {
    /// Starts at `initial_limit`, clamped to the configured bounds.
    pub fn new(config: &VegasConfig, initial_limit: usize) -> Self {
        let bounds = Bounds::new(config.min_limit, config.max_limit, config.smoothing);
        Self {
            limit: bounds.start(initial_limit),
            bounds,
            alpha: config.alpha,
            beta: config.beta,
            rtt_noload: None,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        whole(self.limit)
    }

    /// The smallest window RTT seen: Vegas's no-load latency.
    pub fn rtt_noload(&self) -> Option<Duration> {
        self.rtt_noload
    }

    /// Folds one window in and returns the new limit.
    pub fn update(&mut self, sample: &Sample) -> usize {
        if sample.rtt.is_zero() {
            return self.limit();
        }
        let noload = self.rtt_noload.map_or(sample.rtt, |n| n.min(sample.rtt));
        self.rtt_noload = Some(noload);
        let l = self.limit;
        let log = log10_step(l);
        let target = if sample.dropped {
            l - log
        } else if (sample.in_flight as f64) * 2.0 < l {
            return self.limit();
        } else {
            let queue = l * (1.0 - noload.as_secs_f64() / sample.rtt.as_secs_f64());
            if queue <= log {
                l + self.beta * log
            } else if queue < self.alpha * log {
                l + log
            } else if queue > self.beta * log {
                l - log
            } else {
                l
            }
        };
        self.limit = self.bounds.step(l, target);
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample;
    use super::*;

    #[test]
    fn grows_while_nothing_queues_and_shrinks_when_much_does() {
        let mut vegas = Vegas::new(&VegasConfig::default(), 100);
        // No queue: + beta × log10(100) = + 12.
        assert_eq!(vegas.update(&sample(10, 100, false)), 112);
        // RTT doubled: half the calls queue, far above beta × log.
        assert_eq!(vegas.update(&sample(20, 112, false)), 109);
        // Queue of ~ 4 = between log and alpha·log (2.04 .. 6.1): + log.
        let l = vegas.limit() as f64;
        let rtt = 10.0 / (1.0 - 4.0 / l);
        let s = Sample {
            rtt: Duration::from_secs_f64(rtt / 1_000.0),
            in_flight: 109,
            dropped: false,
        };
        assert_eq!(vegas.update(&s), 111);
        assert_eq!(
            vegas.update(&sample(10, 111, true)),
            109,
            "a failure: − log"
        );
        assert_eq!(vegas.rtt_noload(), Some(Duration::from_millis(10)));
        // Idle caller: unchanged.
        assert_eq!(vegas.update(&sample(10, 3, false)), 109);
    }
}
