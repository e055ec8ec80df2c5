//! Moving LSTM and GRU weights between this crate (TensorFlow 1.x layout) and other frameworks.
//!
//! Every framework stores the same LSTM differently: one fused kernel or one matrix per input,
//! transposed or not, gates in another order, one bias or two, a forget bias added at run time
//! or folded into the bias. The functions here turn one layout into another with plain
//! [`ndarray`] arrays, check every shape (a wrong shape is an [`Error::Shape`], never a panic),
//! and never change a value except to fold or unfold the forget bias.
//!
//! # LSTM layouts
//!
//! | Layout | Input weights | Recurrent weights | Bias | Gate order | Forget bias at run time |
//! |---|---|---|---|---|---|
//! | ours = TF 1.x `BasicLSTMCell` ([`TfLstmWeights`]) | `kernel[:in]` `[in, 4H]` | `kernel[in:]` `[H, 4H]` | `bias [4H]` | i, j, f, o | `forget_bias` |
//! | PyTorch `nn.LSTM` ([`TorchLstmWeights`]) | `weight_ih [4H, in]` | `weight_hh [4H, H]` | `bias_ih [4H]` + `bias_hh [4H]` | i, f, g, o | none |
//! | Keras `LSTM` ([`KerasLstmWeights`]) | `kernel [in, 4H]` | `recurrent_kernel [H, 4H]` | `bias [4H]` | i, f, c, o | none |
//! | ONNX `LSTM` ([`OnnxLstmWeights`]) | `W [1, 4H, in]` | `R [1, 4H, H]` | `B [1, 8H]` = `Wb`, `Rb` | i, o, f, c | none |
//!
//! The candidate gate is called `j` (TensorFlow), `g` (PyTorch), `c` (Keras and ONNX). All four
//! compute the same function; with `x` the input, `h`, `c` the previous state and `σ` the logistic
//! sigmoid:
//!
//! ```text
//! ours:     [i, j, f, o] = [x, h] @ kernel + bias
//!           c' = c ⊙ σ(f + forget_bias) + σ(i) ⊙ tanh(j);      h' = tanh(c') ⊙ σ(o)
//! PyTorch:  i = σ(W_ii x + b_ii + W_hi h + b_hi)       f = σ(W_if x + b_if + W_hf h + b_hf)
//!           g = tanh(W_ig x + b_ig + W_hg h + b_hg)    o = σ(W_io x + b_io + W_ho h + b_ho)
//!           c' = f ⊙ c + i ⊙ g;                       h' = o ⊙ tanh(c')
//!           (W_i* are the row blocks of weight_ih, W_h* of weight_hh, b_i* of bias_ih, b_h* of bias_hh)
//! Keras:    [i, f, c̃, o] = x @ kernel + h @ recurrent_kernel + bias
//!           c' = σ(f) ⊙ c + σ(i) ⊙ tanh(c̃);           h' = σ(o) ⊙ tanh(c')
//! ONNX:     [i, o, f, c̃] = x Wᵀ + h Rᵀ + Wb + Rb       (default activations f = Sigmoid, g = h = Tanh)
//!           C' = σ(f) ⊙ C + σ(i) ⊙ tanh(c̃);           H' = σ(o) ⊙ tanh(C')
//! ```
//!
//! So, per gate block (each `H` wide), ours → theirs is: transpose where they store `[4H, ·]`,
//! reorder the blocks, and add `forget_bias` to the forget block of the bias; theirs → ours
//! sums their two biases (PyTorch, ONNX), reorders, and subtracts `forget_bias` from the forget
//! block, so that [`BasicLstmCell`] with that `forget_bias` computes their function.
//!
//! **Exporting two biases.** PyTorch and ONNX add two bias vectors; only their sum matters. The
//! exporters put the whole bias (forget bias folded in) in the input-side one (`bias_ih`, `Wb`)
//! and zeros in the recurrent-side one (`bias_hh`, `Rb`).
//!
//! **What is exact.** Moving the kernels only copies values: bit-exact both ways. The bias is
//! bit-exact too, except the forget block, which is `b + forget_bias` on export and
//! `b_ih + b_hh − forget_bias` on import, each one rounding in `T`; a round trip ours → theirs →
//! ours therefore returns the forget block within one or two ulps of `|b| + |forget_bias|`
//! (bit-exact when `forget_bias` is 0). Outputs of the converted model agree with ours up to the
//! rounding of adding the terms in another order (about 1e-15 relative in `f64`).
//! The Keras equivalence assumes Keras's defaults `activation = "tanh"` and
//! `recurrent_activation = "sigmoid"` (tf.keras ≥ 2.0; standalone Keras before 2.3 defaulted to
//! `"hard_sigmoid"`, a different function that no weight conversion can emulate). Keras's
//! `unit_forget_bias` is only an initializer (it sets the forget bias block to 1 at creation),
//! so trained Keras weights already contain their forget bias in `bias`.
//!
//! [`LstmCell`]'s projection converts to and from PyTorch's `nn.LSTM(proj_size=...)`
//! ([`TorchProjLstmWeights`]) and its peepholes to and from Keras's peephole LSTM cell
//! ([`KerasPeepholeLstmWeights`]); see there for the equations.
//!
//! ONNX models may hold two directions (`direction = "bidirectional"`, `num_directions = 2`);
//! the converters take and produce one direction, and [`OnnxLstmWeights::direction`] extracts
//! one from a bidirectional model. Peepholes (`P`), clipping and `input_forget` have no
//! counterpart in `BasicLSTMCell` and are not supported.
//!
//! # GRU layouts
//!
//! | Layout | Weights | Bias | Gate order |
//! |---|---|---|---|
//! | ours = TF 1.x `GRUCell` ([`TfGruWeights`]) | `gates/kernel [in+H, 2H]`, `candidate/kernel [in+H, H]` | `gates/bias [2H]`, `candidate/bias [H]` | r, u; candidate |
//! | ours with `reset_after` (same struct) | the same | the same + `candidate/recurrent_bias [H]` | r, u; candidate |
//! | Keras `GRU(reset_after=False)` ([`KerasGruWeights`]) | `kernel [in, 3H]`, `recurrent_kernel [H, 3H]` | `bias [3H]` | z, r, h |
//! | Keras `GRU(reset_after=True)` ([`KerasResetAfterGruWeights`]) | `kernel [in, 3H]`, `recurrent_kernel [H, 3H]` | `bias [2, 3H]` (input, recurrent) | z, r, h |
//! | PyTorch `nn.GRU` ([`TorchGruWeights`]) | `weight_ih [3H, in]`, `weight_hh [3H, H]` | `bias_ih [3H]`, `bias_hh [3H]` | r, z, n |
//!
//! ```text
//! ours:     [r, u] = σ([x, h] @ gates/kernel + gates/bias)
//!           c = tanh([x, r ⊙ h] @ candidate/kernel + candidate/bias);   h' = u ⊙ h + (1 − u) ⊙ c
//! ours, reset_after (W_cx, W_ch the input and state rows of candidate/kernel):
//!           c = tanh(x W_cx + candidate/bias + r ⊙ (h W_ch + candidate/recurrent_bias))
//! Keras:    z = σ(x W_z + h U_z + b_z)     r = σ(x W_r + h U_r + b_r)
//!           ĥ = tanh(x W_h + (r ⊙ h) U_h + b_h);                         h' = z ⊙ h + (1 − z) ⊙ ĥ
//! Keras, reset_after: ĥ = tanh(x W_h + b_h + r ⊙ (h U_h + b'_h))        (b = bias[0], b' = bias[1],
//!                     z and r read b + b')
//! PyTorch:  r = σ(W_ir x + b_ir + W_hr h + b_hr)     z = σ(W_iz x + b_iz + W_hz h + b_hz)
//!           n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn));               h' = (1 − z) ⊙ n + z ⊙ h
//! ```
//!
//! Keras with `reset_after = False` (the Keras 2.0–2.2 default, and TF 1.x's formulation) is the
//! same function as ours with `z = u`: the conversion only moves values and is bit-exact both
//! ways ([`tf_gru_to_keras`], [`keras_gru_to_tf`]).
//!
//! PyTorch's GRU and Keras with `reset_after = True` (the tf.keras 2.x default, cuDNN's GRU)
//! apply the reset gate *after* the recurrent product, `r ⊙ (h U)`, where TensorFlow 1.x applies
//! it *before*, `(r ⊙ h) U`: the k-th unit of the first is `r_k Σ_j h_j U_jk`, of the second
//! `Σ_j r_j h_j U_jk`, another function whenever `U` is not diagonal. A [`GruCell`] built with
//! `reset_after` ([`crate::cell::GruCellConfig::with_reset_after`]) computes theirs, and its
//! weights convert both ways: [`torch_gru_to_tf`] / [`gru_cell_from_torch`] and
//! [`tf_gru_to_torch`]; [`keras_reset_after_gru_to_tf`] and [`tf_gru_to_keras_reset_after`].
//! Kernels and the candidate's two biases move bit-exactly; their two biases of `r` and `z`
//! (which only ever appear summed) become our one gate bias, and on export the sum goes to the
//! input-side bias and zeros to the recurrent side, as for the LSTM. Each layer and direction
//! of a multi-layer or bidirectional `nn.GRU` is one cell ([`TorchGruWeights::from_state_dict`]
//! reads `weight_ih_l1_reverse` and the others by name); layer `k + 1` of a bidirectional GRU
//! reads the concatenated outputs of layer `k`, which is
//! [`crate::rnn::stack_bidirectional_dynamic_rnn`]. `tests/reference.rs` checks a two-layer
//! bidirectional `nn.GRU` against PyTorch's own outputs and gradients.
//!
//! Weights of a GRU without `reset_after` are refused by the PyTorch and `reset_after=True`
//! converters (and those of a `reset_after` GRU by [`tf_gru_to_keras`]): no weight conversion
//! between the two functions exists, such a model has to be retrained (or fine-tuned).
//!
//! # Example
//!
//! ```
//! # fn main() -> recurrent::Result<()> {
//! use ndarray::{Array1, Array2};
//! use recurrent::convert::{self, TorchLstmWeights};
//! use recurrent::ParamStore;
//!
//! // PyTorch `nn.LSTM(input_size=3, hidden_size=2)`: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0.
//! let torch = TorchLstmWeights {
//!     weight_ih: Array2::<f32>::zeros((8, 3)),
//!     weight_hh: Array2::zeros((8, 2)),
//!     bias_ih: Array1::zeros(8),
//!     bias_hh: Array1::zeros(8),
//! };
//! let mut params = ParamStore::<f32>::new(0);
//! let cell = convert::lstm_cell_from_torch(&mut params, "rnn/basic_lstm_cell", &torch, 1.0)?;
//! assert_eq!(cell.forget_bias(), 1.0);
//! // The forget bias was unfolded: the f block of our bias is -1.
//! let bias = params.value(cell.bias());
//! assert_eq!(bias[4], -1.0);
//!
//! // And back: the PyTorch weights again.
//! let ours = convert::TfLstmWeights::from_cell(&params, &cell)?;
//! assert_eq!(convert::tf_to_torch(&ours)?, torch);
//! # Ok(())
//! # }
//! ```

