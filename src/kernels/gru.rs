//! The fused GRU (TensorFlow 1.x's `GRUCell`, reset gate before the recurrent product) over a
//! whole batch-major sequence, forward and backward, sharded over the batch like the LSTM's.
//!
//! Equations, with `W_g = [W_gx; W_gh]` the gate kernel (blocks r, u) and `W_c = [W_cx; W_ch]`
//! the candidate kernel, split into their input and recurrent rows:
//!
//! ```text
//! [r, u] = sigmoid(x @ W_gx + h @ W_gh + b_g)
//! c      = tanh(x @ W_cx + (r * h) @ W_ch + b_c)
//! h'     = u * h + (1 - u) * c
//! ```
//!
//! The input projections of every step (`x @ W_gx + b_g`, `x @ W_cx + b_c`) are two products
//! before the time loop; per step a shard runs `h @ W_gh` and `(r h) @ W_ch` forward and
//! `dz_c @ W_ch^T` and `dz_g @ W_gh^T` backward, with the gate arithmetic between them in
//! dispatched row functions ([`crate::math`]); the weight gradients of all steps are products
//! after the loop. Nothing is allocated inside the time loop.
//!
//! With a candidate recurrent bias `b_ch` ([`Weights::candidate_recurrent_bias`]) the kernel
//! runs the `reset_after` variant (cuDNN's, PyTorch's `nn.GRU`, Keras's `reset_after=True`),
//! where the reset gate multiplies the recurrent product instead of the state:
//!
//! ```text
//! [r, u] = sigmoid(x @ W_gx + h @ W_gh + b_g)
//! hn     = h @ W_ch + b_ch
//! c      = tanh(x @ W_cx + b_c + r * hn)
//! h'     = u * h + (1 - u) * c
//! ```
//!
//! Both recurrent products then read `h` and nothing lies between them; the backward pass needs
//! one row pass per step (all pre-activation gradients at once) and the two products
//! `dz_hn @ W_ch^T` and `dz_g @ W_gh^T`.

use ndarray::{
    s, Array1, Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis,
};

use crate::kernels::linalg::gemm;
use crate::kernels::math::{flush_subnormal, isa_dispatch};
use crate::kernels::workspace;
use crate::parallel::{run_shards, shard_rows};
use crate::Scalar;

/// The GRU's weights: kernels `[input + units, 2 units]` (r, u) and `[input + units, units]`,
/// biases `[2 units]` and `[units]`.
#[derive(Clone, Copy)]
pub(crate) struct Weights<'a, T> {
    pub gate_kernel: ArrayView2<'a, T>,
    pub gate_bias: &'a [T],
    pub candidate_kernel: ArrayView2<'a, T>,
    pub candidate_bias: &'a [T],
    /// `[units]`: the bias of `h @ W_ch`, present exactly for the `reset_after` variant.
    pub candidate_recurrent_bias: Option<&'a [T]>,
}

/// What the forward pass keeps for the backward pass.
pub(crate) struct Forward<T: Scalar> {
    /// Activated gates `[batch, time, 2 units]`, blocks r and u.
    pub gates: Array3<T>,
    /// The candidate `c` at every step, `[batch, time, units]`.
    pub candidate: Array3<T>,
    /// `h_{t-1}` for every step `t`, `[batch, time, units]` (`h_prev[:, 0]` is the initial `h`).
    pub h_prev: Array3<T>,
    /// What the candidate's recurrent product read or gave, `[batch, time, units]`: `r *
    /// h_{t-1}` (zero at steps past an example's length), or with `reset_after` `hn = h_{t-1}
    /// @ W_ch + b_ch`.
    pub rh: Array3<T>,
    /// Outputs `[batch, time, units]` (zero past an example's length), taken by the caller.
    pub outputs: Array3<T>,
    /// The final state (at each example's last valid step), taken by the caller.
    pub h_last: Array2<T>,
    /// Per-example lengths, if given.
    pub lengths: Option<Vec<usize>>,
}

impl<T: Scalar> Drop for Forward<T> {
    /// The large buffers go back to the pool for the next step.
    fn drop(&mut self) {
        for buffer in [
            &mut self.gates,
            &mut self.candidate,
            &mut self.h_prev,
            &mut self.rh,
        ] {
            workspace::recycle_array(std::mem::take(buffer));
        }
    }
}

/// The gradients of one fused GRU run.
pub(crate) struct Grads<T> {
    pub dx: Option<Array3<T>>,
    pub dh0: Array2<T>,
    pub d_gate_kernel: Array2<T>,
    pub d_gate_bias: Array1<T>,
    pub d_candidate_kernel: Array2<T>,
    pub d_candidate_bias: Array1<T>,
    /// With `reset_after` only.
    pub d_candidate_recurrent_bias: Option<Array1<T>>,
}

