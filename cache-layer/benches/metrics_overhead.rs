//! What the `metrics` feature costs on the L1 hit path: the same cache built with a real
//! Prometheus recorder installed and with none; built without the feature, the same hit
//! with no metrics code at all (`l1_hit_feature_off`), the baseline that
//! `cargo xtask bench --report` sets the recorded figure against.

use std::hint::black_box;
use std::time::Duration;

use cache_layer::{Cache, CacheLayer};
use criterion::{Criterion, criterion_group, criterion_main};
#[cfg(feature = "metrics")]
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::{BoxError, Service, ServiceExt, service_fn};

type Key = fn(&String) -> Option<String>;

#[allow(clippy::ptr_arg)] // the key function takes the request type
fn key(k: &String) -> Option<String> {
    Some(k.clone())
}

/// A cache named `name` holding `hot`, ready to be called.
fn warmed(
    rt: &tokio::runtime::Runtime,
    name: &str,
    hot: &str,
) -> Cache<
    impl Service<String, Response = u64, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + 'static,
    Key,
    u64,
> {
    let layer = CacheLayer::builder(key as Key)
        .name(name)
        .ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    let bare = service_fn(|_: String| async { Ok::<u64, BoxError>(42) });
    let mut svc = tower::ServiceBuilder::new().layer(layer).service(bare);
    rt.block_on(svc.ready()).unwrap();
    rt.block_on(svc.call(hot.to_owned())).unwrap();
    svc
}

/// An L1 hit per iteration through the layer.
///
/// - `l1_hit_prometheus`: the cache was built while a `PrometheusRecorder` was the
///   recorder, so each hit also adds one to its `cache_lookups_total{result="hit"}`
///   handle (an atomic add on the recorder's counter; no registry look-up, no label, no
///   clock read);
/// - `l1_hit_no_recorder`: built with no recorder installed, its handles are the facade's
///   no-op handles, so each hit pays one branch on an empty handle.
#[cfg(feature = "metrics")]
fn l1_hit_with_and_without_recorder(c: &mut Criterion) {
    let rt = runtime();
    let recorder = PrometheusBuilder::new().build_recorder();
    let recorded = metrics::with_local_recorder(&recorder, || warmed(&rt, "bench", HOT));
    let silent = warmed(&rt, "bench", HOT);
    hits(
        c,
        &rt,
        [
            ("l1_hit_prometheus", recorded),
            ("l1_hit_no_recorder", silent),
        ],
    );
    // The recorder did count: the rendering names the hit counter.
    assert!(recorder.handle().render().contains("cache_lookups_total"));
}

/// Built without the feature: the same hit with no metrics code at all.
#[cfg(not(feature = "metrics"))]
fn l1_hit_with_and_without_recorder(c: &mut Criterion) {
    let rt = runtime();
    let plain = warmed(&rt, "bench", HOT);
    hits(c, &rt, [("l1_hit_feature_off", plain)]);
}

const HOT: &str = "price:BTC-USDT";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One L1 hit of `HOT` per iteration, through each named cache.
fn hits<S, const N: usize>(c: &mut Criterion, rt: &tokio::runtime::Runtime, caches: [(&str, S); N])
where
    S: Service<String, Response = u64, Error = BoxError>,
{
    let hot = HOT.to_owned();
    let mut g = c.benchmark_group("metrics_overhead");
    for (name, mut svc) in caches {
        g.bench_function(name, |b| {
            b.to_async(rt).iter(|| {
                let fut = svc.call(black_box(&hot).clone());
                async move { black_box(fut.await.unwrap()) }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, l1_hit_with_and_without_recorder);
criterion_main!(benches);
