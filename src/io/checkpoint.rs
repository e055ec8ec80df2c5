//! Saving and loading a [`ParamStore`] as [safetensors] files.
//!
//! safetensors is the ecosystem's standard format for named tensors: an 8-byte little-endian
//! header length, a JSON header (`{"name": {"dtype", "shape", "data_offsets"}, "__metadata__": {..}}`)
//! and the raw little-endian, row-major data. Python reads it with
//! `safetensors.numpy.load_file` (or `safetensors.torch`) without running any code from the file.
//!
//! # What a checkpoint holds
//! - One tensor per parameter, named by its path (`rnn/basic_lstm_cell/kernel`), with the
//!   parameter's shape and dtype `F32` or `F64` ([`Scalar::DTYPE`]).
//! - Metadata: `"format": "recurrent"`, `"recurrent_version"` (the crate version that wrote it)
//!   and `"recurrent_order"` (the parameter names in creation order, newline-separated, so
//!   [`load_new`] can restore it; left out if a name contains a newline). Loading never requires
//!   them: files written by other tools load as long as names, shapes and dtypes fit.
//!
//! The file is fully determined by the store: the header lists the metadata keys and the tensors
//! sorted by name, and the data follows in that order, so identical weights (same names, shapes,
//! dtype and bits) give identical files.
//!
//! # Loading
//! [`load`] fills a store the code has already built (the model defines the parameters, the
//! checkpoint supplies the values). Everything is checked before anything is written: every
//! parameter must be present, every tensor must belong to a parameter, and shapes and dtypes must
//! agree. On any mismatch the result is an [`Error::Checkpoint`] listing every problem by
//! parameter name, and the store is left exactly as it was. A file that is not valid safetensors
//! (truncated, corrupt header, offsets that do not fit) is an [`Error::Format`] naming the file.
//!
//! Parameters are finite: a NaN or an infinity in the data, or an `F64` value too large for an
//! `f32` store when converting, is an [`Error::Checkpoint`] naming the tensor and the element
//! (`save` writes whatever the store holds, so a diverged model can still be saved).
//!
//! A dtype mismatch (an `F64` checkpoint into an `f32` model) is an error by default;
//! [`load_converting`] accepts `F32` and `F64` tensors in either kind of store and rounds to
//! the nearest representable value. [`load_new`] builds a fresh store from a file alone.
//! [`load_matching`] loads part of a checkpoint into another model (transfer learning): a
//! subset, a prefix, renamed parameters, reporting what was missing and left over.
//!
//! # Saving
//! [`save`] is atomic: it writes a temporary file `.{name}.recurrent-tmp-{pid}-{n}` next to the
//! target, flushes it to disk, and renames it over the target. If anything fails the temporary
//! file is removed and an existing target is left untouched. In detail:
//! - **Permissions** of an existing target are kept (a `0600` file stays `0600`); they are set on
//!   the temporary file before any data is written to it. Owner and group are those of the
//!   saving process, as for any new file. A new target gets the default mode (umask applies).
//! - **Symbolic links** are followed: saving to a link replaces the file it points to (in that
//!   file's folder) and the link stays a link; a dangling link creates the file it names.
//! - **Leftovers of a crash** (a process killed between writing and renaming) are removed by the
//!   next save to the same target: temporary files of that name whose process no longer runs
//!   (checked through `/proc`; on systems without it, when older than a day).
//!
//! # Example
//! ```
//! use recurrent::{checkpoint, init::Initializer, ParamStore};
//!
//! let mut params = ParamStore::<f32>::new(1);
//! params.create("dense/kernel", &[3, 2], Initializer::GlorotUniform)?;
//! params.create("dense/bias", &[2], Initializer::Zeros)?;
//!
//! let path = std::env::temp_dir().join(format!("recurrent-doc-{}.safetensors", std::process::id()));
//! checkpoint::save(&params, &path)?;
//!
//! // The same model built again (other seed, other initial values), then restored.
//! let mut restored = ParamStore::<f32>::new(2);
//! let kernel = restored.create("dense/kernel", &[3, 2], Initializer::GlorotUniform)?;
//! restored.create("dense/bias", &[2], Initializer::Zeros)?;
//! checkpoint::load(&mut restored, &path)?;
//! assert_eq!(restored.value(kernel), params.value(params.id("dense/kernel").unwrap()));
//!
//! // Or without the model's code: a store in the original creation order.
//! let fresh = checkpoint::load_new::<f32>(&path, 0)?;
//! assert_eq!(fresh.name(fresh.ids().next().unwrap()), "dense/kernel");
//! std::fs::remove_file(&path)?;
//! # Ok::<(), recurrent::Error>(())
//! ```
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors};

