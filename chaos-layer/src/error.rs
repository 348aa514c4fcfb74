//! [`InjectedFault`]: the error a chaos layer answers with.

use std::error::Error as StdError;
use std::fmt;

use reliability_core::answer::Refusal;
use reliability_core::failure::{Failure, FailureKind};

/// A fault the chaos layer injected in place of the upstream's answer.
///
/// It simulates an upstream failure, so its source is a [`Failure`] of kind
/// [`UpstreamFailed`](FailureKind::UpstreamFailed) and it is **not** marked "do not
/// retry": a retry layer, a breaker and a hedge layer treat it as they would a real one.
///
/// ```
/// use chaos_layer::InjectedFault;
/// use reliability_core::failure::{Failure, FailureKind};
///
/// let err: tower::BoxError = Box::new(InjectedFault::new("orders"));
/// assert_eq!(Failure::of(&*err).kind(), FailureKind::UpstreamFailed);
/// assert!(!reliability_core::error::is_do_not_retry(&*err));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFault {
    source: String,
    failure: Failure,
}

impl InjectedFault {
    /// A fault injected by the layer named `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            failure: Failure::new(FailureKind::UpstreamFailed),
        }
    }

    /// The name of the layer that injected it.
    pub fn source_name(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fault injected by chaos layer `{}`", self.source)
    }
}

impl StdError for InjectedFault {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.failure)
    }
}

impl Refusal for InjectedFault {
    fn failure(&self) -> Failure {
        self.failure
    }
}
