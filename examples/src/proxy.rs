//! A caching reverse proxy: every request, whatever its method, is forwarded to one
//! origin through a hyper client, with the cache layer in RFC 9111 shared mode in front
//! (`examples --bin proxy`).
//!
//! The proxy changes nothing it does not have to: the path, query, method, body and
//! end-to-end headers go through as they came; hop-by-hop fields (`Connection` and those
//! it names, `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade`, `Proxy-*`) are not
//! forwarded either way; `Host` is the origin's. It does not retry, hedge or compress:
//! what reaches the origin is what the cache sent.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::Body;
use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reliability::cache::http::{CacheRole, HttpCacheLayer, strip_hop_by_hop};
use tower::{BoxError, ServiceBuilder, ServiceExt};

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// `http://host:port` of the origin (https origins are not supported by this example).
    pub origin: Uri,
    /// The cache's name in `Cache-Status`, and the surrogate name `Surrogate-Control` may
    /// target.
    pub name: String,
    /// Entries kept at most.
    pub max_entries: u64,
    /// Whether responses that set cookies are stored and shared when their origin gives
    /// them an explicit lifetime (RFC 9111 allows it; off by default: see
    /// `HttpCacheLayerBuilder::store_set_cookie`).
    pub store_set_cookie: bool,
}

impl ProxySettings {
    /// Settings for `origin` (`http://host:port`), checked.
    ///
    /// ```
    /// let s = examples::proxy::ProxySettings::new("http://127.0.0.1:8000").unwrap();
    /// assert_eq!(s.name, "proxy");
    /// assert!(examples::proxy::ProxySettings::new("https://example.org").is_err());
    /// assert!(examples::proxy::ProxySettings::new("http://h/with/a/path").is_err());
    /// ```
    pub fn new(origin: &str) -> Result<Self, String> {
        let uri: Uri = origin
            .parse()
            .map_err(|e| format!("--origin {origin:?}: {e}"))?;
        if uri.scheme() != Some(&Scheme::HTTP) || uri.authority().is_none() {
            return Err(format!("--origin {origin:?}: want http://host:port"));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(format!(
                "--origin {origin:?}: no path: requests keep theirs"
            ));
        }
        Ok(Self {
            origin: uri,
            name: "proxy".to_owned(),
            max_entries: 100_000,
            store_set_cookie: false,
        })
    }
}

/// The service that forwards one request to the origin.
fn forwarder(
    origin: Authority,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<hyper::body::Incoming>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<hyper::body::Incoming>, BoxError>> + Send,
> + Clone
+ Send
+ 'static {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Body> =
        Client::builder(TokioExecutor::new()).build(connector);
    let host = HeaderValue::from_str(origin.as_str()).ok();
    tower::service_fn(move |req: Request<Body>| {
        let client = client.clone();
        let origin = origin.clone();
        let host = host.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            let path = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            parts.uri = Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(origin)
                .path_and_query(path)
                .build()?;
            parts.version = http::Version::HTTP_11;
            strip_hop_by_hop(&mut parts.headers);
            if let Some(host) = host {
                parts.headers.insert(HOST, host);
            }
            let mut resp = client.request(Request::from_parts(parts, body)).await?;
            strip_hop_by_hop(resp.headers_mut());
            Ok::<_, BoxError>(resp)
        }
    })
}

/// The proxy's whole service: the RFC 9111 cache in front of the forwarder.
pub fn service(
    settings: ProxySettings,
) -> Result<
    impl tower::Service<
        Request<Body>,
        Response = Response<reliability::cache::http::CachedBody>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static,
    String,
> {
    let origin = settings
        .origin
        .authority()
        .cloned()
        .ok_or("the origin has no authority")?;
    let mut cache = HttpCacheLayer::builder()
        .name(settings.name.as_str())
        .max_entries(settings.max_entries)
        .rfc9111(CacheRole::Shared)
        .surrogate(settings.name.clone());
    if settings.store_set_cookie {
        cache = cache.store_set_cookie();
    }
    let cache = cache.build().map_err(|e| e.to_string())?;
    Ok(ServiceBuilder::new()
        .layer(cache)
        .service(forwarder(origin)))
}

/// Serves the proxy on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: &ProxySettings,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let svc = service(settings.clone())?;
    let app = axum::Router::new().fallback_service(svc.map_response(|r| r.map(Body::new)));
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| e.to_string())
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))
}
