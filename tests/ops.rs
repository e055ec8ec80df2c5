//! Every differentiable op against central finite differences in f64, plus forward values.

mod common;

use common::{assert_close, random};
use ndarray::{array, ArrayD, IxDyn};
use recurrent::gradcheck::{gradcheck, Tolerance};
use recurrent::init::Initializer;
use recurrent::{Error, Grads, ParamId, ParamStore, Tape};

fn check<F>(inputs: &[ArrayD<f64>], f: F)
where
    F: Fn(&Tape<'_, f64>, &[recurrent::Var]) -> recurrent::Result<recurrent::Var>,
{
    let params = ParamStore::<f64>::new(0);
    gradcheck(&params, inputs, Tolerance::default(), f)
        .unwrap()
        .assert_ok();
}

#[test]
fn matmul_gradients_non_square() {
    check(
        &[random(&[3, 4], 1.0, 1), random(&[4, 5], 1.0, 2)],
        |t, x| t.matmul(x[0], x[1]),
    );
}

#[test]
fn matmul_rejects_inner_dimension_mismatch() {
    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params);
    let a = t.constant(random(&[3, 4], 1.0, 1));
    let b = t.constant(random(&[5, 2], 1.0, 2));
    assert!(matches!(
        t.matmul(a, b),
        Err(Error::Shape { op: "matmul", .. })
    ));
}

#[test]
fn bias_add_gradients_rank_2_and_3() {
    check(&[random(&[3, 4], 1.0, 1), random(&[4], 1.0, 2)], |t, x| {
        t.bias_add(x[0], x[1])
    });
    check(
        &[random(&[2, 3, 4], 1.0, 3), random(&[4], 1.0, 4)],
        |t, x| t.bias_add(x[0], x[1]),
    );
}

#[test]
fn broadcasting_arithmetic_gradients() {
    let shapes: [(&[usize], &[usize]); 4] = [
        (&[3, 4], &[3, 4]),
        (&[3, 4], &[4]),
        (&[3, 1], &[1, 4]),
        (&[2, 3, 4], &[3, 1]),
    ];
    for (i, (a, b)) in shapes.iter().enumerate() {
        let inputs = [random(a, 1.0, i as u64), random(b, 1.0, 10 + i as u64)];
        check(&inputs, |t, x| t.add(x[0], x[1]));
        check(&inputs, |t, x| t.sub(x[0], x[1]));
        check(&inputs, |t, x| t.mul(x[0], x[1]));
    }
}

#[test]
fn incompatible_broadcast_is_an_error() {
    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params);
    let a = t.constant(random(&[3, 4], 1.0, 1));
    let b = t.constant(random(&[3], 1.0, 2));
    assert!(matches!(t.add(a, b), Err(Error::Shape { op: "add", .. })));
}

#[test]
fn activation_gradients_and_values() {
    let x = array![[-30.0, -1.0, 0.0, 0.5, 40.0]].into_dyn();
    check(&[random(&[3, 5], 3.0, 5)], |t, x| Ok(t.sigmoid(x[0])));
    check(&[random(&[3, 5], 3.0, 6)], |t, x| Ok(t.tanh(x[0])));
    // relu's kink at 0 is avoided by the random values (none is within the FD step of 0).
    check(&[random(&[3, 5], 3.0, 7)], |t, x| Ok(t.relu(x[0])));
    check(&[random(&[3, 5], 3.0, 8)], |t, x| Ok(t.scale(x[0], -2.5)));
    let params = ParamStore::<f64>::new(0);
    let t = Tape::inference(&params);
    let v = t.constant(x.clone());
    let s = t.to_array(t.sigmoid(v));
    let expected = x.mapv(|v: f64| 1.0 / (1.0 + (-v).exp()));
    assert_close(&s, &expected, 1e-15);
    assert!(s.iter().all(|v| v.is_finite()));
}

#[test]
fn reduction_gradients() {
    check(&[random(&[3, 4], 1.0, 1)], |t, x| Ok(t.sum(x[0])));
    check(&[random(&[3, 4], 1.0, 2)], |t, x| Ok(t.mean(x[0])));
    for axis in 0..3 {
        for keep in [false, true] {
            check(&[random(&[2, 3, 4], 1.0, 3)], |t, x| {
                t.sum_axis(x[0], axis, keep)
            });
            check(&[random(&[2, 3, 4], 1.0, 4)], |t, x| {
                t.mean_axis(x[0], axis, keep)
            });
        }
    }
}

#[test]
fn shape_op_gradients() {
    let x = random(&[2, 3, 4], 1.0, 9);
    check(std::slice::from_ref(&x), |t, v| t.reshape(v[0], &[4, 6]));
    for axis in 0..3 {
        // Only some parts are used, so the backward must fill the unused ones with zeros.
        check(std::slice::from_ref(&x), |t, v| {
            let parts = t.unstack(v[0], axis)?;
            t.stack(&[parts[1], parts[0]], axis)
        });
    }
    check(std::slice::from_ref(&x), |t, v| {
        t.transpose(v[0], &[1, 0, 2])
    });
    check(std::slice::from_ref(&x), |t, v| {
        t.transpose(v[0], &[2, 0, 1])
    });
    check(std::slice::from_ref(&x), |t, v| Ok(t.split(v[0], 3, 1)?[2]));
    check(std::slice::from_ref(&x), |t, v| {
        let parts = t.split(v[0], vec![1, 3], 2)?;
        t.concat(&[parts[1], parts[0], parts[1]], 2)
    });
    check(&[x.clone(), random(&[2, 3, 2], 1.0, 10)], |t, v| {
        t.concat(&[v[0], v[1]], 2)
    });
    check(std::slice::from_ref(&x), |t, v| {
        t.reverse_sequence(v[0], &[2, 0], 1, 0)
    });
    check(std::slice::from_ref(&x), |t, v| {
        t.gather_rows(v[0], &[2, 0])
    });
}

#[test]
fn select_and_dropout_gradients() {
    let cond = array![[true], [false], [true]].into_dyn();
    check(
        &[random(&[3, 4], 1.0, 1), random(&[3, 4], 1.0, 2)],
        |t, x| t.select(&cond, x[0], x[1]),
    );
    // gradcheck seeds every evaluation identically, so the dropout mask is fixed across runs.
    check(&[random(&[4, 6], 1.0, 3)], |t, x| t.dropout(x[0], 0.6));
}

#[test]
fn dropout_keeps_about_keep_prob_and_scales() {
    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params).with_seed(3);
    let x = t.constant(ArrayD::ones(IxDyn(&[200, 100])));
    let y = t.to_array(t.dropout(x, 0.7).unwrap());
    let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / y.len() as f64;
    assert!((kept - 0.7).abs() < 0.02, "kept {kept}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-12));
    assert!(matches!(t.dropout(x, 0.0), Err(Error::InvalidArgument(_))));
    assert!(matches!(t.dropout(x, 1.5), Err(Error::InvalidArgument(_))));
    let inference = Tape::inference(&params);
    let x = inference.constant(ArrayD::ones(IxDyn(&[3, 3])));
    assert_eq!(inference.dropout(x, 0.5).unwrap(), x);
}

