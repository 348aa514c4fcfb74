//! SLA monitoring for tower services: rolling percentiles, a health status, error budgets
//! and burn-rate alerts.
//!
//! [`SlaLayer`] times every call of the service it wraps and records its latency and
//! outcome (from a reliability-core classifier) into a named [`SlaMonitor`]. The monitor
//! keeps two rolling windows, the last N calls and the last T seconds (a ring of
//! per-interval HdrHistograms merged on read), and turns them into p50 / p95 / p99 / max,
//! success rate, uptime, consecutive failures and call rate; checks them against the
//! source's [thresholds](SlaThresholds) to decide HEALTHY / DEGRADED / FAILED (rules in
//! [`status`]); and, given an SLO, tracks the [error budget](budget) with the SRE
//! Workbook's multi-window burn-rate alerts. Status changes and alerts are `tracing` events
//! and reach listeners. An [`SlaRegistry`] holds the monitors of a process, answers "what
//! is unhealthy", builds the system health snapshot, and writes Prometheus text.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use reliability_core::health::HealthStatus;
//! use sla_layer::{SlaLayer, SlaMonitor};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let monitor = SlaMonitor::builder("prices")
//!     .p95(Duration::from_millis(250))
//!     .max_consecutive_failures(3)
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(SlaLayer::new(monitor.clone()))
//!     .service(service_fn(|x: u32| async move {
//!         if x % 2 == 0 { Ok(x) } else { Err("odd") }
//!     }));
//!
//! assert_eq!(svc.clone().oneshot(2).await, Ok(2));
//! for _ in 0..3 {
//!     assert!(svc.clone().oneshot(1).await.is_err());
//! }
//! let report = monitor.report();
//! assert_eq!(report.totals.failures, 3);
//! assert_eq!(report.status, HealthStatus::Failed); // 3 failures in a row
//! # }
//! ```
//!
//! # Map
//!
//! - [`SlaMonitor`] / [`SlaMonitorBuilder`] / [`SlaConfig`]: one named source; record with
//!   the layer, [`SlaMonitor::start`] + [`CallTimer::finish`], or [`SlaMonitor::record`];
//!   read with [`SlaMonitor::report`] ([`SlaReport`]).
//! - [`window`]: which calls the count and time windows hold (and never hold).
//! - [`status`]: the HEALTHY / DEGRADED / FAILED rules and [`SlaThresholds`].
//! - [`budget`]: SLOs, error budgets, multi-window burn-rate alerts ([`SloConfig`]).
//! - [`events`]: [`StatusChange`] and [`AlertEvent`], logged with `tracing` and handed to
//!   listeners.
//! - [`SlaRegistry`]: named monitors, [`SlaRegistry::unhealthy`],
//!   [`SlaRegistry::system_health`] (reliability-core's `SystemHealth`, with any other
//!   `HealthSource`), [`SlaRegistry::render_prometheus`].
//! - [`prometheus`]: the metric names and the text writer.
//! - [`SlaLayer`] / [`Sla`] / [`ResponseFuture`]: the tower shell.
//!
//! # Feature flags
//!
//! - `http` (default): [`SlaLayer::http`], which classifies `http::Response`s with
//!   reliability-core's `HttpClassifier` (5xx, 429 and 408 fail).
//!
//! # Time
//!
//! By default the monitor reads the CPU's time-stamp counter through `quanta` (a few
//! nanoseconds a read). Tests inject a clock with [`SlaMonitorBuilder::clock`]:
//! `reliability_core::clock::TokioClock` follows `tokio::time::pause()`/`advance()`,
//! `ManualClock` moves by hand.

pub mod budget;
mod clock;
mod config;
mod error;
pub mod events;
mod future;
mod layer;
mod monitor;
pub mod prometheus;
mod registry;
mod service;
pub mod status;
pub mod window;

pub use crate::budget::{AlertStatus, BurnRateAlert, ErrorBudget, Severity, SloConfig};
pub use crate::config::{
    MAX_COUNT_WINDOW, MAX_INTERVALS, MAX_NAME_LEN, SlaConfig, SlaMonitorBuilder, WindowKind,
};
pub use crate::error::{InvalidScore, RegistryError};
pub use crate::events::{AlertEvent, StatusChange};
pub use crate::future::ResponseFuture;
pub use crate::layer::SlaLayer;
pub use crate::monitor::{CallTimer, CallTotals, SlaMonitor, SlaReport};
pub use crate::registry::{DEFAULT_MAX_MONITORS, SlaRegistry, SlaRegistryBuilder};
pub use crate::service::Sla;
pub use crate::status::{Reason, SlaThresholds};
pub use crate::window::WindowStats;
