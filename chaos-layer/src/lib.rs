#![doc = include_str!("../README.md")]

pub mod config;
pub mod decide;
mod error;
mod future;
mod handle;
#[cfg(feature = "http")]
pub mod http;
mod layer;
mod metrics;
pub mod respond;
mod service;

pub use config::{ChaosConfig, LatencyDistribution};
pub use error::InjectedFault;
pub use future::ResponseFuture;
pub use handle::{ChaosCounts, ChaosHandle};
pub use layer::{ChaosBuilder, ChaosLayer};
pub use service::Chaos;
