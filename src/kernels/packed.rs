//! The recurrent product of the fused sequence kernels, with its right operand packed once per
//! sequence.
//!
//! At every time step an LSTM multiplies its state by the same weight matrix: `h_{t-1} @ W_h`
//! forward and `dz_t @ W_h^T` backward, `[rows, k] @ [k, n]` with `rows` a shard of at most 64
//! examples. The `gemm` crate packs its operands again at each call. [`RhsPanels`] packs `W`
//! once (per forward or backward pass) into panels of 32 columns, `k` rows each, zero-padded;
//! then each step's product is a hand-written AVX-512 kernel over tiles of up to 8 rows by 32
//! columns (16 accumulator registers), which reads the left operand in place (any row stride).
//!
//! Only `f32` on a CPU whose kernels take the AVX-512 path ([`crate::math::isa`]) and shards
//! of more than [`SMALL_ROWS`] rows use it; everything else goes through [`gemm`] as before
//! (so `f64` gradient checks, the AVX2 and portable paths and the batch-1 inference latency are
//! unchanged). Each element of the result is the sum over `k` in order, then added to `c`: the
//! result depends on the shard's own rows only, never on the thread count.

use std::any::TypeId;

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::kernels::linalg::{gemm, SMALL_ROWS};
use crate::Scalar;

/// Columns per packed panel: two AVX-512 registers of `f32`.
const PANEL: usize = 32;

/// A right operand `b` `[k, n]` ready for repeated products `c (+)= a @ b`.
pub(crate) struct RhsPanels<T> {
    k: usize,
    n: usize,
    /// `b` in panels of [`PANEL`] columns (`panel, k, PANEL`), when the packed kernel is used.
    packed: Option<Vec<f32>>,
    /// `b` in standard layout, for [`gemm`] otherwise.
    plain: Array2<T>,
}

impl<T: Scalar> RhsPanels<T> {
    /// Prepares `b` (any strides) for products whose left operands have `rows` rows: packed
    /// for the AVX-512 kernel when it applies, else copied in standard layout (the products
    /// run about twice as fast on a row-major right operand as on a transposed view;
    /// benches/README.md).
    pub(crate) fn new(b: ArrayView2<'_, T>, rows: usize) -> Self {
        let (k, n) = b.dim();
        if use_packed::<T>(rows, k, n) {
            let panels = n.div_ceil(PANEL);
            let mut packed = vec![0.0f32; panels * k * PANEL];
            for (kk, row) in b.rows().into_iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    let (p, col) = (j / PANEL, j % PANEL);
                    packed[(p * k + kk) * PANEL + col] = as_f32(*v);
                }
            }
            RhsPanels {
                k,
                n,
                packed: Some(packed),
                plain: Array2::zeros((0, 0)),
            }
        } else {
            RhsPanels {
                k,
                n,
                packed: None,
                plain: b.as_standard_layout().into_owned(),
            }
        }
    }

    /// `c = a @ b + c` when `accumulate`, else `c = a @ b`, for `a` `[m, k]` and `c` `[m, n]`.
    ///
    /// # Panics
    /// If the shapes do not fit (callers check shapes before reaching a kernel).
    pub(crate) fn product(
        &self,
        a: &ArrayView2<'_, T>,
        accumulate: bool,
        c: &mut ArrayViewMut2<'_, T>,
    ) {
        let (m, k) = a.dim();
        assert_eq!(k, self.k, "recurrent product: inner dimensions differ");
        assert_eq!(c.dim(), (m, self.n), "recurrent product: output shape");
        let beta = if accumulate { T::one() } else { T::zero() };
        match &self.packed {
            #[cfg(target_arch = "x86_64")]
            Some(packed)
                if m > 0 && k > 0 && a.strides()[1] == 1 && c.strides()[1] == 1 && {
                    // Rows are never at negative strides here; checked to keep the pointer
                    // arithmetic below sound.
                    a.strides()[0] >= 0 && c.strides()[0] >= 0
                } =>
            {
                let (lda, ldc) = (a.strides()[0] as usize, c.strides()[0] as usize);
                // SAFETY: `packed` exists only when `T` is `f32` and the CPU has AVX-512 F
                // (`use_packed`); the pointers and strides describe `a` `[m, k]` and `c`
                // `[m, n]` exactly, with unit column strides (checked), and `c` is a unique
                // borrow, so it aliases neither `a` nor the panels.
                unsafe {
                    avx512::product(
                        m,
                        k,
                        self.n,
                        a.as_ptr().cast::<f32>(),
                        lda,
                        packed,
                        c.as_mut_ptr().cast::<f32>(),
                        ldc,
                        accumulate,
                    );
                }
            }
            Some(_) => {
                // Only reachable for odd strides (not produced by the kernels): unpack.
                let b = self.unpacked();
                gemm(T::one(), a, &b.view(), beta, c);
            }
            None => gemm(T::one(), a, &self.plain.view(), beta, c),
        }
    }

    /// `b` back in standard layout (for the rare fallback of [`RhsPanels::product`]).
    fn unpacked(&self) -> Array2<T> {
        let packed = self.packed.as_ref().expect("packed");
        Array2::from_shape_fn((self.k, self.n), |(kk, j)| {
            let v = packed[((j / PANEL) * self.k + kk) * PANEL + j % PANEL];
            T::from_f64_lossy(f64::from(v))
        })
    }
}

