//! [`Breaker`]: one named circuit breaker, shared by every clone of its layer and service,
//! with manual controls, listeners and metrics.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_utils::CachePadded;
use reliability_core::classify::Outcome;
use reliability_core::clock::SharedClock;
use reliability_core::health::{
    BreakerSnapshot, BreakerState, ComponentDetail, ComponentHealth, HealthSource, HealthStatus,
    unix_ms,
};

use crate::config::CircuitBreakerConfig;
use crate::error::CircuitOpen;
use crate::metrics::Instruments;
use crate::state::{Counts, Permit, StateMachine, Transition, state_name};

/// A state-change listener: the breaker's name and the transition.
pub type Listener = Arc<dyn Fn(&str, &Transition) + Send + Sync>;

/// A listener attached after the breaker was built (a fleet link), removed by its id.
#[cfg(feature = "redis")]
pub(crate) type Tap = Arc<dyn Fn(&Breaker, &Transition) + Send + Sync>;

struct Shared {
    name: Arc<str>,
    /// Off the cache line of the `Arc`'s counts, which every call writes twice, so that
    /// the configuration and state word stay shared-readable across threads.
    machine: CachePadded<StateMachine>,
    clock: SharedClock,
    listeners: Box<[Listener]>,
    /// The layer's metric handles, shared by the breakers of a per-key layer.
    instruments: Arc<Instruments>,
    /// Fleet links come and go while the breaker lives, unlike `listeners`. Read only on
    /// a transition, so a mutex costs the call path nothing.
    #[cfg(feature = "redis")]
    taps: parking_lot::Mutex<Vec<(u64, Tap)>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.instruments.died(self.machine.state());
    }
}

