//! Pub/sub that works the same on one node and on a cluster.
//!
//! On one node, [`RedisConfig::subscribe`] sends `SUBSCRIBE` and [`publish`] `PUBLISH`. On a
//! Redis Cluster they use **sharded pub/sub** (`SSUBSCRIBE` / `SPUBLISH`, Redis 7): a
//! message travels only to the shard that owns the channel's slot, instead of being copied
//! across the whole cluster bus, and the subscription follows the slot when its master
//! fails over.
//!
//! Both ends speak RESP3 on their own connection (redis-rs's connection manager for a
//! node, its cluster connection for a cluster), which resubscribes by itself after a
//! reconnect. After a failover a cluster subscription sends `SSUBSCRIBE` again (with
//! back-off) until it lands on the promoted replica: a listening connection sends no other
//! command that would make the client learn the new slot map. Pub/sub is fire-and-forget: what is published while a
//! subscriber is disconnected is lost to it. [`Event::Subscribed`] therefore arrives on
//! every (re)subscription, and [`Event::Lost`] when the connection drops, so a subscriber
//! that keeps a local copy of shared state can resynchronise after a gap.
//!
//! # Example
//!
//! ```no_run
//! use reliability_core::redis::RedisConfig;
//! use reliability_core::redis::pubsub::{Event, publish};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RedisConfig::single("redis://127.0.0.1:6379");
//! let mut events = config.subscribe(&["app:tiers"]).await?;
//! let mut conn = config.connect().await?;
//! publish(&mut conn, "app:tiers", b"acme").await?;
//! while let Some(event) = events.next().await {
//!     match event {
//!         Event::Message { payload, .. } => { assert_eq!(payload, b"acme"); break; }
//!         Event::Subscribed | Event::Lost => {}
//!     }
//! }
//! # Ok(()) }
//! ```

use redis::aio::ConnectionManagerConfig;
use redis::cluster::ClusterClientBuilder;
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use std::sync::Arc;
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::backoff::{Backoff, unit_draw};

use super::{RedisConfig, RedisConnection, RedisSetupError};

/// One thing a [`Subscription`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message on one of the channels.
    Message {
        /// The channel it was published on.
        channel: String,
        /// Its payload, as published.
        payload: Vec<u8>,
    },
    /// A channel was (re)subscribed: sent once per channel after the first subscription
    /// and again after every reconnect, when messages may have been missed.
    Subscribed,
    /// The connection dropped; messages published until the next
    /// [`Event::Subscribed`] are lost to this subscriber.
    Lost,
}

/// A live subscription; dropping it unsubscribes and closes its connection.
pub struct Subscription {
    events: mpsc::UnboundedReceiver<PushInfo>,
    // Held for its background reconnect-and-resubscribe task.
    _conn: RedisConnection,
    /// On a cluster: moves the subscriptions to the new master after a failover.
    repair: Option<Repair>,
}

/// A cluster connection resubscribes by itself only when it refreshes its slot map, which
/// it does when a command fails; a connection that only listens sends none, so after its
/// shard's master dies it would wait for that node forever. On every lost connection this
/// task sends `SSUBSCRIBE` again (idempotent on the server), with capped exponential
/// back-off and jitter: the first attempts fail on the dead node and make the client refresh its
/// slots, a later one lands on the promoted replica.
struct Repair {
    kick: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for Repair {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const REPAIR_FIRST: Duration = Duration::from_millis(50);
const REPAIR_MAX: Duration = Duration::from_secs(2);

fn repair(mut conn: ClusterConnection, channels: Vec<String>) -> Repair {
    let kick = Arc::new(Notify::new());
    let kicked = kick.clone();
    let task = tokio::spawn(async move {
        loop {
            kicked.notified().await;
            let mut backoff = Backoff::new(REPAIR_FIRST, REPAIR_MAX);
            'attempt: loop {
                let delay = backoff.next_delay(unit_draw());
                tokio::time::sleep(delay).await;
                for channel in &channels {
                    if let Err(error) = conn.ssubscribe(channel).await {
                        tracing::debug!(channel, %error, ?delay, "sharded resubscription failed: retrying");
                        continue 'attempt;
                    }
                }
                break;
            }
        }
    });
    Repair { kick, task }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("conn", &self._conn)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next event; `None` once the connection is gone for good (never while it can
    /// reconnect).
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let push = self.events.recv().await?;
            if let Some(event) = event(push) {
                if let (Event::Lost, Some(repair)) = (&event, &self.repair) {
                    repair.kick.notify_one();
                }
                return Some(event);
            }
        }
    }
}

