//! The `tensor` helpers pinned against TensorFlow's documented results.
//!
//! Expected values come from the examples in the TensorFlow 1.x API docs for `tf.unstack`,
//! `tf.stack`, `tf.concat`, `tf.transpose`, `tf.split`, `tf.reverse_sequence` and `tf.one_hot`,
//! or are worked out by hand in the comments. All values are integers (or exact 0.0 / 1.0 for
//! `one_hot`), so exact comparison is safe.

use ndarray::{array, s, Array, Array2, Array3, ArrayD, ArrayView2, Axis, Ix3, Ix4, IxDyn};
use recurrent::tensor::{
    argmax, concat, one_hot, reverse_sequence, sequence_mask, split, stack, transpose, unstack,
    NumOrSizes,
};
use recurrent::Error;

/// `[batch = 2, time = 3, input = 4]` with value `100 b + 10 t + i`.
fn bti() -> Array3<i32> {
    Array::from_shape_fn((2, 3, 4), |(b, t, i)| (100 * b + 10 * t + i) as i32)
}

fn is_invalid<T: std::fmt::Debug>(r: recurrent::Result<T>) -> bool {
    matches!(r, Err(Error::InvalidArgument(_)))
}

fn is_shape<T: std::fmt::Debug>(r: recurrent::Result<T>, op: &str) -> bool {
    matches!(r, Err(Error::Shape { op: o, .. }) if o == op)
}

// ------------------------------------------------------------------------------------ unstack

#[test]
fn unstack_batch_time_input_along_time() {
    let x = bti();
    let steps = unstack(&x, 1).unwrap();
    assert_eq!(steps.len(), 3);
    for (t, step) in steps.iter().enumerate() {
        assert_eq!(step.shape(), &[2, 4]);
        assert!(step.is_standard_layout());
        for b in 0..2 {
            for i in 0..4 {
                assert_eq!(step[[b, i]], (100 * b + 10 * t + i) as i32);
            }
        }
    }
    let t = 10;
    assert_eq!(
        steps[1],
        array![
            [t, t + 1, t + 2, t + 3],
            [100 + t, 101 + t, 102 + t, 103 + t]
        ]
        .into_dyn()
    );
}

#[test]
fn unstack_tf_doc_shapes() {
    // TF: "if axis == 0 then the i'th tensor in output is the slice value[i, :, :, :] ..."
    let x = Array::<i32, _>::zeros((2, 3, 4, 5));
    let shapes = |axis| -> Vec<Vec<usize>> {
        unstack(&x, axis)
            .unwrap()
            .iter()
            .map(|a| a.shape().to_vec())
            .collect()
    };
    assert_eq!(shapes(0), vec![vec![3, 4, 5]; 2]);
    assert_eq!(shapes(1), vec![vec![2, 4, 5]; 3]);
    assert_eq!(shapes(2), vec![vec![2, 3, 5]; 4]);
    assert_eq!(shapes(3), vec![vec![2, 3, 4]; 5]);
}

#[test]
fn unstack_of_a_vector_gives_scalars_and_empty_axis_gives_nothing() {
    let v = array![7, 8, 9];
    let xs = unstack(&v, 0).unwrap();
    assert_eq!(xs.len(), 3);
    assert_eq!(xs[2].ndim(), 0);
    assert_eq!(xs[2][IxDyn(&[])], 9);
    let empty = Array2::<i32>::zeros((0, 3));
    assert!(unstack(&empty, 0).unwrap().is_empty());
}

#[test]
fn unstack_of_non_standard_view_is_standard() {
    let x = bti();
    let v = x.view().reversed_axes(); // [4, 3, 2], Fortran order
    let parts = unstack(&v, 0).unwrap();
    assert_eq!(parts.len(), 4);
    for (i, p) in parts.iter().enumerate() {
        assert!(p.is_standard_layout());
        assert_eq!(p.shape(), &[3, 2]);
        assert_eq!(p[[2, 1]], (100 + 20 + i) as i32);
    }
}

// -------------------------------------------------------------------------------------- stack

