//! The exported families against the cache's own figures: a scripted sequence on paused
//! time, then every `cache_*` family must equal what the snapshot and the stats report.
//!
//! Each test builds its cache inside `metrics::with_local_recorder`: the handles are
//! registered then, bound to that test's recorder, and keep recording into it from any
//! thread afterwards (spawned refreshes, L3's blocking pool).

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_layer::backend::disk::DiskTier;
use cache_layer::backend::redis::RedisTier;
use cache_layer::backend::{EntryMeta, Stored};
use cache_layer::{CacheHandle, CacheStats};
use common::{
    Key, Upstream, builder, key, pttl, secs, settle, stack, subscribers, u64_codec, within,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use reliability_core::harness::RedisServer;
use reliability_core::health::CacheLevelSnapshot;
use tokio::time::advance;
use tower::{BoxError, Service, ServiceExt};

/// One recorded value: name, labels, value.
type Sample = (String, Vec<(String, String)>, DebugValue);

/// One snapshot of a recorder (reading drains it, so each test reads once).
struct Scrape(Vec<Sample>);

impl Scrape {
    fn of(s: &Snapshotter) -> Self {
        Self(
            s.snapshot()
                .into_vec()
                .into_iter()
                .map(|(k, _, _, v)| {
                    let key = k.key();
                    let labels = key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    (key.name().to_owned(), labels, v)
                })
                .collect(),
        )
    }

    /// The value of `name` whose labels are exactly `labels`.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        self.0.iter().find_map(|(n, ls, v)| {
            let same = ls.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, val)| ls.iter().any(|(lk, lv)| lk == k && lv == val));
            (n == name && same).then_some(v)
        })
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.find(name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("counter {name}{labels:?}: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(name, labels) {
            Some(DebugValue::Gauge(g)) => g.into_inner(),
            other => panic!("gauge {name}{labels:?}: {other:?}"),
        }
    }

    fn observations(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        match self.find(name, labels) {
            Some(DebugValue::Histogram(h)) => h.len(),
            other => panic!("histogram {name}{labels:?}: {other:?}"),
        }
    }

    /// Every label is one of the bounded set: never a key, a URL or a user.
    fn assert_bounded_labels(&self) {
        for (name, labels, _) in &self.0 {
            for (k, v) in labels {
                let ok = match k.as_str() {
                    "source" => ["prices", "disk", "edge-a", "edge-b"].contains(&v.as_str()),
                    "tier" => ["l1", "l2", "l3"].contains(&v.as_str()),
                    "result" => v == "hit" || v == "miss",
                    "reason" => v == "revalidating" || v == "upstream_error",
                    "direction" => v == "sent" || v == "received",
                    _ => false,
                };
                assert!(ok, "{name}: label {k}={v}");
            }
        }
    }
}

fn level<'a>(levels: &'a [CacheLevelSnapshot], name: &str) -> &'a CacheLevelSnapshot {
    levels.iter().find(|l| l.level == name).unwrap()
}

async fn get<S>(svc: &mut S, k: &str) -> Result<u64, BoxError>
where
    S: Service<String, Response = u64, Error = BoxError>,
{
    svc.ready().await?.call(k.to_owned()).await
}

