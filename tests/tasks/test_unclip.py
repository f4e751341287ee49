"""The unclip task over a tiny clip run (tests/conftest.py's clip_run): the joint prior + decoder step
on 8 devices equals 1 device and accumulates micro-batches exactly, its bf16 step keeps a float32 state, CLIP
stays frozen, prior samples are unit vectors, text_to_image (the contract of jaxgen.tasks.cascade)
and variations follow their prompt or image, their seed and both guidance scales, a tiny prior
learns to point at the caption's own image embedding, `jaxgen generate` runs an unclip run alone and as the base of a
cascade with a text2image super-resolution stage, `jaxgen eval` scores the shared prompt suite, and
`jaxgen export` ships a run pointing at an exported copy of its CLIP."""
import hashlib
import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization
from jax.sharding import PartitionSpec as P

from jaxgen import config as config_lib
from jaxgen.cli import main
from jaxgen.eval.prompts import CATEGORIES
from jaxgen.nn.text import TokenizerError
from jaxgen.tasks import cascade, runs
from jaxgen.tasks.base import TaskError
from jaxgen.tasks.text2image import Text2ImageTask
from jaxgen.train import accumulate, loop, parallel


NO_ATTENTION = "--config.model.decoder.attention_levels=()"  # as tests/conftest.py's unclip_run


@pytest.fixture(scope="module")
def sr_run(text2image_sr_run):
    """A 4-step text2image super-resolution stage (16 -> 32), the stage an unclip base can feed."""
    return text2image_sr_run


def _config(clip_run, *overrides):
    return config_lib.load("unclip_shapes:quick", [f"--config.model.clip_workdir={clip_run}", *overrides])


@pytest.fixture(scope="module")
def one_device_steps(clip_run, run_steps):
    """(host state, last metrics) of 2 steps of the decoder without attention on 1 device: the
    reference of the 8-device and the accumulation tests and the state the frozen-CLIP test reads,
    run once (the steps are deterministic, so each test would get the very same arrays)."""
    return run_steps(_config(clip_run, NO_ATTENTION), jax.devices()[:1], "shard_map")


def test_eight_devices_equal_one_device(clip_run, one_device_steps, run_steps):
    """Both losses are means of per-example terms with per-example keys: 8 x 2 rows step like 1 x 16.
    (A decoder without attention levels: the image embedding still conditions it through the time
    embedding, every random draw is still made, and the programs compile twice as fast.)"""
    one, m1 = one_device_steps
    eight, m8 = run_steps(_config(clip_run, NO_ATTENTION), jax.devices(), "shard_map")
    assert set(m1) >= {"loss", "prior_loss", "decoder_loss", "prior_grad_norm", "decoder_grad_norm"}
    for k in m1:
        np.testing.assert_allclose(m1[k], m8[k], rtol=2e-5, atol=1e-6, err_msg=k)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(one), jax.tree.leaves(eight)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6, err_msg=jax.tree_util.keystr(path))


def test_clip_is_frozen_and_feeds_the_batch(clip_run, one_device_steps):
    config = _config(clip_run, NO_ATTENTION)
    state, _ = one_device_steps  # two steps trained
    # CLIP is not in the train state: only the prior and the decoder are trained...
    assert sorted(state.params) == ["decoder", "prior"]
    # ...and the CLIP the task embeds with is still the checkpoint's, bit for bit.
    task = loop.make_task(config)
    saved = runs.clip_scorer(clip_run).params
    for a, b in zip(jax.tree.leaves(task.clip.params), jax.tree.leaves(saved)):
        np.testing.assert_array_equal(a, b)
    # The batch's embeddings are CLIP's of the batch's images and of one of each row's captions.
    batch = task.host_batch(3)
    np.testing.assert_allclose(batch["z_image"], task.clip.images(batch["image"]), atol=1e-5)
    rows = task.dataset.batch(config.seed, 3, config.train.batch_size)
    options = np.stack([task.clip.texts([str(t) for t in rows[k]]) for k in
                        ("caption", "caption_count", "caption_colour", "caption_position")], axis=1)  # [B, 4, E]
    nearest = np.abs(options - batch["z_text"][:, None]).max(-1).min(-1)
    assert nearest.max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(batch["z_text"], axis=1), 1.0, rtol=1e-5)


