//! Checking gradients against central finite differences.
//!
//! [`gradcheck`] runs a computation, projects its output onto a fixed random direction (so every
//! output element matters, with its sign), and compares the tape's gradient with respect to every
//! input and parameter with `(f(x + h) - f(x - h)) / 2h`, element by element. Use `f64`.
//!
//! ```
//! use ndarray::array;
//! use recurrent::gradcheck::{gradcheck, Tolerance};
//! use recurrent::ParamStore;
//!
//! let params = ParamStore::<f64>::new(0);
//! let x = array![[0.3, -1.2], [2.0, 0.1]].into_dyn();
//! let report = gradcheck(&params, &[x], Tolerance::default(), |tape, xs| {
//!     Ok(tape.tanh(tape.mul(xs[0], xs[0])?))
//! })
//! .unwrap();
//! report.assert_ok();
//! ```

use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Error, ParamStore, Result, Tape, Var};

/// How close analytic and numeric gradients must be: `|a - n| <= atol + rtol * |n|`.
///
/// [`gradcheck`] rejects a step that is not positive and finite, and negative or non-finite
/// tolerances, with [`Error::InvalidArgument`].
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// Finite-difference step.
    pub step: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            atol: 1e-7,
            rtol: 1e-5,
            step: 1e-6,
        }
    }
}

/// One element whose gradients disagree.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// `"input 0"` or the parameter's name.
    pub what: String,
    /// The element's flat (row-major) index.
    pub index: usize,
    /// The tape's gradient.
    pub analytic: f64,
    /// The finite-difference estimate.
    pub numeric: f64,
}

/// The outcome of a [`gradcheck`].
#[derive(Debug, Clone, Default)]
pub struct GradCheckReport {
    /// How many elements were compared.
    pub checked: usize,
    /// The largest `|analytic - numeric|` seen.
    pub max_abs_error: f64,
    /// Every element outside the tolerance.
    pub mismatches: Vec<Mismatch>,
}

impl GradCheckReport {
    /// Whether every element was within the tolerance.
    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty() && self.checked > 0
    }

    /// Panics with the first mismatches unless the check passed.
    ///
    /// # Panics
    /// When any element is outside the tolerance, or nothing was checked.
    pub fn assert_ok(&self) {
        assert!(self.checked > 0, "gradcheck compared no element");
        assert!(
            self.mismatches.is_empty(),
            "{} of {} gradient elements disagree with finite differences; first: {:#?}",
            self.mismatches.len(),
            self.checked,
            &self.mismatches[..self.mismatches.len().min(5)]
        );
    }
}

/// Compares the tape's gradients of `f` with central finite differences.
///
/// `f` receives a recording tape over `params` and one watched var per array of `inputs`, and
/// returns the output to check (any shape). Every element of every input and of every parameter
/// that `f` reads is perturbed in turn. A NaN or infinite gradient, analytic or numeric, is a
/// mismatch.
pub fn gradcheck<F>(
    params: &ParamStore<f64>,
    inputs: &[ArrayD<f64>],
    tol: Tolerance,
    f: F,
) -> Result<GradCheckReport>
where
    F: Fn(&Tape<'_, f64>, &[Var]) -> Result<Var>,
{
    let valid = |v: f64| v.is_finite() && v >= 0.0;
    if !(valid(tol.atol) && valid(tol.rtol) && valid(tol.step) && tol.step > 0.0) {
        return Err(Error::invalid(format!(
            "gradcheck: the step must be positive and the tolerances non-negative, all finite; \
             got {tol:?}"
        )));
    }
    // Every evaluation seeds the tape identically, so a stochastic op (dropout) sees the same
    // mask on every perturbed run.
    let projected = |params: &ParamStore<f64>,
                     inputs: &[ArrayD<f64>],
                     direction: &ArrayD<f64>|
     -> Result<f64> {
        let tape = Tape::new(params).with_seed(7);
        let vars: Vec<Var> = inputs.iter().map(|x| tape.watch(x.clone())).collect();
        let out = f(&tape, &vars)?;
        let value = (&*tape.value(out) * direction).sum();
        Ok(value)
    };

    let tape = Tape::new(params).with_seed(7);
    let vars: Vec<Var> = inputs.iter().map(|x| tape.watch(x.clone())).collect();
    let out = f(&tape, &vars)?;
    let direction = random_direction(&tape.shape(out));
    let param_grads = tape.backward_with(out, direction.clone())?;
    let input_grads: Vec<ArrayD<f64>> = vars
        .iter()
        .zip(inputs)
        .map(|(v, x)| {
            param_grads
                .wrt(*v)
                .cloned()
                .unwrap_or_else(|| ArrayD::zeros(x.raw_dim()))
        })
        .collect();
    drop(tape);

    let mut report = GradCheckReport::default();
    let mut compare = |what: String, index: usize, a: f64, n: f64| {
        report.checked += 1;
        let err = (a - n).abs();
        report.max_abs_error = report.max_abs_error.max(err);
        // Non-finite values fail outright: a NaN compares false with everything, and an
        // infinite numeric gradient would meet its own infinite bound.
        let within = err <= tol.atol + tol.rtol * n.abs();
        if !within || !a.is_finite() || !n.is_finite() {
            report.mismatches.push(Mismatch {
                what,
                index,
                analytic: a,
                numeric: n,
            });
        }
    };

    for (k, x) in inputs.iter().enumerate() {
        for i in 0..x.len() {
            let mut plus = inputs.to_vec();
            let mut minus = inputs.to_vec();
            flat_mut(&mut plus[k])[i] += tol.step;
            flat_mut(&mut minus[k])[i] -= tol.step;
            let fp = projected(params, &plus, &direction)?;
            let fm = projected(params, &minus, &direction)?;
            let analytic = input_grads[k]
                .as_standard_layout()
                .iter()
                .nth(i)
                .copied()
                .unwrap_or(0.0);
            compare(
                format!("input {k}"),
                i,
                analytic,
                (fp - fm) / (2.0 * tol.step),
            );
        }
    }
    let mut perturbed = params.clone();
    for (id, g) in param_grads.iter() {
        let name = params.name(id).to_string();
        let g = g.as_standard_layout().into_owned();
        for (i, &analytic) in g.iter().enumerate() {
            let original = params.value(id).as_slice().expect("standard layout")[i];
            flat_mut(perturbed.value_mut(id))[i] = original + tol.step;
            let fp = projected(&perturbed, inputs, &direction)?;
            flat_mut(perturbed.value_mut(id))[i] = original - tol.step;
            let fm = projected(&perturbed, inputs, &direction)?;
            flat_mut(perturbed.value_mut(id))[i] = original;
            compare(name.clone(), i, analytic, (fp - fm) / (2.0 * tol.step));
        }
    }
    Ok(report)
}

fn flat_mut(x: &mut ArrayD<f64>) -> &mut [f64] {
    if !x.is_standard_layout() {
        *x = x.as_standard_layout().into_owned();
    }
    x.as_slice_mut().expect("standard layout")
}

fn random_direction(shape: &[usize]) -> ArrayD<f64> {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        rng.random_range(0.5..1.5) * if rng.random::<bool>() { 1.0 } else { -1.0 }
    })
}
