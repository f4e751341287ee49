"""Data parallelism: a step written once, per device, runs on every device of every host.

The per-device step averages gradients and metrics with `lax.pmean(..., axis_name=AXIS)`. It is
compiled either as `jax.shard_map` inside `jax.jit` over a 1-D Mesh of all devices (the default), or
with `jax.pmap` (`config.train.parallel = 'pmap'`). Both give the same numbers as one device on the
global batch: per-example randomness comes from `example_keys`, which folds the example's *global*
index into the step key, so the noise an example sees does not depend on how the batch is split.

Where the state lies (`config.train.sharding`):
- "replicated" (`DataParallel`): every device holds the whole state; the step is the task's per-device
  `train_step` under shard_map (or pmap).
- "fsdp" (`ShardedDataParallel`): params, optimizer state and EMA are split over the `data` axis, each
  large array along one dimension (`fsdp_sharding`), so a device holds about 1/n of the state. The
  step is one global `jax.jit` program with those shardings: the task's per-device `gradients` runs
  under shard_map on params gathered for it (GSPMD inserts the all-gathers), and `apply_gradients`
  (optimizer, EMA) runs on the shards, where elementwise updates stay local.
Both give the same numbers: the gradients and metrics come from the same per-device program, and
the update is elementwise, but for the sum of the optimizer's global-norm clipping (optim.grad_clip),
which under fsdp adds per-shard partial sums: a float32 rounding apart (tests/train/test_fsdp.py).
"""
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgen.config import ConfigError

AXIS = "data"
MODES = ("shard_map", "pmap")
PyTree = Any
StepFn = Callable[[PyTree, PyTree], tuple[PyTree, dict]]


def configure_jax(cache_dir: str | None = None) -> str:
    """Process-wide JAX settings of the `jaxgen` command (and the tests); returns the cache folder.

    - The persistent compilation cache (default ~/.cache/jaxgen/xla, or $JAXGEN_XLA_CACHE): a
      resumed run, `jaxgen sample` and `jaxgen eval` reuse the programs the first run compiled.
    - `jax_threefry_partitionable=False`: with JAX 0.10's default (True) XLA CPU compiles every
      random initializer about 3x slower (a small VAE's init: 9 s against 3 s here). jaxgen never
      generates random numbers sharded across devices (per-example keys, `example_keys`), so the
      partitionable variant buys nothing; the random streams differ between the two settings, so
      a run must keep one setting from start to resume.
    """
    jax.config.update("jax_threefry_partitionable", False)
    directory = cache_dir or os.environ.get("JAXGEN_XLA_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxgen", "xla")
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return directory


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: every device of every process), ordered by process.

    Ordering by (process, device id) makes each process's devices one contiguous block of the
    `data` axis, in process order, so process p's rows of the global batch (`Task.host_batch`:
    rows [p * b, (p + 1) * b)) are exactly the rows its devices hold, and a run on P processes
    sees the same global batch layout as a run on one.
    """
    devices = jax.devices() if devices is None else devices
    devices = sorted(devices, key=lambda d: (d.process_index, d.id))
    return Mesh(np.asarray(devices), (AXIS,))


def example_keys(rng: jax.Array, local_batch_size: int) -> jax.Array:
    """Per-example keys [local_batch_size, 2] for this device's rows of the global batch.

    Must be called inside the per-device step. Row i of device d is global example
    d * local_batch_size + i; its key is fold_in(rng, that index), identical on any device count.
    """
    first = jax.lax.axis_index(AXIS) * local_batch_size
    index = first + jnp.arange(local_batch_size)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, index)


def pmean(tree: PyTree) -> PyTree:
    return jax.lax.pmean(tree, axis_name=AXIS)


# ---- how the state lies on the devices --------------------------------------------------------------


def fsdp_spec(shape: tuple[int, ...], num_devices: int) -> P:
    """The partition spec of one state array of `shape` split over `num_devices` devices: the
    `data` axis on its largest dimension that num_devices divides (the first such on ties, the more
    major one: contiguous shards), else P() (replicated: scalars such as the step, the rng [2], and
    arrays no dimension of which divides, e.g. a bias [10] on 8 devices). Only exact divisors, so
    every device holds an equal shard and nothing is padded."""
    best = None
    for dim, size in enumerate(shape):
        if size >= num_devices and size % num_devices == 0 and (best is None or size > shape[best]):
            best = dim
    if num_devices == 1 or best is None:
        return P()
    return P(*([None] * best), AXIS)


def fsdp_sharding(abstract_state: PyTree, mesh: Mesh) -> PyTree:
    """A NamedSharding per leaf of `abstract_state` (arrays or ShapeDtypeStructs; any pytree, e.g.
    a TrainState), by `fsdp_spec` over the mesh's devices: the state's tree of shardings."""
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(x.shape, mesh.size)), abstract_state)


def bytes_per_device(abstract_state: PyTree, shardings: PyTree) -> int:
    """Bytes of `abstract_state` that one device holds when each leaf lies as `shardings` (a tree of
    the same structure) says: the sum of the leaves' shard sizes (every shard of ours is equal)."""
    def one(x, sharding):
        return int(np.prod(sharding.shard_shape(x.shape), dtype=np.int64)) * np.dtype(x.dtype).itemsize
    return sum(jax.tree.leaves(jax.tree.map(one, abstract_state, shardings)))


