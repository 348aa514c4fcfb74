//! The Redis Streams dead-letter sink against a real `redis-server` (started by the shared
//! harness; skipped when none is installed). Real time: tests wait for events (a flush,
//! a counter) with generous timeouts, never for a fixed sleep.

use std::time::{Duration, Instant, SystemTime};

use reliability_core::harness::{RedisCluster, RedisServer};
use retry_layer::backend::{DeadLetterStream, FlushError, RedisSinkOptions, SinkStartError};
use retry_layer::backoff::Backoff;
use retry_layer::budget::BudgetConfig;
use retry_layer::{
    ClassifierPolicy, DeadLetter, DeadLetterSink, RedisStreamSink, RetryLayer, StopReason,
};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

async fn wait_for(sink: &RedisStreamSink, written: u64) {
    sink.flush().await.unwrap();
    assert_eq!(sink.written(), written);
}

/// Polls a counter until `done` holds (20 s at most: loopback Redis answers in
/// microseconds, so only a hung test gets near it).
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.worker_threads(2).enable_all().build().unwrap()
}

fn letter(n: u32) -> DeadLetter {
    DeadLetter::new(
        n,
        StopReason::AttemptsExhausted,
        format!("error {n}"),
        SystemTime::now(),
        SystemTime::now(),
        format!("GET /item/{n}"),
    )
}

#[tokio::test]
async fn give_ups_land_in_the_stream_through_the_layer() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let options = RedisSinkOptions {
        stream: "orders {tag}".into(),
        ..Default::default()
    };
    let sink = RedisStreamSink::connect(&config, options).await.unwrap();
    let policy = ClassifierPolicy::default().describe_with(|n: &u32| format!("order {n}"));
    let layer = RetryLayer::builder()
        .policy(policy)
        .max_attempts(2)
        .budget(BudgetConfig::Unlimited)
        .backoff(Backoff::constant(Duration::from_millis(1)))
        .dead_letter(sink.clone())
        .build()
        .unwrap();
    let down = service_fn(|_: u32| async { Err::<u32, BoxError>("upstream down".into()) });
    let svc = ServiceBuilder::new().layer(layer.clone()).service(down);
    for n in 0..3 {
        svc.clone().oneshot(n).await.unwrap_err();
    }
    wait_for(&sink, 3).await;
    let stream = sink.stream();
    assert_eq!(stream.len().await.unwrap(), 3);
    assert!(
        stream.key().starts_with("t:{"),
        "the stream name is escaped: {}",
        stream.key()
    );
    stream.ensure_group("ops").await.unwrap();
    let read = stream.read_new("ops", "a", 10).await.unwrap();
    let requests: Vec<_> = read.iter().map(|e| e.letter.request.as_str()).collect();
    assert_eq!(requests, ["order 0", "order 1", "order 2"]);
    assert!(read.iter().all(|e| e.letter.attempts == 2
        && e.letter.last_error == "upstream down"
        && e.letter.reason == StopReason::AttemptsExhausted
        && e.letter.last_attempt_unix_ms >= e.letter.first_attempt_unix_ms));
    assert_eq!(layer.handle().snapshot().dead_lettered, 3);
}

#[tokio::test]
async fn entries_survive_a_client_restart_and_acked_ones_are_not_read_again() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let sink = RedisStreamSink::connect(&config, RedisSinkOptions::default())
        .await
        .unwrap();
    for n in 1..=4 {
        sink.send(letter(n));
    }
    wait_for(&sink, 4).await;
    drop(sink);

    // A new client: the letters are still there.
    let conn = config.connect().await.unwrap();
    let stream = DeadLetterStream::new(conn, &config, "retry").unwrap();
    stream.ensure_group("ops").await.unwrap();
    let first = stream.read_new("ops", "worker", 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let acked = stream.ack("ops", &[first[0].id.clone()]).await.unwrap();
    assert_eq!(acked, 1);

    // Another restart; the consumer re-reads its pending entry (read, never acked), then
    // the new ones; the acknowledged one never comes back.
    let conn = config.connect().await.unwrap();
    let stream = DeadLetterStream::new(conn, &config, "retry").unwrap();
    let pending = stream.read_pending("ops", "worker", 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].letter.attempts, 2);
    let mut replayed = Vec::new();
    let n = stream
        .replay("ops", "worker", 10, |l| {
            replayed.push(l.attempts);
            async { true }
        })
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(replayed, [2, 3, 4]);
    assert!(
        stream
            .read_pending("ops", "worker", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        stream
            .read_new("ops", "worker", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(stream.len().await.unwrap(), 4, "acknowledged, not deleted");
}

#[tokio::test]
async fn replay_keeps_rejected_letters_pending_and_maxlen_trims() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let conn = config.connect().await.unwrap();
    let stream = DeadLetterStream::new(conn, &config, "small").unwrap();
    for n in 0..1000 {
        stream.append(&letter(n), 100).await.unwrap();
    }
    let len = stream.len().await.unwrap();
    assert!(
        (100..1000).contains(&len),
        "approximate MAXLEN trims: {len}"
    );

    let n = stream
        .replay("ops", "w", 5, |l| async move { l.attempts % 2 == 0 })
        .await
        .unwrap();
    let pending = stream.read_pending("ops", "w", 10).await.unwrap();
    assert_eq!(n + pending.len(), 5, "rejected letters stay pending");
}

#[tokio::test]
async fn works_on_a_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let config = cluster.config().key_prefix("t");
    let sink = RedisStreamSink::connect(&config, RedisSinkOptions::default())
        .await
        .unwrap();
    sink.send(letter(7));
    wait_for(&sink, 1).await;
    let stream = sink.stream();
    let got = stream
        .replay("ops", "w", 10, |_| async { true })
        .await
        .unwrap();
    assert_eq!(got, 1);
}

