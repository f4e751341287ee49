"""Orbax checkpoints of the whole train state plus the config, under `<workdir>/checkpoints`.

Uses the stable v0 `CheckpointManager`. Each save writes into a temporary directory that Orbax
renames when complete; once Orbax has finished, jaxgen adds a manifest (`jaxgen_manifest.json`:
every file of the step with its size). A checkpoint is *complete* when its manifest's files are all
there at their full size, or, for one without a manifest (written before manifests existed, or a
crash in the moment between Orbax's rename and the manifest), when its Orbax metadata files exist
and parse. Anything else in the folder that looks like a checkpoint is incomplete: an Orbax
`*.orbax-checkpoint-tmp-*` directory left by a crash mid-save, a step directory missing files or
holding a truncated one. A training run (`clean=True`) deletes those when it starts and resumes from
the newest complete step; readers (`jaxgen sample`, `eval`) skip them without deleting anything,
since a live run may still be writing, and never create the folder either: only a save does.

Restoring takes an abstract target (shapes, dtypes and shardings), so the state lands directly on
the current devices, whatever device count or process count wrote it (re-sharding).
"""
import json
import os
import shutil
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxgen import config as config_lib
from jaxgen.errors import UserError

PyTree = Any
# Config sections whose change makes a checkpoint's arrays mean something else (the model), or makes
# a resumed run another run (its data): a resume must match them field by field. train.* may change
# (e.g. more steps extend a run), and so may where the data is cached.
# LoRA settings change what the arrays are (adapters of which kernels, at which rank); where the
# base came from does not, once the checkpoint holds it.
IDENTITY_KEYS = ("task", "model", "data", "lora")
IDENTITY_IGNORED = ("data.data_dir", "lora.init_from")
# Sections, and fields of existing sections, added after runs were saved: a saved config without
# one was written with these values (a whole `lora` section; data.classes = None, every class;
# model.text_layers = 0).
SECTION_DEFAULTS = {"lora": config_lib.LORA_DEFAULTS, "data": config_lib.DATA_DEFAULTS,
                    "model": config_lib.MODEL_ADDED_DEFAULTS}
MANIFEST = "jaxgen_manifest.json"
TMP_MARK = ".orbax-checkpoint-tmp"
# What every Orbax step directory of ours holds (JSON files), checked when there is no manifest.
REQUIRED_JSON = ("_CHECKPOINT_METADATA", os.path.join("state", "_METADATA"), os.path.join("config", "metadata"))
_barriers = 0  # Orbax barrier names must be unique within a process


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be restored into this run."""


class WorkdirError(UserError, ValueError):
    """A --workdir that cannot hold or be read as a run: a file, not writable, or holding files that
    are not a jaxgen run's."""


def _normalise(d: Any) -> Any:
    """JSON round trip: tuples become lists, so saved and current configs compare equal."""
    return json.loads(json.dumps(d, sort_keys=True, default=str))


_ABSENT = object()


def _flatten(d: Any, prefix: str) -> dict[str, Any]:
    """{"model.channels": [16, 32], ...}: the leaves of a (normalised) config section by dotted name."""
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}"))
    return out


def _show(value: Any) -> str:
    return "(not set)" if value is _ABSENT else json.dumps(value, sort_keys=True)


# ---- completeness ------------------------------------------------------------------------------


def _files(step_dir: str) -> dict[str, int]:
    """{path relative to step_dir: size in bytes} of every file under step_dir, the manifest aside."""
    sizes = {}
    for root, _, names in os.walk(step_dir):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, step_dir)
            if not rel.startswith(MANIFEST):  # the manifest (and its tmp file) describe the rest
                sizes[rel] = os.path.getsize(path)
    return sizes


def write_manifest(step_dir: str) -> None:
    """Records every file of a finished step with its size (atomically: tmp file + rename)."""
    files = _files(step_dir)  # listed before the tmp file exists
    path = os.path.join(step_dir, MANIFEST)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"files": files}, f, sort_keys=True)
    os.replace(tmp, path)


def _step_problem(step_dir: str) -> str | None:
    """Why the step directory is not a complete checkpoint, or None when it is."""
    manifest = os.path.join(step_dir, MANIFEST)
    if os.path.isfile(manifest):
        try:
            with open(manifest) as f:
                expected = json.load(f)["files"]
        except (OSError, ValueError, KeyError):
            return f"its {MANIFEST} is unreadable"
        for rel, size in sorted(expected.items()):
            path = os.path.join(step_dir, rel)
            if not os.path.isfile(path):
                return f"{rel} is missing"
            actual = os.path.getsize(path)
            if actual != size:
                return f"{rel} has {actual} of its {size} bytes"
        return None
    for rel in REQUIRED_JSON:  # no manifest: Orbax's own metadata must be there and parse
        path = os.path.join(step_dir, rel)
        if not os.path.isfile(path):
            return f"{rel} is missing"
        try:
            with open(path) as f:
                json.load(f)
        except (OSError, ValueError):
            return f"{rel} is truncated or corrupt"
    return None


