//! L3 wiring: lookups on L1 (and L2) misses through tokio's blocking pool, and writes on
//! one dedicated thread through a bounded queue (overflow counted, never blocking).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::backend::disk::DiskTier;
use crate::backend::memory::Entry;
use crate::backend::{EntryMeta, Invalidation, Stored};
use crate::codec::Codec;

/// Writes queued for the disk, at most.
const QUEUE: usize = 10_000;

pub(crate) enum DiskOp {
    Set(String, Stored<Bytes>),
    Invalidate(Invalidation),
    SaveHotKeys(Vec<String>),
}

pub(crate) struct Disk<V> {
    pub(crate) tier: Arc<DiskTier>,
    pub(crate) codec: Arc<dyn Codec<V>>,
    queue: mpsc::Sender<DiskOp>,
    pub(crate) queue_overflow: AtomicU64,
}

impl<V: 'static> Disk<V> {
    /// The wiring, with its writer thread started.
    pub(crate) fn start(tier: DiskTier, codec: Arc<dyn Codec<V>>) -> std::io::Result<Self> {
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
                        writer.metrics.errors.fetch_add(1, Ordering::Relaxed);
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

    pub(crate) fn enqueue(&self, op: DiskOp) {
        if self.queue.try_send(op).is_err() {
            self.queue_overflow.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn write(&self, key: &str, entry: &Entry<V>, meta: EntryMeta) {
        if !entry.shared {
            return;
        }
        if let Some(value) = self.codec.encode(&entry.value) {
            self.enqueue(DiskOp::Set(key.to_owned(), Stored { value, meta }));
        }
    }

    /// Reads `key` on the blocking pool and decodes it.
    pub(crate) async fn get(&self, key: &str) -> Option<Stored<V>> {
        let tier = self.tier.clone();
        let k = key.to_owned();
        let found = tokio::task::spawn_blocking(move || tier.get_blocking(&k))
            .await
            .ok()?
            .ok()??;
        let value = self.codec.decode(&found.value)?;
        Some(Stored {
            value,
            meta: found.meta,
        })
    }
}
