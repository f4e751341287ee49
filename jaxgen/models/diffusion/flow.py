"""Flow matching on the straight path (rectified flow): its training target, time sampling, and ODE
samplers, for any network that takes (x, time, condition).

The path (Lipman et al. 2023, "Flow Matching for Generative Modeling", sec. 4.1 with sigma_min = 0;
Liu et al. 2023, "Flow Straight and Fast", eq. 1), with t = 0 the data and t = 1 the noise:

    x_t = (1 - t) x_0 + t e,   e ~ N(0, I),   t in [0, 1]

The network regresses the path's velocity (conditional flow matching, Lipman et al. eq. 23):

    L = E_{t, x_0, e} || v_theta(x_t, t, c) - (e - x_0) ||^2

whose minimiser is v(x, t) = E[e - x_0 | x_t = x], the velocity field of an ODE that carries N(0, I)
at t = 1 to the data at t = 0. From it, x0_hat = x_t - t v and e_hat = x_t + (1 - t) v.

Time sampling (Esser et al. 2024, "Scaling Rectified Flow Transformers", SD3, sec. 3.1): drawing t
from a density pi(t) weights the loss by pi. 'uniform' is rectified flow's; 'logit_normal' draws
t = sigmoid(m + s n), n ~ N(0, 1), which puts the effort on the middle of the path, where the velocity
is hardest to predict (their eq. 19; m = 0, s = 1 was their best). The resolution shift (SD3 sec.
5.3.2, eq. 23) maps every time, in training and sampling alike,

    t' = s t / (1 + (s - 1) t),

a monotone map of [0, 1] onto itself that keeps more of the path at high noise for s > 1: an image
with more pixels keeps its structure longer under the same noise, so it needs more noise (SD3 takes
s = sqrt(m / n) for m pixels against the n a schedule was made for). s = 1 is the identity.

Sampling integrates dx/dt = v(x, t) from t = 1 (x = e) to t = 0 on the grid t_k = shift(1 - k / N),
k = 0..N, with
  Euler:  x_{k+1} = x_k + (t_{k+1} - t_k) v(x_k, t_k)                        (first order, N calls)
  Heun:   x_{k+1} = x_k + (t_{k+1} - t_k) (v(x_k, t_k) + v(x', t_{k+1})) / 2, x' the Euler point
          (second order, Karras et al. 2022 Alg. 1); its last step, to t = 0, is Euler as in Karras
          et al.: the thresholded velocity (below) is undefined at t = 0, and the step's O(h^2)
          local error keeps the method second order. 2 N - 1 calls.
Classifier-free guidance (Ho & Salimans 2022) acts on the velocity, v = v_u + w (v_c - v_u): it is
affine in the network output given x_t, as eps and x_0 are, so this is the same guidance as on eps.
Thresholding ('static', 'dynamic': samplers.threshold) clips x0_hat and replaces v by the velocity
that points at the clipped x0_hat, v = (x_t - x0_hat) / t; the Euler step is then
x_{k+1} = x0_hat + (t_{k+1} / t_k)(x_k - x0_hat), DDIM's step on this path, which lands on x0_hat
exactly at t = 0.

The network sees time as `FlowSchedule.time_scale * t`: the jaxgen Denoiser embeds its time input
with the sinusoids made for DDPM's integer steps 0..T-1 (nn.unet.sinusoidal_embedding), whose
frequencies resolve t in [0, 1] only if t is spread over that range. Scaled by T, the same network
class serves both processes, and so does its time embedding (SD3 feeds 1000 t the same way).

Samplers never see the network: they take `denoise(params, x, time, cond) -> v` as samplers.py does,
run one `lax.scan` over the steps (the Heun corrector in a `lax.cond` so the last step costs one
call) and draw x_1 from rng as samplers.sample draws x_T, so a seed gives the same starting noise to
every sampler.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.models.diffusion.samplers import THRESHOLDS, Denoise, guided_output, threshold

METHODS = ("euler", "heun")
TIME_DISTRIBUTIONS = ("logit_normal", "uniform")


@dataclasses.dataclass(frozen=True)
class FlowSchedule:
    """What a flow sampler needs to know of the model besides its network: time_scale, the network's
    time input per unit of t (the Denoiser's timesteps T, see the module docstring), and shift, the
    resolution shift s of the time grid (1 = none). Plain floats: close over it under jit, as over
    a noise Schedule."""

    time_scale: float = 1000.0
    shift: float = 1.0

    def __post_init__(self):
        for name in ("time_scale", "shift"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"FlowSchedule.{name} must be a finite number > 0, not {value!r}.")


def _per_example(t: jax.Array, x: jax.Array) -> jax.Array:
    """t [B] (or a scalar) broadcast against x [B, ...]."""
    t = jnp.asarray(t, x.dtype)
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


# ---- the path and the loss ----------------------------------------------------------------------
def interpolate(x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """x_t = (1 - t) x_0 + t e: data x0 and noise e [B, H, W, C], t [B] in [0, 1] -> x_t [B, H, W, C]."""
    t = _per_example(t, x0)
    return (1.0 - t) * x0 + t * noise


def velocity_target(x0: jax.Array, noise: jax.Array) -> jax.Array:
    """d x_t / dt = e - x_0 [B, H, W, C], the same at every t of the straight path."""
    return noise - x0


def per_example_loss(output: jax.Array, x0: jax.Array, noise: jax.Array) -> jax.Array:
    """Mean squared error per example [B] of the predicted velocity `output` [B, H, W, C]. There is no
    weight: where the loss puts its effort is the time density's job (SD3 sec. 3.1)."""
    return jnp.mean((output - velocity_target(x0, noise)) ** 2, axis=tuple(range(1, output.ndim)))


def network_time(schedule: FlowSchedule, t: jax.Array) -> jax.Array:
    """The network's time input, float [B], for t [B] in [0, 1]."""
    return jnp.asarray(t, jnp.float32) * schedule.time_scale


# ---- time -----------------------------------------------------------------------------------------
def shift_time(t: jax.Array | np.ndarray, shift: float) -> jax.Array | np.ndarray:
    """SD3's resolution shift t' = s t / (1 + (s - 1) t) (eq. 23), elementwise; maps 0 -> 0, 1 -> 1,
    increasing for s > 0. Works on numpy (float64 grids) and jax arrays alike."""
    if shift == 1.0:
        return t
    return shift * t / (1.0 + (shift - 1.0) * t)


def sample_time(rng: jax.Array, shape: tuple[int, ...], distribution: str = "logit_normal",
                mean: float = 0.0, std: float = 1.0, shift: float = 1.0) -> jax.Array:
    """Training times float32 `shape` in [0, 1]: 'logit_normal', sigmoid(mean + std n) (SD3 eq. 19;
    median sigmoid(mean)), or 'uniform'; then shifted by `shift` (its median becomes
    shift_time(median, shift), a monotone map keeping every quantile's order)."""
    if distribution == "logit_normal":
        t = jax.nn.sigmoid(mean + std * jax.random.normal(rng, shape, jnp.float32))
    elif distribution == "uniform":
        t = jax.random.uniform(rng, shape, jnp.float32)
    else:
        raise ValueError(f"the flow time distribution must be one of {', '.join(TIME_DISTRIBUTIONS)}, "
                         f"not {distribution!r}.")
    return shift_time(t, shift)


def time_grid(steps: int, shift: float = 1.0) -> np.ndarray:
    """The sampling grid float64 [steps + 1], shift(1 - k / steps) for k = 0..steps: from 1 (noise)
    down to 0 (data), finer near t = 1 for shift > 1."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"the number of flow sampling steps must be a positive integer, not {steps!r}.")
    return shift_time(np.linspace(1.0, 0.0, steps + 1), shift)


# ---- sampling -------------------------------------------------------------------------------------
def predict_velocity(denoise: Denoise, params: Any, schedule: FlowSchedule, x: jax.Array, t: jax.Array,
                     cond: Any = None, null_cond: Any = None, guidance: float | jax.Array | None = None, *,
                     thresholding: str = "none", percentile: float = 0.995, x0_offset: jax.Array | float = 0.0,
                     x0_scale: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """The (guided) velocity [B, H, W, C] at x [B, H, W, C] and time t (a scalar in (0, 1]), and the
    fraction of the image x0_offset + x0_scale x0_hat outside [-1, 1] before thresholding. With
    thresholding, the velocity points at the thresholded x0_hat (module docstring); t must be > 0
    then. x0_offset, x0_scale: which image the chain's x0 stands for, as in samplers.predict_x0."""
    tb = jnp.full((x.shape[0],), t, jnp.float32)
    v = guided_output(denoise, params, x, network_time(schedule, tb), cond, null_cond, guidance)
    x0 = x - t * v
    image = x0_offset + x0_scale * x0
    frac = jnp.mean((jnp.abs(image) > 1.0).astype(jnp.float32))
    if thresholding == "none":
        return v, frac
    x0 = (threshold(image, thresholding, percentile) - x0_offset) / x0_scale
    return (x - x0) / t, frac


def solve(denoise: Denoise, params: Any, schedule: FlowSchedule, shape: tuple[int, ...], rng: jax.Array,
          cond: Any = None, *, null_cond: Any = None, guidance: float | jax.Array | None = None,
          x_T: jax.Array | None = None, method: str = "euler", steps: int = 20, thresholding: str = "none",
          percentile: float = 0.995, x0_offset: jax.Array | float = 0.0, x0_scale: float = 1.0
          ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Integrates the flow ODE from t = 1 (x_T, noise) to t = 0 in `steps` steps of the shifted grid.

    denoise: (params, x [B,H,W,C], time float [B] = time_scale t, cond) -> velocity [B,H,W,C];
    schedule: the model's FlowSchedule (time scale and shift); shape: [B, H, W, C]; rng: draws x_T
    as samplers.sample does (the ODE is otherwise deterministic); cond/null_cond/guidance: as
    samplers.sample; method: 'euler' or 'heun'; thresholding, percentile, x0_offset, x0_scale: as
    samplers.make_step.
    Returns (x_0 [B, H, W, C]; {"x0_out_of_range": mean over evaluations of the fraction of the image
    outside [-1, 1] before thresholding, "nfe": network evaluations, `steps` (Euler) or 2 steps - 1
    (Heun)}). Jit it with every keyword except guidance static.
    """
    if method not in METHODS:
        raise ValueError(f"the flow sampler must be one of {', '.join(METHODS)}, not {method!r}.")
    if thresholding not in THRESHOLDS:
        raise ValueError(f"thresholding must be one of {THRESHOLDS}, not {thresholding!r}.")
    if guidance is not None and null_cond is None:
        raise ValueError("classifier-free guidance needs null_cond, the condition for 'no condition'.")
    grid = time_grid(steps, schedule.shift)
    init_key, _ = jax.random.split(rng)  # the same x_T as samplers.sample and solvers.solve
    x = jax.random.normal(init_key, shape, jnp.float32) if x_T is None else x_T

    def velocity(x, t):
        return predict_velocity(denoise, params, schedule, x, t, cond, null_cond, guidance,
                                thresholding=thresholding, percentile=percentile, x0_offset=x0_offset,
                                x0_scale=x0_scale)

    heun = method == "heun"
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    xs = (f32(grid[:-1]), f32(grid[1:]), jnp.arange(steps) == steps - 1)

    def body(carry, step):
        x, frac_sum = carry
        t, t_next, last = step
        v0, frac = velocity(x, t)
        x_euler = x + (t_next - t) * v0
        if not heun:
            return (x_euler, frac_sum + frac), None

        def corrector(_):
            v1, frac1 = velocity(x_euler, t_next)
            return x + (t_next - t) * 0.5 * (v0 + v1), frac1

        x, frac1 = jax.lax.cond(last, lambda _: (x_euler, jnp.zeros((), jnp.float32)), corrector, None)
        return (x, frac_sum + frac + frac1), None

    (x, frac_sum), _ = jax.lax.scan(body, (x, jnp.zeros((), jnp.float32)), xs)
    nfe = 2 * steps - 1 if heun else steps
    return x, {"x0_out_of_range": frac_sum / nfe, "nfe": jnp.asarray(nfe, jnp.int32)}
