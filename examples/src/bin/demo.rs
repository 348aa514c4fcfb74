//! The demo: the three preset stacks (CEX, DEX, social) as reliable clients against an
//! in-process simulated flaky upstream that goes through a scripted scenario (normal,
//! latency spike, error burst, outage, recovery), with a live display and a summary.
//!
//! ```text
//! cargo run -p examples --bin demo                          # 30 s, seed 42
//! cargo run -p examples --bin demo -- --duration 10s --seed 7
//! cargo run -p examples --bin demo -- --json                # per-phase timeline and summary as JSON
//! cargo run -p examples --bin demo -- --simulated-time      # the same scenario on a paused clock
//! cargo run -p examples --bin demo -- --redis redis://127.0.0.1:6379   # shared quotas in Redis
//! ```
//!
//! The breakers' open waits and the SLA status windows are scaled down to a tenth of the
//! run so that a short demo shows a circuit opening *and* closing again and the SLA status
//! recovering; every other setting is the preset's.
//!
//! Beside the three, two CEX stacks without their cache, one hedged at its p95 (the
//! preset's default) and one not, each on its own upstream of the same seed, take the same
//! requests from the same number of callers: the line after the table (and
//! `hedging_in_latency_spike` in `--json`) sets their callers' p99 side by side in the
//! latency spike, whose slow tail (one call in 25) is what a hedge cuts.
//!
//! The upstream's faults are its chaos layers' (`chaos-layer`): the scenario applies each
//! phase's [`FaultSettings`](examples::upstream::FaultSettings) to them.
//!
//! The status shown is the source's, from the stack's health document: the SLA window's
//! verdict (UNKNOWN while it holds too few calls to judge) folded with the breaker's (an
//! open breaker makes the source FAILED, a half-open one DEGRADED).
//!
//! With `--simulated-time` the run uses tokio's paused clock: every layer, the upstream and
//! the callers wait on tokio time, so the scenario's `--duration` passes in simulated time,
//! as fast as the CPU allows, and a seed gives the same run on any machine, loaded or not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use examples::upstream::{Phase, Source, Upstream, UpstreamRequest};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use ratelimit_layer::RedisBackend;
use reliability::config::{StatusWindow, WindowConfig};
use reliability::core::clock::TokioClock;
use reliability::core::health::{ComponentDetail, HealthSource, HealthStatus};
use reliability::core::redis::RedisConfig;
use reliability::hedge::{HedgeConfig, HedgeDelay};
use reliability::presets::{self, Handles, Preset, ReliableService};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use tower::ServiceExt;

struct Args {
    duration: Duration,
    seed: u64,
    json: bool,
    redis: Option<String>,
    simulated_time: bool,
}

const USAGE: &str =
    "usage: demo [--duration 30s] [--seed N] [--json] [--simulated-time] [--redis URL]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs(30),
        seed: 42,
        json: false,
        redis: None,
        simulated_time: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--duration" => {
                let v = it.next().ok_or("--duration needs a value (e.g. 30s)")?;
                args.duration =
                    humantime::parse_duration(&v).map_err(|e| format!("--duration: {e}"))?;
                if args.duration < Duration::from_secs(1)
                    || args.duration > Duration::from_secs(3600)
                {
                    return Err("--duration must be between 1s and 1h".into());
                }
            }
            "--seed" => {
                let v = it.next().ok_or("--seed needs a number")?;
                args.seed = v.parse().map_err(|e| format!("--seed: {e}"))?;
            }
            "--json" => args.json = true,
            "--simulated-time" => args.simulated_time = true,
            "--redis" => args.redis = Some(it.next().ok_or("--redis needs a URL")?),
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.simulated_time && args.redis.is_some() {
        // Redis keeps real time: a paused clock would race ahead of its quotas.
        return Err("--simulated-time and --redis do not go together".into());
    }
    Ok(args)
}

/// What the demo's callers saw, per source.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    errors: AtomicU64,
}

struct Lane {
    source: Source,
    client: ReliableService<UpstreamRequest, Value>,
    seen: Arc<Seen>,
    bar: ProgressBar,
}

