"""Data-parallel scaling: images/s of the VAE and diffusion train steps on 1, 2, 4, 8 fake CPU
devices and on 2 processes x 2 devices, with the gradient all-reduce timed apart from compute.

    python -m benchmarks.scaling [--configs vae_digits,diffusion_digits] [--devices 1,2,4,8]
                                 [--processes 2x2] [--steps 100] [--out benchmarks/results] [--quick]

Each layout runs in its own processes (the fake-device count is fixed when JAX starts); the
multi-process layout is a real jax.distributed run over loopback with gloo collectives
(experiments/launch/local.py). For every layout and config the global batch is the same (the
config's), so on this 2-core machine the figure to watch is overhead, not speed-up: the
`vs 1 device` column is the step time relative to the 1-device step (the target: at most 1.3x on 8
fake devices).

Per row:
- `ms/step`: the mean over `steps` calls of the loop's own compiled data-parallel step
  (benchmarks.common.time_train_steps: input pipeline included, two steps in flight at most), after
  one compiling step timed apart;
- `all-reduce ms`: the median of a compiled `pmean` over the mesh of a tree shaped like the
  gradients (the model's params), each device holding its own copy: the communication the step
  does, timed alone;
- `compute ms`: ms/step minus all-reduce ms, an estimate (inside the step XLA may overlap the two).

Writes <out>/scaling.json and <out>/scaling.md.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def _allreduce_ms(params_shapes, mesh, rounds: int) -> tuple[float, int]:
    """(median ms, bytes per device) of one all-reduce mean of a gradient-shaped tree over `mesh`."""
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from benchmarks import common
    from jaxgen.train import parallel

    sharding = NamedSharding(mesh, P(parallel.AXIS))
    # A leading device axis, split over the mesh: every device holds its own gradient-sized block,
    # so XLA cannot skip the reduction as it might for a value it knows to be replicated.
    local = len(mesh.local_devices)
    grads = jax.tree.map(lambda s: jax.make_array_from_process_local_data(
        sharding, np.ones((local,) + tuple(s.shape), s.dtype)), params_shapes)
    reduce = jax.shard_map(lambda g: parallel.pmean(jax.tree.map(lambda x: x[0], g)), mesh=mesh,
                           in_specs=P(parallel.AXIS), out_specs=P(), check_vma=False)
    prepared = common.prepare_jax(reduce, grads)
    times = common.time_interleaved({"allreduce": prepared}, rounds)["allreduce"]  # same count everywhere
    nbytes = sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in jax.tree.leaves(params_shapes))
    return 1e3 * common.median(times), nbytes


def measure(config_name: str, steps: int, batch_size: int | None, rounds: int) -> dict | None:
    """Runs inside a child process (one of several in a multi-process layout); the row, on process 0."""
    from jaxgen.train import distributed
    from jaxgen.train.parallel import configure_jax

    configure_jax()  # the settings `jaxgen train` runs with
    distributed.initialize(distributed.resolve())  # joins when launched by experiments.launch.local
    import jax

    from benchmarks import common
    from jaxgen import config as config_lib
    from jaxgen.train import loop

    overrides = [f"--config.train.batch_size={batch_size}"] if batch_size else []
    config = config_lib.load(config_name, overrides)
    timing = common.time_train_steps(config, steps)
    task, step_fn = loop.setup(config)
    params_shapes = jax.eval_shape(task.init, jax.random.PRNGKey(config.seed)).params
    allreduce_ms, grad_bytes = _allreduce_ms(params_shapes, step_fn.mesh, rounds)
    distributed.shutdown()
    if jax.process_index():
        return None
    b, seconds = config.train.batch_size, timing["seconds"]
    ms = 1e3 * seconds / steps
    return {"config": config_name, "processes": jax.process_count(), "devices": timing["devices"],
            "layout": f"{jax.process_count()} x {jax.local_device_count()}", "global_batch": b, "steps": steps,
            "ms_per_step": ms, "images_per_s": b * steps / seconds, "allreduce_ms": allreduce_ms,
            "compute_ms": ms - allreduce_ms, "grad_bytes": grad_bytes, "compile_s": timing["compile_s"]}


def _child_args(args, config: str) -> list[str]:
    out = ["--child", "--configs", config, "--steps", str(args.steps), "--rounds", str(args.rounds)]
    return out + (["--batch-size", str(args.batch_size)] if args.batch_size else [])


def _last_json(text: str) -> dict:
    return json.loads([ln for ln in text.splitlines() if ln.startswith("{")][-1])


def run_layouts(args) -> list[dict]:
    from experiments.launch.local import LocalRun, xla_flags_with_devices

    rows = []
    for config in args.configs.split(","):
        for n in [int(x) for x in args.devices.split(",") if x]:
            env = dict(os.environ, JAX_PLATFORMS="cpu",
                       XLA_FLAGS=xla_flags_with_devices(os.environ.get("XLA_FLAGS", ""), n))
            for key in ("JAXGEN_COORDINATOR", "JAXGEN_NUM_PROCESSES", "JAXGEN_PROCESS_ID"):
                env.pop(key, None)
            proc = subprocess.run([sys.executable, "-m", "benchmarks.scaling", *_child_args(args, config)],
                                  env=env, capture_output=True, text=True, timeout=args.timeout)
            if proc.returncode:
                sys.exit(f"{config} on {n} device(s) failed:\n{proc.stderr[-3000:]}")
            rows.append(_last_json(proc.stdout))
            print(f"{config}, 1 x {n}: {rows[-1]['images_per_s']:.0f} images/s", flush=True)
        for layout in [x for x in args.processes.split(",") if x]:
            p, d = (int(v) for v in layout.split("x"))
            run = LocalRun(_child_args(args, config), num_processes=p, devices_per_process=d,
                           module="benchmarks.scaling")
            codes = run.wait(timeout=args.timeout)
            if any(codes):
                sys.exit(f"{config} on {p} processes x {d} devices failed ({codes}):\n{run.output(0)[-3000:]}")
            rows.append(_last_json(run.output(0)))
            print(f"{config}, {p} x {d}: {rows[-1]['images_per_s']:.0f} images/s", flush=True)
    for r in rows:  # step cost relative to one device, same config and global batch
        base = next((b for b in rows if b["config"] == r["config"] and b["devices"] == 1), None)
        r["vs_1_device"] = r["ms_per_step"] / base["ms_per_step"] if base else None
    return rows


def write(rows: list[dict], out: Path, command: str) -> None:
    from benchmarks import common

    env = common.environment()
    env.pop("xla_flags", None)  # set per layout
    common.write_json(out / "scaling.json", {"command": command, "environment": env, "rows": rows})
    lines = ["# Data-parallel scaling on fake CPU devices\n",
             f"`{command}` on {env['cpu']} ({env['threads']} threads), JAX {env['jax']}. Same global batch "
             "in every layout; `vs 1 device` is the step time over the 1-device step (2 CPU cores are shared "
             "by all fake devices, so the figure to watch is overhead, not speed-up). `all-reduce` is a "
             "gradient-sized `pmean` over the same mesh timed alone; `compute` = step - all-reduce.\n",
             "| config | processes x devices | global batch | ms/step | images/s | all-reduce ms | compute ms "
             "| vs 1 device | gradient MB | compile s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        vs = f"{r['vs_1_device']:.2f}x" if r.get("vs_1_device") else ""
        lines.append(f"| {r['config']} | {r['layout']} | {r['global_batch']} | {r['ms_per_step']:.2f} | "
                     f"{r['images_per_s']:.0f} | {r['allreduce_ms']:.3f} | {r['compute_ms']:.2f} | {vs} | "
                     f"{r['grad_bytes'] / 1e6:.2f} | {r['compile_s']:.1f} |")
    tmp = out / "scaling.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out / "scaling.md")
    print("\n".join(lines[2:]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="vae_digits,diffusion_digits")
    p.add_argument("--devices", default="1,2,4,8", help="single-process layouts: fake CPU device counts")
    p.add_argument("--processes", default="2x2", help="multi-process layouts, PROCESSESxDEVICES (comma-separated)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--rounds", type=int, default=30, help="timed all-reduce calls")
    p.add_argument("--batch-size", type=int, default=None, help="global batch (default: the config's)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per layout before it is killed")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--quick", action="store_true", help="smoke run: the VAE on 1 device and 2 processes x 1, 3 steps")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        row = measure(args.configs, args.steps, args.batch_size, args.rounds)
        if row is not None:
            print(json.dumps(row), flush=True)
        return
    if args.quick:
        args.configs, args.devices, args.processes, args.steps, args.rounds = "vae_digits", "1", "2x1", 3, 3
    rows = run_layouts(args)
    write(rows, Path(args.out), " ".join(["python -m benchmarks.scaling"] + sys.argv[1:]))


if __name__ == "__main__":
    main()
