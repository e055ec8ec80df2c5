//! Reverse-mode automatic differentiation: [`Tape`], [`Var`] and [`Grads`].
//!
//! A tape records one forward computation. Every op (see the `impl Tape` blocks in [`crate::ops`])
//! computes its value at once and, when the tape records, keeps a backward function. [`Tape::backward`]
//! walks the record in reverse and returns the gradient of every parameter the computation read.
//!
//! ```
//! use ndarray::array;
//! use recurrent::{init::Initializer, ParamStore, Tape};
//!
//! let mut params = ParamStore::<f64>::new(0);
//! let w = params.create("w", &[2, 1], Initializer::Constant(0.5)).unwrap();
//! let tape = Tape::new(&params);
//! let x = tape.constant(array![[1.0, 2.0]].into_dyn());
//! let y = tape.matmul(x, tape.param(w)).unwrap();
//! let loss = tape.sum(y);
//! assert_eq!(tape.scalar(loss), 1.5);
//! let grads = tape.backward(loss).unwrap();
//! assert_eq!(grads.get(w).unwrap(), &array![[1.0], [2.0]].into_dyn());
//! ```

use std::cell::{Ref, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};

use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

use crate::params::{ParamId, ParamStore};
use crate::{Error, Result, Scalar};

/// A value recorded on a [`Tape`]: a cheap, copyable handle.
///
/// A `Var` belongs to the tape that made it. Using it with another tape is a logic error: the
/// tape panics with a message saying so, rather than read whatever value it holds at the same
/// index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Var {
    pub(crate) node: u32,
    pub(crate) out: u32,
    /// The [`Tape`] that made it (each tape has its own number).
    pub(crate) tape: u32,
}

/// The number of the next tape; 0 is never a tape's, so a fresh [`Grads`] has no tape.
static NEXT_TAPE: AtomicU32 = AtomicU32::new(1);

/// Whether a tape records for training or only computes (inference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Record backward functions; dropout is active.
    Train,
    /// Record nothing beyond values; dropout is the identity.
    Inference,
}

enum Value<T> {
    Owned(ArrayD<T>),
    Param(ParamId),
}

/// A backward function: given the gradients of an op's outputs (`None` where no gradient
/// reached that output) and access to the recorded values, the gradients of its parents in
/// order (`None` for a parent that needs none).
pub(crate) type BackwardFn<T> = Box<dyn Fn(&BackwardCtx<'_, T>) -> Vec<Option<ArrayD<T>>>>;

enum Kind<T: Scalar> {
    /// Data or constants: no gradient flows into them.
    Constant,
    /// A leaf whose gradient [`Grads::wrt`] reports.
    Watched,
    /// A parameter read.
    Param(ParamId),
    /// An op output with its backward function (none when the tape does not record or when no
    /// parent needs a gradient).
    Op(Option<BackwardFn<T>>),
}

struct Node<T: Scalar> {
    outputs: Vec<Value<T>>,
    parents: Vec<Var>,
    kind: Kind<T>,
    requires_grad: bool,
}

/// What a backward function can see: the output gradients and the recorded values.
pub(crate) struct BackwardCtx<'a, T: Scalar> {
    grads: &'a [Option<ArrayD<T>>],
    parents: &'a [Var],
    nodes: &'a [Node<T>],
    params: &'a ParamStore<T>,
}

impl<'a, T: Scalar> BackwardCtx<'a, T> {
    /// The gradient of output `i`, if any reached it.
    pub(crate) fn grad(&self, i: usize) -> Option<&'a ArrayD<T>> {
        self.grads.get(i).and_then(|g| g.as_ref())
    }

    /// The gradient of the op's only (or first) output. A single-output op's backward is only
    /// called when that gradient exists.
    pub(crate) fn g(&self) -> &'a ArrayD<T> {
        self.grad(0)
            .expect("backward of a single-output op runs only with its gradient")
    }

    /// The value of the op's `i`-th parent.
    pub(crate) fn input(&self, i: usize) -> &'a ArrayD<T> {
        self.value(self.parents[i])
    }

    /// Whether the `i`-th parent wants a gradient (a backward may skip computing it).
    pub(crate) fn needs(&self, i: usize) -> bool {
        self.nodes[self.parents[i].node as usize].requires_grad
    }

    /// The recorded value of any var.
    pub(crate) fn value(&self, v: Var) -> &'a ArrayD<T> {
        resolve(
            &self.nodes[v.node as usize].outputs[v.out as usize],
            self.params,
        )
    }
}

