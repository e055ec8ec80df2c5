//! Named, shaped parameters: the model's weights.
//!
//! A [`ParamStore`] owns every trainable array of a model under a TensorFlow-style scoped path
//! (`"rnn/basic_lstm_cell/kernel"`). Layers and cells keep only [`ParamId`] handles, so one store
//! can be read by several tapes (and threads) at once, enumerated by optimizers and saved whole by
//! checkpoints.

use std::collections::{HashMap, HashSet};

use ndarray::ArrayD;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::init::Initializer;
use crate::{Error, Result, Scalar};

/// A handle to one parameter of a [`ParamStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub(crate) usize);

impl ParamId {
    /// The parameter's position in its store's creation order.
    pub fn index(self) -> usize {
        self.0
    }
}

/// The trainable parameters of a model, by name, in creation order.
///
/// Creation draws from the store's seeded random generator, so the same seed and the same
/// sequence of `create` calls give bit-identical initial weights.
///
/// ```
/// use recurrent::{init::Initializer, ParamStore};
///
/// let mut params = ParamStore::<f32>::new(42);
/// let w = params.create("dense/kernel", &[3, 2], Initializer::GlorotUniform).unwrap();
/// assert_eq!(params.value(w).shape(), &[3, 2]);
/// assert_eq!(params.num_params(), 6);
/// assert!(params.create("dense/kernel", &[3, 2], Initializer::Zeros).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct ParamStore<T: Scalar> {
    names: Vec<String>,
    values: Vec<ArrayD<T>>,
    by_name: HashMap<String, ParamId>,
    /// Scopes handed out by [`ParamStore::unique_scope`].
    scopes: HashSet<String>,
    rng: StdRng,
}

impl<T: Scalar> ParamStore<T> {
    /// An empty store whose initializers draw from a generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        ParamStore {
            names: Vec::new(),
            values: Vec::new(),
            by_name: HashMap::new(),
            scopes: HashSet::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Creates the parameter `name` of shape `shape`, filled by `init`.
    ///
    /// Errors if the name is taken (share a parameter explicitly with [`ParamStore::id`]), empty,
    /// if the shape has a zero dimension, is too large to allocate (its size is checked before
    /// any memory is taken) or does not suit the initializer, or if the initializer gives a NaN
    /// or an infinity (see [`Initializer::sample`]).
    pub fn create(&mut self, name: &str, shape: &[usize], init: Initializer) -> Result<ParamId> {
        // The name first, so that a refused name draws nothing from the generator.
        self.check_name(name)?;
        // The initializer's error, with the parameter (and so the layer) named.
        let value = init
            .sample::<T>(shape, &mut self.rng)
            .map_err(|e| match e {
                Error::Shape { op, expected, got } => Error::Shape {
                    op,
                    expected: format!("{expected} for parameter {name:?}"),
                    got,
                },
                Error::InvalidArgument(msg) => {
                    Error::InvalidArgument(format!("parameter {name:?}: {msg}"))
                }
                other => other,
            })?;
        check_value(name, &value)?;
        Ok(self.insert(name, value))
    }

    /// Adds the parameter `name` with the given value (for weights trained elsewhere).
    ///
    /// Errors like [`ParamStore::create`]; a value holding a NaN or an infinity is an
    /// [`Error::NonFinite`] naming the parameter.
    pub fn create_from(&mut self, name: &str, value: ArrayD<T>) -> Result<ParamId> {
        self.check_name(name)?;
        check_value(name, &value)?;
        Ok(self.insert(name, value))
    }

    /// Adds several parameters from given values, all or none: every name and value is checked
    /// (including names repeated within `named`) before the first is added, so an error leaves
    /// the store as it was.
    pub(crate) fn create_all_from(
        &mut self,
        named: Vec<(String, ArrayD<T>)>,
    ) -> Result<Vec<ParamId>> {
        for (k, (name, value)) in named.iter().enumerate() {
            self.check_name(name)?;
            check_value(name, value)?;
            if named[..k].iter().any(|(earlier, _)| earlier == name) {
                return Err(Error::invalid(format!("parameter {name:?} given twice")));
            }
        }
        named
            .into_iter()
            .map(|(name, value)| Ok(self.insert(&name, value)))
            .collect()
    }

