//! HTTPS for [`HttpClient`]: the rustls connector, its builder, and the errors of TLS.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::Uri;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use reliability_core::error::{ConfigError, DoNotRetry};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use tower::BoxError;

use super::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY_BYTES, HttpClient};

/// The TLS handshake with the upstream failed: its certificate is not trusted (an unknown
/// CA, another host's name, expired), or it does not speak TLS (a plain-HTTP port).
///
/// Exposes [`DoNotRetry`] through its [`source`](StdError::source): the same handshake
/// would fail the same way, so retry layers give up at once, and reliability-core's
/// classifiers count the call as neither a success nor a failure of the upstream.
///
/// A connection that breaks during the handshake (reset, closed early) is not this
/// error: that may be a blip, and it stays a retryable connect error.
#[derive(Debug, Clone)]
pub struct TlsHandshakeFailed {
    host: String,
    reason: rustls::Error,
}

impl TlsHandshakeFailed {
    /// The host the client was connecting to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// What rustls reported.
    pub fn reason(&self) -> &rustls::Error {
        &self.reason
    }

    /// Whether the peer's certificate was rejected (rather than the protocol failing).
    pub fn is_certificate_error(&self) -> bool {
        matches!(
            self.reason,
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
        )
    }
}

impl fmt::Display for TlsHandshakeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TLS handshake with {} failed: {}",
            self.host, self.reason
        )
    }
}

impl StdError for TlsHandshakeFailed {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&DoNotRetry)
    }
}

/// An `http://` request to a client built with
/// [`https_only(true)`](HttpClientBuilder::https_only): refused before anything was sent.
///
/// Marked [`DoNotRetry`] through its [`source`](StdError::source): it is the caller's
/// mistake, not the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsRequired {
    uri: Uri,
}

impl HttpsRequired {
    pub(super) fn new(uri: Uri) -> Self {
        Self { uri }
    }

    /// The refused URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }
}

impl fmt::Display for HttpsRequired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refused to send {} in the clear: the client is https-only",
            self.uri
        )
    }
}

impl StdError for HttpsRequired {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&DoNotRetry)
    }
}

/// An [`HttpClientBuilder`] could not build its client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A PEM given to [`add_root_certificate`](HttpClientBuilder::add_root_certificate)
    /// holds no certificate, or one that cannot be parsed or used as a trust anchor.
    #[error("root certificate #{index} is invalid: {reason}")]
    InvalidRootCertificate {
        /// Which call of `add_root_certificate` (from 0) it came from.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// [`native_roots(true)`](HttpClientBuilder::native_roots), but the operating system's
    /// trust store gave no usable certificate.
    #[error("no root certificate could be loaded from the operating system: {reason}")]
    NativeRootsUnavailable {
        /// What the loader reported.
        reason: String,
    },
    /// Nothing to trust: the bundled roots are off and no other root was given, so every
    /// HTTPS handshake would fail.
    #[error("no root certificates: enable webpki_roots or native_roots, or add a root")]
    NoRootCertificates,
    /// A setting is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// rustls refused the TLS configuration.
    #[error("TLS configuration rejected: {0}")]
    Tls(#[source] rustls::Error),
}

/// The connector of [`HttpClient::new`] and [`HttpClientBuilder::build`]: TCP with
/// `TCP_NODELAY`, then rustls for `https` URIs.
///
/// The whole connect phase, TCP connect *and* TLS handshake, is bounded by the connect
/// timeout, so a peer that accepts and then says nothing cannot park a caller. A timeout
/// is an I/O error of kind `TimedOut`, which reliability-core's `is_timeout` recognises.
#[derive(Clone)]
pub struct Connector {
    inner: HttpsConnector<HttpConnector>,
    timeout: Duration,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl tower::Service<Uri> for Connector {
    type Response = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
    type Error = BoxError;
    // One allocation per new connection, not per request: the pool reuses connections.
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect timed out after {timeout:?}"),
                )) as BoxError),
            }
        })
    }
}

/// Settings of an [`HttpClient`], from [`HttpClient::builder`].
///
/// ```
/// use std::time::Duration;
/// use reliability::client::HttpClient;
///
/// let client = HttpClient::builder()
///     .native_roots(false)
///     .http2_only(false)
///     .connect_timeout(Duration::from_secs(5))
///     .max_body_bytes(1 << 20)
///     .build()?;
/// # let _ = client;
/// # Ok::<(), reliability::client::ClientError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpClientBuilder {
    root_pems: Vec<Vec<u8>>,
    webpki_roots: bool,
    native_roots: bool,
    https_only: bool,
    http2_only: bool,
    connect_timeout: Duration,
    max_body: usize,
}