#[tokio::test]
async fn bad_options_are_rejected() {
    let options = RedisSinkOptions {
        max_len: 0,
        ..Default::default()
    };
    assert_eq!(options.validate().unwrap_err().field, "dead_letter.max_len");
    let options = RedisSinkOptions {
        spool: 0,
        ..Default::default()
    };
    assert_eq!(options.validate().unwrap_err().field, "dead_letter.spool");
}

#[tokio::test]
async fn an_outage_during_a_thousand_give_ups_loses_nothing_and_keeps_order() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let sink = RedisStreamSink::connect(&config, RedisSinkOptions::default())
        .await
        .unwrap();
    let policy = ClassifierPolicy::default().describe_with(|n: &u32| format!("order {n}"));
    let layer = RetryLayer::builder()
        .policy(policy)
        .max_attempts(2)
        .budget(BudgetConfig::Unlimited)
        .backoff(Backoff::constant(Duration::from_millis(1)))
        .dead_letter(sink.clone())
        .build()
        .unwrap();
    let down = service_fn(|_: u32| async { Err::<u32, BoxError>("upstream down".into()) });
    let svc = ServiceBuilder::new().layer(layer.clone()).service(down);

    server.stop();
    for n in 0..1000 {
        svc.clone().oneshot(n).await.unwrap_err();
    }
    // Every letter reached the writer, none could be written.
    wait_until("1000 spooled letters", || sink.spooled() == 1000).await;
    assert_eq!(sink.written(), 0);

    server.restart().unwrap();
    sink.flush().await.unwrap();
    assert_eq!(sink.written(), 1000);
    assert_eq!(
        (sink.dropped(), sink.overflowed(), sink.failed()),
        (0, 0, 0)
    );
    let stream = sink.stream();
    let entries = stream.range("-", "+", 5000).await.unwrap();
    let requests: Vec<String> = entries.into_iter().map(|e| e.letter.request).collect();
    let expected: Vec<String> = (0..1000).map(|n| format!("order {n}")).collect();
    assert_eq!(requests, expected, "all 1000, in order, once each");
    assert_eq!(stream.len().await.unwrap(), 1000);
    assert_eq!(layer.handle().snapshot().dead_lettered, 1000);
}

#[tokio::test]
async fn a_full_spool_drops_the_newest_letters_and_counts_them() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let options = RedisSinkOptions {
        spool: 10,
        queue: 100,
        ..Default::default()
    };
    let sink = RedisStreamSink::connect(&config, options).await.unwrap();
    server.stop();
    for n in 0..50 {
        sink.send(letter(n));
    }
    wait_until("50 letters spooled or overflowed", || {
        sink.spooled() + sink.overflowed() == 50
    })
    .await;
    assert_eq!(
        (sink.spooled(), sink.overflowed(), sink.dropped()),
        (10, 40, 0)
    );

    server.restart().unwrap();
    sink.flush().await.unwrap();
    let kept: Vec<u32> = sink
        .stream()
        .range("-", "+", 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.letter.attempts)
        .collect();
    assert_eq!(
        kept,
        (0..10).collect::<Vec<_>>(),
        "the oldest ten, in order"
    );
    assert_eq!(sink.overflowed(), 40);
}