fn alive(lengths: Option<&[usize]>, b: usize, t: usize) -> bool {
    lengths.is_none_or(|l| t < l[b])
}

/// Runs the GRU over `x` `[batch, time, in]` from `h0` `[batch, units]`.
pub(crate) fn forward<T: Scalar>(
    x: ArrayView3<'_, T>,
    w: Weights<'_, T>,
    h0: ArrayView2<'_, T>,
    lengths: Option<&[usize]>,
) -> Forward<T> {
    let (batch, steps, _) = x.dim();
    let units = w.candidate_bias.len();
    // Every element is written before it is read (the projections fill gates and candidate,
    // the loop writes h_prev and rh), so stale pooled values need no zeroing.
    let mut fwd = Forward {
        gates: workspace::scratch((batch, steps, 2 * units)),
        candidate: workspace::scratch((batch, steps, units)),
        h_prev: workspace::scratch((batch, steps, units)),
        rh: workspace::scratch((batch, steps, units)),
        outputs: Array3::zeros((batch, steps, units)),
        h_last: Array2::zeros((batch, units)),
        lengths: lengths.map(<[usize]>::to_vec),
    };
    let rows = shard_rows(batch);
    let shards: Vec<ForwardShard<'_, T>> = x
        .axis_chunks_iter(Axis(0), rows)
        .zip(h0.axis_chunks_iter(Axis(0), rows))
        .zip(fwd.gates.axis_chunks_iter_mut(Axis(0), rows))
        .zip(fwd.candidate.axis_chunks_iter_mut(Axis(0), rows))
        .zip(fwd.h_prev.axis_chunks_iter_mut(Axis(0), rows))
        .zip(fwd.rh.axis_chunks_iter_mut(Axis(0), rows))
        .zip(fwd.outputs.axis_chunks_iter_mut(Axis(0), rows))
        .zip(fwd.h_last.axis_chunks_iter_mut(Axis(0), rows))
        .enumerate()
        .map(
            |(k, (((((((x, h0), gates), candidate), h_prev), rh), outputs), h_last))| {
                let first = k * rows;
                ForwardShard {
                    lengths: lengths.map(|l| &l[first..first + x.dim().0]),
                    x,
                    h0,
                    gates,
                    candidate,
                    h_prev,
                    rh,
                    outputs,
                    h_last,
                }
            },
        )
        .collect();
    run_shards(shards, |shard| shard.run(w));
    fwd
}

struct ForwardShard<'a, T> {
    x: ArrayView3<'a, T>,
    h0: ArrayView2<'a, T>,
    gates: ArrayViewMut3<'a, T>,
    candidate: ArrayViewMut3<'a, T>,
    h_prev: ArrayViewMut3<'a, T>,
    rh: ArrayViewMut3<'a, T>,
    outputs: ArrayViewMut3<'a, T>,
    h_last: ArrayViewMut2<'a, T>,
    lengths: Option<&'a [usize]>,
}

/// `z[row] = bias` for every row, then `z += x @ w`.
fn project<T: Scalar>(
    x: &ArrayView2<'_, T>,
    w: &ArrayView2<'_, T>,
    bias: &[T],
    z: ArrayViewMut3<'_, T>,
) {
    let (batch, steps, width) = z.dim();
    let mut z = z
        .into_shape_with_order((batch * steps, width))
        .expect("contiguous shard");
    for mut row in z.rows_mut() {
        row.as_slice_mut()
            .expect("contiguous")
            .copy_from_slice(bias);
    }
    gemm(T::one(), x, w, T::one(), &mut z);
}

/// Step `t`'s states: `h_{t-1}` (slot `t` of `h_prev`, for reading) and where `h_t` goes, the next
/// slot or, at the last step, the final state `h_last`. The step writes its state there
/// directly: no per-step copy.
fn state_views<'v, T: Scalar>(
    h_prev: &'v mut ArrayViewMut3<'_, T>,
    h_last: &'v mut ArrayViewMut2<'_, T>,
    t: usize,
) -> (ArrayViewMut2<'v, T>, ArrayViewMut2<'v, T>) {
    let steps = h_prev.dim().1;
    let (now, later) = h_prev.view_mut().split_at(Axis(1), t + 1);
    let h_next = if t + 1 < steps {
        later.index_axis_move(Axis(1), 0)
    } else {
        h_last.view_mut()
    };
    (now.index_axis_move(Axis(1), t), h_next)
}

