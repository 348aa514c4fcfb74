//! The breaker's figures through the `metrics` facade (feature `metrics`).
//!
//! Handles are registered once per layer (a per-key layer shares one set between all its
//! breakers), so that a call costs one atomic add per series it moves and never a
//! registry look-up or a label allocation. Each handle moves exactly where the state
//! machine's own total moves, so the health snapshot and the exposition agree. The
//! families are listed in the README.

#[cfg(not(feature = "metrics"))]
pub(crate) use self::off::Instruments;
#[cfg(feature = "metrics")]
pub(crate) use self::on::Instruments;

#[cfg(feature = "metrics")]
mod on {
    use std::sync::Arc;

    use ::metrics::{Counter, Gauge, counter, describe_counter, describe_gauge, gauge};
    use reliability_core::classify::Outcome;
    use reliability_core::health::BreakerState;

    use crate::state::{Recorded, Transition, state_name};

    const STATES: [BreakerState; 4] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
        BreakerState::ForcedOpen,
    ];

    /// Every state change the machine can make (`state/transition.rs`): trips, probes and
    /// their verdicts, `max_half_open`, and the manual `reset` (to CLOSED from any other
    /// state), `force_open` (to OPEN from any state, OPEN included) and `isolate` / `release`.
    /// Registered up front so that `increase()` sees a first transition from 0.
    const TRANSITIONS: [(BreakerState, BreakerState); 11] = [
        (BreakerState::Closed, BreakerState::Open),
        (BreakerState::Closed, BreakerState::ForcedOpen),
        (BreakerState::Open, BreakerState::Open),
        (BreakerState::Open, BreakerState::HalfOpen),
        (BreakerState::Open, BreakerState::Closed),
        (BreakerState::Open, BreakerState::ForcedOpen),
        (BreakerState::HalfOpen, BreakerState::Open),
        (BreakerState::HalfOpen, BreakerState::Closed),
        (BreakerState::HalfOpen, BreakerState::ForcedOpen),
        (BreakerState::ForcedOpen, BreakerState::Closed),
        (BreakerState::ForcedOpen, BreakerState::Open),
    ];

    fn index(state: BreakerState) -> usize {
        match state {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
            BreakerState::ForcedOpen => 3,
        }
    }

    /// The handles of one layer, registered with the recorder installed when it is built.
    #[derive(Debug)]
    pub(crate) struct Instruments {
        /// success, failure, ignored, cancelled.
        calls: [Counter; 4],
        slow: Counter,
        rejected: Counter,
        /// Indexed by `index(from)`, `index(to)`; pairs the machine never makes stay no-ops.
        transitions: [[Counter; 4]; 4],
        state: [Gauge; 4],
    }

    impl Instruments {
        pub(crate) fn new(source: &Arc<str>) -> Arc<Self> {
            describe();
            let calls = ["success", "failure", "ignored", "cancelled"].map(|outcome| {
                counter!("breaker_calls_total", "source" => Arc::clone(source), "outcome" => outcome)
            });
            let mut transitions: [[Counter; 4]; 4] =
                std::array::from_fn(|_| std::array::from_fn(|_| Counter::noop()));
            for (from, to) in TRANSITIONS {
                transitions[index(from)][index(to)] = counter!(
                    "breaker_transitions_total",
                    "source" => Arc::clone(source),
                    "from" => state_name(from),
                    "to" => state_name(to)
                );
            }
            let state = STATES.map(|s| {
                gauge!("breaker_state", "source" => Arc::clone(source), "state" => state_name(s))
            });
            Arc::new(Self {
                calls,
                slow: counter!("breaker_slow_calls_total", "source" => Arc::clone(source)),
                rejected: counter!("breaker_rejected_total", "source" => Arc::clone(source)),
                transitions,
                state,
            })
        }

        /// A breaker of this layer was made (CLOSED).
        pub(crate) fn born(&self) {
            self.state[index(BreakerState::Closed)].increment(1.0);
        }

        /// A breaker of this layer was dropped in `state` (a per-key registry evicted it).
        pub(crate) fn died(&self, state: BreakerState) {
            self.state[index(state)].decrement(1.0);
        }

        #[inline]
        pub(crate) fn rejected(&self) {
            self.rejected.increment(1);
        }

        #[inline]
        pub(crate) fn recorded(&self, outcome: Outcome, recorded: Recorded) {
            let i = match outcome {
                Outcome::Success => 0,
                Outcome::Failure => 1,
                Outcome::Ignore => 2,
            };
            self.calls[i].increment(1);
            if recorded.slow {
                self.slow.increment(1);
            }
        }

        pub(crate) fn cancelled(&self) {
            self.calls[3].increment(1);
        }

        /// Moves the state gauge by one each way rather than setting 1 and 0: notifications of
        /// two quick transitions may run in either order, and additions commute.
        pub(crate) fn transition(&self, tr: &Transition) {
            let (from, to) = (index(tr.from), index(tr.to));
            self.transitions[from][to].increment(1);
            self.state[from].decrement(1.0);
            self.state[to].increment(1.0);
        }
    }

    fn describe() {
        describe_counter!(
            "breaker_calls_total",
            "Calls a circuit breaker admitted, by how they ended."
        );
        describe_counter!(
            "breaker_slow_calls_total",
            "Admitted calls slower than the breaker's slow-call duration."
        );
        describe_counter!(
            "breaker_rejected_total",
            "Calls refused by an open circuit without reaching the service."
        );
        describe_counter!(
            "breaker_transitions_total",
            "Circuit-breaker state changes, by the states left and entered."
        );
        describe_gauge!(
            "breaker_state",
            "1 for the breaker's current state, 0 for the others (per-key layers: breakers in each state)."
        );
    }
}

/// Without the feature the same calls compile to nothing.
#[cfg(not(feature = "metrics"))]
mod off {
    use std::sync::Arc;

    use reliability_core::classify::Outcome;
    use reliability_core::health::BreakerState;

    use crate::state::{Recorded, Transition};

    #[derive(Debug)]
    pub(crate) struct Instruments;

    impl Instruments {
        pub(crate) fn new(_source: &Arc<str>) -> Arc<Self> {
            Arc::new(Self)
        }
        pub(crate) fn born(&self) {}
        pub(crate) fn died(&self, _state: BreakerState) {}
        #[inline(always)]
        pub(crate) fn rejected(&self) {}
        #[inline(always)]
        pub(crate) fn recorded(&self, _outcome: Outcome, _recorded: Recorded) {}
        #[inline(always)]
        pub(crate) fn cancelled(&self) {}
        pub(crate) fn transition(&self, _tr: &Transition) {}
    }
}
