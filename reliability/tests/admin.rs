//! The admin router through a real axum server on loopback: token checks, every route's
//! JSON shape, and the dashboard in real headless Chromium.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use reliability::admin::{Admin, AdminError, BreakerControl, CacheControl, RateLimitControl};
use reliability::core::health::*;
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789";

/// A source whose figures move with every call of `bump`, so the dashboard can be seen
/// to change.
#[derive(Default)]
struct Figures {
    calls: AtomicU64,
    cleared: AtomicU64,
    reset: std::sync::Mutex<Vec<String>>,
}

impl HealthSource for Figures {
    fn health(&self) -> Vec<ComponentHealth> {
        let calls = self.calls.load(Ordering::SeqCst);
        vec![
            ComponentHealth::new(
                "cex",
                if calls > 0 {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Degraded
                },
                ComponentDetail::Sla(SlaSnapshot {
                    calls,
                    successes: calls,
                    success_rate: 1.0,
                    p50_ms: 1.0 + calls as f64,
                    p95_ms: 2.0 + calls as f64,
                    p99_ms: 3.0 + calls as f64,
                    ..Default::default()
                }),
            ),
            ComponentHealth::new(
                "binance",
                HealthStatus::Healthy,
                ComponentDetail::Breaker(BreakerSnapshot::default()),
            ),
            ComponentHealth::new(
                "cex-cache",
                HealthStatus::Healthy,
                ComponentDetail::Cache(CacheSnapshot {
                    hits: calls,
                    misses: 1,
                    hit_rate: calls as f64 / (calls + 1) as f64,
                    ..Default::default()
                }),
            ),
            ComponentHealth::new(
                "api",
                HealthStatus::Healthy,
                ComponentDetail::RateLimit(RateLimitSnapshot {
                    backend: "memory".into(),
                    allowed: calls,
                    ..Default::default()
                }),
            ),
        ]
    }
}

struct Parts(Arc<Figures>);

impl HealthSource for Parts {
    fn health(&self) -> Vec<ComponentHealth> {
        Vec::new()
    }
}

impl CacheControl for Parts {
    fn clear(&self) -> BoxFuture<'_, Result<(), AdminError>> {
        self.0.cleared.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

impl BreakerControl for Parts {
    fn reset(&self, name: &str) -> Result<(), AdminError> {
        if name != "binance" {
            return Err(AdminError::NotFound(format!("breaker {name}")));
        }
        self.0.reset.lock().unwrap().push(name.to_owned());
        Ok(())
    }
    fn force_open(&self, name: &str) -> Result<(), AdminError> {
        BreakerControl::reset(self, name)
    }
}

impl RateLimitControl for Parts {
    fn status(&self, user: &str) -> BoxFuture<'_, Result<Value, AdminError>> {
        let v = json!({ "user": user, "tier": "free", "windows": [] });
        Box::pin(async move { Ok(v) })
    }
    fn set_tier(&self, _user: &str, tier: &str) -> BoxFuture<'_, Result<(), AdminError>> {
        let ok = ["free", "basic", "pro", "enterprise"].contains(&tier);
        let tier = tier.to_owned();
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err(AdminError::BadRequest(format!("unknown tier {tier}")))
            }
        })
    }
    fn reset(&self, _user: &str) -> BoxFuture<'_, Result<(), AdminError>> {
        Box::pin(async { Ok(()) })
    }
    fn top(&self, n: usize) -> BoxFuture<'_, Result<Value, AdminError>> {
        Box::pin(async move { Ok(json!({ "top": [], "n": n })) })
    }
}

