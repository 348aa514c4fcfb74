//! Model check: random sequences of calls (outcome, latency), pauses and operator actions
//! drive both the breaker's state machine and a small reference model written from the
//! rules in the `state` module docs; states and admissions must agree at every step.

use std::collections::VecDeque;
use std::time::Duration;

use breaker_layer::config::{CircuitBreakerConfig, WindowConfig};
use breaker_layer::state::StateMachine;
use proptest::prelude::*;
use reliability_core::classify::Outcome;
use reliability_core::clock::Instant;
use reliability_core::health::BreakerState;

/// The reference: plain fields, a `Vec` for the window, times in milliseconds.
struct Model {
    c: CircuitBreakerConfig,
    state: BreakerState,
    /// (second, failed, slow), oldest first.
    window: VecDeque<(u64, bool, bool)>,
    in_a_row: u32,
    trips: u32,
    open_until_ms: u64,
    half_open_since_ms: u64,
    probes_left: u32,
    probe_successes: u32,
    rejections: u64,
    successes: u64,
    failures: u64,
}

impl Model {
    fn new(c: CircuitBreakerConfig) -> Self {
        Self {
            c,
            state: BreakerState::Closed,
            window: VecDeque::new(),
            in_a_row: 0,
            trips: 0,
            open_until_ms: 0,
            half_open_since_ms: 0,
            probes_left: 0,
            probe_successes: 0,
            rejections: 0,
            successes: 0,
            failures: 0,
        }
    }

    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }

    fn enter(&mut self, to: BreakerState, now: u64) {
        match to {
            BreakerState::Closed => {
                self.trips = 0;
                self.window.clear();
                self.in_a_row = 0;
            }
            BreakerState::Open => {
                self.trips += 1;
                // open_wait × multiplier^(trips-1), capped (whole multipliers here).
                let mut wait = Self::ms(self.c.open_wait);
                for _ in 1..self.trips {
                    wait = wait.saturating_mul(self.c.open_wait_multiplier as u64);
                }
                self.open_until_ms = now + wait.min(Self::ms(self.c.max_open_wait));
            }
            BreakerState::HalfOpen => {
                self.probes_left = self.c.half_open_probes;
                self.probe_successes = 0;
                self.half_open_since_ms = now;
            }
            BreakerState::ForcedOpen => {}
        }
        self.state = to;
    }

    /// `Some(is_probe)` when admitted, `None` when rejected.
    fn acquire(&mut self, now: u64) -> Option<bool> {
        loop {
            match self.state {
                BreakerState::Closed => return Some(false),
                BreakerState::Open => {
                    if now < self.open_until_ms {
                        self.rejections += 1;
                        return None;
                    }
                    self.enter(BreakerState::HalfOpen, now);
                }
                BreakerState::HalfOpen => {
                    if let Some(max) = self.c.max_half_open
                        && now - self.half_open_since_ms >= Self::ms(max)
                    {
                        self.enter(BreakerState::Open, now);
                        continue;
                    }
                    if self.probes_left == 0 {
                        self.rejections += 1;
                        return None;
                    }
                    self.probes_left -= 1;
                    return Some(true);
                }
                BreakerState::ForcedOpen => {
                    self.rejections += 1;
                    return None;
                }
            }
        }
    }

    fn record(&mut self, probe: bool, outcome: Outcome, started: u64, now: u64) {
        if outcome == Outcome::Ignore {
            if probe {
                self.probes_left += 1;
            }
            return;
        }
        let failed = outcome == Outcome::Failure;
        if failed {
            self.failures += 1;
        } else {
            self.successes += 1;
        }
        let slow = self
            .c
            .slow_call_duration
            .is_some_and(|d| now - started >= Self::ms(d));
        if probe {
            if failed || slow {
                self.enter(BreakerState::Open, now);
            } else {
                self.probe_successes += 1;
                if self.probe_successes >= self.c.success_threshold {
                    self.enter(BreakerState::Closed, now);
                }
            }
            return;
        }
        self.in_a_row = if failed { self.in_a_row + 1 } else { 0 };
        let second = now / 1000;
        self.window.push_back((second, failed, slow));
        match self.c.window {
            WindowConfig::Count { size } => {
                while self.window.len() > size as usize {
                    self.window.pop_front();
                }
            }
            WindowConfig::Time { seconds } => self
                .window
                .retain(|&(s, _, _)| s + u64::from(seconds) > second),
        }
        let calls = self.window.len() as f64;
        let failures = self.window.iter().filter(|c| c.1).count() as f64;
        let slows = self.window.iter().filter(|c| c.2).count() as f64;
        let trip = self
            .c
            .consecutive_failures
            .is_some_and(|n| self.in_a_row >= n)
            || (calls >= f64::from(self.c.minimum_calls)
                && (failures * 100.0 >= self.c.failure_rate * calls
                    || (self.c.slow_call_duration.is_some()
                        && slows * 100.0 >= self.c.slow_call_rate * calls)));
        if trip {
            self.enter(BreakerState::Open, now);
        }
    }

    fn manual(&mut self, op: Op, now: u64) {
        match op {
            Op::Reset => {
                if self.state == BreakerState::Closed {
                    self.window.clear();
                    self.in_a_row = 0;
                } else {
                    self.enter(BreakerState::Closed, now);
                }
            }
            Op::ForceOpen => self.enter(BreakerState::Open, now),
            Op::Isolate => {
                if self.state != BreakerState::ForcedOpen {
                    self.enter(BreakerState::ForcedOpen, now);
                }
            }
            Op::Release => {
                if self.state == BreakerState::ForcedOpen {
                    self.enter(BreakerState::Closed, now);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Reset,
    ForceOpen,
    Isolate,
    Release,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// A call with this outcome that takes `latency_ms`, after a pause of `pause_ms`.
    Call {
        pause_ms: u64,
        outcome: Outcome,
        latency_ms: u64,
    },
    Manual(Op),
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        5 => Just(Outcome::Success),
        4 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignore),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        40 => (prop_oneof![3 => 0u64..50, 1 => 0u64..3_000], outcome(), 0u64..400)
            .prop_map(|(pause_ms, outcome, latency_ms)| Step::Call { pause_ms, outcome, latency_ms }),
        1 => prop_oneof![
            Just(Op::Reset),
            Just(Op::ForceOpen),
            Just(Op::Isolate),
            Just(Op::Release),
        ].prop_map(Step::Manual),
    ]
}

fn config() -> impl Strategy<Value = CircuitBreakerConfig> {
    let window = prop_oneof![
        (1u32..12).prop_map(|size| WindowConfig::Count { size }),
        (1u32..5).prop_map(|seconds| WindowConfig::Time { seconds }),
    ];
    (
        window,
        prop_oneof![Just(50.0), Just(100.0), 1.0f64..=100.0],
        proptest::option::of(50u64..300),
        prop_oneof![Just(100.0), 1.0f64..=100.0],
        1u32..12,
        proptest::option::of(1u32..5),
        (100u64..3_000, 1u32..4, 1u64..20),
        (1u32..4, 1u32..4),
        proptest::option::of(100u64..2_000),
    )
        .prop_map(
            |(
                window,
                failure_rate,
                slow,
                slow_call_rate,
                min,
                in_a_row,
                open,
                probes,
                max_half,
            )| {
                let minimum_calls = match window {
                    WindowConfig::Count { size } => min.min(size),
                    WindowConfig::Time { .. } => min,
                };
                let (open_wait_ms, multiplier, cap) = open;
                CircuitBreakerConfig {
                    window,
                    failure_rate,
                    slow_call_duration: slow.map(Duration::from_millis),
                    slow_call_rate,
                    minimum_calls,
                    consecutive_failures: in_a_row,
                    open_wait: Duration::from_millis(open_wait_ms),
                    open_wait_multiplier: f64::from(multiplier),
                    max_open_wait: Duration::from_millis(open_wait_ms * cap),
                    half_open_probes: probes.0.max(probes.1),
                    success_threshold: probes.0.min(probes.1),
                    max_half_open: max_half.map(Duration::from_millis),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn breaker_agrees_with_the_model(config in config(), steps in proptest::collection::vec(step(), 1..200)) {
        config.validate().unwrap();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let machine = StateMachine::new(config.clone(), t0);
        let mut model = Model::new(config);
        let mut now = 0u64;
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Step::Call { pause_ms, outcome, latency_ms } => {
                    now += pause_ms;
                    let admitted = machine.try_acquire(|| at(now), |_| {});
                    let expected = model.acquire(now);
                    prop_assert_eq!(admitted.is_ok(), expected.is_some(), "admission at step {}", i);
                    if let (Ok(permit), Some(probe)) = (admitted, expected) {
                        prop_assert_eq!(permit.is_probe(), probe, "probe at step {}", i);
                        let started = now;
                        now += latency_ms;
                        machine.record(permit, outcome, || at(now), |_| {});
                        model.record(probe, outcome, started, now);
                    }
                }
                Step::Manual(op) => {
                    match op {
                        Op::Reset => machine.reset(at(now)),
                        Op::ForceOpen => machine.force_open(at(now)),
                        Op::Isolate => machine.isolate(at(now)),
                        Op::Release => machine.release(at(now)),
                    };
                    model.manual(op, now);
                }
            }
            prop_assert_eq!(machine.state(), model.state, "state after step {}", i);
            let counts = machine.counts();
            prop_assert_eq!(counts.rejections, model.rejections);
            prop_assert_eq!(counts.successes, model.successes);
            prop_assert_eq!(counts.failures, model.failures);
        }
    }
}
