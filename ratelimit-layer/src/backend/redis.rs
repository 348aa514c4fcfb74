//! The Redis backend (single node or Redis Cluster), with a local fallback (see
//! [`RedisBackend`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

mod control;
use std::time::Duration;

use redis::Value;
use reliability_core::error::ConfigError;
use reliability_core::key::KeySpace;
use reliability_core::redis::{RedisConfig, RedisConnection, RedisSetupError};
use serde::{Deserialize, Serialize};

use super::{Backend, BackendUnavailable, MemoryBackend, Pending};
use crate::control::ControlStore;
use crate::quota::{Algorithm, Decision, MAX_WINDOWS, Mode, Quota, WindowStatus};

/// What to do while Redis is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Decide with the local fallback limiter (the default).
    #[default]
    Open,
    /// Refuse every request.
    Closed,
}

/// The Redis backend (single node or Redis Cluster), with a local fallback; cheap to clone.
///
/// Every decision is one `EVALSHA` of a constant Lua script (reloaded on `NOSCRIPT` by
/// `redis::Script`) that reads Redis' own clock (`TIME`), evaluates every window and
/// writes them only if all admit the request: one round trip, atomic, no client clock.
/// The keys of one subject are `prefix:{subject}:<window>` built by
/// [`reliability_core::key::KeySpace`]: the escaped subject is the hash tag, so a
/// multi-window decision touches one cluster slot, and no user string can break out of it.
/// Keys expire when their state is back to fresh (GCRA: at the TAT).
///
/// **Redis down.** A failed or timed-out round trip marks the backend down for
/// `recheck_interval` (default 250 ms); meanwhile decisions are made by
/// - [`FailureMode::Open`] (default): a local [`MemoryBackend`] applying each window's
///   share `limit / fallback_share` (set `fallback_share` to the number of processes). One
///   process then admits at most its share plus one burst per window (the local state
///   starts fresh), so `N` processes stay within about `(1 + 1/N)×` the limit;
/// - [`FailureMode::Closed`]: nothing is admitted (the limiter answers
///   [`Reason::BackendUnavailable`](crate::Reason::BackendUnavailable)).
///
/// After the interval the next decision tries Redis again: the backend returns to Redis
/// within `recheck_interval` plus one reconnect of it coming back. Both transitions are
/// logged (`tracing` warn/info) and visible in the snapshot (`fallback_active`).
///
/// # Example
///
/// ```no_run
/// use ratelimit_layer::{FailureMode, RateLimiter, RedisBackend};
/// use reliability_core::redis::RedisConfig;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = RedisBackend::builder(RedisConfig::single("redis://127.0.0.1:6379").key_prefix("api"))
///     .failure_mode(FailureMode::Open)
///     .fallback_share(4) // four processes share the limit
///     .build()
///     .await?;
/// let limiter = RateLimiter::builder().backend(backend).build()?;
/// limiter.set_tier("key-123", "pro").await?;
/// let decision = limiter.check("key-123", 1).await?;
/// assert!(decision.allowed);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    shared_control: bool,
    conn: RedisConnection,
    keys: KeySpace,
    script: redis::Script,
    refund_script: redis::Script,
    failure_mode: FailureMode,
    fallback: MemoryBackend,
    fallback_share: u64,
    recheck: u64,
    down: AtomicBool,
    retry_at: AtomicU64,
    round_trips: AtomicU64,
    failures: AtomicU64,
    /// Set by [`Backend::attach`]: the limiter's name and, with feature `metrics`, the
    /// handles registered under it.
    attached: OnceLock<Attached>,
}

/// What the backend records under its limiter's name.
#[derive(Debug)]
struct Attached {
    source: String,
    #[cfg(feature = "metrics")]
    fallback_active: metrics::Gauge,
    #[cfg(feature = "metrics")]
    round_trips: metrics::Counter,
}

