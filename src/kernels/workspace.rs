//! Reusable scratch buffers for the fused kernels.
//!
//! A training step allocates the same large buffers every time (an LSTM(256) over 28 steps of a
//! batch of 128 keeps 15 MB of gates). Fresh allocations of that size come from the operating
//! system as untouched pages, and the page faults cost a third of a forward pass. The kernels
//! therefore take their buffers from a small per-thread pool and give them back when the tape
//! that holds them is dropped, so from the second step on no page is faulted in.

use std::cell::RefCell;

use crate::Scalar;

/// The most buffers a thread keeps (a statically unrolled bidirectional LSTM holds four per step
/// and direction); beyond this, returned buffers are freed.
const MAX_POOLED: usize = 512;

/// The most elements a thread's pool holds in all (64 MiB of `f32`). When a returned buffer
/// would exceed it, the largest pooled buffers are freed first, so the big buffers of an
/// occasional large evaluation batch do not stay resident through training.
const MAX_POOLED_ELEMENTS: usize = 16 << 20;

thread_local! {
    static POOL_F32: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static POOL_F64: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's pool of `f32` buffers.
pub(crate) fn with_pool_f32<R>(f: impl FnOnce(&mut Vec<Vec<f32>>) -> R) -> R {
    POOL_F32.with(|p| f(&mut p.borrow_mut()))
}

/// Runs `f` on this thread's pool of `f64` buffers.
pub(crate) fn with_pool_f64<R>(f: impl FnOnce(&mut Vec<Vec<f64>>) -> R) -> R {
    POOL_F64.with(|p| f(&mut p.borrow_mut()))
}

/// A buffer of `len` elements, reusing a pooled allocation when one fits, holding whatever
/// values it last held (zeros when freshly allocated): for callers that write every element
/// they later read.
pub(crate) fn take<T: Scalar>(len: usize) -> Vec<T> {
    let reused = T::with_pool(|pool| {
        // The smallest buffer that fits, so large ones stay available for large requests.
        // Never a buffer more than four times too big: it would keep its whole size resident.
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len && b.capacity() / 4 <= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        best.map(|i| pool.swap_remove(i))
    });
    match reused {
        Some(mut buffer) => {
            buffer.truncate(len);
            buffer.resize(len, T::zero());
            buffer
        }
        None => vec![T::zero(); len],
    }
}

/// Returns a buffer to this thread's pool.
pub(crate) fn recycle<T: Scalar>(buffer: Vec<T>) {
    if buffer.capacity() == 0 {
        return;
    }
    if buffer.capacity() > MAX_POOLED_ELEMENTS {
        return;
    }
    T::with_pool(|pool| {
        let mut held: usize = pool.iter().map(Vec::capacity).sum();
        while held + buffer.capacity() > MAX_POOLED_ELEMENTS || pool.len() >= MAX_POOLED {
            let largest = pool
                .iter()
                .enumerate()
                .max_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i)
                .expect("a non-empty pool while over the limit");
            held -= pool.swap_remove(largest).capacity();
        }
        pool.push(buffer);
    });
}

/// An array of the given shape from the pool whose elements are unspecified (stale values from
/// an earlier use, or zeros): only for buffers whose every element is written before it is read.
pub(crate) fn scratch<T: Scalar, Sh>(shape: Sh) -> ndarray::Array<T, Sh::Dim>
where
    Sh: ndarray::ShapeBuilder,
{
    let shape = shape.into_shape_with_order();
    let len = ndarray::Dimension::size(shape.raw_dim());
    ndarray::Array::from_shape_vec(shape, take(len)).expect("length matches the shape")
}

/// Gives an array's allocation back to the pool.
pub(crate) fn recycle_array<T: Scalar, D: ndarray::Dimension>(array: ndarray::Array<T, D>) {
    let (buffer, _) = array.into_raw_vec_and_offset();
    recycle(buffer);
}
