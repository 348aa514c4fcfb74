//! What the terminal shows: the live progress lines and the closing table.

use examples::upstream::Phase;

use crate::args::Args;
use crate::report::Row;

pub(crate) fn progress_line(r: &Row, phase: Phase) -> String {
    format!(
        "{:<13} req {:>6}  upstream {:>5}  hit {:>5.1}%  stale {:>4}  retries {:>4}  breaker {:<9}  sla {}",
        phase.name(),
        r.requests,
        r.upstream_calls,
        r.cache_hit_rate * 100.0,
        r.stale_served,
        r.retries,
        r.breaker_state,
        r.sla_status
    )
}

pub(crate) fn print_table(rows: &[Row], args: &Args) {
    println!(
        "\nscenario: normal → latency spike → error burst → outage → recovery ({}s, seed {}{})\n",
        args.duration.as_secs(),
        args.seed,
        if args.redis.is_some() {
            ", quotas in Redis"
        } else {
            ""
        }
    );
    println!(
        "{:<7} {:>8} {:>7} {:>9} {:>6} {:>6} {:>7} {:>6} {:<10} {:>6} {:>6} {:>6} {:>7} {:>6} {:>8} {:>8} {:>8}  sla",
        "source",
        "requests",
        "errors",
        "upstream",
        "hit%",
        "stale",
        "retries",
        "trips",
        "breaker",
        "waits",
        "shed",
        "limit",
        "hedged",
        "won",
        "p50 ms",
        "p95 ms",
        "p99 ms",
    );
    for r in rows {
        println!(
            "{:<7} {:>8} {:>7} {:>9} {:>5.1}% {:>6} {:>7} {:>6} {:<10} {:>6} {:>6} {:>6} {:>7} {:>6} {:>8.1} {:>8.1} {:>8.1}  {}",
            r.source,
            r.requests,
            r.errors,
            r.upstream_calls,
            r.cache_hit_rate * 100.0,
            r.stale_served,
            r.retries,
            r.breaker_trips,
            r.breaker_state,
            r.rate_limit_waits,
            r.shed,
            r.inflight_limit,
            r.hedges_sent,
            r.hedges_won,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.sla_status
        );
    }
    let served: u64 = rows.iter().map(|r| r.requests - r.errors).sum();
    let total: u64 = rows.iter().map(|r| r.requests).sum();
    let upstream: u64 = rows.iter().map(|r| r.upstream_calls).sum();
    println!(
        "\n{served} of {total} requests answered ({:.1}%) with {upstream} upstream calls; SLA figures are per upstream attempt.",
        100.0 * served as f64 / total.max(1) as f64
    );
}
