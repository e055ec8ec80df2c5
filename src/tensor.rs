//! Plain `ndarray` helpers with TensorFlow semantics.
//!
//! These functions work on any `ndarray` array (owned or view, any dimension type) and always
//! return owned arrays in standard (row-major, contiguous) layout. They are the single place
//! where the semantics of TensorFlow's shape-manipulating ops live: the differentiable versions
//! on the tape are built on them. They are also handy on their own for preparing data.
//!
//! | TensorFlow 1.x                              | `recurrent`                                   |
//! |---------------------------------------------|-----------------------------------------------|
//! | `tf.unstack(x, axis=a)`                     | [`unstack(&x, a)`](unstack)                   |
//! | `tf.stack(xs, axis=a)`                      | [`stack(&xs, a)`](stack)                      |
//! | `tf.concat(xs, axis=a)`                     | [`concat(&xs, a)`](fn@concat)                    |
//! | `tf.transpose(x, perm)`                     | [`transpose(&x, &perm)`](transpose)           |
//! | `tf.split(x, num_or_size_splits, axis=a)`   | [`split(&x, num_or_sizes, a)`](split)         |
//! | `tf.reverse_sequence(x, lengths, s, b)`     | [`reverse_sequence(&x, &lengths, s, b)`](reverse_sequence) |
//! | `tf.one_hot(labels, depth)`                 | [`one_hot(&labels, depth)`](one_hot)          |
//! | `tf.argmax(x, axis=-1)`                     | [`argmax(&x)`](argmax)                        |
//! | `tf.sequence_mask(lengths, maxlen)`         | [`sequence_mask(&lengths, maxlen)`](sequence_mask) |
//!
//! Axes are non-negative (`usize`); TensorFlow's negative axes are not supported.
//!
//! # Errors
//!
//! No function here panics on user input. They return
//! - [`Error::InvalidArgument`] for an argument that is wrong in
//!   itself or for the input's rank: an axis out of range, a `perm` that is not a permutation,
//!   `num == 0` or empty sizes in [`split`], an empty list for [`stack`]/[`concat`](fn@concat),
//!   `seq_axis == batch_axis` or a length longer than the sequence in [`reverse_sequence`], a label
//!   `>= depth` in [`one_hot`], a scalar in [`argmax`], a length above `maxlen` in
//!   [`sequence_mask`];
//! - [`Error::Shape`] when sizes of dimensions do not fit together: arrays of
//!   different shapes in [`stack`]/[`concat`](fn@concat), split sizes that do not add up to (or a `num` that
//!   does not divide) the dimension, a `lengths` vector whose size is not the batch dimension, an
//!   empty last axis in [`argmax`].

use std::borrow::Cow;

use ndarray::{Array2, ArrayBase, ArrayD, Axis, Data, Dimension, IxDyn, Slice};

use crate::error::{Error, Result};
use crate::scalar::Scalar;

// ---------------------------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------------------------

/// An owned, standard-layout, dynamic-dimensional copy of `x`.
fn to_standard<A: Clone, S: Data<Elem = A>, D: Dimension>(x: &ArrayBase<S, D>) -> ArrayD<A> {
    x.as_standard_layout().into_owned().into_dyn()
}

/// The elements of `x` in logical (row-major) order, borrowed when `x` is already contiguous.
fn row_major<A: Clone, S: Data<Elem = A>, D: Dimension>(x: &ArrayBase<S, D>) -> Cow<'_, [A]> {
    match x.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(x.iter().cloned().collect()),
    }
}

/// Builds an array from a row-major buffer whose length is known to match `shape`.
fn from_row_major<A>(op: &'static str, shape: &[usize], data: Vec<A>) -> Result<ArrayD<A>> {
    let len = data.len();
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|_| {
        Error::shape(
            op,
            format!("{len} elements (internal error: buffer does not fit shape)"),
            shape,
        )
    })
}

/// The number of elements of an array of `shape`, if ndarray can hold one: the product of the
/// non-zero lengths must fit in `isize` (ndarray panics otherwise), and so must the count.
pub(crate) fn element_count(op: &'static str, shape: &[usize]) -> Result<usize> {
    let nonzero = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= isize::MAX as usize);
    match nonzero {
        Some(_) if shape.contains(&0) => Ok(0),
        Some(n) => Ok(n),
        None => Err(Error::shape(op, "a shape whose size fits in isize", shape)),
    }
}

