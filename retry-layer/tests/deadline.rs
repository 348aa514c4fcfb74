//! A request's own deadline through the retry layer, on the paused tokio clock: over random
//! schedules (attempt latencies, which attempt succeeds, back-off, attempts allowed and the
//! deadline) no attempt starts at or after the deadline, and the caller has its answer by
//! the deadline (to the timer's millisecond), as `DeadlineExceeded` when it passed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use reliability_core::deadline::{Deadline, DeadlineExceeded, HasDeadline};
use reliability_core::failure::{Failure, FailureKind};
use retry_layer::RetryLayer;
use retry_layer::backoff::{Backoff, Jitter};
use retry_layer::budget::BudgetConfig;
use tokio::time::Instant;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

/// A request that carries its deadline.
#[derive(Debug, Clone)]
struct Call {
    deadline: Option<Deadline>,
}

impl HasDeadline for Call {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
    fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }
}

/// One schedule: how long each attempt takes, which one succeeds (if any), the back-off
/// base, the attempts allowed and the deadline.
#[derive(Debug, Clone)]
struct Schedule {
    latencies_ms: Vec<u64>,
    succeeds: Option<usize>,
    base_ms: u64,
    max_attempts: u32,
    deadline_ms: u64,
}

fn schedules() -> impl Strategy<Value = Schedule> {
    (
        prop::collection::vec(0u64..400, 1..12),
        prop::option::of(0usize..12),
        1u64..300,
        1u32..10,
        0u64..2_000,
    )
        .prop_map(
            |(latencies_ms, succeeds, base_ms, max_attempts, deadline_ms)| Schedule {
                latencies_ms,
                succeeds,
                base_ms,
                max_attempts,
                deadline_ms,
            },
        )
}

/// Runs one call; answers when each attempt started, when the answer came, the deadline,
/// and the answer.
fn run(s: &Schedule) -> (Vec<Instant>, Instant, Instant, Result<(), BoxError>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let layer = RetryLayer::builder()
            .name("deadline")
            .max_attempts(s.max_attempts)
            .backoff(Backoff::exponential(
                Duration::from_millis(s.base_ms),
                Duration::from_secs(1),
                Jitter::Full,
            ))
            .budget(BudgetConfig::Unlimited)
            .seed(7)
            .with_deadlines()
            .build()
            .unwrap();
        let seen = starts.clone();
        let schedule = s.clone();
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(move |_: Call| {
                let attempt = {
                    let mut starts = seen.lock().unwrap();
                    starts.push(Instant::now());
                    starts.len() - 1
                };
                let latency = schedule.latencies_ms[attempt % schedule.latencies_ms.len()];
                let ok = schedule.succeeds == Some(attempt);
                async move {
                    tokio::time::sleep(Duration::from_millis(latency)).await;
                    if ok {
                        Ok(())
                    } else {
                        Err::<(), BoxError>("unavailable".into())
                    }
                }
            }));
        let t0 = Instant::now();
        let deadline = Deadline::after(t0, Duration::from_millis(s.deadline_ms));
        let answer = svc
            .oneshot(Call {
                deadline: Some(deadline),
            })
            .await;
        let answered = Instant::now();
        let starts = starts.lock().unwrap().clone();
        (starts, answered, deadline.instant(), answer)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_attempt_starts_after_the_deadline_and_the_answer_is_on_time(s in schedules()) {
        let (starts, answered, deadline, answer) = run(&s);
        for (i, at) in starts.iter().enumerate() {
            prop_assert!(*at < deadline, "attempt {i} started at or after the deadline: {s:?}");
        }
        prop_assert!(starts.len() <= s.max_attempts as usize);
        // The timer's granularity is a millisecond.
        prop_assert!(
            answered <= deadline + Duration::from_millis(1),
            "answered {:?} after the deadline: {s:?}",
            answered - deadline
        );
        if answered >= deadline && answer.is_err() {
            let err = answer.unwrap_err();
            prop_assert!(
                err.downcast_ref::<DeadlineExceeded>().is_some(),
                "an answer at the deadline is DeadlineExceeded: {err} ({s:?})"
            );
        }
    }
}

/// A deadline already past sends nothing, and the refusal maps to a timeout (504 /
/// `DEADLINE_EXCEEDED`).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_past_deadline_sends_no_attempt() {
    let calls = Arc::new(Mutex::new(0u32));
    let counted = calls.clone();
    let layer = RetryLayer::builder()
        .budget(BudgetConfig::Unlimited)
        .with_deadlines()
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(move |_: Call| {
            *counted.lock().unwrap() += 1;
            async { Ok::<_, BoxError>(()) }
        }));
    let now = Instant::now();
    let err = svc
        .oneshot(Call {
            deadline: Some(Deadline::at(now)),
        })
        .await
        .unwrap_err();
    assert_eq!(*calls.lock().unwrap(), 0);
    let refused = err.downcast_ref::<DeadlineExceeded>().expect("typed");
    let failure = std::error::Error::source(refused)
        .and_then(|s| s.downcast_ref::<Failure>())
        .copied();
    assert_eq!(failure.map(|f| f.kind()), Some(FailureKind::TimedOut));
}
