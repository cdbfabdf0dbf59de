//! A small seeded generator whose streams never change between versions or platforms.
//!
//! SpecAugment and dither must give the same result for the same seed forever (experiments are
//! re-run from configs), so they do not depend on an external crate's generator, whose stream may
//! change in a minor release.

/// SplitMix64 (Steele, Lea and Flood, 2014): 64-bit state, full period, passes BigCrush.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The internal state: `SplitMix64::new(g.state())` continues exactly where `g` is (for
    /// checkpoints).
    pub fn state(&self) -> u64 {
        self.state
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `lo..=hi` (Lemire's multiply-shift; bias below 2^-64 * range).
    /// An empty range (`hi < lo`) gives `lo` (and still advances the stream).
    pub fn range_inclusive(&mut self, lo: usize, hi: usize) -> usize {
        if hi < lo {
            self.next_u64();
            return lo;
        }
        let span = (hi - lo) as u128 + 1;
        lo + ((self.next_u64() as u128 * span) >> 64) as usize
    }

    /// Standard normal deviate (Box-Muller).
    pub fn gaussian(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_fixed() {
        // Reference values of SplitMix64 from seed 0 (as in the public domain C code by Vigna).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn ranges_cover_their_ends() {
        let mut r = SplitMix64::new(7);
        let mut seen = [false; 4];
        for _ in 0..200 {
            let v = r.range_inclusive(3, 6);
            assert!((3..=6).contains(&v));
            seen[v - 3] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(r.range_inclusive(5, 5), 5);
    }
}
