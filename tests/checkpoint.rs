//! Checkpoints: safetensors round trips, mismatch errors that leave the store untouched, atomic
//! saves, robustness against corrupt bytes, and the file format checked independently of the
//! `safetensors` crate.

mod common;

use std::fs;
use std::path::Path;

use ndarray::{arr0, ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recurrent::checkpoint::{self, FORMAT};
use recurrent::init::Initializer;
use recurrent::{Error, ParamStore, Scalar};

/// Values whose bits must survive a round trip exactly (parameters are finite: NaN and
/// infinities are refused, see `non_finite_values_are_refused_by_every_loader`).
const SPECIAL: [f64; 8] = [
    0.0,
    -0.0,
    f32::MAX as f64, // the largest value both types hold
    -1e-45,          // subnormal in f32
    f32::MIN_POSITIVE as f64,
    1e-310, // subnormal in f64, zero in f32
    f64::MIN_POSITIVE,
    -123.456,
];

/// A store with parameters created out of alphabetical order, a scalar, a 3-d array and special
/// values.
fn model<T: Scalar>(seed: u64) -> ParamStore<T> {
    let mut p = ParamStore::<T>::new(seed);
    p.create(
        "rnn/basic_lstm_cell/kernel",
        &[5, 12],
        Initializer::GlorotUniform,
    )
    .unwrap();
    p.create("rnn/basic_lstm_cell/bias", &[12], Initializer::Zeros)
        .unwrap();
    p.create(
        "dense/kernel",
        &[3, 2, 2],
        Initializer::RandomNormal {
            mean: 0.0,
            stddev: 1.0,
        },
    )
    .unwrap();
    p.create_from(
        "a_scalar",
        arr0(T::from_f64_lossy(seed as f64 + 0.5)).into_dyn(),
    )
    .unwrap();
    let special: Vec<T> = SPECIAL.iter().map(|&x| T::from_f64_lossy(x)).collect();
    p.create_from(
        "special",
        ArrayD::from_shape_vec(IxDyn(&[2, 4]), special).unwrap(),
    )
    .unwrap();
    p
}

/// Every parameter's name, shape and value bits, in creation order.
fn snapshot<T: Scalar>(p: &ParamStore<T>) -> Vec<(String, Vec<usize>, Vec<u64>)> {
    p.iter()
        .map(|(_, name, v)| {
            let bits = v.iter().map(|x| x.to_f64_lossless().to_bits()).collect();
            (name.to_string(), v.shape().to_vec(), bits)
        })
        .collect()
}

/// A store with the given parameters (shapes), filled with seeded random values.
fn store_with<T: Scalar>(seed: u64, params: &[(&str, &[usize])]) -> ParamStore<T> {
    let mut p = ParamStore::<T>::new(seed);
    for (name, shape) in params {
        let value = common::random(shape, 1.0, seed).mapv(T::from_f64_lossy);
        p.create_from(name, value).unwrap();
    }
    p
}

fn round_trip<T: Scalar>() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let saved = model::<T>(1);
    checkpoint::save(&saved, &path).unwrap();

    let mut restored = model::<T>(2);
    assert_ne!(snapshot(&restored), snapshot(&saved), "seeds must differ");
    checkpoint::load(&mut restored, &path).unwrap();
    assert_eq!(snapshot(&restored), snapshot(&saved));

    let fresh = checkpoint::load_new::<T>(&path, 0).unwrap();
    assert_eq!(
        snapshot(&fresh),
        snapshot(&saved),
        "creation order restored"
    );

    let bytes = checkpoint::save_to_bytes(&saved).unwrap();
    let mut from_bytes = model::<T>(3);
    checkpoint::load_from_bytes(&mut from_bytes, &bytes).unwrap();
    assert_eq!(snapshot(&from_bytes), snapshot(&saved));
    assert_eq!(
        snapshot(&checkpoint::load_new_from_bytes::<T>(&bytes, 0).unwrap()),
        snapshot(&saved)
    );
    // Only the target is left in the folder.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn round_trip_f32_is_bit_exact() {
    round_trip::<f32>();
}

