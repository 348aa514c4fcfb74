//! `cargo xtask bench --report`: runs the benches behind the generated rows of
//! `BENCHMARKS.md`, then rewrites those rows from criterion's own estimates, so no figure
//! there is typed by hand.
//!
//! Each row compares two functions measured in the same run: ours and a baseline (a peer
//! crate, the bare service, or the same layer without the feature). It says what each
//! side does per call, so a ratio compares like with like. `--skip-run` rewrites the rows
//! from the estimates already under `target/criterion`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::{Result, cargo, root};

/// A criterion bench target and the filter that selects the functions the rows use.
struct Bench {
    package: &'static str,
    bench: &'static str,
    features: &'static str,
    filter: &'static str,
}

const BENCHES: &[Bench] = &[
    Bench {
        package: "concurrency-layer",
        bench: "concurrency",
        features: "",
        filter: "",
    },
    Bench {
        package: "hedge-layer",
        bench: "hedge",
        features: "",
        filter: "",
    },
    Bench {
        package: "chaos-layer",
        bench: "chaos",
        features: "",
        filter: "",
    },
    // The metrics rows set the feature on (a Prometheus recorder installed) against the
    // same bench built without it: two builds, one report.
    Bench {
        package: "breaker-layer",
        bench: "breaker",
        features: "",
        filter: "^metrics/",
    },
    Bench {
        package: "retry-layer",
        bench: "retry",
        features: "",
        filter: "^metrics/",
    },
    Bench {
        package: "sla-layer",
        bench: "record",
        features: "",
        filter: "^metrics/",
    },
    Bench {
        package: "cache-layer",
        bench: "metrics_overhead",
        features: "",
        filter: "",
    },
    Bench {
        package: "ratelimit-layer",
        bench: "metrics_overhead",
        features: "",
        filter: "",
    },
    Bench {
        package: "breaker-layer",
        bench: "breaker",
        features: "metrics",
        filter: "^metrics/",
    },
    Bench {
        package: "retry-layer",
        bench: "retry",
        features: "metrics",
        filter: "^metrics/",
    },
    Bench {
        package: "sla-layer",
        bench: "record",
        features: "metrics",
        filter: "^metrics/",
    },
    Bench {
        package: "cache-layer",
        bench: "metrics_overhead",
        features: "metrics",
        filter: "",
    },
    Bench {
        package: "ratelimit-layer",
        bench: "metrics_overhead",
        features: "metrics",
        filter: "",
    },
    Bench {
        package: "ratelimit-layer",
        bench: "ratelimit",
        features: "",
        filter: "^global_key/",
    },
    Bench {
        package: "semantic-cache",
        bench: "rebuild",
        features: "",
        filter: "",
    },
];

/// How a row is judged.
#[derive(Clone, Copy)]
enum Goal {
    /// ours / baseline at most this.
    Ratio(f64),
    /// ours − baseline at most this many nanoseconds.
    ExtraNs(f64),
}

/// One generated row.
struct Row {
    what: &'static str,
    ours: &'static str,
    baseline: &'static str,
    /// What each side does per call.
    per_call: &'static str,
    goal: Goal,
}

