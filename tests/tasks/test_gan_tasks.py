"""The GAN and CycleGAN tasks: Algorithm 1's parameter separation for k = 1 and k = 5, the batch
layout, data parallelism (8 devices = 1 device), exact resume of the two-optimizer state, a short
run that trains, and a smoke run of every config."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen.tasks.base import TaskError
from jaxgen.train import log, loop, parallel


def _config(name, *overrides):
    return config_lib.load(f"{name}:quick", list(overrides))


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _on_one_device(fn, state, batch):
    """Runs a per-device function fn(state, batch) -> (tree, metrics) under the data-parallel
    wrapper on one device (it needs the 'data' axis for pmean / example_keys)."""
    step = parallel.DataParallel(fn, parallel.make_mesh(jax.devices()[:1]), donate=False)
    out, metrics = step(step.put_state(state), step.put_batch(batch))
    return jax.device_get(out), jax.device_get(metrics)


def _adam_count(opt_state):
    return int(opt_state[0].count)



def _assert_all_changed(before, after, what):
    for i, (a, b) in enumerate(zip(_leaves(before), _leaves(after))):
        assert not np.array_equal(a, b), f"{what}: leaf {i} did not move"


def _assert_unchanged(before, after):
    for a, b in zip(_leaves(before), _leaves(after)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("k", [1, 5])
def test_each_phase_moves_only_its_player(k):
    config = _config("gan_digits", f"--config.train.d_steps={k}")
    task = loop.make_task(config)
    state = jax.device_get(loop.init_state(task, config))
    batch = task.host_batch(3)
    assert batch["image"].shape == (16, k, 8, 8, 1)  # [B, k, ...]: devices split B
    for j in range(k):  # minibatch j of iteration s is the pipeline's batch of step s * k + j
        np.testing.assert_array_equal(batch["image"][:, j], task.dataset.batch(config.seed, 3 * k + j, 16)["image"])

    def d_only(state, x):
        d_params, d_opt, _ = task.discriminator_phase(state, x, None)
        return state.replace(params={**state.params, "discriminator": d_params},
                             opt_state={**state.opt_state, "discriminator": d_opt})

    def g_only(state, x):
        g_params, g_opt, _ = task.generator_phase(state, state.params["discriminator"], x.shape[1])
        return state.replace(params={**state.params, "generator": g_params},
                             opt_state={**state.opt_state, "generator": g_opt})

    def phases(state, batch):  # one compiled program for both (compilation dominates here)
        x = jnp.swapaxes(task.preprocess_stacked(batch["image"]), 0, 1)
        after_d = d_only(state, x)
        return {"d": after_d, "g": g_only(state, x), "d_then_g": g_only(after_d, x)}, {}

    out, _ = _on_one_device(phases, state, batch)
    after_d, after_g = out["d"], out["g"]
    # k discriminator updates: every D leaf moves, D's optimizer counted k updates, and G's params
    # and optimizer state are bitwise as they were
    _assert_all_changed(state.params["discriminator"], after_d.params["discriminator"], "discriminator")
    assert _adam_count(after_d.opt_state["discriminator"]) == k
    _assert_unchanged((state.params["generator"], state.opt_state["generator"]),
                      (after_d.params["generator"], after_d.opt_state["generator"]))
    # the generator update: every G leaf moves once, D untouched
    _assert_all_changed(state.params["generator"], after_g.params["generator"], "generator")
    assert _adam_count(after_g.opt_state["generator"]) == 1
    _assert_unchanged((state.params["discriminator"], state.opt_state["discriminator"]),
                      (after_g.params["discriminator"], after_g.opt_state["discriminator"]))
    # the generator's update depends on the discriminator it plays against (the updated one in
    # train_step, Algorithm 1's order)
    assert not np.array_equal(_leaves(out["d_then_g"].params["generator"])[0], _leaves(after_g.params["generator"])[0])


CGAN_OVERRIDES = ("--config.train.d_steps=2", "--config.model.r1_gamma=1.0")
# SGD for the CycleGAN comparison: Adam divides by sqrt(v), so where a gradient entry is round-off
# sized (instance norm makes several nearly so) its update is lr-sized noise that differs between
# device splits; SGD keeps the comparison at float precision.
CYCLEGAN_OVERRIDES = ("--config.optim.name=sgd",)


@pytest.mark.multidevice
@pytest.mark.parametrize("name, overrides, mode", [
    ("cgan_digits", CGAN_OVERRIDES, "shard_map"),
    ("cyclegan_shapes", CYCLEGAN_OVERRIDES, "shard_map"),
])
def test_eight_devices_equal_one_device(name, overrides, mode, run_steps):
    config = _config(name, *overrides)
    one, m1 = run_steps(config, jax.devices()[:1])
    eight, m8 = run_steps(config, jax.devices(), mode)
    for key in m1:
        np.testing.assert_allclose(m1[key], m8[key], rtol=2e-5, atol=1e-6, err_msg=key)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(eight)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def _mmd(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """Squared maximum mean discrepancy between image sets a [N, ...] and b [M, ...] with the RBF
    kernel exp(-|x - y|^2 / scale) (Gretton et al. 2012; the biased estimator, enough to compare)."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)

    def k(x, y):
        return np.exp(-((x[:, None] - y[None]) ** 2).sum(-1) / scale).mean()

    return float(k(a, a) + k(b, b) - 2 * k(a, b))


