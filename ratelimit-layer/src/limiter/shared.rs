//! The limiter's side of shared control state (see [`control`](crate::control)): the
//! bounded rule cache, the change listener that evicts from it, and the usage flusher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use reliability_core::backoff::{Backoff, unit_draw};
use tokio::sync::watch;

use super::rules::UserRule;
use super::{Inner, RateLimiter};
use crate::control::{Change, ControlFailure, ControlStore, StoredRule, decode_quota};
use crate::quota::Quota;

/// Most users whose rule one process caches (evicted arbitrarily beyond).
pub(super) const RULE_CACHE: usize = 100_000;

/// Shared control state of one limiter.
pub(super) struct Shared {
    pub(super) store: Arc<dyn ControlStore>,
    /// Endpoint limits from configuration, under the stored ones.
    pub(super) base_endpoints: HashMap<Box<str>, Quota>,
    /// Tier assignments from configuration, under the stored ones.
    base_rules: HashMap<Box<str>, UserRule>,
    pub(super) per_shard: usize,
    started: AtomicBool,
    /// Dropped with the limiter: the listener stops.
    stop: watch::Sender<()>,
    flushing: AtomicBool,
    epoch: Instant,
    last_flush_ms: AtomicU64,
    /// Whether the store's last answer was a failure.
    failing: AtomicBool,
    /// Whether the change channel is down (changes may be missed until it is back).
    lost: AtomicBool,
    /// Garbage found in the store (reported and ignored).
    pub(super) errors: AtomicU64,
}

impl Shared {
    pub(super) fn new(
        store: Arc<dyn ControlStore>,
        base_endpoints: HashMap<Box<str>, Quota>,
        base_rules: HashMap<Box<str>, UserRule>,
    ) -> Self {
        Self {
            store,
            base_endpoints,
            base_rules,
            per_shard: RULE_CACHE.div_ceil(super::SHARDS),
            started: AtomicBool::new(false),
            stop: watch::channel(()).0,
            flushing: AtomicBool::new(false),
            epoch: Instant::now(),
            last_flush_ms: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            errors: AtomicU64::new(0),
        }
    }

