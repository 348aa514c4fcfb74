use std::collections::HashMap;
use std::time::Duration;

use parking_lot::RwLock;
use proptest::prelude::*;
use reliability_core::clock::Instant;

use super::VectorIndex;
use crate::hnsw::HnswParams;
use crate::vector::{VectorError, dot, meets, normalize, unit};

#[test]
fn finds_the_most_similar_live_entry() {
    let now = Instant::now();
    let later = now + Duration::from_secs(10);
    let mut ix = VectorIndex::new();
    ix.insert("a".into(), &unit(&[1.0, 0.0]), later).unwrap();
    ix.insert("b".into(), &unit(&[0.6, 0.8]), later).unwrap();
    let hit = ix.nearest(&unit(&[0.7, 0.7]), now).unwrap();
    assert_eq!(&*hit.key, "b");
    assert!(ix.nearest(&unit(&[1.0, 0.0]), later).is_none(), "expired");
    assert_eq!(
        ix.insert("c".into(), &[1.0, 0.0, 0.0], later),
        Err(VectorError::DimensionMismatch {
            expected: 2,
            got: 3
        })
    );
    assert!(
        ix.nearest(&[1.0, 0.0, 0.0], now).is_none(),
        "other dimension"
    );
    assert!(ix.remove("b"));
    assert!(!ix.remove("b"));
    assert_eq!(&*ix.nearest(&unit(&[0.7, 0.7]), now).unwrap().key, "a");
    assert_eq!(ix.purge_expired(later).len(), 1);
    assert!(ix.is_empty());
    assert_eq!(ix.dim(), 0, "an empty index takes any dimension again");
}

#[test]
fn switches_to_the_graph_above_the_size_and_back() {
    let now = Instant::now();
    let later = now + Duration::from_secs(10);
    let mut ix = VectorIndex::with_approximate_above(100);
    let row = |i: usize| unit(&[(i as f32).sin(), (i as f32 * 0.3).cos(), 0.5, 1.0]);
    for i in 0..=100 {
        ix.insert(format!("k{i}").into(), &row(i), later).unwrap();
    }
    assert!(ix.is_approximate());
    assert_eq!(&*ix.nearest(&row(42), now).unwrap().key, "k42");
    // Replacing a key moves it in the graph too.
    ix.insert("k42".into(), &row(1000), later).unwrap();
    assert_eq!(&*ix.nearest(&row(1000), now).unwrap().key, "k42");
    for i in 0..60 {
        assert!(ix.remove(&format!("k{i}")));
        let hit = ix.nearest(&row(i), now).unwrap();
        assert_ne!(*hit.key, format!("k{i}"));
    }
    assert!(!ix.is_approximate(), "back to exact below half the size");
    assert_eq!(&*ix.nearest(&row(77), now).unwrap().key, "k77");
}

/// A deferred rebuild leaves the scan (or the old graph) answering until its graph is
/// swapped in; writes made after its snapshot (inserts, replacements, removals) are
/// replayed into the new graph; a clear abandons it.
#[test]
fn background_rebuild_replays_writes_made_during_it() {
    let now = Instant::now();
    let later = now + Duration::from_secs(10);
    let row = |i: usize| unit(&[(i as f32).sin(), (i as f32 * 0.3).cos(), 0.5, 1.0]);
    let lock = RwLock::new(VectorIndex::with_approximate_above(100).deferring_rebuilds());
    for i in 0..=100 {
        lock.write()
            .insert(format!("k{i}").into(), &row(i), later)
            .unwrap();
    }
    assert!(
        !lock.read().is_approximate(),
        "the write only notes the rebuild"
    );
    let ticket = lock.write().start_rebuild().expect("due");
    assert!(lock.write().start_rebuild().is_none(), "one at a time");
    let swapped = VectorIndex::rebuild_behind(&lock, ticket, || {
        let mut ix = lock.write();
        ix.insert("new".into(), &row(5000), later).unwrap();
        ix.insert("k3".into(), &row(7000), later).unwrap();
        assert!(ix.remove("k4"));
        assert!(ix.is_rebuilding() && !ix.is_approximate());
    });
    assert!(swapped);
    let ix = lock.read();
    assert!(ix.is_approximate() && !ix.is_rebuilding());
    assert_eq!(&*ix.nearest(&row(5000), now).unwrap().key, "new");
    assert_eq!(&*ix.nearest(&row(7000), now).unwrap().key, "k3");
    assert_ne!(&*ix.nearest(&row(4), now).unwrap().key, "k4");
    assert_eq!(&*ix.nearest(&row(42), now).unwrap().key, "k42");
    drop(ix);

    let mut ix = VectorIndex::with_approximate_above(10).deferring_rebuilds();
    for i in 0..=10 {
        ix.insert(format!("k{i}").into(), &row(i), later).unwrap();
    }
    let ticket = ix.start_rebuild().expect("due");
    ix.clear();
    let lock = RwLock::new(ix);
    assert!(
        !VectorIndex::rebuild_behind(&lock, ticket, || {}),
        "abandoned"
    );
    assert!(!lock.read().is_approximate());
}

