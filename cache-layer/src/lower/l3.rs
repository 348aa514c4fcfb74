//! L3 on disk, wired into a cache: lookups on L1 (and L2) misses through tokio's blocking
//! pool, and writes on one dedicated thread through a bounded queue (overflow counted,
//! never blocking). The file survives restarts, and so does the hot-key set saved in it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use reliability_core::health::CacheLevelSnapshot;
use tokio::sync::mpsc;

use super::LowerTier;
use crate::backend::disk::DiskTier;
use crate::backend::{EntryMeta, Invalidation, Stored, Tier};
use crate::codec::Codec;
use crate::handle::CacheStats;
use crate::metrics::facade::TierName;
use crate::metrics::read;

/// Writes queued for the disk, at most.
const QUEUE: usize = 10_000;

enum DiskOp {
    Set(String, Stored<Bytes>),
    Invalidate(Invalidation),
    SaveHotKeys(Vec<String>),
}

/// The disk as a cache's L3.
pub(crate) struct DiskL3<V> {
    tier: Arc<DiskTier>,
    codec: Arc<dyn Codec<V>>,
    queue: mpsc::Sender<DiskOp>,
    queue_overflow: AtomicU64,
}

impl<V: 'static> DiskL3<V> {
    /// The wiring, with its writer thread started.
    pub(crate) fn start(
        mut tier: DiskTier,
        codec: Arc<dyn Codec<V>>,
        source: &str,
    ) -> std::io::Result<Self> {
        tier.metrics.bind(source, TierName::L3);
        let tier = Arc::new(tier);
        let (queue, mut rx) = mpsc::channel(QUEUE);
        let writer = tier.clone();
        std::thread::Builder::new()
            .name("cache-l3-writer".to_owned())
            .spawn(move || {
                // Ends when the cache (the only sender) is dropped.
                while let Some(op) = rx.blocking_recv() {
                    let r = match op {
                        DiskOp::Set(key, entry) => writer.set_blocking(&key, &entry),
                        DiskOp::Invalidate(scope) => writer.invalidate_blocking(&scope),
                        DiskOp::SaveHotKeys(keys) => writer.save_hot_keys(&keys),
                    };
                    if let Err(e) = r {
                        writer.metrics.error();
                        tracing::warn!(error = %e, "disk cache write failed");
                    }
                }
            })?;
        Ok(Self {
            tier,
            codec,
            queue,
            queue_overflow: AtomicU64::new(0),
        })
    }

    fn enqueue(&self, op: DiskOp) {
        if self.queue.try_send(op).is_err() {
            self.queue_overflow.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<V: Clone + Send + Sync + 'static> LowerTier<V> for DiskL3<V> {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Stored<V>>> {
        let tier = self.tier.clone();
        let k = key.to_owned();
        Box::pin(async move {
            let found = tokio::task::spawn_blocking(move || tier.get_blocking(&k))
                .await
                .ok()?
                .ok()??;
            let value = self.codec.decode(&found.value)?;
            Some(Stored {
                value,
                meta: found.meta,
            })
        })
    }

    fn write_behind(&self, key: &str, value: &V, meta: EntryMeta, _explicit: bool) {
        if let Some(value) = self.codec.encode(value) {
            self.enqueue(DiskOp::Set(key.to_owned(), Stored { value, meta }));
        }
    }

    fn write_now<'a>(&'a self, key: &'a str, value: &V, meta: EntryMeta) -> BoxFuture<'a, ()> {
        let write = self.codec.encode(value).map(|value| {
            let tier = self.tier.clone();
            let key = key.to_owned();
            let stored = Stored { value, meta };
            move || tier.set_blocking(&key, &stored)
        });
        Box::pin(async move {
            if let Some(write) = write {
                let _ = tokio::task::spawn_blocking(write).await;
            }
        })
    }

    fn invalidate(&self, scope: &Invalidation) {
        self.enqueue(DiskOp::Invalidate(scope.clone()));
    }

    fn report(&self, s: &mut CacheStats) {
        s.l3_hits = read(&self.tier.metrics.hits);
        s.l3_misses = read(&self.tier.metrics.misses);
        s.l3_corrupt = self.tier.corrupt_dropped();
        s.l3_bytes = self.tier.live_bytes();
    }

    fn snapshot(&self) -> CacheLevelSnapshot {
        self.tier.stats()
    }

    fn publish_metrics(&self) {
        let s = self.tier.stats();
        self.tier.metrics.exported.size(s.entries, s.bytes);
    }

    fn save_hot_keys(&self, keys: &[String]) {
        self.enqueue(DiskOp::SaveHotKeys(keys.to_vec()));
    }

    fn saved_hot_keys(&self) -> Option<Vec<String>> {
        self.tier.hot_keys().ok()
    }
}
