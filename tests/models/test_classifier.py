"""Tests of jaxgen.models.classifier: shapes at 8x8 / 16x16 and a short training run on digits."""
import time

import jax
import jax.numpy as jnp
import optax
import pytest

from jaxgen.data.digits import digits_arrays
from jaxgen.models.classifier import DigitsClassifier

KEY = jax.random.key(0, impl="rbg")   # initialisers that compile fast on CPU (see test_vae._init)


@pytest.mark.parametrize("shape", [(8, 8, 1), (16, 16, 1), (16, 16, 3), (12, 8, 2)])
def test_shapes_any_size_and_channels(shape):
    model = DigitsClassifier(width=8, feature_dim=32)
    x = jnp.full((3,) + shape, 0.5)
    params = jax.jit(model.init)(KEY, x)["params"]
    logits = model.apply({"params": params}, x)
    feats = model.apply({"params": params}, x, features=True)
    assert logits.shape == (3, 10) and feats.shape == (3, 32)
    assert jnp.allclose(feats, model.apply({"params": params}, x, method=DigitsClassifier.features))


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match="H, W >= 8"):
        DigitsClassifier().init(KEY, jnp.zeros((1, 4, 4, 1)))


@pytest.mark.slow
def test_trains_to_high_accuracy_on_digits():
    """300 adam steps (batch 64, lr 3e-3 cosine-decayed, width 16): about 98% test accuracy."""
    start = time.time()
    x_train, y_train = digits_arrays("train")
    x_test, y_test = digits_arrays("test")
    x_train = jnp.asarray(x_train / 16.0, jnp.float32)
    x_test = jnp.asarray(x_test / 16.0, jnp.float32)
    y_train, y_test = jnp.asarray(y_train), jnp.asarray(y_test)
    model = DigitsClassifier(width=16)
    params = jax.jit(model.init)(KEY, x_train[:2])["params"]
    steps = 300
    opt = optax.adam(optax.cosine_decay_schedule(3e-3, steps))
    opt_state = opt.init(params)
    rng = jax.random.key(1)

    @jax.jit
    def step(params, opt_state, i):
        r = jax.random.fold_in(rng, i)
        idx = jax.random.choice(r, x_train.shape[0], (64,), replace=False)

        def loss(p):
            logits = model.apply({"params": p}, x_train[idx], train=True,
                                 rngs={"dropout": jax.random.fold_in(r, 1)})
            return optax.softmax_cross_entropy_with_integer_labels(logits, y_train[idx]).mean()

        updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for i in range(steps):
        params, opt_state = step(params, opt_state, i)
    accuracy = float((model.apply({"params": params}, x_test).argmax(-1) == y_test).mean())
    print(f"digits test accuracy {accuracy:.4f} after {steps} steps, {time.time() - start:.1f} s")
    assert accuracy >= 0.95
