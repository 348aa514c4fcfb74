//! The live dashboard against the real example server (real layers, simulated upstream)
//! in real headless Chromium: one page, loaded once and driven over the DevTools
//! protocol, keeps polling while traffic flows; its charts' points advance, an injected
//! upstream outage shows as an open segment in the breaker timeline, and a screenshot of
//! that page is kept for CI at `target/artifacts/dashboard.png`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use examples::server::{ServerConfig, app, serve};
use examples::upstream::{FaultSettings, Upstream};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const TOKEN: &str = "dashboard-test-token-123";

/// An enterprise key for the traffic, a free one that the limiter rejects, and a CEX
/// breaker that opens after three failures and stays open for the rest of the test.
const CONFIG: &str = r#"
[keys.k-ent]
account = "ent"
tier = "enterprise"

[keys.k-free]
account = "alice"
tier = "free"

[reliability.cex.cache]
ttl = "200ms"
stale_while_revalidate = "10ms"
stale_if_error = "30s"

[reliability.cex.breaker]
consecutive_failures = 3
open_wait = "60s"
"#;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn start() -> SocketAddr {
    let config = ServerConfig::parse(CONFIG).unwrap();
    let upstream = Upstream::new(11);
    upstream.set_faults(FaultSettings {
        error_rate: 0.0,
        latency_factor: 0.05,
        ..FaultSettings::HEALTHY
    });
    let (router, _) = app(&config, upstream, Some(TOKEN)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router));
    addr
}

async fn send(
    client: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
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
        .unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn admin(
    client: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Value {
    let auth = format!("Bearer {TOKEN}");
    let (status, body) = send(
        client,
        addr,
        method,
        path,
        &[("authorization", &auth)],
        body,
    )
    .await;
    assert_eq!(status, 200, "{method} {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
}

/// Requests on every route until stopped: CEX symbols that repeat (cache hits) and new
/// ones (misses that reach the upstream and its breaker), and a free-tier key that the
/// limiter rejects past two a second. Answers the number of requests sent.
fn traffic(addr: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let client = client();
        let mut pace = tokio::time::interval(Duration::from_millis(10));
        let mut sent = 0u64;
        while !stop.load(Ordering::SeqCst) {
            pace.tick().await;
            let ent = [("x-api-key", "k-ent")];
            let path = if sent.is_multiple_of(3) {
                format!("/api/cex/orderbook/NEW{sent}")
            } else {
                format!("/api/cex/orderbook/S{}", sent % 7)
            };
            send(&client, addr, "GET", &path, &ent, "").await;
            let dex = format!("/api/dex/quote/P{}", sent % 5);
            send(&client, addr, "GET", &dex, &ent, "").await;
            if sent.is_multiple_of(4) {
                let free = [("x-api-key", "k-free")];
                send(&client, addr, "GET", "/api/social/search?q=rust", &free, "").await;
            }
            sent += 1;
        }
        sent
    })
}

/// Polls `check` every 50 ms until it holds; panics with `what` after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The figures of component `name` in the last history point's `list`.
fn last_of<'a>(history: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    history["points"].as_array()?.last()?[list]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn points(history: &Value) -> usize {
    history["points"].as_array().map_or(0, Vec::len)
}

/// Where Chromium lives, if installed.
fn chromium() -> Option<&'static str> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

/// One page in headless Chromium, driven over the DevTools protocol: the page stays
/// loaded and keeps polling the server while the test reads its DOM again and again.
struct Page {
    ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
    browser: std::process::Child,
    _profile: tempfile::TempDir,
}

