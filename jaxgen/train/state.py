"""The train state: one pytree holding everything a run needs to continue exactly.

A step is a pure function `step(state, batch) -> (state, metrics)`. Its randomness comes from
`jax.random.fold_in(state.rng, state.step)`, so the same state and batch always give the same result,
and a run resumed from a checkpoint replays the uninterrupted one bit for bit.
"""
import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """step: int32 []; params: the model parameters (for a GAN a dict {'gen', 'disc'});
    opt_state: the optimizer state(s), same structure convention as params; rng: a raw uint32 [2]
    key (raw so that checkpoints hold plain arrays); ema_params: exponential moving average of params,
    or None when the config does not ask for one."""

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    rng: jax.Array
    ema_params: PyTree = None


@flax.struct.dataclass
class LoraState(TrainState):
    """The state of a LoRA fine-tune (jaxgen.nn.lora): `params`, `opt_state` and `ema_params` hold
    only the low-rank adapters; base_params is the frozen base they adapt, stored once (no optimizer
    state, no EMA, never updated). A subclass rather than a field of TrainState, so the checkpoints
    of every other run keep their tree structure and restore as before."""

    base_params: PyTree = None


def create(params: PyTree, tx: optax.GradientTransformation, rng: jax.Array,
           ema: bool = False) -> TrainState:
    """A fresh state at step 0 for one optimizer over all params."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=rng, ema_params=jax.tree.map(jnp.copy, params) if ema else None)
    # A copy, not the same buffers: the step donates its state, and one buffer cannot be donated twice.


def create_lora(base: PyTree, adapters: PyTree, tx: optax.GradientTransformation, rng: jax.Array,
                ema: bool = False) -> LoraState:
    """A fresh LoRA state at step 0: the optimizer (and the EMA) over `adapters` only, `base` frozen."""
    state = create(adapters, tx, rng, ema)
    return LoraState(**{f.name: getattr(state, f.name) for f in dataclasses.fields(state)}, base_params=base)


def step_rng(state: TrainState) -> jax.Array:
    """The key for this step: a pure function of (state.rng, state.step)."""
    return jax.random.fold_in(state.rng, state.step)


def apply_gradients(state: TrainState, grads: PyTree, tx: optax.GradientTransformation,
                    ema_decay: float = 0.0) -> TrainState:
    """One optimizer update of all params, the EMA update, and step + 1."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = update_ema(state.ema_params, params, ema_decay, state.step)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema)


def update_ema(ema: PyTree, params: PyTree, decay: float, step: jax.Array) -> PyTree:
    """The EMA after the update that produced `params` (the step-th update, counting from 0), or None
    when no EMA is kept.

    Debiased as Adam's moments are: after t updates the EMA is the average of the iterates p_1..p_t
    with weights proportional to decay**(t - s), i.e. the plain recursion divided by (1 - decay**t).
    Without it, an EMA that starts from the initial weights still holds decay**t of them (45 % after
    800 steps at 0.999), and a short run's EMA samples are noise. With decay**t near 0 the two agree.
    The correction is folded into a per-step decay, d (1 - d**t) / (1 - d**(t + 1)), so the state
    stays one pytree of params and the first update copies the params.
    """
    if ema is None:
        return None
    t = step.astype(jnp.float32)
    decay_t = decay * (1.0 - decay ** t) / (1.0 - decay ** (t + 1.0))
    return optax.incremental_update(params, ema, step_size=1.0 - decay_t)


def param_count(params: PyTree) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))
