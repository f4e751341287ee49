"""LoRA teaches a class-conditional diffusion model a class it never saw, and leaves the model as it was.

    jaxgen train diffusion_digits_class:8x8 --workdir runs/lora_base_0to8 \
        --config.data.classes="(0,1,2,3,4,5,6,7,8)" --config.eval.classifier_workdir=runs/clf
    jaxgen train diffusion_digits_class:8x8 --workdir runs/lora_digit9 --config.data.classes="(9,)" \
        --config.lora.rank=4 --config.lora.targets=dense,embedding --config.lora.init_from=runs/lora_base_0to8 \
        --config.train.steps=2000 --config.optim.warmup_steps=50 --config.train.ema_decay=0.99 \
        --config.train.ckpt_every=1000
    python -m experiments.lora_new_class --base runs/lora_base_0to8 --adapted runs/lora_digit9 \
        --classifier runs/clf --label 9 --num 1000 --out experiments/results/lora_new_class

The base is trained with data.classes leaving `--label` out (its label embedding still has that row,
untrained); the adapted run fine-tunes LoRA adapters on `--label` alone, on top of the frozen base.
Each model samples with its run's own config sampler (guidance included, unless `--guidance` sets
both models' w), `--num` images per row,
judged by the trained digits classifier `--classifier` (jaxgen.eval.features.ClassifierJudge):

- class accuracy of the adapted model asked for `--label` (the issue's goal: >= 95 %), and of the
  base asked for it (expected low: it never saw the class);
- class accuracy of both asked for the other labels (cycling): what the adapter costs the classes
  the base already knew. The base and the adapted rows of one label set share their noise.
- the adapters' parameter count and its share of the model's (lora.num_params over the base's
  param count; the goal: <= 5 %);
- "base unchanged": the fingerprint (jaxgen.nn.lora.fingerprint) of the base run's sampling params
  equals the one the adapted run recorded in adapters/lora.json and that of the frozen base inside
  its checkpoint, and the base run's samples for a fixed seed are byte-identical when generated
  before and after the adapted run is loaded and sampled (the base re-read from disk for the second).

Writes lora_new_class.json (meta, rows, adapters, base_unchanged, goals) and lora_new_class.md into
--out; nothing is written when a run cannot be read or does not fit. Cost: the four rows are four
reverse chains of --num samples (DDIM-50 at 8x8: seconds each on 2 cores) plus one more for the
base's second sampling.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys

import jax
import numpy as np

from experiments.results_files import write_pair

# The goals for LoRA.
MAX_ADAPTER_SHARE = 0.05
MIN_NEW_CLASS_ACCURACY = 0.95


def load_run(workdir: str, flag: str, overrides: tuple[str, ...] = ()):
    """(config, task, state) of a trained class-conditional diffusion run, sampled with `overrides`
    (--config.sample.x=y); SystemExit with one sentence when `workdir` is not one."""
    from jaxgen.errors import UserError
    from jaxgen.tasks import runs

    try:
        config, task, state = runs.restore_for_eval(workdir, overrides=overrides)
    except UserError as e:
        raise SystemExit(f"{flag} {workdir}: {e}") from None
    if config.task != "diffusion" or not getattr(task, "num_classes", 0):
        raise SystemExit(f"{flag} {workdir} is a {config.task} run without class conditioning; {flag} expects a "
                         f"class-conditional diffusion run (e.g. diffusion_digits_class).")
    return config, task, state


def sample(task, params, labels: np.ndarray, rng: jax.Array) -> np.ndarray:
    """Images float [N, H, W, C] in [0, 1] for `labels` [N], by the run's config sampler."""
    images, _ = task.generate(params, rng, len(labels), labels=labels)
    return images


def judge_row(judge, images: np.ndarray, labels: np.ndarray, model: str, requested: str) -> dict:
    """Class accuracy of `images` generated for `labels` [N] in the judge's eyes: overall, per
    requested label, and how often each class was predicted."""
    logits, _ = judge(images)
    predicted = logits.argmax(-1)
    correct = predicted == labels
    per_label = {int(c): float(correct[labels == c].mean()) for c in np.unique(labels)}
    counts = np.bincount(predicted, minlength=logits.shape[-1])
    return {"model": model, "requested": requested, "num_samples": int(len(labels)),
            "class_accuracy": float(correct.mean()), "accuracy_per_label": per_label,
            "predicted_counts": counts.tolist(), "most_predicted": int(counts.argmax())}


