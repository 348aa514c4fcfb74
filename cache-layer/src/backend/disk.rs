//! L3: a crash-safe file on local disk, in `redb`.
//!
//! Why redb: a single-file, pure-Rust B-tree with copy-on-write pages and checksummed
//! commits. A process killed mid-write (`kill -9`) leaves the last committed state, never
//! a half-written page; no compaction thread, no write-ahead log to replay. We add our own
//! per-entry checksum ([`wire`](super::wire)) anyway, so a corrupt entry (bit rot, a bug)
//! is dropped and counted, never returned.
//!
//! - **Bounded**: live bytes are tracked; past `max_bytes`, a collection removes expired
//!   entries, then the oldest ones, down to 80 % of the bound. redb reuses freed pages, so
//!   the file stays near the bound (it never shrinks on its own).
//! - **Warm start**: the file survives restarts; an L1 miss finds the entry here.
//! - **Hot keys**: [`save_hot_keys`](DiskTier::save_hot_keys) /
//!   [`hot_keys`](DiskTier::hot_keys) keep the set to re-warm after a restart.
//! - Operations block (file I/O): the cache runs them on a dedicated writer thread or the
//!   blocking pool, never on the async workers.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant as StdInstant, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use reliability_core::health::CacheLevelSnapshot;

use super::wire::{decode, decode_owned, encode};
use super::{Invalidation, Stored, Tier, TierError};
use crate::metrics::LevelMetrics;

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const HOT: TableDefinition<u32, &str> = TableDefinition::new("hot_keys");

/// The disk tier.
pub struct DiskTier {
    db: Database,
    path: PathBuf,
    max_bytes: u64,
    live_bytes: AtomicU64,
    entries: AtomicU64,
    compress_above: usize,
    pub(crate) metrics: LevelMetrics,
    /// Corrupt entries found and dropped.
    pub(crate) corrupt: AtomicU64,
    /// Where an unreadable file found at open was moved, if one was.
    set_aside: Option<PathBuf>,
}

impl fmt::Debug for DiskTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskTier")
            .field("path", &self.path)
            .field("live_bytes", &self.live_bytes.load(Ordering::Relaxed))
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

fn err(e: impl fmt::Display) -> TierError {
    TierError {
        level: "l3",
        message: e.to_string(),
    }
}

fn expired(meta: &super::EntryMeta, now: SystemTime) -> bool {
    let end = meta.stored_at + meta.ttl + meta.stale_while_revalidate.max(meta.stale_if_error);
    end <= now
}

