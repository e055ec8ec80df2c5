//! The LSTM's step as one pass over tiles of its output (AVX-512, `f32`): the input
//! projection `x_t @ W_x + bias`, the recurrent product `h_{t-1} @ W_h` and the cell, applied to
//! each tile while it is in registers.
//!
//! Through `gemm`, a sequence is one product for the input projection of every step, written to
//! a `[rows, steps, 4 * units]` buffer (3.7 MB for a shard of 64 rows of LSTM(128) over 28
//! steps, more than the L2 cache), then per step a product that adds `h_{t-1} @ W_h` to the
//! step's slice and a gate loop that reads it back; and `gemm` packs its right-hand side again
//! at every call. Here `W_x`, `W_h` and the bias are packed once per sequence, in groups of 16
//! units with the four gates side by side (for each row of the weights: `[i | j | f | o]`, 16
//! columns each), so one tile of 6 rows by 4 vectors of 16 sums holds all four gates of 16 units
//! for 6 examples, and the cell runs on it, with several rows in lockstep
//! ([`crate::math::Lockstep`]), before the next tile. Nothing of the pre-activations is written
//! to memory.
//!
//! # Bits
//! Each sum is a chain of fused multiply-adds over the inner dimension, in order from zero, as
//! `gemm`'s microkernels compute it; the input projection's sum is added to the bias, then the
//! recurrent sum to that, as the `gemm` path adds them; the cell is
//! [`super::lstm::basic_cell_lanes`], the same operations as the gate loop's. So the results are
//! those of the `gemm` path bit for bit (tested against it here), and inference keeps training's
//! bits. `gemm` sums otherwise in some cases, which keep its path: inner dimensions of 1 or 2
//! (elementwise) or above 512 (split), column-major weights in small products (dot products),
//! and products of at most 4 rows (ours, unfused); see [`PackedRecurrent::for_shard`].

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::kernels::linalg::SMALL_ROWS;
use crate::kernels::workspace;
use crate::Scalar;

/// Units per group: one AVX-512 vector of `f32`.
const LANES: usize = 16;
/// Gates per unit, side by side in a packed group.
const GATES: usize = 4;
/// The largest inner dimension (inputs, units) of the tiled step: `gemm` sums up to 512 terms in
/// one chain, which the tiles reproduce (more, it splits).
const MAX_INNER: usize = 512;

/// An LSTM's weights packed for [`PackedRecurrent::step`]: for each group of [`LANES`] units,
/// the rows of `W_x` then of `W_h`, each as the four gates' 16 columns side by side, and the
/// bias the same way (zeros past the last unit).
pub(crate) struct PackedRecurrent {
    /// `[groups, in_size, 4 * 16]`.
    w_x: Vec<f32>,
    /// `[groups, units, 4 * 16]`.
    w_h: Vec<f32>,
    /// `[groups, 4 * 16]`.
    bias: Vec<f32>,
    in_size: usize,
    units: usize,
}

/// One step's views for [`PackedRecurrent::step`], all `[rows, ..]` with contiguous rows.
pub(crate) struct StepViews<'a, T> {
    /// The step's inputs `x_t` `[rows, in_size]`.
    pub x: ArrayView2<'a, T>,
    /// `h_{t-1}` `[rows, units]`.
    pub h_prev: ArrayView2<'a, T>,
    /// `c_{t-1}` `[rows, units]`.
    pub c_prev: ArrayView2<'a, T>,
    /// `c_t` `[rows, units]`.
    pub c_next: ArrayViewMut2<'a, T>,
    /// `h_t` `[rows, units]`.
    pub h_next: ArrayViewMut2<'a, T>,
    /// The step's outputs `[rows, units]` (`h_t`).
    pub out: ArrayViewMut2<'a, T>,
}

