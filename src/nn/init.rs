//! Weight initializers, as in `tf.initializers` / `tf.keras.initializers`.
//!
//! Each draws from the random generator it is given, so a seeded [`crate::ParamStore`] always
//! produces the same model.

use ndarray::{Array2, ArrayD, IxDyn};
use ndarray_rand::rand_distr::{Distribution, Normal, Uniform};
use rand::Rng;

use crate::{Error, Result, Scalar};

/// How to fill a new parameter.
///
/// Fan-in and fan-out follow TensorFlow: for a matrix `[in, out]` they are `in` and `out`; for a
/// higher-rank shape the leading dimensions multiply into a receptive field; a vector uses its
/// length for both.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Initializer {
    /// All zeros (`tf.zeros_initializer`): the default for biases.
    Zeros,
    /// Every element equal to the value (`tf.constant_initializer`).
    Constant(f64),
    /// Normal with the given mean and standard deviation (`tf.random_normal_initializer`).
    RandomNormal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        stddev: f64,
    },
    /// Normal, redrawing values further than two standard deviations from the mean
    /// (`tf.truncated_normal_initializer`).
    TruncatedNormal {
        /// Mean.
        mean: f64,
        /// Standard deviation of the untruncated distribution.
        stddev: f64,
    },
    /// Uniform on `[min, max)` (`tf.random_uniform_initializer`).
    RandomUniform {
        /// Lower bound.
        min: f64,
        /// Upper bound (exclusive).
        max: f64,
    },
    /// Uniform on `[-l, l)` with `l = sqrt(6 / (fan_in + fan_out))` (`tf.glorot_uniform_initializer`,
    /// TensorFlow 1.x's default for `tf.get_variable`, hence for `BasicLSTMCell`'s kernel).
    GlorotUniform,
    /// Truncated normal with standard deviation `sqrt(2 / (fan_in + fan_out)) / 0.8796`
    /// (`tf.glorot_normal_initializer`; the divisor undoes the truncation's shrinkage).
    GlorotNormal,
    /// A (semi-)orthogonal matrix times `gain` (`tf.orthogonal_initializer`): the shape is
    /// flattened to `[prod(leading dims), last dim]`.
    Orthogonal {
        /// Multiplier of the orthogonal matrix.
        gain: f64,
    },
}

impl Initializer {
    /// Draws an array of shape `shape`.
    ///
    /// # Errors
    /// - [`Error::Shape`] if the shape's size overflows or cannot be allocated (checked before
    ///   anything is drawn), or does not suit the initializer (`Orthogonal` needs rank 2 or more);
    /// - [`Error::InvalidArgument`] if a parameter of the initializer is NaN or infinite (a
    ///   `Constant(NaN)`, a NaN `gain`), or if a drawn value is not finite in `T` (a
    ///   `Constant(1e39)` in `f32`).
    pub fn sample<T: Scalar>(&self, shape: &[usize], rng: &mut impl Rng) -> Result<ArrayD<T>> {
        const OP: &str = "Initializer::sample";
        let n = crate::tensor::element_count(OP, shape)?;
        let draw = |rng: &mut dyn FnMut() -> f64| -> Result<ArrayD<T>> {
            let mut v = crate::tensor::try_vec::<T>(OP, shape)?;
            v.extend((0..n).map(|_| T::from_f64_lossy(rng())));
            Ok(ArrayD::from_shape_vec(IxDyn(shape), v).expect("length equals the shape's product"))
        };
        let (fan_in, fan_out) = fans(shape);
        let value = match *self {
            Initializer::Zeros => crate::tensor::try_full(OP, shape, T::zero())?,
            Initializer::Constant(v) => {
                finite("Initializer::Constant", "value", v)?;
                crate::tensor::try_full(OP, shape, T::from_f64_lossy(v))?
            }
            Initializer::RandomNormal { mean, stddev } => {
                let d = normal(mean, stddev)?;
                draw(&mut || d.sample(rng))?
            }
            Initializer::TruncatedNormal { mean, stddev } => {
                check_truncated(mean, stddev)?;
                let d = normal(0.0, 1.0)?;
                draw(&mut || truncated_draw(&d, mean, stddev, rng))?
            }
            Initializer::RandomUniform { min, max } => {
                let d = uniform(min, max)?;
                draw(&mut || d.sample(rng))?
            }
            Initializer::GlorotUniform => {
                let limit = (6.0 / (fan_in + fan_out).max(1.0)).sqrt();
                let d = uniform(-limit, limit)?;
                draw(&mut || d.sample(rng))?
            }
            Initializer::GlorotNormal => {
                // 0.879_625_661_034_239_8 is the standard deviation of a unit normal truncated
                // to [-2, 2]; dividing by it gives the truncated draw the intended variance.
                let stddev = (2.0 / (fan_in + fan_out).max(1.0)).sqrt() / 0.879_625_661_034_239_8;
                let d = normal(0.0, 1.0)?;
                draw(&mut || truncated_draw(&d, 0.0, stddev, rng))?
            }
            Initializer::Orthogonal { gain } => {
                finite("Initializer::Orthogonal", "gain", gain)?;
                if shape.len() < 2 {
                    return Err(Error::shape(
                        "Initializer::Orthogonal",
                        "a shape of rank 2 or more",
                        shape,
                    ));
                }
                // The matrix is built in f64 first: that memory too must exist.
                drop(crate::tensor::try_vec::<f64>(OP, shape)?);
                let cols = shape[shape.len() - 1];
                let rows = n / cols.max(1);
                let q = orthogonal(rows, cols, rng);
                let mut values = q.iter().map(|v| v * gain);
                draw(&mut || values.next().unwrap_or(0.0))?
            }
        };
        if value.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid(format!(
                "{self:?} drew a value that is not finite in {} for shape {shape:?}",
                std::any::type_name::<T>()
            )));
        }
        Ok(value)
    }
}

