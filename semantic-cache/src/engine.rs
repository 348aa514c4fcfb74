//! The shared state behind a layer and its handle: namespaces, their indexes and in-flight
//! calls, the answers (in a `cache-layer` cache) and the store.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use cache_layer::CacheHandle;
use cache_layer::codec::Codec;
use parking_lot::{Mutex, RwLock};
use reliability_core::clock::{Instant, SharedClock};
use tokio::sync::{Notify, watch};
use tower::BoxError;

use crate::backend::{EntryStore, Record};
use crate::config::SemanticConfig;
use crate::embedder::EmbeddingCache;
use crate::error::CoalescedError;
use crate::handle::Rebuilds;
use crate::index::{RebuildTicket, VectorIndex};
use crate::metrics::Lookups;
pub(crate) use crate::metrics::{Metrics, bump};
use crate::response::{Lookup, SemanticResponse};
use crate::vector::{dot, meets};
use crate::wire;

/// What joined callers receive.
type Outcome<V> = Option<Result<V, Arc<BoxError>>>;

/// An exact key (`sem:` and 32 hex digits) built on the stack: the hit path allocates
/// nothing for it.
#[derive(Clone, Copy)]
pub(crate) struct ExactKey([u8; 36]);

impl ExactKey {
    pub(crate) fn of(namespace: &str, text: &str) -> Self {
        let d = wire::digest(&[namespace.as_bytes(), text.as_bytes()]);
        let mut k = *b"sem:00000000000000000000000000000000";
        k[4..].copy_from_slice(d.as_bytes());
        Self(k)
    }

    pub(crate) fn as_str(&self) -> &str {
        // The bytes are ASCII by construction.
        std::str::from_utf8(&self.0).unwrap_or("sem:")
    }
}

struct Flight<V> {
    id: u64,
    key: Arc<str>,
    vector: Option<Arc<[f32]>>,
    rx: watch::Receiver<Outcome<V>>,
}

/// Where a namespace's index stands against the store.
#[derive(Clone, Copy)]
struct Synced {
    /// When it last caught up (monotonic).
    at: Instant,
    /// The wall time of that catch-up: the next one loads entries stored since.
    wall: SystemTime,
    /// The store's removal count then: a change means entries were removed elsewhere.
    removals: u64,
}

pub(crate) struct Namespace<V> {
    index: RwLock<VectorIndex>,
    flights: Mutex<Vec<Flight<V>>>,
    /// Bumped by invalidations: a call that started before one does not store its answer.
    generation: AtomicU64,
    /// When the index last caught up with the store (monotonic, wall); locked only to
    /// read or write the value, never across an await.
    synced: Mutex<Option<Synced>>,
    /// Whether a request is catching the index up with the store now (one at a time;
    /// the others are served from the index as it is).
    syncing: AtomicBool,
    /// Woken when a catch-up ends, for requests waiting for the first load.
    sync_done: Notify,
}

impl<V> Namespace<V> {
    fn new(approximate_above: usize) -> Self {
        Self {
            index: RwLock::new(
                VectorIndex::with_approximate_above(approximate_above).deferring_rebuilds(),
            ),
            flights: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            synced: Mutex::new(None),
            syncing: AtomicBool::new(false),
            sync_done: Notify::new(),
        }
    }
}

/// Releases a namespace's catch-up when it ends or its request is dropped.
struct SyncGuard<'a, V>(&'a Namespace<V>);

impl<V> Drop for SyncGuard<'_, V> {
    fn drop(&mut self) {
        self.0.syncing.store(false, Ordering::Release);
        self.0.sync_done.notify_waiters();
    }
}

/// Abandons a background rebuild whose job ends, panics or never runs (a no-op once its
/// graph was swapped in).
struct CancelRebuild<V> {
    ns: Arc<Namespace<V>>,
    ticket: RebuildTicket,
}

impl<V> Drop for CancelRebuild<V> {
    fn drop(&mut self) {
        self.ns.index.write().cancel_rebuild(self.ticket);
    }
}

