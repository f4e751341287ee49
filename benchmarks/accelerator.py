"""One-shot accelerator suite: correctness and speed of jaxgen on the device it runs on, in one run.

    python -m benchmarks.accelerator                       # on a lent GPU/TPU: < 8 min, all parts
    python -m benchmarks.accelerator --parts families,ddpm_cifar_unet --budget_s 300
    python -m benchmarks.accelerator --smoke --out /tmp/acc  # every part at tiny sizes, CPU, seconds

Parts (each in its own try/except: a failing part writes a row with its error and the run goes on;
the JSON is rewritten after every part, so a run killed at its time limit keeps what it measured):

- tests: the accelerator-relevant tests (ACCELERATOR_TESTS, plus any test marked
  `@pytest.mark.accelerator` in those files), in a pytest subprocess *without* tests/conftest.py
  (which forces the CPU), on the default backend, at highest matmul precision (on GPUs float32
  matmuls default to TF32, which the tests' float32 tolerances do not allow).
- families: every family's train step at its full config size (the loop's own compiled step, see
  jaxgen.train.loop.compile_step), float32 and bfloat16: ms per step, images/s, FLOPs, MFU.
- ddpm_cifar_unet: the DDPM CIFAR-10-sized U-Net (DDPM_CIFAR: 35.75 M parameters) at batch 128 on
  32x32x3 images, through the diffusion task's train step, both dtypes.
- kernels: benchmarks/kernels.py's groups (3x3 conv, transposed conv forms, up-sampling + conv,
  U-Net forward and forward+backward) on a reduced shape list, both dtypes, JAX rows only.
- sampling: DDPM-1000 and DDIM-50 images/s of benchmarks/sampling.py's fused chain (timed over
  a few steps and scaled), both dtypes.

Writes <out>/accelerator.json and <out>/accelerator.md (generated from the JSON); --out defaults to
benchmarks/results/<device kind>/ (--smoke: a folder under /tmp). `--budget_s` skips what is left
once the run has used that many seconds (a compile already started still finishes).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

PARTS = ("tests", "families", "ddpm_cifar_unet", "kernels", "sampling")
DTYPES = ("float32", "bfloat16")
ROOT = Path(__file__).resolve().parent.parent

# Tests that say something about a device: numerics of the conv / transposed-conv / up-sampling
# forms, attention, the U-Net, the diffusion process and samplers, mixed precision. Node-id
# prefixes; a test file may also mark more with @pytest.mark.accelerator (setup.cfg declares it).
ACCELERATOR_TESTS = (
    "tests/nn/test_conv.py",
    "tests/nn/test_upsample.py",
    "tests/nn/test_attention.py",
    "tests/nn/test_unet.py",
    "tests/models/test_diffusion.py",
    "tests/train/test_precision.py",
    "tests/train/test_mfu.py",
)
# CPU-only behaviour (XLA CPU's YNNPACK switch), or torch comparisons that need the bench extra.
ACCELERATOR_DESELECT = "not ynnpack and not torch and not multidevice"
SMOKE_TESTS = ("tests/train/test_mfu.py::test_utilization_math",)

# One config per family, at its full size (the config with no argument).
FAMILIES = ("classifier_digits", "vae_digits", "gan_digits", "cyclegan_shapes", "diffusion_shapes",
            "unet_shapes", "clip_shapes", "unclip_shapes", "text2image_shapes")
SMOKE_FAMILIES = ("vae_digits:quick",)

# Ho et al. 2020's CIFAR-10 network: base 128 channels, multipliers (1, 2, 2, 2), attention at
# 16x16, dropout 0.1 (35.7 M parameters). jaxgen's U-Net has no middle block and as many decoder
# as encoder blocks per level; 4 residual blocks per level gives 35,751,171 parameters (the count
# is checked into every row) and 13.1 GFLOP per image forward, against Ho's ~6 G multiply-adds.
DDPM_CIFAR = ("diffusion_shapes", [
    "--config.model.channels=(128, 256, 256, 256)", "--config.model.num_res_blocks=4",
    "--config.model.attention_levels=(1,)", "--config.model.dropout=0.1",
    "--config.model.norm_groups=32", "--config.train.batch_size=128"])
DDPM_CIFAR_SMOKE = ("diffusion_shapes:quick", [
    "--config.model.channels=(8,)", "--config.model.num_res_blocks=1",
    "--config.model.attention_levels=()", "--config.model.norm_groups=4",
    "--config.train.batch_size=4"])

KERNELS = dict(conv=[(128, 32, 128, 128, 1), (128, 16, 256, 256, 1), (128, 32, 128, 256, 2)],
               transpose_s2=[(128, 16, 256, 128, 4), (128, 16, 256, 128, 3)],
               upsample=[(128, 16, 256, 128)],
               unet=dict(batch=128, size=32, channels=(128, 256, 256, 256), num_res_blocks=2,
                         attention_levels=(1,)),
               rounds=10, min_round_s=0.02, max_group_s=20.0)
KERNELS_SMOKE = dict(conv=[(2, 8, 8, 8, 1)], transpose_s2=[], upsample=[],  # smoke: conv and U-Net
                     unet=dict(batch=2, size=8, channels=(8,), num_res_blocks=1,
                               attention_levels=(), norm_groups=4, num_heads=2),
                     rounds=2, min_round_s=0.0, max_group_s=0.5)
SAMPLING = dict(model="large", batch=128, k=10)
SAMPLING_SMOKE = dict(model="tiny", batch=2, k=1)
SAMPLERS = (("DDPM-1000", "ddpm", 1000), ("DDIM-50", "ddim", 50))
SAMPLERS_SMOKE = (("DDIM-50", "ddim", 50),)


# ----------------------------------------------------------------------------------------------
# pytest plugin (`-p benchmarks.accelerator`): marks ACCELERATOR_TESTS so `-m accelerator` picks them
# ----------------------------------------------------------------------------------------------
try:
    import pytest

    @pytest.hookimpl(tryfirst=True)  # before `-m` deselects
    def pytest_collection_modifyitems(config, items):
        listed = [t for t in (os.environ.get("JAXGEN_ACCELERATOR_TESTS") or "").split(",") if t] \
            or list(ACCELERATOR_TESTS)
        for item in items:
            if any(item.nodeid == t or item.nodeid.startswith(t.rstrip(":") + "::")
                   or item.nodeid.startswith(t + "[") for t in listed):
                item.add_marker("accelerator")
except ImportError:  # pragma: no cover - the suite itself does not need pytest
    pass


# ----------------------------------------------------------------------------------------------
# The run: budget, rows, writers
# ----------------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """A folder name for a device kind: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


