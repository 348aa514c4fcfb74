//! [`RetryLayer`], its configuration and its builder.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use reliability_core::error::ConfigError;
use tokio::time::Instant;
use tower_layer::Layer;

use crate::backend::DeadLetterSink;
use crate::backoff::Backoff;
use crate::budget::{Budget, BudgetConfig};
use crate::config::RetryConfig;
use crate::metrics::{AsCore, Metrics, RetryHandle};
use crate::policy::ClassifierPolicy;
use crate::schedule::{Schedule, StopReason};
use crate::service::Retry;

/// What the layer reports to an event listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryEvent<'a> {
    /// A retry is about to wait `delay`, then make attempt number `attempt`.
    Retrying {
        /// The attempt about to be made (2 for the first retry).
        attempt: u32,
        /// The wait before it.
        delay: Duration,
    },
    /// A request failed for good after retries were cut short or used up.
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Why retrying stopped.
        reason: StopReason,
        /// The last error or failed answer.
        error: &'a str,
    },
    /// A critical failure: never retried, reported.
    Critical {
        /// Attempts made.
        attempts: u32,
        /// The error or failed answer.
        error: &'a str,
    },
}

pub(crate) type Listener = Arc<dyn Fn(&RetryEvent<'_>) + Send + Sync>;

/// The non-generic shared state of one layer and all its clones.
pub(crate) struct Core {
    pub(crate) name: String,
    pub(crate) schedule: Schedule,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) budget: Budget,
    pub(crate) metrics: Metrics,
    pub(crate) sink: Option<Arc<dyn DeadLetterSink>>,
    pub(crate) listener: Option<Listener>,
    pub(crate) seed: Option<u64>,
    pub(crate) sequence: AtomicU64,
    /// Whether a call must read the clock when it starts (some limit or budget needs
    /// it); the plain success path skips the read.
    pub(crate) needs_start_time: bool,
}

impl Core {
    /// The jitter generator of one request, made on its first failure only.
    pub(crate) fn request_rng(&self) -> SmallRng {
        match self.seed {
            Some(seed) => {
                let n = self.sequence.fetch_add(1, Ordering::Relaxed);
                // Spread consecutive request numbers over the seed space (SplitMix64's
                // increment), so each request gets its own reproducible stream.
                SmallRng::seed_from_u64(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            }
            None => SmallRng::from_rng(&mut rand::rng()),
        }
    }

    pub(crate) fn emit(&self, event: RetryEvent<'_>) {
        if let Some(listener) = &self.listener {
            listener(&event);
        }
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.name)
            .field("schedule", &self.schedule)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("deadline", &self.deadline)
            .field("budget", &self.budget)
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

/// A layer's shared state: the core and the policy.
pub(crate) struct Shared<P> {
    pub(crate) core: Core,
    pub(crate) policy: P,
}

impl<P: Send + Sync + 'static> AsCore for Shared<P> {
    fn core(&self) -> &Core {
        &self.core
    }
}

impl<P: fmt::Debug> fmt::Debug for Shared<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("core", &self.core)
            .field("policy", &self.policy)
            .finish()
    }
}

/// Wraps services in [`Retry`]. Clones (and the services they make) share one budget,
/// one set of counters and one dead-letter sink.
pub struct RetryLayer<P = ClassifierPolicy> {
    pub(crate) shared: Arc<Shared<P>>,
}

impl<P> Clone for RetryLayer<P> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<P: fmt::Debug> fmt::Debug for RetryLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("shared", &self.shared)
            .finish()
    }
}

impl RetryLayer {
    /// A builder with safe defaults: 3 attempts, full-jitter exponential backoff from
    /// 100 ms to 10 s, the AWS token-bucket budget, errors retried unless marked "do not
    /// retry".
    pub fn builder() -> RetryBuilder<ClassifierPolicy> {
        RetryBuilder::new(ClassifierPolicy::default())
    }

    /// A layer from configuration, with the default policy.
    pub fn from_config(config: &RetryConfig) -> Result<Self, ConfigError> {
        Self::builder().config(config.clone()).build()
    }
}