const ROWS: &[Row] = &[
    Row {
        what: "bulkhead, admitted call",
        ours: "bulkhead_admitted/concurrency_layer_bulkhead",
        baseline: "bulkhead_admitted/tower_concurrency_limit",
        per_call: "ours: one atomic load, one CAS, one `Arc` clone, one atomic sub on completion; tower: a semaphore permit (CAS + `Arc` clone) in `poll_ready`. Neither reads a clock or allocates",
        goal: Goal::Ratio(1.0),
    },
    Row {
        what: "bulkhead, admitted call",
        ours: "bulkhead_admitted/concurrency_layer_bulkhead",
        baseline: "bulkhead_admitted/tower_resilience_bulkhead",
        per_call: "ours: as above; tower-resilience: a semaphore permit, a boxed future, four clock reads, two `String` clones into events",
        goal: Goal::Ratio(1.0),
    },
    Row {
        what: "adaptive limit (Vegas), admitted call",
        ours: "adaptive_admitted/concurrency_layer_vegas",
        baseline: "adaptive_admitted/tower_resilience_adaptive_vegas",
        per_call: "ours: the bulkhead plus two clock reads and one mutex lock to add the RTT sample; tower-resilience: two mutex locks, two clock reads, a boxed future",
        goal: Goal::Ratio(1.0),
    },
    Row {
        what: "adaptive limit (AIMD), admitted call",
        ours: "adaptive_admitted/concurrency_layer_aimd",
        baseline: "adaptive_admitted/tower_resilience_adaptive_aimd",
        per_call: "as the Vegas row",
        goal: Goal::Ratio(1.0),
    },
    Row {
        what: "hedge layer, no hedge fired",
        ours: "hedge/no hedge fired/hedge-layer p95",
        baseline: "hedge/no hedge fired/tower Hedge p95",
        per_call: "both: a latency record (histogram) and a delay timer armed per call; ours also a budget deposit (one atomic add)",
        goal: Goal::Ratio(1.0),
    },
    Row {
        what: "hedge layer, no hedge fired",
        ours: "hedge/no hedge fired/hedge-layer p95",
        baseline: "hedge/no hedge fired/tower-resilience hedge",
        per_call: "ours: as above; tower-resilience: its own timer and bookkeeping per call",
        goal: Goal::Ratio(1.0),
    },
    Row {
        what: "chaos layer, disabled",
        ours: "chaos/nothing injected/chaos disabled",
        baseline: "chaos/nothing injected/bare",
        per_call: "ours: one relaxed atomic load and a two-variant future (the inner one plus a tag; an enabled call's state is boxed) more than the bare `service_fn`, whose whole call the compiler folds to about a nanosecond",
        goal: Goal::ExtraNs(2.0),
    },
    Row {
        what: "breaker, CLOSED call, metrics recorded",
        ours: "metrics/closed_call_prometheus_recorder",
        baseline: "metrics/closed_call_feature_off",
        per_call: "ours: the layer built with feature `metrics` under a Prometheus recorder (per call, a relaxed atomic add on the success counter's handle; no registry look-up, no label, no clock read); baseline: the same bench built without the feature (no metrics code at all)",
        goal: Goal::ExtraNs(15.0),
    },
    Row {
        what: "retry, success path, metrics recorded",
        ours: "metrics/success_prometheus_recorder",
        baseline: "metrics/success_feature_off",
        per_call: "as the breaker row",
        goal: Goal::ExtraNs(15.0),
    },
    Row {
        what: "SLA layer call, metrics recorded",
        ours: "metrics/layer_call_prometheus_recorder",
        baseline: "metrics/layer_call_feature_off",
        per_call: "as the breaker row",
        goal: Goal::ExtraNs(15.0),
    },
    Row {
        what: "cache L1 hit, metrics recorded",
        ours: "metrics_overhead/l1_hit_prometheus",
        baseline: "metrics_overhead/l1_hit_feature_off",
        per_call: "as the breaker row",
        goal: Goal::ExtraNs(15.0),
    },
    Row {
        what: "rate limiter, one hot key (the global key) on 2 threads vs 1 (≤ 0.625× = scales ≥ 1.6×)",
        ours: "global_key/two_threads",
        baseline: "global_key/one_thread",
        per_call: "both: the whole limiter path per decision (rule look-up under a shared lock, one window under the key's shard mutex, the usage count under a shared lock with an atomic add, one clock read); the same decisions split over two threads. The key's own decision is one critical section, so two threads on it share its cache lines",
        goal: Goal::Ratio(0.625),
    },
    Row {
        what: "rate limiter, two keys on 2 threads vs one key on 1",
        ours: "global_key/two_threads_two_keys",
        baseline: "global_key/one_thread",
        per_call: "as the row above, each thread on a key of its own: nothing in the process is shared by the two",
        goal: Goal::Ratio(0.625),
    },
    Row {
        what: "semantic-cache lookup while a 10,000-entry namespace is rebuilt vs idle",
        ours: "rebuild/lookup_during",
        baseline: "rebuild/lookup_idle",
        per_call: "both: one similar hit found by the exact scan of 10,000 vectors of dimension 384 (the graph is not yet swapped in); ours while the new graph is built on a blocking thread from a snapshot, with no lock held. The bench also prints both p99s",
        goal: Goal::Ratio(2.0),
    },
    Row {
        what: "rate-limit decision, metrics recorded",
        ours: "metrics_overhead/decision_prometheus",
        baseline: "metrics_overhead/decision_feature_off",
        per_call: "as the breaker row",
        goal: Goal::ExtraNs(15.0),
    },
];

