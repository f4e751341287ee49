"""What each `jaxgen` sub-command does, as plain functions (the CLI parses, these work)."""
import os
import time

import numpy as np

from jaxgen.errors import UsageError

# The demo runs these configs in order; a later family adds its name. The classifier comes
# first because other families' evaluations use its features.
DEMO_RUNS = ("classifier_digits", "vae_digits", "gan_digits", "cyclegan_shapes", "unet_shapes",
             "diffusion_digits_class")


def train(spec: str, overrides: list[str], workdir: str, quiet: bool = False) -> int:
    from jaxgen import config as config_lib
    from jaxgen.train import loop

    config = config_lib.load(spec, overrides)
    result = loop.train(config, workdir, quiet=quiet)
    return 0 if result.stopped_by in (None, "SIGTERM") else 130


def sample(workdir: str, num: int, seed: int, out: str, overrides: list[str] = ()) -> int:
    import jax

    from jaxgen.train import log, loop

    if num < 1:
        raise UsageError(f"--num must be at least 1, not {num}.")
    kind = os.path.splitext(out)[1].lower()
    if kind not in (".png", ".npz"):
        raise UsageError(f"--out must end in .png (a grid) or .npz (raw arrays), not {out!r}.")
    _, task, state = loop.restore_for_eval(workdir, overrides=overrides)
    result = {k: np.asarray(v) for k, v in task.sample(task.eval_params(state), jax.random.PRNGKey(seed), num).items()}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if kind == ".png":
        log.save_png(log.make_grid(result["images"]), out)
    else:
        tmp = out + ".tmp.npz"
        np.savez(tmp, **result)
        os.replace(tmp, out)
    print(f"wrote {num} samples to {out}")
    return 0


def evaluate(workdir: str, overrides: list[str] = ()) -> int:
    from jaxgen.train import log, loop

    config, task, state = loop.restore_for_eval(workdir, overrides=overrides)
    start = time.time()
    results = {"step": int(state.step), **task.evaluate(state)}
    results["eval_seconds"] = round(time.time() - start, 1)
    for name, image in task.figures(state).items():
        log.save_png(image, os.path.join(workdir, "figures", f"{name}.png"))
    loop.save_json(os.path.join(workdir, "eval.json"), results)
    print(f"evaluation of {config.name} at step {results['step']} ({workdir}):")
    for k, v in results.items():
        print(f"  {k:32s} {v:.5g}" if isinstance(v, float) else f"  {k:32s} {v}")
    return 0


def report(workdir: str) -> int:
    from jaxgen import report as report_lib

    path = report_lib.write_run_report(workdir)
    print(f"wrote {path}")
    return 0


def demo(workdir: str, quick: bool = False) -> int:
    """Trains every family on the embedded data with small configs, evaluates, and reports."""
    from jaxgen import config as config_lib
    from jaxgen import report as report_lib
    from jaxgen.train import loop

    start = time.time()
    runs = []
    for name in DEMO_RUNS:
        run_dir = os.path.join(workdir, name)
        # Each config's get_config("demo") is sized for the demo's 10-minute budget, "quick" for a
        # smoke run of a few steps.
        config = config_lib.load(f"{name}:{'quick' if quick else 'demo'}")
        if "classifier_workdir" in config.get("eval", {}):  # judged in the demo classifier's features
            config.eval.classifier_workdir = os.path.join(workdir, "classifier_digits")
        print(f"== {name}: {config.train.steps} steps -> {run_dir}", flush=True)
        loop.train(config, run_dir, quiet=True)
        evaluate(run_dir)
        runs.append(run_dir)
    path = report_lib.write_demo_report(workdir, runs, seconds=time.time() - start)
    print(f"demo finished in {time.time() - start:.0f} s; report: {path}")
    return 0


def list_configs() -> int:
    from jaxgen import config as config_lib

    print("\n".join(config_lib.available()))
    return 0
