"""Tune, then score, the Imagen-style cascade: settings are chosen on one prompt seed and the claims
are made on another, with 48 prompts x 8 images per category.

    python -m experiments.text2image_sweeps --base runs/t2i_base [--sr runs/t2i_sr] [--out experiments/results]

--base and --sr take run folders or pretrained models (e.g. --sr t2i_sr_shapes32).

1. Tuning (prompt seed --tune_seed, --tune_prompts x --tune_images per category): the base stage's
   prompt-suite scores at 16x16 for each guidance scale in --guidances; with --sr, the paired cascade
   (the base's images and the SR stage's output of those very images) for each sampling noise-
   augmentation level in --noise_levels (Imagen sweeps it: Saharia et al. 2022, fig. A.9), at the
   best guidance. With --tune_at cascade, every (guidance, noise level) pair is scored through the
   paired cascade instead, so the guidance too is chosen at 32x32, where the goals are judged.
   "Best" (--objective): the highest "all" accuracy, or with "goals" the highest of the lesser of
   counting on seen prompts and colour binding (the two categories with a goal).
2. Final (prompt seed --final_seed, --final_prompts x --final_images): the chosen settings' scores,
   next to the real-scene ceiling at each size (jaxgen.eval.prompt_suite) and, with --sr, beside the
   non-learned up-samplings of the same base images.

Writes text2image_tuning.{json,md} and text2image_final.{json,md} into --out.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

from experiments.results_files import write_pair
from jaxgen.eval.prompts import CATEGORIES
from jaxgen.tasks import runs
from jaxgen.train import parallel

COLUMNS = ("counting", "counting_seen", "counting_held_out", "counting_n4", "counting_content", "colour_binding",
           "position", "position_absolute", "position_relation", "combination", "all")
# What --objective maximises over the tuning rows.
OBJECTIVES = {"all": lambda row: row["all"],
              "goals": lambda row: min(row["counting_seen"], row["colour_binding"])}


def _score(task, stages, seed: int, per_category: int, per_prompt: int, **sample) -> dict:
    """The prompt-suite scores of the base stage alone (stages = [base]) or of the paired cascade,
    with the eval's suite and the stages' sample settings set as given."""
    for t, _ in stages:
        t.config.eval.update(prompt_seed=seed, prompts_per_category=per_category, images_per_prompt=per_prompt)
        t.config.sample.update(sample)
    if len(stages) == 1:
        base, params = stages[0]
        return base.prompt_scores(lambda texts, rng: base.text_to_image(params, rng, texts)[0])
    return task.cascade_scores(stages)


def _rows(scores: dict, sets: tuple[str, ...]) -> list[dict]:
    """One table row per image set ("" = the base alone) with COLUMNS and their ceilings."""
    rows = []
    for name in sets:
        prefix = f"t2i_{name}_" if name else "t2i_"
        row = {"images": name or "base", **{c: scores.get(prefix + c) for c in COLUMNS},
               **{f"ceiling_{c}": scores.get(f"{prefix}ceiling_{c}") for c in COLUMNS}}
        rows.append(row)
    return rows


def markdown(rows: list[dict], keys: tuple[str, ...], title: str, note: str) -> str:
    head = keys + COLUMNS
    lines = [f"# {title}", "", note, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = []
        for k in head:
            v, ceiling = r.get(k), r.get(f"ceiling_{k}")
            if k in COLUMNS and isinstance(v, float):  # a fraction of images: in %
                cells.append(f"{100 * v:.1f}" + (f" ({100 * ceiling:.1f})" if isinstance(ceiling, float) else ""))
            else:
                cells.append("-" if v is None else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True)
    p.add_argument("--sr")
    p.add_argument("--out", default="experiments/results")
    p.add_argument("--guidances", type=float, nargs="+", default=[1.0, 3.0, 5.0])
    p.add_argument("--noise_levels", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2])
    p.add_argument("--tune_seed", type=int, default=1)
    p.add_argument("--tune_prompts", type=int, default=16)
    p.add_argument("--tune_images", type=int, default=4)
    p.add_argument("--final_seed", type=int, default=0)
    p.add_argument("--final_prompts", type=int, default=48)
    p.add_argument("--final_images", type=int, default=8)
    p.add_argument("--tune_at", choices=("base", "cascade"), default="base",
                   help="choose the guidance on the base's 16x16 images, or on the paired cascade's 32x32 ones")
    p.add_argument("--objective", choices=tuple(OBJECTIVES), default="all")
    args = p.parse_args(argv)
    command = "python -m experiments.text2image_sweeps " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.tune_at == "cascade" and not args.sr:
        p.error("--tune_at cascade needs --sr (the cascade's second stage)")
    best = OBJECTIVES[args.objective]
    parallel.configure_jax()
    os.makedirs(args.out, exist_ok=True)

    # Run folders (newest checkpoint) or pretrained models, of text2image or unclip (a base stage).
    base_model = runs.trained_model(args.base, None)
    base = base_model.task
    stages = [(base, base_model.params)]
    sr = sr_model = None
    if args.sr:
        sr_model = runs.trained_model(args.sr, None)
        sr = sr_model.task
        stages.append((sr, sr_model.params))
    meta = {"base": args.base, "base_step": base_model.step, "sr": args.sr,
            "sr_step": sr_model.step if sr_model else None, "args": vars(args)}

    tune = (args.tune_seed, args.tune_prompts, args.tune_images)

    def cascade_row(w: float, level: float) -> dict:
        """The paired cascade's tuning row (32x32) at guidance w and SR noise augmentation `level`."""
        scores = _score(sr, stages, *tune, guidance=w, noise_aug=level)
        row = {"stage": "cascade", "guidance": w, "noise_aug": level, **_rows(scores, ("cascade",))[0]}
        print(row, flush=True)
        return row

    if args.tune_at == "cascade":  # the grid, each pair scored at 32x32 through the paired cascade
        tuning = [cascade_row(w, level) for w in args.guidances for level in args.noise_levels]
        chosen = max(tuning, key=best)
        best_w, best_noise = chosen["guidance"], chosen["noise_aug"]
    else:
        tuning = []
        for w in args.guidances:
            scores = _score(base, stages[:1], *tune, guidance=w)
            tuning += [{"stage": "base", "guidance": w, "noise_aug": "-", **r} for r in _rows(scores, ("",))]
            print(tuning[-1], flush=True)
        best_w = max(tuning, key=best)["guidance"]
        best_noise = None
        if sr is not None:
            cascade_rows = [cascade_row(best_w, level) for level in args.noise_levels]
            tuning += cascade_rows
            best_noise = max(cascade_rows, key=best)["noise_aug"]
    note = (f"Prompt seed {args.tune_seed}, {args.tune_prompts} prompts x {args.tune_images} images per category; "
            f"% of images satisfying their prompt, the real-scene ceiling at the same size in brackets; "
            f"chosen: the best '{args.objective}' (experiments/text2image_sweeps.OBJECTIVES). "
            f"{meta['base']} at step {meta['base_step']}" + (f", {args.sr} at step {meta['sr_step']}" if sr else "") +
            f". Command: {command}")
    _write(args.out, "text2image_tuning", meta, tuning, ("stage", "guidance", "noise_aug"),
           "Text-to-image: tuning (not the reported prompts)", note)

    final = (args.final_seed, args.final_prompts, args.final_images)
    settings = {"guidance": best_w, **({"noise_aug": best_noise} if sr is not None else {})}
    scores = _score(sr or base, stages, *final, **settings)
    rows = _rows(scores, ("base", "cascade", "nearest", "bilinear") if sr is not None else ("",))
    meta.update(settings=settings, scores=scores)
    note = (f"Prompt seed {args.final_seed} (tuned on seed {args.tune_seed}), {args.final_prompts} prompts x "
            f"{args.final_images} images per category, guidance {best_w}"
            + (f", SR noise augmentation {best_noise}" if sr is not None else "") +
            "; % of images satisfying their prompt (categories: " + ", ".join(CATEGORIES) + "), the real-scene "
            "ceiling at the same size in brackets; 'seen' prompts have >= 20 training captions stating their "
            "(colour, shape, count) triples, 'held_out' none (never rendered in shapes/t2i's train split). "
            f"Command: {command}")
    _write(args.out, "text2image_final", meta, rows, ("images",), "Text-to-image: scores on the reported prompts", note)


def _write(out: str, stem: str, meta: dict, rows: list[dict], keys: tuple[str, ...], title: str, note: str) -> None:
    path = write_pair(out, stem, {"meta": {**meta, "note": note}, "rows": rows}, markdown(rows, keys, title, note))
    print(f"wrote {path}.json and .md", flush=True)


if __name__ == "__main__":
    main()
