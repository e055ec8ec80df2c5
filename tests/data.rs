//! The `data` module: IDX parsing (valid, invalid, fuzzed), MNIST data sets and batching, the
//! download path (against a local HTTP server), and real MNIST when `MNIST_DIR` points at it.

#[cfg(feature = "download")]
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
#[cfg(feature = "download")]
use std::thread::JoinHandle;

use flate2::write::GzEncoder;
use flate2::Compression;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use recurrent::data::{
    encode_idx, ensure_files_from, file_sha256, parse_idx, read_idx, resolve_data_dir, write_idx,
    Batch, DataPosition, DataSet, IdxArray, Mnist, MnistFile, Resumable, IMAGE_PIXELS, MNIST_FILES,
};
use recurrent::Error;

// ---------------------------------------------------------------------------------------------
// helpers

/// IDX bytes written by hand from the format description (independent of `encode_idx`).
fn idx_bytes(type_code: u8, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, type_code, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn assert_format_err(result: recurrent::Result<IdxArray>, needle: &str) {
    match result {
        Err(Error::Format(msg)) => assert!(
            msg.contains(needle),
            "message {msg:?} should contain {needle:?}"
        ),
        other => panic!("expected Error::Format containing {needle:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// IDX

#[test]
fn parses_plain_and_gzip_idx() {
    let payload: Vec<u8> = (0..24).collect();
    let plain = idx_bytes(0x08, &[2, 3, 4], &payload);
    for bytes in [plain.clone(), gzip(&plain)] {
        let a = parse_idx(&bytes).unwrap();
        assert_eq!(a.dims, vec![2, 3, 4]);
        assert_eq!(a.data, payload);
    }
    let labels = parse_idx(&idx_bytes(0x08, &[5], &[9, 8, 7, 6, 5])).unwrap();
    assert_eq!((labels.dims, labels.data), (vec![5], vec![9, 8, 7, 6, 5]));
    let empty = parse_idx(&idx_bytes(0x08, &[0, 28, 28], &[])).unwrap();
    assert!(empty.is_empty());
    assert_eq!(
        encode_idx(&IdxArray::new(vec![2, 3, 4], payload).unwrap()).unwrap(),
        plain
    );
}

#[test]
fn write_and_read_idx_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = IdxArray::new(vec![3, 2], vec![1, 2, 3, 4, 5, 250]).unwrap();
    // Gzip is recognised by content, not by the file name.
    for (name, gz) in [("plain.idx", false), ("packed.idx", true), ("x.gz", true)] {
        let path = dir.path().join(name);
        write_idx(&path, &a, gz).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.starts_with(&[0x1f, 0x8b]), gz);
        assert_eq!(read_idx(&path).unwrap(), a);
    }
    assert!(matches!(
        read_idx(&dir.path().join("absent")),
        Err(Error::Io(_))
    ));
}

#[test]
fn idx_array_new_validates() {
    assert!(IdxArray::new(vec![2, 2], vec![0; 3]).is_err());
    assert!(IdxArray::new(vec![], vec![]).is_err());
    assert!(IdxArray::new(vec![1; 5], vec![0]).is_err());
    let bad = IdxArray {
        dims: vec![4],
        data: vec![0; 3],
    };
    assert!(encode_idx(&bad).is_err());
    let dir = tempfile::tempdir().unwrap();
    assert!(write_idx(&dir.path().join("bad"), &bad, false).is_err());
}

#[test]
fn truncated_idx_is_an_error_naming_the_counts() {
    let bytes = idx_bytes(0x08, &[2, 3], &[1, 2, 3, 4, 5]);
    assert_format_err(parse_idx(&bytes), "need 6 payload bytes, found 5");
    assert_format_err(parse_idx(&gzip(&bytes)), "need 6 payload bytes, found 5");
    // Cut inside the header.
    assert_format_err(parse_idx(&bytes[..6]), "truncated");
    assert_format_err(parse_idx(&[0, 0]), "truncated");
    assert_format_err(parse_idx(&[]), "truncated");
    // A gzip stream cut short.
    let gz = gzip(&idx_bytes(0x08, &[100], &[7; 100]));
    assert!(matches!(
        parse_idx(&gz[..gz.len() - 10]),
        Err(Error::Format(_))
    ));
}

#[test]
fn wrong_magic_type_or_rank_is_an_error() {
    let mut bytes = idx_bytes(0x08, &[2], &[1, 2]);
    bytes[0] = 1;
    assert_format_err(parse_idx(&bytes), "magic");
    bytes[0] = 0;
    bytes[1] = 0x20;
    assert_format_err(parse_idx(&bytes), "magic");
    // A real IDX type MNIST does not use, and a code that is no IDX type at all.
    assert_format_err(parse_idx(&idx_bytes(0x0D, &[2], &[0; 8])), "unsupported");
    assert_format_err(parse_idx(&idx_bytes(0x42, &[2], &[0; 2])), "unknown");
    assert_format_err(parse_idx(&idx_bytes(0x08, &[], &[])), "dimension count 0");
    assert_format_err(
        parse_idx(&idx_bytes(0x08, &[1; 5], &[0])),
        "dimension count 5",
    );
    // Gzip magic followed by garbage.
    assert!(matches!(
        parse_idx(&[0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        Err(Error::Format(_))
    ));
}

#[test]
fn trailing_bytes_are_an_error() {
    let bytes = idx_bytes(0x08, &[2], &[1, 2, 3, 4]);
    assert_format_err(parse_idx(&bytes), "2 trailing bytes");
    assert_format_err(parse_idx(&gzip(&bytes)), "2 trailing bytes");
}

#[test]
fn huge_dimensions_are_an_error_without_allocating() {
    // The product overflows usize.
    let max = u32::MAX;
    assert_format_err(parse_idx(&idx_bytes(0x08, &[max; 4], &[0; 16])), "memory");
    // The product fits but exceeds the default payload limit: refused before reading.
    let bytes = idx_bytes(0x08, &[max, max], &[1, 2, 3]);
    assert_format_err(parse_idx(&bytes), "more than the limit of 1073741824");
    // Without the limit, the payload is not there: an error, and no 16-exabyte allocation.
    let unlimited = |b: &[u8]| recurrent::data::parse_idx_with_limit(b, usize::MAX);
    assert_format_err(unlimited(&bytes), "found 3");
    assert_format_err(unlimited(&gzip(&bytes)), "found 3");
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    let valid: Vec<Vec<u8>> = vec![
        idx_bytes(0x08, &[3], &[1, 2, 3]),
        idx_bytes(0x08, &[2, 2, 3], &[9; 12]),
        idx_bytes(0x08, &[1, 2, 2, 2], &[4; 8]),
    ];
    let mut seeds = valid.clone();
    seeds.extend(valid.iter().map(|v| gzip(v)));
    let mut ok = 0;
    for i in 0..4000 {
        let bytes: Vec<u8> = if i % 4 == 0 {
            let n = rng.random_range(0..48);
            (0..n).map(|_| rng.random()).collect()
        } else {
            let mut b = seeds[rng.random_range(0..seeds.len())].clone();
            for _ in 0..rng.random_range(1..4) {
                match rng.random_range(0..4) {
                    0 if !b.is_empty() => {
                        let k = rng.random_range(0..b.len());
                        b[k] = rng.random();
                    }
                    1 if !b.is_empty() => {
                        let k = rng.random_range(0..b.len());
                        b.truncate(k);
                    }
                    2 => b.push(rng.random()),
                    _ if b.len() > 7 => {
                        // Make a dimension large.
                        let k = rng.random_range(4..8);
                        b[k] = 0xff;
                    }
                    _ => {}
                }
            }
            b
        };
        if let Ok(a) = parse_idx(&bytes) {
            assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
            ok += 1;
        }
    }
    // Some mutations (a changed payload byte) stay valid; most do not.
    assert!(ok > 0 && ok < 4000, "{ok} of 4000 parsed");
}

// ---------------------------------------------------------------------------------------------
// DataSet and Batch

/// `n` examples; example `i` has label `i % 10` and every pixel `i * 20`.
fn tiny_set(n: usize, seed: u64) -> DataSet {
    let images = Array2::from_shape_fn((n, IMAGE_PIXELS), |(i, _)| (i * 20) as u8);
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    DataSet::new(images, labels, seed).unwrap()
}

/// Which examples of `tiny_set` a batch holds, read back from the pixels.
fn ids(batch: &Batch<f64>) -> Vec<usize> {
    batch
        .images
        .column(0)
        .iter()
        .map(|&x| (x * 255.0 / 20.0).round() as usize)
        .collect()
}

fn is_permutation(xs: &[usize], n: usize) -> bool {
    let mut v = xs.to_vec();
    v.sort_unstable();
    v == (0..n).collect::<Vec<_>>()
}

#[test]
fn next_batch_crosses_epochs_like_tensorflow() {
    let mut set = tiny_set(10, 3);
    let mut seen = Vec::new();
    let mut epochs = Vec::new();
    let mut batches = Vec::new();
    for _ in 0..5 {
        let b = set.next_batch::<f64>(4);
        assert_eq!(b.images.dim(), (4, IMAGE_PIXELS));
        // Labels travel with their images.
        assert!(ids(&b).iter().zip(&b.labels).all(|(i, &l)| i % 10 == l));
        seen.extend(ids(&b));
        batches.push(ids(&b));
        epochs.push(set.epochs_completed());
    }
    // 4 + 4 + (2 old | 2 new) + 4 + 4: the third batch straddles the boundary.
    assert_eq!(epochs, vec![0, 0, 1, 1, 1]);
    assert_eq!(set.index_in_epoch(), 10);
    assert!(
        is_permutation(&seen[..10], 10),
        "epoch 1: {:?}",
        &seen[..10]
    );
    assert!(
        is_permutation(&seen[10..20], 10),
        "epoch 2: {:?}",
        &seen[10..]
    );
    let epoch1: Vec<usize> = seen[..10].to_vec();
    assert_eq!(
        &batches[2][..2],
        &epoch1[8..10],
        "rest of the old epoch first"
    );
    // At exactly the end, the next call starts a new epoch with no rest.
    let b = set.next_batch::<f64>(4);
    assert_eq!(set.epochs_completed(), 2);
    assert_eq!(set.index_in_epoch(), 4);
    assert_eq!(b.len(), 4);
}

/// mnist_data.py's `next_batch`, transcribed with whole arrays permuted, using the same RNG.
struct Reference {
    items: Vec<usize>,
    index: usize,
    epochs: usize,
    rng: StdRng,
}

impl Reference {
    fn shuffle(&mut self) {
        let mut perm: Vec<usize> = (0..self.items.len()).collect();
        perm.shuffle(&mut self.rng);
        self.items = perm.iter().map(|&p| self.items[p]).collect();
    }

    fn next_batch(&mut self, batch_size: usize) -> Vec<usize> {
        let n = self.items.len();
        let start = self.index;
        if self.epochs == 0 && start == 0 {
            self.shuffle();
        }
        if start + batch_size > n {
            self.epochs += 1;
            let mut out = self.items[start..n].to_vec();
            self.shuffle();
            self.index = batch_size - (n - start);
            out.extend_from_slice(&self.items[..self.index]);
            return out;
        }
        self.index += batch_size;
        self.items[start..self.index].to_vec()
    }
}

#[test]
fn next_batch_matches_the_reference_transcription() {
    for seed in [0, 1, 99] {
        let mut set = tiny_set(13, seed);
        let mut reference = Reference {
            items: (0..13).collect(),
            index: 0,
            epochs: 0,
            rng: StdRng::seed_from_u64(seed),
        };
        for &size in [5, 4, 7, 13, 1, 0, 12, 6, 6, 3, 11].iter().cycle().take(40) {
            assert_eq!(ids(&set.next_batch(size)), reference.next_batch(size));
            assert_eq!(set.epochs_completed(), reference.epochs);
            assert_eq!(set.index_in_epoch(), reference.index);
        }
    }
}

#[test]
fn a_restored_data_set_continues_with_the_same_batches() {
    let sizes = [5, 4, 7, 13, 1, 12, 6];
    for cut in [0, 1, 3, 6] {
        let mut whole = tiny_set(13, 7);
        let mut first = tiny_set(13, 7);
        for &size in &sizes[..cut] {
            assert_eq!(ids(&whole.next_batch(size)), ids(&first.next_batch(size)));
        }
        let saved = first.position();
        drop(first);
        // A new set over the same data, with another seed: the saved state decides.
        let mut resumed = tiny_set(13, 12345);
        resumed.restore(&saved).unwrap();
        for &size in sizes[cut..].iter().cycle().take(20) {
            assert_eq!(ids(&whole.next_batch(size)), ids(&resumed.next_batch(size)));
        }
        assert_eq!(whole.position(), resumed.position());
    }
}

#[test]
fn a_data_position_that_does_not_fit_is_an_error_and_changes_nothing() {
    let mut set = tiny_set(13, 7);
    set.next_batch::<f64>(5);
    let before = set.position();
    let other = tiny_set(10, 7).position();
    let bad = [
        other,
        DataPosition {
            counters: vec![0],
            ..before.clone()
        },
        DataPosition {
            counters: vec![0, 14],
            ..before.clone()
        },
        DataPosition {
            order: vec![0; 13],
            ..before.clone()
        },
    ];
    for position in bad {
        assert!(matches!(
            set.restore(&position),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(set.position(), before);
    }
}

#[test]
fn batches_larger_than_the_set_span_epochs() {
    let mut set = tiny_set(10, 5);
    let b = set.next_batch::<f64>(25);
    let seen = ids(&b);
    assert!(is_permutation(&seen[..10], 10) && is_permutation(&seen[10..20], 10));
    assert_eq!((set.epochs_completed(), set.index_in_epoch()), (2, 5));
}

#[test]
fn shuffling_is_seeded() {
    let order = |seed| {
        let mut set = tiny_set(10, seed);
        (0..6)
            .flat_map(|_| ids(&set.next_batch(4)))
            .collect::<Vec<_>>()
    };
    assert_eq!(order(11), order(11));
    assert_ne!(order(11), order(12));
    // The first epoch is shuffled, not file order.
    assert_ne!(order(11)[..10], (0..10).collect::<Vec<_>>()[..]);
}

#[test]
fn pixels_scale_to_unit_interval() {
    let images = Array2::from_shape_fn((2, IMAGE_PIXELS), |(i, j)| ((i * 300 + j) % 256) as u8);
    let set = DataSet::new(images.clone(), vec![3, 7], 0).unwrap();
    let b32 = set.as_batch::<f32>(0..2);
    let b64 = set.as_batch::<f64>(0..2);
    for ((&x32, &x64), &byte) in b32.images.iter().zip(&b64.images).zip(&images) {
        assert!((x64 - f64::from(byte) / 255.0).abs() < 1e-15);
        assert!((f64::from(x32) - f64::from(byte) / 255.0).abs() < 1e-7);
    }
    assert_eq!(b64.images.iter().cloned().fold(f64::MAX, f64::min), 0.0);
    assert_eq!(b64.images.iter().cloned().fold(f64::MIN, f64::max), 1.0);
    assert_eq!(b64.labels, vec![3, 7]);
}

#[test]
fn one_hot_and_sequences_layout() {
    let images = Array2::from_shape_fn((3, IMAGE_PIXELS), |(i, j)| ((i * 7 + j * 3) % 256) as u8);
    let set = DataSet::new(images, vec![0, 9, 4], 0).unwrap();
    let b = set.as_batch::<f64>(0..3);
    let y = b.one_hot();
    assert_eq!(y.dim(), (3, 10));
    for (i, &l) in b.labels.iter().enumerate() {
        for k in 0..10 {
            assert_eq!(y[[i, k]], if k == l { 1.0 } else { 0.0 });
        }
    }
    let x = b.images_as_sequences();
    assert_eq!(x.dim(), (3, 28, 28));
    for i in 0..3 {
        for r in 0..28 {
            for c in 0..28 {
                assert_eq!(
                    x[[i, r, c]],
                    b.images[[i, r * 28 + c]],
                    "example {i} row {r} col {c}"
                );
            }
        }
    }
}

#[test]
fn in_order_batches_cover_the_set_without_touching_next_batch() {
    let mut set = tiny_set(10, 1);
    let batches: Vec<Batch<f64>> = set.batches(4).collect();
    assert_eq!(set.batches::<f32>(4).len(), 3);
    assert_eq!(
        batches.iter().map(Batch::len).collect::<Vec<_>>(),
        vec![4, 4, 2]
    );
    let all: Vec<usize> = batches.iter().flat_map(ids).collect();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    assert_eq!(ids(&set.as_batch(3..6)), vec![3, 4, 5]);
    assert!(set.as_batch::<f64>(4..4).is_empty());
    // next_batch still starts with a fresh shuffle, same as a new set's.
    assert_eq!(
        ids(&set.next_batch(10)),
        ids(&tiny_set(10, 1).next_batch(10))
    );
}

#[test]
fn data_set_new_validates() {
    let ok = Array2::<u8>::zeros((2, IMAGE_PIXELS));
    assert!(matches!(
        DataSet::new(ok.clone(), vec![1], 0),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        DataSet::new(Array2::zeros((2, 783)), vec![1, 2], 0),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        DataSet::new(ok, vec![1, 10], 0),
        Err(Error::InvalidArgument(_))
    ));
    let empty = DataSet::new(Array2::zeros((0, IMAGE_PIXELS)), vec![], 0).unwrap();
    assert_eq!(empty.num_examples(), 0);
    assert_eq!(empty.batches::<f32>(8).count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Mnist::load on small synthetic files

/// Writes MNIST-named files with `n_train` and `n_test` images (example `i`: pixels `i`, label
/// `i % 10`).
fn write_fake_mnist(dir: &Path, n_train: usize, n_test: usize, gz: bool, image_side: usize) {
    let name = |i: usize| {
        let n = MNIST_FILES[i].name;
        if gz {
            n.to_string()
        } else {
            n.trim_end_matches(".gz").to_string()
        }
    };
    for (k, n) in [(0, n_train), (2, n_test)] {
        let data = (0..n)
            .flat_map(|i| std::iter::repeat_n(i as u8, 28 * image_side))
            .collect();
        let a = IdxArray::new(vec![n, 28, image_side], data).unwrap();
        write_idx(&dir.join(name(k)), &a, gz).unwrap();
        let labels = IdxArray::new(vec![n], (0..n).map(|i| (i % 10) as u8).collect()).unwrap();
        write_idx(&dir.join(name(k + 1)), &labels, gz).unwrap();
    }
}

#[test]
fn load_splits_train_into_validation_and_train() {
    for gz in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        write_fake_mnist(dir.path(), 12, 3, gz, 28);
        let m = Mnist::load_with_validation(dir.path(), 5, 0).unwrap();
        assert_eq!(m.validation.num_examples(), 5);
        assert_eq!(m.train.num_examples(), 7);
        assert_eq!(m.test.num_examples(), 3);
        assert_eq!(m.validation.images()[[4, 100]], 4);
        assert_eq!(m.train.images()[[0, 0]], 5);
        assert_eq!(m.train.labels(), &[5, 6, 7, 8, 9, 0, 1]);
        assert_eq!(m.test.labels(), &[0, 1, 2]);
        assert!(matches!(
            Mnist::load_with_validation(dir.path(), 13, 0),
            Err(Error::InvalidArgument(_))
        ));
        // Too few images for the default 5000 validation images.
        assert!(Mnist::load(dir.path(), 0).is_err());
    }
}

#[test]
fn load_rejects_bad_files() {
    // Not 28x28.
    let dir = tempfile::tempdir().unwrap();
    write_fake_mnist(dir.path(), 4, 2, true, 27);
    match Mnist::load_with_validation(dir.path(), 1, 0) {
        Err(Error::Format(msg)) => assert!(msg.contains("28, 28"), "{msg}"),
        other => panic!("expected a format error, got {other:?}"),
    }
    // Image and label counts differ.
    let dir = tempfile::tempdir().unwrap();
    write_fake_mnist(dir.path(), 4, 2, true, 28);
    let labels = IdxArray::new(vec![3], vec![1, 2, 3]).unwrap();
    write_idx(&dir.path().join(MNIST_FILES[3].name), &labels, true).unwrap();
    match Mnist::load_with_validation(dir.path(), 1, 0) {
        Err(Error::Format(msg)) => assert!(msg.contains("2 images but"), "{msg}"),
        other => panic!("expected a format error, got {other:?}"),
    }
    // A file is missing.
    std::fs::remove_file(dir.path().join(MNIST_FILES[0].name)).unwrap();
    assert!(matches!(
        Mnist::load_with_validation(dir.path(), 1, 0),
        Err(Error::Io(_))
    ));
}

#[test]
fn data_dir_resolution_prefers_the_given_folder() {
    assert_eq!(
        resolve_data_dir(Some(Path::new("/x/y"))),
        PathBuf::from("/x/y")
    );
    // (The MNIST_DIR / default branches depend on the environment, which tests must not change
    // while other tests run in parallel.)
    let dir = resolve_data_dir(None);
    match std::env::var_os("MNIST_DIR") {
        Some(d) if !d.is_empty() => assert_eq!(dir, PathBuf::from(d)),
        _ => assert_eq!(dir, PathBuf::from("data/mnist")),
    }
}

// ---------------------------------------------------------------------------------------------
// download

/// A minimal HTTP/1.1 server on 127.0.0.1 answering up to `max_requests` GETs from `routes`
/// (404 otherwise), then exiting; it also gives up after 20 s. Returns its base URL and a handle
/// yielding the paths it was asked for.
#[cfg(feature = "download")]
fn serve(
    routes: HashMap<String, Vec<u8>>,
    max_requests: usize,
) -> (String, JoinHandle<Vec<String>>) {
    use std::io::Read;
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut asked = Vec::new();
        while asked.len() < max_requests && Instant::now() < deadline {
            let mut stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => request.extend_from_slice(&buf[..k]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
            let response = match routes.get(&path) {
                Some(body) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&response);
            let _ = stream.flush();
            asked.push(path);
        }
        asked
    });
    (base, handle)
}

/// Two small IDX files, their entries (with the SHA-256 of the decompressed bytes) and contents.
fn fake_remote_files() -> (Vec<MnistFile>, Vec<Vec<u8>>) {
    let a = idx_bytes(0x08, &[4], &[1, 2, 3, 4]);
    let b = idx_bytes(0x08, &[2, 2, 2], &[5; 8]);
    let hash = |bytes: &[u8]| -> &'static str {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h");
        std::fs::write(&p, bytes).unwrap();
        Box::leak(file_sha256(&p).unwrap().into_boxed_str())
    };
    let files = vec![
        MnistFile {
            name: "a-idx1-ubyte.gz",
            sha256: hash(&a),
        },
        MnistFile {
            name: "b-idx3-ubyte.gz",
            sha256: hash(&b),
        },
    ];
    (files, vec![a, b])
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[cfg(feature = "download")]
#[test]
fn download_rejects_corrupt_files_and_falls_back_to_the_next_mirror() {
    let (files, contents) = fake_remote_files();
    let mut corrupt = contents[0].clone();
    corrupt[9] ^= 1;
    let mut routes = HashMap::new();
    // Mirror 1: a corrupt `a` (valid gzip, wrong content), no `b`.
    routes.insert("/bad/a-idx1-ubyte.gz".to_string(), gzip(&corrupt));
    // Mirror 2: a good `a`, and `b` served already decompressed.
    routes.insert("/good/a-idx1-ubyte.gz".to_string(), gzip(&contents[0]));
    routes.insert("/good/b-idx3-ubyte.gz".to_string(), contents[1].clone());
    let (base, server) = serve(routes, 4);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("nested/mnist");
    let mirrors = [format!("{base}/bad/"), format!("{base}/good")];
    let mirrors: Vec<&str> = mirrors.iter().map(String::as_str).collect();
    ensure_files_from(&target, &files, &mirrors).unwrap();
    let asked = server.join().unwrap();
    assert_eq!(
        asked,
        vec![
            "/bad/a-idx1-ubyte.gz",
            "/good/a-idx1-ubyte.gz",
            "/bad/b-idx3-ubyte.gz",
            "/good/b-idx3-ubyte.gz"
        ]
    );
    // Exactly the two verified files, no temporary or corrupt leftovers.
    assert_eq!(
        dir_entries(&target),
        vec!["a-idx1-ubyte.gz", "b-idx3-ubyte.gz"]
    );
    for (f, content) in files.iter().zip(&contents) {
        let path = target.join(f.name);
        assert_eq!(file_sha256(&path).unwrap(), f.sha256);
        assert!(std::fs::read(&path).unwrap().starts_with(&[0x1f, 0x8b]));
        assert_eq!(read_idx(&path).unwrap(), parse_idx(content).unwrap());
    }
    // Everything present: no request at all (the mirror list points nowhere).
    ensure_files_from(&target, &files, &["http://127.0.0.1:9/"]).unwrap();
}

#[cfg(feature = "download")]
#[test]
fn download_failure_keeps_nothing_and_says_what_to_do() {
    let (files, contents) = fake_remote_files();
    let mut corrupt = contents[1].clone();
    corrupt.push(0);
    let mut routes = HashMap::new();
    routes.insert(
        "/m/a-idx1-ubyte.gz".to_string(),
        b"not gzip at all".to_vec(),
    );
    routes.insert("/m/b-idx3-ubyte.gz".to_string(), gzip(&corrupt));
    let (base, server) = serve(routes, 2);
    let dir = tempfile::tempdir().unwrap();
    let mirror = format!("{base}/m/");
    let err = ensure_files_from(dir.path(), &files, &[mirror.as_str()]).unwrap_err();
    server.join().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    for needle in [
        "a-idx1-ubyte.gz",
        "b-idx3-ubyte.gz",
        &dir.path().display().to_string(),
        &format!("{mirror}a-idx1-ubyte.gz"),
        "SHA-256",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
    }
    assert!(
        dir_entries(dir.path()).is_empty(),
        "{:?}",
        dir_entries(dir.path())
    );
}

#[cfg(not(feature = "download"))]
#[test]
fn without_the_download_feature_missing_files_are_an_error() {
    let (files, _) = fake_remote_files();
    let dir = tempfile::tempdir().unwrap();
    let err = ensure_files_from(dir.path(), &files, &["http://127.0.0.1:9/"]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("a-idx1-ubyte.gz") && msg.contains("download"),
        "{msg}"
    );
    assert!(dir_entries(dir.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// real MNIST

/// Runs on the real files when `MNIST_DIR` is set (or `CI` is, then `data/mnist` is the default);
/// skips otherwise. With either set, missing data is a failure.
#[test]
fn real_mnist() {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    let dir = match std::env::var_os("MNIST_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ if ci => Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"),
        _ => {
            eprintln!("real_mnist skipped: set MNIST_DIR to a folder with the four MNIST files");
            return;
        }
    };
    for f in &MNIST_FILES {
        let path = dir.join(f.name);
        assert!(path.is_file(), "{} is missing", path.display());
        assert_eq!(file_sha256(&path).unwrap(), f.sha256, "{}", f.name);
    }
    let mut m = Mnist::load(&dir, 0).unwrap();
    assert_eq!(m.train.num_examples(), 55_000);
    assert_eq!(m.validation.num_examples(), 5_000);
    assert_eq!(m.test.num_examples(), 10_000);
    for set in [&m.train, &m.validation, &m.test] {
        let mut hist = [0usize; 10];
        for &l in set.labels() {
            hist[usize::from(l)] += 1;
        }
        assert_eq!(hist.iter().sum::<usize>(), set.num_examples());
        assert!(
            hist.iter().all(|&h| h > set.num_examples() / 20),
            "{hist:?}"
        );
    }
    let mut test_hist = [0usize; 10];
    for &l in m.test.labels() {
        test_hist[usize::from(l)] += 1;
    }
    assert_eq!(
        test_hist,
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    let mut lo = f32::MAX;
    let mut hi = f32::MIN;
    for b in m.test.batches::<f32>(2500) {
        for &x in &b.images {
            lo = lo.min(x);
            hi = hi.max(x);
        }
    }
    assert_eq!((lo, hi), (0.0, 1.0));
    let b = m.train.next_batch::<f32>(128);
    assert_eq!(b.images_as_sequences().dim(), (128, 28, 28));
    assert_eq!(b.one_hot().sum(), 128.0);
}
