//! Fleet sharing against real `redis-server` processes (one node, and a 3-master cluster):
//! two breakers stand for two instances of a service, each with its own `FleetLink` and
//! its own connections, as two processes would have.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant};

use breaker_layer::{
    CircuitBreakerLayer, CircuitOpen, FleetError, FleetLink, Transition, TransitionCause,
};
use reliability_core::harness::{RedisCluster, RedisServer};
use reliability_core::health::BreakerState;
use reliability_core::redis::pubsub::publish;
use reliability_core::redis::{RedisConfig, RedisConnection, RedisSetupError};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

/// Generous bound for anything that is not the latency under test: a loaded 2-core
/// machine must hold it.
const WITHIN: Duration = Duration::from_secs(10);

/// The promise: a peer follows an open within 100 ms. On loopback the measured
/// figure is a few milliseconds, so the bound is asserted as is; it is the promise, not a
/// tuned threshold.
const FOLLOW_BOUND: Duration = Duration::from_millis(100);

/// Every transition of one breaker, with the wall-clock instant its listener ran.
type Log = Arc<Mutex<Vec<(Instant, Transition)>>>;

/// One "instance": a breaker layer that logs its transitions.
struct Instance {
    layer: CircuitBreakerLayer,
    log: Log,
}

impl Instance {
    fn new(open_wait: Duration) -> Self {
        let log: Log = Arc::default();
        let sink = log.clone();
        let layer = CircuitBreakerLayer::builder("exchange")
            .consecutive_failures(2)
            .open_wait(open_wait)
            .half_open_probes(1)
            .success_threshold(1)
            .on_state_change(move |_, tr| sink.lock().unwrap().push((Instant::now(), *tr)))
            .build()
            .unwrap();
        Self { layer, log }
    }

    async fn link(&self, upstream: &str, config: &RedisConfig) -> FleetLink {
        let link = self.layer.breaker().share(upstream, config).await.unwrap();
        assert!(link.is_running());
        link
    }

    fn state(&self) -> BreakerState {
        self.layer.breaker().state()
    }

    /// Fails calls until the breaker trips by its own verdict; the instant it opened.
    async fn trip(&self) -> Instant {
        let failing = service_fn(|_: ()| async { Err::<(), BoxError>("upstream down".into()) });
        let svc = ServiceBuilder::new()
            .layer(self.layer.clone())
            .service(failing);
        for _ in 0..2 {
            let err = svc.clone().oneshot(()).await.unwrap_err();
            assert!(!err.is::<CircuitOpen>());
        }
        assert_eq!(self.state(), BreakerState::Open);
        self.opened_at(|cause| cause != TransitionCause::PeerOpened)
            .expect("tripped")
    }

    /// Calls a healthy upstream once: whether the call reached it, or the rejection.
    async fn call_healthy(&self, reached: &AtomicU64) -> Result<(), CircuitOpen> {
        let healthy = service_fn(|_: ()| async {
            reached.fetch_add(1, Relaxed);
            Ok::<_, BoxError>(())
        });
        let svc = ServiceBuilder::new()
            .layer(self.layer.clone())
            .service(healthy);
        svc.oneshot(())
            .await
            .map_err(|e| *e.downcast::<CircuitOpen>().expect("only rejections fail"))
    }

    fn opened_at(&self, cause: impl Fn(TransitionCause) -> bool) -> Option<Instant> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|(_, tr)| tr.to == BreakerState::Open && cause(tr.cause))
            .map(|(at, _)| *at)
    }

    /// Waits (polling every millisecond, never a fixed sleep) until a peer opened it.
    async fn followed_at(&self) -> Instant {
        let log = self.log.clone();
        eventually("the peer to follow", move || {
            log.lock()
                .unwrap()
                .iter()
                .find(|(_, tr)| tr.cause == TransitionCause::PeerOpened)
                .map(|(at, _)| *at)
        })
        .await
    }
}

