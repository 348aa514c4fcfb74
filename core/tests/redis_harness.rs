//! The harness against real `redis-server` processes: a single node, a 3-master cluster,
//! and a 3-master cluster with one replica each that survives a master's SIGKILL.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use reliability_core::harness::{RedisCluster, RedisServer};
use reliability_core::key::KeySpace;
use tokio::task::block_in_place;

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

/// The whole failover budget: detection (1 s node timeout), election and convergence on a
/// loaded 2-core box usually take 2-4 s.
const FAILOVER_BUDGET: Duration = Duration::from_secs(15);
/// How long the client may take to find the promoted replica once the cluster is whole.
const READ_BUDGET: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_replica_takes_over_a_killed_master_and_serves_its_keys() {
    // The harness blocks while it polls; `block_in_place` keeps the connection's tasks
    // running on the other worker meanwhile.
    let Some(mut cluster) = block_in_place(RedisCluster::start_with_replicas) else {
        return;
    };
    assert_eq!(cluster.node_count(), 2 * RedisCluster::MASTERS);
    assert_eq!(cluster.replicas_per_master(), 1);
    assert_eq!(
        cluster.urls().len(),
        cluster.node_count(),
        "every node is a seed"
    );
    let masters = cluster.masters().unwrap();
    assert_eq!(masters.len(), RedisCluster::MASTERS);
    let mut replicas = BTreeSet::new();
    for &m in &masters {
        let of = cluster.replicas_of(m).unwrap();
        assert_eq!(of.len(), 1, "master {m} has one replica: {of:?}");
        replicas.extend(of);
    }
    assert_eq!(
        replicas.len(),
        RedisCluster::MASTERS,
        "replicas are distinct nodes"
    );

    let keys = KeySpace::new("t").unwrap();
    let key = keys.key("failover", "v");
    let mut conn = cluster.config().connect().await.unwrap();
    assert!(conn.is_cluster());
    let _: () = conn.set(&key, "before").await.unwrap();
    // Replication is asynchronous: make sure the replica has the write before the kill.
    block_in_place(|| cluster.wait_replicas_synced(Duration::from_secs(10))).unwrap();

    let owner = cluster.master_for_key(&key).unwrap();
    assert_eq!(
        cluster.ports()[owner],
        cluster.master_port_for(&key).unwrap()
    );
    let standby = cluster.replicas_of(owner).unwrap();
    let slot = cluster.key_slot(&key).unwrap();

    let killed = cluster.kill_master(owner).unwrap();
    assert_eq!(killed.index, owner);
    assert_eq!(killed.addr.port(), cluster.ports()[owner]);
    assert!(
        killed.served(slot),
        "the killed master served the key's slot"
    );
    assert_eq!(killed.replicas, standby);
    assert!(!cluster.is_node_running(owner));

    let took = block_in_place(|| cluster.wait_failover(FAILOVER_BUDGET)).unwrap();
    assert!(took < FAILOVER_BUDGET, "failover took {took:?}");
    let promoted = cluster.master_for_key(&key).unwrap();
    assert_eq!(
        vec![promoted],
        standby,
        "the killed master's replica took over"
    );
    assert_eq!(cluster.masters().unwrap().len(), RedisCluster::MASTERS);

    // The same connection finds the promoted replica (it refreshes its slot map on
    // the dead node's errors) and the acknowledged, replicated write survived.
    let deadline = Instant::now() + READ_BUDGET;
    let got = loop {
        match conn.get::<_, Option<String>>(&key).await {
            Ok(v) => break v,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no read within {READ_BUDGET:?} of the failover: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(got.as_deref(), Some("before"));
    let _: () = conn.set(&key, "after").await.unwrap();

    // A fresh client, seeded with the dead node too, connects and reads.
    let mut fresh = cluster.config().connect().await.unwrap();
    let got: String = fresh.get(&key).await.unwrap();
    assert_eq!(got, "after");

    // The killed master comes back as the replica of the node that replaced it.
    block_in_place(|| cluster.restart_node(owner)).unwrap();
    assert_eq!(cluster.replicas_of(promoted).unwrap(), vec![owner]);
    assert_eq!(cluster.master_for_key(&key).unwrap(), promoted);
}

#[test]
fn failover_needs_a_killed_master_with_a_replica() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    assert_eq!(cluster.replicas_per_master(), 0);
    let err = cluster.wait_failover(Duration::from_secs(1)).unwrap_err();
    assert!(err.to_string().contains("no master was killed"), "{err}");
    let killed = cluster.kill_master(0).unwrap();
    assert!(killed.replicas.is_empty());
    let err = cluster.wait_failover(Duration::from_secs(1)).unwrap_err();
    assert!(err.to_string().contains("no running replica"), "{err}");
    let err = cluster.kill_master(0).unwrap_err();
    assert!(err.to_string().contains("not a running"), "{err}");
}
