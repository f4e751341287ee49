"""The standard FID / KID / precision / recall (Inception features, jaxgen.eval.fid) of trained runs
that make images on the embedded `shapes` data, in one table beside the references that frame them.

    python -m experiments.shapes_fid --run unet=runs/diffs_unet --run dit=runs/diffs_dit \
        --run cyclegan=runs/cyclegan_shapes --num 1000 --out experiments/results/shapes_fid

Each run's rows are what `jaxgen eval` reports as inception_* (the same samples: task.sample with
PRNGKey(seed + 7), against task.fid_reference_images: the first --num held-out images the samples
should resemble, at the samples' size). Per distinct reference set, two more rows:
- real train: the first --num train images of the same feature, prepared the same way: the floor a
  model can hope to reach at this sample count (FID is biased upwards at small N, the floor too);
- untranslated input (an image-to-image family, CycleGAN): the held-out inputs themselves, i.e. a
  translator that does nothing.
The FID Inception weights must have been converted once (python -m jaxgen.eval.inception convert).
Writes shapes_fid.{json,md} into --out.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from experiments.results_files import write_pair
from jaxgen.eval.fid import FIDScorer, compare_features
from jaxgen.tasks import runs
from jaxgen.train import parallel


def markdown(rows: list[dict], note: str) -> str:
    lines = ["# FID on shapes (standard Inception features)", "", note, "",
             "| run | images | step | FID | KID | precision | recall |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        step = r.get("step", "-")
        lines.append(f"| {r['run']} | {r['images']} | {step} | {r['fid']:.2f} | {r['kid']:.4f} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, metavar="NAME=WORKDIR",
                   help="a trained run folder (repeatable), named in the table")
    p.add_argument("--num", type=int, default=1000, help="samples and held-out images per set")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    parallel.configure_jax()
    scorer = FIDScorer()
    references: dict[tuple, np.ndarray] = {}  # (dataset, split, feature, size) -> held-out features
    rows = []
    for spec in args.run:
        name, _, workdir = spec.partition("=")
        run = runs.restore_for_eval(workdir)
        task, config = run.task, run.config
        start = time.time()
        out = task.sample(task.eval_params(run.state), jax.random.PRNGKey(config.seed + 7), args.num)
        seconds = time.time() - start
        fake = np.asarray(out["images"])
        size = fake.shape[1]
        held_out = task.fid_reference_dataset()
        key = (held_out.name, held_out.split, task.fid_reference, size)
        if key not in references:
            references[key] = scorer.features(task.fid_reference_images(args.num, size))
            real = scorer.features(task.fid_reference_images(args.num, size, task.dataset))
            rows.append({"run": f"real train ({task.fid_reference}, {size}x{size})", "images": len(real),
                         **compare_features(real, references[key])})
        ref = references[key]
        rows.append({"run": name, "workdir": workdir, "images": len(fake), "step": int(run.state.step),
                     "sample_seconds": round(seconds, 1), "sample": dict(config.get("sample", {})),
                     **compare_features(scorer.features(fake), ref)})
        if "inputs" in out:  # an image-to-image family: the translator that does nothing
            rows.append({"run": f"{name}: untranslated input", "images": len(fake),
                         **compare_features(scorer.features(np.asarray(out["inputs"])), ref)})
        print(rows[-1], flush=True)
    note = (f"{args.num} images per set, each against the first {args.num} held-out images its samples should "
            "resemble (the run's task.fid_reference_images, at the samples' size); precision / recall: k-NN "
            "manifolds, k = 3; KID: the unbiased cubic-kernel MMD. FID at this N is biased upwards, floors "
            "included: compare rows with each other. Command: python -m experiments.shapes_fid "
            + " ".join(f"--run {r}" for r in args.run) + f" --num {args.num}")
    path = write_pair(args.out, "shapes_fid", {"note": note, "rows": rows}, markdown(rows, note), default=str)
    print(f"wrote {path}.json and .md")


if __name__ == "__main__":
    main()
