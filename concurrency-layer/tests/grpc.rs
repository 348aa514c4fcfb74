//! tonic mode through a real tonic server on loopback: a full server-side bulkhead
//! answers RESOURCE_EXHAUSTED without calling the handler, and a client-side one on a
//! channel refuses locally with the same code and a pushback. Real time; the tests wait
//! for events, never sleep.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use concurrency_layer::{BulkheadFull, ConcurrencyLimitLayer};
use reliability_core::error::find_in_chain;
use tokio::sync::{Notify, mpsc};
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

/// The server: tells when a call starts, answers when released.
#[derive(Clone)]
struct PingServer {
    started: mpsc::UnboundedSender<()>,
    release: Arc<Notify>,
    seen: Arc<AtomicUsize>,
}

impl PingServer {
    fn new() -> (Self, mpsc::UnboundedReceiver<()>) {
        let (started, rx) = mpsc::unbounded_channel();
        let this = Self {
            started,
            release: Arc::new(Notify::new()),
            seen: Arc::new(AtomicUsize::new(0)),
        };
        (this, rx)
    }
}

impl NamedService for PingServer {
    const NAME: &'static str = "test.Ping";
}

impl tonic::server::UnaryService<Ping> for PingServer {
    type Response = Ping;
    type Future = BoxFuture<Result<tonic::Response<Ping>, Status>>;

    fn call(&mut self, req: tonic::Request<Ping>) -> Self::Future {
        self.seen.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        Box::pin(async move {
            let released = this.release.notified();
            let _ = this.started.send(());
            released.await;
            Ok(tonic::Response::new(req.into_inner()))
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

/// The listener as a stream of connections, without pulling in `tokio-stream`.
fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    })
}

async fn listen() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

#[tokio::test]
async fn a_full_server_side_bulkhead_answers_resource_exhausted() {
    let (server, mut started) = PingServer::new();
    let layer = ConcurrencyLimitLayer::builder("ping-server")
        .limit(1)
        .retry_after(Duration::from_millis(1_500))
        .grpc()
        .build()
        .unwrap();
    let (listener, url) = listen().await;
    tokio::spawn(
        Server::builder()
            .layer(layer.clone())
            .add_service(server.clone())
            .serve_with_incoming(incoming(listener)),
    );
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();

    let first = tokio::spawn(ping(channel.clone()));
    started.recv().await.unwrap();
    let status = ping(channel.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("ping-server"),
        "{}",
        status.message()
    );
    assert_eq!(
        status.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "1500"
    );
    assert_eq!(
        server.seen.load(Ordering::SeqCst),
        1,
        "the handler was not called"
    );

    server.release.notify_one();
    assert_eq!(first.await.unwrap().unwrap().text, "hi");
    assert_eq!(layer.limiter().snapshot().rejected, 1);
}

#[tokio::test]
async fn a_client_side_bulkhead_refuses_locally() {
    let (server, mut started) = PingServer::new();
    let (listener, url) = listen().await;
    tokio::spawn(
        Server::builder()
            .add_service(server.clone())
            .serve_with_incoming(incoming(listener)),
    );
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let layer = ConcurrencyLimitLayer::builder("ping-client")
        .limit(1)
        .grpc()
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(channel);

    let first = tokio::spawn(ping(svc.clone()));
    started.recv().await.unwrap();
    let status = ping(svc.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        server.seen.load(Ordering::SeqCst),
        1,
        "refused before the network"
    );
    server.release.notify_one();
    assert_eq!(first.await.unwrap().unwrap().text, "hi");

    // In generic code the typed error converts to the same status, keeping its source.
    let generic = ConcurrencyLimitLayer::builder("typed")
        .limit(1)
        .build()
        .unwrap();
    let hold = Arc::new(Notify::new());
    let h = hold.clone();
    let mut svc = ServiceBuilder::new()
        .layer(generic)
        .service(tower::service_fn(move |_: ()| {
            let h = h.clone();
            async move {
                h.notified().await;
                Ok::<_, std::io::Error>(())
            }
        }));
    let mut busy = Box::pin(tower::ServiceExt::ready(&mut svc).await.unwrap().call(()));
    assert!(futures_util::poll!(busy.as_mut()).is_pending());
    let err = tower::ServiceExt::ready(&mut svc)
        .await
        .unwrap()
        .call(())
        .await
        .unwrap_err();
    let status: Status = err.downcast_ref::<BulkheadFull>().unwrap().clone().into();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(find_in_chain::<BulkheadFull>(&status).is_some());
    assert!(reliability_core::error::is_do_not_retry(&status));
    hold.notify_one();
    busy.await.unwrap();
}
