//! Matrix products for the kernels, through the `gemm` crate, and a row-times-matrix kernel
//! of our own for products of one to [`SMALL_ROWS`] rows (inference on one sequence).

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::kernels::math::isa_dispatch;
use crate::Scalar;

/// Products with at most this many rows in `a` (and a row-major `b` and `c`) go through
/// [`row_times_matrix`]: at one row the `gemm` crate's path took 80% of an LSTM(128)'s batch-1
/// forward pass, about twice the time of reading `b` once from the L2 cache.
pub(crate) const SMALL_ROWS: usize = 4;

/// Columns of `c` accumulated in registers at once by [`row_times_matrix`].
const COLUMN_BLOCK: usize = 256;

/// `c = alpha * a @ b + beta * c` (BLAS's convention) for views of any strides.
///
/// # Panics
/// If the shapes do not fit (`a` `[m, k]`, `b` `[k, n]`, `c` `[m, n]`): callers check shapes
/// before reaching a kernel.
pub(crate) fn gemm<T: Scalar>(
    alpha: T,
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    beta: T,
    c: &mut ArrayViewMut2<'_, T>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(b.nrows(), k, "gemm: inner dimensions differ");
    assert_eq!(c.dim(), (m, n), "gemm: output shape");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.mapv_inplace(|v| v * beta);
        return;
    }
    if m <= SMALL_ROWS && a.strides()[1] == 1 && c.strides()[1] == 1 {
        if let Some(b) = b.as_slice() {
            for (a_row, mut c_row) in a.rows().into_iter().zip(c.rows_mut()) {
                let a_row = a_row.to_slice().expect("unit stride");
                let c_row = c_row.as_slice_mut().expect("unit stride");
                row_times_matrix(alpha, a_row, b, beta, c_row);
            }
            return;
        }
    }
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the pointers and strides describe the three views exactly (shapes checked above);
    // `c` is a unique borrow, so it aliases neither `a` nor `b`. The `gemm` crate computes
    // `dst = alpha * dst + beta * lhs @ rhs`, hence the swapped scale factors, and reads `dst`
    // only when told to.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            beta != T::zero(),
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// A row-major `[k, n]` right-hand side laid out for [`small_rows_times_packed`]: its blocks of
/// [`COLUMN_BLOCK`] columns one after the other, each `[k, width]` row-major.
///
/// [`row_times_matrix`] reads the row-major matrix one half-row of 1 KB at a time, 2 KB apart,
/// which the prefetchers follow badly: on an AMD EPYC Zen 5, a `[128, 512]` product of one row ran
/// at 123 GB/s from the L2 cache in that layout and at 192 GB/s (1.37 instead of 2.13 us) with
/// each block contiguous. An LSTM's inference on one sequence reuses its `W_h` at every step, so
/// it packs it once per sequence.
pub(crate) struct PackedColumns<T: Scalar> {
    data: Vec<T>,
    k: usize,
    n: usize,
}

impl<T: Scalar> PackedColumns<T> {
    /// Packs `b` `[k, n]` (any strides), in a buffer from the kernels' pool.
    pub(crate) fn new(b: &ArrayView2<'_, T>) -> Self {
        let (k, n) = b.dim();
        let mut data = crate::kernels::workspace::take(k * n);
        let standard = b.as_slice();
        let mut next = 0;
        let mut start = 0;
        while start < n {
            let width = COLUMN_BLOCK.min(n - start);
            for (r, row) in b.rows().into_iter().enumerate() {
                let out = &mut data[next..next + width];
                match standard {
                    Some(all) => out.copy_from_slice(&all[r * n + start..r * n + start + width]),
                    None => out
                        .iter_mut()
                        .zip(row.iter().skip(start))
                        .for_each(|(o, &v)| *o = v),
                }
                next += width;
            }
            start += width;
        }
        PackedColumns { data, k, n }
    }
}

impl<T: Scalar> Drop for PackedColumns<T> {
    fn drop(&mut self) {
        crate::kernels::workspace::recycle(std::mem::take(&mut self.data));
    }
}