impl PackedRecurrent {
    /// `w_x` `[in_size, 4 * units]`, `w_h` `[units, 4 * units]` and `bias` `[4 * units]`
    /// packed for a shard of `rows` examples of the basic LSTM, when the tiled step gives the
    /// `gemm` path's bits and can run; `None` otherwise. It runs when `T` is `f32` and the
    /// kernels use AVX-512 ([`crate::math::isa`]). Its bits are `gemm`'s (one chain of fused
    /// multiply-adds per element, from zero) when the shard has more than [`SMALL_ROWS`] rows
    /// (fewer go through the one-row products, which do not fuse), the inner dimensions are 3
    /// to 512 or no inputs (`gemm` does products over 1 or 2 terms elementwise, grouped
    /// differently, and splits more than 512), and both weights are row-major (`gemm` sums
    /// column-major right-hand sides of small products as dot products, in another order).
    pub(crate) fn for_shard<T: Scalar>(
        rows: usize,
        w_x: &ArrayView2<'_, T>,
        w_h: &ArrayView2<'_, T>,
        bias: &[T],
    ) -> Option<Self> {
        let inner = |k: usize| (3..=MAX_INNER).contains(&k);
        let serves = cfg!(target_arch = "x86_64")
            && crate::math::isa() == crate::math::Isa::Avx512
            && rows > SMALL_ROWS
            && (w_x.nrows() == 0 || inner(w_x.nrows()))
            && inner(w_h.nrows())
            && w_x.is_standard_layout()
            && w_h.is_standard_layout();
        if !serves {
            return None;
        }
        let (w_x, w_h) = (as_f32(w_x.view())?, as_f32(w_h.view())?);
        let units = w_h.nrows();
        assert_eq!(
            (w_x.ncols(), w_h.ncols(), bias.len()),
            (GATES * units, GATES * units, GATES * units),
            "PackedRecurrent::for_shard: weights for {units} units"
        );
        let bias: Vec<f32> = bias.iter().map(|&b| as_f32_value(b)).collect();
        let bias = ArrayView2::from_shape((1, GATES * units), &bias).expect("one row");
        Some(PackedRecurrent {
            w_x: pack(&w_x, units),
            w_h: pack(&w_h, units),
            bias: pack(&bias, units),
            in_size: w_x.nrows(),
            units,
        })
    }

