"""What image variations keep of their source scene, read by the scene parser.

unCLIP makes a variation of an image by decoding its CLIP image embedding again with fresh noise
(DALL-E 2, Ramesh et al. 2022, sec. 3.1): the embedding holds what the image shows, not every pixel,
so a variation should show the same objects, possibly elsewhere. On `shapes` this is measurable: the
parser (jaxgen.eval.scene) reads each variation back into objects and compares them with the source
scene's records.

  variation_same_objects      the parsed objects, as a multiset of (colour, shape), equal the
                              source's: the content kept, the layout free;
  variation_same_count        the same number of objects;
  variation_exact_scene       the same objects in the same cells (the layout kept too);
  <metric>_other              the same comparison against another source scene (the next one in
                              the list): what an image that ignored its source would score;
  <metric>_ceiling            the real source scenes themselves, brought to the variations' size and
                              parsed the same way (bilinear, then pixel repetition to 32x32): what a
                              perfect model scores at that size (at 16x16 the parser reads some
                              small circles as squares).

This module is the eval layer: images and records in, scores out.
"""
from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from jaxgen.data import transforms
from jaxgen.eval import scene as scene_lib

METRICS = ("same_objects", "same_count", "exact_scene")
# The per-object records the comparisons read (the dataset's layout, scene.to_records).
RECORD_KEYS = ("num_objects", "obj_shape", "obj_colour", "obj_position")


def variation_scores(variations: np.ndarray, sources: np.ndarray, truth: Mapping[str, np.ndarray],
                     num_levels: int = 256) -> dict[str, float]:
    """Scores (see the module docstring) of variations float [N * V, H, W, 3] in [0, 1], image-major
    (rows i * V ... i * V + V - 1 are variations of source i), made from the N source images
    `sources` (uint8 [N, h, w, 3] in the dataset's `num_levels`) whose per-object records are
    `truth` (the dataset's RECORD_KEYS, first N rows; other features are ignored).
    Needs N >= 2 (the `_other` comparison pairs each source with the next)."""
    n = len(sources)
    if n < 2 or len(variations) % n:
        raise ValueError(f"variation_scores needs at least two sources and a whole number of variations per "
                         f"source; got {len(variations)} variations of {n} sources.")
    per_source = len(variations) // n
    true = {k: np.asarray(truth[k])[:n] for k in RECORD_KEYS}
    parsed = scene_lib.parse_records(variations)
    own = np.repeat(np.arange(n), per_source)
    scores = {}
    for suffix, rows in (("", own), ("_other", (own + 1) % n)):
        for name, ok in _compare(parsed, {k: v[rows] for k, v in true.items()}).items():
            scores[f"variation_{name}{suffix}"] = float(ok.mean())
    size = variations.shape[1]
    real = np.asarray(transforms.resize(transforms.to_unit(jnp.asarray(sources), num_levels), size))
    for name, ok in _compare(scene_lib.parse_records(real), true).items():
        scores[f"variation_{name}_ceiling"] = float(ok.mean())
    scores["variation_num_images"] = float(len(variations))
    return scores


def _compare(parsed: Mapping[str, np.ndarray], true: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """bool [N] per metric of METRICS: parsed row i against true row i."""
    same_count = np.asarray(parsed["num_objects"]) == np.asarray(true["num_objects"])
    same_objects = np.asarray([_kinds(parsed, i) == _kinds(true, i) for i in range(len(same_count))], bool)
    return {"same_objects": same_objects & same_count, "same_count": same_count,
            "exact_scene": scene_lib.exact_match(parsed, true)}


def _kinds(records: Mapping[str, np.ndarray], i: int) -> list[tuple[int, int]]:
    """The sorted (colour, shape) of row i's objects (padding, -1, left out)."""
    colours, shapes_ = np.asarray(records["obj_colour"][i]), np.asarray(records["obj_shape"][i])
    return sorted((int(c), int(s)) for c, s in zip(colours, shapes_) if c >= 0)