/// `Ok` if `x` is finite, else an [`Error::InvalidArgument`] naming `op` and `what`.
fn finite(op: &str, what: &str, x: f64) -> Result<()> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{op}: {what} must be finite, got {x}"
        )))
    }
}

fn fans(shape: &[usize]) -> (f64, f64) {
    match shape.len() {
        0 => (1.0, 1.0),
        1 => (shape[0] as f64, shape[0] as f64),
        k => {
            // In f64: the products of absurd shapes must not overflow before the size check.
            let receptive: f64 = shape[..k - 2].iter().map(|&d| d as f64).product();
            (
                shape[k - 2] as f64 * receptive,
                shape[k - 1] as f64 * receptive,
            )
        }
    }
}

fn normal(mean: f64, stddev: f64) -> Result<Normal<f64>> {
    if !(stddev >= 0.0 && stddev.is_finite() && mean.is_finite()) {
        return Err(Error::invalid(format!(
            "normal initializer needs a finite mean and stddev >= 0, got ({mean}, {stddev})"
        )));
    }
    Normal::new(mean, stddev).map_err(|e| Error::invalid(format!("normal({mean}, {stddev}): {e}")))
}

fn uniform(min: f64, max: f64) -> Result<Uniform<f64>> {
    Uniform::new(min, max).map_err(|e| Error::invalid(format!("uniform[{min}, {max}): {e}")))
}

fn check_truncated(mean: f64, stddev: f64) -> Result<()> {
    if stddev < 0.0 || !stddev.is_finite() || !mean.is_finite() {
        return Err(Error::invalid(format!(
            "truncated normal initializer needs a finite mean and stddev >= 0, got ({mean}, {stddev})"
        )));
    }
    Ok(())
}

/// One draw of a normal with `mean` and `stddev`, redrawn until within two standard deviations.
fn truncated_draw(d: &Normal<f64>, mean: f64, stddev: f64, rng: &mut impl Rng) -> f64 {
    loop {
        let z: f64 = d.sample(rng);
        if z.abs() <= 2.0 {
            break mean + stddev * z;
        }
    }
}

#[cfg(test)]
fn truncated_normal(n: usize, mean: f64, stddev: f64, rng: &mut impl Rng) -> Result<Vec<f64>> {
    check_truncated(mean, stddev)?;
    let d = normal(0.0, 1.0)?;
    Ok((0..n)
        .map(|_| truncated_draw(&d, mean, stddev, rng))
        .collect())
}

/// A `rows x cols` matrix with orthonormal columns (rows >= cols) or rows (rows < cols), from the
/// QR decomposition of a standard normal matrix, signs fixed so the distribution is uniform
/// (Saxe et al., 2014; the recipe of `tf.orthogonal_initializer`).
fn orthogonal(rows: usize, cols: usize, rng: &mut impl Rng) -> Array2<f64> {
    let (tall, short) = (rows.max(cols), rows.min(cols));
    let d = Normal::new(0.0, 1.0).expect("unit normal");
    let mut a = Array2::from_shape_fn((tall, short), |_| d.sample(rng));
    // Modified Gram-Schmidt: column k becomes q_k. Keeping r_kk > 0 is the sign fix.
    for k in 0..short {
        for j in 0..k {
            let dot: f64 = (0..tall).map(|i| a[[i, j]] * a[[i, k]]).sum();
            for i in 0..tall {
                a[[i, k]] -= dot * a[[i, j]];
            }
        }
        let norm = (0..tall).map(|i| a[[i, k]].powi(2)).sum::<f64>().sqrt();
        for i in 0..tall {
            a[[i, k]] /= norm;
        }
    }
    if rows < cols {
        a.reversed_axes().as_standard_layout().into_owned()
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn orthogonal_is_orthonormal_both_ways() {
        let mut rng = StdRng::seed_from_u64(1);
        for (r, c) in [(6, 4), (4, 6), (5, 5)] {
            let q = orthogonal(r, c, &mut rng);
            let g = if r >= c { q.t().dot(&q) } else { q.dot(&q.t()) };
            let eye = Array2::<f64>::eye(r.min(c));
            assert!((&g - &eye).iter().all(|v| v.abs() < 1e-12), "{g:?}");
        }
    }

    #[test]
    fn truncated_normal_stays_within_two_stddev() {
        let mut rng = StdRng::seed_from_u64(2);
        let v = truncated_normal(10_000, 1.0, 0.5, &mut rng).unwrap();
        assert!(v.iter().all(|x| (x - 1.0).abs() <= 1.0));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean - 1.0).abs() < 0.02);
    }

    #[test]
    fn fans_follow_tensorflow() {
        assert_eq!(fans(&[3, 5]), (3.0, 5.0));
        assert_eq!(fans(&[7]), (7.0, 7.0));
        assert_eq!(fans(&[2, 3, 4, 5]), (24.0, 30.0));
    }
}
