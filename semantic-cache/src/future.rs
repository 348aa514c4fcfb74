//! [`ResponseFuture`]: ready on an exact hit, the inner future on a bypass, the miss path
//! otherwise.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use pin_project_lite::pin_project;
use tower::BoxError;

use crate::response::{Lookup, SemanticResponse};

pin_project! {
    /// The future of [`SemanticCache`](crate::SemanticCache).
    ///
    /// An exact hit is answered by a ready variant (no allocation); a request without a
    /// prompt polls the inner future in place. A miss embeds, searches and may wait for
    /// another caller's upstream call: that path is one boxed future, whose cost is small
    /// next to an embedding.
    #[project = Proj]
    pub struct ResponseFuture<F, V> {
        #[pin]
        state: State<F, V>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, V> {
        Ready { answer: Option<V> },
        Bypass { #[pin] fut: F },
        Miss { fut: BoxFuture<'static, Result<SemanticResponse<V>, BoxError>> },
    }
}

impl<F, V> ResponseFuture<F, V> {
    pub(crate) fn ready(value: V) -> Self {
        Self {
            state: State::Ready {
                answer: Some(value),
            },
        }
    }

    pub(crate) fn bypass(fut: F) -> Self {
        Self {
            state: State::Bypass { fut },
        }
    }

    pub(crate) fn miss(fut: BoxFuture<'static, Result<SemanticResponse<V>, BoxError>>) -> Self {
        Self {
            state: State::Miss { fut },
        }
    }
}

impl<F, V, E> Future for ResponseFuture<F, V>
where
    F: Future<Output = Result<V, E>>,
    E: Into<BoxError>,
{
    type Output = Result<SemanticResponse<V>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Proj { state } = self.project();
        match state.project() {
            StateProj::Ready { answer } => match answer.take() {
                Some(v) => Poll::Ready(Ok(SemanticResponse::new(v, Lookup::Exact))),
                None => Poll::Ready(Err("semantic cache future polled after completion".into())),
            },
            StateProj::Bypass { fut } => {
                let r = ready!(fut.poll(cx));
                Poll::Ready(
                    r.map(|v| SemanticResponse::new(v, Lookup::Bypass))
                        .map_err(Into::into),
                )
            }
            StateProj::Miss { fut } => fut.as_mut().poll(cx),
        }
    }
}
