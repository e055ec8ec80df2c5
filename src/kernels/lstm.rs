//! The fused LSTM over a whole batch-major sequence, forward and backward, sharded over the batch.
//!
//! Layout: every buffer is batch-major (`[batch, time, ..]`), so a shard of examples is one
//! contiguous block and its input projection and weight gradients are single matrix products.
//! Per step, a shard does one product `h_{t-1} @ W_h` (forward) or `dz_t @ W_h^T` (backward)
//! and the gate arithmetic; nothing is allocated inside the time loop.

use ndarray::{
    s, Array1, Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis,
    CowArray, Ix2,
};

use crate::kernels::linalg::{gemm, small_rows_times_packed, PackedColumns, SMALL_ROWS};
use crate::kernels::lstm_tiles::{PackedRecurrent, StepViews};
use crate::kernels::math::{flush_subnormal, isa_dispatch, sigmoid, tanh, Lanes};
use crate::kernels::workspace;
use crate::parallel::{run_shards, shard_rows};
use crate::Scalar;

/// A row of fused gates `[4 * units]` as its four blocks, in TensorFlow's order: i (input gate),
/// j (candidate), f (forget gate), o (output gate). The kernel reads the order from here and
/// nowhere else; [`super::BasicLstmCell`]'s doc has the equations and `tests/cells.rs` pins them.
fn gate_blocks<T>(row: &[T]) -> [&[T]; 4] {
    let units = row.len() / 4;
    let (i, rest) = row.split_at(units);
    let (j, rest) = rest.split_at(units);
    let (f, o) = rest.split_at(units);
    [i, j, f, o]
}

/// [`gate_blocks`] for writing.
fn gate_blocks_mut<T>(row: &mut [T]) -> [&mut [T]; 4] {
    let units = row.len() / 4;
    let (i, rest) = row.split_at_mut(units);
    let (j, rest) = rest.split_at_mut(units);
    let (f, o) = rest.split_at_mut(units);
    [i, j, f, o]
}

/// `LstmCell`'s options the fused kernel runs: diagonal peepholes `[w_f_diag, w_i_diag,
/// w_o_diag]` (each `[units]`) and a cell clip. Both absent: the basic LSTM.
#[derive(Clone, Copy)]
pub(crate) struct Variant<'a, T> {
    pub peepholes: Option<[&'a [T]; 3]>,
    pub cell_clip: Option<T>,
}

impl<T> Variant<'_, T> {
    fn is_basic(&self) -> bool {
        self.peepholes.is_none() && self.cell_clip.is_none()
    }
}

/// [`Variant`]'s weights owned, kept for the backward pass.
struct OwnedVariant<T> {
    peepholes: Option<[Vec<T>; 3]>,
    cell_clip: Option<T>,
}

impl<T: Scalar> OwnedVariant<T> {
    fn view(&self) -> Variant<'_, T> {
        Variant {
            peepholes: self
                .peepholes
                .as_ref()
                .map(|[f, i, o]| [f.as_slice(), i.as_slice(), o.as_slice()]),
            cell_clip: self.cell_clip,
        }
    }
}

/// What the forward pass keeps for the backward pass.
pub(crate) struct Forward<T: Scalar> {
    /// Activated gates `[batch, time, 4 * units]` in the order i, j, f, o.
    pub gates: Array3<T>,
    /// `c_{t-1}` for every step `t`: `[batch, time, units]` (`c_prev[:, 0]` is the initial `c`).
    pub c_prev: Array3<T>,
    /// `h_{t-1}` for every step `t`: `[batch, time, units]`.
    pub h_prev: Array3<T>,
    /// `tanh(c_t)`: `[batch, time, units]`.
    pub tanh_c: Array3<T>,
    /// With a [`Variant`] other than the basic one, `c_t` before the clip, `[batch, time,
    /// units]` (written at valid steps only); `[batch, time, 0]` otherwise.
    c_raw: Array3<T>,
    /// The variant's weights and clip.
    variant: OwnedVariant<T>,
    /// Outputs `[batch, time, units]`: `h_t`, or zero past an example's length (taken by the
    /// caller for the tape; the backward pass does not need them).
    pub outputs: Array3<T>,
    /// The final state (at each example's last valid step), taken by the caller like
    /// `outputs`.
    pub c_last: Array2<T>,
    /// The final output state, taken by the caller.
    pub h_last: Array2<T>,
    /// Per-example lengths, if given.
    pub lengths: Option<Vec<usize>>,
}

impl<T: Scalar> Drop for Forward<T> {
    /// The large buffers go back to the pool for the next step.
    fn drop(&mut self) {
        for buffer in [
            &mut self.gates,
            &mut self.c_prev,
            &mut self.h_prev,
            &mut self.tanh_c,
            &mut self.c_raw,
        ] {
            workspace::recycle_array(std::mem::take(buffer));
        }
    }
}

/// The gradients of one fused LSTM run.
pub(crate) struct Grads<T> {
    pub dx: Option<Array3<T>>,
    pub dc0: Array2<T>,
    pub dh0: Array2<T>,
    pub dkernel: Array2<T>,
    pub dbias: Array1<T>,
    /// `[dw_f_diag, dw_i_diag, dw_o_diag]` when the variant has peepholes.
    pub dpeepholes: Option<[Array1<T>; 3]>,
}

fn alive(lengths: Option<&[usize]>, b: usize, t: usize) -> bool {
    lengths.is_none() || lengths.is_some_and(|l| t < l[b])
}

