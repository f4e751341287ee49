"""Orbax checkpoints of the whole train state plus the config, under `<workdir>/checkpoints`.

Uses the stable v0 `CheckpointManager`: each save writes into a temporary directory that Orbax
renames when complete, so a run killed mid-save leaves no directory that looks finished;
`cleanup_tmp_directories` removes such leftovers on the next start. Restoring takes an abstract
target (shapes, dtypes and shardings) so the state lands directly on the current devices.
"""
import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxgen import config as config_lib

PyTree = Any
# Config sections whose change makes a checkpoint's arrays mean something else.
IDENTITY_KEYS = ("task", "model")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be restored into this run."""


def _normalise(d: Any) -> Any:
    """JSON round trip: tuples become lists, so saved and current configs compare equal."""
    return json.loads(json.dumps(d, sort_keys=True, default=str))


class Checkpointer:
    def __init__(self, workdir: str, keep: int = 3, async_save: bool = True):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        options = ocp.CheckpointManagerOptions(
            create=True,
            cleanup_tmp_directories=True,
            preservation_policy=ocp.checkpoint_managers.LatestN(keep),
            enable_async_checkpointing=async_save,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "config"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: PyTree, config: ml_collections.ConfigDict) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  config=ocp.args.JsonSave(_normalise(config.to_dict())))
        self.manager.save(step, args=args, force=True)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def saved_config(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - any failure to read means the same thing here
            raise CheckpointError(f"checkpoint {step} in {self.directory} cannot be read "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:200]}).") from e
        return restored.config

    def check_compatible(self, config: ml_collections.ConfigDict, step: int | None = None) -> None:
        """Raises CheckpointError when the checkpoint was written by another task or model."""
        saved = self.saved_config(step)
        current = _normalise(config.to_dict())
        for key in IDENTITY_KEYS:
            if saved.get(key) != current.get(key):
                raise CheckpointError(
                    f"the checkpoint in {self.directory} was written with {key} = "
                    f"{json.dumps(saved.get(key), sort_keys=True)}, but this run's {key} is "
                    f"{json.dumps(current.get(key), sort_keys=True)}; use another --workdir or the same config.")

    def restore(self, target: PyTree, step: int | None = None) -> PyTree:
        """Restores the state at `step` (default: newest) with `target`'s shapes and shardings."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"checkpoint {step} in {self.directory} cannot be restored into this "
                                  f"model ({type(e).__name__}: {str(e).splitlines()[0][:300]}).") from e
        return restored.state

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run in `workdir` was started with (from config.json, else its newest checkpoint)."""
    path = os.path.join(workdir, "config.json")
    if os.path.isfile(path):
        with open(path) as f:
            return config_lib.from_dict(json.load(f))
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise CheckpointError(f"{workdir} holds no jaxgen run (no config.json and no checkpoints/).")
    return config_lib.from_dict(Checkpointer(workdir).saved_config())
