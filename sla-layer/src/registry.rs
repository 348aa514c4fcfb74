//! [`SlaRegistry`]: the monitors of a process, what is unhealthy, and the system health
//! snapshot.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use reliability_core::classify::Outcome;
//! use reliability_core::health::HealthStatus;
//! use sla_layer::SlaRegistry;
//!
//! let registry = SlaRegistry::new();
//! let binance = registry.monitor("binance").unwrap(); // created with the defaults
//! for _ in 0..5 {
//!     binance.record(Duration::from_millis(20), Outcome::Failure);
//! }
//! registry.monitor("kraken").unwrap().record(Duration::from_millis(20), Outcome::Success);
//!
//! let unhealthy = registry.unhealthy();
//! assert_eq!(unhealthy.len(), 1);
//! assert_eq!(unhealthy[0].name, "binance");
//! let health = registry.system_health();
//! assert_eq!(health.status, HealthStatus::Failed);
//! let json = serde_json::to_value(&health).unwrap();
//! assert_eq!(json["components"][0]["detail"]["type"], "sla");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::RwLock;
use reliability_core::clock::SharedClock;
use reliability_core::error::ConfigError;
use reliability_core::health::{ComponentHealth, HealthSource, HealthStatus, SystemHealth};

use crate::config::SlaConfig;
use crate::error::RegistryError;
use crate::events::{AlertEvent, AlertListener, StatusChange, StatusListener};
use crate::layer::SlaLayer;
use crate::monitor::{SlaMonitor, SlaReport};

/// The default cap on monitors: names usually come from configuration, but a cap keeps
/// memory bounded should they come from requests.
pub const DEFAULT_MAX_MONITORS: usize = 1024;

/// A set of named monitors, plus other health sources for the system snapshot.
///
/// Cheap to clone (one `Arc`); clones share everything.
#[derive(Clone)]
pub struct SlaRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    monitors: RwLock<BTreeMap<String, SlaMonitor>>,
    sources: RwLock<Vec<Arc<dyn HealthSource>>>,
    defaults: SlaConfig,
    clock: Option<SharedClock>,
    status_listeners: Vec<StatusListener>,
    alert_listeners: Vec<AlertListener>,
    max_monitors: usize,
}

impl fmt::Debug for SlaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlaRegistry")
            .field("monitors", &self.names())
            .field("sources", &self.inner.sources.read().len())
            .field("max_monitors", &self.inner.max_monitors)
            .finish_non_exhaustive()
    }
}

impl Default for SlaRegistry {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds an [`SlaRegistry`].
#[must_use]
pub struct SlaRegistryBuilder {
    defaults: SlaConfig,
    clock: Option<SharedClock>,
    status_listeners: Vec<StatusListener>,
    alert_listeners: Vec<AlertListener>,
    max_monitors: usize,
}

impl fmt::Debug for SlaRegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlaRegistryBuilder")
            .field("defaults", &self.defaults)
            .field("max_monitors", &self.max_monitors)
            .finish_non_exhaustive()
    }
}

impl SlaRegistryBuilder {
    /// The configuration of monitors the registry creates.
    pub fn defaults(mut self, config: SlaConfig) -> Self {
        self.defaults = config;
        self
    }

    /// The clock of monitors the registry creates (and of its snapshots' timestamps).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// A status-change listener given to every monitor the registry creates.
    pub fn on_status_change(mut self, f: impl Fn(&StatusChange) + Send + Sync + 'static) -> Self {
        self.status_listeners.push(Arc::new(f));
        self
    }

    /// An alert listener given to every monitor the registry creates.
    pub fn on_alert(mut self, f: impl Fn(&AlertEvent) + Send + Sync + 'static) -> Self {
        self.alert_listeners.push(Arc::new(f));
        self
    }

    /// The most monitors the registry holds, at least 1 (default 1024).
    pub fn max_monitors(mut self, max: usize) -> Self {
        self.max_monitors = max;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<SlaRegistry, ConfigError> {
        self.defaults.validate().map_err(|e| e.within("defaults"))?;
        if self.max_monitors == 0 {
            return Err(ConfigError::out_of_range(
                "max_monitors",
                "[1, usize::MAX]",
                0,
            ));
        }
        Ok(SlaRegistry {
            inner: Arc::new(Inner {
                monitors: RwLock::default(),
                sources: RwLock::default(),
                defaults: self.defaults,
                clock: self.clock,
                status_listeners: self.status_listeners,
                alert_listeners: self.alert_listeners,
                max_monitors: self.max_monitors,
            }),
        })
    }
}

impl SlaRegistry {
    /// An empty registry with default settings.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder.
    pub fn builder() -> SlaRegistryBuilder {
        SlaRegistryBuilder {
            defaults: SlaConfig::default(),
            clock: None,
            status_listeners: Vec::new(),
            alert_listeners: Vec::new(),
            max_monitors: DEFAULT_MAX_MONITORS,
        }
    }

