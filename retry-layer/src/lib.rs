//! Retries with jittered backoff for tower services.
//!
//! This crate will provide `RetryLayer` / `Retry<S>`: exponential backoff with full, equal
//! and decorrelated jitter, a retry budget so retries never amplify an outage, error
//! classification through [`reliability_core`], `Retry-After` support and a dead-letter
//! sink (in memory and Redis Streams).