use crate::{Error, ParamId, ParamStore, Result, Scalar};

/// The value of the `"format"` metadata entry of checkpoints written by this crate.
pub const FORMAT: &str = "recurrent";

const FORMAT_KEY: &str = "format";
const VERSION_KEY: &str = "recurrent_version";
const ORDER_KEY: &str = "recurrent_order";
/// How many problems a mismatch error lists before summarising the rest.
const MAX_LISTED_PROBLEMS: usize = 20;

/// Serialises every parameter of `params` into safetensors bytes (see the [module docs](self)).
pub fn save_to_bytes<T: Scalar>(params: &ParamStore<T>) -> Result<Vec<u8>> {
    let dtype = dtype_of::<T>()?;
    let tensors: Vec<(&str, Encoded)> = params
        .iter()
        .map(|(_, name, value)| {
            let encoded = Encoded {
                dtype,
                shape: value.shape().to_vec(),
                data: encode(value),
            };
            (name, encoded)
        })
        .collect();

    let mut metadata = vec![
        (FORMAT_KEY, FORMAT.to_string()),
        (VERSION_KEY, env!("CARGO_PKG_VERSION").to_string()),
    ];
    if tensors.iter().all(|(name, _)| !name.contains('\n')) {
        let order: Vec<&str> = tensors.iter().map(|(name, _)| *name).collect();
        metadata.push((ORDER_KEY, order.join("\n")));
    }
    Ok(serialize(tensors, metadata))
}