def test_accumulated_step_equals_the_whole_batch_step(clip_run, one_device_steps, run_steps, monkeypatch):
    """train.grad_accum = 4: the prior's and the decoder's gradients summed over 4 micro-batches of 4
    give the 16-example step (both losses are means of per-example terms drawn from per-example
    keys). Tolerances of the 8-devices test above: summing the micro-batch means reorders the
    float32 additions as the all-reduce does. The whole-batch run is that test's 1-device one."""
    whole, m_whole = one_device_steps
    calls = []
    original = accumulate.mean_gradients

    def recording(grad_fn, params, inputs, num_micro):  # traced once: (rows on the device, micro-batches)
        calls.append((jax.tree.leaves(inputs)[0].shape[0], num_micro))
        return original(grad_fn, params, inputs, num_micro)

    monkeypatch.setattr(accumulate, "mean_gradients", recording)
    accumulated, m_accumulated = run_steps(_config(clip_run, NO_ATTENTION, "--config.train.grad_accum=4"),
                                           jax.devices()[:1], "shard_map")
    assert calls == [(16, 4)]
    assert set(m_whole) == set(m_accumulated)
    for k in m_whole:
        np.testing.assert_allclose(m_accumulated[k], m_whole[k], rtol=2e-5, atol=1e-6, err_msg=k)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(whole), jax.tree.leaves(accumulated)):
        np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-6, err_msg=jax.tree_util.keystr(path))


def test_bfloat16_reaches_every_convolution_and_keeps_the_state_float32(clip_run):
    """As tests/train/test_precision.py checks the other families: traced only, nothing compiled.
    Every convolution of the bf16 step (the decoder's, forward and backward) runs on bfloat16, and
    the state it returns (both models' params and optimizer moments) stays float32."""
    config = _config(clip_run, NO_ATTENTION, "--config.train.compute_dtype=bfloat16")
    task = loop.make_task(config)
    state = jax.eval_shape(task.init, jax.random.PRNGKey(config.seed))
    step = jax.shard_map(task.train_step, mesh=parallel.make_mesh(jax.devices()[:1]),
                         in_specs=(P(), P(parallel.AXIS)), out_specs=(P(), P()), check_vma=False)
    jaxpr, (new_state, _) = jax.make_jaxpr(step, return_shape=True)(state, task.host_batch(0))
    convs = re.findall(r"(\w+)\[[^\]]*\] = conv_general_dilated", str(jaxpr))
    assert convs and set(convs) == {"bf16"}, convs
    floats = {str(x.dtype) for x in jax.tree.leaves(new_state) if jnp.issubdtype(x.dtype, jnp.floating)}
    assert floats == {"float32"}, floats


def _live(params):
    """`params` with every all-zero leaf redrawn small and random. Init zeroes the last layer of each
    residual branch (the prior's down_0 and down_1 included) and every bias, so the untrained prior
    ignores its text embedding and the prompt could never reach the images: with these leaves drawn,
    every path from the prompt (and from each guidance scale) to the pixels is live."""
    leaves, tree = jax.tree.flatten(params)
    rng = np.random.default_rng(0)
    leaves = [x if np.any(x) else np.float32(0.05) * rng.standard_normal(x.shape, np.float32) for x in
              map(np.asarray, leaves)]
    return jax.tree.unflatten(tree, leaves)


def _rows_differ(a, b):
    """Per row of two image batches: does any pixel differ by more than round-off?"""
    return [bool(np.abs(x - y).max() > 1e-4) for x, y in zip(a, b)]


