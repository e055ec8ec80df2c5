//! The element types the library computes in.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::{Float, FromPrimitive};
use rand::distr::uniform::SampleUniform;

use crate::Tape;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element type: `f32` for training, `f64` for gradient checks.
///
/// Every tensor, parameter and gradient in the crate is generic over this trait. It is sealed:
/// `f32` and `f64` are the only element types, which lets type-erased values such as
/// [`BoxedCell`](crate::cell::BoxedCell) serve both.
pub trait Scalar:
    sealed::Sealed
    + Float
    + FromPrimitive
    + LinalgScalar
    + ScalarOperand
    + SampleUniform
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// The safetensors / numpy name of the type (`"F32"` or `"F64"`).
    const DTYPE: &'static str;

    /// Converts from `f64`, rounding to the nearest representable value.
    fn from_f64_lossy(x: f64) -> Self;

    /// Widens to `f64`.
    fn to_f64_lossless(self) -> f64;

    /// Applies the logistic sigmoid to every element (vectorised for `f32`, see [`crate::math`]).
    fn sigmoid_in_place(xs: &mut [Self]);

    /// Applies `tanh` to every element (vectorised for `f32`, see [`crate::math`]).
    fn tanh_in_place(xs: &mut [Self]);

    /// The logistic sigmoid of one element, inlined into the vectorised kernels (the
    /// polynomial of [`crate::math`] for `f32`).
    #[doc(hidden)]
    fn sigmoid_elem(self) -> Self;

    /// `tanh` of one element, inlined into the vectorised kernels.
    #[doc(hidden)]
    fn tanh_elem(self) -> Self;

    /// Runs `f` on this thread's pool of reusable buffers (an implementation detail of the
    /// fused kernels).
    #[doc(hidden)]
    fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> R;

    /// The tape as an `f32` tape, if `Self` is `f32` (type-erased cells dispatch on it).
    #[doc(hidden)]
    fn as_f32_tape<'a, 'p>(tape: &'a Tape<'p, Self>) -> Option<&'a Tape<'p, f32>>;

    /// The tape as an `f64` tape, if `Self` is `f64`.
    #[doc(hidden)]
    fn as_f64_tape<'a, 'p>(tape: &'a Tape<'p, Self>) -> Option<&'a Tape<'p, f64>>;
}

impl Scalar for f32 {
    const DTYPE: &'static str = "F32";
    fn from_f64_lossy(x: f64) -> Self {
        x as f32
    }
    fn to_f64_lossless(self) -> f64 {
        self as f64
    }
    fn sigmoid_in_place(xs: &mut [Self]) {
        crate::kernels::math::sigmoid_in_place(xs)
    }
    fn tanh_in_place(xs: &mut [Self]) {
        crate::kernels::math::tanh_in_place(xs)
    }
    #[inline(always)]
    fn sigmoid_elem(self) -> Self {
        crate::kernels::math::sigmoid_f32(self)
    }
    #[inline(always)]
    fn tanh_elem(self) -> Self {
        crate::kernels::math::tanh_f32(self)
    }
    fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> R {
        crate::kernels::workspace::with_pool_f32(f)
    }
    fn as_f32_tape<'a, 'p>(tape: &'a Tape<'p, f32>) -> Option<&'a Tape<'p, f32>> {
        Some(tape)
    }
    fn as_f64_tape<'a, 'p>(_: &'a Tape<'p, f32>) -> Option<&'a Tape<'p, f64>> {
        None
    }
}

impl Scalar for f64 {
    const DTYPE: &'static str = "F64";
    fn from_f64_lossy(x: f64) -> Self {
        x
    }
    fn to_f64_lossless(self) -> f64 {
        self
    }
    fn sigmoid_in_place(xs: &mut [Self]) {
        crate::kernels::math::sigmoid_in_place(xs)
    }
    fn tanh_in_place(xs: &mut [Self]) {
        crate::kernels::math::tanh_in_place(xs)
    }
    #[inline(always)]
    fn sigmoid_elem(self) -> Self {
        if self >= 0.0 {
            1.0 / (1.0 + (-self).exp())
        } else {
            let e = self.exp();
            e / (1.0 + e)
        }
    }
    #[inline(always)]
    fn tanh_elem(self) -> Self {
        self.tanh()
    }
    fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> R {
        crate::kernels::workspace::with_pool_f64(f)
    }
    fn as_f32_tape<'a, 'p>(_: &'a Tape<'p, f64>) -> Option<&'a Tape<'p, f32>> {
        None
    }
    fn as_f64_tape<'a, 'p>(tape: &'a Tape<'p, f64>) -> Option<&'a Tape<'p, f64>> {
        Some(tape)
    }
}