def sha256(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def markdown(result: dict) -> str:
    meta, ad, bu, goals = result["meta"], result["adapters"], result["base_unchanged"], result["goals"]
    held_out = ("left out of the base's training (data.classes = "
                f"{meta['base_classes']})" if meta["label_held_out"] else
                "**seen** by the base in training (its data.classes keeps it): not a new class")
    lines = ["# LoRA: a new class for a trained class-conditional diffusion model", "",
             f"`{meta['command']}`. Base {meta['base']} (step {meta['base_step']}), adapted {meta['adapted']} "
             f"(step {meta['adapted_step']}: LoRA rank {ad['rank']}, alpha {ad['alpha']:g}, targets {ad['targets']}, "
             f"{ad['kernels']} kernels), judged by the digits classifier {meta['classifier']}. Label {meta['label']} "
             f"was {held_out}. Each model samples with {meta['sampler']}; the base and "
             f"adapted rows of one label set share their noise (seed {meta['seed']}).", "",
             "| model | requested labels | samples | class accuracy | most often predicted |",
             "|---|---|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['requested']} | {r['num_samples']} | {r['class_accuracy']:.3f} | "
                     f"{r['most_predicted']} |")
    lines += ["", f"Adapter params: {ad['num_params']:,} of the model's {ad['model_params']:,} "
                  f"({100 * ad['share']:.2f} %).", "",
              f"Base unchanged: fingerprint of the base run's params {bu['fingerprint_base_run'][:12]}, recorded by "
              f"the adapted run {str(bu['fingerprint_recorded'])[:12]}, of the frozen base in its checkpoint "
              f"{bu['fingerprint_adapted_run_base'][:12]}; base samples (seed {bu['seed']}, {bu['num_samples']} "
              f"images) before and after loading the adapted run: "
              f"{'byte-identical' if bu['samples_identical'] else 'DIFFERENT'}.", "",
              "| goal | value | target | met |", "|---|---:|---:|---|"]
    for name, g in goals.items():
        value = g["value"] if isinstance(g["value"], bool) else f"{g['value']:.4f}"
        lines.append(f"| {name} | {value} | {g['target']} | {'yes' if g['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="a class-conditional diffusion run trained without --label")
    parser.add_argument("--adapted", required=True, help="its LoRA run (lora.init_from = --base) on --label")
    parser.add_argument("--classifier", required=True, help="a trained classifier_digits run (the judge)")
    parser.add_argument("--label", type=int, required=True, help="the new class")
    parser.add_argument("--num", type=int, default=1000, help="samples per row")
    parser.add_argument("--seed", type=int, default=0, help="the sampling noise (shared by base and adapted)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="the classifier-free guidance scale w of both models (default: each config's)")
    parser.add_argument("--out", default="experiments/results/lora_new_class")
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error(f"--num must be at least 1, not {args.num}.")
    sampling = () if args.guidance is None else (f"--config.sample.guidance={args.guidance}",)
    from jaxgen.errors import UserError
    from jaxgen.nn import lora
    from jaxgen.tasks import runs
    from jaxgen.train import checkpoint, loop, parallel
    from jaxgen.train.state import LoraState

    parallel.configure_jax()
    # ---- the runs, every check before any sampling --------------------------------------------------
    base_config, base_task, base_state = load_run(args.base, "--base", sampling)
    adapted_config, adapted_task, adapted_state = load_run(args.adapted, "--adapted", sampling)
    if not isinstance(adapted_state, LoraState):
        raise SystemExit(f"--adapted {args.adapted} is not a LoRA run (lora.rank = {adapted_config.lora.rank}); "
                         f"train it with --config.lora.rank and --config.lora.init_from={args.base}.")
    try:
        checkpoint.check_same_model(base_config, adapted_config, args.base)
        adapters, lora_meta = lora.load(os.path.join(args.adapted, loop.ADAPTERS_DIR))
    except (ValueError, UserError) as e:
        raise SystemExit(f"--adapted {args.adapted}: {e}") from None
    num_classes = base_task.num_classes
    if not 0 <= args.label < num_classes:
        raise SystemExit(f"--label must be a class of the base model, 0..{num_classes - 1}, not {args.label}.")
    try:
        judge = runs.classifier_judge(args.classifier)
    except UserError as e:
        raise SystemExit(f"--classifier {args.classifier}: {e}") from None

    base_params = base_task.eval_params(base_state)
    adapted_params = adapted_task.eval_params(adapted_state)  # the adapters merged into the frozen base
    new_labels = np.full(args.num, args.label)
    other_labels = np.resize([c for c in range(num_classes) if c != args.label], args.num)
    rng = jax.random.PRNGKey(args.seed)
    new_rng, other_rng = jax.random.fold_in(rng, 0), jax.random.fold_in(rng, 1)

    # ---- the base first: its samples of --label are the "before" of the unchanged check ------------
    fingerprint_before = lora.fingerprint(base_params)
    base_new = sample(base_task, base_params, new_labels, new_rng)
    base_new_row = judge_row(judge, base_new, new_labels, "base", str(args.label))
    base_other_row = judge_row(judge, sample(base_task, base_params, other_labels, other_rng), other_labels,
                               "base", "the others")
    # ---- the adapted model, on the same noise ---------------------------------------------------------
    adapted_new_row = judge_row(judge, sample(adapted_task, adapted_params, new_labels, new_rng), new_labels,
                                "adapted", str(args.label))
    adapted_other_row = judge_row(judge, sample(adapted_task, adapted_params, other_labels, other_rng),
                                  other_labels, "adapted", "the others")
    rows = [adapted_new_row, base_new_row, adapted_other_row, base_other_row]
    # ---- the base again, re-read from disk after the adapted run was loaded and sampled ---------------
    # The compiled chain of the first base sampling is reused, so only the params can differ.
    _, _, again_state = load_run(args.base, "--base", sampling)
    base_again = base_task.eval_params(again_state)
    base_new_after = sample(base_task, base_again, new_labels, new_rng)
    recorded = (lora_meta.get("base") or {}).get("fingerprint")
    unchanged = {"fingerprint_base_run": fingerprint_before,
                 "fingerprint_base_run_after": lora.fingerprint(base_again),
                 "fingerprint_recorded": recorded,
                 "fingerprint_adapted_run_base": lora.fingerprint(adapted_state.base_params),
                 "seed": args.seed, "num_samples": args.num,
                 "samples_before_sha256": sha256(base_new), "samples_after_sha256": sha256(base_new_after),
                 "samples_identical": base_new.tobytes() == base_new_after.tobytes()}
    unchanged["fingerprints_match"] = (recorded is not None and len({
        recorded, unchanged["fingerprint_base_run"], unchanged["fingerprint_base_run_after"],
        unchanged["fingerprint_adapted_run_base"]}) == 1)
    unchanged["unchanged"] = unchanged["fingerprints_match"] and unchanged["samples_identical"]

    model_params = int(sum(np.size(x) for x in jax.tree.leaves(base_params)))
    adapter_params = lora.num_params(adapters)
    adapters_info = {"num_params": adapter_params, "model_params": model_params,
                     "share": adapter_params / model_params, "rank": lora_meta["rank"], "alpha": lora_meta["alpha"],
                     "targets": lora_meta["targets"], "kernels": len(lora_meta.get("paths", [])),
                     "step": lora_meta.get("step"), "ema": lora_meta.get("ema")}
    new_accuracy = adapted_new_row["class_accuracy"]
    goals = {"adapter_share": {"value": adapters_info["share"], "target": f"<= {MAX_ADAPTER_SHARE:g}",
                               "met": adapters_info["share"] <= MAX_ADAPTER_SHARE},
             "new_class_accuracy": {"value": new_accuracy, "target": f">= {MIN_NEW_CLASS_ACCURACY:g}",
                                    "met": new_accuracy >= MIN_NEW_CLASS_ACCURACY},
             "base_unchanged": {"value": unchanged["unchanged"], "target": "true", "met": unchanged["unchanged"]}}

    base_classes = base_config.data.get("classes")
    s = adapted_config.sample
    command = (f"python -m experiments.lora_new_class --base {args.base} --adapted {args.adapted} "
               f"--classifier {args.classifier} --label {args.label} --num {args.num} --seed {args.seed} "
               + (f"--guidance {args.guidance:g} " if args.guidance is not None else "") + f"--out {args.out}")
    meta = {"command": command, "base": args.base, "adapted": args.adapted, "classifier": args.classifier,
            "label": args.label, "num": args.num, "seed": args.seed,
            "base_step": int(base_state.step), "adapted_step": int(adapted_state.step),
            "base_classes": None if base_classes is None else [int(c) for c in base_classes],
            "adapted_classes": (None if adapted_config.data.get("classes") is None
                                else [int(c) for c in adapted_config.data.classes]),
            "label_held_out": base_classes is not None and args.label not in base_classes,
            "sampler": f"{s.method.upper()}-{int(s.steps)}, {s.thresholding}, w = {float(s.guidance):g}",
            "guidance": args.guidance,
            "base_sample": base_config.sample.to_dict(), "adapted_sample": s.to_dict()}
    result = {"meta": meta, "rows": rows, "adapters": adapters_info, "base_unchanged": unchanged, "goals": goals}
    text = markdown(result)  # before anything is written: a failure leaves no half-written pair
    write_pair(args.out, "lora_new_class", result, text, default=float, allow_nan=False)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
