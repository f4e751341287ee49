"""Sample quality of trained digits runs, with the held-out test split as the headline.

    python -m experiments.digits_quality --classifier runs/clf [--gan G] [--cgan G2] \
        [--diffusion U] [--diffusion_class D] [--num 2160] --out experiments/results/digits_quality

For each run given, `num` samples from the run's own config sampler (and, for diffusion runs, the
other settings the README quotes: ancestral DDPM respaced to 100 steps with static clipping, and for
the unconditional model DDIM-50 with dynamic thresholding; for the class-conditional one DDPM-100 at
w = 1), judged in the feature space of the trained digits classifier `--classifier`
(jaxgen.eval.features.ClassifierJudge.score, the same metrics `jaxgen eval` reports):

- **Frechet distance to the test split** (the headline): the 360 held-out digits, which neither the
  generator nor the classifier saw. The reference is the real train split's distance to the same
  test split (`frechet_floor_test_vs_train`): a model there is as close to unseen digits as 1,437
  fresh real ones are.
- Frechet distance to the train split (all samples, and the mean over chunks of 360): the number
  the README quoted before. The classifier's features were fitted on train, so a model that
  reproduces training digits can go below the "floor" there without being better than real data.
- precision / recall (k-NN manifolds against train) beside real test vs train, class coverage, KL
  of the predicted-class histogram to uniform, class accuracy for conditional runs.
- the fraction of saturated pixels (values at 0 or 1) beside that of the real test digits, counted
  on the dataset's integer levels (`real_saturated_fraction`): about 57.5 % of real digit pixels
  are at an extreme level, so a sampler that saturates 0.2 % of pixels is *under*-saturated, not
  fixed.

Writes digits_quality.json (meta, reference, rows) and digits_quality.md into --out. Costs on 2
cores (full runs): the classifier features and a GAN's samples take seconds; each diffusion setting
is its chain's time (2,160 samples of DDPM-100 at 8x8: a few minutes).
"""
from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

from experiments.results_files import write_pair
from jaxgen import data as data_lib
from jaxgen.tasks.diffusion import saturated_fraction

# (flag, the config.task it must be, conditional?)
KINDS = (("gan", "gan", False), ("cgan", "gan", True), ("diffusion", "diffusion", False),
         ("diffusion_class", "diffusion", True))
# The diffusion settings the README quotes besides the config's own sampler.
EXTRA_SETTINGS = {
    False: ({"method": "ddpm", "steps": 100, "thresholding": "static"},
            {"method": "ddim", "steps": 50, "thresholding": "dynamic"}),
    True: ({"method": "ddpm", "steps": 100, "thresholding": "static", "guidance": 1.0},),
}
COLUMNS = (("frechet_distance_to_test", "FD to test (headline)", ".1f"),
           ("fd_to_test_over_reference", "/ reference", ".2f"),
           ("frechet_distance", "FD to train", ".1f"),
           ("frechet_distance_360", "FD to train, chunks of 360", ".1f"),
           ("precision", "precision", ".3f"), ("recall", "recall", ".3f"),
           ("classes_covered", "classes", "d"), ("class_accuracy", "class accuracy", ".3f"),
           ("saturated_fraction", "saturated pixels", ".3f"))


def real_saturated_fraction(split: str = "test", data_dir: str | None = None) -> float:
    """Fraction of the pixels of the real digits `split` at the lowest or highest of its integer
    levels (0 or 16): the saturation a sampler's output should be compared with."""
    d = data_lib.load("digits", split, data_dir)
    images = np.asarray(d.arrays["image"])
    return float(np.mean((images == 0) | (images == d.num_levels - 1)))


def diffusion_settings(config, conditional: bool) -> list[dict]:
    """The config's sampler ({} = no override) and the README's other settings, without repeats and
    without step counts longer than the model's chain."""
    base = config.sample.to_dict()
    out, seen = [{}], [base]
    for s in EXTRA_SETTINGS[conditional]:
        effective = dict(base, **s)
        if effective not in seen and int(effective["steps"]) <= int(config.model.timesteps):
            out.append(s)
            seen.append(effective)
    return out


def sampler_name(settings: dict, conditional: bool) -> str:
    """e.g. 'DDPM-100, static' or 'DDIM-50, dynamic, w = 2'."""
    name = f"{settings['method'].upper()}-{int(settings['steps'])}, {settings['thresholding']}"
    return name + (f", w = {float(settings['guidance']):g}" if conditional else "")


