"""The ratio tables of the committed benchmark results, generated from their JSON.

    python -m benchmarks.summarize            # writes benchmarks/results/summary.{md,json}
    python -m benchmarks.summarize --check    # exit 1 if the committed summary is stale

benchmarks/README.md links to results/summary.md instead of transcribing numbers, so every ratio it
quotes is recomputed from the rows of the run that produced it (results/kernels.json,
results/sampling.json, and where committed the extra sampling runs in OPTIONAL): geometric means over
the shapes of a group, per-shape ranges, percent of the measured fp32 ceiling, sampling throughput
ratios, memory and compile times. tests/benchmarks/test_summary.py fails when summary.md differs from
what this script makes of the committed JSON, so a re-run benchmark with a stale table fails CI.

Ratios are speed-ups: time of the other implementation over time of the jaxgen one (> 1: jaxgen
faster); for sampling, images/s of jaxgen over images/s of the other.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
MIB = 2 ** 20
# Runs that back numbers in the READMEs but write to their own --out folder; quoted only when their
# JSON is committed there, otherwise the summary names the command that would write it.
OPTIONAL = {
    "sampling_threads1": (
        "sampling_threads1/sampling.json",
        "python -m benchmarks.sampling --threads 1 --batches 16 --guidance no --no-memory --no-flags "
        "--out benchmarks/results/sampling_threads1"),
    "sampling_large_quiet": (
        "sampling_large_quiet/sampling.json",
        "python -m benchmarks.sampling --models large --batches 16 --guidance no --no-memory --no-flags "
        "--out benchmarks/results/sampling_large_quiet"),
}

# (label, group, jaxgen implementation, the implementation it is compared with)
KERNEL_COMPARISONS = (
    ("sub-pixel transposed conv vs `lax.conv_transpose`, stride 2", "conv_transpose s2", "jaxgen subpixel",
     "lax.conv_transpose"),
    ("sub-pixel vs `flax.linen.ConvTranspose`, stride 2", "conv_transpose s2", "jaxgen subpixel",
     "flax ConvTranspose"),
    ("sub-pixel vs PyTorch `conv_transpose2d`, stride 2", "conv_transpose s2", "jaxgen subpixel", "torch"),
    ("sub-pixel vs `lax.conv_transpose`, stride 1", "conv_transpose s1", "jaxgen subpixel", "lax.conv_transpose"),
    ("sub-pixel vs PyTorch, stride 1", "conv_transpose s1", "jaxgen subpixel", "torch"),
    ("nearest up-sample + conv, fused (sub-pixel) vs PyTorch", "upsample nearest + conv",
     "jaxgen fused (sub-pixel)", "torch"),
    ("nearest up-sample + conv, fused vs jaxgen up-sample then conv", "upsample nearest + conv",
     "jaxgen fused (sub-pixel)", "jaxgen upsample+conv"),
    ("bilinear up-sample + conv vs PyTorch", "upsample bilinear + conv", "jaxgen upsample+conv", "torch"),
    ("bilinear up-sample (two-tap stencils) + conv vs `jax.image.resize` + conv", "upsample bilinear + conv",
     "jaxgen upsample+conv", "jax.image.resize+conv"),
    ("conv2d 3x3 vs PyTorch", "conv 3x3", "jaxgen conv2d", "torch"),
    ("U-Net forward vs PyTorch eager", "unet forward", "jaxgen UNet", "torch"),
    ("U-Net forward + backward vs PyTorch eager", "unet forward+backward", "jaxgen UNet", "torch"),
)
# (label, group, implementation, shape filter) for the percent-of-ceiling ranges
CEILING_RANGES = (
    ("conv2d 3x3, stride 1", "conv 3x3", "jaxgen conv2d", " s1"),
    ("PyTorch conv 3x3, stride 1", "conv 3x3", "torch", " s1"),
    ("sub-pixel transposed conv, stride 2", "conv_transpose s2", "jaxgen subpixel", ""),
    ("`lax.conv_transpose`, stride 2", "conv_transpose s2", "lax.conv_transpose", ""),
    ("PyTorch `conv_transpose2d`, stride 2", "conv_transpose s2", "torch", ""),
)


def geomean(values: list[float]) -> float:
    """Geometric mean of positive numbers (the mean of speed-ups that compose multiplicatively)."""
    return math.exp(sum(math.log(v) for v in values) / len(values))


def span(values: list[float], fmt: str = ".2f", unit: str = "") -> str:
    """'lo-hi' (or the one value) of a list, formatted; '-' for none."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return f"{lo}{unit}" if lo == hi else f"{lo}-{hi}{unit}"