def test_samples_follow_the_prompt_the_seed_and_both_guidance_scales(clip_run):
    """text -> CLIP text embedding -> prior (guidance prior_guidance) -> image embedding -> decoder
    (guidance `guidance`) -> images. On random (untrained) params every link must carry: the same
    seed gives the same images; a row whose prompt changes changes, while the other rows (same row
    noise) stay as they were; either guidance scale changes the images; variations follow their
    input image the same way."""
    config = _config(clip_run)
    task = loop.make_task(config)
    params = _live(loop.init_state(task, config).params)
    # Four rows everywhere: every call below reuses the two compiled chains (prior and decoder).
    z_text = task.clip.texts(["two red circles", "a blue square", "a green triangle", "four white squares"])
    z = task.sample_prior(params, z_text, jax.random.PRNGKey(0), prior_guidance=2.0)
    assert z.shape == (4, 32)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    prompts = ["two red circles", "two red circles", "ünknown wörds ☃", "ünknown wörds ☃"]
    images, stats = task.text_to_image(params, jax.random.PRNGKey(1), prompts, guidance=2.0, steps=5)
    assert images.shape == (4, 16, 16, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(stats) == {"x0_out_of_range", "compile_seconds", "sample_seconds"}
    assert 0.0 <= stats["x0_out_of_range"] <= 1.0 and stats["sample_seconds"] > 0.0
    again, stats = task.text_to_image(params, jax.random.PRNGKey(1), prompts, guidance=2.0, steps=5)
    np.testing.assert_array_equal(images, again)  # a seed gives the same images...
    assert stats["compile_seconds"] < 0.01  # ...from the chains compiled by the first call
    assert _rows_differ(images[0::2], images[1::2]) == [True, True]  # each row has its own noise
    # Rows 1 and 3 swap prompts; rows 0 and 2 keep theirs, and their images.
    swapped = [prompts[0], prompts[3], prompts[2], prompts[1]]
    other = task.text_to_image(params, jax.random.PRNGKey(1), swapped, guidance=2.0, steps=5)[0]
    assert _rows_differ(images, other) == [False, True, False, True]
    np.testing.assert_allclose(other[0::2], images[0::2], atol=1e-5)
    # The prior's guidance (default 1 in the config) and the decoder's both reach every image.
    for setting in ({"guidance": 2.0, "prior_guidance": 4.0}, {"guidance": 0.0}):
        guided = task.text_to_image(params, jax.random.PRNGKey(1), prompts, steps=5, **setting)[0]
        assert _rows_differ(images, guided) == [True] * 4, setting
    inputs = task.dataset.arrays["image"][:3]
    variations = task.variations(params, inputs[:2], jax.random.PRNGKey(2), num=2)
    assert variations.shape == (4, 16, 16, 3) and 0.0 <= variations.min() and variations.max() <= 1.0
    assert _rows_differ(variations[0::2], variations[1::2]) == [True, True]  # two draws per image
    of_0_and_2 = task.variations(params, inputs[[0, 2]], jax.random.PRNGKey(2), num=2)  # image-major rows
    assert _rows_differ(variations, of_0_and_2) == [False, False, True, True]
    with pytest.raises(TokenizerError, match="empty text"):
        task.text_to_image(params, jax.random.PRNGKey(0), ["  "])
    with pytest.raises(TaskError, match="^an unclip run is a base stage .* no low-resolution input.$"):
        task.text_to_image(params, jax.random.PRNGKey(0), prompts, low_res=images)
    with pytest.raises(TaskError, match="unknown sample setting 'noise_aug'"):
        task.text_to_image(params, jax.random.PRNGKey(0), prompts, noise_aug=0.1)


def test_prior_points_at_the_captions_own_image_embedding(clip_run, tmp_path):
    """300 steps of the prior alone (train.parts) on full captions. For the 64 held-out test scenes,
    the cosine between a prior sample for the caption and the CLIP embedding of that scene's image
    beats the cosine to another test scene's image embedding by 0.18 on average (measured at w = 1:
    0.86 against 0.68; 0.03 before training); the threshold, 0.09, is half of that, well above the
    untrained gap. On one device: a step of this tiny MLP costs far less there than on the 8 fake CPU
    devices, whose all-reduce dominates it (measured: the training took 6.6 s instead of 17.6 s, and
    gave the same gap, 0.176); that 8 devices step as 1 is test_eight_devices_equal_one_device's."""
    config = _config(clip_run, "--config.train.parts=('prior',)", "--config.train.steps=300",
                     "--config.train.ckpt_every=300", "--config.train.log_every=100", "--config.train.batch_size=32",
                     "--config.prior_optim.lr=0.001", "--config.data.caption_styles=('full',)")
    result = loop.train(config, str(tmp_path), devices=jax.devices()[:1], quiet=True)
    task = loop.make_task(config)
    # The decoder was not trained at all: train.parts gives it no update.
    init = loop.init_state(task, config).params
    for a, b in zip(jax.tree.leaves(init["decoder"]), jax.tree.leaves(result.state.params["decoder"])):
        np.testing.assert_array_equal(a, b)
    test = task.eval_dataset().arrays
    z_true = task.clip.images(test["image"])
    z = task.sample_prior(result.state.params, task.clip.texts([str(t) for t in test["caption"]]),
                          jax.random.PRNGKey(0), prior_guidance=1.0)
    own = np.sum(z * z_true, axis=1)
    other = np.sum(z * np.roll(z_true, 1, axis=0), axis=1)
    assert own.mean() - other.mean() > 0.09, (own.mean(), other.mean())


def test_bad_config_values_are_one_sentence(clip_run, tmp_path):
    with pytest.raises(TaskError, match="model.clip_workdir must name a trained clip run"):
        loop.make_task(config_lib.load("unclip_shapes:quick", ["--config.model.clip_workdir="]))
    with pytest.raises(TaskError, match="holds no trained clip run"):
        loop.make_task(_config(str(tmp_path)))
    for override, message in [("--config.train.parts=('prior','vae')", "train.parts must be a non-empty list"),
                              ("--config.sample.prior_steps=500", "sample.prior_steps must be in 1..100"),
                              ("--config.model.prior.parameterization=score", "model.prior.parameterization must be"),
                              ("--config.data.image_size=9", "data.image_size=9 must be divisible"),
                              ("--config.eval.variation_sources=1", "eval.variation_sources must be 0"),
                              ("--config.eval.variations_per_source=-1", "eval.variations_per_source an integer")]:
        with pytest.raises(TaskError, match=re.escape(message)):
            loop.make_task(_config(clip_run, override))
    # A run remembers the CLIP step it was trained on and refuses a CLIP trained further.
    task = loop.make_task(_config(clip_run))
    task.save_assets(str(tmp_path))
    task.load_assets(str(tmp_path))
    with open(tmp_path / "clip.json") as f:
        saved = json.load(f)
    assert saved == {"clip_workdir": os.path.abspath(clip_run), "step": 40}
    (tmp_path / "clip.json").write_text(json.dumps({**saved, "step": 10}))
    with pytest.raises(TaskError, match="retrain"):
        task.load_assets(str(tmp_path))


def test_a_decoder_that_reads_captions_gets_the_drawn_captions_tokens_and_they_reach_the_images(clip_run):
    """unclip_shapes:captions (DALL-E 2's decoder): each row's caption tokens are those of the very
    caption whose CLIP embedding is its z_text; with z_i fixed, the caption alone changes the decoded
    image; no caption (texts=None) is independent of the caption projection; a caption that is
    never dropped (text_drop_prob = 0) gives that projection a gradient."""
    config = config_lib.load("unclip_shapes:quick_captions", [f"--config.model.clip_workdir={clip_run}", NO_ATTENTION,
                                                              "--config.model.decoder.text_drop_prob=0.0"])
    task = loop.make_task(config)
    batch = task.host_batch(3)
    assert batch["context"].shape[:2] == batch["context_mask"].shape and batch["context_mask"].any(1).all()
    rows = task.dataset.batch(config.seed, 3, config.train.batch_size)
    styles = ("caption", "caption_position")  # the config's caption styles, full and position
    for i in range(len(batch["z_text"])):
        drawn = [str(rows[k][i]) for k in styles if np.allclose(task.clip.texts([str(rows[k][i])])[0],
                                                                 batch["z_text"][i], atol=1e-5)]
        assert drawn, i
        np.testing.assert_array_equal(batch["context"][i], task.text(drawn[:1])["context"][0])
    params = _live(loop.init_state(task, config).params)
    assert "caption_proj" in params["decoder"]
    z = np.repeat(task.clip.images(task.dataset.arrays["image"][:1]), 2, axis=0)  # one z_i, two rows
    key = jax.random.PRNGKey(0)
    texts = ["two red circles", "a blue square"]
    images = task.decode(params, z, key, texts=texts, steps=3)
    same_noise = task.decode(params, z, key, texts=texts[:1] * 2, steps=3)
    assert _rows_differ(images, same_noise) == [False, True]  # the caption alone changed row 1
    other_proj = jax.tree.map(lambda x: x, params)
    other_proj["decoder"]["caption_proj"] = jax.tree.map(lambda x: x + 1.0, params["decoder"]["caption_proj"])
    np.testing.assert_array_equal(task.decode(params, z, key, steps=3), task.decode(other_proj, z, key, steps=3))
    assert _rows_differ(images, task.decode(other_proj, z, key, texts=texts, steps=3)) == [True, True]
    inputs = {k: jnp.asarray(batch[k]) for k in task.batch_keys}
    inputs["key"] = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(1), i))(jnp.arange(len(batch["image"])))
    # One program, not hundreds of eager ops; it returns the caption projection's gradients alone, so
    # XLA drops every other weight gradient (the prior's whole backward pass included) from what it
    # compiles, while those it keeps are the training step's own (task.loss_and_grads, unchanged).
    caption_grads = jax.jit(lambda p, x: task.loss_and_grads(p, x)[0]["decoder"]["caption_proj"])(params, inputs)
    assert all(np.abs(np.asarray(g)).max() > 0 for g in jax.tree.leaves(caption_grads))


