//! Properties the docs promise: percentiles match a sorted-vector reference within
//! HdrHistogram's precision; expired data never counts.

use std::time::Duration;

use hdrhistogram::Histogram;
use proptest::prelude::*;
use reliability_core::classify::Outcome;
use reliability_core::clock::ManualClock;
use sla_layer::SlaMonitor;

/// Nearest-rank percentile, HdrHistogram's definition.
fn reference(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn percentiles_match_sorted_reference(
        latencies in prop::collection::vec(1u64..10_000_000_000, 1..300),
        sigfig in 1u8..=3,
        time_window in any::<bool>(),
    ) {
        let clock = ManualClock::new();
        let m = SlaMonitor::builder("p")
            .count_window(300)
            .significant_figures(sigfig)
            .clock(clock.shared())
            .build()
            .unwrap();
        for l in &latencies {
            m.record(Duration::from_nanos(*l), Outcome::Success);
        }
        let r = m.report();
        let w = if time_window { r.time_window } else { r.count_window };
        prop_assert_eq!(w.calls, latencies.len() as u64);
        let mut sorted = latencies.clone();
        sorted.sort_unstable();
        // Two values are "the same" at this precision when they share a bucket.
        let precision = Histogram::<u64>::new(sigfig).unwrap();
        for (q, got) in [(0.5, w.p50), (0.95, w.p95), (0.99, w.p99), (1.0, w.max)] {
            let want = reference(&sorted, q);
            let got = u64::try_from(got.as_nanos()).unwrap();
            prop_assert!(
                precision.equivalent(got, want),
                "q={} got {} want {} (sigfig {})", q, got, want, sigfig
            );
        }
    }

    #[test]
    fn expired_data_never_counts(
        steps in prop::collection::vec((0u64..4_000, any::<bool>()), 1..200),
        interval_ms in prop::sample::select(vec![100u64, 250, 1_000]),
        slots in 1u64..12,
        final_wait in 0u64..20_000,
    ) {
        let clock = ManualClock::new();
        let interval = Duration::from_millis(interval_ms);
        let window = interval * slots as u32;
        let m = SlaMonitor::builder("t")
            .time_window(window, interval)
            .max_consecutive_failures(u64::MAX)
            .clock(clock.shared())
            .build()
            .unwrap();
        let mut at = Vec::new();
        for (wait, ok) in &steps {
            clock.advance(Duration::from_millis(*wait));
            let outcome = if *ok { Outcome::Success } else { Outcome::Failure };
            m.record(Duration::from_millis(1), outcome);
            at.push((clock.elapsed(), *ok));
        }
        clock.advance(Duration::from_millis(final_wait));
        let now = clock.elapsed();
        let w = m.report().time_window;

        let younger_than = |age: Duration| at.iter().filter(|(t, _)| now - *t < age).count() as u64;
        // Never anything as old as the window; always everything younger than one interval less.
        prop_assert!(w.calls <= younger_than(window), "{} > {}", w.calls, younger_than(window));
        prop_assert!(w.calls >= younger_than(window - interval));
        // Exactly the calls of the last `slots` intervals.
        let idx = |t: Duration| t.as_nanos() / interval.as_nanos();
        let current = idx(now);
        let inside: Vec<_> = at.iter().filter(|(t, _)| current - idx(*t) < u128::from(slots)).collect();
        prop_assert_eq!(w.calls, inside.len() as u64);
        prop_assert_eq!(w.successes, inside.iter().filter(|(_, ok)| *ok).count() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The count window holds exactly the last N calls, whatever came before.
    #[test]
    fn count_window_is_the_last_n(
        outcomes in prop::collection::vec(any::<bool>(), 0..400),
        n in 1usize..150,
    ) {
        let clock = ManualClock::new();
        let m = SlaMonitor::builder("c")
            .count_window(n)
            .max_consecutive_failures(u64::MAX)
            .clock(clock.shared())
            .build()
            .unwrap();
        for ok in &outcomes {
            clock.advance(Duration::from_micros(1));
            m.record(Duration::from_millis(1), if *ok { Outcome::Success } else { Outcome::Failure });
        }
        let w = m.report().count_window;
        let last = &outcomes[outcomes.len().saturating_sub(n)..];
        prop_assert_eq!(w.calls, last.len() as u64);
        prop_assert_eq!(w.successes, last.iter().filter(|ok| **ok).count() as u64);
    }

    /// The status is the worst that any rule of the table in `sla_layer::status` gives.
    #[test]
    fn status_is_the_worst_rule(
        calls in 0u64..50,
        successes_share in 0.0f64..=1.0,
        p95_ms in 0u64..2_000,
        extra_p99_ms in 0u64..2_000,
        consecutive in 0u64..10,
        quality in prop::option::of(0.0f64..=1.0),
        min_quality in prop::option::of(0.0f64..=1.0),
    ) {
        use reliability_core::health::HealthStatus::{Degraded, Failed, Healthy, Unknown};
        let t = sla_layer::SlaThresholds { min_data_quality: min_quality, ..Default::default() };
        let successes = (calls as f64 * successes_share).round() as u64;
        let w = sla_layer::WindowStats {
            calls,
            successes,
            failures: calls - successes,
            p50: Duration::ZERO,
            p95: Duration::from_millis(p95_ms),
            p99: Duration::from_millis(p95_ms + extra_p99_ms),
            max: Duration::from_millis(p95_ms + extra_p99_ms),
        };
        let got = sla_layer::status::assess(&w, consecutive, quality, &t);
        let enough = calls >= t.min_calls;
        let rate = w.success_rate();
        let failed = consecutive >= t.max_consecutive_failures
            || (enough && rate < t.min_success_rate);
        let degraded = (enough
            && (rate < t.degraded_success_rate
                || w.p95 > t.p95.unwrap()
                || w.p99 > t.p99.unwrap()))
            || matches!((quality, min_quality), (Some(q), Some(min)) if q < min);
        let want = if failed {
            Failed
        } else if degraded {
            Degraded
        } else if calls == 0 {
            Unknown
        } else {
            Healthy
        };
        prop_assert_eq!(got.status, want);
        prop_assert_eq!(got.reasons.is_empty(), want == Healthy || want == Unknown);
    }
}
