"""The few-step ODE solvers (DPM-Solver++(2M), EDM Euler/Heun) against the exact probability-flow
ODE solution for Gaussian data, where the optimal denoiser is known in closed form."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models.diffusion import samplers, sampling, schedules, solvers

MU, STD = 0.4, 0.3
COSINE = schedules.cosine(1000)
ABAR = np.asarray(COSINE.alphas_cumprod, np.float64)
# x_T: noise values evenly spaced over [-3, 3]. Every solver here is affine in x_T on this data, so
# the largest error over the grid is the error at the tails of N(0, 1).
X_T = jnp.linspace(-3.0, 3.0, 61, dtype=jnp.float32).reshape(-1, 1, 1, 1)


def gaussian_eps(params, x, t, cond):
    """E[eps | x_t] for data x_0 ~ N(mu, STD^2) per pixel, mu = MU or cond["mu"] [B] (params: abar of
    the full schedule, indexed by the original timestep t)."""
    abar = params[t].reshape(-1, 1, 1, 1)
    mu = MU if cond is None else cond["mu"].reshape(-1, 1, 1, 1)
    return jnp.sqrt(1 - abar) * (x - jnp.sqrt(abar) * mu) / (abar * STD ** 2 + 1 - abar)


def exact(t_start: int, mu: float = MU, x_T=X_T) -> np.ndarray:
    """The probability-flow ODE's x_0 for x_T taken at timestep t_start.

    x_t ~ N(a mu, a^2 s^2 + sigma^2) per pixel (a = sqrt(abar_t), sigma = sqrt(1 - abar_t)). The ODE's
    velocity is affine in x (the score of a Gaussian is linear), so its flow map is affine, and
    increasing (a 1-D flow keeps the order of points); it carries the marginal at t_start to the data
    N(mu, s^2), and the only increasing affine map between two Gaussians keeps the standardised
    value: (x_T - a mu) / sqrt(a^2 s^2 + sigma^2) = (x_0 - mu) / s."""
    a = np.sqrt(ABAR[t_start])
    return mu + STD * (np.asarray(x_T, np.float64) - a * mu) / np.sqrt(a ** 2 * STD ** 2 + 1 - a ** 2)


def solve(method, steps, x_T=X_T, **kw):
    fn = jax.jit(lambda x: solvers.solve(gaussian_eps, COSINE.alphas_cumprod, COSINE, x.shape,
                                         jax.random.PRNGKey(0), x_T=x, method=method, steps=steps, **kw))
    x, stats = fn(x_T)
    return np.asarray(x, np.float64), {k: np.asarray(v) for k, v in stats.items()}


@functools.lru_cache(maxsize=None)  # each setting is one compiled program: build it once per run
def error(method, steps):
    x, stats = solve(method, steps)
    start = 999 if method == "dpmpp_2m" else int(solvers.karras_grid(COSINE, steps)[0][0])
    return float(np.abs(x - exact(start)).max()), int(stats["nfe"])


@functools.lru_cache(maxsize=None)
def ddim_error(steps):
    """Deterministic DDIM (eta = 0) on the respaced schedule: the first-order solver, `steps` NFE."""
    fn = jax.jit(lambda x: samplers.sample(gaussian_eps, COSINE.alphas_cumprod, schedules.respace(COSINE, steps),
                                           x.shape, jax.random.PRNGKey(0), x_T=x, method="ddim", eta=0.0)[0])
    return float(np.abs(np.asarray(fn(X_T), np.float64) - exact(999)).max())


def test_dpmpp_2m_is_second_order_and_beats_ddim_at_the_same_nfe():
    """Measured (max |error| over x_T in [-3, 3], data std 0.3): DPM-Solver++(2M) 1.4e-1, 2.7e-2, 8e-4
    at 10, 20, 40 NFE (ratios 0.19, 0.03: the second is helped by the error changing sign near 50
    steps; beyond that it sits at ~1e-3, 4.9e-4 at 160, the floor of the first-order final steps);
    DDIM 2.0e-1, 1.0e-1, 5.0e-2 (ratio 0.50: first order)."""
    dpm = {n: error("dpmpp_2m", n) for n in (10, 20, 40)}
    ddim = {n: ddim_error(n) for n in (10, 20, 40)}
    assert all(dpm[n][1] == n for n in dpm)  # one network call per step
    assert dpm[20][0] < 0.04 and dpm[40][0] < 0.005, dpm
    assert dpm[10][0] < 0.8 * ddim[10] and dpm[20][0] < 0.5 * ddim[20] and dpm[40][0] < 0.1 * ddim[40], (dpm, ddim)
    assert dpm[20][0] < dpm[10][0] / 3 and dpm[40][0] < dpm[20][0] / 3, dpm
    assert 0.4 < ddim[20] / ddim[10] < 0.6 and 0.4 < ddim[40] / ddim[20] < 0.6, ddim


def test_dpmpp_2m_karras_is_second_order_and_far_ahead_of_ddim():
    """DPM-Solver++(2M) on the Karras grid ("DPM++ 2M Karras"). Measured: 1.6e-2, 3.5e-2, 9.2e-3 at
    10, 20, 40 NFE (the 10-step error is small partly by cancellation: it changes sign between 10
    and 20 steps; 20 -> 40 is second order, ratio 0.26), DDIM 2.0e-1, 1.0e-1, 5.0e-2. The same
    solver on the t-uniform grid: 1.4e-1, 2.7e-2, 8e-4."""
    err = {}
    for n in (10, 20, 40):
        x, stats = solve("dpmpp_2m_karras", n)
        idx, _ = solvers.karras_grid(COSINE, n)
        assert int(stats["nfe"]) == len(idx) == n  # one network call per grid point (none dropped here)
        err[n] = float(np.abs(x - exact(int(idx[0]))).max())
    assert err[40] < 0.3 * err[20], err
    assert all(err[n] < 0.4 * ddim_error(n) for n in err), err
    assert err[10] < 0.5 * error("dpmpp_2m", 10)[0], err  # the Karras grid is what wins at 10 NFE


def test_edm_heun_is_second_order_and_beats_ddim_from_about_40_nfe():
    """Measured: Heun 2.1e-1, 4.1e-2, 9.0e-3 at 10, 20, 40 steps (19, 39, 79 NFE; ratios 0.20, 0.22),
    DDIM 5.0e-2 at 40 NFE and 2.5e-2 at 80. At 19 NFE Heun is no better than DDIM at 20 (1.0e-1):
    the rho = 7 grid over sigma in [0.0064, 80] has consecutive sigmas 4x apart near sigma ~ 0.3,
    where this data's ODE bends, and the trapezoidal rule loses 3-8 % per step there."""
    heun = {n: error("edm_heun", n) for n in (20, 40)}
    assert [heun[n][1] for n in (20, 40)] == [39, 79]  # 2 per step, 1 for the last (Euler) step
    assert heun[20][0] < 0.06 and heun[40][0] < 0.015, heun
    assert heun[40][0] < 0.3 * heun[20][0], heun
    assert heun[20][0] < ddim_error(40) and heun[40][0] < 0.6 * ddim_error(80), heun


