//! The breaker as a user stacks it: every transition, both window kinds, slow calls,
//! consecutive failures, the probe budget under concurrency, manual controls, listeners,
//! metrics, fallback and per-key breakers. Time is paused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use breaker_layer::{
    Breaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen, FallbackCause, TransitionCause,
};
use reliability_core::classify::{Classification, Outcome, fn_classifier};
use reliability_core::error::is_do_not_retry;
use reliability_core::health::{
    BreakerState, ComponentDetail, HealthSource, HealthStatus, SystemHealth,
};
use tokio::time::{advance, sleep};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

/// What the fake upstream does with a request.
#[derive(Debug, Clone, Copy)]
enum Req {
    Ok,
    Fail,
    Slow(u64),
    Hang,
}

type Svc = BoxCloneSyncService<Req, &'static str, BoxError>;

fn upstream(
    calls: Arc<AtomicUsize>,
) -> impl Service<Req, Response = &'static str, Error = BoxError, Future: Send> + Clone + Send + Sync
{
    service_fn(move |req: Req| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            match req {
                Req::Ok => Ok("ok"),
                Req::Fail => Err::<&'static str, BoxError>("upstream failed".into()),
                Req::Slow(ms) => {
                    sleep(Duration::from_millis(ms)).await;
                    Ok("slow")
                }
                Req::Hang => std::future::pending().await,
            }
        }
    })
}

fn stack(layer: &CircuitBreakerLayer) -> (Svc, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(calls.clone()));
    (BoxCloneSyncService::new(svc), calls)
}

async fn call(svc: &mut Svc, req: Req) -> Result<&'static str, BoxError> {
    svc.ready().await?.call(req).await
}

fn assert_open(err: &BoxError) -> &CircuitOpen {
    assert!(is_do_not_retry(&**err));
    err.downcast_ref::<CircuitOpen>()
        .unwrap_or_else(|| panic!("expected CircuitOpen, got {err}"))
}

#[tokio::test(start_paused = true)]
async fn every_transition_in_order() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let layer = CircuitBreakerLayer::builder("upstream")
        .count_window(4)
        .minimum_calls(4)
        .failure_rate(50.0)
        .open_wait(Duration::from_secs(10))
        .half_open_probes(2)
        .success_threshold(2)
        .on_state_change(move |name, tr| {
            seen.lock()
                .unwrap()
                .push((name.to_string(), tr.from, tr.to, tr.cause))
        })
        .build()
        .unwrap();
    let (mut svc, calls) = stack(&layer);
    let b = layer.breaker();

    // CLOSED: three calls are below minimum_calls, the fourth reaches 50 %.
    call(&mut svc, Req::Fail).await.unwrap_err();
    call(&mut svc, Req::Ok).await.unwrap();
    call(&mut svc, Req::Fail).await.unwrap_err();
    assert_eq!(b.state(), BreakerState::Closed);
    call(&mut svc, Req::Ok).await.unwrap();
    assert_eq!(b.state(), BreakerState::Open);

    // OPEN: fail fast, with the time of the next probe.
    let err = call(&mut svc, Req::Ok).await.unwrap_err();
    let open = assert_open(&err);
    assert_eq!(open.name(), "upstream");
    assert_eq!(open.state(), BreakerState::Open);
    assert_eq!(open.retry_after(), Some(Duration::from_secs(10)));
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    // OPEN → HALF_OPEN after the wait; a failed probe reopens.
    advance(Duration::from_secs(10)).await;
    call(&mut svc, Req::Fail).await.unwrap_err();
    assert_eq!(b.state(), BreakerState::Open);

    // HALF_OPEN → CLOSED after two successful probes.
    advance(Duration::from_secs(10)).await;
    call(&mut svc, Req::Ok).await.unwrap();
    assert_eq!(b.state(), BreakerState::HalfOpen);
    call(&mut svc, Req::Ok).await.unwrap();
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(
        b.metrics().window_calls,
        0,
        "a closed circuit starts a fresh window"
    );

    use BreakerState::*;
    use TransitionCause::*;
    let events: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.1, e.2, e.3))
        .collect();
    assert_eq!(
        events,
        [
            (Closed, Open, FailureRate),
            (Open, HalfOpen, OpenWaitElapsed),
            (HalfOpen, Open, ProbeFailed),
            (Open, HalfOpen, OpenWaitElapsed),
            (HalfOpen, Closed, ProbesSucceeded),
        ]
    );
    let m = b.metrics().counts;
    assert_eq!(
        (
            m.calls,
            m.successes,
            m.failures,
            m.rejections,
            m.state_changes
        ),
        (7, 4, 3, 1, 5)
    );
}