/// Hits, misses, stale of both kinds, a coalesced join and an upstream error, on L1.
#[tokio::test(start_paused = true)]
async fn l1_families_equal_the_snapshot() {
    let recorder = DebuggingRecorder::new();
    let up = Upstream::default();
    let (mut svc, handle) = metrics::with_local_recorder(&recorder, || {
        stack(
            builder()
                .name("prices")
                .ttl(secs(10))
                .stale_while_revalidate(secs(5))
                .stale_if_error(secs(20)),
            &up,
            Duration::from_millis(10),
        )
    });

    get(&mut svc, "k").await.unwrap(); // miss
    get(&mut svc, "k").await.unwrap(); // hit
    get(&mut svc, "k").await.unwrap(); // hit
    get(&mut svc, "j").await.unwrap(); // miss
    // Two callers of one missing key: the second joins the first's call.
    let (a, b) = tokio::join!(
        svc.clone().oneshot("c".to_owned()),
        svc.clone().oneshot("c".to_owned())
    );
    assert_eq!(a.unwrap(), b.unwrap());
    advance(secs(10)).await;
    get(&mut svc, "k").await.unwrap(); // stale, refreshed behind
    settle().await; // the refresh starts its upstream call (10 ms)...
    advance(Duration::from_millis(20)).await;
    settle().await; // ...and stores its answer
    get(&mut svc, "k").await.unwrap(); // hit on the refreshed value
    up.set_failing(true);
    advance(secs(16)).await;
    get(&mut svc, "k").await.unwrap(); // stale-if-error
    get(&mut svc, "gone").await.unwrap_err(); // miss, the upstream's error
    handle.publish_metrics();

    let stats: CacheStats = handle.stats();
    let snap = handle.snapshot();
    let l1 = level(&snap.levels, "l1");
    let m = Scrape::of(&recorder.snapshotter());
    let lookups = |result| {
        m.counter(
            "cache_lookups_total",
            &[("source", "prices"), ("tier", "l1"), ("result", result)],
        )
    };
    // The figures themselves, so the comparison below cannot pass on zeros.
    assert_eq!((l1.hits, l1.misses), (4, 6), "{l1:?}");
    assert_eq!((stats.stale_revalidate, stats.stale_if_error), (1, 1));
    assert_eq!(stats.coalesced, 1);

    assert_eq!(lookups("hit"), l1.hits);
    assert_eq!(lookups("miss"), l1.misses);
    let stale = |reason| {
        m.counter(
            "cache_stale_served_total",
            &[("source", "prices"), ("reason", reason)],
        )
    };
    assert_eq!(stale("revalidating"), stats.stale_revalidate);
    assert_eq!(stale("upstream_error"), stats.stale_if_error);
    assert_eq!(
        stale("revalidating") + stale("upstream_error"),
        snap.stale_served
    );
    assert_eq!(
        m.counter("cache_coalesced_total", &[("source", "prices")]),
        snap.coalesced
    );
    assert_eq!(
        m.counter(
            "cache_errors_total",
            &[("source", "prices"), ("tier", "l1")]
        ),
        l1.errors
    );
    let sized = [("source", "prices"), ("tier", "l1")];
    assert_eq!(m.gauge("cache_entries", &sized), l1.entries as f64);
    assert_eq!(m.gauge("cache_size_bytes", &sized), l1.bytes as f64);
    assert!(
        m.find("cache_lookup_duration_seconds", &sized).is_none(),
        "L1 is never timed for the histogram"
    );
    m.assert_bounded_labels();
}

/// L3 on disk: hits and misses by tier, every lookup timed, the gauges from
/// `publish_metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l3_families_equal_the_tier_figures() {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskTier::open(dir.path().join("cache.redb"), 1 << 20).unwrap();
    let meta = EntryMeta {
        stored_at: SystemTime::now(),
        ttl: secs(600),
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        fetch_cost: Duration::ZERO,
        negative: false,
        tags: Vec::new(),
    };
    for (k, v) in [("a", 7u64), ("b", 8)] {
        let value = Bytes::copy_from_slice(&v.to_le_bytes());
        let stored = Stored {
            value,
            meta: meta.clone(),
        };
        disk.set_blocking(k, &stored).unwrap();
    }
    let recorder = DebuggingRecorder::new();
    let up = Upstream::default();
    let (mut svc, handle): (_, CacheHandle<u64>) = metrics::with_local_recorder(&recorder, || {
        stack(
            builder().name("disk").l3(disk, u64_codec()),
            &up,
            Duration::ZERO,
        )
    });
    assert_eq!(get(&mut svc, "a").await.unwrap(), 7); // L1 miss, L3 hit
    assert_eq!(get(&mut svc, "a").await.unwrap(), 7); // L1 hit
    assert_eq!(get(&mut svc, "b").await.unwrap(), 8); // L1 miss, L3 hit
    assert_eq!(get(&mut svc, "z").await.unwrap(), 1); // both miss: upstream
    handle.publish_metrics();

    let stats = handle.stats();
    let snap = handle.snapshot();
    let m = Scrape::of(&recorder.snapshotter());
    let count = |tier, result| {
        m.counter(
            "cache_lookups_total",
            &[("source", "disk"), ("tier", tier), ("result", result)],
        )
    };
    assert_eq!((stats.l3_hits, stats.l3_misses), (2, 1));
    assert_eq!(count("l3", "hit"), stats.l3_hits);
    assert_eq!(count("l3", "miss"), stats.l3_misses);
    assert_eq!(count("l1", "hit"), level(&snap.levels, "l1").hits);
    assert_eq!(count("l1", "miss"), level(&snap.levels, "l1").misses);
    let l3 = [("source", "disk"), ("tier", "l3")];
    assert_eq!(
        m.observations("cache_lookup_duration_seconds", &l3) as u64,
        stats.l3_hits + stats.l3_misses,
        "every L3 lookup is timed"
    );
    let disk_level = level(&snap.levels, "l3");
    assert_eq!(m.gauge("cache_entries", &l3), disk_level.entries as f64);
    assert_eq!(m.gauge("cache_size_bytes", &l3), disk_level.bytes as f64);
    assert!(disk_level.entries >= 2);
    m.assert_bounded_labels();
}