impl Page {
    /// Starts Chromium on `url` and attaches to the page's DevTools socket.
    async fn open(url: &str) -> Page {
        let bin = chromium().expect("checked by the caller");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = std::process::Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1280,1600",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // Chromium names its DevTools endpoint on stderr; the rest of stderr is drained so
        // that a full pipe never stalls the browser.
        let stderr = browser.stderr.take().expect("piped");
        let (found, endpoint) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("ws://") {
                    let _ = found.send(line[at..].trim().to_owned());
                }
            }
        });
        let browser_ws =
            tokio::task::spawn_blocking(move || endpoint.recv_timeout(Duration::from_secs(60)))
                .await
                .unwrap()
                .expect("chromium names its DevTools endpoint within 60 s");
        let host = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        // The page's own socket, from the endpoint's target list.
        let http = client();
        let mut page_ws = None;
        for _ in 0..600 {
            let res = http
                .get(format!("http://{host}/json/list").parse().unwrap())
                .await
                .expect("DevTools lists its targets");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let targets: Value = serde_json::from_slice(&body).unwrap();
            page_ws = targets.as_array().into_iter().flatten().find_map(|t| {
                (t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.contains("/dashboard")))
                    .then(|| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
                    .flatten()
            });
            if page_ws.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page_ws = page_ws.expect("the dashboard page is a DevTools target");
        let (ws, _) = tokio_tungstenite::connect_async(page_ws.as_str())
            .await
            .expect("the page's DevTools socket opens");
        Page {
            ws,
            next_id: 0,
            browser,
            _profile: profile,
        }
    }

    /// Sends one DevTools command and answers its result (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let answer = self.exchange(method, params).await;
        assert!(answer["error"].is_null(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// Sends one DevTools command and answers the whole reply, an error included.
    async fn exchange(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = serde_json::json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("DevTools command sent");
        tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(msg) = self.ws.next().await {
                let msg = msg.expect("DevTools socket stays open");
                let Ok(text) = msg.to_text() else { continue };
                let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                if value["id"] == id {
                    return value;
                }
            }
            panic!("DevTools socket closed before answering {method}");
        })
        .await
        .unwrap_or_else(|_| panic!("DevTools did not answer {method} within 60 s"))
    }

    /// The page's DOM as it is now; `None` while the page is still loading (no document
    /// yet, or its execution context replaced by the navigation).
    async fn dom(&mut self) -> Option<String> {
        let expression = "document.documentElement ? document.documentElement.outerHTML : null";
        let answer = self
            .exchange(
                "Runtime.evaluate",
                serde_json::json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        answer["result"]["result"]["value"]
            .as_str()
            .map(str::to_owned)
    }

    /// Reads the page until `check` holds on what it shows; panics with `what` after
    /// `limit`. Answers the DOM and what was seen in it.
    async fn until(
        &mut self,
        what: &str,
        limit: Duration,
        check: impl Fn(&Seen) -> bool,
    ) -> (String, Seen) {
        let start = Instant::now();
        loop {
            let dom = self.dom().await.unwrap_or_default();
            if let Some(seen) = try_seen(&dom)
                && check(&seen)
            {
                return (dom, seen);
            }
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for the page to show {what}: {dom}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A PNG of the page as it is now.
    async fn screenshot(&mut self) -> Vec<u8> {
        let result = self
            .call(
                "Page.captureScreenshot",
                serde_json::json!({ "format": "png" }),
            )
            .await;
        let data = result["data"].as_str().expect("screenshot data");
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("screenshot is base64")
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.browser.kill();
        let _ = self.browser.wait();
    }
}

/// The opening tag around byte `at` of `dom`.
fn enclosing(dom: &str, at: usize) -> Option<&str> {
    let open = dom[..at].rfind('<')?;
    let close = at + dom[at..].find('>')?;
    Some(&dom[open..=close])
}

/// The opening tag of the first element carrying `marker` (`id="charts"`, say).
fn tag<'a>(dom: &'a str, marker: &str) -> Option<&'a str> {
    enclosing(dom, dom.find(marker)?)
}

/// The opening tags of every element carrying `marker`.
fn tags<'a>(dom: &'a str, marker: &str) -> Vec<&'a str> {
    dom.match_indices(marker)
        .filter_map(|(at, _)| enclosing(dom, at))
        .collect()
}

/// The value of attribute `name` in an opening tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

fn number(tag: &str, name: &str) -> u64 {
    attr(tag, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("numeric {name} in {tag}"))
}

/// What one render of the page showed.
#[derive(Debug)]
struct Seen {
    points: u64,
    last: u64,
    polls: u64,
    timeline: String,
}

/// What the page shows, once it has drawn its charts and timeline.
fn try_seen(dom: &str) -> Option<Seen> {
    let charts = tag(dom, "id=\"charts\"")?;
    let timeline = tag(dom, "id=\"breaker-timeline\"")?.to_owned();
    Some(Seen {
        points: attr(charts, "data-points")?.parse().ok()?,
        last: attr(charts, "data-last")?.parse().ok()?,
        polls: attr(charts, "data-polls")?.parse().ok()?,
        timeline,
    })
}

fn workspace() -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR"));
    examples.parent().unwrap_or(examples).to_path_buf()
}

