#![doc = include_str!("../README.md")]

mod backend;
mod config;
pub mod control;
mod error;
mod future;
pub mod gcra;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "http")]
pub mod http;
pub mod key;
mod layer;
mod limiter;
pub mod quota;
mod respond;
mod service;
mod tier;
pub mod window;

pub use backend::{
    Backend, BackendUnavailable, Leased, MemoryBackend, MemoryBackendBuilder, Pending,
};
#[cfg(feature = "redis")]
pub use backend::{FailureMode, RedisBackend, RedisBackendBuilder};
pub use config::{RateLimiterConfig, TiersConfig, WindowConfig};
pub use error::{ControlError, KeyNotFound, RateLimited, Reason, UnknownTier};
pub use future::ResponseFuture;
pub use key::{KeyExtractor, KeyExtractorExt, MissingKey, Subject};
pub use layer::RateLimitLayer;
pub use limiter::{
    Policy, RateLimiter, RateLimiterBuilder, Resolved, Status, TierInfo, Usage, WindowReport,
};
pub use quota::{Algorithm, Decision, Quota, Window};
pub use respond::{Decorate, PolicyLabel, Respond};
pub use service::RateLimit;
pub use tier::{Tier, TierTable};