impl Default for HttpClientBuilder {
    fn default() -> Self {
        Self {
            root_pems: Vec::new(),
            webpki_roots: true,
            native_roots: false,
            https_only: false,
            http2_only: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl HttpClientBuilder {
    /// Also trusts the certificates of `pem` (one or more `CERTIFICATE` blocks), e.g. a
    /// private CA. Checked by [`build`](Self::build): a PEM without a usable certificate
    /// is [`ClientError::InvalidRootCertificate`].
    pub fn add_root_certificate(mut self, pem: &[u8]) -> Self {
        self.root_pems.push(pem.to_vec());
        self
    }

    /// Whether to trust Mozilla's root certificates, bundled by `webpki-roots` (default
    /// `true`). Turn it off to trust only the roots you add, e.g. to pin a private CA.
    pub fn webpki_roots(mut self, enabled: bool) -> Self {
        self.webpki_roots = enabled;
        self
    }

    /// Whether to trust the operating system's root certificates too (default `false`),
    /// loaded once by [`build`](Self::build), which fails with
    /// [`ClientError::NativeRootsUnavailable`] when none can be loaded.
    pub fn native_roots(mut self, enabled: bool) -> Self {
        self.native_roots = enabled;
        self
    }

    /// Whether to refuse `http://` requests with [`HttpsRequired`] (default `false`).
    pub fn https_only(mut self, enabled: bool) -> Self {
        self.https_only = enabled;
        self
    }

    /// Whether to speak HTTP/2 only (default `false`): ALPN offers only `h2`, and
    /// `http://` requests use HTTP/2 with prior knowledge.
    pub fn http2_only(mut self, enabled: bool) -> Self {
        self.http2_only = enabled;
        self
    }

    /// Bound on establishing a connection, TCP connect and TLS handshake together
    /// (default [`DEFAULT_CONNECT_TIMEOUT`]); must be greater than zero.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Caps buffered response bodies at `bytes` (default [`DEFAULT_MAX_BODY_BYTES`]).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Validates the settings and builds the client.
    pub fn build(self) -> Result<HttpClient, ClientError> {
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::new("connect_timeout", "must be greater than zero").into());
        }
        let tls = self.tls_config()?;

        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        // Per address tried (happy eyeballs splits it); `Connector` bounds the whole phase.
        http.set_connect_timeout(Some(self.connect_timeout));
        // The TLS layer above handles `https`; the TCP connector must let it through.
        http.enforce_http(false);

        let schemes = HttpsConnectorBuilder::new().with_tls_config(tls);
        let schemes = if self.https_only {
            schemes.https_only()
        } else {
            schemes.https_or_http()
        };
        let https = if self.http2_only {
            schemes.enable_http2().wrap_connector(http)
        } else {
            // ALPN offers `h2` first and `http/1.1` as the fallback.
            schemes.enable_http1().enable_http2().wrap_connector(http)
        };
        let connector = Connector {
            inner: https,
            timeout: self.connect_timeout,
        };

        let client = Client::builder(TokioExecutor::new())
            // Evicts idle pooled connections in the background, not only on checkout.
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(self.http2_only)
            .build(connector);
        Ok(HttpClient {
            client,
            max_body: self.max_body,
            https_only: self.https_only,
        })
    }

    fn tls_config(&self) -> Result<ClientConfig, ClientError> {
        let mut roots = RootCertStore::empty();
        if self.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if self.native_roots {
            let loaded = rustls_native_certs::load_native_certs();
            let (added, _unusable) = roots.add_parsable_certificates(loaded.certs);
            if added == 0 {
                let reason = match loaded.errors.first() {
                    Some(e) => e.to_string(),
                    None => "the trust store is empty".to_owned(),
                };
                return Err(ClientError::NativeRootsUnavailable { reason });
            }
        }
        for (index, pem) in self.root_pems.iter().enumerate() {
            let invalid = |reason: String| ClientError::InvalidRootCertificate { index, reason };
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| invalid(e.to_string()))?;
                roots.add(cert).map_err(|e| invalid(e.to_string()))?;
                found += 1;
            }
            if found == 0 {
                return Err(invalid("no CERTIFICATE block in the PEM".to_owned()));
            }
        }
        if roots.is_empty() {
            return Err(ClientError::NoRootCertificates);
        }
        // An explicit provider: the process-wide default panics when a dependency graph
        // enables both ring and aws-lc-rs.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(ClientError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// hyper-util's error, or [`TlsHandshakeFailed`] when connecting failed in rustls.
pub(super) fn request_error(err: hyper_util::client::legacy::Error, host: String) -> BoxError {
    if err.is_connect()
        && let Some(reason) = find_rustls_error(&err)
    {
        return Box::new(TlsHandshakeFailed {
            host,
            reason: reason.clone(),
        });
    }
    Box::new(err)
}

/// The first `rustls::Error` under `err`.
///
/// `io::Error::source` skips its payload (it returns the payload's *source*), and
/// tokio-rustls and hyper-rustls each wrap the rustls error in an `io::Error`, so the walk
/// steps into `io::Error::get_ref` where there is one.
fn find_rustls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    // Chains are short; the bound guards against a cyclic `source()`.
    for _ in 0..32 {
        let e = current?;
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        current = match e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(payload) => Some(payload as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}