#[test]
fn expired_graph_candidates_fall_back_to_the_scan() {
    let now = Instant::now();
    let mut ix = VectorIndex::with_approximate_above(0);
    for i in 0..200 {
        let exp = now + Duration::from_secs(if i == 0 { 100 } else { 1 });
        let v = unit(&[1.0, i as f32 * 0.001, 0.0]);
        ix.insert(format!("k{i}").into(), &v, exp).unwrap();
    }
    // The single live entry is not among the graph's candidates of an opposite query.
    let q = unit(&[-1.0, 0.0, 1.0]);
    let hit = ix.nearest(&q, now + Duration::from_secs(2)).unwrap();
    assert_eq!(&*hit.key, "k0");
    assert_eq!(ix.purge_expired(now + Duration::from_secs(2)).len(), 199);
    assert_eq!(ix.len(), 1);
    assert_eq!(&*ix.nearest(&q, now).unwrap().key, "k0");
}

/// Above a low `approximate_above` (50, with 1,000 random unit entries of dimension
/// 32) and with a small candidate list (10), lookups come from the graph: some answers
/// fall below the exact best (measured: 22 of 300), which a scan never does. The
/// threshold still means what it says for a hit: the similarity reported is the
/// entry's real one and never above the exact best, so a hit at a threshold is an
/// entry that meets it (measured: 172 hits). Every held vector finds itself (or an
/// exact duplicate).
#[test]
fn approximate_hits_keep_threshold_semantics() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    let random_unit = |rng: &mut rand::rngs::SmallRng| {
        let mut v: Vec<f32> = (0..32).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        normalize(&mut v).unwrap();
        v
    };
    let now = Instant::now();
    let later = now + Duration::from_secs(10);
    let params = HnswParams {
        ef_search: 10,
        ..HnswParams::default()
    };
    let mut ix = VectorIndex::with_params(50, params);
    let mut rows: HashMap<String, Vec<f32>> = HashMap::new();
    for i in 0..1_000 {
        let v = random_unit(&mut rng);
        ix.insert(format!("k{i}").into(), &v, later).unwrap();
        rows.insert(format!("k{i}"), v);
    }
    assert!(ix.is_approximate());
    for (key, v) in &rows {
        let n = ix.nearest(v, now).unwrap();
        assert!(n.similarity >= dot(v, v) - 1e-6, "{key} found {n:?}");
    }
    let mut misses = 0;
    let mut hits = 0;
    for _ in 0..300 {
        let q = random_unit(&mut rng);
        let threshold = rng.random_range(0.2f32..0.8);
        let approx = ix.nearest(&q, now).unwrap();
        let exact = ix.exact(&q, now).unwrap();
        let real = dot(&rows[&*approx.key], &q);
        assert!(
            (approx.similarity - real).abs() < 1e-6,
            "{approx:?} real {real}"
        );
        assert!(approx.similarity <= exact.similarity + 1e-6);
        if meets(approx.similarity, threshold) {
            hits += 1;
            assert!(meets(real, threshold), "{approx:?} at {threshold}");
        }
        if approx.similarity < exact.similarity {
            misses += 1;
        }
    }
    eprintln!("approximate index: {hits} hits, {misses} of 300 answers below the exact best");
    assert!(hits > 0, "some queries meet their threshold");
    assert!(misses > 0, "answers come from the graph, not the scan");
}

