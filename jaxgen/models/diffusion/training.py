"""The training objective of a diffusion (or flow-matching) model, written once for every family.

For each example, from its own key (so a device split draws the same numbers):
  1. a time: a schedule index i ~ U{0..T-1} (DDPM, Ho et al. 2020 Alg. 1), or t in [0, 1] from the
     flow's time density (flow.sample_time), and noise e ~ N(0, I);
  2. x_t = q_sample(x_0, i, e) (eq. 4), or the straight path x_t = (1 - t) x_0 + t e;
  3. the condition replaced by its null value with probability cond_drop_prob, so that one network
     is both the conditional and the unconditional model (classifier-free guidance, Ho & Salimans
     2022); network.KEPT_BY_NULL entries (a super-resolution stage's input) are never dropped;
  4. the network applied (in training mode, with the example's dropout key);
  5. the loss of its parameterization's target, weighted (losses.per_example_loss) or the flow's
     velocity loss (flow.per_example_loss), averaged over the batch.
A family gives its x_0, its condition and its network (`per_example` wraps a Linen model).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxgen.models.diffusion import flow, losses, process
from jaxgen.models.diffusion.network import drop_condition
from jaxgen.models.diffusion.schedules import Schedule

#: (params, x_t [B, ...], network time [B], cond (batched) or None, dropout keys [B, 2]) -> output [B, ...]
TrainApply = Callable[[Any, jax.Array, jax.Array, Any, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
    """What a network is trained to do on `schedule`: a noise Schedule (DDPM: regress the
    `parameterization`'s target with `weighting`, min-SNR capped at min_snr_gamma) or a
    flow.FlowSchedule (flow matching, times drawn from `flow_time` with flow_time_mean / _std and
    the schedule's shift); the condition is dropped with probability cond_drop_prob."""

    schedule: Schedule | flow.FlowSchedule
    parameterization: str = "eps"
    weighting: str = "simple"
    min_snr_gamma: float = 5.0
    cond_drop_prob: float = 0.0
    flow_time: str = "logit_normal"
    flow_time_mean: float = 0.0
    flow_time_std: float = 1.0

    @property
    def is_flow(self) -> bool:
        return isinstance(self.schedule, flow.FlowSchedule)

    def draw(self, key: jax.Array, shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """One example's (time, noise `shape`, condition dropped?, dropout key) from its key: the time
        is a schedule index, int (DDPM), or t in [0, 1], float (flow)."""
        k_t, k_noise, k_drop, k_dropout = jax.random.split(key, 4)
        if self.is_flow:
            t = flow.sample_time(k_t, (), self.flow_time, self.flow_time_mean, self.flow_time_std, self.schedule.shift)
        else:
            t = jax.random.randint(k_t, (), 0, self.schedule.num_steps)
        return (t, jax.random.normal(k_noise, shape), jax.random.bernoulli(k_drop, self.cond_drop_prob), k_dropout)

    def noised(self, x0: jax.Array, time: jax.Array, noise: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(x_t [B, ...], the network's time input [B]) for data x0 and noise [B, ...] at the drawn
        times [B]."""
        if self.is_flow:
            return flow.interpolate(x0, noise, time), flow.network_time(self.schedule, time)
        return process.q_sample(self.schedule, x0, time, noise), self.schedule.timesteps[time]

    def per_example_loss(self, out: jax.Array, x0: jax.Array, time: jax.Array, noise: jax.Array) -> jax.Array:
        """The loss [B] of the network's output [B, ...] for the x_t that `noised` made."""
        if self.is_flow:
            return flow.per_example_loss(out, x0, noise)
        return losses.per_example_loss(out, self.parameterization, self.schedule, x0, time, noise, self.weighting,
                                       self.min_snr_gamma)


def loss(objective: Objective, apply: TrainApply, params: Any, x0: jax.Array, keys: jax.Array, cond: Any = None, *,
         num_classes: int = 0, kept: dict[str, jax.Array] | None = None) -> jax.Array:
    """The mean training loss (steps 1-5 of the module docstring) of the network `apply` with
    `params` on data x0 [B, ...], from the examples' keys [B, 2].

    cond: the batch's condition dict (or None), dropped to network.null_condition(cond, num_classes)
    on each example's draw; kept: entries added after the drop, untouched by it (e.g. a caption that
    its family drops on a draw of its own)."""
    time, noise, drop, dropout_keys = jax.vmap(lambda k: objective.draw(k, x0.shape[1:]))(keys)
    x_t, network_time = objective.noised(x0, time, noise)
    if cond is not None:
        cond = {**drop_condition(cond, drop, num_classes), **(kept or {})}
    out = apply(params, x_t, network_time, cond, dropout_keys)
    return jnp.mean(objective.per_example_loss(out, x0, time, noise))


def per_example(model) -> TrainApply:
    """A Linen denoiser's training call as `loss` takes it: one example at a time, each with its own
    dropout key, so that dropout does not depend on how the batch is split over devices."""
    def apply(params, x, t, cond, keys):
        def one(x, t, c, k):
            c = None if c is None else jax.tree.map(lambda v: v[None], c)
            return model.apply({"params": params}, x[None], t[None], c, train=True, rngs={"dropout": k})[0]
        return jax.vmap(one)(x, t, cond, keys)
    return apply
