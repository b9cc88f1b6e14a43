//! A tiny xorshift generator for the stream parsers' property tests: random input without a
//! dependency, the same sequence on every run.

pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A copy of `valid` with up to three of its bytes replaced at random.
    pub fn corrupt(&mut self, valid: &[u8]) -> Vec<u8> {
        let mut bytes = valid.to_vec();
        for _ in 0..self.below(4) {
            let at = self.below(bytes.len());
            bytes[at] = self.next() as u8;
        }
        bytes
    }
}