/// One circuit breaker: a handle to the state shared by a layer, its services and their
/// futures. Cloning is one `Arc` increment.
///
/// Get it from [`CircuitBreakerLayer::breaker`](crate::CircuitBreakerLayer::breaker) (or a
/// registry) to read metrics and to operate the circuit by hand.
///
/// ```
/// use breaker_layer::CircuitBreakerLayer;
/// use reliability_core::health::BreakerState;
///
/// let layer = CircuitBreakerLayer::builder("payments").build().unwrap();
/// let breaker = layer.breaker();
/// breaker.isolate();
/// assert_eq!(breaker.state(), BreakerState::ForcedOpen);
/// breaker.release();
/// assert_eq!(breaker.state(), BreakerState::Closed);
/// ```
#[derive(Clone)]
pub struct Breaker {
    shared: Arc<Shared>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Metrics of one breaker: totals since creation and the current window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerMetrics {
    /// The current state.
    pub state: BreakerState,
    /// How long the current state has lasted.
    pub state_age: Duration,
    /// How long until an OPEN circuit admits a probe.
    pub retry_after: Option<Duration>,
    /// Totals since creation.
    pub counts: Counts,
    /// Failure rate of the current window, percent.
    pub failure_rate: f64,
    /// Slow-call rate of the current window, percent.
    pub slow_call_rate: f64,
    /// Calls in the current window.
    pub window_calls: u64,
}

impl Breaker {
    pub(crate) fn new(
        name: Arc<str>,
        config: CircuitBreakerConfig,
        clock: SharedClock,
        listeners: Box<[Listener]>,
        instruments: Arc<Instruments>,
    ) -> Self {
        let machine = CachePadded::new(StateMachine::new(config, clock.now()));
        instruments.born();
        Self {
            shared: Arc::new(Shared {
                name,
                machine,
                clock,
                listeners,
                instruments,
                #[cfg(feature = "redis")]
                taps: parking_lot::Mutex::new(Vec::new()),
            }),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its configuration.
    pub fn config(&self) -> &CircuitBreakerConfig {
        self.shared.machine.config()
    }

    /// The current state. An OPEN circuit whose wait has passed still reads OPEN until a
    /// call arrives to probe it.
    pub fn state(&self) -> BreakerState {
        self.shared.machine.state()
    }

    /// Asks to make a call: a permit, or the typed rejection.
    #[inline]
    pub(crate) fn acquire(&self) -> Result<Permit, CircuitOpen> {
        let s = &*self.shared;
        s.machine
            .try_acquire(|| s.clock.now(), |tr| self.notify(&tr))
            .map_err(|r| {
                s.instruments.rejected();
                CircuitOpen::new(s.name.clone(), r.state, r.retry_at, s.clock.now())
            })
    }

    /// Records how an admitted call ended.
    #[inline]
    pub(crate) fn record(&self, permit: Permit, outcome: Outcome) {
        let s = &*self.shared;
        let recorded = s
            .machine
            .record(permit, outcome, || s.clock.now(), |tr| self.notify(&tr));
        s.instruments.recorded(outcome, recorded);
    }

    pub(crate) fn cancel(&self, permit: Permit) {
        self.shared.machine.cancel(permit);
        self.shared.instruments.cancelled();
    }

    fn notify(&self, tr: &Transition) {
        let name = &*self.shared.name;
        self.shared.instruments.transition(tr);
        let (from, to, cause) = (state_name(tr.from), state_name(tr.to), tr.cause.as_str());
        match tr.to {
            BreakerState::Open | BreakerState::ForcedOpen => {
                tracing::warn!(source = name, from, to, cause, "circuit breaker opened")
            }
            _ => tracing::info!(
                source = name,
                from,
                to,
                cause,
                "circuit breaker state changed"
            ),
        }
        for listener in self.shared.listeners.iter() {
            listener(name, tr);
        }
        #[cfg(feature = "redis")]
        {
            // Called outside the lock: a tap may read the breaker.
            let taps: Vec<Tap> = self
                .shared
                .taps
                .lock()
                .iter()
                .map(|t| t.1.clone())
                .collect();
            for tap in taps {
                tap(self, tr);
            }
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn shared_name(&self) -> Arc<str> {
        self.shared.name.clone()
    }

    #[cfg(feature = "redis")]
    pub(crate) fn tap(&self, id: u64, tap: Tap) {
        self.shared.taps.lock().push((id, tap));
    }

    #[cfg(feature = "redis")]
    pub(crate) fn untap(&self, id: u64) {
        self.shared.taps.lock().retain(|t| t.0 != id);
    }

    /// Opens the circuit because a peer instance tripped (see
    /// [`StateMachine::open_for_peer`]); whether the state changed.
    #[cfg(feature = "redis")]
    pub(crate) fn open_for_peer(&self) -> bool {
        let now = self.shared.clock.now();
        match self.shared.machine.open_for_peer(now) {
            Some(tr) => {
                self.notify(&tr);
                true
            }
            None => false,
        }
    }

    fn manual(
        &self,
        op: fn(&StateMachine, reliability_core::clock::Instant) -> Option<Transition>,
    ) {
        let now = self.shared.clock.now();
        if let Some(tr) = op(&self.shared.machine, now) {
            self.notify(&tr);
        }
    }

    /// Closes the circuit with an empty window, from any state.
    pub fn reset(&self) {
        self.manual(StateMachine::reset);
    }

    /// Opens the circuit now, as a trip would: it probes after the open wait.
    pub fn force_open(&self) {
        self.manual(StateMachine::force_open);
    }

    /// Holds the circuit open (FORCED_OPEN) until [`release`](Self::release).
    pub fn isolate(&self) {
        self.manual(StateMachine::isolate);
    }

    /// Ends an isolation and closes the circuit; does nothing unless isolated.
    pub fn release(&self) {
        self.manual(StateMachine::release);
    }

    /// Totals and the current window.
    pub fn metrics(&self) -> BreakerMetrics {
        let now = self.shared.clock.now();
        let view = self.shared.machine.view(now);
        BreakerMetrics {
            state: view.state,
            state_age: now.saturating_duration_since(view.since),
            retry_after: view.retry_at.map(|at| at.saturating_duration_since(now)),
            counts: view.counts,
            failure_rate: view.window.failure_rate(),
            slow_call_rate: view.window.slow_call_rate(),
            window_calls: view.window.calls,
        }
    }

    /// The metrics in the shared snapshot type served by the health endpoint.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let m = self.metrics();
        let wall = self.shared.clock.wall();
        BreakerSnapshot {
            state: m.state,
            state_since_unix_ms: unix_ms(
                wall.checked_sub(m.state_age)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            ),
            retry_at_unix_ms: m.retry_after.map(|d| unix_ms(wall + d)),
            calls: m.counts.calls,
            successes: m.counts.successes,
            failures: m.counts.failures,
            slow_calls: m.counts.slow,
            rejections: m.counts.rejections,
            state_changes: m.counts.state_changes,
            failure_rate: m.failure_rate,
            slow_call_rate: m.slow_call_rate,
        }
    }

    /// This breaker as a health component: CLOSED is healthy, HALF_OPEN degraded, OPEN and
    /// FORCED_OPEN failed.
    pub fn component_health(&self) -> ComponentHealth {
        let snapshot = self.snapshot();
        let (status, message) = match snapshot.state {
            BreakerState::Closed => (HealthStatus::Healthy, None),
            BreakerState::HalfOpen => (HealthStatus::Degraded, Some("circuit half-open, probing")),
            BreakerState::Open => (HealthStatus::Failed, Some("circuit open")),
            BreakerState::ForcedOpen => (
                HealthStatus::Failed,
                Some("circuit isolated by an operator"),
            ),
        };
        let health = ComponentHealth::new(self.name(), status, ComponentDetail::Breaker(snapshot));
        match message {
            Some(m) => health.with_message(m),
            None => health,
        }
    }
}

impl HealthSource for Breaker {
    fn health(&self) -> Vec<ComponentHealth> {
        vec![self.component_health()]
    }
}
