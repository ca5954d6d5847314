//! Seeded randomness that does not depend on thread scheduling.
//!
//! Every random decision in the pipeline is drawn from a generator derived from the run's
//! seed and the coordinates of the decision (epoch, image id, view index, ...), never
//! from a generator shared between threads. So results are the same whatever the number
//! of worker threads.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

/// One step of the SplitMix64 generator: a strong 64-bit mixing function.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Derives a 64-bit seed from a base seed and a path of coordinates.
///
/// Different paths give independent-looking seeds; the same path always gives the same one.
pub fn derive_seed(seed: u64, path: &[u64]) -> u64 {
    path.iter().fold(splitmix64(seed), |acc, &part| {
        splitmix64(acc ^ splitmix64(part))
    })
}

/// A fast, reproducible generator for the given seed and coordinates.
pub fn rng_for(seed: u64, path: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(seed, path))
}

/// Named streams, so that two stages using the same seed do not draw the same numbers.
pub mod stream {
    pub const SPLIT: u64 = 1;
    pub const SHUFFLE: u64 = 2;
    pub const VIEW: u64 = 3;
    pub const INIT: u64 = 4;
    pub const PROBE: u64 = 5;
    pub const KMEANS: u64 = 6;
    pub const TRAIN: u64 = 7;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[test]
    fn same_path_same_numbers_different_path_different_numbers() {
        let a: u64 = rng_for(7, &[1, 2, 3]).random();
        let b: u64 = rng_for(7, &[1, 2, 3]).random();
        let c: u64 = rng_for(7, &[1, 2, 4]).random();
        let d: u64 = rng_for(8, &[1, 2, 3]).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn coordinates_do_not_commute() {
        assert_ne!(derive_seed(0, &[1, 2]), derive_seed(0, &[2, 1]));
    }
}