pub(crate) struct Persist<V> {
    pub(crate) store: Arc<dyn EntryStore>,
    pub(crate) codec: Arc<dyn Codec<V>>,
}

pub(crate) struct Engine<V> {
    pub(crate) config: SemanticConfig,
    pub(crate) clock: SharedClock,
    pub(crate) started: Instant,
    pub(crate) answers: CacheHandle<V>,
    pub(crate) embeddings: EmbeddingCache,
    pub(crate) persist: Option<Persist<V>>,
    pub(crate) namespaces: RwLock<HashMap<String, Arc<Namespace<V>>>>,
    /// Entries indexed, across namespaces.
    pub(crate) total: AtomicUsize,
    pub(crate) metrics: Metrics,
    /// Background graph rebuilds started and finished.
    pub(crate) rebuilds: Arc<watch::Sender<Rebuilds>>,
    next_flight: AtomicU64,
}

impl<V> fmt::Debug for Engine<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.config.name)
            .field("threshold", &self.config.threshold)
            .field("entries", &self.total.load(Ordering::Relaxed))
            .field("embeddings", &self.embeddings)
            .finish_non_exhaustive()
    }
}

/// Removes its flight when the leading call ends or is dropped; joined callers whose leader
/// was dropped without an answer try again.
struct FlightGuard<'a, V> {
    ns: &'a Namespace<V>,
    id: u64,
}

impl<V> Drop for FlightGuard<'_, V> {
    fn drop(&mut self) {
        self.ns.flights.lock().retain(|f| f.id != self.id);
    }
}

