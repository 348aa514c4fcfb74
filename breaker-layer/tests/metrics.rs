//! The `metrics` families of a breaker equal its own snapshot: handles registered with the
//! recorder installed at `build`, moved where the state machine counts.

use std::time::Duration;

use breaker_layer::CircuitBreakerLayer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use reliability_core::classify::{Classification, RetryClass, fn_classifier};
use reliability_core::clock::ManualClock;
use reliability_core::health::{BreakerSnapshot, BreakerState};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

/// Every series of one snapshot (the debugging recorder resets values when read, so each
/// test reads once, at the end).
struct Figures(Vec<Series>);

/// Name, labels, value.
type Series = (String, Vec<(String, String)>, f64);

impl Figures {
    fn take(snapshotter: &Snapshotter) -> Self {
        Self(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let labels = key
                        .key()
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    let value = match value {
                        DebugValue::Counter(n) => n as f64,
                        DebugValue::Gauge(g) => g.into_inner(),
                        DebugValue::Histogram(_) => unreachable!("the breaker has no histogram"),
                    };
                    (key.key().name().to_owned(), labels, value)
                })
                .collect(),
        )
    }

    /// The one series named `name` carrying `labels` (and possibly others).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .0
            .iter()
            .filter(|(n, ls, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one series {name}{labels:?} in {:?}",
            self.0
        );
        found[0]
    }

    fn state(&self, source: &str, state: &str) -> f64 {
        self.get("breaker_state", &[("source", source), ("state", state)])
    }
}

/// A call that takes `ms` on the manual clock and answers `answer`: "ok" succeeds,
/// "skip" counts neither way, "err" fails.
type Call = (u64, &'static str);

fn upstream(
    clock: ManualClock,
) -> impl Service<Call, Response = &'static str, Error = BoxError, Future: Send> + Clone {
    service_fn(move |(ms, answer): Call| {
        clock.advance(Duration::from_millis(ms));
        async move {
            match answer {
                "err" => Err::<&'static str, BoxError>("upstream failed".into()),
                other => Ok(other),
            }
        }
    })
}

fn classifier()
-> impl Clone + reliability_core::classify::Classify<&'static str, BoxError> + Send + Sync + 'static
{
    fn_classifier(|r: Result<&&'static str, &BoxError>| match r {
        Ok(&"skip") => Classification::IGNORE,
        Ok(_) => Classification::SUCCESS,
        Err(_) => Classification::failure(RetryClass::Recoverable),
    })
}

fn assert_families_equal(
    f: &Figures,
    source: &str,
    s: &BreakerSnapshot,
    ignored_and_cancelled: (u64, u64),
) {
    let calls = |outcome| {
        f.get(
            "breaker_calls_total",
            &[("source", source), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("success"), s.successes as f64);
    assert_eq!(calls("failure"), s.failures as f64);
    let (ignored, cancelled) = ignored_and_cancelled;
    assert_eq!(calls("ignored"), ignored as f64);
    assert_eq!(calls("cancelled"), cancelled as f64);
    assert_eq!(
        calls("success") + calls("failure") + calls("ignored") + calls("cancelled"),
        s.calls as f64
    );
    assert_eq!(
        f.get("breaker_slow_calls_total", &[("source", source)]),
        s.slow_calls as f64
    );
    assert_eq!(
        f.get("breaker_rejected_total", &[("source", source)]),
        s.rejections as f64
    );
}

#[tokio::test(flavor = "current_thread")]
async fn families_equal_the_snapshot_after_a_trip() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let clock = ManualClock::new();
    let layer = metrics::with_local_recorder(&recorder, || {
        CircuitBreakerLayer::builder("binance")
            .consecutive_failures(3)
            .slow_calls(Duration::from_millis(100), 100.0)
            .open_wait(Duration::from_secs(30))
            .clock(clock.shared())
            .classifier(classifier())
            .build()
            .unwrap()
    });
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(clock.clone()));

    assert_eq!(svc.clone().oneshot((5, "ok")).await.unwrap(), "ok");
    assert_eq!(svc.clone().oneshot((250, "ok")).await.unwrap(), "ok"); // slow
    assert_eq!(svc.clone().oneshot((5, "skip")).await.unwrap(), "skip");
    // Called, then dropped unpolled: cancelled.
    drop(svc.clone().ready().await.unwrap().call((5, "ok")));
    for _ in 0..3 {
        assert!(svc.clone().oneshot((5, "err")).await.is_err());
    }
    assert_eq!(layer.breaker().state(), BreakerState::Open);
    for _ in 0..2 {
        assert!(svc.clone().oneshot((5, "ok")).await.is_err()); // rejected
    }

    let s = layer.breaker().snapshot();
    assert_eq!(
        (
            s.successes,
            s.failures,
            s.slow_calls,
            s.rejections,
            s.state_changes
        ),
        (2, 3, 1, 2, 1)
    );
    let counts = layer.breaker().metrics().counts;
    let f = Figures::take(&snapshotter);
    assert_families_equal(&f, "binance", &s, (counts.ignored, counts.cancelled));
    assert_eq!(
        ["closed", "open", "half_open", "forced_open"].map(|st| f.state("binance", st)),
        [0.0, 1.0, 0.0, 0.0]
    );
    let tr = |from, to| {
        f.get(
            "breaker_transitions_total",
            &[("source", "binance"), ("from", from), ("to", to)],
        )
    };
    assert_eq!(tr("closed", "open"), 1.0);
    assert_eq!(tr("open", "half_open"), 0.0);
}

