//! Data-parallel training over MPI (cargo feature `mpi`): the [`Collective`] of a
//! [`Trainer`](crate::train::Trainer) on the processes `mpirun` starts.
//!
//! Every rank builds the same model from the same seed and reads the same batches; each
//! computes its own [gradient shards](crate::train::Trainer::gradient_shards) of every batch,
//! the shards' flat gradient buffers are gathered to every rank (`MPI_Allgather`: one
//! collective per step, over one buffer), and every rank adds them in shard order, so the
//! parameters stay identical on all ranks and identical, bit for bit, to one process with the
//! same shard count. MPI's own sum reduction is not used: the order in which it adds is
//! unspecified, and floating-point addition is not associative.
//!
//! ```no_run
//! use recurrent::distributed::Mpi;
//! use recurrent::layers::{Dense, Returns, Rnn, Sequential};
//! use recurrent::optim::Adam;
//! use recurrent::train::Trainer;
//! use recurrent::ParamStore;
//!
//! let mpi = Mpi::init()?; // once per process, before any other MPI call
//! let mut params = ParamStore::<f32>::new(42); // the same seed on every rank
//! let model = Sequential::new()
//!     .push(Rnn::lstm(&mut params, 28, 128)?.returns(Returns::LastOutput))
//!     .push(Dense::new(&mut params, "dense", 128, 10)?);
//! let trainer = Trainer::new(model, params, Adam::new(0.001)?)
//!     .gradient_shards(2 * mpi.size())?
//!     .collective(mpi.collective())?;
//! // trainer.fit(...) on every rank; only rank 0 (mpi.rank() == 0) prints and writes files.
//! # Ok::<(), recurrent::Error>(())
//! ```
//!
//! Run with `mpirun -np 2 program` (as root: `mpirun --allow-run-as-root`); several machines:
//! `mpirun --hostfile hosts -np 8 program` (the README's "Distributed training" section).

use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};
use mpi::Threading;

use super::shards::Collective;
use crate::{Error, Result};

/// The MPI environment of this process: initialised by [`Mpi::init`], finalised when dropped
/// (keep it alive as long as any [`MpiCollective`] is used).
pub struct Mpi {
    universe: Universe,
}

impl Mpi {
    /// Initialises MPI (funnelled threading: only the calling thread talks to MPI; the
    /// kernels' threads never do) and installs a panic hook that ends the whole job
    /// (`MPI_Abort`) after printing the panic with this process's rank: a panicking rank must
    /// not leave the others waiting.
    ///
    /// # Errors
    /// [`Error::Distributed`] if MPI is already initialised (once per process) or refuses.
    pub fn init() -> Result<Mpi> {
        let (universe, _) =
            mpi::initialize_with_threading(Threading::Funneled).ok_or_else(|| {
                Error::Distributed("MPI is already initialised in this process".into())
            })?;
        let world = universe.world();
        let (rank, size) = (world.rank(), world.size());
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            eprintln!("recurrent: rank {rank} of {size} panicked; stopping the job");
            previous(info);
            SimpleCommunicator::world().abort(101);
        }));
        Ok(Mpi { universe })
    }

    /// This process's rank in `MPI_COMM_WORLD`.
    pub fn rank(&self) -> usize {
        self.universe.world().rank() as usize
    }

    /// The number of processes in `MPI_COMM_WORLD`.
    pub fn size(&self) -> usize {
        self.universe.world().size() as usize
    }

    /// The collective over all processes, for [`Trainer::collective`](crate::train::Trainer::collective).
    pub fn collective(&self) -> MpiCollective {
        MpiCollective {
            world: self.universe.world(),
        }
    }
}

/// [`Collective`] over `MPI_COMM_WORLD`: `MPI_Allgather` and `MPI_Abort`. MPI's default error
/// handler ends the job on a failed communication, so the gathers never return an error.
pub struct MpiCollective {
    world: SimpleCommunicator,
}

impl MpiCollective {
    fn gather<V: mpi::datatype::Equivalence + Copy + Default>(&self, local: &[V]) -> Vec<V> {
        let mut all = vec![V::default(); local.len() * self.world.size() as usize];
        self.world.all_gather_into(local, &mut all[..]);
        all
    }
}

impl Collective<f32> for MpiCollective {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>> {
        Ok(self.gather(local))
    }
    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<f64>> {
        Ok(self.gather(local))
    }
    fn abort(&self, message: &str) -> ! {
        abort(&self.world, message)
    }
}

impl Collective<f64> for MpiCollective {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_gather(&self, local: &[f64]) -> Result<Vec<f64>> {
        Ok(self.gather(local))
    }
    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<f64>> {
        Ok(self.gather(local))
    }
    fn abort(&self, message: &str) -> ! {
        abort(&self.world, message)
    }
}

/// Prints `message` and ends every process of the job (`MPI_Abort`, exit code 1).
fn abort(world: &SimpleCommunicator, message: &str) -> ! {
    eprintln!("{message}");
    world.abort(1)
}
