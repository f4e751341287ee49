"""Gradient accumulation: one optimizer update from m micro-batches of this device's batch.

A step whose batch does not fit in a device's memory runs its forward and backward passes on m
slices ("micro-batches") of the per-device batch, one after the other inside the compiled step
(`lax.scan`, so the program holds one micro-batch's activations at a time), sums their gradients,
and makes one optimizer update. `config.train.grad_accum` = m (default 1: no scan at all).

Why it equals one step on the whole batch: every jaxgen loss is a mean of per-example terms, so
the gradient of the whole batch's mean loss is the mean of the m micro-batches' mean-loss gradients
when the micro-batches are equally large (m divides the per-device batch). Per-example randomness
must not move either: tasks draw their per-example keys for the whole per-device batch first
(`parallel.example_keys`, which folds in each example's global index) and pass them through the
split with the data, so every example sees the noise it would see in the unsplit batch. Metrics
that are batch means (loss, accuracy) average over the micro-batches the same way.

How a task plugs in: it writes the gradient of one update as
    grad_fn(params, inputs) -> (grads, metrics, rows)
over a pytree `inputs` of per-example arrays (leading axis = examples, per-example keys included):
grads of the mean loss over those examples, metrics a dict of scalar means over them, rows a
pytree of per-example outputs the step needs later (e.g. CycleGAN's generated images), or None.
`mean_gradients(grad_fn, params, inputs, m)` then runs it on the whole batch (m = 1) or scans it
over m micro-batches. A step of several updates (GAN, CycleGAN) accumulates each update on its own.
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from jaxgen.config import ConfigError

PyTree = Any
GradFn = Callable[[PyTree, PyTree], tuple[PyTree, dict, PyTree]]


def num_micro_batches(config: ml_collections.ConfigDict) -> int:
    """config.train.grad_accum (1 for configs written before the field existed)."""
    return int(config.train.get("grad_accum", 1))


def check_split(local_batch_size: int, num_micro: int) -> int:
    """The micro-batch size; raises ConfigError unless num_micro divides this device's batch."""
    if num_micro < 1 or local_batch_size % num_micro:
        raise ConfigError(f"train.grad_accum={num_micro} must divide the per-device batch of {local_batch_size} "
                          f"examples (train.batch_size / number of devices); choose a divisor of it.")
    return local_batch_size // num_micro


def split(tree: PyTree, num_micro: int) -> PyTree:
    """Per-example arrays [B, ...] -> [num_micro, B / num_micro, ...]: micro-batch j holds the
    contiguous rows j * B/m .. (j + 1) * B/m - 1."""
    return jax.tree.map(lambda x: x.reshape((num_micro, x.shape[0] // num_micro) + x.shape[1:]), tree)


def merge(tree: PyTree) -> PyTree:
    """The inverse of `split`: [m, b, ...] -> [m * b, ...], rows back in the batch's order."""
    return jax.tree.map(lambda x: x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:]), tree)


def mean_gradients(grad_fn: GradFn, params: PyTree, inputs: PyTree, num_micro: int
                   ) -> tuple[PyTree, dict, PyTree]:
    """grad_fn over `inputs` (per-example arrays [B, ...]) in num_micro micro-batches.

    Returns (grads, metrics, rows): grads and metrics averaged over the micro-batches (equal to
    grad_fn on the whole batch, see the module docstring), rows concatenated back to [B, ...] in
    the batch's order. Gradients are summed in the params' dtype (float32, also under bfloat16
    compute) and divided by num_micro once at the end. Not averaged over devices: the caller
    pmeans the result, once per update.
    """
    batch_size = jax.tree.leaves(inputs)[0].shape[0]
    check_split(batch_size, num_micro)
    if num_micro == 1:  # the plain step: no scan, the same program as without accumulation
        return grad_fn(params, inputs)

    def body(total, micro):
        grads, metrics, rows = grad_fn(params, micro)
        return jax.tree.map(jnp.add, total, grads), (metrics, rows)

    zeros = jax.tree.map(jnp.zeros_like, params)
    total, (metrics, rows) = jax.lax.scan(body, zeros, split(inputs, num_micro))
    grads = jax.tree.map(lambda g: g / num_micro, total)
    return grads, jax.tree.map(lambda v: jnp.mean(v, axis=0), metrics), merge(rows)
