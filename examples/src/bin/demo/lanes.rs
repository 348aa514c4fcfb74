//! The stacks under test and their callers' traffic: one lane per source, and the
//! side-by-side pair of CEX stacks without a cache.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use examples::upstream::{Source, Upstream, UpstreamRequest};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rand::Rng;
use rand::rngs::SmallRng;
use ratelimit_layer::RedisBackend;
use reliability::config::{StatusWindow, WindowConfig};
use reliability::core::clock::TokioClock;
use reliability::hedge::{HedgeConfig, HedgeDelay};
use reliability::presets::{self, Preset, ReliableService};
use serde_json::Value;

use crate::args::Args;

/// What the demo's callers saw, per source.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) requests: AtomicU64,
    pub(crate) errors: AtomicU64,
}

pub(crate) struct Lane {
    pub(crate) source: Source,
    pub(crate) client: ReliableService<UpstreamRequest, Value>,
    pub(crate) seen: Arc<Seen>,
    pub(crate) bar: ProgressBar,
}

/// One stack of the side-by-side pair.
pub(crate) struct Twin {
    pub(crate) client: ReliableService<UpstreamRequest, Value>,
    pub(crate) upstream: Upstream,
    /// The callers' latencies since the phase began.
    pub(crate) latencies: parking_lot::Mutex<Vec<Duration>>,
}

pub(crate) fn request_for(source: Source, rng: &mut SmallRng) -> UpstreamRequest {
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
pub(crate) const TWIN_SEED: u64 = 0x7A11;

/// Callers per stack of the side-by-side pair.
pub(crate) const TWIN_CALLERS: u64 = 24;

/// The social lane's arrivals: one every 20 ms (50 per second), whatever the latency.
pub(crate) const SOCIAL_ARRIVALS: Duration = Duration::from_millis(20);

pub(crate) fn pacing(source: Source) -> Duration {
    match source {
        Source::Cex => Duration::from_millis(20),
        Source::Dex => Duration::from_millis(40),
        Source::Social => Duration::from_millis(80),
    }
}

/// A half-second hedge percentile window, trusted after 20 answers: a short demo's phase
/// lasts seconds, and the preset's ten-second window would still hold the phase before.
pub(crate) fn short_hedge_window(hedge: &mut HedgeConfig) {
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

pub(crate) async fn build_lane(
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