/// The safetensors bytes of `tensors` (unique names) with `metadata`, in one canonical form:
/// metadata keys sorted by name, tensors by dtype (widest first) and name (byte order), in the
/// header and the data alike, the header padded with spaces to a multiple of 8 bytes. The same store therefore
/// always gives the same bytes.
pub(crate) fn serialize<N: AsRef<str>, K: AsRef<str>>(
    mut tensors: Vec<(N, Encoded)>,
    mut metadata: Vec<(K, String)>,
) -> Vec<u8> {
    // Wider dtypes first (as the safetensors crate does, so 8-byte data stays 8-byte aligned),
    // then by name.
    tensors
        .sort_by(|a, b| (b.1.dtype.cmp(&a.1.dtype)).then_with(|| a.0.as_ref().cmp(b.0.as_ref())));
    metadata.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    let mut header = String::from("{\"__metadata__\":{");
    for (k, (key, value)) in metadata.iter().enumerate() {
        if k > 0 {
            header.push(',');
        }
        json_string(&mut header, key.as_ref());
        header.push(':');
        json_string(&mut header, value);
    }
    header.push('}');
    let mut offset = 0usize;
    for (name, t) in &tensors {
        header.push(',');
        json_string(&mut header, name.as_ref());
        let shape: Vec<String> = t.shape.iter().map(usize::to_string).collect();
        header.push_str(&format!(
            ":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            t.dtype,
            shape.join(","),
            offset,
            offset + t.data.len()
        ));
        offset += t.data.len();
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for (_, t) in &tensors {
        out.extend_from_slice(&t.data);
    }
    out
}

/// Appends `s` as a JSON string literal (RFC 8259: quotes, backslashes and control characters
/// escaped).
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Saves every parameter of `params` to the safetensors file `path`, atomically.
///
/// The data goes to a temporary file in the same folder, is flushed to disk and then renamed over
/// `path`. On error the temporary file is removed and an existing file at `path` is untouched.
pub fn save<T: Scalar>(params: &ParamStore<T>, path: &Path) -> Result<()> {
    let bytes = save_to_bytes(params)?;
    write_atomic(path, &bytes)
}

/// Loads the safetensors bytes `bytes` into the existing parameters of `params`.
///
/// Every parameter must be in the checkpoint with its shape and dtype, and every tensor of the
/// checkpoint must be a parameter; otherwise nothing is changed and the error lists each problem
/// by parameter name. See [`load`].
pub fn load_from_bytes<T: Scalar>(params: &mut ParamStore<T>, bytes: &[u8]) -> Result<()> {
    load_impl(params, bytes, "checkpoint bytes", false)
}

/// Like [`load_from_bytes`], but accepts `F32` and `F64` tensors whatever the store's type,
/// rounding to the nearest representable value.
pub fn load_from_bytes_converting<T: Scalar>(
    params: &mut ParamStore<T>,
    bytes: &[u8],
) -> Result<()> {
    load_impl(params, bytes, "checkpoint bytes", true)
}

/// Loads the safetensors file `path` into the existing parameters of `params`.
///
/// The model's code has created the parameters; the file supplies their values. All of the
/// following are checked before any value changes, and each is an [`Error::Checkpoint`] naming the
/// parameter, with `params` left exactly as it was:
/// - a parameter of the store missing from the file;
/// - a tensor in the file that is not a parameter of the store;
/// - a shape that differs;
/// - a dtype other than the store's (`F64` data into an `f32` store; see [`load_converting`]).
///
/// A file that is not valid safetensors is an [`Error::Format`] naming it, an unreadable file an
/// [`Error::Io`]. Metadata is not required, so files written by other tools load too.
pub fn load<T: Scalar>(params: &mut ParamStore<T>, path: &Path) -> Result<()> {
    let bytes = read(path)?;
    load_impl(params, &bytes, &source_of(path), false)
}

/// Like [`load`], but accepts `F32` and `F64` tensors whatever the store's type, rounding to the
/// nearest representable value (for example, weights trained in `f64` into an `f32` model).
pub fn load_converting<T: Scalar>(params: &mut ParamStore<T>, path: &Path) -> Result<()> {
    let bytes = read(path)?;
    load_impl(params, &bytes, &source_of(path), true)
}

/// A new store (its initializers seeded with `seed`) holding every tensor of the safetensors
/// bytes `bytes`. See [`load_new`].
pub fn load_new_from_bytes<T: Scalar>(bytes: &[u8], seed: u64) -> Result<ParamStore<T>> {
    load_new_impl(bytes, "checkpoint bytes", seed)
}

/// A new store (its initializers seeded with `seed`) holding every tensor of the file `path`.
///
/// The parameters are created in the order recorded by [`save`] (the original creation order);
/// for files without that record (written by other tools), in the order of their data in the
/// file, which for most writers, this crate included, is sorted by dtype and then name. Every
/// tensor must have the store's dtype and at least one element.
pub fn load_new<T: Scalar>(path: &Path, seed: u64) -> Result<ParamStore<T>> {
    let bytes = read(path)?;
    load_new_impl(&bytes, &source_of(path), seed)
}

/// A tensor ready for [`serialize`].
pub(crate) struct Encoded {
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Vec<u8>,
}

/// One tensor of a parsed checkpoint, its data borrowed from the input.
pub(crate) struct Entry<'a> {
    pub(crate) name: String,
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: &'a [u8],
}

/// A validated checkpoint: its tensors in file (data offset) order and its metadata.
pub(crate) struct Parsed<'a> {
    pub(crate) entries: Vec<Entry<'a>>,
    pub(crate) metadata: HashMap<String, String>,
}

pub(crate) fn dtype_of<T: Scalar>() -> Result<Dtype> {
    match T::DTYPE {
        "F32" => Ok(Dtype::F32),
        "F64" => Ok(Dtype::F64),
        other => Err(Error::Checkpoint(format!(
            "checkpoints support the dtypes F32 and F64, not {other}"
        ))),
    }
}

