//! [`Dense`]: the fully connected layer.

use super::{layer_shape_error, Context, Layer};
use crate::init::Initializer;
use crate::params::{ParamId, ParamStore, Scope};
use crate::{Error, Result, Scalar, Tape, Var};

/// A fully connected layer `y = x @ kernel + bias` on the last axis (`tf.layers.dense` without
/// activation), for inputs of any rank: a sequence `[batch, time, in]` gives `[batch, time,
/// out]`, the same kernel at every step.
///
/// # Shapes
/// - `x`: `[..., in]`; `kernel`: `[in, out]`; `bias`: `[out]`; `y`: `[..., out]`.
///
/// Parameters are `{scope}/kernel` (Glorot uniform, TensorFlow's default) and `{scope}/bias` (zeros).
///
/// ```
/// use ndarray::Array3;
/// use recurrent::layers::Layer;
/// use recurrent::{Dense, ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let dense = Dense::new(&mut params, "dense", 4, 3).unwrap();
/// let tape = Tape::inference(&params);
/// let x = tape.constant(Array3::<f32>::ones((2, 5, 4)).into_dyn());
/// let y = dense.apply(&tape, x).unwrap();
/// assert_eq!(tape.shape(y), vec![2, 5, 3]);
/// let too_wide = tape.constant(Array3::<f32>::ones((2, 5, 6)).into_dyn());
/// let err = dense.apply(&tape, too_wide).unwrap_err().to_string();
/// assert!(err.contains("Dense") && err.contains("\"dense\"") && err.contains("[2, 5, 6]"));
/// ```
#[derive(Debug, Clone)]
pub struct Dense {
    name: String,
    kernel: ParamId,
    bias: ParamId,
    input_size: usize,
    output_size: usize,
}

impl Dense {
    /// Creates `{scope}/kernel` `[input_size, output_size]` (Glorot uniform) and `{scope}/bias`
    /// (zeros) in `params`.
    pub fn new<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        input_size: usize,
        output_size: usize,
    ) -> Result<Self> {
        Self::with_init(
            params,
            scope,
            input_size,
            output_size,
            Initializer::GlorotUniform,
            Initializer::Zeros,
        )
    }

    /// Like [`Dense::new`] with the kernel and bias drawn from the given initializers (the classic
    /// TensorFlow tutorials use `tf.random_normal` for both).
    pub fn with_init<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        input_size: usize,
        output_size: usize,
        kernel_init: Initializer,
        bias_init: Initializer,
    ) -> Result<Self> {
        if input_size == 0 || output_size == 0 {
            return Err(Error::invalid(format!(
                "Dense sizes must be positive, got {input_size} -> {output_size}"
            )));
        }
        let scope = scope.into();
        let kernel = params.create(
            &scope.join("kernel"),
            &[input_size, output_size],
            kernel_init,
        )?;
        let bias = params.create(&scope.join("bias"), &[output_size], bias_init)?;
        Ok(Dense {
            name: scope.path().to_string(),
            kernel,
            bias,
            input_size,
            output_size,
        })
    }

    /// A layer over parameters already in a store (for example loaded from a checkpoint).
    pub fn from_params<T: Scalar>(
        params: &ParamStore<T>,
        kernel: ParamId,
        bias: ParamId,
    ) -> Result<Self> {
        params.check_ids("Dense::from_params", &[kernel, bias])?;
        let k = params.value(kernel).shape().to_vec();
        let b = params.value(bias).shape().to_vec();
        if k.len() != 2 || b != [k[1]] {
            return Err(Error::Shape {
                op: "Dense::from_params",
                expected: "kernel [in, out] and bias [out]".into(),
                got: format!("kernel {k:?}, bias {b:?}"),
            });
        }
        let name = params.name(kernel);
        Ok(Dense {
            name: name.strip_suffix("/kernel").unwrap_or(name).to_string(),
            kernel,
            bias,
            input_size: k[0],
            output_size: k[1],
        })
    }

    /// The layer's name (its scope), as [`Layer::name`] gives it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kernel and the bias, as [`Layer::param_ids`] gives them.
    pub fn param_ids(&self) -> Vec<ParamId> {
        vec![self.kernel, self.bias]
    }

    /// The kernel's handle.
    pub fn kernel(&self) -> ParamId {
        self.kernel
    }

    /// The bias's handle.
    pub fn bias(&self) -> ParamId {
        self.bias
    }

    /// The input width.
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// The output width.
    pub fn output_size(&self) -> usize {
        self.output_size
    }
}

impl<T: Scalar> Layer<T> for Dense {
    /// `x @ kernel + bias` on the last axis of `x`.
    fn forward(&self, tape: &Tape<'_, T>, x: Var, _context: &mut Context<'_, T>) -> Result<Var> {
        let shape = tape.shape(x);
        if shape.is_empty() || shape[shape.len() - 1] != self.input_size {
            return Err(layer_shape_error(
                "Dense",
                &self.name,
                format!("an input [..., {}]", self.input_size),
                &shape,
            ));
        }
        tape.dense(x, tape.param(self.kernel), tape.param(self.bias))
    }

    fn param_ids(&self) -> Vec<ParamId> {
        Dense::param_ids(self)
    }

    fn name(&self) -> &str {
        &self.name
    }
}