/// Whether products of `rows` rows with a `[k, n]` operand of type `T` take the packed kernel.
fn use_packed<T: Scalar>(rows: usize, k: usize, n: usize) -> bool {
    cfg!(target_arch = "x86_64")
        && TypeId::of::<T>() == TypeId::of::<f32>()
        && crate::math::isa() == crate::math::Isa::Avx512
        && rows > SMALL_ROWS
        && k > 0
        && n > 0
}

/// `v` as `f32` when `T` is `f32` (the only case [`RhsPanels::new`] packs).
fn as_f32<T: Scalar>(v: T) -> f32 {
    v.to_f64_lossless() as f32
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, __mmask16, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps,
        _mm512_maskz_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
    };

    use super::PANEL;

    /// Rows per tile.
    const MR: usize = 8;

    /// `c (+)= a @ b` with `b` in panels (see [`super::RhsPanels`]): panels outer (one panel,
    /// `k * 32` floats, stays in the L1 cache across the row tiles), tiles of [`MR`] rows
    /// inner.
    ///
    /// # Safety
    /// The CPU has AVX-512 F; `a` points at `m` rows of `k` floats `lda` apart, `c` at `m` rows
    /// of `n` floats `ldc` apart, `packed` holds `n.div_ceil(32) * k * 32` floats, and `c`
    /// overlaps neither.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn product(
        m: usize,
        k: usize,
        n: usize,
        a: *const f32,
        lda: usize,
        packed: &[f32],
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        debug_assert!(packed.len() >= n.div_ceil(PANEL) * k * PANEL);
        for p in 0..n.div_ceil(PANEL) {
            let width = (n - p * PANEL).min(PANEL);
            let masks = (
                lane_mask(width.min(16)),
                lane_mask(width.saturating_sub(16)),
            );
            let panel = packed.as_ptr().add(p * k * PANEL);
            let c_panel = c.add(p * PANEL);
            let mut row = 0;
            while row < m {
                let (a_tile, c_tile) = (a.add(row * lda), c_panel.add(row * ldc));
                let args = (a_tile, lda, panel, k, c_tile, ldc, masks, accumulate);
                match (m - row).min(MR) {
                    8 => tile::<8>(args),
                    7 => tile::<7>(args),
                    6 => tile::<6>(args),
                    5 => tile::<5>(args),
                    4 => tile::<4>(args),
                    3 => tile::<3>(args),
                    2 => tile::<2>(args),
                    _ => tile::<1>(args),
                }
                row += MR;
            }
        }
    }

    /// The first `lanes` (at most 16) lanes of a register.
    fn lane_mask(lanes: usize) -> __mmask16 {
        ((1u32 << lanes) - 1) as __mmask16
    }

    type TileArgs = (
        *const f32,
        usize,
        *const f32,
        usize,
        *mut f32,
        usize,
        (__mmask16, __mmask16),
        bool,
    );

    /// One tile of `R` rows by one panel: 2 `R` accumulators summed over `k` in order, then
    /// added to `c` (when accumulating) and stored through the panel's lane masks.
    ///
    /// # Safety
    /// As [`product`], for the tile's rows and panel.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize>((a, lda, panel, k, c, ldc, (m0, m1), accumulate): TileArgs) {
        let mut acc: [[__m512; 2]; R] = [[_mm512_setzero_ps(); 2]; R];
        for kk in 0..k {
            let b0 = _mm512_loadu_ps(panel.add(kk * PANEL));
            let b1 = _mm512_loadu_ps(panel.add(kk * PANEL + 16));
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r * lda + kk));
                acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let out = c.add(r * ldc);
            let (mut v0, mut v1) = (acc[0], acc[1]);
            if accumulate {
                v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, out), v0);
                v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, out.add(16)), v1);
            }
            _mm512_mask_storeu_ps(out, m0, v0);
            _mm512_mask_storeu_ps(out.add(16), m1, v1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};

    fn filled(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            (((i * 31 + j * 17 + seed * 7) % 23) as f32 - 11.0) / 7.0
        })
    }

    /// The product against an `f64` reference, for shapes with partial tiles and panels,
    /// strided operands, a transposed right operand, with and without accumulation; on this
    /// CPU's path (packed with AVX-512, else `gemm`).
    #[test]
    fn agrees_with_a_plain_product_at_awkward_shapes() {
        for (m, k, n) in [
            (5, 1, 1),
            (9, 7, 17),
            (13, 33, 32),
            (64, 128, 512),
            (21, 512, 128),
            (8, 16, 100),
            (17, 3, 33),
        ] {
            let a_big = filled(2 * m, k + 5, 1);
            let a = a_big.slice(s![..;2, 2..k + 2]);
            for transposed in [false, true] {
                let b_owned = if transposed {
                    filled(n, k, 2)
                } else {
                    filled(k, n, 2)
                };
                let b = if transposed {
                    b_owned.t()
                } else {
                    b_owned.view()
                };
                let panels = RhsPanels::new(b, m);
                let want = a.mapv(f64::from).dot(&b.mapv(f64::from));
                for accumulate in [false, true] {
                    let mut c_big = filled(3 * m, n + 4, 3);
                    let before = c_big.slice(s![..;3, 1..n + 1]).mapv(f64::from);
                    panels.product(&a, accumulate, &mut c_big.slice_mut(s![..;3, 1..n + 1]));
                    let want = if accumulate {
                        &want + &before
                    } else {
                        want.clone()
                    };
                    let got = c_big.slice(s![..;3, 1..n + 1]).mapv(f64::from);
                    let err = (&got - &want).iter().fold(0.0f64, |e, v| e.max(v.abs()));
                    assert!(
                        err < 1e-3,
                        "{m}x{k}x{n} t={transposed} acc={accumulate}: {err}"
                    );
                    // The columns beside the output are untouched (masked stores).
                    assert_eq!(c_big[[0, 0]], filled(3 * m, n + 4, 3)[[0, 0]]);
                    assert_eq!(c_big[[0, n + 1]], filled(3 * m, n + 4, 3)[[0, n + 1]]);
                }
            }
        }
    }

    /// Each row's result depends on that row alone: a shard of rows gives the same bits as
    /// the same rows inside a larger product (what keeps results independent of the thread
    /// count).
    #[test]
    fn rows_do_not_depend_on_their_neighbours() {
        let (k, n) = (128, 512);
        let a = filled(64, k, 4);
        let panels = RhsPanels::new(filled(k, n, 5).view(), 64);
        let mut whole = Array2::<f32>::zeros((64, n));
        panels.product(&a.view(), false, &mut whole.view_mut());
        let mut part = Array2::<f32>::zeros((27, n));
        panels.product(&a.slice(s![13..40, ..]), false, &mut part.view_mut());
        assert_eq!(part, whole.slice(s![13..40, ..]));
    }

    /// `f64` never packs (gradient checks keep the `gemm` path), and small row counts do not
    /// either (batch-1 inference keeps its row kernel).
    #[test]
    fn only_f32_shards_of_several_rows_pack() {
        assert!(!use_packed::<f64>(64, 128, 512));
        assert!(!use_packed::<f32>(SMALL_ROWS, 128, 512));
        assert_eq!(
            use_packed::<f32>(64, 128, 512),
            cfg!(target_arch = "x86_64") && crate::math::isa() == crate::math::Isa::Avx512
        );
    }
}
