"""Pretrained folders (jaxgen/train/pretrained.py): a trained run's sampling params exported and
loaded back give the same params and the same samples; damage and unknown names are one sentence."""
import json
import os

import jax
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen.train import loop, pretrained
from jaxgen.train.checkpoint import CheckpointError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("pretrained") / "run")
    loop.train(config_lib.load("diffusion_digits:quick"), workdir, quiet=True)
    return workdir


def test_export_then_load_gives_the_runs_sampling_params_and_samples(run, tmp_path):
    out = pretrained.export(run, str(tmp_path / "model"), meta={"command": "jaxgen train diffusion_digits:quick"})
    assert sorted(os.listdir(out)) == ["config.json", "meta.json", "params.msgpack"]
    with open(os.path.join(out, "meta.json")) as f:
        meta = json.load(f)
    assert meta["command"] == "jaxgen train diffusion_digits:quick" and meta["task"] == "diffusion"
    config, task, params = pretrained.load(out)
    _, run_task, state = loop.restore_for_eval(run)
    expected = run_task.eval_params(state)
    assert meta["step"] == int(state.step) and meta["num_params"] == sum(x.size for x in jax.tree.leaves(expected))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(expected), jax.device_get(params))
    rng = jax.random.PRNGKey(3)
    a = run_task.sample(expected, rng, 4)["images"]
    b = task.sample(params, rng, 4)["images"]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Exporting again over the folder replaces it whole; no temporary folder is left behind.
    pretrained.export(run, out)
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_damaged_or_unknown_pretrained_models_are_one_sentence(run, tmp_path):
    out = pretrained.export(run, str(tmp_path / "model"))
    with open(os.path.join(out, "params.msgpack"), "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        pretrained.load(out)
    with pytest.raises(CheckpointError, match="is not a pretrained model"):
        pretrained.load(str(tmp_path / "nothing"))
    with open(os.path.join(out, "meta.json"), "w") as f:
        f.write("{truncated")
    with pytest.raises(CheckpointError, match="unreadable meta.json"):
        pretrained.load(out)
    # The config is read as a run's config.json is: truncated is one sentence.
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write("{truncated")
    with pytest.raises(CheckpointError, match="cannot be read as JSON"):
        pretrained.load(out)


def test_the_shipped_text_to_image_cascade_loads_and_generates(tmp_path):
    """The committed Imagen-style base and SR stages (jaxgen/pretrained) load from a fresh clone
    and run as a cascade: prompt -> 16x16 -> 32x32."""
    from jaxgen.cli import main

    assert {"t2i_base_shapes16", "t2i_sr_shapes32"} <= set(pretrained.available())
    out = tmp_path / "g.npz"
    assert main(["generate", "--pretrained", "t2i_base_shapes16", "--sr_pretrained", "t2i_sr_shapes32",
                 "--prompt", "three green squares", "--num", "2", "--steps", "2", "--out", str(out)]) == 0
    images = np.load(out)["images"]
    assert images.shape == (2, 32, 32, 3) and 0.0 <= images.min() and images.max() <= 1.0
    assert "t2i_base_shapes16_30k" in pretrained.available()
    for name in pretrained.available():  # every shipped folder says where it came from
        with open(os.path.join(pretrained.resolve(name), "meta.json")) as f:
            meta = json.load(f)
        assert meta["step"] > 0 and meta["note"].startswith("jaxgen train")  # the command that trained it
        # The generative models sample with their EMA; CLIP (a scorer and encoder) keeps none.
        assert meta["ema"] if meta["task"] in ("text2image", "unclip") else meta["task"] == "clip"


def test_the_shipped_unclip_loads_its_shipped_clip_and_generates(tmp_path):
    """The committed unCLIP (prior + 16x16 decoder) names the committed CLIP, not a run folder, and
    feeds the committed SR stage: prompt -> CLIP text embedding -> prior -> decoder -> 32x32."""
    from jaxgen.cli import main

    config, task, _ = pretrained.load("unclip_shapes16")
    assert config.model.clip_workdir == "clip_shapes_t2i" and task.clip.step == 3000
    out = tmp_path / "g.npz"
    assert main(["generate", "--pretrained", "unclip_shapes16", "--sr_pretrained", "t2i_sr_shapes32",
                 "--prompt", "a red circle", "--num", "2", "--steps", "2", "--out", str(out)]) == 0
    images = np.load(out)["images"]
    assert images.shape == (2, 32, 32, 3) and 0.0 <= images.min() and images.max() <= 1.0
