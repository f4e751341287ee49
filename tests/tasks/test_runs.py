"""Loading a trained run (jaxgen.tasks.runs): the run unpacks as (config, task, state), the loop's
names are the same functions, a model used frozen loads from a run folder or a pretrained name
(trained_model), and a source of another task, or none, is one sentence before anything is restored."""
import json
import os
import re

import jax
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen.tasks import runs
from jaxgen.tasks.base import TaskError
from jaxgen.train import loop, pretrained
from jaxgen.train.checkpoint import CheckpointError


def test_the_loop_loads_runs_through_the_one_module():
    assert (loop.make_task, loop.init_state, loop.restore_for_eval) == (runs.make_task, runs.init_state,
                                                                        runs.restore_for_eval)


def test_a_restored_run_unpacks_and_judges(classifier_run):
    run = runs.restore_for_eval(classifier_run)
    config, task, state = run
    assert (run.config, run.task, run.state) == (config, task, state) and config.task == "classifier"
    judge = runs.classifier_judge(classifier_run)
    for a, b in zip(jax.tree.leaves(judge.params), jax.tree.leaves(task.eval_params(state))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("loader, want", [(runs.classifier_judge, "classifier"), (runs.clip_scorer, "clip")])
def test_a_judge_of_another_task_is_one_sentence(tmp_path, loader, want):
    # A config.json alone: the task is checked before any checkpoint is looked for.
    (tmp_path / "config.json").write_text(json.dumps({"task": "vae", "data": {}, "model": {}, "train": {}}))
    with pytest.raises(TaskError, match=f"^{tmp_path} holds a vae run, not a {want} run\\.$"):
        loader(str(tmp_path))


def test_a_trained_model_loads_from_a_run_folder_or_a_pretrained_name(classifier_run, tmp_path, monkeypatch):
    _, task, state = runs.restore_for_eval(classifier_run)
    expected = jax.device_get(task.eval_params(state))
    run = runs.trained_model(classifier_run, "classifier")
    assert (run.config.task, run.step, run.path) == ("classifier", int(state.step), os.path.abspath(classifier_run))
    assert int(run.state.step) == int(state.step)  # the whole state: a warm start takes its raw params and EMA
    # Exported into a stand-in for the shipped models' folder, it loads by name: its sampling params and
    # step (from meta.json), no train state. (A real shipped model costs seconds to restore; its name
    # resolving is checked below, by a task check that restores nothing.)
    monkeypatch.setattr(runs, "pretrained_dir", lambda: str(tmp_path))
    pretrained.export(classifier_run, str(tmp_path / "digits_classifier"))
    model = runs.trained_model("digits_classifier", "classifier")
    assert (model.config.task, model.step, model.path, model.state) == (
        "classifier", int(state.step), str(tmp_path / "digits_classifier"), None)
    jax.tree.map(np.testing.assert_array_equal, expected, jax.device_get(model.params))


def test_a_trained_model_of_another_task_is_one_sentence_before_anything_is_restored(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"task": "vae", "data": {}, "model": {}, "train": {}}))
    where = re.escape(str(tmp_path))
    with pytest.raises(TaskError, match=f"^{where} holds a vae run, not an autoencoder run\\.$"):
        runs.trained_model(str(tmp_path), "autoencoder")
    # Named by a config field: the sentence starts with it and says which shipped config trains one.
    with pytest.raises(TaskError, match=rf"^model\.latent_from='{where}' holds a vae run, not an autoencoder run "
                                        rf"\(train one with jaxgen train autoencoder_shapes64\)\.$"):
        runs.trained_model(str(tmp_path), "autoencoder", field="model.latent_from")
    shipped = runs.available_pretrained()[0]  # no shipped model is an autoencoder
    with pytest.raises(TaskError, match=rf"^{shipped} is a pretrained \w+ model, not an autoencoder model\.$"):
        runs.trained_model(shipped, "autoencoder")


def test_no_checkpoint_and_no_model_at_all_are_one_sentence(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(config_lib.to_json(config_lib.load("classifier_digits:quick")))
    where = re.escape(str(workdir))
    with pytest.raises(CheckpointError, match=f"^{where} has no checkpoint yet; train it first with jaxgen train\\.$"):
        runs.trained_model(str(workdir), "classifier")
    with pytest.raises(CheckpointError, match=f"^train\\.init_from='{where}' cannot be loaded: {where} has no "
                                              f"checkpoint yet; train it first with jaxgen train\\.$"):
        runs.trained_model(str(workdir), "classifier", field="train.init_from")
    nowhere = str(tmp_path / "nowhere")
    with pytest.raises(TaskError, match=f"^{re.escape(nowhere)} is neither a trained clip run folder nor a pretrained "
                                        f"clip model \\(shipped: .*\\): it holds no trained clip run ") as info:
        runs.trained_model(nowhere, "clip")
    assert ". " not in str(info.value) and str(info.value).endswith("no params.msgpack.")


def test_a_trained_model_of_any_task(tmp_path):
    """task_name None (the sweep scripts, which take a text2image or an unclip base): the model
    whatever its task, and the same one sentence when there is none."""
    model = runs.trained_model("t2i_sr_shapes32", None)
    assert (model.config.task, model.config.model.stage, model.state) == ("text2image", "sr", None)
    nowhere = str(tmp_path / "nowhere")
    with pytest.raises(TaskError, match=f"^{re.escape(nowhere)} is neither a trained run folder nor a pretrained "
                                        f"model \\(shipped: .*\\): it holds no trained run "):
        runs.trained_model(nowhere, None)
