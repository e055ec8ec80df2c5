//! Robustness: optimizers refuse non-finite gradients, and the byte parsers never panic.
//!
//! `tests/data.rs` and `tests/checkpoint.rs` already feed thousands of random and byte-mutated
//! inputs to `parse_idx` (plain bytes and mutated gzip bytes) and to the checkpoint loaders
//! (`load_from_bytes`, `load_from_bytes_converting`, `load_new_from_bytes`). The loops here do
//! not repeat them; they cover what those miss:
//! - IDX mutations *inside* a valid gzip stream (mutate the plain file, then compress), so the
//!   parser sees well-formed gzip carrying a corrupt IDX file, plus multi-member and truncated
//!   streams;
//! - checkpoint headers mutated at the JSON level (other dtypes, huge or negative numbers, swapped
//!   offsets, renamed tensors, edited `recurrent_order` metadata) so that the header stays valid
//!   JSON and the loaders' own checks, not the JSON parser, must reject it.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use ndarray::{array, ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recurrent::checkpoint;
use recurrent::data::idx::parse_idx;
use recurrent::init::Initializer;
use recurrent::optim::{
    check_finite_loss, Adagrad, Adam, AdamW, GradientDescent, Momentum, Optimizer, RmsProp,
};
use recurrent::{Error, Grads, ParamStore};

// ---------------------------------------------------------------------------------------------
// Non-finite gradients and losses

fn two_params() -> (ParamStore<f64>, Grads<f64>) {
    let mut params = ParamStore::<f64>::new(0);
    let a = params
        .create_from("a", array![1.0, -2.0].into_dyn())
        .unwrap();
    let b = params
        .create_from("layer/b", array![[0.5, 0.25], [3.0, -1.0]].into_dyn())
        .unwrap();
    let mut grads = Grads::new();
    grads.insert(a, array![0.1, -0.2].into_dyn());
    grads.insert(b, array![[0.3, 0.0], [-0.4, 0.5]].into_dyn());
    (params, grads)
}

fn snapshot(params: &ParamStore<f64>) -> Vec<Vec<u64>> {
    params
        .iter()
        .map(|(_, _, v)| v.iter().map(|x| x.to_bits()).collect())
        .collect()
}

fn slots(opt: &dyn Optimizer<f64>, params: &ParamStore<f64>) -> Vec<Option<Vec<u64>>> {
    let mut out = Vec::new();
    for id in params.ids() {
        for name in opt.slot_names() {
            out.push(
                opt.slot(id, name)
                    .map(|s| s.iter().map(|x| x.to_bits()).collect()),
            );
        }
    }
    out
}

fn optimizers() -> Vec<(&'static str, Box<dyn Optimizer<f64>>)> {
    vec![
        (
            "GradientDescent",
            Box::new(GradientDescent::new(0.1).unwrap()),
        ),
        ("Momentum", Box::new(Momentum::new(0.1, 0.9).unwrap())),
        (
            "Nesterov",
            Box::new(Momentum::new(0.1, 0.9).unwrap().with_nesterov(true)),
        ),
        ("Adam", Box::new(Adam::new(0.1).unwrap())),
        ("AdamW", Box::new(AdamW::new(0.1, 0.01).unwrap())),
        ("RmsProp", Box::new(RmsProp::new(0.1).unwrap())),
        (
            "RmsProp centered",
            Box::new(
                RmsProp::new(0.1)
                    .unwrap()
                    .with_momentum(0.5)
                    .unwrap()
                    .with_centered(true),
            ),
        ),
        ("Adagrad", Box::new(Adagrad::new(0.1).unwrap())),
    ]
}

#[test]
fn non_finite_gradients_stop_every_optimizer_without_changing_anything() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for (label, mut opt) in optimizers() {
            let (mut params, grads) = two_params();
            // Two good steps, so slots exist and the step count is 2.
            opt.apply(&mut params, &grads).unwrap();
            opt.apply(&mut params, &grads).unwrap();
            let (before, slots_before) = (snapshot(&params), slots(opt.as_ref(), &params));

            let b = params.id("layer/b").unwrap();
            let mut poisoned = grads.clone();
            poisoned.get_mut(b).unwrap()[[1, 0]] = bad;
            let err = opt.apply(&mut params, &poisoned).unwrap_err();
            match &err {
                Error::NonFinite(msg) => {
                    assert_eq!(msg, "gradient of layer/b at step 3", "{label}")
                }
                other => panic!("{label}: expected NonFinite, got {other:?}"),
            }
            assert_eq!(
                err.to_string(),
                "non-finite value: gradient of layer/b at step 3"
            );
            assert_eq!(snapshot(&params), before, "{label}: parameters changed");
            assert_eq!(
                slots(opt.as_ref(), &params),
                slots_before,
                "{label}: slots changed"
            );
            assert_eq!(opt.step_count(), 2, "{label}: step count changed");

            // The first offending parameter (in creation order) is named.
            let a = params.id("a").unwrap();
            poisoned.get_mut(a).unwrap()[[0]] = bad;
            let err = opt.apply(&mut params, &poisoned).unwrap_err();
            assert!(
                err.to_string().ends_with("gradient of a at step 3"),
                "{err}"
            );

            // Training goes on once the gradients are finite again.
            opt.apply(&mut params, &grads).unwrap();
            assert_eq!(opt.step_count(), 3, "{label}");
            assert!(params.all_finite());
        }
    }
}