impl Attached {
    fn new(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            #[cfg(feature = "metrics")]
            fallback_active: metrics::gauge!("ratelimit_fallback_active", "source" => source.to_owned()),
            #[cfg(feature = "metrics")]
            round_trips: metrics::counter!("ratelimit_lease_round_trips_total", "source" => source.to_owned()),
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("conn", &self.conn)
            .field("prefix", &self.keys.prefix())
            .field("failure_mode", &self.failure_mode)
            .finish_non_exhaustive()
    }
}

/// Builder of [`RedisBackend`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisBackendBuilder {
    config: RedisConfig,
    failure_mode: FailureMode,
    fallback_share: u64,
    recheck_interval: Duration,
    fallback: Option<MemoryBackend>,
    shared_control: bool,
}

impl RedisBackendBuilder {
    /// Fail open (default) or closed.
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure_mode = mode;
        self
    }
    /// Number of processes sharing the limit: each one's fallback admits `1/n` of it.
    pub fn fallback_share(mut self, n: u64) -> Self {
        self.fallback_share = n;
        self
    }
    /// How long to stay on the fallback before trying Redis again (default 250 ms).
    pub fn recheck_interval(mut self, d: Duration) -> Self {
        self.recheck_interval = d;
        self
    }
    /// Whether limiters on this backend keep their control state (tiers, custom limits,
    /// usage) in Redis, shared by the fleet (default `true`; see
    /// [`control`](crate::control)). `false` keeps it per process.
    pub fn shared_control(mut self, shared: bool) -> Self {
        self.shared_control = shared;
        self
    }
    /// The fallback limiter (default: a fresh [`MemoryBackend`]).
    pub fn fallback(mut self, backend: MemoryBackend) -> Self {
        self.fallback = Some(backend);
        self
    }

    /// Validates, connects and loads nothing yet (the script loads on first use).
    pub async fn build(self) -> Result<RedisBackend, RedisSetupError> {
        if self.fallback_share == 0 || self.fallback_share > 10_000 {
            return Err(ConfigError::out_of_range(
                "fallback_share",
                "[1, 10000]",
                self.fallback_share,
            )
            .into());
        }
        if self.recheck_interval < Duration::from_millis(1)
            || self.recheck_interval > Duration::from_secs(60)
        {
            return Err(ConfigError::out_of_range(
                "recheck_interval",
                "[1ms, 60s]",
                format!("{:?}", self.recheck_interval),
            )
            .into());
        }
        let keys = self.config.keyspace()?.child("rl")?;
        let conn = self.config.connect().await?;
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                config: self.config,
                shared_control: self.shared_control,
                conn,
                keys,
                script: redis::Script::new(RedisBackend::DECIDE_SCRIPT),
                refund_script: redis::Script::new(RedisBackend::REFUND_SCRIPT),
                failure_mode: self.failure_mode,
                fallback: self.fallback.unwrap_or_default(),
                fallback_share: self.fallback_share,
                recheck: self.recheck_interval.as_micros() as u64,
                down: AtomicBool::new(false),
                retry_at: AtomicU64::new(0),
                round_trips: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                attached: OnceLock::new(),
            }),
        })
    }
}

fn window_suffix(alg: Algorithm, period: u64) -> String {
    format!("{}{}", script_algorithm(alg), period / 1_000)
}

fn parse(quota: &Quota, value: Value) -> Result<Decision, BackendUnavailable> {
    let bad = || BackendUnavailable {
        message: "unexpected script reply".into(),
    };
    let Value::Array(items) = value else {
        return Err(bad());
    };
    let ints: Vec<i64> = items
        .iter()
        .map(|v| {
            if let Value::Int(i) = v {
                Ok(*i)
            } else {
                Err(bad())
            }
        })
        .collect::<Result<_, _>>()?;
    let n = quota.windows().len();
    if ints.len() != 2 + 3 * n {
        return Err(bad());
    }
    let micros = |i: i64| if i < 0 { u64::MAX } else { i as u64 };
    let mut statuses = [WindowStatus::default(); MAX_WINDOWS];
    for (i, w) in quota.windows().iter().enumerate() {
        let s = &ints[2 + 3 * i..5 + 3 * i];
        statuses[i] = WindowStatus {
            limit: w.limit(),
            period: w.period_micros(),
            remaining: s[0].max(0) as u64,
            reset_after: s[1].max(0) as u64,
            retry_after: micros(s[2]),
        };
    }
    Ok(Decision::from_parts(
        ints[0] == 1,
        micros(ints[1]),
        &statuses[..n],
    ))
}

