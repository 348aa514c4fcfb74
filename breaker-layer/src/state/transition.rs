//! State changes: why they happen ([`TransitionCause`]), what they report
//! ([`Transition`]), and the one place that makes them, under the breaker's lock.

use std::sync::atomic::Ordering::*;

use reliability_core::clock::Instant;
use reliability_core::health::BreakerState;

use super::word::{
    CLOSED, EPOCH_SHIFT, FORCED_OPEN, HALF_OPEN, MAX_HALF_OPEN_PROBES, OPEN, encode, epoch_of,
    public_state, state_of,
};
use super::{Periods, StateMachine};

/// Why the state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionCause {
    /// The window's failure rate reached its threshold.
    FailureRate,
    /// The window's slow-call rate reached its threshold.
    SlowCallRate,
    /// Too many failures in a row.
    ConsecutiveFailures,
    /// The open wait passed.
    OpenWaitElapsed,
    /// A probe failed or was slow.
    ProbeFailed,
    /// Enough probes succeeded.
    ProbesSucceeded,
    /// HALF_OPEN lasted longer than `max_half_open`.
    HalfOpenTimeout,
    /// An operator called `reset`, `force_open`, `isolate` or `release`.
    Manual,
    /// Another instance sharing this breaker's upstream opened its circuit (module
    /// `fleet`, feature `redis`).
    PeerOpened,
}

impl TransitionCause {
    /// `snake_case` name, as in `tracing` events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailureRate => "failure_rate",
            Self::SlowCallRate => "slow_call_rate",
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::OpenWaitElapsed => "open_wait_elapsed",
            Self::ProbeFailed => "probe_failed",
            Self::ProbesSucceeded => "probes_succeeded",
            Self::HalfOpenTimeout => "half_open_timeout",
            Self::Manual => "manual",
            Self::PeerOpened => "peer_opened",
        }
    }
}

/// A state's name in `tracing` fields and metric labels: `closed`, `open`, `half_open`,
/// `forced_open` (core's `BreakerState` names, lower-cased).
pub fn state_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half_open",
        BreakerState::ForcedOpen => "forced_open",
    }
}

/// One state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// When.
    pub at: Instant,
    /// Why.
    pub cause: TransitionCause,
}

impl StateMachine {
    /// Moves from the period `seen` to `to`, unless another thread already left it.
    pub(super) fn transition(
        &self,
        seen: u64,
        to: u64,
        now: Instant,
        cause: TransitionCause,
    ) -> Option<Transition> {
        let mut periods = self.periods.lock();
        let current = self.word.load(Acquire);
        (epoch_of(current) == epoch_of(seen))
            .then(|| self.enter(&mut periods, current, to, now, cause))
    }

    pub(super) fn enter(
        &self,
        periods: &mut Periods,
        current: u64,
        to: u64,
        now: Instant,
        cause: TransitionCause,
    ) -> Transition {
        let mut probes = 0;
        match to {
            CLOSED => {
                periods.trips = 0;
                self.window.clear();
                self.consecutive_failures.store(0, Relaxed);
            }
            OPEN => {
                periods.trips = periods.trips.saturating_add(1);
                let wait = self.config.open_wait_after(periods.trips);
                let until = self
                    .nanos(now)
                    .saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
                self.open_until.store(until, Release);
            }
            HALF_OPEN => {
                probes = u64::from(self.config.half_open_probes.min(MAX_HALF_OPEN_PROBES));
                periods.probe_successes = 0;
                self.half_open_since.store(self.nanos(now), Release);
            }
            _ => {}
        }
        periods.since = now;
        let epoch = (epoch_of(current) + 1) & (u64::MAX >> EPOCH_SHIFT);
        self.word.store(encode(epoch, probes, to), Release);
        self.counters.state_changes.fetch_add(1, Relaxed);
        Transition {
            from: public_state(state_of(current)),
            to: public_state(to),
            at: now,
            cause,
        }
    }

    fn manual(&self, to: u64, now: Instant, only_from: Option<u64>) -> Option<Transition> {
        let mut periods = self.periods.lock();
        let current = self.word.load(Acquire);
        if only_from.is_some_and(|from| state_of(current) != from) {
            return None;
        }
        if to == CLOSED && state_of(current) == CLOSED {
            // Already closed: start over with an empty window, no state change.
            self.window.clear();
            self.consecutive_failures.store(0, Relaxed);
            return None;
        }
        if to == FORCED_OPEN && state_of(current) == FORCED_OPEN {
            return None;
        }
        Some(self.enter(&mut periods, current, to, now, TransitionCause::Manual))
    }

