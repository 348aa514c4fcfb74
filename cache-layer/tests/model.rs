//! The layer against a reference model of the freshness rules: for random sequences of
//! (time step, upstream result), the layer answers what the model answers and makes the
//! model's number of upstream calls.

mod common;

use std::time::Duration;

use common::{Upstream, builder, paused_runtime, secs, settle, stack};
use proptest::prelude::*;
use tower::ServiceExt;

const TTL: u64 = 10_000;
const SWR: u64 = 5_000;
const SIE: u64 = 20_000;

/// The rules, written as plainly as possible (milliseconds).
#[derive(Default)]
struct Model {
    entry: Option<(u64, u64)>,
    calls: u64,
}

impl Model {
    fn request(&mut self, now: u64, upstream_ok: bool) -> Result<u64, ()> {
        let age = self.entry.map(|(at, _)| now - at);
        match (self.entry, age) {
            (Some((_, v)), Some(a)) if a < TTL => Ok(v),
            (Some((_, v)), Some(a)) if a < TTL + SWR => {
                // Served at once; the background refresh stores on success.
                self.calls += 1;
                if upstream_ok {
                    self.entry = Some((now, self.calls));
                }
                Ok(v)
            }
            (Some((_, v)), Some(a)) if a < TTL + SIE => {
                self.calls += 1;
                if upstream_ok {
                    self.entry = Some((now, self.calls));
                    Ok(self.calls)
                } else {
                    Ok(v)
                }
            }
            _ => {
                self.calls += 1;
                if upstream_ok {
                    self.entry = Some((now, self.calls));
                    Ok(self.calls)
                } else {
                    Err(())
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn layer_matches_the_model(steps in proptest::collection::vec((0u64..40_000, any::<bool>()), 1..40)) {
        let rt = paused_runtime();
        rt.block_on(async {
            let up = Upstream::default();
            let (svc, _) = stack(
                builder()
                    .ttl(Duration::from_millis(TTL))
                    .stale_while_revalidate(Duration::from_millis(SWR))
                    .stale_if_error(Duration::from_millis(SIE))
                    .max_staleness(secs(3600)),
                &up,
                Duration::ZERO,
            );
            let mut model = Model::default();
            let mut now = 0;
            for (step, ok) in steps {
                tokio::time::advance(Duration::from_millis(step)).await;
                now += step;
                up.set_failing(!ok);
                let got = svc.clone().oneshot("k".to_owned()).await.map_err(|_| ());
                settle().await;
                let want = model.request(now, ok);
                prop_assert_eq!(got, want, "at {} ms", now);
                prop_assert_eq!(up.calls(), model.calls, "calls at {} ms", now);
            }
            Ok(())
        })?;
    }
}