/// The little-endian bytes of `value` in logical (row-major) order, in the dtype of `T`.
pub(crate) fn encode<T: Scalar>(value: &ArrayD<T>) -> Vec<u8> {
    let any = value as &dyn Any;
    if let Some(v) = any.downcast_ref::<ArrayD<f32>>() {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    } else if let Some(v) = any.downcast_ref::<ArrayD<f64>>() {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    } else if T::DTYPE == "F32" {
        // Another `Scalar` type that declares itself 32-bit.
        value
            .iter()
            .flat_map(|x| (x.to_f64_lossless() as f32).to_le_bytes())
            .collect()
    } else {
        value
            .iter()
            .flat_map(|x| x.to_f64_lossless().to_le_bytes())
            .collect()
    }
}

/// `values` as a `Vec<T>`: moved unchanged when `S` is `T` (bit-exact, NaN payloads included),
/// otherwise converted through `f64`.
fn cast_vec<S: Scalar, T: Scalar>(values: Vec<S>) -> Vec<T> {
    let mut slot = Some(values);
    if let Some(same) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Vec<T>>>() {
        return same.take().unwrap_or_default();
    }
    slot.unwrap_or_default()
        .into_iter()
        .map(|x| T::from_f64_lossy(x.to_f64_lossless()))
        .collect()
}

/// Decodes an `F32` or `F64` tensor into an array of `T`, checking the byte length against the
/// shape (an [`Error::Format`]) and that every value is finite in `T` (an [`Error::Checkpoint`]:
/// a NaN or infinity in the file, or an `F64` value too large for `f32`). Never panics on
/// inconsistent input.
pub(crate) fn decode<T: Scalar>(entry: &Entry<'_>, source: &str) -> Result<ArrayD<T>> {
    let corrupt = |what: &str| {
        Error::Format(format!(
            "{source}: tensor {:?} {what} (dtype {}, shape {:?}, {} bytes)",
            entry.name,
            entry.dtype,
            entry.shape,
            entry.data.len()
        ))
    };
    let count = entry
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| corrupt("has a shape whose size overflows"))?;
    let width = match entry.dtype {
        Dtype::F32 => 4,
        Dtype::F64 => 8,
        _ => return Err(corrupt("is not F32 or F64")),
    };
    if count.checked_mul(width) != Some(entry.data.len()) {
        return Err(corrupt("has a byte length that does not match its shape"));
    }
    let values: Vec<T> = if width == 4 {
        let v: Vec<f32> = entry
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        cast_vec(v)
    } else {
        let v: Vec<f64> = entry
            .data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        cast_vec(v)
    };
    let array = ArrayD::from_shape_vec(IxDyn(&entry.shape), values)
        .map_err(|e| corrupt(&format!("cannot be shaped ({e})")))?;
    if let Some(k) = array.iter().position(|x| !x.is_finite()) {
        // What the file holds at that element, to tell a NaN from an overflowing conversion.
        let stored = if width == 4 {
            let c = &entry.data[4 * k..4 * k + 4];
            f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        } else {
            let c = &entry.data[8 * k..8 * k + 8];
            f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
        };
        let what = if stored.is_finite() {
            format!(
                "holds {stored:e} at element {k} (row-major), which overflows {}",
                T::DTYPE
            )
        } else {
            format!("holds {stored} at element {k} (row-major); parameters must be finite")
        };
        return Err(Error::Checkpoint(format!(
            "{source}: tensor {:?} {what}",
            entry.name
        )));
    }
    Ok(array)
}

/// Parses and validates safetensors bytes (header, offsets, sizes) without copying the data.
pub(crate) fn parse<'a>(bytes: &'a [u8], source: &str) -> Result<Parsed<'a>> {
    let invalid = |what: String| {
        Error::Format(format!(
            "{source}: not a valid safetensors checkpoint: {what}"
        ))
    };
    let (header_len, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| invalid(e.to_string()))?;
    let data = header_len
        .checked_add(8)
        .and_then(|start| bytes.get(start..))
        .ok_or_else(|| invalid("the header length exceeds the file".to_string()))?;
    let mut entries = Vec::new();
    for name in metadata.offset_keys() {
        let info = metadata
            .info(&name)
            .ok_or_else(|| invalid(format!("tensor {name:?} has no header entry")))?;
        let (start, end) = info.data_offsets;
        let slice = data
            .get(start..end)
            .ok_or_else(|| invalid(format!("tensor {name:?} lies outside the data")))?;
        entries.push(Entry {
            dtype: info.dtype,
            shape: info.shape.clone(),
            data: slice,
            name,
        });
    }
    Ok(Parsed {
        entries,
        metadata: metadata.metadata().clone().unwrap_or_default(),
    })
}

