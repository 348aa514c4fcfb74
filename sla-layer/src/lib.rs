//! SLA monitoring for tower services.
//!
//! This crate will provide `SlaLayer` / `Sla<S>`: latency in `hdrhistogram` over rolling
//! windows, p50/p95/p99/max, success rate, HEALTHY/DEGRADED/FAILED status against
//! per-source thresholds, error budgets with burn-rate alerts and Prometheus export.