    /// Refuses a layer's or cell's parameters before any is drawn: `Err` naming `owner` and the
    /// first of `names` (each joined to `scope`) that is taken, so that a refused layer leaves
    /// the store (and its generator) as it was.
    pub(crate) fn check_free(&self, owner: &str, scope: &Scope, names: &[&str]) -> Result<()> {
        match names
            .iter()
            .map(|name| scope.join(name))
            .find(|name| self.by_name.contains_key(name))
        {
            Some(taken) => Err(Error::invalid(format!(
                "{owner}: the parameter name {taken:?} is taken"
            ))),
            None => Ok(()),
        }
    }

    /// A new parameter's name must be non-empty and free.
    fn check_name(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::invalid("parameter name must not be empty"));
        }
        if self.by_name.contains_key(name) {
            return Err(Error::invalid(format!(
                "parameter {name:?} already exists; to share it, look it up with ParamStore::id"
            )));
        }
        Ok(())
    }

    /// Adds a parameter whose name and value were checked (`check_name`, `check_value`).
    fn insert(&mut self, name: &str, value: ArrayD<T>) -> ParamId {
        let id = ParamId(self.values.len());
        self.names.push(name.to_string());
        self.values.push(value.as_standard_layout().into_owned());
        self.by_name.insert(name.to_string(), id);
        id
    }

    /// A scope named `base` that no parameter and no earlier call uses, made unique the way
    /// TensorFlow makes variable scopes unique: `base`, then `base_1`, `base_2`, ...
    ///
    /// Layers built without an explicit scope take theirs from here, so two LSTM layers get
    /// `rnn/basic_lstm_cell/kernel` and `rnn_1/basic_lstm_cell/kernel` and never clash.
    ///
    /// ```
    /// use recurrent::ParamStore;
    /// let mut params = ParamStore::<f32>::new(0);
    /// assert_eq!(params.unique_scope("rnn").path(), "rnn");
    /// assert_eq!(params.unique_scope("rnn").path(), "rnn_1");
    /// assert_eq!(params.unique_scope("dense").path(), "dense");
    /// ```
    pub fn unique_scope(&mut self, base: &str) -> Scope {
        let base = base.trim_matches('/');
        let taken = |store: &Self, path: &str| {
            let prefix = format!("{path}/");
            store.scopes.contains(path)
                || store
                    .names
                    .iter()
                    .any(|n| n == path || n.starts_with(&prefix))
        };
        let mut path = base.to_string();
        let mut k = 0usize;
        while taken(self, &path) {
            k += 1;
            path = format!("{base}_{k}");
        }
        self.scopes.insert(path.clone());
        Scope::new(path)
    }

    /// The handle of the parameter called `name`, if any.
    pub fn id(&self, name: &str) -> Option<ParamId> {
        self.by_name.get(name).copied()
    }

    /// The name of a parameter.
    ///
    /// # Panics
    /// If `id` comes from another store with more parameters.
    pub fn name(&self, id: ParamId) -> &str {
        &self.names[id.0]
    }

    /// The current value of a parameter.
    ///
    /// # Panics
    /// If `id` comes from another store with more parameters.
    pub fn value(&self, id: ParamId) -> &ArrayD<T> {
        &self.values[id.0]
    }

    /// The current value of a parameter, mutably (optimizers and loaders write through this).
    ///
    /// # Panics
    /// If `id` comes from another store with more parameters.
    pub fn value_mut(&mut self, id: ParamId) -> &mut ArrayD<T> {
        &mut self.values[id.0]
    }

    /// Replaces a parameter's value with one of the same shape.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an id of another store, [`Error::Shape`] for another shape,
    /// [`Error::NonFinite`] (naming the parameter and the first bad element) for a value holding a
    /// NaN or an infinity; the parameter is then unchanged.
    pub fn set(&mut self, id: ParamId, value: ArrayD<T>) -> Result<()> {
        let slot = self
            .values
            .get_mut(id.0)
            .ok_or_else(|| Error::invalid(format!("unknown parameter id {}", id.0)))?;
        if slot.shape() != value.shape() {
            return Err(Error::Shape {
                op: "ParamStore::set",
                expected: format!("{:?} for {:?}", slot.shape(), self.names[id.0]),
                got: format!("{:?}", value.shape()),
            });
        }
        check_finite("ParamStore::set", &self.names[id.0], &value)?;
        *slot = value.as_standard_layout().into_owned();
        Ok(())
    }

    /// Whether `id` names a parameter of this store.
    pub fn contains(&self, id: ParamId) -> bool {
        id.0 < self.values.len()
    }

    /// `Ok` if every id belongs to this store, else an [`Error::InvalidArgument`] naming `op`
    /// (a layer built over another store would panic when run).
    pub(crate) fn check_ids(&self, op: &str, ids: &[ParamId]) -> Result<()> {
        if ids.iter().all(|&id| self.contains(id)) {
            Ok(())
        } else {
            Err(Error::invalid(format!("{op}: unknown parameter id")))
        }
    }

    /// The number of parameters (arrays).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the store holds no parameter.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The total number of scalar weights.
    pub fn num_params(&self) -> usize {
        self.values.iter().map(|v| v.len()).sum()
    }

    /// Every parameter as `(id, name, value)`, in creation order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &str, &ArrayD<T>)> {
        self.names
            .iter()
            .zip(&self.values)
            .enumerate()
            .map(|(i, (n, v))| (ParamId(i), n.as_str(), v))
    }

    /// The ids of all parameters, in creation order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.values.len()).map(ParamId)
    }

    /// The store's random generator (for initializing weights outside [`ParamStore::create`]).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Whether every weight is finite.
    pub fn all_finite(&self) -> bool {
        self.values.iter().all(|v| v.iter().all(|x| x.is_finite()))
    }
}

