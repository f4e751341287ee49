"""Loading a trained run: a run folder (config.json, checkpoints/) -> its config, task and state.

The one place that turns a run folder into a live run. The commands (`jaxgen sample`, `eval`,
`export`, ...) restore a run (`restore_for_eval`); a model that another uses frozen, from a run
folder or a pretrained model, loads through `trained_model`: the digits classifier whose features
judge samples (`classifier_judge`), a CLIP model that scores images or encodes text (`clip_scorer`),
a latent diffusion run's autoencoder, the base of a LoRA run or warm start (the training loop). It
lives in the tasks layer because it builds a task, of any family, through the registry
(`jaxgen.tasks.get` imports a family by name, on demand); the judges in jaxgen.eval take the loaded
model, so eval never imports tasks, and nothing here imports the training loop.
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
    ...) change how it is sampled or evaluated, not the model. Eval fields the task added since the
    run was saved get their defaults first (Task.eval_added_defaults), so they can be overridden."""
    config = load_run_config(workdir)
    if config.get("eval") is not None and config.get("task") in tasks.names():
        for key, value in tasks.get(config.task).eval_added_defaults.items():
            if key not in config.eval:
                config.eval[key] = value
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


class TrainedModel(NamedTuple):
    """A trained model that another model uses frozen (`trained_model`): a run folder at its newest
    checkpoint, or a pretrained model."""
    config: ml_collections.ConfigDict  # its config (a run's config.json; a pretrained model's)
    task: Task  # its task over its training split, its assets loaded (a CLIP model's vocabulary, ...)
    params: PyTree  # the params it samples with (Task.eval_params: its EMA when it keeps one)
    step: int | None  # the training step of those params (a pretrained model's meta.json; None if unrecorded)
    path: str  # the absolute folder it was loaded from (a shipped name resolved)
    state: PyTree | None  # a run's whole restored state (raw params, EMA, ...); None for a pretrained model


def trained_model(source: str, task_name: str | None, *, field: str | None = None) -> TrainedModel:
    """The trained `task_name` model in `source` (None: whatever task it holds): a run folder (its
    newest checkpoint) or a pretrained model (a shipped name or an exported folder). `field` is the
    config field naming it (e.g. "model.latent_from"): the error sentences then start with
    `field='source'` and say which shipped configs train one.

    One sentence each: TaskError when `source` is neither a run folder nor a pretrained model, or holds
    a model of another task (read from its config, before anything is restored); CheckpointError when
    it cannot be restored (no checkpoint yet, params that do not match their sha256): the restore's own
    sentence, after "field='source' cannot be loaded: " when `field` is given."""
    who = source if field is None else f"{field}={source!r}"
    # A config field's user is writing a config: tell them which one trains the model it must name.
    hint = _trained_by(task_name) if field is not None and task_name else ""
    run = is_run_folder(source)
    if run:
        config = load_run_config(source)
    else:
        try:
            path = resolve_pretrained(source)
        except CheckpointError:
            kind = f"{task_name} " if task_name else ""
            raise TaskError(f"{who} is neither a trained {kind}run folder nor a pretrained {kind}model "
                            f"(shipped: {', '.join(available_pretrained()) or 'none'}): it holds no trained "
                            f"{kind}run (config.json, checkpoints/) and no {PARAMS_FILE}{hint}.") from None
        config = _pretrained_config(path)
    held = config.get("task")
    if task_name is not None and held != task_name:
        what = f"holds {_a(held)} {held} run" if run else f"is a pretrained {held} model"
        raise TaskError(f"{who} {what}, not {_a(task_name)} {task_name} {'run' if run else 'model'}{hint}.")
    try:
        if run:
            config, task, state = restore_for_eval(source)
            return TrainedModel(config, task, task.eval_params(state), int(state.step), os.path.abspath(source),
                                state)
        task, params, meta = _restore_pretrained(path, source, config)
        return TrainedModel(config, task, params, meta.get("step"), os.path.abspath(path), None)
    except CheckpointError as e:
        if field is None:
            raise
        raise CheckpointError(f"{who} cannot be loaded: {e}") from None


def _a(word: str) -> str:
    """The article before `word`: "an autoencoder", "a clip"."""
    return "an" if word[:1] in tuple("aeiou") else "a"


def _trained_by(task_name: str) -> str:
    """' (train one with jaxgen train clip_digits or clip_shapes)': the shipped configs of task
    `task_name`, or '' when none ships (loaded to read their task: tens of ms, on an error path only)."""
    names = [n for n in config_lib.available() if config_lib.load(n).task == task_name]
    if not names:
        return ""
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f" (train one with jaxgen train {listed})"


def classifier_judge(workdir: str) -> ClassifierJudge:
    """The digits-classifier judge (jaxgen.eval.features) of a trained classifier run folder (its newest
    checkpoint) or a pretrained classifier (a shipped name or an exported folder)."""
    model = trained_model(workdir, "classifier")
    return ClassifierJudge(model.config, model.task, model.params)


def clip_scorer(source: str, *, field: str | None = None) -> CLIPScorer:
    """The CLIP scorer (jaxgen.eval.contrastive) of a trained clip run folder (its newest checkpoint)
    or a pretrained clip model (a shipped name or an exported folder); `field`: as trained_model's."""
    model = trained_model(source, "clip", field=field)
    return CLIPScorer(model.config, model.task, model.params, model.step)


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


def load_pretrained(name: str) -> tuple[ml_collections.ConfigDict, Task, PyTree]:
    """(config, task, params) of a pretrained model (a shipped name or an exported folder), the
    params checked against meta.json's sha256 and the task's own param structure."""
    path = resolve_pretrained(name)
    config = _pretrained_config(path)
    task, params, _ = _restore_pretrained(path, name, config)
    return config, task, params


def _pretrained_config(path: str) -> ml_collections.ConfigDict:
    """The config of the pretrained model in folder `path`, read as a run's config.json is (truncated
    or foreign: one sentence), with the engine fields it predates filled in."""
    config = config_lib.from_dict(read_config_file(os.path.join(path, CONFIG_FILE)))
    config_lib.fill_defaults(config)
    return config


def _restore_pretrained(path: str, name: str, config: ml_collections.ConfigDict) -> tuple[Task, PyTree, dict]:
    """(task, params, meta.json) of the pretrained model `name` in folder `path` with `config`."""
    try:
        with open(os.path.join(path, META_FILE)) as f:
            meta = json.load(f)  # provenance (step, source run, scores) and the params' sha256
    except (OSError, ValueError) as e:
        raise CheckpointError(f"pretrained model {name!r} has an unreadable {META_FILE} "
                              f"({type(e).__name__}: {e}).") from None
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
    return task, params, meta
