//! A circuit breaker for tower services.
//!
//! This crate will provide `CircuitBreakerLayer` / `CircuitBreaker<S>`: CLOSED → OPEN →
//! HALF_OPEN with count- and time-based sliding windows, failure-rate, slow-call-rate and
//! consecutive-failure trips, a probe budget in HALF_OPEN, per-key breakers and a typed
//! `CircuitOpen` rejection marked "do not retry" through [`reliability_core`].
