//! [`SemanticCache`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::BoxError;
use tower_service::Service;
use tracing::Instrument;

use crate::engine::{ExactKey, bump};
use crate::future::ResponseFuture;
use crate::handle::SemanticHandle;
use crate::layer::{PromptOf, Shared};
use crate::response::Lookup;

/// Answers requests by meaning: see the [crate docs](crate).
pub struct SemanticCache<S, P, V> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared<P, V>>,
}

impl<S: Clone, P, V> Clone for SemanticCache<S, P, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, P, V> fmt::Debug for SemanticCache<S, P, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemanticCache")
            .field("inner", &self.inner)
            .field("engine", &self.shared.engine)
            .finish()
    }
}

impl<S, P, V> SemanticCache<S, P, V> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The cache's handle.
    pub fn handle(&self) -> SemanticHandle<V> {
        SemanticHandle {
            engine: self.shared.engine.clone(),
        }
    }
}

impl<S, P, V, Req> Service<Req> for SemanticCache<S, P, V>
where
    S: Service<Req, Response = V> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    P: PromptOf<Req>,
    V: Clone + Send + Sync + 'static,
    Req: Send + 'static,
{
    type Response = crate::SemanticResponse<V>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, V>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let engine = &self.shared.engine;
        // A disabled span is `Span::none()`: no allocation, no field evaluated.
        let span = tracing::debug_span!(
            "semantic_cache",
            source = engine.config.name.as_str(),
            outcome = tracing::field::Empty,
        );
        let prompt = match self.shared.prompt.prompt(&req) {
            Some(p) if p.text.len() <= engine.config.max_text_bytes => p,
            _ => {
                bump(&engine.metrics.bypassed);
                span.record("outcome", Lookup::Bypass.label());
                return ResponseFuture::bypass(span.in_scope(|| self.inner.call(req)));
            }
        };
        let key = ExactKey::of(&prompt.namespace, &prompt.text);
        if let Some(v) = engine.exact(&prompt.namespace, &key) {
            span.record("outcome", Lookup::Exact.label());
            return ResponseFuture::ready(v);
        }
        // The ready service goes with the request; this one gets a fresh clone that must
        // be driven to readiness again (tower's clone-and-replace idiom).
        let clone = self.inner.clone();
        let mut svc = std::mem::replace(&mut self.inner, clone);
        let call = move || {
            let fut = svc.call(req);
            async move { fut.await.map_err(Into::into) }
        };
        let miss = engine
            .clone()
            .miss(prompt.namespace, prompt.text, key, call);
        let recorded = span.clone();
        ResponseFuture::miss(Box::pin(
            async move {
                let r = miss.await;
                let outcome = r.as_ref().map_or("error", |a| a.lookup.label());
                recorded.record("outcome", outcome);
                r
            }
            .instrument(span),
        ))
    }
}
