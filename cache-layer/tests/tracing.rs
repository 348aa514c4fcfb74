//! The layer's span: one `cache` span per call at `debug`, with `source`, `cache.status`
//! and `outcome` recorded, seen by a subscriber that keeps every span's fields.

mod common;

use common::{Upstream, builder, paused_runtime, secs, stack};
use reliability_core::traced::Traced;
use tower::ServiceExt;

#[test]
fn one_span_per_call_with_status_and_outcome() {
    let spans = Traced::default();
    tracing::subscriber::with_default(spans.clone(), || {
        paused_runtime().block_on(async {
            let up = Upstream::default();
            let (svc, _) = stack(
                builder()
                    .name("prices")
                    .ttl(secs(10))
                    .stale_while_revalidate(secs(5)),
                &up,
                std::time::Duration::ZERO,
            );
            svc.clone().oneshot("k".to_owned()).await.unwrap(); // miss
            svc.clone().oneshot("k".to_owned()).await.unwrap(); // hit
            tokio::time::advance(secs(11)).await;
            svc.clone().oneshot("k".to_owned()).await.unwrap(); // stale
            up.set_failing(true);
            svc.oneshot("other".to_owned()).await.unwrap_err(); // miss, error
        });
    });
    let all = spans.spans("cache");
    let calls: Vec<(&str, &str)> = all
        .iter()
        .map(|s| {
            assert_eq!(s.field("source"), Some("prices"));
            let field = |name| s.field(name).unwrap_or("-");
            (field("cache.status"), field("outcome"))
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("miss", "ok"),
            ("hit", "ok"),
            ("stale", "ok"),
            ("miss", "error")
        ]
    );
}
