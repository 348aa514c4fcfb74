//! What the example-server tests share: an HTTP client, admin calls with the test token,
//! polling, and `server` processes started from the binary.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The admin token every test server gets.
pub const TOKEN: &str = "chaos-test-token-123";

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Answer {
    pub status: u16,
    pub cache_status: String,
    pub body: String,
}

/// One request; fails the test if the connection fails or resets.
pub async fn send(
    client: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    try_send(client, addr, method, path, headers, body)
        .await
        .unwrap_or_else(|| panic!("{method} {path} on {addr}: no answer"))
}

/// One request; `None` if the connection fails, resets or the body breaks off.
pub async fn try_send(
    client: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Answer> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .map_err(|e| eprintln!("{method} {path} on {addr}: {e}"))
        .ok()?;
    let status = res.status().as_u16();
    let cache_status = res
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = res.into_body().collect().await.ok()?.to_bytes();
    Some(Answer {
        status,
        cache_status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

pub async fn get(client: &HttpClient, addr: SocketAddr, path: &str, key: (&str, &str)) -> Answer {
    send(client, addr, "GET", path, &[key], "").await
}

pub async fn admin(
    client: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Value {
    let auth = format!("Bearer {TOKEN}");
    let a = send(
        client,
        addr,
        method,
        path,
        &[("authorization", &auth)],
        body,
    )
    .await;
    assert_eq!(a.status, 200, "{path}: {}", a.body);
    serde_json::from_str(&a.body).unwrap()
}

/// The `field` of the entry named `name` in the health report's `list`.
pub fn named<'a>(report: &'a Value, list: &str, name: &str, field: &str) -> &'a str {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.contains(name)))
        .unwrap_or_else(|| panic!("no {name} in {list}: {report}"))[field]
        .as_str()
        .unwrap_or_default()
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// A `server` process, killed on drop.
pub struct Process(pub std::process::Child);

impl Process {
    /// Sends SIGTERM, as a process manager stopping the server would.
    pub fn terminate(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM sent");
    }

    /// Waits for the process to exit, at most `limit`; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let began = Instant::now();
        while began.elapsed() < limit {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `server` binary on a free port with `--redis`; returns its address.
pub fn spawn_server(config: &std::path::Path, redis: &str) -> (Process, SocketAddr) {
    spawn_server_with(config, &["--redis", redis])
}

/// Starts the `server` binary on a free port with `args`; returns its address.
pub fn spawn_server_with(config: &std::path::Path, args: &[&str]) -> (Process, SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .arg("--config")
        .arg(config)
        .env("ADMIN_TOKEN", TOKEN)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let process = Process(child);
    let mut lines = std::io::BufReader::new(stderr).lines();
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with("listening on http://")))
        .expect("the server prints its address");
    let addr = line["listening on http://".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Keep reading so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (process, addr)
}