def incomplete_checkpoints(directory: str) -> list[tuple[str, str]]:
    """[(name, why)] of the entries of a checkpoints folder that look like checkpoints but are not
    complete; other names are never reported (so never deleted)."""
    if not os.path.isdir(directory):
        return []
    found = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if TMP_MARK in name:
            found.append((name, "an unfinished save"))
        elif name.isdigit() and os.path.isdir(path):
            problem = _step_problem(path)
            if problem:
                found.append((name, problem))
    return found


def _remove(path: str) -> None:
    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def barrier(name: str) -> None:
    """Waits for every process (a no-op in single-process runs)."""
    global _barriers
    if jax.process_count() > 1:
        _barriers += 1
        ocp.multihost.sync_global_processes(f"jaxgen_{name}_{_barriers}")


# ---- the checkpointer --------------------------------------------------------------------------


class Checkpointer:
    """The checkpoints of one workdir.

    `clean=True` (the training loop) deletes incomplete checkpoints first (process 0 deletes, every
    process waits for it) and lists them in `removed` as (name, why); `clean=False` only skips them.
    Only `clean=True` and `save` create the checkpoints folder: a reader (`clean=False`) of a run
    without one sees no steps and writes nothing.
    Every process of a multi-process run constructs one and calls `save` at the same steps.
    """

    def __init__(self, workdir: str, keep: int = 3, async_save: bool = True, clean: bool = False):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.primary = jax.process_index() == 0
        self.removed: list[tuple[str, str]] = []
        self._keep, self._async = keep, async_save
        if clean:
            if self.primary:
                self.removed = incomplete_checkpoints(self.directory)
                for name, _ in self.removed:
                    _remove(os.path.join(self.directory, name))
            barrier("checkpoint_clean")
        self._skip = {int(n) for n, _ in incomplete_checkpoints(self.directory) if n.isdigit()}
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise WorkdirError(f"{self.directory} is a file, not a checkpoints folder; use another --workdir.")
        # A reader of a run without checkpoints opens no manager (Orbax's would create the folder).
        self.manager = self._open() if clean or os.path.isdir(self.directory) else None
        self._unsealed: list[int] = []  # saved steps whose manifest is not written yet

    def _open(self) -> ocp.CheckpointManager:
        options = ocp.CheckpointManagerOptions(
            create=True,
            cleanup_tmp_directories=False,  # done in __init__, and only by a training run
            preservation_policy=ocp.checkpoint_managers.LatestN(self._keep),
            enable_async_checkpointing=self._async,
        )
        return ocp.CheckpointManager(self.directory, options=options, item_names=("state", "config"))

    def latest_step(self) -> int | None:
        """The newest complete step, or None."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def all_steps(self) -> list[int]:
        """Complete steps, oldest first."""
        if self.manager is None:
            return []
        return sorted(s for s in self.manager.all_steps() if s not in self._skip)

    def save(self, step: int, state: PyTree, config: ml_collections.ConfigDict) -> None:
        """Starts an (asynchronous) save of `state` and the config at `step`; collective in
        multi-process runs (every process calls it with its part of the global arrays)."""
        if self.manager is None:
            self.manager = self._open()
        self.manager.wait_until_finished()  # Orbax would wait here anyway; then seal the last one
        self._seal()
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  config=ocp.args.JsonSave(_normalise(config.to_dict())))
        self.manager.save(step, args=args, force=True)
        self._skip.discard(step)
        self._unsealed.append(step)

    def poll(self) -> None:
        """Seals a finished asynchronous save (cheap; the loop calls it every step)."""
        if self._unsealed and self.manager is not None and not self.manager.is_saving_in_progress():
            self._seal()

    def _seal(self) -> None:
        """Writes the manifest of each finished save (process 0; the others' files are done by
        the time Orbax's finalisation, which waits for every process, has renamed the step)."""
        if self.primary:
            for step in self._unsealed:
                step_dir = os.path.join(self.directory, str(step))
                try:
                    write_manifest(step_dir)
                except FileNotFoundError:  # already removed by the keep policy
                    pass
        self._unsealed = []

    def wait(self) -> None:
        if self.manager is not None:
            self.manager.wait_until_finished()
            self._seal()

    def saved_config(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory} holds no complete checkpoint.")
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - any failure to read means the same thing here
            raise CheckpointError(f"checkpoint {step} in {self.directory} cannot be read "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:200]}).") from e
        return restored.config

    def check_compatible(self, config: ml_collections.ConfigDict, step: int | None = None) -> None:
        """Raises CheckpointError, naming the first field that differs, when the checkpoint was
        written by another task, model, data or LoRA setting (IDENTITY_KEYS; IDENTITY_IGNORED may differ)."""
        saved = self.saved_config(step)
        current = _normalise(config.to_dict())
        if saved.get("task") != current.get("task"):
            raise CheckpointError(
                f"the checkpoint in {self.directory} was written with task = {json.dumps(saved.get('task'))}, but "
                f"this run's task is {json.dumps(current.get('task'))}; use another --workdir or the same config.")
        diff = first_difference(saved, current, IDENTITY_KEYS[1:])
        if diff:
            field, was, now = diff
            raise CheckpointError(
                f"the checkpoint in {self.directory} was written with {field} = {was}, but this run's {field} is "
                f"{now}; a run resumes with the data.*, model.* and lora.* settings it was started with (train.* "
                f"may change): use another --workdir or the saved settings.")

    def restore(self, target: PyTree, step: int | None = None) -> PyTree:
        """Restores the state at `step` (default: newest complete) into `target`'s structure.

        `target` holds arrays or `jax.ShapeDtypeStruct`s; their shardings say where each restored
        array goes, so a checkpoint written on any number of devices and processes restores onto
        the current ones (Orbax cannot re-shard without them: it would look for the writer's devices).
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory} holds no complete checkpoint.")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"checkpoint {step} in {self.directory} cannot be restored into this "
                                  f"model ({type(e).__name__}: {str(e).splitlines()[0][:300]}).") from e
        return restored.state

    def close(self) -> None:
        if self.manager is not None:
            self.manager.wait_until_finished()
            self._seal()
            self.manager.close()


def _section(config: dict, key: str) -> Any:
    """config[key], with the SECTION_DEFAULTS of a section, or of the fields of one, that the config
    predates (the saved fields win)."""
    value = config.get(key)
    if key in SECTION_DEFAULTS and (value is None or isinstance(value, dict)):
        return _normalise({**SECTION_DEFAULTS[key], **(value or {})})
    return value


def first_difference(saved: dict, current: dict, keys) -> tuple[str, str, str] | None:
    """(field, saved value, current value), both as JSON, of the first field of the sections `keys`
    where two normalised configs differ (IDENTITY_IGNORED fields aside), or None."""
    for key in keys:
        a, b = _flatten(_section(saved, key), key), _flatten(_section(current, key), key)
        for field in sorted(set(a) | set(b)):
            if field not in IDENTITY_IGNORED and a.get(field, _ABSENT) != b.get(field, _ABSENT):
                return field, _show(a.get(field, _ABSENT)), _show(b.get(field, _ABSENT))
    return None


def check_same_model(base_config: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
                     source: str, field: str = "lora.init_from") -> None:
    """CheckpointError unless `source` (the run or model that `field` names, with config
    `base_config`) is a model of this run's task and model.* settings: LoRA adapters and a warm
    start's params fit only the network they were made for."""
    base, current = _normalise(base_config.to_dict()), _normalise(config.to_dict())
    diff = (("task", json.dumps(base.get("task")), json.dumps(current.get("task")))
            if base.get("task") != current.get("task") else first_difference(base, current, ("model",)))
    if diff:
        key, was, now = diff
        why = "LoRA adapts a base of this run's model" if field.startswith("lora.") else \
            "a warm start needs params of this run's model"
        raise CheckpointError(f"{field} {source} was trained with {key} = {was}, but this run's {key} is "
                              f"{now}; {why}, so give that run's config (and its argument, e.g. :8x8).")


