"""Latent diffusion: the KL autoencoder (autoencoder_shapes64:quick) and the text-to-image base stage in its
latent space (latent_diffusion_shapes64:quick with model.latent_from), on shapes/t2i64_tiny."""
import glob
import json
import os
import shutil

import jax
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen.tasks import TaskError, latent, runs
from jaxgen.train import loop, pretrained

PROMPTS = ["a red circle", "two blue squares and a green triangle"]


def _ldm_config(ae_workdir: str, *overrides: str):
    return config_lib.load("latent_diffusion_shapes64:quick", [f"--config.model.latent_from={ae_workdir}", *overrides])


@pytest.fixture(scope="module")
def ae_run(shared_dir):
    """A trained autoencoder_shapes64:quick run, once per test run."""
    def build(path):
        loop.train(config_lib.load("autoencoder_shapes64:quick"), str(path / "run"), devices=jax.devices()[:1],
                   quiet=True)
    return os.path.join(shared_dir("autoencoder_shapes64_quick", build), "run")


@pytest.fixture(scope="module")
def ldm_run(shared_dir, ae_run):
    """A 4-step latent_diffusion_shapes64:quick run in the latent space of ae_run."""
    def build(path):
        loop.train(_ldm_config(ae_run), str(path / "run"), devices=jax.devices()[:1], quiet=True)
    return os.path.join(shared_dir("latent_diffusion_shapes64_quick", build), "run")


def test_autoencoder_reconstructs_better_than_any_image_that_ignores_z(ae_run):
    logged = [json.loads(line) for line in open(os.path.join(ae_run, "metrics.jsonl"))]
    l1 = [m["l1"] for m in logged if "l1" in m]
    assert l1[-1] < 0.5 * l1[0], l1  # the training reconstruction error falls
    _, task, state = runs.restore_for_eval(ae_run)
    results = task.evaluate(state)
    # A decoder that ignores z gives at best a constant image (the training images' mean is the best
    # under L2, their median under L1: after 120 quick steps the background is right and the
    # objects are rough, so the median, mostly background, is not yet beaten), and reconstructs
    # a scene from another scene's latents as well as from its own: this one must not.
    assert results["test_l1"] < results["test_l1_mean_image"], results
    assert results["test_l1"] < 0.9 * results["test_l1_other_scene"], results
    assert results["exact_scene_real"] == 1.0  # the parser reads every real 64x64 scene
    assert 0.0 <= results["exact_scene_reconstructed"] <= 1.0
    assert results["scale_factor"] == pytest.approx(1.0 / results["latent_std"])
    # encode / decode shapes: 64x64x3 -> 16x16x4 (f = 4) -> 64x64x3 in [0, 1]
    params = task.eval_params(state)
    images = task.eval_dataset().arrays["image"][:5]
    mean, std = task.encode_moments(params, images)
    assert mean.shape == std.shape == (5, 16, 16, 4) and (std > 0).all()
    decoded = task.decode(params, mean)
    assert decoded.shape == (5, 64, 64, 3) and decoded.min() >= 0.0 and decoded.max() <= 1.0


def test_scale_factor_makes_the_training_latents_unit_std(ldm_run):
    _, task, _ = runs.restore_for_eval(ldm_run)
    with open(os.path.join(ldm_run, latent.LATENT_FILE)) as f:
        assert json.load(f)["scale"] == task.latent.scale  # the run's asset is what sampling reads
    moments = task.latent.training_moments()
    keys = jax.random.split(jax.random.PRNGKey(1), len(moments["latent_mean"]))
    x0 = np.asarray(jax.jit(task.latent.to_latent)(moments["latent_mean"], moments["latent_std"], keys))
    # The scale is exact for the closed-form std of the posterior samples; this is one draw of them,
    # whose variance over 256 x 1,024 elements has a relative sampling error well under 1 % (the
    # noise is independent per element; the posterior means, most of the variance, are fixed).
    assert x0.shape == (256, 16, 16, 4)
    assert x0.std() == pytest.approx(1.0, abs=0.01)