def addressable_bytes(tree: PyTree, device) -> int:
    """Bytes of the arrays of `tree` that lie on `device` (the sum of its shards' sizes): what the
    device really holds, to check `bytes_per_device` against."""
    return sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards if s.device == device)


def _agree_to_stop(stop: jax.Array, metrics: dict, multi_process: bool) -> tuple[jax.Array, dict]:
    """(the max of every device's stop code, metrics), inside the per-device step; see DataParallel."""
    if not multi_process:
        # One process: every device got the same code from the one host, nothing to agree on, and
        # no extra all-reduce (XLA CPU's fake-device rendezvous is fragile with several collectives
        # in flight; the single-process program stays the plain step's).
        return jnp.max(stop), metrics
    # Tie the stop vote to the step's results: without a data dependency XLA CPU may run this
    # all-reduce concurrently with the step's own (a pmean inside a lax.scan, as in the GAN step),
    # and its fake-device rendezvous aborts when two all-reduces interleave.
    stop, metrics = jax.lax.optimization_barrier((jnp.max(stop), metrics))
    return jax.lax.pmax(stop, AXIS), metrics


class DataParallel:
    """Runs a per-device step over a mesh; moves state and batches on and off the devices.

    The loop holds the state in the form `put_state` returns (replicated over the mesh, stacked
    with a leading device axis under pmap, or split under fsdp: ShardedDataParallel) and calls
    `host_state` only to sample or evaluate, `checkpointable` to save.

    The compiled step also agrees on when to stop: `step(state, batch, stop)` takes this process's
    stop code (0: keep going; see jaxgen.train.loop for the others) and returns the maximum over
    every device of every process, a `pmax` fused into the same program. Processes that see a
    signal at different moments thus all read the same decision from the same step, with no extra
    collective and no extra host synchronisation.
    """

    def __init__(self, step: StepFn, mesh: Mesh | None = None, mode: str = "shard_map",
                 donate: bool = True):
        if mode not in MODES:
            raise ValueError(f"parallel mode must be one of {MODES}, not {mode!r}.")
        self._place(mesh, mode)
        donate_argnums = (0,) if donate else ()

        multi_process = jax.process_count() > 1

        def with_stop(state, batch, stop):
            state, metrics = step(state, batch)
            stop, metrics = _agree_to_stop(stop, metrics, multi_process)
            return state, metrics, stop

        if mode == "shard_map":
            # check_vma=False keeps pmap's semantics: the gradient of a replicated parameter is the
            # local gradient, averaged explicitly by the step's pmean. (With check_vma=True, JAX
            # would already psum it, and the same step code would differ between the two modes.)
            per_device = jax.shard_map(with_stop, mesh=self.mesh, in_specs=(P(), P(AXIS), P(AXIS)),
                                       out_specs=(P(), P(), P()), check_vma=False)
            self._step = jax.jit(per_device, donate_argnums=donate_argnums)
        else:
            if jax.process_count() > 1:
                raise ConfigError("train.parallel='pmap' runs on one host; use 'shard_map' for multi-process runs.")
            self._step = jax.pmap(with_stop, axis_name=AXIS, donate_argnums=donate_argnums,
                                  devices=list(self.mesh.devices.flat))

    def _place(self, mesh: Mesh | None, mode: str) -> None:
        """The mesh and the shardings of batches, stop codes and replicated values."""
        self.mesh = make_mesh() if mesh is None else mesh
        self.mode = mode
        self.num_devices = self.mesh.size
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P(AXIS))
        self._stop_arrays: dict[int, jax.Array] = {}

    def __call__(self, state: PyTree, batch: PyTree) -> tuple[PyTree, dict]:
        """One step: (state, metrics)."""
        state, metrics, _ = self._program(state)(state, batch, self._stop_input(0))
        return state, metrics

    def step(self, state: PyTree, batch: PyTree, stop: int) -> tuple[PyTree, dict, jax.Array]:
        """One step that also agrees on stopping: (state, metrics, the max of every process's
        `stop`, an int32 scalar still on the devices)."""
        state, metrics, agreed = self._program(state)(state, batch, self._stop_input(stop))
        if self.mode == "pmap":
            agreed = agreed[0]
        return state, metrics, agreed

    def compile(self, state: PyTree, batch: PyTree):
        """Compiles the step for these arguments ahead of its first call (trace -> lower -> compile,
        the work the first call would do, done once) and runs that executable from now on. Returns
        (compiled, lowered, the step's jaxpr or None under pmap, which has no trace stage), for the
        cost analysis of jaxgen.train.mfu."""
        args = (state, batch, self._stop_input(0))
        program = self._program(state)
        traced = program.trace(*args) if hasattr(program, "trace") else None
        lowered = traced.lower() if traced is not None else program.lower(*args)
        compiled = lowered.compile()
        self._step = compiled
        return compiled, lowered, None if traced is None else traced.jaxpr

    def _program(self, state: PyTree):
        """The compiled (or jitted) step for a state of this form."""
        return self._step

    def _stop_input(self, code: int) -> jax.Array:
        """`code` on each of this process's devices, as one global int32 [num_devices] array
        (cached: the step does not donate it)."""
        if code not in self._stop_arrays:
            if self.mode == "shard_map":
                local = np.full((len(self.mesh.local_devices),), code, np.int32)
                self._stop_arrays[code] = jax.make_array_from_process_local_data(self.batch_sharding, local)
            else:
                self._stop_arrays[code] = np.full((self.num_devices, 1), code, np.int32)
        return self._stop_arrays[code]

    #: how the state lies on the devices: config.train.sharding
    layout = "replicated"

    def state_sharding(self, state_shapes: PyTree) -> PyTree:
        """Where each leaf of a state of these shapes lies on the mesh (a tree of shardings): the
        restore target of a checkpoint. Replicated here (under pmap too: put_state stacks it)."""
        return jax.tree.map(lambda _: self.replicated, state_shapes)

    def state_bytes(self, state_shapes: PyTree) -> int:
        """Bytes of the state that each device holds in this layout."""
        return bytes_per_device(state_shapes, self.state_sharding(state_shapes))

    def put_state(self, state: PyTree) -> PyTree:
        """Replicates a host (or single-device) state onto every device."""
        if self.mode == "shard_map":
            return jax.device_put(state, self.replicated)
        def stack(x):
            return np.broadcast_to(np.asarray(x), (self.num_devices,) + np.shape(x))
        return jax.tree.map(stack, state)

    def host_state(self, state: PyTree) -> PyTree:
        """The state as one replica: a replicated global array tree (shard_map) or replica 0 (pmap)."""
        if self.mode == "shard_map":
            return state
        return jax.tree.map(lambda x: x[0], state)

    def checkpointable(self, state: PyTree) -> PyTree:
        """What to hand Orbax: in a single-process run one local copy (Orbax would otherwise compile a
        slicing program per array to pick a replica of the replicated state); in a multi-process run
        the global arrays, which Orbax writes from the primary host."""
        state = self.host_state(state)
        return to_local(state) if jax.process_count() == 1 else state

    def put_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Builds global arrays from this process's rows, split over the devices along axis 0."""
        if self.mode == "shard_map":
            def make(x):
                return jax.make_array_from_process_local_data(self.batch_sharding, x)
            return jax.tree.map(make, local_batch)
        def split(x):
            return x.reshape((self.num_devices, -1) + x.shape[1:])
        return jax.tree.map(split, local_batch)

    def metrics_to_host(self, metrics: dict) -> dict:
        """Metrics are replicated; take one copy (pmap returns them stacked per device)."""
        if self.mode == "pmap":
            metrics = jax.tree.map(lambda x: x[0], metrics)
        return metrics