class Run:
    """Rows and part statuses; rewrites the JSON and markdown after every part."""

    def __init__(self, out: Path, budget_s: float, meta: dict):
        self.out, self.budget_s, self.meta = out, budget_s, meta
        self.start = time.perf_counter()
        self.rows: list[dict] = []
        self.parts: dict[str, dict] = {}

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def row(self, part: str, name: str, **fields) -> dict:
        r = {"part": part, "name": name, "status": "ok", **fields}
        self.rows.append(r)
        return r

    def part(self, name: str, fn: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        if self.left() <= 0:
            self.parts[name] = {"status": "skipped", "error": "budget spent", "seconds": 0.0}
            self.row(name, name, status="skipped", error="budget spent")
        else:
            print(f"== {name} ({self.left():.0f} s of budget left)", flush=True)
            try:
                fn()
                self.parts[name] = {"status": "ok"}
            except Exception as e:  # noqa: BLE001 - one part's failure is its row, not the run's end
                err = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
                traceback.print_exc()
                self.parts[name] = {"status": "error", "error": err}
                self.row(name, name, status="error", error=err)
            self.parts[name]["seconds"] = round(time.perf_counter() - t0, 2)
        self.write()

    def payload(self) -> dict:
        return {**self.meta, "wall_s": round(time.perf_counter() - self.start, 1),
                "parts": self.parts, "goals": goals(self.rows), "rows": self.rows}

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        payload = self.payload()
        for name, text in (("accelerator.json", json.dumps(payload, indent=1, default=float)),
                           ("accelerator.md", markdown(payload))):
            tmp = self.out / (name + ".tmp")  # never a half-written file
            tmp.write_text(text)
            tmp.replace(self.out / name)


def goals(rows: list[dict]) -> dict:
    """The issue's goals, read from the rows: the DDPM-CIFAR U-Net's bfloat16 MFU >= 40 %, and every
    family's bfloat16 step faster than its float32 step (None where a row is missing)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    unet = [r for r in ok if r["part"] == "ddpm_cifar_unet" and r.get("dtype") == "bfloat16"]
    out: dict[str, Any] = {"ddpm_cifar_unet_bf16_mfu": unet[0].get("mfu") if unet else None}
    out["ddpm_cifar_unet_bf16_mfu_at_least_40pct"] = (None if out["ddpm_cifar_unet_bf16_mfu"] is None
                                                      else out["ddpm_cifar_unet_bf16_mfu"] >= 0.40)
    speedups = {}
    for r in ok:
        if r["part"] == "families" and r.get("dtype") == "bfloat16":
            f32 = [q for q in ok if q["part"] == "families" and q["name"] == r["name"]
                   and q.get("dtype") == "float32"]
            if f32:
                speedups[r["name"]] = f32[0]["ms_per_step"] / r["ms_per_step"]
    out["bf16_speedup_per_family"] = speedups
    out["every_family_bf16_faster"] = all(v > 1 for v in speedups.values()) if speedups else None
    return out


def _f(v, spec=".3g") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def markdown(p: dict) -> str:
    """The report as markdown, generated from the JSON payload only."""
    g = p["goals"]
    lines = [f"# jaxgen accelerator suite: {p['device_kind']}", "",
             f"Command: `{p['command']}`; JAX {p['jax']} ({p['backend']}), {p['num_devices']} device(s); "
             f"{p['time']}; wall {p['wall_s']} s" + (" (SMOKE: tiny sizes, numbers mean nothing)" if p['smoke'] else "")
             + ".", "",
             f"Peak per device used for MFU: float32 {_f(p['peak_tflops'].get('float32'))}, bfloat16 "
             f"{_f(p['peak_tflops'].get('bfloat16'))} TFLOP/s ({p['peak_source']}).", "",
             "## Goals", "",
             f"- DDPM-CIFAR-10 U-Net, bfloat16 MFU: {_f(g['ddpm_cifar_unet_bf16_mfu'] and 100 * g['ddpm_cifar_unet_bf16_mfu'], '.1f')} % "
             f"(goal >= 40 %: {_f(g['ddpm_cifar_unet_bf16_mfu_at_least_40pct'])})",
             f"- every family's bfloat16 step faster than float32: {_f(g['every_family_bf16_faster'])} ("
             + ", ".join(f"{k} {v:.2f}x" for k, v in g["bf16_speedup_per_family"].items()) + ")", "",
             "## Parts", "", "| part | status | seconds | error |", "|---|---|---:|---|"]
    lines += [f"| {k} | {v['status']} | {v.get('seconds', 0):.1f} | {v.get('error', '')} |"
              for k, v in p["parts"].items()]
    step_rows = [r for r in p["rows"] if r["part"] in ("families", "ddpm_cifar_unet")]
    if step_rows:
        lines += ["", "## Train steps", "",
                  "| config | dtype | status | params | batch | ms/step | images/s | GFLOP/step | TFLOP/s/device | MFU | compile s |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['name']} | {r.get('dtype', '')} | {r['status']} {r.get('error', '')} | {_f(r.get('params'), ',')} | "
                  f"{_f(r.get('batch'))} | {_f(r.get('ms_per_step'), '.2f')} | {_f(r.get('images_per_s'), '.0f')} | "
                  f"{_f(r.get('flops_per_step') and r['flops_per_step'] / 1e9, '.4g')} | "
                  f"{_f(r.get('tflops_per_device'), '.3g')} | {_f(r.get('mfu') and 100 * r['mfu'], '.1f')}% | "
                  f"{_f(r.get('compile_s'), '.1f')} |" for r in step_rows]
    kern = [r for r in p["rows"] if r["part"] == "kernels"]
    if kern:
        lines += ["", "## Kernels (JAX rows)", "",
                  "| group | shape | implementation | dtype | ms | TFLOP/s | MFU | compile s |",
                  "|---|---|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r.get('group', r['name'])} | {r.get('shape', '')} | {r.get('impl', r.get('error', ''))} | "
                  f"{r.get('dtype', '')} | {_f(r.get('median_ms'), '.3f')} | {_f(r.get('tflops'), '.3g')} | "
                  f"{_f(r.get('mfu') and 100 * r['mfu'], '.1f')}% | {_f(r.get('compile_s'), '.2f')} |" for r in kern]
    samp = [r for r in p["rows"] if r["part"] == "sampling"]
    if samp:
        lines += ["", "## Sampling (fused chain, timed over k steps and scaled)", "",
                  "| model | sampler | dtype | batch | k | images/s | ms per chain step | MFU | compile s |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r.get('model', r['name'])} | {r.get('sampler', r.get('error', ''))} | {r.get('dtype', '')} | "
                  f"{_f(r.get('batch'))} | {_f(r.get('k'))} | {_f(r.get('images_per_s'), '.4g')} | "
                  f"{_f(r.get('ms_per_chain_step'), '.3f')} | {_f(r.get('mfu') and 100 * r['mfu'], '.1f')}% | "
                  f"{_f(r.get('compile_s'), '.1f')} |" for r in samp]
    tests = [r for r in p["rows"] if r["part"] == "tests"]
    if tests:
        lines += ["", "## Tests on the device", ""]
        lines += [f"- {r['status']}: {r.get('summary', r.get('error', ''))} ({_f(r.get('seconds'), '.0f')} s)"
                  for r in tests]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Parts
# ----------------------------------------------------------------------------------------------


def part_tests(run: Run, smoke: bool, timeout_s: float) -> None:
    """pytest -m accelerator in a subprocess, on this machine's default backend (no conftest)."""
    listed = SMOKE_TESTS if smoke else ACCELERATOR_TESTS
    files = sorted({t.split("::")[0] for t in listed})
    env = dict(os.environ, JAXGEN_ACCELERATOR_TESTS=",".join(listed),
               JAX_DEFAULT_MATMUL_PRECISION="highest", JAX_THREEFRY_PARTITIONABLE="false",
               JAXGEN_DATA_DIR=os.environ.get("JAXGEN_DATA_DIR") or str(Path(tempfile.gettempdir()) / "jaxgen_acc_data"))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest",
           "-p", "benchmarks.accelerator", "-m", f"accelerator and ({ACCELERATOR_DESELECT})", *files]
    t0 = time.perf_counter()
    timeout = max(5.0, min(timeout_s, run.left()))
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        out, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), None
    tail = [ln for ln in out.strip().splitlines() if ln.strip()]
    summary = next((ln.strip("= ") for ln in reversed(tail) if re.search(r"\d+ (passed|failed|error)", ln)),
                   tail[-1] if tail else "")
    failed = [ln for ln in tail if ln.startswith(("FAILED", "ERROR"))][:20]
    status = "ok" if rc == 0 else ("timeout" if rc is None else "failed")
    run.row("tests", "pytest -m accelerator", status=status, returncode=rc, summary=summary,
            failures=failed, seconds=time.perf_counter() - t0, command=" ".join(cmd[1:]))
    print(f"  tests: {status}: {summary}", flush=True)