#[test]
fn softmax_cross_entropy_gradients_and_stability() {
    let labels = array![[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]].into_dyn();
    check(&[random(&[2, 3], 2.0, 1)], |t, x| {
        let l = t.constant(labels.clone());
        t.softmax_cross_entropy_with_logits(l, x[0])
    });
    check(&[random(&[3, 4], 2.0, 2)], |t, x| {
        t.sparse_softmax_cross_entropy_with_logits(&[3, 0, 1], x[0])
    });

    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params);
    let logits = t.constant(array![[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]].into_dyn());
    let dense = t.to_array(
        t.softmax_cross_entropy_with_logits(
            t.constant(array![[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]].into_dyn()),
            logits,
        )
        .unwrap(),
    );
    let sparse = t.to_array(
        t.sparse_softmax_cross_entropy_with_logits(&[1, 2], logits)
            .unwrap(),
    );
    // -log softmax: 1000 for the first row; log(e^-2 + e^-1 + 1) for the second.
    let second = ((-2.0f64).exp() + (-1.0f64).exp() + 1.0).ln();
    assert_close(&dense, &array![1000.0, second].into_dyn(), 1e-12);
    assert_close(&sparse, &dense, 1e-12);
    assert!(t
        .sparse_softmax_cross_entropy_with_logits(&[1, 3], logits)
        .is_err());
    // No classes: the dense loss is a sum over nothing (0); no label can be valid.
    let none = t.constant(ArrayD::zeros(IxDyn(&[2, 0])));
    let dense_none = t.softmax_cross_entropy_with_logits(none, none).unwrap();
    assert_eq!(t.to_array(dense_none), ArrayD::<f64>::zeros(IxDyn(&[2])));
    assert!(matches!(
        t.sparse_softmax_cross_entropy_with_logits(&[0, 0], none),
        Err(Error::InvalidArgument(_))
    ));

    // The loss depends only on differences between logits, so a large common offset must not
    // change it: [1e7, 1e7 + 1] in f32 is [0, 1]. (Built as max + ln(sum) - z, the loss rounded
    // to 1.0 there.)
    let params32 = ParamStore::<f32>::new(0);
    let t = Tape::new(&params32);
    let near = t.constant(array![[0.0f32, 1.0]].into_dyn());
    let far = t.constant(array![[1e7f32, 1e7 + 1.0]].into_dyn());
    let half = t.constant(array![[0.5f32, 0.5]].into_dyn());
    // Exact values: ln(1 + e) = 1.3132617 for label 0; 0.5 * (1.3132617 + 0.3132617) with
    // labels [0.5, 0.5].
    let (sparse_want, dense_want) = ((1.0f64 + 1f64.exp()).ln(), (1.0f64 + 1f64.exp()).ln() - 0.5);
    for logits in [near, far] {
        let sparse = t
            .sparse_softmax_cross_entropy_with_logits(&[0], logits)
            .unwrap();
        let dense = t.softmax_cross_entropy_with_logits(half, logits).unwrap();
        assert!(
            (t.scalar(sparse) as f64 - sparse_want).abs() < 1e-6,
            "{}",
            t.scalar(sparse)
        );
        assert!(
            (t.scalar(dense) as f64 - dense_want).abs() < 1e-6,
            "{}",
            t.scalar(dense)
        );
    }
}

#[test]
fn parameters_get_gradients_and_repeated_reads_accumulate() {
    let mut params = ParamStore::<f64>::new(0);
    let w = params
        .create(
            "w",
            &[3, 3],
            Initializer::RandomNormal {
                mean: 0.0,
                stddev: 1.0,
            },
        )
        .unwrap();
    let b = params
        .create("b", &[3], Initializer::Constant(0.1))
        .unwrap();
    let report = gradcheck(
        &params,
        &[random(&[2, 3], 1.0, 4)],
        Tolerance::default(),
        |t, x| {
            // w is read twice, so its gradient is the sum of two paths.
            let h = t.tanh(t.bias_add(t.matmul(x[0], t.param(w))?, t.param(b))?);
            t.matmul(h, t.param(w))
        },
    )
    .unwrap();
    report.assert_ok();
    assert_eq!(report.checked, 6 + 9 + 3);
}

#[test]
fn gradcheck_catches_a_wrong_gradient() {
    // The checker must be able to fail: a "gradient" computed from a detached constant path.
    let params = ParamStore::<f64>::new(0);
    let report = gradcheck(
        &params,
        &[random(&[2, 2], 1.0, 1)],
        Tolerance::default(),
        |t, x| {
            let detached = t.constant(t.to_array(x[0]));
            t.mul(x[0], detached)
        },
    )
    .unwrap();
    assert!(!report.is_ok());
}

#[test]
fn gradcheck_fails_when_a_finite_difference_is_not_finite() {
    // f(x) = x * c with c a constant: 1 at the unperturbed input, `moved` once element 0 moves
    // up. The tape's gradient is 1 everywhere; the finite difference of element 0 is NaN or
    // infinite, which must count as a mismatch, not slip through the tolerance comparison (an
    // infinite one would meet its own infinite relative bound).
    let params = ParamStore::<f64>::new(0);
    let x = random(&[2, 2], 1.0, 1);
    let first = x.iter().next().copied().unwrap();
    for moved in [f64::NAN, f64::INFINITY] {
        let report = gradcheck(
            &params,
            std::slice::from_ref(&x),
            Tolerance::default(),
            |t, v| {
                let up = t.to_array(v[0]).iter().next().copied().unwrap() > first;
                let c = ArrayD::from_elem(IxDyn(&[2, 2]), if up { moved } else { 1.0 });
                t.mul(v[0], t.constant(c))
            },
        )
        .unwrap();
        assert_eq!(report.checked, 4);
        assert_eq!(
            report.mismatches.len(),
            1,
            "{moved}: {:?}",
            report.mismatches
        );
        assert_eq!(report.mismatches[0].index, 0);
        assert!(!report.mismatches[0].numeric.is_finite());
    }
}

#[test]
fn gradcheck_rejects_a_useless_tolerance() {
    let params = ParamStore::<f64>::new(0);
    let x = random(&[2], 1.0, 1);
    for tol in [
        Tolerance {
            step: 0.0,
            ..Tolerance::default()
        },
        Tolerance {
            step: f64::NAN,
            ..Tolerance::default()
        },
        Tolerance {
            atol: -1.0,
            ..Tolerance::default()
        },
        Tolerance {
            rtol: f64::INFINITY,
            ..Tolerance::default()
        },
    ] {
        let result = gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
            Ok(t.tanh(v[0]))
        });
        assert!(matches!(result, Err(Error::InvalidArgument(_))), "{tol:?}");
    }
}

