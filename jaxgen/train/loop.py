"""The one generic training loop: any task, any number of devices, resumable.

The loop sits above the tasks and drives them; building a task and loading a trained run live in
jaxgen.tasks.runs (its `make_task`, `init_state` and `restore_for_eval` are importable from here too).

Sections: setup (config, data, mesh) · state (init or resume) · loop (step, log, sample, save) ·
shutdown (final save, signals). The batch of step s is a pure function of (seed, s) and the step's
randomness a pure function of (state.rng, s), so a run resumed from a checkpoint continues exactly
where the uninterrupted run would be. The host batches of the next steps are prepared in a
background thread (`Prefetcher`) while the devices compute the current one.
"""
import dataclasses
import json
import math
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxgen import config as config_lib
from jaxgen import data
from jaxgen.errors import UserError
from jaxgen.eval.images import make_grid, save_png
from jaxgen.nn import lora
from jaxgen.tasks import runs
from jaxgen.tasks.base import Task, TaskError
from jaxgen.train import log, mfu, parallel
from jaxgen.train.checkpoint import (CheckpointError, Checkpointer, WorkdirError, abstract_state, barrier,
                                     check_same_model, nearest_existing, read_config_file)
from jaxgen.train.state import LoraState, TrainState

PyTree = Any
# Public here too, the same functions as jaxgen.tasks.runs' (assigned rather than imported: pyflakes reads an
# unused import as a mistake, not as a re-export).
make_task, init_state, restore_for_eval = runs.make_task, runs.init_state, runs.restore_for_eval


class NonFiniteLossError(UserError, RuntimeError):
    """Raised when a step's loss is NaN or infinite; the newest checkpoint is the last good state."""


@dataclasses.dataclass
class RunResult:
    state: PyTree  # the final state, one local copy
    step: int  # steps completed
    stopped_by: str | None = None  # "SIGINT" / "SIGTERM" when a signal ended the run early


def setup(config: ml_collections.ConfigDict, devices: list | None = None):
    """Loads the data and builds the task and the data-parallel step; the config's checks happen
    here (the device-dependent ones too: the batch over the devices, grad_accum over the
    per-device batch), before anything is written."""
    config_lib.validate(config)
    mesh = parallel.make_mesh(devices)
    data.check_divisible(config.train.batch_size, mesh.size)
    config_lib.validate(config, num_devices=mesh.size)
    task = make_task(config)
    if config.data.get("eval_split"):  # a split `jaxgen eval` would only find missing after training
        task.eval_dataset()
    if config.train.get("sharding", "replicated") == "fsdp":
        check_fsdp_support(task, config)
        step_fn = parallel.ShardedDataParallel(task.gradients, task.apply_gradients, mesh)
    else:
        step_fn = parallel.DataParallel(task.train_step, mesh, config.train.parallel)
    return task, step_fn


def check_fsdp_support(task, config: ml_collections.ConfigDict) -> None:
    """TaskError unless the task's step is the base's two halves (Task.gradients, then
    Task.apply_gradients), which train.sharding='fsdp' runs apart, and the run is not a LoRA one."""
    if type(task).train_step is not Task.train_step:
        raise TaskError(f"task {config.task} cannot shard its state (train.sharding='fsdp'): its train step "
                        f"updates its params its own way; set train.sharding='replicated'.")
    if config_lib.lora_enabled(config):
        raise TaskError(f"a LoRA run (lora.rank={config.lora.rank}) cannot shard its state (train.sharding='fsdp'); "
                        f"set train.sharding='replicated'.")


