"""Gradient accumulation (train.grad_accum = m): the shared helper splits this device's batch into m
micro-batches and scans over them, every family's step with m micro-batches equals its step on the
whole batch (1 device, and 8 devices), and a bad grad_accum is one clear sentence."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen.config import ConfigError
from jaxgen.train import accumulate, loop, parallel

# Every family but segmentation (the 8-device case below), clip (which refuses accumulation:
# tests/tasks/test_clip_task.py) and unclip, with the overrides its data-parallel test
# in tests/tasks uses, so that the whole-batch reference is the very program those tests compiled
# (the persistent compilation cache reuses it).
FAMILIES = [
    ("vae_digits", ()),
    ("classifier_digits", ()),
    ("diffusion_digits_class", ()),
    # k = 2 discriminator updates and R1: each of the 3 updates of a step accumulates on its own
    ("cgan_digits", ("--config.train.d_steps=2", "--config.model.r1_gamma=1.0")),
    # SGD as in the CycleGAN data-parallel test: Adam would blow round-off-sized gradient entries
    # (instance norm makes several) up into lr-sized steps of either sign.
    ("cyclegan_shapes", ("--config.optim.name=sgd",)),
    # text2image: the SR stage's quick config as tests/tasks/test_text2image_parallel.py runs it (the
    # stage that draws the most per-example randomness: step, noise, text drop, augmentation level
    # and noise, all from the examples' global keys, so none of it may depend on the micro-batch).
    # unclip needs a trained clip run: tests/tasks/test_unclip.py checks its accumulation.
    ("text2image_shapes_sr", ()),
]


def _config(name, *overrides):
    return config_lib.load(f"{name}:quick", list(overrides))


def _run_steps(config, devices, steps=2, batches=None):
    """`steps` train steps on `devices` (shard_map): (host state, last metrics). The same program
    as tests/tasks/conftest.py's run_steps fixture, which tests/train cannot see. `batches` (a
    dict, filled here) reuses the host batches of a run of the same data: a batch is a pure
    function of (seed, step), and text2image's first one costs seconds of its frozen text encoder."""
    task, step_fn = loop.setup(config, devices)
    state = step_fn.put_state(loop.init_state(task, config))
    batches = {} if batches is None else batches
    for step in range(steps):
        if step not in batches:
            batches[step] = task.host_batch(step)
        state, metrics = step_fn(state, step_fn.put_batch(batches[step]))
    return jax.device_get(parallel.to_local(step_fn.host_state(state))), jax.device_get(metrics)


def _assert_same_step(whole, m_whole, accumulated, m_accumulated):
    # The tolerances of the 8-devices-equal-1-device tests: summing m micro-batch means reorders the
    # float32 additions just as the all-reduce over devices does.
    assert set(m_whole) == set(m_accumulated)
    for k in m_whole:
        np.testing.assert_allclose(m_accumulated[k], m_whole[k], rtol=2e-5, atol=1e-6, err_msg=k)
    leaves_whole, leaves_accumulated = jax.tree.leaves(whole), jax.tree.leaves(accumulated)
    assert len(leaves_whole) == len(leaves_accumulated)
    for a, b in zip(leaves_whole, leaves_accumulated):
        np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-6)


def _recording_splits(monkeypatch):
    """Wraps accumulate.mean_gradients (which the tasks call through the module) to record the
    (per-device batch size, number of micro-batches) of every call, made while tracing the step."""
    calls = []
    original = accumulate.mean_gradients

    def recording(grad_fn, params, inputs, num_micro):
        calls.append((jax.tree.leaves(inputs)[0].shape[0], num_micro))
        return original(grad_fn, params, inputs, num_micro)

    monkeypatch.setattr(accumulate, "mean_gradients", recording)
    return calls


# ---- the helper ----------------------------------------------------------------------------------