/// The CI artifact: `target/artifacts/dashboard.png` (or under `CARGO_TARGET_DIR`).
fn artifact_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("artifacts").join("dashboard.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_charts_follow_traffic_and_show_an_outage_as_an_open_breaker() {
    if chromium().is_none() {
        assert!(
            std::env::var("RELIABILITY_REQUIRE_BROWSER").is_err(),
            "chromium is required (RELIABILITY_REQUIRE_BROWSER is set) but not installed"
        );
        eprintln!("SKIPPED browser test: chromium is not installed");
        return;
    }
    let addr = start().await;
    let http = &client();
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(addr, stop.clone());
    let url = format!("http://{addr}/dashboard#token={TOKEN}");

    // Traffic is flowing and the sampler has a few points: hits, misses, rejections.
    let sampled = &AtomicU64::new(0);
    eventually(
        "three samples with traffic in them",
        Duration::from_secs(30),
        move || async move {
            let h = admin(http, addr, "GET", "/admin/history", "").await;
            let cache_hits =
                last_of(&h, "caches", "cex").map_or(0, |c| c["hits"].as_u64().unwrap());
            let rejected =
                last_of(&h, "rate_limits", "api").map_or(0, |l| l["rejected"].as_u64().unwrap());
            sampled.store(points(&h) as u64, Ordering::SeqCst);
            points(&h) >= 3 && cache_hits > 0 && rejected > 0
        },
    )
    .await;

    // One page, loaded once, for the rest of the test.
    let mut page = Page::open(&url).await;
    let had = sampled.load(Ordering::SeqCst);
    let (first_dom, first) = page
        .until(
            "three polls holding every sample the server had",
            Duration::from_secs(30),
            |s| s.polls >= 3 && s.points >= had,
        )
        .await;
    for kind in ["latency", "traffic", "admission"] {
        let chart = tag(&first_dom, &format!("data-kind=\"{kind}\""))
            .unwrap_or_else(|| panic!("{kind} chart drawn: {first_dom}"));
        assert!(
            number(chart, "data-points") >= 3,
            "{kind} chart has points: {chart}"
        );
        assert!(number(chart, "data-last") > 0, "{chart}");
    }
    assert!(
        first_dom.contains("data-kind=\"latency\" data-name=\"cex\""),
        "a latency chart per source"
    );
    assert!(
        first_dom.contains("data-series=\"p99\""),
        "p50/p95/p99 lines are drawn"
    );
    assert_eq!(
        attr(&first.timeline, "data-open-segments"),
        Some("0"),
        "no open breaker before the outage: {}",
        first.timeline
    );
    assert!(
        tags(&first_dom, "class=\"seg\"")
            .iter()
            .any(|s| s.contains("data-state=\"CLOSED\"")),
        "closed segments are drawn"
    );

    // An upstream outage: every call fails, and the CEX breaker opens. The same page,
    // still polling, draws it.
    let outage = r#"{"error_rate":1.0,"latency_factor":0.05,"outage":true}"#;
    admin(http, addr, "POST", "/admin/upstream/faults", outage).await;
    let (second_dom, second) = page
        .until(
            "two more polls, newer points and an open breaker segment",
            Duration::from_secs(45),
            |s| {
                s.points > first.points
                    && s.last > first.last
                    && s.polls >= first.polls + 2
                    && attr(&s.timeline, "data-open-segments")
                        .and_then(|n| n.parse::<u64>().ok())
                        .is_some_and(|n| n >= 1)
            },
        )
        .await;
    let open = tags(&second_dom, "class=\"seg seg-open\"");
    assert!(
        open.iter().any(|s| s.contains("data-state=\"OPEN\"")),
        "an open segment in the breaker timeline: {}",
        second.timeline
    );
    assert!(
        number(&second.timeline, "data-open-segments") >= 1,
        "{}",
        second.timeline
    );

    let shot = artifact_path();
    // A screenshot left by an earlier run must not pass for this one.
    match std::fs::remove_file(&shot) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("removing the old screenshot {}: {e}", shot.display()),
    }
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    std::fs::write(&shot, page.screenshot().await).unwrap();
    drop(page);
    let png = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("screenshot {} written: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is a PNG",
        shot.display()
    );
    assert!(
        png.len() > 10 * 1024,
        "the screenshot shows a drawn page, not {} bytes",
        png.len()
    );
    println!(
        "dashboard screenshot: {} ({} bytes)",
        shot.display(),
        png.len()
    );

    stop.store(true, Ordering::SeqCst);
    let sent = load.await.unwrap();
    assert!(sent > 10, "traffic flowed during the test: {sent} rounds");
}