    /// One LSTM step for `rows` examples: `z = (bias + x @ W_x) + h_prev @ W_h`, then the
    /// basic cell with `forget_bias`, writing `c_next`, `h_next` and `out` for the rows where
    /// `alive` is true; other rows are left untouched.
    ///
    /// # Panics
    /// If `T` is not `f32`, the shapes do not fit, a row is not contiguous, or the kernels do
    /// not use AVX-512: the LSTM kernel builds the views, from weights `for_shard` packed.
    pub(crate) fn step<T: Scalar>(&self, views: StepViews<'_, T>, forget_bias: T, alive: &[bool]) {
        let rows = views.h_prev.nrows();
        let (in_size, units) = (self.in_size, self.units);
        fn expect<T>(what: &str, view: ArrayView2<'_, T>, want: (usize, usize)) {
            let (dim, stride) = (view.dim(), view.strides()[1]);
            assert!(
                dim == want && (stride == 1 || want.1 <= 1),
                "PackedRecurrent::step: {what} is {dim:?} (column stride {stride}), not {want:?}"
            );
        }
        expect("x", views.x.view(), (rows, in_size));
        expect("h_prev", views.h_prev.view(), (rows, units));
        expect("c_prev", views.c_prev.view(), (rows, units));
        expect("c_next", views.c_next.view(), (rows, units));
        expect("h_next", views.h_next.view(), (rows, units));
        expect("out", views.out.view(), (rows, units));
        assert_eq!(alive.len(), rows, "PackedRecurrent::step: alive");
        let forget_bias = as_f32_value(forget_bias);
        let rows_of = |p: *const T, strides: &[isize]| Rows {
            ptr: p.cast::<f32>().cast_mut(),
            stride: strides[0],
        };
        let mut views = views;
        let io = StepRows {
            x: rows_of(views.x.as_ptr(), views.x.strides()),
            h_prev: rows_of(views.h_prev.as_ptr(), views.h_prev.strides()),
            c_prev: rows_of(views.c_prev.as_ptr(), views.c_prev.strides()),
            c_next: rows_of(views.c_next.as_mut_ptr(), views.c_next.strides()),
            h_next: rows_of(views.h_next.as_mut_ptr(), views.h_next.strides()),
            out: rows_of(views.out.as_mut_ptr(), views.out.strides()),
        };
        assert!(
            cfg!(target_arch = "x86_64") && crate::math::isa() == crate::math::Isa::Avx512,
            "PackedRecurrent::step: no AVX-512 path"
        );
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the kernels use AVX-512 only where the CPU has it (`isa()`, asserted), and
        // `T` is `f32` (asserted by `as_f32_value`); the packed weights have the sizes `for_shard`
        // gave them; every row pointer and stride comes from a view of the asserted shape with
        // contiguous rows, and the written views are unique borrows, the read ones shared
        // borrows, so nothing read is written during the call.
        unsafe {
            avx512::step(self, rows, &io, forget_bias, alive)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (io, forget_bias);
    }
}

impl Drop for PackedRecurrent {
    fn drop(&mut self) {
        for buffer in [&mut self.w_x, &mut self.w_h, &mut self.bias] {
            workspace::recycle(std::mem::take(buffer));
        }
    }
}

/// `w` `[rows, 4 * units]` as groups of [`LANES`] units: `[groups, rows, 4 * 16]`, zeros past
/// the last unit.
fn pack(w: &ArrayView2<'_, f32>, units: usize) -> Vec<f32> {
    let groups = units.div_ceil(LANES);
    let mut data: Vec<f32> = workspace::take(groups * w.nrows() * GATES * LANES);
    let mut next = data.iter_mut();
    for g in 0..groups {
        for row in w.rows() {
            for q in 0..GATES {
                for u in 0..LANES {
                    let unit = g * LANES + u;
                    *next.next().expect("sized above") = if unit < units {
                        row[q * units + unit]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
    data
}

/// The rows of a view: the first element and the distance between rows, in elements.
#[derive(Clone, Copy)]
struct Rows {
    ptr: *mut f32,
    stride: isize,
}

impl Rows {
    /// The start of row `r`, offset by `col` elements.
    ///
    /// # Safety
    /// `r` and `col` lie inside the view (`col` may be the row's end).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    unsafe fn at(self, r: usize, col: usize) -> *mut f32 {
        // SAFETY: the caller keeps `r` and `col` inside the view.
        unsafe { self.ptr.offset(r as isize * self.stride).add(col) }
    }
}

/// [`StepViews`] as raw rows.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct StepRows {
    x: Rows,
    h_prev: Rows,
    c_prev: Rows,
    c_next: Rows,
    h_next: Rows,
    out: Rows,
}

/// `view` as `f32` when `T` is `f32`.
fn as_f32<T: Scalar>(view: ArrayView2<'_, T>) -> Option<ArrayView2<'_, f32>> {
    if std::any::TypeId::of::<T>() != std::any::TypeId::of::<f32>() {
        return None;
    }
    // SAFETY: `T` is `f32` (checked above), so the raw view's elements are `f32`s, borrowed for
    // the input view's lifetime.
    Some(unsafe { view.raw_view().cast::<f32>().deref_into_view() })
}

/// `x` as `f32`, asserting that `T` is `f32`.
fn as_f32_value<T: Scalar>(x: T) -> f32 {
    assert!(
        std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>(),
        "PackedRecurrent runs f32 only"
    );
    x.to_f32().expect("an f32")
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{PackedRecurrent, StepRows, GATES, LANES};

    /// Rows of a tile: 6 rows by 4 vectors is 24 accumulators, with room in the 32 registers
    /// for the 4 vectors of weights and a broadcast row value.
    const TILE_ROWS: usize = 6;
    use crate::kernels::lstm::basic_cell_lanes;
    use crate::kernels::math::{Lanes, Lockstep};

    /// One AVX-512 vector of 16 `f32` lanes, for [`Lanes`]: each method is one IEEE operation
    /// (or a select or sign-bit operation) per lane, as on a single `f32`.
    ///
    /// Only made inside this module's `#[target_feature(enable = "avx512f")]` functions, into
    /// which its `#[inline(always)]` methods are inlined, so its intrinsics run only where the
    /// CPU has AVX-512.
    #[derive(Clone, Copy)]
    struct V16(__m512);

    const SIGN: u32 = 0x8000_0000;

    macro_rules! v16_op {
        ($trait:ident, $method:ident, $intrinsic:ident) => {
            impl std::ops::$trait for V16 {
                type Output = Self;
                #[inline(always)]
                fn $method(self, other: Self) -> Self {
                    // SAFETY: V16 exists only in AVX-512 code (see the type's doc).
                    V16(unsafe { $intrinsic(self.0, other.0) })
                }
            }
        };
    }
    v16_op!(Add, add, _mm512_add_ps);
    v16_op!(Sub, sub, _mm512_sub_ps);
    v16_op!(Mul, mul, _mm512_mul_ps);
    v16_op!(Div, div, _mm512_div_ps);

    /// The lanes' bits.
    #[inline(always)]
    fn bits(v: V16) -> __m512i {
        // SAFETY: V16 exists only in AVX-512 code (see the type's doc).
        unsafe { _mm512_castps_si512(v.0) }
    }

    /// The lanes with the sign bit set (`or`), cleared (`andnot`) or taken from `sign`.
    macro_rules! with_sign_bit {
        ($op:ident, $v:expr) => {
            // SAFETY: as above.
            V16(unsafe { _mm512_castsi512_ps($op(_mm512_set1_epi32(SIGN as i32), bits($v))) })
        };
    }

    impl Lanes for V16 {
        #[inline(always)]
        fn splat(v: f32) -> Self {
            // SAFETY: as above.
            V16(unsafe { _mm512_set1_ps(v) })
        }
        #[inline(always)]
        fn abs(self) -> Self {
            // Clearing the sign bit, as `f32::abs` does.
            with_sign_bit!(_mm512_andnot_si512, self)
        }
        #[inline(always)]
        fn neg_abs(self) -> Self {
            // Setting the sign bit: `-|x|` flips the bit `abs` cleared.
            with_sign_bit!(_mm512_or_si512, self)
        }
        #[inline(always)]
        fn copysign(self, sign: Self) -> Self {
            // SAFETY: as above. The magnitude's bits outside the sign bit, the sign's inside:
            // the ternary-logic table 0xAC is `a ? c : b` bit by bit.
            V16(unsafe {
                _mm512_castsi512_ps(_mm512_ternarylogic_epi32::<0xAC>(
                    _mm512_set1_epi32(SIGN as i32),
                    bits(self),
                    bits(sign),
                ))
            })
        }
        #[inline(always)]
        fn times_pow2(self, n: Self, _shifted: Self) -> Self {
            // SAFETY: as above. `scalef` is `self * 2^floor(n)`, rounded once: for the integer
            // n in [-126, 0], the product by the normal power of two that the scalar version
            // builds from `shifted`'s bits.
            V16(unsafe { _mm512_scalef_ps(self.0, n.0) })
        }
        #[inline(always)]
        fn where_below(self, bound: f32, then: Self, otherwise: Self) -> Self {
            // SAFETY: as above. An ordered compare: false for NaN, as `<` is.
            unsafe {
                let below = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(self.0, _mm512_set1_ps(bound));
                V16(_mm512_mask_blend_ps(below, otherwise.0, then.0))
            }
        }
        #[inline(always)]
        fn flush_subnormal(self) -> Self {
            // The scalar version's steps. (`vfpclassps`, one instruction for the compare, made
            // the batch-128 forward pass about 3% slower on an AMD EPYC Zen 5.)
            self.abs()
                .where_below(f32::MIN_POSITIVE, V16::splat(0.0), self)
        }
    }

    /// See [`super::PackedRecurrent::step`].
    ///
    /// # Safety
    /// The CPU has AVX-512 F, and `io`'s rows hold `rows` rows of the widths `step` asserts,
    /// the written ones not overlapping the read ones.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    pub(super) unsafe fn step(
        packed: &PackedRecurrent,
        rows: usize,
        io: &StepRows,
        forget_bias: f32,
        alive: &[bool],
    ) {
        let (in_size, units) = (packed.in_size, packed.units);
        let panel = GATES * LANES;
        let mut parked: [Parked; 2] = [[[0.0; GATES * LANES]; TILE_ROWS]; 2];
        let parked = &mut parked;
        // Group by group, so that every row block reuses the group's weights (39 KB for 28
        // inputs and 128 units) from the L1 cache.
        for g in 0..units.div_ceil(LANES) {
            let group = Group {
                w_x: &packed.w_x[g * in_size * panel..(g + 1) * in_size * panel],
                w_h: &packed.w_h[g * units * panel..(g + 1) * units * panel],
                bias: &packed.bias[g * panel..(g + 1) * panel],
                unit: g * LANES,
                width: (units - g * LANES).min(LANES),
            };
            let mut first = 0;
            while first < rows {
                let block = (rows - first).min(TILE_ROWS);
                let alive = &alive[first..first + block];
                // SAFETY: rows first..first + block exist in every view.
                unsafe {
                    match block {
                        6 => tile::<6>(io, first, &group, forget_bias, alive, parked),
                        5 => tile::<5>(io, first, &group, forget_bias, alive, parked),
                        4 => tile::<4>(io, first, &group, forget_bias, alive, parked),
                        3 => tile::<3>(io, first, &group, forget_bias, alive, parked),
                        2 => tile::<2>(io, first, &group, forget_bias, alive, parked),
                        _ => tile::<1>(io, first, &group, forget_bias, alive, parked),
                    }
                }
                first += block;
            }
        }
    }

    /// A tile's sums, `[row][gate * LANES + lane]`.
    type Parked = [[f32; GATES * LANES]; TILE_ROWS];

    /// One group of [`LANES`] units: its packed weights and bias, and its `width` units from
    /// `unit`.
    struct Group<'a> {
        w_x: &'a [f32],
        w_h: &'a [f32],
        bias: &'a [f32],
        unit: usize,
        width: usize,
    }

    /// `out[r][q * LANES + u] = sum over kk of a[r][kk] * w[kk][q * LANES + u]` for the `ROWS`
    /// rows of `a` from `a0`, `stride` apart, and `w` `[inner, GATES * LANES]`: each lane a chain
    /// of fused multiply-adds in `kk` order from zero, as `gemm`'s microkernels sum.
    ///
    /// Not inlined: on its own, the loop keeps its 24 accumulators in registers; inlined beside
    /// the other product and the cell, the compiler rotated them through other registers at
    /// every step (38 register moves beside the 24 multiply-adds), and the loop ran at 186
    /// GFLOP/s instead of 229-233 (an AMD EPYC Zen 5 core's FMA peak is 255-266).
    ///
    /// # Safety
    /// AVX-512 F; `ROWS` rows of `w.len() / (GATES * LANES)` values from `a0`, `stride` apart.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    #[inline(never)]
    unsafe fn sums<const ROWS: usize>(a0: *const f32, stride: isize, w: &[f32], out: &mut Parked) {
        let zero = _mm512_setzero_ps();
        let mut acc = [[zero; GATES]; ROWS];
        let mut row_starts = [a0; ROWS];
        for (r, start) in row_starts.iter_mut().enumerate() {
            // SAFETY: the caller's rows.
            *start = unsafe { a0.offset(r as isize * stride) };
        }
        for (kk, w) in w.chunks_exact(GATES * LANES).enumerate() {
            let mut b = [zero; GATES];
            for (q, b) in b.iter_mut().enumerate() {
                // SAFETY: `w` holds GATES * LANES values.
                *b = unsafe { _mm512_loadu_ps(w.as_ptr().add(q * LANES)) };
            }
            for r in 0..ROWS {
                // SAFETY: kk lies in the row.
                let a = _mm512_set1_ps(unsafe { *row_starts[r].add(kk) });
                for q in 0..GATES {
                    acc[r][q] = _mm512_fmadd_ps(a, b[q], acc[r][q]);
                }
            }
        }
        for (row, acc) in out.iter_mut().zip(&acc) {
            for (q, &v) in acc.iter().enumerate() {
                // SAFETY: the row holds GATES * LANES values.
                unsafe { _mm512_storeu_ps(row.as_mut_ptr().add(q * LANES), v) };
            }
        }
    }

    /// The tile of rows `first..first + ROWS` and one group: `z = (bias + x @ W_x) +
    /// h_prev @ W_h` (as the `gemm` path adds them), then the cells of the live rows, in
    /// lockstep.
    ///
    /// # Safety
    /// AVX-512 F; the rows exist in every view of `io` and the group's units lie in the rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    #[inline]
    unsafe fn tile<const ROWS: usize>(
        io: &StepRows,
        first: usize,
        group: &Group<'_>,
        forget_bias: f32,
        alive: &[bool],
        parked: &mut [Parked; 2],
    ) {
        let unit = group.unit;
        let zero = _mm512_setzero_ps();
        let mut bias = [zero; GATES];
        for (q, b) in bias.iter_mut().enumerate() {
            // SAFETY: the packed bias holds GATES * LANES values.
            *b = unsafe { _mm512_loadu_ps(group.bias.as_ptr().add(q * LANES)) };
        }
        // The input projection's sums added to the bias, as the gemm path adds them (without
        // inputs gemm leaves the bias as it is).
        let [projected, recurrent] = parked;
        if group.w_x.is_empty() {
            for row in projected.iter_mut().take(ROWS) {
                for (q, &b) in bias.iter().enumerate() {
                    // SAFETY: the parked row holds GATES * LANES values.
                    unsafe { _mm512_storeu_ps(row.as_mut_ptr().add(q * LANES), b) };
                }
            }
        } else {
            // SAFETY: the rows exist; `x` has `w_x.len() / 64` columns.
            unsafe { sums::<ROWS>(io.x.at(first, 0), io.x.stride, group.w_x, projected) };
            for row in projected.iter_mut().take(ROWS) {
                for (q, &b) in bias.iter().enumerate() {
                    // SAFETY: as above.
                    unsafe {
                        let at = row.as_mut_ptr().add(q * LANES);
                        _mm512_storeu_ps(at, _mm512_add_ps(b, _mm512_loadu_ps(at)));
                    }
                }
            }
        }
        // SAFETY: the rows exist; `h_prev` has `units` columns.
        unsafe {
            sums::<ROWS>(
                io.h_prev.at(first, 0),
                io.h_prev.stride,
                group.w_h,
                recurrent,
            )
        };
        // Lanes past the group's width are neither read nor written.
        let mask: __mmask16 = if group.width == LANES {
            !0
        } else {
            (1u16 << group.width) - 1
        };
        for start in (0..ROWS).step_by(LOCKSTEP_ROWS) {
            let rows = (ROWS - start).min(LOCKSTEP_ROWS);
            let live = &alive[start..start + rows];
            let sums = [&projected[start..], &recurrent[start..]];
            // SAFETY: the rows exist; the group's units lie in them.
            unsafe { cells(io, first + start, live, sums, unit, mask, forget_bias) };
        }
    }

    /// Rows whose cells run in lockstep ([`Lockstep`]).
    const LOCKSTEP_ROWS: usize = 3;

    /// The cells of the rows `first..first + live.len()` (at most [`LOCKSTEP_ROWS`]) for the
    /// units `unit..` in `mask`, from their sums `[projected, recurrent]`; only the rows that are
    /// `live` are written.
    ///
    /// # Safety
    /// AVX-512 F; the rows exist in every view of `io` and the units in `mask` lie in them.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn cells(
        io: &StepRows,
        first: usize,
        live: &[bool],
        sums: [&[[f32; GATES * LANES]]; 2],
        unit: usize,
        mask: __mmask16,
        forget_bias: f32,
    ) {
        let zero = V16(_mm512_setzero_ps());
        let mut z = [Lockstep([zero; LOCKSTEP_ROWS]); GATES];
        let mut c_prev = Lockstep([zero; LOCKSTEP_ROWS]);
        let [projected, recurrent] = sums;
        for r in 0..live.len() {
            for (q, zq) in z.iter_mut().enumerate() {
                // As the gemm path: the recurrent sum added to the bias plus projection.
                // SAFETY: the parked rows hold GATES * LANES values.
                zq.0[r] = V16(unsafe {
                    _mm512_add_ps(
                        _mm512_loadu_ps(projected[r].as_ptr().add(q * LANES)),
                        _mm512_loadu_ps(recurrent[r].as_ptr().add(q * LANES)),
                    )
                });
            }
            // SAFETY: the group's columns lie in the row; masked lanes are not read.
            c_prev.0[r] =
                V16(unsafe { _mm512_maskz_loadu_ps(mask, io.c_prev.at(first + r, unit)) });
        }
        let [z_i, z_j, z_f, z_o] = z;
        let [c, h] = basic_cell_lanes(z_i, z_j, z_f, z_o, c_prev, forget_bias);
        for (r, &live) in live.iter().enumerate() {
            if !live {
                continue;
            }
            let row = first + r;
            // SAFETY: the group's columns of the row, in views of `units` columns; masked lanes
            // are not written.
            unsafe {
                _mm512_mask_storeu_ps(io.c_next.at(row, unit), mask, c.0[r].0);
                _mm512_mask_storeu_ps(io.h_next.at(row, unit), mask, h.0[r].0);
                _mm512_mask_storeu_ps(io.out.at(row, unit), mask, h.0[r].0);
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::kernels::math::{sigmoid, sigmoid_f32, tanh, tanh_f32};

        /// `f` on 16 lanes as one vector.
        fn on_vector(x: &[f32; LANES], f: impl Fn(V16) -> V16) -> [f32; LANES] {
            let mut out = [0.0; LANES];
            // SAFETY: the caller checked that the CPU has AVX-512.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), f(V16(_mm512_loadu_ps(x.as_ptr()))).0) };
            out
        }

        /// A function's name, its vector results and its scalar version.
        type Check = (&'static str, [f32; LANES], fn(f32) -> f32);

        fn same(got: f32, want: f32) -> bool {
            got.to_bits() == want.to_bits()
        }

        /// The vector lanes give the scalar bits for f32 values of every kind (a sweep of bit
        /// patterns: both signs, subnormals, zeros, infinities and NaNs).
        #[test]
        fn vector_lanes_give_the_scalar_bits() {
            if crate::math::isa() != crate::math::Isa::Avx512 {
                eprintln!(
                    "vector_lanes_give_the_scalar_bits: no AVX-512 here, the path never runs"
                );
                return;
            }
            let mut xs: Vec<f32> = (0..u32::MAX).step_by(65_537).map(f32::from_bits).collect();
            xs.extend([
                0.0,
                -0.0,
                1e-40,
                -1e-40,
                0.625,
                -0.625,
                87.4,
                -87.4,
                f32::INFINITY,
            ]);
            while !xs.len().is_multiple_of(LANES) {
                xs.push(f32::NEG_INFINITY);
            }
            for chunk in xs.chunks_exact(LANES) {
                let x: [f32; LANES] = chunk.try_into().unwrap();
                // In lockstep with two other vectors, as the tiles run them.
                let lockstep = |f: fn(Lockstep<V16, 3>) -> Lockstep<V16, 3>| {
                    on_vector(&x, |v| {
                        f(Lockstep([V16::splat(0.5), v, V16::splat(-3.0)])).0[1]
                    })
                };
                let checks: [Check; 5] = [
                    ("sigmoid", on_vector(&x, sigmoid), sigmoid_f32),
                    ("tanh", on_vector(&x, tanh), tanh_f32),
                    ("sigmoid in lockstep", lockstep(sigmoid), sigmoid_f32),
                    ("tanh in lockstep", lockstep(tanh), tanh_f32),
                    (
                        "flush",
                        on_vector(&x, V16::flush_subnormal),
                        crate::kernels::math::flush_subnormal,
                    ),
                ];
                for (name, got, scalar) in checks {
                    for (l, &v) in x.iter().enumerate() {
                        assert!(
                            same(got[l], scalar(v)),
                            "{name}({v:e}): {} against {}",
                            got[l],
                            scalar(v)
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::linalg::gemm;
    use crate::kernels::test_support::{bits, values};
    use ndarray::{s, Array2, Array3, Axis};

    fn array(shape: (usize, usize), seed: u32, scale: f32) -> Array2<f32> {
        Array2::from_shape_vec(shape, values(shape.0 * shape.1, seed, scale)).unwrap()
    }

    /// `[rows, 2, width]` values, read at slot 1: strided rows, as the kernel has them.
    fn slotted(rows: usize, width: usize, seed: u32, scale: f32) -> Array3<f32> {
        Array3::from_shape_vec((rows, 2, width), values(rows * 2 * width, seed, scale)).unwrap()
    }

    /// Whether the tiles can run here. Where they cannot (no AVX-512, or `RECURRENT_ISA` below
    /// it), the tests check instead that no shard is given them: the kernel keeps the `gemm`
    /// path, which the other kernel tests cover.
    fn avx512() -> bool {
        let here = crate::math::isa() == crate::math::Isa::Avx512;
        if !here {
            let w = Array2::<f32>::zeros((28, 4 * 128));
            let w_h = Array2::<f32>::zeros((128, 4 * 128));
            let bias = vec![0.0f32; 4 * 128];
            assert!(
                PackedRecurrent::for_shard(64, &w.view(), &w_h.view(), &bias).is_none(),
                "the tiles must not be chosen without AVX-512"
            );
            eprintln!("lstm_tiles: no AVX-512 path here; checked that no shard takes the tiles");
        }
        here
    }

    /// The tiles give the bits of the gemm path (the input projection added to the bias, the
    /// recurrent product added to that, then the gate loop), for row counts around the tile
    /// height, one or several groups, ragged groups, no inputs, the smallest and largest inner
    /// dimensions served (3, 512), and strided rows; rows that are not alive are left untouched.
    #[test]
    fn one_step_gives_the_bits_of_gemm_and_the_gate_loop() {
        if !avx512() {
            return;
        }
        for (rows, in_size, units) in [
            (5, 28, 128),
            (64, 28, 128),
            (13, 20, 37),
            (7, 0, 16),
            (6, 5, 8),
            (9, 300, 3),
            (6, 3, 3),
            (5, 512, 17),
        ] {
            let shape = format!("{rows} rows, {in_size} inputs, {units} units");
            let w_x = array((in_size, 4 * units), 1, 0.3);
            let w_h = array((units, 4 * units), 2, 0.3);
            let bias: Vec<f32> = values(4 * units, 3, 1.0);
            let x_all = slotted(rows, in_size, 4, 1.0);
            let h_all = slotted(rows, units, 5, 1.0);
            let c_all = slotted(rows, units, 6, 2.0);
            let (x, h_prev, c_prev) = (
                x_all.index_axis(Axis(1), 1),
                h_all.index_axis(Axis(1), 1),
                c_all.index_axis(Axis(1), 1),
            );
            let forget_bias = 1.0f32;
            let alive: Vec<bool> = (0..rows).map(|r| r % 5 != 3).collect();

            // The gemm path.
            let mut z = Array2::from_shape_fn((rows, 4 * units), |(_, j)| bias[j]);
            gemm(1.0, &x, &w_x.view(), 1.0, &mut z.view_mut());
            gemm(1.0, &h_prev, &w_h.view(), 1.0, &mut z.view_mut());
            let mut c_want = Array2::<f32>::zeros((rows, units));
            let (mut th_want, mut h_want) = (c_want.clone(), c_want.clone());
            for r in 0..rows {
                crate::kernels::lstm::step_row(
                    z.row_mut(r).as_slice_mut().unwrap(),
                    c_prev.row(r).to_slice().unwrap(),
                    c_want.row_mut(r).as_slice_mut().unwrap(),
                    th_want.row_mut(r).as_slice_mut().unwrap(),
                    h_want.row_mut(r).as_slice_mut().unwrap(),
                    forget_bias,
                );
            }

            let packed = PackedRecurrent::for_shard(rows, &w_x.view(), &w_h.view(), &bias)
                .unwrap_or_else(|| panic!("{shape} is served"));
            let untouched = f32::NAN;
            let mut next = Array3::from_elem((rows, 2, units), untouched);
            let (mut c_next, mut h_next) = next.view_mut().split_at(Axis(1), 1);
            let mut out = Array2::from_elem((rows, units), untouched);
            packed.step(
                StepViews {
                    x,
                    h_prev,
                    c_prev,
                    c_next: c_next.index_axis_mut(Axis(1), 0),
                    h_next: h_next.index_axis_mut(Axis(1), 0),
                    out: out.view_mut(),
                },
                forget_bias,
                &alive,
            );
            for (r, &live) in alive.iter().enumerate() {
                let written = [
                    (bits(out.row(r)), bits(h_want.row(r)), "out"),
                    (bits(next.slice(s![r, 0, ..])), bits(c_want.row(r)), "c"),
                    (bits(next.slice(s![r, 1, ..])), bits(h_want.row(r)), "h"),
                ];
                for (got, want, what) in written {
                    if live {
                        assert_eq!(got, want, "{what}, {shape}, row {r}");
                    } else {
                        assert!(
                            got.iter().all(|&b| f32::from_bits(b).is_nan()),
                            "{what} of a row past its length, {shape}"
                        );
                    }
                }
            }
        }
    }

    /// Where the tiles would not give `gemm`'s bits, or cannot run, the kernel keeps the `gemm`
    /// path: inner dimensions of 1 or 2 (`gemm` sums them elementwise, grouped otherwise; a
    /// review found 1716 of 16384 values different for 2 inputs), column-major weights, a few
    /// rows, elements other than `f32`.
    #[test]
    fn the_shards_the_tiles_would_not_match_keep_gemm() {
        if !avx512() {
            return;
        }
        let packs = |rows: usize, w_x: ArrayView2<'_, f32>, w_h: ArrayView2<'_, f32>| {
            let bias = vec![0.0; w_h.ncols()];
            PackedRecurrent::for_shard(rows, &w_x, &w_h, &bias).is_some()
        };
        let w = |k: usize, units: usize| Array2::<f32>::zeros((k, 4 * units));
        assert!(packs(5, w(3, 3).view(), w(3, 3).view()));
        assert!(packs(5, w(0, 3).view(), w(3, 3).view()));
        for (in_size, units) in [(1, 5), (2, 5), (5, 1), (5, 2), (2, 2), (513, 8), (8, 513)] {
            assert!(
                !packs(64, w(in_size, units).view(), w(units, units).view()),
                "{in_size} inputs, {units} units"
            );
        }
        assert!(!packs(SMALL_ROWS, w(28, 8).view(), w(8, 8).view()));
        let column_major = Array2::<f32>::zeros((32, 8));
        assert!(!packs(64, column_major.t(), w(8, 8).view()));
        assert!(!packs(64, w(8, 8).view(), column_major.t()));
        let w64 = Array2::<f64>::zeros((8, 32));
        assert!(PackedRecurrent::for_shard(64, &w64.view(), &w64.view(), &[0.0; 32]).is_none());
    }
}
