//! HTTP (axum) and gRPC (tonic) server modes through real servers on loopback.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ratelimit_layer::http::{HeaderKey, PeerIp, RouteKey};
use ratelimit_layer::{KeyExtractorExt, Quota, RateLimitLayer, RateLimiter};
use tower::Service;

/// Checks a structured-field list of `"name";k=int;k=int` members (the subset the draft's
/// `RateLimit-Policy` and `RateLimit` fields use), returning (name, params).
fn parse_sf_list(value: &str, keys: &[&str]) -> Vec<(String, Vec<(String, u64)>)> {
    value
        .split(", ")
        .map(|member| {
            let mut parts = member.split(';');
            let name = parts.next().unwrap();
            assert!(
                name.len() >= 2 && name.starts_with('"') && name.ends_with('"'),
                "sf-string: {name}"
            );
            let inner = &name[1..name.len() - 1];
            assert!(
                inner
                    .bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
            );
            let params: Vec<(String, u64)> = parts
                .map(|p| {
                    let (k, v) = p.split_once('=').expect("key=value");
                    assert!(keys.contains(&k), "unexpected parameter {k}");
                    assert!(
                        v.bytes().all(|b| b.is_ascii_digit()) && v.len() <= 15,
                        "sf-integer: {v}"
                    );
                    (k.to_owned(), v.parse().unwrap())
                })
                .collect();
            (inner.to_owned(), params)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_answers_429_with_draft_headers() {
    // Time stands still for the limiter, so a slow machine cannot refill a bucket mid-test.
    let clock = reliability_core::clock::ManualClock::new();
    let backend = ratelimit_layer::MemoryBackend::builder()
        .clock(clock.shared())
        .build()
        .unwrap();
    let limiter = RateLimiter::builder().backend(backend).build().unwrap();
    limiter.set_tier("pro-key", "pro").await.unwrap();
    let layer = RateLimitLayer::new(limiter.clone())
        .key(
            HeaderKey::new("x-api-key")
                .unwrap()
                .or(PeerIp::new())
                .with_endpoint(RouteKey),
        )
        .http();
    let app = Router::new()
        .route("/hello/{name}", get(|| async { "hi" }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let get = |key: Option<&'static str>| {
        let client = client.clone();
        async move {
            let mut b = http::Request::get(format!("http://{addr}/hello/x"));
            if let Some(k) = key {
                b = b.header("x-api-key", k);
            }
            client.request(b.body(Empty::new()).unwrap()).await.unwrap()
        }
    };

    // No key: free tier for the client IP, 2 per second.
    let ok = get(None).await;
    assert_eq!(ok.status(), 200);
    let policy = ok.headers()["ratelimit-policy"].to_str().unwrap();
    let members = parse_sf_list(policy, &["q", "w", "qu", "pk"]);
    assert_eq!(members.len(), 4);
    assert_eq!(members[0].0, "free-1s");
    assert_eq!(members[0].1, [("q".to_owned(), 2), ("w".to_owned(), 1)]);
    assert_eq!(members[3].1[1], ("w".to_owned(), 86_400));
    let rl = parse_sf_list(
        ok.headers()["ratelimit"].to_str().unwrap(),
        &["r", "t", "pk"],
    );
    assert_eq!(rl[0].1[0], ("r".to_owned(), 1));
    assert_eq!(get(None).await.status(), 200);
    let refused = get(None).await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1).contains(&retry));
    let rl = parse_sf_list(
        refused.headers()["ratelimit"].to_str().unwrap(),
        &["r", "t", "pk"],
    );
    assert_eq!(rl[0].1[0], ("r".to_owned(), 0));
    assert_eq!(
        refused.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    let body = std::str::from_utf8(&body).unwrap();
    assert!(
        body.starts_with("rate limited by `"),
        "the refusal is named: {body}"
    );

    // A pro key has its own bucket: 10 per second.
    for _ in 0..10 {
        assert_eq!(get(Some("pro-key")).await.status(), 200);
    }
    assert_eq!(get(Some("pro-key")).await.status(), 429);
    assert!(
        limiter
            .top_users(5)
            .await
            .unwrap()
            .iter()
            .any(|(u, _)| u == "pro-key")
    );

    // An endpoint limit, keyed by the matched route template.
    limiter
        .set_endpoint_limit(
            "/hello/{name}",
            Quota::per(1, Duration::from_secs(60)).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(get(Some("other")).await.status(), 200);
    let r = get(Some("other")).await;
    assert_eq!(r.status(), 429);
    assert!(
        r.headers()["ratelimit-policy"]
            .to_str()
            .unwrap()
            .starts_with("\"endpoint-60s\";q=1;w=60")
    );
}

#[derive(Clone, PartialEq, prost::Message)]
struct Ping {
    #[prost(string, tag = "1")]
    text: String,
}

#[derive(Clone)]
struct PingServer;

impl tonic::server::NamedService for PingServer {
    const NAME: &'static str = "test.Ping";
}

struct Unary;

impl tonic::server::UnaryService<Ping> for Unary {
    type Response = Ping;
    type Future = std::future::Ready<Result<tonic::Response<Ping>, tonic::Status>>;
    fn call(&mut self, request: tonic::Request<Ping>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new(request.into_inner())))
    }
}

type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

impl Service<http::Request<tonic::body::Body>> for PingServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFut<Self::Response>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(tonic_prost::ProstCodec::<Ping, Ping>::default());
            Ok(grpc.unary(Unary, req).await)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_answers_resource_exhausted() {
    let limiter = RateLimiter::builder()
        .quota(Quota::per(2, Duration::from_secs(60)).unwrap())
        .build()
        .unwrap();
    let layer = RateLimitLayer::new(limiter)
        .key(HeaderKey::new("x-api-key").unwrap())
        .grpc();
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    tokio::spawn(async move {
        let mut server = tonic::transport::Server::builder().layer(layer);
        server
            .add_service(PingServer)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    let mut call = async |key: &'static str| {
        client.ready().await.unwrap();
        let mut req = tonic::Request::new(Ping { text: "hi".into() });
        req.metadata_mut().insert("x-api-key", key.parse().unwrap());
        let path = http::uri::PathAndQuery::from_static("/test.Ping/Ping");
        client
            .unary(req, path, tonic_prost::ProstCodec::<Ping, Ping>::default())
            .await
    };
    assert_eq!(call("a").await.unwrap().into_inner().text, "hi");
    call("a").await.unwrap();
    let status = call("a").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status.message().contains("rate limited"),
        "{}",
        status.message()
    );
    assert!(call("b").await.is_ok());

    // No `x-api-key` metadata: the client's mistake, refused by the default `Reject`.
    client.ready().await.unwrap();
    let status = client
        .unary(
            tonic::Request::new(Ping { text: "hi".into() }),
            http::uri::PathAndQuery::from_static("/test.Ping/Ping"),
            tonic_prost::ProstCodec::<Ping, Ping>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("`x-api-key` header"),
        "{}",
        status.message()
    );
}
