"""Training losses: the network regresses its parameterization's target at a random step.

    L = E_{t, x_0, eps} [ w(t) || target(x_0, eps, t) - f_theta(x_t, t, c) ||^2 ]

w = 1 is Ho et al.'s "simple" loss (eq. 14, for eps). 'min_snr' is Hang et al. (2023): in terms of
the x_0 error, weight min(SNR_t, gamma), which caps the weight of nearly-clean steps; written in the
chosen parameterization's units that is min(SNR, gamma) / SNR for eps and min(SNR, gamma) / (SNR + 1)
for v.
"""
import jax
import jax.numpy as jnp

from jaxgen.models.diffusion import process
from jaxgen.models.diffusion.schedules import Schedule

WEIGHTINGS = ("simple", "min_snr")


def weight(weighting: str, parameterization: str, schedule: Schedule, i: jax.Array,
           gamma: float = 5.0) -> jax.Array:
    """Per-example loss weight [B] at schedule index i [B]."""
    if weighting == "simple":
        return jnp.ones(i.shape, jnp.float32)
    if weighting != "min_snr":
        raise ValueError(f"loss weighting must be one of {WEIGHTINGS}, not {weighting!r}.")
    abar = schedule.alphas_cumprod[i]
    snr = abar / (1.0 - abar)
    capped = jnp.minimum(snr, gamma)
    return {"eps": capped / snr, "x0": capped, "v": capped / (snr + 1.0)}[parameterization]


def per_example_loss(output: jax.Array, parameterization: str, schedule: Schedule, x0: jax.Array,
                     i: jax.Array, noise: jax.Array, weighting: str = "simple",
                     gamma: float = 5.0) -> jax.Array:
    """Weighted mean squared error per example [B] of the network `output` [B, ...] (images
    [B, H, W, C], or unCLIP's embeddings [B, E]) for x_i made from (x0, noise)."""
    err = (output - process.target(parameterization, schedule, x0, i, noise)) ** 2
    return weight(weighting, parameterization, schedule, i, gamma) * jnp.mean(err, axis=tuple(range(1, err.ndim)))