/// Runs the LSTM over `x` `[batch, time, in]` from the state `(c0, h0)`.
///
/// With `keep_for_backward` the per-step buffers (gates, states, `tanh(c)`) cover the whole batch
/// and are returned for [`backward`]. Without it (inference) each shard works in buffers of its
/// own size taken from its thread's pool and returned right after, so memory stays that of one
/// shard per thread however large the batch; the returned `Forward` then holds empty buffers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<T: Scalar>(
    x: ArrayView3<'_, T>,
    kernel: ArrayView2<'_, T>,
    bias: &[T],
    c0: ArrayView2<'_, T>,
    h0: ArrayView2<'_, T>,
    forget_bias: T,
    variant: Variant<'_, T>,
    lengths: Option<&[usize]>,
    keep_for_backward: bool,
) -> Forward<T> {
    let (batch, steps, in_size) = x.dim();
    let units = bias.len() / 4;
    let (w_x, w_h) = kernel.split_at(Axis(0), in_size);
    // Every element of the scratch buffers is written before it is read (tanh_c only where the
    // backward pass reads it: at valid steps), so stale pooled values need no zeroing.
    let whole_batch = |width: usize| {
        if keep_for_backward {
            workspace::scratch((batch, steps, width))
        } else {
            Array3::zeros((0, 0, 0))
        }
    };
    let raw_width = if variant.is_basic() { 0 } else { units };
    let mut fwd = Forward {
        gates: whole_batch(4 * units),
        c_prev: whole_batch(units),
        h_prev: whole_batch(units),
        tanh_c: whole_batch(units),
        c_raw: whole_batch(raw_width),
        variant: OwnedVariant {
            peepholes: variant.peepholes.map(|w| w.map(<[T]>::to_vec)),
            cell_clip: variant.cell_clip,
        },
        outputs: Array3::zeros((batch, steps, units)),
        c_last: Array2::zeros((batch, units)),
        h_last: Array2::zeros((batch, units)),
        lengths: lengths.map(<[usize]>::to_vec),
    };
    let rows = shard_rows(batch);
    let mut kept = keep_for_backward.then(|| {
        fwd.gates
            .axis_chunks_iter_mut(Axis(0), rows)
            .zip(fwd.c_prev.axis_chunks_iter_mut(Axis(0), rows))
            .zip(fwd.h_prev.axis_chunks_iter_mut(Axis(0), rows))
            .zip(fwd.tanh_c.axis_chunks_iter_mut(Axis(0), rows))
            .zip(fwd.c_raw.axis_chunks_iter_mut(Axis(0), rows))
            .map(|((((gates, c_prev), h_prev), tanh_c), c_raw)| StepBuffers {
                gates,
                c_prev,
                h_prev,
                tanh_c,
                c_raw,
            })
    });
    let shards: Vec<(ShardIo<'_, T>, Option<StepBuffers<'_, T>>)> = x
        .axis_chunks_iter(Axis(0), rows)
        .zip(c0.axis_chunks_iter(Axis(0), rows))
        .zip(h0.axis_chunks_iter(Axis(0), rows))
        .zip(fwd.outputs.axis_chunks_iter_mut(Axis(0), rows))
        .zip(fwd.c_last.axis_chunks_iter_mut(Axis(0), rows))
        .zip(fwd.h_last.axis_chunks_iter_mut(Axis(0), rows))
        .enumerate()
        .map(|(k, (((((x, c0), h0), outputs), c_last), h_last))| {
            let first = k * rows;
            let io = ShardIo {
                x,
                c0,
                h0,
                outputs,
                c_last,
                h_last,
                lengths: lengths.map(|l| &l[first..first + x.dim().0]),
            };
            (io, kept.as_mut().and_then(Iterator::next))
        })
        .collect();
    run_shards(shards, |(io, buffers)| match buffers {
        Some(buffers) => io.run(buffers, w_x, w_h, bias, forget_bias, variant, None),
        None => {
            // Nothing is kept for a backward pass: the states need two slots (the step's input
            // and output, in turn) and tanh(c) and the raw c one, not one per step
            // (`StepBuffers`); 2.8 MB less per shard of 64 rows of LSTM(128), in cache.
            let shard_rows = io.x.dim().0;
            // Shards of the basic LSTM in f32 on AVX-512 with more than a few rows run each
            // step's input projection, product and cell tile by tile (`lstm_tiles`; the bits of
            // the products through `gemm` and the gate loop), never writing the pre-activations
            // to memory. Not for training: storing the gates and tanh(c) for the backward pass
            // from the tiles, into rows a whole sequence apart, made lstm128's training step
            // slower (6.5-6.6 against 6.2-6.4 ms on an AMD EPYC Zen 5).
            let tiled = variant
                .is_basic()
                .then(|| PackedRecurrent::for_shard(shard_rows, &w_x, &w_h, bias))
                .flatten();
            let mut own = [
                workspace::scratch((
                    shard_rows,
                    if tiled.is_some() { 0 } else { steps },
                    4 * units,
                )),
                workspace::scratch((shard_rows, steps.min(2), units)),
                workspace::scratch((shard_rows, steps.min(2), units)),
                workspace::scratch((shard_rows, steps.min(1), units)),
                workspace::scratch((shard_rows, steps.min(1), raw_width)),
            ];
            let [gates, c_prev, h_prev, tanh_c, c_raw] = &mut own;
            let buffers = StepBuffers {
                gates: gates.view_mut(),
                c_prev: c_prev.view_mut(),
                h_prev: h_prev.view_mut(),
                tanh_c: tanh_c.view_mut(),
                c_raw: c_raw.view_mut(),
            };
            io.run(buffers, w_x, w_h, bias, forget_bias, variant, tiled);
            own.into_iter().for_each(workspace::recycle_array);
        }
    });
    fwd
}

/// What a forward shard reads and what it returns: its examples' inputs, initial state,
/// outputs and final state.
struct ShardIo<'a, T> {
    x: ArrayView3<'a, T>,
    c0: ArrayView2<'a, T>,
    h0: ArrayView2<'a, T>,
    outputs: ArrayViewMut3<'a, T>,
    c_last: ArrayViewMut2<'a, T>,
    h_last: ArrayViewMut2<'a, T>,
    lengths: Option<&'a [usize]>,
}

