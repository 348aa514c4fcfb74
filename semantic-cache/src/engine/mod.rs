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

use crate::backend::EntryStore;
use crate::config::SemanticConfig;
use crate::embedder::EmbeddingCache;
use crate::handle::Rebuilds;
use crate::index::VectorIndex;
use crate::metrics::Lookups;
pub(crate) use crate::metrics::{Metrics, bump};
use crate::wire;

mod indexing;
mod lookup;
mod store;

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

impl ExactKey {
    fn parse(s: &str) -> Option<Self> {
        let b: [u8; 36] = s.as_bytes().try_into().ok()?;
        (b.starts_with(b"sem:") && b[4..].iter().all(u8::is_ascii_hexdigit)).then_some(Self(b))
    }
}