def check_workdir(workdir: str) -> None:
    """Raises WorkdirError unless `workdir` can hold this run: a folder (or a path that can become
    one) that this process may write, whose config.json, if any, is a jaxgen run's. Writes nothing."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir {workdir} is a file, not a folder; give a folder for the run.")
    existing = nearest_existing(workdir)
    if not os.path.isdir(existing):
        raise WorkdirError(f"--workdir {workdir} cannot be created: {existing} is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WorkdirError(f"--workdir {workdir} is not writable ({existing} is read-only); give a folder "
                           f"this user can write.")
    config_path = os.path.join(workdir, "config.json")
    if os.path.isfile(config_path):
        read_config_file(config_path)  # a truncated or foreign config.json: the folder is not a run of ours


def _write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    path = os.path.join(workdir, "config.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config_lib.to_json(config))
    os.replace(tmp, path)


# Stop codes that the processes agree on inside the step (their max wins: a preemption outranks a
# Ctrl-C, since it exits 0 and the scheduler restarts the job).
_STOP_CODES = {0: None, 1: "SIGINT", 2: "SIGTERM"}


class _StopFlag:
    """SIGINT / SIGTERM set a stop code that the loop hands to the next step; the step's `pmax`
    makes every process read the same decision from the same step (see parallel.DataParallel), so
    all of them stop and save at one step boundary, never with a half-updated state.

    A second Ctrl-C is not swallowed: the first one puts Python's previous SIGINT handler back, so
    pressing it again raises KeyboardInterrupt at once. Repeated SIGTERMs (some schedulers send
    several before the kill) keep waiting for the save.
    """

    def __init__(self):
        self.code = 0
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        self.code = max(self.code, next(c for c, n in _STOP_CODES.items() if n == name))
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, self._previous[signal.SIGINT])

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# Host batches prepared ahead of the step that reads them: two hide a streamed split's read and
# decode behind the device's step (and smooth one slow read), and bound the host memory they hold.
PREFETCH = 2


class _Failure:
    """What the worker raised, carried through the queue to the main thread."""

    def __init__(self, error: BaseException):
        self.error = error


class Prefetcher:
    """The host batches `make(step)` of steps start, start + 1, ..., end - 1, made in order by one
    background thread at most `depth` steps ahead of the consumer (`get`).

    Each batch is still the pure function of its step that `make` is, so a resumed run, which
    starts a new Prefetcher at its first step, replays the same batches. An exception raised by
    `make` is raised again, as itself (with the worker's traceback), by the `get` of its step.
    `close` (also on leaving a `with` block, e.g. on KeyboardInterrupt or a preemption's early stop)
    stops the worker: it makes no further batch, and a batch it is making is dropped when done.
    """

    def __init__(self, make: Callable[[int], Any], start: int, end: int, depth: int = PREFETCH):
        if depth < 1:
            raise ValueError(f"prefetch depth must be at least 1, not {depth}.")
        self._make, self._next, self._end = make, start, end
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(start,), name="jaxgen-prefetch", daemon=True)
        self._thread.start()

    def _work(self, step: int) -> None:
        try:
            for step in range(step, self._end):
                if self._stop.is_set():
                    return
                if not self._put((step, self._make(step))):
                    return
        except BaseException as e:  # noqa: BLE001 - every kind is the consumer's to see
            self._put((step, _Failure(e)))

    def _put(self, item) -> bool:
        """Puts `item`, waiting for room unless the prefetcher is closed (then False)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def get(self, step: int) -> Any:
        """The batch of `step`, which must be the next one: waits for the worker if needed."""
        if step != self._next or step >= self._end:
            raise ValueError(f"the prefetcher serves step {self._next} next (of [.., {self._end})), "
                             f"not step {step}.")
        while True:
            try:
                got, item = self._queue.get(timeout=0.05)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the prefetch thread ended without the batch of step "
                                       f"{step}.") from None
        self._next += 1
        if isinstance(item, _Failure):
            raise item.error
        assert got == step, (got, step)  # one worker, in order: a mismatch is a bug here
        return item

    def close(self, timeout: float = 10.0) -> None:
        """Stops the worker and waits (up to `timeout` s: a batch being made finishes first)."""
        self._stop.set()
        while True:  # free the queue, so a worker blocked on put sees the stop at once
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def train(config: ml_collections.ConfigDict, workdir: str, devices: list | None = None,
          quiet: bool = False, stop_at: int | None = None) -> RunResult:
    """Trains `config` in `workdir` to config.train.steps, resuming from its newest complete
    checkpoint (incomplete ones, left by a crash mid-save, are deleted before training starts).

    Validate, then write: the config (with the device-dependent checks), the model (built
    abstractly), the folder and the checkpoint to resume (same task, model.* and data.*; train.* may
    change, e.g. more steps extend a run) are all checked before anything is written to `workdir`.

    In a multi-process run (after jax.distributed.initialize, see jaxgen.train.distributed) every
    process calls this with the same arguments: the mesh spans every device of every process, each
    process feeds its rows of the global batch, and only process 0 prints, logs and writes samples.
    `stop_at` ends the run early at that step (saving a checkpoint there) without changing the
    config, e.g. to train in several sittings; schedules still span config.train.steps.
    """
    # ---- setup: every check, before anything is written to the run folder ------------------------
    task, step_fn = setup(config, devices)
    check_workdir(workdir)
    t = config.train
    main = jax.process_index() == 0
    say = (lambda m: print(m, flush=True)) if main else (lambda m: None)  # quiet only hides the bar
    rng = jax.random.PRNGKey(config.seed)
    # The model built abstractly (traced, no compute): a config it cannot be built from fails here.
    # The trace is reused below to compile a fresh run's init.
    init = jax.jit(task.init).trace(rng)
    # The restore target is abstract (shapes and, per leaf, this run's sharding on the current mesh:
    # replicated, or split under fsdp): no init compute, and the saved arrays land on this run's
    # devices in this run's layout, whatever device count, process count or layout wrote them.
    shardings = step_fn.state_sharding(init.out_info)
    target = abstract_state(init.out_info, shardings)
    lora_on = config_lib.lora_enabled(config)
    if lora_on:
        check_lora_support(task, config, init.out_info)

    # ---- state: resume from the newest complete checkpoint (read only: a checkpoint of another
    # model or data, or one that cannot be restored, stops the run with nothing written), or init --
    reader = Checkpointer(workdir)
    try:
        start = reader.latest_step()
        if start is not None:
            reader.check_compatible(config, start)
            state = reader.restore(target, start)
    finally:
        reader.close()
    if start is not None:
        # What the run saved beside its checkpoints (a latent run's scale, checked against the
        # autoencoder it was trained on), before the first batch needs it: a resumed run continues
        # in its own latent space, or stops here with nothing written.
        task.load_assets(workdir)
    base_info = None  # a LoRA run's {"init_from", "step", "fingerprint"} of its base (process 0)
    if start is None:
        # One compiled call (eager Flax init would compile every initializer separately). Under fsdp
        # its outputs are the shards themselves: the state is never assembled on one device (an
        # initializer's random bits may still be drawn whole before slicing, since configure_jax
        # turns jax_threefry_partitionable off).
        if step_fn.layout == "fsdp":
            init = jax.jit(task.init, out_shardings=shardings).trace(rng)
        state = init.lower().compile()(rng)
        if lora_on:  # the frozen base comes from lora.init_from (a resumed run's from its checkpoint)
            base, base_info = load_lora_base(config, like=state.base_params)
            state = state.replace(base_params=base)
        elif t.get("init_from"):
            state, line = warm_start(config, state, task)
            say(line)
    elif lora_on and main:
        base_info = resumed_lora_base_info(workdir, config, state.base_params)
    if lora_on:
        say(describe_lora(config, state, base_info))
    state = step_fn.put_state(state)
    state_bytes = step_fn.state_bytes(init.out_info)
    say(describe_state_bytes(init.out_info, step_fn, state_bytes))
    end = t.steps if stop_at is None else min(stop_at, t.steps)
    # The step compiled for the first batch, still before any write: a config whose step cannot be
    # built (e.g. train.grad_accum against the per-device batch) fails with the folder untouched.
    first = start or 0
    rate = None  # (FLOPs of one global step, peak FLOP/s of one device, devices)
    if first < end:
        first_batch = step_fn.put_batch(task.host_batch(first, jax.process_index(), jax.process_count()))
        rate = compile_step(step_fn, state, first_batch, config, say)

    # ---- writes: from here on the run folder changes -----------------------------------------------
    # Every process has looked for checkpoints/ before process 0 may create it below (each opened a
    # reader, or none, on the same evidence).
    barrier("resume_read")
    ckpt = Checkpointer(workdir, keep=t.keep, clean=True)
    writer = log.MetricsWriter(workdir, enabled=main)
    removed = "; removed incomplete checkpoint(s) " + ", ".join(
        f"{name} ({why})" for name, why in ckpt.removed) if ckpt.removed else ""
    if start is not None:
        say(f"resumed from step {start} ({ckpt.directory}){removed}")
    else:
        start = 0
        if removed:
            say(f"no complete checkpoint in {ckpt.directory}, starting from step 0{removed}")
    writer.truncate_after(start)
    if main:
        _write_config(workdir, config)
        task.save_assets(workdir)

    # ---- loop ------------------------------------------------------------------------------------
    progress = log.Progress(t.steps, start, enabled=main and not quiet)
    sample_rng = jax.random.PRNGKey(config.seed + 1)  # fixed noise: grids over training compare
    pending: list[tuple[int, dict]] = []
    last_flush = (start, time.time())
    last_saved = start if start else None
    step = start
    stopped_by = None
    previous_stop = None  # the agreed stop code of the previous step, still on the devices
    # The batches after the first, made in a background thread while the devices compute.
    host_batch = lambda s: task.host_batch(s, jax.process_index(), jax.process_count())  # noqa: E731
    with _StopFlag() as stop, Prefetcher(host_batch, first + 1, end) as upcoming:
        try:
            while step < end:
                if step == first:
                    batch = first_batch  # the batch the step was compiled with, already on the devices
                else:
                    batch = step_fn.put_batch(upcoming.get(step))
                state, metrics, agreed = step_fn.step(state, batch, stop.code)
                step += 1
                pending.append((step, metrics))
                # Reading the previous step's decision waits for that step: at most two steps in
                # flight, enough to overlap the next batch's preparation with compute, and it keeps
                # XLA CPU's fake devices from starving each other's all-reduce rendezvous (which
                # aborts a process with many steps queued). Every process reads the same value here,
                # after the same step, so all stop together.
                if previous_stop is not None:
                    stopped_by = _STOP_CODES[int(jax.device_get(previous_stop))]
                previous_stop = agreed
                ckpt.poll()
                save_now = bool((t.ckpt_every and step % t.ckpt_every == 0) or step == end or stopped_by)
                if (t.log_every and step % t.log_every == 0) or save_now:
                    last_flush = _flush(pending, step_fn, writer, progress, last_flush, ckpt, last_saved,
                                        rate, t.batch_size, state_bytes)
                    pending = []
                if t.sample_every and step % t.sample_every == 0:
                    # Every process gathers (under fsdp a collective: the params lie split across
                    # processes), only process 0 samples.
                    local = parallel.to_local(step_fn.host_state(state))
                    if main:
                        _save_samples(task, local, sample_rng, workdir, writer, step)
                if save_now:
                    ckpt.save(step, step_fn.checkpointable(state), config)
                    last_saved = step
                    if lora_on and main:
                        _save_adapters(task, step_fn, state, config, workdir, step, base_info)
                if stopped_by:
                    break
        finally:
            ckpt.close()
            writer.close()
            progress.close()
    if stopped_by:
        say(f"{'preempted' if stopped_by == 'SIGTERM' else 'interrupted'} at step {step}; "
            f"checkpoint saved, run the same command to resume.")
    final = parallel.to_local(step_fn.host_state(state))
    return RunResult(final, step, stopped_by)


def describe_state_bytes(state_shapes: PyTree, step_fn, state_bytes: int) -> str:
    """One line: the bytes of train state each device holds in this run's layout (`state_bytes`,
    step_fn.state_bytes), and in both (parallel.bytes_per_device: the shards of device 0;
    replicated = the whole state)."""
    mesh = step_fn.mesh
    replicated = parallel.bytes_per_device(state_shapes, jax.tree.map(lambda _: step_fn.replicated, state_shapes))
    fsdp = parallel.bytes_per_device(state_shapes, parallel.fsdp_sharding(state_shapes, mesh))
    mib = lambda b: f"{b / 2**20:.4g} MiB"  # noqa: E731
    return (f"train state per device: {mib(state_bytes)} ({step_fn.layout} over "
            f"{mesh.size} device(s); replicated {mib(replicated)}, fsdp {mib(fsdp)})")


# ---- LoRA: the frozen base of a fine-tune and its adapters on their own -----------------------------

ADAPTERS_DIR = "adapters"  # <workdir>/adapters: the newest checkpoint's adapters (jaxgen.nn.lora.save)


def check_lora_support(task, config: ml_collections.ConfigDict, state_shapes: PyTree) -> None:
    """TaskError unless the task fine-tunes LoRA adapters (Task.supports_lora, and its init builds a
    LoraState through Task.new_state)."""
    if not (task.supports_lora and isinstance(state_shapes, LoraState)):
        raise TaskError(f"task {config.task} cannot fine-tune LoRA adapters (lora.rank={config.lora.rank}): "
                              f"its train step updates its params its own way; set lora.rank=0.")


def load_lora_base(config: ml_collections.ConfigDict, like: PyTree) -> tuple[PyTree, dict]:
    """The frozen base of a LoRA run and where it came from: (params, {"init_from", "step",
    "fingerprint"}). The params are those lora.init_from samples with (Task.eval_params: its EMA when
    it keeps one; a LoRA run's merged adapters), from a trained run folder or a pretrained model
    (folder or shipped name). One sentence unless it is a model of this run's task and model.*
    settings with the shapes of `like` (see load_trained)."""
    source = load_trained(config.lora.init_from, "lora.init_from", config, like)
    return source.params, {"init_from": source.path, "step": source.step,
                           "fingerprint": lora.fingerprint(source.params)}


def load_trained(source: str, field: str, config: ml_collections.ConfigDict, like: PyTree) -> runs.TrainedModel:
    """The trained run folder or pretrained model (folder or shipped name) `source`, which the
    config's `field` names (jaxgen.tasks.runs.trained_model: TaskError unless it is a model of this
    run's task). CheckpointError (one sentence) unless it also has this run's model.* settings and
    its trained params (trained_params) have the shapes of `like`."""
    model = runs.trained_model(source, config.task, field=field)
    check_same_model(model.config, config, source, field)
    want, got = lora.leaves_by_path(like), lora.leaves_by_path(trained_params(model)[0])
    for path in sorted(set(want) | set(got)):
        theirs, ours = _leaf_type(got.get(path)), _leaf_type(want.get(path))
        if theirs != ours:
            raise CheckpointError(f"{field} {source} does not fit this run's model: its {path} is {theirs}, "
                                  f"this run's is {ours}.")
    return model


def trained_params(model: runs.TrainedModel) -> tuple[PyTree, PyTree | None]:
    """(its raw trained params, its EMA or None) of a trained model a run starts from. A pretrained
    model keeps only the params it samples with, and a LoRA run's raw params are its adapters alone:
    both give their sampling params and no EMA."""
    state = model.state
    if state is None or isinstance(state, LoraState):
        return model.params, None
    return state.params, state.ema_params


def warm_start(config: ml_collections.ConfigDict, state: TrainState, task) -> tuple[TrainState, str]:
    """A fresh `state` whose params start from train.init_from's trained params, and whose EMA (when
    this run keeps one) from its EMA (else from the part of its params the EMA follows, task.ema_of);
    the optimizer state, step and rng stay fresh, so the schedule starts over: SGDR's warm restart,
    or a fine-tune on other data. Returns the state and one line saying what was loaded."""
    source = load_trained(config.train.init_from, "train.init_from", config, state.params)
    params, ema = trained_params(source)
    copy = lambda tree: jax.tree.map(np.array, tree)  # noqa: E731 - own buffers: the step donates its state
    state = state.replace(params=copy(params))
    ema_loaded = state.ema_params is not None and ema is not None
    if state.ema_params is not None:
        followed = params if task.ema_of is None else params[task.ema_of]
        state = state.replace(ema_params=copy(ema if ema_loaded else followed))
    loaded = "params and EMA" if ema_loaded else "params"
    step = f" step {source.step}" if source.step is not None else ""
    return state, f"warm start: {loaded} from {source.path}{step}; fresh optimizer and schedule"


def _leaf_type(x) -> str:
    return "missing" if x is None else f"{x.dtype}{list(x.shape)}"


def resumed_lora_base_info(workdir: str, config: ml_collections.ConfigDict, base: PyTree) -> dict:
    """The {"init_from", "step", "fingerprint"} of a resumed LoRA run's restored base: as its saved
    adapters recorded it when that base is the same (by fingerprint), else what is known now."""
    fingerprint = lora.fingerprint(base)
    try:
        with open(os.path.join(workdir, ADAPTERS_DIR, lora.META_FILE)) as f:
            saved = json.load(f).get("base") or {}
    except (OSError, ValueError):
        saved = {}
    if saved.get("fingerprint") == fingerprint:
        return saved
    return {"init_from": config.lora.init_from, "step": None, "fingerprint": fingerprint}


def describe_lora(config: ml_collections.ConfigDict, state: LoraState, base_info: dict | None) -> str:
    """One line: the rank, the adapted kernels, trainable params against the model's, the base."""
    trained, total = lora.num_params(state.params), sum(int(x.size) for x in jax.tree.leaves(state.base_params))
    line = (f"LoRA rank {config.lora.rank} (alpha {config.lora.alpha:g}) on {len(lora.pairs(state.params))} kernels "
            f"({config.lora.targets}): {trained:,} trainable params, {100 * trained / total:.2f} % of the model's "
            f"{total:,}")
    if base_info:
        step = f" step {base_info['step']}" if base_info.get("step") is not None else ""
        line += f"; frozen base {base_info['init_from']}{step} ({base_info['fingerprint'][:12]})"
    return line


def _save_adapters(task, step_fn, state, config, workdir: str, step: int, base_info: dict) -> None:
    """Writes the adapters the run samples with (their EMA when it keeps one) to <workdir>/adapters."""
    local = parallel.to_local(step_fn.host_state(state))
    ema = task.uses_ema(local)
    lora.save(os.path.join(workdir, ADAPTERS_DIR), local.ema_params if ema else local.params,
              config.lora.alpha, config.lora.targets,
              {"step": step, "ema": ema, "task": config.task, "config_name": config.get("name", ""),
               "base": base_info})


def compile_step(step_fn, state, batch, config, say) -> tuple[float | None, float | None, int]:
    """Compiles the data-parallel step ahead of its first call (DataParallel.compile: the program
    the first call would have compiled, compiled once) and returns (FLOPs of one global step, peak
    FLOP/s of one device, devices), printing them.

    The FLOPs are XLA's count of the compiled per-device program, plus the matmul / conv FLOPs of
    the scan iterations that count leaves out (jaxgen.train.mfu), times the devices. The program is
    the one `jax.jit` would have compiled, so the numbers a step computes do not change.
    """
    compiled, lowered, jaxpr = step_fn.compile(state, batch)
    per_device = mfu.step_flops(compiled) or mfu.step_flops(lowered)
    if per_device is not None and jaxpr is not None:
        per_device += mfu.loop_correction(jaxpr)
    devices = step_fn.num_devices
    device = step_fn.mesh.devices.flat[0]
    dtype = config.train.get("compute_dtype", "float32")
    peak = mfu.device_peak(device, dtype, devices)
    flops = per_device * devices if per_device is not None else None
    kind = f"{device.device_kind}, measured fp32 matmul rate" if device.platform == "cpu" else \
        f"{device.device_kind}, {dtype}"
    say((f"FLOPs per step {flops / 1e9:.4g} G over {devices} device(s)" if flops else
         "FLOPs per step unknown (no cost analysis)")
        + (f", peak {peak / 1e12:.4g} TFLOP/s per device ({kind})" if peak else
           f", peak unknown ({device.device_kind}: not in jaxgen.train.mfu.PEAK_FLOPS)"))
    return flops, peak, devices


def _flush(pending, step_fn, writer, progress, last_flush, ckpt, last_saved, rate=None, batch_size=None,
           state_bytes=None):
    """Fetches the metrics of the steps since the last flush (one device->host transfer), stops on a
    non-finite loss, and logs their mean, with the throughput: steps/s, images/s and, when the step's
    FLOPs are known, TFLOP/s per device and MFU (against the device's peak, see jaxgen.train.mfu);
    and the bytes of train state per device (`state_bytes_per_device`, constant within a sitting)."""
    values = jax.device_get([step_fn.metrics_to_host(m) for _, m in pending])
    for (step, _), m in zip(pending, values):
        if not math.isfinite(float(m["loss"])):
            ckpt.wait()
            where = (f"the last good checkpoint is step {last_saved} in {ckpt.directory}" if last_saved
                     else "no checkpoint had been saved yet")
            raise NonFiniteLossError(f"loss is {float(m['loss'])} at step {step}; training stopped and "
                                     f"{where}. Lower optim.lr or check the data.")
    step = pending[-1][0]
    now = time.time()
    mean = {k: float(np.mean([m[k] for m in values])) for k in values[0]}
    mean["steps_per_s"] = (step - last_flush[0]) / max(now - last_flush[1], 1e-9)
    if batch_size:
        mean["images_per_s"] = mean["steps_per_s"] * batch_size
    if rate is not None and rate[0]:
        mean.update(mfu.utilization(rate[0], mean["steps_per_s"], rate[2], rate[1]))
    if state_bytes is not None:
        mean["state_bytes_per_device"] = state_bytes
    writer.write(step, mean)
    progress.update(step - last_flush[0], mean)
    return step, now


def _save_samples(task, local, rng, workdir, writer, step) -> None:
    """Samples 64 images with `local` (one local copy of the state) and saves their grid."""
    images = np.asarray(task.sample(task.eval_params(local), rng, 64)["images"])
    grid = make_grid(images)
    save_png(grid, os.path.join(workdir, "samples", f"step_{step:07d}.png"))
    writer.image("samples", grid, step)
