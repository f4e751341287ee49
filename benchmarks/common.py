"""Shared benchmark helpers: timing (JAX and PyTorch, interleaved), the machine's fp32 ceiling,
and the JSON / markdown / PNG writers. Used by every script in benchmarks/.

Timing method. Each candidate is a zero-argument callable that runs the work once and waits for it
(`block_until_ready` for JAX; PyTorch CPU ops are synchronous). Candidates that are compared with
each other (a JAX form and its PyTorch twin) are timed in *interleaved* rounds, one call of each per
round, so that load from other processes on a shared machine hits all of them alike; the reported
time is the median over rounds. JAX compile time is measured separately (lower + compile) and never
enters the median; the first PyTorch call (oneDNN primitive creation) is reported the same way.
"""
from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np


@functools.lru_cache(maxsize=None)
def torch_module():
    """PyTorch, imported on first use, or None where it is absent (every torch row is then skipped).
    Lazily: the import costs a benchmark process 1.5 s, and the scaling, train-step and accelerator
    runs never time a torch row."""
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return torch


def num_threads() -> int:
    """Threads both frameworks may use: the cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def setup_torch(threads: int | None = None) -> bool:
    """Give PyTorch the same thread count XLA's CPU pool uses (all cores). False if torch absent."""
    torch = torch_module()
    if torch is None:
        return False
    torch.set_num_threads(threads or num_threads())
    return True


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """A ready-to-time candidate: `run()` does the work once and waits; setup cost is recorded."""

    run: Callable[[], Any]
    compile_s: float  # JAX: lower + compile; PyTorch: first (warm-up) call
    compiled: Any = None  # JAX: the compiled executable (for cost_analysis)


# XLA compiler options for every prepare_jax call (smoke runs: backend optimisation level 0)
COMPILER_OPTIONS: dict[str, Any] = {}


def prepare_jax(fn: Callable, *args: Any) -> Prepared:
    """jit `fn`, compile it for `args` (timed), run once to warm caches; return the callable."""
    import jax

    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile(compiler_options=COMPILER_OPTIONS or None)
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))

    def run() -> Any:
        return jax.block_until_ready(compiled(*args))

    return Prepared(run, compile_s, compiled)


def xla_flops(prepared: Prepared) -> float:
    """FLOPs XLA counts for a compiled JAX candidate (0 if it does not say)."""
    cost = prepared.compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", 0.0))


def prepare_torch(fn: Callable, *args: Any, grad: bool = False) -> Prepared:
    """Wrap a PyTorch callable (under no_grad unless `grad`); the first call is timed as setup."""
    torch = torch_module()

    def run() -> Any:
        if grad:
            return fn(*args)
        with torch.no_grad():
            return fn(*args)

    t0 = time.perf_counter()
    run()
    return Prepared(run, time.perf_counter() - t0)


def time_interleaved(candidates: dict[str, Prepared], rounds: int, min_round_s: float = 0.0,
                     max_total_s: float = float("inf")) -> dict[str, list[float]]:
    """Seconds per call of each candidate, measured in `rounds` interleaved rounds.

    A candidate faster than `min_round_s` is called several times per round (the count fixed from a
    probe call) so short kernels are not dominated by timer resolution and dispatch jitter. Rounds
    stop early (after at least one) once `max_total_s` has passed. The order is shuffled every
    round (seeded), so no candidate always runs right after another framework's threads were busy.
    """
    inner = {}
    for name, c in candidates.items():
        t0 = time.perf_counter()
        c.run()
        dt = max(time.perf_counter() - t0, 1e-7)
        inner[name] = max(1, int(min_round_s / dt))
    times: dict[str, list[float]] = {name: [] for name in candidates}
    start = time.perf_counter()
    order, shuffle = list(candidates), random.Random(0).shuffle
    for i in range(rounds):
        if i and time.perf_counter() - start > max_total_s:
            break
        shuffle(order)
        for name in order:
            c = candidates[name]
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                c.run()
            times[name].append((time.perf_counter() - t0) / inner[name])
    return times


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


# ----------------------------------------------------------------------------------------------
# Machine ceiling
# ----------------------------------------------------------------------------------------------


def measure_ceiling(n: int = 2048, rounds: int = 5) -> dict[str, float]:
    """fp32 GFLOP/s of a large [n, n] @ [n, n] matmul (2 n^3 flops), in JAX and PyTorch.

    The larger of the two is the run's practical ceiling: what these cores sustain on the most
    favourable kernel there is, so '% of ceiling' says how much of the machine a row uses.
    """
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    cands = {"jax": prepare_jax(jnp.matmul, jnp.asarray(a), jnp.asarray(b))}
    torch = torch_module()
    if torch is not None:
        cands["torch"] = prepare_torch(torch.matmul, torch.from_numpy(a), torch.from_numpy(b))
    times = time_interleaved(cands, rounds)
    flops = 2.0 * n ** 3
    out = {f"{k}_gflops": flops / min(v) / 1e9 for k, v in times.items()}
    out["ceiling_gflops"] = max(out.values())
    out["matmul_n"] = n
    return out


