//! [`Limiter`]: the shared state of one layer (or of one key of a per-key layer).

use reliability_core::health::{
    ComponentDetail, ComponentHealth, ConcurrencySnapshot, HealthSource, HealthStatus,
};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use reliability_core::classify::Outcome;
use reliability_core::clock::{Instant, SharedClock};
use tokio::sync::oneshot;

use super::ceiling;
use super::permit::{Permit, Waiter};
use super::queue::{Push, WaitQueue};
use crate::config::ConcurrencyConfig;
use crate::error::{BulkheadFull, Rejection};
use crate::limit::{Algorithm, Controller, SampleWindow};
use crate::metrics::Metrics;
use crate::priority::Priority;

/// What a waiter is told when it leaves the queue: a place, or why not.
pub(crate) type Grant = Result<(), Rejection>;

/// What [`Limiter::acquire`] decided.
#[derive(Debug)]
pub(crate) enum Admission {
    /// The call may start now.
    Admitted(Permit),
    /// The call waits in the queue.
    Queued(Waiter),
    /// The call is refused.
    Refused(BulkheadFull),
}

#[derive(Debug, Default)]
struct Counters {
    admitted: AtomicU64,
    rejected: AtomicU64,
    shed: AtomicU64,
    queue_timeouts: AtomicU64,
    shadow_rejected: AtomicU64,
}

pub(crate) struct Shared {
    name: Arc<str>,
    in_flight: AtomicUsize,
    limit: AtomicUsize,
    /// [`ceiling`] of the non-critical classes at the current limit.
    shared_ceiling: AtomicUsize,
    /// Waiters in the queue, plus a caller announcing itself before it re-checks (see
    /// `acquire`); read without the lock by completions, to skip it when zero.
    queued: AtomicUsize,
    critical_reserve: f64,
    enforced: bool,
    queue_capacity: usize,
    pub(crate) queue_timeout: Duration,
    retry_after: Duration,
    queue: Mutex<WaitQueue<oneshot::Sender<Grant>>>,
    controller: Option<Mutex<Controller>>,
    pub(crate) clock: SharedClock,
    counters: Counters,
    metrics: Arc<Metrics>,
}

/// The limiter of a layer: how many calls are in flight, the limit, the wait queue and,
/// when adaptive, the algorithm that moves the limit. Every clone of the layer and of its
/// services shares one; cloning it is one `Arc` increment.
#[derive(Clone)]
pub struct Limiter {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.shared.name)
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queued())
            .finish()
    }
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1_000.0)
}

