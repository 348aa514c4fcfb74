//! Each adaptive algorithm against a simulated upstream: a processor-sharing server of
//! capacity `C` (up to `C` calls run at full speed; past it, each runs at `C / n` of it,
//! so latency grows with concurrency while throughput stays at `C / base`), driven by a
//! caller that always has work. Time is simulated, in 1 ms steps: no clock, no sleeps.
//!
//! The limit must come within ±25 % of `C` in a bounded number of RTTs and stay there,
//! then, when `C` halves, come within ±25 % of the new capacity.

use std::collections::VecDeque;
use std::time::Duration;

use concurrency_layer::config::{AimdConfig, AlgorithmConfig, Gradient2Config, VegasConfig};
use concurrency_layer::limit::{Algorithm, Controller, SampleWindow};
use reliability_core::clock::Instant;

/// A call's no-load latency.
const BASE: Duration = Duration::from_millis(10);
const STEP: Duration = Duration::from_millis(1);

struct Upstream {
    capacity: f64,
    /// Work done per unit of work a call needs, summed over time ("virtual time").
    progress: f64,
    /// Calls in flight: (started, progress at which it is done), in finishing order.
    calls: VecDeque<(Instant, f64)>,
}

struct Sim {
    now: Instant,
    upstream: Upstream,
    controller: Controller,
}

impl Sim {
    fn new(algorithm: &AlgorithmConfig, capacity: f64) -> Self {
        Self {
            now: Instant::now(),
            upstream: Upstream {
                capacity,
                progress: 0.0,
                calls: VecDeque::new(),
            },
            controller: Controller::new(Algorithm::new(algorithm, 10), SampleWindow::new(BASE, 10)),
        }
    }

    /// Runs for `rtts` no-load RTTs; returns the limit after each step.
    fn run(&mut self, rtts: u32) -> Vec<usize> {
        let steps = rtts * (BASE.as_millis() as u32);
        let mut limits = Vec::with_capacity(steps as usize);
        for _ in 0..steps {
            let up = &mut self.upstream;
            while up.calls.len() < self.controller.limit() {
                up.calls
                    .push_back((self.now, up.progress + BASE.as_secs_f64()));
            }
            self.now += STEP;
            let n = up.calls.len() as f64;
            up.progress += STEP.as_secs_f64() * (up.capacity / n).min(1.0);
            while let Some(&(started, done_at)) = up.calls.front() {
                if done_at > up.progress + 1e-12 {
                    break;
                }
                let in_flight = up.calls.len();
                up.calls.pop_front();
                self.controller
                    .on_sample(self.now, self.now - started, in_flight, false);
            }
            limits.push(self.controller.limit());
        }
        limits
    }
}

fn assert_within(limits: &[usize], capacity: f64, what: &str) {
    let (lo, hi) = (capacity * 0.75, capacity * 1.25);
    let bad: Vec<_> = limits
        .iter()
        .filter(|&&l| (l as f64) < lo || (l as f64) > hi)
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} limits outside [{lo}, {hi}], e.g. {:?}; last {:?}",
        bad.len(),
        limits.len(),
        &bad[..bad.len().min(5)],
        limits.last()
    );
}

/// Converges within `converge` RTTs, holds for `hold` more; the same after `C` halves.
fn converges_and_backs_off(algorithm: AlgorithmConfig, capacity: f64, converge: u32, hold: u32) {
    let name = format!("{algorithm:?}");
    let mut sim = Sim::new(&algorithm, capacity);
    sim.run(converge);
    assert_within(&sim.run(hold), capacity, &format!("{name} at C"));

    sim.upstream.capacity = capacity / 2.0;
    sim.run(converge);
    let after = sim.run(hold);
    assert_within(&after, capacity / 2.0, &format!("{name} at C/2"));
    let rtt = sim.controller.rtt();
    assert_eq!(rtt.min, Some(BASE), "the no-load RTT is measured");
    assert!(
        rtt.smoothed.unwrap() > BASE,
        "queueing shows in the smoothed RTT"
    );
}

#[test]
fn aimd_converges_to_capacity_and_backs_off_when_it_halves() {
    converges_and_backs_off(
        AlgorithmConfig::Aimd(AimdConfig {
            // "Congested" = 20 % above the upstream's normal latency.
            latency_threshold: BASE.mul_f64(1.2),
            increase: 2.0,
            ..AimdConfig::default()
        }),
        200.0,
        300,
        100,
    );
}

#[test]
fn vegas_converges_to_capacity_and_backs_off_when_it_halves() {
    converges_and_backs_off(
        AlgorithmConfig::Vegas(VegasConfig::default()),
        200.0,
        100,
        100,
    );
}

#[test]
fn gradient2_converges_to_capacity_and_backs_off_when_it_halves() {
    converges_and_backs_off(
        AlgorithmConfig::Gradient2(Gradient2Config::default()),
        200.0,
        300,
        100,
    );
}

/// The simulation itself: below capacity latency is the base, above it grows as `n / C`.
#[test]
fn the_simulated_upstream_queues_past_its_capacity() {
    let fixed = |limit: usize| {
        let config = AlgorithmConfig::Aimd(AimdConfig {
            min_limit: limit,
            max_limit: limit,
            ..AimdConfig::default()
        });
        let mut sim = Sim::new(&config, 50.0);
        sim.run(50);
        sim.controller.rtt().window.unwrap()
    };
    assert_eq!(fixed(25), BASE);
    let rtt = fixed(100).as_secs_f64();
    assert!((rtt - 0.020).abs() < 0.002, "{rtt}");
}
