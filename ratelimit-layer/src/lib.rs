//! Distributed, tiered rate limiting for tower services.
//!
//! This crate will provide `RateLimitLayer` / `RateLimit<S>`: GCRA and sliding-window
//! limits, multi-window tiers decided atomically, in-process, Redis and Redis Cluster
//! backends (one Lua script per decision), fail-open with a local fallback, 429 answers
//! with IETF `RateLimit` headers, and a waiting client mode.
