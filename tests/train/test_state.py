"""The train state's EMA of the weights."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgen.train import state as state_lib


@pytest.mark.parametrize("decay", [0.5, 0.999])
def test_ema_is_the_debiased_weighted_average_of_the_iterates(decay):
    """After t updates the EMA equals sum_s decay**(t-s) p_s / sum_s decay**(t-s) over the iterates
    p_1..p_t: no trace of the initial weights, however short the run."""
    tx = optax.sgd(0.1)
    params = {"w": jnp.array([5.0, -3.0])}  # the initial weights, which the EMA must not remember
    state = state_lib.create(params, tx, jax.random.PRNGKey(0), ema=True)
    grads = [{"w": jnp.array([np.sin(i), np.cos(3 * i)], jnp.float32)} for i in range(12)]
    iterates = []
    step = jax.jit(lambda s, g: state_lib.apply_gradients(s, g, tx, decay))
    for g in grads:
        state = step(state, g)
        iterates.append(np.asarray(state.params["w"], np.float64))
    t = len(iterates)
    weights = decay ** (t - 1 - np.arange(t))
    expected = (weights[:, None] * np.stack(iterates)).sum(0) / weights.sum()
    np.testing.assert_allclose(state.ema_params["w"], expected, rtol=1e-5, atol=1e-6)
    # The first update copies the params.
    first = state_lib.apply_gradients(state_lib.create(params, tx, jax.random.PRNGKey(0), ema=True), grads[0],
                                      tx, decay)
    np.testing.assert_allclose(first.ema_params["w"], first.params["w"], rtol=1e-6)


def test_without_ema_the_state_keeps_none():
    tx = optax.sgd(0.1)
    state = state_lib.create({"w": jnp.zeros(2)}, tx, jax.random.PRNGKey(0))
    state = state_lib.apply_gradients(state, {"w": jnp.ones(2)}, tx, 0.0)
    assert state.ema_params is None
