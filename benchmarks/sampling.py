"""Diffusion sampling benchmark: images/s of jaxgen's samplers beside diffusers, in one run.

    python -m benchmarks.sampling                         # full table (26 min at load 8 on 2 cores)
    python -m benchmarks.sampling --quick --out /tmp/s    # smoke run (~45 s idle, 80 s at load 8)
    python -m benchmarks.sampling --models digits --batches 16 --no-torch

For each U-Net (MODELS: the digits network at 16x16x1 and a larger one at 32x32x3), batch (1, 16,
128), with and without classifier-free guidance (which doubles the batch inside one call), and
sampler (DDPM-1000, DDIM-50, DDIM-10), it times:

- jaxgen fused: `samplers.sample`, the whole chain as one jit-compiled `lax.scan`;
- jaxgen Python loop: a Python `for` over a jit-compiled `samplers.make_step` (what a
  straightforward port of a PyTorch sampler does); DDIM rows only;
- diffusers: `UNet2DModel` (class embedding for the labels) + `DDIMScheduler` / `DDPMScheduler` in
  the usual Python loop, eval mode, `torch.inference_mode`, channels-last, the same thread count.

Compile time (lower + compile; for torch the first call of one step) is reported apart from run
time. The candidates of a (model, batch, guidance) cell are timed in interleaved rounds (shuffled
order, median over rounds), so load from other processes falls on all of them alike. Sampling
costs the same for every step, so a chain whose full run would take longer than --max-run-s is
timed over k of its steps (k in 1, 2, 5, 10: the same program on a k-step respaced schedule) and
scaled by steps / k; such rows say "extrapolated from k steps". The schedule is passed to the
compiled program as an argument, so DDIM-50 and DDIM-10 timed over the same k share one program.

Also: parameter counts of both networks (must agree within 5%), forward GFLOP of both, the peak
memory of a 1000-step vs a 10-step sampling run (XLA's memory_analysis of both compiled programs,
and the peak RSS of the run in a fresh process per case), and XLA's default CPU flags against
jaxgen.nn.RECOMMENDED_CPU_XLA_FLAGS (the setting used for the table) on one cell.
Writes sampling.json and sampling.md into --out (default benchmarks/results/).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import common

# The networks. jaxgen's U-Net has `num_res_blocks` blocks per level on both sides and no decoder
# level at the bottleneck; diffusers' UNet2DModel has layers_per_block + 1 blocks per decoder level,
# decoder blocks at the bottleneck and, by default, a mid block. With the same channels, attention
# levels, heads and norm groups, jaxgen num_res_blocks=3 with a 4x4 transposed-conv up-sampler
# ('transpose': jaxgen computes its 'nearest' mode as that same transposed conv, so the two cost
# the same; only the parameter count differs) matches diffusers layers_per_block=1 without a mid
# block within 3% of parameters, and within ~10% of forward FLOPs (diffusers' nearest-up + 3x3
# conv up-samplers do 2.25x the multiply-adds of the sub-pixel form, at 4x the parameters).
_COMMON = {"num_res_blocks": 3, "upsample": "transpose", "num_heads": 4, "num_classes": 10,
               "torch_layers_per_block": 1, "torch_mid_block": None}
MODELS = {
    # the digits config's channels, attention level, heads, norm groups and image shape
    "digits": dict(_COMMON, size=16, in_channels=1, channels=(32, 64), attention_levels=(1,),
                   norm_groups=8),
    "large": dict(_COMMON, size=32, in_channels=3, channels=(64, 128, 256), attention_levels=(2,),
                  norm_groups=32),
    "tiny": dict(_COMMON, size=8, in_channels=1, channels=(8, 16), attention_levels=(1,),
                 norm_groups=4, num_heads=2),  # --quick only
}
SAMPLERS = (("DDPM-1000", "ddpm", 1000), ("DDIM-50", "ddim", 50), ("DDIM-10", "ddim", 10))
EXTRAPOLATE_FROM = (1, 2, 5, 10)  # k of an extrapolated row (shared programs for DDIM-50 / -10)
LOOP_STEPS = 10  # the Python loop runs (up to) the 10 steps of a DDIM-10 chain
GUIDANCE_W = 3.0
PARAM_TOLERANCE = 0.05
FULL = {"models": ("digits", "large"), "batches": (1, 16, 128), "rounds": 3, "max_run_s": 3.0,
            "cell_cap_s": 45.0, "memory_batch": 16, "rss_model": "digits",
            "rss_steps": (1000, 10), "flags_case": ("large", 16, 2)}
QUICK = {"models": ("tiny",), "batches": (2,), "rounds": 2, "max_run_s": 0.3, "cell_cap_s": 5.0,
             "memory_batch": 2, "rss_model": "tiny", "rss_steps": (100, 10), "flags_case": None}


# ----------------------------------------------------------------------------------------------
# jaxgen side
# ----------------------------------------------------------------------------------------------


class JaxModel:
    """jaxgen's Denoiser with random weights drawn in numpy (no init program to compile)."""

    def __init__(self, cfg: dict, seed: int = 0):
        import jax
        import jax.numpy as jnp
        import numpy as np

        from jaxgen.models.diffusion import schedules
        from jaxgen.models.diffusion.network import Denoiser

        self.cfg = cfg
        self.module = Denoiser(out_channels=cfg["in_channels"], channels=tuple(cfg["channels"]),
                               num_res_blocks=cfg["num_res_blocks"],
                               attention_levels=tuple(cfg["attention_levels"]),
                               num_heads=cfg["num_heads"], upsample=cfg["upsample"],
                               norm_groups=cfg["norm_groups"], num_classes=cfg["num_classes"])
        self.image = (cfg["size"], cfg["size"], cfg["in_channels"])
        args = self._args(1)
        shapes = jax.eval_shape(self.module.init, jax.random.key(0), *args)["params"]
        rng = np.random.default_rng(seed)

        def draw(path, s):
            name = jax.tree_util.keystr(path)
            if "scale" in name:
                return jnp.ones(s.shape, jnp.float32)
            if "bias" in name:
                return jnp.zeros(s.shape, jnp.float32)
            fan_in = math.prod(s.shape[:-1]) if len(s.shape) > 1 else 1
            return jnp.asarray(rng.standard_normal(s.shape) / math.sqrt(fan_in), jnp.float32)

        self.params = jax.tree_util.tree_map_with_path(draw, shapes)
        self.num_params = int(sum(math.prod(v.shape) for v in jax.tree.leaves(shapes)))
        self.full = schedules.make("cosine", 1000)

    def _args(self, b: int):
        import jax.numpy as jnp
        return (jnp.zeros((b,) + self.image, jnp.float32), jnp.zeros((b,), jnp.int32),
                {"label": jnp.zeros((b,), jnp.int32)})

    def denoise(self, params, x, t, cond):
        return self.module.apply({"params": params}, x, t, cond)

    def forward_gflops(self) -> float:
        """XLA's count for one batch-1 forward pass (from the lowered HLO; nothing compiled)."""
        import jax
        cost = jax.jit(self.denoise).lower(self.params, *self._args(1)).cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float((cost or {}).get("flops", 0.0)) / 1e9

    def schedule(self, steps: int):
        from jaxgen.models.diffusion import schedules
        return schedules.respace(self.full, steps)

    def inputs(self, batch: int, guided: bool):
        import jax
        import jax.numpy as jnp
        labels = jnp.arange(batch, dtype=jnp.int32) % self.cfg["num_classes"]
        return jax.random.key(1), labels, jnp.float32(GUIDANCE_W if guided else 0.0)

    def fused(self, method: str, steps: int, batch: int, guided: bool):
        """(compiled, args, compile_s) of samplers.sample over a `steps`-step respaced schedule."""
        import jax

        from jaxgen.models.diffusion import samplers
        from jaxgen.models.diffusion.network import null_condition

        ncls, shape = self.cfg["num_classes"], (batch,) + self.image

        def run(params, sched, rng, labels, w):
            cond = {"label": labels}
            null = null_condition(cond, ncls) if guided else None
            x, _ = samplers.sample(self.denoise, params, sched, shape, rng, cond, null_cond=null,
                                   guidance=w if guided else None, method=method, eta=0.0)
            return x

        args = (self.params, self.schedule(steps)) + self.inputs(batch, guided)
        t0 = time.perf_counter()
        compiled = jax.jit(run).lower(*args).compile(
            compiler_options=common.COMPILER_OPTIONS or None)
        return compiled, args, time.perf_counter() - t0

    def loop(self, method: str, batch: int, guided: bool):
        """(run(k), compile_s): a Python loop over a jitted make_step, k steps of a 10-step chain."""
        import jax
        import numpy as np

        from jaxgen.models.diffusion import samplers
        from jaxgen.models.diffusion.network import null_condition

        ncls, shape = self.cfg["num_classes"], (batch,) + self.image

        def one(params, sched, x, i, key, labels, w):
            step = samplers.make_step(self.denoise, sched, method=method, eta=0.0)
            cond = {"label": labels}
            null = null_condition(cond, ncls) if guided else None
            key, sub = jax.random.split(key)
            x, _ = step(params, x, i, sub, cond, null, w if guided else None)
            return x, key

        sched = self.schedule(LOOP_STEPS)
        rng, labels, w = self.inputs(batch, guided)
        x0 = jax.random.normal(rng, shape)
        t0 = time.perf_counter()
        step = jax.jit(one).lower(self.params, sched, x0, np.int32(0), rng, labels, w).compile(
            compiler_options=common.COMPILER_OPTIONS or None)
        compile_s = time.perf_counter() - t0
        params = self.params

        def run(k: int):
            init_key, key = jax.random.split(rng)
            x = jax.random.normal(init_key, shape)
            for i in range(LOOP_STEPS - 1, LOOP_STEPS - 1 - k, -1):
                x, key = step(params, sched, x, np.int32(i), key, labels, w)
            return jax.block_until_ready(x)

        return run, compile_s