fn resolve<'a, T: Scalar>(value: &'a Value<T>, params: &'a ParamStore<T>) -> &'a ArrayD<T> {
    match value {
        Value::Owned(a) => a,
        Value::Param(id) => params.value(*id),
    }
}

/// Records one forward computation over the parameters of a [`ParamStore`].
///
/// Build a new tape for every step: read parameters with [`Tape::param`], feed data with
/// [`Tape::constant`], call ops, then [`Tape::backward`]. The tape borrows the store, so the
/// optimizer can only update it once the tape is gone.
pub struct Tape<'p, T: Scalar> {
    /// This tape's number, carried by its vars.
    pub(crate) id: u32,
    params: &'p ParamStore<T>,
    nodes: RefCell<Vec<Node<T>>>,
    param_vars: RefCell<HashMap<ParamId, Var>>,
    mode: Mode,
    /// ChaCha12, the generator behind rand's `StdRng`, with the same stream for the same seed,
    /// named directly because its position can be set: large masks are drawn in parallel
    /// pieces ([`crate::parallel::fill_words`]).
    rng: RefCell<ChaCha12Rng>,
    /// Dropout masks that must stay fixed for the whole tape (variational dropout), by owner.
    fixed_masks: RefCell<HashMap<(u64, usize), ArrayD<T>>>,
}

impl<'p, T: Scalar> Tape<'p, T> {
    /// A recording (training) tape.
    ///
    /// Its dropout masks come from a generator seeded with the tape's own number (tapes are
    /// numbered in the order they are made, process-wide), so a training loop that builds a
    /// new tape per step draws new masks at every step. For masks that do not depend on how
    /// many tapes came before, seed each tape with [`Tape::with_seed`]
    /// (the [`Trainer`](crate::train::Trainer) does, from the run's seed and the step).
    pub fn new(params: &'p ParamStore<T>) -> Self {
        let tape = Self::with_mode(params, Mode::Train);
        *tape.rng.borrow_mut() = ChaCha12Rng::seed_from_u64(u64::from(tape.id));
        tape
    }

    /// A tape that only computes values: no backward functions, dropout off.
    pub fn inference(params: &'p ParamStore<T>) -> Self {
        Self::with_mode(params, Mode::Inference)
    }

    /// A tape in the given mode.
    pub fn with_mode(params: &'p ParamStore<T>, mode: Mode) -> Self {
        Tape {
            id: NEXT_TAPE.fetch_add(1, Ordering::Relaxed),
            params,
            nodes: RefCell::new(Vec::new()),
            param_vars: RefCell::new(HashMap::new()),
            mode,
            rng: RefCell::new(ChaCha12Rng::seed_from_u64(0)),
            fixed_masks: RefCell::new(HashMap::new()),
        }
    }

    /// Seeds the generator that dropout masks are drawn from (use a new seed every step).
    pub fn with_seed(self, seed: u64) -> Self {
        *self.rng.borrow_mut() = ChaCha12Rng::seed_from_u64(seed);
        self
    }

    /// The tape's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the tape records for training (dropout active, gradients available).
    pub fn is_training(&self) -> bool {
        self.mode == Mode::Train
    }