impl<T: Scalar> ForwardShard<'_, T> {
    fn run(mut self, w: Weights<'_, T>) {
        let (batch, steps, in_size) = self.x.dim();
        let units = w.candidate_bias.len();
        let (g_x, g_h) = w.gate_kernel.split_at(Axis(0), in_size);
        let (c_x, c_h) = w.candidate_kernel.split_at(Axis(0), in_size);
        self.h_prev.index_axis_mut(Axis(1), 0).assign(&self.h0);
        {
            let x = self
                .x
                .into_shape_with_order((batch * steps, in_size))
                .expect("contiguous shard");
            project(&x, &g_x, w.gate_bias, self.gates.view_mut());
            project(&x, &c_x, w.candidate_bias, self.candidate.view_mut());
        }
        let lengths = self.lengths;
        // The variant is fixed for the sequence: chosen once, not at every step.
        if let Some(b_ch) = w.candidate_recurrent_bias {
            for t in 0..steps {
                self.step_reset_after(t, g_h, c_h, b_ch);
            }
            return;
        }
        for t in 0..steps {
            let (h_prev, mut h_next) = state_views(&mut self.h_prev, &mut self.h_last, t);
            let h_prev = h_prev.view();
            let mut zg = self.gates.index_axis_mut(Axis(1), t);
            gemm(T::one(), &h_prev, &g_h, T::one(), &mut zg);
            let mut rh = self.rh.index_axis_mut(Axis(1), t);
            for b in 0..batch {
                let mut rh_row = rh.row_mut(b);
                let rh_row = rh_row.as_slice_mut().expect("contiguous");
                if alive(lengths, b, t) {
                    let (mut g, hp) = (zg.row_mut(b), h_prev.row(b));
                    gates_row(
                        g.as_slice_mut().expect("contiguous"),
                        hp.as_slice().expect("contiguous"),
                        rh_row,
                    );
                } else {
                    // Read by the candidate product and the weight gradient (times a zero
                    // gradient): a finite value, whatever the pool held.
                    rh_row.fill(T::zero());
                }
            }
            let mut zc = self.candidate.index_axis_mut(Axis(1), t);
            gemm(T::one(), &rh.view(), &c_h, T::one(), &mut zc);
            let mut out = self.outputs.index_axis_mut(Axis(1), t);
            for b in 0..batch {
                if !alive(lengths, b, t) {
                    // Past this example's length: carry the state; the output stays zero.
                    h_next.row_mut(b).assign(&h_prev.row(b));
                    continue;
                }
                let (mut c, g, hp, mut hn) =
                    (zc.row_mut(b), zg.row(b), h_prev.row(b), h_next.row_mut(b));
                let g = g.as_slice().expect("contiguous");
                let hn = hn.as_slice_mut().expect("contiguous");
                state_row(
                    c.as_slice_mut().expect("contiguous"),
                    &g[units..],
                    hp.as_slice().expect("contiguous"),
                    hn,
                );
                out.row_mut(b)
                    .as_slice_mut()
                    .expect("contiguous")
                    .copy_from_slice(hn);
            }
        }
    }

    /// Step `t` of the `reset_after` variant: `h @ W_gh` into the gates, `hn = b_ch + h @
    /// W_ch` into `rh`, then one row pass for the gates, the candidate and the new state.
    fn step_reset_after(
        &mut self,
        t: usize,
        g_h: ArrayView2<'_, T>,
        c_h: ArrayView2<'_, T>,
        b_ch: &[T],
    ) {
        let lengths = self.lengths;
        let (h_prev, mut h_next) = state_views(&mut self.h_prev, &mut self.h_last, t);
        let h_prev = h_prev.view();
        let mut zg = self.gates.index_axis_mut(Axis(1), t);
        gemm(T::one(), &h_prev, &g_h, T::one(), &mut zg);
        let mut hn = self.rh.index_axis_mut(Axis(1), t);
        for mut row in hn.rows_mut() {
            row.as_slice_mut()
                .expect("contiguous")
                .copy_from_slice(b_ch);
        }
        gemm(T::one(), &h_prev, &c_h, T::one(), &mut hn);
        let mut zc = self.candidate.index_axis_mut(Axis(1), t);
        let mut out = self.outputs.index_axis_mut(Axis(1), t);
        for b in 0..h_prev.nrows() {
            if !alive(lengths, b, t) {
                // Past this example's length: carry the state; the output stays zero.
                h_next.row_mut(b).assign(&h_prev.row(b));
                continue;
            }
            let (mut g, mut c, hn, hp, mut h) = (
                zg.row_mut(b),
                zc.row_mut(b),
                hn.row(b),
                h_prev.row(b),
                h_next.row_mut(b),
            );
            let h = h.as_slice_mut().expect("contiguous");
            reset_after_row(
                g.as_slice_mut().expect("contiguous"),
                c.as_slice_mut().expect("contiguous"),
                hn.as_slice().expect("contiguous"),
                hp.as_slice().expect("contiguous"),
                h,
            );
            out.row_mut(b)
                .as_slice_mut()
                .expect("contiguous")
                .copy_from_slice(h);
        }
    }
}

