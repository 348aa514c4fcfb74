//! A loopback HTTP client for the HTTP-mode tests, and the answers it reads.

use std::net::SocketAddr;

use axum::http::{HeaderMap, Method, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// What came back: status, the `Cache-Status` members joined, the headers and the body.
pub struct Answer {
    pub status: StatusCode,
    pub cache_status: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// A header's value, `""` when absent.
    pub fn header(&self, name: &str) -> String {
        header_of(&self.headers, name)
    }
}

/// A header's value in `headers`, `""` when absent or not text.
pub fn header_of(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Requests to one server on loopback.
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            addr,
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(Method::GET, path, headers).await
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(Method::POST, path, headers).await
    }

    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let cache_status = headers
            .get_all("cache-status")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(", ");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            cache_status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }
}
