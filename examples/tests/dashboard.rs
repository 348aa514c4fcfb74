//! The live dashboard against the real example server (real layers, simulated upstream)
//! in real headless Chromium: while traffic flows the charts' points advance between two
//! renders of the page, an injected upstream outage shows as an open segment in the
//! breaker timeline, and a screenshot is kept for CI at `target/artifacts/dashboard.png`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use examples::server::{ServerConfig, app, serve};
use examples::upstream::{FaultSettings, Upstream};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

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
        outage: false,
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

fn last_stamp(history: &Value) -> u64 {
    history["points"]
        .as_array()
        .and_then(|p| p.last())
        .and_then(|p| p["unix_ms"].as_u64())
        .unwrap_or(0)
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

/// Loads `url` in headless Chromium and lets the page run for four poll intervals of
/// virtual time (fetches hold virtual time until they answer); returns the DOM, or
/// writes a screenshot.
async fn render(url: &str, screenshot: Option<&Path>) -> String {
    let bin = chromium().expect("checked by the caller");
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--virtual-time-budget=4500",
        "--window-size=1280,1600",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    cmd.arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // The server answers the page from this runtime: wait for the browser off it.
    let out = tokio::task::spawn_blocking(move || run_to_end(cmd, Duration::from_secs(120)))
        .await
        .unwrap();
    drop(profile);
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `cmd` to its end and answers its standard output; kills it after `limit`.
fn run_to_end(mut cmd: std::process::Command, limit: Duration) -> Vec<u8> {
    let mut child = cmd.spawn().expect("chromium starts");
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let start = Instant::now();
    while child
        .try_wait()
        .expect("chromium can be waited for")
        .is_none()
    {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join().unwrap().expect("chromium's output read")
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

fn seen(dom: &str) -> Seen {
    let charts = tag(dom, "id=\"charts\"").unwrap_or_else(|| panic!("charts section: {dom}"));
    let timeline = tag(dom, "id=\"breaker-timeline\"")
        .unwrap_or_else(|| panic!("breaker timeline drawn: {dom}"))
        .to_owned();
    Seen {
        points: number(charts, "data-points"),
        last: number(charts, "data-last"),
        polls: number(charts, "data-polls"),
        timeline,
    }
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

    let first_dom = render(&url, None).await;
    let first = seen(&first_dom);
    assert!(
        first.points >= sampled.load(Ordering::SeqCst),
        "the page holds every sample the server had: {first:?}"
    );
    assert!(first.polls >= 3, "the page polled several times: {first:?}");
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

    // An upstream outage: every call fails, and the CEX breaker opens.
    let outage = r#"{"error_rate":1.0,"latency_factor":0.05,"outage":true}"#;
    admin(http, addr, "POST", "/admin/upstream/faults", outage).await;
    let (points_before, last_before) = (first.points, first.last);
    eventually(
        "an open CEX breaker in a newer sample",
        Duration::from_secs(30),
        move || async move {
            let h = admin(http, addr, "GET", "/admin/history", "").await;
            let open = last_of(&h, "breakers", "cex").is_some_and(|b| b["state"] == "OPEN");
            open && last_stamp(&h) > last_before && points(&h) as u64 > points_before
        },
    )
    .await;

    let second_dom = render(&url, None).await;
    let second = seen(&second_dom);
    assert!(
        second.points > first.points,
        "more points on the second render: {first:?} then {second:?}"
    );
    assert!(
        second.last > first.last,
        "a later last point: {first:?} then {second:?}"
    );
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
    render(&url, Some(&shot)).await;
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
