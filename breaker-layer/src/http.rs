//! HTTP mode: an open circuit answers `503 Service Unavailable` with `Retry-After`, so axum
//! needs no `HandleErrorLayer`.
//!
//! Use [`CircuitBreakerBuilder::http`](crate::CircuitBreakerBuilder::http), which also
//! counts 5xx, 429 and 408 answers as failures through
//! [`HttpClassifier`](reliability_core::classify::HttpClassifier).
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, http::{Request, StatusCode}, routing::get, Router};
//! use breaker_layer::CircuitBreakerLayer;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = CircuitBreakerLayer::builder("search").http().build().unwrap();
//! let app = Router::new().route("/", get(|| async { "ok" })).layer(layer.clone());
//! layer.breaker().force_open();
//! let res = app.oneshot(Request::new(Body::empty())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(res.headers()["retry-after"], "30");
//! # }
//! ```

use http::Response;
use reliability_core::classify::Outcome;

use crate::error::CircuitOpen;
use crate::respond::Respond;

/// HTTP mode: see the [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsHttp;

/// The `503 Service Unavailable` answer to a rejected call: `Retry-After` when the circuit
/// knows when it will probe, and the [`CircuitOpen`] in the response's extensions.
pub fn service_unavailable<B: Default>(open: CircuitOpen) -> Response<B> {
    let mut res = open.failure().to_http_response();
    res.extensions_mut().insert(open);
    res
}

impl<B: Default, E> Respond<Response<B>, E> for AsHttp {
    type Error = E;

    fn open(&self, open: CircuitOpen) -> Result<Response<B>, E> {
        Ok(service_unavailable(open))
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

    use http::{StatusCode, header};

    use super::*;

    #[test]
    fn retry_after_only_when_known() {
        let now = Instant::now();
        let open = CircuitOpen::new(
            "a".into(),
            BreakerState::Open,
            Some(now + Duration::from_millis(1_500)),
            now,
        );
        let res: Response<()> = service_unavailable(open.clone());
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
        assert_eq!(res.extensions().get::<CircuitOpen>(), Some(&open));

        let probing = CircuitOpen::new("a".into(), BreakerState::HalfOpen, None, now);
        let res: Response<()> = service_unavailable(probing);
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().get(header::RETRY_AFTER).is_none());
    }
}
