"""Few-step ODE solvers for a discrete-time diffusion model: DPM-Solver++(2M) and EDM's Euler/Heun.

Deterministic DDIM is the first-order solver of the probability-flow ODE; these are its
second-order successors, for the same trained networks and the same `denoise(params, x, t, cond)`
contract as samplers.py (t: the original integer timestep, output in 'eps', 'x0' or 'v').

Notation: alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t), x_t = alpha_t x_0 + sigma_t eps, and
D_t = x0_hat(x_t, t), the network's output converted to x_0 (process.to_x0_eps), with classifier-free
guidance (samplers.guided_output) and thresholding (samplers.threshold) applied before any use.

DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Alg. 2), in lambda_t = log(alpha_t / sigma_t):
  exact:  x_t = (sigma_t / sigma_s) x_s + sigma_t * integral_{lambda_s}^{lambda_t} e^lambda x0_hat dlambda
  1st:    x_i = (sigma_i / sigma_{i-1}) x_{i-1} - alpha_i (e^{-h_i} - 1) D_{i-1},   h_i = lambda_i - lambda_{i-1}
          (this is DDIM with eta = 0, written in lambda)
  2M:     the same with D_{i-1} replaced by (1 + 1/(2 r_i)) D_{i-1} - 1/(2 r_i) D_{i-2},  r_i = h_{i-1} / h_i
  Grid: `steps` timesteps evenly spaced in t from T-1 to 0 (DDIM's respacing), the network evaluated at
  each, then a last step to the data (sigma = 0, lambda = inf, where x = D_{K-1}, as DDIM's last
  step). The first step is first order (no D_{i-2} yet), and so are the final two: the step to the
  data (h = inf) and the step landing on t = 0 (the usual lower-order final step). On the t-uniform
  grid that step is by far the longest in lambda (cosine, 20 steps: h = 2.7 after h = 0.6, so
  1/(2r) = 2.1), and extrapolating D over it made the 2M error on Gaussian data 2-250x (typically
  5x) larger at 20-80 steps, cosine and linear schedules; the price is an error floor of ~1e-3 that
  falls only slowly beyond ~40 steps. NFE = steps, as DDIM on `schedules.respace(schedule, steps)`.
  `dpmpp_2m_karras` ("DPM++ 2M Karras"): the same steps on the EDM methods' Karras grid below
  (snapped timesteps, duplicates dropped, so NFE <= steps), much closer to even in lambda than the
  t-uniform grid (cosine, 10 steps: lambda steps 0.6 to 1.9, against 8.2 for the t-uniform grid's
  first step, from T-1 where the image is nearly pure noise, 0.35-0.7 in the middle and 3.4 for the
  last, first-order one).

EDM (Karras et al. 2022, Alg. 1 without churn), in the variance-exploding coordinates
  x_sigma = x_t / alpha_t = x_0 + sigma eps,   sigma = sigma_t / alpha_t = sqrt((1 - abar_t) / abar_t):
  ODE:    dx/dsigma = (x - D(x; sigma)) / sigma,   D(x; sigma) = x0_hat(alpha_t x, t)
  grid:   sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, i < N; sigma_N = 0
          smin = the schedule's smallest sigma, smax = 80 (Karras et al.'s choice, also for their
          discrete iDDPM model) or the schedule's largest if smaller, rho = 7. The model's own
          sigma_max (`sigma_max=None`) is 2e4 for the cosine schedule (its last beta is clipped
          to 0.999): the rho grid then puts 86 % of its points above sigma = 1, and Heun with
          10 steps lands 8x farther from the exact solution on Gaussian data than from 80.
          x_T is taken as the sample at smax's timestep (whose marginal differs from N(0, I) by
          ~1/smax, as in EDM).
  Euler:  x_{i+1} = x_i + (sigma_{i+1} - sigma_i) d_i,   d_i = (x_i - D(x_i; sigma_i)) / sigma_i
          (= D + (sigma_{i+1} / sigma_i)(x_i - D): DDIM again, on the Karras grid)
  Heun:   x_{i+1} = x_i + (sigma_{i+1} - sigma_i) (d_i + d'_{i+1}) / 2, d' the slope at the Euler point;
          the last step (to sigma = 0, where d' is undefined) is Euler.
  NFE: edm_euler N, edm_heun 2N - 1 (N = `steps`, or fewer, see below).
  A discrete-time network knows only its training noise levels, so each Karras sigma is snapped to
  the training timestep with the nearest log sigma, and the ODE is integrated on the *snapped*
  sigmas: D is then always evaluated exactly at a noise level the network was trained on, and the
  only error left is the step size. (Feeding the network a nearest timestep while stepping with the
  unsnapped sigma would add an error that does not shrink with more steps; interpolating between two
  timesteps would double the NFE or need a continuous-time embedding the networks do not have.)
  Where several Karras sigmas snap to the same timestep (many steps near sigma_min) the duplicates
  are dropped, so N can be below `steps`; stats["nfe"] reports what ran.

All methods draw x_T from rng as samplers.sample does, run one `lax.scan` (the program holds one
network call, two for edm_heun, whose second sits in a `lax.cond` so that the last step costs one),
and need a concrete (not traced) schedule: close over it under jit, as for `schedules.respace`.
"""
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.models.diffusion import process
from jaxgen.models.diffusion.samplers import THRESHOLDS, Denoise, predict_x0
from jaxgen.models.diffusion.schedules import Schedule

