//! [`FleetLink`]: the background tasks that publish a breaker's trips and follow its
//! peers', and [`Breaker::share`], which starts them.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use reliability_core::health::BreakerState;
use reliability_core::redis::pubsub::{self, Event, Subscription};
use reliability_core::redis::{RedisConfig, RedisConnection};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::error::FleetError;
use super::message::{Kind, Message};
use crate::breaker::Breaker;
use crate::state::{Transition, TransitionCause};

/// Messages waiting to be published. A breaker changes state at most a few times per open
/// wait, so a full outbox means Redis has been stalling for a while: the newest messages
/// are then dropped (and counted) rather than held in unbounded memory.
const OUTBOX: usize = 16;

/// The figures of one [`FleetLink`], since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetStats {
    /// `open` messages heard from other instances (live, or caught up from the state key).
    pub remote_opens: u64,
    /// Times the local breaker opened because of them (an OPEN or isolated breaker does
    /// not open again).
    pub followed: u64,
    /// `closed` messages heard from other instances (which close nothing here).
    pub remote_closes: u64,
    /// Payloads on the channel (or in the state key) that were not a message this version
    /// reads: garbage, too long, or another format version.
    pub ignored_messages: u64,
    /// Messages this instance published.
    pub published: u64,
    /// Publishes (or state-key writes) that failed or timed out, and messages dropped
    /// because the outbox was full.
    pub publish_failures: u64,
    /// Confirmed (re)subscriptions; more than one means the link reconnected.
    pub subscriptions: u64,
}

#[derive(Default)]
struct Counters {
    remote_opens: AtomicU64,
    followed: AtomicU64,
    remote_closes: AtomicU64,
    ignored_messages: AtomicU64,
    published: AtomicU64,
    publish_failures: AtomicU64,
    subscriptions: AtomicU64,
}

/// What the tasks and the handle share.
struct Link {
    /// The breaker's name, for logs.
    source: Arc<str>,
    instance: u64,
    channel: String,
    state_key: String,
    /// Bound on any one Redis command of the tasks, on top of the connection's own
    /// response timeout, so that no await can outlive a dead server.
    limit: Duration,
    counters: Counters,
    #[cfg(feature = "metrics")]
    instruments: instruments::FleetInstruments,
}

impl Link {
    fn remote_open(&self) {
        self.counters.remote_opens.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.instruments.remote_opens.increment(1);
    }

    fn ignored(&self) {
        self.counters.ignored_messages.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.instruments.ignored_messages.increment(1);
    }

    fn publish_failed(&self) {
        self.counters.publish_failures.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.instruments.publish_failures.increment(1);
    }
}

/// A breaker's membership in its fleet: while this handle lives, the breaker publishes its
/// trips for the upstream and opens when another instance's breaker trips for it.
/// Dropping it stops both background tasks at once (no Redis round trip, so it cannot
/// hang) and leaves the breaker working on its own.
///
/// Made by [`Breaker::share`]; see the [module docs](super) for when to use it.
pub struct FleetLink {
    link: Arc<Link>,
    breaker: Breaker,
    tap: u64,
    follower: JoinHandle<()>,
    publisher: JoinHandle<()>,
}