def score_run(kind: str, workdir: str, judge, num: int) -> list[dict]:
    """The rows of one trained run: one per sampler setting (GANs: one)."""
    from jaxgen.train import loop

    expected, conditional = next((t, c) for k, t, c in KINDS if k == kind)
    config, task, state = loop.restore_for_eval(workdir)
    if config.task != expected or bool(task.num_classes) != conditional:
        raise SystemExit(f"--{kind} {workdir} is a {'conditional ' if task.num_classes else ''}{config.task} run; "
                         f"--{kind} expects a{' conditional' if conditional else 'n unconditional'} {expected} run.")
    params = task.eval_params(state)
    meta = {"run": kind, "workdir": workdir, "step": int(state.step), "num_samples": num}
    if expected == "gan":
        # the key `jaxgen eval` uses for its samples, so the two agree on the same run
        out = task.sample(params, jax.random.PRNGKey(config.seed + 3), num)
        images = np.asarray(out["images"])
        row = judge.score(images, out.get("labels"), pr_k=config.eval.get("pr_k", 3))
        row.update(meta, sampler="generator", saturated_fraction=saturated_fraction(images))
        return [row]
    rows = []
    for overrides in diffusion_settings(config, conditional):
        row = task.sample_quality(params, judge, num, **overrides)  # ClassifierJudge.score + saturation
        row.update(meta, sampler=sampler_name(dict(config.sample.to_dict(), **overrides), conditional),
                   config_sampler=not overrides, overrides=overrides)
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return rows


def markdown(result: dict) -> str:
    ref, meta = result["reference"], result["meta"]
    head = ["run", "sampler"] + [title for _, title, _ in COLUMNS]
    lines = ["# Digits sample quality: distance to the held-out test split", "",
             f"`{meta['command']}`; judged by {meta['classifier']}. Frechet distances in the classifier's "
             f"features. **Reference** (real train split, {ref['train_images']} images, as the samples): distance "
             f"to test {ref['frechet_train_to_test']:.1f}; precision / recall of real test vs train "
             f"{ref['precision_test_vs_train']:.3f} / {ref['recall_test_vs_train']:.3f}; saturated pixels of "
             f"real test digits {ref['saturated_fraction_real_test']:.3f}. A distance to *train* below the "
             f"reference does not mean better than real data: the classifier was fitted on train, and copying "
             f"training digits lowers that distance; the distance to test does not reward it. The model rows "
             f"use {meta['num']} samples against the reference's {ref['train_images']}; a Frechet distance's "
             "positive bias falls with the sample count, so a model at the reference is at most as good as "
             "real data, not better.", "",
             "| " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(COLUMNS)]
    for r in result["rows"]:
        cells = [f"{r['run']} ({r['workdir']}, step {r['step']})", r["sampler"]]
        for key, _, fmt in COLUMNS:
            cells.append("-" if r.get(key) is None else format(r[key], fmt))
        lines.append("| " + " | ".join(cells) + " |")
    real = [f"real train split vs test ({ref['train_images']} images)", "-",
            f"{ref['frechet_train_to_test']:.1f}", "1.00", "-", "-", f"{ref['precision_test_vs_train']:.3f}",
            f"{ref['recall_test_vs_train']:.3f}", "10", "-", f"{ref['saturated_fraction_real_test']:.3f}"]
    lines.append("| " + " | ".join(real) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", required=True, help="a trained classifier_digits run (the judge)")
    for kind, task, conditional in KINDS:
        parser.add_argument(f"--{kind}", default=None,
                            help=f"a trained {'conditional ' if conditional else ''}{task} run on digits")
    parser.add_argument("--num", type=int, default=2160, help="samples per row (>= 360 for the chunked distance)")
    parser.add_argument("--out", default="experiments/results/digits_quality")
    args = parser.parse_args(argv)
    runs = [(kind, getattr(args, kind)) for kind, _, _ in KINDS if getattr(args, kind)]
    if not runs:
        parser.error("give at least one of --gan, --cgan, --diffusion, --diffusion_class.")
    if args.num < 2:
        parser.error(f"--num must be at least 2 (a covariance needs two samples), not {args.num}.")
    from jaxgen.tasks.runs import classifier_judge
    from jaxgen.train import parallel

    parallel.configure_jax()
    judge = classifier_judge(args.classifier)
    rows = [row for kind, workdir in runs for row in score_run(kind, workdir, judge, args.num)]
    first = rows[0]
    train_feats, _ = judge.real_features("train")
    reference = {"frechet_train_to_test": first["frechet_floor_test_vs_train"],
                 "precision_test_vs_train": first["precision_test_vs_train"],
                 "recall_test_vs_train": first["recall_test_vs_train"], "train_images": len(train_feats),
                 "saturated_fraction_real_test": real_saturated_fraction("test", judge.config.data.get("data_dir"))}
    for r in rows:
        r["fd_to_test_over_reference"] = r["frechet_distance_to_test"] / reference["frechet_train_to_test"]
        # fewer samples than one chunk of 360 leave the chunked distance NaN: null in strict JSON
        r.update({k: None for k, v in r.items() if isinstance(v, float) and not np.isfinite(v)})
    command = "python -m experiments.digits_quality " + " ".join(
        [f"--classifier {args.classifier}"] + [f"--{k} {w}" for k, w in runs]
        + [f"--num {args.num}", f"--out {args.out}"])
    result = {"meta": {"command": command, "classifier": args.classifier, "num": args.num,
                       "headline": "frechet_distance_to_test"},
              "reference": reference, "rows": rows}
    text = markdown(result)  # before anything is written: a failure leaves no half-written pair
    write_pair(args.out, "digits_quality", result, text, default=float, allow_nan=False)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