impl<P: Send + Sync + 'static> RetryLayer<P> {
    /// Counters, budget state and health of this layer and every clone.
    pub fn handle(&self) -> RetryHandle {
        RetryHandle {
            core: self.shared.clone(),
        }
    }
}

impl<S, P> Layer<S> for RetryLayer<P> {
    type Service = Retry<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_shared(inner, Arc::clone(&self.shared))
    }
}

/// The build mode of a [`RetryBuilder`] whose `build` makes a plain [`RetryLayer`].
///
/// A type, never a value: the mode decides at compile time what `build` returns, so that a
/// builder set up for HTTP (`retry_layer::http::Http`) cannot make a layer that lacks the
/// body buffer its policy needs.
#[derive(Debug)]
pub enum Plain {}

/// Builds a [`RetryLayer`]; each method reads like the setting it changes.
///
/// `M` is the build mode: [`Plain`] (from [`RetryLayer::builder`] and [`RetryBuilder::new`])
/// builds a [`RetryLayer<P>`]; the HTTP mode (from `HttpRetryLayer::builder` and
/// `GrpcRetryLayer::grpc_builder`, feature `http`) builds an `HttpRetryLayer`, which
/// buffers request bodies in front of the retries. Both share every setter below.
#[must_use]
pub struct RetryBuilder<P, M = Plain> {
    config: RetryConfig,
    policy: P,
    sink: Option<Arc<dyn DeadLetterSink>>,
    listener: Option<Listener>,
    // `fn() -> M`: the mode is a type only, and must not affect `Send`/`Sync`.
    mode: PhantomData<fn() -> M>,
}

impl<P: fmt::Debug, M> fmt::Debug for RetryBuilder<P, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBuilder")
            .field("config", &self.config)
            .field("policy", &self.policy)
            .field("sink", &self.sink)
            .field("mode", &std::any::type_name::<M>())
            .finish_non_exhaustive()
    }
}

impl<P> RetryBuilder<P, Plain> {
    /// Default settings with `policy`.
    pub fn new(policy: P) -> Self {
        Self::in_mode(policy)
    }

    /// Replaces the policy (how requests are copied and answers judged).
    ///
    /// Only a plain builder has this: the HTTP builder's policy is tied to its body
    /// buffer (change its classifier with `classifier` instead).
    pub fn policy<P2>(self, policy: P2) -> RetryBuilder<P2, Plain> {
        self.with_policy(policy)
    }

    /// Requests carry their own deadline
    /// ([`HasDeadline`](reliability_core::deadline::HasDeadline)): no attempt starts at or
    /// after it, a back-off that would end past it is not waited, and the call answers
    /// [`DeadlineExceeded`](reliability_core::deadline::DeadlineExceeded) (504 /
    /// `DEADLINE_EXCEEDED` through the core mapping) when it passes. The HTTP and gRPC
    /// builders read a request's deadline (its extensions) without this.
    pub fn with_deadlines(self) -> RetryBuilder<crate::policy::WithDeadlines<P>, Plain> {
        RetryBuilder {
            config: self.config,
            policy: crate::policy::WithDeadlines::new(self.policy),
            sink: self.sink,
            listener: self.listener,
            mode: PhantomData,
        }
    }

    /// Validates the settings and makes the layer.
    pub fn build(self) -> Result<RetryLayer<P>, ConfigError> {
        self.build_layer()
    }
}

impl<P, M> RetryBuilder<P, M> {
    /// Default settings with `policy`, in build mode `M`.
    pub(crate) fn in_mode(policy: P) -> Self {
        Self {
            config: RetryConfig::default(),
            policy,
            sink: None,
            listener: None,
            mode: PhantomData,
        }
    }

    /// Replaces every setting at once (the policy, sink and listener stay).
    pub fn config(mut self, config: RetryConfig) -> Self {
        self.config = config;
        self
    }

