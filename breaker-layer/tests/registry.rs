//! Property: whatever keys arrive and however time moves, a per-key registry never holds
//! more than `max_breakers` breakers, the key just used always has one, and an open
//! breaker is never evicted while a closed one could go instead.

use std::time::Duration;

use breaker_layer::CircuitBreakerLayer;
use proptest::prelude::*;
use reliability_core::clock::ManualClock;
use reliability_core::health::BreakerState;

proptest! {
    #[test]
    fn registry_stays_bounded(
        max in 1usize..8,
        steps in proptest::collection::vec((0u32..40, 0u64..200, any::<bool>()), 1..300),
    ) {
        let clock = ManualClock::new();
        let layer = CircuitBreakerLayer::builder("keys")
            .max_breakers(max)
            .idle_timeout(Duration::from_secs(60))
            .clock(clock.shared())
            .build_per_key(|k: &u32| *k)
            .unwrap();
        let reg = layer.registry();
        let mut last_used = std::collections::HashMap::new();
        for (key, pause_s, open_it) in steps {
            clock.advance(Duration::from_secs(pause_s));
            let now = clock.elapsed();
            let open_before: Vec<u32> = reg
                .breakers()
                .into_iter()
                .filter(|(_, b)| b.state() != BreakerState::Closed)
                .map(|(k, _)| k)
                .collect();
            let closed_before = reg.len() - open_before.len();
            let was_known = reg.get(&key).is_some();
            let b = reg.get_or_insert(&key);
            last_used.insert(key, now);
            if open_it {
                b.force_open();
            }
            prop_assert!(reg.len() <= max);
            prop_assert!(reg.get(&key).is_some());
            if !was_known && closed_before > 0 && reg.len() == max {
                // Room was made from idle or closed breakers: open ones that were not
                // idle survive.
                for k in open_before {
                    if reg.get(&k).is_none() {
                        let idle = now - last_used[&k];
                        prop_assert!(idle >= Duration::from_secs(60), "busy open breaker {} evicted", k);
                    }
                }
            }
        }
    }
}