#[test]
fn stack_tf_doc_example() {
    let xs = [array![1, 4], array![2, 5], array![3, 6]];
    assert_eq!(
        stack(&xs, 0).unwrap(),
        array![[1, 4], [2, 5], [3, 6]].into_dyn()
    );
    assert_eq!(
        stack(&xs, 1).unwrap(),
        array![[1, 2, 3], [4, 5, 6]].into_dyn()
    );
}

#[test]
fn stack_unstack_round_trip_on_every_axis() {
    let x = bti().into_dyn();
    for axis in 0..3 {
        let parts = unstack(&x, axis).unwrap();
        let back = stack(&parts, axis).unwrap();
        assert_eq!(back, x, "axis {axis}");
        assert!(back.is_standard_layout());
    }
    // And the other way round: stack then unstack, including axis == ndim.
    let parts: Vec<_> = unstack(&x, 0).unwrap();
    for axis in 0..=2 {
        let stacked = stack(&parts, axis).unwrap();
        let mut expected_shape = vec![3, 4];
        expected_shape.insert(axis, 2);
        assert_eq!(stacked.shape(), &expected_shape[..]);
        assert_eq!(unstack(&stacked, axis).unwrap(), parts, "axis {axis}");
    }
}

#[test]
fn stack_last_axis_values() {
    let xs = [array![[1, 2], [3, 4]], array![[5, 6], [7, 8]]];
    let y = stack(&xs, 2).unwrap();
    assert_eq!(y.shape(), &[2, 2, 2]);
    assert_eq!(y, array![[[1, 5], [2, 6]], [[3, 7], [4, 8]]].into_dyn());
}

#[test]
fn stack_of_views_and_scalars() {
    let x = bti();
    let views: Vec<ArrayView2<i32>> = x.axis_iter(Axis(1)).collect(); // non-contiguous views
    let y = stack(&views, 1).unwrap();
    assert_eq!(y, x.into_dyn());
    let scalars = [ndarray::arr0(1), ndarray::arr0(2)];
    assert_eq!(stack(&scalars, 0).unwrap(), array![1, 2].into_dyn());
}

// ------------------------------------------------------------------------------------- concat

#[test]
fn concat_tf_doc_example() {
    let t1 = array![[1, 2, 3], [4, 5, 6]];
    let t2 = array![[7, 8, 9], [10, 11, 12]];
    let ts = [t1, t2];
    assert_eq!(
        concat(&ts, 0).unwrap(),
        array![[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]].into_dyn()
    );
    assert_eq!(
        concat(&ts, 1).unwrap(),
        array![[1, 2, 3, 7, 8, 9], [4, 5, 6, 10, 11, 12]].into_dyn()
    );
}

#[test]
fn concat_tf_doc_shapes() {
    // TF: tensor1 [2, 3], tensor2 [2, 3] -> [4, 3] on axis 0, [2, 6] on axis 1.
    let a = Array2::<i32>::zeros((2, 3));
    let b = Array2::<i32>::ones((2, 3));
    assert_eq!(concat(&[a.view(), b.view()], 0).unwrap().shape(), &[4, 3]);
    assert_eq!(concat(&[a.view(), b.view()], 1).unwrap().shape(), &[2, 6]);
}

#[test]
fn concat_unequal_sizes_like_lstm_input_and_state() {
    // concat([x, h], 1) with x: [batch = 2, input = 1], h: [batch = 2, units = 3]
    let x = array![[1], [2]].into_dyn();
    let h = array![[10, 11, 12], [20, 21, 22]].into_dyn();
    let xh = concat(&[x, h], 1).unwrap();
    assert_eq!(xh, array![[1, 10, 11, 12], [2, 20, 21, 22]].into_dyn());
    // 3-D, middle axis, with a non-standard input.
    let a = bti(); // [2, 3, 4]
    let b = Array3::from_shape_fn((4, 1, 2), |(i, _, b)| -((100 * b + i) as i32));
    let b = b.view().permuted_axes([2, 1, 0]); // [2, 1, 4], not standard
    let y = concat(&[a.view(), b], 1)
        .unwrap()
        .into_dimensionality::<Ix3>()
        .unwrap();
    assert_eq!(y.shape(), &[2, 4, 4]);
    assert_eq!(y.slice(s![.., ..3, ..]), a);
    assert_eq!(y[[1, 3, 2]], -102);
    assert_eq!(y[[0, 3, 3]], -3);
}

