"""Tests of jaxgen.models.vae: the likelihoods, the KL, the ELBO / IWAE bounds and the samplers."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgen.data.digits import digits_arrays
from jaxgen.models import vae as V

SMALL = dict(latent_dim=4, channels=(8, 16), image_shape=(8, 8, 1), num_levels=17)


def _init(model, batch=2, seed=0):
    """Params of `model`. Jitted, with an 'rbg' key: on CPU, XLA compiles the op-by-op threefry
    initialisers of every weight shape slowly (about 25 s per model here, against 2 s this way)."""
    rng = jax.random.key(seed, impl="rbg")
    x = jnp.zeros((batch,) + tuple(model.image_shape), jnp.int32)
    return jax.jit(model.init)(rng, x, rng)["params"]


# --- KL ------------------------------------------------------------------------------------------


def test_gaussian_kl_matches_monte_carlo():
    rng = jax.random.key(0)
    mu = jax.random.normal(jax.random.fold_in(rng, 0), (3, 5))
    logvar = jax.random.normal(jax.random.fold_in(rng, 1), (3, 5)) * 0.7
    n = 50_000
    eps = jax.random.normal(jax.random.fold_in(rng, 2), (n, 3, 5))
    z = mu + jnp.exp(0.5 * logvar) * eps
    # log q(z|x) - log p(z), summed over latent dims; its mean over samples estimates the KL.
    log_ratio = jnp.sum(-0.5 * eps**2 - 0.5 * logvar + 0.5 * z**2, axis=-1)   # [n, 3]
    mc, se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(n)
    kl = V.gaussian_kl(mu, logvar).sum(-1)
    np.testing.assert_array_less(jnp.abs(kl - mc), 5 * se + 1e-4)
    assert jnp.allclose(V.gaussian_kl(jnp.zeros((1, 5)), jnp.zeros((1, 5))), 0.0)


def test_general_gaussian_kl_matches_monte_carlo():
    # KL(N(m1, v1) || N(m2, v2)) with a target other than N(0, 1), as the diffusion bound uses it.
    rng = jax.random.key(1)
    m1, m2 = jnp.array([0.3, -1.0, 2.0]), jnp.array([1.0, -0.5, 2.5])
    lv1, lv2 = jnp.array([-1.0, 0.4, -3.0]), jnp.array([0.5, -0.2, -2.0])
    n = 200_000
    z = m1 + jnp.exp(0.5 * lv1) * jax.random.normal(rng, (n, 3))
    log_normal = lambda z, m, lv: -0.5 * (lv + (z - m) ** 2 * jnp.exp(-lv))  # noqa: E731  no 2 pi
    log_ratio = log_normal(z, m1, lv1) - log_normal(z, m2, lv2)
    mc, se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(n)
    np.testing.assert_array_less(jnp.abs(V.gaussian_kl(m1, lv1, m2, lv2) - mc), 5 * se + 1e-4)


def test_gaussian_kl_closed_form_values_and_former_vae_form():
    # Hand values: a unit shift of the mean costs 1/2 nat; N(0, 4) || N(0, 1) costs (3 - log 4) / 2.
    assert float(V.gaussian_kl(1.0, 0.0)) == pytest.approx(0.5)
    assert float(V.gaussian_kl(0.0, math.log(4.0))) == pytest.approx((3.0 - math.log(4.0)) / 2)
    assert float(V.gaussian_kl(0.0, 0.0, 0.0, math.log(4.0))) == pytest.approx(
        (0.25 - 1.0 + math.log(4.0)) / 2)
    rng = np.random.default_rng(0)
    mu, logvar = (jnp.asarray(rng.normal(size=(4, 6)), jnp.float32) for _ in range(2))
    # The VAE's former KL(q || N(0, I)) (Kingma & Welling, Appendix B): the same numbers, bit for
    # bit (the diffusion bound's former variance form: tests/models/test_likelihood_kl.py).
    vae_form = 0.5 * jnp.sum(jnp.exp(logvar) + mu**2 - 1.0 - logvar, axis=-1)
    np.testing.assert_array_equal(V.gaussian_kl(mu, logvar).sum(-1), vae_form)


# --- likelihoods ---------------------------------------------------------------------------------


def _all_levels_logp(kind, params_one_pixel, num_levels):
    """log p(x) of every level x for one pixel whose likelihood parameters are [P]."""
    out = jnp.broadcast_to(params_one_pixel, (num_levels, 1, 1, 1, params_one_pixel.shape[-1]))
    x = jnp.arange(num_levels).reshape(num_levels, 1, 1, 1)
    return V.log_likelihood(kind, out, x, num_levels)


@pytest.mark.parametrize("kind,num_levels,params", [
    ("categorical", 17, np.linspace(-3, 4, 17)),
    ("bernoulli", 2, np.array([1.3])),
    ("bernoulli", 2, np.array([-25.0])),
    ("logistic", 17, np.array([0.1, -1.5])),
    ("logistic", 17, np.array([-3.0, -9.0])),   # mean beyond the range, scale below the clamp
    ("logistic", 256, np.array([0.3, -4.0])),   # sharp: neighbouring sigmoids nearly equal
    ("logistic", 256, np.array([0.0, 2.0])),    # very flat
])
def test_likelihood_normalises_over_levels(kind, num_levels, params):
    logp = _all_levels_logp(kind, jnp.asarray(params, jnp.float32), num_levels)
    assert jnp.all(jnp.isfinite(logp))
    assert jax.nn.logsumexp(logp) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("kind,num_levels,params", [
    ("categorical", 17, np.linspace(-3, 4, 17)),
    ("bernoulli", 2, np.array([0.4])),
    ("logistic", 17, np.array([0.2, -1.0])),
])
def test_likelihood_mean_is_expectation(kind, num_levels, params):
    params = jnp.asarray(params, jnp.float32)
    probs = jnp.exp(_all_levels_logp(kind, params, num_levels))
    expected = probs @ jnp.linspace(0, 1, num_levels)
    mean = V.likelihood_mean(kind, params.reshape(1, 1, 1, 1, -1), num_levels)
    assert mean.shape == (1, 1, 1, 1)
    assert float(mean[0, 0, 0, 0]) == pytest.approx(float(expected), abs=1e-5)


def test_likelihood_sample_levels():
    out = jnp.asarray([0.2, -1.0]).reshape(1, 1, 1, 1, 2)
    out = jnp.broadcast_to(out, (4000, 1, 1, 1, 2))
    x = V.likelihood_sample("logistic", out, jax.random.key(0), 17)
    assert x.dtype == jnp.int32 and x.min() >= 0 and x.max() <= 16
    # The empirical mean of the draws matches the analytic mean (std of a level <= 16 / 2).
    mean = V.likelihood_mean("logistic", out[:1], 17)[0, 0, 0, 0] * 16
    assert float(x.mean()) == pytest.approx(float(mean), abs=5 * 8 / math.sqrt(4000))


# --- bounds ---------------------------------------------------------------------------------------


def test_iwae_does_not_depend_on_chunk():
    model = V.VAE(**SMALL)
    params = _init(model)
    x = jnp.asarray(digits_arrays("test")[0][:3], jnp.int32)
    rng = jax.random.key(3)
    bound = jax.jit(V.iwae_bound, static_argnums=(1, 4, 5))
    a = bound(params, model, x, rng, 12, 12)
    b = bound(params, model, x, rng, 12, 4)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    with pytest.raises(ValueError, match="multiple of chunk"):
        V.iwae_bound(params, model, x, rng, 10, 4)


# --- a short training run on digits ---------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    """A small VAE after 400 adam steps on digits train (8x8, 17 levels, categorical)."""
    model = V.VAE(latent_dim=8, channels=(16, 32), upsample="nearest")
    rng = jax.random.key(0)
    train = jnp.asarray(digits_arrays("train")[0], jnp.int32)
    test = jnp.asarray(digits_arrays("test")[0], jnp.int32)
    params = _init(model)
    opt = optax.adam(2e-3)
    opt_state = opt.init(params)

    # 400 steps repay XLA's optimisation passes, which tests/conftest.py turns off by default.
    @functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 2})
    def step(params, opt_state, i):
        r = jax.random.fold_in(rng, i)
        idx = jax.random.choice(r, train.shape[0], (64,), replace=False)
        loss = lambda p: -V.elbo(p, model, train[idx], jax.random.fold_in(r, 1))["elbo"].mean()
        grads = jax.grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    test_terms = jax.jit(lambda p: {k: v.mean() for k, v in V.elbo(p, model, test, jax.random.key(7)).items()})
    start = -float(test_terms(params)["elbo"])
    for i in range(400):
        params, opt_state = step(params, opt_state, i)
    end = {k: float(v) for k, v in test_terms(params).items()}
    print(f"test -ELBO before / after training: {start:.1f} / {-end['elbo']:.1f} nats "
          f"(-recon {-end['recon']:.1f}, KL {end['kl']:.1f})")
    return model, params, test, start, end


def _marginal_nll(train: np.ndarray, test: np.ndarray, num_levels: int) -> float:
    """Mean test NLL (nats per image) of independent per-pixel level frequencies of `train` (add-one
    smoothed): about the best a decoder that ignores z can do, as its output is one distribution
    per pixel for every image."""
    counts = 1.0 + np.stack([(train == v).sum(0) for v in range(num_levels)], axis=-1)  # [H, W, C, L]
    logp = np.log(counts / counts.sum(-1, keepdims=True))
    return float(-np.take_along_axis(logp[None], test[..., None], axis=-1).sum(axis=(1, 2, 3, 4)).mean())


@pytest.mark.slow
def test_training_lowers_test_elbo_loss(trained):
    _, _, test, start, end = trained
    assert start > 150          # about 64 * ln 17 = 181 nats for a near-uniform decoder
    assert -end["elbo"] < 0.7 * start
    # A falling loss alone is met by a decoder that ignores z and learns the pixels' marginals: its
    # test -ELBO falls to 108.7 nats here, under 0.7 x 181, with the KL at 3e-7 (q(z|x) collapses
    # onto the prior: z carries nothing) and the reconstruction term at the marginals' 108.1 nats.
    # Using z, the reconstruction term is far below that (measured 86.7) and the KL is not ~0
    # (measured 6.8 nats).
    marginal = _marginal_nll(np.asarray(digits_arrays("train")[0]), np.asarray(test), 17)
    assert -end["recon"] < 0.9 * marginal, (-end["recon"], marginal)
    assert end["kl"] > 3.0, end["kl"]


@pytest.mark.slow
def test_iwae_rises_with_k_on_trained_model(trained):
    model, params, test, _, _ = trained
    rng = jax.random.key(11)                   # one rng: L_10 reuses L_1's sample, L_100 L_10's
    bounds = {k: float(jax.jit(lambda p, x: V.iwae_bound(p, model, x, rng, k, min(k, 50)))(
        params, test).mean()) for k in (1, 10, 100)}
    elbo = float(V.elbo(params, model, test, jax.random.key(12))["elbo"].mean())
    assert bounds[1] < bounds[10] < bounds[100]
    assert elbo < bounds[10]
    assert abs(elbo - bounds[1]) < 1.0           # E[L_1] = ELBO; 360 images average the noise
    assert bounds[100] < 0                       # a log-probability of discrete data


@pytest.mark.slow
def test_iwae_one_sample_equals_elbo_in_expectation(trained):
    model, params, test, _, _ = trained
    x = test[:8]
    rngs = jax.random.split(jax.random.key(1), 500)
    elbos = jax.jit(jax.vmap(lambda r: V.elbo(params, model, x, r)["elbo"]))(rngs)    # [R, B]
    iwae1 = jax.jit(jax.vmap(lambda r: V.iwae_bound(params, model, x, r, 1)))(rngs)   # [R, B]
    # Same expectation: the two estimators share E[log p(x|z)] and differ only in the KL term
    # (analytic in the ELBO, one-sample Monte Carlo in L_1).
    diff = iwae1 - elbos
    se = diff.std(0) / math.sqrt(diff.shape[0])
    np.testing.assert_array_less(jnp.abs(diff.mean(0)), 5 * se + 1e-3)
    # For K > 1 the bound is larger in expectation (Burda et al. Theorem 1).
    iwae10 = jax.jit(jax.vmap(lambda r: V.iwae_bound(params, model, x, r, 10, 10)))(rngs[:100])
    assert jnp.all(iwae10.mean(0) > elbos.mean(0))


@pytest.mark.slow
def test_trained_samplers(trained):
    model, params, test, _, _ = trained
    rec = V.reconstruct(params, model, test[:16])
    # Reconstructions are closer to their own input than to other images.
    target = test[:16].astype(jnp.float32) / 16
    own = jnp.mean((rec - target) ** 2)
    other = jnp.mean((rec - jnp.roll(target, 1, axis=0)) ** 2)
    assert own < 0.5 * other


# --- shapes, ranges, variants ---------------------------------------------------------------------


@pytest.mark.parametrize("likelihood,num_levels,upsample,image_shape", [
    ("categorical", 17, "transpose", (8, 8, 1)),
    ("bernoulli", 2, "nearest", (8, 8, 1)),
    ("logistic", 256, "transpose", (8, 8, 3)),
])
def test_sampler_shapes_and_ranges(likelihood, num_levels, upsample, image_shape):
    model = V.VAE(latent_dim=4, channels=(8, 16), image_shape=image_shape, num_levels=num_levels,
                  likelihood=likelihood, upsample=upsample)
    params = _init(model)
    rng = jax.random.key(0)
    x = jax.random.randint(rng, (3,) + image_shape, 0, num_levels)

    @jax.jit          # one compilation instead of op-by-op dispatch of every call below
    def run(params, x, rng):
        return dict(
            forward=model.apply({"params": params}, x, rng),
            samples=(V.sample(params, model, rng, 5), V.sample(params, model, rng, 5, mean=False),
                     V.reconstruct(params, model, x), V.reconstruct(params, model, x, rng)),
            grid=V.interpolate(params, model, x[:2], x[1:3], steps=5),
            ends=(V.reconstruct(params, model, x[:2]), V.reconstruct(params, model, x[1:3])),
            elbo=V.elbo(params, model, x, rng))

    r = run(params, x, rng)
    out, (mu, logvar) = r["forward"]
    assert out.shape == (3,) + image_shape + (V.num_params(likelihood, num_levels),)
    assert mu.shape == logvar.shape == (3, 4)
    for images in r["samples"]:
        assert images.shape[1:] == image_shape and images.dtype == jnp.float32
        assert jnp.all((images >= 0) & (images <= 1))
    grid = r["grid"]
    assert grid.shape == (2, 5) + image_shape
    assert jnp.all((grid >= 0) & (grid <= 1))
    # The grid's ends are the reconstructions of its two inputs.
    np.testing.assert_allclose(grid[:, 0], r["ends"][0], atol=1e-5)
    np.testing.assert_allclose(grid[:, -1], r["ends"][1], atol=1e-5)
    assert all(v.shape == (3,) and jnp.all(jnp.isfinite(v)) for v in r["elbo"].values())


def test_plain_autoencoder_variant():
    model = V.VAE(**SMALL, variational=False)
    params = _init(model)
    x = jnp.asarray(digits_arrays("test")[0][:3], jnp.int32)
    mu, logvar = model.apply({"params": params}, x, method=V.VAE.encode)
    assert logvar is None and mu.shape == (3, 4)
    a = V.elbo(params, model, x, jax.random.key(0))
    b = V.elbo(params, model, x, jax.random.key(1))        # deterministic: z = mu
    np.testing.assert_allclose(a["elbo"], b["elbo"])
    assert jnp.all(a["kl"] == 0) and jnp.all(a["recon"] < 0)
    assert V.reconstruct(params, model, x).shape == (3, 8, 8, 1)
    with pytest.raises(ValueError, match="variational"):
        V.iwae_bound(params, model, x, jax.random.key(0), 4)


def test_bad_configuration_is_one_clear_error():
    with pytest.raises(ValueError, match="divisible"):
        _init(V.VAE(latent_dim=4, channels=(8, 16, 32, 64), image_shape=(8, 8, 1)))
    with pytest.raises(ValueError, match="likelihood"):
        _init(V.VAE(**SMALL, likelihood="gaussian"))
    with pytest.raises(ValueError, match="upsample"):
        _init(V.VAE(**SMALL, upsample="bicubic"))


# --- Burda et al.'s MLP IWAE (jaxgen.models.iwae) and dynamic binarization --------------------------

from jaxgen.data import transforms  # noqa: E402
from jaxgen.models import iwae as IW  # noqa: E402


@functools.lru_cache(maxsize=None)
def _iwae_setup():
    """A tiny two-stochastic-layer model on 4x4 binary images, its params and 6 images."""
    model = IW.IWAE(image_shape=(4, 4, 1), latent_dims=(6, 3), hidden=((12,), (8,)))
    x = (jax.random.uniform(jax.random.key(1), (6, 4, 4, 1)) < 0.4).astype(jnp.int32)
    # an 'rbg' init key: XLA CPU compiles threefry's initialisers slowly (see _init above)
    params = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x, jax.random.key(2))["params"]
    return model, params, x


@functools.lru_cache(maxsize=None)
def _objective(k, kind):
    """IW.objective of the tiny model, compiled once per (k, kind): eager, it compiles op by op."""
    model, _, _ = _iwae_setup()
    return jax.jit(lambda p, x, r: IW.objective(p, model, x, r, k, kind))


def test_iwae_bound_with_one_sample_is_the_elbo_exactly():
    model, params, x = _iwae_setup()

    @jax.jit  # one program: eager, every op compiles on its own
    def bounds(p, x, r):
        return (IW.objective(p, model, x, r, 1, "iwae"), IW.objective(p, model, x, r, 1, "elbo"),
                model.apply({"params": p}, x, jax.random.fold_in(r, 0)),
                IW.objective(p, model, x, r, 5, "iwae"), IW.objective(p, model, x, r, 5, "elbo"))

    iwae1, elbo1, weight, iwae5, elbo5 = map(np.asarray, bounds(params, x, jax.random.key(3)))
    np.testing.assert_array_equal(iwae1, elbo1)
    np.testing.assert_allclose(iwae1, weight, rtol=1e-6)  # the log-weight of the one joint sample
    # with the same k samples, log-mean-exp >= mean-log (Jensen), image by image
    assert np.all(iwae5 >= elbo5 - 1e-5) and np.any(iwae5 > elbo5 + 1e-3)


def test_iwae_bound_grows_with_k_on_average():
    """E[L_1] <= E[L_5] <= E[L_50] (Burda et al. Theorem 1), for a fixed model, over 100 draws of 50
    samples (L_1 and L_5 from the first 1 and 5 of them; each L_k's expectation is the same with or
    without sharing): each mean gap must exceed 4 standard errors of the paired differences."""
    model, params, x = _iwae_setup()
    keys = jax.random.split(jax.random.key(4), 100)

    @jax.jit
    def draws(keys):
        lw = jax.vmap(lambda r: IW.log_weights(params, model, x, r, 50))(keys)  # [100, 50, B]
        return jnp.stack([(jax.nn.logsumexp(lw[:, :k], axis=1) - np.log(k)).mean(-1) for k in (1, 5, 50)], 1)

    d = np.asarray(draws(keys))  # [100, 3]: L_1, L_5, L_50, each averaged over the images
    for lo, hi in ((0, 1), (1, 2)):
        diff = d[:, hi] - d[:, lo]
        assert diff.mean() > 4 * diff.std() / np.sqrt(len(diff)), d.mean(0)


def test_chunked_iwae_bound_equals_the_unchunked_one():
    model, params, x = _iwae_setup()
    rng = jax.random.key(5)
    full = _objective(12, "iwae")(params, x, rng)
    bound = jax.jit(lambda p, x, r: IW.iwae_bound(p, model, x, r, 12, chunk=4))
    np.testing.assert_allclose(bound(params, x, rng), full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of chunk"):
        IW.iwae_bound(params, model, x, rng, 10, chunk=4)


def test_active_units_count_the_units_whose_posterior_mean_varies():
    means = [jnp.stack([jnp.linspace(-1, 1, 50), jnp.full((50,), 3.0), 0.05 * jnp.linspace(-1, 1, 50)], 1)]
    assert IW.active_units(means) == [1]  # var 0.35 > 0.01; 0; 0.0009 < 0.01


def test_dynamic_binarization_is_a_pure_function_of_the_key_with_the_right_mean():
    images = jnp.broadcast_to(jnp.array([0, 64, 128, 255], jnp.uint8)[None, :, None, None], (4000, 4, 1, 1))
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(7), i))(jnp.arange(4000))
    binarize = jax.jit(transforms.dynamic_binarize, static_argnums=2)
    b = np.asarray(binarize(images, keys, 256))
    assert b.dtype == np.int32 and set(np.unique(b)) == {0, 1}
    assert np.all(b[:, 0] == 0) and np.all(b[:, 3] == 1)  # intensity 0 and 1 are exact
    for col, level in ((1, 64), (2, 128)):
        p = level / 255
        assert abs(b[:, col].mean() - p) < 4 * np.sqrt(p * (1 - p) / 4000)
    # deterministic in the key, whatever else is in the batch (here: the batch reversed); another
    # key, other bits
    np.testing.assert_array_equal(np.asarray(binarize(images[::-1], keys[::-1], 256)), b[::-1])
    other = np.asarray(binarize(images, jax.vmap(jax.random.fold_in, (0, None))(keys, 1), 256))
    assert np.any(other[:, 1:3] != b[:, 1:3])
