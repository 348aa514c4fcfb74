//! The retry layer through its public API, stacked with `ServiceBuilder`, on paused time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reliability_core::classify::{Classification, RetryClass, fn_classifier};
use reliability_core::error::{DoNotRetry, find_in_chain, is_do_not_retry, is_timeout};
use reliability_core::health::{HealthSource, HealthStatus};
use retry_layer::backoff::{Backoff, Jitter};
use retry_layer::budget::{BudgetConfig, RatioBudgetConfig, TokenBucketConfig};
use retry_layer::{
    AttemptTimedOut, BudgetExhausted, ClassifierPolicy, DeadlineExceeded, MemorySink, RetryEvent,
    RetryLayer, StopReason,
};
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

/// An upstream that fails its first `failures` calls (forever with `u32::MAX`) and logs
/// when each call arrived.
#[derive(Clone)]
struct Upstream {
    calls: Arc<AtomicU32>,
    times: Arc<Mutex<Vec<Instant>>>,
    failures: u32,
    hang_first: bool,
}

impl Upstream {
    fn failing(failures: u32) -> Self {
        Self {
            calls: Arc::default(),
            times: Arc::default(),
            failures,
            hang_first: false,
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The gaps between consecutive calls.
    fn gaps(&self) -> Vec<Duration> {
        let t = self.times.lock().unwrap();
        t.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

impl Service<u32> for Upstream {
    type Response = u32;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        self.times.lock().unwrap().push(Instant::now());
        let fail = n < self.failures;
        let hang = self.hang_first && n == 0;
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            if fail {
                Err("upstream unavailable".into())
            } else {
                Ok(req * 2)
            }
        })
    }
}

fn unlimited() -> BudgetConfig {
    BudgetConfig::Unlimited
}

#[tokio::test(start_paused = true)]
async fn success_after_retries_with_constant_backoff() {
    let up = Upstream::failing(2);
    let layer = RetryLayer::builder()
        .backoff(Backoff::constant(250 * MS))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(up.clone());
    assert_eq!(svc.ready().await.unwrap().call(21).await.unwrap(), 42);
    assert_eq!(up.calls(), 3);
    assert_eq!(up.gaps(), [250 * MS, 250 * MS]);
    let s = layer.handle().snapshot();
    assert_eq!((s.attempts, s.retries, s.give_ups), (3, 2, 0));
}

#[tokio::test(start_paused = true)]
async fn exponential_without_jitter_doubles() {
    let up = Upstream::failing(u32::MAX);
    let layer = RetryLayer::builder()
        .max_attempts(5)
        .budget(unlimited())
        .backoff(Backoff::exponential(100 * MS, 500 * MS, Jitter::None))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(layer).service(up.clone());
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "upstream unavailable",
        "the inner error unchanged"
    );
    assert_eq!(up.gaps(), [100 * MS, 200 * MS, 400 * MS, 500 * MS]);
}

#[tokio::test(start_paused = true)]
async fn each_jitter_kind_stays_in_its_bounds() {
    for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        let up = Upstream::failing(u32::MAX);
        let backoff = Backoff::exponential(100 * MS, 1000 * MS, jitter);
        let layer = RetryLayer::builder()
            .max_attempts(6)
            .budget(unlimited())
            .seed(42)
            .backoff(backoff)
            .build()
            .unwrap();
        let mut svc = ServiceBuilder::new().layer(layer).service(up.clone());
        svc.ready().await.unwrap().call(1).await.unwrap_err();
        let mut previous = Duration::ZERO;
        for (retry, gap) in up.gaps().into_iter().enumerate() {
            let (low, high) = backoff.bounds(retry as u32, previous);
            // Paused time is millisecond-grained: allow a tick either side.
            assert!(
                gap + MS >= low && gap <= high + MS,
                "{jitter:?} retry {retry}: {gap:?} not in [{low:?}, {high:?}]"
            );
            previous = gap;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn seeded_layers_repeat_their_delays() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let up = Upstream::failing(u32::MAX);
        let layer = RetryLayer::builder()
            .max_attempts(5)
            .budget(unlimited())
            .seed(7)
            .build()
            .unwrap();
        let mut svc = ServiceBuilder::new().layer(layer).service(up.clone());
        svc.ready().await.unwrap().call(1).await.unwrap_err();
        runs.push(up.gaps());
    }
    assert_eq!(runs[0], runs[1]);
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_stops_retrying() {
    let up = Upstream::failing(u32::MAX);
    let sink = MemorySink::new(10);
    let layer = RetryLayer::builder()
        .max_attempts(100)
        .budget(unlimited())
        .backoff(Backoff::constant(300 * MS))
        .max_elapsed(Duration::from_secs(1))
        .dead_letter(sink.clone())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(up.clone());
    let start = Instant::now();
    svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(start.elapsed() <= Duration::from_secs(1));
    assert_eq!(up.calls(), 4, "0, 300, 600, 900 ms");
    let letters = sink.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, StopReason::ElapsedExhausted);
    assert_eq!(letters[0].attempts, 4);
    assert_eq!(letters[0].last_error, "upstream unavailable");
    assert_eq!(letters[0].duration(), 900 * MS);
    assert_eq!(layer.handle().snapshot().dead_lettered, 1);
}

