//! The `metrics` families of retry layers equal their own snapshots: attempts, retries,
//! give-ups by reason, budget refusals and dead letters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use reliability_core::error::DoNotRetry;
use reliability_core::health::RetrySnapshot;
use retry_layer::backoff::Backoff;
use retry_layer::budget::{BudgetConfig, TokenBucketConfig};
use retry_layer::{ClassifierPolicy, MemorySink, RetryBuilder, RetryLayer};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

#[derive(Debug)]
struct Refused;
impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused, do not retry")
    }
}
impl std::error::Error for Refused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&DoNotRetry)
    }
}

/// `0` succeeds, `1` fails with a retryable error, `2` with a "do not retry" one; `3`
/// fails while the upstream has had fewer than `heal` calls (of any kind), then succeeds.
fn upstream(
    heal: u32,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send {
    let calls = Arc::new(AtomicU32::new(0));
    service_fn(move |kind: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            match kind {
                0 => Ok(0),
                1 => Err::<u32, BoxError>("unavailable".into()),
                2 => Err(Box::new(Refused) as BoxError),
                _ if n < heal => Err("busy".into()),
                _ => Ok(3),
            }
        }
    })
}

type Series = Vec<(String, Vec<(String, String)>, u64)>;

fn counter(series: &Series, name: &str, labels: &[(&str, &str)]) -> u64 {
    let found: Vec<u64> = series
        .iter()
        .filter(|(n, ls, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
        .collect();
    assert!(
        !found.is_empty(),
        "no series {name}{labels:?} in {series:?}"
    );
    found.iter().sum()
}

fn assert_families_equal(series: &Series, source: &str, s: &RetrySnapshot) {
    let by = |name| counter(series, name, &[("source", source)]);
    assert_eq!(by("retry_attempts_total"), s.attempts, "{source} attempts");
    assert_eq!(by("retry_retries_total"), s.retries, "{source} retries");
    assert_eq!(by("retry_give_ups_total"), s.give_ups, "{source} give-ups");
    assert_eq!(
        by("retry_budget_exhausted_total"),
        s.budget_exhausted,
        "{source} budget"
    );
    assert_eq!(
        by("retry_dead_letters_total"),
        s.dead_lettered,
        "{source} dead letters"
    );
}

fn give_ups(series: &Series, source: &str, reason: &str) -> u64 {
    counter(
        series,
        "retry_give_ups_total",
        &[("source", source), ("reason", reason)],
    )
}

#[tokio::test(start_paused = true)]
async fn families_equal_the_snapshot_for_every_way_a_call_ends() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let base = |name: &str| -> RetryBuilder<ClassifierPolicy> {
        RetryLayer::builder()
            .name(name)
            .backoff(Backoff::constant(10 * MS))
            .budget(BudgetConfig::Unlimited)
    };
    let sink = MemorySink::new(100);
    let [attempts, budget, elapsed, deadline] = metrics::with_local_recorder(&recorder, || {
        [
            base("attempts").max_attempts(3).dead_letter(sink.clone()),
            base("budget")
                .max_attempts(5)
                .budget(BudgetConfig::TokenBucket(TokenBucketConfig {
                    capacity: 10,
                    retry_cost: 5,
                    ..TokenBucketConfig::default()
                })),
            base("elapsed").max_attempts(50).max_elapsed(25 * MS),
            base("deadline").max_attempts(50).deadline(35 * MS),
        ]
        .map(|b| b.build().unwrap())
    });

    // "attempts": a success, a heal on the second attempt, two give-ups, a refusal.
    let svc = ServiceBuilder::new()
        .layer(attempts.clone())
        .service(upstream(2));
    for (kind, ok) in [(0, true), (3, true), (1, false), (1, false), (2, false)] {
        assert_eq!(svc.clone().oneshot(kind).await.is_ok(), ok, "kind {kind}");
    }
    // "budget": two retries paid for, then refused.
    let svc = ServiceBuilder::new()
        .layer(budget.clone())
        .service(upstream(0));
    assert!(svc.oneshot(1).await.is_err());
    let svc = ServiceBuilder::new()
        .layer(elapsed.clone())
        .service(upstream(0));
    assert!(svc.oneshot(1).await.is_err());
    let svc = ServiceBuilder::new()
        .layer(deadline.clone())
        .service(upstream(0));
    assert!(svc.oneshot(1).await.is_err());

    let series: Series = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let DebugValue::Counter(n) = value else {
                panic!("retry only counts: {key:?}")
            };
            let labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.key().name().to_owned(), labels, n)
        })
        .collect();
    for layer in [&attempts, &budget, &elapsed, &deadline] {
        let handle = layer.handle();
        assert_families_equal(&series, handle.name(), &handle.snapshot());
    }
    let s = attempts.handle().snapshot();
    assert_eq!(
        (s.attempts, s.retries, s.give_ups, s.dead_lettered),
        (1 + 2 + 3 + 3 + 1, 1 + 2 + 2, 2, 2)
    );
    assert_eq!(give_ups(&series, "attempts", "attempts"), 2);
    assert_eq!(give_ups(&series, "attempts", "budget"), 0);
    assert_eq!(give_ups(&series, "budget", "budget"), 1);
    assert_eq!(
        counter(
            &series,
            "retry_budget_exhausted_total",
            &[("source", "budget")]
        ),
        1
    );
    assert_eq!(give_ups(&series, "elapsed", "elapsed"), 1);
    assert_eq!(give_ups(&series, "deadline", "deadline"), 1);
    assert_eq!(sink.letters().len(), 2);
}