/// A forward shard's per-step working buffers, which the backward pass reads when kept.
///
/// Kept for the backward pass, every buffer has a slot per step (`[rows, steps, ..]`). For
/// inference the states may have two slots, used in turn (step `t` reads slot `t % 2` and
/// writes the other), and `tanh_c` and `c_raw` one: the step maps `t` to its slots by the
/// buffers' own sizes (`t % slots`), so one loop serves both.
struct StepBuffers<'a, T> {
    gates: ArrayViewMut3<'a, T>,
    c_prev: ArrayViewMut3<'a, T>,
    h_prev: ArrayViewMut3<'a, T>,
    tanh_c: ArrayViewMut3<'a, T>,
    /// `c_t` before the clip (`[.., .., 0]` for the basic variant).
    c_raw: ArrayViewMut3<'a, T>,
}

impl<T: Scalar> ShardIo<'_, T> {
    /// Runs the shard's whole sequence: the input projection of every step as one product, then
    /// per step `h_{t-1} @ W_h` and the gates (or, given `tiled` weights, each step's
    /// projection, product and cell tile by tile: [`PackedRecurrent`]), writing the outputs, the
    /// final state and, in the buffers that have a slot per step, what the backward pass reads.
    #[allow(clippy::too_many_arguments)]
    fn run(
        mut self,
        mut buffers: StepBuffers<'_, T>,
        w_x: ArrayView2<'_, T>,
        w_h: ArrayView2<'_, T>,
        bias: &[T],
        forget_bias: T,
        variant: Variant<'_, T>,
        tiled: Option<PackedRecurrent>,
    ) {
        buffers.c_prev.index_axis_mut(Axis(1), 0).assign(&self.c0);
        buffers.h_prev.index_axis_mut(Axis(1), 0).assign(&self.h0);
        let lengths = self.lengths;
        let (batch, steps, in_size) = self.x.dim();
        let units = bias.len() / 4;
        let mut alive_rows = vec![true; batch];
        if tiled.is_none() {
            // Input projection of every step at once: [batch * time, in] @ W_x + bias.
            let mut z = buffers
                .gates
                .view_mut()
                .into_shape_with_order((batch * steps, 4 * units))
                .expect("contiguous shard");
            for mut row in z.rows_mut() {
                row.as_slice_mut()
                    .expect("contiguous")
                    .copy_from_slice(bias);
            }
            let x = self
                .x
                .into_shape_with_order((batch * steps, in_size))
                .expect("contiguous shard");
            gemm(T::one(), &x, &w_x, T::one(), &mut z.view_mut());
        }
        let no_peepholes = vec![T::zero(); if variant.is_basic() { 0 } else { units }];
        let (w, clip) = variant_weights(&variant, &no_peepholes);
        // A shard of a few rows (inference on one sequence) reads all of W_h from the L2 cache
        // at every step: laid out block by block once, it streams (the same sums, so the same
        // bits as `gemm`'s small-row path).
        let w_h_packed = (batch <= SMALL_ROWS && steps > 1 && w_h.is_standard_layout())
            .then(|| PackedColumns::new(&w_h));
        let state_slots = buffers.c_prev.dim().1;
        let step_slots = buffers.tanh_c.dim().1;
        for t in 0..steps {
            // The step writes its state straight into the next step's slot (or, at the last
            // step, into the final state): no per-step copies.
            let last = t + 1 == steps;
            let (read, write) = (t % state_slots, (t + 1) % state_slots);
            // `read` below the split, `write` (when not last) at its start, or the reverse.
            let at = if last { state_slots } else { read.max(write) };
            let (mut c_low, mut c_high) = buffers.c_prev.view_mut().split_at(Axis(1), at);
            let (mut h_low, mut h_high) = buffers.h_prev.view_mut().split_at(Axis(1), at);
            let (c_prev, h_prev, mut c_next, mut h_next) = if last {
                (
                    c_low.index_axis(Axis(1), read),
                    h_low.index_axis(Axis(1), read),
                    self.c_last.view_mut(),
                    self.h_last.view_mut(),
                )
            } else if read < write {
                (
                    c_low.index_axis(Axis(1), read),
                    h_low.index_axis(Axis(1), read),
                    c_high.index_axis_mut(Axis(1), 0),
                    h_high.index_axis_mut(Axis(1), 0),
                )
            } else {
                (
                    c_high.index_axis(Axis(1), 0),
                    h_high.index_axis(Axis(1), 0),
                    c_low.index_axis_mut(Axis(1), write),
                    h_low.index_axis_mut(Axis(1), write),
                )
            };
            for (b, a) in alive_rows.iter_mut().enumerate() {
                *a = alive(lengths, b, t);
            }
            for b in (0..batch).filter(|&b| !alive_rows[b]) {
                // Past this example's length: carry the state; the output stays zero.
                c_next.row_mut(b).assign(&c_prev.row(b));
                h_next.row_mut(b).assign(&h_prev.row(b));
            }
            if let Some(tiled) = &tiled {
                let views = StepViews {
                    x: self.x.index_axis(Axis(1), t),
                    h_prev: h_prev.view(),
                    c_prev: c_prev.view(),
                    c_next: c_next.view_mut(),
                    h_next: h_next.view_mut(),
                    out: self.outputs.index_axis_mut(Axis(1), t),
                };
                tiled.step(views, forget_bias, &alive_rows);
                continue;
            }
            let mut z = buffers.gates.index_axis_mut(Axis(1), t);
            match &w_h_packed {
                Some(packed) => {
                    small_rows_times_packed(T::one(), &h_prev, packed, T::one(), &mut z)
                }
                None => gemm(T::one(), &h_prev, &w_h, T::one(), &mut z),
            }
            let mut tanh_c = buffers.tanh_c.index_axis_mut(Axis(1), t % step_slots);
            let mut c_raw = buffers.c_raw.index_axis_mut(Axis(1), t % step_slots);
            let mut out = self.outputs.index_axis_mut(Axis(1), t);
            for b in (0..batch).filter(|&b| alive_rows[b]) {
                let mut zr = z.row_mut(b);
                let (cp, mut cn) = (c_prev.row(b), c_next.row_mut(b));
                let (mut tc, mut hn) = (tanh_c.row_mut(b), h_next.row_mut(b));
                let hn = hn.as_slice_mut().expect("contiguous");
                if variant.is_basic() {
                    step_row(
                        zr.as_slice_mut().expect("contiguous"),
                        cp.as_slice().expect("contiguous"),
                        cn.as_slice_mut().expect("contiguous"),
                        tc.as_slice_mut().expect("contiguous"),
                        hn,
                        forget_bias,
                    );
                } else {
                    let mut cr = c_raw.row_mut(b);
                    step_row_variant(
                        zr.as_slice_mut().expect("contiguous"),
                        cp.as_slice().expect("contiguous"),
                        cr.as_slice_mut().expect("contiguous"),
                        cn.as_slice_mut().expect("contiguous"),
                        tc.as_slice_mut().expect("contiguous"),
                        hn,
                        w,
                        forget_bias,
                        clip,
                    );
                }
                out.row_mut(b)
                    .as_slice_mut()
                    .expect("contiguous")
                    .copy_from_slice(hn);
            }
        }
    }
}

