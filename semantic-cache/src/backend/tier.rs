//! Entries on any `cache-layer` tier, such as the crash-safe disk tier (L3, `DiskTier`).
//!
//! Each entry is one tier value under its exact key. A tier can only get and set by key,
//! so each namespace also keeps a **manifest** under `semidx:<digest of the namespace>`:
//! the keys with their store time and TTL, 52 bytes per entry. A save rewrites the
//! manifest, so a save costs O(entries in the namespace): fine for thousands of entries
//! per namespace, not for millions (use `RedisStore` there, whose membership is a sorted
//! set). Saves and removals are serialized by a lock in this process, so use one
//! `TierStore` per tier: two processes writing one manifest would lose each other's keys
//! (Redis has `RedisStore` for sharing).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use cache_layer::backend::{Stored, Tier};
use futures_util::future::BoxFuture;

use super::{EntryStore, Record, TierError};
use crate::wire;

/// Entries on a [`Tier`], with a manifest per namespace.
pub struct TierStore {
    tier: Arc<dyn Tier<Bytes>>,
    manifests: tokio::sync::Mutex<()>,
}

impl fmt::Debug for TierStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TierStore")
            .field("tier", &self.tier)
            .finish()
    }
}

/// One manifest line: key, store time and TTL in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    key: String,
    stored_ms: u64,
    ttl_ms: u64,
}

const KEY_LEN: usize = 36;
const LINE_LEN: usize = KEY_LEN + 16;
/// Manifests outlive their entries; they are pruned as they are rewritten.
const MANIFEST_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn wall_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, ms)
}

fn encode(lines: &[Line]) -> Bytes {
    let mut b = BytesMut::with_capacity(lines.len() * LINE_LEN);
    for l in lines {
        b.put_slice(l.key.as_bytes());
        b.put_u64_le(l.stored_ms);
        b.put_u64_le(l.ttl_ms);
    }
    b.freeze()
}

fn decode(b: &[u8]) -> Vec<Line> {
    b.chunks_exact(LINE_LEN)
        .filter_map(|c| {
            let key = std::str::from_utf8(&c[..KEY_LEN]).ok()?.to_owned();
            let n = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().unwrap_or_default());
            Some(Line {
                key,
                stored_ms: n(KEY_LEN),
                ttl_ms: n(KEY_LEN + 8),
            })
        })
        .collect()
}

impl TierStore {
    /// Entries on `tier`.
    pub fn new(tier: Arc<dyn Tier<Bytes>>) -> Self {
        Self {
            tier,
            manifests: tokio::sync::Mutex::new(()),
        }
    }

    fn manifest_key(namespace: &str) -> String {
        format!("semidx:{}", wire::digest(&[namespace.as_bytes()]))
    }

    async fn manifest(&self, namespace: &str) -> Result<Vec<Line>, TierError> {
        let got = self.tier.get(&Self::manifest_key(namespace)).await?;
        Ok(got.map_or_else(Vec::new, |s| decode(&s.value)))
    }

    /// Writes `lines` back without the expired ones.
    async fn write(&self, namespace: &str, mut lines: Vec<Line>) -> Result<(), TierError> {
        let now = wall_ms(SystemTime::now());
        lines.retain(|l| l.stored_ms.saturating_add(l.ttl_ms) > now);
        let entry = Stored {
            value: encode(&lines),
            meta: super::entry_meta(SystemTime::now(), MANIFEST_TTL),
        };
        self.tier.set(&Self::manifest_key(namespace), entry).await
    }
}

impl EntryStore for TierStore {
    fn save<'a>(
        &'a self,
        namespace: &'a str,
        record: &'a Record,
    ) -> BoxFuture<'a, Result<(), TierError>> {
        Box::pin(async move {
            if record.key.len() != KEY_LEN {
                return Err(TierError {
                    level: self.tier.level(),
                    message: "not an entry key".to_owned(),
                });
            }
            super::put_record(&*self.tier, record).await?;
            let _guard = self.manifests.lock().await;
            let mut lines = self.manifest(namespace).await?;
            lines.retain(|l| l.key != record.key);
            lines.push(Line {
                key: record.key.clone(),
                stored_ms: wall_ms(record.stored_at),
                ttl_ms: ms(record.ttl),
            });
            self.write(namespace, lines).await
        })
    }

    fn load<'a>(
        &'a self,
        namespace: &'a str,
        since: Option<SystemTime>,
    ) -> BoxFuture<'a, Result<Vec<Record>, TierError>> {
        Box::pin(async move {
            let lines = self.manifest(namespace).await?;
            let since = since.map_or(0, wall_ms);
            let mut found = Vec::new();
            for l in lines.iter().filter(|l| l.stored_ms >= since) {
                found.extend(super::get_record(&*self.tier, &l.key).await?);
            }
            Ok(found)
        })
    }

    fn remove<'a>(
        &'a self,
        namespace: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<(), TierError>> {
        Box::pin(async move {
            super::drop_records(&*self.tier, keys).await?;
            let _guard = self.manifests.lock().await;
            let mut lines = self.manifest(namespace).await?;
            lines.retain(|l| !keys.contains(&l.key));
            self.write(namespace, lines).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Manifests round-trip; any blob decodes without panicking.
        #[test]
        fn manifests_round_trip(n in 0usize..20, junk in proptest::collection::vec(any::<u8>(), 0..200)) {
            let lines: Vec<Line> = (0..n)
                .map(|i| Line { key: format!("sem:{i:032x}"), stored_ms: i as u64, ttl_ms: 7 })
                .collect();
            prop_assert_eq!(decode(&encode(&lines)), lines);
            let _ = decode(&junk);
        }
    }
}
