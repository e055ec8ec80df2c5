//! Matrix products for the kernels, through the `gemm` crate.

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::Scalar;

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