    /// The name in health reports.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Attempts in total, the first included (`1..=100`).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts;
        self
    }

    /// The waiting rule between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// No retry whose wait would end later than `max` after the first attempt began.
    pub fn max_elapsed(mut self, max: Duration) -> Self {
        self.config.max_elapsed = Some(max);
        self
    }

    /// Cuts each attempt off after `timeout` (retried as a timeout).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.config.attempt_timeout = Some(timeout);
        self
    }

    /// Fails the whole call after `deadline`, retries included.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = Some(deadline);
        self
    }

    /// Clamps upstream-requested delays (at most 1 h).
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.config.max_retry_after = max;
        self
    }

    /// The retry budget.
    pub fn budget(mut self, budget: BudgetConfig) -> Self {
        self.config.budget = budget;
        self
    }

    /// Seeds the jitter generator: the same seed and the same sequence of requests give
    /// the same delays.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Where requests that are given up on go.
    pub fn dead_letter(mut self, sink: impl DeadLetterSink) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// Where requests that are given up on go, for a sink shared by several layers.
    pub fn dead_letter_shared(mut self, sink: Arc<dyn DeadLetterSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Calls `listener` on retries, give-ups and critical failures.
    pub fn on_event(mut self, listener: impl Fn(&RetryEvent<'_>) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// The same settings with another policy, in mode `M2`.
    pub(crate) fn with_policy<P2, M2>(self, policy: P2) -> RetryBuilder<P2, M2> {
        RetryBuilder {
            config: self.config,
            policy,
            sink: self.sink,
            listener: self.listener,
            mode: PhantomData,
        }
    }

    /// The settings so far.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn settings_mut(&mut self) -> &mut RetryConfig {
        &mut self.config
    }

    /// The policy so far.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn policy_mut(&mut self) -> &mut P {
        &mut self.policy
    }

    /// Validates the settings and makes the retry layer (without anything a mode adds).
    pub(crate) fn build_layer(self) -> Result<RetryLayer<P>, ConfigError> {
        let c = self.config;
        c.validate()?;
        let needs_start_time = c.max_elapsed.is_some()
            || c.attempt_timeout.is_some()
            || c.deadline.is_some()
            || matches!(c.budget, BudgetConfig::Ratio(_))
            || self.sink.is_some();
        let metrics = Metrics::new(&c.name);
        let core = Core {
            name: c.name,
            schedule: Schedule {
                max_attempts: c.max_attempts,
                backoff: c.backoff,
                max_elapsed: c.max_elapsed,
                max_retry_after: c.max_retry_after,
            },
            attempt_timeout: c.attempt_timeout,
            deadline: c.deadline,
            budget: Budget::new(c.budget, Instant::now()),
            metrics,
            sink: self.sink,
            listener: self.listener,
            seed: c.seed,
            sequence: AtomicU64::new(0),
            needs_start_time,
        };
        Ok(RetryLayer {
            shared: Arc::new(Shared {
                core,
                policy: self.policy,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named() {
        let cases: [(RetryBuilder<ClassifierPolicy>, &str); 5] = [
            (RetryLayer::builder().max_attempts(0), "max_attempts"),
            (
                RetryLayer::builder().attempt_timeout(Duration::ZERO),
                "attempt_timeout",
            ),
            (
                RetryLayer::builder().max_retry_after(Duration::from_secs(7200)),
                "max_retry_after",
            ),
            (
                RetryLayer::builder().config(RetryConfig {
                    max_body_bytes: usize::MAX,
                    ..RetryConfig::default()
                }),
                "max_body_bytes",
            ),
            (
                RetryLayer::builder().budget(BudgetConfig::Ratio(
                    crate::budget::RatioBudgetConfig {
                        ratio: -1.0,
                        ..Default::default()
                    },
                )),
                "budget.ratio",
            ),
        ];
        for (builder, field) in cases {
            assert_eq!(builder.build().unwrap_err().field, field);
        }
    }

    #[test]
    fn unknown_config_fields_are_rejected() {
        let err = toml::from_str::<RetryConfig>("max_atempts = 3").unwrap_err();
        assert!(err.to_string().contains("max_atempts"), "{err}");
    }
}
