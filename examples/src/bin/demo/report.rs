//! The figures of a run: the summary rows, the per-phase timeline and the hedging
//! comparison, as `--json` prints them and the table shows them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use examples::upstream::{Phase, Upstream};
use reliability::core::health::{ComponentDetail, HealthSource, HealthStatus};
use reliability::presets::Handles;
use serde::Serialize;
use serde_json::Value;

use crate::lanes::{Lane, Twin};

/// The summary row of one source.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    pub(crate) source: String,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) upstream_calls: u64,
    pub(crate) cache_hit_rate: f64,
    pub(crate) stale_served: u64,
    pub(crate) retries: u64,
    pub(crate) breaker_trips: u64,
    pub(crate) breaker_state: String,
    pub(crate) rate_limit_waits: u64,
    /// Calls the bulkhead refused (full, queue full, queue timeout, shed).
    pub(crate) shed: u64,
    /// The bulkhead's limit at the end (adaptive for social: it falls as latency climbs).
    pub(crate) inflight_limit: usize,
    /// Second copies sent after the source's own p95 (CEX and DEX), and those that
    /// answered first.
    pub(crate) hedges_sent: u64,
    pub(crate) hedges_won: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) sla_status: String,
}

/// One source at the end of one phase of the scenario.
#[derive(Debug, Serialize)]
struct PhaseRow {
    source: String,
    /// Requests answered to the callers during the phase.
    requests: u64,
    /// Of those, the answers that failed to the caller.
    errors: u64,
    /// Calls that reached the upstream during the phase (retries included).
    upstream_calls: u64,
    /// Stale answers the cache served during the phase.
    stale_served: u64,
    breaker_state: String,
    /// Times the breaker opened since the run began.
    breaker_trips: u64,
    /// The source's status as the phase ended.
    sla_status: String,
    p95_ms: f64,
    /// Calls the bulkhead refused during the phase.
    shed: u64,
    /// The bulkhead's limit as the phase ended.
    inflight_limit: usize,
    /// Hedges sent during the phase, and those that answered first.
    hedges_sent: u64,
    hedges_won: u64,
    /// The SLA window's p99 (per upstream attempt) as the phase ended.
    p99_ms: f64,
}

/// The end of one phase: where the run stood, per source.
#[derive(Debug, Serialize)]
pub(crate) struct PhaseEnd {
    phase: &'static str,
    /// When the phase ended, from the start of the run.
    ends_at_ms: u64,
    sources: Vec<PhaseRow>,
    /// The side-by-side CEX pair without a cache: what hedging did to the callers' tail.
    hedging: HedgeGain,
}

/// Caller-side latency of two CEX stacks without their cache, one hedged (the preset's
/// default) and one not, over the same phase, each on its own upstream of the same seed
/// and scenario, driven by callers of the same pace.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct HedgeGain {
    pub(crate) hedged_calls: usize,
    pub(crate) hedged_p50_ms: f64,
    pub(crate) hedged_p99_ms: f64,
    pub(crate) unhedged_calls: usize,
    pub(crate) unhedged_p50_ms: f64,
    pub(crate) unhedged_p99_ms: f64,
}

/// The `q` quantile (0..=1) of `latencies`, in milliseconds (nearest rank).
fn quantile_ms(latencies: &mut [Duration], q: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    latencies.sort_unstable();
    let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
    latencies[rank - 1].as_secs_f64() * 1e3
}

impl HedgeGain {
    /// The figures of the phase that ends, whose latencies it takes.
    pub(crate) fn take(hedged: &Twin, unhedged: &Twin) -> Self {
        let mut h = std::mem::take(&mut *hedged.latencies.lock());
        let mut u = std::mem::take(&mut *unhedged.latencies.lock());
        Self {
            hedged_calls: h.len(),
            hedged_p50_ms: quantile_ms(&mut h, 0.50),
            hedged_p99_ms: quantile_ms(&mut h, 0.99),
            unhedged_calls: u.len(),
            unhedged_p50_ms: quantile_ms(&mut u, 0.50),
            unhedged_p99_ms: quantile_ms(&mut u, 0.99),
        }
    }
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) timeline: Vec<PhaseEnd>,
    pub(crate) summary: Vec<Row>,
    /// The side-by-side pair in the latency spike, where a p95 hedge cuts the tail.
    pub(crate) hedging_in_latency_spike: HedgeGain,
}