    /// The parameter store the tape reads.
    pub fn params(&self) -> &'p ParamStore<T> {
        self.params
    }

    /// The generator for random masks.
    pub(crate) fn rng(&self) -> std::cell::RefMut<'_, ChaCha12Rng> {
        self.rng.borrow_mut()
    }

    /// The dropout mask that `owner`'s mask number `slot` has on this tape, drawn at first use
    /// and then reused (TensorFlow draws variational masks once per graph, likewise).
    pub(crate) fn fixed_dropout_mask(
        &self,
        owner: u64,
        slot: usize,
        shape: &[usize],
        keep_prob: f64,
    ) -> Result<ArrayD<T>> {
        if let Some(mask) = self.fixed_masks.borrow().get(&(owner, slot)) {
            if mask.shape() != shape {
                return Err(Error::shape(
                    "DropoutWrapper (variational)",
                    format!(
                        "the shape {:?} its mask was drawn with on this tape",
                        mask.shape()
                    ),
                    shape,
                ));
            }
            return Ok(mask.clone());
        }
        let mask = self.dropout_mask(shape, keep_prob)?;
        self.fixed_masks
            .borrow_mut()
            .insert((owner, slot), mask.clone());
        Ok(mask)
    }

    /// Data or a constant: no gradient flows into it.
    pub fn constant(&self, value: ArrayD<T>) -> Var {
        self.push_leaf(value, Kind::Constant, false)
    }

    /// An input whose gradient [`Grads::wrt`] reports (like `tf.GradientTape.watch`).
    pub fn watch(&self, value: ArrayD<T>) -> Var {
        let rec = self.is_training();
        self.push_leaf(value, Kind::Watched, rec)
    }

    /// The parameter `id`, read once per tape (later reads return the same var).
    ///
    /// # Panics
    /// If `id` does not belong to this tape's store.
    pub fn param(&self, id: ParamId) -> Var {
        assert!(
            self.params.contains(id),
            "ParamId {} is not in this tape's store",
            id.0
        );
        if let Some(v) = self.param_vars.borrow().get(&id) {
            return *v;
        }
        let mut nodes = self.nodes.borrow_mut();
        let v = Var {
            node: nodes.len() as u32,
            out: 0,
            tape: self.id,
        };
        nodes.push(Node {
            outputs: vec![Value::Param(id)],
            parents: Vec::new(),
            kind: Kind::Param(id),
            requires_grad: self.is_training(),
        });
        drop(nodes);
        self.param_vars.borrow_mut().insert(id, v);
        v
    }

    fn push_leaf(&self, value: ArrayD<T>, kind: Kind<T>, requires_grad: bool) -> Var {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node {
            outputs: vec![Value::Owned(value)],
            parents: Vec::new(),
            kind,
            requires_grad,
        });
        Var {
            node: nodes.len() as u32 - 1,
            out: 0,
            tape: self.id,
        }
    }

    /// Panics unless `v` was made by this tape.
    #[track_caller]
    fn check_own(&self, v: Var) {
        assert!(
            v.tape == self.id,
            "a Var of another tape was used with this one (each Var belongs to the tape that \
             made it; build values for a new tape on that tape)"
        );
    }

    /// Records an op with one output.
    pub(crate) fn push_op(
        &self,
        value: ArrayD<T>,
        parents: &[Var],
        backward: impl Fn(&BackwardCtx<'_, T>) -> Vec<Option<ArrayD<T>>> + 'static,
    ) -> Var {
        self.push_op_multi(vec![value], parents, backward)[0]
    }

    /// Records an op with several outputs, returning one var per output.
    pub(crate) fn push_op_multi(
        &self,
        values: Vec<ArrayD<T>>,
        parents: &[Var],
        backward: impl Fn(&BackwardCtx<'_, T>) -> Vec<Option<ArrayD<T>>> + 'static,
    ) -> Vec<Var> {
        parents.iter().for_each(|&p| self.check_own(p));
        let mut nodes = self.nodes.borrow_mut();
        let requires_grad =
            self.is_training() && parents.iter().any(|p| nodes[p.node as usize].requires_grad);
        let node = nodes.len() as u32;
        let n_out = values.len() as u32;
        nodes.push(Node {
            outputs: values.into_iter().map(Value::Owned).collect(),
            parents: parents.to_vec(),
            kind: Kind::Op(if requires_grad {
                Some(Box::new(backward))
            } else {
                None
            }),
            requires_grad,
        });
        (0..n_out)
            .map(|out| Var {
                node,
                out,
                tape: self.id,
            })
            .collect()
    }

    /// The value of a var (borrowed from the tape).
    ///
    /// # Panics
    /// If `v` belongs to another tape (as do the other methods that take a `Var`).
    #[track_caller]
    pub fn value(&self, v: Var) -> ValueRef<'_, T> {
        self.check_own(v);
        let nodes = self.nodes.borrow();
        match nodes[v.node as usize].outputs[v.out as usize] {
            Value::Param(id) => ValueRef::Param(self.params.value(id)),
            Value::Owned(_) => ValueRef::Recorded(Ref::map(nodes, |nodes| {
                match &nodes[v.node as usize].outputs[v.out as usize] {
                    Value::Owned(a) => a,
                    Value::Param(_) => unreachable!("checked above"),
                }
            })),
        }
    }

    /// A copy of a var's value.
    #[track_caller]
    pub fn to_array(&self, v: Var) -> ArrayD<T> {
        self.value(v).clone()
    }

    /// The shape of a var.
    #[track_caller]
    pub fn shape(&self, v: Var) -> Vec<usize> {
        self.value(v).shape().to_vec()
    }

    /// The single element of a one-element var (a loss, say).
    ///
    /// # Panics
    /// If the var has more or fewer than one element.
    #[track_caller]
    pub fn scalar(&self, v: Var) -> T {
        let value = self.value(v);
        assert_eq!(
            value.len(),
            1,
            "Tape::scalar of a var with shape {:?}",
            value.shape()
        );
        *value.iter().next().expect("one element")
    }

    /// Whether gradients flow into `v` (false on an inference tape and for constants).
    pub fn requires_grad(&self, v: Var) -> bool {
        self.check_own(v);
        self.nodes.borrow()[v.node as usize].requires_grad
    }

    /// The number of recorded nodes (ops and leaves).
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gradients of `loss` (of the sum of its elements, if it has several) with respect to every
    /// parameter and watched input the computation read.
    pub fn backward(&self, loss: Var) -> Result<Grads<T>> {
        let seed = ArrayD::from_elem(IxDyn(&self.shape(loss)), T::one());
        self.backward_with(loss, seed)
    }

    /// Backpropagates the given gradient of `output` (a vector-Jacobian product).
    pub fn backward_with(&self, output: Var, seed: ArrayD<T>) -> Result<Grads<T>> {
        if !self.is_training() {
            return Err(Error::invalid(
                "backward on an inference tape: build the tape with Tape::new to train",
            ));
        }
        self.check_own(output);
        let nodes = self.nodes.borrow();
        let target = output.node as usize;
        let out_shape = resolve(&nodes[target].outputs[output.out as usize], self.params).shape();
        if out_shape != seed.shape() {
            return Err(Error::Shape {
                op: "backward",
                expected: format!("{out_shape:?} (the output's shape)"),
                got: format!("{:?}", seed.shape()),
            });
        }
        let mut grads: Vec<Vec<Option<ArrayD<T>>>> = Vec::with_capacity(target + 1);
        for node in &nodes[..=target] {
            grads.push((0..node.outputs.len()).map(|_| None).collect());
        }
        grads[target][output.out as usize] = Some(seed);
        let mut result = Grads::new();
        result.tape = self.id;
        for i in (0..=target).rev() {
            let node = &nodes[i];
            if !node.requires_grad || grads[i].iter().all(Option::is_none) {
                continue;
            }
            let node_grads = std::mem::take(&mut grads[i]);
            match &node.kind {
                Kind::Constant => {}
                Kind::Watched => {
                    if let Some(g) = node_grads.into_iter().next().flatten() {
                        result.watched.insert(i as u32, g);
                    }
                }
                Kind::Param(id) => {
                    if let Some(g) = node_grads.into_iter().next().flatten() {
                        result.params.insert(*id, g);
                    }
                }
                Kind::Op(None) => {}
                Kind::Op(Some(backward)) => {
                    let ctx = BackwardCtx {
                        grads: &node_grads,
                        parents: &node.parents,
                        nodes: &nodes,
                        params: self.params,
                    };
                    let parent_grads = backward(&ctx);
                    debug_assert_eq!(parent_grads.len(), node.parents.len());
                    for (p, g) in node.parents.iter().zip(parent_grads) {
                        let Some(g) = g else { continue };
                        if !nodes[p.node as usize].requires_grad {
                            continue;
                        }
                        let slot = &mut grads[p.node as usize][p.out as usize];
                        match slot {
                            Some(acc) => {
                                debug_assert_eq!(acc.shape(), g.shape());
                                *acc += &g;
                            }
                            None => *slot = Some(g),
                        }
                    }
                }
            }
        }
        Ok(result)
    }
}