def test_short_run_trains_both_players_and_moves_samples_toward_the_data(tmp_path):
    config = _config("gan_digits", "--config.train.steps=150", "--config.train.log_every=1",
                     "--config.train.ckpt_every=0", "--config.train.sample_every=0")
    result = loop.train(config, str(tmp_path), quiet=True)
    records = log.read_metrics(str(tmp_path))
    acc = np.array([r["d_accuracy"] for r in records])
    # D starts at chance and learns to tell real from generated within the first 50 iterations
    assert acc[0] < 0.7 and acc[20:50].mean() > acc[0] + 0.15, acc
    # The generator keeps up: D(G(z)) of its fresh samples against the just-updated D stays near
    # 1/2 (measured 0.50 over the last 50 iterations). A generator whose loss were flipped or inert
    # (or frozen) lets D reject its samples: 0.006 with the generator loss's sign flipped, 0.17 with
    # the loss multiplied by 0.
    d_fake_g = np.array([r["d_fake_g"] for r in records])
    assert d_fake_g[-50:].mean() > 0.3, d_fake_g[-50:].mean()
    task = loop.make_task(config)
    raw = {"generator": result.state.params["generator"], "discriminator": result.state.params["discriminator"]}
    images = np.asarray(task.sample(raw, jax.random.PRNGKey(0), 64)["images"])
    assert images.shape == (64, 8, 8, 1) and images.min() >= 0.0 and images.max() <= 1.0
    assert images.std(axis=0).mean() > 0.03  # not one constant image for every z
    untrained = np.asarray(task.sample(task.eval_params(loop.init_state(task, config)), jax.random.PRNGKey(0), 64)["images"])
    assert np.abs(images - untrained).mean() > 0.05
    # The samples moved toward the data: their MMD to 256 training digits (kernel width: the median
    # squared distance between those digits) fell to well under half the untrained generator's
    # (measured 0.18 against 0.58); a flipped generator loss drives it up instead (1.32).
    data = task.dataset.arrays["image"][:256].astype(np.float32) / (task.dataset.num_levels - 1)
    flat = data.reshape(len(data), -1)
    scale = float(np.median(((flat[:, None] - flat[None]) ** 2).sum(-1)))
    trained_mmd, untrained_mmd = _mmd(images, data, scale), _mmd(untrained, data, scale)
    assert trained_mmd < 0.5 * untrained_mmd, (trained_mmd, untrained_mmd)


# The same overrides as the data-parallel test where the config is shared: the compiled step is reused.
@pytest.mark.parametrize("name, overrides", [("gan_digits", ()), ("cgan_digits", CGAN_OVERRIDES),
                                             ("cyclegan_shapes", CYCLEGAN_OVERRIDES), ("gan_shapes", ())])
