"""Pretrained models that ship with jaxgen: a trained run's sampling params, frozen into a folder.

A pretrained folder (jaxgen/pretrained/<name>/, package data, or any path) holds
  config.json    the run's config (its task, model, sampling and eval settings),
  params.msgpack the params the run samples with (its EMA when it keeps one: Task.eval_params),
                 Flax-serialised; no optimizer state, so a model is a few MB,
  meta.json      where it came from (source run, step, command, commit, scores) and the params'
                 sha256, checked on load.
`export(workdir, out)` writes one from a trained run (atomically: a temporary folder renamed into
place); `load(name)` gives (config, task, params) ready for sampling, e.g. text_to_image, without
the run's checkpoints. Why not ship Orbax checkpoints: they carry the optimizer state (3x the bytes)
and a directory layout that changes between Orbax releases; one msgpack file of params does not.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Any

import jax
from flax import serialization

from jaxgen import config as config_lib
from jaxgen.tasks import runs
from jaxgen.train.checkpoint import CheckpointError, read_config_file
from jaxgen.train.log import save_json

PARAMS_FILE = "params.msgpack"
CONFIG_FILE = "config.json"
META_FILE = "meta.json"


def pretrained_dir() -> str:
    """The folder of the models that ship with jaxgen (jaxgen/pretrained, installed as package data)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained")


def available() -> list[str]:
    """Names of the shipped pretrained models."""
    root = pretrained_dir()
    if not os.path.isdir(root):
        return []
    return sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, PARAMS_FILE)))


def resolve(name: str) -> str:
    """The folder of pretrained model `name` (a shipped name, or a path to an exported folder)."""
    path = name if os.path.isdir(name) else os.path.join(pretrained_dir(), name)
    if not os.path.isfile(os.path.join(path, PARAMS_FILE)):
        known = ", ".join(available()) or "none"
        raise CheckpointError(f"{name!r} is not a pretrained model (no {PARAMS_FILE} there); shipped models: {known}.")
    return path


def export(workdir: str, out: str, meta: dict[str, Any] | None = None) -> str:
    """Writes the sampling params and config of the run in `workdir` (its newest checkpoint) to the
    folder `out`, with `meta` (e.g. command, commit, scores) added to meta.json; returns `out`.
    An existing `out` is replaced only once the new folder is complete."""
    config, task, state = runs.restore_for_eval(workdir)
    params = jax.device_get(task.eval_params(state))
    blob = serialization.to_bytes(params)
    info = {"source_workdir": os.path.abspath(workdir), "step": int(state.step), "task": config.task,
            "config_name": config.get("name", ""), "ema": bool(task.uses_ema(state)),
            "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
            "sha256": hashlib.sha256(blob).hexdigest(), **(meta or {})}
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp's folder is private (0700); a shipped model is for every user
    try:
        with open(os.path.join(tmp, PARAMS_FILE), "wb") as f:
            f.write(blob)
        saved = config.to_dict()
        if saved.get("lora", {}).get("rank", 0):
            # A LoRA run exports its merged params: a plain model of the base's config, no adapters.
            info["lora"] = dict(saved["lora"])
            saved["lora"] = {**saved["lora"], "rank": 0, "init_from": ""}
        save_json(os.path.join(tmp, CONFIG_FILE), saved)
        save_json(os.path.join(tmp, META_FILE), info)
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load(name: str):
    """(config, task, params) of a pretrained model (a shipped name or an exported folder), the
    params checked against meta.json's sha256 and the task's own param structure."""
    path = resolve(name)
    # The config is read as a run's config.json is (truncated or foreign: one sentence).
    config = config_lib.from_dict(read_config_file(os.path.join(path, CONFIG_FILE)))
    try:
        with open(os.path.join(path, META_FILE)) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"pretrained model {name!r} has an unreadable {META_FILE} "
                              f"({type(e).__name__}: {e}).") from None
    config_lib.fill_defaults(config)
    with open(os.path.join(path, PARAMS_FILE), "rb") as f:
        blob = f.read()
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"pretrained model {name!r}: {PARAMS_FILE} does not match the sha256 in {META_FILE} "
                              f"(damaged or replaced); export it again.")
    task = runs.make_task(config)
    target = jax.eval_shape(task.init, jax.random.PRNGKey(config.seed)).params
    try:
        params = serialization.from_bytes(target, blob)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"pretrained model {name!r} does not fit its config's model ({e}).") from None
    shapes_ok = jax.tree.map(lambda a, b: a.shape == b.shape, target, params)
    if not all(jax.tree.leaves(shapes_ok)):
        raise CheckpointError(f"pretrained model {name!r}: parameter shapes differ from its config's model.")
    return config, task, params