def time_step(config, steps: int, state_cache: dict | None = None) -> dict:
    """The loop's own compiled step for `config` (jaxgen.train.loop: setup, init, compile_step),
    timed over `steps` calls after compile with at most two in flight: ms/step, images/s, FLOPs, MFU.
    `state_cache` reuses the initial state between dtypes (parameters are float32 in both)."""
    import jax

    from jaxgen.train import loop, mfu

    task, step_fn = loop.setup(config, jax.devices()[:1])
    key = (config.name, str(config.model))
    if state_cache is not None and key in state_cache:
        host = state_cache[key]
    else:
        host = jax.device_get(loop.init_state(task, config))
        if state_cache is not None:
            state_cache[key] = host
    params = sum(int(x.size) for x in jax.tree.leaves(getattr(host, "params", host)))
    state = step_fn.put_state(host)
    rows = lambda s: step_fn.put_batch(task.host_batch(s, 0, 1))  # noqa: E731
    t0 = time.perf_counter()
    flops, peak, devices = loop.compile_step(step_fn, state, rows(0), config, lambda m: print("  " + m, flush=True))
    compile_s = time.perf_counter() - t0
    batches = [rows(s) for s in range(min(steps + 1, 4))]  # host input kept out of the timing
    state, metrics = step_fn(state, batches[0])  # warm-up (first-call allocations)
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    previous = metrics
    for s in range(steps):
        state, metrics = step_fn(state, batches[1 + s % (len(batches) - 1)])
        jax.block_until_ready(previous)
        previous = metrics
    jax.block_until_ready((state, metrics))
    seconds = (time.perf_counter() - t0) / steps
    b = config.train.batch_size
    out = {"batch": b, "ms_per_step": 1e3 * seconds, "images_per_s": b / seconds, "steps_per_s": 1 / seconds,
           "flops_per_step": flops, "compile_s": compile_s, "params": params,
           "peak_tflops": peak and peak / 1e12, "loss": float(jax.device_get(metrics["loss"]))}
    if flops:
        out.update(mfu.utilization(flops, 1 / seconds, devices, peak))
    return out