def test_mean_gradients_scans_micro_batches_and_equals_the_whole_batch():
    rng = np.random.default_rng(0)
    inputs = {"x": jnp.asarray(rng.normal(size=(12, 3)), jnp.float32),
              "y": jnp.asarray(rng.normal(size=(12,)), jnp.float32)}
    params = {"w": jnp.asarray([0.5, -1.0, 2.0]), "b": jnp.asarray(0.3)}
    seen = []

    def grad_fn(p, batch):  # a mean loss over the examples it is given, plus per-example rows
        seen.append(batch["x"].shape[0])

        def loss_fn(p):
            pred = batch["x"] @ p["w"] + p["b"]
            return jnp.mean((pred - batch["y"]) ** 2), pred

        (loss, pred), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
        return grads, {"loss": loss}, {"pred": pred}

    g1, m1, r1 = accumulate.mean_gradients(grad_fn, params, inputs, 1)
    g4, m4, r4 = jax.jit(lambda p, x: accumulate.mean_gradients(grad_fn, p, x, 4))(params, inputs)
    assert seen == [12, 3]  # the whole batch once; then a scan body traced on micro-batches of 12 / 4
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g4)):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(m4["loss"], m1["loss"], rtol=1e-6)
    # per-example rows come back in the batch's order (micro-batch j = rows 3j .. 3j + 2)
    np.testing.assert_allclose(r4["pred"], r1["pred"], rtol=1e-6)
    np.testing.assert_allclose(r4["pred"], inputs["x"] @ params["w"] + params["b"], rtol=1e-6)
    # the gradient really is a sum over micro-batches: the last micro-batch alone gives another one
    g_last, _, _ = grad_fn(params, jax.tree.map(lambda v: v[9:], inputs))
    assert not np.allclose(g_last["w"], g1["w"], rtol=1e-2)


def test_bad_grad_accum_is_one_sentence():
    with pytest.raises(ConfigError, match=r"train.grad_accum must be a positive integer \(micro-batches per "
                                          r"update\), not 0\."):
        _config("vae_digits", "--config.train.grad_accum=0")
    with pytest.raises(ConfigError, match=r"train.grad_accum=3 must divide train.batch_size=32 into equal "
                                          r"micro-batches\."):
        _config("vae_digits", "--config.train.grad_accum=3")
    # 32 examples over 8 devices leave 4 per device, which 8 micro-batches cannot split
    config = _config("vae_digits", "--config.train.grad_accum=8")
    config_lib.validate(config, num_devices=1)
    with pytest.raises(ConfigError, match=r"train.grad_accum=8 must divide the per-device batch \(train.batch_size=32 "
                                          r"over 8 devices\); choose train.batch_size a multiple of 64\."):
        config_lib.validate(config, num_devices=8)
    # the same check where the step is traced, for a caller that validated without the device count
    with pytest.raises(ConfigError, match=r"train.grad_accum=8 must divide the per-device batch of 4 examples"):
        accumulate.mean_gradients(None, {}, {"x": jnp.zeros((4, 2))}, 8)


# ---- every family ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, overrides", FAMILIES)
def test_accumulated_step_equals_the_whole_batch_step(name, overrides, monkeypatch):
    batches = {}
    whole, m_whole = _run_steps(_config(name, *overrides), jax.devices()[:1], batches=batches)
    calls = _recording_splits(monkeypatch)
    config = _config(name, *overrides, "--config.train.grad_accum=4")
    accumulated, m_accumulated = _run_steps(config, jax.devices()[:1], batches=batches)
    # the step went through the shared helper with 4 micro-batches, once per kind of update traced:
    # the GAN's D (its k updates share one scan body) and G, CycleGAN's G and D, the others' one
    updates = {"cgan_digits": 2, "cyclegan_shapes": 2}.get(name, 1)
    assert calls == [(config.train.batch_size, 4)] * updates
    _assert_same_step(whole, m_whole, accumulated, m_accumulated)


@pytest.mark.multidevice
def test_accumulation_on_eight_devices_equals_one_device_whole_batch(monkeypatch):
    """Segmentation: 8 devices x 2 micro-batches of 1 example = the 16-example batch on one device;
    every example keeps its global index, hence its dropout key, through both splits."""
    whole, m_whole = _run_steps(_config("unet_shapes", "--config.model.dropout=0.1"), jax.devices()[:1])
    calls = _recording_splits(monkeypatch)
    accumulated, m_accumulated = _run_steps(_config("unet_shapes", "--config.model.dropout=0.1",
                                                    "--config.train.grad_accum=2"), jax.devices())
    assert calls == [(2, 2)]  # this device's 16 / 8 rows, in 2 micro-batches
    _assert_same_step(whole, m_whole, accumulated, m_accumulated)