/// Backpropagation through time for [`forward`], given the gradients of the outputs and of the
/// final state.
pub(crate) fn backward<T: Scalar>(
    fwd: &Forward<T>,
    x: ArrayView3<'_, T>,
    w: Weights<'_, T>,
    d_outputs: Option<ArrayView3<'_, T>>,
    d_h_last: Option<ArrayView2<'_, T>>,
    need_dx: bool,
) -> Grads<T> {
    let (batch, steps, in_size) = x.dim();
    let units = w.candidate_bias.len();
    let mut dx = need_dx.then(|| Array3::zeros(x.raw_dim()));
    let mut dh0 = d_h_last.map_or_else(|| Array2::zeros((batch, units)), |g| g.to_owned());
    // BPTT starts at the last step that receives a gradient (see the LSTM's kernel).
    let t_end = if d_h_last.is_some() {
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
    // Every row of dz is written (computed at valid steps, zeroed at carried ones) up to t_end.
    let mut dzg_all: Array3<T> = workspace::scratch((batch, steps, 2 * units));
    let mut dzc_all: Array3<T> = workspace::scratch((batch, steps, units));
    // With reset_after: the gradients of hn = h @ W_ch + b_ch.
    let reset_after = w.candidate_recurrent_bias.is_some();
    let mut dzh_all: Array3<T> =
        workspace::scratch((batch, steps, if reset_after { units } else { 0 }));
    let mut dx_chunks: Vec<Option<ArrayViewMut3<'_, T>>> = match dx.as_mut() {
        Some(dx) => dx.axis_chunks_iter_mut(Axis(0), rows).map(Some).collect(),
        None => (0..n_shards).map(|_| None).collect(),
    };
    let shards: Vec<BackwardShard<'_, T>> = dh0
        .axis_chunks_iter_mut(Axis(0), rows)
        .zip(dx_chunks.iter_mut())
        .zip(dzg_all.axis_chunks_iter_mut(Axis(0), rows))
        .zip(dzc_all.axis_chunks_iter_mut(Axis(0), rows))
        .zip(dzh_all.axis_chunks_iter_mut(Axis(0), rows))
        .enumerate()
        .map(|(k, ((((dh, dx), dzg), dzc), dzh))| {
            let r = k * rows..(k * rows + dh.nrows());
            BackwardShard {
                x: x.slice(s![r.clone(), .., ..]),
                gates: fwd.gates.slice(s![r.clone(), .., ..]),
                candidate: fwd.candidate.slice(s![r.clone(), .., ..]),
                h_prev: fwd.h_prev.slice(s![r.clone(), .., ..]),
                rh: fwd.rh.slice(s![r.clone(), .., ..]),
                d_outputs: d_outputs.as_ref().map(|d| d.slice(s![r.clone(), .., ..])),
                lengths: fwd.lengths.as_ref().map(|l| &l[r.clone()]),
                dh,
                dx: dx.take(),
                dzg,
                dzc,
                dzh,
            }
        })
        .collect();
    // The recurrent rows transposed, row-major, once per sequence (see the LSTM's kernel).
    let g_h_t = w
        .gate_kernel
        .slice(s![in_size.., ..])
        .t()
        .as_standard_layout()
        .into_owned();
    let c_h_t = w
        .candidate_kernel
        .slice(s![in_size.., ..])
        .t()
        .as_standard_layout()
        .into_owned();
    let mut partials = run_shards(shards, |shard| {
        shard.run(w, g_h_t.view(), c_h_t.view(), t_end)
    })
    .into_iter();
    // Partial sums in shard order: the result does not depend on the thread count.
    let sums = match partials.next() {
        Some(mut first) => {
            for p in partials {
                first.0 += &p.0;
                first.1 += &p.1;
                first.2 += &p.2;
                first.3 += &p.3;
                first.4 += &p.4;
            }
            first
        }
        None => (
            Array2::zeros(w.gate_kernel.raw_dim()),
            Array1::zeros(2 * units),
            Array2::zeros(w.candidate_kernel.raw_dim()),
            Array1::zeros(units),
            Array1::zeros(if reset_after { units } else { 0 }),
        ),
    };
    workspace::recycle_array(dzg_all);
    workspace::recycle_array(dzc_all);
    workspace::recycle_array(dzh_all);
    Grads {
        dx,
        dh0,
        d_gate_kernel: sums.0,
        d_gate_bias: sums.1,
        d_candidate_kernel: sums.2,
        d_candidate_bias: sums.3,
        d_candidate_recurrent_bias: reset_after.then_some(sums.4),
    }
}