/// Backpropagation through time for [`forward`]: gradients of the kernel, bias, initial state
/// and (when `need_dx`) the input, given the gradients of the outputs and of the final state.
pub(crate) fn backward<T: Scalar>(
    fwd: &Forward<T>,
    x: ArrayView3<'_, T>,
    kernel: ArrayView2<'_, T>,
    d_outputs: Option<ArrayView3<'_, T>>,
    d_c_last: Option<ArrayView2<'_, T>>,
    d_h_last: Option<ArrayView2<'_, T>>,
    need_dx: bool,
) -> Grads<T> {
    let (batch, _, in_size) = x.dim();
    let units = fwd.tanh_c.dim().2;
    // dkernel and dbias are the shards' partial sums, filled in below.
    let mut grads = Grads {
        dx: need_dx.then(|| Array3::zeros(x.raw_dim())),
        dc0: d_c_last.map_or_else(|| Array2::zeros((batch, units)), |g| g.to_owned()),
        dh0: d_h_last.map_or_else(|| Array2::zeros((batch, units)), |g| g.to_owned()),
        dkernel: Array2::zeros((0, 0)),
        dbias: Array1::zeros(0),
        dpeepholes: None,
    };
    let variant = fwd.variant.view();
    // Steps after the last one that receives a gradient have dz = 0 and add nothing: BPTT starts
    // there. (The backward half of a bidirectional RNN read at the last step gets its gradient at
    // its first step only, so it skips all but one step.)
    let steps = x.dim().1;
    let t_end = if d_c_last.is_some() || d_h_last.is_some() {
        steps
    } else {
        d_outputs.as_ref().map_or(0, |d| {
            (0..steps)
                .rev()
                .find(|&t| d.index_axis(Axis(1), t).iter().any(|&v| v != T::zero()))
                .map_or(0, |t| t + 1)
        })
    };
    let rows = shard_rows(batch);
    let n_shards = batch.div_ceil(rows);
    // Allocated here, on the calling thread, whose pool takes it back when the tape is dropped,
    // so the same buffer serves every step (a pool thread's would keep allocating).
    // Every row is written: computed at valid steps, zeroed at carried ones.
    let mut dz_all: Array3<T> = workspace::scratch((batch, x.dim().1, 4 * units));
    let mut dx_chunks: Vec<Option<ArrayViewMut3<'_, T>>> = match grads.dx.as_mut() {
        Some(dx) => dx.axis_chunks_iter_mut(Axis(0), rows).map(Some).collect(),
        None => (0..n_shards).map(|_| None).collect(),
    };
    let shards: Vec<BackwardShard<'_, T>> = grads
        .dc0
        .axis_chunks_iter_mut(Axis(0), rows)
        .zip(grads.dh0.axis_chunks_iter_mut(Axis(0), rows))
        .zip(dx_chunks.iter_mut())
        .zip(dz_all.axis_chunks_iter_mut(Axis(0), rows))
        .enumerate()
        .map(|(k, (((dc, dh), dx), dz))| {
            let r = k * rows..(k * rows + dc.nrows());
            BackwardShard {
                x: x.slice(s![r.clone(), .., ..]),
                gates: fwd.gates.slice(s![r.clone(), .., ..]),
                c_prev: fwd.c_prev.slice(s![r.clone(), .., ..]),
                h_prev: fwd.h_prev.slice(s![r.clone(), .., ..]),
                tanh_c: fwd.tanh_c.slice(s![r.clone(), .., ..]),
                c_raw: fwd.c_raw.slice(s![r.clone(), .., ..]),
                variant,
                d_outputs: d_outputs.as_ref().map(|d| d.slice(s![r.clone(), .., ..])),
                lengths: fwd.lengths.as_ref().map(|l| &l[r.clone()]),
                dc,
                dh,
                dx: dx.take(),
                dz,
            }
        })
        .collect();
    let (w_x, w_h) = kernel.split_at(Axis(0), in_size);
    // `W_h^T` row-major, once per sequence, for the per-step product `dz_t @ W_h^T`: the
    // products run about twice as fast on a row-major right operand as on the transposed view
    // (benches/README.md).
    let w_h_t = w_h.t().as_standard_layout().into_owned();
    let mut partials = run_shards(shards, |shard| shard.run(w_x, w_h_t.view(), t_end)).into_iter();
    // Partial sums are added in shard order: the result does not depend on the thread count.
    // The first shard's arrays take the sum, rather than a zeroed array (a statically unrolled
    // LSTM runs this once per step).
    (grads.dkernel, grads.dbias, grads.dpeepholes) = match partials.next() {
        Some((mut dkernel, mut dbias, mut dpeep)) => {
            for (k, b, p) in partials {
                dkernel += &k;
                dbias += &b;
                if let (Some(sum), Some(p)) = (dpeep.as_mut(), p) {
                    for (s, p) in sum.iter_mut().zip(p) {
                        *s += &p;
                    }
                }
            }
            (dkernel, dbias, dpeep)
        }
        // An empty batch has no shard.
        None => (
            Array2::zeros(kernel.raw_dim()),
            Array1::zeros(4 * units),
            variant
                .peepholes
                .map(|_| std::array::from_fn(|_| Array1::zeros(units))),
        ),
    };
    workspace::recycle_array(dz_all);
    grads
}

