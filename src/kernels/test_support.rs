//! What the kernels' unit tests share: seeded test values and the check that every instruction
//! set gives the portable path's bits.

use crate::math::Isa;

/// `n` values in `[-scale, scale]` from a xorshift generator seeded with `seed`.
pub(crate) fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            ((s % 20_001) as f32 / 10_000.0 - 1.0) * scale
        })
        .collect()
}

/// Asserts that `run` gives the same bits on every instruction set this CPU has as on the
/// portable path; `run` returns every buffer the kernel under test wrote.
pub(crate) fn assert_same_bits_on_every_isa(run: impl Fn(Isa) -> Vec<Vec<f32>>) {
    let bits = |isa| {
        run(isa)
            .concat()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    let portable = bits(Isa::Portable);
    for isa in Isa::supported() {
        assert_eq!(bits(isa), portable, "{}", isa.name());
    }
}