impl fmt::Debug for FleetLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetLink")
            .field("breaker", &self.breaker.name())
            .field("channel", &self.link.channel)
            .field("instance", &format_args!("{:016x}", self.link.instance))
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl FleetLink {
    /// The breaker it links.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// This link's instance id, which tags its messages so that it ignores its own.
    pub fn instance_id(&self) -> u64 {
        self.link.instance
    }

    /// The pub/sub channel of the upstream (`<prefix>:breaker:{<escaped upstream>}:events`).
    pub fn channel(&self) -> &str {
        &self.link.channel
    }

    /// The key holding the upstream's latest open (`<prefix>:breaker:{<escaped
    /// upstream>}:state`).
    pub fn state_key(&self) -> &str {
        &self.link.state_key
    }

    /// Whether both background tasks still run. They stop only when the link is dropped
    /// (or the runtime shuts down): a dead Redis makes them retry, not end.
    pub fn is_running(&self) -> bool {
        !self.follower.is_finished() && !self.publisher.is_finished()
    }

    /// The link's figures.
    pub fn stats(&self) -> FleetStats {
        let c = &self.link.counters;
        FleetStats {
            remote_opens: c.remote_opens.load(Relaxed),
            followed: c.followed.load(Relaxed),
            remote_closes: c.remote_closes.load(Relaxed),
            ignored_messages: c.ignored_messages.load(Relaxed),
            published: c.published.load(Relaxed),
            publish_failures: c.publish_failures.load(Relaxed),
            subscriptions: c.subscriptions.load(Relaxed),
        }
    }
}

impl Drop for FleetLink {
    fn drop(&mut self) {
        self.breaker.untap(self.tap);
        self.follower.abort();
        self.publisher.abort();
    }
}

impl Breaker {
    /// Links this breaker to the other instances' breakers for `upstream` through Redis
    /// pub/sub (feature `redis`): when this breaker trips, it publishes `open`; when
    /// another instance's does, this one opens too, and probes after its own open wait.
    ///
    /// `upstream` is any string (an API key's name, a host); it is escaped into the key
    /// space of `config`, never used as a raw key. Returns once the subscription is
    /// confirmed and the upstream's current state has been read, so a breaker joining a
    /// fleet whose upstream is open starts open. Must be called within a tokio runtime,
    /// on which the link's two tasks run.
    ///
    /// # Errors
    ///
    /// [`FleetError::NoRuntime`] outside a tokio runtime; [`FleetError::Redis`] for an
    /// invalid configuration or an unreachable Redis; [`FleetError::Timeout`] if Redis
    /// does not confirm within twice `connect_timeout` plus `response_timeout`. The
    /// breaker keeps working alone in every case.
    pub async fn share(
        &self,
        upstream: &str,
        config: &RedisConfig,
    ) -> Result<FleetLink, FleetError> {
        let runtime = Handle::try_current().map_err(|_| FleetError::NoRuntime)?;
        // Before any arithmetic on its timeouts, which validation bounds to 60 s.
        config.validate()?;
        let keys = config.keyspace()?.child("breaker")?;
        let channel = keys.key(upstream, "events");
        let state_key = keys.key(upstream, "state");
        let setup_limit = config.connect_timeout * 2 + config.response_timeout;
        let (subscription, conn) = timeout(setup_limit, connect(config, &channel))
            .await
            .map_err(|_| FleetError::Timeout { after: setup_limit })??;

        let link = Arc::new(Link {
            source: self.shared_name(),
            instance: new_instance_id(),
            channel,
            state_key,
            limit: config.response_timeout * 2,
            counters: Counters::default(),
            #[cfg(feature = "metrics")]
            instruments: instruments::FleetInstruments::new(self.name()),
        });
        link.counters.subscriptions.fetch_add(1, Relaxed);

        let (outbox, queued) = mpsc::channel(OUTBOX);
        let tap = new_tap_id();
        let tap_link = link.clone();
        self.tap(
            tap,
            Arc::new(move |breaker: &Breaker, tr: &Transition| {
                if let Some(message) = outgoing(breaker, tr, tap_link.instance)
                    && outbox.try_send(message).is_err()
                {
                    tap_link.publish_failed();
                }
            }),
        );
        let follower = runtime.spawn(follow(
            self.clone(),
            link.clone(),
            subscription,
            conn.clone(),
        ));
        let publisher = runtime.spawn(publish_all(link.clone(), queued, conn.clone()));
        // The handle exists before the last await: if the caller drops this future there,
        // the handle's drop removes the tap and stops the tasks.
        let handle = FleetLink {
            link,
            breaker: self.clone(),
            tap,
            follower,
            publisher,
        };
        // Trips from now on are published; read what the fleet said before we listened.
        catch_up(self, &handle.link, &mut conn.clone()).await;
        Ok(handle)
    }
}

