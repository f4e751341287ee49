"""The host input pipeline: a split in memory against the same split streamed from its ArrayRecord
files (jaxgen.data.streaming), and train steps fed as before (in memory, each batch made on the
main thread) against the loop's prefetched feeds.

    python -m benchmarks.input_pipeline [--quick] [--rounds 10] [--out benchmarks/results]

Part 1, host batch: milliseconds to make one host batch (`Dataset.batch` of the next step: the
epoch permutation, this process's rows, and for a streamed split their reads and decoding), for the
embedded datasets' train splits, in-memory and streamed candidates timed in interleaved rounds
(benchmarks.common.time_interleaved), median reported.

Part 2, train step: milliseconds per train step of a config through the loop's own step function,
input included, as jaxgen.train.loop runs it (at most two steps in flight), for four feeds: the
split in memory made on the main thread (the loop before prefetching: the baseline), in memory and
streamed through `loop.Prefetcher`, and streamed on the main thread. The feeds run in interleaved
blocks of steps on one compiled step and one state, so the machine's load hits them alike; the
median block is reported, with its ratio to the baseline (> 1: slower than the baseline).

Writes <out>/input_pipeline.json and <out>/input_pipeline.md.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from benchmarks import common

# The train-step configs: one per embedded dataset, small enough for a shared 2-core machine
# (unet_shapes reads images and masks, so a streamed batch decodes two features).
FULL = {"datasets": [("digits", 128), ("shapes", 32), ("shapes", 128)],
        "configs": ["vae_digits", "unet_shapes"], "rounds": 10, "block": 10}
QUICK = {"datasets": [("digits", 32)], "configs": ["vae_digits:quick"], "rounds": 2, "block": 3}
FEEDS = ("in memory", "in memory + prefetch", "streamed + prefetch", "streamed")
BASELINE = FEEDS[0]


def host_batch_rows(datasets: list[tuple[str, int]], rounds: int) -> list[dict]:
    """Part 1: one row per (dataset, batch, features)."""
    from jaxgen import data

    rows = []
    for name, b in datasets:
        memory, streamed = data.load(name, "train"), data.load(name, "train", in_memory=False)
        for keys in (("image",), None):
            steps = {"memory": 0, "streamed": 0}

            def candidate(d, which):
                def run():
                    steps[which] += 1  # a new step each call: its own rows, as in training
                    return d.batch(0, steps[which], b, keys=keys)
                return common.Prepared(run, 0.0)

            times = common.time_interleaved({"memory": candidate(memory, "memory"),
                                             "streamed": candidate(streamed, "streamed")},
                                            rounds=max(rounds, 5), min_round_s=0.05)
            mem, st = (1e3 * statistics.median(times[k]) for k in ("memory", "streamed"))
            rows.append({"dataset": name, "batch": b, "features": "image" if keys else "all",
                         "in_memory_ms": mem, "streamed_ms": st, "streamed_vs_in_memory": st / mem})
            print(f"host batch {name} b={b} {rows[-1]['features']}: in memory {mem:.3f} ms, "
                  f"streamed {st:.3f} ms", flush=True)
    return rows


def train_step_rows(config_name: str, rounds: int, block: int) -> list[dict]:
    """Part 2: one row per feed of one config."""
    import jax

    from jaxgen import config as config_lib
    from jaxgen import data
    from jaxgen.train import loop
    from jaxgen.train.parallel import configure_jax

    configure_jax()  # the settings `jaxgen train` runs with
    config = config_lib.load(config_name)
    task, step_fn = loop.setup(config)
    d = config.data
    splits = {"in memory": task.dataset,
              "streamed": data.load(d.name, d.split, d.get("data_dir"), in_memory=False)}
    assert not splits["in memory"].streamed and splits["streamed"].streamed
    state = step_fn.put_state(loop.init_state(task, config))
    start = time.perf_counter()
    state, metrics = step_fn(state, step_fn.put_batch(task.host_batch(0)))
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    step = 1
    times: dict[str, list[float]] = {f: [] for f in FEEDS}
    order = list(FEEDS)
    for _ in range(rounds):
        random.Random(step).shuffle(order)
        for feed in order:
            task.dataset = splits["streamed" if feed.startswith("streamed") else "in memory"]
            prefetch = loop.Prefetcher(task.host_batch, step, step + block + 1) if "prefetch" in feed else None
            get = prefetch.get if prefetch else task.host_batch
            try:
                # the block's first step untimed: a run's prefetcher gets a head start while the
                # step compiles, and this one should not pay its thread's start instead
                state, previous = step_fn(state, step_fn.put_batch(get(step)))
                t0 = time.perf_counter()
                for s in range(step + 1, step + block + 1):
                    state, metrics = step_fn(state, step_fn.put_batch(get(s)))
                    jax.block_until_ready(previous)  # at most two steps in flight, as in the loop
                    previous = metrics
                jax.block_until_ready((state, metrics))
                times[feed].append((time.perf_counter() - t0) / block)
            finally:
                if prefetch:
                    prefetch.close()
            step += block + 1
    task.dataset = splits["in memory"]
    base = statistics.median(times[BASELINE])
    rows = []
    for feed in FEEDS:
        ms = 1e3 * statistics.median(times[feed])
        rows.append({"config": config_name, "feed": feed, "global_batch": config.train.batch_size,
                     "devices": step_fn.num_devices, "ms_per_step": ms, "vs_baseline": ms / (1e3 * base),
                     "steps": rounds * block, "compile_s": compile_s})
        print(f"train step {config_name} {feed}: {ms:.2f} ms ({rows[-1]['vs_baseline']:.3f}x baseline)", flush=True)
    return rows


def markdown(host: list[dict], steps: list[dict], command: str, env: dict) -> str:
    lines = ["# Input pipeline: in memory vs streamed, with and without prefetch", "",
             f"`{command}` on {env['cpu']} ({env['threads']} threads), load average at start "
             f"{', '.join(f'{x:.1f}' for x in env['loadavg_at_start'] or [])}, {env['time']}. "
             "Medians of interleaved rounds (see the module docstring); the machine is shared and noisy: "
             "compare ratios within one run.", "",
             "## Host batch (Dataset.batch of the next step)", "",
             "| dataset | batch | features | in memory ms | streamed ms | streamed / in memory |",
             "|---|---:|---|---:|---:|---:|"]
    lines += [f"| {r['dataset']} | {r['batch']} | {r['features']} | {r['in_memory_ms']:.3f} | "
              f"{r['streamed_ms']:.3f} | {r['streamed_vs_in_memory']:.1f}x |" for r in host]
    lines += ["", "## Train step, input included (baseline: in memory, made on the main thread, the loop "
              "before prefetching)", "",
              "| config | global batch | feed | ms/step | vs baseline |", "|---|---:|---|---:|---:|"]
    lines += [f"| {r['config']} | {r['global_batch']} | {r['feed']} | {r['ms_per_step']:.2f} | "
              f"{r['vs_baseline']:.3f} |" for r in steps]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: digits only, a few steps")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    if args.rounds:
        plan["rounds"] = args.rounds
    env = common.environment()
    host = host_batch_rows(plan["datasets"], plan["rounds"])
    steps = [r for c in plan["configs"] for r in train_step_rows(c, plan["rounds"], plan["block"])]
    command = " ".join(["python -m benchmarks.input_pipeline"] + (sys.argv[1:] if argv is None else argv))
    out = Path(args.out)
    common.write_json(out / "input_pipeline.json", {"command": command, "environment": env,
                                                    "host_batch": host, "train_step": steps})
    md = markdown(host, steps, command, env)
    tmp = out / "input_pipeline.md.tmp"
    tmp.write_text(md)
    tmp.replace(out / "input_pipeline.md")
    print(md)


if __name__ == "__main__":
    main()
