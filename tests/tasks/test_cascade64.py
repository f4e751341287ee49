"""A 16 -> 32 -> 64 cascade: the second super-resolution stage (text2image_shapes_sr64:quick, on the
t2i scenes rendered at 64x64) chains after the 16 -> 32 one; `jaxgen generate` with two SR flags
writes run_cascade's 64x64 images, stage by stage the images of the shorter cascades; stages whose
sizes do not chain are one sentence; the 64x64 stage's evaluation parses 64x64 images."""
import os

import jax
import numpy as np
import pytest

from jaxgen.cli import main
from jaxgen.data import shapes
from jaxgen.eval import scene
from jaxgen.tasks import cascade, runs


@pytest.fixture(scope="module")
def stages(shared_dir, text2image_sr_run):
    """(base 16x16, SR 16 -> 32, SR 32 -> 64) run folders, 4 steps each, trained through the CLI; the
    first two are test_text2image.py's."""
    def base(path):
        assert main(["train", "text2image_shapes:quick", "--workdir", str(path / "base"), "--quiet"]) == 0

    def sr64(path):
        assert main(["train", "text2image_shapes_sr64:quick", "--workdir", str(path / "run"), "--quiet"]) == 0
    return (os.path.join(shared_dir("text2image_base", base), "base"), text2image_sr_run,
            os.path.join(shared_dir("text2image_sr64", sr64), "run"))


def _generate(tmp_path, name, *flags):
    out = str(tmp_path / f"{name}.npz")
    # 2 images in 3 steps, as tests/tasks/test_text2image.py's generate tests: the base's and the
    # 16 -> 32 stage's chains are the programs compiled there (the persistent compilation cache).
    assert main(["generate", *flags, "--prompt", "two red circles and a blue square", "--num", "2",
                 "--steps", "3", "--seed", "7", "--out", out]) == 0
    return np.load(out)["images"]


def test_generate_runs_a_three_stage_cascade(stages, tmp_path, capsys):
    base, sr32, sr64 = stages
    full = _generate(tmp_path, "full", "--workdir", base, "--sr_workdir", sr32, "--sr_workdir", sr64)
    assert full.shape == (2, 64, 64, 3)
    loaded = [(task, task.eval_params(state)) for _, task, state in map(runs.restore_for_eval, stages)]
    images, _ = cascade.run_cascade(loaded, ["two red circles and a blue square"] * 2, jax.random.PRNGKey(7), steps=3)
    assert [x.shape[1] for x in images] == [16, 32, 64]
    np.testing.assert_array_equal(full, images[2])
    # Stage i's key is fold_in(key, i) whatever follows: the two-stage cascade's output is stage 2's input.
    np.testing.assert_array_equal(_generate(tmp_path, "two", "--workdir", base, "--sr_workdir", sr32), images[1])
    # Stages chain in the order given; 32 -> 64 right after a 16x16 base is one sentence, nothing written.
    capsys.readouterr()
    out = str(tmp_path / "bad.png")
    assert main(["generate", "--workdir", base, "--sr_workdir", sr64, "--sr_workdir", sr32, "--prompt", "a red circle",
                 "--out", out]) == 2
    err = capsys.readouterr().err
    assert "takes 32x32x3 images cannot follow a stage that makes 16x16x3" in err and err.count("\n") == 1
    assert not os.path.exists(out)


def test_the_64x64_stage_is_scored_on_real_scenes_the_parser_reads(stages):
    """Its evaluation up-samples real 32x32 test scenes and parses 64x64 images (box-averaged to
    32x32): the real scenes parse exactly, the untrained stage's outputs do not."""
    _, task, state = runs.restore_for_eval(stages[2])
    results = task.super_resolution_scores(task.eval_params(state))
    assert results["real_exact_scene"] == 1.0
    assert results["sr_exact_scene"] < 1.0
    real = shapes.render_scenes(1, range(64), 2, size=64)
    parsed = scene.to_records(scene.parse_scenes(scene.parse_ready(real["image"])))
    assert np.all(scene.exact_match(parsed, real))