#[tokio::test(flavor = "current_thread")]
async fn the_state_gauge_and_transitions_follow_a_full_cycle() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let clock = ManualClock::new();
    let layer = metrics::with_local_recorder(&recorder, || {
        CircuitBreakerLayer::builder("kraken")
            .consecutive_failures(2)
            .open_wait(Duration::from_secs(30))
            .half_open_probes(1)
            .success_threshold(1)
            .clock(clock.shared())
            .classifier(classifier())
            .build()
            .unwrap()
    });
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(clock.clone()));
    for _ in 0..2 {
        assert!(svc.clone().oneshot((1, "err")).await.is_err());
    }
    clock.advance(Duration::from_secs(30));
    assert_eq!(svc.clone().oneshot((1, "ok")).await.unwrap(), "ok"); // the probe
    assert_eq!(layer.breaker().state(), BreakerState::Closed);
    layer.breaker().isolate();
    layer.breaker().release();

    let s = layer.breaker().snapshot();
    let f = Figures::take(&snapshotter);
    assert_eq!(
        ["closed", "open", "half_open", "forced_open"].map(|st| f.state("kraken", st)),
        [1.0, 0.0, 0.0, 0.0]
    );
    let tr = |from, to| {
        f.get(
            "breaker_transitions_total",
            &[("source", "kraken"), ("from", from), ("to", to)],
        )
    };
    for (from, to) in [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("closed", "forced_open"),
        ("forced_open", "closed"),
    ] {
        assert_eq!(tr(from, to), 1.0, "{from} -> {to}");
    }
    let all: f64 =
        f.0.iter()
            .filter(|(n, _, _)| n == "breaker_transitions_total")
            .map(|(_, _, v)| v)
            .sum();
    assert_eq!(all, s.state_changes as f64);
}

#[tokio::test(flavor = "current_thread")]
async fn a_per_key_layer_labels_by_its_name_and_counts_breakers_per_state() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        CircuitBreakerLayer::builder("hosts")
            .consecutive_failures(1)
            .build_per_key(|host: &&'static str| host.to_string())
            .unwrap()
    });
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|host: &'static str| async move {
            if host.starts_with("down") {
                Err::<(), BoxError>("refused".into())
            } else {
                Ok(())
            }
        }));
    for host in ["down.a", "up.b", "up.c", "down.a"] {
        let _ = svc.ready().await.unwrap().call(host).await;
    }
    let f = Figures::take(&snapshotter);
    assert_eq!(f.state("hosts", "closed"), 2.0);
    assert_eq!(f.state("hosts", "open"), 1.0);
    assert_eq!(f.get("breaker_rejected_total", &[("source", "hosts")]), 1.0);
    let breakers = layer.registry().breakers();
    let successes: u64 = breakers.iter().map(|(_, b)| b.snapshot().successes).sum();
    assert_eq!(
        f.get(
            "breaker_calls_total",
            &[("source", "hosts"), ("outcome", "success")]
        ),
        successes as f64
    );
    // Keys come from requests: never a label.
    assert!(
        f.0.iter()
            .all(|(_, labels, _)| labels.iter().all(|(k, v)| k != "source" || v == "hosts"))
    );
}
