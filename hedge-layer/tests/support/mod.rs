//! Test upstreams shared by the integration tests: seeded, on the paused tokio clock.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Mutex;
use tokio::time::Instant;

/// What an upstream saw: calls started and completed, and when.
#[derive(Debug, Default)]
pub struct Tally {
    pub started: AtomicU64,
    pub completed: AtomicU64,
    pub starts: Mutex<Vec<Instant>>,
    pub completions: Mutex<Vec<Instant>>,
}

impl Tally {
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }
}

/// A call that takes `latency`; it counts as completed only if it runs to the end, so a
/// dropped (cancelled) call never does.
pub async fn call(tally: Arc<Tally>, latency: Duration) {
    tally.started.fetch_add(1, Ordering::SeqCst);
    tally.starts.lock().unwrap().push(Instant::now());
    tokio::time::sleep(latency).await;
    tally.completed.fetch_add(1, Ordering::SeqCst);
    tally.completions.lock().unwrap().push(Instant::now());
}

/// Latencies drawn from a seeded generator: `slow_share` of calls take `slow`, the rest
/// `fast`.
#[derive(Debug, Clone)]
pub struct Latencies {
    rng: Arc<Mutex<StdRng>>,
    pub fast: Duration,
    pub slow: Duration,
    pub slow_share: f64,
}

impl Latencies {
    pub fn new(seed: u64, fast: Duration, slow: Duration, slow_share: f64) -> Self {
        Self {
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
            fast,
            slow,
            slow_share,
        }
    }

    pub fn next(&self) -> Duration {
        if self.rng.lock().unwrap().random::<f64>() < self.slow_share {
            self.slow
        } else {
            self.fast
        }
    }
}

/// The `q` quantile (0..=1) of `sorted`.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}
