//! The demo binary end to end. The scenario runs on tokio's paused clock
//! (`--simulated-time`): the demo's callers, the upstream and every layer wait on tokio
//! time, so the run takes as long as the CPU needs, whatever the load on the machine, and
//! the assertions read its effects from the per-phase timeline of `--json`, never exact
//! counts.

use std::process::Command;

use serde_json::Value;

const PHASES: [&str; 5] = [
    "normal",
    "latency spike",
    "error burst",
    "outage",
    "recovery",
];
const SOURCES: [&str; 3] = ["cex", "dex", "social"];

/// Runs the demo with `args` and reads its JSON report.
fn demo(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(args)
        .output()
        .expect("demo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

/// The entry of `source` in `rows` (a phase's sources, or the summary).
fn of<'a>(rows: &'a Value, source: &str) -> &'a Value {
    rows.as_array()
        .expect("an array of rows")
        .iter()
        .find(|r| r["source"] == source)
        .unwrap_or_else(|| panic!("no {source} in {rows}"))
}

#[test]
fn the_timeline_shows_the_scenario_and_the_recovery() {
    // The default 30 s scenario, in simulated time: the windows are the run's tenth (3 s)
    // and the recovery three tenths, so the status has time to clear.
    let report = demo(&[
        "--simulated-time",
        "--duration",
        "30s",
        "--seed",
        "3",
        "--json",
    ]);
    let timeline = report["timeline"].as_array().expect("a timeline");
    let phases: Vec<_> = timeline.iter().map(|p| p["phase"].as_str()).collect();
    assert_eq!(phases, PHASES.map(Some), "{report:#}");
    for p in timeline {
        for source in SOURCES {
            let r = of(&p["sources"], source);
            for column in [
                "requests",
                "errors",
                "upstream_calls",
                "stale_served",
                "breaker_state",
                "breaker_trips",
                "sla_status",
                "p95_ms",
                "p99_ms",
                "hedges_sent",
                "hedges_won",
            ] {
                assert!(!r[column].is_null(), "{column} missing in {r}");
            }
        }
    }
    let at = |phase: &str, source: &str| {
        let p = timeline.iter().find(|p| p["phase"] == phase).unwrap();
        of(&p["sources"], source).clone()
    };
    let n = |r: &Value, column: &str| r[column].as_u64().unwrap_or_else(|| panic!("{r}"));

    let outage = at("outage", "cex");
    let recovery = at("recovery", "cex");
    // The cache answered with stale data while the upstream was down...
    assert!(n(&outage, "stale_served") > 0, "{outage}");
    // ...the breaker opened, and closed again once the upstream recovered...
    assert!(n(&outage, "breaker_trips") >= 1, "{outage}");
    assert_eq!(recovery["breaker_state"], "CLOSED", "{recovery}");
    // ...and the status said so: not HEALTHY during the outage, HEALTHY at the end.
    for source in SOURCES {
        let r = at("outage", source);
        assert_ne!(r["sla_status"], "HEALTHY", "{r}");
    }
    assert_eq!(recovery["sla_status"], "HEALTHY", "{recovery}");

    // Social's adaptive bulkhead lowers its limit when the latency climbs.
    let limit = |phase| n(&at(phase, "social"), "inflight_limit");
    assert!(
        limit("latency spike") < limit("normal"),
        "the social limit went from {} to {} in the latency spike",
        limit("normal"),
        limit("latency spike")
    );

    // CEX reads are hedged after their own p95 once it is known (the latency spike is the
    // first phase with enough samples), within the budget; social is never hedged.
    let spike = at("latency spike", "cex");
    assert!(n(&spike, "hedges_sent") > 0, "{spike}");
    assert!(
        n(&spike, "hedges_won") <= n(&spike, "hedges_sent"),
        "{spike}"
    );
    for p in timeline {
        let social = of(&p["sources"], "social");
        assert_eq!(n(social, "hedges_sent"), 0, "{social}");
    }

    // Hedging cuts the callers' tail in the latency spike: a CEX stack without its cache,
    // hedged at its p95, beside the same stack unhedged, on the same scenario and requests.
    let gain = &report["hedging_in_latency_spike"];
    let f = |k: &str| {
        gain[k]
            .as_f64()
            .unwrap_or_else(|| panic!("no {k} in {gain}"))
    };
    assert!(f("hedged_calls") >= 500.0, "{gain}");
    assert!(f("unhedged_calls") >= 500.0, "{gain}");
    assert!(
        f("unhedged_p99_ms") >= 500.0,
        "the slow tail, unhedged: {gain}"
    );
    assert!(
        2.0 * f("hedged_p99_ms") <= f("unhedged_p99_ms"),
        "hedging at least halves the p99: {gain}"
    );
    assert!(
        f("hedged_p99_ms") <= 3.0 * f("hedged_p50_ms"),
        "hedged, the p99 is within 3x the p50: {gain}"
    );

    // The summary is the run's end: the same status as the timeline's last entry.
    let summary = &report["summary"];
    let sources: Vec<_> = summary
        .as_array()
        .expect("a summary per source")
        .iter()
        .map(|r| r["source"].as_str())
        .collect();
    assert_eq!(sources, SOURCES.map(Some));
    let cex = of(summary, "cex");
    assert_eq!(cex["sla_status"], "HEALTHY", "{cex}");
    assert_eq!(cex["breaker_state"], "CLOSED", "{cex}");
    assert!(n(cex, "upstream_calls") <= n(cex, "requests"), "{cex}");
    assert!(
        n(cex, "hedges_sent") as f64 <= 10.0 + 0.1 * n(cex, "requests") as f64,
        "hedges within the reserve and 10 % of requests: {cex}"
    );
}

#[test]
fn bad_arguments_are_refused_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--duration", "forever"])
        .output()
        .expect("demo runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--duration"));

    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--simulated-time", "--redis", "redis://127.0.0.1:6379"])
        .output()
        .expect("demo runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--simulated-time"));
}