def test_generate_with_an_unclip_run_alone_and_before_a_super_resolution_stage(unclip_run, sr_run, tmp_path,
                                                                                capsys, monkeypatch):
    prompt = "two red circles and a blue square"
    args = ["--prompt", prompt, "--num", "2", "--steps", "3", "--guidance", "2", "--seed", "5"]
    assert main(["generate", "--workdir", unclip_run, "--out", str(tmp_path / "u.npz"), *args]) == 0
    assert main(["generate", "--workdir", unclip_run, "--out", str(tmp_path / "u.png"), *args]) == 0
    assert os.path.getsize(tmp_path / "u.png") > 0
    # The images written are run_cascade's for the same stage, prompts and PRNGKey(seed).
    _, task, state = loop.restore_for_eval(unclip_run)
    stages = [(task, task.eval_params(state))]
    images, _ = cascade.run_cascade(stages, [prompt] * 2, jax.random.PRNGKey(5), steps=3, guidance=2.0)
    written = np.load(tmp_path / "u.npz")["images"]
    assert written.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(written, images[0])
    # DALL-E 2 is itself a cascade: a text2image SR stage (16 -> 32) takes the unclip run's 16x16 images,
    # and the base images of the cascade are the unclip run's own.
    assert main(["generate", "--workdir", unclip_run, "--sr_workdir", sr_run, "--out", str(tmp_path / "c.npz"),
                 *args]) == 0
    _, sr, sr_state = loop.restore_for_eval(sr_run)
    stages.append((sr, sr.eval_params(sr_state)))
    both, _ = cascade.run_cascade(stages, [prompt] * 2, jax.random.PRNGKey(5), steps=3, guidance=2.0)
    np.testing.assert_array_equal(both[0], written)
    np.testing.assert_array_equal(np.load(tmp_path / "c.npz")["images"], both[1])
    assert both[1].shape == (2, 32, 32, 3)
    capsys.readouterr()
    # The wrong flag, and a stage that cannot take the base's images: one sentence, exit 2, no file.
    assert main(["generate", "--workdir", sr_run, "--sr_workdir", unclip_run, "--prompt", prompt,
                 "--out", str(tmp_path / "w.png")]) == 2
    assert "pass it as --sr_workdir" in capsys.readouterr().err
    monkeypatch.setattr(Text2ImageTask, "low_res_shape", (8, 8, 3))
    assert main(["generate", "--workdir", unclip_run, "--sr_workdir", sr_run, "--out", str(tmp_path / "m.png"),
                 *args]) == 2
    err = capsys.readouterr().err
    assert err == ("jaxgen: error: a super-resolution stage that takes 8x8x3 images cannot follow a stage that "
                   "makes 16x16x3 ones.\n")
    assert not (tmp_path / "w.png").exists() and not (tmp_path / "m.png").exists()


