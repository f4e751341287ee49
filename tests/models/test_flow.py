"""Flow matching on the straight path: the path and its target, the time densities and the resolution
shift, and the Euler / Heun samplers against the exact ODE solution for Gaussian data, where the
velocity field is known in closed form."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models.diffusion import flow, sampling, schedules

MU, STD = 0.4, 0.3
SCALE = 1000.0  # the network time per unit t, as a task passes model.timesteps
# x_1: noise values evenly spaced over [-3, 3]. The flow map is affine in x_1 on this data, so the
# largest error over the grid is the error at the tails of N(0, 1).
X_1 = jnp.linspace(-3.0, 3.0, 61, dtype=jnp.float32).reshape(-1, 1, 1, 1)


def velocity_field(x, t, mu):
    """E[e - x_0 | x_t = x] for data x_0 ~ N(mu, STD^2) per pixel (mu broadcastable to x, t [B, 1, 1, 1]).

    x_t = (1 - t) x_0 + t e is Gaussian with mean m_t = (1 - t) mu and variance
    sigma_t^2 = (1 - t)^2 STD^2 + t^2; conditioning the jointly Gaussian (x_0, e) on x_t gives
    v = -mu + (t - (1 - t) STD^2) / sigma_t^2 (x - m_t) = m_t' + (sigma_t' / sigma_t)(x - m_t),
    whose flow keeps the standardised value (x - m_t) / sigma_t: from x_1 it reaches mu + STD x_1."""
    var = (1 - t) ** 2 * STD ** 2 + t ** 2
    return -mu + (t - (1 - t) * STD ** 2) / var * (x - (1 - t) * mu)


def gaussian_velocity(params, x, time, cond):
    """The samplers' denoise for velocity_field with mu = MU, or cond["mu"] [B] per example; `time`
    is the network's, SCALE t."""
    mu = MU if cond is None else cond["mu"].reshape(-1, 1, 1, 1)
    return velocity_field(x, (time / SCALE).reshape(-1, 1, 1, 1), mu)


def exact(mu=MU, x_1=X_1) -> np.ndarray:
    return mu + STD * np.asarray(x_1, np.float64)


def solve(method, steps, shift=1.0, x_1=X_1, **kw):
    fn = jax.jit(lambda x: flow.solve(gaussian_velocity, None, flow.FlowSchedule(SCALE, shift), x.shape,
                                      jax.random.PRNGKey(0), x_T=x, method=method, steps=steps, **kw))
    x, stats = fn(x_1)
    return np.asarray(x, np.float64), {k: np.asarray(v) for k, v in stats.items()}


@functools.lru_cache(maxsize=None)  # each setting is one compiled program: build it once per run
def error(method, steps, shift=1.0):
    x, stats = solve(method, steps, shift)
    return float(np.abs(x - exact()).max()), int(stats["nfe"])


# ---- the path and the time ----------------------------------------------------------------------
def test_path_ends_and_velocity_is_its_time_derivative():
    x0, noise = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 4, 4, 1))
    np.testing.assert_array_equal(flow.interpolate(x0, noise, jnp.zeros(3)), x0)
    np.testing.assert_array_equal(flow.interpolate(x0, noise, jnp.ones(3)), noise)
    t, h = jnp.array([0.2, 0.5, 0.9]), 1e-2
    slope = (flow.interpolate(x0, noise, t + h) - flow.interpolate(x0, noise, t - h)) / (2 * h)
    np.testing.assert_allclose(slope, flow.velocity_target(x0, noise), atol=1e-4)
    loss = flow.per_example_loss(flow.velocity_target(x0, noise), x0, noise)
    assert loss.shape == (3,) and float(jnp.abs(loss).max()) == 0.0
    np.testing.assert_allclose(flow.per_example_loss(jnp.zeros_like(x0), x0, noise),
                               jnp.mean((noise - x0) ** 2, axis=(1, 2, 3)), rtol=1e-6)


@pytest.mark.parametrize("shift", [0.5, 1.0, 3.0])
def test_time_shift_fixes_the_ends_and_is_monotone(shift):
    t = np.linspace(0.0, 1.0, 1001)
    shifted = flow.shift_time(t, shift)
    assert shifted[0] == 0.0 and shifted[-1] == 1.0
    assert np.all(np.diff(shifted) > 0)
    # s > 1 moves every time toward the noise, s < 1 toward the data; 1/s undoes s.
    assert np.all(np.sign(shifted[1:-1] - t[1:-1]) == np.sign(shift - 1.0))
    np.testing.assert_allclose(flow.shift_time(shifted, 1.0 / shift), t, atol=1e-12)
    grid = flow.time_grid(8, shift)
    assert grid.shape == (9,) and grid[0] == 1.0 and grid[-1] == 0.0 and np.all(np.diff(grid) < 0)


