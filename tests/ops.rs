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
