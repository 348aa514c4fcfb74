//! Properties of the whole layer on paused time: attempts that take random time against an
//! upstream that always fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use retry_layer::backoff::{Backoff, Jitter};
use retry_layer::budget::BudgetConfig;
use retry_layer::{RetryEvent, RetryLayer};
use tokio::time::Instant;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// No attempt starts later than `max_elapsed` after the first; the call never lasts
    /// longer than the deadline; attempts never exceed `max_attempts`; every announced
    /// wait is the one observed.
    #[test]
    fn elapsed_and_deadline_hold(
        max_attempts in 1u32..12,
        base in 1u32..300,
        cap in 300u32..3_000,
        jitter in jitter(),
        max_elapsed in 1u32..5_000,
        deadline in 1u32..8_000,
        costs in proptest::collection::vec(0u32..1_500, 12),
        seed in any::<u64>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let starts = Arc::new(Mutex::new(Vec::<Instant>::new()));
            let log = starts.clone();
            let attempt_costs = costs.clone();
            let upstream = service_fn(move |_: u32| {
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(Instant::now());
                    log.len() - 1
                };
                let cost = attempt_costs[n.min(attempt_costs.len() - 1)] * MS;
                async move {
                    tokio::time::sleep(cost).await;
                    Err::<u32, BoxError>("down".into())
                }
            });
            let announced = Arc::new(Mutex::new(Vec::new()));
            let seen = announced.clone();
            let layer = RetryLayer::builder()
                .max_attempts(max_attempts)
                .backoff(Backoff::exponential(base * MS, cap * MS, jitter))
                .max_elapsed(max_elapsed * MS)
                .deadline(deadline * MS)
                .budget(BudgetConfig::Unlimited)
                .seed(seed)
                .on_event(move |e| {
                    if let RetryEvent::Retrying { delay, .. } = e {
                        seen.lock().unwrap().push(*delay);
                    }
                })
                .build()
                .unwrap();
            let svc = ServiceBuilder::new().layer(layer).service(upstream);
            let begin = Instant::now();
            let _ = svc.oneshot(1).await.unwrap_err();
            let total = begin.elapsed();
            let starts = starts.lock().unwrap();
            // tokio's timers fire on whole milliseconds: a wait may end up to 1 ms late.
            let tick = MS;
            prop_assert!(total <= deadline * MS + tick, "{total:?} past the deadline");
            prop_assert!(starts.len() as u32 <= max_attempts);
            for start in starts.iter() {
                prop_assert!(*start - begin <= max_elapsed * MS + tick);
            }
            let announced = announced.lock().unwrap();
            prop_assert_eq!(announced.len() + 1, starts.len());
            for (i, delay) in announced.iter().enumerate() {
                prop_assert!(*delay <= cap * MS);
                let attempt_cost = costs[i] * MS;
                let gap = starts[i + 1] - starts[i];
                prop_assert!(gap >= attempt_cost + *delay && gap <= attempt_cost + *delay + 2 * tick);
            }
            Ok(())
        })?;
    }
}