/// A Var used with a tape other than its own used to read that tape's value at the same index,
/// silently; now every tape checks.
#[test]
fn a_var_of_another_tape_is_refused_not_misread() {
    let params = ParamStore::<f64>::new(0);
    let first = Tape::new(&params);
    let second = Tape::new(&params);
    let a = first.constant(ArrayD::from_elem(IxDyn(&[2]), 1.0));
    let b = second.constant(ArrayD::from_elem(IxDyn(&[2]), 5.0));
    assert_ne!(a, b, "same index, different tapes");
    let refused = |f: &dyn Fn()| {
        let payload =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("must panic");
        let message = match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(payload) => payload
                .downcast::<&str>()
                .map(|s| s.to_string())
                .unwrap_or_default(),
        };
        assert!(message.contains("another tape"), "{message}");
    };
    refused(&|| drop(second.value(a)));
    refused(&|| {
        second.tanh(a);
    });
    refused(&|| drop(second.add(a, b)));
    refused(&|| drop(second.backward(a)));
    let grads = first.backward(first.sum(first.tanh(a))).unwrap();
    refused(&|| {
        grads.wrt(b);
    });
}

#[test]
fn grads_accumulate_adds_inserts_and_is_all_or_nothing() {
    let ids: Vec<ParamId> = {
        let mut params = ParamStore::<f64>::new(0);
        (0..30)
            .map(|k| {
                params
                    .create(&format!("p{k}"), &[2], Initializer::Zeros)
                    .unwrap()
            })
            .collect()
    };
    let filled = |v: f64, n: usize| ArrayD::from_elem(IxDyn(&[n]), v);
    let mut total = Grads::new();
    for &id in &ids[..20] {
        total.insert(id, filled(1.0, 2));
    }
    let mut more = Grads::new();
    for &id in &ids[10..] {
        more.insert(id, filled(2.0, 2));
    }
    total.accumulate(&more).unwrap();
    for (k, &id) in ids.iter().enumerate() {
        let want = match k {
            0..=9 => 1.0,
            10..=19 => 3.0,
            _ => 2.0,
        };
        assert_eq!(total.get(id), Some(&filled(want, 2)), "parameter {k}");
    }
    // One gradient of the wrong shape among 29 good ones: an error, and nothing added (the
    // parameters are visited in hash order, so adding before checking changed some).
    let before = total.clone();
    let mut bad = more.clone();
    bad.insert(ids[17], filled(1.0, 3));
    assert!(matches!(total.accumulate(&bad), Err(Error::Shape { .. })));
    for &id in &ids {
        assert_eq!(total.get(id), before.get(id));
    }
}

#[test]
fn absurd_shapes_are_errors_and_empty_means_are_nan() {
    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params);
    let empty = t.constant(ArrayD::zeros(IxDyn(&[0])));
    let four = t.constant(ArrayD::zeros(IxDyn(&[4])));
    // Products that overflow, or whose non-zero part does not fit in isize.
    assert!(matches!(
        t.reshape(empty, &[usize::MAX, 0]),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        t.reshape(four, &[1 << 63, 2]),
        Err(Error::Shape { .. })
    ));
    assert_eq!(t.shape(t.reshape(four, &[2, 1, 2]).unwrap()), [2, 1, 2]);
    assert!(t.dropout_mask(&[1 << 40, 1 << 40, 0], 0.5).is_err());
    // tf.reduce_mean of nothing is NaN, not 0: an empty batch must not look like a zero loss.
    let rows = t.constant(ArrayD::zeros(IxDyn(&[0, 3])));
    assert!(t.scalar(t.mean(rows)).is_nan());
    let per_column = t.to_array(t.mean_axis(rows, 0, false).unwrap());
    assert_eq!(per_column.shape(), [3]);
    assert!(per_column.iter().all(|v| v.is_nan()));
}

#[test]
fn inference_tape_refuses_backward() {
    let params = ParamStore::<f32>::new(0);
    let t = Tape::inference(&params);
    let x = t.constant(ArrayD::ones(IxDyn(&[2])));
    let s = t.sum(x);
    assert!(t.backward(s).is_err());
    assert!(!t.requires_grad(s));
}

