//! [`ResponseFuture`]: the cache's answer, ready at once on a hit.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reliability_core::clock::Instant;
use tower::BoxError;
use tower_service::Service;

use crate::backend::memory::Entry;
use crate::engine::{Engine, Origin};
use crate::singleflight::{Join, LeaderGuard, Waited, Waiter};
use crate::status::CacheStatus;

/// The future of the miss path through the lower tiers (`lower::read_through`).
pub(crate) type LowerFuture<V> =
    futures_util::future::BoxFuture<'static, (Result<V, BoxError>, CacheStatus)>;

pin_project! {
    /// The future of [`Cache`](crate::Cache): a ready value on a hit, the upstream call
    /// on a miss, or a wait for another caller's upstream call.
    pub struct ResponseFuture<F, S, Req, V> {
        #[pin]
        state: State<F, S, Req, V>,
        // `None` on a hit: the hit path takes no reference count on the cache.
        engine: Option<Arc<Engine<V>>>,
        // The layer's span, entered while polled; `Span::none()` on a hit (recorded and
        // closed in `call`) and whenever the span is disabled.
        span: tracing::Span,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateOwned]
    enum State<F, S, Req, V> {
        // A hit (already annotated): no allocation, no inner call.
        Ready { value: Option<V> },
        // Not cacheable: the inner call as is.
        Bypass { #[pin] fut: F },
        // A miss with a lower tier: lookup there, then upstream (boxed: I/O-bound path).
        Lower { fut: LowerFuture<V> },
        // This request makes the upstream call (and leads its flight, if any).
        Leading {
            #[pin] fut: F,
            guard: Option<LeaderGuard<V>>,
            key: String,
            prior: Option<Arc<Entry<V>>>,
            started: Instant,
        },
        // This request waits for another's upstream call.
        Following {
            waiter: Waiter<V>,
            svc: S,
            req: Option<Req>,
            key: String,
            prior: Option<Arc<Entry<V>>>,
        },
        // The leader went away or may not share: this request readies its own service.
        Readying {
            svc: S,
            req: Option<Req>,
            guard: Option<LeaderGuard<V>>,
            store: bool,
            key: String,
            prior: Option<Arc<Entry<V>>>,
        },
        Done,
    }
}

impl<F, S, Req, V> fmt::Debug for ResponseFuture<F, S, Req, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Ready { .. } => "Ready",
            State::Bypass { .. } => "Bypass",
            State::Lower { .. } => "Lower",
            State::Leading { .. } => "Leading",
            State::Following { .. } => "Following",
            State::Readying { .. } => "Readying",
            State::Done => "Done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, S, Req, V> ResponseFuture<F, S, Req, V> {
    pub(crate) fn ready(value: V) -> Self {
        Self {
            state: State::Ready { value: Some(value) },
            engine: None,
            span: tracing::Span::none(),
        }
    }

    /// This future carries the layer's span `span` until it answers.
    pub(crate) fn in_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    pub(crate) fn bypass(engine: Arc<Engine<V>>, fut: F) -> Self {
        Self {
            state: State::Bypass { fut },
            engine: Some(engine),
            span: tracing::Span::none(),
        }
    }

    pub(crate) fn lower(engine: Arc<Engine<V>>, fut: LowerFuture<V>) -> Self {
        Self {
            state: State::Lower { fut },
            engine: Some(engine),
            span: tracing::Span::none(),
        }
    }

    pub(crate) fn leading(
        engine: Arc<Engine<V>>,
        fut: F,
        guard: Option<LeaderGuard<V>>,
        key: String,
        prior: Option<Arc<Entry<V>>>,
        started: Instant,
    ) -> Self {
        Self {
            state: State::Leading {
                fut,
                guard,
                key,
                prior,
                started,
            },
            engine: Some(engine),
            span: tracing::Span::none(),
        }
    }

    pub(crate) fn following(
        engine: Arc<Engine<V>>,
        waiter: Waiter<V>,
        svc: S,
        req: Req,
        key: String,
        prior: Option<Arc<Entry<V>>>,
    ) -> Self {
        Self {
            state: State::Following {
                waiter,
                svc,
                req: Some(req),
                key,
                prior,
            },
            engine: Some(engine),
            span: tracing::Span::none(),
        }
    }
}

