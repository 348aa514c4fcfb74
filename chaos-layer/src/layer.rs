//! [`ChaosLayer`] and its [`ChaosBuilder`].

use std::sync::Arc;

use reliability_core::answer::AsError;
use reliability_core::error::ConfigError;
use tower_layer::Layer;

use crate::config::{ChaosConfig, LatencyDistribution};
use crate::handle::{ChaosHandle, State};
use crate::respond::{FnResponder, NoResponse};
use crate::service::Chaos;

/// A layer that injects faults and latency; off unless enabled. Every service it makes
/// shares one [`ChaosHandle`].
///
/// Made by [`ChaosLayer::builder`]; see the [crate docs](crate) for an example.
#[derive(Debug, Clone)]
pub struct ChaosLayer<A = AsError, R = NoResponse> {
    state: Arc<State>,
    answer: A,
    responder: R,
}

impl ChaosLayer {
    /// A builder for a layer named `name` (the `source` label of its metrics), disabled
    /// and with every rate at zero.
    pub fn builder(name: impl Into<String>) -> ChaosBuilder {
        ChaosBuilder {
            name: name.into(),
            config: ChaosConfig::default(),
            answer: AsError,
            responder: NoResponse,
        }
    }

    /// A layer from `config`, validated.
    pub fn from_config(name: impl Into<String>, config: ChaosConfig) -> Result<Self, ConfigError> {
        Self::builder(name).config(config).build()
    }
}

impl<A, R> ChaosLayer<A, R> {
    /// The switch of this layer and all its services.
    pub fn handle(&self) -> ChaosHandle {
        ChaosHandle {
            state: self.state.clone(),
        }
    }
}

impl<S, A: Clone, R: Clone> Layer<S> for ChaosLayer<A, R> {
    type Service = Chaos<S, A, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Chaos::new(
            inner,
            self.state.clone(),
            self.answer.clone(),
            self.responder.clone(),
        )
    }
}

/// Builds a [`ChaosLayer`]; [`build`](Self::build) checks every setting.
#[derive(Debug, Clone)]
#[must_use]
pub struct ChaosBuilder<A = AsError, R = NoResponse> {
    name: String,
    config: ChaosConfig,
    answer: A,
    responder: R,
}

impl<A, R> ChaosBuilder<A, R> {
    /// Replaces every setting with `config`.
    pub fn config(mut self, config: ChaosConfig) -> Self {
        self.config = config;
        self
    }

    /// Starts enabled (default: disabled).
    pub fn enabled(mut self, on: bool) -> Self {
        self.config.enabled = on;
        self
    }

    /// The seed of the random draws (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// The share of calls answered with an [`InjectedFault`](crate::InjectedFault), in
    /// `[0, 1]`.
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.config.error_rate = rate;
        self
    }

    /// The share of calls answered with the chosen response, in `[0, 1]`.
    pub fn response_rate(mut self, rate: f64) -> Self {
        self.config.response_rate = rate;
        self
    }

    /// The share of calls delayed, in `[0, 1]`, and how long a delay is.
    pub fn latency(mut self, rate: f64, latency: LatencyDistribution) -> Self {
        self.config.latency_rate = rate;
        self.config.latency = latency;
        self
    }

    /// The response of a "response" fault, made by `respond` for each such call.
    pub fn respond_with<F>(self, respond: F) -> ChaosBuilder<A, FnResponder<F>> {
        self.responder(FnResponder(Arc::new(respond)))
    }

    /// The response maker of a "response" fault (default: none, so a "response" fault is
    /// injected as an error).
    pub fn responder<Q>(self, responder: Q) -> ChaosBuilder<A, Q> {
        ChaosBuilder {
            name: self.name,
            config: self.config,
            answer: self.answer,
            responder,
        }
    }

    /// How an injected error is answered (default: the `InjectedFault` error, boxed).
    pub fn answer<B>(self, answer: B) -> ChaosBuilder<B, R> {
        ChaosBuilder {
            name: self.name,
            config: self.config,
            answer,
            responder: self.responder,
        }
    }

    /// Checks the settings and makes the layer.
    pub fn build(self) -> Result<ChaosLayer<A, R>, ConfigError> {
        self.config.validate()?;
        Ok(ChaosLayer {
            state: Arc::new(State::new(self.name, self.config)),
            answer: self.answer,
            responder: self.responder,
        })
    }
}

#[cfg(feature = "http")]
impl<A, R> ChaosBuilder<A, R> {
    /// HTTP mode: an injected error is a `502 Bad Gateway` response (the failure table's
    /// answer to an upstream failure) with the fault in its extensions.
    pub fn http(self) -> ChaosBuilder<reliability_core::answer::AsHttp, R> {
        self.answer(reliability_core::answer::AsHttp)
    }

    /// A "response" fault answers an empty response with `status` (e.g. 503).
    pub fn respond_status(
        self,
        status: http::StatusCode,
    ) -> ChaosBuilder<A, crate::http::StatusResponder> {
        self.responder(crate::http::StatusResponder::new(status))
    }
}