#[test]
fn clip_by_value_values_and_gradients() {
    // Values within the finite-difference step of a bound are avoided: the random values are
    // drawn, then kept only if clearly inside or outside [-0.5, 0.7].
    let x = random(&[4, 6], 1.5, 9).mapv(|v| {
        if (v + 0.5_f64).abs() < 1e-3 || (v - 0.7_f64).abs() < 1e-3 {
            v + 0.01
        } else {
            v
        }
    });
    check(std::slice::from_ref(&x), |t, v| {
        t.clip_by_value(v[0], -0.5, 0.7)
    });
    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params);
    let v = t.watch(array![[-2.0, -0.5, 0.0, 0.7, 3.0]].into_dyn());
    let y = t.clip_by_value(v, -0.5, 0.7).unwrap();
    assert_eq!(
        t.to_array(y),
        array![[-0.5, -0.5, 0.0, 0.7, 0.7]].into_dyn()
    );
    // TensorFlow's gradient: passes where min <= x <= max (bounds included), else zero.
    let g = t.backward(t.sum(y)).unwrap().wrt(v).unwrap().clone();
    assert_eq!(g, array![[0.0, 1.0, 1.0, 1.0, 0.0]].into_dyn());
    assert!(matches!(
        t.clip_by_value(v, 1.0, 0.0),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn layer_norm_values_and_gradients() {
    let (x, gamma, beta) = (
        random(&[3, 5], 2.0, 10),
        random(&[5], 1.0, 11),
        random(&[5], 1.0, 12),
    );
    for eps in [1e-12, 1e-3] {
        check(&[x.clone(), gamma.clone(), beta.clone()], |t, v| {
            t.layer_norm(v[0], v[1], v[2], eps)
        });
    }
    // Against the formula written out: (x - mean) / sqrt(var + eps) * gamma + beta per row.
    let params = ParamStore::<f64>::new(0);
    let t = Tape::inference(&params);
    let y = t
        .layer_norm(
            t.constant(x.clone()),
            t.constant(gamma.clone()),
            t.constant(beta.clone()),
            1e-3,
        )
        .unwrap();
    let mut expected = x.clone();
    for mut row in expected.rows_mut() {
        let mean = row.sum() / 5.0;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 5.0;
        for (k, v) in row.iter_mut().enumerate() {
            *v = (*v - mean) / (var + 1e-3).sqrt() * gamma[[k]] + beta[[k]];
        }
    }
    assert_close(&t.to_array(y), &expected, 1e-14);
    // Shapes and epsilon are checked.
    let xv = t.constant(x);
    let wrong = t.constant(random(&[4], 1.0, 13));
    let g = t.constant(gamma);
    assert!(matches!(
        t.layer_norm(xv, wrong, g, 1e-3),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        t.layer_norm(xv, g, g, -1.0),
        Err(Error::InvalidArgument(_))
    ));
}

/// Rows whose elements are all equal (variance 0) come out as `beta`, and the derivative is the
/// fused formula at `xhat = 0`: `dx = (gamma dy - mean(gamma dy)) / sqrt(eps)`, finite in f32
/// and f64 even for TensorFlow's epsilon 1e-12, and the finite-difference one.
#[test]
fn layer_norm_on_constant_rows() {
    let mut x = random(&[3, 5], 2.0, 14);
    for (r, mut row) in x.rows_mut().into_iter().enumerate() {
        row.fill([0.0, 1.5, -3.0][r]);
    }
    let (gamma, beta) = (random(&[5], 1.0, 15), random(&[5], 1.0, 16));
    // Epsilon 1e-2: the function's curvature is on a scale of 0.1, well above the step.
    check(&[x.clone(), gamma.clone(), beta.clone()], |t, v| {
        t.layer_norm(v[0], v[1], v[2], 1e-2)
    });
    // Epsilon 1e-12: linear on a scale of 1e-6, so differences of step 1e-10 resolve it.
    let params = ParamStore::<f64>::new(0);
    let tol = Tolerance {
        atol: 1e-6,
        rtol: 1e-4,
        step: 1e-10,
    };
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        let (g, b) = (t.constant(gamma.clone()), t.constant(beta.clone()));
        t.layer_norm(v[0], g, b, 1e-12)
    })
    .unwrap()
    .assert_ok();
    let dy = random(&[3, 5], 1.0, 17);
    fn grads<T: recurrent::Scalar>(
        x: &ArrayD<f64>,
        gamma: &ArrayD<f64>,
        beta: &ArrayD<f64>,
        dy: &ArrayD<f64>,
    ) -> (ArrayD<f64>, ArrayD<f64>) {
        let c = |a: &ArrayD<f64>| a.mapv(T::from_f64_lossy);
        let params = ParamStore::<T>::new(0);
        let t = Tape::new(&params);
        let xv = t.watch(c(x));
        let y = t
            .layer_norm(xv, t.constant(c(gamma)), t.constant(c(beta)), 1e-12)
            .unwrap();
        let loss = t.sum(t.mul(y, t.constant(c(dy))).unwrap());
        let back = |a: &ArrayD<T>| a.mapv(|v| v.to_f64_lossless());
        let dx = back(t.backward(loss).unwrap().wrt(xv).unwrap());
        (back(&t.to_array(y)), dx)
    }
    let mut expected = &dy * &gamma; // d xhat
    for mut row in expected.rows_mut() {
        let mean = row.sum() / 5.0;
        row.mapv_inplace(|v| 1e6 * (v - mean));
    }
    let beta_rows = beta.broadcast(IxDyn(&[3, 5])).unwrap().to_owned();
    let (y64, dx64) = grads::<f64>(&x, &gamma, &beta, &dy);
    assert_close(&y64, &beta_rows, 1e-15);
    assert_close(&(&dx64 / 1e6), &(&expected / 1e6), 1e-9);
    let (y32, dx32) = grads::<f32>(&x, &gamma, &beta, &dy);
    assert_close(&y32, &beta_rows, 1e-6);
    assert_close(&(&dx32 / 1e6), &(&expected / 1e6), 1e-5);
}

// ------------------------------------------------------------- ops for users' own losses

/// `random` shifted away from 0: uniform in `[lo, lo + 2 * scale)`.
fn positive(shape: &[usize], lo: f64, seed: u64) -> ArrayD<f64> {
    random(shape, 1.0, seed).mapv(|v| v + 1.0 + lo)
}

/// The value of a one-input computation on a fresh inference tape.
fn eval(
    x: &ArrayD<f64>,
    f: impl Fn(&Tape<'_, f64>, recurrent::Var) -> recurrent::Var,
) -> ArrayD<f64> {
    let params = ParamStore::<f64>::new(0);
    let t = Tape::inference(&params);
    let v = t.constant(x.clone());
    t.to_array(f(&t, v))
}

/// Whether `r` is a shape error of `op`.
fn shape_err<T: std::fmt::Debug>(r: recurrent::Result<T>, op: &str) -> bool {
    matches!(r, Err(Error::Shape { op: o, .. }) if o == op)
}

#[test]
fn unary_math_gradients() {
    check(&[random(&[3, 4], 2.0, 21)], |t, x| Ok(t.exp(x[0])));
    check(&[positive(&[3, 4], 0.2, 22)], |t, x| Ok(t.log(x[0])));
    check(&[positive(&[3, 4], 0.2, 23)], |t, x| Ok(t.sqrt(x[0])));
    check(&[random(&[3, 4], 2.0, 24)], |t, x| Ok(t.square(x[0])));
    // Composed, on a rank-3 input.
    check(&[positive(&[2, 3, 2], 0.5, 25)], |t, x| {
        Ok(t.sqrt(t.log(t.exp(t.square(x[0])))))
    });
}

#[test]
fn unary_math_values_by_hand() {
    let e = std::f64::consts::E;
    assert_close(
        &eval(&array![0.0, 1.0, -1.0, 2.5].into_dyn(), |t, v| t.exp(v)),
        &array![1.0, e, 1.0 / e, 2.5f64.exp()].into_dyn(),
        1e-15,
    );
    let logs = eval(&array![1.0, e, 0.5, 0.0, -1.0].into_dyn(), |t, v| t.log(v));
    assert_close(
        &logs.slice(ndarray::s![..3]).to_owned(),
        &array![0.0, 1.0, -std::f64::consts::LN_2],
        1e-15,
    );
    // As TensorFlow: ln(0) = -inf, ln(-1) = NaN; no error.
    assert_eq!(logs[3], f64::NEG_INFINITY);
    assert!(logs[4].is_nan());
    let roots = eval(&array![4.0, 0.0, 2.25, -1.0].into_dyn(), |t, v| t.sqrt(v));
    assert_eq!(roots.slice(ndarray::s![..3]), array![2.0, 0.0, 1.5]);
    assert!(roots[3].is_nan());
    assert_eq!(
        eval(&array![[-3.0, 0.5], [0.0, 2.0]].into_dyn(), |t, v| t
            .square(v)),
        array![[9.0, 0.25], [0.0, 4.0]].into_dyn()
    );
    // The gradients at the edges follow TensorFlow's formulas: d ln x = 1/x is inf at 0, and
    // d sqrt x = 0.5 / sqrt x too.
    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params);
    let x = t.watch(array![0.0, 4.0].into_dyn());
    let grads = t.backward(t.log(x)).unwrap();
    assert_eq!(
        grads.wrt(x).unwrap(),
        &array![f64::INFINITY, 0.25].into_dyn()
    );
    let grads = t.backward(t.sqrt(x)).unwrap();
    assert_eq!(
        grads.wrt(x).unwrap(),
        &array![f64::INFINITY, 0.25].into_dyn()
    );
}

