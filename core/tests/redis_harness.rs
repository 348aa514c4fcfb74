//! The harness against real `redis-server` processes: a single node and a 3-master cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use redis::AsyncCommands;
use reliability_core::harness::{RedisCluster, RedisServer};
use reliability_core::key::KeySpace;

#[tokio::test]
async fn single_node_round_trip() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let keys = config.keyspace().unwrap();
    let mut conn = config.connect().await.unwrap();
    let key = keys.key("user {42}\n", "name");
    let _: () = conn.set(&key, "alice").await.unwrap();
    let got: String = conn.get(&key).await.unwrap();
    assert_eq!(got, "alice");
    assert!(!conn.is_cluster());
}

#[tokio::test]
async fn single_node_restart_reconnects() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let mut conn = server.config().connect().await.unwrap();
    let _: () = conn.set("k", 1).await.unwrap();
    server.stop();
    let down: redis::RedisResult<i64> = conn.get("k").await;
    assert!(
        down.is_err(),
        "a dead server answers with an error, not a hang"
    );
    server.restart().unwrap();
    // The connection manager reconnects on its own; a few attempts at most.
    let mut recovered = false;
    for _ in 0..50 {
        if conn.set::<_, _, ()>("k", 2).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(recovered, "connection recovered after restart");
}

#[tokio::test]
async fn cluster_spreads_keys_over_all_masters_and_reads_them_back() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let config = cluster.config().key_prefix("t");
    let keys = KeySpace::new("t").unwrap();
    let mut conn = config.connect().await.unwrap();
    assert!(conn.is_cluster());

    let mut owners = BTreeSet::new();
    for i in 0..64 {
        let key = keys.key(&format!("subject-{i}"), "v");
        let _: () = conn.set(&key, i).await.unwrap();
        owners.insert(cluster.master_port_for(&key).unwrap());
    }
    assert_eq!(
        owners.len(),
        RedisCluster::MASTERS,
        "keys landed on every master"
    );
    for i in 0..RedisCluster::MASTERS {
        assert!(cluster.node_dbsize(i).unwrap() > 0, "node {i} holds keys");
    }
    for i in 0..64 {
        let got: i64 = conn
            .get(keys.key(&format!("subject-{i}"), "v"))
            .await
            .unwrap();
        assert_eq!(got, i);
    }

    // Two keys of one subject share a slot, so a multi-key command works on a cluster.
    let a = keys.key("{hostile}", "a");
    let b = keys.key("{hostile}", "b");
    let _: () = redis::pipe()
        .atomic()
        .set(&a, 1)
        .set(&b, 2)
        .query_async(&mut conn)
        .await
        .unwrap();
    let both: Vec<i64> = conn.mget(&[&a, &b]).await.unwrap();
    assert_eq!(both, vec![1, 2]);
}

#[tokio::test]
async fn cluster_node_restart_is_survived() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let keys = KeySpace::new("t").unwrap();
    let mut conn = cluster.config().connect().await.unwrap();
    // A key owned by node 1.
    let port = cluster.ports()[1];
    let key = (0..1000)
        .map(|i| keys.key(&format!("k{i}"), "v"))
        .find(|k| cluster.master_port_for(k).unwrap() == port)
        .unwrap();
    let _: () = conn.set(&key, "before").await.unwrap();

    cluster.stop_node(1);
    let down: redis::RedisResult<String> = conn.get(&key).await;
    assert!(down.is_err(), "the slot's master is down");

    cluster.restart_node(1).unwrap();
    let mut recovered = false;
    for _ in 0..100 {
        if conn.set::<_, _, ()>(&key, "after").await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        recovered,
        "cluster connection recovered after the node came back"
    );
    let got: String = conn.get(&key).await.unwrap();
    assert_eq!(got, "after");
}
