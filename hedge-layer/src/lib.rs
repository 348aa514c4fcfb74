#![doc = include_str!("../README.md")]

pub mod budget;
pub mod config;
pub mod deadline;
mod future;
#[cfg(feature = "grpc")]
pub mod grpc;
mod hedger;
#[cfg(feature = "http")]
pub mod http;
pub mod latency;
mod layer;
mod metrics;
pub mod policy;
mod service;

pub use config::{HedgeConfig, HedgeDelay};
pub use future::ResponseFuture;
pub use hedger::{HedgeSnapshot, Hedger};
pub use layer::{HedgeBuilder, HedgeLayer};
pub use service::Hedge;