impl<V: Clone + Send + Sync + 'static> Engine<V> {
    pub(crate) fn new(
        config: SemanticConfig,
        clock: SharedClock,
        answers: CacheHandle<V>,
        embeddings: EmbeddingCache,
        persist: Option<Persist<V>>,
    ) -> Self {
        let name = config.name.clone();
        Self {
            started: clock.now(),
            config,
            clock,
            answers,
            embeddings,
            persist,
            namespaces: RwLock::new(HashMap::new()),
            total: AtomicUsize::new(0),
            metrics: Metrics {
                exported: Lookups::new(&name),
                ..Metrics::default()
            },
            rebuilds: Arc::new(watch::Sender::new(Rebuilds::default())),
            next_flight: AtomicU64::new(0),
        }
    }

    /// Starts a background rebuild of `ns`'s graph when one is due: built from a snapshot
    /// on a blocking thread (a dedicated thread outside a runtime) while readers keep the
    /// current graph or scan; writes made meanwhile are replayed into it before the swap.
    fn rebuild_if_due(&self, ns: &Arc<Namespace<V>>) {
        let Some(ticket) = ns.index.write().start_rebuild() else {
            return;
        };
        let cancel = CancelRebuild {
            ns: ns.clone(),
            ticket,
        };
        let progress = self.rebuilds.clone();
        let job = move || {
            let started = || progress.send_modify(|p| p.started += 1);
            let swapped = VectorIndex::rebuild_behind(&cancel.ns.index, ticket, started);
            progress.send_modify(|p| {
                p.finished += 1;
                p.swapped += u64::from(swapped);
            });
            drop(cancel);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(job)),
            Err(_) => {
                // On failure the closure (and its guard) is dropped: the rebuild is
                // abandoned and the next write starts another.
                let _ = std::thread::Builder::new()
                    .name("semantic-cache-rebuild".into())
                    .spawn(job);
            }
        }
    }

    /// The exact-key fast path: the answer if `key` is live in `namespace`'s index and
    /// still held by the answer cache. No allocation, no await.
    #[inline]
    pub(crate) fn exact(&self, namespace: &str, key: &ExactKey) -> Option<V> {
        let ns = self.namespaces.read().get(namespace)?.clone();
        self.exact_in(&ns, key)
    }

    fn exact_in(&self, ns: &Namespace<V>, key: &ExactKey) -> Option<V> {
        if !ns.index.read().is_live(key.as_str(), self.clock.now()) {
            return None;
        }
        let v = self.answers.peek(key.as_str())?;
        bump(&self.metrics.exact_hits);
        self.metrics.exported.exact();
        Some(v)
    }

    fn namespace(&self, name: &str) -> Option<Arc<Namespace<V>>> {
        if let Some(ns) = self.namespaces.read().get(name) {
            return Some(ns.clone());
        }
        let mut all = self.namespaces.write();
        if let Some(ns) = all.get(name) {
            return Some(ns.clone());
        }
        if all.len() >= self.config.max_namespaces {
            return None;
        }
        let ns = Arc::new(Namespace::new(self.config.approximate_above));
        all.insert(name.to_owned(), ns.clone());
        Some(ns)
    }

    fn note_failure(&self) {
        let at = self.clock.now().saturating_duration_since(self.started);
        let n = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX - 1);
        self.metrics.last_failure.store(n + 1, Ordering::Relaxed);
    }

    pub(crate) fn since_last_failure(&self) -> Option<Duration> {
        let n = self.metrics.last_failure.load(Ordering::Relaxed);
        (n > 0).then(|| {
            let at = self.started + Duration::from_nanos(n - 1);
            self.clock.now().saturating_duration_since(at)
        })
    }

    /// Everything after an exact-key miss: catch up with the store, join or open the
    /// flight of this text, embed, look up by similarity, join an older similar flight or
    /// call the upstream, store the answer.
    pub(crate) async fn miss<F, E>(
        self: Arc<Self>,
        namespace: String,
        text: String,
        key: ExactKey,
        call: F,
    ) -> Result<SemanticResponse<V>, BoxError>
    where
        F: FnOnce() -> E,
        E: Future<Output = Result<V, BoxError>>,
    {
        let Some(ns) = self.namespace(&namespace) else {
            bump(&self.metrics.bypassed);
            return call()
                .await
                .map(|v| SemanticResponse::new(v, Lookup::Bypass));
        };
        self.sync(&ns, &namespace).await;
        // One flight per text, opened before embedding: equal texts share the embedding
        // as well as the upstream call.
        let (tx, id) = loop {
            if let Some(v) = self.exact_in(&ns, &key) {
                return Ok(SemanticResponse::new(v, Lookup::Exact));
            }
            let same = {
                let mut flights = ns.flights.lock();
                match flights.iter().find(|f| *f.key == *key.as_str()) {
                    Some(f) => Err(f.rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
                        flights.push(Flight {
                            id,
                            key: key.as_str().into(),
                            vector: None,
                            rx,
                        });
                        Ok((tx, id))
                    }
                }
            };
            match same {
                Ok(lead) => break lead,
                Err(rx) => {
                    if let Some(answer) = self.wait(rx).await {
                        return coalesced(answer, 1.0);
                    }
                    // The leader was dropped without an answer: look again, maybe lead.
                }
            }
        };
        let guard = FlightGuard { ns: &ns, id };
        let vector = self.embed(&text).await;
        if let Some(v) = &vector {
            if let Some(f) = ns.flights.lock().iter_mut().find(|f| f.id == id) {
                f.vector = Some(v.clone());
            }
            if let Some(hit) = self.similar(&ns, v) {
                let _ = tx.send(Some(Ok(hit.value.clone())));
                return Ok(hit);
            }
            if let Some((rx, similarity)) = self.older_similar_flight(&ns, id, v)
                && let Some(answer) = self.wait(rx).await
            {
                let _ = tx.send(Some(answer.clone()));
                return coalesced(answer, similarity);
            }
        }
        let generation = ns.generation.load(Ordering::Acquire);
        bump(&self.metrics.misses);
        self.metrics.exported.miss();
        match call().await {
            Ok(v) => {
                if let Some(vector) = vector
                    && ns.generation.load(Ordering::Acquire) == generation
                {
                    self.insert(&ns, &key, vector.clone(), v.clone(), None);
                    self.save(&namespace, &key, &vector, &v).await;
                }
                let _ = tx.send(Some(Ok(v.clone())));
                drop(guard);
                Ok(SemanticResponse::new(v, Lookup::Miss))
            }
            Err(e) => {
                // Closing the flight first drops its receiver: what remains are the
                // callers that joined.
                drop(guard);
                if tx.receiver_count() == 0 {
                    return Err(e);
                }
                let shared = Arc::new(e);
                let _ = tx.send(Some(Err(shared.clone())));
                Err(CoalescedError::new(shared).into())
            }
        }
    }

    /// The normalized vector of `text`, or `None` (counted, logged) when the embedder
    /// cannot give one: the request then goes upstream without semantic lookup.
    async fn embed(&self, text: &str) -> Option<Arc<[f32]>> {
        match self.embeddings.embed_one(text).await {
            Ok(v) => Some(v),
            Err(e) => {
                bump(&self.metrics.embed_failures);
                self.note_failure();
                tracing::warn!(cache = %self.config.name, error = %e, "embedding failed: calling upstream without semantic lookup");
                None
            }
        }
    }

    /// The most similar flight opened before `id` whose text meets the threshold. Only
    /// older flights: two similar flights never wait for each other.
    fn older_similar_flight(
        &self,
        ns: &Namespace<V>,
        id: u64,
        vector: &[f32],
    ) -> Option<(watch::Receiver<Outcome<V>>, f32)> {
        let flights = ns.flights.lock();
        flights
            .iter()
            .filter(|f| f.id < id)
            .filter_map(|f| {
                let s = dot(f.vector.as_deref()?, vector);
                meets(s, self.config.threshold).then_some((f, s))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(f, s)| (f.rx.clone(), s.min(1.0)))
    }

    /// The answer of a call this request joined; `None` when its leader was dropped
    /// without one.
    async fn wait(&self, mut rx: watch::Receiver<Outcome<V>>) -> Outcome<V> {
        let answer = rx.wait_for(Option::is_some).await.ok()?.clone()?;
        bump(&self.metrics.coalesced);
        Some(answer)
    }

    /// The best live match of `vector` at or above the threshold, if its answer is held.
    fn similar(&self, ns: &Arc<Namespace<V>>, vector: &[f32]) -> Option<SemanticResponse<V>> {
        loop {
            let now = self.clock.now();
            let hit = ns.index.read().nearest(vector, now)?;
            if !meets(hit.similarity, self.config.threshold) {
                return None;
            }
            if let Some(v) = self.answers.peek(&hit.key) {
                bump(&self.metrics.similar_hits);
                self.metrics.exported.similar();
                return Some(SemanticResponse::new(
                    v,
                    Lookup::Similar {
                        similarity: hit.similarity.min(1.0),
                        key: hit.key,
                    },
                ));
            }
            // The answer cache evicted it: drop the vector too, and look again.
            if ns.index.write().remove(&hit.key) {
                self.total.fetch_sub(1, Ordering::Relaxed);
            }
            self.rebuild_if_due(ns);
        }
    }

    /// Indexes `vector` for `key` and stores the answer, evicting the entries that expire
    /// first while the cache is full. `remaining` is the TTL left (a loaded entry).
    fn insert(
        &self,
        ns: &Arc<Namespace<V>>,
        key: &ExactKey,
        vector: Arc<[f32]>,
        value: V,
        remaining: Option<Duration>,
    ) {
        if let Err(e) = self.answers.put(key.as_str(), value) {
            tracing::debug!(error = %e, "answer not cached");
            return;
        }
        let now = self.clock.now();
        let expires_at = now + remaining.unwrap_or(self.config.ttl);
        let max = usize::try_from(self.config.max_entries).unwrap_or(usize::MAX);
        let mut ix = ns.index.write();
        let purged = ix.purge_expired(now);
        self.forget(&purged);
        let fresh = ix.expires_at(key.as_str()).is_none();
        while fresh && self.total.load(Ordering::Relaxed) >= max {
            let Some(victim) = ix.first_to_expire() else {
                break;
            };
            ix.remove(&victim);
            self.forget(std::slice::from_ref(&victim));
            bump(&self.metrics.evictions);
        }
        if fresh && self.total.load(Ordering::Relaxed) >= max {
            drop(ix);
            self.evict_elsewhere();
            ix = ns.index.write();
        }
        match ix.insert(key.as_str().into(), &vector, expires_at) {
            Ok(()) if fresh => {
                self.total.fetch_add(1, Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(e) => {
                self.answers.invalidate(key.as_str());
                tracing::warn!(error = %e, "vector not indexed (did the model change?)");
            }
        }
        drop(ix);
        self.rebuild_if_due(ns);
    }

    fn forget(&self, keys: &[Arc<str>]) {
        for k in keys {
            self.answers.invalidate(k);
        }
        self.total.fetch_sub(keys.len(), Ordering::Relaxed);
    }

    /// Frees one slot from another namespace, when the one being written holds none.
    fn evict_elsewhere(&self) {
        let all: Vec<_> = self.namespaces.read().values().cloned().collect();
        for ns in all {
            let mut ix = ns.index.write();
            if let Some(victim) = ix.first_to_expire() {
                ix.remove(&victim);
                drop(ix);
                self.forget(std::slice::from_ref(&victim));
                bump(&self.metrics.evictions);
                self.rebuild_if_due(&ns);
                return;
            }
        }
    }

    async fn save(&self, namespace: &str, key: &ExactKey, vector: &Arc<[f32]>, value: &V) {
        let Some(p) = &self.persist else { return };
        let Some(bytes) = p.codec.encode(value) else {
            return;
        };
        let record = Record {
            key: key.as_str().to_owned(),
            vector: vector.clone(),
            value: bytes,
            stored_at: self.clock.wall(),
            ttl: self.config.ttl,
        };
        if let Err(e) = p.store.save(namespace, &record).await {
            bump(&self.metrics.store_errors);
            self.note_failure();
            tracing::warn!(error = %e, "semantic entry not persisted");
        }
    }

    /// Catches `ns` up with the store: whole on first use and after entries were removed
    /// by any instance, incrementally otherwise, at most every `resync_interval`.
    ///
    /// One request at a time catches a namespace up (and waits for it); the others go on
    /// with the index as it is, except before the first load, when there is nothing to
    /// serve yet and they wait for it. A whole reload never empties the index: entries the
    /// store no longer has are removed once the load has returned, then the loaded ones
    /// are inserted.
    async fn sync(&self, ns: &Arc<Namespace<V>>, name: &str) {
        let Some(p) = &self.persist else { return };
        let now = loop {
            let mut notified = std::pin::pin!(ns.sync_done.notified());
            notified.as_mut().enable();
            let now = self.clock.now();
            let last = *ns.synced.lock();
            if let Some(s) = last
                && now.saturating_duration_since(s.at) < self.config.resync_interval
            {
                return;
            }
            if ns
                .syncing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                break now;
            }
            if last.is_some() {
                return;
            }
            notified.await;
        };
        let _guard = SyncGuard(&**ns);
        let synced = *ns.synced.lock();
        let wall = self.clock.wall();
        let generation = ns.generation.load(Ordering::Acquire);
        let loaded = async {
            let removals = p.store.removals(name).await?;
            let (since, before) = match synced {
                // A second of overlap covers clocks of other hosts slightly behind ours;
                // loading an entry twice is harmless.
                Some(s) if s.removals == removals => (Some(s.wall - Duration::from_secs(1)), None),
                // Entries were removed elsewhere: reload the namespace whole, then drop
                // ours that the store no longer has (only those held before the load).
                Some(_) => (
                    None,
                    Some(ns.index.read().keys().cloned().collect::<Vec<Arc<str>>>()),
                ),
                None => (None, None),
            };
            let records = p.store.load(name, since).await?;
            Ok::<_, crate::backend::TierError>((removals, before, records))
        };
        match loaded.await {
            Ok((removals, before, records)) => {
                if let Some(before) = before {
                    let kept: std::collections::HashSet<&str> =
                        records.iter().map(|r| r.key.as_str()).collect();
                    let gone: Vec<Arc<str>> = before
                        .into_iter()
                        .filter(|k| !kept.contains(&**k))
                        .collect();
                    let mut ix = ns.index.write();
                    let gone: Vec<Arc<str>> = gone.into_iter().filter(|k| ix.remove(k)).collect();
                    drop(ix);
                    self.forget(&gone);
                    self.rebuild_if_due(ns);
                }
                for r in records {
                    let (Some(remaining), Some(value), Some(key)) = (
                        r.remaining(wall),
                        p.codec.decode(&r.value),
                        ExactKey::parse(&r.key),
                    ) else {
                        continue;
                    };
                    if ns.generation.load(Ordering::Acquire) != generation {
                        break;
                    }
                    self.insert(ns, &key, r.vector, value, Some(remaining));
                    bump(&self.metrics.loaded);
                }
                *ns.synced.lock() = Some(Synced {
                    at: now,
                    wall,
                    removals,
                });
            }
            Err(e) => {
                bump(&self.metrics.store_errors);
                self.note_failure();
                tracing::warn!(error = %e, "semantic index not synced with the store");
                // Try again at the next interval, not on every miss.
                *ns.synced.lock() = Some(synced.map_or(
                    Synced {
                        at: now,
                        wall: SystemTime::UNIX_EPOCH,
                        removals: 0,
                    },
                    |s| Synced { at: now, ..s },
                ));
            }
        }
    }

    /// Removes `keys` of `namespace` everywhere: index, answers, store.
    pub(crate) async fn remove(&self, namespace: &str, keys: Vec<String>) {
        if let Some(ns) = self.namespaces.read().get(namespace).cloned() {
            ns.generation.fetch_add(1, Ordering::AcqRel);
            let mut ix = ns.index.write();
            for k in &keys {
                if ix.remove(k) {
                    self.total.fetch_sub(1, Ordering::Relaxed);
                }
                self.answers.invalidate(k);
            }
            drop(ix);
            self.rebuild_if_due(&ns);
        }
        if let Some(p) = &self.persist
            && let Err(e) = p.store.remove(namespace, &keys).await
        {
            bump(&self.metrics.store_errors);
            tracing::warn!(error = %e, "semantic entries not removed from the store");
        }
    }

    /// Every key indexed in `namespace`.
    pub(crate) fn keys_of(&self, namespace: &str) -> Vec<String> {
        self.namespaces
            .read()
            .get(namespace)
            .map_or_else(Vec::new, |ns| {
                ns.index.read().keys().map(|k| k.to_string()).collect()
            })
    }

    pub(crate) fn namespace_names(&self) -> Vec<String> {
        self.namespaces.read().keys().cloned().collect()
    }

    pub(crate) fn indexed(&self, namespace: &str) -> usize {
        self.namespaces
            .read()
            .get(namespace)
            .map_or(0, |ns| ns.index.read().len())
    }
}

/// A joined caller's answer.
fn coalesced<V>(
    answer: Result<V, Arc<BoxError>>,
    similarity: f32,
) -> Result<SemanticResponse<V>, BoxError> {
    answer
        .map(|v| SemanticResponse::new(v, Lookup::Coalesced { similarity }))
        .map_err(|e| CoalescedError::new(e).into())
}

impl ExactKey {
    fn parse(s: &str) -> Option<Self> {
        let b: [u8; 36] = s.as_bytes().try_into().ok()?;
        (b.starts_with(b"sem:") && b[4..].iter().all(u8::is_ascii_hexdigit)).then_some(Self(b))
    }
}
