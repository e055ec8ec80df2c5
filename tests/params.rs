//! ParamStore, Scope, initializers, Dense and metrics.

mod common;

use common::assert_close;
use ndarray::{array, ArrayD, IxDyn};
use recurrent::init::Initializer;
use recurrent::metrics::accuracy;
use recurrent::Layer;
use recurrent::{Dense, Error, ParamStore, Scope, Tape};

fn stats(v: &ArrayD<f64>) -> (f64, f64, f64, f64) {
    let n = v.len() as f64;
    let mean = v.sum() / n;
    let std = (v.mapv(|x| (x - mean).powi(2)).sum() / n).sqrt();
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (mean, std, min, max)
}

#[test]
fn store_names_shapes_order_and_counts() {
    let mut params = ParamStore::<f32>::new(1);
    let scope = Scope::new("rnn").sub("basic_lstm_cell");
    assert_eq!(scope.join("kernel"), "rnn/basic_lstm_cell/kernel");
    assert_eq!(Scope::new("").join("w"), "w");
    let k = params
        .create(&scope.join("kernel"), &[5, 8], Initializer::GlorotUniform)
        .unwrap();
    let b = params
        .create(&scope.join("bias"), &[8], Initializer::Zeros)
        .unwrap();
    assert_eq!(params.num_params(), 48);
    assert_eq!(params.len(), 2);
    let names: Vec<&str> = params.iter().map(|(_, n, _)| n).collect();
    assert_eq!(
        names,
        ["rnn/basic_lstm_cell/kernel", "rnn/basic_lstm_cell/bias"]
    );
    assert_eq!(params.id("rnn/basic_lstm_cell/bias"), Some(b));
    assert_eq!(params.name(k), "rnn/basic_lstm_cell/kernel");
    assert!(matches!(
        params.create(&scope.join("kernel"), &[5, 8], Initializer::Zeros),
        Err(Error::InvalidArgument(_))
    ));
    assert!(params.create("empty", &[0, 3], Initializer::Zeros).is_err());
    assert!(params.create("", &[3], Initializer::Zeros).is_err());
    assert!(matches!(
        params.set(b, ArrayD::zeros(IxDyn(&[7]))),
        Err(Error::Shape { .. })
    ));
    params.set(b, ArrayD::ones(IxDyn(&[8]))).unwrap();
    assert!(params.value(b).iter().all(|&v| v == 1.0));
}

#[test]
fn one_seed_gives_one_model() {
    let build = |seed| {
        let mut p = ParamStore::<f64>::new(seed);
        p.create("a", &[4, 4], Initializer::GlorotNormal).unwrap();
        p.create("b", &[4, 4], Initializer::Orthogonal { gain: 1.0 })
            .unwrap();
        p
    };
    let (x, y, z) = (build(7), build(7), build(8));
    for ((_, _, a), (_, _, b)) in x.iter().zip(y.iter()) {
        assert_eq!(a, b);
    }
    assert_ne!(x.value(x.id("a").unwrap()), z.value(z.id("a").unwrap()));
}

