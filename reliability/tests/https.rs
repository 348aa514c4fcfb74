//! `HttpClient` over real TLS on loopback: a CA made in the test, an axum app served by
//! hyper-util behind tokio-rustls, HTTP/2 by ALPN with the HTTP/1.1 fallback, and the
//! typed, non-retried failures (untrusted certificate, wrong name, a plain-HTTP port).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::routing::get;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use reliability::client::{ClientError, HttpClient, TlsHandshakeFailed};
use reliability::core::error::{find_in_chain, is_do_not_retry, is_timeout};
use reliability::presets;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::{BoxError, ServiceExt};

/// Generous for loopback; only a hang reaches it.
const NO_HANG: Duration = Duration::from_secs(10);

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names`, signed by this CA, and its key.
    fn issue(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }
}

/// A running HTTPS server and the TCP connections it has accepted.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
}

/// The app: answers with the HTTP version the request arrived in.
fn app() -> axum::Router {
    axum::Router::new().route(
        "/",
        get(|req: Request| async move { format!("{:?}", req.version()) }),
    )
}

/// Serves [`app`] over TLS with `cert`, offering `alpn` (most preferred first).
async fn serve_tls(
    (cert, key): (CertificateDer<'static>, PrivateKeyDer<'static>),
    alpn: &[&[u8]],
) -> Server {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            // Counted before the handshake: a client that fails it was still here.
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that rejects our certificate ends the handshake; nothing to do.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app()))
                    .await;
            });
        }
    });
    Server { addr, accepted }
}

/// The app over plain HTTP.
async fn serve_plain() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await.unwrap() });
    addr
}

fn get_req(url: String) -> http::Request<Bytes> {
    http::Request::get(url).body(Bytes::new()).unwrap()
}

/// A client that trusts only `ca`.
fn client_trusting(ca: &Ca) -> HttpClient {
    HttpClient::builder()
        .webpki_roots(false)
        .add_root_certificate(ca.pem().as_bytes())
        .build()
        .unwrap()
}

async fn fetch(client: HttpClient, url: String) -> Result<http::Response<Bytes>, BoxError> {
    tokio::time::timeout(NO_HANG, client.oneshot(get_req(url)))
        .await
        .expect("the client hung")
}

fn tls_failure(err: &BoxError) -> &TlsHandshakeFailed {
    find_in_chain::<TlsHandshakeFailed>(&**err)
        .unwrap_or_else(|| panic!("expected TlsHandshakeFailed, got {err:?}"))
}

#[tokio::test]
async fn speaks_http2_when_alpn_offers_it() {
    let ca = Ca::new("test CA");
    let server = serve_tls(ca.issue(&["localhost", "127.0.0.1"]), &[b"h2", b"http/1.1"]).await;
    let client = client_trusting(&ca);

    let url = format!("https://localhost:{}/", server.addr.port());
    let res = fetch(client.clone(), url.clone()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.body(), "HTTP/2.0");

    // The pooled connection is reused, and an IP address works as a name too.
    fetch(client.clone(), url).await.unwrap();
    let by_ip = format!("https://127.0.0.1:{}/", server.addr.port());
    assert_eq!(fetch(client, by_ip).await.unwrap().body(), "HTTP/2.0");
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn falls_back_to_http1_when_the_server_offers_only_http1() {
    let ca = Ca::new("test CA");
    let server = serve_tls(ca.issue(&["localhost"]), &[b"http/1.1"]).await;

    let url = format!("https://localhost:{}/", server.addr.port());
    let res = fetch(client_trusting(&ca), url).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_11);
    assert_eq!(res.body(), "HTTP/1.1");
}

#[tokio::test]
async fn preset_stack_over_https() {
    let ca = Ca::new("test CA");
    let server = serve_tls(ca.issue(&["localhost"]), &[b"h2", b"http/1.1"]).await;
    let client = presets::cex("x").http_client(client_trusting(&ca)).unwrap();

    let url = format!("https://localhost:{}/", server.addr.port());
    let res = tokio::time::timeout(NO_HANG, client.clone().oneshot(get_req(url)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), "HTTP/2.0");
}

#[tokio::test]
async fn certificate_from_another_ca_fails_once_typed_and_not_retried() {
    let trusted = Ca::new("trusted CA");
    let other = Ca::new("other CA");
    let server = serve_tls(other.issue(&["localhost"]), &[b"h2", b"http/1.1"]).await;
    let url = format!("https://localhost:{}/", server.addr.port());

    // Bare client: the typed error, marked "do not retry".
    let err = fetch(client_trusting(&trusted), url.clone())
        .await
        .unwrap_err();
    let tls = tls_failure(&err);
    assert!(tls.is_certificate_error(), "{tls}");
    assert_eq!(tls.host(), "localhost");
    assert!(is_do_not_retry(&*err));
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);

    // Through the preset: one attempt reaches the server, no retry, the breaker unmoved.
    let client = presets::cex("x")
        .http_client(client_trusting(&trusted))
        .unwrap();
    let err = tokio::time::timeout(NO_HANG, client.clone().oneshot(get_req(url)))
        .await
        .expect("the stack hung")
        .unwrap_err();
    assert!(tls_failure(&err).is_certificate_error());
    assert_eq!(
        server.accepted.load(Ordering::SeqCst),
        2,
        "one attempt only"
    );
    let retry = client.handles().retry().snapshot();
    assert_eq!((retry.attempts, retry.retries), (1, 0), "{retry:?}");
    let breaker = client
        .handles()
        .breaker_registry()
        .unwrap()
        .get(&"localhost".to_owned())
        .unwrap()
        .snapshot();
    assert_eq!((breaker.failures, breaker.successes), (0, 0), "{breaker:?}");
}

#[tokio::test]
async fn certificate_for_another_name_is_a_typed_error() {
    let ca = Ca::new("test CA");
    let server = serve_tls(ca.issue(&["api.example.com"]), &[b"h2", b"http/1.1"]).await;

    let url = format!("https://localhost:{}/", server.addr.port());
    let err = fetch(client_trusting(&ca), url).await.unwrap_err();
    assert!(tls_failure(&err).is_certificate_error());
    assert!(err.to_string().contains("localhost"), "{err}");
}

#[tokio::test]
async fn tls_to_a_plain_http_port_is_a_typed_error_not_a_hang() {
    let ca = Ca::new("test CA");
    let addr = serve_plain().await;

    let url = format!("https://localhost:{}/", addr.port());
    let err = fetch(client_trusting(&ca), url).await.unwrap_err();
    let tls = tls_failure(&err);
    assert!(!tls.is_certificate_error(), "a protocol error: {tls}");
    assert!(is_do_not_retry(&*err));

    // The same client still speaks plain HTTP to that port.
    let url = format!("http://localhost:{}/", addr.port());
    assert_eq!(
        fetch(client_trusting(&ca), url).await.unwrap().body(),
        "HTTP/1.1"
    );
}

#[tokio::test]
async fn unreachable_port_is_a_retryable_error_not_a_hang() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);

    let err = fetch(HttpClient::new(), format!("https://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert!(
        find_in_chain::<TlsHandshakeFailed>(&*err).is_none(),
        "{err:?}"
    );
    assert!(
        !is_do_not_retry(&*err),
        "a refused connection may be a blip"
    );
}

#[tokio::test]
async fn silent_server_is_a_timeout_at_connect_timeout_not_a_hang() {
    // Accepts TCP and never answers the ClientHello: only the connect timeout, which
    // covers the TLS handshake too, ends the wait.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let client = HttpClient::builder()
        .connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();

    let err = fetch(client, format!("https://localhost:{port}/"))
        .await
        .unwrap_err();
    assert!(is_timeout(&*err), "{err:?}");
    assert!(!is_do_not_retry(&*err), "a slow handshake may be a blip");
}

#[test]
fn bad_root_certificates_are_typed_errors_at_build() {
    let not_pem = HttpClient::builder()
        .add_root_certificate(b"not a certificate")
        .build();
    assert!(
        matches!(
            not_pem,
            Err(ClientError::InvalidRootCertificate { index: 0, .. })
        ),
        "{not_pem:?}"
    );

    let ca = Ca::new("test CA");
    let corrupt = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let second_bad = HttpClient::builder()
        .add_root_certificate(ca.pem().as_bytes())
        .add_root_certificate(corrupt.as_bytes())
        .build();
    assert!(
        matches!(
            second_bad,
            Err(ClientError::InvalidRootCertificate { index: 1, .. })
        ),
        "{second_bad:?}"
    );

    let nothing_trusted = HttpClient::builder().webpki_roots(false).build();
    assert!(matches!(
        nothing_trusted,
        Err(ClientError::NoRootCertificates)
    ));

    let zero_timeout = HttpClient::builder()
        .connect_timeout(Duration::ZERO)
        .build();
    assert!(matches!(zero_timeout, Err(ClientError::Config(_))));
}

#[tokio::test]
async fn reqwest_client_serves_reqwest_requests_with_the_same_cap() {
    use reliability::client::{BodyTooLarge, ReqwestClient};

    let addr = serve_plain().await;
    let inner = reqwest::Client::new();
    let request = inner.get(format!("http://{addr}/")).build().unwrap();
    let res = ReqwestClient::new(inner.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), "HTTP/1.1");

    let request = inner.get(format!("http://{addr}/")).build().unwrap();
    let err = ReqwestClient::new(inner)
        .max_body_bytes(3)
        .oneshot(request)
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<BodyTooLarge>(),
        Some(&BodyTooLarge { limit: 3 })
    );
}