impl DiskTier {
    /// Opens (or creates) the store at `path`, holding at most `max_bytes` of entries.
    /// Every entry is checked on open: corrupt ones are dropped and counted. A file redb
    /// cannot open at all (a crash during its creation) is renamed `*.unreadable` and a
    /// new one started (counted as one corrupt entry).
    pub fn open(path: impl AsRef<Path>, max_bytes: u64) -> Result<Self, TierError> {
        let path = path.as_ref().to_owned();
        let mut set_aside = None;
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(e @ redb::DatabaseError::DatabaseAlreadyOpen) => return Err(err(e)),
            Err(e) => {
                // Only a crash while the file was being created leaves one redb cannot
                // open (commits are atomic afterwards). A cache may start afresh: the
                // unreadable file is kept aside for inspection, never read from.
                tracing::warn!(error = %e, path = %path.display(), "unreadable disk cache set aside");
                let aside = path.with_extension("unreadable");
                std::fs::rename(&path, &aside).map_err(err)?;
                set_aside = Some(aside);
                Database::create(&path).map_err(err)?
            }
        };
        let tier = Self {
            db,
            path,
            max_bytes: max_bytes.max(1),
            live_bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            compress_above: 1024,
            metrics: LevelMetrics::default(),
            corrupt: AtomicU64::new(0),
            set_aside,
        };
        let tx = tier.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(ENTRIES).map_err(err)?;
            tx.open_table(HOT).map_err(err)?;
            let (mut bytes, mut count, mut corrupt) = (0u64, 0u64, 0u64);
            table
                .retain(|_, blob| {
                    let ok = decode(blob).is_ok();
                    if ok {
                        bytes += blob.len() as u64;
                        count += 1;
                    } else {
                        corrupt += 1;
                    }
                    ok
                })
                .map_err(err)?;
            tier.live_bytes.store(bytes, Ordering::Relaxed);
            tier.entries.store(count, Ordering::Relaxed);
            let aside = u64::from(tier.set_aside.is_some());
            tier.corrupt.store(corrupt + aside, Ordering::Relaxed);
        }
        tx.commit().map_err(err)?;
        Ok(tier)
    }

    /// Bytes of live entries.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes.load(Ordering::Relaxed)
    }

    /// Where [`open`](Self::open) moved the file it found at its path because redb could
    /// not open it (`<path>.unreadable`): `Some` means every entry the store held was set
    /// aside and this store started empty. `None` when the file opened (or was new).
    pub fn set_aside(&self) -> Option<&Path> {
        self.set_aside.as_deref()
    }

    /// Corrupt entries dropped since open (those found on open included).
    pub fn corrupt_dropped(&self) -> u64 {
        self.corrupt.load(Ordering::Relaxed)
    }

    /// Reads an entry (blocking).
    pub fn get_blocking(&self, key: &str) -> Result<Option<Stored<Bytes>>, TierError> {
        // Latency is sampled like L1's: one lookup in 64 reads the clock; the exported
        // histogram times every lookup (a read transaction dwarfs a clock read).
        let sampled = self.metrics.start_lookup();
        let started = (sampled || self.metrics.exported.timed()).then(StdInstant::now);
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(ENTRIES).map_err(err)?;
        // One copy out of the read transaction; decoding then slices it.
        let blob = table
            .get(key)
            .map_err(err)?
            .map(|g| Bytes::copy_from_slice(g.value()));
        drop(table);
        drop(tx);
        if let Some(t) = started {
            let took = t.elapsed();
            if sampled {
                self.metrics.record_latency(took);
            }
            self.metrics.exported.lookup_took(took);
        }
        let Some(blob) = blob else {
            self.metrics.miss();
            return Ok(None);
        };
        match decode_owned(blob) {
            Ok(e) if !expired(&e.meta, SystemTime::now()) => {
                self.metrics.hit();
                Ok(Some(e))
            }
            Ok(_) => {
                self.metrics.miss();
                Ok(None)
            }
            Err(e) => {
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                self.metrics.error();
                tracing::warn!(error = %e, "dropping a corrupt L3 entry");
                let _ = self.remove_blocking(key);
                Ok(None)
            }
        }
    }

    fn remove_blocking(&self, key: &str) -> Result<(), TierError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(ENTRIES).map_err(err)?;
            if let Some(old) = table.remove(key).map_err(err)? {
                self.forget(old.value().len() as u64);
            }
        }
        tx.commit().map_err(err)
    }

    fn forget(&self, bytes: u64) {
        self.live_bytes
            .fetch_sub(bytes.min(self.live_bytes()), Ordering::Relaxed);
        let _ = self
            .entries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// Writes an entry (blocking, durable when it returns); collects past the bound.
    pub fn set_blocking(&self, key: &str, entry: &Stored<Bytes>) -> Result<(), TierError> {
        let blob = encode(entry, self.compress_above);
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(ENTRIES).map_err(err)?;
            if let Some(old) = table.insert(key, blob.as_slice()).map_err(err)? {
                self.forget(old.value().len() as u64);
            }
        }
        tx.commit().map_err(err)?;
        self.live_bytes
            .fetch_add(blob.len() as u64, Ordering::Relaxed);
        self.entries.fetch_add(1, Ordering::Relaxed);
        if self.live_bytes() > self.max_bytes {
            self.collect()?;
        }
        Ok(())
    }

    /// Removes expired entries, then the oldest, down to 80 % of the bound.
    pub fn collect(&self) -> Result<(), TierError> {
        let now = SystemTime::now();
        let target = self.max_bytes / 10 * 8;
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(ENTRIES).map_err(err)?;
            let mut live: Vec<(SystemTime, String, u64)> = Vec::new();
            let mut dead: Vec<String> = Vec::new();
            for item in table.iter().map_err(err)? {
                let (k, v) = item.map_err(err)?;
                let blob = v.value();
                match decode(blob) {
                    Ok(e) if !expired(&e.meta, now) => {
                        live.push((e.meta.stored_at, k.value().to_owned(), blob.len() as u64));
                    }
                    _ => dead.push(k.value().to_owned()),
                }
            }
            let mut bytes: u64 = live.iter().map(|(_, _, b)| b).sum();
            live.sort_unstable();
            let mut oldest = live.into_iter();
            while bytes > target {
                let Some((_, k, b)) = oldest.next() else {
                    break;
                };
                bytes -= b;
                dead.push(k);
            }
            for k in &dead {
                table.remove(k.as_str()).map_err(err)?;
            }
            let remaining = table.len().map_err(err)?;
            self.entries.store(remaining, Ordering::Relaxed);
            self.live_bytes.store(bytes, Ordering::Relaxed);
            self.metrics
                .evictions
                .fetch_add(dead.len() as u64, Ordering::Relaxed);
        }
        tx.commit().map_err(err)
    }

    /// Applies an invalidation (blocking).
    pub fn invalidate_blocking(&self, scope: &Invalidation) -> Result<(), TierError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(ENTRIES).map_err(err)?;
            let mut freed = 0u64;
            table
                .retain(|k, blob| {
                    let tags = match scope {
                        Invalidation::Tag(_) => {
                            decode(blob).map(|e| e.meta.tags).unwrap_or_default()
                        }
                        _ => Vec::new(),
                    };
                    let gone = scope.matches(k, &tags);
                    if gone {
                        freed += blob.len() as u64;
                    }
                    !gone
                })
                .map_err(err)?;
            self.live_bytes
                .fetch_sub(freed.min(self.live_bytes()), Ordering::Relaxed);
            self.entries
                .store(table.len().map_err(err)?, Ordering::Relaxed);
        }
        tx.commit().map_err(err)
    }

    /// Replaces the saved hot-key set (for re-warming after a restart).
    pub fn save_hot_keys(&self, keys: &[String]) -> Result<(), TierError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(HOT).map_err(err)?;
            table.retain(|_, _| false).map_err(err)?;
            for (i, k) in keys.iter().enumerate() {
                table
                    .insert(u32::try_from(i).unwrap_or(u32::MAX), k.as_str())
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// The saved hot-key set, hottest first.
    pub fn hot_keys(&self) -> Result<Vec<String>, TierError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(HOT).map_err(err)?;
        let mut keys = Vec::new();
        for item in table.iter().map_err(err)? {
            keys.push(item.map_err(err)?.1.value().to_owned());
        }
        Ok(keys)
    }
}

impl Tier<Bytes> for DiskTier {
    fn level(&self) -> &'static str {
        "l3"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Stored<Bytes>>, TierError>> {
        Box::pin(std::future::ready(self.get_blocking(key)))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        entry: Stored<Bytes>,
    ) -> BoxFuture<'a, Result<(), TierError>> {
        Box::pin(std::future::ready(self.set_blocking(key, &entry)))
    }

    fn invalidate<'a>(&'a self, scope: &'a Invalidation) -> BoxFuture<'a, Result<(), TierError>> {
        Box::pin(std::future::ready(self.invalidate_blocking(scope)))
    }

    fn stats(&self) -> CacheLevelSnapshot {
        self.metrics.snapshot(
            "l3",
            self.entries.load(Ordering::Relaxed),
            self.live_bytes(),
        )
    }
}
