//! [`SlaLayer`]: wraps a service in an [`Sla`] that records every call into a monitor.

use reliability_core::classify::ErrorClassifier;
use tower_layer::Layer;

use crate::monitor::SlaMonitor;
use crate::service::Sla;

/// Records every call's latency and outcome into an [`SlaMonitor`].
///
/// The outcome comes from a reliability-core classifier: [`ErrorClassifier`] by default
/// (`Ok` succeeds, `Err` fails, errors marked "do not retry" are ignored), or any
/// [`Classify`](reliability_core::classify::Classify) given to [`classifier`](Self::classifier),
/// such as `HttpClassifier` for HTTP responses.
#[derive(Debug, Clone)]
pub struct SlaLayer<C = ErrorClassifier> {
    monitor: SlaMonitor,
    classifier: C,
}

impl SlaLayer {
    /// A layer recording into `monitor`, classifying with [`ErrorClassifier`].
    pub fn new(monitor: SlaMonitor) -> Self {
        Self {
            monitor,
            classifier: ErrorClassifier,
        }
    }
}

impl<C> SlaLayer<C> {
    /// HTTP mode: 5xx, 429, 408 and transport errors fail
    /// ([`HttpClassifier`](reliability_core::classify::HttpClassifier)).
    #[cfg(feature = "http")]
    pub fn http(self) -> SlaLayer<reliability_core::classify::HttpClassifier> {
        self.classifier(reliability_core::classify::HttpClassifier::new())
    }

    /// tonic mode: UNAVAILABLE, DEADLINE_EXCEEDED and the other server-side codes fail
    /// ([`GrpcClassifier`](reliability_core::classify::GrpcClassifier)).
    #[cfg(feature = "grpc")]
    pub fn grpc(self) -> SlaLayer<reliability_core::classify::GrpcClassifier> {
        self.classifier(reliability_core::classify::GrpcClassifier)
    }

    /// Classifies outcomes with `classifier` instead.
    pub fn classifier<C2>(self, classifier: C2) -> SlaLayer<C2> {
        SlaLayer {
            monitor: self.monitor,
            classifier,
        }
    }

    /// The monitor calls are recorded into.
    pub fn monitor(&self) -> &SlaMonitor {
        &self.monitor
    }
}

impl<S, C: Clone> Layer<S> for SlaLayer<C> {
    type Service = Sla<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Sla::new(inner, self.monitor.clone(), self.classifier.clone())
    }
}
