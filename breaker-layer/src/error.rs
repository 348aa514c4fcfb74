//! [`CircuitOpen`]: the typed rejection of an open circuit.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reliability_core::clock::Instant;
use reliability_core::failure::{Failure, FailureKind};
use reliability_core::health::BreakerState;

/// A call was rejected because the circuit is open (or HALF_OPEN with no probe left, or
/// isolated by an operator).
///
/// Its [`source`](StdError::source) is a [`Failure`] of kind
/// [`CircuitOpen`](FailureKind::CircuitOpen), marked
/// [`DoNotRetry`](reliability_core::error::DoNotRetry): a retry layer above the breaker
/// does not turn one rejection into many, and every HTTP/gRPC mapping answers it with
/// 503 / UNAVAILABLE and `Retry-After`.
///
/// ```
/// # use breaker_layer::CircuitOpen;
/// # fn check(err: tower::BoxError) {
/// if let Some(open) = err.downcast_ref::<CircuitOpen>() {
///     println!("{} is open, retry in {:?}", open.name(), open.retry_after());
/// }
/// assert!(reliability_core::error::is_do_not_retry(&*err));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    name: Arc<str>,
    state: BreakerState,
    retry_at: Option<Instant>,
    retry_after: Option<Duration>,
    failure: Failure,
}

impl CircuitOpen {
    pub(crate) fn new(
        name: Arc<str>,
        state: BreakerState,
        retry_at: Option<Instant>,
        now: Instant,
    ) -> Self {
        let retry_after = retry_at.map(|at| at.saturating_duration_since(now));
        Self {
            name,
            state,
            retry_at,
            retry_after,
            failure: Failure::new(FailureKind::CircuitOpen).with_retry_after_opt(retry_after),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state that rejected the call: OPEN, HALF_OPEN or FORCED_OPEN.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// When the circuit will admit a probe (OPEN only; unknown while HALF_OPEN probes run
    /// or while isolated).
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// How long from the rejection until the circuit admits a probe.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// `retry_after` in whole seconds, rounded up and at least 1: the `Retry-After` value.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.failure.retry_after_secs()
    }

    /// The failure, for the one HTTP/gRPC mapping of reliability-core.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state {
            BreakerState::HalfOpen => write!(
                f,
                "circuit breaker `{}` is half-open and all probe calls are taken",
                self.name
            ),
            BreakerState::ForcedOpen => {
                write!(f, "circuit breaker `{}` is isolated", self.name)
            }
            _ => {
                write!(f, "circuit breaker `{}` is open", self.name)?;
                match self.retry_after {
                    Some(d) => write!(f, "; next probe in {:.1}s", d.as_secs_f64()),
                    None => Ok(()),
                }
            }
        }
    }
}

impl StdError for CircuitOpen {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.failure)
    }
}

impl reliability_core::answer::Refusal for CircuitOpen {
    fn failure(&self) -> Failure {
        self.failure
    }
}

/// The gRPC status of an open circuit: UNAVAILABLE, the [`CircuitOpen`] as its source (so it
/// is not retried) and, when the circuit knows when it will probe, `grpc-retry-pushback-ms`.
#[cfg(feature = "grpc")]
impl From<CircuitOpen> for tonic::Status {
    fn from(open: CircuitOpen) -> Self {
        reliability_core::answer::grpc_status(open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_who_and_when() {
        let now = Instant::now();
        let open = CircuitOpen::new(
            "binance".into(),
            BreakerState::Open,
            Some(now + Duration::from_millis(12_300)),
            now,
        );
        assert_eq!(
            open.to_string(),
            "circuit breaker `binance` is open; next probe in 12.3s"
        );
        assert_eq!(open.retry_after_secs(), Some(13));
        let boxed: tower::BoxError = Box::new(open);
        assert!(reliability_core::error::is_do_not_retry(&*boxed));
        let iso = CircuitOpen::new("x".into(), BreakerState::ForcedOpen, None, now);
        assert_eq!(iso.to_string(), "circuit breaker `x` is isolated");
        assert_eq!(iso.retry_after_secs(), None);
        let soon = CircuitOpen::new("x".into(), BreakerState::Open, Some(now), now);
        assert_eq!(soon.retry_after_secs(), Some(1));
    }
}
