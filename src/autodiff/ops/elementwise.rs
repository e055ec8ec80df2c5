//! Elementwise arithmetic (with NumPy broadcasting) and activations.

use ndarray::ArrayD;

use crate::ops::check;
use crate::tensor::{broadcast_shape, sum_to_shape};
use crate::{Result, Scalar, Tape, Var};

#[derive(Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
}

impl<T: Scalar> Tape<'_, T> {
    /// `a + b` with NumPy broadcasting (`tf.add`).
    pub fn add(&self, a: Var, b: Var) -> Result<Var> {
        self.arith(a, b, Arith::Add)
    }

    /// `a - b` with NumPy broadcasting (`tf.subtract`).
    pub fn sub(&self, a: Var, b: Var) -> Result<Var> {
        self.arith(a, b, Arith::Sub)
    }

    /// `a * b` elementwise with NumPy broadcasting (`tf.multiply`).
    pub fn mul(&self, a: Var, b: Var) -> Result<Var> {
        self.arith(a, b, Arith::Mul)
    }

    fn arith(&self, a: Var, b: Var, op: Arith) -> Result<Var> {
        let name = match op {
            Arith::Add => "add",
            Arith::Sub => "sub",
            Arith::Mul => "mul",
        };
        let value = {
            let (va, vb) = (self.value(a), self.value(b));
            check(
                broadcast_shape(va.shape(), vb.shape()).is_some(),
                name,
                || format!("a shape broadcastable with {:?}", va.shape()),
                vb.shape(),
            )?;
            match op {
                Arith::Add => &*va + &*vb,
                Arith::Sub => &*va - &*vb,
                Arith::Mul => &*va * &*vb,
            }
        };
        Ok(self.push_op(value, &[a, b], move |ctx| {
            let g = ctx.g();
            let (va, vb) = (ctx.input(0), ctx.input(1));
            let ga = ctx.needs(0).then(|| {
                let full = match op {
                    Arith::Add | Arith::Sub => g.clone(),
                    Arith::Mul => g * vb,
                };
                sum_to_shape(full, va.shape())
            });
            let gb = ctx.needs(1).then(|| {
                let full = match op {
                    Arith::Add => g.clone(),
                    Arith::Sub => g.mapv(|x| -x),
                    Arith::Mul => g * va,
                };
                sum_to_shape(full, vb.shape())
            });
            vec![ga, gb]
        }))
    }

    /// `x * factor` for a constant factor.
    pub fn scale(&self, x: Var, factor: T) -> Var {
        let value = self.value(x).mapv(|v| v * factor);
        self.push_op(value, &[x], move |ctx| {
            vec![Some(ctx.g().mapv(|v| v * factor))]
        })
    }

    /// `1 - x` elementwise: what `sub(one, x)` gives, without a constant to make per call (the
    /// GRU's `1 - u` at every time step).
    pub(crate) fn one_minus(&self, x: Var) -> Var {
        let value = self.value(x).mapv(|v| T::one() - v);
        self.push_op(value, &[x], |ctx| vec![Some(ctx.g().mapv(|g| -g))])
    }

    /// The logistic sigmoid `1 / (1 + exp(-x))`, computed without overflow for large `|x|`.
    pub fn sigmoid(&self, x: Var) -> Var {
        let mut value = self.value(x).as_standard_layout().into_owned();
        T::sigmoid_in_place(value.as_slice_mut().expect("standard layout"));
        self.unary_from_output(value, x, |y| y * (T::one() - y))
    }

    /// The hyperbolic tangent.
    pub fn tanh(&self, x: Var) -> Var {
        let mut value = self.value(x).as_standard_layout().into_owned();
        T::tanh_in_place(value.as_slice_mut().expect("standard layout"));
        self.unary_from_output(value, x, |y| T::one() - y * y)
    }

    /// `x` clipped elementwise to `[min, max]` (`tf.clip_by_value`). As in TensorFlow, the
    /// gradient passes where `min <= x <= max` and is zero where `x` was clipped.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] if `min > max` or either is NaN.
    pub fn clip_by_value(&self, x: Var, min: T, max: T) -> Result<Var> {
        if min.is_nan() || max.is_nan() || min > max {
            return Err(crate::Error::invalid(format!(
                "clip_by_value: min {min:?} must not exceed max {max:?}"
            )));
        }
        let value = self.value(x).mapv(|v| {
            if v < min {
                min
            } else if v > max {
                max
            } else {
                v
            }
        });
        Ok(self.push_op(value, &[x], move |ctx| {
            let mut dx = ctx.g().clone();
            ndarray::Zip::from(&mut dx)
                .and(ctx.input(0))
                .for_each(|d, &v| {
                    if v < min || v > max {
                        *d = T::zero();
                    }
                });
            vec![Some(dx)]
        }))
    }

    /// `max(x, 0)`; its gradient at 0 is taken as 0, like TensorFlow's.
    pub fn relu(&self, x: Var) -> Var {
        let value = self
            .value(x)
            .mapv(|v| if v > T::zero() { v } else { T::zero() });
        self.unary_from_output(
            value,
            x,
            |y| if y > T::zero() { T::one() } else { T::zero() },
        )
    }

    /// Records a unary op whose derivative is a function of its output.
    fn unary_from_output(&self, value: ArrayD<T>, x: Var, derivative: fn(T) -> T) -> Var {
        let out = Var {
            node: self.len() as u32,
            out: 0,
            tape: self.id,
        };
        self.push_op(value, &[x], move |ctx| {
            let y = ctx.value(out);
            let mut dx = ctx.g().clone();
            ndarray::Zip::from(&mut dx)
                .and(y)
                .for_each(|d, &y| *d *= derivative(y));
            vec![Some(dx)]
        })
    }
}