/// L2 on a real Redis, two instances: lookups by tier, their latency, and the pub/sub
/// invalidation A sends and B receives, against each instance's stats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l2_families_equal_the_tier_figures() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("metrics");
    let recorder = DebuggingRecorder::new();
    let (up_a, up_b) = (Upstream::default(), Upstream::default());
    let (tier_a, tier_b) = (
        RedisTier::connect(&config).await.unwrap(),
        RedisTier::connect(&config).await.unwrap(),
    );
    let probe = RedisTier::connect(&config).await.unwrap();
    let ((a, ha), (b, hb)) = metrics::with_local_recorder(&recorder, || {
        let l2 = |name: &str, tier| {
            cache_layer::CacheLayer::builder(key as Key)
                .name(name)
                .ttl(secs(60))
                .l2(tier, u64_codec())
        };
        (
            stack(l2("edge-a", tier_a), &up_a, Duration::ZERO),
            stack(l2("edge-b", tier_b), &up_b, Duration::ZERO),
        )
    });
    assert!(
        within(secs(10), || async { subscribers(&config).await >= 2 })
            .await
            .is_some(),
        "both instances subscribed"
    );
    assert_eq!(a.clone().oneshot("k".to_owned()).await.unwrap(), 1); // L2 miss
    let redis_key = probe.redis_key("k");
    within(secs(10), || async { pttl(&config, &redis_key).await > 0 }).await;
    assert_eq!(b.clone().oneshot("k".to_owned()).await.unwrap(), 1); // L2 hit
    ha.put("k", 99).unwrap(); // announced to B
    let heard = within(secs(10), || async {
        hb.stats().pubsub_messages >= 1 && ha.stats().pubsub_published >= 1
    });
    assert!(heard.await.is_some(), "A's write reached B");

    let (sa, sb) = (ha.stats(), hb.stats());
    let m = Scrape::of(&recorder.snapshotter());
    let l2 = |source, result| {
        m.counter(
            "cache_lookups_total",
            &[("source", source), ("tier", "l2"), ("result", result)],
        )
    };
    assert_eq!((sa.l2_misses, sb.l2_hits), (1, 1));
    for (source, s) in [("edge-a", &sa), ("edge-b", &sb)] {
        assert_eq!(l2(source, "hit"), s.l2_hits, "{source}");
        assert_eq!(l2(source, "miss"), s.l2_misses, "{source}");
        let tier = [("source", source), ("tier", "l2")];
        assert_eq!(m.counter("cache_errors_total", &tier), s.l2_errors);
        assert_eq!(
            m.observations("cache_lookup_duration_seconds", &tier) as u64,
            s.l2_hits + s.l2_misses
        );
        let invalidations = |direction| {
            m.counter(
                "cache_invalidations_total",
                &[("source", source), ("direction", direction)],
            )
        };
        assert_eq!(invalidations("sent"), s.pubsub_published, "{source}");
        assert_eq!(invalidations("received"), s.pubsub_messages, "{source}");
    }
    assert!(
        m.find("cache_entries", &[("source", "edge-a"), ("tier", "l2")])
            .is_none(),
        "L2's size is not known here"
    );
    m.assert_bounded_labels();
}