struct BackwardShard<'a, T> {
    x: ArrayView3<'a, T>,
    gates: ArrayView3<'a, T>,
    c_prev: ArrayView3<'a, T>,
    h_prev: ArrayView3<'a, T>,
    tanh_c: ArrayView3<'a, T>,
    c_raw: ArrayView3<'a, T>,
    variant: Variant<'a, T>,
    d_outputs: Option<ArrayView3<'a, T>>,
    lengths: Option<&'a [usize]>,
    /// In: the gradient of the final `c`; out: the gradient of the initial `c`.
    dc: ArrayViewMut2<'a, T>,
    /// In: the gradient of the final `h`; out: the gradient of the initial `h`.
    dh: ArrayViewMut2<'a, T>,
    dx: Option<ArrayViewMut3<'a, T>>,
    /// Scratch for the gate pre-activation gradients, `[batch, time, 4 * units]`, not zeroed:
    /// every row is written before it is read (computed at valid steps, zeroed at carried ones).
    dz: ArrayViewMut3<'a, T>,
}

impl<T: Scalar> BackwardShard<'_, T> {
    /// Returns this shard's share of the kernel, bias and (with peepholes) peephole gradients.
    /// BPTT over steps `0..t_end` (later steps receive no gradient).
    #[allow(clippy::type_complexity)]
    fn run(
        mut self,
        w_x: ArrayView2<'_, T>,
        w_h_t: ArrayView2<'_, T>,
        t_end: usize,
    ) -> (Array2<T>, Array1<T>, Option<[Array1<T>; 3]>) {
        let (batch, _, in_size) = self.x.dim();
        let units = self.dc.ncols();
        let one = T::one();
        let mut dz = self.dz;
        let mut dh = self.dh.to_owned();
        let mut dh_prev = Array2::<T>::zeros((batch, units));
        let variant = self.variant;
        // The peephole gradients, summed over this shard's valid (example, step) rows in a fixed
        // order (steps backwards, examples forwards): [dw_f, dw_i, dw_o].
        // (Accumulated and dropped without peepholes, whose weights are then zeros.)
        let width = if variant.is_basic() { 0 } else { units };
        let mut dpeep: [Vec<T>; 3] = std::array::from_fn(|_| vec![T::zero(); width]);
        let no_peepholes = vec![T::zero(); width];
        let (w, clip) = variant_weights(&variant, &no_peepholes);
        for t in (0..t_end).rev() {
            if let Some(d_out) = &self.d_outputs {
                let d_out_t = d_out.index_axis(Axis(1), t);
                for b in 0..batch {
                    // A step past an example's length output a constant zero: no gradient.
                    if alive(self.lengths, b, t) {
                        let (mut row, add) = (dh.row_mut(b), d_out_t.row(b));
                        // A plain loop over the two rows: ndarray's `+=` on a row cost more in
                        // its checks than in the additions (28 steps x 64 rows per shard).
                        match (row.as_slice_mut(), add.as_slice()) {
                            (Some(row), Some(add)) => {
                                for (d, &g) in row.iter_mut().zip(add) {
                                    *d += g;
                                }
                            }
                            _ => row += &add,
                        }
                    }
                }
            }
            let gates = self.gates.index_axis(Axis(1), t);
            let c_prev = self.c_prev.index_axis(Axis(1), t);
            let tanh_c = self.tanh_c.index_axis(Axis(1), t);
            let c_raw = self.c_raw.index_axis(Axis(1), t);
            let mut dz_t = dz.index_axis_mut(Axis(1), t);
            for b in 0..batch {
                if !alive(self.lengths, b, t) {
                    // The state was carried: its gradient passes straight through, dz is 0.
                    dz_t.row_mut(b).fill(T::zero());
                    continue;
                }
                let (g, c_prev, tanh_c) = (gates.row(b), c_prev.row(b), tanh_c.row(b));
                let (dh, mut dc, mut dz) = (dh.row(b), self.dc.row_mut(b), dz_t.row_mut(b));
                if variant.is_basic() {
                    gate_gradients(
                        g.as_slice().expect("contiguous"),
                        c_prev.as_slice().expect("contiguous"),
                        tanh_c.as_slice().expect("contiguous"),
                        dh.as_slice().expect("contiguous"),
                        dc.as_slice_mut().expect("contiguous"),
                        dz.as_slice_mut().expect("contiguous"),
                    );
                } else {
                    let [dw_f, dw_i, dw_o] = &mut dpeep;
                    gate_gradients_variant(
                        g.as_slice().expect("contiguous"),
                        c_prev.as_slice().expect("contiguous"),
                        c_raw.row(b).as_slice().expect("contiguous"),
                        tanh_c.as_slice().expect("contiguous"),
                        dh.as_slice().expect("contiguous"),
                        dc.as_slice_mut().expect("contiguous"),
                        dz.as_slice_mut().expect("contiguous"),
                        w,
                        [&mut dw_f[..], &mut dw_i[..], &mut dw_o[..]],
                        clip,
                    );
                }
            }
            gemm(
                one,
                &dz_t.view(),
                &w_h_t,
                T::zero(),
                &mut dh_prev.view_mut(),
            );
            for b in 0..batch {
                if !alive(self.lengths, b, t) {
                    // Carried rows: dz is zero, so dh_prev is the carried gradient alone.
                    dh_prev.row_mut(b).assign(&dh.row(b));
                }
            }
            std::mem::swap(&mut dh, &mut dh_prev);
        }
        self.dh.assign(&dh);
        // Weight gradients of every step at once: one product over the rows (example, step) of
        // steps 0..t_end. With every step, the shard's buffers are those rows; otherwise the
        // rows are gathered first (a copy far cheaper than products over zero rows).
        let dz = dz.slice(s![.., ..t_end, ..]);
        let x = self.x.slice(s![.., ..t_end, ..]);
        let h_prev = self.h_prev.slice(s![.., ..t_end, ..]);
        let (dz, x, h_prev) = (flatten_rows(dz), flatten_rows(x), flatten_rows(h_prev));
        let mut dkernel = Array2::<T>::zeros((in_size + units, 4 * units));
        {
            let (mut dw_x, mut dw_h) = dkernel.view_mut().split_at(Axis(0), in_size);
            gemm(one, &x.t(), &dz.view(), T::zero(), &mut dw_x);
            gemm(one, &h_prev.t(), &dz.view(), T::zero(), &mut dw_h);
        }
        if let Some(mut dx) = self.dx.take() {
            // dx is zero past t_end (it was created zeroed).
            let dx_rows = crate::kernels::linalg::matmul(&dz.view(), &w_x.t());
            let dx_rows = dx_rows
                .into_shape_with_order((batch, t_end, in_size))
                .expect("sizes match");
            dx.slice_mut(s![.., ..t_end, ..]).assign(&dx_rows);
        }
        let dpeep = variant.peepholes.map(|_| dpeep.map(Array1::from_vec));
        (dkernel, dz.sum_axis(Axis(0)), dpeep)
    }
}