#[test]
fn concat_single_array_is_a_copy() {
    let x = bti();
    assert_eq!(concat(&[x.view()], 2).unwrap(), x.into_dyn());
}

// ---------------------------------------------------------------------------------- transpose

#[test]
fn transpose_tf_doc_examples() {
    let x = array![[1, 2, 3], [4, 5, 6]];
    assert_eq!(
        transpose(&x, &[1, 0]).unwrap(),
        array![[1, 4], [2, 5], [3, 6]].into_dyn()
    );
    let x = array![[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 12]]];
    assert_eq!(
        transpose(&x, &[0, 2, 1]).unwrap(),
        array![[[1, 4], [2, 5], [3, 6]], [[7, 10], [8, 11], [9, 12]]].into_dyn()
    );
}

#[test]
fn transpose_batch_major_to_time_major() {
    let x = bti();
    let y = transpose(&x, &[1, 0, 2]).unwrap();
    assert_eq!(y.shape(), &[3, 2, 4]);
    assert!(y.is_standard_layout());
    for t in 0..3 {
        for b in 0..2 {
            for i in 0..4 {
                assert_eq!(y[[t, b, i]], (100 * b + 10 * t + i) as i32);
            }
        }
    }
    // Contiguous data in row-major order of the new shape.
    let flat = y.as_slice().unwrap();
    assert_eq!(&flat[..8], &[0, 1, 2, 3, 100, 101, 102, 103]);
    // Back again.
    assert_eq!(transpose(&y, &[1, 0, 2]).unwrap(), x.into_dyn());
}

#[test]
fn transpose_identity_and_scalar() {
    let x = bti();
    assert_eq!(transpose(&x, &[0, 1, 2]).unwrap(), x.clone().into_dyn());
    let s = ndarray::arr0(5);
    assert_eq!(transpose(&s, &[]).unwrap()[IxDyn(&[])], 5);
}

// -------------------------------------------------------------------------------------- split

#[test]
fn split_tf_doc_shapes() {
    // TF: value [5, 30]; split(value, [4, 15, 11], 1) -> [5, 4], [5, 15], [5, 11];
    // split(value, num_or_size_splits=3, axis=1) -> 3 x [5, 10].
    let x = Array2::<i32>::zeros((5, 30));
    let shapes = |parts: Vec<ArrayD<i32>>| -> Vec<Vec<usize>> {
        parts.iter().map(|p| p.shape().to_vec()).collect()
    };
    assert_eq!(
        shapes(split(&x, [4, 15, 11], 1).unwrap()),
        vec![vec![5, 4], vec![5, 15], vec![5, 11]]
    );
    assert_eq!(shapes(split(&x, 3, 1).unwrap()), vec![vec![5, 10]; 3]);
}

#[test]
fn split_into_three_along_axis_0() {
    let x = Array2::from_shape_fn((6, 2), |(i, j)| (10 * i + j) as i32);
    let parts = split(&x, 3, 0).unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], array![[0, 1], [10, 11]].into_dyn());
    assert_eq!(parts[1], array![[20, 21], [30, 31]].into_dyn());
    assert_eq!(parts[2], array![[40, 41], [50, 51]].into_dyn());
}

#[test]
fn split_with_sizes_1_3_2() {
    let x = Array2::from_shape_fn((6, 2), |(i, j)| (10 * i + j) as i32);
    let parts = split(&x, vec![1, 3, 2], 0).unwrap();
    assert_eq!(parts[0], array![[0, 1]].into_dyn());
    assert_eq!(parts[1], array![[10, 11], [20, 21], [30, 31]].into_dyn());
    assert_eq!(parts[2], array![[40, 41], [50, 51]].into_dyn());
    // Every accepted argument form means the same thing.
    let sizes: &[usize] = &[1, 3, 2];
    assert_eq!(split(&x, sizes, 0).unwrap(), parts);
    assert_eq!(
        split(&x, NumOrSizes::Sizes(vec![1, 3, 2]), 0).unwrap(),
        parts
    );
    assert_eq!(NumOrSizes::from(3), NumOrSizes::Num(3));
    assert_eq!(NumOrSizes::from([1, 2]), NumOrSizes::Sizes(vec![1, 2]));
}