/// The summary row of one source.
#[derive(Debug, Serialize)]
struct Row {
    source: String,
    requests: u64,
    errors: u64,
    upstream_calls: u64,
    cache_hit_rate: f64,
    stale_served: u64,
    retries: u64,
    breaker_trips: u64,
    breaker_state: String,
    rate_limit_waits: u64,
    /// Calls the bulkhead refused (full, queue full, queue timeout, shed).
    shed: u64,
    /// The bulkhead's limit at the end (adaptive for social: it falls as latency climbs).
    inflight_limit: usize,
    /// Second copies sent after the source's own p95 (CEX and DEX), and those that
    /// answered first.
    hedges_sent: u64,
    hedges_won: u64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    sla_status: String,
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
struct PhaseEnd {
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
struct HedgeGain {
    hedged_calls: usize,
    hedged_p50_ms: f64,
    hedged_p99_ms: f64,
    unhedged_calls: usize,
    unhedged_p50_ms: f64,
    unhedged_p99_ms: f64,
}

/// One stack of the side-by-side pair.
struct Twin {
    client: ReliableService<UpstreamRequest, Value>,
    upstream: Upstream,
    /// The callers' latencies since the phase began.
    latencies: parking_lot::Mutex<Vec<Duration>>,
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
    fn take(hedged: &Twin, unhedged: &Twin) -> Self {
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
struct Report {
    timeline: Vec<PhaseEnd>,
    summary: Vec<Row>,
    /// The side-by-side pair in the latency spike, where a p95 hedge cuts the tail.
    hedging_in_latency_spike: HedgeGain,
}

/// The running totals a phase's figures are measured from.
#[derive(Clone, Copy, Default)]
struct Totals {
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

fn request_for(source: Source, rng: &mut SmallRng) -> UpstreamRequest {
    // A few hot keys and a long tail, as real traffic has. The tail is what still reaches
    // the upstream once the hot keys are cached: without it the SLA windows would hold
    // next to no calls and see nothing of the scenario.
    let tail = match source {
        Source::Cex | Source::Dex => 150,
        Source::Social => 400,
    };
    let hot = rng.random_bool(0.8);
    let n = if hot {
        rng.random_range(0..3)
    } else {
        rng.random_range(3..tail)
    };
    match source {
        Source::Cex => UpstreamRequest::OrderBook(format!("SYM{n}-USDT")),
        Source::Dex => UpstreamRequest::Quote(format!("TOKEN{n}-USDC")),
        Source::Social => UpstreamRequest::Search(format!("topic {n}")),
    }
}

/// The seed of the side-by-side pair's upstreams and requests.
const TWIN_SEED: u64 = 0x7A11;

/// Callers per stack of the side-by-side pair.
const TWIN_CALLERS: u64 = 24;

/// The social lane's arrivals: one every 20 ms (50 per second), whatever the latency.
const SOCIAL_ARRIVALS: Duration = Duration::from_millis(20);

fn pacing(source: Source) -> Duration {
    match source {
        Source::Cex => Duration::from_millis(20),
        Source::Dex => Duration::from_millis(40),
        Source::Social => Duration::from_millis(80),
    }
}

/// A half-second hedge percentile window, trusted after 20 answers: a short demo's phase
/// lasts seconds, and the preset's ten-second window would still hold the phase before.
fn short_hedge_window(hedge: &mut HedgeConfig) {
    if let HedgeDelay::Percentile {
        window,
        min_samples,
        ..
    } = &mut hedge.delay
    {
        *window = Duration::from_millis(500);
        *min_samples = 20;
    }
}

async fn build_lane(
    source: Source,
    upstream: &Upstream,
    args: &Args,
    quota: Option<RedisBackend>,
    bars: &MultiProgress,
) -> Result<Lane, String> {
    let preset: Preset = match source {
        Source::Cex => presets::cex("cex"),
        Source::Dex => presets::dex("dex"),
        Source::Social => presets::social("social"),
    };
    let scale = args.duration / 10;
    let mut preset = preset.seed(args.seed).configure(|s| {
        s.breaker.open_wait = s.breaker.open_wait.min(scale);
        // The status reads the last tenth of the run, so recovery shows: recovery lasts
        // three tenths, enough for the breaker's open wait (a tenth at most), its probes,
        // and then a whole window of recovered calls, with time to spare. The window is a
        // second at least, so a run under 5 s may end before the status has cleared.
        // A whole number of 100 ms intervals.
        s.sla.time_interval = Duration::from_millis(100);
        s.sla.time_window =
            Duration::from_millis((scale.as_millis() as u64).max(1_000) / 100 * 100);
        s.sla.status_window = StatusWindow::Time;
        if source == Source::Social {
            // The demo's social API grants 20 calls per second (the preset assumes 1): enough
            // for its adaptive bulkhead to see load, so the latency spike lowers its limit.
            s.rate_limit.window = WindowConfig::new(100, Duration::from_secs(5));
        }
    });
    if args.simulated_time {
        // The SLA monitor reads the CPU's counter by default, which a paused clock does
        // not move; every other layer reads tokio's clock already.
        preset = preset.clock(Arc::new(TokioClock));
    }
    if let Some(backend) = quota {
        preset = preset.shared_quota(backend);
    }
    let client = preset
        .wrap(upstream.clone(), |r: &UpstreamRequest| Some(r.key()))
        .map_err(|e| format!("{source}: {e}"))?;
    let bar = bars.add(ProgressBar::new_spinner());
    bar.set_style(ProgressStyle::with_template("{prefix:>7} {spinner} {msg}").expect("template"));
    bar.set_prefix(source.to_string());
    Ok(Lane {
        source,
        client,
        seen: Arc::default(),
        bar,
    })
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

fn row(lane: &Lane, upstream: &Upstream) -> Row {
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
fn phase_end(
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

fn progress_line(r: &Row, phase: Phase) -> String {
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

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // tokio pauses its clock on a current-thread runtime only.
    let runtime = if args.simulated_time {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => Err(format!("runtime: {e}")),
    };
    if let Err(e) = result {
        eprintln!("demo: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let upstream = Upstream::new(args.seed);
    let quota = match &args.redis {
        Some(url) => {
            let config = RedisConfig::single(url.clone()).key_prefix("demo");
            Some(
                RedisBackend::builder(config)
                    .build()
                    .await
                    .map_err(|e| format!("--redis {url}: {e}"))?,
            )
        }
        None => None,
    };
    let bars = MultiProgress::new();
    if args.json {
        bars.set_draw_target(ProgressDrawTarget::hidden());
    }
    let header = bars.add(ProgressBar::new(args.duration.as_millis() as u64));
    header.set_style(
        ProgressStyle::with_template("{prefix:>7} [{bar:30}] {elapsed:>3}/{msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    header.set_prefix("run");
    header.set_message(format!("{}s", args.duration.as_secs()));

    let mut lanes = Vec::new();
    for source in Source::ALL {
        lanes.push(Arc::new(
            build_lane(source, &upstream, &args, quota.clone(), &bars).await?,
        ));
    }

    // The side-by-side pair: hedged and not, no cache, each on its own upstream.
    let twin = |hedged: bool| -> Result<Arc<Twin>, String> {
        let upstream = Upstream::new(args.seed ^ TWIN_SEED);
        let mut preset = presets::cex(if hedged { "cex-hedged" } else { "cex-unhedged" })
            .seed(args.seed)
            .configure(|s| {
                short_hedge_window(&mut s.hedge);
                // Latency is what the pair compares: no quota to wait for.
                s.rate_limit.window = WindowConfig::new(1_000_000, Duration::from_secs(1));
                if !hedged {
                    s.hedge.max_hedges = 0;
                }
            });
        if args.simulated_time {
            preset = preset.clock(Arc::new(TokioClock));
        }
        let client = preset
            .wrap(upstream.clone(), |_: &UpstreamRequest| None::<String>)
            .map_err(|e| format!("cex twin: {e}"))?;
        Ok(Arc::new(Twin {
            client,
            upstream,
            latencies: parking_lot::Mutex::default(),
        }))
    };
    let twins = [twin(true)?, twin(false)?];

    let started = Instant::now();
    let deadline = started + args.duration;
    let mut workers = Vec::new();
    for twin in &twins {
        for w in 0..TWIN_CALLERS {
            let twin = twin.clone();
            // The same requests for both stacks.
            let mut rng = SmallRng::seed_from_u64(args.seed ^ TWIN_SEED ^ w);
            workers.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let request = request_for(Source::Cex, &mut rng);
                    let sent = Instant::now();
                    let _ = twin.client.clone().oneshot(request).await;
                    twin.latencies.lock().push(sent.elapsed());
                    tokio::time::sleep(pacing(Source::Cex)).await;
                }
            }));
        }
    }
    for (i, lane) in lanes.iter().enumerate() {
        if lane.source == Source::Social {
            // Open loop, as a crowd of users is: arrivals do not wait for answers, so calls
            // in flight grow with the upstream's latency, and the adaptive limit sees it.
            let lane = lane.clone();
            let mut rng = SmallRng::seed_from_u64(args.seed ^ ((i as u64) << 8));
            workers.push(tokio::spawn(async move {
                let mut arrivals = tokio::time::interval(SOCIAL_ARRIVALS);
                arrivals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut calls = tokio::task::JoinSet::new();
                while Instant::now() < deadline {
                    arrivals.tick().await;
                    let request = request_for(lane.source, &mut rng);
                    let lane = lane.clone();
                    calls.spawn(async move {
                        let failed = lane.client.clone().oneshot(request).await.is_err();
                        lane.seen.requests.fetch_add(1, Ordering::Relaxed);
                        if failed {
                            lane.seen.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    while calls.try_join_next().is_some() {}
                }
                // The calls still waiting at the end are dropped, not counted.
                calls.abort_all();
            }));
            continue;
        }
        for w in 0..4u64 {
            let lane = lane.clone();
            let mut rng = SmallRng::seed_from_u64(args.seed ^ ((i as u64) << 8 | w));
            workers.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let request = request_for(lane.source, &mut rng);
                    let failed = lane.client.clone().oneshot(request).await.is_err();
                    // Counted once answered: the calls still waiting at the end are
                    // dropped, not counted.
                    lane.seen.requests.fetch_add(1, Ordering::Relaxed);
                    if failed {
                        lane.seen.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(pacing(lane.source)).await;
                }
            }));
        }
    }

    // The scenario, its timeline and the live display.
    let mut timeline = Vec::new();
    let mut since = vec![Totals::default(); lanes.len()];
    let mut phase = Phase::at(0.0);
    let set_faults = |phase: Phase| {
        upstream.set_faults(phase.faults());
        for twin in &twins {
            twin.upstream.set_faults(phase.faults());
        }
    };
    set_faults(phase);
    let mut spike = HedgeGain::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let elapsed = started.elapsed();
        let ended = elapsed >= args.duration;
        let now = Phase::at(elapsed.as_secs_f64() / args.duration.as_secs_f64());
        if ended || now != phase {
            let hedging = HedgeGain::take(&twins[0], &twins[1]);
            if phase == Phase::LatencySpike {
                spike = hedging;
            }
            timeline.push(phase_end(
                phase, elapsed, &lanes, &upstream, &mut since, hedging,
            ));
            if ended {
                break;
            }
            phase = now;
            set_faults(phase);
        }
        header.set_position(elapsed.as_millis() as u64);
        for lane in &lanes {
            lane.bar
                .set_message(progress_line(&row(lane, &upstream), phase));
            lane.bar.tick();
        }
    }
    // The summary is the state at the end of the run. Waiting for the calls still in
    // flight (a social call may wait 10 s for its quota) would let the other sources'
    // windows drain meanwhile and show them UNKNOWN.
    let rows: Vec<Row> = lanes.iter().map(|l| row(l, &upstream)).collect();
    for w in &workers {
        w.abort();
    }
    header.finish_and_clear();
    for lane in &lanes {
        lane.bar.finish_and_clear();
    }

    if args.json {
        let report = Report {
            timeline,
            summary: rows,
            hedging_in_latency_spike: spike,
        };
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{json}");
        return Ok(());
    }
    print_table(&rows, &args);
    println!(
        "hedging in the latency spike, CEX reads without a cache side by side: p99 {:.0} ms \
         unhedged, {:.0} ms hedged ({:.1}x lower); p50 {:.0} ms and {:.0} ms",
        spike.unhedged_p99_ms,
        spike.hedged_p99_ms,
        spike.unhedged_p99_ms / spike.hedged_p99_ms.max(f64::MIN_POSITIVE),
        spike.unhedged_p50_ms,
        spike.hedged_p50_ms,
    );
    Ok(())
}

fn print_table(rows: &[Row], args: &Args) {
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