def test_latent_step_on_eight_devices_equals_one_device(ae_run, run_steps):
    one, m1 = run_steps(_ldm_config(ae_run), jax.devices()[:1], "shard_map")
    eight, m8 = run_steps(_ldm_config(ae_run), jax.devices(), "shard_map")
    for k in m1:
        np.testing.assert_allclose(m1[k], m8[k], rtol=2e-5, atol=1e-6, err_msg=k)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(one), jax.tree.leaves(eight)):
        path = jax.tree_util.keystr(path)
        # An attention key's bias adds the same q.b to every logit of a query, so its true gradient is
        # 0 and what it gets is rounding noise, which Adam scales up to lr-sized steps either way.
        atol = 2e-5 if "['key']['bias']" in path else 2e-6
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=atol, err_msg=path)
    # The denoiser works on the latent grid: its output layer has the latent channels.
    assert {leaf.shape[-1] for leaf in jax.tree.leaves(one.params["unet"]["out_conv"])} == {4}


def test_sampling_decodes_latents_to_64x64_images(ldm_run):
    _, task, state = runs.restore_for_eval(ldm_run)
    assert task.x_shape == (16, 16, 4) and task.image_shape == (64, 64, 3)
    images, stats = task.text_to_image(task.eval_params(state), jax.random.PRNGKey(0), PROMPTS)
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert stats["decode_seconds"] > 0


def test_latent_from_a_run_that_is_no_autoencoder_is_one_sentence(ldm_run, ae_run, tmp_path):
    cases = [(_ldm_config(ldm_run), r"^model\.latent_from='.*' holds a text2image run, not an autoencoder run "),
             (_ldm_config(str(tmp_path)), r"^model\.latent_from='.*' is neither a trained autoencoder run folder "),
             (_ldm_config(ae_run, "--config.sample.thresholding=dynamic"), r"^sample\.thresholding='dynamic' clips ")]
    for config, message in cases:
        with pytest.raises(TaskError, match=message) as info:
            runs.make_task(config)
        assert str(info.value).count(". ") == 0  # one sentence


def test_exported_latent_model_samples_as_its_run_folder(ldm_run, ae_run, tmp_path):
    ae_out = pretrained.export(ae_run, str(tmp_path / "ae"))
    # Export pointing model.latent_from at the exported autoencoder (the same params): no run folder needed.
    out = pretrained.export(ldm_run, str(tmp_path / "ldm"), overrides=[f"--config.model.latent_from={ae_out}"])
    config, task, params = runs.load_pretrained(out)
    assert config.model.latent_from == ae_out and os.path.isfile(os.path.join(out, latent.LATENT_FILE))
    _, run_task, state = runs.restore_for_eval(ldm_run)
    key = jax.random.PRNGKey(3)
    exported, _ = task.text_to_image(params, key, PROMPTS)
    from_run, _ = run_task.text_to_image(run_task.eval_params(state), key, PROMPTS)
    np.testing.assert_array_equal(exported, from_run)


def test_resume_reads_the_runs_latent_space_and_refuses_another_autoencoder(ldm_run, ae_run, tmp_path):
    """A resumed latent run reads latent.json (scale and autoencoder fingerprint) before anything is
    written: when model.latent_from no longer holds the autoencoder it was trained on, it stops in one
    sentence instead of training on in another latent space."""
    run = str(tmp_path / "run")
    shutil.copytree(ldm_run, run)
    path = os.path.join(run, latent.LATENT_FILE)
    with open(path) as f:
        saved = json.load(f)
    with open(path, "w") as f:
        json.dump({**saved, "fingerprint": "0" * 64}, f)  # as if the autoencoder had been retrained since
    before = {p: open(p, "rb").read() for p in glob.glob(os.path.join(run, "**"), recursive=True) if os.path.isfile(p)}
    with pytest.raises(TaskError, match=r"^this run was trained in the latent space of the autoencoder at step "):
        loop.train(_ldm_config(ae_run, "--config.train.steps=6"), run, devices=jax.devices()[:1], quiet=True)
    after = {p: open(p, "rb").read() for p in glob.glob(os.path.join(run, "**"), recursive=True) if os.path.isfile(p)}
    assert after == before
