"""Minimax vs non-saturating generator objective on the same budget (Goodfellow et al. 2014, Sec. 3).

    python -m experiments.gan_objectives --classifier runs/classifier_digits [--steps 800] [--out experiments/results]

Trains gan_digits once per (generator objective, R1 weight) with everything else equal (seed, data
order, networks, optimizer, number of iterations), evaluates each in the digits-classifier feature
space, and writes
  <out>/gan_objectives.json, <out>/gan_objectives.md   the table
  <out>/gan_objectives.png                             D(G(z)) over training, one curve per run
D(G(z)) is the discriminator's mean probability on the generator's samples at the generator update
(metric d_fake_g). The lecture's point: early on D rejects samples confidently, D(G(z)) ~ 0, where
the minimax objective log(1 - D(G(z))) has gradient -D(G(z)) ~ 0 (it saturates) while the
non-saturating -log D(G(z)) has gradient -(1 - D(G(z))) ~ -1.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time

RUNS = (("minimax", 0.0), ("nonsaturating", 0.0), ("minimax", 1.0), ("nonsaturating", 1.0))
METRICS = ("frechet_distance_360", "fd_over_floor", "precision", "recall", "classes_covered",
           "class_kl_to_uniform")


def run(loss: str, r1: float, steps: int, classifier: str, workdir: str) -> dict:
    from jaxgen import config as config_lib
    from jaxgen.train import log, loop

    overrides = [f"--config.model.loss={loss}", f"--config.model.r1_gamma={r1}", f"--config.train.steps={steps}",
                 "--config.train.log_every=20", "--config.train.ckpt_every=0", "--config.train.sample_every=0",
                 f"--config.eval.classifier_workdir={classifier}"]
    config = config_lib.load("gan_digits", overrides)
    shutil.rmtree(workdir, ignore_errors=True)
    start = time.time()
    result = loop.train(config, workdir, quiet=True)
    seconds = time.time() - start
    task = loop.make_task(config)
    scores = task.evaluate(result.state)
    records = log.read_metrics(workdir)
    return {"loss": loss, "r1_gamma": r1, "steps": steps, "train_seconds": round(seconds, 1),
            **{k: scores[k] for k in METRICS if k in scores},
            "final_d_fake_g": records[-1]["d_fake_g"], "final_d_real": records[-1]["d_real"],
            "curve_steps": [r["step"] for r in records], "curve_d_fake_g": [r["d_fake_g"] for r in records],
            "curve_g_grad_norm": [r["g_grad_norm"] for r in records]}


def write(results: list[dict], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "gan_objectives.json"), "w") as f:
        json.dump(results, f, indent=2)
    cols = ("loss", "r1_gamma", "steps", "final_d_fake_g", "final_d_real") + METRICS + ("train_seconds",)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        lines.append("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, ""))
                                       for c in cols) + " |")
    with open(os.path.join(out, "gan_objectives.md"), "w") as f:
        f.write("Minimax vs non-saturating generator objective, gan_digits, same budget "
                "(`python -m experiments.gan_objectives`).\n\n" + "\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in results:
        label = f"{r['loss']}, R1 {r['r1_gamma']:g}"
        style = "-" if r["loss"] == "nonsaturating" else "--"
        axes[0].plot(r["curve_steps"], r["curve_d_fake_g"], style, label=label)
        axes[1].plot(r["curve_steps"], r["curve_g_grad_norm"], style, label=label)
    axes[0].set(xlabel="iteration", ylabel="D(G(z))", title="discriminator on samples", ylim=(0, 1))
    axes[1].set(xlabel="iteration", ylabel="|grad G|", title="generator gradient norm", yscale="log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "gan_objectives.png"), dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classifier", required=True, help="workdir of a trained classifier_digits run")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--workdir", default="/tmp/gan_objectives")
    args = p.parse_args(argv)
    from jaxgen.train.parallel import configure_jax

    configure_jax()
    results = []
    for loss, r1 in RUNS:
        r = run(loss, r1, args.steps, args.classifier, os.path.join(args.workdir, f"{loss}_r1_{r1:g}"))
        print({k: v for k, v in r.items() if not k.startswith("curve")}, flush=True)
        results.append(r)
    write(results, args.out)
    print(f"wrote {args.out}/gan_objectives.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
