#![doc = include_str!("../README.md")]

mod breaker;
pub mod config;
mod error;
pub mod fallback;
#[cfg(feature = "redis")]
pub mod fleet;
mod future;
mod layer;
mod metrics;
pub mod registry;
mod service;
pub mod state;
pub mod window;

pub use breaker::{Breaker, BreakerMetrics, Listener};
pub use config::{CircuitBreakerConfig, RegistryConfig, WindowConfig};
pub use error::CircuitOpen;
pub use fallback::{FallbackCause, WithFallback};
#[cfg(feature = "redis")]
pub use fleet::{FleetError, FleetLink, FleetStats};
pub use future::ResponseFuture;
pub use layer::{CircuitBreakerBuilder, CircuitBreakerLayer};
pub use registry::{BreakerRegistry, KeyedCircuitBreaker, KeyedCircuitBreakerLayer};
pub use service::CircuitBreaker;
pub use state::{Transition, TransitionCause};