fn load_impl<T: Scalar>(
    params: &mut ParamStore<T>,
    bytes: &[u8],
    source: &str,
    converting: bool,
) -> Result<()> {
    let dtype = dtype_of::<T>()?;
    let parsed = parse(bytes, source)?;

    let mut problems = Vec::new();
    let mut updates: Vec<(ParamId, ArrayD<T>)> = Vec::with_capacity(params.len());
    let mut found = HashSet::new();
    for entry in &parsed.entries {
        let Some(id) = params.id(&entry.name) else {
            problems.push(format!(
                "unexpected tensor {:?} (the model has no parameter of that name)",
                entry.name
            ));
            continue;
        };
        found.insert(id);
        let dtype_ok =
            entry.dtype == dtype || (converting && matches!(entry.dtype, Dtype::F32 | Dtype::F64));
        if !dtype_ok {
            let hint = if matches!(entry.dtype, Dtype::F32 | Dtype::F64) {
                " (the `_converting` loaders cast)"
            } else {
                ""
            };
            problems.push(format!(
                "parameter {:?} is stored as {} but the model uses {}{hint}",
                entry.name,
                entry.dtype,
                T::DTYPE
            ));
            continue;
        }
        let expected = params.value(id).shape();
        if entry.shape != expected {
            problems.push(format!(
                "parameter {:?} has shape {:?} in the checkpoint but {:?} in the model",
                entry.name, entry.shape, expected
            ));
            continue;
        }
        match decode::<T>(entry, source) {
            Ok(value) => updates.push((id, value)),
            Err(Error::Checkpoint(msg)) => problems.push(msg),
            Err(e) => problems.push(e.to_string()),
        }
    }
    for (id, name, _) in params.iter() {
        if !found.contains(&id) {
            problems.push(format!("missing parameter {name:?}"));
        }
    }

    if !problems.is_empty() {
        let total = problems.len();
        let mut listed = problems
            .into_iter()
            .take(MAX_LISTED_PROBLEMS)
            .collect::<Vec<_>>()
            .join("; ");
        if total > MAX_LISTED_PROBLEMS {
            listed.push_str(&format!("; and {} more", total - MAX_LISTED_PROBLEMS));
        }
        return Err(Error::Checkpoint(format!(
            "{source} does not fit the model, nothing was loaded: {listed}"
        )));
    }
    // Every check passed: from here on nothing can fail.
    for (id, value) in updates {
        *params.value_mut(id) = value;
    }
    Ok(())
}

fn load_new_impl<T: Scalar>(bytes: &[u8], source: &str, seed: u64) -> Result<ParamStore<T>> {
    let dtype = dtype_of::<T>()?;
    let parsed = parse(bytes, source)?;
    let order = creation_order(&parsed);

    let mut params = ParamStore::new(seed);
    for index in order {
        let entry = &parsed.entries[index];
        if entry.dtype != dtype {
            return Err(Error::Checkpoint(format!(
                "{source}: tensor {:?} is stored as {} but the store uses {}",
                entry.name,
                entry.dtype,
                T::DTYPE
            )));
        }
        let value = decode::<T>(entry, source)?;
        params.create_from(&entry.name, value).map_err(|e| {
            Error::Checkpoint(format!(
                "{source}: tensor {:?} cannot be a parameter: {e}",
                entry.name
            ))
        })?;
    }
    Ok(params)
}

/// Indices into `parsed.entries` in the recorded creation order if the metadata holds a valid
/// one (a permutation of the tensor names), else in file order.
fn creation_order(parsed: &Parsed<'_>) -> Vec<usize> {
    let file_order: Vec<usize> = (0..parsed.entries.len()).collect();
    let Some(recorded) = parsed.metadata.get(ORDER_KEY) else {
        return file_order;
    };
    let index: HashMap<&str, usize> = parsed
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.as_str(), i))
        .collect();
    let mut seen = HashSet::new();
    let mut order = Vec::with_capacity(parsed.entries.len());
    for name in recorded.split('\n') {
        match index.get(name) {
            Some(&i) if seen.insert(i) => order.push(i),
            _ => return file_order,
        }
    }
    if order.len() == parsed.entries.len() {
        order
    } else {
        file_order
    }
}

