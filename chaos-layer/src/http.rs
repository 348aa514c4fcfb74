//! HTTP mode: inject a chosen status as a response.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use chaos_layer::ChaosLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let chaos = ChaosLayer::builder("orders")
//!     .http()
//!     .respond_status(http::StatusCode::SERVICE_UNAVAILABLE)
//!     .response_rate(1.0)
//!     .enabled(true)
//!     .build()
//!     .unwrap();
//! let upstream = service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, Infallible>(http::Response::new(String::new()))
//! });
//! let svc = ServiceBuilder::new().layer(chaos).service(upstream);
//! let res = svc.oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(res.status(), 503);
//! # }
//! ```

use http::{Response, StatusCode};

use crate::respond::Responder;

/// A "response" fault answers an empty response with this status, and an
/// [`Injected`] marker in its extensions (so a test or an outer layer can tell it from
/// the upstream's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusResponder {
    status: StatusCode,
}

impl StatusResponder {
    /// Answers `status`.
    pub const fn new(status: StatusCode) -> Self {
        Self { status }
    }
}

/// Marks a response the chaos layer made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected;

impl<B: Default> Responder<Response<B>> for StatusResponder {
    fn respond(&self) -> Option<Response<B>> {
        let mut res = Response::new(B::default());
        *res.status_mut() = self.status;
        res.extensions_mut().insert(Injected);
        Some(res)
    }
}