    /// The monitor called `name`, created with the registry's defaults if it is new.
    pub fn monitor(&self, name: &str) -> Result<SlaMonitor, RegistryError> {
        if let Some(m) = self.get(name) {
            return Ok(m);
        }
        let mut map = self.inner.monitors.write();
        if let Some(m) = map.get(name) {
            return Ok(m.clone());
        }
        if map.len() >= self.inner.max_monitors {
            return Err(RegistryError::Full {
                max: self.inner.max_monitors,
            });
        }
        let mut b = SlaMonitor::builder(name).config(self.inner.defaults.clone());
        if let Some(c) = &self.inner.clock {
            b = b.clock(Arc::clone(c));
        }
        b.status_listeners
            .extend(self.inner.status_listeners.iter().cloned());
        b.alert_listeners
            .extend(self.inner.alert_listeners.iter().cloned());
        let m = b.build()?;
        map.insert(name.to_owned(), m.clone());
        Ok(m)
    }

    /// Adds (or replaces) a monitor built elsewhere; returns the one it replaced.
    pub fn insert(&self, monitor: SlaMonitor) -> Result<Option<SlaMonitor>, RegistryError> {
        let mut map = self.inner.monitors.write();
        if !map.contains_key(monitor.name()) && map.len() >= self.inner.max_monitors {
            return Err(RegistryError::Full {
                max: self.inner.max_monitors,
            });
        }
        Ok(map.insert(monitor.name().to_owned(), monitor))
    }

    /// A layer recording into the monitor called `name` (created if new).
    pub fn layer(&self, name: &str) -> Result<SlaLayer, RegistryError> {
        Ok(SlaLayer::new(self.monitor(name)?))
    }

    /// The monitor called `name`, if any.
    pub fn get(&self, name: &str) -> Option<SlaMonitor> {
        self.inner.monitors.read().get(name).cloned()
    }

    /// Removes the monitor called `name`.
    pub fn remove(&self, name: &str) -> Option<SlaMonitor> {
        self.inner.monitors.write().remove(name)
    }

    /// Names of the monitors, sorted.
    pub fn names(&self) -> Vec<String> {
        self.inner.monitors.read().keys().cloned().collect()
    }

    /// Every monitor, sorted by name.
    pub fn monitors(&self) -> Vec<SlaMonitor> {
        // Cloned out so that evaluating (and listeners) never runs under the map's lock.
        self.inner.monitors.read().values().cloned().collect()
    }

    /// A report of every monitor, sorted by name (evaluates each).
    pub fn reports(&self) -> Vec<SlaReport> {
        self.monitors().iter().map(SlaMonitor::report).collect()
    }

    /// The monitors that are DEGRADED or FAILED, worst first, then by name (an UNKNOWN one,
    /// not yet measured, is not listed).
    pub fn unhealthy(&self) -> Vec<ComponentHealth> {
        let mut bad: Vec<ComponentHealth> = self
            .reports()
            .iter()
            .filter(|r| r.status >= HealthStatus::Degraded)
            .map(SlaReport::to_component)
            .collect();
        bad.sort_by(|a, b| b.status.cmp(&a.status).then_with(|| a.name.cmp(&b.name)));
        bad
    }

    /// Adds another health source (a breaker registry, a cache, a limiter) to
    /// [`system_health`](Self::system_health).
    pub fn add_source(&self, source: Arc<dyn HealthSource>) {
        self.inner.sources.write().push(source);
    }

    /// The health of the system: every monitor, then every added source.
    pub fn system_health(&self) -> SystemHealth {
        self.system_health_with(&[])
    }

    /// [`system_health`](Self::system_health) plus `extra` sources.
    pub fn system_health_with(&self, extra: &[&dyn HealthSource]) -> SystemHealth {
        let sources: Vec<Arc<dyn HealthSource>> = self.inner.sources.read().clone();
        let mut components = self.health();
        components.extend(sources.iter().flat_map(|s| s.health()));
        components.extend(extra.iter().flat_map(|s| s.health()));
        let now = self
            .inner
            .clock
            .as_ref()
            .map_or_else(std::time::SystemTime::now, |c| c.wall());
        SystemHealth::from_components(components, now)
    }

    /// Sets every monitor's windowed gauges from a fresh report
    /// ([`SlaMonitor::publish_metrics`]), for an exporter about to render.
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(&self) {
        for m in self.monitors() {
            m.publish_metrics();
        }
    }
}

/// One component per monitor, sorted by name.
impl HealthSource for SlaRegistry {
    fn health(&self) -> Vec<ComponentHealth> {
        self.reports().iter().map(SlaReport::to_component).collect()
    }
}
