//! The Envoy-style ratio of retries to requests, counted over a sliding window.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reliability_core::error::ConfigError;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Settings of the [`RatioBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RatioBudgetConfig {
    /// Retries allowed per request, `0.0..=1.0` (Envoy: 0.2).
    pub ratio: f64,
    /// Retries always allowed within a window, whatever the traffic (Envoy: 3).
    pub floor: u32,
    /// How far back requests and retries are counted (tower: 10 s).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for RatioBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            floor: 3,
            window: Duration::from_secs(10),
        }
    }
}

impl RatioBudgetConfig {
    /// Checks `ratio` in `[0, 1]`, `floor <= 1_000_000` and `window` in `[100ms, 1h]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.ratio) {
            return Err(ConfigError::out_of_range(
                "budget.ratio",
                "[0.0, 1.0]",
                self.ratio,
            ));
        }
        if self.floor > 1_000_000 {
            return Err(ConfigError::out_of_range(
                "budget.floor",
                "[0, 1000000]",
                self.floor,
            ));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&self.window) {
            return Err(ConfigError::out_of_range(
                "budget.window",
                "[100ms, 1h]",
                humantime::format_duration(self.window),
            ));
        }
        Ok(())
    }
}

/// Slots the window is cut into: the window slides in steps of `window / SLOTS`.
const SLOTS: usize = 10;

#[derive(Debug, Default)]
struct Slot {
    /// Which step of time this slot currently counts (`u64::MAX`: never used).
    step: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// Retries at most `ratio` of the requests seen in a sliding window, plus a floor.
///
/// Invariant (proptested): at every granted retry, the retries counted in the window,
/// that one included, are at most `floor + ratio * requests` counted in the same window.
#[derive(Debug)]
pub struct RatioBudget {
    config: RatioBudgetConfig,
    origin: Instant,
    step_len: Duration,
    slots: [Slot; SLOTS],
    withdraw: Mutex<()>,
}

impl RatioBudget {
    /// An empty window starting at `now`.
    pub fn new(config: RatioBudgetConfig, now: Instant) -> Self {
        let slots: [Slot; SLOTS] = Default::default();
        for slot in &slots {
            slot.step.store(u64::MAX, Ordering::Relaxed);
        }
        Self {
            config,
            origin: now,
            step_len: (config.window / SLOTS as u32).max(Duration::from_millis(1)),
            slots,
            withdraw: Mutex::new(()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RatioBudgetConfig {
        &self.config
    }

    fn step(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        u64::try_from(since.as_nanos() / self.step_len.as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// The slot counting `step`, emptied first if it still counts an older step.
    fn slot(&self, step: u64) -> &Slot {
        let slot = &self.slots[(step % SLOTS as u64) as usize];
        let seen = slot.step.load(Ordering::Acquire);
        if seen != step
            && (seen == u64::MAX || seen < step)
            && slot
                .step
                .compare_exchange(seen, step, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // A deposit racing with this reset may be lost: that only makes the budget
            // stricter, never looser.
            slot.requests.store(0, Ordering::Release);
            slot.retries.store(0, Ordering::Release);
        }
        slot
    }

    /// Counts one request (a first attempt).
    pub fn deposit(&self, now: Instant) {
        self.slot(self.step(now))
            .requests
            .fetch_add(1, Ordering::AcqRel);
    }

    /// Requests and retries counted in the window ending at `now`.
    pub fn counts(&self, now: Instant) -> (u64, u64) {
        let step = self.step(now);
        let oldest = step.saturating_sub(SLOTS as u64 - 1);
        self.slots
            .iter()
            .filter(|s| {
                let st = s.step.load(Ordering::Acquire);
                st != u64::MAX && st >= oldest && st <= step
            })
            .fold((0, 0), |(req, ret), s| {
                (
                    req + s.requests.load(Ordering::Acquire),
                    ret + s.retries.load(Ordering::Acquire),
                )
            })
    }

    /// Takes one retry if the window has room for it.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        // Retries are the cold path; the lock makes "check, then count" one step so the
        // bound holds under any number of threads.
        let _guard = self
            .withdraw
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (requests, retries) = self.counts(now);
        let allowed = f64::from(self.config.floor) + self.config.ratio * requests as f64;
        if (retries + 1) as f64 > allowed {
            return false;
        }
        self.slot(self.step(now))
            .retries
            .fetch_add(1, Ordering::AcqRel);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ratio_rejects_bad_settings() {
        for (c, field) in [
            (
                RatioBudgetConfig {
                    ratio: 1.5,
                    ..Default::default()
                },
                "budget.ratio",
            ),
            (
                RatioBudgetConfig {
                    ratio: f64::NAN,
                    ..Default::default()
                },
                "budget.ratio",
            ),
            (
                RatioBudgetConfig {
                    window: Duration::ZERO,
                    ..Default::default()
                },
                "budget.window",
            ),
        ] {
            assert_eq!(c.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn ratio_floor_then_ratio_then_window_slides() {
        let now = Instant::now();
        let r = RatioBudget::new(RatioBudgetConfig::default(), now);
        assert!((0..3).all(|_| r.try_withdraw(now)), "the floor");
        assert!(!r.try_withdraw(now));
        for _ in 0..10 {
            r.deposit(now);
        }
        assert!(r.try_withdraw(now) && r.try_withdraw(now), "20% of 10");
        assert!(!r.try_withdraw(now));
        let later = now + Duration::from_secs(11);
        assert_eq!(r.counts(later), (0, 0), "the window forgot");
        assert!(r.try_withdraw(later));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Request,
        Retry,
        Tick(u64),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![
                5 => Just(Op::Request),
                5 => Just(Op::Retry),
                1 => (0u64..3_000).prop_map(Op::Tick),
            ],
            1..2_000,
        )
    }

    proptest! {
        /// Over a long random run, at every granted retry the window holds at most
        /// `ratio * requests + floor` retries; and with time standing still (one window),
        /// the whole run obeys `retries <= ratio * requests + floor`.
        #[test]
        fn retries_stay_within_ratio_and_floor(
            ratio in 0.0f64..=1.0,
            floor in 0u32..10,
            ops in ops(),
            frozen in any::<bool>(),
        ) {
            let config = RatioBudgetConfig { ratio, floor, window: Duration::from_secs(10) };
            let start = Instant::now();
            let r = RatioBudget::new(config, start);
            let step = Duration::from_secs(1);
            let mut now = start;
            // Model: (step index, requests, retries) of every event.
            let mut events: Vec<(u64, u64, u64)> = Vec::new();
            let (mut requests, mut retries) = (0u64, 0u64);
            for op in ops {
                let idx = (now - start).as_nanos() as u64 / step.as_nanos() as u64;
                match op {
                    Op::Request => {
                        r.deposit(now);
                        requests += 1;
                        events.push((idx, 1, 0));
                    }
                    Op::Retry => {
                        if r.try_withdraw(now) {
                            retries += 1;
                            events.push((idx, 0, 1));
                            let oldest = idx.saturating_sub(SLOTS as u64 - 1);
                            let (req, ret) = events.iter()
                                .filter(|e| e.0 >= oldest)
                                .fold((0, 0), |a, e| (a.0 + e.1, a.1 + e.2));
                            prop_assert!(ret as f64 <= ratio * req as f64 + f64::from(floor) + 1e-9);
                        }
                    }
                    Op::Tick(ms) if !frozen => now += Duration::from_millis(ms),
                    Op::Tick(_) => {}
                }
            }
            if frozen {
                prop_assert!(retries as f64 <= ratio * requests as f64 + f64::from(floor) + 1e-9);
            }
        }
    }
}
