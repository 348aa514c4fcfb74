//! The demo: three data sources (CEX, DEX, social) against a simulated flaky upstream that
//! goes through a scripted scenario, with a summary per source at the end.
//!
//! `cargo run -p examples --bin demo -- --duration 10s --seed 7 --json`
//!
//! The simulated time runs on tokio's paused clock, so a 30 s scenario finishes at once
//! and the same seed always prints the same figures.

use std::time::Duration;

use examples::upstream::{Phase, Source, Upstream, UpstreamRequest};
use reliability::core::classify::{Outcome, classify_http_status};
use reliability::core::health::HealthStatus;

struct Args {
    duration: Duration,
    seed: u64,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs(30),
        seed: 42,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--duration" => {
                let v = it.next().ok_or("--duration needs a value (e.g. 30s)")?;
                args.duration =
                    humantime::parse_duration(&v).map_err(|e| format!("--duration: {e}"))?;
            }
            "--seed" => {
                let v = it.next().ok_or("--seed needs a number")?;
                args.seed = v.parse().map_err(|e| format!("--seed: {e}"))?;
            }
            "--json" => args.json = true,
            "--help" | "-h" => {
                return Err("usage: demo [--duration 30s] [--seed N] [--json]".into());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

#[derive(Default)]
struct Tally {
    requests: u64,
    failures: u64,
    latencies_ms: Vec<f64>,
}

impl Tally {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return 0.0;
        }
        let mut v = self.latencies_ms.clone();
        v.sort_by(f64::total_cmp);
        let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[idx]
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let upstream = Upstream::new(args.seed);
    let mut tallies: Vec<(Source, Tally)> =
        Source::ALL.iter().map(|s| (*s, Tally::default())).collect();
    let start = tokio::time::Instant::now();
    let tick = Duration::from_millis(100);
    let mut last_phase = None;
    while start.elapsed() < args.duration {
        let phase = Phase::at(start.elapsed().as_secs_f64() / args.duration.as_secs_f64());
        if last_phase != Some(phase) && !args.json {
            println!(
                "[{:>5.1}s] phase: {}",
                start.elapsed().as_secs_f64(),
                phase.name()
            );
            last_phase = Some(phase);
        }
        upstream.set_faults(phase.faults());
        for (source, tally) in &mut tallies {
            let request = match source {
                Source::Cex => UpstreamRequest::OrderBook("BTC-USDT".into()),
                Source::Dex => UpstreamRequest::Quote("ETH-USDC".into()),
                Source::Social => UpstreamRequest::Search("rust".into()),
            };
            let started = tokio::time::Instant::now();
            let status = match upstream.handle(request).await {
                Ok(_) => 200,
                Err(_) => 503,
            };
            tally.requests += 1;
            if classify_http_status(status).outcome == Outcome::Failure {
                tally.failures += 1;
            }
            tally
                .latencies_ms
                .push(started.elapsed().as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(tick).await;
    }
    let rows: Vec<serde_json::Value> = tallies
        .iter()
        .map(|(source, t)| {
            let success = 1.0 - t.failures as f64 / t.requests.max(1) as f64;
            let status = if success < 0.85 {
                HealthStatus::Degraded
            } else {
                HealthStatus::Healthy
            };
            serde_json::json!({
                "source": source.to_string(),
                "requests": t.requests,
                "upstream_calls": t.requests,
                "failures": t.failures,
                "success_rate": success,
                "p50_ms": t.percentile(50.0),
                "p95_ms": t.percentile(95.0),
                "p99_ms": t.percentile(99.0),
                "sla_status": status.as_str(),
            })
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("json"));
        return;
    }
    println!();
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  sla",
        "source", "requests", "failures", "success", "p50 ms", "p95 ms", "p99 ms"
    );
    for r in &rows {
        println!(
            "{:<8} {:>9} {:>9} {:>8.1}% {:>9.1} {:>9.1} {:>9.1}  {}",
            r["source"].as_str().unwrap_or_default(),
            r["requests"].as_u64().unwrap_or_default(),
            r["failures"].as_u64().unwrap_or_default(),
            r["success_rate"].as_f64().unwrap_or_default() * 100.0,
            r["p50_ms"].as_f64().unwrap_or_default(),
            r["p95_ms"].as_f64().unwrap_or_default(),
            r["p99_ms"].as_f64().unwrap_or_default(),
            r["sla_status"].as_str().unwrap_or_default(),
        );
    }
    println!("\n(unprotected baseline: the preset stacks arrive with the layers)");
}
