"""Fields added to an existing config section after runs were saved (data.classes, model.text_layers):
a saved config without the field is the config with its default, so old runs resume and evaluate."""
import json
import os

import jax
import pytest

from jaxgen import config as config_lib
from jaxgen.train import checkpoint, loop
from jaxgen.train.checkpoint import CheckpointError

ONE_DEVICE = jax.devices()[:1]


def _quick(*overrides):
    return config_lib.load("classifier_digits:quick", ["--config.train.steps=2", "--config.train.ckpt_every=2",
                                                       "--config.train.log_every=2", *overrides])


def test_a_saved_config_without_data_classes_equals_one_with_none():
    current = checkpoint._normalise(_quick().to_dict())
    saved = json.loads(json.dumps(current))
    del saved["data"]["classes"]
    assert checkpoint.first_difference(saved, current, checkpoint.IDENTITY_KEYS[1:]) is None
    narrowed = checkpoint._normalise(_quick("--config.data.classes=(0,1)").to_dict())
    assert checkpoint.first_difference(saved, narrowed, checkpoint.IDENTITY_KEYS[1:]) == (
        "data.classes", "null", "[0, 1]")


def test_a_saved_text2image_config_without_text_layers_is_one_without_the_transformer():
    load = lambda *o: checkpoint._normalise(config_lib.load("text2image_shapes:quick", list(o)).to_dict())  # noqa: E731
    current = load()
    saved = json.loads(json.dumps(current))
    del saved["model"]["text_layers"], saved["model"]["text_width"]  # a run (or pretrained model) saved before them
    assert checkpoint.first_difference(saved, current, checkpoint.IDENTITY_KEYS[1:]) is None
    assert checkpoint.first_difference(saved, load("--config.model.text_layers=2"), ("model",)) == (
        "model.text_layers", "0", "2")


def test_a_run_saved_before_data_classes_resumes_and_evaluates(tmp_path):
    workdir = str(tmp_path / "old")
    old = _quick()
    del old.data["classes"]  # a config written before the field existed
    loop.train(old, workdir, ONE_DEVICE, quiet=True)
    with open(os.path.join(workdir, "config.json")) as f:
        assert "classes" not in json.load(f)["data"]
    assert checkpoint.load_run_config(workdir).data.classes is None  # filled in, so overrides work
    _, task, state = loop.restore_for_eval(workdir)
    assert int(state.step) == 2 and task.dataset.classes is None

    # Narrowing the classes is another run: refused before anything is written ...
    with pytest.raises(CheckpointError, match=r"written with data.classes = null, but this run's data.classes is "
                                              r"\[0, 1\]"):
        loop.train(_quick("--config.data.classes=(0,1)", "--config.train.steps=4"), workdir, ONE_DEVICE, quiet=True)
    # ... while today's config, whose data.classes is None, resumes it.
    result = loop.train(_quick("--config.train.steps=4"), workdir, ONE_DEVICE, quiet=True)
    assert int(result.step) == 4