#[test]
fn split_lstm_gates_along_last_axis_of_a_view() {
    // [batch = 2, 4 * units = 8] -> i, j, f, o each [2, 2]
    let z = Array2::from_shape_fn((2, 8), |(b, k)| (10 * b + k) as i32);
    let gates = split(&z.view(), 4, 1).unwrap();
    assert_eq!(gates[1], array![[2, 3], [12, 13]].into_dyn());
    assert_eq!(gates[3], array![[6, 7], [16, 17]].into_dyn());
    assert!(gates.iter().all(|g| g.is_standard_layout()));
    // split then concat is the identity
    assert_eq!(concat(&gates, 1).unwrap(), z.into_dyn());
}

#[test]
fn split_allows_zero_sizes() {
    let x = array![1, 2, 3];
    let parts = split(&x, [0, 3, 0], 0).unwrap();
    assert_eq!(parts[0].shape(), &[0]);
    assert_eq!(parts[1], array![1, 2, 3].into_dyn());
    assert_eq!(parts[2].shape(), &[0]);
}

// --------------------------------------------------------------------------- reverse_sequence

/// TF doc example: input of shape [4, 8] (batch-major), seq_lengths [7, 2, 3, 5].
fn tf_reverse_input() -> Array2<i32> {
    array![
        [1, 2, 3, 4, 5, 0, 0, 0],
        [1, 2, 0, 0, 0, 0, 0, 0],
        [1, 2, 3, 4, 0, 0, 0, 0],
        [1, 2, 3, 4, 5, 6, 7, 8],
    ]
}

/// TF doc output: the first seq_lengths[b] entries of row b reversed, the rest unchanged.
fn tf_reverse_output() -> Array2<i32> {
    array![
        [0, 0, 5, 4, 3, 2, 1, 0],
        [2, 1, 0, 0, 0, 0, 0, 0],
        [3, 2, 1, 4, 0, 0, 0, 0],
        [5, 4, 3, 2, 1, 6, 7, 8],
    ]
}

#[test]
fn reverse_sequence_tf_doc_example() {
    let y = reverse_sequence(&tf_reverse_input(), &[7, 2, 3, 5], 1, 0).unwrap();
    assert_eq!(y, tf_reverse_output().into_dyn());
}

#[test]
fn reverse_sequence_time_major_with_features() {
    // Same data as [time = 8, batch = 4, features = 2], feature 1 = 10 * feature 0.
    let bm = tf_reverse_input();
    let x = Array3::from_shape_fn((8, 4, 2), |(t, b, f)| {
        bm[[b, t]] * if f == 0 { 1 } else { 10 }
    });
    let y = reverse_sequence(&x, &[7, 2, 3, 5], 0, 1).unwrap();
    assert!(y.is_standard_layout());
    let out = tf_reverse_output();
    for t in 0..8 {
        for b in 0..4 {
            assert_eq!(y[[t, b, 0]], out[[b, t]]);
            assert_eq!(y[[t, b, 1]], 10 * out[[b, t]]);
        }
    }
}

#[test]
fn reverse_sequence_batch_major_3d_and_zero_length() {
    // [batch = 2, time = 3, input = 4]; lengths 0 (unchanged, as in TF) and 3 (whole sequence).
    let x = bti();
    let y = reverse_sequence(&x, &[0, 3], 1, 0)
        .unwrap()
        .into_dimensionality::<Ix3>()
        .unwrap();
    assert_eq!(y.slice(s![0, .., ..]), x.slice(s![0, .., ..]));
    for t in 0..3 {
        assert_eq!(y.slice(s![1, t, ..]), x.slice(s![1, 2 - t, ..]));
    }
    // Reversing twice is the identity.
    let lengths = [2, 1];
    let twice = reverse_sequence(
        &reverse_sequence(&x, &lengths, 1, 0).unwrap(),
        &lengths,
        1,
        0,
    );
    assert_eq!(twice.unwrap(), x.into_dyn());
}

