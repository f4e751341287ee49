"""The diffusion math: schedules, the forward process, parameterizations, losses, samplers,
guidance, thresholding and the likelihood bound, checked against closed forms and each other."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models.diffusion import likelihood, losses, process, samplers, schedules


@pytest.fixture(scope="module")
def cosine():
    return schedules.cosine(1000)


# ---- schedules -----------------------------------------------------------------------------------
def test_linear_schedule_matches_ho_et_al():
    s = schedules.linear(1000)
    betas = np.asarray(s.betas)
    np.testing.assert_allclose(betas[[0, -1]], [1e-4, 0.02], rtol=1e-4)
    np.testing.assert_allclose(np.asarray(s.alphas_cumprod), np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)),
                               rtol=1e-5, atol=1e-7)


def test_cosine_schedule_is_decreasing_from_one_to_zero(cosine):
    abar = np.asarray(cosine.alphas_cumprod)
    assert np.all(np.diff(abar) < 0) and 0.999 < abar[0] < 1.0 and abar[-1] < 1e-4
    assert np.asarray(cosine.betas).max() <= 0.999 + 1e-6


def test_respace_keeps_both_ends_and_the_original_timesteps(cosine):
    r = schedules.respace(cosine, 50)
    t = np.asarray(r.timesteps)
    assert r.num_steps == 50 and t[0] == 0 and t[-1] == 999 and np.all(np.diff(t) > 0)
    np.testing.assert_array_equal(np.asarray(r.alphas_cumprod), np.asarray(cosine.alphas_cumprod)[t])
    abar64 = np.cumprod(1 - np.asarray(cosine.betas, np.float64))[t]  # the chain's own betas
    np.testing.assert_allclose(np.asarray(r.betas), 1 - abar64 / np.concatenate([[1.0], abar64[:-1]]), rtol=1e-5)
    with pytest.raises(ValueError, match="cannot respace a 1000-step schedule to 0 steps"):
        schedules.respace(cosine, 0)


# ---- forward process -----------------------------------------------------------------------------
def test_q_sample_statistics_match_the_closed_form_and_the_step_by_step_chain():
    sched = schedules.linear(100)
    x0 = jnp.linspace(-1, 1, 8).reshape(1, 2, 2, 2)
    n = 20_000
    t = 60
    noise = jax.random.normal(jax.random.PRNGKey(0), (n,) + x0.shape[1:])
    xt = process.q_sample(sched, jnp.broadcast_to(x0, noise.shape), jnp.full((n,), t), noise)
    abar = float(sched.alphas_cumprod[t])
    np.testing.assert_allclose(xt.mean(0), np.sqrt(abar) * x0[0], atol=0.03)
    np.testing.assert_allclose(xt.var(0), np.full(x0.shape[1:], 1 - abar), rtol=0.05)

    # The same marginal by running x_s = sqrt(1 - beta_s) x_{s-1} + sqrt(beta_s) eps for s <= t.
    betas = np.asarray(sched.betas)
    x = jnp.broadcast_to(x0, noise.shape)
    for s, key in enumerate(jax.random.split(jax.random.PRNGKey(1), t + 1)):
        x = jnp.sqrt(1 - betas[s]) * x + jnp.sqrt(betas[s]) * jax.random.normal(key, x.shape)
    np.testing.assert_allclose(x.mean(0), xt.mean(0), atol=0.03)
    np.testing.assert_allclose(x.var(0), xt.var(0), rtol=0.05)


@pytest.mark.parametrize("parameterization", process.PARAMETERIZATIONS)
def test_each_parameterization_converts_back_to_x0_and_eps(cosine, parameterization):
    key_x, key_n = jax.random.split(jax.random.PRNGKey(2))
    x0 = jax.random.uniform(key_x, (6, 4, 4, 3), minval=-1, maxval=1)
    noise = jax.random.normal(key_n, x0.shape)
    i = jnp.array([0, 10, 250, 500, 750, 990])
    x_t = process.q_sample(cosine, x0, i, noise)
    out = process.target(parameterization, cosine, x0, i, noise)
    x0_hat, eps_hat = process.to_x0_eps(parameterization, cosine, x_t, i, out)
    # x0 from eps divides by sqrt(abar), ~0.01 at t = 990: float32 error grows by that factor there.
    np.testing.assert_allclose(x0_hat, x0, atol=2e-3)
    np.testing.assert_allclose(eps_hat, noise, atol=2e-3)
    np.testing.assert_allclose(process.eps_from_x0(cosine, x_t, i, x0), noise, atol=2e-3)


def test_posterior_is_the_gaussian_of_the_two_step_joint(cosine):
    """q(x_{t-1} | x_t, x_0) from Bayes: the prior N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}) times the
    step likelihood N(x_t; sqrt(alpha_t) x_{t-1}, beta_t)."""
    t = 400
    x0, x_t = jnp.full((1, 1, 1, 1), 0.3), jnp.full((1, 1, 1, 1), -0.7)
    abar_prev, beta = float(cosine.alphas_cumprod_prev()[t]), float(cosine.betas[t])
    prec = 1 / (1 - abar_prev) + (1 - beta) / beta
    mean = (np.sqrt(abar_prev) * 0.3 / (1 - abar_prev) + np.sqrt(1 - beta) * -0.7 / beta) / prec
    m, v = process.posterior(cosine, x0, x_t, jnp.array([t]))
    np.testing.assert_allclose([float(m[0, 0, 0, 0]), float(v[0, 0, 0, 0])], [mean, 1 / prec], rtol=1e-4)


# ---- losses --------------------------------------------------------------------------------------
def test_min_snr_loss_is_the_same_in_every_parameterization(cosine):
    """One prediction of x0, written as eps, x0 or v, has the same min-SNR weighted loss."""
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    x0 = jax.random.uniform(keys[0], (5, 4, 4, 1), minval=-1, maxval=1)
    noise = jax.random.normal(keys[1], x0.shape)
    x0_pred = x0 + 0.1 * jax.random.normal(keys[2], x0.shape)
    i = jnp.array([5, 100, 400, 700, 950])
    x_t = process.q_sample(cosine, x0, i, noise)
    abar = cosine.alphas_cumprod[i].reshape(-1, 1, 1, 1)
    eps_pred = process.eps_from_x0(cosine, x_t, i, x0_pred)
    outputs = {"x0": x0_pred, "eps": eps_pred, "v": jnp.sqrt(abar) * eps_pred - jnp.sqrt(1 - abar) * x0_pred}
    values = {p: losses.per_example_loss(o, p, cosine, x0, i, noise, "min_snr", 5.0) for p, o in outputs.items()}
    np.testing.assert_allclose(values["eps"], values["x0"], rtol=1e-3)
    np.testing.assert_allclose(values["v"], values["x0"], rtol=1e-3)
    simple = losses.per_example_loss(eps_pred, "eps", cosine, x0, i, noise)
    np.testing.assert_allclose(simple, jnp.mean((eps_pred - noise) ** 2, axis=(1, 2, 3)), rtol=1e-6)


# ---- samplers on Gaussian data, where the optimal denoiser is known ------------------------------
MU, STD = 0.4, 0.3


def gaussian_eps(params, x, t, cond):
    """E[eps | x_t] for data x_0 ~ N(MU, STD^2) per dimension (params = abar of the full schedule,
    indexed by the original timestep t that samplers pass)."""
    abar = params[t].reshape(-1, 1, 1, 1)
    return jnp.sqrt(1 - abar) * (x - jnp.sqrt(abar) * MU) / (abar * STD ** 2 + 1 - abar)


def _run(schedule, rng, n=4000, x_T=None, **kw):
    full = schedules.cosine(1000).alphas_cumprod
    fn = jax.jit(lambda r, x: samplers.sample(gaussian_eps, full, schedule, (n, 1, 1, 1), r,
                                              x_T=x, **kw)[0])
    return np.asarray(fn(rng, x_T)).ravel()


@pytest.mark.parametrize("method, eta, steps", [("ddpm", 0.0, 1000), ("ddim", 1.0, 1000), ("ddim", 0.0, 50)])
def test_samplers_reproduce_gaussian_data(cosine, method, eta, steps):
    x = _run(schedules.respace(cosine, steps), jax.random.PRNGKey(4), method=method, eta=eta)
    assert abs(x.mean() - MU) < 0.02 and abs(x.std() - STD) < 0.02, (x.mean(), x.std())


def test_ddim_discretization_error_shrinks_with_more_steps(cosine):
    """Deterministic DDIM is a first-order solver of the probability-flow ODE: with the exact
    denoiser its only error is the step size, so the spread of the samples converges to the data's."""
    errors = [abs(_run(schedules.respace(cosine, n), jax.random.PRNGKey(4)).std() - STD) for n in (5, 10, 50)]
    assert errors[0] > errors[1] > errors[2], errors


