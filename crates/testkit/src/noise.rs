//! Test bytes that differ at every offset (xorshift64): a shifted, truncated or misplaced copy
//! never compares equal, which a short repeating pattern would hide.

/// `len` pseudo-random bytes from `seed` (not 0: xorshift stays at 0 forever).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
