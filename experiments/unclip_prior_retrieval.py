"""How often the unCLIP prior's sampled image embedding retrieves the caption's own scene.

    python -m experiments.unclip_prior_retrieval --workdir W [--guidances 1 2] [--styles full position] \
        [--num 1000] --out experiments/results/unclip_prior_retrieval

For the first `num` held-out test scenes of the run's dataset and each caption style: the CLIP text
embedding of the scene's caption goes through the prior (`UnCLIPTask.sample_prior`, prior guidance w);
the sampled image embedding is compared by cosine with the CLIP image embeddings of all `num` test
scenes. Per (style, w):

- own_image_rate: the caption's own scene is the nearest (top-1 over `num` scenes);
- same_caption_rate: the nearest scene has the same caption in that style (an equally right answer:
  many scenes share a full caption);
- own_image_ceiling: mean over scenes of 1 / (scenes sharing its caption): what a prior that knew
  only the caption could reach by chance among the tied scenes, on average;
- text_query_own_image_rate: the same retrieval with the CLIP text embedding itself as the query
  (no prior), the reference the prior should approach;
- cosine_own / cosine_other: mean cosine to the own scene's embedding and to another scene's (the
  next one), the figures `jaxgen eval` reports as prior_cosine_true / _other.

Writes unclip_prior_retrieval.json and .md into --out. Cost on 2 cores: one prior chain per (style,
w) over `num` embeddings (a small MLP, seconds) plus CLIP embeddings of the scenes and captions.
"""
from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

from experiments.results_files import write_pair
from jaxgen.data import shapes as shapes_lib

COLUMNS = (("own_image_rate", ".3f"), ("same_caption_rate", ".3f"), ("own_image_ceiling", ".3f"),
           ("text_query_own_image_rate", ".3f"), ("cosine_own", ".3f"), ("cosine_other", ".3f"))


def retrieval(queries: np.ndarray, keys: np.ndarray, captions: list[str]) -> dict[str, float]:
    """Top-1 retrieval of unit queries [N, E] among unit keys [N, E] (row i's right answer is key i;
    captions [N] say which keys are equally right)."""
    nearest = np.argmax(queries @ keys.T, axis=1)
    caps = np.asarray(captions)
    return {"own_image_rate": float(np.mean(nearest == np.arange(len(keys)))),
            "same_caption_rate": float(np.mean(caps[nearest] == caps))}


def tie_ceiling(captions: list[str]) -> float:
    """Mean over scenes of 1 / (number of scenes with the same caption)."""
    _, inverse, counts = np.unique(np.asarray(captions), return_inverse=True, return_counts=True)
    return float(np.mean(1.0 / counts[inverse]))


def evaluate(workdir: str, guidances: list[float], styles: list[str] | None, num: int | None) -> dict:
    from jaxgen.train import loop

    config, task, state = loop.restore_for_eval(workdir)
    if config.task != "unclip":
        raise SystemExit(f"{workdir} is a {config.task} run; --workdir must name a trained unclip run.")
    params = task.eval_params(state)
    test = task.eval_dataset().arrays
    n = min(num or len(test["image"]), len(test["image"]))
    styles = list(styles or task.styles)
    z_image = task.clip.images(test["image"][:n])
    other = np.roll(np.arange(n), 1)
    rng = jax.random.PRNGKey(config.seed + 3)  # the key `jaxgen eval` draws its prior samples with
    rows = []
    for style in styles:
        captions = [str(t) for t in test[shapes_lib.CAPTION_KEYS[style]][:n]]
        z_text = task.clip.texts(captions)
        text_query = retrieval(z_text, z_image, captions)["own_image_rate"]
        for w in guidances:
            z = task.sample_prior(params, z_text, rng, prior_guidance=float(w))
            row = {"style": style, "prior_guidance": float(w), "num_scenes": n, **retrieval(z, z_image, captions),
                   "own_image_ceiling": tie_ceiling(captions), "text_query_own_image_rate": text_query,
                   "cosine_own": float(np.mean(np.sum(z * z_image, -1))),
                   "cosine_other": float(np.mean(np.sum(z * z_image[other], -1)))}
            rows.append(row)
            print(row, flush=True)
    return {"meta": {"workdir": workdir, "step": int(state.step), "dataset": config.data.name,
                     "clip_workdir": config.model.clip_workdir, "prior_steps": int(config.sample.prior_steps),
                     "prior_method": config.sample.prior_method}, "rows": rows}


def markdown(result: dict, command: str) -> str:
    meta = result["meta"]
    head = ["style", "w"] + [k for k, _ in COLUMNS]
    lines = ["# unCLIP prior: retrieval of the caption's own scene", "",
             f"`{command}`: {meta['workdir']} (step {meta['step']}, {meta['dataset']}, CLIP {meta['clip_workdir']}), "
             f"prior {meta['prior_method']}-{meta['prior_steps']}; top-1 among the first "
             f"{result['rows'][0]['num_scenes'] if result['rows'] else 0} test scenes. own_image_ceiling: the "
             "average chance of the own scene among scenes with the same caption.", "",
             "| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(COLUMNS)]
    for r in result["rows"]:
        lines.append("| " + " | ".join([r["style"], f"{r['prior_guidance']:g}"]
                                       + [format(r[k], fmt) for k, fmt in COLUMNS]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a trained unclip run (its prior at least)")
    parser.add_argument("--guidances", type=float, nargs="+", default=[1.0, 2.0], help="prior guidance scales")
    parser.add_argument("--styles", nargs="+", default=None, choices=shapes_lib.CAPTION_STYLES,
                        help="caption styles (default: the run's data.caption_styles)")
    parser.add_argument("--num", type=int, default=None, help="test scenes (default: the whole split)")
    parser.add_argument("--out", default="experiments/results/unclip_prior_retrieval")
    args = parser.parse_args(argv)
    if args.num is not None and args.num < 2:
        parser.error(f"--num must be at least 2 (one scene is always its own nearest), not {args.num}.")
    from jaxgen.train import parallel

    parallel.configure_jax()
    result = evaluate(args.workdir, args.guidances, args.styles, args.num)
    command = (f"python -m experiments.unclip_prior_retrieval --workdir {args.workdir} --guidances "
               + " ".join(f"{w:g}" for w in args.guidances)
               + (f" --styles {' '.join(args.styles)}" if args.styles else "")
               + (f" --num {args.num}" if args.num else "") + f" --out {args.out}")
    result["meta"]["command"] = command
    text = markdown(result, command)
    write_pair(args.out, "unclip_prior_retrieval", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
