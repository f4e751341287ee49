"""DDPM and DDIM sampling, each one compiled program over all its steps.

Samplers never see the network: they take `denoise(params, x, t, cond) -> output`, with x [B,H,W,C],
t int [B] (the original timestep, 0..T-1), cond any pytree with a leading batch axis (or None), and
the output in the configured parameterization ('eps', 'x0' or 'v').

The loop over steps is a `lax.scan` whose carry is only the current x (and a running statistic),
so memory does not grow with the number of steps and the whole chain is one XLA program; the
per-step function is public (`make_step`) for the Python-loop comparison in benchmarks/sampling.py.

- DDPM ancestral sampling (Ho et al. 2020, Alg. 2): x_{t-1} ~ N(mu~(x_t, x0_hat), sigma_t^2 I).
- DDIM (Song et al. 2021, eq. 12): x_{t-1} = sqrt(abar_{t-1}) x0_hat
      + sqrt(1 - abar_{t-1} - sigma_t^2) eps_hat + sigma_t z,
  sigma_t = eta sqrt((1 - abar_{t-1}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t-1});
  eta = 0 is deterministic, eta = 1 over the full chain is DDPM with the 'small' variance.
- Classifier-free guidance (Ho & Salimans 2022): out = out_u + w (out_c - out_u), conditional and
  null branches in one batched call of `denoise`. w = 1 is the conditional model, w = 0 the
  unconditional one. (All three parameterizations are affine in the output given x_t, so guiding
  the raw output equals guiding eps.)
- Thresholding of x0_hat at every step: 'none', 'static' (clip to [-1, 1]) or 'dynamic' (Saharia et
  al. 2022, sec. 2.3: s = max(1, percentile_p |x0_hat|) per image, clip to [-s, s], divide by s).
  When the chain runs over a residual (x0 stands for the image offset + scale x0, e.g. a
  super-resolution stage that diffuses image - up-sampled input), thresholding and the out-of-range
  statistic act on that image, and x0_hat is mapped back.
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxgen.models.diffusion import process
from jaxgen.models.diffusion.schedules import Schedule

Denoise = Callable[[Any, jax.Array, jax.Array, Any], jax.Array]
METHODS = ("ddpm", "ddim")
THRESHOLDS = ("none", "static", "dynamic")


def threshold(x0: jax.Array, kind: str, percentile: float = 0.995) -> jax.Array:
    """x0_hat [B,H,W,C] -> x0_hat with values in [-1, 1] ('static', 'dynamic') or unchanged ('none')."""
    if kind == "none":
        return x0
    if kind == "static":
        return jnp.clip(x0, -1.0, 1.0)
    if kind == "dynamic":
        flat = jnp.abs(x0.reshape(x0.shape[0], -1))
        s = jnp.maximum(jnp.quantile(flat, percentile, axis=1), 1.0).reshape((-1,) + (1,) * (x0.ndim - 1))
        return jnp.clip(x0, -s, s) / s
    raise ValueError(f"thresholding must be one of {THRESHOLDS}, not {kind!r}.")


def guided_output(denoise: Denoise, params: Any, x: jax.Array, t: jax.Array, cond: Any,
                  null_cond: Any = None, guidance: float | jax.Array | None = None) -> jax.Array:
    """denoise(params, x, t, cond), or with classifier-free guidance w = `guidance` when it is not
    None: one call on the batch [x; x] with conditions [cond; null_cond]."""
    if guidance is None:
        return denoise(params, x, t, cond)
    both = jax.tree.map(lambda c, n: jnp.concatenate([c, n]), cond, null_cond)
    out = denoise(params, jnp.concatenate([x, x]), jnp.concatenate([t, t]), both)
    out_c, out_u = jnp.split(out, 2)
    return out_u + guidance * (out_c - out_u)


def predict_x0(denoise: Denoise, params: Any, schedule: Schedule, x: jax.Array, i: jax.Array, cond: Any = None,
               null_cond: Any = None, guidance: float | jax.Array | None = None, *, parameterization: str = "eps",
               thresholding: str = "none", percentile: float = 0.995, x0_offset: jax.Array | float = 0.0,
               x0_scale: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """The network's x0_hat [B,H,W,C] for x_t = x at schedule index i (a scalar), guided and
    thresholded, and the fraction of the image it stands for (x0_offset + x0_scale x0_hat) outside
    [-1, 1] before thresholding. Thresholding acts on that image and x0_hat is mapped back; every
    sampler and ODE solver (solvers.py) reads the network through this one function."""
    ib = jnp.full((x.shape[0],), i, jnp.int32)
    out = guided_output(denoise, params, x, schedule.timesteps[ib], cond, null_cond, guidance)
    x0, _ = process.to_x0_eps(parameterization, schedule, x, ib, out)
    image = x0_offset + x0_scale * x0
    frac = jnp.mean((jnp.abs(image) > 1.0).astype(jnp.float32))
    return (threshold(image, thresholding, percentile) - x0_offset) / x0_scale, frac


def make_step(denoise: Denoise, schedule: Schedule, *, method: str = "ddim", eta: float = 0.0,
              parameterization: str = "eps", thresholding: str = "none", percentile: float = 0.995,
              variance: str = "small", x0_offset: jax.Array | float = 0.0, x0_scale: float = 1.0):
    """One reverse step: step(params, x, i, key, cond, null_cond, guidance) -> (x_prev, frac), where
    i is the (scalar) index into `schedule` and frac the fraction of the image x0_offset + x0_scale
    x0_hat outside [-1, 1] before thresholding (how much thresholding had to act). x0_offset
    (broadcastable to x) and x0_scale say which image the chain's x0 stands for; the defaults make it
    x0 itself."""
    if method not in METHODS:
        raise ValueError(f"sampler must be one of {METHODS}, not {method!r}.")
    abar_all, abar_prev_all, beta_all = schedule.alphas_cumprod, schedule.alphas_cumprod_prev(), schedule.betas

    def step(params, x, i, key, cond=None, null_cond=None, guidance=None):
        ib = jnp.full((x.shape[0],), i, jnp.int32)
        x0, frac = predict_x0(denoise, params, schedule, x, i, cond, null_cond, guidance,
                              parameterization=parameterization, thresholding=thresholding, percentile=percentile,
                              x0_offset=x0_offset, x0_scale=x0_scale)
        z = jax.random.normal(key, x.shape, x.dtype)
        if method == "ddpm":
            mean, _ = process.posterior(schedule, x0, x, ib)
            std = jnp.sqrt(process.reverse_variance(schedule, ib, x, variance))
            return mean + jnp.where(i > 0, std, 0.0) * z, frac
        eps = process.eps_from_x0(schedule, x, ib, x0)  # consistent with the thresholded x0
        abar, abar_prev = abar_all[i], abar_prev_all[i]
        sigma = eta * jnp.sqrt((1.0 - abar_prev) / (1.0 - abar) * beta_all[i])
        direction = jnp.sqrt(jnp.maximum(1.0 - abar_prev - sigma ** 2, 0.0))
        return jnp.sqrt(abar_prev) * x0 + direction * eps + sigma * z, frac

    return step


def sample(denoise: Denoise, params: Any, schedule: Schedule, shape: tuple[int, ...], rng: jax.Array,
           cond: Any = None, *, null_cond: Any = None, guidance: float | jax.Array | None = None,
           x_T: jax.Array | None = None, **step_kwargs) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Runs the reverse chain over every step of `schedule` (respace it for fewer steps).

    shape: [B, H, W, C] of the images; rng: the key (x_T and each step's noise derive from it, so
    a seed gives the same images every time); cond/null_cond: pytrees with leading axis B;
    guidance: the classifier-free guidance scale w, or None for a single conditional (or
    unconditional) call per step; x_T: the starting noise, drawn from rng when None;
    step_kwargs: method, eta, parameterization, thresholding, percentile, variance, x0_offset,
    x0_scale (see make_step).
    Returns (x_0 [B, H, W, C], roughly in [-1, 1]; {"x0_out_of_range": mean over steps of the
    fraction of x0_hat outside [-1, 1]}). Jit it (with the kwargs static) or call it inside jit.
    """
    if guidance is not None and null_cond is None:
        raise ValueError("classifier-free guidance needs null_cond, the condition for 'no condition'.")
    step = make_step(denoise, schedule, **step_kwargs)
    init_key, steps_key = jax.random.split(rng)
    x = jax.random.normal(init_key, shape, jnp.float32) if x_T is None else x_T
    n = schedule.num_steps
    keys = jax.random.split(steps_key, n)

    def body(carry, i):
        x, frac_sum = carry
        x, frac = step(params, x, i, keys[i], cond, null_cond, guidance)
        return (x, frac_sum + frac), None

    (x, frac_sum), _ = jax.lax.scan(body, (x, jnp.zeros((), jnp.float32)), jnp.arange(n - 1, -1, -1))
    return x, {"x0_out_of_range": frac_sum / n}