/// Opens the connection for publishing, then subscribes and waits for Redis to confirm.
/// The plain connection first: it is set to fail fast (one retry), so a refused connection
/// is reported as such, where the subscription's would keep retrying into the timeout.
async fn connect(
    config: &RedisConfig,
    channel: &str,
) -> Result<(Subscription, RedisConnection), FleetError> {
    let conn = config.connect().await?;
    let mut subscription = config.subscribe(&[channel]).await?;
    loop {
        match subscription.next().await {
            Some(Event::Subscribed) => break,
            Some(_) => {}
            None => return Err(FleetError::SubscriptionEnded),
        }
    }
    Ok((subscription, conn))
}

/// The message a local transition publishes, if any. A transition the fleet caused
/// publishes nothing: echoing it would bounce one trip around the fleet forever.
fn outgoing(breaker: &Breaker, tr: &Transition, instance: u64) -> Option<Message> {
    match (tr.to, tr.cause) {
        (_, TransitionCause::PeerOpened) => None,
        (BreakerState::Open, cause) => {
            let open_for = breaker
                .metrics()
                .retry_after
                .unwrap_or(breaker.config().open_wait);
            Some(Message::open(instance, open_for, cause.as_str()))
        }
        (
            BreakerState::Closed,
            cause @ (TransitionCause::ProbesSucceeded | TransitionCause::Manual),
        ) => Some(Message::closed(instance, cause.as_str())),
        // HALF_OPEN is each instance's own business; an isolation is one operator's
        // decision for one instance.
        _ => None,
    }
}

/// Publishes each message, and records each `open` in the state key with a TTL of the
/// open wait, for peers that missed it.
async fn publish_all(
    link: Arc<Link>,
    mut queued: mpsc::Receiver<Message>,
    mut conn: RedisConnection,
) {
    while let Some(message) = queued.recv().await {
        let payload = message.encode();
        let sent = timeout(
            link.limit,
            pubsub::publish(&mut conn, &link.channel, &payload),
        )
        .await;
        match sent {
            Ok(Ok(_)) => {
                link.counters.published.fetch_add(1, Relaxed);
            }
            Ok(Err(e)) => {
                link.publish_failed();
                tracing::warn!(source = &*link.source, error = %e, "breaker fleet: publish failed; peers will not follow this transition");
            }
            Err(_) => {
                link.publish_failed();
                tracing::warn!(
                    source = &*link.source,
                    "breaker fleet: publish timed out; peers will not follow this transition"
                );
            }
        }
        if message.kind == Kind::Open {
            // PX of at least 1: a zero TTL is an error to Redis.
            let ttl_ms = u64::try_from(message.open_for.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            let mut set = redis::cmd("SET");
            set.arg(&link.state_key).arg(&payload).arg("PX").arg(ttl_ms);
            match timeout(link.limit, set.query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    link.publish_failed();
                    tracing::warn!(source = &*link.source, error = %e, "breaker fleet: could not record the open state");
                }
                Err(_) => {
                    link.publish_failed();
                    tracing::warn!(
                        source = &*link.source,
                        "breaker fleet: recording the open state timed out"
                    );
                }
            }
        }
    }
}

/// Follows the channel until the link is dropped. After every resubscription (messages
/// may have been lost in the gap) it reads the state key again.
async fn follow(
    breaker: Breaker,
    link: Arc<Link>,
    mut subscription: Subscription,
    mut conn: RedisConnection,
) {
    while let Some(event) = subscription.next().await {
        match event {
            Event::Message { payload, .. } => hear(&breaker, &link, &payload),
            Event::Subscribed => {
                link.counters.subscriptions.fetch_add(1, Relaxed);
                catch_up(&breaker, &link, &mut conn).await;
            }
            Event::Lost => {
                tracing::debug!(
                    source = breaker.name(),
                    "breaker fleet: subscription lost, reconnecting"
                );
            }
        }
    }
    // Not reached while the connection can reconnect; if it is, the breaker goes on alone.
    tracing::warn!(source = breaker.name(), "breaker fleet: subscription ended");
}