def test_edm_euler_is_ddim_on_the_karras_grid():
    """Euler on dx/dsigma = (x - D) / sigma is DDIM in the variance-exploding coordinates: run DDIM on
    a schedule that visits exactly the snapped Karras timesteps, and the two agree."""
    idx, _ = solvers.karras_grid(COSINE, 12)
    idx = idx[::-1]  # increasing, as a Schedule is stored
    abar = ABAR[idx]
    betas = 1.0 - abar / np.concatenate([[1.0], abar[:-1]])
    grid = schedules.Schedule(jnp.asarray(abar, jnp.float32), jnp.asarray(betas, jnp.float32), jnp.asarray(idx))
    # Both take x_T as x_t at the grid's first timestep (the solver divides by alpha for x_sigma).
    ddim = samplers.sample(gaussian_eps, COSINE.alphas_cumprod, grid, X_T.shape, jax.random.PRNGKey(0), x_T=X_T)[0]
    euler, stats = solve("edm_euler", 12)
    assert int(stats["nfe"]) == len(idx) <= 12
    np.testing.assert_allclose(euler, np.asarray(ddim), atol=2e-5)


@pytest.mark.parametrize("method", ["dpmpp_2m", "dpmpp_2m_karras", "edm_heun"])
def test_guidance_moves_the_result_with_w_as_the_guided_ode_says(method):
    """cond shifts the data mean, null_cond is mean 0; eps is affine in the mean, so the guided output
    is the exact denoiser of N(w mu_c, s^2) and the solver must land on that ODE's solution."""
    mu_c = 0.5
    cond, null = {"mu": jnp.full((X_T.shape[0],), mu_c)}, {"mu": jnp.zeros((X_T.shape[0],))}
    fn = jax.jit(lambda w: solvers.solve(gaussian_eps, COSINE.alphas_cumprod, COSINE, X_T.shape,
                                         jax.random.PRNGKey(0), cond, null_cond=null, guidance=w, x_T=X_T,
                                         method=method, steps=20)[0])
    start = 999 if method == "dpmpp_2m" else int(solvers.karras_grid(COSINE, 20)[0][0])
    for w in (0.0, 1.0, 3.0):
        np.testing.assert_allclose(np.asarray(fn(w)), exact(start, w * mu_c), atol=0.06)
    assert abs(float(jnp.mean(fn(3.0) - fn(1.0))) - 2 * mu_c) < 0.03
    with pytest.raises(ValueError, match="needs null_cond"):
        solvers.solve(gaussian_eps, COSINE.alphas_cumprod, COSINE, X_T.shape, jax.random.PRNGKey(0), cond,
                      guidance=2.0, method=method)
    if method != "dpmpp_2m":  # the guided output is shared code (samplers.guided_output): test once
        return
    unguided, _ = solvers.solve(gaussian_eps, COSINE.alphas_cumprod, COSINE, X_T.shape, jax.random.PRNGKey(0),
                                cond, x_T=X_T, method=method, steps=20)
    np.testing.assert_allclose(np.asarray(fn(1.0)), np.asarray(unguided), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["dpmpp_2m", "edm_heun"])
