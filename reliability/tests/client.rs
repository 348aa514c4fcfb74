//! The buffered HTTP client adapters against a real axum server on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use bytes::Bytes;
use reliability::client::{BodyTooLarge, HttpClient, ReqwestClient};
use tower::{Service, ServiceExt};

async fn serve() -> SocketAddr {
    let app = axum::Router::new()
        .route("/small", get(|| async { "hello" }))
        .route("/big", get(|| async { "x".repeat(10_000) }))
        .route(
            "/fail",
            get(|| async { (http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn get_req(addr: SocketAddr, path: &str) -> http::Request<Bytes> {
    http::Request::get(format!("http://{addr}{path}"))
        .body(Bytes::new())
        .unwrap()
}

async fn check<S>(mut client: S, addr: SocketAddr)
where
    S: Service<http::Request<Bytes>, Response = http::Response<Bytes>, Error = tower::BoxError>,
{
    let res = client
        .ready()
        .await
        .unwrap()
        .call(get_req(addr, "/small"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), "hello");

    let res = client
        .ready()
        .await
        .unwrap()
        .call(get_req(addr, "/fail"))
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        503,
        "statuses pass through for the classifier to judge"
    );

    let err = client
        .ready()
        .await
        .unwrap()
        .call(get_req(addr, "/big"))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<BodyTooLarge>(),
        Some(&BodyTooLarge { limit: 1000 })
    );
}

#[tokio::test]
async fn hyper_client_buffers_with_a_cap() {
    let addr = serve().await;
    check(HttpClient::new().max_body_bytes(1000), addr).await;
}

#[tokio::test]
async fn reqwest_client_buffers_with_a_cap() {
    let addr = serve().await;
    check(
        ReqwestClient::new(reqwest::Client::new()).max_body_bytes(1000),
        addr,
    )
    .await;
}

#[tokio::test]
async fn dead_server_is_an_error_not_a_hang() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut client = HttpClient::new();
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        client.ready().await.unwrap().call(get_req(addr, "/")),
    )
    .await
    .expect("no hang");
    assert!(err.is_err());
}
