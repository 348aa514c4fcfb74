#![doc = include_str!("../README.md")]

mod breaker;
pub mod config;
mod error;
pub mod fallback;
mod future;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "http")]
pub mod http;
mod layer;
pub mod registry;
mod respond;
mod service;
pub mod state;
pub mod window;

pub use breaker::{Breaker, BreakerMetrics, Listener};
pub use config::{CircuitBreakerConfig, RegistryConfig, WindowConfig};
pub use error::CircuitOpen;
pub use fallback::{FallbackCause, WithFallback};
pub use future::ResponseFuture;
pub use layer::{CircuitBreakerBuilder, CircuitBreakerLayer};
pub use registry::{BreakerRegistry, KeyedCircuitBreaker, KeyedCircuitBreakerLayer};
pub use respond::{AsError, Respond};
pub use service::CircuitBreaker;
pub use state::{Transition, TransitionCause};