#[tokio::test(start_paused = true)]
async fn minimum_calls_hold_back_the_rate() {
    let layer = CircuitBreakerLayer::builder("min")
        .count_window(10)
        .minimum_calls(5)
        .build()
        .unwrap();
    let (mut svc, _) = stack(&layer);
    for _ in 0..4 {
        call(&mut svc, Req::Fail).await.unwrap_err();
    }
    assert_eq!(
        layer.breaker().state(),
        BreakerState::Closed,
        "100 % of 4 calls is not enough"
    );
    call(&mut svc, Req::Fail).await.unwrap_err();
    assert_eq!(layer.breaker().state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn count_window_forgets_old_failures() {
    let layer = CircuitBreakerLayer::builder("count")
        .count_window(4)
        .minimum_calls(4)
        .failure_rate(75.0)
        .build()
        .unwrap();
    let (mut svc, _) = stack(&layer);
    for req in [
        Req::Fail,
        Req::Fail,
        Req::Ok,
        Req::Ok,
        Req::Ok,
        Req::Fail,
        Req::Fail,
    ] {
        let _ = call(&mut svc, req).await;
    }
    // The window is [Ok, Ok, Fail, Fail]: 50 %.
    assert_eq!(layer.breaker().state(), BreakerState::Closed);
    assert_eq!(layer.breaker().metrics().failure_rate, 50.0);
    let _ = call(&mut svc, Req::Fail).await;
    assert_eq!(layer.breaker().state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_old_seconds() {
    let layer = CircuitBreakerLayer::builder("time")
        .time_window(10)
        .minimum_calls(4)
        .failure_rate(50.0)
        .build()
        .unwrap();
    let (mut svc, _) = stack(&layer);
    for _ in 0..3 {
        call(&mut svc, Req::Fail).await.unwrap_err();
    }
    // Ten seconds later the three failures have left the window.
    advance(Duration::from_secs(10)).await;
    assert_eq!(layer.breaker().metrics().window_calls, 0);
    for _ in 0..3 {
        call(&mut svc, Req::Ok).await.unwrap();
    }
    call(&mut svc, Req::Fail).await.unwrap_err();
    assert_eq!(
        layer.breaker().state(),
        BreakerState::Closed,
        "1 of 4 failed"
    );
    advance(Duration::from_secs(9)).await;
    call(&mut svc, Req::Fail).await.unwrap_err();
    call(&mut svc, Req::Fail).await.unwrap_err();
    // Still inside the window: 3 of 6.
    assert_eq!(layer.breaker().state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_on_their_rate() {
    let layer = CircuitBreakerLayer::builder("slow")
        .count_window(4)
        .minimum_calls(4)
        .slow_calls(Duration::from_millis(500), 50.0)
        .build()
        .unwrap();
    let (mut svc, _) = stack(&layer);
    call(&mut svc, Req::Slow(499)).await.unwrap();
    call(&mut svc, Req::Slow(500)).await.unwrap();
    call(&mut svc, Req::Ok).await.unwrap();
    assert_eq!(layer.breaker().state(), BreakerState::Closed);
    call(&mut svc, Req::Slow(2_000)).await.unwrap();
    assert_eq!(layer.breaker().state(), BreakerState::Open);
    let m = layer.breaker().metrics();
    assert_eq!((m.counts.slow, m.slow_call_rate), (2, 50.0));
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_before_minimum_calls() {
    let layer = CircuitBreakerLayer::builder("row")
        .consecutive_failures(3)
        .minimum_calls(100)
        .build()
        .unwrap();
    let (mut svc, _) = stack(&layer);
    for req in [Req::Fail, Req::Fail, Req::Ok, Req::Fail, Req::Fail] {
        let _ = call(&mut svc, req).await;
    }
    assert_eq!(
        layer.breaker().state(),
        BreakerState::Closed,
        "a success broke the row"
    );
    call(&mut svc, Req::Fail).await.unwrap_err();
    assert_eq!(layer.breaker().state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_count_neither_way() {
    // Calls answered "ignore" (a 429 under `too_many_requests_as(Ignore)`, a cancelled
    // call) never enter the window.
    let layer = CircuitBreakerLayer::builder("ignore")
        .consecutive_failures(2)
        .classifier(fn_classifier(
            |r: Result<&&'static str, &BoxError>| match r {
                Ok(_) => Classification::SUCCESS,
                Err(_) => Classification::IGNORE,
            },
        ))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(calls));
    for _ in 0..10 {
        svc.ready()
            .await
            .unwrap()
            .call(Req::Fail)
            .await
            .unwrap_err();
    }
    assert_eq!(layer.breaker().state(), BreakerState::Closed);
    let m = layer.breaker().metrics();
    assert_eq!(
        (m.counts.ignored, m.counts.failures, m.window_calls),
        (10, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn probe_budget_holds_under_concurrency() {
    let layer = CircuitBreakerLayer::builder("probes")
        .half_open_probes(3)
        .success_threshold(3)
        .open_wait(Duration::from_secs(5))
        .build()
        .unwrap();
    let (svc, calls) = stack(&layer);
    layer.breaker().force_open();
    advance(Duration::from_secs(5)).await;

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut svc = svc.clone();
        tasks.push(tokio::spawn(
            async move { call(&mut svc, Req::Slow(100)).await },
        ));
    }
    let results = futures_util::future::join_all(tasks).await;
    let admitted = results
        .iter()
        .filter(|r| r.as_ref().unwrap().is_ok())
        .count();
    assert_eq!(admitted, 3);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "exactly the probes reach the service"
    );
    for r in results.into_iter().map(|r| r.unwrap()) {
        if let Err(e) = r {
            assert_eq!(assert_open(&e).state(), BreakerState::HalfOpen);
        }
    }
    assert_eq!(layer.breaker().state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_gives_its_place_back() {
    let layer = CircuitBreakerLayer::builder("cancel")
        .half_open_probes(1)
        .success_threshold(1)
        .build()
        .unwrap();
    let (mut svc, _) = stack(&layer);
    layer.breaker().force_open();
    advance(Duration::from_secs(30)).await;
    let hung = tokio::time::timeout(Duration::from_secs(1), call(&mut svc, Req::Hang)).await;
    assert!(hung.is_err(), "the probe hangs and the caller gives up");
    call(&mut svc, Req::Ok).await.unwrap();
    assert_eq!(layer.breaker().state(), BreakerState::Closed);
    assert_eq!(layer.breaker().metrics().counts.cancelled, 1);
}

#[tokio::test(start_paused = true)]
async fn max_half_open_reopens_a_stuck_probe_period() {
    let layer = CircuitBreakerLayer::builder("stuck")
        .half_open_probes(1)
        .success_threshold(1)
        .max_half_open(Duration::from_secs(60))
        .build()
        .unwrap();
    let (svc, _) = stack(&layer);
    layer.breaker().force_open();
    advance(Duration::from_secs(30)).await;
    let mut probe_svc = svc.clone();
    let probe = tokio::spawn(async move { call(&mut probe_svc, Req::Hang).await });
    tokio::task::yield_now().await;
    assert_eq!(layer.breaker().state(), BreakerState::HalfOpen);
    advance(Duration::from_secs(60)).await;
    let mut svc2 = svc.clone();
    let err = call(&mut svc2, Req::Ok).await.unwrap_err();
    assert_eq!(assert_open(&err).state(), BreakerState::Open);
    probe.abort();
}

#[tokio::test(start_paused = true)]
async fn open_wait_backs_off_on_repeated_trips() {
    let layer = CircuitBreakerLayer::builder("backoff")
        .consecutive_failures(1)
        .half_open_probes(1)
        .success_threshold(1)
        .open_wait(Duration::from_secs(10))
        .open_wait_backoff(2.0, Duration::from_secs(25))
        .build()
        .unwrap();
    let (mut svc, _) = stack(&layer);
    call(&mut svc, Req::Fail).await.unwrap_err();
    let mut waits = Vec::new();
    for _ in 0..3 {
        let err = call(&mut svc, Req::Ok).await.unwrap_err();
        let wait = assert_open(&err).retry_after().unwrap();
        waits.push(wait.as_secs());
        advance(wait).await;
        call(&mut svc, Req::Fail).await.unwrap_err(); // the probe fails
    }
    assert_eq!(waits, [10, 20, 25]);
    let err = call(&mut svc, Req::Ok).await.unwrap_err();
    advance(assert_open(&err).retry_after().unwrap()).await;
    call(&mut svc, Req::Ok).await.unwrap();
    layer.breaker().force_open();
    let err = call(&mut svc, Req::Ok).await.unwrap_err();
    assert_eq!(
        assert_open(&err).retry_after(),
        Some(Duration::from_secs(10)),
        "a close resets the backoff"
    );
}

#[tokio::test(start_paused = true)]
async fn manual_controls() {
    let layer = CircuitBreakerLayer::builder("manual").build().unwrap();
    let (mut svc, calls) = stack(&layer);
    let b = layer.breaker();
    b.isolate();
    advance(Duration::from_secs(3600)).await;
    let err = call(&mut svc, Req::Ok).await.unwrap_err();
    assert_eq!(assert_open(&err).state(), BreakerState::ForcedOpen);
    assert_eq!(assert_open(&err).retry_after(), None);
    b.release();
    call(&mut svc, Req::Ok).await.unwrap();
    b.force_open();
    assert_eq!(b.state(), BreakerState::Open);
    b.reset();
    call(&mut svc, Req::Ok).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A listener may call back into the very breaker that fired the event (listeners run
/// outside its lock): it reads the new state through `state`, `metrics` and `snapshot`
/// on a trip and on a manual reset. Runs on its own thread so that a deadlock fails
/// the test on the timeout instead of hanging it.
#[test]
fn a_listener_may_call_the_breaker() {
    type Seen = (BreakerState, BreakerState, BreakerState, BreakerState);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let handle: Arc<OnceLock<Breaker>> = Arc::new(OnceLock::new());
        let ran = Arc::new(AtomicUsize::new(0));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::new(Mutex::new(Vec::new()));
        let layer = CircuitBreakerLayer::builder("reentrant")
            .consecutive_failures(1)
            .on_state_change({
                let (handle, ran, seen) = (handle.clone(), ran.clone(), seen.clone());
                move |_, tr| {
                    let b = handle.get().expect("the handle is set before any call");
                    let (state, metrics, snapshot) = (b.state(), b.metrics(), b.snapshot());
                    seen.lock()
                        .unwrap()
                        .push((tr.to, state, metrics.state, snapshot.state));
                    ran.fetch_add(1, Ordering::SeqCst);
                }
            })
            .build()
            .unwrap();
        handle.set(layer.breaker().clone()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut svc, _) = stack(&layer);
            call(&mut svc, Req::Fail).await.unwrap_err();
        });
        assert_eq!(layer.breaker().state(), BreakerState::Open);
        layer.breaker().reset();
        assert_eq!(layer.breaker().state(), BreakerState::Closed);
        let seen = seen.lock().unwrap().clone();
        done_tx.send((ran.load(Ordering::SeqCst), seen)).unwrap();
    });
    let (ran, seen) = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the breaker deadlocked (or panicked) when its listener called back into it");
    assert_eq!(ran, 2, "the listener ran on the trip and on the reset");
    assert_eq!(
        seen,
        [
            (
                BreakerState::Open,
                BreakerState::Open,
                BreakerState::Open,
                BreakerState::Open
            ),
            (
                BreakerState::Closed,
                BreakerState::Closed,
                BreakerState::Closed,
                BreakerState::Closed
            ),
        ],
        "the listener saw the state it was told about"
    );
}

#[tokio::test(start_paused = true)]
async fn snapshot_fills_the_core_type_and_health() {
    let layer = CircuitBreakerLayer::builder("binance")
        .consecutive_failures(2)
        .build()
        .unwrap();
    let (mut svc, _) = stack(&layer);
    call(&mut svc, Req::Ok).await.unwrap();
    call(&mut svc, Req::Fail).await.unwrap_err();
    call(&mut svc, Req::Fail).await.unwrap_err();
    call(&mut svc, Req::Ok).await.unwrap_err();
    let s = layer.breaker().snapshot();
    assert_eq!(s.state, BreakerState::Open);
    assert_eq!(
        (
            s.calls,
            s.successes,
            s.failures,
            s.rejections,
            s.state_changes
        ),
        (3, 1, 2, 1, 1)
    );
    assert!((s.failure_rate - 200.0 / 3.0).abs() < 1e-9);
    let retry_in = s.retry_at_unix_ms.unwrap() - s.state_since_unix_ms;
    assert!((29_990..=30_010).contains(&retry_in), "{retry_in}");

    let health = SystemHealth::collect(
        [layer.breaker() as &dyn HealthSource],
        std::time::SystemTime::now(),
    );
    assert_eq!(health.status, HealthStatus::Failed);
    assert!(matches!(
        health.components[0].detail,
        ComponentDetail::Breaker(_)
    ));
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(json["components"][0]["detail"]["state"], "OPEN");
}

#[tokio::test(start_paused = true)]
async fn fallback_answers_when_open_and_on_failure() {
    let layer = CircuitBreakerLayer::builder("fallback")
        .consecutive_failures(2)
        .fallback(|cause: FallbackCause<&'static str, BoxError>| match cause {
            FallbackCause::Open(_) => Ok("from cache (open)"),
            FallbackCause::Failed(_) => Ok("from cache (failed)"),
        })
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(calls.clone()));
    assert_eq!(
        svc.ready().await.unwrap().call(Req::Ok).await.unwrap(),
        "ok"
    );
    assert_eq!(
        svc.ready().await.unwrap().call(Req::Fail).await.unwrap(),
        "from cache (failed)"
    );
    assert_eq!(
        svc.ready().await.unwrap().call(Req::Fail).await.unwrap(),
        "from cache (failed)"
    );
    assert_eq!(
        layer.breaker().state(),
        BreakerState::Open,
        "the fallback hides nothing from the breaker"
    );
    assert_eq!(
        svc.ready().await.unwrap().call(Req::Ok).await.unwrap(),
        "from cache (open)"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn per_key_breakers_are_isolated_and_bounded() {
    let layer = CircuitBreakerLayer::builder("hosts")
        .consecutive_failures(1)
        .max_breakers(3)
        .idle_timeout(Duration::from_secs(60))
        .build_per_key(|req: &(u32, Req)| req.0)
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|(_, req): (u32, Req)| async move {
            match req {
                Req::Fail => Err::<(), BoxError>("down".into()),
                _ => Ok(()),
            }
        }));
    let reg = layer.registry();
    svc.ready()
        .await
        .unwrap()
        .call((1, Req::Fail))
        .await
        .unwrap_err();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call((1, Req::Ok))
        .await
        .unwrap_err();
    assert_eq!(err.downcast_ref::<CircuitOpen>().unwrap().name(), "hosts/1");
    svc.ready().await.unwrap().call((2, Req::Ok)).await.unwrap();
    assert_eq!(reg.get(&1).unwrap().state(), BreakerState::Open);
    assert_eq!(reg.get(&2).unwrap().state(), BreakerState::Closed);

    // Full at 3: a fourth key evicts the least recently used CLOSED breaker, never the
    // open one.
    svc.ready().await.unwrap().call((3, Req::Ok)).await.unwrap();
    advance(Duration::from_secs(1)).await;
    svc.ready().await.unwrap().call((3, Req::Ok)).await.unwrap();
    svc.ready().await.unwrap().call((4, Req::Ok)).await.unwrap();
    assert_eq!(reg.len(), 3);
    assert!(reg.get(&2).is_none());
    assert!(reg.get(&1).is_some());

    // A flood of distinct keys never grows the registry past its bound.
    for k in 100..1_100 {
        svc.ready().await.unwrap().call((k, Req::Ok)).await.unwrap();
    }
    assert_eq!(reg.len(), 3);
    assert!(reg.evictions() >= 998);

    // Idle breakers are dropped.
    advance(Duration::from_secs(61)).await;
    assert_eq!(reg.evict_idle(), 3);
    assert!(reg.is_empty());
    assert_eq!(reg.health().len(), 0);
}

#[test]
fn bad_config_is_an_error_not_a_panic() {
    let err = CircuitBreakerLayer::builder("x")
        .failure_rate(0.0)
        .build()
        .unwrap_err();
    assert_eq!(err.field, "failure_rate");
    let err = CircuitBreakerLayer::builder("x")
        .half_open_probes(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field, "half_open_probes");
    let err = CircuitBreakerLayer::builder("x")
        .count_window(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field, "window.size");
    let err = CircuitBreakerLayer::builder("x")
        .time_window(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field, "window.seconds");
    let err = CircuitBreakerLayer::builder("x")
        .max_breakers(0)
        .build_per_key(|_: &()| 0u8)
        .unwrap_err();
    assert_eq!(err.field, "max_breakers");
    let err = CircuitBreakerLayer::builder("x")
        .idle_timeout(Duration::ZERO)
        .build_per_key(|_: &()| 0u8)
        .unwrap_err();
    assert_eq!(err.field, "idle_timeout");
    let config: CircuitBreakerConfig = toml::from_str("slow_call_rate = 101.0").unwrap();
    let err = CircuitBreakerLayer::from_config("x", &config).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `slow_call_rate`: 101 is outside (0, 100]"
    );
}

#[test]
fn layers_and_services_are_clone_send_sync_debug() {
    fn check<T: Clone + Send + Sync + std::fmt::Debug>(_: &T) {}
    let layer = CircuitBreakerLayer::builder("x").build().unwrap();
    check(&layer);
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
    check(&svc);
    let keyed = CircuitBreakerLayer::builder("x")
        .build_per_key(|_: &()| 0u8)
        .unwrap();
    check(keyed.registry());
    let _ = Outcome::Success;
}
