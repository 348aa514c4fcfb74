//! A model check of the bulkhead: any interleaving of arrivals (of any class),
//! completions, cancellations (of running or queued calls) and time passing (queue
//! timeouts) on a paused tokio clock. After every step:
//!
//! - the inner service never runs more than `limit` calls at once;
//! - the limiter's in-flight count is exactly the number of inner calls running (a
//!   cancelled or timed-out waiter holds no place);
//! - the queue never holds more than its capacity.
//!
//! At the end, with every call finished or cancelled, nothing is in flight or queued.
//! Half the cases run an adaptive (AIMD) limit that moves under the calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use concurrency_layer::config::AimdConfig;
use concurrency_layer::{ConcurrencyLimitLayer, Priority};
use parking_lot::Mutex;
use proptest::prelude::*;
use tokio::sync::oneshot;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

#[derive(Debug, Clone)]
enum Op {
    Arrive(Priority),
    /// Finish the n-th call that is running (modulo their number).
    Complete(usize),
    /// Drop the n-th call's future, running or queued.
    Cancel(usize),
    /// Let time pass, milliseconds.
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::sample::select(Priority::ALL.to_vec()).prop_map(Op::Arrive),
        3 => any::<usize>().prop_map(Op::Complete),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => (1u64..80).prop_map(Op::Advance),
    ]
}

/// The inner service's view: calls running now, the most ever, and how to finish each.
#[derive(Default)]
struct Upstream {
    running: AtomicUsize,
    most: AtomicUsize,
    finish: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

struct Running(Arc<Upstream>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

fn check(
    limit: usize,
    queue: usize,
    reserve: f64,
    adaptive: bool,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut builder = ConcurrencyLimitLayer::builder("model")
            .limit(limit)
            .queue(queue, Duration::from_millis(50))
            .critical_reserve(reserve);
        // An adaptive limit moves between 1 and `limit` as calls are slow or fast, so
        // places are granted and withheld as it moves.
        let most = limit;
        if adaptive {
            builder = builder
                .aimd(AimdConfig {
                    min_limit: 1,
                    max_limit: limit,
                    latency_threshold: Duration::from_millis(30),
                    ..AimdConfig::default()
                })
                .sample_window(Duration::from_millis(1), 1);
        }
        let layer = builder
            .priority(|req: &(u64, Priority)| req.1)
            .build()
            .unwrap();
        let limiter = layer.limiter().clone();
        let upstream = Arc::new(Upstream::default());
        let up = upstream.clone();
        let svc = layer.layer(service_fn(move |(id, _): (u64, Priority)| {
            let up = up.clone();
            let (tx, rx) = oneshot::channel();
            up.finish.lock().insert(id, tx);
            let now = up.running.fetch_add(1, Ordering::SeqCst) + 1;
            up.most.fetch_max(now, Ordering::SeqCst);
            let guard = Running(up.clone());
            async move {
                let _ = rx.await;
                drop(guard);
                // Not `BoxError`: a spawned future's `Send` check erases the lifetime of
                // `dyn Error + 'static`, and `AsError`'s `E: Into<BoxError>` then fails.
                Ok::<_, std::convert::Infallible>(())
            }
        }));

        let mut calls: Vec<(u64, tokio::task::JoinHandle<()>)> = Vec::new();
        let mut next_id = 0u64;
        for op in ops {
            match op {
                Op::Arrive(priority) => {
                    let id = next_id;
                    next_id += 1;
                    let svc = svc.clone();
                    let task = tokio::spawn(async move {
                        let _ = svc.oneshot((id, priority)).await;
                    });
                    calls.push((id, task));
                }
                Op::Complete(n) => {
                    let mut finish = upstream.finish.lock();
                    let mut ids: Vec<_> = finish.keys().copied().collect();
                    ids.sort_unstable();
                    if !ids.is_empty() {
                        let id = ids[n % ids.len()];
                        let _ = finish.remove(&id).unwrap().send(());
                    }
                }
                Op::Cancel(n) => {
                    if !calls.is_empty() {
                        let (id, task) = calls.remove(n % calls.len());
                        task.abort();
                        upstream.finish.lock().remove(&id);
                    }
                }
                Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
            }
            settle().await;
            calls.retain(|(_, t)| !t.is_finished());
            let running = upstream.running.load(Ordering::SeqCst);
            prop_assert!(upstream.most.load(Ordering::SeqCst) <= most);
            if !adaptive {
                prop_assert!(limiter.in_flight() <= limiter.limit());
            }
            prop_assert_eq!(limiter.in_flight(), running, "a place per running call");
            prop_assert!(limiter.queued() <= queue);
        }
        for (_, task) in calls.drain(..) {
            task.abort();
        }
        upstream.finish.lock().clear();
        settle().await;
        prop_assert_eq!(upstream.running.load(Ordering::SeqCst), 0);
        prop_assert_eq!(limiter.in_flight(), 0);
        prop_assert_eq!(limiter.queued(), 0);
        let snap = limiter.snapshot();
        prop_assert_eq!(snap.in_flight, 0);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn in_flight_never_exceeds_the_limit(
        limit in 1usize..6,
        queue in 0usize..5,
        reserve in prop::sample::select(vec![0.0, 0.3, 0.6]),
        adaptive in any::<bool>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        check(limit, queue, reserve, adaptive, ops)?;
    }
}

/// A waiter granted a place in the same instant it is cancelled gives it back.
#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_holds_no_place() {
    let layer = ConcurrencyLimitLayer::builder("cancel")
        .limit(1)
        .queue(4, Duration::from_secs(10))
        .build()
        .unwrap();
    let limiter = layer.limiter().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let rx = Arc::new(Mutex::new(Some(rx)));
    let svc = layer.layer(service_fn(move |first: bool| {
        let rx = if first { rx.lock().take() } else { None };
        async move {
            if let Some(rx) = rx {
                let _ = rx.await;
            }
            Ok::<_, BoxError>(())
        }
    }));
    let mut holder = svc.clone();
    let running = holder.ready().await.unwrap().call(true);
    let running = tokio::spawn(running);
    settle().await;
    let mut waiter_svc = svc.clone();
    let mut waiting = Box::pin(waiter_svc.ready().await.unwrap().call(false));
    assert!(futures_util::poll!(waiting.as_mut()).is_pending());
    assert_eq!(limiter.queued(), 1);
    // The place frees and goes to the waiter, which is dropped before it ever runs.
    tx.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(limiter.in_flight(), 1, "granted to the waiter");
    drop(waiting);
    assert_eq!(limiter.in_flight(), 0, "and given back on drop");
    assert_eq!(limiter.queued(), 0);
    svc.oneshot(false).await.unwrap();
}
