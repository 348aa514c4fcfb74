//! Preset stacks end to end on paused time: cache hits, stale-if-error, retries, the
//! breaker opening and closing, and the SLA status falling and recovering.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use breaker_layer::CircuitOpen;
use reliability::config::{Settings, SourceKind, SourceSettings};
use reliability::core::clock::TokioClock;
use reliability::core::health::{BreakerState, HealthSource, HealthStatus};
use reliability::presets::{self, Preset, defaults};
use tower::{BoxError, ServiceExt, service_fn};

/// An upstream that fails while `down` is set, counting its calls.
#[derive(Clone, Default)]
struct Switch {
    down: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
}

impl Switch {
    fn service(
        &self,
    ) -> impl use<>
    + tower::Service<
        String,
        Response = String,
        Error = BoxError,
        Future = impl use<> + Future<Output = Result<String, BoxError>> + Send,
    > + Clone
    + Send
    + Sync
    + 'static {
        let this = self.clone();
        service_fn(move |key: String| {
            let this = this.clone();
            async move {
                this.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                if this.down.load(Ordering::SeqCst) {
                    Err::<String, BoxError>("upstream 503".into())
                } else {
                    Ok(format!("value of {key}"))
                }
            }
        })
    }
}

#[test]
fn presets_start_from_the_tables_and_code_overrides_last() {
    for (preset, kind) in [
        (presets::cex("a"), SourceKind::Cex),
        (presets::dex("b"), SourceKind::Dex),
        (presets::social("c"), SourceKind::Social),
    ] {
        assert_eq!(preset.effective(), &SourceSettings::preset(kind));
    }
    let loaded = Settings::from_sources(
        "[cex.breaker]\nopen_wait = \"45s\"\nsuccess_threshold = 4\nhalf_open_probes = 4",
        [("RELIABILITY__CEX__BREAKER__OPEN_WAIT", "50s")],
    )
    .unwrap();
    let preset = presets::cex("binance")
        .from_settings(&loaded)
        .configure(|s| s.breaker.success_threshold = 7);
    let s = preset.effective();
    assert_eq!(
        s.breaker.open_wait,
        Duration::from_secs(50),
        "env over file"
    );
    assert_eq!(s.breaker.success_threshold, 7, "code over everything");
    assert_eq!(
        s.breaker.consecutive_failures,
        Some(5),
        "the table's default stays"
    );
}

#[tokio::test]
async fn every_layer_is_built_from_its_configuration() {
    for kind in SourceKind::ALL {
        let client = Preset::new(kind, "source")
            .wrap(Switch::default().service(), |k: &String| Some(k.clone()))
            .unwrap();
        let h = client.handles();
        assert_eq!(h.sla().config(), &defaults::sla(kind), "{kind:?}");
        assert_eq!(
            h.breaker().unwrap().config(),
            &defaults::breaker(kind),
            "{kind:?}"
        );
    }
}

/// The preset's bulkhead holds the upstream to its limit: the call past it is refused at
/// once as Overloaded (503 / RESOURCE_EXHAUSTED), not retried, and counted.
#[tokio::test(start_paused = true)]
async fn the_bulkhead_refuses_the_call_past_its_limit() {
    let upstream = Switch::default();
    let client = presets::cex("binance")
        .clock(Arc::new(TokioClock))
        .configure(|s| {
            s.concurrency.limit = 2;
            // No place kept back for critical calls: every call here is of one class.
            s.concurrency.critical_reserve = 0.0;
        })
        .wrap(upstream.service(), |k: &String| Some(k.clone()))
        .unwrap();
    let calls: Vec<_> = (0..3)
        .map(|i| tokio::spawn(client.clone().oneshot(format!("pair-{i}"))))
        .collect();
    let mut refused = Vec::new();
    for call in calls {
        if let Err(e) = call.await.unwrap() {
            refused.push(reliability::Error::from(e));
        }
    }
    assert_eq!(refused.len(), 1, "two in flight, the third refused");
    let e = &refused[0];
    assert!(e.is_overloaded(), "{e}");
    assert_eq!(
        e.kind(),
        reliability::core::failure::FailureKind::Overloaded
    );
    assert_eq!(e.to_grpc_status().code(), tonic::Code::ResourceExhausted);
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 2, "not retried");
    let c = client.handles().concurrency().snapshot();
    assert_eq!((c.limit, c.admitted, c.rejected), (2, 2, 1));
}

#[test]
fn invalid_code_override_is_a_clear_error_at_build() {
    let err = presets::dex("uniswap")
        .configure(|s| s.breaker.failure_rate = 0.0)
        .wrap(Switch::default().service(), |k: &String| Some(k.clone()))
        .unwrap_err();
    assert_eq!(err.field, "breaker.failure_rate");
}

#[tokio::test(start_paused = true)]
async fn cex_stack_through_an_outage_and_back() {
    let upstream = Switch::default();
    let client = presets::cex("binance")
        .clock(Arc::new(TokioClock))
        .seed(7)
        .wrap(upstream.service(), |k: &String| Some(k.clone()))
        .unwrap();
    let h = client.handles().clone();

    // Normal: a miss, then hits.
    for _ in 0..5 {
        let v = client.clone().oneshot("BTC-USDT".into()).await.unwrap();
        assert_eq!(v, "value of BTC-USDT");
    }
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
    assert_eq!(h.cache_hits(), 4);
    assert_eq!(h.sla().report().status, HealthStatus::Healthy);

    // Outage: the cached key is served stale once its TTL is over; fresh keys fail after
    // retries, and the breaker opens after 5 consecutive failures.
    upstream.down.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(6)).await;
    let stale = client.clone().oneshot("BTC-USDT".into()).await.unwrap();
    assert_eq!(stale, "value of BTC-USDT", "stale-if-error");

    let mut open_errors = 0;
    for i in 0..10 {
        let err = client
            .clone()
            .oneshot(format!("ETH-{i}"))
            .await
            .unwrap_err();
        if err.downcast_ref::<CircuitOpen>().is_some() {
            open_errors += 1;
        }
    }
    assert_eq!(h.breaker().unwrap().state(), BreakerState::Open);
    assert!(open_errors > 0, "later calls fail fast");
    assert!(h.retry().snapshot().retries > 0, "retries happened");
    assert_eq!(h.sla().report().status, HealthStatus::Failed);
    let calls_when_open = upstream.calls.load(Ordering::SeqCst);
    let _ = client.clone().oneshot("SOL-USDT".into()).await.unwrap_err();
    assert_eq!(
        upstream.calls.load(Ordering::SeqCst),
        calls_when_open,
        "an open circuit does not call the upstream"
    );

    // Recovery: after the open wait, probes succeed and the breaker closes; enough good
    // calls bring the SLA back to HEALTHY.
    upstream.down.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(31)).await;
    for i in 0..150 {
        client.clone().oneshot(format!("ADA-{i}")).await.unwrap();
    }
    assert_eq!(h.breaker().unwrap().state(), BreakerState::Closed);
    assert_eq!(h.sla().report().status, HealthStatus::Healthy);

    // One health document covers every layer of the stack.
    let names: Vec<_> = h.health().iter().map(|c| c.name.clone()).collect();
    assert!(names.len() >= 5, "{names:?}");
}
