//! Expiry of the index, tracked in expiry order: expired entries are never returned, live
//! ones always are, whatever the order of inserts, replacements, removals and purges.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use reliability_core::clock::Instant;
use semantic_cache::index::VectorIndex;
use semantic_cache::vector::{dot, normalize};

/// A unit vector of dimension 8 from a seed, so that many entries are distinct.
fn vector(seed: u32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..8u32)
        .map(|d| {
            ((seed.wrapping_mul(2_654_435_761).wrapping_add(d * 40_503)) % 1000) as f32 - 500.0
        })
        .collect();
    v[(seed % 8) as usize] += 1.0;
    normalize(&mut v).unwrap();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// With up to 1,500 entries, random TTLs, replacements and removals, and time moving
    /// forward with purges in between: `purge_expired` removes exactly the expired
    /// entries, `first_to_expire` is one with the earliest expiry, a lookup never returns
    /// an expired entry, a lookup finds a live entry while one exists, and (exact scan) every
    /// live entry finds itself or an equal vector.
    #[test]
    fn expired_entries_are_never_returned_and_live_ones_are(
        ops in proptest::collection::vec((0u32..2_000, 1u64..200, 0u8..10), 200..1_500),
        steps in proptest::collection::vec(0u64..40, 1..6),
        approximate in any::<bool>(),
    ) {
        let t0 = Instant::now();
        let mut ix = VectorIndex::with_approximate_above(if approximate { 256 } else { usize::MAX });
        let mut model: HashMap<String, (u32, Instant)> = HashMap::new();
        let mut now = t0;
        let chunk = ops.len().div_ceil(steps.len());
        for (ops, step) in ops.chunks(chunk).zip(&steps) {
            for &(seed, ttl, op) in ops {
                let key = format!("k{seed}");
                if op == 0 {
                    prop_assert_eq!(ix.remove(&key), model.remove(&key).is_some());
                } else {
                    let exp = now + Duration::from_secs(ttl);
                    ix.insert(key.as_str().into(), &vector(seed), exp).unwrap();
                    model.insert(key, (seed, exp));
                }
            }
            now += Duration::from_secs(*step);
            // Lookups before the purge skip expired entries; after it they are gone.
            for (key, (seed, exp)) in &model {
                prop_assert_eq!(ix.is_live(key, now), now < *exp);
                let v = vector(*seed);
                if let Some(n) = ix.nearest(&v, now) {
                    prop_assert!(model[&*n.key].1 > now, "expired {} returned", n.key);
                    // The exact scan finds the entry itself; the graph (whose recall is
                    // below 1) only some live entry.
                    if !approximate && now < *exp {
                        prop_assert!(n.similarity >= dot(&v, &v) - 1e-5, "{} found {:?}", key, n);
                    }
                } else {
                    prop_assert!(model.values().all(|(_, e)| *e <= now), "a live entry exists");
                }
            }
            let mut purged: Vec<String> = ix.purge_expired(now).iter().map(|k| k.to_string()).collect();
            purged.sort();
            let mut expired: Vec<String> = model.iter().filter(|(_, (_, e))| *e <= now).map(|(k, _)| k.clone()).collect();
            expired.sort();
            prop_assert_eq!(&purged, &expired);
            model.retain(|_, (_, e)| *e > now);
            prop_assert_eq!(ix.len(), model.len());
            let earliest = model.values().map(|(_, e)| *e).min();
            let first = ix.first_to_expire();
            prop_assert_eq!(first.as_ref().map(|k| model[&**k].1), earliest);
        }
    }
}
