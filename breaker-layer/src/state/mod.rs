//! The breaker's state machine: pure (no I/O, no async), time passed in by the caller.
//!
//! ```text
//!            trip (rate, slow rate, N failures in a row)
//!   CLOSED ───────────────────────────────────────────▶ OPEN ◀─┐
//!     ▲                                                  │     │ a probe fails or is slow,
//!     │ success_threshold probes succeed    open wait    │     │ or HALF_OPEN lasts longer
//!     └──────────────────────────── HALF_OPEN ◀──────────┘     │ than max_half_open
//!                                       └──────────────────────┘
//! ```
//!
//! The rules, which the model check in `tests/model.rs` restates independently:
//!
//! - **CLOSED** admits every call. A finished call that counts (success or failure, not
//!   "ignore") enters the window; then the circuit trips if `consecutive_failures` failures
//!   came in a row, or if the window holds at least `minimum_calls` calls and
//!   `100 × failures ≥ failure_rate × calls` or `100 × slow ≥ slow_call_rate × calls`.
//! - **OPEN** rejects every call until the open wait has passed; the first call after it
//!   moves the circuit to HALF_OPEN (nothing runs in the background).
//! - **HALF_OPEN** admits `half_open_probes` calls in all and rejects the rest. A probe that
//!   fails (or is slow, when slow calls are tracked) reopens the circuit;
//!   `success_threshold` successful probes close it, with an empty window. A probe that
//!   ends "ignore" or is cancelled gives its place back.
//! - **FORCED_OPEN** (isolated by an operator) rejects everything until released.
//! - A peer's trip ([`StateMachine::open_for_peer`], the `fleet` module) opens a CLOSED or
//!   HALF_OPEN circuit as a trip would; it leaves OPEN and FORCED_OPEN as they are.
//! - A call's outcome counts only in the state period (the *epoch*) that admitted it: a
//!   slow call admitted while CLOSED that ends after the circuit opened changes nothing.
//! - The open wait of the k-th trip in a row is `open_wait × multiplier^(k-1)`, capped.
//!
//! # Concurrency
//!
//! The state, its epoch and the probes left live in one atomic word: CLOSED admission is
//! one load, a probe is taken with one compare-and-swap, and only transitions take the
//! breaker's mutex (and then re-check the epoch, so a transition happens once).

mod counts;
mod transition;
mod word;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use reliability_core::classify::Outcome;
use reliability_core::clock::Instant;
use reliability_core::health::BreakerState;

use self::counts::Counters;
pub use self::counts::Counts;
pub use self::transition::{Transition, TransitionCause, state_name};
pub use self::word::MAX_HALF_OPEN_PROBES;
use self::word::{
    CLOSED, FORCED_OPEN, HALF_OPEN, OPEN, PROBE_SHIFT, encode, epoch_of, probes_of, public_state,
    state_of,
};
use crate::config::{CircuitBreakerConfig, WindowConfig};
use crate::window::{CountWindow, Tally, TimeWindow, Window};

/// The right to make one call, handed out by [`StateMachine::try_acquire`].
///
/// Give it back with [`StateMachine::record`] when the call ends, or
/// [`StateMachine::cancel`] when it never will.
#[derive(Debug)]
#[must_use = "a permit must be recorded or cancelled"]
pub struct Permit {
    epoch: u64,
    probe: bool,
    started: Option<Instant>,
}

impl Permit {
    /// Whether this call is a HALF_OPEN probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// The state that rejected it: OPEN, HALF_OPEN (no probe left) or FORCED_OPEN.
    pub state: BreakerState,
    /// When an OPEN circuit will admit a probe.
    pub retry_at: Option<Instant>,
}

/// What [`StateMachine::record`] counted, for a caller that mirrors the totals elsewhere
/// (the `metrics` feature does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The call was a success or failure slower than `slow_call_duration`.
    pub slow: bool,
}

