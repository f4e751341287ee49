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
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

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
    """A 1-D mesh over `devices` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
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
        donate_argnums = (0,) if donate else ()
        if mode == "shard_map":
            # check_vma=False keeps pmap's semantics: the gradient of a replicated parameter is the
            # local gradient, averaged explicitly by the step's pmean. (With check_vma=True, JAX
            # would already psum it, and the same step code would differ between the two modes.)
            per_device = jax.shard_map(step, mesh=self.mesh, in_specs=(P(), P(AXIS)),
                                       out_specs=(P(), P()), check_vma=False)
            self._step = jax.jit(per_device, donate_argnums=donate_argnums)
        else:
            if jax.process_count() > 1:
                raise ValueError("parallel='pmap' runs on one host; use 'shard_map' for multi-host.")
            self._step = jax.pmap(step, axis_name=AXIS, donate_argnums=donate_argnums,
                                  devices=list(self.mesh.devices.flat))

    def __call__(self, state: PyTree, batch: PyTree) -> tuple[PyTree, dict]:
        return self._step(state, batch)

    def put_state(self, state: PyTree) -> PyTree:
        """Replicates a host (or single-device) state onto every device."""
        if self.mode == "shard_map":
            return jax.device_put(state, self.replicated)
        stack = lambda x: np.broadcast_to(np.asarray(x), (self.num_devices,) + np.shape(x))
        return jax.tree.map(stack, state)

    def host_state(self, state: PyTree) -> PyTree:
        """The state as one replica: a replicated global array tree (shard_map) or replica 0 (pmap)."""
        if self.mode == "shard_map":
            return state
        return jax.tree.map(lambda x: x[0], state)

    def put_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Builds global arrays from this process's rows, split over the devices along axis 0."""
        if self.mode == "shard_map":
            make = lambda x: jax.make_array_from_process_local_data(self.batch_sharding, x)
            return jax.tree.map(make, local_batch)
        split = lambda x: x.reshape((self.num_devices, -1) + x.shape[1:])
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