# ------------------------------------------------------------------------------------ kernels
def kernel_ratios(rows: list[dict], group: str, impl: str, other: str) -> list[tuple[str, float]]:
    """(shape, other's median ms / impl's median ms) for every shape of `group` timed with both."""
    by = {(r["shape"], r["impl"]): r["median_ms"] for r in rows if r["group"] == group}
    shapes = dict.fromkeys(r["shape"] for r in rows if r["group"] == group)  # in run order
    return [(s, by[(s, other)] / by[(s, impl)]) for s in shapes if (s, impl) in by and (s, other) in by]


def kernels(payload: dict) -> tuple[dict, list[str]]:
    rows, env, ceil = payload["rows"], payload["environment"], payload["ceiling"]
    data: dict[str, Any] = {"ceiling_gflops": ceil["ceiling_gflops"], "jax_matmul_gflops": ceil.get("jax_gflops"),
                            "torch_matmul_gflops": ceil.get("torch_gflops"), "comparisons": [], "pct_ceiling": []}
    md = ["## Kernels", "",
          f"From `results/kernels.json` (`{payload['command']}`, {env.get('time', '?')}, load average "
          f"{_load(env)}). fp32 ceiling {ceil['ceiling_gflops']:.0f} GFLOP/s (matmul: JAX "
          f"{ceil.get('jax_gflops', float('nan')):.0f}, PyTorch {ceil.get('torch_gflops', float('nan')):.0f}).", "",
          "| comparison | geometric mean over shapes | per shape | shapes | within 10 % or faster |",
          "|---|---:|---:|---:|---:|"]
    for label, group, impl, other in KERNEL_COMPARISONS:
        ratios = kernel_ratios(rows, group, impl, other)
        if not ratios:
            continue
        values = [v for _, v in ratios]
        g = geomean(values)
        data["comparisons"].append({"comparison": label, "group": group, "impl": impl, "vs": other,
                                    "geomean": g, "per_shape": dict(ratios)})
        close = sum(v >= 0.9 for v in values)
        md.append(f"| {label} | {g:.2f}x | {span(values, unit='x')} | {len(values)} | {close} of {len(values)} |")
    md += ["", "Percent of the ceiling (GFLOP/s of the operation's own FLOPs over the ceiling):", "",
           "| rows | % of ceiling |", "|---|---:|"]
    for label, group, impl, shape_filter in CEILING_RANGES:
        pct = [r["pct_ceiling"] for r in rows if r["group"] == group and r["impl"] == impl
               and r["shape"].endswith(shape_filter)]
        if pct:
            data["pct_ceiling"].append({"rows": label, "min": min(pct), "max": max(pct)})
            md.append(f"| {label} | {span(pct, '.0f', ' %')} |")
    return data, md


# ------------------------------------------------------------------------------------ sampling
def _fastest_round(r: dict) -> float | None:
    """fused / diffusers images/s from each one's fastest round (the medians are the table's figure)."""
    if not r.get("torch_times_s") or not r.get("fused_times_s"):
        return None
    torch_step = min(r["torch_times_s"]) / r["torch_measured_steps"]
    fused_step = min(r["fused_times_s"]) / r["fused_measured_steps"]
    return torch_step / fused_step


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _guidance(r: dict) -> str:
    return "none" if r["guidance"] is None else f"w={r['guidance']:g}"


def _load(env: dict) -> str:
    start, end = env.get("loadavg_at_start"), env.get("loadavg_at_end")
    return f"{start[0]:.1f} -> {end[0]:.1f}" if start and end else "?"


def ddim50_b16_rows(payload: dict, source: str) -> list[dict]:
    """The DDIM-50 batch-16 rows of one sampling run (the goal's cell), as table records."""
    threads = payload["environment"].get("threads")
    out = []
    for r in payload["rows"]:
        if r["sampler"] != "DDIM-50" or r["batch"] != 16:
            continue
        out.append({"source": source, "model": r["model"], "guidance": _guidance(r), "threads": threads,
                    "fused_images_per_s": r.get("fused_images_per_s"), "loop_images_per_s": r.get("loop_images_per_s"),
                    "diffusers_images_per_s": r.get("torch_images_per_s"),
                    "fused_vs_diffusers": r.get("fused_vs_torch"),
                    "fused_vs_diffusers_fastest_round": _fastest_round(r),
                    "fused_pct_ceiling": r.get("fused_pct_ceiling"),
                    "diffusers_pct_ceiling": r.get("torch_pct_ceiling")})
    return out