#[test]
fn reverse_sequence_tf_doc_4d_example() {
    // TF doc: input.dims = (4, 8, ...), seq_dim = 1, batch_dim = 0, seq_lengths = [7, 2, 3, 5]
    // output[0, 0:7, :, ...] = input[0, 7:0:-1 ... i.e. 6..=0, :, ...], output[0, 7:, ...] kept.
    let x = Array::from_shape_fn((4, 8, 2, 3), |(b, t, i, j)| {
        (1000 * b + 100 * t + 10 * i + j) as i32
    });
    let lengths = [7, 2, 3, 5];
    let y = reverse_sequence(&x, &lengths, 1, 0)
        .unwrap()
        .into_dimensionality::<Ix4>()
        .unwrap();
    for (b, &len) in lengths.iter().enumerate() {
        for t in 0..8 {
            let src_t = if t < len { len - 1 - t } else { t };
            assert_eq!(y.slice(s![b, t, .., ..]), x.slice(s![b, src_t, .., ..]));
        }
    }
    // TF doc: seq_dim = 2, batch_dim = 0 on input.dims = (4, 3, 8, ...) — batch before a gap.
    let x = Array3::from_shape_fn((4, 3, 8), |(b, k, t)| (1000 * b + 100 * k + t) as i32);
    let y = reverse_sequence(&x, &lengths, 2, 0).unwrap();
    assert_eq!(y[[0, 1, 0]], 106);
    assert_eq!(y[[1, 2, 0]], 1201);
    assert_eq!(y[[1, 2, 2]], 1202);
    assert_eq!(y[[3, 0, 4]], 3000);
    // batch after seq with another axis in between: [8, 3, 4], seq 0, batch 2
    let x = Array3::from_shape_fn((8, 3, 4), |(t, k, b)| (1000 * b + 100 * k + t) as i32);
    let y = reverse_sequence(&x, &lengths, 0, 2).unwrap();
    assert_eq!(y[[0, 1, 0]], 106);
    assert_eq!(y[[0, 2, 1]], 1201);
    assert_eq!(y[[7, 0, 3]], 3007);
}

// ------------------------------------------------------------------------------------ one_hot

#[test]
fn one_hot_tf_doc_example() {
    // TF: indices [0, 1, 2], depth 3 -> identity 3 x 3 (exact 0.0 / 1.0, not computed).
    let y = one_hot::<f32>(&[0, 1, 2], 3).unwrap();
    assert_eq!(y, Array2::<f32>::eye(3));
    let y = one_hot::<f64>(&[3, 0, 1], 5).unwrap();
    assert_eq!(
        y,
        array![
            [0.0, 0.0, 0.0, 1.0, 0.0],
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0, 0.0]
        ]
    );
}

#[test]
fn one_hot_empty_labels() {
    let y = one_hot::<f32>(&[], 10).unwrap();
    assert_eq!(y.shape(), &[0, 10]);
}

// ------------------------------------------------------------------------------------- errors

#[test]
fn unstack_axis_out_of_range() {
    assert!(is_invalid(unstack(&bti(), 3)));
    assert!(is_invalid(unstack(&ndarray::arr0(1), 0)));
}

#[test]
fn stack_empty_list() {
    let xs: [Array2<i32>; 0] = [];
    assert!(is_invalid(stack(&xs, 0)));
}

#[test]
fn stack_axis_out_of_range() {
    let xs = [array![1, 2], array![3, 4]];
    assert!(stack(&xs, 1).is_ok());
    assert!(is_invalid(stack(&xs, 2)));
}

#[test]
fn stack_shapes_differ() {
    let xs = [array![1, 2], array![3, 4, 5]];
    assert!(is_shape(stack(&xs, 0), "stack"));
    let xs = [array![1, 2].into_dyn(), array![[1, 2]].into_dyn()];
    assert!(is_shape(stack(&xs, 0), "stack"));
}

#[test]
fn concat_empty_list() {
    let xs: Vec<Array2<i32>> = vec![];
    assert!(is_invalid(concat(&xs, 0)));
}