struct BackwardShard<'a, T> {
    x: ArrayView3<'a, T>,
    gates: ArrayView3<'a, T>,
    candidate: ArrayView3<'a, T>,
    h_prev: ArrayView3<'a, T>,
    rh: ArrayView3<'a, T>,
    d_outputs: Option<ArrayView3<'a, T>>,
    lengths: Option<&'a [usize]>,
    /// In: the gradient of the final `h`; out: the gradient of the initial `h`.
    dh: ArrayViewMut2<'a, T>,
    dx: Option<ArrayViewMut3<'a, T>>,
    /// Scratch for the gates' pre-activation gradients `[batch, time, 2 units]`.
    dzg: ArrayViewMut3<'a, T>,
    /// Scratch for the candidate's pre-activation gradients `[batch, time, units]`.
    dzc: ArrayViewMut3<'a, T>,
    /// With `reset_after`, scratch for the gradients of `hn` `[batch, time, units]` (else
    /// `[batch, time, 0]`).
    dzh: ArrayViewMut3<'a, T>,
}

/// A shard's weight and bias gradients: gate kernel and bias, candidate kernel and bias, and
/// the candidate recurrent bias (empty without `reset_after`).
type Partial<T> = (Array2<T>, Array1<T>, Array2<T>, Array1<T>, Array1<T>);

