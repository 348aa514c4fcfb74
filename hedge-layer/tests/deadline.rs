//! Deadlines: no hedge after the deadline, and an answer by the deadline.

mod support;

use std::sync::Arc;
use std::time::Duration;

use hedge_layer::HedgeLayer;
use hedge_layer::deadline::DeadlineLayer;
use proptest::prelude::*;
use reliability_core::deadline::{Deadline, DeadlineExceeded, HasDeadline};
use reliability_core::failure::{Failure, FailureKind};
use support::{Tally, call};
use tokio::time::Instant;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A generic request that carries its deadline.
#[derive(Debug, Clone)]
struct Job {
    id: u32,
    deadline: Option<Deadline>,
}

impl HasDeadline for Job {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }
}

/// The slack allowed between the deadline and the answer: the paused clock fires timers
/// at their instant, so none is needed beyond the timer wheel's 1 ms granularity.
const SLACK: Duration = Duration::from_millis(1);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Over random latencies, delays, hedge counts and deadlines: no copy starts at or
    /// after the deadline, and the caller has an answer by the deadline (plus the timer
    /// granularity).
    #[test]
    fn no_hedge_after_the_deadline_and_an_answer_by_it(
        latencies in proptest::collection::vec(0u64..400, 1..40),
        delay in 0u64..120,
        max_hedges in 1u32..5,
        budget in 1u64..300,
        requests in 1usize..8,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async move {
            let tally = Arc::new(Tally::default());
            let t = tally.clone();
            let latencies = Arc::new(latencies);
            let upstream = service_fn(move |job: Job| {
                let t = t.clone();
                let n = t.started() as usize;
                let latency = ms(latencies[n % latencies.len()]);
                assert!(job.deadline.is_some(), "the deadline layer set one");
                async move {
                    call(t, latency).await;
                    Ok::<_, BoxError>(job.id)
                }
            });
            let hedge = HedgeLayer::builder("deadline")
                .with_deadlines()
                .fixed_delay(ms(delay))
                .max_hedges(max_hedges)
                .budget_reserve(10_000)
                .build()
                .unwrap();
            let svc = ServiceBuilder::new()
                .layer(DeadlineLayer::new(ms(budget)))
                .layer(hedge)
                .service(upstream);
            for id in 0..requests as u32 {
                let before = tally.started() as usize;
                let started = Instant::now();
                let deadline = started + ms(budget);
                let answer = svc.clone().oneshot(Job { id, deadline: None }).await;
                let answered = Instant::now();
                prop_assert!(answered <= deadline + SLACK, "answered {:?} late", answered - deadline);
                match answer {
                    Ok(got) => prop_assert_eq!(got, id),
                    Err(err) => {
                        prop_assert!(err.downcast_ref::<DeadlineExceeded>().is_some());
                        prop_assert!(answered >= deadline);
                    }
                }
                let starts = tally.starts.lock().unwrap()[before..].to_vec();
                prop_assert!(!starts.is_empty());
                for s in starts {
                    prop_assert!(s < deadline, "a copy started {:?} after the deadline", s - deadline);
                }
            }
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The hedge layer alone (no deadline layer to cut the call short): a request whose
    /// deadline falls among its hedge times gets no copy at or after it, even when a hedge
    /// is due at exactly the deadline.
    #[test]
    fn the_hedge_layer_itself_stops_at_the_deadline(
        delay in 1u64..50,
        max_hedges in 1u32..8,
        budget in 1u64..300,
        exact in any::<bool>(),
    ) {
        // Half the cases put the deadline exactly on a hedge's due time.
        let budget = if exact { delay * (budget % u64::from(max_hedges) + 1) } else { budget };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async move {
            let tally = Arc::new(Tally::default());
            let t = tally.clone();
            let upstream = service_fn(move |job: Job| {
                let t = t.clone();
                async move {
                    call(t, ms(1_000)).await;
                    Ok::<_, BoxError>(job.id)
                }
            });
            let hedge = HedgeLayer::builder("deadline-only")
                .with_deadlines()
                .fixed_delay(ms(delay))
                .max_hedges(max_hedges)
                .budget_reserve(10_000)
                .build()
                .unwrap();
            let svc = ServiceBuilder::new().layer(hedge).service(upstream);
            let deadline = Instant::now() + ms(budget);
            let job = Job { id: 3, deadline: Some(Deadline::at(deadline)) };
            prop_assert_eq!(svc.oneshot(job).await.unwrap(), 3);
            let starts = tally.starts.lock().unwrap().clone();
            let expected = 1 + (budget.saturating_sub(1) / delay).min(u64::from(max_hedges));
            prop_assert_eq!(starts.len() as u64, expected);
            for s in starts {
                prop_assert!(s < deadline, "a copy started {:?} after the deadline", s - deadline);
            }
            Ok(())
        })?;
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_passed_deadline_is_answered_at_once() {
    let tally = Arc::new(Tally::default());
    let t = tally.clone();
    let upstream = service_fn(move |job: Job| {
        let t = t.clone();
        async move {
            call(t, ms(1)).await;
            Ok::<_, BoxError>(job.id)
        }
    });
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::enforce_only())
        .service(upstream);
    let passed = Deadline::at(Instant::now());
    let err = svc
        .oneshot(Job {
            id: 1,
            deadline: Some(passed),
        })
        .await
        .unwrap_err();
    assert_eq!(Failure::of(&*err).kind(), FailureKind::TimedOut);
    assert_eq!(tally.started(), 0, "the inner service was not called");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn http_mode_answers_504_and_honours_grpc_timeout() {
    let upstream = service_fn(|req: http::Request<String>| async move {
        let deadline = req.deadline().expect("set from grpc-timeout");
        tokio::time::sleep(ms(500)).await;
        let _ = deadline;
        Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    });
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(10_000)).grpc_timeout(true).http())
        .service(upstream);
    let started = Instant::now();
    let req = http::Request::get("/")
        .header("grpc-timeout", "50m")
        .body(String::new())
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 504);
    assert_eq!(started.elapsed(), ms(50));

    // Without the header the layer's own budget holds, and a malformed one is ignored.
    let req = http::Request::get("/")
        .header("grpc-timeout", "soon")
        .body(String::new())
        .unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
}