impl RedisBackend {
    /// The decision script (constant text), the Lua twin of [`quota::decide`](crate::quota::decide()).
    pub const DECIDE_SCRIPT: &str = include_str!("decide.lua");
    /// The refund script (`refund.lua`): gives back unspent units of a lease.
    pub const REFUND_SCRIPT: &str = include_str!("refund.lua");

    /// A builder for `config` (single node or cluster).
    pub fn builder(config: RedisConfig) -> RedisBackendBuilder {
        RedisBackendBuilder {
            config,
            failure_mode: FailureMode::Open,
            fallback_share: 1,
            recheck_interval: Duration::from_millis(250),
            fallback: None,
            shared_control: true,
        }
    }

    /// Round trips made to Redis (successful or not).
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// Round trips that failed.
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// The key of window `index` of `quota` for `subject` (for inspection and tests).
    pub fn window_key(&self, subject: &str, quota: &Quota, index: usize) -> Option<String> {
        let w = quota.windows().get(index)?;
        Some(
            self.inner
                .keys
                .key(subject, &window_suffix(w.algorithm(), w.period_micros())),
        )
    }

    fn local(
        &self,
        key: &str,
        quota: &Quota,
        cost: u64,
        mode: Mode,
    ) -> Result<Decision, BackendUnavailable> {
        match self.inner.failure_mode {
            FailureMode::Open => {
                let share = quota.share(self.inner.fallback_share);
                Ok(self.inner.fallback.decide_now(key, &share, cost, mode))
            }
            FailureMode::Closed => Err(BackendUnavailable {
                message: "redis is down (fail-closed)".into(),
            }),
        }
    }
}

impl Inner {
    fn source(&self) -> &str {
        self.attached.get().map_or("", |a| a.source.as_str())
    }

    fn backend(&self) -> &'static str {
        if self.conn.is_cluster() {
            "redis-cluster"
        } else {
            "redis"
        }
    }

    fn round_trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        if let Some(a) = self.attached.get() {
            a.round_trips.increment(1);
        }
    }

    /// Sets the exported fallback gauge to what [`Backend::fallback_active`] answers.
    fn export_fallback(&self, down: bool) {
        #[cfg(feature = "metrics")]
        if let Some(a) = self.attached.get() {
            let active = down && self.failure_mode == FailureMode::Open;
            a.fallback_active.set(if active { 1.0 } else { 0.0 });
        }
        #[cfg(not(feature = "metrics"))]
        let _ = down;
    }

    fn mark(&self, ok: bool, error: Option<&redis::RedisError>) {
        if ok {
            if self.down.swap(false, Ordering::AcqRel) {
                self.export_fallback(false);
                tracing::info!(
                    source = self.source(),
                    backend = self.backend(),
                    prefix = self.keys.prefix(),
                    "redis is back: rate limits are shared again"
                );
            }
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            self.retry_at
                .store(self.fallback.now_micros() + self.recheck, Ordering::Release);
            if !self.down.swap(true, Ordering::AcqRel) {
                self.export_fallback(true);
                tracing::warn!(
                    source = self.source(),
                    backend = self.backend(),
                    prefix = self.keys.prefix(),
                    error = ?error,
                    mode = ?self.failure_mode,
                    "redis unreachable: rate limits fall back"
                );
            }
        }
    }
}

/// A window's algorithm as the scripts and the window keys spell it.
fn script_algorithm(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Gcra => "g",
        Algorithm::SlidingWindow => "s",
    }
}

