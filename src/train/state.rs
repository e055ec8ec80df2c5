//! The complete state of a training run, in one safetensors file, so that a resumed run is the
//! same run, bit for bit.
//!
//! # What the file holds
//! - every parameter under its own name (as [`checkpoint::save`](crate::checkpoint::save)
//!   writes it, so Python tools read the weights as usual);
//! - every optimizer slot as `{parameter}:{slot}` (`rnn/basic_lstm_cell/kernel:m`; `:` never
//!   appears in a TensorFlow variable name);
//! - the recurrent states carried between batches as `carry:{layer}:{k}`;
//! - the data source's order of examples as `data:order` (`U64`);
//! - metadata: the optimizer's step count and learning rate, the run's seed, the data source's
//!   counters and generator position, and the trainer's own bookkeeping (early stopping, the
//!   divergence guard), with `"format": "recurrent-training-state"`.
//!
//! Dropout masks need no saved generator: the [`Trainer`](super::Trainer) seeds each step's tape
//! from the run's seed and the step number. A learning-rate schedule is a function of the step
//! count, so its position is the optimizer's step.
//!
//! Loading checks everything before it changes anything: a missing or misshapen parameter or
//! slot, an unknown tensor, or unreadable metadata is an error and the store is untouched.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::ArrayD;
use safetensors::tensor::Dtype;

use crate::data::{DataPosition, RngPosition};
use crate::io::checkpoint::{
    decode, dtype_of, encode, parse, read, serialize, source_of, write_atomic, Encoded, Entry,
};
use crate::layers::Carry;
use crate::optim::OptimizerState;
use crate::{Error, ParamId, ParamStore, Result, Scalar};

/// The value of the `"format"` metadata entry of a training-state file.
pub const TRAINING_STATE_FORMAT: &str = "recurrent-training-state";

/// Everything besides the parameters that a training run must keep to continue exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingState<T> {
    /// The optimizer's step count, learning rate and slots.
    pub optimizer: OptimizerState<T>,
    /// Where the training data stood, if the run had a resumable source.
    pub data: Option<DataPosition>,
    /// Recurrent states carried from one batch to the next (truncated BPTT).
    pub carry: Carry<T>,
    /// The seed the run's per-step dropout seeds derive from.
    pub seed: u64,
    /// The trainer's bookkeeping, by name (for example the best validation metric so far).
    pub extra: BTreeMap<String, String>,
}

const FORMAT_KEY: &str = "format";
const VERSION_KEY: &str = "recurrent_version";
const STEP_KEY: &str = "optimizer_step";
const LR_KEY: &str = "learning_rate";
const SEED_KEY: &str = "seed";
const DATA_KEY: &str = "data";
const COUNTERS_KEY: &str = "data_counters";
const RNG_SEED_KEY: &str = "data_rng_seed";
const RNG_STREAM_KEY: &str = "data_rng_stream";
const RNG_POS_KEY: &str = "data_rng_word_pos";
const EXTRA_PREFIX: &str = "extra:";
const ORDER_TENSOR: &str = "data:order";
const CARRY_PREFIX: &str = "carry:";

