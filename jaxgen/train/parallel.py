"""Data parallelism: a step written once, per device, runs on every device of every host.

The per-device step averages gradients and metrics with `lax.pmean(..., axis_name=AXIS)`. It is
compiled either as `jax.shard_map` inside `jax.jit` over a 1-D Mesh of all devices (the default), or
with `jax.pmap` (`config.train.parallel = 'pmap'`). Both give the same numbers as one device on the
global batch: per-example randomness comes from `example_keys`, which folds the example's *global*
index into the step key, so the noise an example sees does not depend on how the batch is split.

Adding a `model` axis for sharded parameters later is local to this module: the mesh gains an axis,
and `put_state` gains non-trivial partition specs.
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


class DataParallel:
    """Runs a per-device step over a mesh; moves state and batches on and off the devices.

    The loop holds the state in the form `put_state` returns (replicated over the mesh, or stacked
    with a leading device axis under pmap) and calls `host_state` only to checkpoint, sample or
    evaluate.

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
        self.mesh = make_mesh() if mesh is None else mesh
        self.mode = mode
        self.num_devices = self.mesh.size
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P(AXIS))
        self._stop_arrays: dict[int, jax.Array] = {}
        donate_argnums = (0,) if donate else ()

        multi_process = jax.process_count() > 1

        def with_stop(state, batch, stop):
            state, metrics = step(state, batch)
            if not multi_process:
                # One process: every device got the same code from the one host, nothing to agree
                # on, and no extra all-reduce (XLA CPU's fake-device rendezvous is fragile with
                # several collectives in flight; the single-process program stays the plain step's).
                return state, metrics, jnp.max(stop)
            # Tie the stop vote to the step's results: without a data dependency XLA CPU may run
            # this all-reduce concurrently with the step's own (a pmean inside a lax.scan, as in the
            # GAN step), and its fake-device rendezvous aborts when two all-reduces interleave.
            stop, metrics = jax.lax.optimization_barrier((jnp.max(stop), metrics))
            return state, metrics, jax.lax.pmax(stop, AXIS)

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

    def __call__(self, state: PyTree, batch: PyTree) -> tuple[PyTree, dict]:
        """One step: (state, metrics)."""
        state, metrics, _ = self._step(state, batch, self._stop_input(0))
        return state, metrics

    def step(self, state: PyTree, batch: PyTree, stop: int) -> tuple[PyTree, dict, jax.Array]:
        """One step that also agrees on stopping: (state, metrics, the max of every process's
        `stop`, an int32 scalar still on the devices)."""
        state, metrics, agreed = self._step(state, batch, self._stop_input(stop))
        if self.mode == "pmap":
            agreed = agreed[0]
        return state, metrics, agreed

    def compile(self, state: PyTree, batch: PyTree):
        """Compiles the step for these arguments ahead of its first call (trace -> lower -> compile,
        the work the first call would do, done once) and runs that executable from now on. Returns
        (compiled, lowered, the step's jaxpr or None under pmap, which has no trace stage), for the
        cost analysis of jaxgen.train.mfu."""
        args = (state, batch, self._stop_input(0))
        traced = self._step.trace(*args) if hasattr(self._step, "trace") else None
        lowered = traced.lower() if traced is not None else self._step.lower(*args)
        compiled = lowered.compile()
        self._step = compiled
        return compiled, lowered, None if traced is None else traced.jaxpr

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
