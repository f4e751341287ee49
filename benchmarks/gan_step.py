"""GAN training throughput: Algorithm 1 iterations/s at k = 1 and k = 5 discriminator updates.

    python -m benchmarks.gan_step [--config gan_digits] [--ks 1,5] [--steps 100] [--out benchmarks/results]

Times `steps` calls of the loop's compiled data-parallel step (one call = one iteration: k D
updates in a lax.scan, then one G update), input pipeline included, on the devices JAX sees (run
it as `jaxgen train` runs: one CPU device unless XLA_FLAGS fakes more), after one warm-up call
reported as compile time. Writes <out>/gan_step.json and <out>/gan_step.md; the system load
average is recorded because timings on a shared machine mean little without it.
"""
import argparse
import json
import os
import platform


def measure(config_name: str, k: int, steps: int) -> dict:

    from benchmarks import common
    from jaxgen import config as config_lib

    config = config_lib.load(config_name, [f"--config.train.d_steps={k}"])
    timing = common.time_train_steps(config, steps)
    seconds, compile_s = timing["seconds"], timing["compile_s"]
    return {"config": config_name, "k": k, "devices": timing["devices"], "batch": config.train.batch_size,
            "steps": steps, "iterations_per_s": steps / seconds, "ms_per_iteration": 1e3 * seconds / steps,
            "d_updates_per_s": k * steps / seconds, "compile_s": compile_s, "load_avg_1min": os.getloadavg()[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="gan_digits")
    p.add_argument("--ks", default="1,5")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    from jaxgen.train.parallel import configure_jax

    configure_jax()
    rows = [measure(args.config, int(k), args.steps) for k in args.ks.split(",")]
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "command": "python -m benchmarks.gan_step " + " ".join(f"--{k} {v}" for k, v in vars(args).items())}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gan_step.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    lines = [f"GAN iterations/s (Goodfellow Alg. 1), `{meta['command']}` ({meta['cpus']} CPUs)", "",
             "| config | k | devices | batch | iterations/s | ms/iteration | D updates/s | compile s | load avg |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['k']} | {r['devices']} | {r['batch']} | {r['iterations_per_s']:.1f} | "
              f"{r['ms_per_iteration']:.1f} | {r['d_updates_per_s']:.1f} | {r['compile_s']:.1f} | "
              f"{r['load_avg_1min']:.1f} |" for r in rows]
    with open(os.path.join(args.out, "gan_step.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
