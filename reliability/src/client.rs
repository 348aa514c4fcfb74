//! Outgoing HTTP clients as buffered `tower::Service`s, ready to be wrapped by a preset.
//!
//! The layers of a reliable client need whole bodies: a cache stores them, a retry
//! resends the request. These adapters turn hyper-util's legacy client (and, with the
//! `reqwest` feature, a `reqwest::Client`) into a
//! `Service<http::Request<Bytes>, Response = http::Response<Bytes>>`, reading response
//! bodies up to a cap: a larger body is a typed [`BodyTooLarge`] error, never unbounded
//! memory.
//!
//! # Example
//!
//! ```
//! use reliability::client::HttpClient;
//!
//! let client = HttpClient::new().max_body_bytes(1 << 20);
//! # let _ = client;
//! ```

use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::BoxError;

/// Default cap on a buffered response body: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;

/// A response body exceeded the configured cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("response body larger than {limit} bytes")]
pub struct BodyTooLarge {
    /// The cap.
    pub limit: usize,
}

/// hyper-util's legacy client over plain HTTP, with buffered bodies.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    max_body: usize,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("max_body", &self.max_body)
            .finish()
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with pooled keep-alive connections and the default body cap.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            max_body: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Caps buffered response bodies at `bytes`.
    #[must_use]
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

impl tower::Service<http::Request<Bytes>> for HttpClient {
    type Response = http::Response<Bytes>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<http::Response<Bytes>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let client = self.client.clone();
        let limit = self.max_body;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let response = client
                .request(http::Request::from_parts(parts, Full::new(body)))
                .await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| -> BoxError {
                    if e.is::<http_body_util::LengthLimitError>() {
                        Box::new(BodyTooLarge { limit })
                    } else {
                        e
                    }
                })?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

#[cfg(feature = "reqwest")]
mod reqwest_client {
    use super::*;

    /// A `reqwest::Client` as a buffered tower service.
    #[derive(Debug, Clone)]
    pub struct ReqwestClient {
        client: reqwest::Client,
        max_body: usize,
    }

    impl ReqwestClient {
        /// Wraps `client`, with the default body cap.
        pub fn new(client: reqwest::Client) -> Self {
            Self {
                client,
                max_body: DEFAULT_MAX_BODY_BYTES,
            }
        }

        /// Caps buffered response bodies at `bytes`.
        #[must_use]
        pub fn max_body_bytes(mut self, bytes: usize) -> Self {
            self.max_body = bytes;
            self
        }
    }

    impl tower::Service<http::Request<Bytes>> for ReqwestClient {
        type Response = http::Response<Bytes>;
        type Error = BoxError;
        type Future = BoxFuture<'static, Result<http::Response<Bytes>, BoxError>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
            let client = self.client.clone();
            let limit = self.max_body;
            Box::pin(async move {
                let request = reqwest::Request::try_from(request)?;
                let mut response = client.execute(request).await?;
                if response.content_length().is_some_and(|n| n > limit as u64) {
                    return Err(Box::new(BodyTooLarge { limit }) as BoxError);
                }
                let mut builder = http::Response::builder()
                    .status(response.status())
                    .version(response.version());
                if let Some(headers) = builder.headers_mut() {
                    *headers = std::mem::take(response.headers_mut());
                }
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await? {
                    if body.len() + chunk.len() > limit {
                        return Err(Box::new(BodyTooLarge { limit }) as BoxError);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(builder.body(Bytes::from(body))?)
            })
        }
    }
}

#[cfg(feature = "reqwest")]
pub use reqwest_client::ReqwestClient;
