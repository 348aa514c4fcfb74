//! `/admin/metrics` through `metrics-exporter-prometheus`.
//!
//! Every layer records through the `metrics` facade with handles it registers when it is
//! built; this module installs the Prometheus recorder those handles write to, once per
//! process, and has the admin router render it. Figures read from snapshots rather than
//! counted per call (SLA windows, cache sizes) are set just before each render by the
//! `publish` function given to [`Admin::prometheus`].
//!
//! ```
//! use reliability::admin::{Admin, prometheus};
//!
//! let handle = prometheus::recorder().unwrap(); // before the layers are built
//! let registry = reliability::sla::SlaRegistry::new();
//! let monitor = registry.monitor("binance").unwrap();
//! monitor.record(std::time::Duration::from_millis(5), reliability::core::classify::Outcome::Success);
//! let publish = registry.clone();
//! let admin = Admin::new("a-long-admin-token")
//!     .unwrap()
//!     .prometheus(handle.clone(), move || publish.publish_metrics());
//! # let _ = admin;
//! registry.publish_metrics();
//! assert!(handle.render().contains("sla_calls_total"));
//! ```

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::Admin;

/// Another `metrics` recorder was installed first, so the Prometheus one could not be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Prometheus recorder could not be installed: {0}")]
pub struct RecorderTaken(String);

/// The process's Prometheus recorder: installed as the global `metrics` recorder on the
/// first call, the same handle after. Call it before building the layers: a layer
/// registers its handles when it is built, with the recorder installed then.
pub fn recorder() -> Result<PrometheusHandle, RecorderTaken> {
    static HANDLE: OnceLock<Result<PrometheusHandle, RecorderTaken>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .map_err(|e| RecorderTaken(e.to_string()))
        })
        .clone()
}

impl Admin {
    /// `/admin/metrics` rendered by `handle`, after `publish` has set the gauges read from
    /// snapshots (`SlaRegistry::publish_metrics`, `CacheHandle::publish_metrics`).
    #[must_use]
    pub fn prometheus(
        self,
        handle: PrometheusHandle,
        publish: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        self.metrics(move || {
            publish();
            handle.render()
        })
    }
}