#[test]
fn round_trip_f64_is_bit_exact() {
    round_trip::<f64>();
}

#[test]
fn non_finite_values_are_refused_by_every_loader() {
    for (bad, shown) in [
        (f32::from_bits(0x7fc0_1234), "NaN"),
        (f32::INFINITY, "inf"),
        (f32::NEG_INFINITY, "-inf"),
    ] {
        // A store can only hold a non-finite value through value_mut; save writes what is there.
        let mut p = ParamStore::<f32>::new(0);
        let x = p.create("layer/x", &[3], Initializer::Zeros).unwrap();
        p.value_mut(x)[[2]] = bad;
        let bytes = checkpoint::save_to_bytes(&p).unwrap();
        let want = format!("tensor \"layer/x\" holds {shown} at element 2");
        let err = checkpoint::load_new_from_bytes::<f32>(&bytes, 0).unwrap_err();
        assert!(matches!(err, Error::Checkpoint(_)), "{err:?}");
        assert!(err.to_string().contains(&want), "{err}");
        let mut target = ParamStore::<f32>::new(0);
        target.create("layer/x", &[3], Initializer::Zeros).unwrap();
        for err in [
            checkpoint::load_from_bytes(&mut target, &bytes).unwrap_err(),
            checkpoint::load_from_bytes_converting(&mut target, &bytes).unwrap_err(),
        ] {
            assert!(err.to_string().contains(&want), "{err}");
        }
        assert!(target.all_finite());
    }
}

#[test]
fn save_overwrites_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    fs::write(&path, b"old contents").unwrap();
    let p = model::<f32>(1);
    checkpoint::save(&p, &path).unwrap();
    let mut back = model::<f32>(5);
    checkpoint::load(&mut back, &path).unwrap();
    assert_eq!(snapshot(&back), snapshot(&p));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file");
}

/// Loads `bytes` into a clone of `store`, expects a `Checkpoint` error mentioning every needle,
/// and checks that the store is unchanged.
#[track_caller]
fn expect_mismatch<T: Scalar>(store: &ParamStore<T>, bytes: &[u8], needles: &[&str]) {
    let mut target = store.clone();
    let before = snapshot(&target);
    let err = checkpoint::load_from_bytes(&mut target, bytes).unwrap_err();
    assert!(matches!(err, Error::Checkpoint(_)), "{err:?}");
    let msg = err.to_string();
    for needle in needles {
        assert!(msg.contains(needle), "{msg:?} does not mention {needle:?}");
    }
    assert_eq!(snapshot(&target), before, "store changed by a failed load");
}

#[test]
fn missing_parameter_is_named_and_nothing_loads() {
    let file = store_with::<f32>(1, &[("a", &[2, 3]), ("b", &[4])]);
    let model = store_with::<f32>(2, &[("a", &[2, 3]), ("b", &[4]), ("c/kernel", &[1])]);
    let bytes = checkpoint::save_to_bytes(&file).unwrap();
    expect_mismatch(&model, &bytes, &["missing parameter \"c/kernel\""]);
}

#[test]
fn unknown_tensor_is_named_and_nothing_loads() {
    let file = store_with::<f32>(1, &[("a", &[2, 3]), ("b", &[4]), ("extra/bias", &[3])]);
    let model = store_with::<f32>(2, &[("a", &[2, 3]), ("b", &[4])]);
    let bytes = checkpoint::save_to_bytes(&file).unwrap();
    expect_mismatch(&model, &bytes, &["unexpected tensor \"extra/bias\""]);
}

#[test]
fn wrong_shape_is_named_with_both_shapes_and_nothing_loads() {
    // "a/good" precedes "z/bad" in the file: a half-loading loader would have written it.
    let file = store_with::<f64>(1, &[("a/good", &[2, 3]), ("z/bad", &[4, 2])]);
    let model = store_with::<f64>(2, &[("a/good", &[2, 3]), ("z/bad", &[2, 4])]);
    let bytes = checkpoint::save_to_bytes(&file).unwrap();
    expect_mismatch(&model, &bytes, &["\"z/bad\"", "[4, 2]", "[2, 4]"]);
}