/// Serialises the parameters and the training state into safetensors bytes.
pub fn save_training_state_to_bytes<T: Scalar>(
    params: &ParamStore<T>,
    state: &TrainingState<T>,
) -> Result<Vec<u8>> {
    let dtype = dtype_of::<T>()?;
    let floats = |value: &ArrayD<T>| Encoded {
        dtype,
        shape: value.shape().to_vec(),
        data: encode(value),
    };
    let mut tensors: Vec<(String, Encoded)> = Vec::new();
    for (_, name, value) in params.iter() {
        if name.contains(':') {
            return Err(Error::Checkpoint(format!(
                "parameter {name:?}: a training state cannot hold a parameter name with ':'"
            )));
        }
        tensors.push((name.to_string(), floats(value)));
    }
    for (id, slot, value) in &state.optimizer.slots {
        if !params.contains(*id) {
            return Err(Error::Checkpoint(format!(
                "an optimizer slot {slot:?} for parameter #{} of a store of {}",
                id.index(),
                params.len()
            )));
        }
        tensors.push((format!("{}:{slot}", params.name(*id)), floats(value)));
    }
    for (layer, vars) in state.carry.iter() {
        for (k, value) in vars.iter().enumerate() {
            tensors.push((format!("{CARRY_PREFIX}{layer}:{k}"), floats(value)));
        }
    }
    // Written in sorted order by `serialize`: the same state gives the same bytes.
    let mut metadata: Vec<(String, String)> = Vec::new();
    let mut meta = |k: &str, v: String| metadata.push((k.to_string(), v));
    meta(FORMAT_KEY, TRAINING_STATE_FORMAT.to_string());
    meta(VERSION_KEY, env!("CARGO_PKG_VERSION").to_string());
    meta(STEP_KEY, state.optimizer.step.to_string());
    // `{:?}` of an f64 is the shortest text that parses back to the same bits.
    meta(LR_KEY, format!("{:?}", state.optimizer.learning_rate));
    meta(SEED_KEY, state.seed.to_string());
    meta(DATA_KEY, state.data.is_some().to_string());
    if let Some(data) = &state.data {
        let counters: Vec<String> = data.counters.iter().map(u64::to_string).collect();
        meta(COUNTERS_KEY, counters.join(","));
        meta(RNG_SEED_KEY, hex(&data.rng.seed));
        meta(RNG_STREAM_KEY, data.rng.stream.to_string());
        meta(RNG_POS_KEY, data.rng.word_pos.to_string());
        tensors.push((
            ORDER_TENSOR.to_string(),
            Encoded {
                dtype: Dtype::U64,
                shape: vec![data.order.len()],
                data: data.order.iter().flat_map(|i| i.to_le_bytes()).collect(),
            },
        ));
    }
    for (k, v) in &state.extra {
        meta(&format!("{EXTRA_PREFIX}{k}"), v.clone());
    }
    Ok(serialize(tensors, metadata))
}

/// Saves the parameters and the training state to `path`, atomically (as
/// [`checkpoint::save`](crate::checkpoint::save)).
pub fn save_training_state<T: Scalar>(
    params: &ParamStore<T>,
    state: &TrainingState<T>,
    path: &Path,
) -> Result<()> {
    write_atomic(path, &save_training_state_to_bytes(params, state)?)
}

/// Loads a training state from `path` into `params` (which must hold exactly the saved
/// parameters) and returns the rest. Nothing changes on error.
pub fn load_training_state<T: Scalar>(
    params: &mut ParamStore<T>,
    path: &Path,
) -> Result<TrainingState<T>> {
    load_impl(params, &read(path)?, &source_of(path))
}

/// [`load_training_state`] from bytes.
pub fn load_training_state_from_bytes<T: Scalar>(
    params: &mut ParamStore<T>,
    bytes: &[u8],
) -> Result<TrainingState<T>> {
    load_impl(params, bytes, "training state bytes")
}

