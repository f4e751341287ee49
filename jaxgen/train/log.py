"""Run outputs: metrics.jsonl, TensorBoard event files, JSON results and a progress bar (image grids
and PNGs: jaxgen.eval.images).

Only process 0 writes (`enabled=False` elsewhere). TensorBoard files come from tensorboardX, which
works without TensorFlow, imported without PyTorch (`summary_writer_class`).
"""
import json
import os
import sys
import time
from typing import Mapping

import numpy as np
from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"


def summary_writer_class():
    """tensorboardX's SummaryWriter, imported here (only process 0 writes) and without PyTorch.

    tensorboardX tries `import torch` only to accept torch tensors, which jaxgen never logs. Where
    torch is installed (the bench extra, for the benchmarks' side-by-side runs) that import made
    every `jaxgen train` start 1.5-3 s slower and put PyTorch in a process that never uses it. While
    sys.modules["torch"] is None, `import torch` raises ImportError and tensorboardX falls back to
    numpy; the entry is removed at once, so a later `import torch` elsewhere works as usual.
    """
    if "torch" in sys.modules:  # imported already: nothing to save
        from tensorboardX import SummaryWriter
        return SummaryWriter
    sys.modules["torch"] = None
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


class MetricsWriter:
    """Appends {"step": s, "time": t, name: value, ...} lines to <workdir>/metrics.jsonl and the
    same scalars to TensorBoard under <workdir>/tb."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, METRICS_FILE)
        self._tb = None
        if enabled:
            self._tb = summary_writer_class()(os.path.join(workdir, "tb"))

    def truncate_after(self, step: int) -> None:
        """Drops lines logged after `step` by a run that died before its next checkpoint, so a
        resumed run's log has each step once."""
        if not self.enabled or not os.path.exists(self.path):
            return
        with open(self.path) as f:
            kept = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(kept)
        os.replace(tmp, self.path)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "time": time.time(), **{k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in metrics.items():
            self._tb.add_scalar(name, float(value), int(step))

    def image(self, tag: str, grid: np.ndarray, step: int) -> None:
        if self.enabled:
            self._tb.add_image(tag, grid, int(step), dataformats="HWC")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def save_json(path: str, obj) -> None:
    """Writes `obj` as indented JSON atomically (temp file + rename): eval.json, a pretrained model's
    config and meta."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Progress:
    """A tqdm bar showing step, steps/s, loss, images/s, MFU and ETA; silent when disabled."""

    def __init__(self, total: int, initial: int, enabled: bool = True):
        self._bar = None
        if enabled:
            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                             mininterval=1.0, smoothing=0.1)

    def update(self, n: int, metrics: Mapping[str, float] | None = None) -> None:
        if self._bar is None:
            return
        if metrics:
            # The first three losses, then the throughput (tqdm shows steps/s itself).
            shown = {k: f"{v:.4g}" for k, v in list(metrics.items())[:3]}
            if "images_per_s" in metrics:
                shown["img/s"] = f"{metrics['images_per_s']:.4g}"
            if "mfu" in metrics:
                shown["mfu"] = f"{100 * metrics['mfu']:.1f}%"
            self._bar.set_postfix(shown, refresh=False)
        self._bar.update(n)

    def write(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