def sampling(payload: dict, extra: dict[str, dict]) -> tuple[dict, list[str]]:
    rows, env = payload["rows"], payload["environment"]
    ddim = ddim50_b16_rows(payload, "sampling.json")
    for name, p in extra.items():
        ddim += ddim50_b16_rows(p, f"{name}/sampling.json")
    md = ["## Diffusion sampling", "",
          f"From `results/sampling.json` (`{payload['command']}`, {env.get('time', '?')}, {env.get('threads')} "
          f"threads, load average {_load(env)}, wall time {env.get('wall_s', float('nan')):.0f} s)"
          + "".join(f" and `results/{OPTIONAL[n][0]}` (load average {_load(p['environment'])})"
                    for n, p in extra.items()) + ".", "",
          "DDIM-50, batch 16, images/s (the goal: jaxgen fused >= 1.5x diffusers):", "",
          "| run | model | guidance | threads | jaxgen fused | jaxgen loop | diffusers | fused / diffusers (median) "
          "| (fastest round) | % ceiling fused / diffusers |",
          "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for d in ddim:
        md.append(f"| {d['source']} | {d['model']} | {d['guidance']} | {d['threads']} | "
                  f"{_fmt(d['fused_images_per_s'], '.3g')} | {_fmt(d['loop_images_per_s'], '.3g')} | "
                  f"{_fmt(d['diffusers_images_per_s'], '.3g')} | {_fmt(d['fused_vs_diffusers'], '.2f')}x | "
                  f"{_fmt(d['fused_vs_diffusers_fastest_round'], '.2f')}x | "
                  f"{_fmt(d['fused_pct_ceiling'], '.0f')} / {_fmt(d['diffusers_pct_ceiling'], '.0f')} |")
    data: dict[str, Any] = {"ddim50_b16": ddim, "ranges": []}

    def add(label: str, values: list[float], fmt: str = ".2f", unit: str = "x") -> None:
        values = [v for v in values if v is not None]
        if values:
            data["ranges"].append({"what": label, "min": min(values), "max": max(values)})
            md.append(f"| {label} | {span(values, fmt, unit)} |")

    md += ["", "Ranges over the rows of `results/sampling.json`:", "", "| what | range |", "|---|---:|"]
    for b in sorted({r["batch"] for r in rows}):
        add(f"fused / diffusers, batch {b}, every model, sampler and guidance",
            [r.get("fused_vs_torch") for r in rows if r["batch"] == b])
    add("fused / diffusers, DDIM-50 batch 16",
        [d["fused_vs_diffusers"] for d in ddim if d["source"] == "sampling.json"])
    for model in dict.fromkeys(r["model"] for r in rows):
        add(f"fused / diffusers, batch 128, {model} U-Net",
            [r.get("fused_vs_torch") for r in rows if r["batch"] == 128 and r["model"] == model])
    for b in sorted({r["batch"] for r in rows}):
        add(f"fused / Python loop of jitted steps, batch {b}",
            [r.get("fused_vs_loop") for r in rows if r["batch"] == b])
    add("fused / loop, digits, batch 1, no guidance",
        [r.get("fused_vs_loop") for r in rows if r["batch"] == 1 and r["model"] == "digits" and r["guidance"] is None])
    for name, p in extra.items():
        add(f"fused / loop, batch 16 ({name})", [r.get("fused_vs_loop") for r in p["rows"] if r["batch"] == 16])
    for impl, label in (("fused", "compile s, fused chain"), ("loop", "compile s, one loop step"),
                        ("torch", "torch first call of one step, s")):
        add(label, [r.get(f"{impl}_compile_s") for r in rows], ".1f", "")
    for sampler in ("DDIM-50", "DDIM-10"):
        add(f"fused s/step, digits batch 16, no guidance, {sampler}",
            [r.get("fused_s_per_step") for r in rows if r["model"] == "digits" and r["batch"] == 16
             and r["guidance"] is None and r["sampler"] == sampler], ".3f", "")
    ratios = [r["fused_vs_torch"] for r in rows if r.get("fused_vs_torch")]
    if ratios:
        data["fused_vs_diffusers_geomean_all_rows"] = geomean(ratios)
        md.append(f"| fused / diffusers, geometric mean of all {len(ratios)} rows | {geomean(ratios):.2f}x |")

    md += ["", "Memory and XLA flags:", "", "| what | value |", "|---|---:|"]
    analysis = payload.get("memory", {}).get("analysis", {})
    for model, a in analysis.items():
        long, short, ratio = a["ddpm1000"]["total"] / MIB, a["ddpm10"]["total"] / MIB, a["ratio_total"]
        data[f"memory_analysis_{model}"] = {"ddpm1000_mib": long, "ddpm10_mib": short, "ratio": ratio}
        md.append(f"| memory_analysis temp+arg+out, {model} batch {a['batch']}, DDPM-1000 vs DDPM-10 | "
                  f"{long:.2f} vs {short:.2f} MiB ({ratio:.4f}) |")
    rss = payload.get("memory", {}).get("rss", {})
    if rss.get("runs"):
        peaks = {r["steps"]: r["peak_rss_run"] / MIB for r in rss["runs"]}
        long, short = peaks[max(peaks)], peaks[min(peaks)]
        data["peak_rss"] = {"long_mib": long, "short_mib": short, "ratio": rss["ratio"]}
        md.append(f"| peak RSS during the run, {rss['runs'][0]['model']} batch {rss['runs'][0]['batch']}, "
                  f"DDPM-{max(peaks)} vs DDPM-{min(peaks)} | {long:.0f} vs {short:.0f} MiB ({rss['ratio']:.3f}) |")
    flags = payload.get("xla_flags_comparison")
    if flags and len(flags.get("runs", [])) == 2:
        default, tuned = (next(r for r in flags["runs"] if bool(r["xla_flags"]) == t) for t in (False, True))
        speed = default["s_per_step"] / tuned["s_per_step"]
        data["xla_flags"] = {"defaults_s_per_step": default["s_per_step"], "tuned_s_per_step": tuned["s_per_step"],
                             "tuned_speedup": speed, "tuned_flags": tuned["xla_flags"]}
        md.append(f"| {flags['model']} U-Net batch {flags['batch']}, s/step with XLA defaults vs "
                  f"`{tuned['xla_flags']}` | {default['s_per_step']:.3f} vs {tuned['s_per_step']:.3f} "
                  f"({speed:.2f}x) |")
    return data, md


# ------------------------------------------------------------------------------------ whole summary
def summarize(results: Path = RESULTS) -> tuple[dict, str]:
    """(summary dict, summary markdown) of the JSON files committed under `results`."""
    load = lambda name: json.loads((results / name).read_text())  # noqa: E731
    extra = {n: load(path) for n, (path, _) in OPTIONAL.items() if (results / path).exists()}
    k_data, k_md = kernels(load("kernels.json"))
    s_data, s_md = sampling(load("sampling.json"), extra)
    missing = [(n, cmd) for n, (path, cmd) in OPTIONAL.items() if n not in extra]
    md = ["# Benchmark summary (generated)", "",
          "Written by `python -m benchmarks.summarize` from the committed JSON in benchmarks/results; do not "
          "edit by hand (tests/benchmarks/test_summary.py fails when this file is stale). Ratios > 1: jaxgen "
          "faster.", "", *k_md, "", *s_md]
    if missing:
        md += ["", "## Runs not committed", "",
               "Numbers quoted from these runs are not backed by a results file; each command writes one:", ""]
        md += [f"- {n}: `{cmd}`" for n, cmd in missing]
    data = {"sources": ["kernels.json", "sampling.json"] + [OPTIONAL[n][0] for n in extra],
            "missing": dict(missing), "kernels": k_data, "sampling": s_data}
    return data, "\n".join(md) + "\n"


def render(results: Path = RESULTS) -> dict[str, str]:
    """{file name: text} of summary.md and summary.json, exactly as written."""
    data, md = summarize(results)
    return {"summary.md": md, "summary.json": json.dumps(data, indent=1, sort_keys=True) + "\n"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS), help="folder of the benchmark JSON files")
    ap.add_argument("--out", default=None, help="where summary.{md,json} go (default: --results)")
    ap.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    args = ap.parse_args(argv)
    results = Path(args.results)
    for name in ("kernels.json", "sampling.json"):
        if not (results / name).exists():
            print(f"{results / name} does not exist; run the benchmark that writes it first "
                  f"(python -m benchmarks.{name[:-5]}).", file=sys.stderr)
            return 2
    out = Path(args.out or results)
    files = render(results)
    if args.check:
        stale = [n for n, text in files.items() if not (out / n).exists() or (out / n).read_text() != text]
        if stale:
            print(f"stale: {', '.join(stale)} in {out}; run python -m benchmarks.summarize", file=sys.stderr)
        return 1 if stale else 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    print(files["summary.md"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