impl<F, S, Req, V, E> Future for ResponseFuture<F, S, Req, V>
where
    F: Future<Output = Result<V, E>>,
    E: Into<BoxError>,
    S: Service<Req, Response = V, Error = E, Future = F>,
    V: Clone + Send + Sync + 'static,
{
    type Output = Result<V, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let StateProj::Ready { value } = this.state.as_mut().project() {
            let v = value
                .take()
                .expect("ResponseFuture polled after completion");
            return Poll::Ready(Ok(v));
        }
        let engine: &Engine<V> = this
            .engine
            .as_deref()
            .expect("every state but Ready carries the cache");
        let span: &tracing::Span = this.span;
        let _entered = span.enter();
        loop {
            match this.state.as_mut().project() {
                StateProj::Ready { .. } => unreachable!("handled above"),
                StateProj::Bypass { fut } => {
                    let r = ready!(fut.poll(cx));
                    this.state.set(State::Done);
                    CacheStatus::Bypass.record(span, r.is_ok());
                    return Poll::Ready(r.map_err(Into::into).map(|mut v| {
                        engine.annotate(&mut v, &CacheStatus::Bypass);
                        v
                    }));
                }
                StateProj::Lower { fut } => {
                    let (r, status) = ready!(fut.as_mut().poll(cx));
                    this.state.set(State::Done);
                    status.record(span, r.is_ok());
                    return Poll::Ready(r.map(|mut v| {
                        engine.annotate(&mut v, &status);
                        v
                    }));
                }
                StateProj::Leading {
                    fut,
                    guard,
                    key,
                    prior,
                    started,
                } => {
                    let r = ready!(fut.poll(cx)).map_err(Into::into);
                    let (r, status) = engine.complete(
                        guard.take(),
                        key,
                        r,
                        prior.as_ref(),
                        *started,
                        Origin::Request,
                    );
                    this.state.set(State::Done);
                    status.record(span, r.is_ok());
                    return Poll::Ready(r.map(|mut v| {
                        engine.annotate(&mut v, &status);
                        v
                    }));
                }
                StateProj::Following { waiter, key, .. } => {
                    let next = match ready!(waiter.poll_wait(cx)) {
                        Waited::Value(r) => {
                            this.state.set(State::Done);
                            let status = CacheStatus::Miss {
                                stored: false,
                                collapsed: true,
                            };
                            status.record(span, r.is_ok());
                            return Poll::Ready(match r {
                                Ok(mut v) => {
                                    engine.annotate(&mut v, &status);
                                    Ok(v)
                                }
                                Err(e) => Err(Box::new(e)),
                            });
                        }
                        Waited::Abandoned => match engine.flights.join(key, engine.epoch()) {
                            Join::Follow(w) => {
                                *waiter = w;
                                continue;
                            }
                            Join::Lead(g) => (Some(g), true),
                            Join::Full => (None, true),
                        },
                        Waited::Unshareable => (None, false),
                    };
                    let StateOwned::Following {
                        svc,
                        req,
                        key,
                        prior,
                        ..
                    } = this.state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("matched Following above")
                    };
                    this.state.set(State::Readying {
                        svc,
                        req,
                        guard: next.0,
                        store: next.1,
                        key,
                        prior,
                    });
                }
                StateProj::Readying { svc, req, .. } => {
                    if let Err(e) = ready!(svc.poll_ready(cx)) {
                        // Dropping the guard (if any) releases this flight's followers.
                        this.state.set(State::Done);
                        MISS.record(span, false);
                        return Poll::Ready(Err(e.into()));
                    }
                    let req = req.take().expect("request present until called");
                    let fut = svc.call(req);
                    let StateOwned::Readying {
                        guard,
                        store,
                        key,
                        prior,
                        ..
                    } = this.state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("matched Readying above")
                    };
                    if store {
                        crate::metrics::bump(&engine.metrics.misses);
                        let started = engine.clock.now();
                        this.state.set(State::Leading {
                            fut,
                            guard,
                            key,
                            prior,
                            started,
                        });
                    } else {
                        this.state.set(State::Bypass { fut });
                    }
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// The status of a call that went upstream (for its span).
const MISS: CacheStatus = CacheStatus::Miss {
    stored: false,
    collapsed: false,
};

/// Runs a background refresh of `guard`'s key on the current tokio runtime. Without a
/// runtime there is no background: the refresh is skipped (the guard's drop releases
/// anyone who joined) and the stale copy keeps being served within its window.
pub(crate) fn spawn_refresh<S, Req, V>(
    engine: Arc<Engine<V>>,
    guard: LeaderGuard<V>,
    mut svc: S,
    req: Req,
    prior: Arc<Entry<V>>,
) where
    S: Service<Req, Response = V> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    V: Clone + Send + Sync + 'static,
    Req: Send + 'static,
{
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::debug!("no tokio runtime: background refresh skipped");
        return;
    };
    let started = engine.clock.now();
    let fut = svc.call(req);
    handle.spawn(async move {
        let r = fut.await.map_err(Into::into);
        let key = guard.key().to_owned();
        let (_, status) =
            engine.complete(Some(guard), &key, r, Some(&prior), started, Origin::Refresh);
        if matches!(status, CacheStatus::Miss { stored: true, .. }) {
            engine.write_through(&key).await;
        }
    });
}