def abstract_state(state_shapes: PyTree, sharding: jax.sharding.Sharding | PyTree) -> PyTree:
    """Restore target: `state_shapes` (e.g. from `jax.eval_shape`) placed with `sharding`, one
    sharding for every leaf or a tree of them shaped like `state_shapes` (per-leaf placement, e.g.
    jaxgen.train.parallel.fsdp_sharding: a checkpoint written replicated restores split, and back)."""
    if isinstance(sharding, jax.sharding.Sharding):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state_shapes)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state_shapes, sharding)


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run in `workdir` was started with (from config.json, else its newest checkpoint),
    with the engine fields it predates filled in (config.fill_defaults), so their overrides work.
    Reads only; a missing folder, a file, or a config.json that is truncated or not a jaxgen
    config is one sentence (CheckpointError / WorkdirError)."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir {workdir} is a file, not a run folder.")
    path = os.path.join(workdir, "config.json")
    if os.path.isfile(path):
        saved = read_config_file(path)
    elif os.path.isdir(os.path.join(workdir, "checkpoints")):
        ckpt = Checkpointer(workdir)
        try:
            saved = ckpt.saved_config()
        finally:
            ckpt.close()
        _check_run_config(saved, f"the config saved in {ckpt.directory}")
    else:
        raise CheckpointError(f"{workdir} holds no jaxgen run (no config.json and no checkpoints/).")
    config = config_lib.from_dict(saved)
    config_lib.fill_defaults(config)
    return config


def nearest_existing(path: str) -> str:
    """The deepest existing path at or above `path` (absolute): where creating `path` would start,
    so whether it can be created is a question about that folder (is it one, may this user write it)."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    return existing


def read_config_file(path: str) -> dict:
    """A run's config.json as a dict; CheckpointError when it is unreadable, truncated or foreign."""
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path} cannot be read as JSON ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                              f"it is truncated or not a jaxgen run's config.") from None
    _check_run_config(saved, path)
    return saved


def _check_run_config(saved: Any, where: str) -> None:
    sections = ("data", "model", "train")
    if not (isinstance(saved, dict) and isinstance(saved.get("task"), str)
            and all(isinstance(saved.get(k), dict) for k in sections)):
        raise CheckpointError(f"{where} is not a jaxgen run's config (it needs a task name and the sections "
                              f"{', '.join(sections)}).")