def memory_bytes(compiled) -> dict[str, int]:
    m = compiled.memory_analysis()
    out = {k: int(getattr(m, f"{k}_size_in_bytes", 0)) for k in ("temp", "argument", "output",
                                                                  "alias")}
    out["total"] = out["temp"] + out["argument"] + out["output"]
    return out


# ----------------------------------------------------------------------------------------------
# A cell: one model, batch and guidance setting; all its samplers and implementations
# ----------------------------------------------------------------------------------------------


def choose_k(steps: int, step_s: float, max_run_s: float) -> int:
    """All steps when the full chain fits in max_run_s, else the largest k of EXTRAPOLATE_FROM that
    does (at least 1)."""
    if steps * step_s <= max_run_s:
        return steps
    fits = [k for k in EXTRAPOLATE_FROM if k < steps and k * step_s <= max_run_s]
    return max(fits) if fits else 1


def run_cell(name: str, jm: JaxModel, tm, batch: int, guided: bool, opts: dict,
             est_step_s: float | None) -> tuple[list[dict], float]:
    """Times every sampler of one cell; returns (rows, the measured jaxgen fused s per step)."""
    import jax

    cfg, max_run_s = jm.cfg, opts["max_run_s"]
    cands: dict[tuple, dict[str, Any]] = {}  # (impl, method, k) -> {"run", "compile_s"}
    info: dict[str, Any] = {}
    # 1. the cost of one step, from the jitted step of the Python loop (its program is needed
    #    anyway) or, at batches where a step is too slow for the loop to matter, the last cell.
    loop_run = None
    if est_step_s is None or 2 * est_step_s <= max_run_s:
        loop_run, info["compile_s_loop"] = jm.loop("ddim", batch, guided)
        loop_run(1)
        t0 = time.perf_counter()
        loop_run(1)
        est_step_s = time.perf_counter() - t0
        if 2 * est_step_s > max_run_s:
            loop_run = None  # a step is slow enough that per-step dispatch is noise
    info["est_step_s"] = est_step_s
    # 2. the programs of every row
    plan = []
    for label, method, steps in SAMPLERS:
        k = min(choose_k(steps, est_step_s, max_run_s), opts.get("max_k") or steps)
        plan.append((label, method, steps, k))
        if ("fused", method, k) not in cands:
            compiled, args, cs = jm.fused(method, k, batch, guided)
            cands[("fused", method, k)] = {
                "run": (lambda c=compiled, a=args: jax.block_until_ready(c(*a))),
                "compile_s": cs}
        if method == "ddim" and loop_run is not None:
            kl = min(k, LOOP_STEPS)
            cands.setdefault(("loop", method, kl),
                             {"run": (lambda kl=kl: loop_run(kl)),
                              "compile_s": info["compile_s_loop"]})
        if tm is not None and ("torch", method, k) not in cands:
            from benchmarks import torch_diffusion as TD
            w = GUIDANCE_W if guided else None
            if "torch_first_step_s" not in info:  # oneDNN primitives for these shapes
                info["torch_first_step_s"] = TD.first_call_s(TD.sampler(tm, cfg, method, 1,
                                                                        batch, w))
            cands[("torch", method, k)] = {"run": TD.sampler(tm, cfg, method, k, batch, w),
                                           "compile_s": info["torch_first_step_s"]}
    # 3. interleaved rounds; a warm-up call first where it is cheap
    for key, c in cands.items():
        if key[2] * est_step_s * (3 if key[0] == "torch" else 1) <= opts["warmup_max_s"]:
            c["run"]()
    times: dict[tuple, list[float]] = {key: [] for key in cands}
    order, shuffle, start = list(cands), random.Random(batch + 7 * guided).shuffle, time.perf_counter()
    for r in range(opts["rounds"]):
        if r >= 2 and time.perf_counter() - start > opts["cell_cap_s"]:
            break
        shuffle(order)
        for key in order:
            t0 = time.perf_counter()
            cands[key]["run"]()
            times[key].append(time.perf_counter() - t0)
    # 4. rows
    rows = []
    for label, method, steps, k in plan:
        row = {"model": name, "batch": batch, "guidance": GUIDANCE_W if guided else None, "sampler": label,
                   "method": method, "steps": steps, "measured_steps": k, "extrapolated": k < steps}
        for impl in ("fused", "loop", "torch"):
            kk = min(k, LOOP_STEPS) if impl == "loop" else k
            key = (impl, method, kk)
            if key not in times:
                row[f"{impl}_images_per_s"] = None
                continue
            med = statistics.median(times[key])
            row[f"{impl}_s_per_step"] = med / kk
            row[f"{impl}_images_per_s"] = batch / (med * steps / kk)
            row[f"{impl}_measured_steps"] = kk
            row[f"{impl}_times_s"] = times[key]
            row[f"{impl}_compile_s"] = cands[key]["compile_s"]
        f, lp, t = (row[f"{i}_images_per_s"] for i in ("fused", "loop", "torch"))
        row["fused_vs_torch"] = f / t if t else None
        row["fused_vs_loop"] = f / lp if lp else None
        row.update(est_step_s=est_step_s)
        rows.append(row)
        print(f"  {name:6s} B{batch:<3d} {'cfg' if guided else '   '} {label:9s} k={k:<4d} "
              + "  ".join(f"{i}={row[f'{i}_images_per_s']:.2f}/s" for i in ("fused", "loop", "torch")
                          if row[f"{i}_images_per_s"])
              + (f"  vs torch {row['fused_vs_torch']:.2f}x" if row["fused_vs_torch"] else ""),
              flush=True)
    fused_step = min(r["fused_s_per_step"] for r in rows)
    return rows, fused_step