def test_ddim_with_eta_one_is_ddpm_step_for_step(cosine):
    """Same keys, so the same x_T and the same step noise: the two chains coincide (Song et al.)."""
    rng = jax.random.PRNGKey(5)
    ddpm = _run(cosine, rng, n=256, method="ddpm")
    ddim = _run(cosine, rng, n=256, method="ddim", eta=1.0)
    np.testing.assert_allclose(ddim, ddpm, atol=1e-3)


def test_ddim_eta_zero_is_deterministic_given_x_T(cosine):
    sched = schedules.respace(cosine, 20)
    x_T = jax.random.normal(jax.random.PRNGKey(6), (64, 1, 1, 1))
    a = _run(sched, jax.random.PRNGKey(7), x_T=x_T, method="ddim", eta=0.0)
    b = _run(sched, jax.random.PRNGKey(8), x_T=x_T, method="ddim", eta=0.0)
    c = _run(sched, jax.random.PRNGKey(8), x_T=x_T, method="ddim", eta=0.5)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-2


def test_seeded_sampling_is_reproducible_and_seeds_differ(cosine):
    sched = schedules.respace(cosine, 20)
    a, b = _run(sched, jax.random.PRNGKey(9), n=16), _run(sched, jax.random.PRNGKey(9), n=16)
    c = _run(sched, jax.random.PRNGKey(10), n=16)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).min() > 0


