"""Captions for contrastive text-image training: templated digit captions, and the meaning of a
`shapes` caption (which scenes a caption is true of).

Digits carry a class label, not text: a caption is a template filled with the digit, as a word or a
numeral ("a handwritten digit seven", "the number 7"). The label reaches a text-image model only
through such captions. `caption_rows` draws one template per example as a pure function of (seed,
step, global example index), so a resumed run sees the same captions.

A `shapes` caption is often true of many scenes ("a red circle"), and the same content can be
listed in another order ("a blue square and a red circle"). Retrieval therefore counts a hit when
the retrieved scene *matches* the caption: `scene_key(style, ...)` is the content a caption of that
style states (a multiset of (colour, shape) for the full caption, of shapes for the counting one,
the colours for the colour one, the (colour, shape, cell) triples for the position one, and for the
relation one the relation caption itself where it states a relation, else the full key), and two
scenes match under a style when their keys are equal.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxgen.data import shapes as shapes_lib

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# {w}: the digit as a word, {d}: as a numeral.
DIGIT_TEMPLATES = (
    "a handwritten digit {w}",
    "the number {d}",
    "a photo of the number {w}",
    "a drawing of a {w}",
    "the digit {d}",
    "an image of the numeral {d}",
    "a scan of a handwritten {w}",
    "{w}",
)


def digit_caption(label: int, template: str) -> str:
    """The caption of digit `label` (0..9) written with `template` ({w} word, {d} numeral)."""
    return template.format(w=DIGIT_WORDS[label], d=label)


def all_digit_captions(templates: Sequence[str] = DIGIT_TEMPLATES) -> list[str]:
    """Every caption the templates can produce (the digits' text vocabulary)."""
    return [digit_caption(label, t) for t in templates for label in range(10)]


def caption_rows(seed: int, step: int, global_batch_size: int, num_choices: int, process_index: int = 0,
                 process_count: int = 1) -> np.ndarray:
    """Which of `num_choices` captions (template or caption style) each of this process's rows of
    the global batch of `step` gets: int [global_batch_size // process_count]. A pure function of
    (seed, step, global row), like the batch itself."""
    draws = np.random.default_rng([seed, step, 7919]).integers(0, num_choices, global_batch_size)
    b = global_batch_size // process_count
    return draws[process_index * b:(process_index + 1) * b]


def drawn_captions(rows: dict[str, np.ndarray], keys: Sequence[str], seed: int, step: int, global_batch_size: int,
                   process_index: int = 0, process_count: int = 1) -> list:
    """Each of this process's batch rows' entry under the key `caption_rows` draws for it among
    `keys` (caption styles, or their embeddings): a list of rows[keys[k]][i], one per row i."""
    which = caption_rows(seed, step, global_batch_size, len(keys), process_index, process_count)
    return [rows[keys[k]][i] for i, k in enumerate(which)]


def scene_key(style: str, shapes: Sequence[int], colours: Sequence[int], positions: Sequence[int]) -> tuple:
    """What a `shapes` caption of `style` says about a scene (object records padded with -1)."""
    objs = [(int(s), int(c), int(p)) for s, c, p in zip(shapes, colours, positions) if s >= 0]
    if style == "full":
        return tuple(sorted((c, s) for s, c, _ in objs))
    if style == "count":
        return tuple(sorted(s for s, _, _ in objs))
    if style == "colour":  # "a red shape" (one object) or "red and blue shapes" (several)
        return (len(objs) == 1,) + tuple(sorted({c for _, c, _ in objs}))
    if style == "position":
        return tuple(sorted((c, s, p) for s, c, p in objs))
    if style == "relation":  # "a red circle above a blue square" (two objects of two kinds)
        if len(objs) == 2 and objs[0][:2] != objs[1][:2]:
            return ("relation", shapes_lib.caption(shapes, colours, positions, style="relation"))
        return scene_key("full", shapes, colours, positions)
    raise ValueError(f"unknown caption style {style!r}.")


def scene_keys(style: str, arrays: dict[str, np.ndarray]) -> list[tuple]:
    """`scene_key` of every scene of a `shapes` split's arrays."""
    return [scene_key(style, s, c, p) for s, c, p in
            zip(arrays["obj_shape"], arrays["obj_colour"], arrays["obj_position"])]