# ----------------------------------------------------------------------------------------------
# Memory: memory_analysis in this process, peak RSS of the run in a fresh one per case
# ----------------------------------------------------------------------------------------------


def memory_analysis(jm: JaxModel, batch: int, steps: tuple[int, int]) -> dict:
    out = {}
    for n in steps:
        compiled, _, cs = jm.fused("ddpm", n, batch, False)
        out[f"ddpm{n}"] = dict(memory_bytes(compiled), compile_s=cs)
    a, b = (out[f"ddpm{n}"]["total"] for n in steps)
    out["ratio_total"] = a / b
    return out


def child_rss(model: str, batch: int, steps: int) -> dict:
    """Inside a fresh process: compile the DDPM chain, reset the peak-RSS mark, run, read it."""
    jm = JaxModel(MODELS[model])
    compiled, args, cs = jm.fused("ddpm", steps, batch, False)

    def status(field: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith(field + ":"))

    rss_before = status("VmRSS")
    try:  # Linux: writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    t0 = time.perf_counter()
    __import__("jax").block_until_ready(compiled(*args))
    run_s = time.perf_counter() - t0
    return {"model": model, "batch": batch, "steps": steps, "compile_s": cs, "run_s": run_s,
                "rss_before_run": rss_before, "peak_rss_run": status("VmHWM"), "peak_reset": reset,
            "memory": memory_bytes(compiled)}