class ShardedDataParallel(DataParallel):
    """train.sharding='fsdp': the state split over the devices (`fsdp_sharding`), one global step.

    `gradients(state, batch) -> (grads, metrics)` is the task's per-device half of the step
    (Task.gradients: per-example keys, micro-batches, pmean of gradients and metrics); `update(state,
    grads) -> state` its other half (Task.apply_gradients: optimizer and EMA). The step is

        jit(in_shardings=(state: fsdp, batch: P('data')), out_shardings=(state: fsdp, metrics: P())):
            grads, metrics = shard_map(gradients, in_specs=(P(), P('data')), out_specs=P())(params, batch)
            state = update(state, grads constrained to the params' fsdp sharding)

    The shard_map sees the params whole, as in the replicated step: GSPMD all-gathers them from their
    shards before it (the transient memory of one full copy of the params and of their gradients
    during the step; what stays between steps, and is checkpointed, is 1/n of the state per device
    plus the leaves that no dimension of which divides). Keeping the gradient computation the very
    per-device program of the replicated step keeps its meaning (example_keys, pmean, grad_accum,
    CLIP's all-gather) and its numbers; the update then runs on each device's shards (elementwise
    for Adam, SGD and the EMA; global-norm clipping's sum is one more small all-reduce). The
    optimizer state and EMA never go into the shard_map, so they are never gathered.

    The shardings depend on the state's shapes, so the program is built for the first state it sees
    (a run has one). The state must be a TrainState (or have its `opt_state` and `ema_params`).
    """

    layout = "fsdp"

    def __init__(self, gradients: Callable[[PyTree, PyTree], tuple[PyTree, dict]],
                 update: Callable[[PyTree, PyTree], PyTree], mesh: Mesh | None = None, donate: bool = True):
        self._place(mesh, "shard_map")
        self._gradients, self._update, self._donate = gradients, update, donate
        self._step = None  # built for the first state (`_program`)
        self._structure = None
        self._gather = None

    def state_sharding(self, state_shapes: PyTree) -> PyTree:
        return fsdp_sharding(state_shapes, self.mesh)

    def put_state(self, state: PyTree) -> PyTree:
        """Splits a host (or single-device, or otherwise placed) state over the devices."""
        return jax.device_put(state, self.state_sharding(state))

    def host_state(self, state: PyTree) -> PyTree:
        """The state gathered whole onto every device (a replicated global array tree), to sample or
        evaluate with: one transient full copy per device."""
        if self._gather is None:
            self._gather = jax.jit(lambda x: x, out_shardings=self.replicated)
        return self._gather(state)

    def checkpointable(self, state: PyTree) -> PyTree:
        """What to hand Orbax: the sharded arrays as they are (each device's shard is written, none
        gathered), and, in a single-process run, one local copy of each replicated leaf (see
        DataParallel.checkpointable)."""
        if jax.process_count() > 1:
            return state
        return jax.tree.map(lambda x: x.addressable_data(0) if x.is_fully_replicated else x, state)

    def _program(self, state: PyTree):
        structure = jax.tree.structure(state)
        if self._step is None:
            self._step, self._structure = self._build(state), structure
        elif structure != self._structure:
            raise ValueError(f"this step was built for a state of structure {self._structure}, not {structure}.")
        return self._step

    def _build(self, state: PyTree):
        mesh, multi_process = self.mesh, jax.process_count() > 1
        shardings = self.state_sharding(state)

        def per_device(state, batch, stop):
            grads, metrics = self._gradients(state, batch)
            stop, metrics = _agree_to_stop(stop, metrics, multi_process)
            return grads, metrics, stop

        # check_vma=False as in DataParallel: the same per-device program, hence the same numbers.
        gradients = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS)),
                                  out_specs=(P(), P(), P()), check_vma=False)

        def step(state, batch, stop):
            # The gradient half reads params, step and rng (a LoRA state's frozen base too), not the
            # optimizer state or the EMA: those stay out, so nothing gathers them.
            grads, metrics, agreed = gradients(state.replace(opt_state=None, ema_params=None), batch, stop)
            # The averaged gradients are the same on every device; each keeps its shard of them, laid
            # out as the params (same shapes, same rule), so the update below runs shard by shard.
            grads = jax.lax.with_sharding_constraint(grads, fsdp_sharding(grads, mesh))
            return self._update(state, grads), metrics, agreed

        return jax.jit(step, in_shardings=(shardings, self.batch_sharding, self.batch_sharding),
                       out_shardings=(shardings, self.replicated, self.replicated),
                       donate_argnums=(0,) if self._donate else ())


def to_local(tree: PyTree) -> PyTree:
    """One local copy of a replicated state, on this process's first device.

    Sampling and evaluation run outside the data-parallel step; running them on replicated inputs
    would repeat the same work on every device.
    """
    def one(x):
        if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1:
            return x.addressable_data(0)
        return x
    return jax.tree.map(one, tree)