isa_dispatch! {
    /// One example's step forward, from its gate pre-activations `z = [i, j, f, o]` (replaced
    /// by the activated gates) and `c_prev`: `c_next = c_prev * f + i * j`, `tanh_c =
    /// tanh(c_next)`, `h_next = tanh_c * o`, with `f = sigmoid(z_f + forget_bias)`; subnormal
    /// states are flushed to zero ([`flush_subnormal`]).
    ///
    /// A function of its own, dispatched on the instruction set ([`crate::math`]): the slices
    /// arrive as separate arguments, which tells the compiler they do not overlap, and the
    /// activations are inlined into one vectorised loop.
    pub(crate) fn step_row / step_row_on<T>(
        z: &mut [T],
        c_prev: &[T],
        c_next: &mut [T],
        tanh_c: &mut [T],
        h_next: &mut [T],
        forget_bias: T,
    ) {
        let units = c_prev.len();
        let [zi, zj, zf, zo] = gate_blocks_mut(z);
        // Equal lengths, stated once, let the compiler drop the bounds checks.
        let (zi, zj, zf, zo) = (
            &mut zi[..units],
            &mut zj[..units],
            &mut zf[..units],
            &mut zo[..units],
        );
        let (c_next, tanh_c, h_next) = (
            &mut c_next[..units],
            &mut tanh_c[..units],
            &mut h_next[..units],
        );
        for k in 0..units {
            let i = zi[k].sigmoid_elem();
            let j = zj[k].tanh_elem();
            let f = (zf[k] + forget_bias).sigmoid_elem();
            let o = zo[k].sigmoid_elem();
            (zi[k], zj[k], zf[k], zo[k]) = (i, j, f, o);
            let c = flush_subnormal(c_prev[k] * f + i * j);
            c_next[k] = c;
            let th = c.tanh_elem();
            tanh_c[k] = th;
            h_next[k] = flush_subnormal(th * o);
        }
    }
}

/// [`step_row`]'s `[c_next, h_next]` on lanes of `f32` ([`Lanes`]: several vectors in lockstep in
/// the tiled step): the same operations in the same order, so the same bits (`lstm_tiles`' tests
/// compare the two paths). Kept beside `step_row` so that the two read alike.
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // used by the AVX-512 tiles
pub(crate) fn basic_cell_lanes<L: Lanes>(
    zi: L,
    zj: L,
    zf: L,
    zo: L,
    c_prev: L,
    forget_bias: f32,
) -> [L; 2] {
    let i = sigmoid(zi);
    let j = tanh(zj);
    let f = sigmoid(zf + L::splat(forget_bias));
    let o = sigmoid(zo);
    let c = (c_prev * f + i * j).flush_subnormal();
    [c, (tanh(c) * o).flush_subnormal()]
}

isa_dispatch! {
    /// One example's gate gradients at one step, from its activated gates `[i, j, f, o]`:
    /// `dc += dh * o * (1 - tanh(c)^2)`, then `dz = [dc * j * i (1 - i), dc * i (1 - j^2),
    /// dc * c_prev * f (1 - f), dh * tanh(c) * o (1 - o)]` and `dc *= f` (the gradient for
    /// `c_prev`), each flushed to zero if subnormal ([`flush_subnormal`]).
    ///
    /// Dispatched on the instruction set like [`step_row`]; every path computes each element by
    /// the same operations in the same order, so the results are identical bit for bit.
    fn gate_gradients / gate_gradients_on<T>(
        gates: &[T],
        c_prev: &[T],
        tanh_c: &[T],
        dh: &[T],
        dc: &mut [T],
        dz: &mut [T],
    ) {
        let units = dc.len();
        let one = T::one();
        let [gi, gj, gf, go] = gate_blocks(gates);
        let [dzi, dzj, dzf, dzo] = gate_blocks_mut(dz);
        let (c_prev, tanh_c, dh, dzo) = (
            &c_prev[..units],
            &tanh_c[..units],
            &dh[..units],
            &mut dzo[..units],
        );
        for k in 0..units {
            let (i, j, f, o, th) = (gi[k], gj[k], gf[k], go[k], tanh_c[k]);
            let d = dc[k] + dh[k] * o * (one - th * th);
            dzi[k] = flush_subnormal(d * j * i * (one - i));
            dzj[k] = flush_subnormal(d * i * (one - j * j));
            dzf[k] = flush_subnormal(d * c_prev[k] * f * (one - f));
            dzo[k] = flush_subnormal(dh[k] * th * o * (one - o));
            dc[k] = flush_subnormal(d * f);
        }
    }
}

