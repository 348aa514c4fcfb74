//! HTTP mode: only requests that may be sent twice are hedged.
//!
//! [`HttpReplay`] follows the one idempotency rule of
//! [`reliability_core::idempotent`]: `GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT` and
//! `DELETE` are hedged; `POST`, `PATCH` and other methods only with a non-empty
//! `Idempotency-Key` header, the
//! [`ReplayNonIdempotent`](reliability_core::idempotent::ReplayNonIdempotent) extension, or
//! the layer's [`hedge_non_idempotent`](crate::HedgeBuilder::hedge_non_idempotent)
//! setting. The body must be `Clone` (`Full<Bytes>`, `String`, `Bytes`, `()`): a
//! streaming body cannot be sent twice, so such a request type does not compile into a
//! hedged stack. The request's [`Deadline`] extension (see
//! [`DeadlineLayer`](crate::deadline::DeadlineLayer)) stops hedging.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use hedge_layer::HedgeLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let layer = HedgeLayer::builder("catalog")
//!     .http()
//!     .fixed_delay(Duration::from_millis(20))
//!     .build()
//!     .unwrap();
//! let upstream = service_fn(|req: http::Request<String>| async move {
//!     if req.method() == http::Method::POST {
//!         tokio::time::sleep(Duration::from_millis(50)).await;
//!     }
//!     Ok::<_, Infallible>(http::Response::new(String::new()))
//! });
//! let svc = ServiceBuilder::new().layer(layer.clone()).service(upstream);
//!
//! // A slow POST is waited for, never sent twice.
//! let post = http::Request::post("/orders").body("{}".to_owned()).unwrap();
//! assert_eq!(svc.oneshot(post).await.unwrap().status(), 200);
//! assert_eq!(layer.hedger().snapshot().hedges_sent, 0);
//! # }
//! ```

use http::Request;
use reliability_core::deadline::{Deadline, HasDeadline};
use reliability_core::idempotent::may_replay;

use crate::policy::HedgeRequest;

/// The HTTP policy (see the [module docs](self)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpReplay {
    non_idempotent: bool,
}

impl HttpReplay {
    /// The policy; with `non_idempotent`, every method is hedged.
    pub const fn new(non_idempotent: bool) -> Self {
        Self { non_idempotent }
    }
}

impl<B: Clone> HedgeRequest<Request<B>> for HttpReplay {
    #[inline]
    fn copy(&self, req: &Request<B>) -> Option<Request<B>> {
        may_replay(req, self.non_idempotent).then(|| req.clone())
    }

    #[inline]
    fn deadline(&self, req: &Request<B>) -> Option<Deadline> {
        req.deadline()
    }
}
