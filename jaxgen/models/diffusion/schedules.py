"""Noise schedules: the sequence abar_t = prod_{s<=t} (1 - beta_s), t = 0..T-1.

A `Schedule` holds abar at the steps a sampler visits, and the original timestep index of each
(what the network is conditioned on). The full schedule visits every step; `respace` keeps a
subset, as in Nichol & Dhariwal (2021) sec. 4: the betas of the shorter chain are recomputed from
abar, so that the same trained network samples in fewer steps (DDIM in 50 steps of a 1000-step model).
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SCHEDULES = ("linear", "cosine")


class Schedule(NamedTuple):
    """alphas_cumprod: float32 [N], abar at each visited step (decreasing);
    betas: float32 [N], beta_t = 1 - abar_t / abar_{t-1} along the visited chain, computed in float64
    (from float32 abar the ratio loses ~1e-3 of a beta of 1e-4);
    timesteps: int32 [N], the original step index 0..T-1 of each (what the network sees)."""

    alphas_cumprod: jax.Array
    betas: jax.Array
    timesteps: jax.Array

    @property
    def num_steps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def alphas_cumprod_prev(self) -> jax.Array:
        """abar_{t-1} along the visited chain, with abar_{-1} = 1 (x_{-1} is the data)."""
        return jnp.concatenate([jnp.ones((1,), self.alphas_cumprod.dtype), self.alphas_cumprod[:-1]])


def linear(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """Ho et al. (2020): betas linear from 1e-4 to 0.02 (for T = 1000; scaled for other T so that
    the chain ends at the same noise level)."""
    scale = 1000.0 / num_steps
    betas = np.linspace(scale * beta_start, scale * beta_end, num_steps, dtype=np.float64)
    return _from_betas(betas)


def cosine(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Nichol & Dhariwal (2021) eq. 17: abar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) pi/2),
    betas clipped at 0.999 to avoid the singularity at t = T."""
    f = lambda t: np.cos((t / num_steps + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    t = np.arange(num_steps + 1, dtype=np.float64)
    betas = np.minimum(1.0 - f(t[1:]) / f(t[:-1]), max_beta)
    return _from_betas(betas)


def make(name: str, num_steps: int) -> Schedule:
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, not {name!r}.")
    if num_steps < 1:
        raise ValueError(f"the number of diffusion steps must be positive, not {num_steps}.")
    return linear(num_steps) if name == "linear" else cosine(num_steps)


def respace(schedule: Schedule, num_steps: int) -> Schedule:
    """The sub-chain of `num_steps` evenly spaced steps (always including the last, the pure-noise
    end, and the first), e.g. 50 of 1000 for DDIM-50."""
    total = schedule.num_steps
    if not 1 <= num_steps <= total:
        raise ValueError(f"cannot respace a {total}-step schedule to {num_steps} steps; "
                         f"choose 1..{total}.")
    if num_steps == total:
        return schedule
    # Evenly spaced, rounded, from 0 to T-1 inclusive ("trailing" would drop step 0; we keep the
    # data end so that the last update predicts x_0 from the least noisy level).
    keep = np.unique(np.round(np.linspace(0, total - 1, num_steps)).astype(np.int32))
    # 1 - beta of a respaced step is the product of (1 - beta) over the steps it jumps.
    log_keep = np.cumsum(np.log1p(-np.asarray(schedule.betas, np.float64)))[keep]
    betas = -np.expm1(np.diff(log_keep, prepend=0.0))
    return Schedule(schedule.alphas_cumprod[keep], jnp.asarray(betas, jnp.float32), schedule.timesteps[keep])


def _from_betas(betas: np.ndarray) -> Schedule:
    abar = np.cumprod(1.0 - betas)  # in float64: abar_T is ~4e-5 and the product loses digits in f32
    return Schedule(jnp.asarray(abar, jnp.float32), jnp.asarray(betas, jnp.float32),
                    jnp.arange(len(betas), dtype=jnp.int32))