def part_steps(run: Run, part: str, specs: list[tuple[str, list[str]]], dtypes, steps: int) -> None:
    from jaxgen import config as config_lib

    cache: dict = {}
    for spec, overrides in specs:
        for dtype in dtypes:
            name = spec
            if run.left() <= 0:
                run.row(part, name, dtype=dtype, status="skipped", error="budget spent")
                continue
            try:
                config = config_lib.load(spec, list(overrides) + [f"--config.train.compute_dtype={dtype}"])
                r = time_step(config, steps, cache)
                run.row(part, name, dtype=dtype, **r)
                print(f"  {name} {dtype}: {r['ms_per_step']:.2f} ms/step, {r['images_per_s']:.0f} img/s, "
                      f"MFU {_f(r.get('mfu') and 100 * r['mfu'], '.1f')} %", flush=True)
            except Exception as e:  # noqa: BLE001 - one config's failure is its row
                traceback.print_exc()
                run.row(part, name, dtype=dtype, status="error", error=f"{type(e).__name__}: {str(e)[:300]}")
            run.write()


class _DtypeRng:
    """numpy Generator whose standard_normal returns `dtype` arrays: lets benchmarks/kernels.py's
    groups (which draw float32 inputs) build bfloat16 inputs unchanged."""

    def __init__(self, rng, dtype):
        self._rng, self._dtype = rng, dtype

    def standard_normal(self, shape, dtype=None):
        return self._rng.standard_normal(shape, dtype="float32").astype(self._dtype)

    def __getattr__(self, name):
        return getattr(self._rng, name)