def child_fused_step(model: str, batch: int, k: int, rounds: int = 3) -> dict:
    """Inside a fresh process (its own XLA_FLAGS): seconds per step of the fused DDIM chain."""
    jm = JaxModel(MODELS[model])
    compiled, args, cs = jm.fused("ddim", k, batch, False)
    import jax
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append((time.perf_counter() - t0) / k)
    return {"model": model, "batch": batch, "k": k, "compile_s": cs, "s_per_step": statistics.median(times),
                "times": times, "xla_flags": os.environ.get("XLA_FLAGS", "")}


def run_child(args: list[str], xla_flags: str) -> dict:
    env = dict(os.environ, XLA_FLAGS=xla_flags, JAX_PLATFORMS="cpu")
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "benchmarks.sampling"] + args, env=env, cwd=root,
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def _fmt(v, spec=".2f", none="-"):
    return none if v is None else format(v, spec)


def markdown(payload: dict) -> str:
    env, models = payload["environment"], payload["models"]
    lines = ["# jaxgen diffusion sampling benchmark (CPU)", "",
             f"Command: `{payload['command']}`", "",
             (f"Machine: {env['cpu']}, {env['threads']} threads for both frameworks; JAX "
             f"{env['jax']}, PyTorch {env['torch']}, diffusers {env.get('diffusers')}; "
             f"XLA_FLAGS='{env['xla_flags']}'; load average at start "
             f"{env['loadavg_at_start'][0]:.1f}, at end {env['loadavg_at_end'][0]:.1f}; "
             f"wall time {env['wall_s']:.0f} s."), "", "## Networks", "",
             ("| model | image | channels | jaxgen params | diffusers params | ratio | jaxgen GFLOP/fwd "
             "(XLA) | diffusers GFLOP/fwd (torch counter) |"), "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, m in models.items():
        c = m["config"]
        lines.append(f"| {name} | {c['size']}x{c['size']}x{c['in_channels']} | {tuple(c['channels'])}"
                     f" | {m['jax_params']:,} | {_fmt(m.get('torch_params'), ',')} | "
                     f"{_fmt(m.get('param_ratio'), '.3f')} | {m['jax_gflops_per_forward']:.3f} | "
                     f"{_fmt(m.get('torch_gflops_per_forward'), '.3f')} |")
    lines += ["", ("jaxgen: `Denoiser(num_res_blocks=3, upsample='transpose', attention at the lowest "
              "level, num_heads=4, class labels)`; diffusers: `UNet2DModel(layers_per_block=1, "
              "mid_block_type=None, num_class_embeds=11, same block_out_channels, attention blocks "
              "and norm groups)`. Random weights; classifier-free guidance w = "
              f"{GUIDANCE_W} (conditional and null halves in one batched forward)."), "",
              "## Images/s", "",
              ("fused = `samplers.sample` (one jit over the chain); loop = Python loop over a jitted "
              "`make_step` (DDIM only); diffusers = UNet2DModel + DDIM/DDPMScheduler loop. "
              "'k' = steps actually timed (rows with k < steps are extrapolated from k steps of the "
              "same program); compile = lower + compile of the fused program / the loop step, "
              "torch: first call of one step."), "",
              (f"% ceiling = GFLOP/s sustained (each network's own FLOPs per forward) over the run's "
              f"fp32 matmul ceiling, {payload['ceiling']['ceiling_gflops']:.0f} GFLOP/s."), "",
              ("| model | batch | guidance | sampler | k | jaxgen fused | jaxgen loop | diffusers | "
              "fused / diffusers | fused / loop | % ceiling (fused / diffusers) | "
              "compile s (fused / loop / torch) |"),
              "|---|---:|---|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in payload["rows"]:
        k = f"{r['measured_steps']}" + (" (extrapolated)" if r["extrapolated"] else "")
        lines.append(
            f"| {r['model']} | {r['batch']} | {'w={:g}'.format(r['guidance']) if r['guidance'] else 'none'} "
            f"| {r['sampler']} | {k} | {_fmt(r['fused_images_per_s'], '.3g')} | "
            f"{_fmt(r['loop_images_per_s'], '.3g')} | {_fmt(r['torch_images_per_s'], '.3g')} | "
            f"{_fmt(r['fused_vs_torch'])}x | {_fmt(r['fused_vs_loop'])}x | "
            f"{_fmt(r.get('fused_pct_ceiling'), '.0f')} / {_fmt(r.get('torch_pct_ceiling'), '.0f')} | "
            f"{_fmt(r.get('fused_compile_s'), '.1f')} / {_fmt(r.get('loop_compile_s'), '.1f')} / "
            f"{_fmt(r.get('torch_compile_s'), '.1f')} |")
    mem = payload["memory"]
    lines += ["", "## Memory: 1000-step vs 10-step sampling (jaxgen fused DDPM)", "",
              "| model | batch | measure | 1000 (or N) steps | 10 steps | ratio |", "|---|---:|---|---:|---:|---:|"]
    for name, m in mem.get("analysis", {}).items():
        (ka, a), (kb, b) = [(k, v) for k, v in m.items() if k.startswith("ddpm")]
        lines.append(f"| {name} | {m['batch']} | memory_analysis temp+arg+out ({ka} vs {kb}) | "
                     f"{a['total'] / 2**20:.2f} MiB | {b['total'] / 2**20:.2f} MiB | "
                     f"{m['ratio_total']:.4f} |")
    rss = mem.get("rss")
    if rss:
        a, b = rss["runs"]
        lines.append(f"| {a['model']} | {a['batch']} | peak RSS during the run, fresh process "
                     f"(DDPM-{a['steps']} vs DDPM-{b['steps']}) | {a['peak_rss_run'] / 2**20:.0f} MiB | "
                     f"{b['peak_rss_run'] / 2**20:.0f} MiB | {rss['ratio']:.4f} |")
    fl = payload.get("xla_flags_comparison")
    if fl:
        lines += ["", "## XLA CPU flags", "",
                  (f"Fused DDIM, {fl['model']} batch {fl['batch']}, {fl['k']} steps, each setting in "
                  "its own process:"), "", "| XLA_FLAGS | s/step | compile s |", "|---|---:|---:|"]
        for r in fl["runs"]:
            lines.append(f"| `{r['xla_flags'] or '(XLA defaults)'}` | {r['s_per_step']:.3f} | "
                         f"{r['compile_s']:.1f} |")
    s = payload["summary"]
    lines += ["", "## Summary", ""] + [f"- {k}: {v}" for k, v in s.items()]
    return "\n".join(lines) + "\n"


def add_throughput(rows: list[dict], models: dict, ceiling_gflops: float) -> None:
    """GFLOP/s each implementation sustains (its own network's FLOPs per forward x forwards per
    step / s per step) and the percent of the run's matmul ceiling that is: a step of the larger
    U-Net is compute-bound, so these say how far any sampler could still go on this machine."""
    for r in rows:
        forwards = r["batch"] * (2 if r["guidance"] else 1)  # guidance: conditional + null halves
        m = models[r["model"]]
        for impl, key in (("fused", "jax_gflops_per_forward"), ("loop", "jax_gflops_per_forward"),
                          ("torch", "torch_gflops_per_forward")):
            sps = r.get(f"{impl}_s_per_step")
            if sps and m.get(key):
                r[f"{impl}_gflops"] = forwards * m[key] / sps
                r[f"{impl}_pct_ceiling"] = 100.0 * r[f"{impl}_gflops"] / ceiling_gflops


def summarize(rows: list[dict], memory: dict, models: dict, ceiling: dict) -> dict:
    out: dict[str, Any] = {}
    for r in rows:
        if r["sampler"] == "DDIM-50" and r["batch"] == 16 and r["fused_vs_torch"]:
            g = "guided" if r["guidance"] else "unguided"
            out[f"ddim50_b16_{r['model']}_{g}_fused_vs_diffusers"] = round(r["fused_vs_torch"], 3)
            if r.get("torch_pct_ceiling"):
                # 1.5x diffusers' images/s means jaxgen's own FLOPs at 1.5 x diffusers' rate scaled
                # by the FLOP ratio of the two networks: above 100 % the goal exceeds the machine.
                need = 1.5 * r["fused_pct_ceiling"] / r["fused_vs_torch"]
                out[f"ddim50_b16_{r['model']}_{g}_pct_ceiling_fused_diffusers_needed_for_1.5x"] = (
                    f"{r['fused_pct_ceiling']:.0f} / {r['torch_pct_ceiling']:.0f} / {need:.0f}")
    ratios = [r["fused_vs_torch"] for r in rows if r["fused_vs_torch"]]
    if ratios:
        out["fused_vs_diffusers_geomean_all_rows"] = round(
            math.exp(sum(map(math.log, ratios)) / len(ratios)), 3)
        d50 = [r["fused_vs_torch"] for r in rows if r["fused_vs_torch"] and r["batch"] == 16
               and r["sampler"] == "DDIM-50"]
        out["goal_ddim50_b16_ge_1.5x_met"] = (min(d50) >= 1.5) if d50 else None
    for b in sorted({r["batch"] for r in rows}):
        lr = [r["fused_vs_loop"] for r in rows if r["fused_vs_loop"] and r["batch"] == b]
        if lr:
            out[f"fused_vs_loop_batch{b}"] = f"{min(lr):.2f}-{max(lr):.2f}x"
    for name, m in memory.get("analysis", {}).items():
        out[f"memory_{name}_1000_vs_10_steps"] = round(m["ratio_total"], 4)
    if memory.get("rss"):
        out["peak_rss_run_1000_vs_10_steps"] = round(memory["rss"]["ratio"], 4)
    for name, m in models.items():
        if m.get("param_ratio"):
            out[f"params_{name}_jaxgen_over_diffusers"] = round(m["param_ratio"], 4)
    # The ceiling is the faster framework's matmul; XLA's own matmul rate bounds what XLA's kernels reach.
    out[f"matmul_{ceiling['matmul_n']}_gflops_jax_torch"] = " / ".join(
        f"{ceiling[k]:.0f}" if k in ceiling else "-" for k in ("jax_gflops", "torch_gflops"))
    return out


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny U-Net, batch 2, few steps (smoke)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--models", default=None, help="comma list of " + ",".join(MODELS))
    ap.add_argument("--batches", default=None, help="comma list, e.g. 1,16,128")
    ap.add_argument("--guidance", default="no,yes", help="no,yes | no | yes")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--max-run-s", type=float, default=None,
                    help="longest single timed run; longer chains are extrapolated from k steps")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-flags", action="store_true", help="skip the XLA flags comparison")
    ap.add_argument("--xla-flags", default=None,
                    help="XLA_FLAGS for this run (default jaxgen.nn.RECOMMENDED_CPU_XLA_FLAGS)")
    ap.add_argument("--threads", type=int, default=None, help="cores (default all; --quick: 1)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:  # internal: python -m benchmarks.sampling --child rss:model:batch:steps
        kind, model, batch, n = args.child.split(":")
        if args.quick:
            common.COMPILER_OPTIONS["xla_backend_optimization_level"] = 0
        fn = child_rss if kind == "rss" else child_fused_step
        print(json.dumps(fn(model, int(batch), int(n))))
        return 0
    if "jax" in sys.modules:
        from jax._src import xla_bridge
        if getattr(xla_bridge, "_backends", None):
            print("XLA flags must be set before JAX starts; run in a fresh process.", file=sys.stderr)
            return 2
    from jaxgen.nn.conv import RECOMMENDED_CPU_XLA_FLAGS
    flags = RECOMMENDED_CPU_XLA_FLAGS if args.xla_flags is None else args.xla_flags
    base_flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                          if "xla_force_host_platform_device_count" not in f)
    os.environ["XLA_FLAGS"] = f"{base_flags} {flags}".strip()
    cfg = dict(QUICK if args.quick else FULL)
    threads = args.threads or (1 if args.quick else common.num_threads())
    if threads < common.num_threads():
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    if args.quick:
        common.COMPILER_OPTIONS["xla_backend_optimization_level"] = 0
    models = args.models.split(",") if args.models else list(cfg["models"])
    batches = [int(b) for b in args.batches.split(",")] if args.batches else list(cfg["batches"])
    guid = [g == "yes" for g in args.guidance.split(",")]
    opts = {"rounds": args.rounds or cfg["rounds"], "max_run_s": args.max_run_s or cfg["max_run_s"],
                "cell_cap_s": cfg["cell_cap_s"], "warmup_max_s": 1.5 if not args.quick else 0.5,
                "max_k": 5 if args.quick else None}

    from benchmarks import torch_diffusion as TD
    use_torch = not args.no_torch and TD.available() and common.setup_torch(threads)
    t_start = time.perf_counter()
    env = common.environment()
    env["threads"] = threads
    if use_torch:
        import diffusers
        env["diffusers"] = diffusers.__version__
        env["torch_threads"] = __import__("torch").get_num_threads()
    print(f"threads {threads}; torch {'on' if use_torch else 'off'}; XLA_FLAGS="
          f"'{os.environ['XLA_FLAGS']}'", flush=True)

    # The machine's fp32 ceiling, measured in this run (a large matmul, both frameworks; again at
    # the end, the best of the two counts).
    ceiling = common.measure_ceiling(n=512 if args.quick else 2048)
    print(f"fp32 ceiling {ceiling['ceiling_gflops']:.0f} GFLOP/s (matmul {ceiling['matmul_n']})", flush=True)
    model_info, rows, jms = {}, [], {}
    for name in models:
        mc = MODELS[name]
        jm = jms[name] = JaxModel(mc)
        info = {"config": mc, "jax_params": jm.num_params, "jax_gflops_per_forward": jm.forward_gflops()}
        tm = None
        if use_torch:
            tm = TD.build(mc)
            info.update(torch_params=TD.num_params(tm), torch_gflops_per_forward=TD.forward_gflops(
                TD.build(mc, channels_last=False), mc))
            info["param_ratio"] = info["jax_params"] / info["torch_params"]
        model_info[name] = info
        print(f"{name}: jaxgen {info['jax_params']:,} params, "
              f"{info['jax_gflops_per_forward']:.3f} GFLOP/forward; diffusers "
              f"{info.get('torch_params', 0):,} params, "
              f"{info.get('torch_gflops_per_forward', 0):.3f} GFLOP/forward; ratio "
              f"{info.get('param_ratio', float('nan')):.4f}", flush=True)
        if use_torch and abs(info["param_ratio"] - 1.0) > PARAM_TOLERANCE:
            raise SystemExit(f"{name}: parameter counts differ by more than "
                             f"{PARAM_TOLERANCE:.0%}: jaxgen {info['jax_params']:,}, diffusers "
                             f"{info['torch_params']:,}; fix MODELS['{name}'].")
        for guided in guid:
            per_image_step = None
            for b in batches:
                t0 = time.perf_counter()
                est = None if per_image_step is None else per_image_step * b
                cell_rows, fused_step = run_cell(name, jm, tm, b, guided, opts,
                                                 est if b > 16 else None)
                per_image_step = fused_step / b
                rows += cell_rows
                env[f"cell_s_{name}_b{b}_{'cfg' if guided else 'plain'}"] = round(
                    time.perf_counter() - t0, 1)

    memory: dict[str, Any] = {}
    if not args.no_memory:
        n_long, n_short = cfg["rss_steps"]
        # The RSS children compile both chains anyway: they report memory_analysis for their model
        # (same batch), this process compiles both chains of the other models.
        rss_model = cfg["rss_model"] if cfg["rss_model"] in models else models[0]
        runs = [run_child(["--child", f"rss:{rss_model}:{cfg['memory_batch']}:{n}"]
                          + (["--quick"] if args.quick else []),
                          os.environ["XLA_FLAGS"]) for n in (n_long, n_short)]
        memory["rss"] = {"runs": runs, "ratio": runs[0]["peak_rss_run"] / runs[1]["peak_rss_run"]}
        print(f"peak RSS during the run: DDPM-{n_long} {runs[0]['peak_rss_run'] / 2**20:.0f} MiB, "
              f"DDPM-{n_short} {runs[1]['peak_rss_run'] / 2**20:.0f} MiB", flush=True)
        memory["analysis"] = {}
        for name in models:
            if name == rss_model:
                m = {f"ddpm{r['steps']}": dict(r["memory"], compile_s=r["compile_s"]) for r in runs}
                m["ratio_total"] = runs[0]["memory"]["total"] / runs[1]["memory"]["total"]
            else:
                m = memory_analysis(jms[name], cfg["memory_batch"], (n_long, n_short))
            m["batch"] = cfg["memory_batch"]
            memory["analysis"][name] = m
            print(f"memory_analysis {name} B{cfg['memory_batch']}: DDPM-{n_long} "
                  f"{m[f'ddpm{n_long}']['total'] / 2**20:.2f} MiB, DDPM-{n_short} "
                  f"{m[f'ddpm{n_short}']['total'] / 2**20:.2f} MiB, ratio {m['ratio_total']:.4f}",
                  flush=True)
    flags_cmp = None
    if cfg["flags_case"] and not args.no_flags and cfg["flags_case"][0] in models:
        m, b, k = cfg["flags_case"]
        runs = [run_child(["--child", f"step:{m}:{b}:{k}"], f"{base_flags} {f}".strip())
                for f in ("", RECOMMENDED_CPU_XLA_FLAGS)]
        flags_cmp = {"model": m, "batch": b, "k": k, "runs": runs}
        print("XLA flags: " + ", ".join(f"'{r['xla_flags']}' {r['s_per_step']:.3f} s/step"
                                       for r in runs), flush=True)

    env["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    env["wall_s"] = time.perf_counter() - t_start
    cmd = "python -m benchmarks.sampling " + " ".join(argv if argv is not None else sys.argv[1:])
    ceiling = common.best_ceiling(ceiling, common.measure_ceiling(n=ceiling["matmul_n"]))
    add_throughput(rows, model_info, ceiling["ceiling_gflops"])
    payload = {"command": cmd.strip(), "environment": env, "options": opts, "models": model_info,
               "ceiling": ceiling, "rows": rows, "memory": memory, "xla_flags_comparison": flags_cmp,
               "summary": summarize(rows, memory, model_info, ceiling)}
    out = Path(args.out)
    common.write_json(out / "sampling.json", payload)
    (out / "sampling.md").write_text(markdown(payload))
    print(json.dumps(payload["summary"], indent=1))
    print(f"wrote {out}/sampling.json, sampling.md in {env['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
