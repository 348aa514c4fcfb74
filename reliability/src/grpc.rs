//! A tonic channel in a preset's stack (feature `grpc`).
//!
//! [`Preset::grpc_client`](crate::presets::Preset::grpc_client) wraps a
//! [`tonic::transport::Channel`] in one line; hand the result to `tonic::client::Grpc::new`
//! or a generated client's `new`, as the channel itself would be.
//!
//! From the caller inwards:
//!
//! ```text
//! deadline → retry (gRPC policy) → circuit breaker → rate limit (client, waits) → SLA
//!   → grpc-timeout (time left) → attempt timeout → channel
//! ```
//!
//! - **Deadline**: a call's deadline is the caller's own (`tonic::Request::set_timeout`,
//!   sent as `grpc-timeout`) or the preset's `deadline`, whichever comes first. No retry
//!   starts after it, a wait for quota that would outlast it is not begun, each attempt
//!   carries the time the call has left in its `grpc-timeout` so that the server stops
//!   when the caller has given up, and at the deadline the call answers
//!   `DEADLINE_EXCEEDED`.
//! - **Retry**: UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED answers (and
//!   transport errors, and attempt timeouts) are retried with the preset's attempts,
//!   backoff and retry budget; a server's `grpc-retry-pushback-ms` (gRFC A6) or
//!   `google.rpc.RetryInfo` delay is honoured. Every gRPC call is a POST, so every call
//!   is treated as safe to repeat: use this client only for methods that are. The request
//!   body is buffered (up to the retry layer's cap) so that it can be sent again.
//! - **Circuit breaker**: one breaker for the channel (a channel is one upstream; build one
//!   client per upstream), counting gRPC statuses through reliability-core's
//!   `GrpcClassifier`. While it is open, calls fail at once, without reaching the network,
//!   with `UNAVAILABLE` (the [`tonic::Status`] carries the breaker's `CircuitOpen` as its
//!   source) and are not retried.
//! - **Rate limit**: the preset's client-side quota, keyed by the preset's name; a call
//!   waits for quota up to the preset's `max_wait`, then fails with `RESOURCE_EXHAUSTED`.
//! - **SLA**: each attempt's latency and status (by `GrpcClassifier`), not the waiting for
//!   quota or backoff.
//! - **Attempt timeout**: an attempt slower than the preset's `attempt_timeout` fails with
//!   `DEADLINE_EXCEEDED` (and is retried).
//! - **No cache**: gRPC answers are streams and carry their status in trailers, so none
//!   is cached; [`Handles::cache`](crate::presets::Handles::cache) is `None`.
//!
//! Failures of the stack reach tonic as a [`tonic::Status`] whose source is a
//! [`crate::Error`], so `Error::from(Box::new(status) as BoxError).is_circuit_open()` still
//! answers. Statuses are judged on the response headers: a status sent in trailers after a
//! message is not seen by the layers (servers send errors trailers-only).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use reliability::presets;
//! use tonic::transport::Channel;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let channel = Channel::from_static("http://127.0.0.1:50051").connect_lazy();
//! let client = presets::dex("quotes")
//!     .configure(|s| s.breaker.open_wait = Duration::from_secs(5))
//!     .grpc_client(channel)?;
//! let grpc = tonic::client::Grpc::new(client.clone());
//! # drop(grpc);
//! assert!(client.handles().cache().is_none());
//! assert_eq!(client.handles().breaker_trips(), 0);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service};

use crate::presets::Handles;

type Inner = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, BoxError>;

/// A tonic channel wrapped by a preset stack (see the [module docs](self)). Cheap to
/// clone; clones share every layer's state.
#[derive(Clone)]
pub struct GrpcReliableClient {
    service: Inner,
    handles: Arc<Handles<()>>,
}

impl GrpcReliableClient {
    pub(crate) fn new(service: Inner, handles: Arc<Handles<()>>) -> Self {
        Self { service, handles }
    }

    /// The live parts: SLA monitor, breaker, retry figures and limiter (no cache).
    pub fn handles(&self) -> &Arc<Handles<()>> {
        &self.handles
    }
}

impl fmt::Debug for GrpcReliableClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcReliableClient")
            .field("handles", &self.handles)
            .finish_non_exhaustive()
    }
}

impl Service<http::Request<Body>> for GrpcReliableClient {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = <Inner as Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        self.service.call(req)
    }
}

/// A failure of the stack as the [`tonic::Status`] tonic hands the caller: the status of
/// [`Error::to_grpc_status`](crate::Error::to_grpc_status), with the failure as its
/// source. A `Status` passes unchanged.
pub(crate) fn into_status(err: BoxError) -> BoxError {
    if err.is::<tonic::Status>() {
        return err;
    }
    let err = crate::Error::from(err);
    let mut status = err.to_grpc_status();
    status.set_source(Arc::new(err));
    Box::new(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_become_statuses_with_their_source() {
        let timeout: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        let status = into_status(timeout).downcast::<tonic::Status>().unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        let err = crate::Error::from(status as BoxError);
        assert!(err.is_timeout());

        let upstream: BoxError = Box::new(tonic::Status::not_found("no such pair"));
        let status = into_status(upstream).downcast::<tonic::Status>().unwrap();
        assert_eq!(status.code(), tonic::Code::NotFound);
    }
}