def test_same_rng_same_output_and_thresholding_keeps_the_image_in_range(method):
    run = jax.jit(lambda r: solvers.solve(gaussian_eps, COSINE.alphas_cumprod, COSINE, (4, 3, 3, 1), r,
                                          method=method, steps=6, thresholding="static"))
    (a, stats), (b, _), (c, _) = run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(2))
    np.testing.assert_array_equal(a, b)
    assert np.abs(np.asarray(a - c)).min() > 0
    assert float(jnp.abs(a).max()) <= 1.0 and 0.0 <= float(stats["x0_out_of_range"]) <= 1.0
    if method == "dpmpp_2m":  # x_T comes from the rng exactly as in samplers.sample (shared code)
        x_T = jax.random.normal(jax.random.split(jax.random.PRNGKey(1))[0], (4, 3, 3, 1))
        given = jax.jit(lambda x: solvers.solve(gaussian_eps, COSINE.alphas_cumprod, COSINE, x.shape,
                                                jax.random.PRNGKey(9), x_T=x, steps=6, thresholding="static")[0])
        np.testing.assert_array_equal(a, given(x_T))


def test_bad_method_or_steps_is_one_clear_sentence():
    args = (gaussian_eps, COSINE.alphas_cumprod, COSINE, (2, 1, 1, 1), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"solver method must be one of .*dpmpp_2m.*not 'rk4'\.$"):
        solvers.solve(*args, method="rk4")
    for steps in (0, -3, 1001, 2.5):
        with pytest.raises(ValueError, match=r"steps must be an integer from 1 to the schedule's 1000 timesteps"):
            solvers.solve(*args, steps=steps)
    with pytest.raises(ValueError, match="parameterization must be one of"):
        solvers.solve(*args, parameterization="score")


def test_sampling_entry_point_dispatches_by_method():
    """sampling.sample: DDPM/DDIM on the schedule respaced to `steps`, the solvers on their own grid,
    the same numbers as calling each directly; an unknown method is one sentence."""
    sched = schedules.cosine(1000)
    denoise = lambda params, x, t, cond: 0.3 * x
    rng = jax.random.PRNGKey(3)
    a, _ = sampling.sample(denoise, None, sched, 10, (2, 4, 4, 1), rng, method="ddim", parameterization="eps")
    b, _ = samplers.sample(denoise, None, schedules.respace(sched, 10), (2, 4, 4, 1), rng, method="ddim",
                           parameterization="eps")
    np.testing.assert_array_equal(a, b)
    c, stats = sampling.sample(denoise, None, sched, 10, (2, 4, 4, 1), rng, method="dpmpp_2m", eta=0.5,
                               parameterization="eps")
    d, _ = solvers.solve(denoise, None, sched, (2, 4, 4, 1), rng, method="dpmpp_2m", steps=10, parameterization="eps")
    np.testing.assert_array_equal(c, d)
    assert int(stats["nfe"]) == 10
    with pytest.raises(ValueError, match=r"^the sampling method must be one of ddpm, ddim, dpmpp_2m"):
        sampling.sample(denoise, None, sched, 10, (2, 4, 4, 1), rng, method="plms")