#[test]
fn concat_axis_out_of_range() {
    let xs = [array![1, 2], array![3, 4]];
    assert!(is_invalid(concat(&xs, 1)));
    let scalars = [ndarray::arr0(1), ndarray::arr0(2)];
    assert!(is_invalid(concat(&scalars, 0)));
}

#[test]
fn concat_shapes_differ_off_axis() {
    let xs = [array![[1, 2, 3]], array![[1, 2]]];
    assert!(is_shape(concat(&xs, 0), "concat"));
    assert!(concat(&xs, 1).is_ok());
    let xs = [array![[1, 2]].into_dyn(), array![1, 2].into_dyn()];
    assert!(is_shape(concat(&xs, 0), "concat"));
}

#[test]
fn transpose_bad_perm() {
    let x = bti();
    assert!(is_invalid(transpose(&x, &[0, 1])));
    assert!(is_invalid(transpose(&x, &[0, 1, 2, 3])));
    assert!(is_invalid(transpose(&x, &[0, 0, 1])));
    assert!(is_invalid(transpose(&x, &[0, 1, 3])));
}

#[test]
fn split_axis_out_of_range() {
    assert!(is_invalid(split(&bti(), 1, 3)));
}

#[test]
fn split_num_zero() {
    assert!(is_invalid(split(&bti(), 0, 0)));
}

#[test]
fn split_num_does_not_divide() {
    assert!(is_shape(split(&bti(), 2, 1), "split"));
}

#[test]
fn split_sizes_do_not_sum() {
    let x = bti();
    assert!(is_shape(split(&x, [1, 1], 2), "split"));
    assert!(is_shape(split(&x, [2, 3], 2), "split"));
    assert!(is_shape(split(&x, [usize::MAX, 5], 2), "split"));
}

#[test]
fn split_empty_sizes() {
    assert!(is_invalid(split(&bti(), Vec::new(), 0)));
}

#[test]
fn reverse_sequence_same_axes() {
    assert!(is_invalid(reverse_sequence(
        &tf_reverse_input(),
        &[1; 4],
        1,
        1
    )));
}

#[test]
fn reverse_sequence_axis_out_of_range() {
    let x = tf_reverse_input();
    assert!(is_invalid(reverse_sequence(&x, &[1; 4], 2, 0)));
    assert!(is_invalid(reverse_sequence(&x, &[1; 8], 0, 2)));
    assert!(is_invalid(reverse_sequence(&array![1, 2], &[1], 0, 0)));
}

#[test]
fn reverse_sequence_lengths_size_mismatch() {
    let x = tf_reverse_input();
    assert!(is_shape(
        reverse_sequence(&x, &[7, 2, 3], 1, 0),
        "reverse_sequence"
    ));
    assert!(is_shape(
        reverse_sequence(&x, &[1, 1, 1, 1], 0, 1),
        "reverse_sequence"
    ));
}

#[test]
fn reverse_sequence_length_too_long() {
    assert!(is_invalid(reverse_sequence(
        &tf_reverse_input(),
        &[7, 2, 9, 5],
        1,
        0
    )));
}

#[test]
fn one_hot_label_out_of_range() {
    assert!(is_invalid(one_hot::<f32>(&[0, 3], 3)));
    assert!(is_invalid(one_hot::<f64>(&[0], 0)));
}

#[test]
fn errors_name_the_op_and_shapes() {
    let msg = split(&bti(), 2, 1).unwrap_err().to_string();
    assert!(msg.contains("split") && msg.contains("[2, 3, 4]"), "{msg}");
    let msg = transpose(&bti(), &[0, 0, 1]).unwrap_err().to_string();
    assert!(
        msg.contains("transpose") && msg.contains("[0, 0, 1]"),
        "{msg}"
    );
}

/// Sizes ndarray cannot hold are errors, not panics inside ndarray or the allocator.
#[test]
fn absurd_sizes_are_errors() {
    // A depth past isize::MAX, even with no labels.
    assert!(one_hot::<f32>(&[], usize::MAX).is_err());
    // usize::MAX empty parts of an empty axis cannot be made.
    assert!(split(&Array2::<f32>::zeros((2, 0)), usize::MAX, 1).is_err());
    // A few empty parts of an empty axis are fine, as in TensorFlow.
    let parts = split(&Array2::<f32>::zeros((2, 0)), 3, 1).unwrap();
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().all(|p| p.shape() == [2, 0]));
}

