//! `/admin/metrics` of the real example server after real traffic: one Prometheus family
//! (at least) per layer, each agreeing with `/admin/health`, and an exposition that
//! `promtool check metrics` passes without a finding.
//!
//! Its own test binary: the Prometheus recorder is global to the process.

use std::net::SocketAddr;

use examples::server::{DEFAULT_CONFIG, ServerConfig, app, serve};
use examples::upstream::{FaultSettings, Upstream};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

const TOKEN: &str = "metrics-test-token-123";

async fn start() -> SocketAddr {
    let config = ServerConfig::parse(DEFAULT_CONFIG).unwrap();
    let upstream = Upstream::new(3);
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

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = http::Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The sum of the samples of `family` whose labels include every pair of `labels`.
fn sum(text: &str, family: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, rest) = series.split_once('{').unwrap_or((series, "}"));
            (name == family).then_some((rest, value))
        })
        .filter(|(rest, _)| {
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

fn components<'a>(health: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    health["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(move |c| c["detail"]["type"] == kind)
}

fn figure(c: &Value, name: &str) -> f64 {
    c["detail"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} in {c}"))
}

#[tokio::test]
async fn every_layer_is_exported_and_agrees_with_the_health_document() {
    let addr = start().await;
    let pro = [("x-api-key", "demo-pro-key")];
    for symbol in ["BTC-USDT", "ETH-USDT", "BTC-USDT", "BTC-USDT"] {
        let (status, _) = get(addr, &format!("/api/cex/orderbook/{symbol}"), &pro).await;
        assert_eq!(status, 200);
    }
    get(addr, "/api/dex/quote/ETH-USDC", &pro).await;
    // The free tier without a key is limited per IP: enough calls to see refusals.
    let mut refused = 0;
    for _ in 0..30 {
        refused += u32::from(get(addr, "/api/dex/quote/ETH-USDC", &[]).await.0 == 429);
    }
    assert!(refused > 0, "the free tier refused some calls");

    let auth = [("authorization", &*format!("Bearer {TOKEN}"))];
    let (status, text) = get(addr, "/admin/metrics", &auth).await;
    assert_eq!(status, 200);
    let (_, health) = get(addr, "/admin/health", &auth).await;
    let health: Value = serde_json::from_str(&health).unwrap();

    for family in [
        "cache_lookups_total",
        "breaker_calls_total",
        "breaker_state",
        "ratelimit_decisions_total",
        "retry_attempts_total",
        "sla_calls_total",
        "sla_status",
        "concurrency_limit",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(family)),
            "{family} is exported:\n{text}"
        );
    }

    let mut checked = 0;
    for c in components(&health, "sla") {
        let source = c["name"].as_str().unwrap();
        let calls = sum(&text, "sla_calls_total", &[("source", source)])
            - sum(
                &text,
                "sla_calls_total",
                &[("source", source), ("outcome", "cancelled")],
            );
        let window = figure(c, "successes") + figure(c, "failures");
        let ignored = sum(
            &text,
            "sla_calls_total",
            &[("source", source), ("outcome", "ignored")],
        );
        assert_eq!(calls - ignored, window, "sla {source}");
        let status = c["status"].as_str().unwrap();
        assert_eq!(
            sum(
                &text,
                "sla_status",
                &[("source", source), ("status", status)]
            ),
            1.0,
            "sla_status {source}"
        );
        checked += 1;
    }
    for c in components(&health, "breaker") {
        let source = c["name"].as_str().unwrap();
        assert_eq!(
            sum(&text, "breaker_calls_total", &[("source", source)]),
            figure(c, "calls"),
            "breaker {source}"
        );
        assert_eq!(
            sum(&text, "breaker_rejected_total", &[("source", source)]),
            figure(c, "rejections")
        );
        checked += 1;
    }
    for c in components(&health, "rate_limit") {
        let source = c["name"].as_str().unwrap();
        for (result, field) in [("allowed", "allowed"), ("rejected", "rejected")] {
            assert_eq!(
                sum(
                    &text,
                    "ratelimit_decisions_total",
                    &[("source", source), ("result", result)]
                ),
                figure(c, field),
                "limiter {source} {result}"
            );
        }
        checked += 1;
    }
    for c in components(&health, "cache") {
        let source = c["name"].as_str().unwrap();
        let hits = sum(
            &text,
            "cache_lookups_total",
            &[("source", source), ("result", "hit")],
        );
        assert_eq!(hits, figure(c, "hits"), "cache {source}");
        checked += 1;
    }
    for c in components(&health, "retry") {
        let source = c["name"].as_str().unwrap();
        assert_eq!(
            sum(&text, "retry_attempts_total", &[("source", source)]),
            figure(c, "attempts"),
            "retry {source}"
        );
        checked += 1;
    }
    assert!(
        checked >= 10,
        "every kind of component was compared ({checked})"
    );
    assert!(
        sum(
            &text,
            "ratelimit_decisions_total",
            &[("source", "api"), ("result", "rejected")]
        ) >= f64::from(refused)
    );
    assert!(sum(&text, "cache_lookups_total", &[("result", "hit")]) >= 2.0);

    promtool_check(&text);
}

/// `promtool check metrics` on the exposition: no error and no lint finding.
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if std::env::var_os("RELIABILITY_REQUIRE_PROMTOOL").is_none() => {
            eprintln!("skipping promtool check metrics: {e}");
            return;
        }
        Err(e) => panic!("promtool is required (RELIABILITY_REQUIRE_PROMTOOL): {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}
