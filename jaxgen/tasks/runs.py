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

import hashlib
import json
import os
from typing import Any, NamedTuple, Sequence

import jax
import ml_collections
from flax import serialization

from jaxgen import config as config_lib
from jaxgen import data, tasks
from jaxgen.eval.contrastive import CLIPScorer
from jaxgen.eval.features import ClassifierJudge
from jaxgen.tasks.base import Task, TaskError
from jaxgen.train.checkpoint import (CheckpointError, Checkpointer, abstract_state, incomplete_checkpoints,
                                     load_run_config, read_config_file)

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


def clip_scorer(source: str) -> CLIPScorer:
    """The CLIP scorer (jaxgen.eval.contrastive) of a trained clip run folder (its newest checkpoint)
    or a pretrained clip model (a shipped name or an exported folder)."""
    if is_run_folder(source):
        _check_task(source, "clip")
        config, task, state = restore_for_eval(source)
        return CLIPScorer(config, task, task.eval_params(state), int(state.step))
    config, task, params = load_pretrained(source)
    if config.task != "clip":
        raise TaskError(f"pretrained model {source!r} is a {config.task} model, not a clip model.")
    return CLIPScorer(config, task, params, pretrained_meta(source).get("step"))


def is_run_folder(source: str) -> bool:
    """Whether `source` is a run folder (config.json or checkpoints/; an exported model, which has a
    config.json too, is told apart by its meta.json)."""
    return not os.path.isfile(os.path.join(source, META_FILE)) and (
        os.path.isfile(os.path.join(source, "config.json")) or os.path.isdir(os.path.join(source, "checkpoints")))


# ------------------------------------------------------------------------------ pretrained models
# A pretrained model is a trained run frozen by `jaxgen export` (jaxgen.train.pretrained): a folder of
# config.json, params.msgpack (the sampling params) and meta.json (provenance and the params' sha256).
PARAMS_FILE = "params.msgpack"
CONFIG_FILE = "config.json"
META_FILE = "meta.json"


def pretrained_dir() -> str:
    """The folder of the models that ship with jaxgen (jaxgen/pretrained, installed as package data)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained")


def available_pretrained() -> list[str]:
    """Names of the shipped pretrained models."""
    root = pretrained_dir()
    if not os.path.isdir(root):
        return []
    return sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, PARAMS_FILE)))


def resolve_pretrained(name: str) -> str:
    """The folder of pretrained model `name` (a shipped name, or a path to an exported folder)."""
    path = name if os.path.isdir(name) else os.path.join(pretrained_dir(), name)
    if not os.path.isfile(os.path.join(path, PARAMS_FILE)):
        known = ", ".join(available_pretrained()) or "none"
        raise CheckpointError(f"{name!r} is not a pretrained model (no {PARAMS_FILE} there); shipped models: {known}.")
    return path


def pretrained_meta(name: str) -> dict[str, Any]:
    """The meta.json of pretrained model `name` (provenance: step, source run, scores; the sha256)."""
    try:
        with open(os.path.join(resolve_pretrained(name), META_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"pretrained model {name!r} has an unreadable {META_FILE} "
                              f"({type(e).__name__}: {e}).") from None


def load_pretrained(name: str) -> tuple[ml_collections.ConfigDict, Task, PyTree]:
    """(config, task, params) of a pretrained model (a shipped name or an exported folder), the
    params checked against meta.json's sha256 and the task's own param structure."""
    path = resolve_pretrained(name)
    # The config is read as a run's config.json is (truncated or foreign: one sentence).
    config = config_lib.from_dict(read_config_file(os.path.join(path, CONFIG_FILE)))
    meta = pretrained_meta(name)
    config_lib.fill_defaults(config)
    with open(os.path.join(path, PARAMS_FILE), "rb") as f:
        blob = f.read()
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"pretrained model {name!r}: {PARAMS_FILE} does not match the sha256 in {META_FILE} "
                              f"(damaged or replaced); export it again.")
    task = make_task(config)
    task.load_assets(path)  # e.g. a CLIP model's vocabulary, saved beside its params
    target = jax.eval_shape(task.init, jax.random.PRNGKey(config.seed)).params
    try:
        params = serialization.from_bytes(target, blob)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"pretrained model {name!r} does not fit its config's model ({e}).") from None
    shapes_ok = jax.tree.map(lambda a, b: a.shape == b.shape, target, params)
    if not all(jax.tree.leaves(shapes_ok)):
        raise CheckpointError(f"pretrained model {name!r}: parameter shapes differ from its config's model.")
    return config, task, params
