//! [`HedgeLayer`] and its [`HedgeBuilder`].

use std::sync::Arc;
use std::time::Duration;

use reliability_core::classify::ErrorClassifier;
use reliability_core::error::ConfigError;
use tower_layer::Layer;

use crate::config::{HedgeConfig, HedgeDelay};
use crate::hedger::{Hedger, Shared};
use crate::policy::{Cloned, ClonedWithDeadline};
use crate::service::Hedge;

/// A layer that hedges slow requests. Every service it makes shares one [`Hedger`]: one
/// latency window, one budget, one set of counters.
///
/// Made by [`HedgeLayer::builder`]; see the [crate docs](crate) for an example.
#[derive(Debug, Clone)]
pub struct HedgeLayer<P = Cloned, C = ErrorClassifier> {
    shared: Arc<Shared>,
    policy: P,
    classifier: C,
}

impl HedgeLayer {
    /// A builder for a layer named `name` (the `source` label of its metrics), with the
    /// [default settings](HedgeConfig::default): p95 delay, one hedge, a 10 % budget.
    pub fn builder(name: impl Into<String>) -> HedgeBuilder {
        HedgeBuilder {
            name: name.into(),
            config: HedgeConfig::default(),
            policy: Cloned,
            classifier: ErrorClassifier,
        }
    }

    /// A layer from `config`, validated.
    pub fn from_config(name: impl Into<String>, config: HedgeConfig) -> Result<Self, ConfigError> {
        Self::builder(name).config(config).build()
    }
}

impl<P, C> HedgeLayer<P, C> {
    /// The layer's counters and current delay.
    pub fn hedger(&self) -> Hedger {
        Hedger {
            shared: self.shared.clone(),
        }
    }
}

impl<S, P: Clone, C: Clone> Layer<S> for HedgeLayer<P, C> {
    type Service = Hedge<S, P, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge::new(
            inner,
            self.shared.clone(),
            self.policy.clone(),
            self.classifier.clone(),
        )
    }
}

/// Builds a [`HedgeLayer`]; every setting has a safe default, and [`build`](Self::build)
/// checks them all.
#[derive(Debug, Clone)]
#[must_use]
pub struct HedgeBuilder<P = Cloned, C = ErrorClassifier> {
    name: String,
    config: HedgeConfig,
    policy: P,
    classifier: C,
}

impl<P, C> HedgeBuilder<P, C> {
    /// Replaces every setting with `config`.
    pub fn config(mut self, config: HedgeConfig) -> Self {
        self.config = config;
        self
    }

    /// Hedge a fixed `delay` after the previous copy was sent.
    pub fn fixed_delay(mut self, delay: Duration) -> Self {
        self.config.delay = HedgeDelay::Fixed { after: delay };
        self
    }

    /// Hedge at a live `percentile` (in `[1, 100]`) of this layer's answer latencies;
    /// keeps the percentile settings already given, or the defaults.
    pub fn percentile(mut self, percentile: f64) -> Self {
        self.percentile_mut(|p, _, _, _, _| *p = percentile);
        self
    }

    /// How long one latency histogram collects before it is rotated out (percentile
    /// mode; default 10 s).
    pub fn window(mut self, window: Duration) -> Self {
        self.percentile_mut(|_, w, _, _, _| *w = window);
        self
    }

    /// Answers needed before the percentile is trusted (percentile mode; default 100).
    pub fn min_samples(mut self, samples: u64) -> Self {
        self.percentile_mut(|_, _, m, _, _| *m = samples);
        self
    }

    /// The least and the greatest delay (percentile mode; default 1 ms and 1 s).
    pub fn delay_bounds(mut self, floor: Duration, ceiling: Duration) -> Self {
        self.percentile_mut(|_, _, _, f, c| {
            *f = floor;
            *c = ceiling;
        });
        self
    }

    /// Copies sent besides the first, in `[0, 8]` (default 1).
    pub fn max_hedges(mut self, hedges: u32) -> Self {
        self.config.max_hedges = hedges;
        self
    }

