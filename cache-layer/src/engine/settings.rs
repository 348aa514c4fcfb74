//! What the engine runs with: the data settings of [`CacheConfig`] and the closures a
//! builder may set.

use std::sync::Arc;
use std::time::Duration;

use crate::adaptive::AdaptiveTtl;
use crate::config::{CacheConfig, WritePolicy};
use crate::freshness::StaleWindows;
use crate::status::CacheStatus;
use crate::validation::Limits;

use super::decide::Directive;

pub(crate) type ValueFn<V, T> = Arc<dyn Fn(&V) -> T + Send + Sync>;
pub(crate) type SameFn<V> = Arc<dyn Fn(&V, &V) -> bool + Send + Sync>;
pub(crate) type DirectiveFn<V> = Arc<dyn Fn(&V, Directive) -> Directive + Send + Sync>;

/// Settings the engine runs with.
pub(crate) struct Settings<V> {
    pub(crate) name: String,
    pub(crate) ttl: Duration,
    pub(crate) windows: StaleWindows,
    pub(crate) jitter: f64,
    pub(crate) xfetch_beta: f64,
    pub(crate) adaptive: Option<AdaptiveTtl>,
    pub(crate) negative_ttl: Option<Duration>,
    pub(crate) limits: Limits,
    pub(crate) write_through: bool,
    pub(crate) value_size: ValueFn<V, usize>,
    pub(crate) hooks: Hooks<V>,
}

/// The closures a builder may set; all optional.
pub(crate) struct Hooks<V> {
    pub(crate) value_size: Option<ValueFn<V, usize>>,
    pub(crate) is_negative: Option<ValueFn<V, bool>>,
    pub(crate) is_failure: Option<ValueFn<V, bool>>,
    pub(crate) store_if: Option<ValueFn<V, bool>>,
    pub(crate) tags: Option<ValueFn<V, Vec<String>>>,
    pub(crate) same_value: Option<SameFn<V>>,
    pub(crate) directive: Option<DirectiveFn<V>>,
    pub(crate) annotate: Option<fn(&mut V, &CacheStatus, &str)>,
}

impl<V> Default for Hooks<V> {
    fn default() -> Self {
        Self {
            value_size: None,
            is_negative: None,
            is_failure: None,
            store_if: None,
            tags: None,
            same_value: None,
            directive: None,
            annotate: None,
        }
    }
}

impl<V> Settings<V> {
    pub(crate) fn new(c: &CacheConfig, mut hooks: Hooks<V>) -> Self {
        Self {
            name: c.name.clone(),
            ttl: c.ttl,
            windows: StaleWindows {
                stale_while_revalidate: c.stale_while_revalidate,
                stale_if_error: c.effective_stale_if_error(),
                max_staleness: c.max_staleness,
            },
            jitter: c.ttl_jitter,
            xfetch_beta: c.xfetch_beta,
            adaptive: c.adaptive.map(|a| AdaptiveTtl::new(a.rule, a.min, a.max)),
            negative_ttl: c.negative_ttl,
            limits: Limits::of(c.validation),
            write_through: c.write_policy == WritePolicy::WriteThrough,
            value_size: hooks
                .value_size
                .take()
                .unwrap_or_else(|| Arc::new(|_| std::mem::size_of::<V>())),
            hooks,
        }
    }
}