def part_kernels(run: Run, smoke: bool, dtypes) -> None:
    import jax
    import ml_dtypes
    import numpy as np

    from benchmarks import common, kernels
    from jaxgen.train import mfu

    cfg = KERNELS_SMOKE if smoke else KERNELS
    device = jax.devices()[0]
    for dtype in dtypes:
        if run.left() <= 0:
            run.row("kernels", "kernels", dtype=dtype, status="skipped", error="budget spent")
            continue
        np_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float32
        rng = _DtypeRng(np.random.default_rng(0), np_dtype)
        bench = kernels.Bench(cfg["rounds"], cfg["min_round_s"], cfg["max_group_s"], use_torch=False)
        groups = [("conv", lambda: kernels.bench_conv(bench, cfg["conv"], rng)),
                  ("transpose", lambda: kernels.bench_transpose(bench, cfg["transpose_s2"], 2, rng)),
                  ("upsample", lambda: kernels.bench_upsample_conv(bench, cfg["upsample"], rng)),
                  ("unet", lambda: kernels.bench_unet(bench, dict(cfg["unet"], dtype=jax.numpy.dtype(dtype)
                                                                  if dtype == "bfloat16" else None), rng))]
        peak = mfu.device_peak(device, dtype)
        for name, fn in groups:
            if run.left() <= 0:
                run.row("kernels", name, dtype=dtype, status="skipped", error="budget spent")
                continue
            first = len(bench.rows)
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                run.row("kernels", name, dtype=dtype, status="error", error=f"{type(e).__name__}: {str(e)[:300]}")
            common.finish_rows(bench.rows, 0.0)
            for r in bench.rows[first:]:
                tflops = r.flops / (r.median_ms * 1e-3) / 1e12 if r.median_ms > 0 else None
                run.row("kernels", f"{r.group} {r.shape} {r.impl}", dtype=dtype, group=r.group, shape=r.shape,
                        impl=r.impl, median_ms=r.median_ms, flops=r.flops, compile_s=r.compile_s,
                        tflops=tflops, mfu=(tflops * 1e12 / peak) if tflops and peak else None)
        run.write()


