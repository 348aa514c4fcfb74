//! Test doubles shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use semantic_cache::{Embedder, Prompt};
use tower::BoxError;

/// Dimension of the test vectors: 512 orthogonal planes.
pub const DIM: usize = 1024;

/// **The test double of the user-supplied embedder.** A real deployment plugs in a model
/// (an embeddings API, a local model); these tests need cosines they can state exactly, so
/// this embedder is deterministic and geometric:
///
/// - a text `name` maps to the unit vector on the first axis of `name`'s plane (chosen by
///   an FNV-1a hash of `name`), so distinct names are orthogonal (similarity 0);
/// - a text `name@c` maps to `c·e₁ + √(1−c²)·e₂` in that same plane, so its cosine
///   similarity to `name` is exactly `c` (to `f32` rounding);
/// - a text containing `fail!` makes the call fail; `nan!` yields a NaN vector.
///
/// It counts its calls and the texts it was given, and may take `delay` per call.
#[derive(Debug, Default)]
pub struct TestEmbedder {
    pub calls: AtomicUsize,
    pub texts: AtomicUsize,
    /// How long a call takes (zero: answers at once).
    pub delay: Duration,
}

pub fn plane(name: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % (DIM as u64 / 2)) as usize * 2
}

pub fn vector_of(text: &str) -> Vec<f32> {
    let (name, c) = match text.split_once('@') {
        Some((n, c)) => (n, c.parse::<f64>().unwrap_or(1.0)),
        None => (text, 1.0),
    };
    let mut v = vec![0.0f32; DIM];
    let p = plane(name);
    v[p] = c as f32;
    v[p + 1] = (1.0 - c * c).max(0.0).sqrt() as f32;
    if text.contains("nan!") {
        v[0] = f32::NAN;
    }
    v
}

impl Embedder for TestEmbedder {
    fn model(&self) -> &str {
        "test-planes-v1"
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, BoxError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        Box::pin(async move {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            if texts.iter().any(|t| t.contains("fail!")) {
                return Err("embedding service unavailable".into());
            }
            Ok(texts.iter().map(|t| vector_of(t)).collect())
        })
    }
}

/// A request: namespace and text.
#[derive(Debug, Clone)]
pub struct Ask {
    pub namespace: &'static str,
    pub text: String,
}

pub fn ask(namespace: &'static str, text: &str) -> Ask {
    Ask {
        namespace,
        text: text.to_owned(),
    }
}

pub fn prompt_of(req: &Ask) -> Option<Prompt> {
    (!req.text.is_empty()).then(|| Prompt::new(req.namespace, req.text.clone()))
}

/// An upstream that answers `answer:<text>` after `delay`, counting its calls; texts
/// containing `boom` fail.
#[derive(Debug, Clone, Default)]
pub struct Upstream {
    pub calls: Arc<AtomicUsize>,
    pub delay: Duration,
}

impl Upstream {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl tower::Service<Ask> for Upstream {
    type Response = String;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<String, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Ask) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay;
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if req.text.contains("boom") {
                return Err(std::io::Error::other("upstream down").into());
            }
            Ok(format!("answer:{}", req.text))
        })
    }
}