#[test]
fn div_gradients_with_broadcasting() {
    let shapes: [(&[usize], &[usize]); 5] = [
        (&[3, 4], &[3, 4]),
        (&[3, 4], &[4]),
        (&[3, 1], &[1, 4]),
        (&[2, 3, 4], &[3, 1]),
        (&[4], &[2, 3, 4]),
    ];
    for (i, (a, b)) in shapes.iter().enumerate() {
        // The divisor kept in [0.5, 2.5) so the finite differences are well conditioned.
        let inputs = [
            random(a, 1.0, 30 + i as u64),
            positive(b, 0.5, 40 + i as u64),
        ];
        check(&inputs, |t, x| t.div(x[0], x[1]));
    }
}

#[test]
fn div_values_by_hand_and_errors() {
    let params = ParamStore::<f64>::new(0);
    let t = Tape::inference(&params);
    let a = t.constant(array![[6.0, 8.0], [1.0, -3.0]].into_dyn());
    let b = t.constant(array![2.0, 4.0].into_dyn());
    assert_eq!(
        t.to_array(t.div(a, b).unwrap()),
        array![[3.0, 2.0], [0.5, -0.75]].into_dyn()
    );
    let zero = t.constant(array![0.0].into_dyn());
    let q = t.to_array(t.div(a, zero).unwrap());
    assert_eq!(q[[0, 0]], f64::INFINITY);
    assert_eq!(q[[1, 1]], f64::NEG_INFINITY);
    let zz = t.to_array(t.div(zero, zero).unwrap());
    assert!(zz[0].is_nan());
    let c = t.constant(ArrayD::zeros(IxDyn(&[3])));
    assert!(shape_err(t.div(a, c), "div"));
}

#[test]
fn maximum_minimum_gradients_with_broadcasting() {
    let shapes: [(&[usize], &[usize]); 3] =
        [(&[3, 4], &[3, 4]), (&[3, 4], &[4]), (&[2, 3, 1], &[3, 4])];
    for (i, (a, b)) in shapes.iter().enumerate() {
        // Continuous random values: no ties, and none within the step of each other.
        let inputs = [random(a, 1.0, 50 + i as u64), random(b, 1.0, 60 + i as u64)];
        check(&inputs, |t, x| t.maximum(x[0], x[1]));
        check(&inputs, |t, x| t.minimum(x[0], x[1]));
    }
}

#[test]
fn maximum_minimum_values_and_tensorflow_tie_rule() {
    // tf.maximum's gradient goes to `a` where a >= b (ties included), tf.minimum's where a <= b.
    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params);
    let a = t.watch(array![1.0, 2.0, 3.0].into_dyn());
    let b = t.watch(array![1.0, 3.0, 2.0].into_dyn());
    let max = t.maximum(a, b).unwrap();
    let min = t.minimum(a, b).unwrap();
    assert_eq!(t.to_array(max), array![1.0, 3.0, 3.0].into_dyn());
    assert_eq!(t.to_array(min), array![1.0, 2.0, 2.0].into_dyn());
    let g = t.backward(max).unwrap();
    assert_eq!(g.wrt(a).unwrap(), &array![1.0, 0.0, 1.0].into_dyn());
    assert_eq!(g.wrt(b).unwrap(), &array![0.0, 1.0, 0.0].into_dyn());
    let g = t.backward(min).unwrap();
    assert_eq!(g.wrt(a).unwrap(), &array![1.0, 1.0, 0.0].into_dyn());
    assert_eq!(g.wrt(b).unwrap(), &array![0.0, 0.0, 1.0].into_dyn());

    // Broadcast `b`: its gradient sums over the positions it won. relu(x) = maximum(x, 0)
    // with the tie at 0 going to x.
    let x = t.watch(array![[-1.0, 0.0], [2.0, -3.0]].into_dyn());
    let zero = t.watch(array![0.0].into_dyn());
    let r = t.maximum(x, zero).unwrap();
    assert_eq!(t.to_array(r), array![[0.0, 0.0], [2.0, 0.0]].into_dyn());
    let g = t.backward(r).unwrap();
    assert_eq!(
        g.wrt(x).unwrap(),
        &array![[0.0, 1.0], [1.0, 0.0]].into_dyn()
    );
    assert_eq!(g.wrt(zero).unwrap(), &array![2.0].into_dyn());

    // NaN propagates from either side (as np.maximum).
    let n = t.constant(array![f64::NAN, 1.0].into_dyn());
    let one = t.constant(array![0.0, f64::NAN].into_dyn());
    assert!(t
        .to_array(t.maximum(n, one).unwrap())
        .iter()
        .all(|v| v.is_nan()));
    assert!(t
        .to_array(t.minimum(one, n).unwrap())
        .iter()
        .all(|v| v.is_nan()));

    let c = t.constant(ArrayD::zeros(IxDyn(&[2])));
    assert!(shape_err(t.maximum(a, c), "maximum"));
    assert!(shape_err(t.minimum(c, a), "minimum"));
}

#[test]
fn softmax_and_log_softmax_gradients() {
    for (k, shape) in [&[5][..], &[3, 4], &[2, 3, 4]].into_iter().enumerate() {
        check(&[random(shape, 3.0, 70 + k as u64)], |t, x| t.softmax(x[0]));
        check(&[random(shape, 3.0, 80 + k as u64)], |t, x| {
            t.log_softmax(x[0])
        });
    }
    // Through a loss of one's own: -sum(labels * log_softmax(z)) is the cross-entropy.
    check(&[random(&[3, 4], 2.0, 90)], |t, x| {
        let labels = t.constant(
            array![
                [0.0, 1.0, 0.0, 0.0],
                [0.5, 0.5, 0.0, 0.0],
                [0.0, 0.0, 0.0, 1.0]
            ]
            .into_dyn(),
        );
        Ok(t.sum(t.mul(labels, t.log_softmax(x[0])?)?))
    });
}