async fn serve(figures: Arc<Figures>) -> SocketAddr {
    let parts = Arc::new(Parts(figures.clone()));
    let app = Admin::new(TOKEN)
        .unwrap()
        .health_source(figures)
        .cache(parts.clone())
        .breakers(parts.clone())
        .rate_limits(parts)
        .metrics(|| "# TYPE up gauge\nup 1\n".to_owned())
        .router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let req = req
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Polls `/admin/history` until it holds at least `n` points; answers the last one read.
async fn history_with(addr: SocketAddr, n: usize) -> Value {
    let start = std::time::Instant::now();
    loop {
        let (s, body) = call(addr, Method::GET, "/admin/history", Some(TOKEN), None).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let h = json(&body);
        if h["points"].as_array().unwrap().len() >= n {
            return h;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{n} history points within 30 s: {h}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_admin_route_needs_the_token() {
    let addr = serve(Arc::default()).await;
    let routes = [
        (Method::GET, "/admin/health"),
        (Method::GET, "/admin/history"),
        (Method::GET, "/admin/history?since=0"),
        (Method::GET, "/admin/metrics"),
        (Method::GET, "/admin/cache/stats"),
        (Method::POST, "/admin/cache/clear"),
        (Method::GET, "/admin/breakers"),
        (Method::POST, "/admin/breakers/binance/reset"),
        (Method::POST, "/admin/breakers/binance/open"),
        (Method::GET, "/admin/ratelimit/top"),
        (Method::GET, "/admin/ratelimit/alice"),
        (Method::PUT, "/admin/ratelimit/alice/tier"),
        (Method::POST, "/admin/ratelimit/alice/reset"),
    ];
    for (method, path) in routes {
        let (status, _) = call(addr, method.clone(), path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let (status, _) = call(
            addr,
            method.clone(),
            path,
            Some("wrong-token-0123456789"),
            None,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} wrong token"
        );
    }
}

#[tokio::test]
async fn routes_answer_with_their_json_shapes() {
    let figures = Arc::new(Figures::default());
    figures.calls.store(3, Ordering::SeqCst);
    let addr = serve(figures.clone()).await;
    let t = Some(TOKEN);

    let (s, body) = call(addr, Method::GET, "/admin/health", t, None).await;
    assert_eq!(s, StatusCode::OK);
    let h = json(&body);
    assert_eq!(h["status"], "HEALTHY");
    assert_eq!(h["sources"][0]["name"], "cex");
    assert_eq!(h["sources"][0]["p95_ms"], 5.0);
    assert_eq!(h["breakers"][0]["state"], "CLOSED");
    assert_eq!(h["caches"][0]["hits"], 3);
    assert_eq!(h["rate_limits"][0]["backend"], "memory");
    assert!(h["components"].as_array().unwrap().len() >= 4);

    let (s, body) = call(addr, Method::GET, "/admin/metrics", t, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("up 1"));

    let (s, body) = call(addr, Method::GET, "/admin/cache/stats", t, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(json(&body).is_array());
    let (s, body) = call(addr, Method::POST, "/admin/cache/clear", t, None).await;
    assert_eq!(
        (s, json(&body)["cleared"].clone()),
        (StatusCode::OK, json!(true))
    );
    assert_eq!(figures.cleared.load(Ordering::SeqCst), 1);

    let (s, body) = call(addr, Method::POST, "/admin/breakers/binance/reset", t, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["state"], "CLOSED");
    let (s, body) = call(addr, Method::POST, "/admin/breakers/nope/reset", t, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(json(&body)["error"].as_str().unwrap().contains("nope"));
    let (s, body) = call(addr, Method::POST, "/admin/breakers/binance/open", t, None).await;
    assert_eq!(
        (s, json(&body)["state"].clone()),
        (StatusCode::OK, json!("FORCED_OPEN"))
    );

    let (s, body) = call(addr, Method::GET, "/admin/ratelimit/alice", t, None).await;
    assert_eq!(
        (s, json(&body)["user"].clone()),
        (StatusCode::OK, json!("alice"))
    );
    let (s, body) = call(addr, Method::GET, "/admin/ratelimit/top?n=5", t, None).await;
    assert_eq!((s, json(&body)["n"].clone()), (StatusCode::OK, json!(5)));
    let tier = Some(json!({ "tier": "pro" }));
    let (s, body) = call(addr, Method::PUT, "/admin/ratelimit/alice/tier", t, tier).await;
    assert_eq!(
        (s, json(&body)["tier"].clone()),
        (StatusCode::OK, json!("pro"))
    );
    let bad = Some(json!({ "tier": "platinum" }));
    let (s, _) = call(addr, Method::PUT, "/admin/ratelimit/alice/tier", t, bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, body) = call(addr, Method::POST, "/admin/ratelimit/alice/reset", t, None).await;
    assert_eq!(
        (s, json(&body)["reset"].clone()),
        (StatusCode::OK, json!(true))
    );

    let h = history_with(addr, 1).await;
    assert_eq!(
        (h["capacity"].clone(), h["interval_ms"].clone()),
        (json!(600), json!(1000))
    );
    let point = &h["points"][0];
    assert_eq!(point["sources"][0]["name"], "cex");
    assert_eq!(point["sources"][0]["p95_ms"], 5.0);
    assert_eq!(point["breakers"][0]["state"], "CLOSED");
    assert_eq!(point["caches"][0]["hits"], 3);
    assert_eq!(point["rate_limits"][0]["allowed"], 3);
    let last = h["points"].as_array().unwrap().last().unwrap()["unix_ms"].clone();
    let newer = format!("/admin/history?since={last}");
    let (s, body) = call(addr, Method::GET, &newer, t, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        json(&body)["points"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["unix_ms"].as_u64() > last.as_u64()),
        "only newer points: {body}"
    );
    let (s, _) = call(addr, Method::GET, "/admin/history?since=soon", t, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Hostile path input is bounded.
    let long = format!("/admin/ratelimit/{}", "x".repeat(300));
    let (s, _) = call(addr, Method::GET, &long, t, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn dashboard_page_is_self_contained_and_secret_free() {
    let addr = serve(Arc::default()).await;
    let (s, body) = call(addr, Method::GET, "/dashboard", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("<table id=\"sources\""));
    assert!(!body.contains(TOKEN));
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "no external assets"
    );
    assert!(
        !body.contains("localStorage") && !body.contains("sessionStorage"),
        "the token is held in the page's memory only"
    );
}

#[tokio::test]
async fn history_is_configurable_and_checked() {
    use std::time::Duration;
    assert!(
        Admin::new(TOKEN)
            .unwrap()
            .history(0, Duration::from_secs(1))
            .is_err()
    );
    assert!(
        Admin::new(TOKEN)
            .unwrap()
            .history(10, Duration::ZERO)
            .is_err()
    );
    assert!(
        Admin::new(TOKEN)
            .unwrap()
            .history(10, Duration::from_millis(1))
            .is_err()
    );
    let figures = Arc::new(Figures::default());
    let app = Admin::new(TOKEN)
        .unwrap()
        .health_source(figures)
        .history(3, Duration::from_millis(20))
        .unwrap()
        .router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let h = history_with(addr, 3).await;
    assert_eq!(
        (h["capacity"].clone(), h["interval_ms"].clone()),
        (json!(3), json!(20))
    );
    // Bounded: later samples replace the oldest, never grow the ring.
    let first = h["points"][0]["unix_ms"].as_u64().unwrap();
    let start = std::time::Instant::now();
    loop {
        let h = history_with(addr, 1).await;
        let points = h["points"].as_array().unwrap();
        assert!(points.len() <= 3, "{h}");
        if points[0]["unix_ms"].as_u64().unwrap() > first {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the ring moves: {h}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn history_starts_on_the_first_request_when_built_outside_a_runtime() {
    let app = Admin::new(TOKEN)
        .unwrap()
        .health_source(Arc::new(Figures::default()))
        .router();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let h = history_with(addr, 2).await;
        assert!(h["points"][1]["unix_ms"].as_u64() >= h["points"][0]["unix_ms"].as_u64());
    });
}

/// Where Chromium lives, if installed.
fn chromium() -> Option<&'static str> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
}

/// Renders `url` in headless Chromium and returns the DOM after scripts ran for a while.
async fn render(url: &str, screenshot: Option<&std::path::Path>) -> String {
    let bin = chromium().expect("checked by the caller");
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=2500",
        "--window-size=1200,900",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.arg(url).output())
        .await
        .expect("chromium finished")
        .expect("chromium ran");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the `<td>` cells of the row named `name` in table `table`.
fn row_cells(dom: &str, table: &str, name: &str) -> Vec<String> {
    let start = dom
        .find(&format!("<table id=\"{table}\""))
        .unwrap_or_else(|| panic!("table {table} in {dom}"));
    let rest = &dom[start..];
    let row = rest
        .find(&format!("data-name=\"{name}\""))
        .unwrap_or_else(|| panic!("row {name} in table {table}: {rest}"));
    let row = &rest[row..rest[row..].find("</tr>").map_or(rest.len(), |e| row + e)];
    row.split("<td>")
        .skip(1)
        .map(|c| strip_tags(c.split("</td>").next().unwrap_or_default()))
        .collect()
}

/// The number of history points the dashboard's charts hold (`data-points`).
fn charts_points(dom: &str) -> usize {
    let at = dom
        .find("<section id=\"charts\"")
        .unwrap_or_else(|| panic!("charts section in {dom}"));
    let tag = &dom[at..at + dom[at..].find('>').unwrap_or(0)];
    let value = tag
        .split("data-points=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap_or_else(|| panic!("data-points in {tag}"));
    value.parse().unwrap()
}

/// The text of an HTML fragment (badges are `<span>`s inside cells).
fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium_shows_sources_and_moves_with_traffic() {
    if chromium().is_none() {
        assert!(
            std::env::var("RELIABILITY_REQUIRE_BROWSER").is_err(),
            "chromium is required (RELIABILITY_REQUIRE_BROWSER is set) but not installed"
        );
        eprintln!("SKIPPED browser test: chromium is not installed");
        return;
    }
    let figures = Arc::new(Figures::default());
    let addr = serve(figures.clone()).await;
    let url = format!("http://{addr}/dashboard#token={TOKEN}");
    history_with(addr, 1).await;

    let before = render(&url, None).await;
    let cex = row_cells(&before, "sources", "cex");
    assert_eq!(cex[0], "cex");
    assert_eq!(cex[1], "DEGRADED");
    assert_eq!(cex[6], "0", "calls before traffic: {cex:?}");
    assert!(before.contains("data-name=\"binance\""), "breaker listed");

    let drawn_before = charts_points(&before);
    assert!(drawn_before >= 1, "the charts drew the history: {before}");

    figures.calls.store(250, Ordering::SeqCst);
    // The sampler has taken a point with the new figures before the page loads again.
    history_with(addr, drawn_before + 1).await;
    let after = render(&url, None).await;
    assert!(
        charts_points(&after) > drawn_before,
        "the charts advanced: {drawn_before} points, then {after}"
    );
    let cex = row_cells(&after, "sources", "cex");
    assert_eq!(cex[1], "HEALTHY");
    assert_eq!(cex[6], "250", "calls after traffic: {cex:?}");
    assert_eq!(cex[3], "252.0", "p95 after traffic: {cex:?}");
    let cache = row_cells(&after, "caches", "cex-cache");
    assert_eq!(cache[2], "250");
    for chart in [
        "data-kind=\"latency\" data-name=\"cex\"",
        "data-kind=\"traffic\" data-name=\"cex-cache\"",
        "data-kind=\"admission\" data-name=\"api\"",
        "data-kind=\"breakers\"",
    ] {
        assert!(after.contains(chart), "chart {chart} drawn: {after}");
    }
    assert!(
        after.contains("class=\"seg\" data-state=\"CLOSED\""),
        "the breaker's closed band: {after}"
    );

    let shot = std::env::temp_dir().join("reliability-dashboard.png");
    // A screenshot left by an earlier run must not pass for this one.
    match std::fs::remove_file(&shot) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("removing the old screenshot {}: {e}", shot.display()),
    }
    render(&url, Some(&shot)).await;
    let png = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("screenshot {} written: {e}", shot.display()));
    let size = png.len();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is a PNG"
    );
    assert!(size > 1024, "screenshot is a real image, not {size} bytes");
    println!("dashboard screenshot: {} ({size} bytes)", shot.display());

    // Without the token the page shows the login form and no figures. The page must
    // really have rendered (an empty DOM would pass the negative checks): the tables are
    // there and the script has un-hidden the login form.
    let anonymous = render(&format!("http://{addr}/dashboard"), None).await;
    assert!(
        anonymous.contains("<table id=\"sources\""),
        "the dashboard rendered: {anonymous}"
    );
    assert!(
        anonymous.contains("<form id=\"login\">"),
        "the script ran and shows the login form: {anonymous}"
    );
    assert!(
        anonymous.contains("<input id=\"token\" type=\"password\""),
        "the token prompt is there: {anonymous}"
    );
    assert!(
        anonymous.contains("id=\"charts\" data-points=\"0\""),
        "no points drawn without the token: {anonymous}"
    );
    assert!(!anonymous.contains("data-name=\"cex\""), "no figures");
    assert!(!anonymous.contains(TOKEN), "no token in the page");
}

/// A chaos layer switched through the admin router, behind the token: listed, its
/// configuration replaced (a bad one refused with the field named), enabled and disabled,
/// and the wrapped service follows each switch.
#[tokio::test]
async fn chaos_is_switched_through_the_admin_router() {
    use tower::{Layer, ServiceExt};

    let layer = reliability::chaos::ChaosLayer::builder("upstream")
        .error_rate(1.0)
        .seed(1)
        .build()
        .unwrap();
    let svc = layer.layer(tower::service_fn(|x: u32| async move {
        Ok::<_, tower::BoxError>(x)
    }));
    let app = Admin::new(TOKEN).unwrap().chaos(layer.handle()).router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (status, _) = call(addr, Method::GET, "/admin/chaos", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the token is needed");
    let (status, body) = call(
        addr,
        Method::POST,
        "/admin/chaos/upstream/enable",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1, "still off");

    let (status, body) = call(addr, Method::GET, "/admin/chaos", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    let list = json(&body);
    assert_eq!(list["chaos"][0]["name"], "upstream");
    assert_eq!(list["chaos"][0]["enabled"], false);

    let (status, body) = call(
        addr,
        Method::POST,
        "/admin/chaos/upstream/enable",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["enabled"], true);
    assert!(svc.clone().oneshot(2).await.is_err(), "every call fails");

    // A new configuration: half the calls, validated first.
    let mut config = json(&body)["config"].clone();
    config["error_rate"] = json!(1.5);
    let (status, body) = call(
        addr,
        Method::PUT,
        "/admin/chaos/upstream",
        Some(TOKEN),
        Some(config.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("error_rate"), "{body}");
    config["error_rate"] = json!(0.0);
    let (status, body) = call(
        addr,
        Method::PUT,
        "/admin/chaos/upstream",
        Some(TOKEN),
        Some(config),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["config"]["error_rate"], 0.0);
    assert_eq!(
        svc.clone().oneshot(3).await.unwrap(),
        3,
        "rate 0 injects nothing"
    );
    let (status, _) = call(
        addr,
        Method::PUT,
        "/admin/chaos/upstream",
        Some(TOKEN),
        Some(json!("x")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = call(
        addr,
        Method::POST,
        "/admin/chaos/upstream/disable",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["enabled"], false);
    let (status, _) = call(addr, Method::GET, "/admin/chaos/nobody", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
