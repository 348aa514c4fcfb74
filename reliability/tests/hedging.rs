//! The presets hedge idempotent reads by default: a DEX client against an upstream where
//! 5 % of calls take 1 s and the rest 10 ms sends a second copy after its own p95, so its
//! p99 falls below 3 × p50 while hedges stay within the 10 % budget; `POST` is never
//! hedged; social sources are not hedged. Paused tokio time; the upstream is in-process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reliability::config::WindowConfig;
use reliability::hedge::HedgeDelay;
use reliability::presets;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceExt, service_fn};

/// Every 20th call (5 %) takes 1 s, the rest 10 ms.
fn upstream(
    calls: Arc<AtomicU64>,
) -> impl Service<
    http::Request<Bytes>,
    Response = http::Response<Bytes>,
    Error = BoxError,
    Future: Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    service_fn(move |_: http::Request<Bytes>| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let ms = if n % 20 == 19 { 1_000 } else { 10 };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, BoxError>(http::Response::new(Bytes::from_static(b"{}")))
        }
    })
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dex_reads_are_hedged_at_their_p95_within_budget_and_posts_never() {
    let calls = Arc::new(AtomicU64::new(0));
    let client = presets::dex("quotes")
        .configure(|s| {
            s.rate_limit.window = WindowConfig::new(1_000_000, Duration::from_secs(1));
        })
        .seed(7)
        .http_client(upstream(calls.clone()))
        .unwrap();
    let n = 2_000u64;
    let mut latencies = Vec::with_capacity(n as usize);
    for i in 0..n {
        // A new path each time: every read misses the cache and reaches the upstream.
        let req = http::Request::get(format!("http://dex.test/quote/{i}"))
            .body(Bytes::new())
            .unwrap();
        let started = Instant::now();
        let res = client.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let (p50, p99) = (quantile(&latencies, 0.5), quantile(&latencies, 0.99));
    assert!(p99 < p50 * 3, "hedged: p50 {p50:?}, p99 {p99:?}");
    let hedger = client.handles().hedger().expect("the HTTP client hedges");
    let snap = hedger.snapshot();
    assert!(snap.hedges_sent > 0 && snap.hedges_won > 0, "{snap:?}");
    assert!(
        snap.hedges_sent as f64 <= 10.0 + 0.1 * n as f64,
        "within the budget (reserve + 10 %): {snap:?}"
    );

    // A POST is sent once, however slow.
    let before = calls.load(Ordering::SeqCst);
    let slow_next = 19 - before % 20;
    for _ in 0..slow_next {
        let req = http::Request::post("http://dex.test/order")
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        client.clone().oneshot(req).await.unwrap();
    }
    let sent = hedger.snapshot().hedges_sent;
    let req = http::Request::post("http://dex.test/order")
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    let started = Instant::now();
    client.clone().oneshot(req).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "the slow call");
    assert_eq!(hedger.snapshot().hedges_sent, sent, "no POST was hedged");
}

#[test]
fn cex_and_dex_hedge_at_p95_with_a_tenth_of_traffic_and_social_not_at_all() {
    for preset in [presets::cex("c"), presets::dex("d")] {
        let hedge = &preset.effective().hedge;
        assert_eq!(hedge.max_hedges, 1);
        assert_eq!(hedge.budget_ratio, 0.1);
        assert!(matches!(
            hedge.delay,
            HedgeDelay::Percentile { percentile, .. } if percentile == 95.0
        ));
    }
    assert_eq!(presets::social("s").effective().hedge.max_hedges, 0);
}