#[test]
fn every_problem_is_listed() {
    let file = store_with::<f32>(1, &[("a", &[2]), ("b", &[3]), ("x", &[1])]);
    let model = store_with::<f32>(2, &[("a", &[2]), ("b", &[4]), ("y", &[1])]);
    let bytes = checkpoint::save_to_bytes(&file).unwrap();
    expect_mismatch(&model, &bytes, &["\"b\"", "\"x\"", "\"y\""]);
}

#[test]
fn wrong_dtype_names_both_dtypes_and_converting_load_casts() {
    let shapes: &[(&str, &[usize])] = &[("a", &[2, 3]), ("rnn/kernel", &[3])];
    let file64 = store_with::<f64>(1, shapes);
    let bytes64 = checkpoint::save_to_bytes(&file64).unwrap();
    let model32 = store_with::<f32>(2, shapes);
    expect_mismatch(&model32, &bytes64, &["\"rnn/kernel\"", "F64", "F32"]);

    let mut converted = model32.clone();
    checkpoint::load_from_bytes_converting(&mut converted, &bytes64).unwrap();
    for (id, name, value) in converted.iter() {
        let expected = file64.value(file64.id(name).unwrap()).mapv(|x| x as f32);
        assert_eq!(value, &expected, "{name}");
        assert_eq!(id, model32.id(name).unwrap());
    }

    // f32 into f64: strict load refuses, converting load is exact.
    let file32 = store_with::<f32>(3, shapes);
    let bytes32 = checkpoint::save_to_bytes(&file32).unwrap();
    let model64 = store_with::<f64>(4, shapes);
    expect_mismatch(&model64, &bytes32, &["F32", "F64"]);
    let mut widened = model64.clone();
    checkpoint::load_from_bytes_converting(&mut widened, &bytes32).unwrap();
    for (_, name, value) in widened.iter() {
        let expected = file32.value(file32.id(name).unwrap()).mapv(f64::from);
        assert_eq!(value, &expected, "{name}");
    }

    // The file versions behave alike, and load_new is strict.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f64.safetensors");
    checkpoint::save(&file64, &path).unwrap();
    let mut target = model32.clone();
    assert!(checkpoint::load(&mut target, &path).is_err());
    checkpoint::load_converting(&mut target, &path).unwrap();
    assert_eq!(snapshot(&target), snapshot(&converted));
    let err = checkpoint::load_new::<f32>(&path, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("F64") && err.contains("F32"), "{err}");
}

#[test]
fn corrupt_files_are_format_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let reference = model::<f32>(1);
    let bytes = checkpoint::save_to_bytes(&reference).unwrap();
    let path = dir.path().join("truncated.safetensors");
    for cut in [0, 5, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        fs::write(&path, &bytes[..cut]).unwrap();
        let mut target = model::<f32>(2);
        let before = snapshot(&target);
        let err = checkpoint::load(&mut target, &path).unwrap_err();
        assert!(matches!(err, Error::Format(_)), "cut {cut}: {err:?}");
        assert!(err.to_string().contains("truncated.safetensors"), "{err}");
        assert_eq!(snapshot(&target), before);
        assert!(checkpoint::load_new::<f32>(&path, 0).is_err());
    }
    let missing = dir.path().join("missing.safetensors");
    let err = checkpoint::load(&mut reference.clone(), &missing).unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert!(err.to_string().contains("missing.safetensors"), "{err}");
}

#[test]
fn failed_save_into_missing_folder_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/folder/m.safetensors");
    let err = checkpoint::save(&model::<f32>(1), &path).unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert!(err.to_string().contains("m.safetensors"), "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn failed_rename_removes_the_temp_file() {
    // The target is a non-empty folder: the temp file is written, the rename fails.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("m.safetensors");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep"), b"keep").unwrap();
    assert!(checkpoint::save(&model::<f32>(1), &target).is_err());
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("m.safetensors")]);
    assert_eq!(fs::read(target.join("keep")).unwrap(), b"keep");
}