def test_resume_is_exact_and_every_config_runs(name, overrides, tmp_path, request):
    """Smoke run of each config's quick version; a run stopped half-way and resumed equals the
    uninterrupted one bit for bit (both optimizer states, the EMA and the history pools)."""
    config = _config(name, *overrides)
    full = loop.train(config, str(tmp_path / "full"), quiet=True)
    first = loop.train(config, str(tmp_path / "part"), quiet=True, stop_at=config.train.steps // 2)
    assert first.step == config.train.steps // 2
    resumed = loop.train(config, str(tmp_path / "part"), quiet=True)
    for a, b in zip(_leaves(full.state), _leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)
    if name.endswith("_digits"):  # two Adam states: k D updates and one G update per iteration
        steps, k = config.train.steps, config.train.d_steps
        assert _adam_count(full.state.opt_state["discriminator"]) == k * steps
        assert _adam_count(full.state.opt_state["generator"]) == steps
    if name.endswith("_digits"):
        config.eval.classifier_workdir = request.getfixturevalue("classifier_run")
    task = loop.make_task(config)
    results = task.evaluate(full.state)
    if name == "cyclegan_shapes":
        # Even these 4 steps (SGD at the quick config's 2e-4) train the translators: the held-out
        # cycle-consistency error |F(G(x)) - x| + |G(F(y)) - y| falls (measured 0.858 -> 0.820),
        # which a cycle loss that were flipped or dropped would not give.
        before = task.evaluate(loop.init_state(task, config))
        cycle, cycle_before = (r["cycle_x_l1"] + r["cycle_y_l1"] for r in (results, before))
        assert cycle < 0.98 * cycle_before, (cycle, cycle_before)
    assert all(np.isfinite(v) for v in results.values()), results
    figures = task.figures(full.state)
    assert figures and all(f.dtype == np.uint8 and f.ndim == 3 for f in figures.values())
    samples = task.sample(task.eval_params(full.state), jax.random.PRNGKey(1), 12)
    assert samples["images"].shape[0] == 12
    if name == "cgan_digits":
        assert {"class_accuracy", "frechet_distance", "precision", "class_kl_to_uniform"} <= set(results)
        np.testing.assert_array_equal(samples["labels"], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
    if name == "cyclegan_shapes":
        assert results["x_untranslated_l1"] > 0.3
    if name == "gan_shapes":  # RGB scenes at the quick config's 16x16
        assert samples["images"].shape == (12, 16, 16, 3)


def test_cyclegan_trains_on_unpaired_disjoint_domains():
    config = _config("cyclegan_shapes")
    task = loop.make_task(config)
    n = task.dataset.num_examples
    np.testing.assert_array_equal(task.domain_x.arrays["image"], task.dataset.arrays["image"][:n // 2])
    np.testing.assert_array_equal(task.domain_y.arrays["image"], task.dataset.arrays["painted"][n // 2:])
    batch = task.host_batch(0)
    # the two streams are shuffled independently: the rows are not scenes i and n/2 + i
    flat = {bytes(r) for r in task.domain_x.arrays["image"].reshape(n // 2, -1)}
    assert all(bytes(r) in flat for r in batch["x"].reshape(len(batch["x"]), -1))
    x_idx = [next(i for i in range(n // 2) if np.array_equal(task.domain_x.arrays["image"][i], r)) for r in batch["x"]]
    y_idx = [next(i for i in range(n // 2) if np.array_equal(task.domain_y.arrays["image"][i], r)) for r in batch["y"]]
    assert x_idx != y_idx


@pytest.mark.parametrize("name, override, message", [
    ("gan_digits", "--config.model.loss=wasserstein", "model.loss must be one of"),
    ("gan_digits", "--config.train.d_steps=0", "train.d_steps"),
    ("gan_digits", "--config.model.r1_gamma=-1.0", "model.r1_gamma must be >= 0"),
    ("gan_digits", "--config.model.image_size=7", "not divisible"),
    ("gan_digits", "--config.model.g_norm=batch", "model.g_norm must be one of"),
    ("cyclegan_shapes", "--config.model.pool_size=-1", "pool_size"),
])
def test_bad_config_values_are_clear_errors(name, override, message):
    with pytest.raises(TaskError, match=message):
        loop.make_task(_config(name, override))
