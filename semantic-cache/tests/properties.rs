//! Properties of the whole layer, with the deterministic test embedder of `common`
//! (the test double of the user's model).

mod common;

use std::sync::Arc;

use common::{Ask, TestEmbedder, Upstream, ask, prompt_of};
use proptest::prelude::*;
use semantic_cache::{Lookup, Prompt, SemanticCacheLayer};
use tower::{ServiceBuilder, ServiceExt};

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
    /// exceed `max_entries`, and each namespace only answers its own texts.
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
            let svc = ServiceBuilder::new().layer(layer).service(Upstream::default());
            const NS: [&str; 3] = ["a", "b", "c"];
            for (ns, t) in texts {
                let r = svc.clone().oneshot(ask(NS[ns], &format!("t{t}"))).await.unwrap();
                assert_eq!(r.value, format!("answer:t{t}"), "never another text's answer");
                assert!(handle.stats().entries <= max);
            }
        });
    }
}
