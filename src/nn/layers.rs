//! Layers that are not recurrent: [`Dense`].

use crate::init::Initializer;
use crate::params::{ParamId, ParamStore, Scope};
use crate::{Error, Result, Scalar, Tape, Var};

/// A fully connected layer `y = x @ kernel + bias` (`tf.layers.dense` without activation).
///
/// # Shapes
/// - `x`: `[batch, in]`; `kernel`: `[in, out]`; `bias`: `[out]`; `y`: `[batch, out]`.
///
/// Parameters are `{scope}/kernel` (Glorot uniform, TensorFlow's default) and `{scope}/bias` (zeros).
///
/// ```
/// use ndarray::Array2;
/// use recurrent::{Dense, ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let dense = Dense::new(&mut params, "dense", 4, 3).unwrap();
/// let tape = Tape::inference(&params);
/// let x = tape.constant(Array2::<f32>::ones((2, 4)).into_dyn());
/// let y = dense.forward(&tape, x).unwrap();
/// assert_eq!(tape.shape(y), vec![2, 3]);
/// ```
#[derive(Debug, Clone)]
pub struct Dense {
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
        Ok(Dense {
            kernel,
            bias,
            input_size: k[0],
            output_size: k[1],
        })
    }

    /// `x @ kernel + bias`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming `Dense` and its scope if `x` is not `[batch, input_size]`.
    pub fn forward<T: Scalar>(&self, tape: &Tape<'_, T>, x: Var) -> Result<Var> {
        let shape = tape.shape(x);
        if shape.len() != 2 || shape[1] != self.input_size {
            let kernel = tape.params().name(self.kernel);
            let scope = kernel.strip_suffix("/kernel").unwrap_or(kernel);
            return Err(Error::shape(
                "Dense",
                format!(
                    "an input of shape [batch, {}] for the layer {scope:?}",
                    self.input_size
                ),
                &shape,
            ));
        }
        let y = tape.matmul(x, tape.param(self.kernel))?;
        tape.bias_add(y, tape.param(self.bias))
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
