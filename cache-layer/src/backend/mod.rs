//! Cache tiers behind one trait: L1 in process now, Redis (L2) and disk (L3) on the same
//! contract.
//!
//! A tier stores a value together with its freshness metadata ([`EntryMeta`]), so that a
//! lower tier that answers a lookup hands back enough to decide fresh / stale / gone
//! exactly as L1 would. Metadata carries wall-clock time because lower tiers outlive the
//! process (and its monotonic clock).

use std::fmt;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use reliability_core::health::CacheLevelSnapshot;

#[cfg(feature = "disk")]
pub mod disk;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "redis", feature = "disk"))]
pub mod wire;

/// Freshness metadata stored with a value in any tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// When the value was stored, wall clock.
    pub stored_at: SystemTime,
    /// Time to live.
    pub ttl: Duration,
    /// Stale-while-revalidate window after the TTL.
    pub stale_while_revalidate: Duration,
    /// Stale-if-error window after the TTL.
    pub stale_if_error: Duration,
    /// How long the upstream took (XFetch's `delta`).
    pub fetch_cost: Duration,
    /// A cached "not found".
    pub negative: bool,
    /// Tags for invalidation.
    pub tags: Vec<String>,
}

/// A value with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored<V> {
    /// The value.
    pub value: V,
    /// Its metadata.
    pub meta: EntryMeta,
}

/// What to invalidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One key.
    Key(String),
    /// Every key starting with this prefix.
    Prefix(String),
    /// Every entry carrying this tag.
    Tag(String),
    /// Everything.
    All,
}

impl Invalidation {
    /// Whether an entry with `key` and `tags` falls under this invalidation.
    pub fn matches(&self, key: &str, tags: &[String]) -> bool {
        match self {
            Self::Key(k) => k == key,
            Self::Prefix(p) => key.starts_with(p.as_str()),
            Self::Tag(t) => tags.iter().any(|x| x == t),
            Self::All => true,
        }
    }
}

/// A tier failed (a dead Redis, a corrupt disk entry).
#[derive(Debug, thiserror::Error)]
#[error("cache tier {level}: {message}")]
pub struct TierError {
    /// `l1`, `l2` or `l3`.
    pub level: &'static str,
    /// What went wrong.
    pub message: String,
}

/// One level of the cache.
///
/// Methods return boxed futures so that tiers can sit in one list; the L1 hit path does
/// not go through this trait (it reads [`memory::MemoryTier`] directly).
pub trait Tier<V>: Send + Sync + fmt::Debug + 'static {
    /// `l1`, `l2` or `l3`.
    fn level(&self) -> &'static str;

    /// The entry of `key`, if held (expired entries may be returned; the caller decides
    /// their phase).
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Stored<V>>, TierError>>;

    /// Stores `entry` under `key`.
    fn set<'a>(&'a self, key: &'a str, entry: Stored<V>) -> BoxFuture<'a, Result<(), TierError>>;

    /// Removes what `scope` names.
    fn invalidate<'a>(&'a self, scope: &'a Invalidation) -> BoxFuture<'a, Result<(), TierError>>;

    /// This tier's figures.
    fn stats(&self) -> CacheLevelSnapshot;
}