def test_eval_scores_the_shared_prompt_suite(unclip_run, clip_run):
    """The same suite, settings and metric names as text2image's eval (jaxgen.eval.prompt_suite)."""
    assert main(["eval", "--workdir", unclip_run, f"--config.eval.clip_workdir={clip_run}"]) == 0
    with open(os.path.join(unclip_run, "eval.json")) as f:
        results = json.load(f)
    for category in CATEGORIES + ("all",):
        assert 0.0 <= results[f"t2i_{category}"] <= 1.0
    assert any(k.endswith(("_held_out", "_rare", "_seen")) for k in results)
    assert 0.5 < results["t2i_ceiling_counting"] < 1.0  # real scenes of the suite's prompts at 16x16
    assert results["t2i_num_images"] == 8  # 4 categories x 2 prompts x 1 image
    assert 0.7 < results["t2i_parser_exact_real"] < 1.0  # the ceiling at 16x16
    assert not any(k.startswith("scene_accuracy") for k in results)
    for key in ("t2i_clip_score", "t2i_clip_score_mismatched"):  # the suite's, by eval.clip_workdir
        assert 0.0 <= results[key] <= 100.0
    assert {"prior_cosine_true", "clip_score", "clip_score_real"} <= set(results)
    # Variations of the first 4 test scenes, 2 each, parsed at 16x16 beside the real scenes' ceiling.
    assert results["variation_num_images"] == 8
    for metric in ("same_objects", "same_count", "exact_scene"):
        for suffix in ("", "_other", "_ceiling"):
            assert 0.0 <= results[f"variation_{metric}{suffix}"] <= 1.0
        assert results[f"variation_{metric}"] <= results["variation_same_count"]
    assert results["variation_same_count_ceiling"] > 0.7