impl RedisBackend {
    /// The keys of `key`'s windows of `quota`, one per window, all on the subject's slot.
    fn window_keys(&self, key: &str, quota: &Quota) -> Vec<String> {
        quota
            .windows()
            .iter()
            .map(|w| {
                self.inner
                    .keys
                    .key(key, &window_suffix(w.algorithm(), w.period_micros()))
            })
            .collect()
    }
}

impl Backend for RedisBackend {
    fn decide(&self, key: &str, quota: &Quota, cost: u64, mode: Mode) -> Pending<Decision> {
        let inner = &self.inner;
        if inner.down.load(Ordering::Acquire)
            && inner.fallback.now_micros() < inner.retry_at.load(Ordering::Acquire)
        {
            return Pending::ready(self.local(key, quota, cost, mode));
        }
        let keys = self.window_keys(key, quota);
        let this = self.clone();
        let quota = *quota;
        let key = key.to_owned();
        Pending::Remote(Box::pin(async move {
            let inner = &this.inner;
            let mut invocation = inner.script.prepare_invoke();
            for k in &keys {
                invocation.key(k);
            }
            invocation
                .arg(if mode == Mode::Consume { "1" } else { "0" })
                .arg(cost);
            for w in quota.windows() {
                let alg = script_algorithm(w.algorithm());
                invocation
                    .arg(alg)
                    .arg(w.limit())
                    .arg(w.period_micros())
                    .arg(w.burst())
                    .arg(w.emission_interval());
            }
            let mut conn = inner.conn.clone();
            inner.round_trip();
            match invocation.invoke_async::<Value>(&mut conn).await {
                Ok(value) => {
                    inner.mark(true, None);
                    parse(&quota, value)
                }
                Err(e) => {
                    inner.mark(false, Some(&e));
                    this.local(&key, &quota, cost, mode)
                }
            }
        }))
    }

    fn refund(&self, key: &str, quota: &Quota, units: u64) -> Pending<()> {
        let keys = self.window_keys(key, quota);
        let this = self.clone();
        let quota = *quota;
        Pending::Remote(Box::pin(async move {
            let mut invocation = this.inner.refund_script.prepare_invoke();
            for k in &keys {
                invocation.key(k);
            }
            invocation.arg(units);
            for w in quota.windows() {
                let alg = script_algorithm(w.algorithm());
                invocation
                    .arg(alg)
                    .arg(w.period_micros())
                    .arg(w.emission_interval());
            }
            let mut conn = this.inner.conn.clone();
            this.inner.round_trip();
            invocation
                .invoke_async::<i64>(&mut conn)
                .await
                .map(drop)
                .map_err(|e| BackendUnavailable {
                    message: e.to_string(),
                })
        }))
    }

    fn reset(&self, key: &str, quota: &Quota) -> Pending<()> {
        let keys = self.window_keys(key, quota);
        self.inner.fallback.forget(key);
        let this = self.clone();
        Pending::Remote(Box::pin(async move {
            let mut conn = this.inner.conn.clone();
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| BackendUnavailable {
                    message: e.to_string(),
                })
        }))
    }

    fn name(&self) -> &'static str {
        self.inner.backend()
    }

    fn control(&self) -> Option<Arc<dyn ControlStore>> {
        self.inner
            .shared_control
            .then(|| Arc::new(control::RedisControl::new(self.clone())) as Arc<dyn ControlStore>)
    }

    fn attach(&self, limiter: &str) {
        if self.inner.attached.set(Attached::new(limiter)).is_ok() {
            self.inner
                .export_fallback(self.inner.down.load(Ordering::Acquire));
        }
    }

    fn tracked_keys(&self) -> u64 {
        self.inner.fallback.tracked_keys()
    }

    fn fallback_active(&self) -> bool {
        self.inner.failure_mode == FailureMode::Open && self.inner.down.load(Ordering::Acquire)
    }

    fn unavailable(&self) -> bool {
        self.inner.failure_mode == FailureMode::Closed && self.inner.down.load(Ordering::Acquire)
    }
}