/// `c = alpha * a @ b + beta * c` for `a` `[m, k]` with `m` at most [`SMALL_ROWS`] and `b`
/// packed: the same sums in the same order as [`gemm`]'s small-row path (so the same bits).
///
/// # Panics
/// If the shapes do not fit or a row of `a` or `c` is not contiguous.
pub(crate) fn small_rows_times_packed<T: Scalar>(
    alpha: T,
    a: &ArrayView2<'_, T>,
    b: &PackedColumns<T>,
    beta: T,
    c: &mut ArrayViewMut2<'_, T>,
) {
    assert_eq!(
        (a.ncols(), c.ncols()),
        (b.k, b.n),
        "small_rows_times_packed: shapes"
    );
    assert_eq!(a.nrows(), c.nrows(), "small_rows_times_packed: rows");
    if b.k == 0 {
        // As `gemm` does: nothing to sum, `c` scaled.
        c.mapv_inplace(|v| v * beta);
        return;
    }
    for (a_row, mut c_row) in a.rows().into_iter().zip(c.rows_mut()) {
        let a_row = a_row.to_slice().expect("contiguous rows");
        let c_row = c_row.as_slice_mut().expect("contiguous rows");
        row_times_matrix_in(alpha, a_row, &b.data, true, beta, c_row);
    }
}

/// [`row_times_matrix_in`] on a row-major `b`.
fn row_times_matrix<T: Scalar>(alpha: T, a: &[T], b: &[T], beta: T, c: &mut [T]) {
    row_times_matrix_in(alpha, a, b, false, beta, c)
}

isa_dispatch! {
    /// `c = alpha * a @ b + beta * c` for one row `a` `[k]` and `b` `[k, n]` given as its
    /// `k * n` elements, row-major or (`packed`) as [`PackedColumns`] lays them out: blocks of
    /// [`COLUMN_BLOCK`] columns of `c` are summed in registers over `k`, in order, so `b` is read
    /// once. `c` is not read when `beta` is zero.
    fn row_times_matrix_in / row_times_matrix_in_on<T>(
        alpha: T,
        a: &[T],
        b: &[T],
        packed: bool,
        beta: T,
        c: &mut [T],
    ) {
        let n = c.len();
        let k = a.len();
        let mut start = 0;
        while start < n {
            let width = COLUMN_BLOCK.min(n - start);
            // Where the block's first row starts, and the distance between its rows.
            let (base, stride) = if packed { (start * k, width) } else { (start, n) };
            let mut acc = [T::zero(); COLUMN_BLOCK];
            if width == COLUMN_BLOCK {
                for (r, &v) in a.iter().enumerate() {
                    let s = alpha * v;
                    let row = &b[base + r * stride..base + r * stride + COLUMN_BLOCK];
                    for j in 0..COLUMN_BLOCK {
                        acc[j] += s * row[j];
                    }
                }
            } else {
                for (r, &v) in a.iter().enumerate() {
                    let s = alpha * v;
                    let row = &b[base + r * stride..base + r * stride + width];
                    for j in 0..width {
                        acc[j] += s * row[j];
                    }
                }
            }
            let out = &mut c[start..start + width];
            if beta == T::zero() {
                out.copy_from_slice(&acc[..width]);
            } else {
                for (o, &v) in out.iter_mut().zip(&acc[..width]) {
                    *o = beta * *o + v;
                }
            }
            start += width;
        }
    }
}