impl<T: Scalar> BackwardShard<'_, T> {
    /// BPTT over steps `0..t_end`; returns this shard's share of the weight and bias gradients.
    fn run(
        mut self,
        w: Weights<'_, T>,
        g_h_t: ArrayView2<'_, T>,
        c_h_t: ArrayView2<'_, T>,
        t_end: usize,
    ) -> Partial<T> {
        let (batch, _, in_size) = self.x.dim();
        let units = self.dh.ncols();
        let one = T::one();
        let reset_after = w.candidate_recurrent_bias.is_some();
        let mut dh = self.dh.to_owned();
        let mut dh_prev = Array2::<T>::zeros((batch, units));
        let mut drh = Array2::<T>::zeros((batch, units));
        for t in (0..t_end).rev() {
            if let Some(d_out) = &self.d_outputs {
                for b in 0..batch {
                    // A step past an example's length output a constant zero: no gradient.
                    if alive(self.lengths, b, t) {
                        let mut row = dh.row_mut(b);
                        row += &d_out.slice(s![b, t, ..]);
                    }
                }
            }
            if reset_after {
                self.step_reset_after(t, &dh, &mut dh_prev, g_h_t, c_h_t);
                std::mem::swap(&mut dh, &mut dh_prev);
                continue;
            }
            let gates = self.gates.index_axis(Axis(1), t);
            let cand = self.candidate.index_axis(Axis(1), t);
            let h_prev = self.h_prev.index_axis(Axis(1), t);
            let mut dzg = self.dzg.index_axis_mut(Axis(1), t);
            let mut dzc = self.dzc.index_axis_mut(Axis(1), t);
            for b in 0..batch {
                let (mut dzg_row, mut dzc_row, mut dhp) =
                    (dzg.row_mut(b), dzc.row_mut(b), dh_prev.row_mut(b));
                if !alive(self.lengths, b, t) {
                    // The state was carried: its gradient passes straight through.
                    dzg_row.fill(T::zero());
                    dzc_row.fill(T::zero());
                    dhp.assign(&dh.row(b));
                    continue;
                }
                let (g, c, hp, d) = (gates.row(b), cand.row(b), h_prev.row(b), dh.row(b));
                let g = g.as_slice().expect("contiguous");
                let dzg_row = dzg_row.as_slice_mut().expect("contiguous");
                candidate_grads_row(
                    d.as_slice().expect("contiguous"),
                    &g[units..],
                    c.as_slice().expect("contiguous"),
                    hp.as_slice().expect("contiguous"),
                    dzc_row.as_slice_mut().expect("contiguous"),
                    &mut dzg_row[units..],
                    dhp.as_slice_mut().expect("contiguous"),
                );
            }
            // d(r h) = dz_c @ W_ch^T (zero on carried rows).
            gemm(one, &dzc.view(), &c_h_t, T::zero(), &mut drh.view_mut());
            for b in 0..batch {
                if !alive(self.lengths, b, t) {
                    continue;
                }
                let (g, hp, d, mut dzg_row, mut dhp) = (
                    gates.row(b),
                    h_prev.row(b),
                    drh.row(b),
                    dzg.row_mut(b),
                    dh_prev.row_mut(b),
                );
                let g = g.as_slice().expect("contiguous");
                let dzg_row = dzg_row.as_slice_mut().expect("contiguous");
                reset_grads_row(
                    d.as_slice().expect("contiguous"),
                    &g[..units],
                    hp.as_slice().expect("contiguous"),
                    &mut dzg_row[..units],
                    dhp.as_slice_mut().expect("contiguous"),
                );
            }
            gemm(one, &dzg.view(), &g_h_t, one, &mut dh_prev.view_mut());
            std::mem::swap(&mut dh, &mut dh_prev);
        }
        self.dh.assign(&dh);
        // Weight gradients of every step at once (see the LSTM's kernel for the layout).
        let rows_of = |a: ArrayView3<'_, T>| {
            let (n, m, width) = a.dim();
            a.as_standard_layout()
                .into_owned()
                .into_shape_with_order((n * m, width))
                .expect("standard layout")
        };
        let dzg = rows_of(self.dzg.slice(s![.., ..t_end, ..]));
        let dzc = rows_of(self.dzc.slice(s![.., ..t_end, ..]));
        let x = rows_of(self.x.slice(s![.., ..t_end, ..]));
        let h_prev = rows_of(self.h_prev.slice(s![.., ..t_end, ..]));
        // With reset_after `rh` holds hn, which the weight gradients do not read.
        let rh = if reset_after {
            Array2::zeros((0, units))
        } else {
            rows_of(self.rh.slice(s![.., ..t_end, ..]))
        };
        let mut dgk = Array2::<T>::zeros((in_size + units, 2 * units));
        let mut dck = Array2::<T>::zeros((in_size + units, units));
        let mut d_recurrent_bias = Array1::<T>::zeros(0);
        {
            let (mut dg_x, mut dg_h) = dgk.view_mut().split_at(Axis(0), in_size);
            gemm(one, &x.t(), &dzg.view(), T::zero(), &mut dg_x);
            gemm(one, &h_prev.t(), &dzg.view(), T::zero(), &mut dg_h);
            let (mut dc_x, mut dc_h) = dck.view_mut().split_at(Axis(0), in_size);
            gemm(one, &x.t(), &dzc.view(), T::zero(), &mut dc_x);
            if reset_after {
                // hn = h @ W_ch + b_ch: its gradient dz_h reaches W_ch and b_ch.
                let dzh = rows_of(self.dzh.slice(s![.., ..t_end, ..]));
                gemm(one, &h_prev.t(), &dzh.view(), T::zero(), &mut dc_h);
                d_recurrent_bias = dzh.sum_axis(Axis(0));
            } else {
                gemm(one, &rh.t(), &dzc.view(), T::zero(), &mut dc_h);
            }
        }
        if let Some(mut dx) = self.dx.take() {
            // dx is zero past t_end (it was created zeroed).
            let g_x = w.gate_kernel.slice(s![..in_size, ..]);
            let c_x = w.candidate_kernel.slice(s![..in_size, ..]);
            let mut dx_rows = crate::kernels::linalg::matmul(&dzg.view(), &g_x.t());
            gemm(one, &dzc.view(), &c_x.t(), one, &mut dx_rows.view_mut());
            let dx_rows = dx_rows
                .into_shape_with_order((batch, t_end, in_size))
                .expect("sizes match");
            dx.slice_mut(s![.., ..t_end, ..]).assign(&dx_rows);
        }
        (
            dgk,
            dzg.sum_axis(Axis(0)),
            dck,
            dzc.sum_axis(Axis(0)),
            d_recurrent_bias,
        )
    }

    /// Step `t` of BPTT for the `reset_after` variant: `dh` is the gradient of `h_t`; writes
    /// the step's `dz_g`, `dz_c`, `dz_h` and the gradient of `h_{t-1}` into `dh_prev`.
    fn step_reset_after(
        &mut self,
        t: usize,
        dh: &Array2<T>,
        dh_prev: &mut Array2<T>,
        g_h_t: ArrayView2<'_, T>,
        c_h_t: ArrayView2<'_, T>,
    ) {
        let one = T::one();
        let gates = self.gates.index_axis(Axis(1), t);
        let cand = self.candidate.index_axis(Axis(1), t);
        let hn = self.rh.index_axis(Axis(1), t);
        let h_prev = self.h_prev.index_axis(Axis(1), t);
        let mut dzg = self.dzg.index_axis_mut(Axis(1), t);
        let mut dzc = self.dzc.index_axis_mut(Axis(1), t);
        let mut dzh = self.dzh.index_axis_mut(Axis(1), t);
        for b in 0..dh.nrows() {
            let (mut dzg_row, mut dzc_row, mut dzh_row, mut dhp) = (
                dzg.row_mut(b),
                dzc.row_mut(b),
                dzh.row_mut(b),
                dh_prev.row_mut(b),
            );
            if !alive(self.lengths, b, t) {
                // The state was carried: its gradient passes straight through.
                dzg_row.fill(T::zero());
                dzc_row.fill(T::zero());
                dzh_row.fill(T::zero());
                dhp.assign(&dh.row(b));
                continue;
            }
            let (g, c, hn, hp, d) = (
                gates.row(b),
                cand.row(b),
                hn.row(b),
                h_prev.row(b),
                dh.row(b),
            );
            reset_after_grads_row(
                d.as_slice().expect("contiguous"),
                g.as_slice().expect("contiguous"),
                c.as_slice().expect("contiguous"),
                hn.as_slice().expect("contiguous"),
                hp.as_slice().expect("contiguous"),
                dzg_row.as_slice_mut().expect("contiguous"),
                dzc_row.as_slice_mut().expect("contiguous"),
                dzh_row.as_slice_mut().expect("contiguous"),
                dhp.as_slice_mut().expect("contiguous"),
            );
        }
        // The two recurrent products read h_{t-1}: their gradients add to the direct part.
        gemm(one, &dzh.view(), &c_h_t, one, &mut dh_prev.view_mut());
        gemm(one, &dzg.view(), &g_h_t, one, &mut dh_prev.view_mut());
    }
}