/// Polls `probe` every millisecond until it yields, for at most [`WITHIN`].
async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A negative assertion can only be given time: this is how long an echo or a stray
/// message would take to arrive on loopback, many times over.
async fn quiet_period() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

/// Trips `a` and asserts that `b` follows within the promised bound.
async fn assert_follows(a: &Instance, b: &Instance) -> Duration {
    let opened = a.trip().await;
    let followed = b.followed_at().await;
    let latency = followed.saturating_duration_since(opened);
    eprintln!("peer followed in {latency:?}");
    assert!(
        latency < FOLLOW_BOUND,
        "peer followed in {latency:?}, promised < {FOLLOW_BOUND:?}"
    );
    assert_eq!(b.state(), BreakerState::Open);
    latency
}

async fn redis_get(conn: &mut RedisConnection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_reaches_the_other_instance_within_100ms_and_is_not_echoed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let (a, b) = (
        Instance::new(Duration::from_secs(30)),
        Instance::new(Duration::from_secs(30)),
    );
    let link_a = a.link("api.exchange.com/key-7", &config).await;
    let link_b = b.link("api.exchange.com/key-7", &config).await;
    assert_ne!(link_a.instance_id(), link_b.instance_id());
    assert_eq!(
        link_a.channel(),
        "t:breaker:{api.exchange.com/key-7}:events"
    );
    assert_eq!(
        link_a.state_key(),
        "t:breaker:{api.exchange.com/key-7}:state"
    );

    assert_follows(&a, &b).await;
    // B rejects without reaching the upstream.
    let reached = AtomicU64::new(0);
    let open = b.call_healthy(&reached).await.unwrap_err();
    assert_eq!(open.state(), BreakerState::Open);
    assert_eq!(reached.load(Relaxed), 0);

    // A counts its publish once Redis has answered it, which may be after B followed.
    eventually("A's publish to be answered", || {
        (link_a.stats().published == 1).then_some(())
    })
    .await;
    quiet_period().await;
    let (sa, sb) = (link_a.stats(), link_b.stats());
    assert_eq!((sa.published, sa.remote_opens), (1, 0), "{sa:?}");
    assert_eq!(
        (sb.published, sb.remote_opens, sb.followed),
        (0, 1, 1),
        "B must not echo what it was told: {sb:?}"
    );
    // Each breaker moved once: no ping-pong.
    assert_eq!(a.log.lock().unwrap().len(), 1);
    assert_eq!(b.log.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_probes_after_its_own_wait_and_a_peer_close_closes_nothing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let a = Instance::new(Duration::from_secs(60));
    let b = Instance::new(Duration::from_millis(300));
    let link_a = a.link("quota", &config).await;
    let link_b = b.link("quota", &config).await;
    assert_follows(&a, &b).await;

    // B's wait is its own (300 ms), not A's minute.
    let reached = AtomicU64::new(0);
    let open = b.call_healthy(&reached).await.unwrap_err();
    assert!(open.retry_after().unwrap() <= Duration::from_millis(300));
    // After it, B probes the upstream by itself and closes on its success. An OPEN
    // circuit only turns HALF_OPEN when a call arrives, so the test keeps calling.
    let deadline = Instant::now() + WITHIN;
    while b.state() != BreakerState::Closed {
        assert!(Instant::now() < deadline, "B never probed");
        let _ = b.call_healthy(&reached).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        reached.load(Relaxed),
        1,
        "exactly one probe reached the upstream"
    );

    // B published `closed`; A hears it and stays open, waiting for its own probe.
    eventually("A to hear B's close", || {
        (link_a.stats().remote_closes == 1).then_some(())
    })
    .await;
    assert_eq!(a.state(), BreakerState::Open);
    // B counts its publish once Redis has answered it, which may be after A heard it.
    eventually("B's publish to be answered", || {
        (link_b.stats().published == 1).then_some(())
    })
    .await;
    quiet_period().await;
    assert_eq!(link_b.stats().published, 1, "B's close, and nothing else");
    let open = a.call_healthy(&reached).await.unwrap_err();
    assert!(open.retry_after().unwrap() > Duration::from_secs(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_channel_or_in_the_state_key_is_ignored_and_counted() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let (a, b) = (
        Instance::new(Duration::from_secs(30)),
        Instance::new(Duration::from_secs(30)),
    );
    let link_a = a.link("quota", &config).await;
    let link_b = b.link("quota", &config).await;
    let mut conn = config.connect().await.unwrap();

    let huge = vec![0xff_u8; 10 * 1024];
    let garbage: Vec<&[u8]> = vec![
        b"",
        b"\0\0\0",
        b"hello fleet",
        b"rb1 open",
        b"rb2 open 00000000000000aa 30000 failure_rate",
        b"rb1 open 00000000000000aa 30000 failure_rate extra",
        b"rb1 open 00000000000000aa 30000 failure_rate\n",
        b"rb1 open 00000000000000AA 30000 failure_rate",
        b"rb1 open 00000000000000aa -30000 failure_rate",
        b"rb1 open 00000000000000aa 99999999999999999999999 failure_rate",
        b"rb1 open 00000000000000aa 30000 {evil}",
        b"rb1 \xff\xfe 00000000000000aa 30000 x",
        &huge,
    ];
    for payload in &garbage {
        publish(&mut conn, link_b.channel(), payload).await.unwrap();
    }
    let n = garbage.len() as u64;
    eventually("B to read every payload", || {
        (link_b.stats().ignored_messages == n).then_some(())
    })
    .await;
    eventually("A to read every payload", || {
        (link_a.stats().ignored_messages == n).then_some(())
    })
    .await;
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(link_b.stats().remote_opens, 0);
    assert!(link_a.is_running() && link_b.is_running());

    // Garbage in the state key: a joining instance ignores it and starts closed.
    redis::cmd("SET")
        .arg(link_b.state_key())
        .arg(&huge)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let c = Instance::new(Duration::from_secs(30));
    let link_c = c.link("quota", &config).await;
    assert_eq!(link_c.stats().ignored_messages, 1);
    assert_eq!(c.state(), BreakerState::Closed);

    // The links still work.
    assert_follows(&a, &b).await;
    eventually("C to follow", || {
        (c.state() == BreakerState::Open).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_upstream_names_are_escaped_and_never_collide() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let long = format!("{{api}}\nkey:7 \r\n}}*{}", "x".repeat(10 * 1024));
    let names = [
        long.clone() + "a",
        long.clone() + "b",
        "{api}".to_owned(),
        "api".to_owned(),
        "%7Bapi%7D".to_owned(),
        String::new(),
    ];
    let (a, b) = (
        Instance::new(Duration::from_secs(30)),
        Instance::new(Duration::from_secs(30)),
    );
    let link_a = a.link(&names[0], &config).await;
    let link_b = b.link(&names[0], &config).await;
    assert_eq!(link_a.channel(), link_b.channel());
    let others: Vec<Instance> = names[1..]
        .iter()
        .map(|_| Instance::new(Duration::from_secs(30)))
        .collect();
    let mut other_links = Vec::new();
    for (instance, name) in others.iter().zip(&names[1..]) {
        other_links.push(instance.link(name, &config).await);
    }

    let mut channels: Vec<&str> = vec![link_a.channel()];
    channels.extend(other_links.iter().map(FleetLink::channel));
    for channel in &channels {
        assert!(channel.len() < 200, "{channel}");
        assert!(channel.bytes().all(|b| b.is_ascii_graphic()), "{channel}");
        assert_eq!(channel.matches('{').count(), 1, "{channel}");
        assert_eq!(channel.matches('}').count(), 1, "{channel}");
    }
    let mut distinct = channels.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), names.len(), "one channel per upstream");

    assert_follows(&a, &b).await;
    quiet_period().await;
    for (instance, link) in others.iter().zip(&other_links) {
        assert_eq!(instance.state(), BreakerState::Closed, "{}", link.channel());
        assert_eq!(link.stats().remote_opens, 0);
    }
    // The only key written is the escaped state key.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut config.connect().await.unwrap())
        .await
        .unwrap();
    assert_eq!(keys, [link_a.state_key().to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_instance_starts_open_from_the_state_key() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let a = Instance::new(Duration::from_secs(30));
    let link_a = a.link("quota", &config).await;
    a.trip().await;
    let mut conn = config.connect().await.unwrap();
    let state_key = link_a.state_key().to_owned();
    let mut written = None;
    let deadline = Instant::now() + WITHIN;
    while written.is_none() {
        assert!(Instant::now() < deadline, "state key never written");
        written = redis_get(&mut conn, &state_key).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let text = String::from_utf8(written.unwrap()).unwrap();
    assert!(text.starts_with("rb1 open "), "{text}");
    assert!(text.ends_with(" consecutive_failures"), "{text}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&state_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 30_000,
        "the state key expires with the open wait: {ttl}"
    );

    // C joins after the message was sent, and starts open.
    let c = Instance::new(Duration::from_secs(30));
    let link_c = c.link("quota", &config).await;
    assert_eq!(c.state(), BreakerState::Open);
    assert_eq!(link_c.stats().remote_opens, 1);
    // A's link ignored its own message.
    assert_eq!(link_a.stats().remote_opens, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_missed_while_disconnected_is_caught_up_after_resubscribing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t");
    let b = Instance::new(Duration::from_secs(30));
    let link_b = b.link("quota", &config).await;
    let mut conn = config.connect().await.unwrap();
    // Another instance's open, recorded but never heard by B (no PUBLISH).
    redis::cmd("SET")
        .arg(link_b.state_key())
        .arg("rb1 open 00000000000000aa 30000 failure_rate")
        .arg("PX")
        .arg(30_000)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    quiet_period().await;
    assert_eq!(b.state(), BreakerState::Closed);

    // Cut B's subscription: it reconnects by itself, then reads the state key.
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(killed >= 1, "no subscriber connection to cut");
    b.followed_at().await;
    assert!(link_b.stats().subscriptions >= 2, "{:?}", link_b.stats());
    assert_eq!(link_b.stats().remote_opens, 1);
}

#[tokio::test]
async fn a_dead_or_silent_redis_at_link_time_is_a_typed_error() {
    let a = Instance::new(Duration::from_secs(30));
    let breaker = a.layer.breaker();

    // Nothing listens on port 1.
    let dead = RedisConfig::single("redis://127.0.0.1:1")
        .connect_timeout(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let err = breaker.share("quota", &dead).await.unwrap_err();
    assert!(
        matches!(err, FleetError::Redis(RedisSetupError::Redis(_))),
        "{err}"
    );
    assert!(started.elapsed() < WITHIN);

    // A socket that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let mute = RedisConfig::single(url)
        .connect_timeout(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let err = breaker.share("quota", &mute).await.unwrap_err();
    assert!(
        matches!(err, FleetError::Redis(_) | FleetError::Timeout { .. }),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Absurd timeouts are a configuration error, not an overflow.
    let absurd = RedisConfig::single("redis://127.0.0.1:1").connect_timeout(Duration::MAX);
    match breaker.share("quota", &absurd).await.unwrap_err() {
        FleetError::Redis(RedisSetupError::Config(e)) => assert_eq!(e.field, "connect_timeout"),
        other => panic!("{other}"),
    }
    // A configuration error names the field.
    let bad = RedisConfig::single("redis://127.0.0.1:1").key_prefix("a{b}");
    match breaker.share("quota", &bad).await.unwrap_err() {
        FleetError::Redis(RedisSetupError::Config(e)) => assert_eq!(e.field, "key_prefix"),
        other => panic!("{other}"),
    }
    // The breaker is untouched and works alone.
    let reached = AtomicU64::new(0);
    a.call_healthy(&reached).await.unwrap();
    assert_eq!(a.state(), BreakerState::Closed);
}

#[test]
fn the_link_and_the_share_future_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let a = Instance::new(Duration::from_secs(30));
    let config = RedisConfig::single("redis://127.0.0.1:1");
    let future = a.layer.breaker().share("quota", &config);
    send(&future);
    fn link_is_send_sync(link: &FleetLink) {
        send_sync(link);
    }
    let _ = link_is_send_sync;
    fn error_is_boxable(e: FleetError) -> BoxError {
        e.into()
    }
    let _ = error_is_boxable;
}

#[test]
fn linking_outside_a_tokio_runtime_is_a_typed_error() {
    let a = Instance::new(Duration::from_secs(30));
    let config = RedisConfig::single("redis://127.0.0.1:1");
    let err = block_on(a.layer.breaker().share("quota", &config)).unwrap_err();
    assert!(matches!(err, FleetError::NoRuntime), "{err}");
}

/// A minimal executor that is not tokio's.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dying_after_linking_leaves_every_breaker_working() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let config = server
        .config()
        .key_prefix("t")
        .response_timeout(Duration::from_millis(200));
    let a = Instance::new(Duration::from_millis(300));
    let b = Instance::new(Duration::from_millis(300));
    let link_a = a.link("quota", &config).await;
    let link_b = b.link("quota", &config).await;
    server.stop();

    // A trips on its own calls, which never wait for Redis.
    let started = Instant::now();
    a.trip().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let reached = AtomicU64::new(0);
    assert!(a.call_healthy(&reached).await.is_err());
    // The publish fails in the background, within its bound, and is counted.
    eventually("the failed publish to be counted", || {
        (link_a.stats().publish_failures >= 1).then_some(())
    })
    .await;
    // After its wait, A probes and closes, Redis or not.
    let breaker = a.layer.breaker().clone();
    let deadline = Instant::now() + WITHIN;
    while breaker.state() != BreakerState::Closed {
        assert!(Instant::now() < deadline, "A never closed");
        let _ = a.call_healthy(&reached).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // B never heard, and works alone.
    b.call_healthy(&reached).await.unwrap();
    assert_eq!(b.state(), BreakerState::Closed);
    assert!(link_a.is_running() && link_b.is_running());

    // Dropping a link whose Redis is gone returns at once.
    let started = Instant::now();
    drop(link_a);
    drop(link_b);
    assert!(started.elapsed() < Duration::from_millis(100));
    a.trip().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_an_open_follows_within_100ms_and_is_caught_up() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let config = cluster.config().key_prefix("t");
    // Upstreams whose hash tags land on different masters, one of them hostile.
    let hostile = format!("{{api}}\n{}", "k".repeat(10 * 1024));
    for upstream in ["quota-1", "quota-2", "quota-3", hostile.as_str()] {
        let (a, b) = (
            Instance::new(Duration::from_secs(30)),
            Instance::new(Duration::from_secs(30)),
        );
        let link_a = a.link(upstream, &config).await;
        let _link_b = b.link(upstream, &config).await;
        let bystander = Instance::new(Duration::from_secs(30));
        let _link_other = bystander.link(&format!("{upstream}-other"), &config).await;
        assert_follows(&a, &b).await;

        // The state key sits in the channel's slot; a joining instance starts open.
        let mut conn = config.connect().await.unwrap();
        let key = link_a.state_key().to_owned();
        let deadline = Instant::now() + WITHIN;
        while redis_get(&mut conn, &key).await.is_none() {
            assert!(Instant::now() < deadline, "state key never written");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let c = Instance::new(Duration::from_secs(30));
        let _link_c = c.link(upstream, &config).await;
        assert_eq!(c.state(), BreakerState::Open);
        assert_eq!(bystander.state(), BreakerState::Closed);
    }
}