#[test]
fn softmax_and_log_softmax_values_by_hand() {
    let e1 = 1f64.exp();
    let e2 = 2f64.exp();
    let s = 1.0 + e1 + e2;
    let x = array![[0.0, 1.0, 2.0], [5.0, 5.0, 5.0]].into_dyn();
    assert_close(
        &eval(&x, |t, v| t.softmax(v).unwrap()),
        &array![[1.0 / s, e1 / s, e2 / s], [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]].into_dyn(),
        1e-15,
    );
    assert_close(
        &eval(&x, |t, v| t.log_softmax(v).unwrap()),
        &array![
            [-s.ln(), 1.0 - s.ln(), 2.0 - s.ln()],
            [-(3f64.ln()), -(3f64.ln()), -(3f64.ln())]
        ]
        .into_dyn(),
        1e-15,
    );
    // Large logits: no overflow, and log_softmax keeps what ln(softmax) would lose to -inf.
    let big = array![[1000.0, 0.0, -1000.0]].into_dyn();
    assert_eq!(
        eval(&big, |t, v| t.softmax(v).unwrap()),
        array![[1.0, 0.0, 0.0]].into_dyn()
    );
    assert_eq!(
        eval(&big, |t, v| t.log_softmax(v).unwrap()),
        array![[0.0, -1000.0, -2000.0]].into_dyn()
    );
    // The same differences far from zero in f32 give the same result as near it.
    let params = ParamStore::<f32>::new(0);
    let t = Tape::inference(&params);
    let near = t.constant(array![[0.0f32, 1.0]].into_dyn());
    let far = t.constant(array![[1e7f32, 1e7 + 1.0]].into_dyn());
    let want = -((1.0f64 + 1f64.exp()).ln());
    for z in [near, far] {
        let y = t.to_array(t.log_softmax(z).unwrap());
        assert!((y[[0, 0]] as f64 - want).abs() < 1e-6, "{y}");
    }
    // Rows of nothing are fine; no axis, or an empty last axis, is not.
    let params = ParamStore::<f64>::new(0);
    let t = Tape::inference(&params);
    let no_rows = t.constant(ArrayD::zeros(IxDyn(&[0, 3])));
    assert_eq!(t.shape(t.softmax(no_rows).unwrap()), [0, 3]);
    let scalar = t.constant(ArrayD::zeros(IxDyn(&[])));
    let empty = t.constant(ArrayD::zeros(IxDyn(&[2, 0])));
    assert!(shape_err(t.softmax(scalar), "softmax"));
    assert!(shape_err(t.softmax(empty), "softmax"));
    assert!(shape_err(t.log_softmax(scalar), "log_softmax"));
    assert!(shape_err(t.log_softmax(empty), "log_softmax"));
}