/// The running totals a phase's figures are measured from.
#[derive(Clone, Copy, Default)]
pub(crate) struct Totals {
    requests: u64,
    errors: u64,
    upstream_calls: u64,
    stale_served: u64,
    shed: u64,
    hedges_sent: u64,
    hedges_won: u64,
}

impl Totals {
    fn of(row: &Row) -> Self {
        Self {
            requests: row.requests,
            errors: row.errors,
            upstream_calls: row.upstream_calls,
            stale_served: row.stale_served,
            shed: row.shed,
            hedges_sent: row.hedges_sent,
            hedges_won: row.hedges_won,
        }
    }
}

/// The source's status from the stack's health document: the SLA monitor's entry, into
/// which the facade folds the breaker's state.
fn source_status(handles: &Handles<Value>) -> HealthStatus {
    handles
        .health()
        .into_iter()
        .find(|c| matches!(c.detail, ComponentDetail::Sla(_)))
        .map_or(HealthStatus::Unknown, |c| c.status)
}

pub(crate) fn row(lane: &Lane, upstream: &Upstream) -> Row {
    let h = lane.client.handles();
    let cache = h.cache().map(|c| c.stats()).unwrap_or_default();
    let report = h.sla().report();
    let w = &report.count_window;
    let bulkhead = h.concurrency().snapshot();
    let lookups = cache.hits + cache.misses;
    let hedges = h.hedger().map(|x| x.snapshot());
    Row {
        source: lane.source.to_string(),
        requests: lane.seen.requests.load(Ordering::Relaxed),
        errors: lane.seen.errors.load(Ordering::Relaxed),
        upstream_calls: upstream.calls(lane.source),
        cache_hit_rate: if lookups == 0 {
            0.0
        } else {
            cache.hits as f64 / lookups as f64
        },
        stale_served: cache.stale_revalidate + cache.stale_if_error,
        retries: h.retry().snapshot().retries,
        breaker_trips: h.breaker_trips(),
        breaker_state: serde_json::to_value(h.breaker().map(|b| b.state()).unwrap_or_default())
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        rate_limit_waits: h.limiter().snapshot().waited,
        shed: bulkhead.rejected,
        inflight_limit: bulkhead.limit,
        hedges_sent: hedges.as_ref().map_or(0, |x| x.hedges_sent),
        hedges_won: hedges.as_ref().map_or(0, |x| x.hedges_won),
        p50_ms: w.p50.as_secs_f64() * 1e3,
        p95_ms: w.p95.as_secs_f64() * 1e3,
        p99_ms: w.p99.as_secs_f64() * 1e3,
        sla_status: source_status(h).as_str().to_owned(),
    }
}

/// Every source at the end of `phase`, its counts since `since` (which it moves on).
pub(crate) fn phase_end(
    phase: Phase,
    elapsed: Duration,
    lanes: &[Arc<Lane>],
    upstream: &Upstream,
    since: &mut [Totals],
    hedging: HedgeGain,
) -> PhaseEnd {
    let sources = lanes
        .iter()
        .zip(since.iter_mut())
        .map(|(lane, since)| {
            let r = row(lane, upstream);
            let now = Totals::of(&r);
            let during = PhaseRow {
                source: r.source,
                requests: now.requests - since.requests,
                errors: now.errors - since.errors,
                upstream_calls: now.upstream_calls - since.upstream_calls,
                stale_served: now.stale_served - since.stale_served,
                breaker_state: r.breaker_state,
                breaker_trips: r.breaker_trips,
                sla_status: r.sla_status,
                p95_ms: r.p95_ms,
                shed: now.shed - since.shed,
                inflight_limit: r.inflight_limit,
                hedges_sent: now.hedges_sent - since.hedges_sent,
                hedges_won: now.hedges_won - since.hedges_won,
                p99_ms: r.p99_ms,
            };
            *since = now;
            during
        })
        .collect();
    PhaseEnd {
        phase: phase.name(),
        ends_at_ms: elapsed.as_millis() as u64,
        sources,
        hedging,
    }
}