/// What the state machine looks like now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StateView {
    /// The current state.
    pub state: BreakerState,
    /// When it began.
    pub since: Instant,
    /// When an OPEN circuit admits a probe.
    pub retry_at: Option<Instant>,
    /// The window as of now.
    pub window: Tally,
    /// Totals since creation.
    pub counts: Counts,
}

/// The fields only transitions touch.
#[derive(Debug)]
struct Periods {
    /// Trips without a close in between, for the open-wait backoff.
    trips: u32,
    probe_successes: u32,
    since: Instant,
}

/// A circuit breaker's state and window, without any I/O: every method takes the time.
///
/// Methods take `now` as a closure so that paths that do not need the time (CLOSED
/// admission with a count window) never read the clock.
#[derive(Debug)]
pub struct StateMachine {
    config: CircuitBreakerConfig,
    window: Window,
    origin: Instant,
    /// epoch | probes left | state. Read by every call and written only by transitions:
    /// on a cache line of its own so that the counters' writes do not evict it.
    word: CachePadded<AtomicU64>,
    /// Nanoseconds after `origin` when OPEN ends.
    open_until: AtomicU64,
    /// Nanoseconds after `origin` when HALF_OPEN began.
    half_open_since: AtomicU64,
    consecutive_failures: AtomicU32,
    periods: Mutex<Periods>,
    counters: Counters,
}

