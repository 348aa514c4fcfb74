//! A counting, scriptable upstream for the cache tests.
#![allow(dead_code, unreachable_pub)]

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub mod client;

use cache_layer::{Cache, CacheHandle, CacheLayer, CacheLayerBuilder};
use reliability_core::redis::RedisConfig;
use tower::{BoxError, Service, service_fn};

/// The upstream's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boom;

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upstream boom")
    }
}

impl Error for Boom {}

/// Controls and counters of the upstream.
#[derive(Clone, Default)]
pub struct Upstream {
    /// Calls made.
    pub calls: Arc<AtomicU64>,
    /// When set, calls fail.
    pub fail: Arc<AtomicBool>,
}

impl Upstream {
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn set_failing(&self, on: bool) {
        self.fail.store(on, Ordering::SeqCst);
    }

    /// A service answering `n` (the call's number, from 1) after `delay`, or [`Boom`].
    pub fn service<Req: Send + 'static>(
        &self,
        delay: Duration,
    ) -> impl Service<Req, Response = u64, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + 'static
    + use<Req> {
        let up = self.clone();
        service_fn(move |_req: Req| {
            let n = up.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let fail = up.fail.load(Ordering::SeqCst);
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if fail {
                    Err::<u64, BoxError>(Box::new(Boom))
                } else {
                    Ok(n)
                }
            }
        })
    }
}

/// Lets spawned background refreshes run to completion (paused time, no delay). Enough
/// yields for the scheduler to poll its timer driver too (it does every 61 ticks).
pub async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

/// The key function of the tests: the request is the key.
pub type Key = fn(&String) -> Option<String>;

#[allow(clippy::ptr_arg)] // the key function takes the request type, `String`
pub fn key(k: &String) -> Option<String> {
    Some(k.clone())
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A builder keyed by the request itself.
pub fn builder() -> CacheLayerBuilder<Key, u64> {
    CacheLayer::builder(key as Key)
}

/// The cache built from `b` over `up`'s service answering after `delay`, and its handle.
pub fn stack(
    b: CacheLayerBuilder<Key, u64>,
    up: &Upstream,
    delay: Duration,
) -> (
    Cache<
        impl Service<String, Response = u64, Error = BoxError, Future: Send> + Clone + use<>,
        Key,
        u64,
    >,
    CacheHandle<u64>,
) {
    let layer = b.build().unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(up.service::<String>(delay));
    (svc, handle)
}

/// A current-thread runtime with paused time, for tests that build their own.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// The codec of the tests' `u64` values for the lower tiers.
pub fn u64_codec() -> cache_layer::codec::FnCodec<
    impl Fn(&u64) -> Option<bytes::Bytes> + Send + Sync + 'static,
    impl Fn(&bytes::Bytes) -> Option<u64> + Send + Sync + 'static,
> {
    cache_layer::codec::FnCodec::new(
        |v: &u64| Some(bytes::Bytes::copy_from_slice(&v.to_le_bytes())),
        |b: &bytes::Bytes| Some(u64::from_le_bytes(b.as_ref().try_into().ok()?)),
    )
}

/// Polls `check` every 5 ms until it holds or `limit` passes; the time it took.
pub async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

pub async fn pttl(config: &RedisConfig, redis_key: &str) -> i64 {
    let mut conn = config.connect().await.unwrap();
    redis::cmd("PTTL")
        .arg(redis_key)
        .query_async(&mut conn)
        .await
        .unwrap_or(-2)
}

pub async fn subscribers(config: &RedisConfig) -> i64 {
    let Ok(mut conn) = config.connect().await else {
        return 0;
    };
    let channel = format!("{}:cache:invalidate", config.key_prefix);
    pubsub_count(&mut conn, "NUMSUB", &channel).await
}

/// `PUBSUB <subcommand> <channel>`'s count on `conn` (0 when Redis does not answer).
pub async fn pubsub_count(
    conn: &mut impl redis::aio::ConnectionLike,
    subcommand: &str,
    channel: &str,
) -> i64 {
    let reply: Vec<redis::Value> = redis::cmd("PUBSUB")
        .arg(subcommand)
        .arg(channel)
        .query_async(conn)
        .await
        .unwrap_or_default();
    match reply.get(1) {
        Some(redis::Value::Int(n)) => *n,
        _ => 0,
    }
}
