//! Load shedding by priority under 3× overload, on a paused clock: an upstream that
//! serves 10 calls at once in 100 ms each (100 calls/s) is sent 300 calls/s, a fifth of
//! them critical (order placement), the rest high, normal and low (market-data polling).
//! The lowest class must be shed first, and critical calls must keep ≥ 95 % of theirs.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use concurrency_layer::{BulkheadFull, ConcurrencyLimitLayer, Priority, Rejection};
use parking_lot::Mutex;
use tower::{Layer, ServiceExt, service_fn};

/// Class of the i-th call: 2 critical, 2 high, 3 normal, 3 low in every 10.
fn class(i: usize) -> Priority {
    match i % 10 {
        0 | 5 => Priority::Critical,
        1 | 6 => Priority::High,
        2 | 4 | 7 => Priority::Normal,
        _ => Priority::Low,
    }
}

#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    sent: u32,
    served: u32,
    shed: u32,
}

async fn overload(queue: usize) -> [Tally; 4] {
    let layer = ConcurrencyLimitLayer::builder("exchange")
        .limit(10)
        .queue(queue, Duration::from_millis(300))
        .critical_reserve(0.2)
        .priority(|req: &Priority| *req)
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_: Priority| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, Infallible>(())
    }));
    let tally = Arc::new(Mutex::new([Tally::default(); 4]));
    let mut tasks = Vec::new();
    for i in 0..900 {
        let priority = class(i);
        let (svc, tally) = (svc.clone(), tally.clone());
        tally.lock()[priority.index()].sent += 1;
        tasks.push(tokio::spawn(async move {
            let result = svc.oneshot(priority).await;
            let mut t = tally.lock();
            match result {
                Ok(()) => t[priority.index()].served += 1,
                Err(e) => {
                    let full = e.downcast_ref::<BulkheadFull>().expect("a typed refusal");
                    assert_eq!(full.priority(), priority);
                    assert_ne!(full.rejection(), Rejection::TooManyKeys);
                    t[priority.index()].shed += 1;
                }
            }
        }));
        // 300 calls per second.
        tokio::time::sleep(Duration::from_micros(3_333)).await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    let snapshot = layer.limiter().snapshot();
    let tally = *tally.lock();
    let shed: u32 = tally.iter().map(|t| t.shed).sum();
    assert_eq!(snapshot.rejected, u64::from(shed));
    assert_eq!(snapshot.in_flight, 0);
    tally
}

fn served_share(t: &Tally) -> f64 {
    f64::from(t.served) / f64::from(t.sent)
}

fn assert_lowest_shed_first(tally: [Tally; 4]) {
    let [critical, high, normal, low] = tally.map(|t| served_share(&t));
    eprintln!(
        "served: critical {critical:.3} high {high:.3} normal {normal:.3} low {low:.3}; {tally:?}"
    );
    assert!(critical >= 0.95, "critical kept {critical}");
    assert!(
        critical >= high && high >= normal && normal >= low,
        "{tally:?}"
    );
    assert!(
        low < 0.5 * normal.max(0.01) || low == 0.0,
        "low is shed first: {tally:?}"
    );
    let total: u32 = tally.iter().map(|t| t.served).sum();
    // The upstream stays busy: about 100 calls/s over the 3 s the calls arrive.
    assert!(total >= 270, "served {total}");
}

#[tokio::test(start_paused = true)]
async fn with_a_queue_the_lowest_class_is_shed_first() {
    assert_lowest_shed_first(overload(30).await);
}

#[tokio::test(start_paused = true)]
async fn without_a_queue_critical_calls_keep_their_reserve() {
    let [critical, high, normal, low] = overload(0).await.map(|t| served_share(&t));
    eprintln!("no queue: critical {critical:.3} high {high:.3} normal {normal:.3} low {low:.3}");
    // Rejecting at once, classes below critical compete alike; the reserved share is what
    // keeps critical calls through.
    assert!(
        critical > 1.5 * high.max(normal).max(low),
        "{critical} vs {high} {normal} {low}"
    );
}
