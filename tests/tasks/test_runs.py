"""Loading a trained run (jaxgen.tasks.runs): the run unpacks as (config, task, state), the loop's
names are the same functions, and a judge given a run of another task is one sentence before
anything is restored."""
import json

import jax
import numpy as np
import pytest

from jaxgen.tasks import runs
from jaxgen.tasks.base import TaskError
from jaxgen.train import loop


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