def test_a_run_saved_before_the_variation_fields_gets_them_and_takes_their_overrides(unclip_run, tmp_path):
    old = str(tmp_path / "old")
    shutil.copytree(unclip_run, old)
    with open(os.path.join(old, "config.json")) as f:
        saved = json.load(f)
    for key in ("variation_sources", "variations_per_source"):
        del saved["eval"][key]
    with open(os.path.join(old, "config.json"), "w") as f:
        json.dump(saved, f)
    config = runs.restore_for_eval(old).config
    assert (config.eval.variation_sources, config.eval.variations_per_source) == (64, 4)
    config = runs.restore_for_eval(old, overrides=["--config.eval.variation_sources=0"]).config
    assert config.eval.variation_sources == 0


def test_sweeps_score_an_unclip_base_and_its_cascade_as_text2image_does(unclip_run, sr_run, tmp_path):
    """experiments/text2image_sweeps takes an unclip run as the base (the side-by-side of the two
    systems): its prompt scores are cascade.prompt_scores of its own text_to_image, and the final
    table holds the unclip images and their super-resolution by the text2image SR stage."""
    from experiments import text2image_sweeps

    text2image_sweeps.main(["--base", unclip_run, "--sr", sr_run, "--out", str(tmp_path), "--guidances", "1", "2",
                            "--noise_levels", "0", "--tune_prompts", "1", "--tune_images", "1",
                            "--final_prompts", "1", "--final_images", "1"])
    with open(tmp_path / "text2image_tuning.json") as f:
        tuning = json.load(f)["rows"]
    assert [r["stage"] for r in tuning] == ["base", "base", "cascade"]
    assert [r["guidance"] for r in tuning[:2]] == [1.0, 2.0]
    with open(tmp_path / "text2image_final.json") as f:
        final = json.load(f)
    assert [r["images"] for r in final["rows"]] == ["base", "cascade", "nearest", "bilinear"]
    assert final["rows"][0]["ceiling_all"] < 1.0 and final["rows"][1]["ceiling_all"] == 1.0  # 16x16, then 32x32
    # The tuning rows are the unclip task's own prompt scores at that guidance and prompt seed.
    _, task, state = loop.restore_for_eval(unclip_run)
    params = task.eval_params(state)
    task.config.eval.update(prompt_seed=1, prompts_per_category=1, images_per_prompt=1)
    task.config.sample.update(guidance=2.0)
    scores = task.prompt_scores(lambda texts, rng: task.text_to_image(params, rng, texts)[0])
    assert tuning[1]["all"] == scores["t2i_all"] and tuning[1]["counting"] == scores["t2i_counting"]