impl Limiter {
    pub(crate) fn new(
        name: Arc<str>,
        config: &ConcurrencyConfig,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Self {
        let controller = config.adaptive.as_ref().map(|adaptive| {
            let window = SampleWindow::new(config.sample_window, config.sample_window_min_samples);
            Mutex::new(Controller::new(
                Algorithm::new(adaptive, config.limit),
                window,
            ))
        });
        let limit = controller
            .as_ref()
            .map_or(config.limit, |c| c.lock().limit());
        metrics.limit(limit);
        Self {
            shared: Arc::new(Shared {
                name,
                in_flight: AtomicUsize::new(0),
                limit: AtomicUsize::new(limit),
                shared_ceiling: AtomicUsize::new(ceiling(
                    Priority::Normal,
                    limit,
                    config.critical_reserve,
                )),
                queued: AtomicUsize::new(0),
                critical_reserve: config.critical_reserve,
                enforced: config.enforced,
                queue_capacity: config.queue_capacity,
                queue_timeout: config.queue_timeout,
                retry_after: config.retry_after,
                queue: Mutex::new(WaitQueue::new(config.queue_capacity)),
                controller,
                clock,
                counters: Counters::default(),
                metrics,
            }),
        }
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.shared.limit.load(Ordering::Relaxed)
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Calls waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.shared.queue.lock().len()
    }

    /// Whether the limit is enforced (`false` in shadow mode).
    pub fn is_enforced(&self) -> bool {
        self.shared.enforced
    }

    /// Whether no call is in flight or queued (a per-key registry may drop it).
    pub fn is_idle(&self) -> bool {
        self.in_flight() == 0 && self.shared.queued.load(Ordering::SeqCst) == 0
    }

    /// The limiter's figures now.
    pub fn snapshot(&self) -> ConcurrencySnapshot {
        let s = &self.shared;
        let (algorithm, rtt) = match &s.controller {
            Some(c) => {
                let c = c.lock();
                (c.algorithm().name(), c.rtt())
            }
            None => ("fixed", Default::default()),
        };
        let c = &s.counters;
        ConcurrencySnapshot {
            name: s.name.to_string(),
            algorithm: algorithm.to_owned(),
            enforced: s.enforced,
            limit: self.limit(),
            in_flight: self.in_flight(),
            queued: self.queued(),
            min_rtt_ms: ms(rtt.min),
            smoothed_rtt_ms: ms(rtt.smoothed),
            window_rtt_ms: ms(rtt.window),
            admitted: c.admitted.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            shed: c.shed.load(Ordering::Relaxed),
            queue_timeouts: c.queue_timeouts.load(Ordering::Relaxed),
            shadow_rejected: c.shadow_rejected.load(Ordering::Relaxed),
        }
    }

    /// The limiter as a health component: HEALTHY with room left, DEGRADED when full
    /// (every place taken, or calls waiting for one).
    pub fn component_health(&self) -> ComponentHealth {
        let snapshot = self.snapshot();
        let full = snapshot.queued > 0 || snapshot.in_flight >= snapshot.limit;
        let health = ComponentHealth::new(
            snapshot.name.clone(),
            if full {
                HealthStatus::Degraded
            } else {
                HealthStatus::Healthy
            },
            ComponentDetail::Concurrency(snapshot),
        );
        if full {
            health.with_message("concurrency limit reached")
        } else {
            health
        }
    }

    /// Takes a place for a call of `priority` if the in-flight count is below its
    /// ceiling. The CAS is `SeqCst`: with `queued`, it forms the handshake that stops a
    /// completion and a caller about to queue from missing each other.
    #[inline]
    fn try_take(&self, priority: Priority) -> bool {
        let s = &self.shared;
        let ceiling = if priority == Priority::Critical {
            s.limit.load(Ordering::Relaxed)
        } else {
            s.shared_ceiling.load(Ordering::Relaxed)
        };
        let mut n = s.in_flight.load(Ordering::Relaxed);
        loop {
            if n >= ceiling {
                return false;
            }
            match s
                .in_flight
                .compare_exchange_weak(n, n + 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
    }

    /// A permit for a call whose place is taken.
    #[inline]
    pub(crate) fn permit(&self) -> Permit {
        let s = &self.shared;
        s.counters.admitted.fetch_add(1, Ordering::Relaxed);
        s.metrics.admitted();
        // Only an adaptive limit needs the call's RTT; a fixed one reads no clock.
        let started = s.controller.as_ref().map(|_| s.clock.now());
        Permit::new(self.clone(), started)
    }

    pub(crate) fn refusal(&self, rejection: Rejection, priority: Priority) -> BulkheadFull {
        BulkheadFull::new(
            self.shared.name.clone(),
            rejection,
            priority,
            self.limit(),
            self.shared.retry_after,
        )
    }

    /// Counts one refusal; each refused call is counted exactly once, where it is refused.
    pub(crate) fn count_refusal(&self, rejection: Rejection, priority: Priority) {
        let c = &self.shared.counters;
        c.rejected.fetch_add(1, Ordering::Relaxed);
        match rejection {
            Rejection::Shed => c.shed.fetch_add(1, Ordering::Relaxed),
            Rejection::QueueTimeout => c.queue_timeouts.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        self.shared.metrics.rejected(priority);
    }

    fn refuse(&self, rejection: Rejection, priority: Priority) -> Admission {
        self.count_refusal(rejection, priority);
        Admission::Refused(self.refusal(rejection, priority))
    }

    /// Admits, queues or refuses a call of `priority`.
    pub(crate) fn acquire(&self, priority: Priority) -> Admission {
        let s = &self.shared;
        if !s.enforced {
            return self.acquire_shadow(priority);
        }
        // Nobody waits: the CAS alone decides (queued callers go first otherwise).
        if s.queued.load(Ordering::SeqCst) == 0 && self.try_take(priority) {
            return Admission::Admitted(self.permit());
        }
        if s.queue_capacity == 0 {
            return self.refuse(Rejection::LimitReached, priority);
        }
        let mut queue = s.queue.lock();
        // Announce before re-checking: a completion that frees a place after our check
        // then sees `queued > 0` and takes the lock, which we hold until we are queued.
        s.queued.fetch_add(1, Ordering::SeqCst);
        if !queue.has_at_or_above(priority) && self.try_take(priority) {
            s.queued.fetch_sub(1, Ordering::SeqCst);
            drop(queue);
            return Admission::Admitted(self.permit());
        }
        let (tx, rx) = oneshot::channel();
        let id = match queue.push(priority, tx) {
            Push::Queued(id) => id,
            Push::QueuedShedding(id, shed, evicted) => {
                // One in, one out: `queued` already counts the newcomer.
                s.queued.fetch_sub(1, Ordering::SeqCst);
                self.count_refusal(Rejection::Shed, shed);
                let _ = evicted.send(Err(Rejection::Shed));
                id
            }
            Push::Full(_) => {
                s.queued.fetch_sub(1, Ordering::SeqCst);
                drop(queue);
                return self.refuse(Rejection::QueueFull, priority);
            }
        };
        drop(queue);
        let now = s.clock.now();
        Admission::Queued(Waiter::new(self.clone(), priority, id, rx, now))
    }

    /// Shadow mode: every call gets a place; the ones an enforced limit would have
    /// refused are counted.
    fn acquire_shadow(&self, priority: Priority) -> Admission {
        let s = &self.shared;
        if !self.try_take(priority) {
            s.in_flight.fetch_add(1, Ordering::SeqCst);
            s.counters.shadow_rejected.fetch_add(1, Ordering::Relaxed);
            s.metrics.shadow_rejected();
        }
        Admission::Admitted(self.permit())
    }

    /// Takes a waiter out of the queue (it gave up or timed out); `false` when it had
    /// already left (granted or shed: its answer is in its channel).
    pub(crate) fn leave_queue(&self, priority: Priority, id: u64) -> bool {
        let mut queue = self.shared.queue.lock();
        if queue.remove(priority, id).is_some() {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            true
        } else {
            false
        }
    }

    pub(crate) fn record_queue_wait(&self, wait: Duration) {
        self.shared.metrics.queue_wait(wait);
    }

    /// Gives an admitted call's place back.
    #[inline]
    pub(crate) fn release(&self) {
        self.shared.metrics.released();
        self.give_back();
    }

    /// Gives a place back that was granted to a waiter that had already given up (it
    /// was never counted as admitted).
    #[inline]
    pub(crate) fn give_back(&self) {
        let s = &self.shared;
        s.in_flight.fetch_sub(1, Ordering::SeqCst);
        if s.queued.load(Ordering::SeqCst) > 0 {
            self.grant_waiters();
        }
    }

    /// A finished call: feeds the adaptive limit (not for ignored outcomes), then gives
    /// the place back.
    pub(crate) fn complete(&self, started: Option<Instant>, outcome: Outcome) {
        if let (Some(controller), Some(started)) = (&self.shared.controller, started)
            && outcome != Outcome::Ignore
        {
            let now = self.shared.clock.now();
            let rtt = now.saturating_duration_since(started);
            let in_flight = self.in_flight();
            let changed =
                controller
                    .lock()
                    .on_sample(now, rtt, in_flight, outcome == Outcome::Failure);
            if let Some(limit) = changed {
                self.set_limit(limit);
            }
        }
        self.release();
    }

    fn set_limit(&self, limit: usize) {
        let s = &self.shared;
        let old = s.limit.swap(limit, Ordering::SeqCst);
        if old == limit {
            return;
        }
        s.shared_ceiling.store(
            ceiling(Priority::Normal, limit, s.critical_reserve),
            Ordering::SeqCst,
        );
        s.metrics.limit(limit);
        if limit.abs_diff(old) * 4 >= old {
            tracing::info!(source = %s.name, old, limit, "adaptive concurrency limit moved by 25 % or more");
        } else {
            tracing::trace!(source = %s.name, old, limit, "adaptive concurrency limit moved");
        }
        if limit > old && s.queued.load(Ordering::SeqCst) > 0 {
            self.grant_waiters();
        }
    }

    /// Admits queued calls, highest class first, while places are free.
    fn grant_waiters(&self) {
        let s = &self.shared;
        let mut queue = s.queue.lock();
        while let Some(priority) = queue.front_priority() {
            if !self.try_take(priority) {
                break;
            }
            let Some((_, tx)) = queue.pop_front() else {
                s.in_flight.fetch_sub(1, Ordering::SeqCst);
                break;
            };
            s.queued.fetch_sub(1, Ordering::SeqCst);
            // A waiter takes itself out of the queue under this lock before it drops its
            // receiver, so the send cannot fail; were it to, the place goes back.
            if tx.send(Ok(())).is_err() {
                s.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    pub(crate) fn now(&self) -> Instant {
        self.shared.clock.now()
    }
}

impl HealthSource for Limiter {
    fn health(&self) -> Vec<ComponentHealth> {
        vec![self.component_health()]
    }
}
