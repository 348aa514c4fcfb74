//! The exported families against the cache's own stats: exact, similar and miss lookups,
//! computed and cached embeddings.
//!
//! The layer is built inside `metrics::with_local_recorder`: its handles are registered
//! then, bound to this test's recorder, and record into it afterwards.

mod common;

use std::sync::Arc;

use common::{Ask, TestEmbedder, Upstream, ask, prompt_of};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use semantic_cache::{Lookup, Prompt, SemanticCacheLayer};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::test(start_paused = true)]
async fn lookups_and_embeddings_equal_the_stats() {
    let recorder = DebuggingRecorder::new();
    let layer = metrics::with_local_recorder(&recorder, || {
        SemanticCacheLayer::builder(
            prompt_of as fn(&Ask) -> Option<Prompt>,
            Arc::new(TestEmbedder::default()),
        )
        .name("llm")
        .build()
        .unwrap()
    });
    let handle = layer.handle();
    let upstream = Upstream::default();
    let svc = ServiceBuilder::new().layer(layer).service(upstream.clone());
    let get = |text: &str| svc.clone().oneshot(ask("geo", text));
    let mut seen = Vec::new();
    for text in [
        "paris",      // miss: embedded
        "paris",      // exact
        "paris@0.97", // similar: embedded
        "paris@0.97", // similar again: its embedding cached
        "rome",       // miss: embedded
        "rome",       // exact
        "oslo",       // miss: embedded
    ] {
        seen.push(get(text).await.unwrap().lookup);
    }
    assert!(matches!(seen[2], Lookup::Similar { .. }), "{seen:?}");

    let stats = handle.stats();
    let m: Vec<_> = recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v)| {
            let key = k.key();
            let labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, v)
        })
        .collect();
    let counter = |name: &str, result: &str| {
        m.iter()
            .find_map(|(n, ls, v)| {
                let wanted = [("source", "llm"), ("result", result)];
                let same = ls.len() == 2
                    && wanted
                        .iter()
                        .all(|(k, x)| ls.iter().any(|(a, b)| a == k && b == x));
                match v {
                    DebugValue::Counter(c) if n == name && same => Some(*c),
                    _ => None,
                }
            })
            .unwrap_or_else(|| panic!("{name}{{result={result}}} missing"))
    };
    // The figures themselves, so the comparison cannot pass on zeros.
    assert_eq!(
        (stats.exact_hits, stats.similar_hits, stats.misses),
        (2, 2, 3)
    );
    let lookups = |r| counter("semantic_cache_lookups_total", r);
    assert_eq!(lookups("exact"), stats.exact_hits);
    assert_eq!(lookups("similar"), stats.similar_hits);
    assert_eq!(lookups("miss"), stats.misses);
    let e = stats.embeddings;
    assert_eq!(
        counter("semantic_cache_embeddings_total", "computed"),
        e.embedded
    );
    assert_eq!(
        counter("semantic_cache_embeddings_total", "cached"),
        e.memory_hits + e.lower_hits
    );
    assert!(e.memory_hits >= 1 && e.embedded == 4, "{e:?}");
    assert_eq!(upstream.calls(), 3);
    for (name, labels, _) in &m {
        for (k, v) in labels {
            assert!(
                !v.contains("paris") && !v.contains("geo"),
                "{name}: {k}={v} names a prompt or a namespace"
            );
        }
    }
}