fn event(push: PushInfo) -> Option<Event> {
    match push.kind {
        PushKind::Message | PushKind::SMessage => {
            let mut data = push.data.into_iter();
            let channel = bytes(data.next()?)?;
            let payload = bytes(data.next()?)?;
            Some(Event::Message {
                channel: String::from_utf8_lossy(&channel).into_owned(),
                payload,
            })
        }
        PushKind::Subscribe | PushKind::SSubscribe => Some(Event::Subscribed),
        PushKind::Disconnection => Some(Event::Lost),
        _ => None,
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

impl RedisConfig {
    /// Subscribes to `channels` on a connection of its own: `SUBSCRIBE` on one node,
    /// sharded `SSUBSCRIBE` on a cluster (see the [module docs](self)).
    pub async fn subscribe(&self, channels: &[&str]) -> Result<Subscription, RedisSetupError> {
        self.validate()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut repair = None;
        let conn = if let Some(url) = &self.url {
            let info = url.as_str().into_connection_info()?;
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let client = redis::Client::open(info.set_redis_settings(settings))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.response_timeout))
                .set_push_sender(tx)
                .set_automatic_resubscription();
            let mut manager = client.get_connection_manager_with_config(config).await?;
            manager.subscribe(channels).await?;
            RedisConnection::Single(manager)
        } else {
            let client = ClusterClientBuilder::new(self.cluster_nodes.iter().map(String::as_str))
                .connection_timeout(self.connect_timeout)
                .response_timeout(self.response_timeout)
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(tx)
                .build()?;
            let mut conn = client.get_async_connection().await?;
            // One command per channel: a sharded subscription names channels of one slot.
            for channel in channels {
                conn.ssubscribe(channel).await?;
            }
            repair = Some(self::repair(
                conn.clone(),
                channels.iter().map(|c| (*c).to_owned()).collect(),
            ));
            RedisConnection::Cluster(conn)
        };
        Ok(Subscription {
            events: rx,
            _conn: conn,
            repair,
        })
    }
}

/// Publishes `payload` on `channel`: `PUBLISH` on one node, `SPUBLISH` (routed to the
/// channel's shard) on a cluster. Returns how many subscribers of that node received it.
pub async fn publish(
    conn: &mut RedisConnection,
    channel: &str,
    payload: &[u8],
) -> redis::RedisResult<usize> {
    let command = if conn.is_cluster() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    redis::cmd(command)
        .arg(channel)
        .arg(payload)
        .query_async(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_become_events() {
        let msg = |kind| PushInfo {
            kind,
            data: vec![
                Value::BulkString(b"ch".to_vec()),
                Value::BulkString(b"\xffpay".to_vec()),
            ],
        };
        let expected = Event::Message {
            channel: "ch".into(),
            payload: b"\xffpay".to_vec(),
        };
        assert_eq!(event(msg(PushKind::Message)), Some(expected.clone()));
        assert_eq!(event(msg(PushKind::SMessage)), Some(expected));
        assert_eq!(event(msg(PushKind::SSubscribe)), Some(Event::Subscribed));
        let lost = PushInfo {
            kind: PushKind::Disconnection,
            data: Vec::new(),
        };
        assert_eq!(event(lost), Some(Event::Lost));
        // Garbage from the server is skipped, never a panic.
        let garbage = PushInfo {
            kind: PushKind::Message,
            data: vec![Value::Int(1)],
        };
        assert_eq!(event(garbage), None);
        assert_eq!(event(msg(PushKind::Invalidate)), None);
    }
}