#[tokio::test(start_paused = true)]
async fn attempts_exhausted_go_to_the_dead_letter_sink_with_a_description() {
    let up = Upstream::failing(u32::MAX);
    let sink = MemorySink::new(10);
    let policy = ClassifierPolicy::default().describe_with(|req: &u32| format!("order {req}"));
    let layer = RetryLayer::builder()
        .policy(policy)
        .max_attempts(3)
        .dead_letter(sink.clone())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(up.clone());
    svc.ready().await.unwrap().call(9).await.unwrap_err();
    let letter = &sink.letters()[0];
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.reason, StopReason::AttemptsExhausted);
    assert_eq!(letter.request, "order 9");
    assert_eq!(layer.handle().snapshot().give_ups, 1);
}

#[tokio::test(start_paused = true)]
async fn per_attempt_timeout_cuts_a_hung_attempt_and_retries() {
    let mut up = Upstream::failing(0);
    up.hang_first = true;
    let layer = RetryLayer::builder()
        .attempt_timeout(200 * MS)
        .backoff(Backoff::constant(50 * MS))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new().layer(layer).service(up.clone());
    let start = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(4).await.unwrap(), 8);
    assert_eq!(start.elapsed(), 250 * MS);
    assert_eq!(up.calls(), 2);
    // A timeout costs 10 tokens; the success after the retry gives them back.
    assert_eq!(handle.budget_tokens(), Some(500));
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_surface_as_timeouts() {
    let hang = service_fn(|_: u32| std::future::pending::<Result<u32, BoxError>>());
    let layer = RetryLayer::builder()
        .max_attempts(2)
        .attempt_timeout(100 * MS)
        .backoff(Backoff::constant(10 * MS))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(layer).service(hang);
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<AttemptTimedOut>());
    assert!(is_timeout(&*err));
}

#[tokio::test(start_paused = true)]
async fn overall_deadline_ends_the_call() {
    let up = Upstream::failing(u32::MAX);
    let sink = MemorySink::new(1);
    let layer = RetryLayer::builder()
        .max_attempts(50)
        .budget(unlimited())
        .backoff(Backoff::constant(100 * MS))
        .deadline(350 * MS)
        .dead_letter(sink.clone())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(layer).service(up.clone());
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(start.elapsed() <= 350 * MS);
    assert_eq!(
        up.calls(),
        4,
        "0, 100, 200, 300 ms; the wait to 400 ms is not made"
    );
    assert_eq!(err.to_string(), "upstream unavailable");
    assert_eq!(sink.letters()[0].reason, StopReason::DeadlineExceeded);

    // An attempt still running at the deadline is cut off.
    let hang = service_fn(|_: u32| std::future::pending::<Result<u32, BoxError>>());
    let layer = RetryLayer::builder().deadline(300 * MS).build().unwrap();
    let mut svc = ServiceBuilder::new().layer(layer).service(hang);
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    let deadline = err.downcast_ref::<DeadlineExceeded>().unwrap();
    assert_eq!(deadline.attempts(), 1);
    assert!(is_timeout(&*err));
}

#[derive(Debug)]
struct CircuitOpen;
impl std::fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("circuit open")
    }
}
impl std::error::Error for CircuitOpen {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&DoNotRetry)
    }
}

#[tokio::test(start_paused = true)]
async fn do_not_retry_errors_are_never_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let open = service_fn(move |_: u32| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Err::<u32, BoxError>(Box::new(CircuitOpen)) }
    });
    let layer = RetryLayer::builder().max_attempts(5).build().unwrap();
    let mut svc = ServiceBuilder::new().layer(layer.clone()).service(open);
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "passes through unchanged");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(layer.handle().snapshot().give_ups, 0);
}