def part_sampling(run: Run, smoke: bool, dtypes) -> None:
    import jax
    import jax.numpy as jnp

    from benchmarks import sampling
    from jaxgen.train import mfu

    cfg = SAMPLING_SMOKE if smoke else SAMPLING
    device = jax.devices()[0]
    for dtype in dtypes:
        jm = sampling.JaxModel(sampling.MODELS[cfg["model"]])
        if dtype == "bfloat16":
            jm.module = jm.module.clone(dtype=jnp.bfloat16)
        peak = mfu.device_peak(device, dtype)
        for label, method, steps in (SAMPLERS_SMOKE if smoke else SAMPLERS):
            if run.left() <= 0:
                run.row("sampling", label, dtype=dtype, status="skipped", error="budget spent")
                continue
            k = min(cfg["k"], steps)
            try:
                compiled, args, compile_s = jm.fused(method, k, cfg["batch"], False)
                jax.block_until_ready(compiled(*args))
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    jax.block_until_ready(compiled(*args))
                    times.append(time.perf_counter() - t0)
                per_step = min(times) / k
                # XLA counts the scan body (one chain step) once: that count is one step's FLOPs.
                flops = mfu.step_flops(compiled)
                r = run.row("sampling", label, dtype=dtype, model=cfg["model"], params=jm.num_params,
                            sampler=label, steps=steps, batch=cfg["batch"], k=k, compile_s=compile_s,
                            ms_per_chain_step=1e3 * per_step, images_per_s=cfg["batch"] / (per_step * steps),
                            flops_per_chain_step=flops)
                if flops:
                    r.update(mfu.utilization(flops, 1 / per_step, 1, peak))
                print(f"  {label} {dtype}: {r['images_per_s']:.3g} images/s", flush=True)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                run.row("sampling", label, dtype=dtype, status="error", error=f"{type(e).__name__}: {str(e)[:300]}")
        run.write()


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="every part at tiny sizes (CPU, seconds)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    ap.add_argument("--dtypes", default=",".join(DTYPES), help="comma list of float32, bfloat16")
    ap.add_argument("--families", default="", help="comma list of configs (default: FAMILIES)")
    ap.add_argument("--budget_s", type=float, default=450.0,
                    help="skip the parts (and configs) left once this many seconds have passed")
    ap.add_argument("--tests_timeout_s", type=float, default=150.0)
    ap.add_argument("--steps", type=int, default=None, help="timed train steps per row (default 20; smoke 2)")
    ap.add_argument("--out", default=None, help="output folder (default benchmarks/results/<device kind>)")
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        print(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}.", file=sys.stderr)
        return 2
    dtypes = [d for d in args.dtypes.split(",") if d]
    if any(d not in DTYPES for d in dtypes):
        print(f"--dtypes takes {', '.join(DTYPES)}, not {args.dtypes!r}.", file=sys.stderr)
        return 2

    import jax

    from benchmarks import common
    from jaxgen.train import mfu

    if args.smoke:  # checks the pipeline, not speed: compile fast
        common.COMPILER_OPTIONS["xla_backend_optimization_level"] = 0
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    out = Path(args.out) if args.out else (
        Path(tempfile.gettempdir()) / "jaxgen_accelerator_smoke" if args.smoke
        else ROOT / "benchmarks" / "results" / slug(kind))
    entry = mfu.peak_entry(kind)
    peaks = {d: mfu.device_peak(device, d) for d in DTYPES}
    meta = {"command": "python -m benchmarks.accelerator " + " ".join(argv if argv is not None else sys.argv[1:]),
            "device_kind": kind, "backend": jax.default_backend(), "num_devices": jax.device_count(),
            "jax": jax.__version__, "smoke": args.smoke, "budget_s": args.budget_s,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "peak_tflops": {d: p and p / 1e12 for d, p in peaks.items()},
            "peak_source": ("measured fp32 matmul rate of this process" if device.platform == "cpu"
                            else (f"datasheet, {entry[0]} (jaxgen.train.mfu.PEAK_FLOPS)" if entry
                                  else "unknown device kind"))}
    run = Run(out, args.budget_s, meta)
    steps = args.steps or (2 if args.smoke else 20)
    families = [f for f in args.families.split(",") if f] or list(SMOKE_FAMILIES if args.smoke else FAMILIES)
    ddpm = DDPM_CIFAR_SMOKE if args.smoke else DDPM_CIFAR
    jobs = {"tests": lambda: part_tests(run, args.smoke, args.tests_timeout_s),
            "families": lambda: part_steps(run, "families", [(f, []) for f in families], dtypes, steps),
            "ddpm_cifar_unet": lambda: part_steps(run, "ddpm_cifar_unet", [ddpm], dtypes, steps),
            "kernels": lambda: part_kernels(run, args.smoke, dtypes),
            "sampling": lambda: part_sampling(run, args.smoke, dtypes)}
    for name in parts:
        run.part(name, jobs[name])
    run.write()
    print(f"wrote {out}/accelerator.json and accelerator.md in {time.perf_counter() - run.start:.0f} s; goals: "
          f"{json.dumps(run.payload()['goals'], default=str)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
