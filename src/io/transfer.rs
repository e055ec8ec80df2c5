//! Loading part of a checkpoint into another model: transfer learning and fine-tuning.

use std::collections::BTreeSet;
use std::path::Path;

use ndarray::ArrayD;

use super::checkpoint::{decode, dtype_of, parse, read, source_of};
use crate::{Error, ParamId, ParamStore, Result, Scalar};

/// Which tensors of a checkpoint go where ([`load_matching`]), in the manner of PyTorch's
/// `load_state_dict(strict=False)` and TensorFlow's `init_from_checkpoint(assignment_map)`.
///
/// A checkpoint tensor's name is first rewritten by the first rename whose `from` prefix it
/// starts with (`("encoder/", "rnn/")` makes `encoder/basic_lstm_cell/kernel` load into
/// `rnn/basic_lstm_cell/kernel`); then it is loaded into the model's parameter of that name if
/// the model has one and it passes [`LoadOptions::only`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Prefix rewrites `(from, to)` applied to the checkpoint's names, first match wins.
    pub renames: Vec<(String, String)>,
    /// Load only the model's parameters whose names start with one of these prefixes (all if
    /// empty); the others keep their values.
    pub only: Vec<String>,
    /// Model parameters the checkpoint does not supply are an error unless this is set.
    pub allow_missing: bool,
    /// Checkpoint tensors that go nowhere are an error unless this is set.
    pub allow_unexpected: bool,
}

impl LoadOptions {
    /// Every parameter must be supplied and every tensor used (what [`checkpoint::load`]
    /// asks), with no renames.
    ///
    /// [`checkpoint::load`]: super::checkpoint::load
    pub fn strict() -> Self {
        Self::default()
    }

    /// Loads what matches and reports the rest (`strict=False`).
    pub fn lenient() -> Self {
        LoadOptions {
            allow_missing: true,
            allow_unexpected: true,
            ..Self::default()
        }
    }

    /// Adds a prefix rewrite of checkpoint names.
    pub fn rename(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.renames.push((from.into(), to.into()));
        self
    }

    /// Restricts loading to parameters under `prefix` (may be given several times).
    pub fn only(mut self, prefix: impl Into<String>) -> Self {
        self.only.push(prefix.into());
        self
    }
}

/// What [`load_matching`] did, by parameter name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Model parameters that received a value, in creation order.
    pub loaded: Vec<String>,
    /// Model parameters (within [`LoadOptions::only`]) that the checkpoint did not supply.
    pub missing: Vec<String>,
    /// Checkpoint tensors (by their name in the file) that went to no parameter.
    pub unexpected: Vec<String>,
    /// Checkpoint tensors that match a parameter outside [`LoadOptions::only`], left as they
    /// were on purpose (never an error).
    pub skipped: Vec<String>,
}

/// Loads the tensors of the safetensors file `path` that `options` map onto parameters of
/// `params`, and reports what was loaded, missing and left over.
///
/// Shapes and dtypes must agree for every tensor that is loaded; a mismatch is always an error
/// (a renamed layer of another size cannot be half loaded). Everything is checked first: on any
/// error nothing is written.
///
/// ```
/// use recurrent::checkpoint::{self, load_matching, LoadOptions};
/// use recurrent::layers::{Dense, Rnn};
/// use recurrent::ParamStore;
///
/// // A trained encoder: an LSTM and a classifier head.
/// let mut trained = ParamStore::<f32>::new(1);
/// Rnn::lstm(&mut trained, 4, 8)?;
/// Dense::new(&mut trained, "dense", 8, 3)?;
/// let path = std::env::temp_dir().join(format!("recurrent-transfer-{}.safetensors", std::process::id()));
/// checkpoint::save(&trained, &path)?;
///
/// // A new model reuses the LSTM with a new head of another size.
/// let mut model = ParamStore::<f32>::new(2);
/// Rnn::lstm(&mut model, 4, 8)?;
/// Dense::new(&mut model, "head", 8, 5)?;
/// let report = load_matching(&mut model, &path, &LoadOptions::lenient().only("rnn/"))?;
/// assert_eq!(report.loaded, ["rnn/basic_lstm_cell/kernel", "rnn/basic_lstm_cell/bias"]);
/// assert_eq!(report.unexpected, ["dense/bias", "dense/kernel"]); // the new head is "head"
/// // Strictly, the new head is missing from the file: an error that names it.
/// let err = load_matching(&mut model, &path, &LoadOptions::strict()).unwrap_err();
/// assert!(err.to_string().contains("head/kernel"));
/// std::fs::remove_file(&path)?;
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn load_matching<T: Scalar>(
    params: &mut ParamStore<T>,
    path: &Path,
    options: &LoadOptions,
) -> Result<LoadReport> {
    load_matching_impl(params, &read(path)?, &source_of(path), options)
}