#[cfg(unix)]
#[test]
fn failed_save_into_read_only_folder_keeps_the_old_file() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    fs::write(&path, b"previous checkpoint").unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o555)).unwrap();
    let probe = dir.path().join("probe");
    if fs::write(&probe, b"").is_ok() {
        // Running as root: permissions do not apply, so this case cannot be produced.
        let _ = fs::remove_file(&probe);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        eprintln!("skipped: the read-only folder is writable (running as root)");
        return;
    }
    let result = checkpoint::save(&model::<f32>(1), &path);
    let listing = fs::read_dir(dir.path()).unwrap().count();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(result, Err(Error::Io(_))), "{result:?}");
    assert_eq!(fs::read(&path).unwrap(), b"previous checkpoint");
    assert_eq!(listing, 1, "no temp file");
}

#[test]
fn path_without_file_name_is_an_error() {
    assert!(checkpoint::save(&model::<f32>(1), Path::new("/")).is_err());
    assert!(checkpoint::save(&model::<f32>(1), Path::new("..")).is_err());
}

/// Replaces a random ASCII digit of the JSON header with another digit, so shapes and offsets
/// change while the header stays valid JSON.
fn mutate_header_digit(bytes: &mut [u8], rng: &mut StdRng) {
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let digits: Vec<usize> = (8..8 + header_len)
        .filter(|&i| bytes[i].is_ascii_digit())
        .collect();
    if !digits.is_empty() {
        let i = digits[rng.random_range(0..digits.len())];
        bytes[i] = b'0' + rng.random_range(0..10u8);
    }
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(2024);
    let reference = model::<f32>(1);
    let valid = checkpoint::save_to_bytes(&reference).unwrap();
    let header_len = u64::from_le_bytes(valid[..8].try_into().unwrap());
    let (mut ok, mut err) = (0, 0);
    for round in 0..2000 {
        let mut bytes = valid.clone();
        match round % 8 {
            0 => {
                let len = rng.random_range(0..300);
                bytes = (0..len).map(|_| rng.random()).collect();
            }
            1 => {
                for _ in 0..rng.random_range(1..8) {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] ^= 1 << rng.random_range(0..8);
                }
            }
            2 => bytes.truncate(rng.random_range(0..bytes.len())),
            3 => bytes.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>())),
            4 => {
                let n: u64 = match rng.random_range(0..4) {
                    0 => rng.random(),
                    1 => header_len.wrapping_add(rng.random_range(1..16)),
                    2 => header_len.wrapping_sub(rng.random_range(1..16)),
                    _ => u64::MAX - rng.random_range(0..16),
                };
                bytes[..8].copy_from_slice(&n.to_le_bytes());
            }
            5 | 6 => {
                for _ in 0..rng.random_range(1..3) {
                    mutate_header_digit(&mut bytes, &mut rng);
                }
            }
            _ => {
                // Mutate the data only: always loads, with other values.
                let i = rng.random_range(8 + header_len as usize..bytes.len());
                bytes[i] = rng.random();
            }
        }
        let mut target = reference.clone();
        let before = snapshot(&target);
        match checkpoint::load_from_bytes(&mut target, &bytes) {
            Ok(()) => ok += 1,
            Err(_) => {
                assert_eq!(snapshot(&target), before, "round {round}");
                err += 1;
            }
        }
        let _ = checkpoint::load_from_bytes_converting(&mut target, &bytes);
        let _ = checkpoint::load_new_from_bytes::<f32>(&bytes, 0);
        let _ = checkpoint::load_new_from_bytes::<f64>(&bytes, 0);
    }
    assert!(ok > 100 && err > 1000, "ok {ok}, err {err}");
}

