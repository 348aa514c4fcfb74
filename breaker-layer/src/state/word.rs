//! The state word: state, probes left and epoch packed in one `u64`, so that CLOSED
//! admission is one atomic load and a probe is taken with one compare-and-swap.

use reliability_core::health::BreakerState;

pub(super) const CLOSED: u64 = 0;
pub(super) const OPEN: u64 = 1;
pub(super) const HALF_OPEN: u64 = 2;
pub(super) const FORCED_OPEN: u64 = 3;
const STATE_MASK: u64 = 0b11;
pub(super) const PROBE_SHIFT: u32 = 2;
const PROBE_BITS: u32 = 22;
const PROBE_MASK: u64 = ((1 << PROBE_BITS) - 1) << PROBE_SHIFT;
pub(super) const EPOCH_SHIFT: u32 = PROBE_SHIFT + PROBE_BITS;
/// Most probes a HALF_OPEN period can admit (they share the state word).
pub const MAX_HALF_OPEN_PROBES: u32 = (1 << PROBE_BITS) - 1;

#[inline]
pub(super) fn encode(epoch: u64, probes: u64, state: u64) -> u64 {
    (epoch << EPOCH_SHIFT) | (probes << PROBE_SHIFT) | state
}
#[inline]
pub(super) fn state_of(word: u64) -> u64 {
    word & STATE_MASK
}
#[inline]
pub(super) fn probes_of(word: u64) -> u64 {
    (word & PROBE_MASK) >> PROBE_SHIFT
}
#[inline]
pub(super) fn epoch_of(word: u64) -> u64 {
    word >> EPOCH_SHIFT
}

pub(super) fn public_state(state: u64) -> BreakerState {
    match state {
        CLOSED => BreakerState::Closed,
        OPEN => BreakerState::Open,
        HALF_OPEN => BreakerState::HalfOpen,
        _ => BreakerState::ForcedOpen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_round_trips() {
        let w = encode(12345, 77, HALF_OPEN);
        assert_eq!(
            (epoch_of(w), probes_of(w), state_of(w)),
            (12345, 77, HALF_OPEN)
        );
    }
}
