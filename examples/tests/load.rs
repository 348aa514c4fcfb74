//! 10,000 concurrent clients (one connection each, the `load` binary) against the example
//! server on loopback: nothing but 200 and the expected 429, p99 and throughput printed,
//! and the server's resident memory bounded.

use std::time::Duration;

use examples::server::{ServerConfig, app, serve};
use examples::upstream::{FaultSettings, Upstream};
use serde_json::Value;

const CLIENTS: u64 = 10_000;

/// Four enterprise accounts (50/s each) and anonymous callers (2/s per IP, all on
/// 127.0.0.1): most requests of a burst are expected to be limited.
const CONFIG: &str = r#"
[keys.ent-0]
account = "e0"
tier = "enterprise"

[keys.ent-1]
account = "e1"
tier = "enterprise"

[keys.ent-2]
account = "e2"
tier = "enterprise"

[keys.ent-3]
account = "e3"
tier = "enterprise"
"#;

/// A field of `/proc/self/<file>` (the first number on the line starting with `name`).
fn proc_number(file: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..]
        .split_whitespace()
        .find_map(|w| w.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_clients() {
    // Every client holds one socket here and one in the driver process.
    let clients = match proc_number("limits", "Max open files") {
        Some(limit) if limit < CLIENTS + 512 => {
            let scaled = limit.saturating_sub(512).max(100);
            println!(
                "open-file limit {limit} is under {} (`ulimit -n`): running {scaled} clients",
                CLIENTS + 512
            );
            scaled
        }
        _ => CLIENTS,
    };

    let upstream = Upstream::new(3);
    upstream.set_faults(FaultSettings {
        error_rate: 0.0,
        latency_factor: 0.05,
        ..FaultSettings::HEALTHY
    });
    let config = ServerConfig::parse(CONFIG).unwrap();
    let (router, _) = app(&config, upstream, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router));
    let rss_before = proc_number("status", "VmRSS:").unwrap_or(0);

    let url = format!("http://{addr}");
    let output = tokio::time::timeout(
        Duration::from_secs(50),
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_load"));
            cmd.args(["--url", &url, "--clients", &clients.to_string()])
                .args(["--requests", "2", "--duration", "40s", "--timeout", "30s"])
                .arg("--json");
            for key in ["ent-0", "ent-1", "ent-2", "ent-3", ""] {
                cmd.args(["--key", key]);
            }
            cmd.output().unwrap()
        }),
    )
    .await
    .expect("the load finishes in time")
    .unwrap();
    let rss_after = proc_number("status", "VmRSS:").unwrap_or(0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "load failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    println!("load: {report}");
    println!(
        "{clients} clients: p99 {:.1} ms, {:.0} req/s, server RSS {} -> {} MiB",
        report["p99_ms"].as_f64().unwrap(),
        report["throughput_rps"].as_f64().unwrap(),
        rss_before / 1024,
        rss_after / 1024
    );

    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["answered"], clients * 2, "{report}");
    let statuses = report["statuses"].as_object().unwrap();
    for (status, _) in statuses {
        assert!(
            status == "200" || status == "429",
            "unexpected {status}: {report}"
        );
    }
    assert!(statuses["200"].as_u64().unwrap() > 0, "{report}");
    assert!(
        statuses["429"].as_u64().unwrap() > 0,
        "the bursts are limited: {report}"
    );
    // 10,000 connections cost tens of MiB; a leak per request or per connection would
    // show as far more.
    assert!(
        rss_after < rss_before + 512 * 1024,
        "server RSS grew from {rss_before} to {rss_after} KiB"
    );
}