#[test]
fn argmax_and_sequence_mask_on_the_tape() {
    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params);
    let logits = t.watch(array![[[0.1, 2.0, -1.0], [3.0, 3.0, 0.0]]].into_dyn());
    assert_eq!(t.argmax(logits).unwrap(), array![[1, 0]].into_dyn());
    assert!(matches!(
        t.argmax(t.constant(ArrayD::zeros(IxDyn(&[])))),
        Err(Error::InvalidArgument(_))
    ));
    let mask = t.sequence_mask(&[2, 0, 3], 3).unwrap();
    assert_eq!(
        t.to_array(mask),
        array![[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]].into_dyn()
    );
    assert!(!t.requires_grad(mask), "a mask is a constant");
    assert!(matches!(
        t.sequence_mask(&[4], 3),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn masked_mean_gradients_into_x_and_mask() {
    // x [batch, time, dim] with a [batch, time, 1] mask; both watched, the mask positive so the
    // denominator stays away from 0.
    check(
        &[random(&[2, 3, 4], 1.0, 100), positive(&[2, 3, 1], 0.0, 101)],
        |t, x| t.masked_mean(x[0], x[1]),
    );
    // Same shapes, and a mask that broadcasts the other way ([dim]).
    check(
        &[random(&[3, 4], 1.0, 102), positive(&[3, 4], 0.0, 103)],
        |t, x| t.masked_mean(x[0], x[1]),
    );
    check(
        &[random(&[3, 4], 1.0, 104), positive(&[4], 0.0, 105)],
        |t, x| t.masked_mean(x[0], x[1]),
    );
    // With a constant 0/1 mask, only x gets a gradient, zero at the masked positions.
    check(&[random(&[3, 4], 1.0, 106)], |t, x| {
        let mask = t.sequence_mask(&[4, 1, 0], 4)?;
        t.masked_mean(x[0], mask)
    });
}

#[test]
fn masked_mean_values_by_hand() {
    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params);
    // [batch = 2, time = 3, dim = 2], lengths [2, 1]: the mean of the 6 valid elements.
    let x = t.watch(
        array![
            [[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
            [[5.0, 6.0], [-7.0, 9.0], [8.0, 8.0]]
        ]
        .into_dyn(),
    );
    let mask = t
        .reshape(t.sequence_mask(&[2, 1], 3).unwrap(), &[2, 3, 1])
        .unwrap();
    let m = t.masked_mean(x, mask).unwrap();
    assert_eq!(t.scalar(m), (1.0 + 2.0 + 3.0 + 4.0 + 5.0 + 6.0) / 6.0);
    let g = t.backward(m).unwrap();
    let s = 1.0 / 6.0;
    assert_eq!(
        g.wrt(x).unwrap(),
        &array![
            [[s, s], [s, s], [0.0, 0.0]],
            [[s, s], [0.0, 0.0], [0.0, 0.0]]
        ]
        .into_dyn()
    );
    // Weights other than 0/1: the weighted mean.
    let y = t.constant(array![2.0, 4.0].into_dyn());
    let w = t.constant(array![3.0, 1.0].into_dyn());
    assert_eq!(t.scalar(t.masked_mean(y, w).unwrap()), (6.0 + 4.0) / 4.0);
    // Nothing selected: NaN, like tf.reduce_mean of nothing.
    let none = t.sequence_mask(&[0, 0], 3).unwrap();
    let x2 = t.constant(ArrayD::ones(IxDyn(&[2, 3])));
    assert!(t.scalar(t.masked_mean(x2, none).unwrap()).is_nan());
    let bad = t.constant(ArrayD::ones(IxDyn(&[2, 2])));
    assert!(shape_err(t.masked_mean(x2, bad), "masked_mean"));
}

#[test]
fn mean_squared_error_gradients_values_and_errors() {
    check(
        &[random(&[3, 4], 1.0, 110), random(&[3, 4], 1.0, 111)],
        |t, x| t.mean_squared_error(x[0], x[1]),
    );
    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params);
    let p = t.watch(array![[1.0, 2.0], [3.0, 5.0]].into_dyn());
    let l = t.constant(array![[0.0, 2.0], [5.0, 5.0]].into_dyn());
    let mse = t.mean_squared_error(p, l).unwrap();
    assert_eq!(t.scalar(mse), (1.0 + 0.0 + 4.0 + 0.0) / 4.0);
    let g = t.backward(mse).unwrap();
    // 2 (p - l) / n
    assert_eq!(
        g.wrt(p).unwrap(),
        &array![[0.5, 0.0], [-1.0, 0.0]].into_dyn()
    );
    // No broadcasting, even between broadcastable shapes.
    let row = t.constant(array![0.0, 2.0].into_dyn());
    assert!(shape_err(
        t.mean_squared_error(p, row),
        "mean_squared_error"
    ));
    let empty = t.constant(ArrayD::zeros(IxDyn(&[0, 2])));
    assert!(t
        .scalar(t.mean_squared_error(empty, empty).unwrap())
        .is_nan());
}

/// TensorFlow's sequence_loss written out in plain ndarray, the naive way (exp, sum, ln):
/// `sum w * -ln(softmax(z)[target]) / (sum w + 1e-12)`.
fn sequence_loss_by_hand(
    logits: &ArrayD<f64>,
    targets: &ndarray::Array2<usize>,
    weights: &ndarray::Array2<f64>,
) -> f64 {
    let (batch, time, classes) = (logits.shape()[0], logits.shape()[1], logits.shape()[2]);
    let (mut total, mut wsum) = (0.0, 0.0);
    for b in 0..batch {
        for s in 0..time {
            let denom: f64 = (0..classes).map(|k| logits[[b, s, k]].exp()).sum();
            let p = logits[[b, s, targets[[b, s]]]].exp() / denom;
            total += weights[[b, s]] * -p.ln();
            wsum += weights[[b, s]];
        }
    }
    total / (wsum + 1e-12)
}

#[test]
fn sequence_loss_gradients_into_logits_and_weights() {
    let targets = array![[0, 3, 1], [2, 2, 0]];
    check(&[random(&[2, 3, 4], 2.0, 120)], |t, x| {
        t.sequence_loss(x[0], &targets, None)
    });
    let mask = array![[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]].into_dyn();
    check(&[random(&[2, 3, 4], 2.0, 121)], |t, x| {
        let w = t.constant(mask.clone());
        t.sequence_loss(x[0], &targets, Some(w))
    });
    // Weights watched too (positive, so the normaliser stays away from 0).
    check(
        &[random(&[2, 3, 4], 2.0, 122), positive(&[2, 3], 0.0, 123)],
        |t, x| t.sequence_loss(x[0], &targets, Some(x[1])),
    );
}

#[test]
fn sequence_loss_matches_the_equation_and_the_sparse_loss() {
    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params);
    let z = random(&[3, 4, 5], 3.0, 130);
    let targets = array![[0, 4, 1, 2], [3, 3, 0, 1], [4, 2, 2, 0]];
    let lengths = [4, 2, 1];
    let logits = t.watch(z.clone());
    let mask = t.sequence_mask(&lengths, 4).unwrap();
    let weighted = t.sequence_loss(logits, &targets, Some(mask)).unwrap();
    let wmask = tensor_mask(&lengths, 4);
    assert_close(
        &t.to_array(weighted),
        &ArrayD::from_elem(IxDyn(&[]), sequence_loss_by_hand(&z, &targets, &wmask)),
        1e-14,
    );
    // Unweighted, it is the mean of the sparse loss over all positions (up to TF's 1e-12).
    let plain = t.sequence_loss(logits, &targets.view(), None).unwrap();
    let flat = t.reshape(logits, &[12, 5]).unwrap();
    let sparse = t.mean(
        t.sparse_softmax_cross_entropy_with_logits(targets.as_slice().unwrap(), flat)
            .unwrap(),
    );
    assert_close(&t.to_array(plain), &t.to_array(sparse), 1e-12);
    // And `None` is all-ones weights; an ArrayD of targets works as well.
    let ones = t.constant(ArrayD::ones(IxDyn(&[3, 4])));
    let dyn_targets = targets.clone().into_dyn();
    let with_ones = t.sequence_loss(logits, &dyn_targets, Some(ones)).unwrap();
    assert_eq!(t.scalar(with_ones), t.scalar(plain));

    // The gradient of the masked loss is zero at masked positions and sums to zero per
    // position (softmax minus one-hot), scaled by 1 / (sum w).
    let g = t.backward(weighted).unwrap();
    let dz = g.wrt(logits).unwrap();
    for b in 0..3 {
        for s in 0..4 {
            let row = dz.slice(ndarray::s![b, s, ..]);
            if s >= lengths[b] {
                assert!(row.iter().all(|&v| v == 0.0), "masked position [{b}, {s}]");
            } else {
                assert!(row.sum().abs() < 1e-15);
                assert!(row[targets[[b, s]]] < 0.0);
            }
        }
    }
}

fn tensor_mask(lengths: &[usize], maxlen: usize) -> ndarray::Array2<f64> {
    ndarray::Array2::from_shape_fn((lengths.len(), maxlen), |(b, s)| {
        if s < lengths[b] {
            1.0
        } else {
            0.0
        }
    })
}

#[test]
fn sequence_loss_zero_weights_stability_and_errors() {
    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params);
    let logits = t.watch(random(&[2, 3, 4], 2.0, 140));
    let targets = array![[0, 3, 1], [2, 2, 0]];
    // All-zero weights: TensorFlow's 1e-12 makes the loss 0 and the gradient 0, not NaN.
    let zeros = t.constant(ArrayD::zeros(IxDyn(&[2, 3])));
    let loss = t.sequence_loss(logits, &targets, Some(zeros)).unwrap();
    assert_eq!(t.scalar(loss), 0.0);
    let g = t.backward(loss).unwrap();
    assert!(g.wrt(logits).unwrap().iter().all(|&v| v == 0.0));

    // Large logits: finite and exact (-log softmax of the target).
    let big = t.constant(array![[[1000.0, 0.0, -1000.0]], [[1.0, 2.0, 3.0]]].into_dyn());
    let l = t.sequence_loss(big, &array![[1], [2]], None).unwrap();
    let second = ((-2.0f64).exp() + (-1.0f64).exp() + 1.0).ln();
    assert!((t.scalar(l) - (1000.0 + second) / (2.0 + 1e-12)).abs() < 1e-12);

    // Errors name the op.
    let flat = t.constant(ArrayD::zeros(IxDyn(&[2, 4])));
    assert!(shape_err(
        t.sequence_loss(flat, &targets, None),
        "sequence_loss"
    ));
    assert!(shape_err(
        t.sequence_loss(logits, &array![[0, 1], [2, 3]], None),
        "sequence_loss"
    ));
    assert!(shape_err(
        t.sequence_loss(logits, &array![0, 1, 2, 3, 0, 1], None),
        "sequence_loss"
    ));
    let wrong_w = t.constant(ArrayD::ones(IxDyn(&[3, 2])));
    assert!(shape_err(
        t.sequence_loss(logits, &targets, Some(wrong_w)),
        "sequence_loss"
    ));
    match t.sequence_loss(logits, &array![[0, 4, 1], [2, 2, 0]], None) {
        Err(Error::InvalidArgument(m)) => {
            assert!(
                m.contains("sequence_loss") && m.contains('4') && m.contains("4 classes"),
                "{m}"
            )
        }
        other => panic!("expected an invalid target, got {other:?}"),
    }
}

