#![doc = include_str!("../README.md")]

pub mod bulkhead;
pub mod config;
mod error;
mod future;
#[cfg(feature = "grpc")]
pub mod grpc;
mod layer;
pub mod limit;
mod metrics;
pub mod priority;
pub mod registry;
mod service;

pub use bulkhead::Limiter;
pub use config::{AimdConfig, AlgorithmConfig, ConcurrencyConfig, Gradient2Config, VegasConfig};
pub use error::{BulkheadFull, Rejection};
pub use future::ResponseFuture;
pub use layer::{ConcurrencyLimitBuilder, ConcurrencyLimitLayer};
pub use priority::{Prioritize, Priority, SamePriority, WithDeadlines};
pub use registry::{LimiterRegistry, SelectLimiter};
pub use service::ConcurrencyLimit;
