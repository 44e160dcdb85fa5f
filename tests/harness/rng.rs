//! A small seeded generator, so that a failing random case can be replayed
//! from its seed. Shared by the library's unit tests and the integration
//! tests, which include this file by path.

/// Marsaglia's xorshift64: fast, tiny, and good enough to pick test cases.
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed`; any seed works, zero included.
    pub fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (which must not be zero).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