#[tokio::test(start_paused = true)]
async fn transient_retries_once_at_once_and_critical_is_reported() {
    let up = Upstream::failing(u32::MAX);
    let transient = fn_classifier(|r: Result<&u32, &BoxError>| match r {
        Ok(_) => Classification::SUCCESS,
        Err(_) => Classification::failure(RetryClass::Transient),
    });
    let layer = RetryLayer::builder()
        .policy(ClassifierPolicy::new(transient))
        .max_attempts(3)
        .budget(unlimited())
        .backoff(Backoff::constant(100 * MS))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(layer).service(up.clone());
    svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(up.gaps(), [Duration::ZERO, 100 * MS]);

    let up = Upstream::failing(u32::MAX);
    let critical = fn_classifier(|r: Result<&u32, &BoxError>| match r {
        Ok(_) => Classification::SUCCESS,
        Err(_) => Classification::failure(RetryClass::Critical),
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let layer = RetryLayer::builder()
        .policy(ClassifierPolicy::new(critical))
        .on_event(move |e| {
            if let RetryEvent::Critical { error, .. } = e {
                seen.lock().unwrap().push(error.to_string());
            }
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new().layer(layer).service(up.clone());
    svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(up.calls(), 1);
    assert_eq!(*events.lock().unwrap(), ["upstream unavailable"]);
    assert_eq!(handle.critical(), 1);
}

#[tokio::test(start_paused = true)]
async fn empty_budget_returns_the_error_marked() {
    let up = Upstream::failing(u32::MAX);
    let layer = RetryLayer::builder()
        .max_attempts(3)
        .budget(BudgetConfig::TokenBucket(TokenBucketConfig {
            capacity: 10,
            ..Default::default()
        }))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new().layer(layer).service(up.clone());
    // Two retries drain the 10 tokens.
    svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(up.calls(), 3);
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(up.calls(), 4, "no retry once the budget is empty");
    assert!(is_do_not_retry(&*err));
    let exhausted = find_in_chain::<BudgetExhausted>(&*err).unwrap();
    assert_eq!(exhausted.last_error().to_string(), "upstream unavailable");
    assert_eq!(handle.snapshot().budget_exhausted, 1);
    let health = handle.health();
    assert_eq!(health[0].status, HealthStatus::Degraded);
}

/// 1,000 requests against an upstream in full outage, 3 attempts each: the budget keeps
/// upstream calls under 1.25x the requests; without it they are 3x.
#[tokio::test(start_paused = true)]
async fn budgets_stop_retry_amplification() {
    async fn run(budget: BudgetConfig) -> u32 {
        let up = Upstream::failing(u32::MAX);
        let layer = RetryLayer::builder()
            .max_attempts(3)
            .budget(budget)
            .backoff(Backoff::exponential(10 * MS, 100 * MS, Jitter::Full))
            .build()
            .unwrap();
        let svc = ServiceBuilder::new().layer(layer).service(up.clone());
        let calls = (0..1000u32).map(|i| svc.clone().oneshot(i));
        for result in futures_join_all(calls).await {
            assert!(result.is_err());
        }
        up.calls()
    }
    let unlimited = run(BudgetConfig::Unlimited).await;
    assert_eq!(unlimited, 3000);
    let bucket = run(BudgetConfig::TokenBucket(TokenBucketConfig::default())).await;
    assert_eq!(bucket, 1100, "500 tokens pay for 100 retries of 5");
    let ratio = run(BudgetConfig::Ratio(RatioBudgetConfig::default())).await;
    // 20% of the requests plus the floor of 3: 1,203 at most.
    assert!(ratio <= 1203, "ratio budget: {ratio} upstream calls");
}

/// A minimal join-all, to keep the dependency list short.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn sequential_outage_is_also_bounded_by_the_ratio_budget() {
    let up = Upstream::failing(u32::MAX);
    let layer = RetryLayer::builder()
        .budget(BudgetConfig::Ratio(RatioBudgetConfig::default()))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(layer).service(up.clone());
    for i in 0..1000 {
        svc.ready().await.unwrap().call(i).await.unwrap_err();
    }
    assert!(up.calls() <= 1250, "{}", up.calls());
}

#[tokio::test(start_paused = true)]
async fn health_and_config_from_toml() {
    let config: retry_layer::RetryConfig = toml::from_str(
        r#"
        name = "cex"
        max_attempts = 2
        backoff = { kind = "constant", delay = "10ms" }
        budget = { kind = "token_bucket", capacity = 100 }
        "#,
    )
    .unwrap();
    let layer = RetryLayer::from_config(&config).unwrap();
    let up = Upstream::failing(1);
    let mut svc = ServiceBuilder::new().layer(layer.clone()).service(up);
    svc.ready().await.unwrap().call(1).await.unwrap();
    let health = layer.handle().health();
    assert_eq!(health[0].name, "cex");
    assert_eq!(health[0].status, HealthStatus::Healthy);
    let json = serde_json::to_value(&health[0]).unwrap();
    assert_eq!(json["detail"]["type"], "retry");
    assert_eq!(json["detail"]["retries"], 1);
}

/// Clones on many threads share one budget: the ratio bound holds under concurrency.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clones_on_many_threads_share_the_ratio_budget() {
    let up = Upstream::failing(u32::MAX);
    let layer = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(Duration::ZERO))
        .budget(BudgetConfig::Ratio(RatioBudgetConfig {
            window: Duration::from_secs(3600),
            ..Default::default()
        }))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(up.clone());
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                for i in 0..250 {
                    svc.clone().oneshot(i).await.unwrap_err();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let s = layer.handle().snapshot();
    assert_eq!(up.calls() as u64, s.attempts);
    assert!(
        s.retries <= 2000 / 5 + 3,
        "{} retries for 2000 requests",
        s.retries
    );
}