proptest! {
    /// With the graph on (from the first entry), the index never returns a removed or
    /// expired entry, finds an entry for every query while one is live, and finds a
    /// held vector (or an exact duplicate) for itself; tombstone rebuilds keep it so.
    #[test]
    fn approximate_mode_honours_removal_and_expiry(
        ops in proptest::collection::vec(
            (0u8..90, proptest::collection::vec(-1.0f32..1.0, 4), 1u64..20, 0u8..3),
            1..300),
        at in 0u64..20,
    ) {
        let t0 = Instant::now();
        let mut ix = VectorIndex::with_approximate_above(0);
        let mut model: HashMap<String, (Vec<f32>, Instant)> = HashMap::new();
        for (k, mut v, ttl, op) in ops {
            let key = format!("k{k}");
            if op == 0 {
                prop_assert_eq!(ix.remove(&key), model.remove(&key).is_some());
            } else if normalize(&mut v).is_ok() {
                let exp = t0 + Duration::from_secs(ttl);
                ix.insert(key.as_str().into(), &v, exp).unwrap();
                model.insert(key, (v, exp));
            }
        }
        let now = t0 + Duration::from_secs(at);
        let live = model.values().filter(|(_, e)| now < *e).count();
        for (key, (v, exp)) in &model {
            let got = ix.nearest(v, now);
            prop_assert_eq!(got.is_some(), live > 0);
            if let Some(n) = got {
                prop_assert!(model.get(&*n.key).is_some_and(|(_, e)| now < *e));
                if now < *exp {
                    prop_assert!(n.similarity >= dot(v, v) - 1e-6, "{} found {:?}", key, n);
                }
            }
        }
    }

    /// The index returns exactly what a naive scan over live entries returns, through
    /// any sequence of inserts, replacements and removals.
    #[test]
    fn matches_a_naive_scan(
        ops in proptest::collection::vec(
            (0u8..12, proptest::collection::vec(-1.0f32..1.0, 4), 0u64..20, any::<bool>()),
            1..60),
        query in proptest::collection::vec(-1.0f32..1.0, 4),
        at in 0u64..20,
    ) {
        let t0 = Instant::now();
        let mut ix = VectorIndex::with_approximate_above(usize::MAX);
        let mut model: HashMap<String, (Vec<f32>, Instant)> = HashMap::new();
        for (k, mut v, ttl, remove) in ops {
            let key = format!("k{k}");
            if remove {
                prop_assert_eq!(ix.remove(&key), model.remove(&key).is_some());
            } else if normalize(&mut v).is_ok() {
                let exp = t0 + Duration::from_secs(ttl);
                ix.insert(key.as_str().into(), &v, exp).unwrap();
                model.insert(key, (v, exp));
            }
            prop_assert_eq!(ix.len(), model.len());
        }
        let mut q = query;
        prop_assume!(normalize(&mut q).is_ok());
        let now = t0 + Duration::from_secs(at);
        let best = model.values()
            .filter(|(_, e)| now < *e)
            .map(|(v, _)| dot(v, &q))
            .fold(None, |b: Option<f32>, s| Some(b.map_or(s, |b| b.max(s))));
        match (ix.nearest(&q, now), best) {
            (None, None) => {}
            (Some(n), Some(b)) => {
                prop_assert!((n.similarity - b).abs() < 1e-6);
                prop_assert!(ix.is_live(&n.key, now));
            }
            (got, want) => prop_assert!(false, "index {got:?}, naive {want:?}"),
        }
    }

    /// A lookup never reports a similarity above an entry's real one, so a result
    /// below the threshold means no entry meets it.
    #[test]
    fn below_threshold_means_none_meets_it(
        rows in proptest::collection::vec(proptest::collection::vec(-1.0f32..1.0, 3), 1..30),
        query in proptest::collection::vec(-1.0f32..1.0, 3),
        threshold in 0.5f32..1.0,
    ) {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let mut ix = VectorIndex::new();
        let mut kept = Vec::new();
        for (i, mut r) in rows.into_iter().enumerate() {
            if normalize(&mut r).is_ok() {
                ix.insert(format!("{i}").into(), &r, later).unwrap();
                kept.push(r);
            }
        }
        let mut q = query;
        prop_assume!(normalize(&mut q).is_ok() && !kept.is_empty());
        let n = ix.nearest(&q, now).unwrap();
        if !meets(n.similarity, threshold) {
            prop_assert!(kept.iter().all(|r| !meets(dot(r, &q), threshold)));
        }
    }
}
