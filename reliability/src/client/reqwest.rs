//! [`ReqwestClient`]: a `reqwest::Client` as a buffered tower service (feature `reqwest`).

use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tower::BoxError;

use super::{BodyTooLarge, DEFAULT_MAX_BODY_BYTES};

/// A `reqwest::Client` as a buffered tower service, for `http::Request<Bytes>` and
/// `reqwest::Request` alike.
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
            execute(client, request, limit).await
        })
    }
}

/// `reqwest::Request`s, as built by `reqwest::Client::get(..).build()`.
impl tower::Service<reqwest::Request> for ReqwestClient {
    type Response = http::Response<Bytes>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<http::Response<Bytes>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: reqwest::Request) -> Self::Future {
        Box::pin(execute(self.client.clone(), request, self.max_body))
    }
}

async fn execute(
    client: reqwest::Client,
    request: reqwest::Request,
    limit: usize,
) -> Result<http::Response<Bytes>, BoxError> {
    let mut response = client.execute(request).await?;
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(Box::new(BodyTooLarge { limit }));
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
            return Err(Box::new(BodyTooLarge { limit }));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(builder.body(Bytes::from(body))?)
}
