"""The Imagen-style text2image task on tiny configs: noise conditioning augmentation is applied in
training and fixed at sampling, the SR stage reads its low-res input and its level, `jaxgen generate`
runs the cascade (jaxgen.tasks.cascade.run_cascade) from a prompt to a file, `jaxgen eval` scores the
prompt suite by category, and the SR stage's eval scores the base's own images beside their
super-resolution by the same function. (The data-parallel step and the frozen encoder:
test_text2image_parallel.py.)"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.cli import main
from jaxgen.data import shapes, transforms
from jaxgen.eval import prompt_suite as prompt_suite_lib
from jaxgen.eval import scene
from jaxgen.eval.prompts import CATEGORIES, prompt_suite, prompt_support
from jaxgen.models import imagen
from jaxgen.models.diffusion import schedules
from jaxgen.models.diffusion.network import drop_condition
from jaxgen.tasks import cascade
from jaxgen.tasks.base import TaskError
from jaxgen.train import loop


@pytest.fixture(scope="module")
def runs(shared_dir, text2image_sr_run):
    """A 4-step base run and a 4-step SR run (tests/tasks/conftest.py's, shared with test_unclip.py),
    trained through the CLI."""
    def build(path):
        assert main(["train", "text2image_shapes:quick", "--workdir", str(path / "base"), "--quiet"]) == 0
    return os.path.join(shared_dir("text2image_base", build), "base"), text2image_sr_run


def _stages(*workdirs):
    """[(task, params)] of trained runs, as `jaxgen generate` loads them."""
    out = []
    for workdir in workdirs:
        _, task, state = loop.restore_for_eval(workdir)
        out.append((task, task.eval_params(state)))
    return out


def test_noise_augmentation_in_training_and_fixed_at_sampling():
    schedule = schedules.make("cosine", 100)
    low = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (256, 4, 4, 3)), jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(0), 256)
    noised, level = imagen.augment_low_res(schedule, low, keys, 0.5)
    assert level.min() == 0 and level.max() == imagen.noise_level_index(schedule, 0.5) == 50
    assert len(np.unique(level)) > 30  # drawn per example
    abar = np.asarray(schedule.alphas_cumprod)[np.asarray(level)][:, None, None, None]
    resid = (np.asarray(noised) - np.sqrt(abar) * np.asarray(low)) / np.sqrt(1 - abar)
    np.testing.assert_allclose(resid.std(), 1.0, atol=0.05)  # z_s = sqrt(abar) x + sqrt(1 - abar) eps
    fixed, flevel = imagen.fixed_low_res(schedule, low, jax.random.PRNGKey(1), 0.2)
    assert (np.asarray(flevel) == 20).all()
    # Dropping the text for guidance keeps the SR stage's input and its level.
    cond = {"context": jnp.ones((2, 3, 4)), "context_mask": jnp.ones((2, 3), bool), "pooled": jnp.ones((2, 4)),
            "low_res": fixed[:2], "noise_level": flevel[:2]}
    dropped = drop_condition(cond, jnp.array([True, False]), 0)
    assert not dropped["context_mask"][0].any() and dropped["context_mask"][1].all()
    np.testing.assert_array_equal(dropped["low_res"], fixed[:2])
    np.testing.assert_array_equal(dropped["noise_level"], flevel[:2])


def test_residual_sr_stage_diffuses_image_minus_bilinear_input(runs):
    """The quick SR stage diffuses (image - bilinear(low_res)) / 0.4: offset + scale * target is the
    image again, the offset is the up-sampled input, and the base stage diffuses the image itself."""
    base, sr = runs
    _, sr_task, _ = loop.restore_for_eval(sr)
    _, base_task, _ = loop.restore_for_eval(base)
    _, real = sr_task.test_prompts(4)
    images = jnp.asarray(real)
    target = sr_task.diffusion_target({"image": images})
    offset, scale = sr_task.residual_frame(sr_task.low_res(images))
    assert scale == 0.4 and offset.shape == target.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(offset + scale * target, sr_task.preprocess(images), atol=1e-6)
    up = transforms.resize(0.5 * (sr_task.low_res(images) + 1.0), 32)
    np.testing.assert_allclose(offset, 2.0 * up - 1.0, atol=1e-6)
    # The residual holds the edges, not whole shapes (on shapes/t2i its std is 0.13 against 0.33).
    assert scale * float(jnp.std(target)) < 0.5 * float(jnp.std(sr_task.preprocess(images)))
    assert base_task.residual_frame(None) == (0.0, 1.0)
    np.testing.assert_array_equal(base_task.diffusion_target({"image": images[:, ::2, ::2]}),
                                  base_task.preprocess(images[:, ::2, ::2]))


def test_sr_stage_reads_its_low_res_input_and_level(runs):
    _, sr = runs
    _, task, state = loop.restore_for_eval(sr)
    params = task.eval_params(state)
    texts, real = task.test_prompts(2)  # 2 images, 3 steps: the programs `jaxgen generate` compiles below
    real = real.astype(np.float32) / 255.0
    rng = jax.random.PRNGKey(0)
    a, _ = task.text_to_image(params, rng, texts, low_res=real, steps=3)
    b, _ = task.text_to_image(params, rng, texts, low_res=real, steps=3)
    c, _ = task.text_to_image(params, rng, texts, low_res=real[::-1], steps=3)
    d, _ = task.text_to_image(params, rng, texts, low_res=real, steps=3, noise_aug=0.6)
    assert a.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3  # another low-res image, another output
    assert np.abs(a - d).mean() > 1e-3  # the fixed sampling level reaches the network
    with pytest.raises(TaskError, match="needs one low-resolution image per prompt"):
        task.text_to_image(params, rng, texts, steps=3)
    with pytest.raises(TaskError, match="unknown sample setting 'prior_steps'"):
        task.text_to_image(params, rng, texts, low_res=real, prior_steps=3)
    # The network itself: the same noisy input at two augmentation levels gives two outputs.
    cond = task._dummy_condition(2)
    x = jnp.ones((2,) + task.image_shape)
    denoise = jax.jit(task.denoise)  # one compiled program, not the U-Net op by op
    out0 = denoise(params, x, jnp.array([5, 5]), cond)
    out1 = denoise(params, x, jnp.array([5, 5]), dict(cond, noise_level=jnp.array([0, 60])))
    np.testing.assert_array_equal(out0[0], out1[0])
    assert np.abs(np.asarray(out0[1] - out1[1])).mean() > 1e-4


def test_generate_command_runs_the_cascade(runs, tmp_path, capsys):
    base, sr = runs
    grid, raw = str(tmp_path / "grid.png"), str(tmp_path / "raw.npz")
    assert main(["generate", "--workdir", base, "--sr_workdir", sr, "--prompt", "two red circles and a blue square",
                 "--num", "2", "--out", grid, "--guidance", "3", "--steps", "3", "--seed", "0"]) == 0
    with open(grid, "rb") as f:  # a PNG grid, whatever SR stages ran
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert main(["generate", "--workdir", base, "--sr_workdir", sr, "--prompt", "two red circles and a blue square",
                 "--num", "2", "--out", raw, "--guidance", "3", "--steps", "3", "--seed", "1"]) == 0
    assert np.load(raw)["images"].shape == (2, 32, 32, 3)
    capsys.readouterr()
    # Unknown words and any Unicode work; an over-long prompt is truncated with a warning.
    assert main(["generate", "--workdir", base, "--prompt", "ein rotes Quadrat 🟥 über a blue zorblax",
                 "--num", "2", "--out", str(tmp_path / "u.npz"), "--steps", "3"]) == 0
    assert np.load(tmp_path / "u.npz")["images"].shape == (2, 16, 16, 3)
    long = " and ".join(["a red circle"] * 20)
    assert main(["generate", "--workdir", base, "--prompt", long, "--num", "2", "--out", str(tmp_path / "l.png"),
                 "--steps", "3"]) == 0
    assert "truncated" in capsys.readouterr().err
    # An empty prompt is one sentence and exit 2, with nothing written.
    for empty in ("", "   "):
        assert main(["generate", "--workdir", base, "--prompt", empty, "--out", str(tmp_path / "e.png")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("jaxgen: error: --prompt is empty") and err.count("\n") == 1
    assert not os.path.exists(tmp_path / "e.png")
    assert main(["generate", "--workdir", sr, "--prompt", "a red circle", "--out", str(tmp_path / "s.png")]) == 2
    assert "pass it as --sr_workdir" in capsys.readouterr().err
    # --method picks every stage's sampler: the base's DDPM chain, as run_cascade draws it; a sampler
    # jaxgen does not have is one sentence. (3 steps, as above: the DDIM chain is the one compiled for
    # the 2-image generates above.)
    ddpm = str(tmp_path / "ddpm.npz")
    assert main(["generate", "--workdir", base, "--prompt", "a red circle", "--num", "2", "--out", ddpm,
                 "--steps", "3", "--method", "ddpm", "--seed", "3"]) == 0
    images, _ = cascade.run_cascade(_stages(base), ["a red circle"] * 2, jax.random.PRNGKey(3), steps=3, method="ddpm")
    np.testing.assert_array_equal(np.load(ddpm)["images"], images[0])
    ddim, _ = cascade.run_cascade(_stages(base), ["a red circle"] * 2, jax.random.PRNGKey(3), steps=3)
    assert not np.array_equal(ddim[0], images[0])
    assert main(["generate", "--workdir", base, "--prompt", "a red circle", "--out", str(tmp_path / "m.png"),
                 "--method", "euler"]) == 2
    assert "--method must be one of ddpm, ddim, dpmpp_2m, dpmpp_2m_karras, edm_euler, edm_heun, not 'euler'." in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "m.png")


def test_generate_writes_the_cascade_functions_images(runs, tmp_path):
    """`jaxgen generate --seed S` writes run_cascade's images for PRNGKey(S): the function the SR
    stage's eval makes its images with (test below), so a prompt and a seed give the same images."""
    base, sr = runs
    prompt, out = "two red circles and a blue square", str(tmp_path / "x.npz")
    assert main(["generate", "--workdir", base, "--sr_workdir", sr, "--prompt", prompt, "--num", "2", "--out", out,
                 "--guidance", "3", "--steps", "3", "--seed", "4"]) == 0
    images, stats = cascade.run_cascade(_stages(base, sr), [prompt] * 2, jax.random.PRNGKey(4), guidance=3.0, steps=3)
    np.testing.assert_array_equal(np.load(out)["images"], images[1])
    assert [x.shape for x in images] == [(2, 16, 16, 3), (2, 32, 32, 3)]
    assert all({"x0_out_of_range", "compile_seconds", "sample_seconds"} <= set(s) for s in stats)
    # The base stage alone gives the cascade's base images (stage 0 has the same key either way).
    alone = str(tmp_path / "base.npz")
    assert main(["generate", "--workdir", base, "--prompt", prompt, "--num", "2", "--out", alone,
                 "--guidance", "3", "--steps", "3", "--seed", "4"]) == 0
    np.testing.assert_array_equal(np.load(alone)["images"], images[0])
    # Exported (jaxgen export) and read back with --pretrained / --sr_pretrained: the same images.
    for run, name in ((base, "base_model"), (sr, "sr_model")):
        assert main(["export", "--workdir", run, "--out", str(tmp_path / name), "--note", "test"]) == 0
    frozen = str(tmp_path / "frozen.npz")
    assert main(["generate", "--pretrained", str(tmp_path / "base_model"), "--sr_pretrained",
                 str(tmp_path / "sr_model"), "--prompt", prompt, "--num", "2", "--out", frozen,
                 "--guidance", "3", "--steps", "3", "--seed", "4"]) == 0
    np.testing.assert_array_equal(np.load(frozen)["images"], images[1])
    assert main(["generate", "--pretrained", str(tmp_path / "sr_model"), "--prompt", prompt,
                 "--out", str(tmp_path / "no.png")]) == 2
    assert not os.path.exists(tmp_path / "no.png")
    # Stages in the wrong order are one sentence.
    with pytest.raises(TaskError, match="^a cascade is a base stage followed by super-resolution stages, not sr\\.$"):
        cascade.run_cascade(_stages(sr), [prompt], jax.random.PRNGKey(0))


def test_sr_eval_scores_the_base_images_and_their_super_resolution(runs, monkeypatch):
    """`jaxgen eval` of the SR stage with eval.base_workdir: one run_cascade call per batch makes the
    base's images and this stage's output of those very images; both are scored on the same suite,
    beside pixel repetition and bilinear up-sampling of the same base images."""
    base, sr = runs
    calls = []  # (texts, rng, images) of every batch the scorer asked for
    scorer = prompt_suite_lib.prompt_suite_scores

    def spy(make_images, *args, **kwargs):
        def recorded(texts, rng):
            out = make_images(texts, rng)
            calls.append((list(texts), rng, out))
            return out
        return scorer(recorded, *args, **kwargs)
    monkeypatch.setattr(prompt_suite_lib, "prompt_suite_scores", spy)
    assert main(["eval", "--workdir", sr, f"--config.eval.base_workdir={base}"]) == 0
    with open(os.path.join(sr, "eval.json")) as f:
        results = json.load(f)
    # 16 images, one batch of eval.batch_size = 16, keyed PRNGKey(seed + 100).
    (texts, rng, made), = calls
    np.testing.assert_array_equal(rng, jax.random.PRNGKey(100))
    (base_task, base_params), (sr_task, sr_params) = stages = _stages(base, sr)
    images, _ = cascade.run_cascade(stages, texts, rng)
    np.testing.assert_array_equal(made["base"], images[0])
    np.testing.assert_array_equal(made["cascade"], images[1])
    # The base images scored are the ones the SR stage up-sampled.
    fed, _ = sr_task.text_to_image(sr_params, jax.random.fold_in(rng, 1), texts, low_res=made["base"])
    np.testing.assert_array_equal(made["cascade"], fed)
    np.testing.assert_array_equal(made["nearest"], scene.parse_ready(made["base"]))
    np.testing.assert_allclose(made["bilinear"], transforms.resize(jnp.asarray(made["base"]), 32), atol=1e-6)
    # The scores are those of these images.
    suite = prompt_suite(2, seed=0)
    captions = [t for style in sr_task.styles for t in sr_task.dataset.arrays[shapes.CAPTION_KEYS[style]]]
    expected = prompt_suite_lib.suite_accuracy(made["cascade"], suite, 2, prompt_support(suite, captions))
    assert {k: results[f"t2i_cascade_{k}"] for k in expected} == expected
    for category in CATEGORIES + ("all",):
        for name in ("base", "cascade", "nearest", "bilinear"):
            assert 0.0 <= results[f"t2i_{name}_{category}"] <= 1.0
        assert results[f"t2i_cascade_minus_base_{category}"] == (results[f"t2i_cascade_{category}"]
                                                                  - results[f"t2i_base_{category}"])
        # The parser reads the base images by pixel repetition: "nearest" is the base's score.
        assert results[f"t2i_nearest_{category}"] == results[f"t2i_base_{category}"]
    assert results["t2i_base_num_images"] == results["t2i_cascade_num_images"] == 16
    assert results["t2i_cascade_parser_exact_real"] == results["t2i_bilinear_parser_exact_real"]
    assert not any(k in results for k in ("t2i_all", "t2i_counting"))  # only the paired names
    assert {"sr_exact_scene", "bilinear_exact_scene", "real_exact_scene"} <= set(results)


def test_eval_scores_the_prompt_suite_by_category(runs):
    base, _ = runs
    assert main(["eval", "--workdir", base]) == 0
    with open(os.path.join(base, "eval.json")) as f:
        results = json.load(f)
    for category in ("counting", "colour_binding", "position", "combination", "all"):
        assert 0.0 <= results[f"t2i_{category}"] <= 1.0
    assert results["t2i_num_images"] == 16  # 4 categories x 2 prompts x 2 images
    assert any(k.endswith(("_held_out", "_rare", "_seen")) for k in results)
    assert 0.5 < results["t2i_ceiling_counting"] < 1.0  # real scenes of the suite's prompts at 16x16
    assert results["t2i_parser_exact_real"] > 0.7  # the ceiling at 16x16
    # One figure per prompt, saved with its prompt, which the report prints under the images.
    figure_prompts = prompt_suite(2, seed=0)
    for i, prompt in enumerate(figure_prompts):
        assert os.path.isfile(os.path.join(base, "figures", f"prompt_{i}.png"))
        with open(os.path.join(base, "figures", f"prompt_{i}.txt"), encoding="utf-8") as f:
            assert f.read() == f"{prompt.category}: {prompt.text}"
    assert main(["report", "--workdir", base]) == 0
    with open(os.path.join(base, "report.html"), encoding="utf-8") as f:
        page = f.read()
    assert all(f"<figcaption>{p.category}: {p.text}</figcaption>" in page for p in figure_prompts)


def test_sweeps_tune_on_one_prompt_seed_and_report_on_another(runs, tmp_path):
    """experiments/text2image_sweeps on the tiny cascade: the tuning table holds one base row per
    guidance and one cascade row per noise level, and the final table's settings are the best ones."""
    from experiments import text2image_sweeps

    base, sr = runs
    text2image_sweeps.main(["--base", base, "--sr", sr, "--out", str(tmp_path), "--guidances", "1", "3",
                            "--noise_levels", "0", "0.2", "--tune_prompts", "1", "--tune_images", "2",
                            "--final_prompts", "1", "--final_images", "2"])
    with open(tmp_path / "text2image_tuning.json") as f:
        tuning = json.load(f)["rows"]
    assert [(r["stage"], r["guidance"], r["noise_aug"]) for r in tuning][:2] == [("base", 1.0, "-"), ("base", 3.0, "-")]
    cascade_rows = [r for r in tuning if r["stage"] == "cascade"]
    assert [r["noise_aug"] for r in cascade_rows] == [0.0, 0.2]
    best_w = max(tuning[:2], key=lambda r: r["all"])["guidance"]
    assert all(r["guidance"] == best_w for r in cascade_rows)
    with open(tmp_path / "text2image_final.json") as f:
        final = json.load(f)
    assert final["meta"]["settings"] == {"guidance": best_w,
                                         "noise_aug": max(cascade_rows, key=lambda r: r["all"])["noise_aug"]}
    assert [r["images"] for r in final["rows"]] == ["base", "cascade", "nearest", "bilinear"]
    assert final["rows"][1]["ceiling_all"] == 1.0  # real scenes at 32x32 parse exactly
    assert "| base |" in (tmp_path / "text2image_final.md").read_text()
    assert "| base | 1.0 | - |" in (tmp_path / "text2image_tuning.md").read_text()  # settings unscaled, scores in %


def test_sweeps_tune_the_guidance_at_32x32_for_the_goals(runs, tmp_path):
    """--tune_at cascade scores every (guidance, noise level) pair through the paired cascade, and
    --objective goals picks the pair with the best lesser of seen counting and colour binding; the
    notes give the command as it was typed."""
    from experiments import text2image_sweeps

    base, sr = runs
    argv = ["--base", base, "--sr", sr, "--out", str(tmp_path), "--guidances", "1", "3", "--noise_levels", "0", "0.2",
            "--tune_prompts", "1", "--tune_images", "2", "--final_prompts", "1", "--final_images", "1",
            "--tune_at", "cascade", "--objective", "goals"]
    text2image_sweeps.main(argv)
    with open(tmp_path / "text2image_tuning.json") as f:
        tuning = json.load(f)
    rows = tuning["rows"]
    assert [(r["stage"], r["guidance"], r["noise_aug"]) for r in rows] == [
        ("cascade", 1.0, 0.0), ("cascade", 1.0, 0.2), ("cascade", 3.0, 0.0), ("cascade", 3.0, 0.2)]
    chosen = max(rows, key=lambda r: min(r["counting_seen"], r["colour_binding"]))
    with open(tmp_path / "text2image_final.json") as f:
        final = json.load(f)
    assert final["meta"]["settings"] == {"guidance": chosen["guidance"], "noise_aug": chosen["noise_aug"]}
    assert final["meta"]["note"].endswith("Command: python -m experiments.text2image_sweeps " + " ".join(argv))
    assert "chosen: the best 'goals'" in tuning["meta"]["note"]
    with pytest.raises(SystemExit) as error:  # the grid needs the second stage
        text2image_sweeps.main(["--base", base, "--tune_at", "cascade", "--out", str(tmp_path)])
    assert error.value.code == 2
