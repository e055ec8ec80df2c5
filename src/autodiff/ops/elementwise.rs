//! Elementwise arithmetic (with NumPy broadcasting), elementwise math and activations.
//!
//! The binary ops (`add`, `sub`, `mul`, `div`, `maximum`, `minimum`) broadcast their operands
//! to a common shape under NumPy's rules (shapes aligned on the right; a dimension of 1, or a
//! missing leading one, repeats), return an [`Error::Shape`](crate::Error::Shape) naming the op
//! when the shapes do not broadcast, and sum each operand's gradient back to its own shape.
//! The unary ops cannot fail and return a [`Var`].

use ndarray::{ArrayD, ArrayViewD, Zip};

use crate::ops::check;
use crate::tensor::{broadcast_shape, sum_to_shape};
use crate::{Result, Scalar, Tape, Var};

#[derive(Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
}

impl Arith {
    fn name(self) -> &'static str {
        match self {
            Arith::Add => "add",
            Arith::Sub => "sub",
            Arith::Mul => "mul",
            Arith::Div => "div",
            Arith::Maximum => "maximum",
            Arith::Minimum => "minimum",
        }
    }

    /// For `maximum` / `minimum`: whether the result (and so the gradient) is `a`'s, by
    /// TensorFlow's selector (`a >= b`, resp. `a <= b`: ties go to `a`).
    fn picks_a<T: Scalar>(self, a: T, b: T) -> bool {
        match self {
            Arith::Maximum => a >= b,
            _ => a <= b,
        }
    }
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

    /// `a / b` elementwise with NumPy broadcasting (`tf.div` / `tf.realdiv` on floats).
    ///
    /// Gradients: `d/da = g / b`, `d/db = -g * a / b / b` (TensorFlow's formulation, each summed
    /// back to its operand's shape). Division by zero follows IEEE 754 (`1/0 = inf`,
    /// `0/0 = NaN`), as in TensorFlow.
    ///
    /// # Errors
    /// [`Error::Shape`](crate::Error::Shape) (op `"div"`) if the shapes do not broadcast.
    pub fn div(&self, a: Var, b: Var) -> Result<Var> {
        self.arith(a, b, Arith::Div)
    }

    /// The elementwise maximum `max(a, b)` with NumPy broadcasting (`tf.maximum`); NaN where
    /// either operand is NaN (as `np.maximum`).
    ///
    /// Gradient, TensorFlow's convention (`_MaximumMinimumGrad` with `greater_equal`): the
    /// output's gradient goes to `a` where `a >= b`, ties included, and to `b` elsewhere; the
    /// other operand gets 0 there.
    ///
    /// # Errors
    /// [`Error::Shape`](crate::Error::Shape) (op `"maximum"`) if the shapes do not broadcast.
    pub fn maximum(&self, a: Var, b: Var) -> Result<Var> {
        self.arith(a, b, Arith::Maximum)
    }

    /// The elementwise minimum `min(a, b)` with NumPy broadcasting (`tf.minimum`); NaN where
    /// either operand is NaN (as `np.minimum`).
    ///
    /// Gradient, TensorFlow's convention (`_MaximumMinimumGrad` with `less_equal`): the output's
    /// gradient goes to `a` where `a <= b`, ties included, and to `b` elsewhere.
    ///
    /// # Errors
    /// [`Error::Shape`](crate::Error::Shape) (op `"minimum"`) if the shapes do not broadcast.
    pub fn minimum(&self, a: Var, b: Var) -> Result<Var> {
        self.arith(a, b, Arith::Minimum)
    }

    fn arith(&self, a: Var, b: Var, op: Arith) -> Result<Var> {
        let name = op.name();
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
                Arith::Div => &*va / &*vb,
                Arith::Maximum | Arith::Minimum => {
                    let (ba, bb) = broadcast_pair(&va, &vb);
                    let mut out = ArrayD::zeros(ba.raw_dim());
                    Zip::from(&mut out).and(&ba).and(&bb).for_each(|o, &x, &y| {
                        *o = if x.is_nan() || y.is_nan() {
                            T::nan()
                        } else if op.picks_a(x, y) {
                            x
                        } else {
                            y
                        }
                    });
                    out
                }
            }
        };
        Ok(self.push_op(value, &[a, b], move |ctx| {
            let g = ctx.g();
            let (va, vb) = (ctx.input(0), ctx.input(1));
            // Maximum / minimum: where the forward picked `a` (TensorFlow's selector, ties to a).
            let picked_a = |take_a: bool| {
                let (ba, bb) = broadcast_pair(va, vb);
                let mut d = g.clone();
                Zip::from(&mut d).and(&ba).and(&bb).for_each(|d, &x, &y| {
                    if op.picks_a(x, y) != take_a {
                        *d = T::zero()
                    }
                });
                d
            };
            let ga = ctx.needs(0).then(|| {
                let full = match op {
                    Arith::Add | Arith::Sub => g.clone(),
                    Arith::Mul => g * vb,
                    Arith::Div => g / vb,
                    Arith::Maximum | Arith::Minimum => picked_a(true),
                };
                sum_to_shape(full, va.shape())
            });
            let gb = ctx.needs(1).then(|| {
                let full = match op {
                    Arith::Add => g.clone(),
                    Arith::Sub => g.mapv(|x| -x),
                    Arith::Mul => g * va,
                    // -g * a / b / b, in TensorFlow's order of operations.
                    Arith::Div => {
                        let mut d = g.mapv(|x| -x) * va;
                        d /= vb;
                        d /= vb;
                        d
                    }
                    Arith::Maximum | Arith::Minimum => picked_a(false),
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

    /// `e^x` elementwise (`tf.exp`); its gradient is `g * e^x`.
    pub fn exp(&self, x: Var) -> Var {
        let value = self.value(x).mapv(|v| v.exp());
        self.unary_from_output(value, x, |y| y)
    }

    /// The natural logarithm `ln(x)` elementwise (`tf.log`); its gradient is `g / x`. As in
    /// TensorFlow, `ln(0) = -inf` (gradient `inf`) and the logarithm of a negative number is
    /// NaN: no error, so mask or clip the input where it can reach 0.
    pub fn log(&self, x: Var) -> Var {
        let value = self.value(x).mapv(|v| v.ln());
        self.unary_from_input(value, x, |x| T::one() / x)
    }

    /// `sqrt(x)` elementwise (`tf.sqrt`); its gradient is `g * 0.5 / sqrt(x)` (TensorFlow's
    /// `SqrtGrad`), so `inf` at 0. NaN for negative `x`, as in TensorFlow.
    pub fn sqrt(&self, x: Var) -> Var {
        let value = self.value(x).mapv(|v| v.sqrt());
        self.unary_from_output(value, x, |y| T::from_f64_lossy(0.5) / y)
    }

    /// `x * x` elementwise (`tf.square`); its gradient is `g * 2x`.
    pub fn square(&self, x: Var) -> Var {
        let value = self.value(x).mapv(|v| v * v);
        self.unary_from_input(value, x, |x| x + x)
    }

    /// Records a unary op whose derivative is a function of its input.
    fn unary_from_input(&self, value: ArrayD<T>, x: Var, derivative: fn(T) -> T) -> Var {
        self.push_op(value, &[x], move |ctx| {
            let mut dx = ctx.g().clone();
            Zip::from(&mut dx)
                .and(ctx.input(0))
                .for_each(|d, &x| *d *= derivative(x));
            vec![Some(dx)]
        })
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
            Zip::from(&mut dx)
                .and(y)
                .for_each(|d, &y| *d *= derivative(y));
            vec![Some(dx)]
        })
    }
}

/// Both operands viewed at their common broadcast shape (checked by the caller).
fn broadcast_pair<'a, T>(
    a: &'a ArrayD<T>,
    b: &'a ArrayD<T>,
) -> (ArrayViewD<'a, T>, ArrayViewD<'a, T>) {
    let shape = broadcast_shape(a.shape(), b.shape()).expect("shapes checked to broadcast");
    (
        a.broadcast(shape.clone()).expect("broadcasts"),
        b.broadcast(shape).expect("broadcasts"),
    )
}