METHODS = ("dpmpp_2m", "dpmpp_2m_karras", "edm_euler", "edm_heun")


def _abar(schedule: Schedule) -> np.ndarray:
    try:
        return np.asarray(schedule.alphas_cumprod, np.float64)
    except jax.errors.TracerArrayConversionError:
        raise ValueError("the ODE solvers need a concrete schedule: close over it inside jit instead "
                         "of passing it as a traced argument.") from None


def _check_steps(schedule: Schedule, steps: int) -> None:
    n = schedule.num_steps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= n:
        raise ValueError(f"steps must be an integer from 1 to the schedule's {n} timesteps, not {steps!r}.")


def dpm_grid(schedule: Schedule, steps: int) -> np.ndarray:
    """Indices into `schedule` of the `steps` evaluation points, from the noisiest (T-1) down to 0,
    evenly spaced in t (the same points as schedules.respace, in reverse order). int32 [steps]."""
    _check_steps(schedule, steps)
    n = schedule.num_steps
    return np.round(np.linspace(n - 1, 0, steps)).astype(np.int32)


def karras_grid(schedule: Schedule, steps: int, rho: float = 7.0, sigma_max: float | None = 80.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Karras et al. (eq. 5) sigmas from sigma_max (None: the schedule's; clipped to it) down to the
    schedule's sigma_min, snapped to the training timestep of nearest log sigma, duplicates dropped.
    Returns (indices into `schedule` int32 [N], their sigmas float64 [N]), decreasing, N <= steps;
    sigma_N = 0 is implied."""
    _check_steps(schedule, steps)
    abar = _abar(schedule)
    table = np.sqrt((1.0 - abar) / abar)  # increasing in the index
    smin, smax = table[0], table[-1] if sigma_max is None else min(float(sigma_max), table[-1])
    if not smax > smin:
        raise ValueError(f"sigma_max must exceed the schedule's smallest sigma {smin:.3g}, not {sigma_max!r}.")
    frac = np.linspace(0.0, 1.0, steps) if steps > 1 else np.zeros(1)
    sig = (smax ** (1 / rho) + frac * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    idx = np.abs(np.log(sig)[:, None] - np.log(table)[None, :]).argmin(axis=1)
    idx = np.array(sorted(set(idx.tolist()), reverse=True), np.int32)
    return idx, table[idx]


def solve(denoise: Denoise, params: Any, schedule: Schedule, shape: tuple[int, ...], rng: jax.Array,
          cond: Any = None, *, null_cond: Any = None, guidance: float | jax.Array | None = None,
          x_T: jax.Array | None = None, method: str = "dpmpp_2m", steps: int = 20,
          parameterization: str = "eps", thresholding: str = "none", percentile: float = 0.995,
          rho: float = 7.0, sigma_max: float | None = 80.0, x0_offset: jax.Array | float = 0.0,
          x0_scale: float = 1.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Solves the probability-flow ODE from x_T (noise at the grid's first, noisiest point) to x_0.

    schedule: the model's training schedule (a respaced one works too: the grid is then picked from
    its steps); shape: [B, H, W, C]; rng: draws x_T exactly as samplers.sample does (the solvers are
    otherwise deterministic); cond/null_cond/guidance: as samplers.sample; method: one of METHODS;
    steps: the number of grid points (NFE: dpmpp_2m `steps`; on the Karras grid, where snapping can
    drop points, dpmpp_2m_karras and edm_euler at most `steps`, edm_heun at most 2 steps - 1);
    parameterization, thresholding, percentile, x0_offset, x0_scale: as samplers.make_step;
    rho, sigma_max: the Karras grid's exponent and largest sigma (dpmpp_2m_karras and the EDM
    methods; see karras_grid).
    Returns (x_0 [B, H, W, C]; {"x0_out_of_range": mean over evaluations of the fraction of the image
    x0_offset + x0_scale x0_hat outside [-1, 1] before thresholding, "nfe": network evaluations}).
    Jit it with every keyword except guidance static.
    """
    if method not in METHODS:
        raise ValueError(f"solver method must be one of {METHODS}, not {method!r}.")
    if parameterization not in process.PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {process.PARAMETERIZATIONS}, not {parameterization!r}.")
    if thresholding not in THRESHOLDS:
        raise ValueError(f"thresholding must be one of {THRESHOLDS}, not {thresholding!r}.")
    if guidance is not None and null_cond is None:
        raise ValueError("classifier-free guidance needs null_cond, the condition for 'no condition'.")
    init_key, _ = jax.random.split(rng)  # the same x_T as samplers.sample for the same rng
    x = jax.random.normal(init_key, shape, jnp.float32) if x_T is None else x_T

    def data(x_t, i):
        """x0_hat [B,...] (thresholded) at schedule index i (scalar) and the out-of-range fraction."""
        return predict_x0(denoise, params, schedule, x_t, i, cond, null_cond, guidance,
                          parameterization=parameterization, thresholding=thresholding, percentile=percentile,
                          x0_offset=x0_offset, x0_scale=x0_scale)

    if method == "dpmpp_2m":
        x, frac_sum, nfe = _dpmpp_2m(data, schedule, x, dpm_grid(schedule, steps))
    elif method == "dpmpp_2m_karras":
        x, frac_sum, nfe = _dpmpp_2m(data, schedule, x, karras_grid(schedule, steps, rho, sigma_max)[0])
    else:
        x, frac_sum, nfe = _edm(data, schedule, x, steps, rho, sigma_max, heun=method == "edm_heun")
    return x, {"x0_out_of_range": frac_sum / nfe, "nfe": jnp.asarray(nfe, jnp.int32)}


def _dpmpp_2m(data, schedule: Schedule, x: jax.Array, idx: np.ndarray):
    """DPM-Solver++(2M) through the schedule indices `idx` (decreasing; x is x_t at idx[0]), then to
    the data. Every step is x <- cx x + cd ((1 + w) D_k - w D_{k-1}) with coefficients precomputed in
    float64; w = 0 gives the first-order steps (the first, the last two)."""
    steps = len(idx)
    abar = _abar(schedule)[idx]
    alpha, sigma = np.sqrt(abar), np.sqrt(1.0 - abar)
    lam = np.log(alpha) - np.log(sigma)
    h = np.diff(lam)  # h_k: the step from grid point k to k+1, k < steps - 1
    cx = np.append(sigma[1:] / sigma[:-1], 0.0)  # the last step lands on the data: x = D
    cd = np.append(-alpha[1:] * np.expm1(-h), 1.0)
    w = np.zeros(steps)
    w[1:steps - 2] = 0.5 * h[1:-1] / h[:-2]  # 1 / (2 r_k), r_k = h_{k-1} / h_k; first order at the ends
    xs = (jnp.asarray(idx), *(jnp.asarray(c, jnp.float32) for c in (cx, cd, w)))

    def body(carry, step):
        x, d_prev, frac_sum = carry
        i, cx, cd, w = step
        d, frac = data(x, i)
        x = cx * x + cd * ((1.0 + w) * d - w * d_prev)
        return (x, d, frac_sum + frac), None

    (x, _, frac_sum), _ = jax.lax.scan(body, (x, jnp.zeros_like(x), jnp.zeros((), jnp.float32)), xs)
    return x, frac_sum, steps


def _edm(data, schedule: Schedule, x_T: jax.Array, steps: int, rho: float, sigma_max: float | None,
         heun: bool):
    """Euler or Heun on karras_grid, in x_sigma = x_t / alpha_t; D(x; sigma_k) = data(alpha_k x, k)."""
    idx, sig = karras_grid(schedule, steps, rho, sigma_max)
    n = len(idx)
    sig_next = np.append(sig[1:], 0.0)
    idx_next = np.append(idx[1:], idx[-1])  # unused at the last step
    alpha = 1.0 / np.sqrt(1.0 + sig ** 2)  # = sqrt(abar) at each grid point
    alpha_next = np.append(alpha[1:], 1.0)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    xs = (jnp.asarray(idx), jnp.asarray(idx_next), f32(sig), f32(sig_next), f32(alpha), f32(alpha_next),
          jnp.arange(n) == n - 1)

    def body(carry, step):
        x, frac_sum = carry
        i, i_next, s, s_next, a, a_next, last = step
        d0, frac = data(a * x, i)
        # Euler: x + (s_next - s)(x - D)/s, written so that s_next = 0 gives D exactly.
        x_euler = d0 + (s_next / s) * (x - d0)
        if not heun:
            return (x_euler, frac_sum + frac), None

        def corrector(_):
            d1, frac1 = data(a_next * x_euler, i_next)
            slope = 0.5 * ((x - d0) / s + (x_euler - d1) / s_next)
            return x + (s_next - s) * slope, frac1

        # The last step goes to sigma = 0, where the slope is undefined: Euler there (Karras Alg. 1).
        x, frac1 = jax.lax.cond(last, lambda _: (x_euler, jnp.zeros((), jnp.float32)), corrector, None)
        return (x, frac_sum + frac + frac1), None

    x = x_T / f32(alpha[0])  # x_sigma_max: x_T taken as alpha x_0 + sigma eps at the first grid point
    (x, frac_sum), _ = jax.lax.scan(body, (x, jnp.zeros((), jnp.float32)), xs)
    return x, frac_sum, (2 * n - 1 if heun else n)