def best_ceiling(*measured: dict[str, float]) -> dict[str, float]:
    """The per-framework maximum of several `measure_ceiling` results (taken at the start and the
    end of a run): on a shared machine one measurement can land in a busy minute and understate
    the machine, which would overstate every row's % of ceiling."""
    out = dict(measured[0])
    for m in measured[1:]:
        for k, v in m.items():
            if k.endswith("gflops"):
                out[k] = max(out.get(k, 0.0), v)
    out["measurements"] = len(measured)
    return out


def environment() -> dict[str, Any]:
    """What the numbers were measured on (they mean little without it)."""
    import jax

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            names = (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
            cpu = next(names, cpu)
    except OSError:
        pass
    env = {"cpu": cpu, "threads": num_threads(), "python": platform.python_version(),
           "jax": jax.__version__, "backend": jax.default_backend(),
           "xla_flags": os.environ.get("XLA_FLAGS", ""),
           "torch": _installed_version("torch"),
           "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
           "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if "torch" in sys.modules:  # the run timed torch rows (not imported just to ask)
        env["torch_threads"] = sys.modules["torch"].get_num_threads()
    return env


def _installed_version(package: str) -> str | None:
    """The installed distribution's version (e.g. '2.13.0+cpu'), read without importing it."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


# ----------------------------------------------------------------------------------------------
# Rows and writers
# ----------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One timed kernel. `ratio_vs_torch` > 1 means this row is faster than its PyTorch twin."""

    group: str  # e.g. 'conv', 'conv_transpose s2'
    shape: str  # human-readable problem size
    impl: str  # e.g. 'jaxgen subpixel', 'lax.conv_transpose', 'torch'
    framework: str  # 'jax' or 'torch'
    median_ms: float
    flops: float
    compile_s: float
    gflops: float = 0.0
    pct_ceiling: float = 0.0
    ratio_vs_torch: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def finish_rows(rows: list[Row], ceiling_gflops: float) -> None:
    """Fill GFLOP/s, % of ceiling and the ratio to the torch row of the same (group, shape)."""
    torch_ms = {(r.group, r.shape): r.median_ms for r in rows if r.framework == "torch"}
    for r in rows:
        r.gflops = r.flops / (r.median_ms * 1e-3) / 1e9 if r.median_ms > 0 else 0.0
        r.pct_ceiling = 100.0 * r.gflops / ceiling_gflops if ceiling_gflops else 0.0
        t = torch_ms.get((r.group, r.shape))
        r.ratio_vs_torch = None if t is None or r.framework == "torch" else t / r.median_ms


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(payload)
    if "rows" in payload:
        payload["rows"] = [asdict(r) if isinstance(r, Row) else r for r in payload["rows"]]
    tmp = path.with_suffix(path.suffix + ".tmp")  # never leave a half-written file behind
    tmp.write_text(json.dumps(payload, indent=1, default=float))
    tmp.replace(path)


def markdown_table(rows: Iterable[Row]) -> str:
    head = ("| group | shape | implementation | median ms | GFLOP/s | % ceiling | vs torch "
            "| compile s |\n"
            "|---|---|---|---:|---:|---:|---:|---:|\n")
    lines = []
    for r in rows:
        ratio = "" if r.ratio_vs_torch is None else f"{r.ratio_vs_torch:.2f}x"
        lines.append(f"| {r.group} | {r.shape} | {r.impl} | {r.median_ms:.3f} | {r.gflops:.1f} | "
                     f"{r.pct_ceiling:.0f}% | {ratio} | {r.compile_s:.2f} |")
    return head + "\n".join(lines) + "\n"


def write_markdown(path: Path, title: str, preamble: str, rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(f"# {title}\n\n{preamble}\n\n{markdown_table(rows)}")
    tmp.replace(path)


def bar_chart(path: Path, rows: list[Row], title: str) -> None:
    """Horizontal bars of GFLOP/s per row, grouped by (group, shape); JAX blue, PyTorch orange."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.group} {r.shape} | {r.impl}" for r in rows]
    colors = ["tab:orange" if r.framework == "torch" else "tab:blue" for r in rows]
    fig, ax = plt.subplots(figsize=(11, 0.22 * len(rows) + 1.2))
    ax.barh(range(len(rows)), [r.gflops for r in rows], color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("GFLOP/s (fp32; blue: JAX, orange: PyTorch)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def time_train_steps(config: Any, steps: int) -> dict[str, float]:
    """Times `steps` train steps of a jaxgen config through the real loop machinery (two steps in
    flight at most, as in jaxgen.train.loop), after one compiling step timed apart:
    {"compile_s", "seconds", "devices"}."""
    import jax

    from jaxgen.train import loop

    task, step_fn = loop.setup(config)
    state = step_fn.put_state(loop.init_state(task, config))
    start = time.perf_counter()
    # this process's rows of each global batch (all of them in a single-process run)
    rows = lambda step: task.host_batch(step, jax.process_index(), jax.process_count())  # noqa: E731
    state, metrics = step_fn(state, step_fn.put_batch(rows(0)))
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    previous = metrics
    for step in range(1, steps + 1):
        state, metrics = step_fn(state, step_fn.put_batch(rows(step)))
        jax.block_until_ready(previous)
        previous = metrics
    jax.block_until_ready((state, metrics))
    return {"compile_s": compile_s, "seconds": time.perf_counter() - start, "devices": step_fn.num_devices}
