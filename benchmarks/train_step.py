"""Train-step throughput (images/s) of a config on 1 device and on N fake CPU devices.

    python -m benchmarks.train_step [--config vae_digits] [--devices 1,8] [--steps 200] [--out DIR]

Each device count runs in its own process (the fake-device count is fixed when JAX starts). A row
times `steps` calls of the compiled data-parallel step, input pipeline included (host batch ->
device), after one warm-up call whose time is reported as compile time. Writes
<out>/train_step.json and <out>/train_step.md.
"""
import argparse
import json
import os
import platform
import subprocess
import sys


def measure(config_name: str, steps: int, batch_size: int | None) -> dict:
    """Runs inside the child process: times the loop's own step function."""
    import jax

    from benchmarks import common
    from jaxgen import config as config_lib
    from jaxgen.train.parallel import configure_jax

    configure_jax()  # the settings `jaxgen train` runs with
    overrides = [f"--config.train.batch_size={batch_size}"] if batch_size else []
    config = config_lib.load(config_name, overrides)
    timing = common.time_train_steps(config, steps)
    seconds, compile_s = timing["seconds"], timing["compile_s"]
    b = config.train.batch_size
    return {"config": config_name, "devices": timing["devices"], "global_batch": b, "steps": steps,
            "ms_per_step": 1e3 * seconds / steps, "images_per_s": b * steps / seconds,
            "compile_s": compile_s, "backend": jax.default_backend()}


def _torch_row(args) -> dict:
    """The PyTorch mirror of the VAE step on the same data, batch and thread count."""
    from benchmarks import torch_vae
    from jaxgen import config as config_lib
    from jaxgen import data

    overrides = [f"--config.train.batch_size={args.batch_size}"] if args.batch_size else []
    config = config_lib.load(args.config, overrides)
    images = data.load(config.data.name, config.data.split).arrays["image"]
    row = torch_vae.time_train_step(config, images, args.steps, threads=os.cpu_count())
    row.update(config=args.config, devices=f"torch eager ({row['threads']} threads)",
               global_batch=config.train.batch_size, steps=args.steps)
    print(f"torch: {row['images_per_s']:.0f} images/s", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="vae_digits")
    p.add_argument("--devices", default="1,8")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.config, args.steps, args.batch_size)))
        return
    rows = []
    if args.config.startswith("vae_"):
        rows.append(_torch_row(args))
    for n in [int(x) for x in args.devices.split(",")]:
        env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        cmd = [sys.executable, "-m", "benchmarks.train_step", "--child", "--config", args.config,
               "--steps", str(args.steps)] + (["--batch-size", str(args.batch_size)] if args.batch_size else [])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"the {n}-device run failed:\n{proc.stderr[-3000:]}")
        out = proc.stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{n} device(s): {rows[-1]['images_per_s']:.0f} images/s", flush=True)
    os.makedirs(args.out, exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "command": " ".join(["python -m benchmarks.train_step"] + sys.argv[1:])}
    with open(os.path.join(args.out, "train_step.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    lines = [f"Train-step throughput, `{meta['command']}` ({meta['cpus']} CPUs)", "",
             "| config | devices | global batch | ms/step | images/s | compile (first step) s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['devices']} | {r['global_batch']} | {r['ms_per_step']:.2f} | "
              f"{r['images_per_s']:.0f} | {r['compile_s']:.1f} |" for r in rows]
    with open(os.path.join(args.out, "train_step.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
