//! Graceful degradation: a fallback that answers when the circuit is open or a call
//! failed.
//!
//! # Example
//!
//! ```
//! use breaker_layer::{CircuitBreakerLayer, FallbackCause};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = CircuitBreakerLayer::builder("prices")
//!     .fallback(|cause: FallbackCause<String, std::io::Error>| match cause {
//!         FallbackCause::Open(_) => Ok("cached price".to_string()),
//!         FallbackCause::Failed(result) => result.or_else(|_| Ok("cached price".into())),
//!     })
//!     .build()
//!     .unwrap();
//! let mut svc = ServiceBuilder::new().layer(layer.clone()).service(service_fn(|_: ()| async {
//!     Err::<String, _>(std::io::Error::other("upstream down"))
//! }));
//! assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), "cached price");
//! layer.breaker().isolate();
//! assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), "cached price");
//! # }
//! ```

use std::fmt;

use reliability_core::classify::Outcome;

use crate::error::CircuitOpen;
use reliability_core::answer::Answer;

/// Why the fallback was asked for an answer.
#[derive(Debug)]
pub enum FallbackCause<T, E> {
    /// The circuit rejected the call.
    Open(CircuitOpen),
    /// The call was admitted and its result was classified a failure (an error, or a
    /// failed response such as a 503 under the HTTP classifier). The result is handed over
    /// so the fallback can keep it.
    Failed(Result<T, E>),
}

/// Fallback mode: `F` answers instead of an open circuit and instead of failed calls.
///
/// Made by [`CircuitBreakerBuilder::fallback`](crate::CircuitBreakerBuilder::fallback).
#[derive(Clone, Copy)]
pub struct WithFallback<F>(pub(crate) F);

impl<F> fmt::Debug for WithFallback<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WithFallback")
    }
}

impl<T, E, F> Answer<CircuitOpen, T, E> for WithFallback<F>
where
    F: Fn(FallbackCause<T, E>) -> Result<T, E>,
{
    type Error = E;

    fn refused(&self, open: CircuitOpen) -> Result<T, E> {
        (self.0)(FallbackCause::Open(open))
    }

    #[inline]
    fn finished(&self, result: Result<T, E>, outcome: Outcome) -> Result<T, E> {
        if outcome == Outcome::Failure {
            (self.0)(FallbackCause::Failed(result))
        } else {
            result
        }
    }

    fn inner_error(&self, err: E) -> E {
        err
    }
}
