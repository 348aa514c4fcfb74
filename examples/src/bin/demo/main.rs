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

mod args;
mod display;
mod lanes;
mod report;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use examples::upstream::{Phase, Source, Upstream, UpstreamRequest};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use ratelimit_layer::RedisBackend;
use reliability::config::WindowConfig;
use reliability::core::clock::TokioClock;
use reliability::core::redis::RedisConfig;
use reliability::presets;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::args::{Args, parse_args};
use crate::display::{print_table, progress_line};
use crate::lanes::{
    SOCIAL_ARRIVALS, TWIN_CALLERS, TWIN_SEED, Twin, build_lane, pacing, request_for,
    short_hedge_window,
};
use crate::report::{HedgeGain, Report, Row, Totals, phase_end, row};

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