/// A borrowed value of a [`Var`]: dereferences to the array.
pub enum ValueRef<'a, T: Scalar> {
    /// A value computed on the tape.
    Recorded(Ref<'a, ArrayD<T>>),
    /// A parameter, read from the store without a copy.
    Param(&'a ArrayD<T>),
}

impl<T: Scalar> std::ops::Deref for ValueRef<'_, T> {
    type Target = ArrayD<T>;
    fn deref(&self) -> &ArrayD<T> {
        match self {
            ValueRef::Recorded(r) => r,
            ValueRef::Param(p) => p,
        }
    }
}

/// The gradients one [`Tape::backward`] call produced.
///
/// Kept in parameter-id (creation) order, so that every reduction over them ([`Grads::global_norm`],
/// clipping, [`Grads::accumulate`], the optimizers' updates) adds in one fixed order: the same
/// gradients give the same bits in every process.
#[derive(Debug, Clone)]
pub struct Grads<T: Scalar> {
    params: BTreeMap<ParamId, ArrayD<T>>,
    watched: BTreeMap<u32, ArrayD<T>>,
    /// The tape whose backward made these gradients (0: none, for [`Grads::new`]).
    tape: u32,
}

impl<T: Scalar> Default for Grads<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Scalar> Grads<T> {
    /// No gradients.
    pub fn new() -> Self {
        Grads {
            params: BTreeMap::new(),
            watched: BTreeMap::new(),
            tape: 0,
        }
    }