use ndarray::{concatenate, s, Array1, Array2, Array3, ArrayView1, ArrayView2, Axis, Ix1, Ix2};

use crate::cell::{BasicLstmCell, Cell, GruCell, LstmCell, LstmCellWeights, LstmPeepholes};
use crate::params::{ParamStore, Scope};
use crate::{Error, Result, Scalar};

// ---------------------------------------------------------------------------------------------
// Weight types
// ---------------------------------------------------------------------------------------------

/// LSTM weights in this crate's layout, TensorFlow 1.x's `BasicLSTMCell`.
///
/// `kernel` is `[input_size + num_units, 4 * num_units]` (rows: input, then previous output;
/// column blocks: gates i, j, f, o), `bias` is `[4 * num_units]`, and `forget_bias` is added to
/// the forget gate's pre-activation at run time (see [`BasicLstmCell`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TfLstmWeights<T> {
    /// `[input_size + num_units, 4 * num_units]`, gates i, j, f, o.
    pub kernel: Array2<T>,
    /// `[4 * num_units]`, gates i, j, f, o.
    pub bias: Array1<T>,
    /// Added inside the forget gate's sigmoid at run time.
    pub forget_bias: f64,
}

/// LSTM weights of one layer and direction of PyTorch's `nn.LSTM` (`weight_ih_l0`,
/// `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0` in its `state_dict`; `_reverse` for the backward
/// direction). Row blocks are the gates i, f, g, o.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchLstmWeights<T> {
    /// `[4 * hidden_size, input_size]`.
    pub weight_ih: Array2<T>,
    /// `[4 * hidden_size, hidden_size]`.
    pub weight_hh: Array2<T>,
    /// `[4 * hidden_size]`.
    pub bias_ih: Array1<T>,
    /// `[4 * hidden_size]`.
    pub bias_hh: Array1<T>,
}

/// LSTM weights of a Keras `LSTM` layer (`layer.get_weights()` returns them in this order).
/// Column blocks are the gates i, f, c, o.
#[derive(Debug, Clone, PartialEq)]
pub struct KerasLstmWeights<T> {
    /// `[input_dim, 4 * units]`.
    pub kernel: Array2<T>,
    /// `[units, 4 * units]`.
    pub recurrent_kernel: Array2<T>,
    /// `[4 * units]`.
    pub bias: Array1<T>,
}

/// The weight inputs of an ONNX `LSTM` node. Row blocks are the gates i, o, f, c.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxLstmWeights<T> {
    /// `W`: `[num_directions, 4 * hidden_size, input_size]`.
    pub w: Array3<T>,
    /// `R`: `[num_directions, 4 * hidden_size, hidden_size]`.
    pub r: Array3<T>,
    /// `B`: `[num_directions, 8 * hidden_size]`, `Wb` then `Rb`.
    pub b: Array2<T>,
}

/// GRU weights in this crate's layout, TensorFlow 1.x's `GRUCell` (see [`GruCell`]), with
/// `candidate_recurrent_bias` for a `reset_after` cell.
#[derive(Debug, Clone, PartialEq)]
pub struct TfGruWeights<T> {
    /// `gates/kernel`: `[input_size + num_units, 2 * num_units]`, column blocks r, u.
    pub gate_kernel: Array2<T>,
    /// `gates/bias`: `[2 * num_units]`, blocks r, u.
    pub gate_bias: Array1<T>,
    /// `candidate/kernel`: `[input_size + num_units, num_units]`.
    pub candidate_kernel: Array2<T>,
    /// `candidate/bias`: `[num_units]`.
    pub candidate_bias: Array1<T>,
    /// `candidate/recurrent_bias`: `[num_units]`, present exactly for a `reset_after` cell
    /// (`None`: TensorFlow 1.x's `GRUCell`).
    pub candidate_recurrent_bias: Option<Array1<T>>,
}

/// GRU weights of one layer and direction of PyTorch's `nn.GRU` (`weight_ih_l0`,
/// `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0` in its `state_dict`; `_reverse` for the backward
/// direction, `l1`, `l2`... for the layers above). Row blocks are r (reset), z (update), n
/// (new); they convert to and from a `reset_after` [`GruCell`].
#[derive(Debug, Clone, PartialEq)]
pub struct TorchGruWeights<T> {
    /// `[3 * hidden_size, input_size]`.
    pub weight_ih: Array2<T>,
    /// `[3 * hidden_size, hidden_size]`.
    pub weight_hh: Array2<T>,
    /// `[3 * hidden_size]`.
    pub bias_ih: Array1<T>,
    /// `[3 * hidden_size]`.
    pub bias_hh: Array1<T>,
}

/// GRU weights of a Keras `GRU(reset_after=True)` layer (the tf.keras 2.x default;
/// `layer.get_weights()` order). Column blocks are z (update), r (reset), h (candidate); they
/// convert to and from a `reset_after` [`GruCell`].
#[derive(Debug, Clone, PartialEq)]
pub struct KerasResetAfterGruWeights<T> {
    /// `[input_dim, 3 * units]`.
    pub kernel: Array2<T>,
    /// `[units, 3 * units]`.
    pub recurrent_kernel: Array2<T>,
    /// `[2, 3 * units]`: the input bias (row 0) and the recurrent bias (row 1).
    pub bias: Array2<T>,
}

/// GRU weights of a Keras `GRU(reset_after=False)` layer (`layer.get_weights()` order).
/// Column blocks are z (update), r (reset), h (candidate).
#[derive(Debug, Clone, PartialEq)]
pub struct KerasGruWeights<T> {
    /// `[input_dim, 3 * units]`.
    pub kernel: Array2<T>,
    /// `[units, 3 * units]`.
    pub recurrent_kernel: Array2<T>,
    /// `[3 * units]` (with `reset_after = True` Keras stores `[2, 3 * units]`: see
    /// [`KerasResetAfterGruWeights`]).
    pub bias: Array1<T>,
}

// ---------------------------------------------------------------------------------------------
// Gate orders
// ---------------------------------------------------------------------------------------------

/// Our gate indices: i, j, f, o.
const I: usize = 0;
const J: usize = 1;
const F: usize = 2;
const O: usize = 3;
/// Block k of PyTorch's and Keras's layout is our block `IFGO[k]` (i, f, g/c, o).
const IFGO: [usize; 4] = [I, F, J, O];
/// Block k of ONNX's layout is our block `IOFC[k]` (i, o, f, c).
const IOFC: [usize; 4] = [I, O, F, J];

/// The inverse permutation: block k of ours is block `inverse(order)[k]` of theirs.
fn inverse(order: [usize; 4]) -> [usize; 4] {
    let mut inv = [0; 4];
    for (k, &ours) in order.iter().enumerate() {
        inv[ours] = k;
    }
    inv
}

/// The column blocks (each `width` wide) of `a` in the order `order`: output block `k` is input
/// block `order[k]`.
fn reorder_cols<T: Scalar>(a: ArrayView2<'_, T>, width: usize, order: &[usize]) -> Array2<T> {
    let blocks: Vec<_> = order
        .iter()
        .map(|&b| a.slice(s![.., b * width..(b + 1) * width]))
        .collect();
    concatenate(Axis(1), &blocks).expect("blocks of one height")
}

/// The blocks of the vector `v` in the order `order` (see [`reorder_cols`]).
fn reorder_vec<T: Scalar>(v: ArrayView1<'_, T>, width: usize, order: &[usize]) -> Array1<T> {
    let blocks: Vec<_> = order
        .iter()
        .map(|&b| v.slice(s![b * width..(b + 1) * width]))
        .collect();
    concatenate(Axis(0), &blocks).expect("vectors")
}