/// `([w_f, w_i, w_o], clip)` for the variant step: without peepholes the weights are
/// `zeros` (adding exact zeros), without a clip the clip is infinite (clipping nothing), so one
/// branch-free loop, vectorised like the basic step, serves every variant.
fn variant_weights<'a, T: Scalar>(variant: &Variant<'a, T>, zeros: &'a [T]) -> ([&'a [T]; 3], T) {
    (
        variant.peepholes.unwrap_or([zeros, zeros, zeros]),
        variant.cell_clip.unwrap_or_else(T::infinity),
    )
}

/// `v` clipped to `[-clip, clip]` as `clip_by_value` clips (NaN passes through).
#[inline(always)]
fn clip_value<T: Scalar>(v: T, clip: T) -> T {
    if v < -clip {
        -clip
    } else if v > clip {
        clip
    } else {
        v
    }
}

isa_dispatch! {
    #[allow(clippy::too_many_arguments)]
    /// [`step_row`] for `LstmCell`'s variants, with `w = [w_f, w_i, w_o]` the peephole weights
    /// (zeros without peepholes) and `clip` the cell clip (infinite without):
    /// `i = sigmoid(z_i + w_i ⊙ c_prev)`, `f = sigmoid(z_f + forget_bias + w_f ⊙ c_prev)`,
    /// `c_raw = c_prev * f + i * j`, `c_next = clip(c_raw, -clip, clip)`,
    /// `o = sigmoid(z_o + w_o ⊙ c_next)`, `h_next = tanh(c_next) * o`.
    fn step_row_variant / step_row_variant_on<T>(
        z: &mut [T],
        c_prev: &[T],
        c_raw: &mut [T],
        c_next: &mut [T],
        tanh_c: &mut [T],
        h_next: &mut [T],
        w: [&[T]; 3],
        forget_bias: T,
        clip: T,
    ) {
        let units = c_prev.len();
        let [w_f, w_i, w_o] = w;
        let (w_f, w_i, w_o) = (&w_f[..units], &w_i[..units], &w_o[..units]);
        let [zi, zj, zf, zo] = gate_blocks_mut(z);
        let (zi, zj, zf, zo) = (
            &mut zi[..units],
            &mut zj[..units],
            &mut zf[..units],
            &mut zo[..units],
        );
        let (c_raw, c_next, tanh_c, h_next) = (
            &mut c_raw[..units],
            &mut c_next[..units],
            &mut tanh_c[..units],
            &mut h_next[..units],
        );
        for k in 0..units {
            let cp = c_prev[k];
            let i = (zi[k] + w_i[k] * cp).sigmoid_elem();
            let j = zj[k].tanh_elem();
            let f = (zf[k] + forget_bias + w_f[k] * cp).sigmoid_elem();
            let raw = flush_subnormal(cp * f + i * j);
            c_raw[k] = raw;
            let c = clip_value(raw, clip);
            let o = (zo[k] + w_o[k] * c).sigmoid_elem();
            (zi[k], zj[k], zf[k], zo[k]) = (i, j, f, o);
            c_next[k] = c;
            let th = c.tanh_elem();
            tanh_c[k] = th;
            h_next[k] = flush_subnormal(th * o);
        }
    }
}

isa_dispatch! {
    #[allow(clippy::too_many_arguments)]
    /// [`gate_gradients`] for `LstmCell`'s variants ([`step_row_variant`]'s `w` and `clip`),
    /// with `c = clip(c_raw)`: `dz_o = dh * tanh(c) * o (1 - o)`; `d = dc + dh * o (1 -
    /// tanh(c)^2) + dz_o * w_o`, set to zero where the clip cut `c_raw` (`c_raw < -clip` or
    /// `c_raw > clip`, as `clip_by_value`'s gradient); `dz_i`, `dz_j`, `dz_f` from `d` as in
    /// the basic step; `dc = d * f + dz_i * w_i + dz_f * w_f`; and the peephole weight
    /// gradients accumulate: `dw_i += dz_i * c_prev`, `dw_f += dz_f * c_prev`,
    /// `dw_o += dz_o * c`.
    fn gate_gradients_variant / gate_gradients_variant_on<T>(
        gates: &[T],
        c_prev: &[T],
        c_raw: &[T],
        tanh_c: &[T],
        dh: &[T],
        dc: &mut [T],
        dz: &mut [T],
        w: [&[T]; 3],
        dw: [&mut [T]; 3],
        clip: T,
    ) {
        let units = dc.len();
        let one = T::one();
        let [w_f, w_i, w_o] = w;
        let (w_f, w_i, w_o) = (&w_f[..units], &w_i[..units], &w_o[..units]);
        let [dw_f, dw_i, dw_o] = dw;
        let (dw_f, dw_i, dw_o) = (&mut dw_f[..units], &mut dw_i[..units], &mut dw_o[..units]);
        let [gi, gj, gf, go] = gate_blocks(gates);
        let [dzi, dzj, dzf, dzo] = gate_blocks_mut(dz);
        let (gi, gj, gf, go) = (&gi[..units], &gj[..units], &gf[..units], &go[..units]);
        let (dzi, dzj, dzf) = (&mut dzi[..units], &mut dzj[..units], &mut dzf[..units]);
        let (c_prev, c_raw, tanh_c, dh, dzo) = (
            &c_prev[..units],
            &c_raw[..units],
            &tanh_c[..units],
            &dh[..units],
            &mut dzo[..units],
        );
        for k in 0..units {
            let (i, j, f, o, th) = (gi[k], gj[k], gf[k], go[k], tanh_c[k]);
            let raw = c_raw[k];
            let c = clip_value(raw, clip);
            let d_o = dh[k] * th * o * (one - o);
            let d = dc[k] + dh[k] * o * (one - th * th) + d_o * w_o[k];
            let d = if raw < -clip || raw > clip {
                T::zero()
            } else {
                d
            };
            let d_i = flush_subnormal(d * j * i * (one - i));
            let d_f = flush_subnormal(d * c_prev[k] * f * (one - f));
            let d_o = flush_subnormal(d_o);
            dzi[k] = d_i;
            dzj[k] = flush_subnormal(d * i * (one - j * j));
            dzf[k] = d_f;
            dzo[k] = d_o;
            dw_i[k] += d_i * c_prev[k];
            dw_f[k] += d_f * c_prev[k];
            dw_o[k] += d_o * c;
            dc[k] = flush_subnormal(d * f + d_i * w_i[k] + d_f * w_f[k]);
        }
    }
}