fn hear(breaker: &Breaker, link: &Link, payload: &[u8]) {
    match Message::decode(payload) {
        Err(reason) => {
            link.ignored();
            tracing::debug!(
                source = breaker.name(),
                reason = reason.as_str(),
                len = payload.len(),
                "breaker fleet: ignored a message"
            );
        }
        Ok(message) if message.instance == link.instance => {}
        Ok(message) => match message.kind {
            Kind::Open => {
                link.remote_open();
                if breaker.open_for_peer() {
                    link.counters.followed.fetch_add(1, Relaxed);
                }
            }
            // Each instance closes on its own probes: a peer's recovery says nothing about
            // the calls this instance would make, and closing on it would let one lucky
            // probe reopen the whole fleet's traffic at once.
            Kind::Closed => {
                link.counters.remote_closes.fetch_add(1, Relaxed);
                tracing::debug!(source = breaker.name(), cause = %message.cause, "breaker fleet: a peer closed");
            }
        },
    }
}

/// Reads the upstream's latest open; a failure only means this instance may miss an open
/// it would have followed, so it is logged, not returned.
async fn catch_up(breaker: &Breaker, link: &Link, conn: &mut RedisConnection) {
    let mut get = redis::cmd("GET");
    get.arg(&link.state_key);
    match timeout(link.limit, get.query_async::<Option<Vec<u8>>>(conn)).await {
        Ok(Ok(Some(payload))) => hear(breaker, link, &payload),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => {
            tracing::warn!(source = breaker.name(), error = %e, "breaker fleet: could not read the upstream's state")
        }
        Err(_) => {
            tracing::warn!(
                source = breaker.name(),
                "breaker fleet: reading the upstream's state timed out"
            )
        }
    }
}

/// A random id per link. Std's `RandomState` is seeded from the OS, so this needs no
/// random-number crate; the counter and the clock keep two links of one process apart
/// even if the seed repeated.
fn new_instance_id() -> u64 {
    static LINKS: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(LINKS.fetch_add(1, Relaxed));
    h.write_u32(std::process::id());
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(since_epoch.as_nanos());
    h.finish()
}

fn new_tap_id() -> u64 {
    static TAPS: AtomicU64 = AtomicU64::new(0);
    TAPS.fetch_add(1, Relaxed)
}

#[cfg(feature = "metrics")]
mod instruments {
    use ::metrics::{Counter, counter, describe_counter};

    /// Registered once per link, labelled by the breaker's name (never the upstream: it
    /// may be a long user string).
    pub(super) struct FleetInstruments {
        pub(super) remote_opens: Counter,
        pub(super) ignored_messages: Counter,
        pub(super) publish_failures: Counter,
    }

    impl FleetInstruments {
        pub(super) fn new(source: &str) -> Self {
            describe_counter!(
                "breaker_fleet_remote_opens_total",
                "Open messages heard from other instances sharing the breaker's upstream."
            );
            describe_counter!(
                "breaker_fleet_ignored_messages_total",
                "Payloads on the breaker's fleet channel that were not a valid message."
            );
            describe_counter!(
                "breaker_fleet_publish_failures_total",
                "Fleet messages this instance failed to publish."
            );
            let source = source.to_owned();
            Self {
                remote_opens: counter!("breaker_fleet_remote_opens_total", "source" => source.clone()),
                ignored_messages: counter!("breaker_fleet_ignored_messages_total", "source" => source.clone()),
                publish_failures: counter!("breaker_fleet_publish_failures_total", "source" => source),
            }
        }
    }
}
