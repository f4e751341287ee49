"""One step on 8 devices equals one step on 1 device with the same global batch, in both modes."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgen.train import parallel
from jaxgen.train import state as state_lib

TX = optax.adam(1e-2)


def _step(state, batch):
    """A tiny regression with per-example noise, so example_keys matters."""
    keys = parallel.example_keys(state_lib.step_rng(state), batch["x"].shape[0])
    noise = jax.vmap(lambda k: jax.random.normal(k, (3,)))(keys)

    def loss_fn(p):
        pred = jnp.tanh((batch["x"] + 0.1 * noise) @ p["w"] + p["b"])
        return jnp.mean((pred - batch["y"]) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    state = state_lib.apply_gradients(state, parallel.pmean(grads), TX, ema_decay=0.9)
    return state, parallel.pmean({"loss": loss})


def _init():
    params = {"w": jnp.ones((3, 2)) * 0.1, "b": jnp.zeros((2,))}
    return state_lib.create(params, TX, jax.random.PRNGKey(0), ema=True)


def _batches(n):
    rng = np.random.default_rng(0)
    return [{"x": rng.normal(size=(16, 3)).astype(np.float32), "y": rng.normal(size=(16, 2)).astype(np.float32)}
            for _ in range(n)]


def _run(devices, mode, steps=3):
    dp = parallel.DataParallel(_step, parallel.make_mesh(devices), mode)
    state = dp.put_state(_init())
    losses = []
    for batch in _batches(steps):
        state, metrics = dp(state, dp.put_batch(batch))
        losses.append(float(jax.device_get(dp.metrics_to_host(metrics))["loss"]))
    return jax.device_get(parallel.to_local(dp.host_state(state))), losses


@pytest.mark.parametrize("mode", ["shard_map", "pmap"])
def test_eight_devices_equal_one(mode):
    assert len(jax.devices()) == 8, "tests/conftest.py should give 8 fake CPU devices"
    one, losses_one = _run(jax.devices()[:1], "shard_map")
    eight, losses_eight = _run(jax.devices(), mode)
    np.testing.assert_allclose(losses_one, losses_eight, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(eight)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(eight.step) == 3


def test_training_changes_params():
    state, losses = _run(jax.devices()[:2], "shard_map", steps=3)
    assert not np.allclose(state.params["w"], 0.1)
    assert state.ema_params is not None and not np.allclose(state.ema_params["w"], state.params["w"])


def test_example_keys_do_not_depend_on_the_split():
    rng = jax.random.PRNGKey(3)

    def keys_on(n):
        mesh = parallel.make_mesh(jax.devices()[:n])
        f = jax.shard_map(lambda x: parallel.example_keys(rng, x.shape[0]), mesh=mesh,
                          in_specs=jax.sharding.PartitionSpec("data"), out_specs=jax.sharding.PartitionSpec("data"))
        return np.asarray(jax.jit(f)(jnp.zeros((16,))))

    np.testing.assert_array_equal(keys_on(1), keys_on(8))
    assert len({tuple(k) for k in keys_on(4)}) == 16


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="parallel mode"):
        parallel.DataParallel(_step, parallel.make_mesh(jax.devices()[:1]), "tpu_magic")