def test_sampler_memory_is_flat_in_the_number_of_steps(cosine):
    def temp_bytes(steps):
        sched = schedules.respace(cosine, steps)
        fn = jax.jit(lambda r: samplers.sample(gaussian_eps, cosine.alphas_cumprod, sched, (256, 8, 8, 4), r)[0])
        return fn.lower(jax.random.PRNGKey(0)).compile().memory_analysis().temp_size_in_bytes
    small, large = temp_bytes(10), temp_bytes(1000)
    # The per-step noise keys ([steps, 2] uint32) are the only thing that grows: 8 bytes a step.
    assert large <= small * 1.1 + 8 * 1000, (small, large)


# ---- guidance and thresholding ---------------------------------------------------------------------
def _labelled_denoise(params, x, t, cond):
    """A toy conditional network: output depends on x, t and the label (label 10 = null)."""
    return 0.5 * x + 0.01 * t.reshape(-1, 1, 1, 1) + params[cond["label"]].reshape(-1, 1, 1, 1)


def test_guidance_one_is_conditional_and_zero_is_unconditional():
    params = jnp.arange(11.0)
    x = jax.random.normal(jax.random.PRNGKey(11), (4, 2, 2, 1))
    t = jnp.array([1, 2, 3, 4])
    cond, null = {"label": jnp.array([3, 1, 4, 1])}, {"label": jnp.full((4,), 10)}
    out = lambda w: samplers.guided_output(_labelled_denoise, params, x, t, cond, null, w)  # noqa: E731
    np.testing.assert_allclose(out(1.0), _labelled_denoise(params, x, t, cond), rtol=1e-6)
    np.testing.assert_allclose(out(0.0), _labelled_denoise(params, x, t, null), rtol=1e-6)
    np.testing.assert_allclose(out(3.0), _labelled_denoise(params, x, t, null)
                               + 3.0 * (_labelled_denoise(params, x, t, cond) - _labelled_denoise(params, x, t, null)),
                               rtol=1e-5)
    # A whole chain at w = 1 equals the unguided conditional chain.
    sched = schedules.respace(schedules.cosine(100), 10)
    run = lambda **kw: samplers.sample(_labelled_denoise, params * 0.1, sched, (4, 2, 2, 1),  # noqa: E731
                                       jax.random.PRNGKey(12), cond, **kw)[0]
    np.testing.assert_allclose(run(null_cond=null, guidance=1.0), run(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="needs null_cond"):
        run(guidance=2.0)


def test_dynamic_thresholding_keeps_values_in_range_and_leaves_in_range_images_alone():
    x = jnp.concatenate([3.0 * jax.random.normal(jax.random.PRNGKey(13), (2, 8, 8, 1)),
                         0.9 * jax.random.uniform(jax.random.PRNGKey(14), (1, 8, 8, 1), minval=-1, maxval=1)])
    out = samplers.threshold(x, "dynamic", 0.9)
    assert float(jnp.abs(out).max()) <= 1.0
    np.testing.assert_array_equal(out[2], x[2])  # s = max(1, percentile) = 1 and nothing to clip
    s = np.quantile(np.abs(np.asarray(x[0])).ravel(), 0.9)
    np.testing.assert_allclose(out[0], np.clip(x[0], -s, s) / s, rtol=1e-5)
    np.testing.assert_array_equal(samplers.threshold(x, "static"), jnp.clip(x, -1, 1))
    np.testing.assert_array_equal(samplers.threshold(x, "none"), x)


def test_thresholding_acts_on_the_image_a_residual_chain_stands_for(cosine):
    """With x0_offset and x0_scale the chain's x0 is a residual: static thresholding clips the image
    offset + scale x0_hat to [-1, 1] (not the residual), and the defaults leave the chain unchanged."""
    sched = schedules.respace(cosine, 4)
    offset = jnp.linspace(-0.9, 0.9, 2 * 4 * 4 * 3).reshape(2, 4, 4, 3)
    far = lambda params, x, t, cond: jnp.full_like(x, 5.0)  # x0_hat = 5: the image 2.0 + offset > 1
    rng = jax.random.PRNGKey(0)
    x, stats = samplers.sample(far, None, sched, (2, 4, 4, 3), rng, parameterization="x0",
                               thresholding="static", x0_offset=offset, x0_scale=0.4)
    np.testing.assert_allclose(offset + 0.4 * x, 1.0, atol=1e-5)  # DDIM's last step returns x0_hat
    assert float(stats["x0_out_of_range"]) == 1.0
    near = lambda params, x, t, cond: 0.5 * x  # any in-range chain: the defaults change nothing
    a, _ = samplers.sample(near, None, sched, (2, 4, 4, 3), rng, parameterization="x0", thresholding="dynamic")
    b, _ = samplers.sample(near, None, sched, (2, 4, 4, 3), rng, parameterization="x0", thresholding="dynamic",
                           x0_offset=0.0, x0_scale=1.0)
    np.testing.assert_array_equal(a, b)


# ---- likelihood ---------------------------------------------------------------------------------
def test_decoder_is_a_distribution_over_the_levels_and_sharp_at_low_noise(cosine):
    levels = 17
    grid = jnp.linspace(-1, 1, levels)
    x_t = jnp.full((levels, 1, 1, 1), 0.3)
    for abar in (0.5, 0.99, 0.99999):
        probs = jnp.exp(-likelihood.decoder_nll(grid.reshape(-1, 1, 1, 1), x_t, jnp.float32(abar), levels))
        np.testing.assert_allclose(float(probs.sum()), 1.0, atol=1e-5)
    # Nearly noiseless x_t of a grid value: that value gets almost all the mass.
    x0 = grid[jnp.array([2, 9])].reshape(2, 1, 1, 1)
    abar = cosine.alphas_cumprod[0]
    x_t = jnp.sqrt(abar) * x0 + jnp.sqrt(1 - abar) * 0.5
    assert float(likelihood.decoder_nll(x0, x_t, abar, levels).max()) < 1e-6


def test_bound_of_a_perfect_denoiser_on_a_single_image(cosine):
    """Data = one image; a network that always predicts it makes every diffusion KL zero with the
    'small' (posterior) variance, so L(t0) is the prior plus the decoder at t0."""
    x0 = jnp.linspace(-1, 1, 17)[jnp.array([0, 3, 8, 16])].reshape(1, 2, 2, 1)
    perfect = lambda params, x, t, cond: jnp.broadcast_to(x0, x.shape)  # noqa: E731
    terms = likelihood.bound_terms(perfect, None, cosine, x0, 17, jax.random.PRNGKey(15), parameterization="x0",
                                   variance="small")
    assert terms["kl"].shape == (1, 1000) and float(jnp.abs(terms["kl"]).max()) < 1e-3
    assert float(likelihood.bound_at(terms, 0)[0]) < 0.01
    decoder = np.asarray(terms["decoder"][0])
    # Near t = 0 the decoder is certain; at the end of the chain it knows nothing (uniform: log 17 a pixel).
    assert decoder[5] < 1e-3 and decoder[150] > 0.1
    np.testing.assert_allclose(decoder[999], 4 * np.log(17), rtol=0.05)
    np.testing.assert_allclose(likelihood.bound_at(terms, 500), terms["prior"] + terms["decoder"][:, 500], atol=1e-3)
    large = likelihood.bound_terms(perfect, None, cosine, x0, 17, jax.random.PRNGKey(15), parameterization="x0",
                                   variance="large")
    assert float(likelihood.bound_at(large, 0)[0]) > float(likelihood.bound_at(terms, 0)[0]) + 1e-3


def test_clipping_x0_hat_keeps_the_last_steps_of_the_bound_finite_sized(cosine):
    """An imperfect eps-network (here: predicts 0) has x0_hat = x_t / sqrt(abar) near t = T, where
    abar ~ 1e-9; the unclipped last steps then dominate the bound, the clipped ones do not."""
    x0 = jnp.linspace(-1, 1, 17)[jnp.array([[0, 3], [8, 16]])].reshape(2, 1, 2, 1)
    zero = lambda params, x, t, cond: jnp.zeros_like(x)  # noqa: E731
    last = {clip: float(likelihood.bound_terms(zero, None, cosine, x0, 17, jax.random.PRNGKey(16),
                                               clip_denoised=clip)["kl"][:, -9:].sum(axis=1).mean())
            for clip in (True, False)}
    assert last[True] < 1.0 and last[False] > 100.0, last