isa_dispatch! {
    /// One example's gates at one step: `z = [z_r, z_u]` becomes `[r, u]` (sigmoids) and
    /// `rh = r * h_prev`.
    fn gates_row / gates_row_on<T>(z: &mut [T], h_prev: &[T], rh: &mut [T]) {
        let units = h_prev.len();
        let (zr, zu) = z.split_at_mut(units);
        let (zu, rh) = (&mut zu[..units], &mut rh[..units]);
        for k in 0..units {
            let r = zr[k].sigmoid_elem();
            zr[k] = r;
            zu[k] = zu[k].sigmoid_elem();
            rh[k] = r * h_prev[k];
        }
    }
}

isa_dispatch! {
    /// One example's new state: `z_c` becomes `c = tanh(z_c)` and `h_next = u * h_prev +
    /// (1 - u) * c`, in the tape GRU's order of operations (a subnormal `h_next` flushed to
    /// zero, [`flush_subnormal`]).
    fn state_row / state_row_on<T>(zc: &mut [T], u: &[T], h_prev: &[T], h_next: &mut [T]) {
        let units = zc.len();
        let (u, h_prev, h_next) = (&u[..units], &h_prev[..units], &mut h_next[..units]);
        for k in 0..units {
            let c = zc[k].tanh_elem();
            zc[k] = c;
            h_next[k] = flush_subnormal(u[k] * h_prev[k] + (T::one() - u[k]) * c);
        }
    }
}

isa_dispatch! {
    /// One example's gradients through `h' = u h + (1 - u) c` and `c = tanh(z_c)`, from `dh`
    /// (the gradient of `h'`): `dz_c = dh (1 - u)(1 - c^2)`, `dz_u = dh (h - c) u (1 - u)` and
    /// the direct part of the gradient of `h`, `dh_prev = dh u`.
    fn candidate_grads_row / candidate_grads_row_on<T>(
        dh: &[T],
        u: &[T],
        c: &[T],
        h_prev: &[T],
        dzc: &mut [T],
        dzu: &mut [T],
        dh_prev: &mut [T],
    ) {
        let units = dh.len();
        let one = T::one();
        let (u, c, h_prev) = (&u[..units], &c[..units], &h_prev[..units]);
        let (dzc, dzu, dh_prev) = (&mut dzc[..units], &mut dzu[..units], &mut dh_prev[..units]);
        for k in 0..units {
            let (d, uk, ck) = (dh[k], u[k], c[k]);
            dzc[k] = flush_subnormal(d * (one - uk) * (one - ck * ck));
            dzu[k] = flush_subnormal(d * (h_prev[k] - ck) * uk * (one - uk));
            dh_prev[k] = d * uk;
        }
    }
}

isa_dispatch! {
    /// One example's gradients through `r h`, from `drh = dz_c @ W_ch^T`: `dz_r = drh h r (1 - r)`
    /// and `dh_prev += drh r` (subnormal results flushed to zero).
    fn reset_grads_row / reset_grads_row_on<T>(
        drh: &[T],
        r: &[T],
        h_prev: &[T],
        dzr: &mut [T],
        dh_prev: &mut [T],
    ) {
        let units = drh.len();
        let one = T::one();
        let (r, h_prev) = (&r[..units], &h_prev[..units]);
        let (dzr, dh_prev) = (&mut dzr[..units], &mut dh_prev[..units]);
        for k in 0..units {
            let (d, rk) = (drh[k], r[k]);
            dzr[k] = flush_subnormal(d * h_prev[k] * rk * (one - rk));
            dh_prev[k] = flush_subnormal(dh_prev[k] + d * rk);
        }
    }
}