/// `[a, b, c]` as `[a * b, c]`: a view when the layout allows, else a compact copy.
fn flatten_rows<T: Scalar>(a: ArrayView3<'_, T>) -> CowArray<'_, T, Ix2> {
    let (n, m, width) = a.dim();
    if a.is_standard_layout() {
        CowArray::from(
            a.into_shape_with_order((n * m, width))
                .expect("standard layout"),
        )
    } else {
        let owned = a.as_standard_layout().into_owned();
        CowArray::from(
            owned
                .into_shape_with_order((n * m, width))
                .expect("standard layout"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::{assert_same_bits_on_every_isa, values};
    use crate::math::Isa;

    /// The step and its gradients on every instruction set this CPU has give the portable
    /// path's bits (37 units: the vector loops and their scalar tails both run).
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let units = 37;
        let z = values(4 * units, 1, 6.0);
        let c_prev = values(units, 2, 3.0);
        let dh = values(units, 3, 1.0);
        let dc = values(units, 4, 1.0);
        let run = |isa: Isa| {
            let mut z = z.clone();
            let (mut c, mut tc, mut h) = (vec![0.0; units], vec![0.0; units], vec![0.0; units]);
            step_row_on(isa, &mut z, &c_prev, &mut c, &mut tc, &mut h, 1.0f32);
            let (mut dc, mut dz) = (dc.clone(), vec![0.0; 4 * units]);
            gate_gradients_on(isa, &z, &c_prev, &tc, &dh, &mut dc, &mut dz);
            vec![z, c, tc, h, dc, dz]
        };
        assert_same_bits_on_every_isa(run);
    }

    /// The peephole / clip step and its gradients give the portable path's bits on every
    /// instruction set (37 units; a clip of 0.8 that cuts some states).
    #[test]
    fn variant_step_gives_the_same_bits_on_every_instruction_set() {
        let units = 37;
        let z = values(4 * units, 7, 6.0);
        let c_prev = values(units, 8, 3.0);
        let w: Vec<Vec<f32>> = (0..3).map(|k| values(units, 9 + k, 1.0)).collect();
        let dh = values(units, 12, 1.0);
        let dc = values(units, 13, 1.0);
        let run = |isa: Isa| {
            let mut z = z.clone();
            let zero = || vec![0.0f32; units];
            let (mut raw, mut c, mut tc, mut h) = (zero(), zero(), zero(), zero());
            let ws = [w[0].as_slice(), w[1].as_slice(), w[2].as_slice()];
            step_row_variant_on(
                isa, &mut z, &c_prev, &mut raw, &mut c, &mut tc, &mut h, ws, 1.0f32, 0.8,
            );
            assert!(c.iter().any(|v| v.abs() == 0.8) && c.iter().any(|v| v.abs() < 0.8));
            let (mut dc, mut dz) = (dc.clone(), vec![0.0; 4 * units]);
            let (mut a, mut b, mut d) = (zero(), zero(), zero());
            gate_gradients_variant_on(
                isa,
                &z,
                &c_prev,
                &raw,
                &tc,
                &dh,
                &mut dc,
                &mut dz,
                ws,
                [&mut a, &mut b, &mut d],
                0.8,
            );
            vec![z, raw, c, tc, h, dc, dz, a, b, d]
        };
        assert_same_bits_on_every_isa(run);
    }

    /// The step in f64 against the equations written out.
    #[test]
    fn the_step_follows_the_equations() {
        let units = 5;
        let z: Vec<f64> = values(4 * units, 5, 4.0)
            .iter()
            .map(|&v| v as f64)
            .collect();
        let c_prev: Vec<f64> = values(units, 6, 2.0).iter().map(|&v| v as f64).collect();
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        for isa in Isa::supported() {
            let mut g = z.clone();
            let (mut c, mut tc, mut h) = (vec![0.0; units], vec![0.0; units], vec![0.0; units]);
            step_row_on(isa, &mut g, &c_prev, &mut c, &mut tc, &mut h, 1.0f64);
            for k in 0..units {
                let (i, j) = (sig(z[k]), z[units + k].tanh());
                let (f, o) = (sig(z[2 * units + k] + 1.0), sig(z[3 * units + k]));
                let want_c = c_prev[k] * f + i * j;
                assert!((c[k] - want_c).abs() < 1e-14);
                assert!((h[k] - want_c.tanh() * o).abs() < 1e-14);
                assert!((g[2 * units + k] - f).abs() < 1e-15);
            }
        }
    }
}