/// A new parameter's value must have at least one element, all finite.
fn check_value<T: Scalar>(name: &str, value: &ArrayD<T>) -> Result<()> {
    if value.is_empty() {
        return Err(Error::shape(
            "ParamStore::create",
            format!("a non-empty shape for {name:?}"),
            value.shape(),
        ));
    }
    check_finite("ParamStore::create", name, value)
}

/// `Ok` if every element is finite, else an [`Error::NonFinite`] naming `op`, the parameter and
/// the first bad element (in row-major order).
pub(crate) fn check_finite<T: Scalar>(op: &str, name: &str, value: &ArrayD<T>) -> Result<()> {
    match value.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(k) => Err(Error::NonFinite(format!(
            "{op}: the value of {name:?} holds {} at element {k} (row-major); parameters must be finite",
            value.iter().nth(k).expect("found above")
        ))),
    }
}

/// Builds TensorFlow-style parameter paths: `Scope::new("rnn").sub("basic_lstm_cell").join("kernel")`
/// is `"rnn/basic_lstm_cell/kernel"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Scope(String);

impl Scope {
    /// A scope with the given path (`""` is the root).
    pub fn new(path: impl Into<String>) -> Self {
        Scope(path.into().trim_matches('/').to_string())
    }

    /// A nested scope.
    pub fn sub(&self, name: impl AsRef<str>) -> Scope {
        Scope::new(self.join(name))
    }

    /// The full path of `name` inside this scope.
    pub fn join(&self, name: impl AsRef<str>) -> String {
        let name = name.as_ref().trim_matches('/');
        if self.0.is_empty() {
            name.to_string()
        } else {
            format!("{}/{}", self.0, name)
        }
    }

    /// The scope's path.
    pub fn path(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Scope {
    fn from(s: &str) -> Self {
        Scope::new(s)
    }
}

impl From<String> for Scope {
    fn from(s: String) -> Self {
        Scope::new(s)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    #[test]
    fn create_all_from_is_all_or_nothing() {
        let mut params = ParamStore::<f64>::new(0);
        params
            .create_from("taken", ArrayD::zeros(IxDyn(&[1])))
            .unwrap();
        let one = || ArrayD::<f64>::ones(IxDyn(&[2]));
        // A taken name, a name given twice, an empty name or an empty value, in last place:
        // nothing is added.
        for bad in [
            ("taken".to_string(), one()),
            ("a".to_string(), one()),
            (String::new(), one()),
            ("c".to_string(), ArrayD::zeros(IxDyn(&[0]))),
        ] {
            let named = vec![("a".to_string(), one()), ("b".to_string(), one()), bad];
            assert!(params.create_all_from(named).is_err());
            assert_eq!(params.len(), 1);
            assert!(params.id("a").is_none());
        }
        let ids = params
            .create_all_from(vec![("a".to_string(), one()), ("b".to_string(), one())])
            .unwrap();
        assert_eq!(
            ids.iter().map(|&id| params.name(id)).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
