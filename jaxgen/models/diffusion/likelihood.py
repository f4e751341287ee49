"""The variational bound on -log p(x_0) in bits/dim for discrete images (Ho et al. 2020, eq. 5):

    L = KL(q(x_T|x_0) || N(0, I))                                   prior
      + sum_{t>1} KL(q(x_{t-1}|x_t, x_0) || p(x_{t-1}|x_t))          diffusion
      - log p(x_0 | x_1)                                             decoder

The decoder is the discretized Gaussian of Ho et al. sec. 3.3: integer levels 0..K-1 are mapped to
[-1, 1], each level owns a bin of width 2/(K-1) (the two end bins extend to -inf and +inf), so the
bound is a bound on a discrete likelihood, in the same units as the VAE's.

The sum over t is computed over every step of the schedule (one network call per step), each KL
with its own draw of x_t.
"""
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.stats import norm

from jaxgen.models.diffusion import process
from jaxgen.models.diffusion.samplers import Denoise
from jaxgen.models.diffusion.schedules import Schedule


def gaussian_kl(mean1, var1, mean2, var2) -> jax.Array:
    """KL(N(mean1, var1) || N(mean2, var2)) elementwise, in nats."""
    return 0.5 * (jnp.log(var2) - jnp.log(var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def _log_prob_between(a: jax.Array, b: jax.Array) -> jax.Array:
    """log(Phi(b) - Phi(a)) for a < b, stable in both tails (uses the mirrored form when a > 0)."""
    flip = a > 0
    lo, hi = jnp.where(flip, -b, a), jnp.where(flip, -a, b)
    log_hi, log_lo = norm.logcdf(hi), norm.logcdf(lo)
    return log_hi + jnp.log(-jnp.expm1(jnp.minimum(log_lo - log_hi, -1e-12)))


def discretized_gaussian_log_likelihood(x: jax.Array, mean: jax.Array, std: jax.Array,
                                        num_levels: int) -> jax.Array:
    """log P(x) elementwise for x on the grid of num_levels values in [-1, 1] under N(mean, std^2)
    integrated over x's bin."""
    half = 1.0 / (num_levels - 1)
    upper = (x + half - mean) / std
    lower = (x - half - mean) / std
    inner = _log_prob_between(lower, upper)
    return jnp.where(x < -1.0 + half / 2, norm.logcdf(upper),
                     jnp.where(x > 1.0 - half / 2, norm.logcdf(-lower), inner))


def bound_terms(denoise: Denoise, params: Any, schedule: Schedule, x0: jax.Array, num_levels: int,
                rng: jax.Array, cond: Any = None, parameterization: str = "eps",
                variance: str = "large") -> dict[str, jax.Array]:
    """The three parts of the bound per example, in nats [B] each, for x0 [B, H, W, C] on the grid
    of num_levels values in [-1, 1]: {"prior", "diffusion", "decoder", "total"}.

    Uses one network call per step of `schedule` (a `lax.scan` over steps, memory flat in T).
    """
    b = x0.shape[0]
    sum_dims = lambda v: jnp.sum(v, axis=tuple(range(1, v.ndim)))  # noqa: E731
    abar_T = schedule.alphas_cumprod[-1]
    prior = sum_dims(gaussian_kl(jnp.sqrt(abar_T) * x0, 1.0 - abar_T, 0.0, 1.0))

    def x0_hat_at(i, key):
        ib = jnp.full((b,), i, jnp.int32)
        noise = jax.random.normal(key, x0.shape, x0.dtype)
        x_t = process.q_sample(schedule, x0, ib, noise)
        out = denoise(params, x_t, schedule.timesteps[ib], cond)
        return ib, x_t, process.to_x0_eps(parameterization, schedule, x_t, ib, out)[0]

    def kl_at(total, i):
        ib, x_t, x0_hat = x0_hat_at(i, jax.random.fold_in(rng, i))
        mean_q, var_q = process.posterior(schedule, x0, x_t, ib)
        mean_p, _ = process.posterior(schedule, x0_hat, x_t, ib)
        var_p = process.reverse_variance(schedule, ib, x_t, variance)
        return total + sum_dims(gaussian_kl(mean_q, var_q, mean_p, var_p)), None

    diffusion, _ = jax.lax.scan(kl_at, jnp.zeros((b,), jnp.float32), jnp.arange(1, schedule.num_steps))
    # Decoder at the first step: mean x0_hat (the posterior mean at t = 1 is x0_hat), std sqrt(beta_1)
    # (beta_tilde_1 is 0, so both variance choices use beta_1 here, as guided-diffusion does).
    _, _, x0_hat = x0_hat_at(0, jax.random.fold_in(rng, 0))
    std = jnp.sqrt(1.0 - schedule.alphas_cumprod[0])
    decoder = -sum_dims(discretized_gaussian_log_likelihood(x0, x0_hat, std, num_levels))
    return {"prior": prior, "diffusion": diffusion, "decoder": decoder,
            "total": prior + diffusion + decoder}


def bits_per_dim(nats: jax.Array, num_dims: int) -> jax.Array:
    return nats / (num_dims * math.log(2.0))