/// An empty vector with room for the `element_count(shape)` elements of an array of `shape`:
/// the count is checked (no overflow) and the memory reserved fallibly, so an absurd size is an
/// [`Error::Shape`] naming `op`, not a capacity panic or an allocation abort.
pub(crate) fn try_vec<A>(op: &'static str, shape: &[usize]) -> Result<Vec<A>> {
    let n = element_count(op, shape)?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        let bytes = (n as u128) * (std::mem::size_of::<A>() as u128);
        Error::shape(
            op,
            format!(
                "a shape that fits in memory ({n} elements, {bytes} bytes could not be allocated)"
            ),
            shape,
        )
    })?;
    Ok(v)
}

/// An array of `shape` with every element `value`, allocated as [`try_vec`] does.
pub(crate) fn try_full<A: Clone>(op: &'static str, shape: &[usize], value: A) -> Result<ArrayD<A>> {
    let mut v = try_vec(op, shape)?;
    v.resize(element_count(op, shape)?, value);
    from_row_major(op, shape, v)
}

fn check_axis(op: &'static str, axis: usize, ndim: usize, what: &str) -> Result<()> {
    if axis < ndim {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{op}: {what} {axis} is out of range for an array of rank {ndim} (valid: 0..{ndim})"
        )))
    }
}

