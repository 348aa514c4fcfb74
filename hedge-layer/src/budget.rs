//! The hedge budget: hedges as a share of traffic, so that hedging cannot double the load
//! on an upstream that is already slow.
//!
//! Hedging helps when a few calls are slow for reasons that have nothing to do with load (a
//! GC pause, a cold cache, a busy neighbour). When *every* call is slow, because the
//! upstream is overloaded or down, a hedge per call doubles the load at the worst moment.
//! The budget separates the two cases without having to tell them apart: each request that
//! could be hedged deposits `ratio` tokens, each hedge withdraws one, and the balance never
//! exceeds `reserve`. A few slow calls find tokens; an outage spends the reserve, and from
//! then on at most one request in `1 / ratio` is hedged.
//!
//! The bound, for any schedule: over `n` deposits, at most `reserve + ratio × n` hedges
//! are sent (the balance starts at `reserve`).
//!
//! Tokens are kept in thousandths in one atomic word, so depositing and withdrawing take
//! no lock.
//!
//! # Example
//!
//! ```
//! use hedge_layer::budget::HedgeBudget;
//!
//! let budget = HedgeBudget::new(0.1, 2);
//! assert!(budget.try_withdraw());
//! assert!(budget.try_withdraw());
//! assert!(!budget.try_withdraw()); // the reserve is spent
//! for _ in 0..10 {
//!     budget.deposit();
//! }
//! assert!(budget.try_withdraw()); // ten requests earned one hedge
//! assert!(!budget.try_withdraw());
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

/// Thousandths of a token: a ratio is kept to three decimals (0.1 % steps).
const SCALE: u64 = 1_000;

/// A token-bucket hedge budget (see the [module docs](self)).
#[derive(Debug)]
pub struct HedgeBudget {
    balance: AtomicU64,
    deposit: u64,
    capacity: u64,
}

impl HedgeBudget {
    /// A budget where each request earns `ratio` hedges (clamped to `[0, 1]`), holding at
    /// most `reserve` tokens and starting full.
    pub fn new(ratio: f64, reserve: u32) -> Self {
        let ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // A budget must be able to hold at least the one token a hedge costs, or a ratio
        // would never buy anything.
        let capacity = u64::from(reserve).max(1) * SCALE;
        let initial = u64::from(reserve) * SCALE;
        Self {
            balance: AtomicU64::new(initial),
            deposit: (ratio * SCALE as f64).round() as u64,
            capacity,
        }
    }

    /// One request that could be hedged went by: add `ratio` tokens, up to the reserve.
    #[inline]
    pub fn deposit(&self) {
        if self.deposit == 0 {
            return;
        }
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b < self.capacity).then(|| (b + self.deposit).min(self.capacity))
            });
    }

    /// Takes one token for a hedge; `false` when the balance is under one token.
    #[inline]
    pub fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                b.checked_sub(SCALE)
            })
            .is_ok()
    }

    /// The balance, in tokens (hedges it could pay for now, with the fraction).
    pub fn balance(&self) -> f64 {
        self.balance.load(Ordering::Acquire) as f64 / SCALE as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The module's bound: over any schedule of deposits and withdrawals, hedges paid
        /// for never exceed `reserve + ratio × deposits`.
        #[test]
        fn hedges_within_reserve_plus_ratio(
            ratio in 0.0f64..=1.0,
            reserve in 0u32..20,
            ops in proptest::collection::vec(any::<bool>(), 0..5_000),
        ) {
            let budget = HedgeBudget::new(ratio, reserve);
            let (mut deposits, mut hedges) = (0u64, 0u64);
            for deposit in ops {
                if deposit {
                    budget.deposit();
                    deposits += 1;
                } else if budget.try_withdraw() {
                    hedges += 1;
                }
                let ratio = (ratio * 1_000.0).round() / 1_000.0;
                prop_assert!(hedges as f64 <= f64::from(reserve) + ratio * deposits as f64 + 1e-9);
                prop_assert!(budget.balance() <= f64::from(reserve.max(1)) + 1e-9);
            }
        }
    }

    #[test]
    fn bad_ratios_buy_nothing() {
        for ratio in [f64::NAN, -1.0, 0.0] {
            let budget = HedgeBudget::new(ratio, 0);
            for _ in 0..100 {
                budget.deposit();
            }
            assert!(!budget.try_withdraw());
        }
    }
}