/// Builds a safetensors file by hand following the specification: an 8-byte little-endian header
/// length, the JSON header, then the little-endian data in offset order.
#[test]
fn hand_built_file_loads() {
    let b: [f32; 2] = [1.5, -2.25];
    let a: [f32; 3] = [0.125, 3.0, f32::MAX];
    let header = r#"{"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[1,3],"data_offsets":[8,20]},"__metadata__":{"format":"pt"}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(b.iter().chain(&a).flat_map(|x| x.to_le_bytes()));

    let mut p = store_with::<f32>(0, &[("a", &[1, 3]), ("b", &[2])]);
    checkpoint::load_from_bytes(&mut p, &bytes).unwrap();
    assert_eq!(p.value(p.id("a").unwrap()).as_slice().unwrap(), &a);
    assert_eq!(p.value(p.id("b").unwrap()).as_slice().unwrap(), &b);

    // Without an order record, load_new follows the data order of the file.
    let fresh = checkpoint::load_new_from_bytes::<f32>(&bytes, 0).unwrap();
    let names: Vec<&str> = fresh.iter().map(|(_, n, _)| n).collect();
    assert_eq!(names, ["b", "a"]);
}

/// Reads a file written by `save_to_bytes` with serde_json and `from_le_bytes` only.
#[test]
fn written_file_matches_the_specification() {
    let p = store_with::<f64>(7, &[("z/kernel", &[2, 3]), ("a/bias", &[3])]);
    let bytes = checkpoint::save_to_bytes(&p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];

    let meta = &header["__metadata__"];
    assert_eq!(meta["format"], FORMAT);
    assert_eq!(meta["recurrent_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(meta["recurrent_order"], "z/kernel\na/bias");
    let mut covered = 0;
    for (_, name, value) in p.iter() {
        let info = &header[name];
        assert_eq!(info["dtype"], "F64");
        let shape: Vec<usize> = serde_json::from_value(info["shape"].clone()).unwrap();
        assert_eq!(shape, value.shape());
        let (start, end): (usize, usize) =
            serde_json::from_value(info["data_offsets"].clone()).unwrap();
        let decoded: Vec<f64> = data[start..end]
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(decoded, value.iter().copied().collect::<Vec<_>>(), "{name}");
        covered += end - start;
    }
    assert_eq!(covered, data.len());
    assert_eq!(header.as_object().unwrap().len(), 3);
}

#[test]
fn load_new_rejects_empty_tensors() {
    let header = r#"{"w":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    let err = checkpoint::load_new_from_bytes::<f32>(&bytes, 0).unwrap_err();
    assert!(err.to_string().contains("\"w\""), "{err}");
}

/// Python interop: `safetensors.numpy.load_file` reads what we write. Needs python3 with
/// `safetensors` and `numpy` (`.ci/run` installs them); without them the test fails under CI and
/// says so and returns elsewhere.
#[test]
fn python_reads_our_checkpoints() {
    let has_modules = std::process::Command::new("python3")
        .args(["-c", "import safetensors.numpy, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_modules {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(
            !ci,
            "under CI, python3 needs safetensors and numpy: pip install safetensors numpy"
        );
        eprintln!("python_reads_our_checkpoints: python3 lacks safetensors or numpy; not run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for dtype in ["f32", "f64"] {
        let path = dir.path().join(format!("{dtype}.safetensors"));
        let p = store_with::<f64>(11, &[("rnn/basic_lstm_cell/kernel", &[3, 8]), ("b", &[8])]);
        let expected: Vec<(String, Vec<usize>, Vec<f64>)> = p
            .iter()
            .map(|(_, n, v)| {
                (
                    n.to_string(),
                    v.shape().to_vec(),
                    v.iter().copied().collect(),
                )
            })
            .collect();
        if dtype == "f32" {
            let mut p32 = ParamStore::<f32>::new(0);
            for (_, n, v) in p.iter() {
                p32.create_from(n, v.mapv(|x| x as f32)).unwrap();
            }
            checkpoint::save(&p32, &path).unwrap();
        } else {
            checkpoint::save(&p, &path).unwrap();
        }
        let script = "import sys, safetensors.numpy as st, safetensors\n\
            d = st.load_file(sys.argv[1])\n\
            with safetensors.safe_open(sys.argv[1], 'np') as f: assert f.metadata()['format'] == 'recurrent'\n\
            for k in sorted(d):\n    v = d[k]\n    print(k, v.dtype, ','.join(map(str, v.shape)), ' '.join(repr(float(x)) for x in v.ravel()))";
        let out = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&path)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        let mut expected = expected;
        expected.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(lines.len(), expected.len());
        for (line, (name, shape, values)) in lines.iter().zip(&expected) {
            let mut parts = line.splitn(4, ' ');
            assert_eq!(parts.next().unwrap(), name);
            let np_dtype = if dtype == "f32" { "float32" } else { "float64" };
            assert_eq!(parts.next().unwrap(), np_dtype);
            let got_shape: Vec<usize> = parts
                .next()
                .unwrap()
                .split(',')
                .map(|s| s.parse().unwrap())
                .collect();
            assert_eq!(&got_shape, shape);
            let got: Vec<f64> = parts
                .next()
                .unwrap()
                .split(' ')
                .map(|s| s.parse().unwrap())
                .collect();
            let want: Vec<f64> = if dtype == "f32" {
                values.iter().map(|&x| x as f32 as f64).collect()
            } else {
                values.clone()
            };
            assert_eq!(got, want, "{name}");
        }
    }
}

// --- Loading part of a checkpoint (transfer learning) ---------------------------------------

fn encoder_and_head(seed: u64, head: &str, classes: usize) -> ParamStore<f32> {
    let mut params = ParamStore::<f32>::new(seed);
    recurrent::layers::Rnn::lstm(&mut params, 3, 4).unwrap();
    recurrent::Dense::new(&mut params, head, 4, classes).unwrap();
    params
}

#[test]
fn load_matching_loads_a_prefix_renamed_and_reports_the_rest() {
    use recurrent::checkpoint::{load_matching_from_bytes, LoadOptions};
    let trained = encoder_and_head(1, "dense", 3);
    let bytes = checkpoint::save_to_bytes(&trained).unwrap();

    // The same encoder under another scope, a head of another size.
    let mut model = ParamStore::<f32>::new(2);
    let cell =
        recurrent::cell::BasicLstmCell::new(&mut model, "encoder/basic_lstm_cell", 3, 4).unwrap();
    recurrent::Dense::new(&mut model, "head", 4, 7).unwrap();
    let head_before = model.value(model.id("head/kernel").unwrap()).clone();
    let options = LoadOptions::lenient().rename("rnn/", "encoder/");
    let report = load_matching_from_bytes(&mut model, &bytes, &options).unwrap();
    assert_eq!(
        report.loaded,
        [
            "encoder/basic_lstm_cell/kernel",
            "encoder/basic_lstm_cell/bias"
        ]
    );
    assert_eq!(report.missing, ["head/kernel", "head/bias"]);
    assert_eq!(report.unexpected, ["dense/bias", "dense/kernel"]);
    assert_eq!(
        model.value(cell.kernel()),
        trained.value(trained.id("rnn/basic_lstm_cell/kernel").unwrap())
    );
    assert_eq!(model.value(model.id("head/kernel").unwrap()), &head_before);
}

#[test]
fn load_matching_refuses_what_does_not_fit_and_changes_nothing() {
    use recurrent::checkpoint::{load_matching_from_bytes, LoadOptions};
    let bytes = checkpoint::save_to_bytes(&encoder_and_head(1, "dense", 3)).unwrap();
    // Same names, a head of another size: a shape mismatch is an error even when lenient.
    let mut model = encoder_and_head(2, "dense", 5);
    let before: Vec<_> = model.iter().map(|(_, _, v)| v.clone()).collect();
    let err = load_matching_from_bytes(&mut model, &bytes, &LoadOptions::lenient()).unwrap_err();
    assert!(
        err.to_string().contains("dense/kernel") && err.to_string().contains("[4, 3]"),
        "{err}"
    );
    // Strict: a missing parameter and an unexpected tensor are named.
    let mut other = encoder_and_head(2, "head", 3);
    let err = load_matching_from_bytes(&mut other, &bytes, &LoadOptions::strict())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("head/kernel") && err.contains("dense/kernel"),
        "{err}"
    );
    let after: Vec<_> = model.iter().map(|(_, _, v)| v.clone()).collect();
    assert_eq!(before, after);
    // `only` restricts loading to a prefix; strict within it.
    let report = load_matching_from_bytes(
        &mut other,
        &bytes,
        &LoadOptions {
            allow_unexpected: true,
            ..LoadOptions::strict()
        }
        .only("rnn/"),
    )
    .unwrap();
    assert_eq!(report.loaded.len(), 2);
    assert!(report.missing.is_empty());
    // A tensor the model has but `only` leaves out is skipped, not unexpected.
    let mut same = encoder_and_head(3, "dense", 3);
    let report =
        load_matching_from_bytes(&mut same, &bytes, &LoadOptions::strict().only("rnn/")).unwrap();
    assert_eq!(report.skipped, ["dense/bias", "dense/kernel"]);
    assert!(report.unexpected.is_empty());
}

/// Extra metadata (a vocabulary, sizes) travels with the weights: read back exactly, the
/// tensors and the crate's own entries unchanged, the file loads as any checkpoint.
#[test]
fn metadata_round_trips_beside_the_weights() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("with-meta.safetensors");
    let saved = model::<f32>(1);
    let metadata = BTreeMap::from([
        (
            "vocabulary".to_string(),
            "char-vocab/1 pad=0 unk=1 chars=a,3b1,1f600".to_string(),
        ),
        ("units".to_string(), "256".to_string()),
        (
            "multi\nline, ünicode \"quoted\"".to_string(),
            "{\"x\": [1]}\n".to_string(),
        ),
    ]);
    checkpoint::save_with_metadata(&saved, &path, &metadata).unwrap();
    assert_eq!(checkpoint::read_metadata(&path).unwrap(), metadata);

    let mut restored = model::<f32>(2);
    checkpoint::load(&mut restored, &path).unwrap();
    assert_eq!(snapshot(&restored), snapshot(&saved));
    assert_eq!(
        snapshot(&checkpoint::load_new::<f32>(&path, 0).unwrap()),
        snapshot(&saved),
        "creation order kept: the crate's own entries are still there"
    );

    // The header holds our entries beside the crate's (checked without the safetensors crate).
    let bytes = fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = &header["__metadata__"];
    assert_eq!(meta["format"], FORMAT);
    assert_eq!(meta["units"], "256");
    assert!(meta["recurrent_order"].is_string());

    // A plain checkpoint has none; bytes and file agree.
    let plain = checkpoint::save_to_bytes(&saved).unwrap();
    assert!(checkpoint::read_metadata_from_bytes(&plain)
        .unwrap()
        .is_empty());
    let with = checkpoint::save_with_metadata_to_bytes(&saved, &metadata).unwrap();
    assert_eq!(
        checkpoint::read_metadata_from_bytes(&with).unwrap(),
        metadata
    );
    assert_eq!(
        with, bytes,
        "the file holds exactly these bytes: one canonical form"
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file");
}

#[test]
fn metadata_keys_of_the_crate_are_refused_and_nothing_is_written() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("refused.safetensors");
    let p = model::<f32>(1);
    for key in [
        "format",
        "recurrent_order",
        "recurrent_version",
        "recurrent_x",
        "",
    ] {
        let metadata = BTreeMap::from([(key.to_string(), "v".to_string())]);
        let err = checkpoint::save_with_metadata(&p, &path, &metadata).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{key:?}: {err:?}");
        assert!(err.to_string().contains(&format!("{key:?}")), "{err}");
        assert!(!path.exists(), "{key:?}: nothing written");
    }
    // Names that merely resemble them are fine.
    let ok = BTreeMap::from([
        ("formats".to_string(), "v".to_string()),
        ("my_recurrent_x".to_string(), "w".to_string()),
    ]);
    checkpoint::save_with_metadata(&p, &path, &ok).unwrap();
    assert_eq!(checkpoint::read_metadata(&path).unwrap(), ok);
}

#[test]
fn read_metadata_of_a_bad_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.safetensors");
    fs::write(&path, b"not a checkpoint at all").unwrap();
    let err = checkpoint::read_metadata(&path).unwrap_err();
    assert!(matches!(err, Error::Format(_)), "{err:?}");
    assert!(err.to_string().contains("garbage.safetensors"), "{err}");
    let err = checkpoint::read_metadata(&dir.path().join("absent.safetensors")).unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert!(err.to_string().contains("absent.safetensors"), "{err}");
}
