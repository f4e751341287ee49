"""A text-to-image cascade: a base stage, then super-resolution stages, each fed the images of the one
before it (Imagen sec. 2.4, and DALL-E 2's decoder followed by its up-samplers).

A stage is (task, params) of a task with the text-to-image contract:

    task.stage: "base" or "sr"
    task.image_shape: (H, W, C) of the images it makes
    task.low_res_shape: (h, w, C) of the images a super-resolution stage takes as low_res
    task.text_to_image(params, rng, prompts, low_res=None, **overrides) -> (images, stats)

with images float [N, H, W, C] in [0, 1], one per prompt (Text2ImageTask, UnCLIPTask). This is the
one place that chains stages: `jaxgen generate` and the SR stage's evaluation of the cascade both
call `run_cascade`, so a prompt and a key give the same images in both.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxgen.data import shapes as shapes_lib
from jaxgen.eval import prompt_suite
from jaxgen.tasks import runs
from jaxgen.tasks.base import TaskError

Stage = tuple[Any, Any]  # (task, params)


def run_cascade(stages: Sequence[Stage], prompts: list[str], rng: jax.Array,
                **overrides) -> tuple[list[np.ndarray], list[dict[str, float]]]:
    """Runs `stages` (a base stage first, then super-resolution stages) on `prompts` [N].

    Stage i samples with key jax.random.fold_in(rng, i) and, after the first, takes the previous
    stage's images as its low_res input. `overrides` (e.g. guidance, steps) go to every stage's
    text_to_image. Returns (images, stats): per stage, its images float [N, H_i, W_i, C] in [0, 1]
    (the last entry is the cascade's output) and its run statistics.
    """
    check_cascade(stages)
    images, stats = [], []
    low_res = None
    for i, (task, params) in enumerate(stages):
        low_res, s = task.text_to_image(params, jax.random.fold_in(rng, i), prompts, low_res=low_res, **overrides)
        images.append(low_res)
        stats.append(s)
    return images, stats


def prompt_scores(task, make_images: prompt_suite.MakeImages, settings: Mapping | None = None) -> dict[str, float]:
    """jaxgen.eval.prompt_suite's scores of a text-to-image `task`'s `make_images(texts [n], rng) ->
    images [n, H, W, C]` in [0, 1] (or named image sets of those texts), over `settings` (default: the
    task's config.eval), against the training captions of every style the task draws (task.styles),
    keyed from config.seed + 100: the one prompt-suite scorer of both text-to-image families. The CLIP
    score is that of the clip run settings.clip_workdir names, if any."""
    settings = task.config.eval if settings is None else settings
    clip = None
    if settings.get("clip_workdir") and int(settings["prompts_per_category"]) > 0:  # 0 prompts: no suite
        clip = runs.clip_scorer(settings["clip_workdir"])
    seen = [t for style in task.styles for t in task.dataset.arrays[shapes_lib.CAPTION_KEYS[style]]]
    return prompt_suite.prompt_suite_scores(make_images, settings, seen, task.eval_dataset(), task.config.seed + 100,
                                            clip)


def check_cascade(stages: Sequence[Stage]) -> None:
    """Raises TaskError (one sentence) unless `stages` is a base stage followed by super-resolution
    stages, each taking exactly the images the stage before it makes (size and channels)."""
    if not stages:
        raise TaskError("a cascade needs at least one stage, a base stage.")
    kinds = [getattr(task, "stage", None) for task, _ in stages]
    if kinds[0] != "base" or any(k != "sr" for k in kinds[1:]):
        raise TaskError(f"a cascade is a base stage followed by super-resolution stages, not "
                        f"{' -> '.join(map(str, kinds))}.")
    for (before, _), (task, _) in zip(stages, stages[1:]):
        made, taken = tuple(before.image_shape), tuple(task.low_res_shape)
        if made != taken:
            raise TaskError(f"a super-resolution stage that takes {_dims(taken)} images cannot follow a stage "
                            f"that makes {_dims(made)} ones.")


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))
