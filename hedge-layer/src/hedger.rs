//! [`Hedger`]: the state every clone of one layer shares (delay source, budget, counters),
//! and its [`HedgeSnapshot`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;

use crate::budget::HedgeBudget;
use crate::config::{HedgeConfig, HedgeDelay};
use crate::latency::LatencyWindow;
use crate::metrics::Counters;

/// No delay known yet.
const UNKNOWN: u64 = u64::MAX;

// Made once per layer and kept behind its `Arc`: the size of the larger variant costs
// nothing per call, and boxing it would add a pointer chase to every `record`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum DelaySource {
    Fixed(Duration),
    Percentile {
        window: Mutex<LatencyWindow>,
        // The window's delay in nanoseconds, copied out under the lock so that `call`
        // reads it with one atomic load.
        cached_nanos: AtomicU64,
    },
}

pub(crate) struct Shared {
    pub(crate) name: String,
    delay: DelaySource,
    pub(crate) max_hedges: u32,
    pub(crate) budget: HedgeBudget,
    pub(crate) counters: Counters,
}

impl Shared {
    pub(crate) fn new(name: String, config: &HedgeConfig) -> Self {
        let delay = match &config.delay {
            HedgeDelay::Fixed { after } => DelaySource::Fixed(*after),
            HedgeDelay::Percentile {
                percentile,
                window,
                min_samples,
                floor,
                ceiling,
            } => DelaySource::Percentile {
                window: Mutex::new(LatencyWindow::new(
                    *percentile,
                    *window,
                    *min_samples,
                    *floor,
                    *ceiling,
                )),
                cached_nanos: AtomicU64::new(UNKNOWN),
            },
        };
        let counters = Counters::new(&name);
        Self {
            name,
            delay,
            max_hedges: config.max_hedges,
            budget: HedgeBudget::new(config.budget_ratio, config.budget_reserve),
            counters,
        }
    }

    /// The delay a request starting now would hedge after.
    #[inline]
    pub(crate) fn delay(&self) -> Option<Duration> {
        match &self.delay {
            DelaySource::Fixed(d) => Some(*d),
            DelaySource::Percentile { cached_nanos, .. } => {
                match cached_nanos.load(Ordering::Acquire) {
                    UNKNOWN => None,
                    nanos => Some(Duration::from_nanos(nanos)),
                }
            }
        }
    }

    /// Whether answers must be timed (percentile mode).
    #[inline]
    pub(crate) fn records_latency(&self) -> bool {
        matches!(self.delay, DelaySource::Percentile { .. })
    }

    /// One good answer came `latency` after its copy was sent.
    #[inline]
    pub(crate) fn record(&self, now: Instant, latency: Duration) {
        if let DelaySource::Percentile {
            window,
            cached_nanos,
        } = &self.delay
        {
            let mut window = window.lock();
            window.record(now, latency);
            let nanos = window.delay().map_or(UNKNOWN, |d| {
                u64::try_from(d.as_nanos()).unwrap_or(UNKNOWN - 1)
            });
            cached_nanos.store(nanos, Ordering::Release);
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedger")
            .field("name", &self.name)
            .field("delay", &self.delay())
            .field("max_hedges", &self.max_hedges)
            .field("budget_balance", &self.budget.balance())
            .finish_non_exhaustive()
    }
}

/// A read-only view of one layer (all its clones): counts, budget and the current delay.
///
/// Get it from [`HedgeLayer::hedger`](crate::HedgeLayer::hedger) or
/// [`Hedge::hedger`](crate::Hedge::hedger).
#[derive(Clone)]
pub struct Hedger {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Hedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl Hedger {
    /// The layer's name (the `source` label of its metrics).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The delay a request starting now would be hedged after; `None` while a percentile
    /// delay has too few samples.
    pub fn delay(&self) -> Option<Duration> {
        self.shared.delay()
    }

    /// The counts, the budget's balance and the current delay.
    pub fn snapshot(&self) -> HedgeSnapshot {
        let c = &self.shared.counters;
        HedgeSnapshot {
            name: self.shared.name.clone(),
            requests: c.requests.load(Ordering::Relaxed),
            hedges_sent: c.sent.load(Ordering::Relaxed),
            hedges_won: c.won.load(Ordering::Relaxed),
            budget_refused: c.refused.load(Ordering::Relaxed),
            budget_balance: self.shared.budget.balance(),
            delay: self.shared.delay(),
        }
    }
}

/// The counts of one layer, as its metrics report them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HedgeSnapshot {
    /// The layer's name.
    pub name: String,
    /// Requests through the layer (`hedge_requests_total`).
    pub requests: u64,
    /// Hedges sent (`hedge_sent_total`).
    pub hedges_sent: u64,
    /// Requests answered by a hedge rather than the first copy (`hedge_won_total`).
    pub hedges_won: u64,
    /// Hedges not sent because the budget was empty (`hedge_budget_refused_total`).
    pub budget_refused: u64,
    /// Tokens in the budget.
    pub budget_balance: f64,
    /// The current hedge delay; `None` while a percentile has too few samples.
    #[serde(with = "humantime_serde")]
    pub delay: Option<Duration>,
}