@pytest.mark.parametrize("mean, shift", [(0.0, 1.0), (-1.0, 1.0), (0.5, 3.0)])
def test_logit_normal_times_lie_in_the_open_interval_with_the_right_median(mean, shift):
    t = np.asarray(flow.sample_time(jax.random.PRNGKey(0), (20000,), "logit_normal", mean, 1.0, shift))
    assert t.dtype == np.float32 and 0.0 < t.min() and t.max() < 1.0
    # A monotone map moves the median with it: shift(sigmoid(mean)); its standard error here is ~0.01.
    median = flow.shift_time(1.0 / (1.0 + np.exp(-mean)), shift)
    assert abs(np.median(t) - median) < 0.01, (np.median(t), median)
    # Unshift the draws: their log-odds are N(mean, 1).
    logit = np.log(flow.shift_time(t.astype(np.float64), 1.0 / shift))
    logit -= np.log1p(-flow.shift_time(t.astype(np.float64), 1.0 / shift))
    assert abs(logit.mean() - mean) < 0.03 and abs(logit.std() - 1.0) < 0.03


def test_uniform_times_and_an_unknown_density():
    t = np.asarray(flow.sample_time(jax.random.PRNGKey(1), (20000,), "uniform"))
    assert 0.0 <= t.min() and t.max() < 1.0 and abs(t.mean() - 0.5) < 0.01 and abs(np.median(t) - 0.5) < 0.01
    with pytest.raises(ValueError, match="must be one of logit_normal, uniform, not 'beta'"):
        flow.sample_time(jax.random.PRNGKey(1), (4,), "beta")


# ---- the samplers against the exact ODE solution ------------------------------------------------
def test_euler_is_first_order_and_heun_second_order():
    """Measured (max |error| over x_1 in [-3, 3], data std 0.3): Euler 1.6e-1, 8.3e-2, 4.2e-2 at 10, 20,
    40 steps (ratios 1.92, 1.96); Heun 4.4e-2, 1.0e-2, 2.5e-3 (ratios 4.2, 4.2) at 19, 39, 79 NFE."""
    euler = {n: error("euler", n) for n in (10, 20, 40)}
    heun = {n: error("heun", n) for n in (10, 20, 40)}
    assert all(euler[n][1] == n and heun[n][1] == 2 * n - 1 for n in (10, 20, 40))
    for a, b in ((10, 20), (20, 40)):
        assert 1.8 < euler[a][0] / euler[b][0] < 2.2, euler
        assert 3.6 < heun[a][0] / heun[b][0] < 4.6, heun
    assert heun[40][0] < 3e-3 and heun[20][0] < euler[40][0] / 4, (heun, euler)


def test_a_shifted_grid_converges_with_the_same_orders():
    """The shifted grid is a smooth re-parameterisation of the uniform one, so the orders hold once
    the steps resolve it. Measured (shift 3): Euler ratio 1.92, Heun 3.7 from 20 to 40 steps."""
    euler = error("euler", 20, 3.0)[0] / error("euler", 40, 3.0)[0]
    heun = error("heun", 20, 3.0)[0] / error("heun", 40, 3.0)[0]
    assert 1.8 < euler < 2.2 and 3.3 < heun < 4.6, (euler, heun)


def test_samples_from_noise_have_the_data_distribution():
    """Per-pixel data means over a 4x4 image: Heun's samples from 4096 noise draws have the data's
    means and scale (the standard errors at this size: 0.005 for a mean, 1.1 % for a std)."""
    mu = jnp.linspace(-0.5, 0.5, 16).reshape(1, 4, 4, 1)
    velocity = lambda params, x, time, cond: velocity_field(x, (time / SCALE).reshape(-1, 1, 1, 1), mu)  # noqa: E731
    x, stats = jax.jit(lambda rng: flow.solve(velocity, None, flow.FlowSchedule(SCALE), (4096, 4, 4, 1), rng,
                                              method="heun", steps=20))(jax.random.PRNGKey(3))
    x = np.asarray(x, np.float64)
    assert int(stats["nfe"]) == 39
    np.testing.assert_allclose(x.mean(axis=0), np.asarray(mu[0]), atol=0.02)
    np.testing.assert_allclose(x.std(axis=0), STD, rtol=0.05)


