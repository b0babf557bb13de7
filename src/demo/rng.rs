//! A small deterministic random number generator (SplitMix64).
//!
//! Our own, not `rand`'s, so that "same seed, same data" holds across crate
//! upgrades: the demo's bytes must not change because a dependency did.

#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for one stage of the demo: the seed mixed with a stage
    /// label, so that changing one stage does not shift the others.
    pub fn new(seed: u64, stage: &str) -> Rng {
        let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in stage.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        let mut r = Rng(h);
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform integer in [lo, hi] (inclusive).
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    /// An index in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// An index drawn with the given (non-negative) weights.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.f64() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len().saturating_sub(1)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-12);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_stages_differ() {
        let a: Vec<u64> = (0..5).map(|_| Rng::new(7, "x").next_u64()).collect();
        let mut r1 = Rng::new(7, "x");
        let mut r2 = Rng::new(7, "x");
        let mut r3 = Rng::new(7, "y");
        let s1: Vec<u64> = (0..5).map(|_| r1.next_u64()).collect();
        let s2: Vec<u64> = (0..5).map(|_| r2.next_u64()).collect();
        let s3: Vec<u64> = (0..5).map(|_| r3.next_u64()).collect();
        assert_eq!(s1, s2);
        assert_ne!(s1, s3);
        assert_eq!(a[0], a[1]);
        let mut r = Rng::new(1, "range");
        for _ in 0..1000 {
            let v = r.int(30, 100);
            assert!((30..=100).contains(&v));
            let f = r.f64();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