    /// Whether the control state may be out of date: the store fails, or the change
    /// channel is down.
    pub(super) fn stale(&self) -> bool {
        self.failing.load(Ordering::Relaxed) || self.lost.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

impl RateLimiter {
    pub(super) fn shared(&self) -> Option<&Shared> {
        self.inner.shared.as_ref()
    }

    /// Starts the change listener on the current runtime, once (lazily: a limiter built
    /// outside a runtime starts it on its first call inside one).
    pub(super) fn ensure_listening(&self) {
        let Some(shared) = self.shared() else { return };
        if shared.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if shared.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let store = shared.store.clone();
        let stop = shared.stop.subscribe();
        runtime.spawn(listen(weak, store, stop));
    }

    /// Records a failure of the store: garbage is counted, unavailability marks the
    /// control state stale.
    pub(crate) fn control_failed(&self, what: &str, e: &ControlFailure) {
        let Some(shared) = self.shared() else { return };
        match e {
            ControlFailure::Garbage(_) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
            ControlFailure::Unavailable(_) => {
                shared.failing.store(true, Ordering::Relaxed);
            }
        }
        tracing::warn!(limiter = %self.inner.name, error = %e, "shared control state: {what} failed");
    }

    /// Records that the store answered.
    pub(super) fn control_answered(&self) {
        if let Some(s) = self.shared() {
            s.failing.store(false, Ordering::Relaxed);
        }
    }

    /// The cached rule of `user`, if this process knows it.
    pub(super) fn cached_rule(&self, user: &str) -> Option<UserRule> {
        self.inner.users[self.shard(user)].read().get(user).copied()
    }

    /// Caches `rule` for `user`, evicting an arbitrary entry of a full shard.
    pub(super) fn cache_rule(&self, user: &str, rule: UserRule) {
        let per_shard = self.shared().map_or(usize::MAX, |s| s.per_shard);
        let mut map = self.inner.users[self.shard(user)].write();
        if !map.contains_key(user)
            && map.len() >= per_shard
            && let Some(victim) = map.keys().next().cloned()
        {
            map.remove(&victim);
        }
        map.insert(user.into(), rule);
    }

    fn forget_cached(&self, user: Option<&str>) {
        match user {
            Some(u) => {
                self.inner.users[self.shard(u)].write().remove(u);
            }
            None => self.inner.users.iter().for_each(|s| s.write().clear()),
        }
    }

    /// A stored rule as this limiter reads it: unknown tiers and unparsable limits are
    /// reported and ignored.
    fn rule_from(&self, user: &str, stored: &StoredRule) -> UserRule {
        let base = self
            .shared()
            .and_then(|s| s.base_rules.get(user).copied())
            .unwrap_or_default();
        let tiers = self.inner.tiers.load();
        let tier = stored.tier.as_deref().and_then(|t| {
            let index = tiers.index_of(t);
            if index.is_none() {
                self.control_failed(
                    "reading a tier",
                    &ControlFailure::Garbage(format!("unknown tier {t:?}")),
                );
            }
            index
        });
        let tier = tier.or(base.tier);
        let custom = stored.limit.as_deref().and_then(|l| {
            let quota = decode_quota(l);
            if quota.is_none() {
                self.control_failed(
                    "reading a limit",
                    &ControlFailure::Garbage("a custom limit does not parse".into()),
                );
            }
            quota
        });
        UserRule {
            tier,
            custom: custom.or(base.custom),
        }
    }

    /// Loads `user`'s rule from the store into the cache; on failure the cache is left as
    /// it is (the last known rule, or none: the default tier).
    pub(super) async fn load_rule(&self, user: &str) -> Option<UserRule> {
        let shared = self.shared()?;
        self.ensure_listening();
        match shared.store.load_rule(user).await {
            Ok(stored) => {
                shared.failing.store(false, Ordering::Relaxed);
                let rule = self.rule_from(user, &stored);
                self.cache_rule(user, rule);
                Some(rule)
            }
            Err(e) => {
                self.control_failed("loading a rule", &e);
                if matches!(e, ControlFailure::Garbage(_)) {
                    // A key of the wrong type: ignore it (default tier), do not re-read it
                    // on every request.
                    self.cache_rule(user, self.rule_from(user, &StoredRule::default()));
                }
                None
            }
        }
    }

    /// Re-reads the endpoint limits: configuration overlaid with the stored ones.
    pub(super) async fn reload_endpoints(&self) {
        let Some(shared) = self.shared() else { return };
        match shared.store.load_endpoints().await {
            Ok(stored) => {
                let mut table = shared.base_endpoints.clone();
                for (endpoint, limit) in stored {
                    match limit.as_deref().map(decode_quota) {
                        None => {
                            table.remove(endpoint.as_str());
                        }
                        Some(Some(quota)) => {
                            table.insert(endpoint.into_boxed_str(), quota);
                        }
                        Some(None) => self.control_failed(
                            "reading an endpoint limit",
                            &ControlFailure::Garbage(format!("limit of {endpoint:?}")),
                        ),
                    }
                }
                self.inner.endpoints.store(Arc::new(table));
            }
            Err(e) => self.control_failed("loading endpoint limits", &e),
        }
    }

    /// Flushes usage counted since the last flush when the store's interval has passed
    /// (at most one flush in flight; none outside a runtime).
    pub(super) fn maybe_flush(&self) {
        let Some(shared) = self.shared() else { return };
        let now = shared.now_ms();
        let interval = shared.store.flush_interval().as_millis() as u64;
        if now < shared.last_flush_ms.load(Ordering::Relaxed) + interval {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if shared.flushing.swap(true, Ordering::AcqRel) {
            return;
        }
        shared.last_flush_ms.store(now, Ordering::Relaxed);
        let this = self.clone();
        runtime.spawn(async move {
            let _ = this.flush_usage().await;
        });
    }

    /// Gives back to the shared store what this limiter's backend holds and has not spent
    /// (the unspent units of a [`Leased`](crate::Leased) backend's leases), for a
    /// shutdown; nothing to do on other backends.
    pub async fn release_leases(&self) -> Result<(), crate::backend::BackendUnavailable> {
        self.inner.backend.release().await
    }

    /// Adds the usage counted here since the last flush to the shared store (a no-op
    /// without one). What the store refuses is kept for the next flush.
    pub async fn flush_usage(&self) -> Result<(), ControlFailure> {
        let (Some(shared), Some(usage)) = (self.shared(), &self.inner.usage) else {
            return Ok(());
        };
        let batch = usage.drain();
        let result = if batch.is_empty() {
            Ok(())
        } else {
            let keep = usage.capacity();
            let sent = batch.clone();
            let r = shared.store.add_usage(sent, keep).await;
            if r.is_err() {
                for (user, u) in &batch {
                    usage.add(self.shard(user), user, *u);
                }
            }
            r
        };
        shared.flushing.store(false, Ordering::Release);
        match &result {
            Ok(()) => shared.failing.store(false, Ordering::Relaxed),
            Err(e) => self.control_failed("flushing usage", e),
        }
        result
    }
}

/// Applies other instances' changes to this limiter until it is dropped.
async fn listen(weak: Weak<Inner>, store: Arc<dyn ControlStore>, mut stop: watch::Receiver<()>) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let stream = tokio::select! {
            s = store.changes() => s,
            _ = stop.changed() => return,
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                if let Some(inner) = weak.upgrade() {
                    RateLimiter { inner }.control_failed("subscribing to changes", &e);
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay(unit_draw())) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        };
        backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        match weak.upgrade() {
            // Subscribed: anything cached before may be out of date.
            Some(inner) => resync(&RateLimiter { inner }).await,
            None => return,
        }
        loop {
            let change = tokio::select! {
                c = stream.next() => c,
                _ = stop.changed() => return,
            };
            let Some(change) = change else { break };
            let Some(inner) = weak.upgrade() else { return };
            let limiter = RateLimiter { inner };
            match change {
                Change::User(user) => limiter.forget_cached(Some(&user)),
                Change::Endpoints => limiter.reload_endpoints().await,
                Change::Resync => resync(&limiter).await,
                Change::Lost => {
                    if let Some(s) = limiter.shared() {
                        s.lost.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

async fn resync(limiter: &RateLimiter) {
    if let Some(s) = limiter.shared() {
        s.lost.store(false, Ordering::Relaxed);
    }
    limiter.forget_cached(None);
    limiter.reload_endpoints().await;
}