    /// Hedges earned per request that could be hedged, in `[0, 1]` (default 0.1).
    pub fn budget_ratio(mut self, ratio: f64) -> Self {
        self.config.budget_ratio = ratio;
        self
    }

    /// The budget's starting and greatest balance, in hedges (default 10).
    pub fn budget_reserve(mut self, tokens: u32) -> Self {
        self.config.budget_reserve = tokens;
        self
    }

    /// Decides which requests are hedged and how they are copied (default: every request,
    /// cloned).
    pub fn policy<Q>(self, policy: Q) -> HedgeBuilder<Q, C> {
        HedgeBuilder {
            name: self.name,
            config: self.config,
            policy,
            classifier: self.classifier,
        }
    }

    /// Requests carry a [`Deadline`](reliability_core::deadline::Deadline)
    /// (`HasDeadline`): every request is hedged by cloning it, and no hedge is sent at or
    /// after its deadline.
    pub fn with_deadlines(self) -> HedgeBuilder<ClonedWithDeadline, C> {
        self.policy(ClonedWithDeadline)
    }

    /// Decides which answers are good; a failed copy does not answer while another is in
    /// flight (default: `Ok` is good).
    pub fn classifier<D>(self, classifier: D) -> HedgeBuilder<P, D> {
        HedgeBuilder {
            name: self.name,
            config: self.config,
            policy: self.policy,
            classifier,
        }
    }

    /// Checks the settings and makes the layer.
    pub fn build(self) -> Result<HedgeLayer<P, C>, ConfigError> {
        self.config.validate()?;
        Ok(HedgeLayer {
            shared: Arc::new(Shared::new(self.name, &self.config)),
            policy: self.policy,
            classifier: self.classifier,
        })
    }

    fn percentile_mut(
        &mut self,
        f: impl FnOnce(&mut f64, &mut Duration, &mut u64, &mut Duration, &mut Duration),
    ) {
        if matches!(self.config.delay, HedgeDelay::Fixed { .. }) {
            self.config.delay = HedgeDelay::default();
        }
        if let HedgeDelay::Percentile {
            percentile,
            window,
            min_samples,
            floor,
            ceiling,
        } = &mut self.config.delay
        {
            f(percentile, window, min_samples, floor, ceiling);
        }
    }
}

#[cfg(feature = "http")]
impl<P, C> HedgeBuilder<P, C> {
    /// HTTP mode: only idempotent requests with a `Clone` body are hedged (module
    /// [`http`](crate::http)), and a response the HTTP classifier calls a failure (5xx,
    /// 429, 408) does not answer while another copy is in flight.
    pub fn http(
        self,
    ) -> HedgeBuilder<crate::http::HttpReplay, reliability_core::classify::HttpClassifier> {
        self.policy(crate::http::HttpReplay::new(false))
            .classifier(reliability_core::classify::HttpClassifier::new())
    }
}

#[cfg(feature = "grpc")]
impl<P, C> HedgeBuilder<P, C> {
    /// gRPC mode: tonic calls are hedged with their request body replayed (module
    /// [`grpc`](crate::grpc)), and a status the gRPC classifier calls a failure
    /// (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, ...) does not answer while another copy is in
    /// flight.
    pub fn grpc(
        self,
    ) -> HedgeBuilder<crate::grpc::GrpcReplay, reliability_core::classify::GrpcClassifier> {
        self.policy(crate::grpc::GrpcReplay::default())
            .classifier(reliability_core::classify::GrpcClassifier)
    }
}

#[cfg(feature = "http")]
impl<C> HedgeBuilder<crate::http::HttpReplay, C> {
    /// Hedge `POST`, `PATCH` and every other method too, not only the idempotent ones.
    pub fn hedge_non_idempotent(self, yes: bool) -> Self {
        self.policy(crate::http::HttpReplay::new(yes))
    }
}