#[test]
fn the_first_step_is_step_one() {
    let (mut params, mut grads) = two_params();
    let a = params.id("a").unwrap();
    grads.get_mut(a).unwrap()[[1]] = f64::NAN;
    let mut opt = Adam::new(0.1).unwrap();
    let err = opt.apply(&mut params, &grads).unwrap_err();
    assert_eq!(err.to_string(), "non-finite value: gradient of a at step 1");
    assert!(opt.slot(a, "m").is_none(), "no slot was created");
}

#[test]
fn shape_errors_come_before_finiteness() {
    // An unknown parameter is an InvalidArgument even when a gradient is NaN.
    let (mut params, mut grads) = two_params();
    let mut other = ParamStore::<f64>::new(0);
    for k in 0..3 {
        other
            .create(&format!("p{k}"), &[1], Initializer::Zeros)
            .unwrap();
    }
    let unknown = other.id("p2").unwrap();
    grads.insert(unknown, ArrayD::from_elem(IxDyn(&[1]), f64::NAN));
    let err = GradientDescent::new(0.1)
        .unwrap()
        .apply(&mut params, &grads)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn f32_gradients_are_checked_too() {
    let mut params = ParamStore::<f32>::new(0);
    let w = params.create("w", &[3], Initializer::Zeros).unwrap();
    let mut grads = Grads::new();
    grads.insert(w, array![1.0f32, f32::NAN, 0.0].into_dyn());
    let mut opt = Adam::<f32>::new(0.1).unwrap();
    let err = opt.apply(&mut params, &grads).unwrap_err();
    assert_eq!(err.to_string(), "non-finite value: gradient of w at step 1");
    assert!(params.value(w).iter().all(|&x| x == 0.0));
}

#[test]
fn check_finite_loss_names_the_step() {
    assert!(check_finite_loss(1.5f64, 1).is_ok());
    assert!(check_finite_loss(f32::MAX, 1).is_ok());
    for (loss, text) in [
        (f64::NAN, "loss NaN at step 42"),
        (f64::INFINITY, "loss inf at step 42"),
        (f64::NEG_INFINITY, "loss -inf at step 42"),
    ] {
        match check_finite_loss(loss, 42) {
            Err(Error::NonFinite(msg)) => assert_eq!(msg, text),
            other => panic!("expected NonFinite, got {other:?}"),
        }
    }
    assert!(matches!(
        check_finite_loss(f32::NAN, 7),
        Err(Error::NonFinite(m)) if m == "loss NaN at step 7"
    ));
}

// ---------------------------------------------------------------------------------------------
// IDX inside valid gzip streams

fn idx_bytes(dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(payload);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// One random structural mutation of a plain IDX file.
fn mutate_idx(b: &mut Vec<u8>, rng: &mut StdRng) {
    match rng.random_range(0..7) {
        0 if !b.is_empty() => {
            let k = rng.random_range(0..b.len());
            b[k] = rng.random();
        }
        1 if !b.is_empty() => b.truncate(rng.random_range(0..b.len())),
        2 => b.extend((0..rng.random_range(1..20)).map(|_| rng.random::<u8>())),
        3 if b.len() >= 4 => b[3] = rng.random_range(0..8), // rank
        4 if b.len() >= 8 => {
            // A dimension: small, zero, or huge.
            let k = 4 + 4 * rng
                .random_range(0..(b.len() - 4) / 4)
                .min(usize::from(b[3]));
            if k + 4 <= b.len() {
                let d: u32 = match rng.random_range(0..3) {
                    0 => rng.random_range(0..6),
                    1 => 0,
                    _ => u32::MAX - rng.random_range(0..3),
                };
                b[k..k + 4].copy_from_slice(&d.to_be_bytes());
            }
        }
        5 if b.len() >= 3 => {
            b[2] = [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xff][rng.random_range(0..8)]
        }
        _ => {
            // Duplicate a slice in place (shifts the payload against the header).
            if b.len() > 2 {
                let i = rng.random_range(0..b.len() - 1);
                let j = rng.random_range(i + 1..b.len());
                let dup = b[i..j].to_vec();
                b.splice(j..j, dup);
            }
        }
    }
}

#[test]
fn gzip_wrapped_mutated_idx_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x1d8);
    let valid = [
        idx_bytes(&[3], &[1, 2, 3]),
        idx_bytes(&[2, 2, 3], &[9; 12]),
        idx_bytes(&[1, 1, 1, 1, 2], &[4, 5]),
        idx_bytes(&[4, 5], &(0..20).collect::<Vec<u8>>()),
    ];
    let (mut ok, mut err) = (0, 0);
    for round in 0..3000 {
        let mut plain = valid[rng.random_range(0..valid.len())].clone();
        for _ in 0..rng.random_range(0..4) {
            mutate_idx(&mut plain, &mut rng);
        }
        let bytes = match round % 4 {
            // A valid gzip stream around the (maybe) corrupt file.
            0 | 1 => gzip(&plain),
            // Split over two gzip members: MultiGzDecoder must join them.
            2 => {
                let cut = rng.random_range(0..=plain.len());
                let mut b = gzip(&plain[..cut]);
                b.extend(gzip(&plain[cut..]));
                b
            }
            // A truncated or extended stream (the trailer or a member cut off, junk after it).
            _ => {
                let mut b = gzip(&plain);
                if rng.random() {
                    b.truncate(rng.random_range(2..b.len()));
                } else {
                    b.extend((0..rng.random_range(1..8)).map(|_| rng.random::<u8>()));
                }
                b
            }
        };
        let plain_result = parse_idx(&plain);
        match parse_idx(&bytes) {
            Ok(a) => {
                assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
                // A well-formed stream decodes to what the plain bytes parse to.
                if round % 4 != 3 {
                    let p = plain_result
                        .as_ref()
                        .expect("gzip of an invalid file parsed");
                    assert_eq!((&a.dims, &a.data), (&p.dims, &p.data));
                }
                ok += 1;
            }
            Err(e) => {
                assert!(matches!(e, Error::Format(_)), "{e:?}");
                if round % 4 != 3 {
                    assert!(
                        plain_result.is_err(),
                        "round {round}: only the gzip form failed: {e}"
                    );
                }
                err += 1;
            }
        }
    }
    assert!(ok > 300 && err > 300, "ok {ok}, err {err}");
}

