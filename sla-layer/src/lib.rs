#![doc = include_str!("../README.md")]

pub mod budget;
mod config;
mod error;
pub mod events;
mod future;
mod layer;
mod metrics;
mod monitor;
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
