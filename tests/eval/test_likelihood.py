"""Tests of jaxgen.eval.likelihood: unit conversions and the IWAE evaluation over a split."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.data.digits import digits_arrays
from jaxgen.eval import likelihood as L
from jaxgen.models import vae as V


def test_conversions():
    assert L.nats_to_bits_per_dim(64 * math.log(2), 64) == pytest.approx(1.0)
    assert L.bits_per_dim_to_nats(L.nats_to_bits_per_dim(123.4, 3072), 3072) == pytest.approx(123.4)
    # 17 equally likely levels per pixel: log2(17) bits/dim.
    assert L.nats_to_bits_per_dim(64 * math.log(17), 64) == pytest.approx(math.log2(17))


def test_nll_summary():
    r = L.nll_summary(np.array([-10.0, -12.0, -14.0]), num_dims=4)
    assert r["nats"] == pytest.approx(12.0)
    assert r["nats_se"] == pytest.approx(2.0 / math.sqrt(3))
    assert r["bits_per_dim"] == pytest.approx(12.0 / (4 * math.log(2)))
    assert r["num_images"] == 3
    with pytest.raises(ValueError, match="non-empty"):
        L.nll_summary(np.array([]), 4)


def test_evaluate_nll_on_a_split():
    model = V.VAE(latent_dim=4, channels=(8, 16))
    rng = jax.random.key(0, impl="rbg")            # fast-compiling initialisers on CPU
    params = jax.jit(model.init)(rng, jnp.zeros((1, 8, 8, 1), jnp.int32), rng)["params"]
    images = digits_arrays("test")[0][:25]
    key = jax.random.key(1)
    r = L.evaluate_nll(params, model, images, key, k=8, chunk=4, batch_size=10)  # padded last batch
    assert r["num_images"] == 25
    assert r["bits_per_dim"] == pytest.approx(r["nats"] / (64 * math.log(2)))
    # An untrained decoder is close to uniform over 17 levels: about 64 ln 17 = 181 nats.
    assert 150 < r["nats"] < 220 and 0 < r["nats_se"] < 5
    # A pure function of its inputs; the batches are scored independently of the padding.
    assert L.evaluate_nll(params, model, images, key, k=8, chunk=4, batch_size=10) == r
    first = L.evaluate_nll(params, model, images[:10], key, k=8, chunk=4, batch_size=10)
    manual = V.iwae_bound(params, model, jnp.asarray(images[:10], jnp.int32),
                          jax.random.fold_in(key, 0), 8, 4)
    assert first["nats"] == pytest.approx(-float(manual.mean()), rel=1e-5)
    with pytest.raises(ValueError, match="integer images"):
        L.evaluate_nll(params, model, images[..., 0], key, k=8, chunk=4)