def test_classifier_free_guidance_acts_on_the_velocity():
    """The Gaussian velocity is affine in mu, so v_u + w (v_c - v_u) is the velocity of the data mean
    mu_u + w (mu_c - mu_u): guided sampling lands on that data's ODE solution; w = 1 is the
    conditional model and w = 0 the unconditional one."""
    b = X_1.shape[0]
    cond, null = {"mu": jnp.full((b,), 0.4)}, {"mu": jnp.zeros((b,))}
    sched = flow.FlowSchedule(SCALE)

    def run(w):
        return np.asarray(jax.jit(lambda x, w: flow.solve(
            gaussian_velocity, None, sched, x.shape, jax.random.PRNGKey(0), cond, null_cond=null, guidance=w,
            x_T=x, method="heun", steps=40)[0])(X_1, jnp.float32(w)), np.float64)

    for w, mu in ((0.0, 0.0), (1.0, 0.4), (2.0, 0.8), (4.0, 1.6)):
        np.testing.assert_allclose(run(w), exact(mu), atol=3e-3, err_msg=f"w={w}")
    with pytest.raises(ValueError, match="needs null_cond"):
        flow.solve(gaussian_velocity, None, sched, X_1.shape, jax.random.PRNGKey(0), cond, guidance=2.0)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_static_thresholding_keeps_samples_in_range(method):
    """Data N(0.4, 0.3^2) reach past 1 from x_1 > 2: clipping x0_hat at every step makes the last step
    land on a clipped x0_hat, so every sample lies in [-1, 1]; without it the tails exceed 1."""
    free, _ = solve(method, 10)
    clipped, stats = solve(method, 10, thresholding="static")
    assert free.max() > 1.1 and np.abs(clipped).max() <= 1.0 + 1e-6
    assert 0.0 < float(stats["x0_out_of_range"]) < 1.0
    inside = np.abs(free) < 0.7  # where no x0_hat left [-1, 1], clipping changed nothing
    np.testing.assert_allclose(clipped[inside], free[inside], atol=1e-5)


def test_sampling_entry_point_routes_by_the_schedule_and_refuses_mixed_methods():
    sched = flow.FlowSchedule(SCALE, 2.0)
    x, stats = jax.jit(lambda x: sampling.sample(gaussian_velocity, None, sched, 6, x.shape, jax.random.PRNGKey(0),
                                                 x_T=x, method="heun", parameterization="eps"))(X_1)
    ref, ref_stats = jax.jit(lambda x: flow.solve(gaussian_velocity, None, sched, x.shape, jax.random.PRNGKey(0),
                                                  x_T=x, method="heun", steps=6))(X_1)
    np.testing.assert_array_equal(x, ref)
    assert int(stats["nfe"]) == int(ref_stats["nfe"]) == 11
    # Without x_T, the starting noise is drawn from rng as every sampler draws it.
    drawn = jax.random.normal(jax.random.split(jax.random.PRNGKey(5))[0], (2, 2, 2, 1))
    np.testing.assert_array_equal(
        flow.solve(gaussian_velocity, None, sched, (2, 2, 2, 1), jax.random.PRNGKey(5), steps=3)[0],
        flow.solve(gaussian_velocity, None, sched, (2, 2, 2, 1), jax.random.PRNGKey(0), x_T=drawn, steps=3)[0])
    with pytest.raises(ValueError, match="a flow model samples with one of euler, heun, not 'ddim'"):
        sampling.sample(gaussian_velocity, None, sched, 5, (1, 1, 1, 1), jax.random.PRNGKey(0), method="ddim")
    with pytest.raises(ValueError, match="'euler' samples a flow model"):
        sampling.sample(gaussian_velocity, None, schedules.cosine(10), 5, (1, 1, 1, 1), jax.random.PRNGKey(0),
                        method="euler")
    with pytest.raises(ValueError, match="a flow model predicts the velocity"):
        sampling.sample(gaussian_velocity, None, sched, 5, (1, 1, 1, 1), jax.random.PRNGKey(0), method="euler",
                        parameterization="x0")
    assert sampling.methods("flow") == ("euler", "heun") and "ddim" in sampling.methods("ddpm")


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_a_schedule_needs_a_positive_scale_and_shift(bad):
    with pytest.raises(ValueError, match="FlowSchedule.shift must be a finite number > 0"):
        flow.FlowSchedule(SCALE, bad)
    with pytest.raises(ValueError, match="positive integer"):
        flow.time_grid(0)