impl StateMachine {
    /// A CLOSED breaker. `config` must have passed [`CircuitBreakerConfig::validate`]
    /// (out-of-range values are clamped, never a panic).
    pub fn new(config: CircuitBreakerConfig, now: Instant) -> Self {
        let window = match config.window {
            WindowConfig::Count { size } => Window::Count(CountWindow::new(size)),
            WindowConfig::Time { seconds } => Window::Time(TimeWindow::new(seconds)),
        };
        Self {
            config,
            window,
            origin: now,
            word: CachePadded::new(AtomicU64::new(encode(0, 0, CLOSED))),
            open_until: AtomicU64::new(0),
            half_open_since: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            periods: Mutex::new(Periods {
                trips: 0,
                probe_successes: 0,
                since: now,
            }),
            counters: Counters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    /// The current state.
    #[inline]
    pub fn state(&self) -> BreakerState {
        public_state(state_of(self.word.load(Acquire)))
    }

    #[inline]
    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    #[inline]
    fn instant(&self, nanos: u64) -> Instant {
        self.origin + Duration::from_nanos(nanos)
    }

    #[inline]
    fn second(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_secs()
    }

    /// Asks to make a call. `on_transition` hears about the state change this may cause
    /// (OPEN → HALF_OPEN when the wait is over, HALF_OPEN → OPEN on `max_half_open`),
    /// after the breaker's lock is released.
    #[inline]
    pub fn try_acquire(
        &self,
        now: impl Fn() -> Instant,
        mut on_transition: impl FnMut(Transition),
    ) -> Result<Permit, Rejected> {
        let timed = self.config.slow_call_duration.is_some();
        loop {
            let word = self.word.load(Acquire);
            match state_of(word) {
                CLOSED => {
                    return Ok(Permit {
                        epoch: epoch_of(word),
                        probe: false,
                        started: timed.then(&now),
                    });
                }
                OPEN => {
                    let t = now();
                    let until = self.open_until.load(Acquire);
                    if self.nanos(t) < until {
                        return Err(self.reject(OPEN, Some(self.instant(until))));
                    }
                    if let Some(tr) =
                        self.transition(word, HALF_OPEN, t, TransitionCause::OpenWaitElapsed)
                    {
                        on_transition(tr);
                    }
                }
                HALF_OPEN => {
                    let t = now();
                    if let Some(max) = self.config.max_half_open {
                        let since = self.instant(self.half_open_since.load(Acquire));
                        if t.saturating_duration_since(since) >= max {
                            if let Some(tr) =
                                self.transition(word, OPEN, t, TransitionCause::HalfOpenTimeout)
                            {
                                on_transition(tr);
                            }
                            continue;
                        }
                    }
                    if probes_of(word) == 0 {
                        return Err(self.reject(HALF_OPEN, None));
                    }
                    let taken = word - (1 << PROBE_SHIFT);
                    if self
                        .word
                        .compare_exchange(word, taken, AcqRel, Acquire)
                        .is_ok()
                    {
                        return Ok(Permit {
                            epoch: epoch_of(word),
                            probe: true,
                            started: timed.then_some(t),
                        });
                    }
                }
                _ => return Err(self.reject(FORCED_OPEN, None)),
            }
        }
    }

    fn reject(&self, state: u64, retry_at: Option<Instant>) -> Rejected {
        self.counters.rejections.fetch_add(1, Relaxed);
        Rejected {
            state: public_state(state),
            retry_at,
        }
    }

    /// Records how an admitted call ended.
    #[inline]
    pub fn record(
        &self,
        permit: Permit,
        outcome: Outcome,
        now: impl Fn() -> Instant,
        mut on_transition: impl FnMut(Transition),
    ) -> Recorded {
        let mut cached = None;
        let mut now = || *cached.get_or_insert_with(&now);
        let failure = match outcome {
            Outcome::Success => false,
            Outcome::Failure => {
                self.counters.failures.fetch_add(1, Relaxed);
                true
            }
            Outcome::Ignore => {
                self.counters.ignored.fetch_add(1, Relaxed);
                if permit.probe {
                    self.give_back_probe(permit.epoch);
                }
                return Recorded::default();
            }
        };
        let slow = match (self.config.slow_call_duration, permit.started) {
            (Some(limit), Some(started)) => now().saturating_duration_since(started) >= limit,
            _ => false,
        };
        if slow {
            self.counters.slow.fetch_add(1, Relaxed);
        }
        let word = self.word.load(Acquire);
        if epoch_of(word) != permit.epoch || permit.probe || self.window.recorded().is_none() {
            self.counters.recorded_elsewhere.fetch_add(1, Relaxed);
        }
        let recorded = Recorded { slow };
        if epoch_of(word) != permit.epoch {
            return recorded;
        }
        if permit.probe {
            let t = now();
            let mut periods = self.periods.lock();
            let current = self.word.load(Acquire);
            if epoch_of(current) != permit.epoch {
                return recorded;
            }
            let tr = if failure || slow {
                Some(self.enter(&mut periods, current, OPEN, t, TransitionCause::ProbeFailed))
            } else {
                periods.probe_successes += 1;
                (periods.probe_successes >= self.config.success_threshold).then(|| {
                    self.enter(
                        &mut periods,
                        current,
                        CLOSED,
                        t,
                        TransitionCause::ProbesSucceeded,
                    )
                })
            };
            drop(periods);
            if let Some(tr) = tr {
                on_transition(tr);
            }
            return recorded;
        }
        let in_a_row = if failure {
            self.consecutive_failures.fetch_add(1, Relaxed) + 1
        } else {
            // Only write when needed: a store on every success would bounce the line.
            if self.consecutive_failures.load(Relaxed) != 0 {
                self.consecutive_failures.store(0, Relaxed);
            }
            0
        };
        self.window.record(|| self.second(now()), failure, slow);
        let tally = self.window.tally(|| self.second(now()));
        if let Some(cause) = self.trip_cause(tally, in_a_row)
            && let Some(tr) = self.transition(word, OPEN, now(), cause)
        {
            on_transition(tr);
        }
        recorded
    }

    /// Forgets an admitted call that will never finish (its future was dropped).
    pub fn cancel(&self, permit: Permit) {
        self.counters.cancelled.fetch_add(1, Relaxed);
        if permit.probe {
            self.give_back_probe(permit.epoch);
        }
    }

    fn give_back_probe(&self, epoch: u64) {
        let mut word = self.word.load(Acquire);
        while epoch_of(word) == epoch
            && state_of(word) == HALF_OPEN
            && probes_of(word) < u64::from(MAX_HALF_OPEN_PROBES)
        {
            match self
                .word
                .compare_exchange_weak(word, word + (1 << PROBE_SHIFT), AcqRel, Acquire)
            {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    #[inline]
    fn trip_cause(&self, tally: Tally, in_a_row: u32) -> Option<TransitionCause> {
        if self
            .config
            .consecutive_failures
            .is_some_and(|n| in_a_row >= n)
        {
            return Some(TransitionCause::ConsecutiveFailures);
        }
        // The common case, a window with nothing bad in it, decides without floats.
        if tally.calls < u64::from(self.config.minimum_calls)
            || (tally.failures == 0 && tally.slow == 0)
        {
            return None;
        }
        let calls = tally.calls as f64;
        if tally.failures as f64 * 100.0 >= self.config.failure_rate * calls {
            return Some(TransitionCause::FailureRate);
        }
        if self.config.slow_call_duration.is_some()
            && tally.slow as f64 * 100.0 >= self.config.slow_call_rate * calls
        {
            return Some(TransitionCause::SlowCallRate);
        }
        None
    }

    /// The state, its start, the window and the totals, as of `now`.
    pub fn view(&self, now: Instant) -> StateView {
        let since = self.periods.lock().since;
        let word = self.word.load(Acquire);
        let state = state_of(word);
        StateView {
            state: public_state(state),
            since,
            retry_at: (state == OPEN).then(|| self.instant(self.open_until.load(Acquire))),
            window: self.window.tally(|| self.second(now)),
            counts: self.counts(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn machine(config: CircuitBreakerConfig) -> (StateMachine, Instant) {
        let t0 = Instant::now();
        (StateMachine::new(config, t0), t0)
    }

    pub(super) fn call(m: &StateMachine, t: Instant, outcome: Outcome) -> Result<(), Rejected> {
        let permit = m.try_acquire(|| t, |_| {})?;
        m.record(permit, outcome, || t, |_| {});
        Ok(())
    }

    #[test]
    fn probes_are_given_back_when_cancelled_or_ignored() {
        let (m, t0) = machine(CircuitBreakerConfig {
            half_open_probes: 1,
            success_threshold: 1,
            ..Default::default()
        });
        m.force_open(t0);
        let t = t0 + Duration::from_secs(30);
        let p = m.try_acquire(|| t, |_| {}).unwrap();
        assert!(p.is_probe());
        assert!(m.try_acquire(|| t, |_| {}).is_err());
        m.cancel(p);
        let p = m.try_acquire(|| t, |_| {}).unwrap();
        m.record(p, Outcome::Ignore, || t, |_| {});
        assert_eq!(m.state(), BreakerState::HalfOpen);
        call(&m, t, Outcome::Success).unwrap();
        assert_eq!(m.state(), BreakerState::Closed);
        let c = m.counts();
        assert_eq!(
            (c.cancelled, c.ignored, c.successes, c.rejections),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn stale_outcomes_do_not_count() {
        let (m, t0) = machine(CircuitBreakerConfig {
            consecutive_failures: Some(1),
            ..Default::default()
        });
        let slow_closed_call = m.try_acquire(|| t0, |_| {}).unwrap();
        call(&m, t0, Outcome::Failure).unwrap();
        assert_eq!(m.state(), BreakerState::Open);
        let t = t0 + Duration::from_secs(30);
        let probe = m.try_acquire(|| t, |_| {}).unwrap();
        // The CLOSED-era failure ends during HALF_OPEN: no effect.
        m.record(slow_closed_call, Outcome::Failure, || t, |_| {});
        assert_eq!(m.state(), BreakerState::HalfOpen);
        m.record(probe, Outcome::Success, || t, |_| {});
        assert_eq!(m.counts().failures, 2);
    }
}
