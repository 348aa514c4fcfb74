//! [`ChaosHandle`]: switch a chaos layer on and off and change what it injects, at run
//! time, from any thread.
//!
//! The hot path reads one atomic flag while the layer is disabled. Enabled, it also loads
//! the current [`Plan`] from an `ArcSwap` (no lock) and takes the call's number from an
//! atomic counter. Applying a configuration swaps in a new plan and restarts the call
//! numbers, so a run that starts with `apply` is reproducible from its seed.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use reliability_core::error::ConfigError;
use serde::Serialize;

use crate::config::{ChaosConfig, LatencyDistribution};
use crate::decide::{Decision, Plan};
use crate::metrics::Counters;

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) name: String,
    enabled: AtomicBool,
    plan: ArcSwap<Plan>,
    calls: AtomicU64,
    // The configuration the plan came from, for `config()`; written only under `apply`.
    config: Mutex<ChaosConfig>,
    pub(crate) counters: Counters,
}

impl State {
    pub(crate) fn new(name: String, config: ChaosConfig) -> Self {
        let counters = Counters::new(&name);
        Self {
            name,
            enabled: AtomicBool::new(config.enabled),
            plan: ArcSwap::from_pointee(Plan::new(&config)),
            calls: AtomicU64::new(0),
            config: Mutex::new(config),
            counters,
        }
    }

    /// Whether the layer injects anything: the one load of the disabled path.
    #[inline(always)]
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// What the next call gets.
    #[inline]
    pub(crate) fn decide(&self) -> Decision {
        let plan = self.plan.load();
        if plan.is_idle() {
            return Decision::default();
        }
        plan.decide(self.calls.fetch_add(1, Ordering::Relaxed))
    }
}

/// A cheap-to-clone switch for one chaos layer (all its clones).
///
/// ```
/// use chaos_layer::ChaosLayer;
///
/// let layer = ChaosLayer::builder("orders").error_rate(0.2).build().unwrap();
/// let handle = layer.handle();
/// assert!(!handle.is_enabled()); // off unless enabled
/// handle.enable();
/// handle.set_error_rate(0.5).unwrap();
/// assert!(handle.set_error_rate(1.5).is_err());
/// assert_eq!(handle.config().error_rate, 0.5);
/// ```
#[derive(Clone)]
pub struct ChaosHandle {
    pub(crate) state: Arc<State>,
}

impl fmt::Debug for ChaosHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosHandle")
            .field("name", &self.state.name)
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}

impl ChaosHandle {
    /// The layer's name (the `source` label of its metrics).
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Starts injecting.
    pub fn enable(&self) {
        self.set_enabled(true);
    }

    /// Stops injecting: calls pass straight through.
    pub fn disable(&self) {
        self.set_enabled(false);
    }

    /// Whether the layer injects.
    pub fn is_enabled(&self) -> bool {
        self.state.is_enabled()
    }

    fn set_enabled(&self, on: bool) {
        self.state.config.lock().enabled = on;
        self.state.enabled.store(on, Ordering::Relaxed);
    }

    /// The configuration in force.
    pub fn config(&self) -> ChaosConfig {
        self.state.config.lock().clone()
    }

    /// Validates `config` and puts it in force (including `enabled`); call numbers start
    /// again from zero, so the run is reproducible from its seed.
    pub fn apply(&self, config: ChaosConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let mut current = self.state.config.lock();
        self.state.plan.store(Arc::new(Plan::new(&config)));
        self.state.calls.store(0, Ordering::Relaxed);
        self.state.enabled.store(config.enabled, Ordering::Relaxed);
        *current = config;
        Ok(())
    }

    fn update(&self, f: impl FnOnce(&mut ChaosConfig)) -> Result<(), ConfigError> {
        let mut config = self.config();
        f(&mut config);
        self.apply(config)
    }

    /// Sets the share of calls answered with an error, in `[0, 1]`.
    pub fn set_error_rate(&self, rate: f64) -> Result<(), ConfigError> {
        self.update(|c| c.error_rate = rate)
    }

    /// Sets the share of calls answered with the chosen response, in `[0, 1]`.
    pub fn set_response_rate(&self, rate: f64) -> Result<(), ConfigError> {
        self.update(|c| c.response_rate = rate)
    }

    /// Sets the share of calls delayed, in `[0, 1]`, and how long a delay is.
    pub fn set_latency(&self, rate: f64, latency: LatencyDistribution) -> Result<(), ConfigError> {
        self.update(|c| {
            c.latency_rate = rate;
            c.latency = latency;
        })
    }

    /// Sets the seed (call numbers start again from zero).
    pub fn set_seed(&self, seed: u64) -> Result<(), ConfigError> {
        self.update(|c| c.seed = seed)
    }

    /// What was injected so far.
    pub fn counts(&self) -> ChaosCounts {
        let c = &self.state.counters;
        ChaosCounts {
            errors: c.error.load(Ordering::Relaxed),
            latencies: c.latency.load(Ordering::Relaxed),
            responses: c.response.load(Ordering::Relaxed),
        }
    }
}

/// What a chaos layer injected, as its metrics count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChaosCounts {
    /// Errors injected (`fault="error"`).
    pub errors: u64,
    /// Delays injected (`fault="latency"`).
    pub latencies: u64,
    /// Responses replaced (`fault="response"`).
    pub responses: u64,
}
