//! tonic mode: an open circuit answers gRPC `UNAVAILABLE` (a trailers-only response), on
//! the server or the client side of a channel.
//!
//! Use [`CircuitBreakerBuilder::grpc`](crate::CircuitBreakerBuilder::grpc), which also
//! counts UNAVAILABLE, DEADLINE_EXCEEDED and the other server-side codes as failures
//! through [`GrpcClassifier`](reliability_core::classify::GrpcClassifier). The status
//! carries the [`CircuitOpen`] as its source (so it is not retried) and, when the circuit
//! knows when it will probe, the `grpc-retry-pushback-ms` header of gRPC's retry design.

use std::sync::Arc;

use http::{HeaderValue, Response};
use reliability_core::classify::Outcome;

use crate::error::CircuitOpen;
use crate::respond::Respond;

/// tonic mode: see the [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsGrpc;

impl From<CircuitOpen> for tonic::Status {
    fn from(open: CircuitOpen) -> Self {
        let mut status = tonic::Status::new(open.failure().kind().grpc_code(), open.to_string());
        status.set_source(Arc::new(open));
        status
    }
}

/// The `UNAVAILABLE` answer to a rejected call.
pub fn unavailable<B: Default>(open: CircuitOpen) -> Response<B> {
    let pushback = open
        .retry_after()
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut res = tonic::Status::from(open).into_http::<B>();
    if let Some(ms) = pushback {
        res.headers_mut()
            .insert("grpc-retry-pushback-ms", HeaderValue::from(ms));
    }
    res
}

impl<B: Default, E> Respond<Response<B>, E> for AsGrpc {
    type Error = E;

    fn open(&self, open: CircuitOpen) -> Result<Response<B>, E> {
        Ok(unavailable(open))
    }

    #[inline]
    fn finished(&self, result: Result<Response<B>, E>, _: Outcome) -> Result<Response<B>, E> {
        result
    }

    fn not_ready(&self, err: E) -> E {
        err
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reliability_core::clock::Instant;
    use reliability_core::health::BreakerState;

    use super::*;

    #[test]
    fn trailers_only_unavailable_with_pushback() {
        let now = Instant::now();
        let open = CircuitOpen::new(
            "a".into(),
            BreakerState::Open,
            Some(now + Duration::from_millis(2_500)),
            now,
        );
        let res: Response<()> = unavailable(open);
        assert_eq!(res.headers()["grpc-status"], "14");
        assert_eq!(res.headers()["grpc-retry-pushback-ms"], "2500");
        let isolated = CircuitOpen::new("a".into(), BreakerState::ForcedOpen, None, now);
        let res: Response<()> = unavailable(isolated);
        assert!(res.headers().get("grpc-retry-pushback-ms").is_none());
    }
}
