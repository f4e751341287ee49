"""The Imagen-style text2image task on tiny configs: noise conditioning augmentation is applied in
training and fixed at sampling, the SR stage reads its low-res input and its level, `jaxgen generate`
runs the cascade from a prompt to a file, and `jaxgen eval` scores the prompt suite by category.
(The data-parallel step and the frozen encoder: test_text2image_parallel.py.)"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.cli import main
from jaxgen.eval.prompts import prompt_suite
from jaxgen.models import imagen
from jaxgen.models.diffusion import schedules
from jaxgen.models.diffusion.network import drop_condition
from jaxgen.train import loop


@pytest.fixture(scope="module")
def runs(shared_dir):
    """A 4-step base run and a 4-step SR run, trained through the CLI."""
    def build(path):
        assert main(["train", "text2image_shapes:quick", "--workdir", str(path / "base"), "--quiet"]) == 0
        assert main(["train", "text2image_shapes_sr:quick", "--workdir", str(path / "sr"), "--quiet"]) == 0
    root = shared_dir("text2image", build)
    return os.path.join(root, "base"), os.path.join(root, "sr")


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
    assert os.path.getsize(grid) > 0
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


def test_eval_scores_the_prompt_suite_by_category(runs):
    base, _ = runs
    assert main(["eval", "--workdir", base]) == 0
    with open(os.path.join(base, "eval.json")) as f:
        results = json.load(f)
    for category in ("counting", "colour_binding", "position", "combination", "all"):
        assert 0.0 <= results[f"t2i_{category}"] <= 1.0
    assert results["t2i_num_images"] == 16  # 4 categories x 2 prompts x 2 images
    assert any(k.endswith("_held_out") or k.endswith("_seen") for k in results)
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