#[test]
fn embedding_lookup_gradients_with_repeated_ids() {
    // Ids repeat (1 three times, 3 twice) and rows 2 and 4 are unused: their gradient is 0.
    let ids = array![[1, 3, 1], [0, 1, 3]].into_dyn();
    check(&[random(&[5, 3], 1.0, 150)], |t, x| {
        t.embedding_lookup(x[0], &ids)
    });
    // Rank-1 and rank-0 ids.
    check(&[random(&[4, 2], 1.0, 151)], |t, x| {
        t.embedding_lookup(x[0], &array![2, 2, 0])
    });
    let scalar_id = ArrayD::from_elem(IxDyn(&[]), 3usize);
    check(&[random(&[4, 2], 1.0, 152)], |t, x| {
        t.embedding_lookup(x[0], &scalar_id)
    });
    // Through a model: embed, then a loss.
    check(
        &[random(&[6, 4], 1.0, 153), random(&[4, 3], 1.0, 154)],
        |t, x| {
            let e = t.embedding_lookup(x[0], &array![[5, 0], [5, 5]])?; // [2, 2, 4]
            let h = t.reshape(e, &[4, 4])?;
            t.sparse_softmax_cross_entropy_with_logits(&[0, 2, 1, 1], t.matmul(h, x[1])?)
        },
    );
}

#[test]
fn embedding_lookup_values_scatter_and_errors() {
    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params);
    let table = t.watch(array![[0.0, 0.5], [1.0, 1.5], [2.0, 2.5]].into_dyn());
    let ids = array![[2, 0, 2]];
    let out = t.embedding_lookup(table, &ids).unwrap();
    assert_eq!(
        t.to_array(out),
        array![[[2.0, 2.5], [0.0, 0.5], [2.0, 2.5]]].into_dyn()
    );
    let scalar = t
        .embedding_lookup(table, &ArrayD::from_elem(IxDyn(&[]), 1usize))
        .unwrap();
    assert_eq!(t.to_array(scalar), array![1.0, 1.5].into_dyn());
    // Scatter-add: row 2 used twice gets twice the gradient, row 1 unused gets 0.
    let g = t.backward(out).unwrap();
    assert_eq!(
        g.wrt(table).unwrap(),
        &array![[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]].into_dyn()
    );

    match t.embedding_lookup(table, &array![0, 7]) {
        Err(Error::InvalidArgument(m)) => {
            assert!(
                m.contains("embedding_lookup") && m.contains("id 7") && m.contains("size 3"),
                "{m}"
            )
        }
        other => panic!("expected an invalid id, got {other:?}"),
    }
    let vector = t.constant(array![1.0, 2.0].into_dyn());
    assert!(shape_err(
        t.embedding_lookup(vector, &array![0]),
        "embedding_lookup"
    ));
}

#[test]
fn dense_gradients_rank_1_2_and_3() {
    for (i, x_shape) in [&[4][..], &[3, 4], &[2, 3, 4]].into_iter().enumerate() {
        let seed = 140 + 3 * i as u64;
        check(
            &[
                random(x_shape, 1.0, seed),
                random(&[4, 5], 1.0, seed + 1),
                random(&[5], 1.0, seed + 2),
            ],
            |t, x| t.dense(x[0], x[1], x[2]),
        );
    }
}

/// `dense` is reshape -> matmul -> bias_add -> reshape in one op: the same values and
/// gradients, bit for bit (in f32, where a different summation order would show).
#[test]
fn dense_equals_reshape_matmul_bias_add_bit_for_bit() {
    let params = ParamStore::<f32>::new(0);
    let t = Tape::new(&params);
    let f32s = |a: ArrayD<f64>| a.mapv(|v| v as f32);
    let x = t.watch(f32s(random(&[3, 7, 33], 1.0, 150)));
    let k = t.watch(f32s(random(&[33, 19], 1.0, 151)));
    let b = t.watch(f32s(random(&[19], 1.0, 152)));
    let fused = t.dense(x, k, b).unwrap();
    assert_eq!(t.shape(fused), vec![3, 7, 19]);
    let flat = t.reshape(x, &[21, 33]).unwrap();
    let y = t.bias_add(t.matmul(flat, k).unwrap(), b).unwrap();
    let composed = t.reshape(y, &[3, 7, 19]).unwrap();
    assert_eq!(t.to_array(fused), t.to_array(composed));
    let direction = t.constant(f32s(random(&[3, 7, 19], 1.0, 153)));
    let grads = |out| {
        let loss = t.sum(t.mul(out, direction).unwrap());
        let g = t.backward(loss).unwrap();
        [x, k, b].map(|v| g.wrt(v).unwrap().clone())
    };
    assert_eq!(grads(fused), grads(composed));
    // A rank-2 input that is not in standard layout (a transposed view) gives the same too.
    let xt = t.watch(f32s(random(&[33, 5], 1.0, 154)).reversed_axes());
    let copy = t.watch(t.to_array(xt).as_standard_layout().into_owned());
    assert_eq!(
        t.to_array(t.dense(xt, k, b).unwrap()),
        t.to_array(t.dense(copy, k, b).unwrap())
    );
}

#[test]
fn dense_rejects_mismatched_kernel_and_bias() {
    let params = ParamStore::<f64>::new(0);
    let t = Tape::new(&params);
    let x = t.constant(random(&[2, 3, 4], 1.0, 160));
    let good_kernel = t.constant(random(&[4, 5], 1.0, 161));
    let bad_kernel = t.constant(random(&[3, 5], 1.0, 162));
    let bias = t.constant(random(&[5], 1.0, 163));
    let bad_bias = t.constant(random(&[4], 1.0, 164));
    let scalar = t.constant(ArrayD::from_elem(IxDyn(&[]), 1.0));
    for (x, k, b, shape) in [
        (x, bad_kernel, bias, "[3, 5]"),
        (x, good_kernel, bad_bias, "[4]"),
        (scalar, good_kernel, bias, "[]"),
    ] {
        let err = t.dense(x, k, b).unwrap_err();
        assert!(matches!(err, Error::Shape { op: "dense", .. }), "{err}");
        assert!(err.to_string().contains(shape), "{err}");
    }
}

/// The softmax losses' backward pass takes over the probabilities kept by the forward pass;
/// a second backward pass over the same tape recomputes them: the same gradients exactly.
#[test]
fn softmax_losses_backward_twice_on_one_tape() {
    let params = ParamStore::<f32>::new(0);
    let t = Tape::new(&params);
    let z = t.watch(random(&[2, 3, 4], 2.0, 170).mapv(|v| v as f32));
    let targets = array![[0, 3, 1], [2, 2, 0]];
    let seq = t.sequence_loss(z, &targets, None).unwrap();
    let first = t.backward(seq).unwrap().wrt(z).unwrap().clone();
    let second = t.backward(seq).unwrap().wrt(z).unwrap().clone();
    assert_eq!(first, second);
    assert!(first.iter().any(|&v| v != 0.0));
    let flat = t.watch(random(&[5, 4], 2.0, 171).mapv(|v| v as f32));
    let sparse = t.mean(
        t.sparse_softmax_cross_entropy_with_logits(&[0, 3, 1, 2, 2], flat)
            .unwrap(),
    );
    let first = t.backward(sparse).unwrap().wrt(flat).unwrap().clone();
    let second = t.backward(sparse).unwrap().wrt(flat).unwrap().clone();
    assert_eq!(first, second);
}
