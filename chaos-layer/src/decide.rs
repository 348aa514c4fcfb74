//! The pure core: what one call gets, from the plan and the call's number.
//!
//! Each call's draws come from its own small generator, seeded from the plan's seed and
//! the call's number. So a run is reproducible (the same seed gives the same sequence of
//! faults for calls 0, 1, 2, ...) and no lock guards a shared generator: the hot path
//! takes a number from an atomic counter and nothing else.
//!
//! # Example
//!
//! ```
//! use chaos_layer::decide::{Fault, Plan};
//! use chaos_layer::ChaosConfig;
//!
//! let plan = Plan::new(&ChaosConfig { error_rate: 0.5, seed: 9, ..ChaosConfig::default() });
//! let first: Vec<_> = (0..100).map(|n| plan.decide(n)).collect();
//! let again: Vec<_> = (0..100).map(|n| plan.decide(n)).collect();
//! assert_eq!(first, again);
//! let errors = first.iter().filter(|d| d.fault == Some(Fault::Error)).count();
//! assert!((30..=70).contains(&errors));
//! ```

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::{ChaosConfig, LatencyDistribution};

/// A fault that replaces the upstream's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// An [`InjectedFault`](crate::InjectedFault) error.
    Error,
    /// The chosen response.
    Response,
}

/// What one call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    /// The fault replacing the upstream's answer, if any.
    pub fault: Option<Fault>,
    /// The delay added to the call, if any.
    pub delay: Option<Duration>,
}

/// A validated [`ChaosConfig`], ready to draw from.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    seed: u64,
    error_rate: f64,
    fault_rate: f64,
    latency_rate: f64,
    latency: LatencyDistribution,
}

impl Plan {
    /// The plan of `config` (validate it first: rates outside `[0, 1]` are clamped).
    pub fn new(config: &ChaosConfig) -> Self {
        let rate = |r: f64| if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        let error_rate = rate(config.error_rate);
        Self {
            seed: config.seed,
            error_rate,
            fault_rate: rate(error_rate + rate(config.response_rate)),
            latency_rate: rate(config.latency_rate),
            latency: config.latency.clone(),
        }
    }

    /// Whether no call can get anything (all rates zero): the draws are skipped.
    pub fn is_idle(&self) -> bool {
        self.fault_rate == 0.0 && self.latency_rate == 0.0
    }

    /// What call number `call` gets.
    pub fn decide(&self, call: u64) -> Decision {
        if self.is_idle() {
            return Decision::default();
        }
        let mut rng = SmallRng::seed_from_u64(mix(self.seed ^ mix(call)));
        let fault_draw: f64 = rng.random();
        let latency_draw: f64 = rng.random();
        let fault = if fault_draw < self.error_rate {
            Some(Fault::Error)
        } else if fault_draw < self.fault_rate {
            Some(Fault::Response)
        } else {
            None
        };
        let delay = (latency_draw < self.latency_rate).then(|| self.sample(&mut rng));
        Decision { fault, delay }
    }

    fn sample(&self, rng: &mut SmallRng) -> Duration {
        match &self.latency {
            LatencyDistribution::Fixed { delay } => *delay,
            LatencyDistribution::Uniform { min, max } => {
                if max <= min {
                    return *min;
                }
                let nanos = |d: &Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(rng.random_range(nanos(min)..=nanos(max)))
            }
            LatencyDistribution::TwoPoint {
                fast,
                slow,
                slow_share,
            } => {
                if rng.random::<f64>() < *slow_share {
                    *slow
                } else {
                    *fast
                }
            }
        }
    }
}

/// SplitMix64's finaliser: neighbouring call numbers get unrelated seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(f: impl FnOnce(&mut ChaosConfig)) -> Plan {
        let mut c = ChaosConfig::default();
        f(&mut c);
        c.validate().unwrap();
        Plan::new(&c)
    }

    /// Rates hold within four binomial standard deviations over 10,000 calls.
    #[test]
    fn rates_within_four_sigma() {
        let n = 10_000u64;
        for (error, response, latency) in [(0.1, 0.2, 0.3), (0.01, 0.0, 0.5), (0.5, 0.5, 1.0)] {
            let p = plan(|c| {
                c.seed = 1234;
                c.error_rate = error;
                c.response_rate = response;
                c.latency_rate = latency;
            });
            let decisions: Vec<_> = (0..n).map(|i| p.decide(i)).collect();
            let count = |f: &dyn Fn(&Decision) -> bool| decisions.iter().filter(|d| f(d)).count();
            for (rate, seen) in [
                (error, count(&|d| d.fault == Some(Fault::Error))),
                (response, count(&|d| d.fault == Some(Fault::Response))),
                (latency, count(&|d| d.delay.is_some())),
            ] {
                let mean = rate * n as f64;
                let sigma = (n as f64 * rate * (1.0 - rate)).sqrt();
                assert!(
                    (seen as f64 - mean).abs() <= 4.0 * sigma + 1e-9,
                    "rate {rate}: {seen} of {n}"
                );
            }
        }
    }

    #[test]
    fn seeds_give_their_own_sequences() {
        let a = plan(|c| {
            c.seed = 1;
            c.error_rate = 0.5;
        });
        let b = plan(|c| {
            c.seed = 2;
            c.error_rate = 0.5;
        });
        let run = |p: &Plan| (0..200).map(|i| p.decide(i)).collect::<Vec<_>>();
        assert_eq!(run(&a), run(&a.clone()));
        assert_ne!(run(&a), run(&b));
    }

    #[test]
    fn distributions_stay_in_their_range() {
        let ms = Duration::from_millis;
        let uniform = plan(|c| {
            c.latency_rate = 1.0;
            c.latency = LatencyDistribution::Uniform {
                min: ms(5),
                max: ms(15),
            };
        });
        let two_point = plan(|c| {
            c.latency_rate = 1.0;
            c.latency = LatencyDistribution::TwoPoint {
                fast: ms(10),
                slow: ms(1_000),
                slow_share: 0.05,
            };
        });
        let mut slow = 0;
        for i in 0..10_000 {
            let d = uniform.decide(i).delay.unwrap();
            assert!(d >= ms(5) && d <= ms(15));
            match two_point.decide(i).delay.unwrap() {
                d if d == ms(1_000) => slow += 1,
                d => assert_eq!(d, ms(10)),
            }
        }
        // 5 % of 10,000 is 500, sigma about 21.8.
        assert!((413..=587).contains(&slow), "{slow}");
    }

    #[test]
    fn zero_rates_inject_nothing() {
        let p = plan(|c| c.seed = 5);
        assert!(p.is_idle());
        assert!((0..1_000).all(|i| p.decide(i) == Decision::default()));
    }
}