// ------------------------------------------------------------------------------------- argmax

#[test]
fn argmax_last_axis_first_index_on_ties() {
    // TF: tf.argmax([[1, 5, 5], [7, 0, 7]], axis=-1) = [1, 0] (ties go to the first index).
    assert_eq!(
        argmax(&array![[1, 5, 5], [7, 0, 7]]).unwrap(),
        array![1, 0].into_dyn()
    );
    // A vector gives a scalar array.
    let scalar = argmax(&array![0.5, -2.0, 3.25, 3.0]).unwrap();
    assert_eq!(scalar.shape(), &[] as &[usize]);
    assert_eq!(scalar[[]], 2);
    // Rank 3 against a loop over the lanes; then the same values through a transposed
    // (non-standard) view.
    let x = Array::from_shape_fn((2, 3, 4), |(b, t, i)| ((7 * b + 5 * t + 3 * i) % 11) as i32);
    let got = argmax(&x).unwrap();
    assert_eq!(got.shape(), &[2, 3]);
    for b in 0..2 {
        for t in 0..3 {
            let lane: Vec<i32> = (0..4).map(|i| x[[b, t, i]]).collect();
            let max = *lane.iter().max().unwrap();
            assert_eq!(got[[b, t]], lane.iter().position(|&v| v == max).unwrap());
        }
    }
    let xt = x.view().permuted_axes([1, 0, 2]); // [3, 2, 4], not contiguous
    let got_t = argmax(&xt).unwrap();
    assert_eq!(got_t, got.view().permuted_axes(vec![1, 0]).to_owned());
    // Rows of nothing: an empty result, not an error.
    assert_eq!(argmax(&Array2::<f32>::zeros((0, 3))).unwrap().shape(), &[0]);
}

#[test]
fn argmax_nan_wins_and_errors() {
    // As np.argmax: the first NaN of a row is its argmax.
    let x = array![
        [1.0, f64::NAN, 3.0, f64::NAN],
        [f64::NAN, 9.0, 0.0, 0.0],
        [-1.0, -2.0, -0.5, -3.0]
    ];
    assert_eq!(argmax(&x).unwrap(), array![1, 0, 2].into_dyn());
    assert!(is_invalid(argmax(&ArrayD::<f64>::zeros(IxDyn(&[])))));
    assert!(is_shape(argmax(&Array2::<f64>::zeros((2, 0))), "argmax"));
}

// ------------------------------------------------------------------------------ sequence_mask

#[test]
fn sequence_mask_matches_tensorflow() {
    // TF: tf.sequence_mask([1, 3, 2], 5) =
    //   [[True, False, False, False, False],
    //    [True, True, True, False, False],
    //    [True, True, False, False, False]]
    let mask = sequence_mask::<f32>(&[1, 3, 2], 5).unwrap();
    assert_eq!(
        mask,
        array![
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [1.0, 1.0, 1.0, 0.0, 0.0],
            [1.0, 1.0, 0.0, 0.0, 0.0]
        ]
        .into_dyn()
    );
    assert_eq!(sequence_mask::<f64>(&[0, 0], 0).unwrap().shape(), &[2, 0]);
    assert_eq!(sequence_mask::<f64>(&[], 4).unwrap().shape(), &[0, 4]);
    assert_eq!(
        sequence_mask::<f64>(&[2, 2], 2).unwrap(),
        ArrayD::<f64>::ones(IxDyn(&[2, 2]))
    );
}

#[test]
fn sequence_mask_rejects_a_length_above_maxlen() {
    match sequence_mask::<f32>(&[2, 6, 1], 5) {
        Err(Error::InvalidArgument(m)) => {
            assert!(
                m.contains("sequence_mask") && m.contains("lengths[1] = 6") && m.contains('5'),
                "{m}"
            )
        }
        other => panic!("expected an invalid length, got {other:?}"),
    }
}