def test_an_exported_unclip_run_points_at_an_exported_clip_and_generates_the_runs_images(unclip_run, clip_run,
                                                                                          tmp_path, capsys):
    """`jaxgen export --config.model.clip_workdir=<exported clip>` ships unCLIP without any run folder:
    the same images as the run for the same prompt and seed. Pointing at a CLIP with other params, or
    overriding anything but the frozen CLIP, is one sentence and writes nothing."""
    clip_model, model = str(tmp_path / "clip"), str(tmp_path / "unclip")
    assert main(["export", "--workdir", clip_run, "--out", clip_model]) == 0
    assert os.path.isfile(os.path.join(clip_model, "tokenizer.json"))  # the run's vocabulary travels
    assert main(["export", "--workdir", unclip_run, "--out", model, f"--config.model.clip_workdir={clip_model}"]) == 0
    with open(os.path.join(model, "config.json")) as f:
        assert json.load(f)["model"]["clip_workdir"] == clip_model
    images = {}
    for source in (["--workdir", unclip_run], ["--pretrained", model]):
        out = tmp_path / f"{source[0][2:]}.npz"
        # The sampling settings of the generate test above: the same compiled chains serve both tests.
        assert main(["generate", *source, "--prompt", "two red circles", "--num", "2", "--steps", "3",
                     "--guidance", "2", "--seed", "5", "--out", str(out)]) == 0
        images[source[0]] = np.load(out)["images"]
    np.testing.assert_array_equal(images["--workdir"], images["--pretrained"])

    # A CLIP with other params (the exported one, one weight changed and its sha256 renewed).
    other = str(tmp_path / "other_clip")
    shutil.copytree(clip_model, other)
    config, _, params = runs.load_pretrained(other)
    leaf_path = jax.tree_util.tree_leaves_with_path(params)[0][0]
    params = jax.tree_util.tree_map_with_path(lambda p, x: x + 1.0 if p == leaf_path else x, params)
    blob = serialization.to_bytes(jax.device_get(params))
    with open(os.path.join(other, "params.msgpack"), "wb") as f:
        f.write(blob)
    with open(os.path.join(other, "meta.json")) as f:
        meta = json.load(f)
    with open(os.path.join(other, "meta.json"), "w") as f:
        json.dump({**meta, "sha256": hashlib.sha256(blob).hexdigest()}, f)
    for override, why in ((f"--config.model.clip_workdir={other}", "holds other params than the model this run"),
                          ("--config.model.prior.width=8", "changes only the fields naming a frozen model")):
        capsys.readouterr()
        assert main(["export", "--workdir", unclip_run, "--out", str(tmp_path / "bad"), override]) == 2
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err
        assert not os.path.exists(tmp_path / "bad") and not [n for n in os.listdir(tmp_path) if n.startswith(".")]
