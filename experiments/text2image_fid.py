"""FID of the Imagen-style cascade on `shapes/t2i`, with the standard Inception features, against
real held-out scenes: generated images for the test split's own captions, beside the floor (real
train scenes against real test scenes) at each size.

    python -m experiments.text2image_fid --base runs/t2i_base --sr runs/t2i_sr --num 1000 \
        --out experiments/results/t2i_fid

Rows (each against the first --num test scenes at the row's size; 16x16 = the 32x32 scenes
down-sampled bilinearly, as the base stage's training images are made):
- real train (16x16 and 32x32): the first --num train scenes, the floor a model can hope to reach;
- base (16x16): the base stage's images of the test captions;
- pixel repetition / bilinear (32x32): those base images up-sampled without a network;
- cascade (32x32): the SR stage's output of those very base images (same keys, jaxgen.tasks.cascade).
Sampling: each stage's config `sample` section, with --guidance and --noise_aug if given. The FID
Inception weights must have been converted once (python -m jaxgen.eval.inception convert --from FILE).
Writes text2image_fid.{json,md} into --out.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from experiments.results_files import write_pair
from jaxgen.data import shapes as shapes_lib
from jaxgen.data import transforms
from jaxgen.eval.fid import FIDScorer
from jaxgen.eval.frechet import frechet_distance_from_statistics
from jaxgen.tasks.cascade import run_cascade
from jaxgen.train import loop, parallel


def real_images(split_dataset, num: int) -> np.ndarray:
    """The first `num` scenes of a split as float [num, 32, 32, 3] in [0, 1]."""
    images = split_dataset.arrays["image"][:num]
    return np.asarray(transforms.to_unit(images, split_dataset.num_levels))


def generate(stages, captions: list[str], seed: int, batch_size: int, **overrides) -> list[np.ndarray]:
    """Per stage, its images of `captions` (float [N, H_i, W_i, 3]); batch i keyed fold_in(seed, i)."""
    rng = jax.random.PRNGKey(seed)
    per_stage = [[] for _ in stages]
    for i in range(0, len(captions), batch_size):
        images, _ = run_cascade(stages, captions[i:i + batch_size], jax.random.fold_in(rng, i // batch_size),
                                **overrides)
        for out, x in zip(per_stage, images):
            out.append(np.asarray(x))
        print(f"generated {min(i + batch_size, len(captions))} / {len(captions)}", flush=True)
    return [np.concatenate(x) for x in per_stage]


def markdown(rows: list[dict], note: str) -> str:
    lines = ["# Text-to-image FID on shapes/t2i (standard Inception features)", "", note, "",
             "| images | size | FID to the test scenes |", "|---|---|---|"]
    lines += [f"| {r['images']} | {r['size']}x{r['size']} | {r['fid']:.2f} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True)
    p.add_argument("--sr")
    p.add_argument("--num", type=int, default=1000, help="test captions (and real scenes per set)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch_size", type=int, default=100, help="captions per cascade call")
    p.add_argument("--guidance", type=float)
    p.add_argument("--noise_aug", type=float, help="the SR stage's sampling noise augmentation")
    p.add_argument("--out", default="experiments/results/t2i_fid")
    args = p.parse_args(argv)
    parallel.configure_jax()
    start = time.time()

    _, base, base_state = loop.restore_for_eval(args.base)
    stages = [(base, base.eval_params(base_state))]
    if args.sr:
        _, sr, sr_state = loop.restore_for_eval(args.sr)
        stages.append((sr, sr.eval_params(sr_state)))
        if args.noise_aug is not None:
            sr.config.sample.noise_aug = args.noise_aug
    test, train = base.eval_dataset(), base.dataset
    captions = [str(c) for c in test.arrays[shapes_lib.CAPTION_KEYS["full"]][:args.num]]
    real = {"test": real_images(test, args.num), "train": real_images(train, args.num)}
    low = base.image_shape[0]
    made = generate(stages, captions, args.seed, args.batch_size, guidance=args.guidance)

    scorer = FIDScorer()
    stats = {}

    def fid(images: np.ndarray, reference: np.ndarray) -> float:
        key = id(reference)
        if key not in stats:
            stats[key] = scorer.statistics(reference)
        return float(frechet_distance_from_statistics(*scorer.statistics(images), *stats[key]))

    small = {k: np.asarray(transforms.resize(v, low)) for k, v in real.items()}
    rows = [{"images": "real train", "size": low, "fid": fid(small["train"], small["test"])},
            {"images": "base", "size": low, "fid": fid(made[0], small["test"])}]
    if args.sr:
        size = stages[-1][0].image_shape[0]
        rows += [{"images": "real train", "size": size, "fid": fid(real["train"], real["test"])},
                 {"images": "pixel repetition of base",
                  "size": size, "fid": fid(np.asarray(transforms.resize(made[0], size, "nearest")), real["test"])},
                 {"images": "bilinear of base",
                  "size": size, "fid": fid(np.asarray(transforms.resize(made[0], size)), real["test"])},
                 {"images": "cascade", "size": size, "fid": fid(made[-1], real["test"])}]
    meta = {"base": args.base, "base_step": int(base_state.step), "sr": args.sr,
            "sr_step": int(sr_state.step) if args.sr else None, "args": vars(args),
            "settings": [dict(t.config.sample.to_dict(), **({"guidance": args.guidance} if args.guidance else {}))
                         for t, _ in stages],
            "seconds": round(time.time() - start, 1)}
    flags = " ".join(f"--{k} {v}" for k, v in vars(args).items() if v is not None and k != "out")
    note = (f"{args.num} generated images (the first {args.num} test captions, full style) and {args.num} real "
            f"scenes per set, each against the first {args.num} test scenes at its size; real train = the floor. "
            f"{args.base} at step {meta['base_step']}" + (f", {args.sr} at step {meta['sr_step']}" if args.sr else "")
            + f". Command: python -m experiments.text2image_fid {flags}")
    path = write_pair(args.out, "text2image_fid", {"meta": {**meta, "note": note}, "rows": rows}, markdown(rows, note))
    print(f"wrote {path}.json and .md", flush=True)


if __name__ == "__main__":
    main()
