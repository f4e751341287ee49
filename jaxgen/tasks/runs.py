"""Loading a trained run: a run folder (config.json, checkpoints/) -> its config, task and state.

The one place that turns a run folder into a live run. The commands (`jaxgen sample`, `eval`,
`export`, ...), the training loop (a LoRA run's frozen base) and every task that needs another
trained run load it here: the digits classifier whose features judge samples (`classifier_judge`),
a CLIP run that scores images or encodes text (`clip_scorer`), the base stage of a cascade. It
lives in the tasks layer because it builds a task, of any family, through the registry
(`jaxgen.tasks.get` imports a family by name, on demand); the judges in jaxgen.eval take the loaded
run, so eval never imports tasks, and nothing here imports the training loop.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import ml_collections

from jaxgen import config as config_lib
from jaxgen import data, tasks
from jaxgen.eval.contrastive import CLIPScorer
from jaxgen.eval.features import ClassifierJudge
from jaxgen.tasks.base import Task, TaskError
from jaxgen.train.checkpoint import (CheckpointError, Checkpointer, abstract_state, incomplete_checkpoints,
                                     load_run_config)

PyTree = Any


class Run(NamedTuple):
    """A trained run, loaded: its config, its task (over its training split) and its state at the
    newest checkpoint. Unpacks as `config, task, state = run`."""
    config: ml_collections.ConfigDict
    task: Task
    state: PyTree


def make_task(config: ml_collections.ConfigDict) -> Task:
    """The config's task over its training split."""
    dataset = data.load(config.data.name, config.data.split, config.data.get("data_dir"))
    return tasks.get(config.task)(config, dataset)


def init_state(task: Task, config: ml_collections.ConfigDict) -> PyTree:
    """The task's fresh state, initialised in one compiled call (eager Flax init would compile
    every initializer separately: seconds per model on CPU)."""
    return jax.jit(task.init)(jax.random.PRNGKey(config.seed))


def restore_for_eval(workdir: str, devices: list | None = None, overrides: Sequence[str] = ()) -> Run:
    """The run in `workdir` at its newest checkpoint, on one device; `overrides` (--config.sample.x=y,
    ...) change how it is sampled or evaluated, not the model."""
    config = load_run_config(workdir)
    for item in overrides:
        config_lib.apply_override(config, item)
    config_lib.validate(config)
    task = make_task(config)  # the task checks the (overridden) sample and eval settings
    ckpt = Checkpointer(workdir)  # a reader: creates and deletes nothing
    try:
        latest = ckpt.latest_step()
        # A damaged step folder newer than the newest complete one (not an unfinished save, whose
        # temporary folder is not named by its step) would otherwise be passed over in silence, and
        # the user would sample an older model than the one they trained.
        damaged = [(int(n), why) for n, why in incomplete_checkpoints(ckpt.directory)
                   if n.isdigit() and (latest is None or int(n) > latest)]
        if damaged:
            step, why = max(damaged)
            raise CheckpointError(f"checkpoint {step} in {ckpt.directory} cannot be used ({why}); `jaxgen train` "
                                  f"with the same --workdir removes it and resumes from the last complete one.")
        if latest is None:
            raise CheckpointError(f"{workdir} has no checkpoint yet; train it first with jaxgen train.")
        ckpt.check_compatible(config)
        task.load_assets(workdir)
        device = (devices or jax.local_devices())[0]
        target = abstract_state(jax.eval_shape(task.init, jax.random.PRNGKey(config.seed)),
                                jax.sharding.SingleDeviceSharding(device))
        state = ckpt.restore(target)
    finally:
        ckpt.close()
    return Run(config, task, state)


def _check_task(workdir: str, want: str) -> None:
    """TaskError unless the run in `workdir` is one of task `want` (read from its config.json before
    anything is restored)."""
    task = load_run_config(workdir).get("task")
    if task != want:
        raise TaskError(f"{workdir} holds a {task} run, not a {want} run.")


def classifier_judge(workdir: str) -> ClassifierJudge:
    """The digits-classifier judge (jaxgen.eval.features) of the trained classifier run in `workdir`."""
    _check_task(workdir, "classifier")
    return ClassifierJudge(restore_for_eval(workdir))


def clip_scorer(workdir: str) -> CLIPScorer:
    """The CLIP scorer (jaxgen.eval.contrastive) of the trained clip run in `workdir`."""
    _check_task(workdir, "clip")
    return CLIPScorer(restore_for_eval(workdir))
