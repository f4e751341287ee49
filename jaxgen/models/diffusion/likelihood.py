"""The variational bound on -log p(x_0) in bits/dim for discrete images (Ho et al. 2020, eq. 5):

    L(t0) = KL(q(x_T|x_0) || N(0, I))                               prior
          + sum_{t > t0} KL(q(x_{t-1}|x_t, x_0) || p(x_{t-1}|x_t))    diffusion
          - log p(x_0 | x_t0)                                        decoder

The decoder is the one of Kingma et al. (2021, VDM, eq. 29): integer levels 0..K-1 map to values v_k
in [-1, 1], and p(x_0 = v_k | x_t0) is proportional to q(x_t0 | x_0 = v_k) = N(x_t0; sqrt(abar) v_k,
1 - abar), pixel by pixel: a softmax over the K levels, so the bound is a bound on a discrete
likelihood, in the same units as the VAE's. For every t0 the reverse chain down to x_t0 followed by
this decoder is a model of the discrete data, so L(t0) bounds its NLL.

Why t0 matters: with 17 levels the grid spacing (0.125) is far above the smallest noise of a
1000-step schedule (~0.006), and below the spacing the network would have to learn to round x_t to
the grid to keep the KL terms small; stopping the chain where the noise is comparable to the
spacing and decoding there gives a much tighter bound (VDM's gamma_min plays the same role).
`bound_terms` returns the terms of every t0 from one pass, and `bound_at` sums them for one t0.
"""
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.models.diffusion import process
from jaxgen.models.diffusion.samplers import Denoise
from jaxgen.models.diffusion.schedules import Schedule
from jaxgen.models.gaussian import gaussian_kl  # KL(N(m1, exp(lv1)) || N(m2, exp(lv2))), elementwise


def decoder_nll(x0: jax.Array, x_t: jax.Array, abar: jax.Array, num_levels: int) -> jax.Array:
    """-log p(x0 | x_t) per example [B] (nats) of the VDM decoder: for each pixel a softmax over the
    levels v_k of -(x_t - sqrt(abar) v_k)^2 / (2 (1 - abar)). x0, x_t [B, ...] with x0 on the grid."""
    levels = jnp.linspace(-1.0, 1.0, num_levels)
    logits = -(x_t[..., None] - jnp.sqrt(abar) * levels) ** 2 / (2.0 * (1.0 - abar))
    index = jnp.round((x0 + 1.0) / 2.0 * (num_levels - 1)).astype(jnp.int32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, index[..., None], axis=-1)[..., 0]
    return jnp.sum(nll, axis=tuple(range(1, nll.ndim)))


def bound_terms(denoise: Denoise, params: Any, schedule: Schedule, x0: jax.Array, num_levels: int,
                rng: jax.Array, cond: Any = None, parameterization: str = "eps",
                variance: str = "large", clip_denoised: bool = True) -> dict[str, jax.Array]:
    """The terms of L(t0) for every t0, per example, in nats, for x0 [B, H, W, C] on the grid of
    num_levels values in [-1, 1]: {"prior": [B], "kl": [B, N] (kl[:, i] is the term of step i -> i-1,
    kl[:, 0] = 0), "decoder": [B, N] (decoder[:, i] = -log p(x0 | x_i))}, N = schedule.num_steps.

    One network call per step (a `lax.scan` over steps), each step with its own draw of x_i.
    clip_denoised clips x0_hat to [-1, 1] inside p(x_{t-1} | x_t), as the samplers do (and
    guided-diffusion's bits/dim evaluation): near t = T, abar ~ 1e-9 and an eps-prediction's x0_hat
    = (x_t - sqrt(1 - abar) eps_hat) / sqrt(abar) magnifies any error ~3e4-fold; unclipped, the last
    few steps of a cosine schedule alone add ~100 nats to a digits bound.
    """
    b = x0.shape[0]
    sum_dims = lambda v: jnp.sum(v, axis=tuple(range(1, v.ndim)))  # noqa: E731
    abar = schedule.alphas_cumprod
    prior = sum_dims(gaussian_kl(jnp.sqrt(abar[-1]) * x0, jnp.log(1.0 - abar[-1])))  # || N(0, I)

    def terms_at(_, i):
        ib = jnp.full((b,), i, jnp.int32)
        noise = jax.random.normal(jax.random.fold_in(rng, i), x0.shape, x0.dtype)
        x_t = process.q_sample(schedule, x0, ib, noise)
        decoder = decoder_nll(x0, x_t, abar[i], num_levels)
        out = denoise(params, x_t, schedule.timesteps[ib], cond)
        x0_hat = process.to_x0_eps(parameterization, schedule, x_t, ib, out)[0]
        if clip_denoised:
            x0_hat = jnp.clip(x0_hat, -1.0, 1.0)
        mean_q, var_q = process.posterior(schedule, x0, x_t, ib)
        mean_p, _ = process.posterior(schedule, x0_hat, x_t, ib)
        var_p = process.reverse_variance(schedule, ib, x_t, variance)
        # At i = 0 there is no x_{-1} to predict: the decoder ends the chain there.
        log_var_q = jnp.log(jnp.maximum(var_q, 1e-20))
        kl = jnp.where(i > 0, sum_dims(gaussian_kl(mean_q, log_var_q, mean_p, jnp.log(var_p))), 0.0)
        return None, (kl, decoder)

    _, (kl, decoder) = jax.lax.scan(terms_at, None, jnp.arange(schedule.num_steps))
    return {"prior": prior, "kl": kl.T, "decoder": decoder.T}


def bound_per_t0(denoise: Denoise, params: Any, schedule: Schedule, images: np.ndarray, num_levels: int,
                 rng: jax.Array, *, preprocess: Callable[[jax.Array], jax.Array], batch_size: int, cond: Any = None,
                 parameterization: str = "eps", variance: str = "large") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """L(t0) of a whole split for every t0: (totals float64 [N, T] in nats, its parts {"prior": [N],
    "diffusion": [N, T], "decoder": [N, T]}), T = schedule.num_steps, for integer images [N, ...]
    that `preprocess` maps onto the grid in [-1, 1] (inside the compiled call).

    bound_terms in batches of batch_size (batch at row s keyed fold_in(rng, s); the last one padded
    with its last image, so one compiled program serves all, and the padding dropped); cond: a
    condition of batch_size rows or None. The diffusion part of L(t0) is sum_{i > t0} kl_i, taken
    for every t0 at once by a reversed cumulative sum."""
    fn = jax.jit(lambda p, x, r: bound_terms(denoise, p, schedule, preprocess(x), num_levels, r, cond,
                                             parameterization, variance))
    chunks = {"prior": [], "kl": [], "decoder": []}
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        n = len(batch)
        batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - n, axis=0)])
        terms = fn(params, batch, jax.random.fold_in(rng, start))
        for k, v in chunks.items():
            v.append(np.asarray(terms[k], np.float64)[:n])
    prior, kl, decoder = (np.concatenate(chunks[k]) for k in ("prior", "kl", "decoder"))
    tail = np.cumsum(kl[:, ::-1], axis=1)[:, ::-1] - kl
    return prior[:, None] + tail + decoder, {"prior": prior, "diffusion": tail, "decoder": decoder}


def bound_at(terms: dict[str, jax.Array], t0: int) -> jax.Array:
    """L(t0) per example [B] in nats: the chain down to step t0, then the decoder."""
    return terms["prior"] + terms["kl"][:, t0 + 1:].sum(axis=1) + terms["decoder"][:, t0]


def bits_per_dim(nats: jax.Array, num_dims: int) -> jax.Array:
    return nats / (num_dims * math.log(2.0))
