//! Properties of the whole layer, with the deterministic test embedder of `common`
//! (the test double of the user's model).

mod common;

use std::sync::Arc;

use common::{Ask, TestEmbedder, Upstream, ask, prompt_of};
use proptest::prelude::*;
use semantic_cache::{Lookup, Prompt, SemanticCacheLayer};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

/// An upstream that answers `answer:<namespace>:<text>`, so that an answer served to the
/// wrong namespace shows.
async fn namespaced_answer(req: Ask) -> Result<String, BoxError> {
    Ok(format!("answer:{}:{}", req.namespace, req.text))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A text whose cosine to a cached one is `c` is a semantic hit exactly when `c`
    /// reaches the threshold (outside the 1e-6 rounding tolerance), and then reports `c`.
    #[test]
    fn hit_iff_similarity_reaches_the_threshold(c in 0.5f64..1.0, threshold in 0.5f32..1.0) {
        prop_assume!((c as f32 - threshold).abs() > 1e-5);
        let hit = runtime().block_on(async {
            let layer = SemanticCacheLayer::builder(
                prompt_of as fn(&Ask) -> Option<Prompt>,
                Arc::new(TestEmbedder::default()),
            )
            .threshold(threshold)
            .build()
            .unwrap();
            let svc = ServiceBuilder::new().layer(layer).service(Upstream::default());
            svc.clone().oneshot(ask("p", "base")).await.unwrap();
            svc.oneshot(ask("p", &format!("base@{c}"))).await.unwrap().lookup
        });
        match hit {
            Lookup::Similar { similarity, .. } => {
                prop_assert!(c as f32 >= threshold);
                prop_assert!((similarity - c as f32).abs() < 1e-5);
            }
            Lookup::Miss => prop_assert!((c as f32) < threshold),
            other => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    /// Whatever the sequence of distinct texts and namespaces, the entries held never
    /// exceed `max_entries`, and each namespace only answers its own texts: the upstream
    /// answers with the namespace and the text, so an answer cached for one namespace
    /// and served to another carries the wrong namespace.
    #[test]
    fn bounded_and_isolated(
        texts in proptest::collection::vec((0usize..3, 0u32..40), 1..40),
        max in 1u64..10,
    ) {
        runtime().block_on(async {
            let layer = SemanticCacheLayer::builder(
                prompt_of as fn(&Ask) -> Option<Prompt>,
                Arc::new(TestEmbedder::default()),
            )
            .max_entries(max)
            .build()
            .unwrap();
            let handle = layer.handle();
            let svc = ServiceBuilder::new().layer(layer).service(service_fn(namespaced_answer));
            const NS: [&str; 3] = ["a", "b", "c"];
            for (ns, t) in texts {
                let r = svc.clone().oneshot(ask(NS[ns], &format!("t{t}"))).await.unwrap();
                let (answered_ns, answered_text) = r
                    .value
                    .strip_prefix("answer:")
                    .and_then(|rest| rest.split_once(':'))
                    .unwrap_or_else(|| panic!("malformed answer {:?}", r.value));
                assert_eq!(answered_ns, NS[ns], "never another namespace's answer ({:?})", r.lookup);
                assert_eq!(answered_text, format!("t{t}"), "never another text's answer");
                assert!(handle.stats().entries <= max);
            }
        });
    }
}