#[test]
fn initializers_follow_their_distributions() {
    let mut params = ParamStore::<f64>::new(2);
    let mut draw = |init, shape: &[usize]| {
        let name = format!("p{}", params.len());
        let id = params.create(&name, shape, init).unwrap();
        params.value(id).clone()
    };
    assert!(draw(Initializer::Zeros, &[3]).iter().all(|&v| v == 0.0));
    assert!(draw(Initializer::Constant(0.25), &[3])
        .iter()
        .all(|&v| v == 0.25));
    let (m, s, _, _) = stats(&draw(
        Initializer::RandomNormal {
            mean: 1.0,
            stddev: 2.0,
        },
        &[200, 100],
    ));
    assert!((m - 1.0).abs() < 0.05 && (s - 2.0).abs() < 0.05, "{m} {s}");
    let (_, _, lo, hi) = stats(&draw(
        Initializer::TruncatedNormal {
            mean: 0.0,
            stddev: 0.5,
        },
        &[200, 100],
    ));
    assert!(lo >= -1.0 && hi <= 1.0);
    let (m, _, lo, hi) = stats(&draw(
        Initializer::RandomUniform {
            min: -0.1,
            max: 0.3,
        },
        &[200, 100],
    ));
    assert!(lo >= -0.1 && hi < 0.3 && (m - 0.1).abs() < 0.01);
    // Glorot uniform for [156, 512] (an LSTM(128) kernel on 28 inputs): limit sqrt(6 / 668).
    let limit = (6.0f64 / 668.0).sqrt();
    let (m, s, lo, hi) = stats(&draw(Initializer::GlorotUniform, &[156, 512]));
    assert!(lo >= -limit && hi < limit && m.abs() < 0.01);
    assert!((s - limit / 3f64.sqrt()).abs() < 0.002, "{s}");
    // Glorot normal: the truncated draw's standard deviation is sqrt(2 / (fan_in + fan_out)).
    let (_, s, _, _) = stats(&draw(Initializer::GlorotNormal, &[156, 512]));
    assert!((s - (2.0f64 / 668.0).sqrt()).abs() < 0.002, "{s}");
    let q = draw(Initializer::Orthogonal { gain: 2.0 }, &[6, 4])
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    let g = q.t().dot(&q);
    assert!((&g - &(ndarray::Array2::<f64>::eye(4) * 4.0))
        .iter()
        .all(|v| v.abs() < 1e-12));
    let mut store = ParamStore::<f64>::new(0);
    let bad = store.create(
        "bad",
        &[2],
        Initializer::RandomNormal {
            mean: 0.0,
            stddev: -1.0,
        },
    );
    assert!(matches!(bad, Err(Error::InvalidArgument(_))));
}

#[test]
fn dense_layer_values_and_errors() {
    let mut params = ParamStore::<f64>::new(3);
    let dense = Dense::new(&mut params, "dense", 2, 3).unwrap();
    params
        .set(
            dense.kernel(),
            array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn(),
        )
        .unwrap();
    params
        .set(dense.bias(), array![0.5, 0.0, -0.5].into_dyn())
        .unwrap();
    let tape = Tape::inference(&params);
    let y = dense
        .apply(&tape, tape.constant(array![[1.0, 1.0]].into_dyn()))
        .unwrap();
    assert_close(&tape.to_array(y), &array![[5.5, 7.0, 8.5]].into_dyn(), 0.0);
    let bad = tape.constant(array![[1.0, 1.0, 1.0]].into_dyn());
    // The layer and its scope are named, not the matmul inside it.
    let err = dense.apply(&tape, bad).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "Dense", .. }), "{err:?}");
    assert!(err.to_string().contains("\"dense\""), "{err}");
    assert!(Dense::new(&mut params, "zero", 0, 3).is_err());
    // Ids of another store are refused here, not a panic at the first forward.
    let empty = ParamStore::<f64>::new(0);
    assert!(matches!(
        Dense::from_params(&empty, dense.kernel(), dense.bias()),
        Err(Error::InvalidArgument(_))
    ));
    let same = Dense::from_params(&params, dense.kernel(), dense.bias()).unwrap();
    assert_eq!((same.input_size(), same.output_size()), (2, 3));
}

#[test]
fn accuracy_counts_argmax_hits() {
    let logits = array![
        [0.1, 0.9, 0.0],
        [2.0, 1.0, 0.0],
        [0.0, 0.0, 5.0],
        [1.0, 1.0, 0.0]
    ];
    // Ties go to the first index, like tf.argmax.
    assert_eq!(accuracy(&logits, &[1, 0, 1, 0]).unwrap(), 0.75);
    assert!(matches!(
        accuracy(&logits, &[1, 0]),
        Err(Error::Shape { .. })
    ));
}
