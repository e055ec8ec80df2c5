//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ndarray::{Array, ArrayD, Dimension, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A seeded array with elements uniform in `[-scale, scale)`.
pub fn random(shape: &[usize], scale: f64, seed: u64) -> ArrayD<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.random_range(-scale..scale))
}

/// Asserts two arrays (of any dimension) have one shape and agree elementwise within
/// `tol * (1 + |expected|)`: absolute near zero, relative for large values. `tol` 0 asks for
/// equal values.
#[track_caller]
pub fn assert_close<T: recurrent::Scalar, D: Dimension>(
    actual: &Array<T, D>,
    expected: &Array<T, D>,
    tol: f64,
) {
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    for (i, (a, e)) in actual.iter().zip(expected.iter()).enumerate() {
        let (a, e) = (a.to_f64_lossless(), e.to_f64_lossless());
        assert!(
            (a - e).abs() <= tol + tol * e.abs(),
            "element {i}: {a} vs expected {e} (tolerance {tol})"
        );
    }
}
