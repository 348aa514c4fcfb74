//! tonic mode through a real tonic server on loopback: a server-side breaker answers
//! UNAVAILABLE when open, and a client-side breaker on a channel rejects locally with
//! UNAVAILABLE whose source says "do not retry". Real time, no sleeps.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use breaker_layer::{CircuitBreakerLayer, CircuitOpen};
use reliability_core::error::find_in_chain;
use reliability_core::health::BreakerState;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::{Service, ServiceBuilder};

#[derive(Clone, PartialEq, prost::Message)]
struct Ping {
    #[prost(string, tag = "1")]
    text: String,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The server: fails with UNAVAILABLE while `failing` is set.
#[derive(Clone, Default)]
struct PingServer {
    failing: Arc<AtomicBool>,
    seen: Arc<AtomicUsize>,
}

impl NamedService for PingServer {
    const NAME: &'static str = "test.Ping";
}

impl tonic::server::UnaryService<Ping> for PingServer {
    type Response = Ping;
    type Future = BoxFuture<Result<tonic::Response<Ping>, Status>>;

    fn call(&mut self, req: tonic::Request<Ping>) -> Self::Future {
        self.seen.fetch_add(1, Ordering::SeqCst);
        let failing = self.failing.load(Ordering::SeqCst);
        Box::pin(async move {
            if failing {
                Err(Status::unavailable("backend down"))
            } else {
                Ok(tonic::Response::new(req.into_inner()))
            }
        })
    }
}

impl Service<http::Request<Body>> for PingServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Ping, Ping>::default());
            Ok(grpc.unary(this, req).await)
        })
    }
}

async fn ping<S>(svc: S) -> Result<Ping, Status>
where
    S: tonic::client::GrpcService<Body>,
    S::Error: Into<tower::BoxError>,
    S::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as http_body::Body>::Error: Into<tower::BoxError> + Send,
{
    let mut client = tonic::client::Grpc::new(svc);
    client
        .ready()
        .await
        .map_err(|e| Status::unknown(e.into().to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/test.Ping/Ping");
    client
        .unary(
            tonic::Request::new(Ping { text: "hi".into() }),
            path,
            ProstCodec::<Ping, Ping>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}

async fn start(
    server: PingServer,
    layer: CircuitBreakerLayer<
        reliability_core::classify::GrpcClassifier,
        reliability_core::answer::AsGrpc,
    >,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream_free(listener);
    tokio::spawn(
        Server::builder()
            .layer(layer)
            .add_service(server)
            .serve_with_incoming(incoming),
    );
    format!("http://{addr}")
}

/// The listener as a stream of connections, without pulling in `tokio-stream`.
fn tokio_stream_free(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    })
}

#[tokio::test]
async fn server_side_breaker_answers_unavailable() {
    let server = PingServer::default();
    server.failing.store(true, Ordering::SeqCst);
    let layer = CircuitBreakerLayer::builder("ping-server")
        .grpc()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let url = start(server.clone(), layer.clone()).await;
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();

    for _ in 0..2 {
        assert_eq!(
            ping(channel.clone()).await.unwrap_err().code(),
            Code::Unavailable
        );
    }
    assert_eq!(layer.breaker().state(), BreakerState::Open);
    server.failing.store(false, Ordering::SeqCst);
    let status = ping(channel.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("ping-server"),
        "{}",
        status.message()
    );
    assert_eq!(
        server.seen.load(Ordering::SeqCst),
        2,
        "the handler was not called"
    );

    layer.breaker().reset();
    assert_eq!(ping(channel).await.unwrap().text, "hi");
}

#[tokio::test]
async fn client_side_breaker_rejects_locally() {
    let server = PingServer::default();
    server.failing.store(true, Ordering::SeqCst);
    let passthrough = CircuitBreakerLayer::builder("unused")
        .grpc()
        .build()
        .unwrap();
    let url = start(server.clone(), passthrough).await;
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let layer = CircuitBreakerLayer::builder("ping-client")
        .grpc()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(channel);
    for _ in 0..2 {
        assert_eq!(
            ping(svc.clone()).await.unwrap_err().code(),
            Code::Unavailable
        );
    }
    assert_eq!(layer.breaker().state(), BreakerState::Open);
    let status = ping(svc.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(server.seen.load(Ordering::SeqCst), 2);

    // In generic code the typed error converts to the same status, keeping its source.
    let generic = CircuitBreakerLayer::builder("typed").build().unwrap();
    generic.breaker().isolate();
    let mut svc = ServiceBuilder::new()
        .layer(generic)
        .service(tower::service_fn(|_: ()| async {
            Ok::<_, tower::BoxError>(())
        }));
    let err = tower::ServiceExt::ready(&mut svc)
        .await
        .unwrap()
        .call(())
        .await
        .unwrap_err();
    let status: Status = err.downcast_ref::<CircuitOpen>().unwrap().clone().into();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(find_in_chain::<CircuitOpen>(&status).is_some());
    assert!(reliability_core::error::is_do_not_retry(&status));
}