const BEGIN: &str = "<!-- generated by `cargo xtask bench --report`: begin -->";
const END: &str = "<!-- generated by `cargo xtask bench --report`: end -->";

/// Runs the benches (unless `--skip-run`) and rewrites the generated rows.
pub(crate) fn report(args: &[&str]) -> Result {
    if !args.contains(&"--skip-run") {
        for b in BENCHES {
            let mut cmd = vec!["bench", "-p", b.package, "--bench", b.bench];
            if !b.features.is_empty() {
                cmd.extend(["--features", b.features]);
            }
            cmd.extend(["--", "--warm-up-time", "1", "--measurement-time", "3"]);
            if !b.filter.is_empty() {
                cmd.push(b.filter);
            }
            cargo(&cmd)?;
        }
    }
    let means = estimates(&root().join("target").join("criterion"))?;
    let table = render(&means)?;
    let path = root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = splice(&text, &table);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("BENCHMARKS.md: {} generated rows", ROWS.len());
    Ok(())
}

/// Every `full_id` criterion measured, with its mean in nanoseconds.
fn estimates(dir: &Path) -> Result<BTreeMap<String, f64>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.ends_with("new/benchmark.json") {
                let read = |p: &Path| -> Result<Value> {
                    let text =
                        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
                };
                let bench = read(&path)?;
                let estimates = read(&path.with_file_name("estimates.json"))?;
                if let (Some(id), Some(mean)) = (
                    bench["full_id"].as_str(),
                    estimates["mean"]["point_estimate"].as_f64(),
                ) {
                    found.insert(id.to_owned(), mean);
                }
            }
        }
    }
    Ok(found)
}

/// The generated table, or which measurement is missing.
fn render(means: &BTreeMap<String, f64>) -> Result<String> {
    let mut out = String::from(
        "| what | ours | baseline | ours / baseline (same run) | goal | per call |\n|---|---|---|---|---|---|\n",
    );
    for row in ROWS {
        let get = |id: &str| {
            means
                .get(id)
                .copied()
                .ok_or_else(|| format!("no criterion estimate for `{id}`: run without --skip-run"))
        };
        let (ours, base) = (get(row.ours)?, get(row.baseline)?);
        let (figure, met) = match row.goal {
            Goal::Ratio(max) => (format!("**{:.2}×**", ours / base), ours / base <= max),
            Goal::ExtraNs(max) => (
                format!("{:.2}× (**{:+.1} ns**)", ours / base, ours - base),
                ours - base <= max,
            ),
        };
        let goal = match row.goal {
            Goal::Ratio(max) => format!("≤ {max}×"),
            Goal::ExtraNs(max) => format!("≤ {max} ns added"),
        };
        out.push_str(&format!(
            "| {} | `{}` {:.1} ns | `{}` {:.1} ns | {} | {}{} | {} |\n",
            row.what,
            row.ours,
            ours,
            row.baseline,
            base,
            figure,
            goal,
            if met { "" } else { ": **not met**" },
            row.per_call
        ));
    }
    Ok(out)
}

/// `text` with the generated section replaced by `table` (appended if absent).
fn splice(text: &str, table: &str) -> String {
    let section = format!("{BEGIN}\n{table}{END}");
    match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{}{}", &text[..b], section, &text[e + END.len()..])
        }
        _ => format!(
            "{}\n## Generated rows\n\nWritten by `cargo xtask bench --report` from criterion's estimates of one run (short: 1 s warm-up, 3 s measurement per function); rows above this section predate the generator.\n\n{section}\n",
            text.trim_end()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_rendered_and_the_section_replaced_in_place() {
        let mut means = BTreeMap::new();
        for row in ROWS {
            means.insert(row.ours.to_owned(), 10.0);
            means.insert(row.baseline.to_owned(), 20.0);
        }
        means.insert("chaos/nothing injected/chaos disabled".into(), 25.0);
        let table = render(&means).unwrap();
        assert!(table.contains("**0.50×**"));
        assert!(
            table.contains("+5.0 ns**) | ≤ 2 ns added: **not met**"),
            "{table}"
        );
        let once = splice("# Benchmarks\n\nhand row\n", &table);
        let twice = splice(&once, &table);
        assert_eq!(once, twice, "a second report replaces the section");
        assert!(once.starts_with("# Benchmarks\n\nhand row\n"));
        means.remove(ROWS[0].ours);
        assert!(render(&means).unwrap_err().contains(ROWS[0].ours));
    }
}
