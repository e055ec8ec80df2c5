//! Gradient clipping.

use crate::{Error, Grads, Result, Scalar};

/// Rescales all gradients together so that their global norm is at most `clip_norm`
/// (`tf.clip_by_global_norm`), returning the global norm before clipping.
///
/// With `global_norm = √(Σ ‖g‖²)` over every gradient, each gradient becomes
///
/// ```text
/// g ← g · clip_norm / max(global_norm, clip_norm)
/// ```
///
/// so nothing changes when `global_norm <= clip_norm`, and the direction of the whole update is
/// kept otherwise. The norm is accumulated in `f64`. As in TensorFlow, if the global norm is not
/// finite every gradient is set to NaN (and the non-finite norm is returned): check the returned
/// value or [`Grads::all_finite`] before applying.
///
/// ```
/// use ndarray::array;
/// use recurrent::optim::clip_by_global_norm;
/// use recurrent::{init::Initializer, Grads, ParamStore};
///
/// let mut params = ParamStore::<f64>::new(0);
/// let a = params.create("a", &[2], Initializer::Zeros).unwrap();
/// let b = params.create("b", &[1], Initializer::Zeros).unwrap();
/// let mut grads = Grads::new();
/// grads.insert(a, array![3.0, 0.0].into_dyn());
/// grads.insert(b, array![4.0].into_dyn());
/// assert_eq!(clip_by_global_norm(&mut grads, 1.0).unwrap(), 5.0);
/// assert_eq!(grads.get(b).unwrap(), &array![0.8].into_dyn());
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] if `clip_norm` is not finite and positive.
pub fn clip_by_global_norm<T: Scalar>(grads: &mut Grads<T>, clip_norm: f64) -> Result<f64> {
    if !(clip_norm.is_finite() && clip_norm > 0.0) {
        return Err(Error::invalid(format!(
            "clip_by_global_norm: clip_norm must be finite and > 0, got {clip_norm}"
        )));
    }
    let norm = grads.global_norm();
    if !norm.is_finite() {
        grads.scale(T::nan());
    } else if norm > clip_norm {
        grads.scale(T::from_f64_lossy(clip_norm / norm));
    }
    Ok(norm)
}

/// Clamps every element of every gradient to `[clip_value_min, clip_value_max]` (`tf.clip_by_value`
/// applied to each gradient). NaN elements stay NaN.
///
/// # Errors
/// [`Error::InvalidArgument`] if a bound is NaN or `clip_value_min > clip_value_max`.
pub fn clip_by_value<T: Scalar>(
    grads: &mut Grads<T>,
    clip_value_min: f64,
    clip_value_max: f64,
) -> Result<()> {
    if clip_value_min.is_nan() || clip_value_max.is_nan() || clip_value_min > clip_value_max {
        return Err(Error::invalid(format!(
            "clip_by_value: need clip_value_min <= clip_value_max, got {clip_value_min} and {clip_value_max}"
        )));
    }
    let (lo, hi) = (
        T::from_f64_lossy(clip_value_min),
        T::from_f64_lossy(clip_value_max),
    );
    for (_, g) in grads.iter_mut() {
        g.mapv_inplace(|x| {
            if x < lo {
                lo
            } else if x > hi {
                hi
            } else {
                x
            }
        });
    }
    Ok(())
}
