"""Contrastive training throughput: CLIP pairs/s on 1 and 8 (fake) CPU devices, same global batch.

    python -m benchmarks.clip_step [--configs clip_digits,clip_shapes] [--devices 1,8] [--steps 30]
                                   [--out benchmarks/results] [--quick]

Each device count runs in its own subprocess (XLA fixes the number of CPU devices when it starts),
timing `steps` calls of the loop's compiled data-parallel step after one warm-up call (reported as
compile time), input pipeline and host-side tokenization included. On 8 devices every step
all-gathers the image and text embeddings, so each device computes its rows of the global
similarity matrix: the ratio of the 8-device to the 1-device step time is the cost of that
split (on 2 physical cores, overhead, not speed-up). Writes <out>/clip_step.json and .md, with the
1-minute load average of each run, since timings on a shared machine mean little without it.
"""
import argparse
import json
import os
import platform
import subprocess
import sys


def measure(config_name: str, steps: int, overrides: list[str]) -> dict:
    """One run on the devices this process sees (called in the subprocess)."""
    from benchmarks import common
    from jaxgen import config as config_lib

    config = config_lib.load(config_name, overrides)
    timing = common.time_train_steps(config, steps)
    b = config.train.batch_size
    return {"config": config_name, "devices": timing["devices"], "batch": b, "steps": steps,
            "pairs_per_s": b * steps / timing["seconds"], "ms_per_step": 1e3 * timing["seconds"] / steps,
            "compile_s": timing["compile_s"], "load_avg_1min": os.getloadavg()[0]}


def _run_child(config_name: str, devices: int, steps: int, overrides: list[str]) -> dict:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, "-m", "benchmarks.clip_step", "--child", config_name, "--steps", str(steps),
           *[f"--override={o}" for o in overrides]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{config_name} on {devices} devices failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="clip_digits,clip_shapes")
    p.add_argument("--devices", default="1,8")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--quick", action="store_true", help="tiny configs and 3 steps (a smoke run)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--override", action="append", default=[], help=argparse.SUPPRESS)
    args = p.parse_args()
    from jaxgen.train.parallel import configure_jax

    configure_jax()
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.override)))
        return
    configs = [f"{c}:quick" if args.quick else c for c in args.configs.split(",")]
    steps = 3 if args.quick else args.steps
    rows = [_run_child(c, int(d), steps, []) for c in configs for d in args.devices.split(",")]
    for r in rows:  # step time relative to the same config on one device
        one = next((x for x in rows if x["config"] == r["config"] and x["devices"] == 1), None)
        r["step_time_vs_1_device"] = r["ms_per_step"] / one["ms_per_step"] if one else None
    command = "python -m benchmarks.clip_step " + " ".join(
        f"--{k} {v}" for k, v in vars(args).items() if k not in ("child", "override") and v not in (None, False))
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "command": command}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "clip_step.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    lines = [f"CLIP contrastive train step (embeddings all-gathered over the devices), `{command}` "
             f"({meta['cpus']} CPUs)", "",
             "| config | devices | global batch | pairs/s | ms/step | step time vs 1 device | compile s | load avg |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['devices']} | {r['batch']} | {r['pairs_per_s']:.0f} | {r['ms_per_step']:.1f} | "
              f"{_ratio(r['step_time_vs_1_device'])} | {r['compile_s']:.1f} | {r['load_avg_1min']:.1f} |" for r in rows]
    with open(os.path.join(args.out, "clip_step.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