    /// The gradient of a parameter, if the computation read it.
    pub fn get(&self, id: ParamId) -> Option<&ArrayD<T>> {
        self.params.get(&id)
    }

    /// The gradient of a parameter, mutably (for clipping or scaling).
    pub fn get_mut(&mut self, id: ParamId) -> Option<&mut ArrayD<T>> {
        self.params.get_mut(&id)
    }

    /// Sets the gradient of a parameter (to build gradients by hand or combine several).
    pub fn insert(&mut self, id: ParamId, grad: ArrayD<T>) {
        self.params.insert(id, grad);
    }

    /// The gradient of a var made by [`Tape::watch`].
    pub fn wrt(&self, v: Var) -> Option<&ArrayD<T>> {
        assert!(
            self.tape == 0 || v.tape == self.tape,
            "Grads::wrt with a Var of another tape than the one these gradients come from"
        );
        self.watched.get(&v.node)
    }

    /// Parameter gradients in parameter-creation (id) order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &ArrayD<T>)> {
        self.params.iter().map(|(id, g)| (*id, g))
    }

    /// Parameter gradients, mutably, in parameter-creation (id) order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ParamId, &mut ArrayD<T>)> {
        self.params.iter_mut().map(|(id, g)| (*id, g))
    }

    /// The number of parameter gradients.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether there is no parameter gradient.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Adds another set of gradients into this one (for gradients computed on batch shards).
    ///
    /// # Errors
    /// [`Error::Shape`] if a parameter has gradients of two shapes; checked for every parameter
    /// before anything is added, so `self` is then unchanged.
    pub fn accumulate(&mut self, other: &Grads<T>) -> Result<()> {
        for (id, g) in &other.params {
            if let Some(acc) = self.params.get(id) {
                if acc.shape() != g.shape() {
                    return Err(Error::Shape {
                        op: "Grads::accumulate",
                        expected: format!("{:?} (parameter #{})", acc.shape(), id.index()),
                        got: format!("{:?}", g.shape()),
                    });
                }
            }
        }
        for (id, g) in &other.params {
            match self.params.get_mut(id) {
                Some(acc) => *acc += g,
                None => {
                    self.params.insert(*id, g.clone());
                }
            }
        }
        Ok(())
    }

    /// Multiplies every gradient by `factor`.
    pub fn scale(&mut self, factor: T) {
        for g in self.params.values_mut() {
            g.mapv_inplace(|x| x * factor);
        }
    }

    /// The L2 norm of all parameter gradients together (`tf.global_norm`), accumulated in `f64`
    /// so that large `f32` gradients do not overflow the sum of squares. The squares are added in
    /// one fixed order (parameters by id, elements in logical order), so the result is the same
    /// in every process.
    pub fn global_norm(&self) -> f64 {
        self.params
            .values()
            .flat_map(|g| g.iter())
            .map(|x| x.to_f64_lossless().powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// Whether every gradient is finite.
    pub fn all_finite(&self) -> bool {
        self.params
            .values()
            .all(|g| g.iter().all(|x| x.is_finite()))
    }
}
