//! What the kernels' unit tests share: seeded test values, values as bits, and the check that
//! every instruction set gives the portable path's bits.

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

/// The bits of every value, for comparisons that must be exact (and tell `-0.0` from `0.0`, and
/// NaN payloads apart).
pub(crate) fn bits<'a>(values: impl IntoIterator<Item = &'a f32>) -> Vec<u32> {
    values.into_iter().map(|v| v.to_bits()).collect()
}

/// Asserts that `run` gives the same bits on every instruction set this CPU has as on the
/// portable path; `run` returns every buffer the kernel under test wrote.
pub(crate) fn assert_same_bits_on_every_isa(run: impl Fn(Isa) -> Vec<Vec<f32>>) {
    let portable = bits(&run(Isa::Portable).concat());
    for isa in Isa::supported() {
        assert_eq!(bits(&run(isa).concat()), portable, "{}", isa.name());
    }
}