isa_dispatch! {
    /// One example's step of the `reset_after` variant: `z = [z_r, z_u]` becomes `[r, u]`
    /// (sigmoids), `z_c` (the input part `x @ W_cx + b_c`) becomes `c = tanh(z_c + r * hn)`,
    /// and `h_next = u * h_prev + (1 - u) * c` (a subnormal `h_next` flushed to zero).
    fn reset_after_row / reset_after_row_on<T>(
        z: &mut [T],
        zc: &mut [T],
        hn: &[T],
        h_prev: &[T],
        h_next: &mut [T],
    ) {
        let units = zc.len();
        let (zr, zu) = z.split_at_mut(units);
        let zu = &mut zu[..units];
        let (hn, h_prev, h_next) = (&hn[..units], &h_prev[..units], &mut h_next[..units]);
        for k in 0..units {
            let r = zr[k].sigmoid_elem();
            let u = zu[k].sigmoid_elem();
            zr[k] = r;
            zu[k] = u;
            let c = (zc[k] + r * hn[k]).tanh_elem();
            zc[k] = c;
            h_next[k] = flush_subnormal(u * h_prev[k] + (T::one() - u) * c);
        }
    }
}

isa_dispatch! {
    /// One example's gradients through a `reset_after` step, from `dh` (the gradient of `h'`),
    /// with `a = z_c + r hn` the candidate's pre-activation:
    /// `dz_c = da = dh (1 - u)(1 - c^2)`, `dz_u = dh (h - c) u (1 - u)`,
    /// `dz_r = da hn r (1 - r)`, `dz_h = da r` (the gradient of `hn`) and the direct part of
    /// the gradient of `h`, `dh_prev = dh u` (subnormal results flushed to zero).
    #[allow(clippy::too_many_arguments)]
    fn reset_after_grads_row / reset_after_grads_row_on<T>(
        dh: &[T],
        gates: &[T],
        c: &[T],
        hn: &[T],
        h_prev: &[T],
        dzg: &mut [T],
        dzc: &mut [T],
        dzh: &mut [T],
        dh_prev: &mut [T],
    ) {
        let units = dh.len();
        let one = T::one();
        let (r, u) = gates.split_at(units);
        let (u, c, hn, h_prev) = (&u[..units], &c[..units], &hn[..units], &h_prev[..units]);
        let (dzr, dzu) = dzg.split_at_mut(units);
        let dzu = &mut dzu[..units];
        let (dzc, dzh, dh_prev) = (&mut dzc[..units], &mut dzh[..units], &mut dh_prev[..units]);
        for k in 0..units {
            let (d, rk, uk, ck) = (dh[k], r[k], u[k], c[k]);
            let da = d * (one - uk) * (one - ck * ck);
            dzc[k] = flush_subnormal(da);
            dzu[k] = flush_subnormal(d * (h_prev[k] - ck) * uk * (one - uk));
            dzr[k] = flush_subnormal(da * hn[k] * rk * (one - rk));
            dzh[k] = flush_subnormal(da * rk);
            dh_prev[k] = flush_subnormal(d * uk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::{assert_same_bits_on_every_isa, values};
    use crate::math::Isa;

    /// Every instruction set this CPU has gives the portable path's bits (37 units: vector
    /// loops and scalar tails).
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let units = 37;
        let z = values(2 * units, 1, 6.0);
        let zc = values(units, 2, 4.0);
        let h = values(units, 3, 1.0);
        let dh = values(units, 4, 1.0);
        let drh = values(units, 5, 1.0);
        let run = |isa: Isa| {
            let (mut z, mut zc) = (z.clone(), zc.clone());
            let (mut rh, mut hn) = (vec![0.0; units], vec![0.0; units]);
            gates_row_on(isa, &mut z, &h, &mut rh);
            state_row_on(isa, &mut zc, &z[units..], &h, &mut hn);
            let (mut dzc, mut dzg, mut dhp) =
                (vec![0.0; units], vec![0.0; 2 * units], vec![0.0; units]);
            let (dzr, dzu) = dzg.split_at_mut(units);
            candidate_grads_row_on(isa, &dh, &z[units..], &zc, &h, &mut dzc, dzu, &mut dhp);
            reset_grads_row_on(isa, &drh, &z[..units], &h, dzr, &mut dhp);
            // The reset_after rows, with drh standing in for hn.
            let (mut za, mut zca, mut hna) = (
                values(2 * units, 1, 6.0),
                values(units, 2, 4.0),
                vec![0.0; units],
            );
            reset_after_row_on(isa, &mut za, &mut zca, &drh, &h, &mut hna);
            let (mut dzga, mut dzca, mut dzha, mut dhpa) = (
                vec![0.0; 2 * units],
                vec![0.0; units],
                vec![0.0; units],
                vec![0.0; units],
            );
            reset_after_grads_row_on(
                isa, &dh, &za, &zca, &drh, &h, &mut dzga, &mut dzca, &mut dzha, &mut dhpa,
            );
            vec![
                z, zc, rh, hn, dzc, dzg, dhp, za, zca, hna, dzga, dzca, dzha, dhpa,
            ]
        };
        assert_same_bits_on_every_isa(run);
    }
}
