#![doc = include_str!("../README.md")]

pub mod backend;
pub mod backoff;
pub mod budget;
mod config;
mod error;
mod future;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "http")]
pub mod http;
mod layer;
mod metrics;
mod policy;
pub mod schedule;
mod service;

#[cfg(feature = "redis")]
pub use self::backend::RedisStreamSink;
pub use self::backend::{DeadLetter, DeadLetterSink, MemorySink};
pub use self::config::RetryConfig;
pub use self::error::{AttemptTimedOut, BoxError, BudgetExhausted, DeadlineExceeded, RetryStopped};
pub use self::future::ResponseFuture;
pub use self::layer::{Plain, RetryBuilder, RetryEvent, RetryLayer};
pub use self::metrics::RetryHandle;
pub use self::policy::{ClassifierPolicy, Describe, NoDescription, RetryPolicy, WithDeadlines};
pub use self::schedule::StopReason;
pub use self::service::Retry;