pub(crate) fn source_of(path: &Path) -> String {
    format!("checkpoint {}", path.display())
}

/// `err` with `context` prepended to its message, keeping its kind.
fn io_context(err: io::Error, context: String) -> Error {
    Error::Io(io::Error::new(err.kind(), format!("{context}: {err}")))
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| io_context(e, format!("cannot read checkpoint {}", path.display())))
}

/// The marker in the names of [`save`]'s temporary files: `.{file}.recurrent-tmp-{pid}-{n}`.
const TMP_MARKER: &str = ".recurrent-tmp-";

/// How many symbolic links [`save`] follows before giving up (Linux's own limit is 40).
const MAX_SYMLINKS: usize = 40;

/// `path` with symbolic links followed to the file they name (which may not exist yet), so that
/// saving through a link replaces the linked file and keeps the link.
fn resolve_symlinks(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current).map_err(|e| {
                    io_context(
                        e,
                        format!("cannot follow the symbolic link {}", current.display()),
                    )
                })?;
                current = match current.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(Error::Io(io::Error::other(format!(
        "cannot save checkpoint {}: more than {MAX_SYMLINKS} levels of symbolic links",
        path.display()
    ))))
}

/// Whether a temporary file of [`save`] was left by a process that is gone: on systems with
/// `/proc`, when no process has its pid; elsewhere, when it is older than a day.
fn is_stale(pid: u32, modified: Option<std::time::SystemTime>) -> bool {
    if pid == std::process::id() {
        // This process's other saves may be writing right now.
        return false;
    }
    let proc = Path::new("/proc");
    if proc.join("self").exists() {
        return !proc.join(pid.to_string()).exists();
    }
    modified
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(24 * 3600))
}

/// Removes the temporary files that earlier saves to `file_name` in `dir` left behind when their
/// process died (best effort: a file that cannot be removed stays).
fn remove_stale_temps(dir: &Path, file_name: &str) {
    let prefix = format!(".{file_name}{TMP_MARKER}");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_file() && is_stale(pid, meta.modified().ok()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Writes `bytes` to `path` through a temporary sibling file and a rename (see [`save`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let target = resolve_symlinks(path)?;
    let file_name = target.file_name().ok_or_else(|| {
        Error::Checkpoint(format!(
            "cannot save to {}: the path does not name a file",
            path.display()
        ))
    })?;
    let file_name = file_name.to_string_lossy().into_owned();
    let dir = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    remove_stale_temps(dir, &file_name);
    let tmp = dir.join(format!(
        ".{file_name}{TMP_MARKER}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let context = || format!("cannot save checkpoint {}", path.display());
    // The permissions of the file being replaced, given to the new one before any data is in it.
    let keep = fs::metadata(&target)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.permissions());

    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if let Some(perms) = &keep {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        // The umask may clear bits here; set_permissions below restores them exactly.
        options.mode(perms.mode() & 0o777);
    }
    let mut file = options.open(&tmp).map_err(|e| io_context(e, context()))?;
    let written = match &keep {
        Some(perms) => file.set_permissions(perms.clone()),
        None => Ok(()),
    }
    .and_then(|()| file.write_all(bytes))
    .and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, &target)) {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&tmp);
        return Err(io_context(e, context()));
    }
    sync_dir(dir);
    Ok(())
}

/// Flushes the rename to disk where the platform allows it (best effort: the file is in place).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
}

pub use super::transfer::{load_matching, load_matching_from_bytes, LoadOptions, LoadReport};

/// Whether `key` is one of the metadata entries this crate writes itself (`"format"` and every
/// `"recurrent_*"` key): [`save_with_metadata`] refuses them and [`read_metadata`] leaves them
/// out.
fn is_reserved_metadata_key(key: &str) -> bool {
    key == FORMAT_KEY || key.starts_with("recurrent_")
}