/// Interleaves blocks: for each of `outer` rows, appends block `o` of every part in turn.
///
/// Part `i` is a row-major buffer of `outer * blocks[i]` elements. This is the memory pattern of
/// both `concat` (a block is `dim_i * inner`) and `stack` (a block is the whole inner shape).
fn interleave<A: Clone>(
    op: &'static str,
    parts: &[Cow<'_, [A]>],
    blocks: &[usize],
    outer: usize,
    out_shape: &[usize],
) -> Result<ArrayD<A>> {
    let total: usize = blocks.iter().sum::<usize>() * outer;
    let mut out = Vec::with_capacity(total);
    for o in 0..outer {
        for (part, &blk) in parts.iter().zip(blocks) {
            out.extend_from_slice(&part[o * blk..(o + 1) * blk]);
        }
    }
    from_row_major(op, out_shape, out)
}

// ---------------------------------------------------------------------------------------------
// Public helpers
// ---------------------------------------------------------------------------------------------

/// Splits `x` along `axis` into `x.shape()[axis]` arrays of rank `ndim - 1`.
///
/// # Shapes
/// `x: [d0, .., d_axis, .., dn]` gives `d_axis` arrays of shape `[d0, .., dn]` without `d_axis`.
/// Element `i` of the result is `x` indexed at `i` along `axis`. An axis of length 0 gives an
/// empty `Vec`.
///
/// TensorFlow: `tf.unstack(x, axis=axis)`.
///
/// # Errors
/// [`Error::InvalidArgument`] if `axis >= x.ndim()`.
///
/// # Example
/// ```
/// use ndarray::array;
/// use recurrent::tensor::unstack;
///
/// // [batch = 2, time = 3] -> 3 arrays of shape [2]
/// let x = array![[1, 2, 3], [4, 5, 6]];
/// let steps = unstack(&x, 1)?;
/// assert_eq!(steps.len(), 3);
/// assert_eq!(steps[0], array![1, 4].into_dyn());
/// assert_eq!(steps[2], array![3, 6].into_dyn());
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn unstack<A: Clone, S: Data<Elem = A>, D: Dimension>(
    x: &ArrayBase<S, D>,
    axis: usize,
) -> Result<Vec<ArrayD<A>>> {
    check_axis("unstack", axis, x.ndim(), "axis")?;
    let x = x.view().into_dyn();
    Ok(x.axis_iter(Axis(axis)).map(|v| to_standard(&v)).collect())
}

/// Stacks arrays of identical shape along a new axis inserted at position `axis`.
///
/// # Shapes
/// `n` arrays of shape `[d0, .., dk]` give one array whose shape is `[d0, .., dk]` with `n`
/// inserted at position `axis`; `axis` may be `0..=k + 1` (`axis == ndim` appends a last axis).
/// The inverse of [`unstack`].
///
/// TensorFlow: `tf.stack(xs, axis=axis)` (`tf.pack` in older versions).
///
/// # Errors
/// [`Error::InvalidArgument`] if `xs` is empty or `axis > ndim`; [`Error::Shape`] if the arrays
/// do not all have the same shape.
///
/// # Example
/// ```
/// use ndarray::array;
/// use recurrent::tensor::stack;
///
/// let x = array![1, 4];
/// let y = array![2, 5];
/// let z = array![3, 6];
/// let xs = [x, y, z];
/// assert_eq!(stack(&xs, 0)?, array![[1, 4], [2, 5], [3, 6]].into_dyn());
/// assert_eq!(stack(&xs, 1)?, array![[1, 2, 3], [4, 5, 6]].into_dyn());
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn stack<A: Clone, S: Data<Elem = A>, D: Dimension>(
    xs: &[ArrayBase<S, D>],
    axis: usize,
) -> Result<ArrayD<A>> {
    let first = xs
        .first()
        .ok_or_else(|| Error::invalid("stack: needs at least one array, got an empty list"))?;
    let shape = first.shape();
    let ndim = shape.len();
    if axis > ndim {
        return Err(Error::invalid(format!(
            "stack: axis {axis} is out of range for arrays of rank {ndim} (valid: 0..={ndim})"
        )));
    }
    for (i, x) in xs.iter().enumerate().skip(1) {
        if x.shape() != shape {
            return Err(Error::shape(
                "stack",
                format!("every array of shape {shape:?} (as array 0), array {i} differs"),
                x.shape(),
            ));
        }
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis..].iter().product();
    let mut out_shape = shape.to_vec();
    out_shape.insert(axis, xs.len());
    let parts: Vec<_> = xs.iter().map(row_major).collect();
    let blocks = vec![inner; xs.len()];
    interleave("stack", &parts, &blocks, outer, &out_shape)
}

/// Concatenates arrays along an existing axis.
///
/// # Shapes
/// Arrays of shapes `[d0, .., a_i, .., dn]` (equal except along `axis`) give one array of shape
/// `[d0, .., sum_i a_i, .., dn]`.
///
/// TensorFlow: `tf.concat(xs, axis)`.
///
/// # Errors
/// [`Error::InvalidArgument`] if `xs` is empty or `axis >= ndim`; [`Error::Shape`] if the arrays
/// differ in rank or in any dimension other than `axis`.
///
/// # Example
/// ```
/// use ndarray::array;
/// use recurrent::tensor::concat;
///
/// let t1 = array![[1, 2, 3], [4, 5, 6]];
/// let t2 = array![[7, 8, 9], [10, 11, 12]];
/// let ts = [t1, t2];
/// assert_eq!(
///     concat(&ts, 0)?,
///     array![[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]].into_dyn()
/// );
/// assert_eq!(
///     concat(&ts, 1)?,
///     array![[1, 2, 3, 7, 8, 9], [4, 5, 6, 10, 11, 12]].into_dyn()
/// );
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn concat<A: Clone, S: Data<Elem = A>, D: Dimension>(
    xs: &[ArrayBase<S, D>],
    axis: usize,
) -> Result<ArrayD<A>> {
    let first = xs
        .first()
        .ok_or_else(|| Error::invalid("concat: needs at least one array, got an empty list"))?;
    let shape = first.shape();
    check_axis("concat", axis, shape.len(), "axis")?;
    for (i, x) in xs.iter().enumerate().skip(1) {
        let s = x.shape();
        let fits = s.len() == shape.len()
            && s.iter()
                .zip(shape)
                .enumerate()
                .all(|(k, (a, b))| k == axis || a == b);
        if !fits {
            return Err(Error::shape(
                "concat",
                format!(
                    "arrays equal to array 0's shape {shape:?} except on axis {axis}, \
                     array {i} differs"
                ),
                s,
            ));
        }
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let blocks: Vec<usize> = xs.iter().map(|x| x.shape()[axis] * inner).collect();
    let mut out_shape = shape.to_vec();
    out_shape[axis] = xs.iter().map(|x| x.shape()[axis]).sum();
    let parts: Vec<_> = xs.iter().map(row_major).collect();
    interleave("concat", &parts, &blocks, outer, &out_shape)
}

/// Permutes the axes of `x`: axis `i` of the result is axis `perm[i]` of `x`.
///
/// # Shapes
/// `x: [d0, .., dn]` gives `[d_perm[0], .., d_perm[n]]`, copied into standard layout. TensorFlow's
/// default (no `perm`) reverses the axes: pass `&[n, .., 1, 0]` for that.
///
/// TensorFlow: `tf.transpose(x, perm)`.
///
/// # Errors
/// [`Error::InvalidArgument`] if `perm` is not a permutation of `0..x.ndim()`.
///
/// # Example
/// ```
/// use ndarray::array;
/// use recurrent::tensor::transpose;
///
/// // batch-major [batch = 1, time = 2, features = 3] to time-major [time, batch, features]
/// let x = array![[[1, 2, 3], [4, 5, 6]]];
/// let y = transpose(&x, &[1, 0, 2])?;
/// assert_eq!(y, array![[[1, 2, 3]], [[4, 5, 6]]].into_dyn());
/// assert!(y.is_standard_layout());
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn transpose<A: Clone, S: Data<Elem = A>, D: Dimension>(
    x: &ArrayBase<S, D>,
    perm: &[usize],
) -> Result<ArrayD<A>> {
    let ndim = x.ndim();
    let mut seen = vec![false; ndim];
    let is_perm = perm.len() == ndim
        && perm.iter().all(|&p| {
            p < ndim && !std::mem::replace(&mut seen[p], true) // each index once
        });
    if !is_perm {
        return Err(Error::invalid(format!(
            "transpose: perm {perm:?} is not a permutation of 0..{ndim} for an array of shape {:?}",
            x.shape()
        )));
    }
    let v = x.view().into_dyn().permuted_axes(IxDyn(perm));
    Ok(to_standard(&v))
}

/// How [`split`] divides an axis: into `Num(n)` equal parts, or into parts of the given sizes.
///
/// Built from a `usize` or from a list of sizes, so `split(&x, 3, 0)` and
/// `split(&x, [1, 3, 2], 0)` both work (like TensorFlow's `num_or_size_splits`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumOrSizes {
    /// Split into this many equal parts; the number must divide the dimension.
    Num(usize),
    /// Split into parts of these sizes, in order; they must add up to the dimension.
    Sizes(Vec<usize>),
}

impl From<usize> for NumOrSizes {
    fn from(n: usize) -> Self {
        NumOrSizes::Num(n)
    }
}

impl From<Vec<usize>> for NumOrSizes {
    fn from(sizes: Vec<usize>) -> Self {
        NumOrSizes::Sizes(sizes)
    }
}

impl From<&Vec<usize>> for NumOrSizes {
    fn from(sizes: &Vec<usize>) -> Self {
        NumOrSizes::Sizes(sizes.clone())
    }
}

impl From<&[usize]> for NumOrSizes {
    fn from(sizes: &[usize]) -> Self {
        NumOrSizes::Sizes(sizes.to_vec())
    }
}

impl<const N: usize> From<[usize; N]> for NumOrSizes {
    fn from(sizes: [usize; N]) -> Self {
        NumOrSizes::Sizes(sizes.to_vec())
    }
}

impl<const N: usize> From<&[usize; N]> for NumOrSizes {
    fn from(sizes: &[usize; N]) -> Self {
        NumOrSizes::Sizes(sizes.to_vec())
    }
}

/// Splits `x` along `axis` into equal parts or parts of given sizes.
///
/// # Shapes
/// `x: [d0, .., d_axis, .., dn]`; with `Num(n)` gives `n` arrays with `d_axis / n` on `axis`; with
/// `Sizes(s)` gives `s.len()` arrays with `s[i]` on `axis` (sizes of 0 give empty arrays).
/// The inverse of [`concat`](fn@concat).
///
/// TensorFlow: `tf.split(x, num_or_size_splits, axis)`. TensorFlow's `-1` size ("the rest") is
/// not supported.
///
/// An empty axis splits into `num` empty parts, as in TensorFlow, up to [`MAX_EMPTY_SPLIT`]
/// of them (on a non-empty axis `num` cannot exceed the axis length).
///
/// # Errors
/// [`Error::InvalidArgument`] if `axis >= x.ndim()`, `num == 0`, `sizes` is empty, or an empty
/// axis is split into more than [`MAX_EMPTY_SPLIT`] parts; [`Error::Shape`] if `num` does not
/// divide `d_axis` or the sizes do not add up to it.
///
/// # Example
/// ```
/// use ndarray::{array, Array2};
/// use recurrent::tensor::split;
///
/// // TF doc example: x of shape [5, 30]
/// let x = Array2::<f32>::zeros((5, 30));
/// let parts = split(&x, [4, 15, 11], 1)?;
/// let shapes: Vec<&[usize]> = parts.iter().map(|p| p.shape()).collect();
/// assert_eq!(shapes, [&[5, 4][..], &[5, 15], &[5, 11]]);
/// let parts = split(&x, 3, 1)?;
/// assert!(parts.iter().all(|p| p.shape() == [5, 10]));
///
/// // LSTM gates: [batch, 4 * units] -> i, j, f, o
/// let gates = array![[1, 2, 3, 4, 5, 6, 7, 8]];
/// let ijfo = split(&gates, 4, 1)?;
/// assert_eq!(ijfo[2], array![[5, 6]].into_dyn());
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn split<A: Clone, S: Data<Elem = A>, D: Dimension>(
    x: &ArrayBase<S, D>,
    num_or_sizes: impl Into<NumOrSizes>,
    axis: usize,
) -> Result<Vec<ArrayD<A>>> {
    check_axis("split", axis, x.ndim(), "axis")?;
    let dim = x.shape()[axis];
    let sizes = match num_or_sizes.into() {
        NumOrSizes::Num(0) => {
            return Err(Error::invalid("split: num must be at least 1, got 0"));
        }
        NumOrSizes::Num(n) => {
            if !dim.is_multiple_of(n) {
                return Err(Error::shape(
                    "split",
                    format!("dimension {axis} divisible by num = {n}"),
                    x.shape(),
                ));
            }
            // n empty parts of an empty axis are allowed (as in TensorFlow), but each costs an
            // array header (about 100 bytes) of memory: bounded, an error rather than an abort.
            if dim == 0 && n > MAX_EMPTY_SPLIT {
                return Err(Error::invalid(format!(
                    "split: cannot make {n} parts of the empty dimension {axis} (at most {MAX_EMPTY_SPLIT})"
                )));
            }
            vec![dim / n; n]
        }
        NumOrSizes::Sizes(sizes) => {
            if sizes.is_empty() {
                return Err(Error::invalid("split: sizes must not be empty"));
            }
            // Checked sum: absurd sizes must not overflow into a false match.
            let total = sizes.iter().try_fold(0usize, |acc, &s| acc.checked_add(s));
            if total != Some(dim) {
                return Err(Error::shape(
                    "split",
                    format!("dimension {axis} equal to the sum of sizes {sizes:?}"),
                    x.shape(),
                ));
            }
            sizes
        }
    };
    let mut start = 0;
    Ok(sizes
        .iter()
        .map(|&s| {
            let part = x.slice_axis(Axis(axis), Slice::from(start..start + s));
            start += s;
            to_standard(&part)
        })
        .collect())
}

/// The most parts [`split`] makes of an empty axis (2^16: their headers then take a few MB).
pub const MAX_EMPTY_SPLIT: usize = 1 << 16;

/// Reverses, for each batch element `b`, the first `lengths[b]` entries along `seq_axis`;
/// entries past the length are left unchanged.
///
/// # Shapes
/// `x` has rank at least 2, with the batch on `batch_axis` and time on `seq_axis`;
/// `lengths: [x.shape()[batch_axis]]`, each `<= x.shape()[seq_axis]`. The result has `x`'s shape.
/// This is how the backward half of a bidirectional RNN reads padded sequences.
///
/// TensorFlow: `tf.reverse_sequence(x, seq_lengths, seq_axis, batch_axis)`. A length of 0
/// leaves that batch element unchanged (as TensorFlow does).
///
/// # Errors
/// [`Error::InvalidArgument`] if an axis is out of range, `seq_axis == batch_axis`, or a length
/// exceeds the sequence dimension; [`Error::Shape`] if `lengths.len()` is not the batch dimension.
///
/// # Example
/// ```
/// use ndarray::array;
/// use recurrent::tensor::reverse_sequence;
///
/// // [batch = 2, time = 4], lengths 3 and 1
/// let x = array![[1, 2, 3, 0], [5, 0, 0, 0]];
/// let y = reverse_sequence(&x, &[3, 1], 1, 0)?;
/// assert_eq!(y, array![[3, 2, 1, 0], [5, 0, 0, 0]].into_dyn());
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn reverse_sequence<A: Clone, S: Data<Elem = A>, D: Dimension>(
    x: &ArrayBase<S, D>,
    lengths: &[usize],
    seq_axis: usize,
    batch_axis: usize,
) -> Result<ArrayD<A>> {
    const OP: &str = "reverse_sequence";
    let ndim = x.ndim();
    check_axis(OP, seq_axis, ndim, "seq_axis")?;
    check_axis(OP, batch_axis, ndim, "batch_axis")?;
    if seq_axis == batch_axis {
        return Err(Error::invalid(format!(
            "{OP}: seq_axis and batch_axis must differ, both are {seq_axis}"
        )));
    }
    let batch = x.shape()[batch_axis];
    let max_len = x.shape()[seq_axis];
    if lengths.len() != batch {
        return Err(Error::shape(
            OP,
            format!(
                "lengths of size {} to match dimension {batch_axis} (batch) of x",
                lengths.len()
            ),
            x.shape(),
        ));
    }
    if let Some((b, &len)) = lengths.iter().enumerate().find(|(_, &l)| l > max_len) {
        return Err(Error::invalid(format!(
            "{OP}: lengths[{b}] = {len} exceeds the sequence dimension {max_len} (axis {seq_axis})"
        )));
    }
    let mut out = to_standard(x);
    // Inside one batch element the batch axis is gone, so later axes shift down by one.
    let seq_in_example = if seq_axis > batch_axis {
        seq_axis - 1
    } else {
        seq_axis
    };
    let src = x.view().into_dyn();
    for (b, &len) in lengths.iter().enumerate() {
        if len < 2 {
            continue;
        }
        let src_b = src.index_axis(Axis(batch_axis), b);
        let reversed =
            src_b.slice_axis(Axis(seq_in_example), Slice::new(0, Some(len as isize), -1));
        let mut dst_b = out.index_axis_mut(Axis(batch_axis), b);
        dst_b
            .slice_axis_mut(Axis(seq_in_example), Slice::from(0..len))
            .assign(&reversed);
    }
    Ok(out)
}

/// One-hot encodes class labels: row `i` is all zeros except a one at column `labels[i]`.
///
/// # Shapes
/// `labels: [n]` gives `[n, depth]`.
///
/// TensorFlow: `tf.one_hot(labels, depth)` with the default `on_value = 1`, `off_value = 0`.
/// **Difference:** TensorFlow silently returns a row of zeros for a label outside `0..depth`;
/// here that is an error, since it almost always means the wrong `depth` or corrupt labels.
///
/// # Errors
/// [`Error::InvalidArgument`] if some label is `>= depth`.
///
/// # Example
/// ```
/// use ndarray::array;
/// use recurrent::tensor::one_hot;
///
/// let y = one_hot::<f32>(&[0, 2, 1], 3)?;
/// assert_eq!(y, array![[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]);
/// assert!(one_hot::<f32>(&[3], 3).is_err());
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn one_hot<T: Scalar>(labels: &[usize], depth: usize) -> Result<Array2<T>> {
    if let Some((i, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= depth) {
        return Err(Error::invalid(format!(
            "one_hot: labels[{i}] = {label} is not below depth {depth}"
        )));
    }
    let mut out = try_full("one_hot", &[labels.len(), depth], T::zero())?
        .into_dimensionality::<ndarray::Ix2>()
        .expect("rank 2");
    for (mut row, &label) in out.rows_mut().into_iter().zip(labels) {
        row[label] = T::one();
    }
    Ok(out)
}

/// The index of the largest element along the last axis.
///
/// # Shapes
/// `x: [d0, .., dk]` gives `[d0, .., d(k-1)]` (a `[batch, classes]` array gives `[batch]`, a
/// vector gives a scalar array of shape `[]`).
///
/// TensorFlow: `tf.argmax(x, axis=-1)`. Ties go to the first (lowest) index, as in TensorFlow
/// and NumPy. A NaN counts as the largest value (the first NaN of a row wins, as `np.argmax`),
/// so a diverged model's predictions do not look like ordinary ones. Works for any
/// `PartialOrd` element (floats, integers).
///
/// # Errors
/// [`Error::InvalidArgument`] for a scalar (rank 0); [`Error::Shape`] if the last axis is empty
/// (there is no largest element; TensorFlow refuses it too).
///
/// # Example
/// ```
/// use ndarray::array;
/// use recurrent::tensor::argmax;
///
/// let logits = array![[0.1, 2.0, -1.0], [3.0, 3.0, 0.0]];
/// assert_eq!(argmax(&logits)?, array![1, 0].into_dyn()); // the tie goes to index 0
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn argmax<A: PartialOrd, S: Data<Elem = A>, D: Dimension>(
    x: &ArrayBase<S, D>,
) -> Result<ArrayD<usize>> {
    let Some(&n) = x.shape().last() else {
        return Err(Error::invalid(
            "argmax: needs an array of rank >= 1 (it reduces the last axis), got a scalar",
        ));
    };
    if n == 0 {
        return Err(Error::shape("argmax", "a non-empty last axis", x.shape()));
    }
    let is_nan = |v: &A| v.partial_cmp(v).is_none();
    let last = Axis(x.ndim() - 1);
    let index: Vec<usize> = x
        .lanes(last)
        .into_iter()
        .map(|lane| {
            let mut best = 0;
            for (i, v) in lane.iter().enumerate() {
                if is_nan(v) {
                    return i;
                }
                if *v > lane[best] {
                    best = i;
                }
            }
            best
        })
        .collect();
    from_row_major("argmax", &x.shape()[..x.ndim() - 1], index)
}

/// The `[batch, maxlen]` mask of sequence lengths: `mask[b, t] = 1` when `t < lengths[b]`,
/// else `0`.
///
/// # Shapes
/// `lengths: [batch]` gives `[batch, maxlen]`.
///
/// TensorFlow: `tf.sequence_mask(lengths, maxlen, dtype)` with a float `dtype`.
/// **Difference:** TensorFlow silently cuts a length above `maxlen` to `maxlen`; here that is
/// an error, since it means the padded length or the lengths are wrong.
///
/// # Errors
/// [`Error::InvalidArgument`] if some length is above `maxlen`; [`Error::Shape`] if
/// `[batch, maxlen]` is too large to allocate.
///
/// # Example
/// ```
/// use ndarray::array;
/// use recurrent::tensor::sequence_mask;
///
/// let mask = sequence_mask::<f32>(&[1, 3, 0], 3)?;
/// assert_eq!(mask, array![[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]].into_dyn());
/// assert!(sequence_mask::<f32>(&[4], 3).is_err());
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn sequence_mask<T: Scalar>(lengths: &[usize], maxlen: usize) -> Result<ArrayD<T>> {
    if let Some((i, &len)) = lengths.iter().enumerate().find(|(_, &l)| l > maxlen) {
        return Err(Error::invalid(format!(
            "sequence_mask: lengths[{i}] = {len} is above maxlen {maxlen}"
        )));
    }
    let shape = [lengths.len(), maxlen];
    element_count("sequence_mask", &shape)?;
    let mut mask = Vec::with_capacity(lengths.len() * maxlen);
    for &len in lengths {
        mask.extend((0..maxlen).map(|t| if t < len { T::one() } else { T::zero() }));
    }
    from_row_major("sequence_mask", &shape, mask)
}

// ---------------------------------------------------------------------------------------------
// Broadcasting support for the backward passes
// ---------------------------------------------------------------------------------------------

/// The shape two arrays broadcast to under numpy's rules, or `None` if they do not broadcast.
///
/// Shapes are aligned on the right; a missing leading dimension counts as 1; two dimensions are
/// compatible when equal or when one of them is 1 (a 1 against a 0 gives 0).
// Used by the broadcasting ops' backward passes (module `ops`).
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        // i counts from the right-aligned start of the longer shape
        let pad = n - s.len();
        if i < pad {
            1
        } else {
            s[i - pad]
        }
    };
    (0..n)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Sums `x` down to `shape`: the gradient of an input of `shape` that was broadcast to
/// `x.shape()` in the forward pass.
///
/// Sums over the leading axes `x` has in excess of `shape`, then over every axis where `shape`
/// has 1 and `x` has more (numpy rules, shapes right-aligned). Returns `x` unchanged when the
/// shapes already agree.
///
/// # Panics
/// If `shape` does not broadcast to `x.shape()` (a bug in the calling op, never user input).
// Used by the broadcasting ops' backward passes (module `ops`).
pub(crate) fn sum_to_shape<T: Scalar>(x: ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
    if x.shape() == shape {
        return x;
    }
    let mut x = x;
    // Leading axes: one reduction over a [lead, rest] view of the standard-layout buffer.
    if x.ndim() > shape.len() {
        let lead = x.ndim() - shape.len();
        let rest_shape = x.shape()[lead..].to_vec();
        let lead_len: usize = x.shape()[..lead].iter().product();
        let rest_len: usize = rest_shape.iter().product();
        let summed = {
            let std = x.as_standard_layout();
            std.view()
                .into_shape_with_order((lead_len, rest_len))
                .expect("standard layout reshapes to [lead, rest]")
                .sum_axis(Axis(0))
        };
        x = summed
            .into_shape_with_order(IxDyn(&rest_shape))
            .expect("element count unchanged");
    }
    assert_eq!(
        x.ndim(),
        shape.len(),
        "sum_to_shape: cannot reduce {:?} to {shape:?}",
        x.shape()
    );
    for (k, &d) in shape.iter().enumerate() {
        if d == x.shape()[k] {
            continue;
        }
        assert!(
            d == 1,
            "sum_to_shape: {shape:?} does not broadcast to {:?}",
            x.shape()
        );
        x = x.sum_axis(Axis(k)).insert_axis(Axis(k));
    }
    if x.is_standard_layout() {
        x
    } else {
        x.as_standard_layout().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array};

    /// Same shape and every element within 1e-9 (relative to magnitude): the helpers only move
    /// values, so anything looser would hide a wrong element.
    fn assert_close<T: Scalar>(got: &ArrayD<T>, want: &ArrayD<T>) {
        assert_eq!(got.shape(), want.shape(), "shapes differ");
        for (g, w) in got.iter().zip(want) {
            let (g, w) = (g.to_f64_lossless(), w.to_f64_lossless());
            assert!((g - w).abs() <= 1e-9 * (1.0 + w.abs()), "{g} != {w}");
        }
    }

    #[test]
    fn broadcast_shape_follows_numpy() {
        assert_eq!(broadcast_shape(&[2, 3], &[3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shape(&[3], &[2, 3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shape(&[2, 1], &[1, 4]), Some(vec![2, 4]));
        assert_eq!(broadcast_shape(&[5, 1, 3], &[4, 1]), Some(vec![5, 4, 3]));
        assert_eq!(broadcast_shape(&[], &[2, 3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shape(&[], &[]), Some(vec![]));
        assert_eq!(broadcast_shape(&[0, 3], &[1, 3]), Some(vec![0, 3]));
        assert_eq!(broadcast_shape(&[2, 3], &[2, 3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shape(&[2, 3], &[4]), None);
        assert_eq!(broadcast_shape(&[2, 3], &[3, 3]), None);
        assert_eq!(broadcast_shape(&[0], &[2]), None);
    }

    #[test]
    fn sum_to_shape_identity() {
        let x = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
        let y = sum_to_shape(x.clone(), &[2, 2]);
        assert_eq!(y.shape(), &[2, 2]);
        assert_close(&y, &x);
    }

    #[test]
    fn sum_to_shape_leading_axes() {
        // bias gradient: [batch, units] -> [units]
        let x = array![[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]].into_dyn();
        let y = sum_to_shape(x, &[3]);
        assert_close(&y, &array![11.0, 22.0, 33.0].into_dyn());

        let x = Array::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 12 + j * 4 + k) as f64).into_dyn();
        let y = sum_to_shape(x.clone(), &[4]);
        let expected = x.sum_axis(Axis(0)).sum_axis(Axis(0));
        assert_close(&y, &expected);
        // to a scalar
        let y = sum_to_shape(x, &[]);
        assert_eq!(y.shape(), &[] as &[usize]);
        assert!((y.sum() - (0..24).sum::<usize>() as f64).abs() < 1e-9);
    }

    #[test]
    fn sum_to_shape_unit_axes() {
        let x = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn();
        assert_close(
            &sum_to_shape(x.clone(), &[2, 1]),
            &array![[6.0f32], [15.0]].into_dyn(),
        );
        assert_close(
            &sum_to_shape(x.clone(), &[1, 3]),
            &array![[5.0f32, 7.0, 9.0]].into_dyn(),
        );
        assert_close(
            &sum_to_shape(x.clone(), &[1, 1]),
            &array![[21.0f32]].into_dyn(),
        );
        assert_close(&sum_to_shape(x, &[1]), &array![21.0f32].into_dyn());
    }

    #[test]
    fn sum_to_shape_mixed_and_layout() {
        // [2, 3, 4] -> [3, 1]: sum leading axis 0 and trailing axis of size 4.
        let x =
            Array::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 100 + j * 10 + k) as f64).into_dyn();
        let y = sum_to_shape(x.clone(), &[3, 1]);
        assert_eq!(y.shape(), &[3, 1]);
        for j in 0..3 {
            let mut s = 0.0;
            for i in 0..2 {
                for k in 0..4 {
                    s += x[[i, j, k]];
                }
            }
            assert!((y[[j, 0]] - s).abs() < 1e-9);
        }
        assert!(y.is_standard_layout());
        // A non-standard-layout input (transposed) gives the same result.
        let xt = x.clone().reversed_axes(); // [4, 3, 2]
        let y = sum_to_shape(xt.clone(), &[3, 1]);
        let expected = to_standard(&xt)
            .sum_axis(Axis(0))
            .sum_axis(Axis(1))
            .insert_axis(Axis(1));
        assert_close(&y, &expected);
        assert!(y.is_standard_layout());
    }

    #[test]
    fn sum_to_shape_agrees_with_broadcast_shape() {
        let a = [3, 1];
        let b = [2, 1, 4];
        let out = broadcast_shape(&a, &b).unwrap();
        let ones = ArrayD::<f64>::ones(IxDyn(&out));
        assert_close(
            &sum_to_shape(ones.clone(), &a),
            &ArrayD::from_elem(IxDyn(&a), 8.0),
        );
        assert_close(&sum_to_shape(ones, &b), &ArrayD::from_elem(IxDyn(&b), 3.0));
    }

    #[test]
    #[should_panic(expected = "does not broadcast")]
    fn sum_to_shape_rejects_incompatible() {
        let x = ArrayD::<f64>::zeros(IxDyn(&[2, 3]));
        let _ = sum_to_shape(x, &[2, 2]);
    }
}