/// `a @ b` as a new standard-layout array.
pub(crate) fn matmul<T: Scalar>(
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
) -> ndarray::Array2<T> {
    let mut c = ndarray::Array2::zeros((a.nrows(), b.ncols()));
    gemm(T::one(), a, b, T::zero(), &mut c.view_mut());
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::{assert_same_bits_on_every_isa, bits};
    use ndarray::{s, Array2};

    fn filled(rows: usize, cols: usize, seed: usize) -> Array2<f64> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            (((i * 31 + j * 17 + seed) % 23) as f64 - 11.0) / 7.0
        })
    }

    #[test]
    fn agrees_with_ndarray_for_strided_transposed_and_accumulating_views() {
        for (m, k, n) in [(1, 1, 1), (3, 5, 2), (17, 33, 9), (64, 128, 40)] {
            let a = filled(m, k, 1);
            let b = filled(k, n, 2);
            let expected = a.dot(&b);
            assert!((&matmul(&a.view(), &b.view()) - &expected)
                .iter()
                .all(|v| v.abs() < 1e-12));
            // Transposed operands (column-major views).
            let at = filled(k, m, 3);
            let bt = filled(n, k, 4);
            let expected_t = at.t().dot(&bt.t());
            assert!((&matmul(&at.t(), &bt.t()) - &expected_t)
                .iter()
                .all(|v| v.abs() < 1e-12));
            // Strided output and accumulation: c = 2 a b + 0.5 c.
            let mut big = filled(2 * m, n + 3, 5);
            let before = big.slice(s![..;2, 1..n + 1]).to_owned();
            gemm(
                2.0,
                &a.view(),
                &b.view(),
                0.5,
                &mut big.slice_mut(s![..;2, 1..n + 1]),
            );
            let want = &expected * 2.0 + &before * 0.5;
            assert!((&big.slice(s![..;2, 1..n + 1]) - &want)
                .iter()
                .all(|v| v.abs() < 1e-12));
        }
    }

    #[test]
    fn small_row_counts_agree_with_ndarray_on_every_instruction_set() {
        for (m, k, n) in [
            (1, 1, 1),
            (1, 130, 70),
            (3, 17, 64),
            (4, 128, 512),
            (2, 5, 129),
        ] {
            let a = filled(m, k, 6);
            let b = filled(k, n, 7);
            let before = filled(m, n, 8);
            let want = a.dot(&b) * 2.0 + &before * 0.5;
            let mut c = before.clone();
            gemm(2.0, &a.view(), &b.view(), 0.5, &mut c.view_mut());
            assert!((&c - &want).iter().all(|v| v.abs() < 1e-12), "{m}x{k}x{n}");
            // beta = 0 never reads c.
            let mut c = Array2::from_elem((m, n), f64::NAN);
            gemm(1.0, &a.view(), &b.view(), 0.0, &mut c.view_mut());
            assert!((&c - &a.dot(&b)).iter().all(|v| v.abs() < 1e-12));
            let af = a.mapv(|v| v as f32);
            let bf = b.mapv(|v| v as f32);
            assert_same_bits_on_every_isa(|isa| {
                let mut c = vec![0.0f32; n];
                let (a0, b0) = (af.row(0).to_vec(), bf.as_slice().unwrap());
                row_times_matrix_in_on(isa, 1.0, &a0, b0, false, 0.0, &mut c);
                vec![c]
            });
        }
    }

    /// The packed layout gives the bits of the row-major small-row path, for block-sized,
    /// ragged and transposed (non-standard) right-hand sides, with and without `beta`.
    #[test]
    fn packed_columns_give_the_small_row_bits() {
        for (m, k, n) in [
            (1, 128, 512),
            (4, 28, 300),
            (2, 7, 256),
            (1, 3, 1),
            (3, 130, 70),
        ] {
            let a = filled(m, k, 3).mapv(|v| v as f32);
            let b = filled(k, n, 4).mapv(|v| v as f32);
            let before = filled(m, n, 5).mapv(|v| v as f32);
            let b_t = b.t().to_owned();
            for b_view in [b.view(), b_t.t()] {
                for beta in [0.0f32, 1.0, 0.5] {
                    let mut want = before.clone();
                    gemm(1.5, &a.view(), &b.view(), beta, &mut want.view_mut());
                    let mut got = before.clone();
                    let packed = PackedColumns::new(&b_view);
                    small_rows_times_packed(1.5, &a.view(), &packed, beta, &mut got.view_mut());
                    assert_eq!(bits(&got), bits(&want), "{m}x{k}x{n}, beta {beta}");
                }
            }
        }
    }

    #[test]
    fn f32_and_empty_inner_dimension() {
        let a = Array2::<f32>::from_elem((2, 3), 0.5);
        let b = Array2::<f32>::from_elem((3, 4), 2.0);
        assert!(matmul(&a.view(), &b.view())
            .iter()
            .all(|&v| (v - 3.0).abs() < 1e-6));
        let a0 = Array2::<f32>::zeros((2, 0));
        let b0 = Array2::<f32>::zeros((0, 4));
        let mut c = Array2::<f32>::from_elem((2, 4), 1.0);
        gemm(1.0, &a0.view(), &b0.view(), 0.5, &mut c.view_mut());
        assert!(c.iter().all(|&v| v == 0.5));
    }
}
