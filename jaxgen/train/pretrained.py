"""Pretrained models that ship with jaxgen: a trained run's sampling params, frozen into a folder.

A pretrained folder (jaxgen/pretrained/<name>/, package data, or any path) holds
  config.json    the run's config (its task, model, sampling and eval settings),
  params.msgpack the params the run samples with (its EMA when it keeps one: Task.eval_params),
                 Flax-serialised; no optimizer state, so a model is a few MB,
  meta.json      where it came from (source run, step, command, commit, scores) and the params'
                 sha256, checked on load,
and the task's assets, as a run folder holds them (a CLIP model's tokenizer.json, unCLIP's clip.json).
`export(workdir, out)` writes one from a trained run (atomically: a temporary folder renamed into
place); `load(name)` (jaxgen.tasks.runs.load_pretrained) gives (config, task, params) ready for
sampling, e.g. text_to_image, without the run's checkpoints. Why not ship Orbax checkpoints: they
carry the optimizer state (3x the bytes) and a directory layout that changes between Orbax
releases; one msgpack file of params does not.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import jax
from flax import serialization

from jaxgen import config as config_lib
from jaxgen.tasks import runs
# Loading lives with run loading (jaxgen.tasks.runs: a task may load a pretrained model too, e.g.
# unCLIP's frozen CLIP); the names stay importable from here.
from jaxgen.tasks.runs import (CONFIG_FILE, META_FILE, PARAMS_FILE, available_pretrained as available,
                               load_pretrained as load, pretrained_dir, resolve_pretrained as resolve)
from jaxgen.train.checkpoint import CheckpointError
from jaxgen.train.log import save_json

__all__ = ["CONFIG_FILE", "META_FILE", "PARAMS_FILE", "available", "export", "load", "pretrained_dir", "resolve"]

def export(workdir: str, out: str, meta: dict[str, Any] | None = None, overrides: Sequence[str] = ()) -> str:
    """Writes the sampling params and config of the run in `workdir` (its newest checkpoint) to the
    folder `out`, with `meta` (e.g. command, commit, scores) added to meta.json; returns `out`.
    An existing `out` is replaced only once the new folder is complete.

    `overrides` ("--config.model.clip_workdir=clip_shapes_t2i") may point the fields that name a
    model the task uses frozen (Task.frozen_sources, e.g. unCLIP's CLIP run) at another copy, such
    as an exported one, so that the exported model needs no run folder; the copy must hold the same
    params (Task.frozen_fingerprints), else CheckpointError and nothing is written."""
    config, task, state = runs.restore_for_eval(workdir)
    if overrides:
        config, task = _point_frozen_sources(config, task, overrides)
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
        task.save_assets(tmp)  # what the run keeps beside its params (a CLIP run's vocabulary)
        save_json(os.path.join(tmp, META_FILE), info)
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _point_frozen_sources(config, task, overrides: Sequence[str]):
    """(config, task): the run's config with `overrides` applied and its task, checked: only
    Task.frozen_sources fields, each naming a model with the same params as the one the run was
    trained with."""
    wanted = dict(o.removeprefix("--config.").partition("=")[::2] for o in overrides)  # field -> value
    bad = [f for f in wanted if f not in task.frozen_sources]
    if bad:
        allowed = ", ".join(f"--config.{f}" for f in task.frozen_sources) or "none for this task"
        raise CheckpointError(f"export changes only the fields naming a frozen model ({allowed}), not --config.{bad[0]}.")
    changed = config_lib.from_dict(config.to_dict())
    for item in overrides:
        config_lib.apply_override(changed, item)
    pointed = runs.make_task(changed)
    before, after = task.frozen_fingerprints(), pointed.frozen_fingerprints()
    for field, value in wanted.items():
        if before[field] != after[field]:
            raise CheckpointError(f"--config.{field}={value} holds other params than the model this run was trained "
                                  f"with; export pointing at that one.")
    return changed, pointed
