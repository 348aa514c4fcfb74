//! gRPC retries through a real tonic server and client on loopback.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use retry_layer::backoff::Backoff;
use retry_layer::grpc::GrpcRetryLayer;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::{Service, ServiceBuilder};

#[derive(Clone, PartialEq, prost::Message)]
struct Ping {
    #[prost(uint32, tag = "1")]
    n: u32,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Fails its first `failures` calls with `code` (and a pushback header), then echoes.
#[derive(Clone)]
struct Flaky {
    calls: Arc<AtomicU32>,
    failures: u32,
    code: Code,
    pushback_ms: Option<u32>,
}

impl tonic::server::NamedService for Flaky {
    const NAME: &'static str = "test.Flaky";
}

impl tonic::server::UnaryService<Ping> for Flaky {
    type Response = Ping;
    type Future = BoxFuture<Result<tonic::Response<Ping>, Status>>;

    fn call(&mut self, req: tonic::Request<Ping>) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        Box::pin(async move {
            if n < this.failures {
                let mut status = Status::new(this.code, "try later");
                if let Some(ms) = this.pushback_ms {
                    status
                        .metadata_mut()
                        .insert("grpc-retry-pushback-ms", ms.to_string().parse().unwrap());
                }
                return Err(status);
            }
            Ok(tonic::Response::new(req.into_inner()))
        })
    }
}

impl Service<http::Request<tonic::body::Body>> for Flaky {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let unary = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Ping, Ping>::default());
            Ok(grpc.unary(unary, req).await)
        })
    }
}

async fn start(failures: u32, code: Code, pushback_ms: Option<u32>) -> (String, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let service = Flaky {
        calls: calls.clone(),
        failures,
        code,
        pushback_ms,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (format!("http://{addr}"), calls)
}

async fn ping(url: String, layer: GrpcRetryLayer) -> Result<Ping, Status> {
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(channel);
    let mut client = tonic::client::Grpc::new(svc);
    client.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/test.Flaky/Ping");
    client
        .unary(
            tonic::Request::new(Ping { n: 7 }),
            path,
            ProstCodec::<Ping, Ping>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}

fn layer() -> GrpcRetryLayer {
    GrpcRetryLayer::grpc_builder()
        .backoff(Backoff::constant(Duration::from_millis(1)))
        .build()
        .unwrap()
}

#[tokio::test]
async fn unavailable_is_retried() {
    let (url, calls) = start(2, Code::Unavailable, None).await;
    let layer = layer();
    let handle = layer.handle();
    assert_eq!(ping(url, layer).await.unwrap(), Ping { n: 7 });
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(handle.snapshot().retries, 2);
}

#[tokio::test]
async fn resource_exhausted_waits_for_the_pushback() {
    let (url, calls) = start(1, Code::ResourceExhausted, Some(40)).await;
    let start = Instant::now();
    assert_eq!(ping(url, layer()).await.unwrap(), Ping { n: 7 });
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(start.elapsed() >= Duration::from_millis(40));
}

#[tokio::test]
async fn invalid_argument_is_not_retried() {
    let (url, calls) = start(5, Code::InvalidArgument, None).await;
    let status = ping(url, layer()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn exhausted_attempts_return_the_last_status() {
    let (url, calls) = start(10, Code::Unavailable, None).await;
    let status = ping(url, layer()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