/// [`save_to_bytes`] with extra entries in the safetensors `__metadata__` (text that belongs
/// with the weights: a vocabulary, the model's sizes). The tensors and the crate's own entries
/// are exactly those of [`save_to_bytes`], in the same canonical form (one store and one
/// metadata map always give the same bytes).
///
/// # Errors
/// [`Error::InvalidArgument`] naming the key if one is `"format"` or starts with
/// `"recurrent_"` (the crate's own entries) or is empty; the errors of [`save_to_bytes`].
pub fn save_with_metadata_to_bytes<T: Scalar>(
    params: &ParamStore<T>,
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    if let Some(key) = metadata
        .keys()
        .find(|k| k.is_empty() || is_reserved_metadata_key(k))
    {
        return Err(Error::invalid(format!(
            "checkpoint::save_with_metadata: the metadata key {key:?} is reserved (the crate \
             writes \"{FORMAT_KEY}\" and \"recurrent_*\" itself) or empty; choose another name"
        )));
    }
    let plain = save_to_bytes(params)?;
    let parsed = parse(&plain, "checkpoint bytes")?;
    let tensors: Vec<(String, Encoded)> = parsed
        .entries
        .iter()
        .map(|e| {
            let encoded = Encoded {
                dtype: e.dtype,
                shape: e.shape.clone(),
                data: e.data.to_vec(),
            };
            (e.name.clone(), encoded)
        })
        .collect();
    let mut all: Vec<(String, String)> = parsed.metadata.into_iter().collect();
    all.extend(metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(serialize(tensors, all))
}

/// Saves `params` to `path` as [`save`] does (atomically), with `metadata`'s entries added to
/// the file's `__metadata__`; [`read_metadata`] gives them back and every loader (here or in
/// Python) reads the file as a plain checkpoint.
///
/// ```
/// use std::collections::BTreeMap;
/// use recurrent::{checkpoint, init::Initializer, ParamStore};
///
/// let mut params = ParamStore::<f32>::new(1);
/// params.create("embedding/embeddings", &[5, 2], Initializer::GlorotUniform)?;
/// let metadata = BTreeMap::from([("vocabulary".to_string(), "char-vocab/1 ...".to_string())]);
/// let path = std::env::temp_dir().join(format!("recurrent-meta-{}.safetensors", std::process::id()));
/// checkpoint::save_with_metadata(&params, &path, &metadata)?;
/// assert_eq!(checkpoint::read_metadata(&path)?, metadata);
/// let restored = checkpoint::load_new::<f32>(&path, 0)?; // still a plain checkpoint
/// assert_eq!(restored.len(), 1);
/// std::fs::remove_file(&path)?;
/// # Ok::<(), recurrent::Error>(())
/// ```
///
/// # Errors
/// As [`save_with_metadata_to_bytes`], and I/O errors naming the path.
pub fn save_with_metadata<T: Scalar>(
    params: &ParamStore<T>,
    path: &Path,
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let bytes = save_with_metadata_to_bytes(params, metadata)?;
    write_atomic(path, &bytes)
}

/// The metadata entries of safetensors bytes other than the crate's own (`"format"`,
/// `"recurrent_*"`): what [`save_with_metadata_to_bytes`] was given. Empty for a plain
/// checkpoint.
///
/// # Errors
/// [`Error::Format`] if the bytes are not a valid safetensors file.
pub fn read_metadata_from_bytes(
    bytes: &[u8],
) -> Result<std::collections::BTreeMap<String, String>> {
    metadata_of(bytes, "checkpoint bytes")
}

/// The metadata entries of the checkpoint `path` other than the crate's own, as
/// [`save_with_metadata`] stored them (without reading the tensors into a store).
///
/// # Errors
/// I/O errors naming the path; [`Error::Format`] naming it if it is not a valid safetensors file.
pub fn read_metadata(path: &Path) -> Result<std::collections::BTreeMap<String, String>> {
    metadata_of(&read(path)?, &source_of(path))
}

fn metadata_of(bytes: &[u8], source: &str) -> Result<std::collections::BTreeMap<String, String>> {
    let parsed = parse(bytes, source)?;
    Ok(parsed
        .metadata
        .into_iter()
        .filter(|(k, _)| !is_reserved_metadata_key(k))
        .collect())
}
