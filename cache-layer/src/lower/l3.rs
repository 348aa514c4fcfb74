//! L3 on disk, wired into a cache: lookups on L1 (and L2) misses through tokio's blocking
//! pool, and writes on one dedicated thread through a bounded queue (overflow counted,
//! never blocking). The file survives restarts, and so does the hot-key set saved in it.
//!
//! The writer thread ends when the cache is dropped (once it has drained its queue), or at
//! [`stop`](LowerTier::stop) (dropping what is still queued); either way it lets go of the
//! file as it ends. Flush markers travel through the same queue, so a flush resolves once
//! every write queued before it is committed (redb commits are durable when they return).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use reliability_core::health::CacheLevelSnapshot;
use tokio::sync::{mpsc, oneshot, watch};

use super::LowerTier;
use crate::backend::disk::DiskTier;
use crate::backend::{EntryMeta, Invalidation, Stored, Tier};
use crate::codec::Codec;
use crate::error::TierFlushError;
use crate::handle::CacheStats;
use crate::metrics::facade::TierName;
use crate::metrics::read;

/// Writes queued for the disk, at most.
const QUEUE: usize = 10_000;

enum DiskOp {
    Set(String, Stored<Bytes>),
    Invalidate(Invalidation),
    SaveHotKeys(Vec<String>),
    /// Answered once everything queued before it is committed.
    Flush(oneshot::Sender<()>),
    /// Wakes the thread to notice `stop`.
    Wake,
}

/// The disk as a cache's L3.
pub(crate) struct DiskL3<V> {
    tier: Arc<DiskTier>,
    codec: Arc<dyn Codec<V>>,
    queue: mpsc::Sender<DiskOp>,
    queue_overflow: AtomicU64,
    /// Writes the thread attempted and that failed.
    failed: Arc<AtomicU64>,
    /// Failures and overflows already reported by a flush.
    reported: AtomicU64,
    /// Tells the thread to end before its next operation.
    stop: Arc<AtomicBool>,
    /// Closed (its sender dropped) when the thread has ended and let go of the file.
    exited: watch::Receiver<()>,
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
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (exit, exited) = watch::channel(());
        let (thread_failed, thread_stop) = (failed.clone(), stop.clone());
        std::thread::Builder::new()
            .name("cache-l3-writer".to_owned())
            .spawn(move || {
                // Ends when the cache (the only sender) is dropped, or at `stop`.
                while let Some(op) = rx.blocking_recv() {
                    if thread_stop.load(Ordering::Acquire) {
                        break;
                    }
                    let r = match op {
                        DiskOp::Set(key, entry) => writer.set_blocking(&key, &entry),
                        DiskOp::Invalidate(scope) => writer.invalidate_blocking(&scope),
                        DiskOp::SaveHotKeys(keys) => writer.save_hot_keys(&keys),
                        DiskOp::Flush(done) => {
                            let _ = done.send(());
                            continue;
                        }
                        DiskOp::Wake => continue,
                    };
                    if let Err(e) = r {
                        thread_failed.fetch_add(1, Ordering::Relaxed);
                        writer.metrics.error();
                        tracing::warn!(error = %e, "disk cache write failed");
                    }
                }
                // The queue (and any flush marker left in it), then the file, then the
                // signal that the thread is gone.
                drop(rx);
                drop(writer);
                drop(exit);
            })?;
        Ok(Self {
            tier,
            codec,
            queue,
            queue_overflow: AtomicU64::new(0),
            failed,
            reported: AtomicU64::new(0),
            stop,
            exited,
        })
    }

    fn enqueue(&self, op: DiskOp) {
        if self.stop.load(Ordering::Acquire) || self.queue.try_send(op).is_err() {
            self.queue_overflow.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<V: Clone + Send + Sync + 'static> LowerTier<V> for DiskL3<V> {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Stored<V>>> {
        let tier = self.tier.clone();
        let k = key.to_owned();
        Box::pin(async move {
            let found = blocking(move || tier.get_blocking(&k)).await?.ok()??;
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
                let _ = blocking(write).await;
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

    fn level(&self) -> &'static str {
        "l3"
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), TierFlushError>> {
        Box::pin(super::flush_behind(
            "l3",
            self.stop.load(Ordering::Acquire),
            &self.queue,
            DiskOp::Flush,
            || read(&self.failed) + read(&self.queue_overflow),
            &self.reported,
        ))
    }

    fn pending(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        self.stop.store(true, Ordering::Release);
        // A full queue needs no wake-up: the thread checks the flag before each operation.
        let _ = self.queue.try_send(DiskOp::Wake);
        let mut exited = self.exited.clone();
        Box::pin(async move {
            // Nothing is ever sent: this ends when the thread drops the sender.
            while exited.changed().await.is_ok() {}
        })
    }
}

/// Runs `f` on tokio's blocking pool, or here when no tokio runtime is current (the cache
/// never panics for want of one); `None` if the blocking task panicked.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => rt.spawn_blocking(f).await.ok(),
        Err(_) => Some(f()),
    }
}