#[tokio::test]
async fn shutdown_with_redis_down_returns_within_its_deadline_with_the_count() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let sink = RedisStreamSink::connect(&config, RedisSinkOptions::default())
        .await
        .unwrap();
    server.stop();
    for n in 0..5 {
        sink.send(letter(n));
    }
    let deadline = Duration::from_millis(500);
    let started = Instant::now();
    let err = sink.shutdown(deadline).await.unwrap_err();
    let took = started.elapsed();
    assert!(took >= deadline, "it waited for Redis: {took:?}");
    assert!(
        took < deadline + Duration::from_millis(300),
        "took {took:?}"
    );
    assert_eq!(err, FlushError::TimedOut { undelivered: 5 });
    assert_eq!(sink.failed(), 5);

    // The writer is gone: later letters are counted, not queued forever.
    sink.send(letter(9));
    assert_eq!(sink.dropped(), 1);
    assert!(matches!(
        sink.flush().await,
        Err(FlushError::Stopped { .. })
    ));
}

#[tokio::test]
async fn shutdown_with_redis_up_writes_everything() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let sink = RedisStreamSink::connect(&config, RedisSinkOptions::default())
        .await
        .unwrap();
    for n in 0..300 {
        sink.send(letter(n));
    }
    sink.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!(sink.written(), 300);
    assert_eq!(sink.stream().len().await.unwrap(), 300);
}

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let rt = runtime(false);
    let stream = rt.block_on(async {
        DeadLetterStream::new(config.connect().await.unwrap(), &config, "retry").unwrap()
    });
    let err = RedisStreamSink::start(stream.clone(), RedisSinkOptions::default()).unwrap_err();
    assert!(matches!(err, SinkStartError::NoRuntime), "{err}");

    // Naming the runtime works from outside it.
    let sink = RedisStreamSink::start_on(rt.handle(), stream, RedisSinkOptions::default()).unwrap();
    sink.send(letter(1));
    rt.block_on(sink.flush()).unwrap();
    assert_eq!(sink.written(), 1);
}

#[test]
fn sinks_in_two_runtimes_one_after_the_other_both_work() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    for (n, multi_thread) in [(1, false), (2, true)] {
        let rt = runtime(multi_thread);
        rt.block_on(async {
            let sink = RedisStreamSink::connect(&config, RedisSinkOptions::default())
                .await
                .unwrap();
            sink.send(letter(n));
            sink.flush().await.unwrap();
            assert_eq!(sink.written(), 1);
            drop(sink);
        });
        drop(rt);
    }
    let rt = runtime(false);
    rt.block_on(async {
        let stream =
            DeadLetterStream::new(config.connect().await.unwrap(), &config, "retry").unwrap();
        let attempts: Vec<u32> = stream
            .range("-", "+", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.letter.attempts)
            .collect();
        assert_eq!(attempts, [1, 2]);
    });
}

#[tokio::test]
async fn pending_letters_are_listed_claimed_from_a_dead_worker_and_acked() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let conn = config.connect().await.unwrap();
    let stream = DeadLetterStream::new(conn, &config, "claims").unwrap();
    for n in 0..3 {
        stream.append(&letter(n), 1000).await.unwrap();
    }
    stream.ensure_group("ops").await.unwrap();
    assert_eq!(stream.range("-", "+", 10).await.unwrap().len(), 3);
    let read = stream.read_new("ops", "crashed", 10).await.unwrap();
    assert_eq!(read.len(), 3);

    let pending = stream.pending("ops", 10).await.unwrap();
    assert_eq!(pending.len(), 3);
    assert!(
        pending
            .iter()
            .all(|p| p.consumer == "crashed" && p.deliveries == 1)
    );

    // Not idle long enough: nothing moves.
    let none = stream
        .claim_idle("ops", "rescuer", Duration::from_secs(3600), 10)
        .await
        .unwrap();
    assert!(none.is_empty());
    let claimed = stream
        .claim_idle("ops", "rescuer", Duration::ZERO, 2)
        .await
        .unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|e| e.letter.attempts)
            .collect::<Vec<_>>(),
        [0, 1]
    );
    let pending = stream.pending("ops", 10).await.unwrap();
    let holders: Vec<(&str, u64)> = pending
        .iter()
        .map(|p| (p.consumer.as_str(), p.deliveries))
        .collect();
    assert_eq!(holders, [("rescuer", 2), ("rescuer", 2), ("crashed", 1)]);

    let ids: Vec<String> = claimed.into_iter().map(|e| e.id).collect();
    assert_eq!(stream.ack("ops", &ids).await.unwrap(), 2);
    let left = stream.pending("ops", 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, read[2].id);
}
