//! `Serialize` for the layer configurations that only derive `Deserialize`
//! (`cache_layer::CacheConfig`, `retry_layer::RetryConfig`).
//!
//! The preset defaults reach figment as a serialized value, under the file and the
//! environment, so every configuration in [`SourceSettings`](super::SourceSettings) must
//! serialize. These mirrors (serde's "remote derive") list the layers' fields; they go
//! away once the two layers derive `Serialize` themselves. A field the layer adds later
//! and these do not list is left out of the defaults, so it takes the layer's default: the
//! round-trip test in `tests/config.rs` catches a preset that sets such a field.

use std::time::Duration;

use cache_layer::adaptive::AdaptiveRule;
use cache_layer::{AdaptiveConfig, CacheConfig, EvictionPolicy, ValidationMode, WritePolicy};
use retry_layer::RetryConfig;
use retry_layer::backoff::Backoff;
use retry_layer::budget::BudgetConfig;
use serde::{Serialize, Serializer};

pub(super) fn cache<S: Serializer>(config: &CacheConfig, s: S) -> Result<S::Ok, S::Error> {
    CacheConfigDef::serialize(config, s)
}

pub(super) fn retry<S: Serializer>(config: &RetryConfig, s: S) -> Result<S::Ok, S::Error> {
    RetryConfigDef::serialize(config, s)
}

#[derive(Serialize)]
#[serde(remote = "CacheConfig")]
struct CacheConfigDef {
    name: String,
    #[serde(with = "humantime_serde")]
    ttl: Duration,
    #[serde(with = "humantime_serde")]
    stale_while_revalidate: Duration,
    #[serde(with = "humantime_serde")]
    stale_if_error: Option<Duration>,
    #[serde(with = "humantime_serde")]
    max_staleness: Duration,
    ttl_jitter: f64,
    xfetch_beta: f64,
    #[serde(serialize_with = "adaptive")]
    adaptive: Option<AdaptiveConfig>,
    #[serde(with = "humantime_serde")]
    negative_ttl: Option<Duration>,
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
    #[serde(with = "EvictionPolicyDef")]
    eviction: EvictionPolicy,
    #[serde(with = "ValidationModeDef")]
    validation: ValidationMode,
    max_in_flight: usize,
    #[serde(with = "WritePolicyDef")]
    write_policy: WritePolicy,
}

fn adaptive<S: Serializer>(config: &Option<AdaptiveConfig>, s: S) -> Result<S::Ok, S::Error> {
    struct Adaptive<'a>(&'a AdaptiveConfig);
    impl Serialize for Adaptive<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            AdaptiveConfigDef::serialize(self.0, s)
        }
    }
    match config {
        Some(config) => s.serialize_some(&Adaptive(config)),
        None => s.serialize_none(),
    }
}

#[derive(Serialize)]
#[serde(remote = "AdaptiveConfig")]
struct AdaptiveConfigDef {
    #[serde(with = "AdaptiveRuleDef")]
    rule: AdaptiveRule,
    #[serde(with = "humantime_serde")]
    min: Duration,
    #[serde(with = "humantime_serde")]
    max: Duration,
}

#[derive(Serialize)]
#[serde(remote = "AdaptiveRule", rename_all = "snake_case")]
enum AdaptiveRuleDef {
    Popularity,
    Volatility,
}

#[derive(Serialize)]
#[serde(remote = "EvictionPolicy", rename_all = "snake_case")]
enum EvictionPolicyDef {
    TinyLfu,
    Lru,
}

#[derive(Serialize)]
#[serde(remote = "ValidationMode", rename_all = "snake_case")]
enum ValidationModeDef {
    Strict,
    Normal,
    Relaxed,
}

#[derive(Serialize)]
#[serde(remote = "WritePolicy", rename_all = "snake_case")]
enum WritePolicyDef {
    WriteBehind,
    WriteThrough,
}

#[derive(Serialize)]
#[serde(remote = "RetryConfig")]
struct RetryConfigDef {
    name: String,
    max_attempts: u32,
    backoff: Backoff,
    #[serde(with = "humantime_serde")]
    max_elapsed: Option<Duration>,
    #[serde(with = "humantime_serde")]
    attempt_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    deadline: Option<Duration>,
    #[serde(with = "humantime_serde")]
    max_retry_after: Duration,
    budget: BudgetConfig,
    seed: Option<u64>,
    retry_non_idempotent: bool,
    max_body_bytes: usize,
}
