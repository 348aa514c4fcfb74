//! In-process checks against governor's keyed limiter, a 4-window tier check, and Redis
//! decisions per second on loopback against `redis-benchmark` driving the same script.

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ratelimit_layer::quota::Mode;
use ratelimit_layer::{Backend, Leased, MemoryBackend, Quota, RateLimiter, RedisBackend, Subject};

const KEYS: usize = 1024;

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("user-{i}")).collect()
}

/// One check on the in-process backend, whose answer is ready at the first poll: the
/// limiter's whole path (resolve, decide, count) without an executor around it.
fn check_now(limiter: &RateLimiter, subject: &Subject) -> bool {
    let check = pin!(limiter.check_subject(subject));
    match check.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result.is_ok(),
        Poll::Pending => unreachable!("the in-process backend answers at once"),
    }
}

fn in_process(c: &mut Criterion) {
    let keys = keys();
    let mut g = c.benchmark_group("in_process");
    let governor = governor::RateLimiter::keyed(governor::Quota::per_second(
        NonZeroU32::new(1_000_000_000).unwrap(),
    ));
    let mut i = 0;
    g.bench_function("governor_keyed_check", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(governor.check_key(&keys[i]).is_ok())
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let backend = MemoryBackend::new();
    let one = Quota::per(1_000_000, Duration::from_secs(1)).unwrap();
    g.bench_function("memory_backend_single_window", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(backend.decide_now(&keys[i], &one, 1, Mode::Consume).allowed)
        })
    });
    let system = MemoryBackend::builder().system_clock().build().unwrap();
    g.bench_function("memory_backend_single_window_system_clock", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(system.decide_now(&keys[i], &one, 1, Mode::Consume).allowed)
        })
    });
    let tier = Quota::tiered(1_000_000, 60_000_000, 100_000_000, 100_000_000).unwrap();
    g.bench_function("memory_backend_four_windows", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(
                backend
                    .decide_now(&keys[i], &tier, 1, Mode::Consume)
                    .allowed,
            )
        })
    });
    g.bench_function("memory_backend_four_windows_system_clock", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(system.decide_now(&keys[i], &tier, 1, Mode::Consume).allowed)
        })
    });
    let subjects: Vec<Subject> = keys.iter().map(Subject::new).collect();
    for (name, usage) in [
        ("limiter_four_windows", 100_000),
        ("limiter_four_windows_no_usage_stats", 0),
    ] {
        let limiter = RateLimiter::builder()
            .quota(tier)
            .usage_capacity(usage)
            .build()
            .unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                black_box(check_now(&limiter, &subjects[i]))
            })
        });
    }
    g.finish();
}

fn redis_benchmark_rps(port: u16, concurrency: usize, requests: usize) -> Option<f64> {
    let sha = {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &port.to_string(),
                "SCRIPT",
                "LOAD",
                RedisBackend::DECIDE_SCRIPT,
            ])
            .output()
            .ok()?;
        String::from_utf8(out.stdout).ok()?.trim().to_owned()
    };
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-c",
            &concurrency.to_string(),
            "-n",
            &requests.to_string(),
            "-q",
        ])
        .args([
            "EVALSHA",
            &sha,
            "1",
            "bench:{user-1}:g1000",
            "1",
            "1",
            "g",
            "1000000",
            "1000000",
            "1000000",
            "1",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rfind(|l| l.contains("requests per second"))?;
    let before = line.split(" requests per second").next()?;
    before
        .rsplit([' ', ':'])
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// `tasks` concurrent tasks making `per_task` decisions each, on their own keys.
fn decisions<B: Backend + Clone>(
    rt: &tokio::runtime::Runtime,
    backend: &B,
    quota: &Quota,
    tasks: usize,
    per_task: usize,
) {
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (backend, quota) = (backend.clone(), *quota);
                tokio::spawn(async move {
                    let key = format!("user-{t}");
                    for _ in 0..per_task {
                        backend
                            .decide(&key, &quota, 1, Mode::Consume)
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    });
}

fn redis(c: &mut Criterion) {
    let Some(server) = reliability_core::harness::RedisServer::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backend = rt
        .block_on(RedisBackend::builder(server.config()).build())
        .unwrap();
    let one = Quota::per(1_000_000, Duration::from_secs(1)).unwrap();
    const CONCURRENCY: usize = 16;
    const PER_TASK: usize = 200;
    let mut g = c.benchmark_group("redis_loopback");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(
        (CONCURRENCY * PER_TASK) as u64,
    ));
    g.bench_function("decisions_c16", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                decisions(&rt, &backend, &one, CONCURRENCY, PER_TASK);
            }
            start.elapsed()
        })
    });
    g.finish();
    // Same script, same concurrency, driven by redis-benchmark (no client logic at all).
    let n = CONCURRENCY * PER_TASK * 5;
    let start = Instant::now();
    decisions(&rt, &backend, &one, CONCURRENCY, n / CONCURRENCY);
    let ours = n as f64 / start.elapsed().as_secs_f64();
    if let Some(reference) =
        redis_benchmark_rps(server.port(), CONCURRENCY, CONCURRENCY * PER_TASK * 5)
    {
        println!(
            "redis decisions/s: ours {ours:.0}, redis-benchmark EVALSHA {reference:.0}, ratio {:.2}",
            ours / reference
        );
    }
    // Local batching: 10-unit leases, same load, round trips counted.
    let leased = Leased::new(backend.clone(), 10, Duration::from_millis(100)).unwrap();
    let trips = backend.round_trips();
    let start = Instant::now();
    decisions(&rt, &leased, &one, CONCURRENCY, n / CONCURRENCY);
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let used = backend.round_trips() - trips;
    println!(
        "redis decisions/s with 10-unit leases: {rate:.0} ({:.1}x unleased), round trips {used} for {n} decisions ({:.1}x fewer)",
        rate / ours,
        n as f64 / used as f64
    );
}

/// One hot key (the global key: every request counts against one subject) decided on one
/// thread, then the same number of decisions split over two threads. Each decision: the
/// limiter's whole path (resolve, one window under the key's shard lock, the usage count
/// under a shared lock with atomic adds, one clock read). The ratio of the two per-decision
/// times is the scaling; on one key it is bounded by the key's own critical section.
fn global_key(c: &mut Criterion) {
    let mut g = c.benchmark_group("global_key");
    // A burst of 10^8: every decision of the run is admitted (the refusal path is another
    // path).
    let quota = Quota::per(100_000_000, Duration::from_secs(100)).unwrap();
    let limiter = RateLimiter::builder().quota(quota).build().unwrap();
    let subjects = [Subject::new("global"), Subject::new("another")];
    for (name, threads, keys) in [
        ("one_thread", 1_u64, 1_usize),
        ("two_threads", 2, 1),
        ("two_threads_two_keys", 2, 2),
    ] {
        let subjects = &subjects[..keys];
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let each = iters.div_ceil(threads);
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for t in 0..threads as usize {
                        let subject = &subjects[t % subjects.len()];
                        let limiter = &limiter;
                        scope.spawn(move || {
                            for _ in 0..each {
                                black_box(check_now(limiter, subject));
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, in_process, global_key, redis);
criterion_main!(benches);