/// Adds `delta` to block `block` (`width` wide) of `v`.
fn shift_block<T: Scalar>(v: &mut Array1<T>, width: usize, block: usize, delta: T) {
    v.slice_mut(s![block * width..(block + 1) * width])
        .mapv_inplace(|b| b + delta);
}

fn check_forget_bias(op: &'static str, forget_bias: f64) -> Result<()> {
    if forget_bias.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{op}: forget_bias must be finite, got {forget_bias}"
        )))
    }
}

fn check_shape(op: &'static str, what: &str, got: &[usize], want: &[usize]) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::shape(op, format!("{what} of shape {want:?}"), got))
    }
}

/// `n = gates * units` with `units > 0`, else a shape error.
fn units_of(op: &'static str, what: &str, n: usize, gates: usize) -> Result<usize> {
    if n == 0 || !n.is_multiple_of(gates) {
        return Err(Error::shape(
            op,
            format!("{what} with {gates} * units rows/columns, units > 0"),
            &[n],
        ));
    }
    Ok(n / gates)
}

fn positive_input(op: &'static str, what: &str, shape: &[usize]) -> Result<()> {
    if shape.contains(&0) {
        return Err(Error::shape(
            op,
            format!("{what} with a positive input size"),
            shape,
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Our LSTM layout
// ---------------------------------------------------------------------------------------------

impl<T: Scalar> TfLstmWeights<T> {
    /// Checked constructor: `bias` `[4H]` with `H > 0`, `kernel` `[in + H, 4H]` with `in > 0`,
    /// `forget_bias` finite.
    pub fn new(kernel: Array2<T>, bias: Array1<T>, forget_bias: f64) -> Result<Self> {
        let w = TfLstmWeights {
            kernel,
            bias,
            forget_bias,
        };
        w.sizes("TfLstmWeights")?;
        Ok(w)
    }

    /// `(input_size, num_units)`, checking every shape and `forget_bias`.
    fn sizes(&self, op: &'static str) -> Result<(usize, usize)> {
        check_forget_bias(op, self.forget_bias)?;
        let h = units_of(op, "a bias [4 * num_units]", self.bias.len(), 4)?;
        let (rows, cols) = self.kernel.dim();
        if cols != 4 * h || rows <= h {
            return Err(Error::shape(
                op,
                format!("a kernel of shape [input_size + {h}, {}]", 4 * h),
                &[rows, cols],
            ));
        }
        Ok((rows - h, h))
    }

    /// The input size (rows of `kernel` minus `num_units`).
    ///
    /// # Errors
    /// [`Error::Shape`] if the fields' shapes do not fit together.
    pub fn input_size(&self) -> Result<usize> {
        Ok(self.sizes("TfLstmWeights::input_size")?.0)
    }

    /// The number of units (`bias.len() / 4`).
    ///
    /// # Errors
    /// [`Error::Shape`] if the fields' shapes do not fit together.
    pub fn num_units(&self) -> Result<usize> {
        Ok(self.sizes("TfLstmWeights::num_units")?.1)
    }

    /// Copies the weights and forget bias of `cell` out of `params`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the cell's parameters are not in `params`, [`Error::Shape`]
    /// if they are not a kernel and a bias.
    pub fn from_cell(params: &ParamStore<T>, cell: &BasicLstmCell) -> Result<Self> {
        if !params.contains(cell.kernel()) || !params.contains(cell.bias()) {
            return Err(Error::invalid(
                "TfLstmWeights::from_cell: the cell's parameters are not in this store",
            ));
        }
        let kernel = params.value(cell.kernel()).clone();
        let bias = params.value(cell.bias()).clone();
        let (ks, bs) = (kernel.shape().to_vec(), bias.shape().to_vec());
        let kernel = kernel
            .into_dimensionality::<Ix2>()
            .map_err(|_| Error::shape("TfLstmWeights::from_cell", "a rank-2 kernel", &ks))?;
        let bias = bias
            .into_dimensionality::<Ix1>()
            .map_err(|_| Error::shape("TfLstmWeights::from_cell", "a rank-1 bias", &bs))?;
        Self::new(kernel, bias, cell.forget_bias())
    }

    /// Creates a [`BasicLstmCell`] with these weights as `{scope}/kernel` and `{scope}/bias`
    /// in `params`, and this forget bias.
    ///
    /// # Errors
    /// As [`BasicLstmCell::from_weights`] (a taken name, bad shapes) and
    /// [`BasicLstmCell::with_forget_bias`].
    pub fn to_cell(
        &self,
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
    ) -> Result<BasicLstmCell> {
        self.sizes("TfLstmWeights::to_cell")?;
        BasicLstmCell::from_weights(
            params,
            scope,
            self.kernel.clone().into_dyn(),
            self.bias.clone().into_dyn(),
        )?
        .with_forget_bias(self.forget_bias)
    }
}

// ---------------------------------------------------------------------------------------------
// PyTorch LSTM
// ---------------------------------------------------------------------------------------------

/// Our LSTM weights as PyTorch `nn.LSTM` weights (one layer, one direction).
///
/// `weight_ih = kernel[:in]ᵀ`, `weight_hh = kernel[in:]ᵀ` with the gate blocks reordered
/// i, j, f, o → i, f, g, o; `bias_ih` is our bias reordered with `forget_bias` added to its f
/// block; `bias_hh` is zeros. Exact up to the rounding of that addition (see the
/// [module docs](self)).
///
/// # Errors
/// [`Error::Shape`] if `w`'s shapes do not fit together, [`Error::InvalidArgument`] if its
/// `forget_bias` is not finite.
pub fn tf_to_torch<T: Scalar>(w: &TfLstmWeights<T>) -> Result<TorchLstmWeights<T>> {
    let (input, h) = w.sizes("tf_to_torch")?;
    let (wx, wh) = w.kernel.view().split_at(Axis(0), input);
    let weight_ih = reorder_cols(wx, h, &IFGO).reversed_axes();
    let weight_hh = reorder_cols(wh, h, &IFGO).reversed_axes();
    let mut bias_ih = reorder_vec(w.bias.view(), h, &IFGO);
    shift_block(
        &mut bias_ih,
        h,
        inverse(IFGO)[F],
        T::from_f64_lossy(w.forget_bias),
    );
    Ok(TorchLstmWeights {
        weight_ih: weight_ih.as_standard_layout().into_owned(),
        weight_hh: weight_hh.as_standard_layout().into_owned(),
        bias_ih,
        bias_hh: Array1::zeros(4 * h),
    })
}

impl<T: Scalar> TorchLstmWeights<T> {
    /// `(input_size, hidden_size)`, checking every shape.
    fn sizes(&self, op: &'static str) -> Result<(usize, usize)> {
        let (rows, input) = self.weight_ih.dim();
        let h = units_of(op, "weight_ih [4 * hidden_size, input_size]", rows, 4)?;
        positive_input(op, "weight_ih", self.weight_ih.shape())?;
        check_shape(op, "weight_hh", self.weight_hh.shape(), &[4 * h, h])?;
        check_shape(op, "bias_ih", self.bias_ih.shape(), &[4 * h])?;
        check_shape(op, "bias_hh", self.bias_hh.shape(), &[4 * h])?;
        Ok((input, h))
    }
}

/// PyTorch `nn.LSTM` weights (one layer, one direction) in our layout, for a cell run with
/// `forget_bias`.
///
/// `kernel = [weight_ihᵀ; weight_hhᵀ]` with the gate blocks reordered i, f, g, o → i, j, f, o;
/// `bias = bias_ih + bias_hh`, reordered, with `forget_bias` subtracted from its f block so that
/// [`BasicLstmCell`] with this `forget_bias` computes PyTorch's function. Use `forget_bias = 0`
/// to keep the bias as PyTorch has it.
///
/// # Errors
/// [`Error::Shape`] if the shapes do not fit together, [`Error::InvalidArgument`] if
/// `forget_bias` is not finite.
pub fn torch_to_tf<T: Scalar>(
    w: &TorchLstmWeights<T>,
    forget_bias: f64,
) -> Result<TfLstmWeights<T>> {
    check_forget_bias("torch_to_tf", forget_bias)?;
    let (_, h) = w.sizes("torch_to_tf")?;
    let back = inverse(IFGO);
    let kernel = concatenate(
        Axis(0),
        &[
            reorder_cols(w.weight_ih.t(), h, &back).view(),
            reorder_cols(w.weight_hh.t(), h, &back).view(),
        ],
    )
    .expect("same width");
    let summed = &w.bias_ih + &w.bias_hh;
    let mut bias = reorder_vec(summed.view(), h, &back);
    shift_block(&mut bias, h, F, -T::from_f64_lossy(forget_bias));
    TfLstmWeights::new(kernel, bias, forget_bias)
}

/// A [`BasicLstmCell`] in `params` under `scope` with PyTorch `nn.LSTM` weights, run with
/// `forget_bias` (any value gives PyTorch's outputs; 1.0 is TensorFlow's default, 0.0 keeps the
/// bias as PyTorch has it): [`torch_to_tf`] then [`TfLstmWeights::to_cell`].
///
/// # Errors
/// As [`torch_to_tf`] and [`TfLstmWeights::to_cell`].
pub fn lstm_cell_from_torch<T: Scalar>(
    params: &mut ParamStore<T>,
    scope: impl Into<Scope>,
    weights: &TorchLstmWeights<T>,
    forget_bias: f64,
) -> Result<BasicLstmCell> {
    torch_to_tf(weights, forget_bias)?.to_cell(params, scope)
}

// ---------------------------------------------------------------------------------------------
// Keras LSTM
// ---------------------------------------------------------------------------------------------

/// Our LSTM weights as Keras `LSTM` weights: the kernel split into `kernel` (input rows) and
/// `recurrent_kernel`, gate blocks reordered i, j, f, o → i, f, c, o, and `forget_bias` added
/// to the f block of `bias`.
///
/// # Errors
/// [`Error::Shape`] if `w`'s shapes do not fit together, [`Error::InvalidArgument`] if its
/// `forget_bias` is not finite.
pub fn tf_to_keras<T: Scalar>(w: &TfLstmWeights<T>) -> Result<KerasLstmWeights<T>> {
    let (input, h) = w.sizes("tf_to_keras")?;
    let (wx, wh) = w.kernel.view().split_at(Axis(0), input);
    let mut bias = reorder_vec(w.bias.view(), h, &IFGO);
    shift_block(
        &mut bias,
        h,
        inverse(IFGO)[F],
        T::from_f64_lossy(w.forget_bias),
    );
    Ok(KerasLstmWeights {
        kernel: reorder_cols(wx, h, &IFGO),
        recurrent_kernel: reorder_cols(wh, h, &IFGO),
        bias,
    })
}

impl<T: Scalar> KerasLstmWeights<T> {
    fn sizes(&self, op: &'static str) -> Result<(usize, usize)> {
        let (input, cols) = self.kernel.dim();
        let h = units_of(op, "kernel [input_dim, 4 * units]", cols, 4)?;
        positive_input(op, "kernel", self.kernel.shape())?;
        check_shape(
            op,
            "recurrent_kernel",
            self.recurrent_kernel.shape(),
            &[h, 4 * h],
        )?;
        check_shape(op, "bias", self.bias.shape(), &[4 * h])?;
        Ok((input, h))
    }
}

/// Keras `LSTM` weights in our layout, for a cell run with `forget_bias`: the kernels stacked
/// `[kernel; recurrent_kernel]`, gate blocks reordered i, f, c, o → i, j, f, o, and
/// `forget_bias` subtracted from the f block of the bias.
///
/// # Errors
/// [`Error::Shape`] if the shapes do not fit together, [`Error::InvalidArgument`] if
/// `forget_bias` is not finite.
pub fn keras_to_tf<T: Scalar>(
    w: &KerasLstmWeights<T>,
    forget_bias: f64,
) -> Result<TfLstmWeights<T>> {
    check_forget_bias("keras_to_tf", forget_bias)?;
    let (_, h) = w.sizes("keras_to_tf")?;
    let back = inverse(IFGO);
    let kernel = concatenate(
        Axis(0),
        &[
            reorder_cols(w.kernel.view(), h, &back).view(),
            reorder_cols(w.recurrent_kernel.view(), h, &back).view(),
        ],
    )
    .expect("same width");
    let mut bias = reorder_vec(w.bias.view(), h, &back);
    shift_block(&mut bias, h, F, -T::from_f64_lossy(forget_bias));
    TfLstmWeights::new(kernel, bias, forget_bias)
}

/// A [`BasicLstmCell`] in `params` under `scope` with Keras `LSTM` weights, run with
/// `forget_bias`: [`keras_to_tf`] then [`TfLstmWeights::to_cell`].
///
/// # Errors
/// As [`keras_to_tf`] and [`TfLstmWeights::to_cell`].
pub fn lstm_cell_from_keras<T: Scalar>(
    params: &mut ParamStore<T>,
    scope: impl Into<Scope>,
    weights: &KerasLstmWeights<T>,
    forget_bias: f64,
) -> Result<BasicLstmCell> {
    keras_to_tf(weights, forget_bias)?.to_cell(params, scope)
}

// ---------------------------------------------------------------------------------------------
// ONNX LSTM
// ---------------------------------------------------------------------------------------------

/// Our LSTM weights as the `W`, `R`, `B` inputs of a single-direction ONNX `LSTM` node
/// (`num_directions = 1`, `direction = "forward"`): transposed, gate blocks reordered
/// i, j, f, o → i, o, f, c, `Wb` our bias reordered with `forget_bias` added to its f block,
/// `Rb` zeros.
///
/// # Errors
/// [`Error::Shape`] if `w`'s shapes do not fit together, [`Error::InvalidArgument`] if its
/// `forget_bias` is not finite.
pub fn tf_to_onnx<T: Scalar>(w: &TfLstmWeights<T>) -> Result<OnnxLstmWeights<T>> {
    let (input, h) = w.sizes("tf_to_onnx")?;
    let (wx, wh) = w.kernel.view().split_at(Axis(0), input);
    let w_onnx = reorder_cols(wx, h, &IOFC).reversed_axes();
    let r_onnx = reorder_cols(wh, h, &IOFC).reversed_axes();
    let mut wb = reorder_vec(w.bias.view(), h, &IOFC);
    shift_block(
        &mut wb,
        h,
        inverse(IOFC)[F],
        T::from_f64_lossy(w.forget_bias),
    );
    let b = concatenate(Axis(0), &[wb.view(), Array1::zeros(4 * h).view()]).expect("vectors");
    Ok(OnnxLstmWeights {
        w: w_onnx
            .as_standard_layout()
            .into_owned()
            .insert_axis(Axis(0)),
        r: r_onnx
            .as_standard_layout()
            .into_owned()
            .insert_axis(Axis(0)),
        b: b.insert_axis(Axis(0)),
    })
}

impl<T: Scalar> OnnxLstmWeights<T> {
    /// `(num_directions, input_size, hidden_size)`, checking every shape.
    fn sizes(&self, op: &'static str) -> Result<(usize, usize, usize)> {
        let (dirs, rows, input) = self.w.dim();
        if dirs == 0 || dirs > 2 {
            return Err(Error::shape(
                op,
                "W of shape [num_directions (1 or 2), 4 * hidden_size, input_size]",
                self.w.shape(),
            ));
        }
        let h = units_of(
            op,
            "W [num_directions, 4 * hidden_size, input_size]",
            rows,
            4,
        )?;
        positive_input(op, "W", self.w.shape())?;
        check_shape(op, "R", self.r.shape(), &[dirs, 4 * h, h])?;
        check_shape(op, "B", self.b.shape(), &[dirs, 8 * h])?;
        Ok((dirs, input, h))
    }

    /// `num_directions`, the leading axis of `W`, `R` and `B` (1 or 2).
    ///
    /// # Errors
    /// [`Error::Shape`] if the shapes do not fit together.
    pub fn num_directions(&self) -> Result<usize> {
        Ok(self.sizes("OnnxLstmWeights::num_directions")?.0)
    }

    /// Direction `d` of the weights (0 forward, 1 backward in a bidirectional node), as
    /// single-direction weights (leading axis 1).
    ///
    /// # Errors
    /// [`Error::Shape`] if the shapes do not fit together, [`Error::InvalidArgument`] if `d` is
    /// not a direction of the weights.
    pub fn direction(&self, d: usize) -> Result<OnnxLstmWeights<T>> {
        let (dirs, _, _) = self.sizes("OnnxLstmWeights::direction")?;
        if d >= dirs {
            return Err(Error::invalid(format!(
                "OnnxLstmWeights::direction: direction {d} of weights with {dirs} direction(s)"
            )));
        }
        Ok(OnnxLstmWeights {
            w: self.w.slice(s![d..d + 1, .., ..]).to_owned(),
            r: self.r.slice(s![d..d + 1, .., ..]).to_owned(),
            b: self.b.slice(s![d..d + 1, ..]).to_owned(),
        })
    }
}

/// The weights of a single-direction ONNX `LSTM` node in our layout, for a cell run with
/// `forget_bias`: transposed, gate blocks reordered i, o, f, c → i, j, f, o, bias `Wb + Rb`
/// with `forget_bias` subtracted from its f block.
///
/// # Errors
/// [`Error::Shape`] if the shapes do not fit together or `num_directions` is not 1 (take one
/// direction of a bidirectional node with [`OnnxLstmWeights::direction`]),
/// [`Error::InvalidArgument`] if `forget_bias` is not finite.
pub fn onnx_to_tf<T: Scalar>(w: &OnnxLstmWeights<T>, forget_bias: f64) -> Result<TfLstmWeights<T>> {
    check_forget_bias("onnx_to_tf", forget_bias)?;
    let (dirs, _, h) = w.sizes("onnx_to_tf")?;
    if dirs != 1 {
        return Err(Error::shape(
            "onnx_to_tf",
            "one direction (num_directions = 1; see OnnxLstmWeights::direction)",
            w.w.shape(),
        ));
    }
    let back = inverse(IOFC);
    let w_onnx = w.w.index_axis(Axis(0), 0);
    let r_onnx = w.r.index_axis(Axis(0), 0);
    let kernel = concatenate(
        Axis(0),
        &[
            reorder_cols(w_onnx.t(), h, &back).view(),
            reorder_cols(r_onnx.t(), h, &back).view(),
        ],
    )
    .expect("same width");
    let b = w.b.index_axis(Axis(0), 0);
    let summed = &b.slice(s![..4 * h]) + &b.slice(s![4 * h..]);
    let mut bias = reorder_vec(summed.view(), h, &back);
    shift_block(&mut bias, h, F, -T::from_f64_lossy(forget_bias));
    TfLstmWeights::new(kernel, bias, forget_bias)
}

/// A [`BasicLstmCell`] in `params` under `scope` with the weights of a single-direction ONNX
/// `LSTM` node, run with `forget_bias`: [`onnx_to_tf`] then [`TfLstmWeights::to_cell`].
///
/// # Errors
/// As [`onnx_to_tf`] and [`TfLstmWeights::to_cell`].
pub fn lstm_cell_from_onnx<T: Scalar>(
    params: &mut ParamStore<T>,
    scope: impl Into<Scope>,
    weights: &OnnxLstmWeights<T>,
    forget_bias: f64,
) -> Result<BasicLstmCell> {
    onnx_to_tf(weights, forget_bias)?.to_cell(params, scope)
}

// ---------------------------------------------------------------------------------------------
// LstmCell: PyTorch's projection and Keras's peepholes
// ---------------------------------------------------------------------------------------------

/// One layer and direction of PyTorch's `nn.LSTM(..., proj_size=P)` (`weight_ih_l0`,
/// `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, `weight_hr_l0`). Row blocks are the gates
/// i, f, g, o.
///
/// PyTorch computes the gates as [`TorchLstmWeights`] does, from the projected `h` of width
/// `P`, and then `h' = weight_hr @ (o ⊙ tanh(c'))`: [`LstmCell`] with `num_proj = P` and
/// `projection/kernel = weight_hrᵀ`. PyTorch has no peepholes and no clipping.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchProjLstmWeights<T> {
    /// `[4 * hidden_size, input_size]`.
    pub weight_ih: Array2<T>,
    /// `[4 * hidden_size, proj_size]`.
    pub weight_hh: Array2<T>,
    /// `[4 * hidden_size]`.
    pub bias_ih: Array1<T>,
    /// `[4 * hidden_size]`.
    pub bias_hh: Array1<T>,
    /// `[proj_size, hidden_size]`.
    pub weight_hr: Array2<T>,
}

/// The weights of a Keras peephole LSTM cell (`tf.keras.experimental.PeepholeLSTMCell` in
/// TensorFlow 2.x, `tfa.rnn.PeepholeLSTMCell` in TensorFlow Addons), in `get_weights()` order.
/// Column blocks are the gates i, f, c, o.
///
/// ```text
/// [i, f, c̃, o] = x @ kernel + h @ recurrent_kernel + bias
/// i = σ(i + p_i ⊙ c),  f = σ(f + p_f ⊙ c),  c' = f ⊙ c + i ⊙ tanh(c̃),
/// o = σ(o + p_o ⊙ c'),  h' = o ⊙ tanh(c')
/// ```
///
/// the function of [`LstmCell`] with peepholes (`w_i_diag = p_i`, `w_f_diag = p_f`,
/// `w_o_diag = p_o`) and no clipping or projection. Keras has no layer-normalised counterpart of
/// [`crate::cell::LayerNormBasicLstmCell`]: TensorFlow Addons' `LayerNormLSTMCell` normalises
/// `x @ kernel` and `h @ recurrent_kernel` separately, another function, so no converter is
/// offered for it.
#[derive(Debug, Clone, PartialEq)]
pub struct KerasPeepholeLstmWeights<T> {
    /// `[input_dim, 4 * units]`.
    pub kernel: Array2<T>,
    /// `[units, 4 * units]`.
    pub recurrent_kernel: Array2<T>,
    /// `[4 * units]`.
    pub bias: Array1<T>,
    /// `[units]`.
    pub input_gate_peephole_weights: Array1<T>,
    /// `[units]`.
    pub forget_gate_peephole_weights: Array1<T>,
    /// `[units]`.
    pub output_gate_peephole_weights: Array1<T>,
}

/// Our [`LstmCell`] weights (with a projection, without peepholes) as PyTorch
/// `nn.LSTM(proj_size=num_proj)` weights, for a cell run with `forget_bias`: as
/// [`tf_to_torch`] for the gates, and `weight_hr = projection/kernelᵀ`.
///
/// # Errors
/// [`Error::Shape`] for weights that do not fit, [`Error::InvalidArgument`] for weights with
/// peepholes or without a projection (PyTorch has no peepholes; without a projection use
/// [`tf_to_torch`]), or a `forget_bias` that is not finite. A cell's `cell_clip` and
/// `proj_clip` have no PyTorch counterpart: leave them unset on cells to be exported.
pub fn lstm_cell_to_torch<T: Scalar>(
    w: &LstmCellWeights<T>,
    forget_bias: f64,
) -> Result<TorchProjLstmWeights<T>> {
    const OP: &str = "lstm_cell_to_torch";
    check_forget_bias(OP, forget_bias)?;
    let (input, h, _) = w.sizes()?;
    let projection = match (&w.peepholes, &w.projection) {
        (None, Some(p)) => p,
        _ => {
            return Err(Error::invalid(format!(
                "{OP}: PyTorch's projected LSTM has a projection and no peepholes"
            )))
        }
    };
    let (wx, wh) = w.kernel.view().split_at(Axis(0), input);
    let mut bias_ih = reorder_vec(w.bias.view(), h, &IFGO);
    shift_block(
        &mut bias_ih,
        h,
        inverse(IFGO)[F],
        T::from_f64_lossy(forget_bias),
    );
    Ok(TorchProjLstmWeights {
        weight_ih: reorder_cols(wx, h, &IFGO)
            .reversed_axes()
            .as_standard_layout()
            .into_owned(),
        weight_hh: reorder_cols(wh, h, &IFGO)
            .reversed_axes()
            .as_standard_layout()
            .into_owned(),
        bias_ih,
        bias_hh: Array1::zeros(4 * h),
        weight_hr: projection.t().as_standard_layout().into_owned(),
    })
}

/// PyTorch `nn.LSTM(proj_size=P)` weights (one layer, one direction) as [`LstmCell`] weights
/// with `num_proj = P`, for a cell run with `forget_bias`: as [`torch_to_tf`] for the gates, and
/// `projection/kernel = weight_hrᵀ`.
///
/// # Errors
/// [`Error::Shape`] if the shapes do not fit together, [`Error::InvalidArgument`] if
/// `forget_bias` is not finite.
pub fn torch_to_lstm_cell<T: Scalar>(
    w: &TorchProjLstmWeights<T>,
    forget_bias: f64,
) -> Result<LstmCellWeights<T>> {
    const OP: &str = "torch_to_lstm_cell";
    check_forget_bias(OP, forget_bias)?;
    let (rows, _) = w.weight_ih.dim();
    let h = units_of(OP, "weight_ih [4 * hidden_size, input_size]", rows, 4)?;
    positive_input(OP, "weight_ih", w.weight_ih.shape())?;
    let p = w.weight_hr.nrows();
    if p == 0 {
        return Err(Error::shape(
            OP,
            "weight_hr of shape [proj_size > 0, hidden_size]",
            w.weight_hr.shape(),
        ));
    }
    check_shape(OP, "weight_hr", w.weight_hr.shape(), &[p, h])?;
    check_shape(OP, "weight_hh", w.weight_hh.shape(), &[4 * h, p])?;
    check_shape(OP, "bias_ih", w.bias_ih.shape(), &[4 * h])?;
    check_shape(OP, "bias_hh", w.bias_hh.shape(), &[4 * h])?;
    let back = inverse(IFGO);
    let kernel = concatenate(
        Axis(0),
        &[
            reorder_cols(w.weight_ih.t(), h, &back).view(),
            reorder_cols(w.weight_hh.t(), h, &back).view(),
        ],
    )
    .expect("same width");
    let summed = &w.bias_ih + &w.bias_hh;
    let mut bias = reorder_vec(summed.view(), h, &back);
    shift_block(&mut bias, h, F, -T::from_f64_lossy(forget_bias));
    let weights = LstmCellWeights {
        kernel,
        bias,
        peepholes: None,
        projection: Some(w.weight_hr.t().as_standard_layout().into_owned()),
    };
    weights.sizes()?;
    Ok(weights)
}

/// An [`LstmCell`] in `params` under `scope` with PyTorch `nn.LSTM(proj_size=P)` weights, run
/// with `forget_bias`: [`torch_to_lstm_cell`], then [`LstmCell::from_weights`].
///
/// # Errors
/// As [`torch_to_lstm_cell`] and [`LstmCell::from_weights`].
pub fn lstm_cell_from_torch_proj<T: Scalar>(
    params: &mut ParamStore<T>,
    scope: impl Into<Scope>,
    weights: &TorchProjLstmWeights<T>,
    forget_bias: f64,
) -> Result<LstmCell> {
    LstmCell::from_weights(params, scope, torch_to_lstm_cell(weights, forget_bias)?)?
        .with_forget_bias(forget_bias)
}

/// Our [`LstmCell`] weights (with peepholes, without a projection) as Keras peephole LSTM
/// weights, for a cell run with `forget_bias`: as [`tf_to_keras`] for the gates, and the
/// peepholes renamed.
///
/// # Errors
/// [`Error::Shape`] for weights that do not fit, [`Error::InvalidArgument`] for weights without
/// peepholes or with a projection, or a `forget_bias` that is not finite. Keras has no cell
/// clipping: leave `cell_clip` unset on cells to be exported.
pub fn lstm_cell_to_keras_peephole<T: Scalar>(
    w: &LstmCellWeights<T>,
    forget_bias: f64,
) -> Result<KerasPeepholeLstmWeights<T>> {
    const OP: &str = "lstm_cell_to_keras_peephole";
    w.sizes()?;
    let peepholes = match (&w.peepholes, &w.projection) {
        (Some(p), None) => p,
        _ => {
            return Err(Error::invalid(format!(
                "{OP}: Keras's peephole LSTM has peepholes and no projection"
            )))
        }
    };
    let keras = tf_to_keras(&TfLstmWeights::new(
        w.kernel.clone(),
        w.bias.clone(),
        forget_bias,
    )?)?;
    Ok(KerasPeepholeLstmWeights {
        kernel: keras.kernel,
        recurrent_kernel: keras.recurrent_kernel,
        bias: keras.bias,
        input_gate_peephole_weights: peepholes.w_i_diag.clone(),
        forget_gate_peephole_weights: peepholes.w_f_diag.clone(),
        output_gate_peephole_weights: peepholes.w_o_diag.clone(),
    })
}

/// Keras peephole LSTM weights as [`LstmCell`] weights with peepholes, for a cell run with
/// `forget_bias`: as [`keras_to_tf`] for the gates, and the peepholes renamed.
///
/// # Errors
/// [`Error::Shape`] if the shapes do not fit together, [`Error::InvalidArgument`] if
/// `forget_bias` is not finite.
pub fn keras_peephole_to_lstm_cell<T: Scalar>(
    w: &KerasPeepholeLstmWeights<T>,
    forget_bias: f64,
) -> Result<LstmCellWeights<T>> {
    let gates = keras_to_tf(
        &KerasLstmWeights {
            kernel: w.kernel.clone(),
            recurrent_kernel: w.recurrent_kernel.clone(),
            bias: w.bias.clone(),
        },
        forget_bias,
    )?;
    let weights = LstmCellWeights {
        kernel: gates.kernel,
        bias: gates.bias,
        peepholes: Some(LstmPeepholes {
            w_f_diag: w.forget_gate_peephole_weights.clone(),
            w_i_diag: w.input_gate_peephole_weights.clone(),
            w_o_diag: w.output_gate_peephole_weights.clone(),
        }),
        projection: None,
    };
    weights.sizes()?;
    Ok(weights)
}

// ---------------------------------------------------------------------------------------------
// GRU
// ---------------------------------------------------------------------------------------------

impl<T: Scalar> TfGruWeights<T> {
    /// `(input_size, num_units)`, checking every shape.
    fn sizes(&self, op: &'static str) -> Result<(usize, usize)> {
        let h = units_of(op, "gates/bias [2 * num_units]", self.gate_bias.len(), 2)?;
        let (rows, cols) = self.gate_kernel.dim();
        if cols != 2 * h || rows <= h {
            return Err(Error::shape(
                op,
                format!("gates/kernel of shape [input_size + {h}, {}]", 2 * h),
                &[rows, cols],
            ));
        }
        check_shape(
            op,
            "candidate/kernel",
            self.candidate_kernel.shape(),
            &[rows, h],
        )?;
        check_shape(op, "candidate/bias", self.candidate_bias.shape(), &[h])?;
        if let Some(b) = &self.candidate_recurrent_bias {
            check_shape(op, "candidate/recurrent_bias", b.shape(), &[h])?;
        }
        Ok((rows - h, h))
    }

    /// Whether these are the weights of a `reset_after` cell.
    pub fn reset_after(&self) -> bool {
        self.candidate_recurrent_bias.is_some()
    }

    /// The values in [`Cell::param_ids`] order.
    fn values(&self) -> Vec<ndarray::ArrayD<T>> {
        let mut values = vec![
            self.gate_kernel.clone().into_dyn(),
            self.gate_bias.clone().into_dyn(),
            self.candidate_kernel.clone().into_dyn(),
            self.candidate_bias.clone().into_dyn(),
        ];
        values.extend(
            self.candidate_recurrent_bias
                .as_ref()
                .map(|b| b.clone().into_dyn()),
        );
        values
    }

    /// Copies the parameters of `cell` out of `params` (five for a `reset_after` cell).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the cell's parameters are not in `params`, [`Error::Shape`]
    /// if their shapes are not a GRU's.
    pub fn from_cell(params: &ParamStore<T>, cell: &GruCell) -> Result<Self> {
        let ids = cell.param_ids();
        if ids.iter().any(|&id| !params.contains(id)) {
            return Err(Error::invalid(
                "TfGruWeights::from_cell: the cell's parameters are not in this store",
            ));
        }
        let matrix = |k: usize| {
            let v = params.value(ids[k]);
            v.clone()
                .into_dimensionality::<Ix2>()
                .map_err(|_| Error::shape("TfGruWeights::from_cell", "a rank-2 kernel", v.shape()))
        };
        let vector = |k: usize| {
            let v = params.value(ids[k]);
            v.clone()
                .into_dimensionality::<Ix1>()
                .map_err(|_| Error::shape("TfGruWeights::from_cell", "a rank-1 bias", v.shape()))
        };
        let w = TfGruWeights {
            gate_kernel: matrix(0)?,
            gate_bias: vector(1)?,
            candidate_kernel: matrix(2)?,
            candidate_bias: vector(3)?,
            candidate_recurrent_bias: cell.reset_after().then(|| vector(4)).transpose()?,
        };
        w.sizes("TfGruWeights::from_cell")?;
        Ok(w)
    }

    /// Creates a [`GruCell`] with these weights as `{scope}/gates/{kernel,bias}` and
    /// `{scope}/candidate/{kernel,bias}` in `params`, and `{scope}/candidate/recurrent_bias`
    /// (a `reset_after` cell) when `candidate_recurrent_bias` is set.
    ///
    /// # Errors
    /// As [`GruCell::from_weights`] (a taken name, bad shapes); the store is left as it was.
    pub fn to_cell(&self, params: &mut ParamStore<T>, scope: impl Into<Scope>) -> Result<GruCell> {
        let mut v = self.values().into_iter();
        let mut next = || v.next().expect("four or five values");
        let (gk, gb, ck, cb) = (next(), next(), next(), next());
        match self.candidate_recurrent_bias {
            None => GruCell::from_weights(params, scope, gk, gb, ck, cb),
            Some(_) => GruCell::from_weights_reset_after(params, scope, gk, gb, ck, cb, next()),
        }
    }

    /// Writes these weights into the parameters of `cell` (created, for example, by
    /// [`GruCell::new`] or [`crate::cell::GruCellConfig::init`] with the same sizes).
    ///
    /// # Errors
    /// [`Error::Shape`] if the shapes do not fit together or differ from the cell's,
    /// [`Error::InvalidArgument`] if the cell's parameters are not in `params` or one of the
    /// two is `reset_after` and the other not. Checked before anything is written.
    pub fn assign_to(&self, params: &mut ParamStore<T>, cell: &GruCell) -> Result<()> {
        self.sizes("TfGruWeights::assign_to")?;
        if self.reset_after() != cell.reset_after() {
            return Err(Error::invalid(format!(
                "TfGruWeights::assign_to: weights with reset_after = {} for a cell with \
                 reset_after = {}",
                self.reset_after(),
                cell.reset_after()
            )));
        }
        let ids = cell.param_ids();
        let values = self.values();
        for (&id, v) in ids.iter().zip(&values) {
            if !params.contains(id) {
                return Err(Error::invalid(
                    "TfGruWeights::assign_to: the cell's parameters are not in this store",
                ));
            }
            check_shape(
                "TfGruWeights::assign_to",
                params.name(id),
                v.shape(),
                params.value(id).shape(),
            )?;
        }
        for (id, v) in ids.into_iter().zip(values) {
            params.set(id, v)?;
        }
        Ok(())
    }
}

/// Our GRU weights as Keras `GRU(reset_after=False)` weights: bit-exact (values are only
/// moved). Keras's blocks z, r, h are our u, r and candidate; `kernel` takes the input rows of
/// our two kernels, `recurrent_kernel` their state rows.
///
/// # Errors
/// [`Error::Shape`] if `w`'s shapes do not fit together, [`Error::InvalidArgument`] for the
/// weights of a `reset_after` cell (use [`tf_gru_to_keras_reset_after`]).
pub fn tf_gru_to_keras<T: Scalar>(w: &TfGruWeights<T>) -> Result<KerasGruWeights<T>> {
    let (input, h) = w.sizes("tf_gru_to_keras")?;
    if w.reset_after() {
        return Err(Error::invalid(
            "tf_gru_to_keras: the weights of a reset_after GRU convert to Keras's \
             GRU(reset_after=True) (tf_gru_to_keras_reset_after), not to reset_after=False",
        ));
    }
    let (gx, gh) = w.gate_kernel.view().split_at(Axis(0), input);
    let (cx, ch) = w.candidate_kernel.view().split_at(Axis(0), input);
    let (r, u) = (s![.., ..h], s![.., h..]);
    let kernel = concatenate(Axis(1), &[gx.slice(u), gx.slice(r), cx]).expect("same height");
    let recurrent_kernel =
        concatenate(Axis(1), &[gh.slice(u), gh.slice(r), ch]).expect("same height");
    let bias = concatenate(
        Axis(0),
        &[
            w.gate_bias.slice(s![h..]),
            w.gate_bias.slice(s![..h]),
            w.candidate_bias.view(),
        ],
    )
    .expect("vectors");
    Ok(KerasGruWeights {
        kernel,
        recurrent_kernel,
        bias,
    })
}

/// Keras `GRU(reset_after=False)` weights in our layout: bit-exact (values are only moved).
/// Build a [`GruCell`] from them with [`TfGruWeights::to_cell`], or write them into an existing
/// one with [`TfGruWeights::assign_to`].
///
/// Keras's default `recurrent_activation` must have been `"sigmoid"` (tf.keras ≥ 2.0) and
/// `activation` `"tanh"`. Weights of `reset_after=True` layers (bias `[2, 3 * units]`) compute
/// another function: convert them with [`keras_reset_after_gru_to_tf`].
///
/// # Errors
/// [`Error::Shape`] if the shapes do not fit together.
pub fn keras_gru_to_tf<T: Scalar>(w: &KerasGruWeights<T>) -> Result<TfGruWeights<T>> {
    const OP: &str = "keras_gru_to_tf";
    let (_, cols) = w.kernel.dim();
    let h = units_of(OP, "kernel [input_dim, 3 * units]", cols, 3)?;
    positive_input(OP, "kernel", w.kernel.shape())?;
    check_shape(
        OP,
        "recurrent_kernel",
        w.recurrent_kernel.shape(),
        &[h, 3 * h],
    )?;
    check_shape(OP, "bias", w.bias.shape(), &[3 * h])?;
    let (z, r, c) = (s![.., ..h], s![.., h..2 * h], s![.., 2 * h..]);
    let (wx, wh) = (w.kernel.view(), w.recurrent_kernel.view());
    let gate_kernel = concatenate(
        Axis(0),
        &[
            concatenate(Axis(1), &[wx.slice(r), wx.slice(z)])
                .expect("same height")
                .view(),
            concatenate(Axis(1), &[wh.slice(r), wh.slice(z)])
                .expect("same height")
                .view(),
        ],
    )
    .expect("same width");
    let candidate_kernel = concatenate(Axis(0), &[wx.slice(c), wh.slice(c)]).expect("same width");
    let gate_bias = concatenate(
        Axis(0),
        &[w.bias.slice(s![h..2 * h]), w.bias.slice(s![..h])],
    )
    .expect("vectors");
    Ok(TfGruWeights {
        gate_kernel,
        gate_bias,
        candidate_kernel,
        candidate_bias: w.bias.slice(s![2 * h..]).to_owned(),
        candidate_recurrent_bias: None,
    })
}

// ---------------------------------------------------------------------------------------------
// GRU with the reset gate after the recurrent product: PyTorch, Keras reset_after=True
// ---------------------------------------------------------------------------------------------

/// The sizes of reset_after weights `w`, which must be a `reset_after` cell's.
fn reset_after_sizes<T: Scalar>(op: &'static str, w: &TfGruWeights<T>) -> Result<(usize, usize)> {
    let sizes = w.sizes(op)?;
    if !w.reset_after() {
        return Err(Error::invalid(format!(
            "{op}: PyTorch's nn.GRU and Keras's GRU(reset_after=True) apply the reset gate \
             after the recurrent product; these weights are of a GRU without reset_after \
             (no candidate/recurrent_bias), another function (see the convert module docs)"
        )));
    }
    Ok(sizes)
}

/// `[a; b]` (rows of `a`, then rows of `b`).
fn stack_rows<T: Scalar>(a: ArrayView2<'_, T>, b: ArrayView2<'_, T>) -> Array2<T> {
    concatenate(Axis(0), &[a, b]).expect("same width")
}

/// Our `reset_after` GRU weights as PyTorch `nn.GRU` weights (one layer, one direction).
///
/// PyTorch's blocks r, z, n are our r, u and candidate; `weight_ih` is the transposed input
/// rows of our kernels, `weight_hh` their transposed state rows. PyTorch adds two biases to
/// `r` and `z` where we have one: the whole gate bias goes to `bias_ih` and `bias_hh` gets
/// zeros there; the candidate's `b_in` is `candidate/bias`, `b_hn` is
/// `candidate/recurrent_bias`. Values are only moved: exporting and importing back is
/// bit-exact (except that a gate bias of `-0.0` comes back as `+0.0`).
///
/// # Errors
/// [`Error::Shape`] if the shapes do not fit together, [`Error::InvalidArgument`] for the
/// weights of a GRU without `reset_after`.
pub fn tf_gru_to_torch<T: Scalar>(w: &TfGruWeights<T>) -> Result<TorchGruWeights<T>> {
    let (input, h) = reset_after_sizes("tf_gru_to_torch", w)?;
    let (gx, gh) = w.gate_kernel.view().split_at(Axis(0), input);
    let (cx, ch) = w.candidate_kernel.view().split_at(Axis(0), input);
    let transposed = |a: Array2<T>| a.reversed_axes().as_standard_layout().into_owned();
    let recurrent_bias = w
        .candidate_recurrent_bias
        .as_ref()
        .expect("checked: reset_after");
    Ok(TorchGruWeights {
        weight_ih: transposed(concatenate(Axis(1), &[gx, cx]).expect("same height")),
        weight_hh: transposed(concatenate(Axis(1), &[gh, ch]).expect("same height")),
        bias_ih: concatenate(Axis(0), &[w.gate_bias.view(), w.candidate_bias.view()])
            .expect("vectors"),
        bias_hh: concatenate(
            Axis(0),
            &[Array1::zeros(2 * h).view(), recurrent_bias.view()],
        )
        .expect("vectors"),
    })
}

/// PyTorch `nn.GRU` weights (one layer, one direction) as the weights of a `reset_after`
/// [`GruCell`], which then computes PyTorch's function:
///
/// ```text
/// PyTorch:  r = σ(W_ir x + b_ir + W_hr h + b_hr)     z = σ(W_iz x + b_iz + W_hz h + b_hz)
///           n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn));    h' = (1 − z) ⊙ n + z ⊙ h
/// ours:     gates/kernel = [W_ir W_iz; W_hr W_hz]ᵀ     gates/bias = [b_ir + b_hr, b_iz + b_hz]
///           candidate/kernel = [W_in; W_hn]ᵀ           candidate/bias = b_in
///           candidate/recurrent_bias = b_hn
/// ```
///
/// The kernels and the candidate's biases are moved bit-exactly; the gate biases are the sums
/// of PyTorch's two (one rounding each), which is all the function depends on.
///
/// # Errors
/// [`Error::Shape`] if the shapes do not fit together.
pub fn torch_gru_to_tf<T: Scalar>(w: &TorchGruWeights<T>) -> Result<TfGruWeights<T>> {
    const OP: &str = "torch_gru_to_tf";
    let (rows, _) = w.weight_ih.dim();
    let h = units_of(OP, "weight_ih [3 * hidden_size, input_size]", rows, 3)?;
    positive_input(OP, "weight_ih", w.weight_ih.shape())?;
    check_shape(OP, "weight_hh", w.weight_hh.shape(), &[3 * h, h])?;
    check_shape(OP, "bias_ih", w.bias_ih.shape(), &[3 * h])?;
    check_shape(OP, "bias_hh", w.bias_hh.shape(), &[3 * h])?;
    let (wi, wh) = (w.weight_ih.t(), w.weight_hh.t());
    let (gates, cand) = (s![.., ..2 * h], s![.., 2 * h..]);
    let weights = TfGruWeights {
        gate_kernel: stack_rows(wi.slice(gates), wh.slice(gates)),
        gate_bias: &w.bias_ih.slice(s![..2 * h]) + &w.bias_hh.slice(s![..2 * h]),
        candidate_kernel: stack_rows(wi.slice(cand), wh.slice(cand)),
        candidate_bias: w.bias_ih.slice(s![2 * h..]).to_owned(),
        candidate_recurrent_bias: Some(w.bias_hh.slice(s![2 * h..]).to_owned()),
    };
    weights.sizes(OP)?;
    Ok(weights)
}

/// A `reset_after` [`GruCell`] in `params` under `scope` with PyTorch `nn.GRU` weights:
/// [`torch_gru_to_tf`], then [`TfGruWeights::to_cell`].
///
/// ```
/// # fn main() -> recurrent::Result<()> {
/// use ndarray::{Array1, Array2};
/// use recurrent::convert::{self, TorchGruWeights};
/// use recurrent::{dynamic_rnn, ParamStore, RnnOptions, Tape};
///
/// // nn.GRU(input_size=3, hidden_size=2): weight_ih_l0 [6, 3], weight_hh_l0 [6, 2], biases [6].
/// let torch = TorchGruWeights {
///     weight_ih: Array2::<f32>::from_elem((6, 3), 0.1),
///     weight_hh: Array2::from_elem((6, 2), -0.2),
///     bias_ih: Array1::from_elem(6, 0.3),
///     bias_hh: Array1::from_elem(6, 0.4),
/// };
/// let mut params = ParamStore::<f32>::new(0);
/// let cell = convert::gru_cell_from_torch(&mut params, "rnn/gru_cell", &torch)?;
/// assert!(cell.reset_after());
/// // r and z have one bias here, the sum of PyTorch's two; b_hn stays apart.
/// let id = params.id("rnn/gru_cell/gates/bias").unwrap();
/// assert!((params.value(id)[0] - 0.7).abs() < 1e-6);
/// let tape = Tape::inference(&params);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[1, 4, 3])));
/// let (outputs, _) = dynamic_rnn(&tape, &cell, x, RnnOptions::default())?;
/// assert_eq!(tape.shape(outputs), vec![1, 4, 2]);
/// // And back: PyTorch's layout, with the gates' bias on the input side.
/// let back = convert::tf_gru_to_torch(&convert::TfGruWeights::from_cell(&params, &cell)?)?;
/// assert_eq!(back.weight_hh, torch.weight_hh);
/// assert_eq!(back.bias_hh[5], 0.4);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// As [`torch_gru_to_tf`] and [`GruCell::from_weights_reset_after`].
pub fn gru_cell_from_torch<T: Scalar>(
    params: &mut ParamStore<T>,
    scope: impl Into<Scope>,
    weights: &TorchGruWeights<T>,
) -> Result<GruCell> {
    torch_gru_to_tf(weights)?.to_cell(params, scope)
}

impl<T: Scalar> TorchGruWeights<T> {
    /// The names of layer `layer`'s weights in an `nn.GRU` state dict, `prefix` first (`""`
    /// for the module itself, `"gru."` for a submodule called `gru`): `weight_ih_l{layer}`,
    /// `weight_hh_l{layer}`, `bias_ih_l{layer}`, `bias_hh_l{layer}`, each with `_reverse` for
    /// the backward direction of a bidirectional GRU.
    pub fn state_dict_names(prefix: &str, layer: usize, reverse: bool) -> [String; 4] {
        let suffix = if reverse { "_reverse" } else { "" };
        ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
            .map(|name| format!("{prefix}{name}_l{layer}{suffix}"))
    }

    /// Reads one layer and direction out of a store that holds an `nn.GRU` state dict by its
    /// PyTorch names, for instance a safetensors file written by
    /// `safetensors.torch.save_file(gru.state_dict(), path)` and read with
    /// [`crate::checkpoint::load_new`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming a missing entry, [`Error::Shape`] for an entry of the
    /// wrong rank.
    pub fn from_state_dict(
        store: &ParamStore<T>,
        prefix: &str,
        layer: usize,
        reverse: bool,
    ) -> Result<Self> {
        const OP: &str = "TorchGruWeights::from_state_dict";
        let [ih, hh, bih, bhh] = Self::state_dict_names(prefix, layer, reverse).map(|name| {
            store
                .id(&name)
                .map(|id| store.value(id))
                .ok_or_else(|| Error::invalid(format!("{OP}: the state dict has no {name:?}")))
        });
        let matrix = |a: Result<&ndarray::ArrayD<T>>| -> Result<Array2<T>> {
            let a = a?;
            a.clone()
                .into_dimensionality()
                .map_err(|_| Error::shape(OP, "a rank-2 weight", a.shape()))
        };
        let vector = |a: Result<&ndarray::ArrayD<T>>| -> Result<Array1<T>> {
            let a = a?;
            a.clone()
                .into_dimensionality()
                .map_err(|_| Error::shape(OP, "a rank-1 bias", a.shape()))
        };
        Ok(TorchGruWeights {
            weight_ih: matrix(ih)?,
            weight_hh: matrix(hh)?,
            bias_ih: vector(bih)?,
            bias_hh: vector(bhh)?,
        })
    }

    /// Adds these weights to `store` under their state-dict names (see
    /// [`TorchGruWeights::state_dict_names`]); [`crate::checkpoint::save`] then writes a
    /// safetensors file that `safetensors.torch.load_file` reads as a state dict for
    /// `gru.load_state_dict(...)`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a name is taken; the store is then left as it was.
    pub fn to_state_dict(
        &self,
        store: &mut ParamStore<T>,
        prefix: &str,
        layer: usize,
        reverse: bool,
    ) -> Result<()> {
        let names = Self::state_dict_names(prefix, layer, reverse);
        let values = [
            self.weight_ih.clone().into_dyn(),
            self.weight_hh.clone().into_dyn(),
            self.bias_ih.clone().into_dyn(),
            self.bias_hh.clone().into_dyn(),
        ];
        store.create_all_from(names.into_iter().zip(values).collect())?;
        Ok(())
    }
}

/// Our `reset_after` GRU weights as Keras `GRU(reset_after=True)` weights: Keras's blocks z,
/// r, h are our u, r and candidate; `kernel` takes the input rows of our two kernels,
/// `recurrent_kernel` their state rows; `bias[0]` (the input bias) takes our gate bias and
/// `candidate/bias`, `bias[1]` (the recurrent bias) zeros for z and r and
/// `candidate/recurrent_bias`. Values are only moved (bit-exact back, as
/// [`tf_gru_to_torch`]).
///
/// # Errors
/// [`Error::Shape`] if the shapes do not fit together, [`Error::InvalidArgument`] for the
/// weights of a GRU without `reset_after` (use [`tf_gru_to_keras`]).
pub fn tf_gru_to_keras_reset_after<T: Scalar>(
    w: &TfGruWeights<T>,
) -> Result<KerasResetAfterGruWeights<T>> {
    let (input, h) = reset_after_sizes("tf_gru_to_keras_reset_after", w)?;
    let (gx, gh) = w.gate_kernel.view().split_at(Axis(0), input);
    let (cx, ch) = w.candidate_kernel.view().split_at(Axis(0), input);
    let (r, u) = (s![.., ..h], s![.., h..]);
    let recurrent_bias = w
        .candidate_recurrent_bias
        .as_ref()
        .expect("checked: reset_after");
    let input_bias = concatenate(
        Axis(0),
        &[
            w.gate_bias.slice(s![h..]),
            w.gate_bias.slice(s![..h]),
            w.candidate_bias.view(),
        ],
    )
    .expect("vectors");
    let recurrent_row = concatenate(
        Axis(0),
        &[Array1::zeros(2 * h).view(), recurrent_bias.view()],
    )
    .expect("vectors");
    Ok(KerasResetAfterGruWeights {
        kernel: concatenate(Axis(1), &[gx.slice(u), gx.slice(r), cx]).expect("same height"),
        recurrent_kernel: concatenate(Axis(1), &[gh.slice(u), gh.slice(r), ch])
            .expect("same height"),
        bias: ndarray::stack(Axis(0), &[input_bias.view(), recurrent_row.view()])
            .expect("same length"),
    })
}

/// Keras `GRU(reset_after=True)` weights as the weights of a `reset_after` [`GruCell`], which
/// then computes Keras's function (`GRUCell.call` with `reset_after=True`, activation `tanh`,
/// recurrent activation `sigmoid`):
///
/// ```text
/// Keras:  [x_z, x_r, x_h] = x @ kernel + bias[0];     [h_z, h_r, h_h] = h @ recurrent_kernel + bias[1]
///         z = σ(x_z + h_z)    r = σ(x_r + h_r)    ĥ = tanh(x_h + r ⊙ h_h);    h' = z ⊙ h + (1 − z) ⊙ ĥ
/// ours:   gates/kernel = [kernel_r kernel_z; recurrent_r recurrent_z]   (column blocks r, u = z)
///         gates/bias = [bias[0]_r + bias[1]_r, bias[0]_z + bias[1]_z]
///         candidate/kernel = [kernel_h; recurrent_h]   candidate/bias = bias[0]_h
///         candidate/recurrent_bias = bias[1]_h
/// ```
///
/// Kernels and the candidate's biases move bit-exactly, the gate biases are summed.
///
/// # Errors
/// [`Error::Shape`] if the shapes do not fit together.
pub fn keras_reset_after_gru_to_tf<T: Scalar>(
    w: &KerasResetAfterGruWeights<T>,
) -> Result<TfGruWeights<T>> {
    const OP: &str = "keras_reset_after_gru_to_tf";
    let (_, cols) = w.kernel.dim();
    let h = units_of(OP, "kernel [input_dim, 3 * units]", cols, 3)?;
    positive_input(OP, "kernel", w.kernel.shape())?;
    check_shape(
        OP,
        "recurrent_kernel",
        w.recurrent_kernel.shape(),
        &[h, 3 * h],
    )?;
    check_shape(OP, "bias", w.bias.shape(), &[2, 3 * h])?;
    let (z, r, c) = (s![.., ..h], s![.., h..2 * h], s![.., 2 * h..]);
    let (wx, wh) = (w.kernel.view(), w.recurrent_kernel.view());
    let pair = |a: ArrayView2<'_, T>| {
        concatenate(Axis(1), &[a.slice(r), a.slice(z)]).expect("same height")
    };
    let summed = &w.bias.row(0) + &w.bias.row(1);
    let weights = TfGruWeights {
        gate_kernel: stack_rows(pair(wx).view(), pair(wh).view()),
        gate_bias: concatenate(
            Axis(0),
            &[summed.slice(s![h..2 * h]), summed.slice(s![..h])],
        )
        .expect("vectors"),
        candidate_kernel: stack_rows(wx.slice(c), wh.slice(c)),
        candidate_bias: w.bias.slice(s![0, 2 * h..]).to_owned(),
        candidate_recurrent_bias: Some(w.bias.slice(s![1, 2 * h..]).to_owned()),
    };
    weights.sizes(OP)?;
    Ok(weights)
}
