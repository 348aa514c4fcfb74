//! Outgoing HTTP clients as buffered `tower::Service`s, ready to be wrapped by a preset.
//!
//! The layers of a reliable client need whole bodies: a cache stores them, a retry
//! resends the request. These adapters turn hyper-util's legacy client (and, with the
//! `reqwest` feature, a `reqwest::Client`) into a
//! `Service<http::Request<Bytes>, Response = http::Response<Bytes>>`, reading response
//! bodies up to a cap: a larger body is a typed [`BodyTooLarge`] error, never unbounded
//! memory.
//!
//! # HTTPS out of the box
//!
//! [`HttpClient::new`] speaks `https` and `http`: TLS is rustls with the *ring* provider,
//! trusting Mozilla's root certificates (`webpki-roots`); HTTP/2 is used where ALPN
//! agrees on it and HTTP/1.1 otherwise; connections are pooled and kept alive, with
//! `TCP_NODELAY`. [`HttpClient::builder`] adds a private CA, the operating system's trust
//! store, `https_only`, `http2_only`, a connect timeout and the body cap.
//! [`HttpClient::from_client`] wraps a hyper-util client you built yourself (a proxy, a
//! custom resolver).
//!
//! A peer the client cannot trust (a certificate from an unknown CA, for another name,
//! expired) or one that does not speak TLS at all is a [`TlsHandshakeFailed`] error. It is
//! marked [`DoNotRetry`](reliability_core::error::DoNotRetry): the same handshake would
//! fail the same way, so a preset's retry layer gives up at once, and reliability-core's
//! classifiers count the call neither for nor against the upstream's circuit.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use reliability::client::{ClientError, HttpClient, HttpsRequired};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The one-liner: public CAs, HTTP/2 or HTTP/1.1, 8 MiB body cap.
//! let _client = HttpClient::new().max_body_bytes(1 << 20);
//!
//! // A client that never sends a request in the clear.
//! let client = HttpClient::builder()
//!     .https_only(true)
//!     .connect_timeout(Duration::from_secs(3))
//!     .build()?;
//! let request = http::Request::get("http://example.com/").body(bytes::Bytes::new())?;
//! let err = client.oneshot(request).await.unwrap_err();
//! assert!(err.is::<HttpsRequired>());
//!
//! // A private CA must be a PEM certificate: anything else is an error, never a panic.
//! let err = HttpClient::builder().add_root_certificate(b"not a certificate").build();
//! assert!(matches!(err, Err(ClientError::InvalidRootCertificate { index: 0, .. })));
//! # Ok(())
//! # }
//! ```

mod https;
#[cfg(feature = "reqwest")]
mod reqwest;

use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::Connect;
use tower::BoxError;

pub use self::https::{
    ClientError, Connector, HttpClientBuilder, HttpsRequired, TlsHandshakeFailed,
};
#[cfg(feature = "reqwest")]
pub use self::reqwest::ReqwestClient;

/// Default cap on a buffered response body: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;

/// Default bound on establishing a connection (TCP connect and TLS handshake): 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A response body exceeded the configured cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("response body larger than {limit} bytes")]
pub struct BodyTooLarge {
    /// The cap.
    pub limit: usize,
}

/// hyper-util's legacy client with buffered bodies: HTTPS (rustls) and HTTP by default,
/// or over any connector with [`from_client`](Self::from_client).
///
/// Cloning is cheap and shares the connection pool.
#[derive(Clone)]
pub struct HttpClient<C = Connector> {
    client: Client<C, Full<Bytes>>,
    max_body: usize,
    https_only: bool,
}

impl<C> fmt::Debug for HttpClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("max_body", &self.max_body)
            .field("https_only", &self.https_only)
            .finish_non_exhaustive()
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client for `https` and `http` with Mozilla's root certificates, HTTP/2 by ALPN
    /// (HTTP/1.1 otherwise), pooled keep-alive connections, the default connect timeout
    /// and the default body cap. See [`builder`](Self::builder) for the settings.
    pub fn new() -> Self {
        match Self::builder().build() {
            Ok(client) => client,
            // The defaults have roots (the bundled ones) and no user input to reject;
            // rustls accepts ring's default protocol versions. Unreachable, but not worth
            // a panic path in a constructor users call without thinking.
            Err(e) => unreachable!("the default HttpClient settings are valid: {e}"),
        }
    }

    /// A builder, starting from the settings of [`new`](Self::new).
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder::default()
    }
}

impl<C> HttpClient<C> {
    /// Wraps a hyper-util client you built (a proxy connector, a custom resolver or TLS
    /// setup), with the default body cap.
    ///
    /// ```
    /// use hyper_util::client::legacy::{connect::HttpConnector, Client};
    /// use hyper_util::rt::TokioExecutor;
    /// use reliability::client::HttpClient;
    ///
    /// let hyper = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    /// let client = HttpClient::from_client(hyper).max_body_bytes(64 * 1024);
    /// # let _ = client;
    /// ```
    pub fn from_client(client: Client<C, Full<Bytes>>) -> Self {
        Self {
            client,
            max_body: DEFAULT_MAX_BODY_BYTES,
            https_only: false,
        }
    }

    /// Caps buffered response bodies at `bytes`.
    #[must_use]
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

impl<C> tower::Service<http::Request<Bytes>> for HttpClient<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    type Response = http::Response<Bytes>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<http::Response<Bytes>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        if self.https_only && request.uri().scheme() != Some(&http::uri::Scheme::HTTPS) {
            let refused = HttpsRequired::new(request.uri().clone());
            return Box::pin(async move { Err(Box::new(refused) as BoxError) });
        }
        let client = self.client.clone();
        let limit = self.max_body;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let host = parts.uri.host().unwrap_or_default().to_owned();
            let response = client
                .request(http::Request::from_parts(parts, Full::new(body)))
                .await
                .map_err(|e| https::request_error(e, host))?;
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
