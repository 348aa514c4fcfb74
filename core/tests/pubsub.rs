//! Pub/sub against real `redis-server` processes: `PUBLISH` on one node, sharded
//! `SPUBLISH` on a 3-master cluster, and resubscription after a restart.

use std::time::Duration;

use reliability_core::harness::{RedisCluster, RedisServer};
use reliability_core::redis::RedisConfig;
use reliability_core::redis::pubsub::{Event, Subscription, publish};

/// Generous: a loaded 2-core machine must hold it.
const WITHIN: Duration = Duration::from_secs(10);

async fn next_message(sub: &mut Subscription) -> (String, Vec<u8>) {
    tokio::time::timeout(WITHIN, async {
        loop {
            match sub.next().await.expect("subscription ended") {
                Event::Message { channel, payload } => return (channel, payload),
                Event::Subscribed | Event::Lost => {}
            }
        }
    })
    .await
    .expect("no message in time")
}

async fn until_subscribed(sub: &mut Subscription) {
    tokio::time::timeout(WITHIN, async {
        while sub.next().await.expect("subscription ended") != Event::Subscribed {}
    })
    .await
    .expect("not subscribed in time");
}

/// Publishes until a subscriber counts it: a subscription confirmed on one connection
/// may not yet be registered for a publish that races it on another.
async fn publish_until_heard(config: &RedisConfig, channel: &str, payload: &[u8]) {
    let mut conn = config.connect().await.unwrap();
    tokio::time::timeout(WITHIN, async {
        while publish(&mut conn, channel, payload).await.unwrap_or(0) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("nobody subscribed");
}

#[tokio::test]
async fn single_node_delivers_hostile_payloads_and_resubscribes_after_restart() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let config = server.config();
    let mut sub = config.subscribe(&["t:{ctl}\nx"]).await.unwrap();
    until_subscribed(&mut sub).await;
    let payload = b"user {a}\n\0\xff".to_vec();
    publish_until_heard(&config, "t:{ctl}\nx", &payload).await;
    assert_eq!(
        next_message(&mut sub).await,
        ("t:{ctl}\nx".to_owned(), payload)
    );

    server.stop();
    server.restart().unwrap();
    // The subscription reports the gap, then comes back by itself.
    tokio::time::timeout(WITHIN, async {
        while sub.next().await.expect("ended") != Event::Lost {}
    })
    .await
    .expect("the drop was not reported");
    until_subscribed(&mut sub).await;
    publish_until_heard(&config, "t:{ctl}\nx", b"again").await;
    assert_eq!(next_message(&mut sub).await.1, b"again");
}

#[tokio::test]
async fn cluster_uses_sharded_pubsub_on_every_slot() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let config = cluster.config();
    // Channels whose slots land on different masters.
    let channels: Vec<String> = (0..12).map(|i| format!("t:{{c{i}}}:inv")).collect();
    let names: Vec<&str> = channels.iter().map(String::as_str).collect();
    let mut sub = config.subscribe(&names).await.unwrap();
    let mut conn = config.connect().await.unwrap();
    for channel in &channels {
        publish_until_heard(&config, channel, channel.as_bytes()).await;
        // Drain to this channel's message (a retried publish may repeat one).
        loop {
            let (got, payload) = next_message(&mut sub).await;
            if &got == channel {
                assert_eq!(payload, channel.as_bytes());
                break;
            }
        }
    }
    // Classic PUBLISH is not what a cluster subscriber listens to: sharded only.
    let classic: usize = redis::cmd("PUBLISH")
        .arg(&channels[0])
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(classic, 0, "the subscription is sharded, not classic");
}

/// The master of a subscribed channel's slot is SIGKILLed: the subscription reports the
/// gap and, once a replica is promoted, hears that slot's messages again without any
/// other command on it, within 5 s of the promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_subscription_follows_its_slot_to_the_promoted_replica() {
    let Some(mut cluster) = RedisCluster::start_with_replicas() else {
        return;
    };
    let config = cluster.config();
    let channel = "t:{failover}:inv";
    let mut sub = config.subscribe(&[channel]).await.unwrap();
    publish_until_heard(&config, channel, b"before").await;
    assert_eq!(next_message(&mut sub).await.1, b"before");

    let victim = cluster.master_for_key(channel).unwrap();
    tokio::task::block_in_place(|| cluster.kill_master(victim)).unwrap();
    tokio::time::timeout(WITHIN, async {
        while sub.next().await.expect("ended") != Event::Lost {}
    })
    .await
    .expect("the dead master was not reported");
    tokio::task::block_in_place(|| cluster.wait_failover(Duration::from_secs(30)))
        .expect("a replica is promoted");
    let promoted = std::time::Instant::now();

    // A publisher of its own, so that nothing this subscription's client does is shared.
    let mut conn = config.connect().await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let _ = publish(&mut conn, channel, b"after").await;
            let listen = tokio::time::timeout(Duration::from_millis(50), async {
                loop {
                    if let Some(Event::Message { payload, .. }) = sub.next().await {
                        return payload;
                    }
                }
            });
            if let Ok(payload) = listen.await
                && payload == b"after"
            {
                return;
            }
        }
    })
    .await;
    assert!(
        heard.is_ok(),
        "no message on the promoted replica {:?} after the promotion",
        promoted.elapsed()
    );
}
