//! The Redis Streams dead-letter sink against a real `redis-server` (started by the shared
//! harness; skipped when none is installed). Real time, short bounded polling.

use std::time::{Duration, SystemTime};

use reliability_core::harness::{RedisCluster, RedisServer};
use retry_layer::backend::{DeadLetterStream, RedisSinkOptions};
use retry_layer::backoff::Backoff;
use retry_layer::budget::BudgetConfig;
use retry_layer::{
    ClassifierPolicy, DeadLetter, DeadLetterSink, RedisStreamSink, RetryLayer, StopReason,
};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

async fn wait_for(sink: &RedisStreamSink, written: u64) {
    for _ in 0..200 {
        if sink.written() >= written {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("only {} of {written} letters written", sink.written());
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
}
