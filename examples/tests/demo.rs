//! The demo binary end to end: a one-second run with `--json` prints one row per source
//! with every documented column.

use std::process::Command;

#[test]
fn demo_prints_a_summary_per_source() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--duration", "1s", "--seed", "3", "--json"])
        .output()
        .expect("demo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    let rows = rows.as_array().expect("an array of rows");
    let sources: Vec<_> = rows.iter().map(|r| r["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["cex", "dex", "social"]);
    for r in rows {
        for column in [
            "requests",
            "upstream_calls",
            "cache_hit_rate",
            "stale_served",
            "retries",
            "breaker_trips",
            "breaker_state",
            "rate_limit_waits",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "sla_status",
        ] {
            assert!(!r[column].is_null(), "{column} missing in {r}");
        }
        assert!(r["requests"].as_u64().unwrap() > 0);
        assert!(r["upstream_calls"].as_u64().unwrap() <= r["requests"].as_u64().unwrap());
    }
}

#[test]
fn bad_arguments_are_refused_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--duration", "forever"])
        .output()
        .expect("demo runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--duration"));
}