/// [`load_matching`] from bytes.
pub fn load_matching_from_bytes<T: Scalar>(
    params: &mut ParamStore<T>,
    bytes: &[u8],
    options: &LoadOptions,
) -> Result<LoadReport> {
    load_matching_impl(params, bytes, "checkpoint bytes", options)
}

fn load_matching_impl<T: Scalar>(
    params: &mut ParamStore<T>,
    bytes: &[u8],
    source: &str,
    options: &LoadOptions,
) -> Result<LoadReport> {
    let dtype = dtype_of::<T>()?;
    let parsed = parse(bytes, source)?;
    let wanted = |name: &str| {
        options.only.is_empty() || options.only.iter().any(|p| name.starts_with(p.as_str()))
    };
    let mut updates: Vec<(ParamId, ArrayD<T>)> = Vec::new();
    let mut unexpected = BTreeSet::new();
    let mut skipped = BTreeSet::new();
    let mut problems = Vec::new();
    for entry in &parsed.entries {
        let target = options
            .renames
            .iter()
            .find_map(|(from, to)| {
                entry
                    .name
                    .strip_prefix(from.as_str())
                    .map(|rest| format!("{to}{rest}"))
            })
            .unwrap_or_else(|| entry.name.clone());
        let Some(id) = params.id(&target) else {
            unexpected.insert(entry.name.clone());
            continue;
        };
        if !wanted(&target) {
            skipped.insert(entry.name.clone());
            continue;
        }
        if updates.iter().any(|(done, _)| *done == id) {
            problems.push(format!("two tensors of the file map onto {target:?}"));
            continue;
        }
        let want = params.value(id).shape();
        if entry.shape != want {
            problems.push(format!(
                "{:?} has shape {:?} in the file but {target:?} has {want:?} in the model",
                entry.name, entry.shape
            ));
            continue;
        }
        if entry.dtype != dtype {
            problems.push(format!(
                "{:?} is stored as {} but the model uses {}",
                entry.name,
                entry.dtype,
                T::DTYPE
            ));
            continue;
        }
        match decode::<T>(entry, source) {
            Ok(value) => updates.push((id, value)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let missing: Vec<String> = params
        .iter()
        .filter(|(id, name, _)| wanted(name) && !updates.iter().any(|(u, _)| u == id))
        .map(|(_, name, _)| name.to_string())
        .collect();
    if !options.allow_missing && !missing.is_empty() {
        problems.push(format!("missing from the file: {missing:?}"));
    }
    if !options.allow_unexpected && !unexpected.is_empty() {
        problems.push(format!(
            "tensors that go to no parameter: {unexpected:?} (rename them, or allow unexpected)"
        ));
    }
    if !problems.is_empty() {
        return Err(Error::Checkpoint(format!(
            "{source} does not fit the model, nothing was loaded: {}",
            problems.join("; ")
        )));
    }
    updates.sort_by_key(|(id, _)| *id);
    let loaded = updates
        .iter()
        .map(|(id, _)| params.name(*id).to_string())
        .collect();
    for (id, value) in updates {
        *params.value_mut(id) = value;
    }
    Ok(LoadReport {
        loaded,
        missing,
        unexpected: unexpected.into_iter().collect(),
        skipped: skipped.into_iter().collect(),
    })
}