// ---------------------------------------------------------------------------------------------
// Checkpoint headers mutated as JSON

fn reference_store() -> ParamStore<f32> {
    let mut p = ParamStore::<f32>::new(5);
    p.create(
        "rnn/basic_lstm_cell/kernel",
        &[4, 8],
        Initializer::GlorotUniform,
    )
    .unwrap();
    p.create("rnn/basic_lstm_cell/bias", &[8], Initializer::Zeros)
        .unwrap();
    p.create("dense/kernel", &[2, 3], Initializer::GlorotUniform)
        .unwrap();
    p
}

fn split_checkpoint(bytes: &[u8]) -> (String, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        String::from_utf8(bytes[8..8 + n].to_vec()).unwrap(),
        bytes[8 + n..].to_vec(),
    )
}

fn join_checkpoint(header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

/// Replaces the `k`-th occurrence (mod the count) of `from` in `s` by `to`.
fn replace_nth(s: &str, from: &str, to: &str, k: usize) -> String {
    let hits: Vec<usize> = s.match_indices(from).map(|(i, _)| i).collect();
    if hits.is_empty() {
        return s.to_string();
    }
    let i = hits[k % hits.len()];
    format!("{}{}{}", &s[..i], to, &s[i + from.len()..])
}

/// One JSON-level mutation: the result is still (nearly always) valid JSON.
fn mutate_header(h: &str, rng: &mut StdRng) -> String {
    let k = rng.random_range(0..16);
    match rng.random_range(0..9) {
        0 => {
            let dtypes = [
                "F64", "F16", "BF16", "I64", "I32", "U8", "BOOL", "F8_E4M3", "F4", "XYZ", "",
            ];
            replace_nth(
                h,
                "\"F32\"",
                &format!("\"{}\"", dtypes[rng.random_range(0..dtypes.len())]),
                k,
            )
        }
        1 => {
            // A number anywhere (shape entry or offset) becomes another.
            let numbers: Vec<(usize, usize)> = {
                let bytes = h.as_bytes();
                let mut v = Vec::new();
                let mut i = 0;
                while i < bytes.len() {
                    if bytes[i].is_ascii_digit() {
                        let start = i;
                        while i < bytes.len() && bytes[i].is_ascii_digit() {
                            i += 1;
                        }
                        v.push((start, i));
                    } else {
                        i += 1;
                    }
                }
                v
            };
            if numbers.is_empty() {
                return h.to_string();
            }
            let (a, b) = numbers[k % numbers.len()];
            let to = match rng.random_range(0..6) {
                0 => "0".to_string(),
                1 => u64::MAX.to_string(),
                2 => "18446744073709551616".to_string(), // u64::MAX + 1
                3 => "-1".to_string(),
                4 => "1.5".to_string(),
                _ => rng.random_range(0..400u32).to_string(),
            };
            format!("{}{}{}", &h[..a], to, &h[b..])
        }
        2 => replace_nth(h, "\"shape\":[", "\"shape\":[1,", k),
        3 => replace_nth(h, "\"shape\":[", "\"shape\":[0,", k),
        4 => replace_nth(h, "\"shape\":[4,8]", "\"shape\":[]", k),
        5 => replace_nth(h, "rnn/basic_lstm_cell", "rnn/other", k),
        6 => replace_nth(h, "dense/kernel", "rnn/basic_lstm_cell/bias", k),
        7 => {
            // Edit the recorded creation order (names separated by "\n" in the metadata).
            let edits = [
                ("rnn/basic_lstm_cell/kernel\\n", ""),
                ("\\ndense/kernel", "\\ndense/kernel\\ndense/kernel"),
                ("\\ndense/kernel", "\\nunknown"),
                ("\"recurrent_order\":\"", "\"recurrent_order\":\"\\n"),
            ];
            let (from, to) = edits[rng.random_range(0..edits.len())];
            replace_nth(h, from, to, k)
        }
        _ => {
            // Swap the two numbers of a data_offsets pair.
            let hits: Vec<usize> = h
                .match_indices("\"data_offsets\":[")
                .map(|(i, _)| i)
                .collect();
            let start = hits[k % hits.len()] + "\"data_offsets\":[".len();
            let end = start + h[start..].find(']').unwrap();
            let pair: Vec<&str> = h[start..end].split(',').collect();
            if pair.len() == 2 {
                format!("{}{},{}{}", &h[..start], pair[1], pair[0], &h[end..])
            } else {
                h.to_string()
            }
        }
    }
}

#[test]
fn json_level_checkpoint_mutations_never_panic() {
    let mut rng = StdRng::seed_from_u64(0xc4e);
    let reference = reference_store();
    let valid = checkpoint::save_to_bytes(&reference).unwrap();
    let (header, data) = split_checkpoint(&valid);
    assert!(header.contains("recurrent_order"), "{header}");
    let before: Vec<Vec<u32>> = reference
        .iter()
        .map(|(_, _, v)| v.iter().map(|x| x.to_bits()).collect())
        .collect();
    let (mut ok, mut err) = (0, 0);
    for round in 0..2000 {
        let mut h = header.clone();
        for _ in 0..rng.random_range(1..3) {
            h = mutate_header(&h, &mut rng);
        }
        let mut d = data.clone();
        if round % 5 == 0 {
            d.truncate(rng.random_range(0..d.len()));
        }
        let bytes = join_checkpoint(&h, &d);
        let mut target = reference.clone();
        match checkpoint::load_from_bytes(&mut target, &bytes) {
            Ok(()) => ok += 1,
            Err(_) => {
                let after: Vec<Vec<u32>> = target
                    .iter()
                    .map(|(_, _, v)| v.iter().map(|x| x.to_bits()).collect())
                    .collect();
                assert_eq!(
                    after, before,
                    "round {round}: a failed load changed the store"
                );
                err += 1;
            }
        }
        let _ = checkpoint::load_from_bytes_converting(&mut target, &bytes);
        if let Ok(store) = checkpoint::load_new_from_bytes::<f32>(&bytes, 0) {
            // Whatever loads is a consistent store: unique names, non-empty values.
            let mut names: Vec<&str> = store.iter().map(|(_, n, _)| n).collect();
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "round {round}: duplicate names");
            assert!(store.iter().all(|(_, _, v)| !v.is_empty()));
        }
        let _ = checkpoint::load_new_from_bytes::<f64>(&bytes, 0);
    }
    assert!(err > 500, "ok {ok}, err {err}");
}