    /// Closes the circuit with an empty window, from any state.
    pub fn reset(&self, now: Instant) -> Option<Transition> {
        self.manual(CLOSED, now, None)
    }

    /// Opens the circuit now, as a trip would (it probes after the open wait).
    pub fn force_open(&self, now: Instant) -> Option<Transition> {
        self.manual(OPEN, now, None)
    }

    /// Holds the circuit open until [`release`](Self::release).
    pub fn isolate(&self, now: Instant) -> Option<Transition> {
        self.manual(FORCED_OPEN, now, None)
    }

    /// Ends an isolation: the circuit closes. Does nothing unless isolated.
    pub fn release(&self, now: Instant) -> Option<Transition> {
        self.manual(CLOSED, now, Some(FORCED_OPEN))
    }

    /// Opens the circuit because another instance tripped for the same upstream: as a
    /// trip would (the open wait is this breaker's own, with its backoff, and it probes
    /// after it), from CLOSED or HALF_OPEN only.
    ///
    /// An OPEN circuit keeps the wait it has: a peer's news must not postpone this
    /// breaker's own probe, or a fleet whose instances keep hearing of each other's trips
    /// would never probe. An isolated circuit stays isolated: the operator decides.
    pub fn open_for_peer(&self, now: Instant) -> Option<Transition> {
        let mut periods = self.periods.lock();
        let current = self.word.load(Acquire);
        matches!(state_of(current), CLOSED | HALF_OPEN).then(|| {
            self.enter(
                &mut periods,
                current,
                OPEN,
                now,
                TransitionCause::PeerOpened,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reliability_core::classify::Outcome;

    use super::super::Rejected;
    use super::super::tests::{call, machine};
    use super::*;
    use crate::config::CircuitBreakerConfig;

    #[test]
    fn isolate_holds_until_release() {
        let (m, t0) = machine(CircuitBreakerConfig::default());
        assert!(m.release(t0).is_none());
        let tr = m.isolate(t0).unwrap();
        assert_eq!(
            (tr.from, tr.to),
            (BreakerState::Closed, BreakerState::ForcedOpen)
        );
        let later = t0 + Duration::from_secs(86_400);
        let r = call(&m, later, Outcome::Success).unwrap_err();
        assert_eq!(
            r,
            Rejected {
                state: BreakerState::ForcedOpen,
                retry_at: None
            }
        );
        assert!(m.reset(later).is_some());
        assert_eq!(m.state(), BreakerState::Closed);
        m.isolate(later);
        assert_eq!(m.release(later).unwrap().to, BreakerState::Closed);
    }

    #[test]
    fn a_peer_opens_closed_and_half_open_but_never_extends_or_lifts() {
        let config = CircuitBreakerConfig {
            open_wait: Duration::from_secs(10),
            ..CircuitBreakerConfig::default()
        };
        let (m, t0) = machine(config);
        let tr = m.open_for_peer(t0).unwrap();
        assert_eq!(
            (tr.from, tr.to, tr.cause),
            (
                BreakerState::Closed,
                BreakerState::Open,
                TransitionCause::PeerOpened
            )
        );
        // Already OPEN: the wait is not pushed back.
        let t5 = t0 + Duration::from_secs(5);
        assert!(m.open_for_peer(t5).is_none());
        let r = call(&m, t5, Outcome::Success).unwrap_err();
        assert_eq!(r.retry_at, Some(t0 + Duration::from_secs(10)));
        // After its own wait it probes; a peer's trip then reopens it.
        let t10 = t0 + Duration::from_secs(10);
        let _probe = m.try_acquire(|| t10, |_| {}).unwrap();
        assert_eq!(m.state(), BreakerState::HalfOpen);
        assert_eq!(m.open_for_peer(t10).unwrap().from, BreakerState::HalfOpen);
        // Isolation is the operator's.
        m.isolate(t10);
        assert!(m.open_for_peer(t10).is_none());
        assert_eq!(m.state(), BreakerState::ForcedOpen);
    }
}
