//! Multi-level caching for tower services.
//!
//! This crate will provide `CacheLayer` / `Cache<S>`: an in-process `moka` tier (L1), a
//! Redis / Redis Cluster tier (L2) with pub/sub invalidation and a crash-safe disk tier
//! (L3), with stale-while-revalidate, stale-if-error, single-flight request coalescing,
//! adaptive TTLs and negative caching. The shared vocabulary it builds on lives in
//! [`reliability_core`].