fn load_impl<T: Scalar>(
    params: &mut ParamStore<T>,
    bytes: &[u8],
    source: &str,
) -> Result<TrainingState<T>> {
    let dtype = dtype_of::<T>()?;
    let parsed = parse(bytes, source)?;
    let bad = |what: String| Error::Checkpoint(format!("{source}: {what}"));
    let meta = |key: &str| {
        parsed
            .metadata
            .get(key)
            .ok_or_else(|| bad(format!("no {key:?} in the metadata")))
    };
    if meta(FORMAT_KEY)? != TRAINING_STATE_FORMAT {
        return Err(bad(format!(
            "not a training state (format {:?}); weights alone load with checkpoint::load",
            parsed.metadata.get(FORMAT_KEY)
        )));
    }
    let number = |key: &str| -> Result<u64> {
        meta(key)?
            .parse()
            .map_err(|_| bad(format!("metadata {key:?} is not a whole number")))
    };
    let float_of = |entry: &Entry<'_>| -> Result<ArrayD<T>> {
        if entry.dtype != dtype {
            return Err(bad(format!(
                "tensor {:?} is stored as {} but the model uses {}",
                entry.name,
                entry.dtype,
                T::DTYPE
            )));
        }
        decode::<T>(entry, source)
    };

    let mut values: Vec<Option<ArrayD<T>>> = vec![None; params.len()];
    let mut slots: Vec<(ParamId, String, ArrayD<T>)> = Vec::new();
    let mut carry: BTreeMap<String, BTreeMap<usize, ArrayD<T>>> = BTreeMap::new();
    let mut order: Option<Vec<u64>> = None;
    for entry in &parsed.entries {
        if entry.name == ORDER_TENSOR {
            if entry.dtype != Dtype::U64 || entry.data.len() % 8 != 0 {
                return Err(bad(format!("tensor {ORDER_TENSOR:?} is not U64")));
            }
            let chunks = entry.data.chunks_exact(8);
            order = Some(
                chunks
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            );
        } else if let Some(rest) = entry.name.strip_prefix(CARRY_PREFIX) {
            let (layer, k) = rest
                .rsplit_once(':')
                .and_then(|(layer, k)| Some((layer, k.parse::<usize>().ok()?)))
                .ok_or_else(|| bad(format!("a carried state named {:?}", entry.name)))?;
            carry
                .entry(layer.to_string())
                .or_default()
                .insert(k, float_of(entry)?);
        } else if let Some((param, slot)) = entry.name.rsplit_once(':') {
            let id = params.id(param).ok_or_else(|| {
                bad(format!(
                    "an optimizer slot {slot:?} for {param:?}, which the model does not have"
                ))
            })?;
            slots.push((id, slot.to_string(), float_of(entry)?));
        } else {
            let id = params.id(&entry.name).ok_or_else(|| {
                bad(format!(
                    "unexpected tensor {:?} (the model has no parameter of that name)",
                    entry.name
                ))
            })?;
            let want = params.value(id).shape();
            if entry.shape != want {
                return Err(bad(format!(
                    "parameter {:?} has shape {:?} in the file but {want:?} in the model",
                    entry.name, entry.shape
                )));
            }
            values[id.index()] = Some(float_of(entry)?);
        }
    }
    if let Some(missing) = values.iter().position(Option::is_none) {
        return Err(bad(format!(
            "missing parameter {:?}",
            params.name(ParamId(missing))
        )));
    }
    crate::optim::sort_slots(&mut slots);

    let mut carried = Carry::new();
    for (layer, parts) in carry {
        let n = parts.len();
        if parts.keys().copied().ne(0..n) {
            return Err(bad(format!("the carried state of {layer:?} has gaps")));
        }
        carried.set(&layer, parts.into_values().collect());
    }
    let data = match meta(DATA_KEY)?.as_str() {
        "false" => None,
        "true" => {
            let counters = meta(COUNTERS_KEY)?;
            let counters = if counters.is_empty() {
                Vec::new()
            } else {
                counters
                    .split(',')
                    .map(|c| c.parse::<u64>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| bad(format!("metadata {COUNTERS_KEY:?} is not numbers")))?
            };
            let seed = unhex(meta(RNG_SEED_KEY)?)
                .ok_or_else(|| bad(format!("metadata {RNG_SEED_KEY:?} is not 64 hex digits")))?;
            let word_pos = meta(RNG_POS_KEY)?
                .parse::<u128>()
                .map_err(|_| bad(format!("metadata {RNG_POS_KEY:?} is not a whole number")))?;
            Some(DataPosition {
                counters,
                order: order.unwrap_or_default(),
                rng: RngPosition {
                    seed,
                    stream: number(RNG_STREAM_KEY)?,
                    word_pos,
                },
            })
        }
        other => return Err(bad(format!("metadata {DATA_KEY:?} is {other:?}"))),
    };
    let learning_rate = meta(LR_KEY)?
        .parse::<f64>()
        .map_err(|_| bad(format!("metadata {LR_KEY:?} is not a number")))?;
    let extra = parsed
        .metadata
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(EXTRA_PREFIX)?.to_string(), v.clone())))
        .collect();
    let state = TrainingState {
        optimizer: OptimizerState {
            step: number(STEP_KEY)?,
            learning_rate,
            slots,
        },
        data,
        carry: carried,
        seed: number(SEED_KEY)?,
        extra,
    };
    // Every check passed: from here on nothing can fail.
    for (k, value) in values.into_iter().enumerate() {
        *params.value_mut(ParamId(k)) = value.expect("checked above");
    }
    Ok(state)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (k, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * k..2 * k + 2], 16).ok()?;
    }
    Some(out)
}
