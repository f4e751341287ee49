"""A deterministic scene parser for `shapes`-style images: what objects a (generated) image shows.

Text-to-image models are scored on what the public benchmarks find hard (counting, binding colours to
objects, positions) by parsing each generated image back into object records and checking them
against the prompt (jaxgen.eval.prompts). The parser is plain numpy, with no learning, so a score
never depends on a trained detector:

1. colour: a pixel x is read as a mix of the background and one palette colour c (shapes.COLOURS):
   its coverage alpha_c is the projection of x - background onto c - background, and its distance
   from that line says how well c explains it. Each pixel takes the colour whose line is nearest,
   and is foreground when its coverage is >= 1/2. Lines, not points: a blurred rim (half yellow,
   half background) is nearest green as a point but lies on yellow's line.
2. objects: 4-connected components of the foreground (objects of the dataset never 4-touch: an
   object stays 0.33 px inside its grid cell). A component in which two colours each hold
   `min_area` pixels is split by colour (touching objects of a generated image); otherwise it takes
   its most frequent colour. Components under `min_area` pixels are noise and dropped.
3. shape, from cumulants of the object's coverage map (the object and a 1-2 pixel ring around it,
   where blur puts the rest of its mass). Cumulants of a convolution add, and a symmetric
   separable blur has zero odd and cross cumulants, so these two statistics survive blur:
   * skew = (k_yxx - k_yyy) / mass^1.5: an upright triangle widens downwards and its mass sits low,
     both > 0 for it (about 0.02-0.05 on the dataset), 0 for shapes symmetric top to bottom
     (|skew| <= 0.012 even with noise). |skew| > 0.015: triangle (an inverted one too);
   * cross = k_xxyy / mean(k_xxxx, k_yyyy): 0 for an axis-aligned square (x and y independent),
     1/3 for a disc (>= 0.13 for the dataset's rasterised 5-pixel circles). > 0.1: circle.
4. size: the half-extent the mass implies for that shape (mass = pi h^2, (1.7 h)^2 or 1.85 h^2 for
   circle, square, triangle as rendered by shapes), large above 3.5 (half-way between 2.75, 4.25).
5. position: the grid cell (shapes.POSITIONS, cell = 3 * row + column) of the coverage centroid.

Thresholds were set on the train stream (seed 0). On the held-out test stream (seed 1, 1,000
scenes) the parse is exact (every object's shape, colour and cell, nothing more) on 100% of clean
scenes, 99.4% with Gaussian noise of std 0.03, 100% after a [1/4, 1/2, 1/4] blur and 97.4% with
both (tests/eval/test_scene.py). Limits: objects are assumed axis-aligned and upright (a rotated
square reads as a circle), colours are only the six named ones (a pixel of any other colour goes
to the nearest line), and the parse of the `painted` style is not covered.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxgen.data import shapes

_PALETTE = np.asarray([shapes.BACKGROUND] + [shapes.COLOURS[c] for c in shapes.COLOUR_NAMES], np.float32)
# Shape thresholds between the classes as measured on the train stream (seed 0, 3,000 scenes, clean,
# blurred, noisy): see the module docstring. The second ring's floor trades noise against blur: a
# [1/4, 1/2, 1/4] blur leaves about 0.06 there, noise of std 0.03 up to 0.05 (for green).
_TRIANGLE_SKEW = 0.015
_CIRCLE_CROSS = 0.1
_RING_FLOOR = 0.04
_AREA_PER_HALF2 = np.asarray([np.pi, 1.7 ** 2, 1.85])  # area / half-extent^2: circle, square, triangle
_LARGE_HALF = 0.5 * (shapes._HALF[0] + shapes._HALF[1])  # half-extent between "small" and "large"


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One parsed object: indices into shapes.SHAPES / COLOUR_NAMES / POSITIONS / SIZES, its
    centroid (y, x) in pixels (pixel centres at +0.5), its area in pixels, and the evidence of the
    shape call (vertical skewness and cross ratio of its coverage, see the module docstring)."""
    shape: int
    colour: int
    position: int
    size: int
    centroid: tuple[float, float]
    area: int
    skew: float = 0.0
    cross: float = 0.0

    @property
    def row(self) -> int:
        return self.position // 3

    @property
    def column(self) -> int:
        return self.position % 3

    def describe(self) -> str:
        """"red circle at the top left" (for reports and failure messages)."""
        return f"{shapes.COLOUR_NAMES[self.colour]} {shapes.SHAPES[self.shape]} at {shapes.POSITIONS[self.position]}"


@dataclasses.dataclass(frozen=True)
class Scene:
    """The objects of one image, in reading order of their cells (then top to bottom, left to
    right), as the dataset lists them."""
    objects: tuple[SceneObject, ...]

    @property
    def num_objects(self) -> int:
        return len(self.objects)

    def describe(self) -> str:
        return ", ".join(o.describe() for o in self.objects) or "no objects"


def parse_ready(images: np.ndarray) -> np.ndarray:
    """Images [N, H, W, 3] in [0, 1] -> [N, 32, 32, 3], the grid the parser's thresholds are set for.
    Below 32 by pixel repetition: it keeps each pixel's colour (unlike bilinear), so shape reads
    best (on real 16x16 scenes: 83% exact against 47% bilinear). Above 32 (a multiple of it) by
    averaging each k x k block, as floats in [0, 1] (on 500 real 64x64 test scenes: 100% exact, as
    at 32x32)."""
    size = images.shape[1]
    if size > shapes.SIZE:
        k = size // shapes.SIZE
        n, h, w, c = images.shape
        x = np.asarray(images, np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
        return x.reshape(n, h // k, k, w // k, k, c).mean(axis=(2, 4))
    factor = shapes.SIZE // size
    if factor <= 1:
        return images
    return np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)


def _as_rgb255(images: np.ndarray) -> np.ndarray:
    """float32 [N, H, W, 3] in 0..255 from uint8 or float in [0, 1] (clipped: generated images
    overshoot a little)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"parse_scenes needs RGB images [N, H, W, 3] (or one [H, W, 3]), got shape {images.shape}.")
    if images.dtype == np.uint8:
        return images.astype(np.float32)
    return np.clip(images.astype(np.float32), 0.0, 1.0) * 255.0


def _components(keys: np.ndarray) -> np.ndarray:
    """4-connected components of equal positive keys (int [N, H, W], <= 0 is background): int
    labels [N, H, W], 0 on the background, otherwise a flat pixel index + 1 unique to the component
    across the batch. Vectorised over the batch: every pixel repeatedly takes the smallest label of
    its same-key neighbours, with pointer jumping (label -> that pixel's label) to shorten chains."""
    n, h, w = keys.shape
    fg = keys > 0
    big = np.int64(n * h * w + 1)
    labels = np.where(fg, np.arange(1, n * h * w + 1).reshape(n, h, w), big)
    same_y = fg[:, 1:] & (keys[:, 1:] == keys[:, :-1])  # pixel (y, x) and (y + 1, x) join
    same_x = fg[:, :, 1:] & (keys[:, :, 1:] == keys[:, :, :-1])
    while True:
        new = labels.copy()
        new[:, 1:] = np.where(same_y, np.minimum(new[:, 1:], labels[:, :-1]), new[:, 1:])
        new[:, :-1] = np.where(same_y, np.minimum(new[:, :-1], labels[:, 1:]), new[:, :-1])
        new[:, :, 1:] = np.where(same_x, np.minimum(new[:, :, 1:], labels[:, :, :-1]), new[:, :, 1:])
        new[:, :, :-1] = np.where(same_x, np.minimum(new[:, :, :-1], labels[:, :, 1:]), new[:, :, :-1])
        flat = np.append(new.reshape(-1), big)  # index big - 1 is the background's own entry
        new = np.where(fg, flat[new - 1], big)  # pointer jumping: a label is a pixel of the component
        if np.array_equal(new, labels):
            return np.where(fg, labels, 0)
        labels = new


def _colour_lines(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pixel x [..., 3] (0..255) as a mix of the background and each palette colour:
    coverage alpha [..., colours] in [0, 1] (the projection onto the segment from the background
    to the colour), the squared distance [..., colours] of the pixel from that segment, and the
    coverage unclipped below (zero-mean on a noisy background, for the shape statistics)."""
    e = _PALETTE[1:] - _PALETTE[0]  # [colours, 3]
    d = x[..., None, :] - _PALETTE[0]  # [..., colours, 3]
    coverage = np.minimum((d * e).sum(-1) / (e * e).sum(-1), 1.0)
    alpha = np.maximum(coverage, 0.0)
    return alpha, ((d - alpha[..., None] * e) ** 2).sum(-1), coverage


def _grow(mask: np.ndarray) -> np.ndarray:
    """mask [h, w] grown by one pixel (4-neighbourhood)."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _moments(alpha: np.ndarray) -> tuple[float, float, float, float, float]:
    """Of a coverage map alpha [h, w] (pixel centres at +0.5): mass, centroid (y, x), and two shape
    statistics built from cumulants, which a symmetric blur with a separable kernel leaves
    unchanged (cumulants of a convolution add, and the blur's odd and cross cumulants are 0):
      skew  = (k_yxx - k_yyy) / mass^1.5: an upright triangle's rows widen downwards (k_yxx > 0) and
              its mass sits low (k_yyy < 0); 0 for shapes symmetric top to bottom;
      cross = k_xxyy / ((k_xxxx + k_yyyy) / 2): 1/3 for a disc, 0 for an axis-aligned square (its x
              and y are independent)."""
    mass = alpha.sum()
    yy, xx = np.nonzero(np.ones_like(alpha, bool))
    wgt = alpha.reshape(-1) / mass
    cy, cx = (wgt * (yy + 0.5)).sum(), (wgt * (xx + 0.5)).sum()
    dy, dx = yy + 0.5 - cy, xx + 0.5 - cx
    e = lambda v: float((wgt * v).sum())  # noqa: E731 (expectation under the coverage)
    vy, vx, cxy = e(dy * dy), e(dx * dx), e(dx * dy)
    skew = (e(dy * dx * dx) - e(dy ** 3)) / mass ** 1.5
    k22 = e(dx * dx * dy * dy) - vx * vy - 2 * cxy * cxy
    k40, k04 = e(dx ** 4) - 3 * vx * vx, e(dy ** 4) - 3 * vy * vy
    cross = k22 / min(0.5 * (k40 + k04), -1e-9)  # k40, k04 < 0 for compact blobs
    return float(mass), float(cy), float(cx), float(skew), float(cross)


def parse_scenes(images: np.ndarray, min_area: int = 6) -> list[Scene]:
    """Parse `shapes`-style images: uint8 or float in [0, 1], [N, H, W, 3] (H = W = 32 for the
    dataset's grid; other sizes scale the grid) -> one Scene per image. Components of fewer than
    `min_area` pixels are dropped (the dataset's smallest object, a small triangle, has 10)."""
    x = _as_rgb255(images)
    n, h, w, _ = x.shape
    alpha, resid, coverage = _colour_lines(x)  # [N, H, W, colours] each
    label = resid.argmin(-1)  # the colour line a pixel lies nearest to
    fg = np.take_along_axis(alpha, label[..., None], -1)[..., 0] >= 0.5  # more object than background

    # Pass 1: blobs of foreground of any colour (a blurred rim stays with its object), and how many
    # of each blob's pixels lie on each colour's line.
    blobs = _components(fg.astype(np.int64))
    ids = np.unique(blobs, return_inverse=True)[1].reshape(blobs.shape)  # 0 background, 1.. blobs
    num = int(ids.max()) + 1
    votes = np.zeros((num, len(shapes.COLOURS)))
    np.add.at(votes, (ids[fg], label[fg]), 1.0)
    # A colour is present in a blob with min_area pixels (noise flips a few pixels, never that
    # many); a blob without one keeps its most frequent colour. Two present colours: touching
    # objects of a generated image, split below.
    present = votes >= min_area
    present[np.arange(num), votes.argmax(1)] |= ~present.any(1)

    # Pass 2: each foreground pixel takes the nearest line among its blob's present colours;
    # objects are the components of one colour.
    key = np.where(fg, np.where(present[ids], resid, np.inf).argmin(-1) + 1, 0)
    objects = _components(key)

    scenes: list[list[SceneObject]] = [[] for _ in range(n)]
    for i, yy, xx in zip(*np.nonzero(objects == np.arange(1, objects.size + 1).reshape(objects.shape))):
        # (i, yy, xx): the pixel whose index names its component, one per object.
        k = objects[i, yy, xx]
        mask = objects[i] == k
        area = int(mask.sum())
        if area < min_area:
            continue
        colour = int(key[i, yy, xx]) - 1
        # Shape statistics on the coverage of the object's colour over the object and a 2-pixel
        # ring around it (where blur puts the rest of its mass), not over other objects: a
        # symmetric blur keeps the mass, the centroid and the statistics (cumulants add).
        free = (objects[i] == 0) | mask  # not another object's pixels
        near = _grow(mask) & free
        ring = _grow(near) & free
        rows, cols = np.nonzero(ring)
        y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        cover = coverage[i, y0:y1, x0:x1, colour]
        # Pixel noise weighs heavily in 4th-order statistics far from the centre: beyond the first
        # ring, where a slight blur leaves little mass, only coverage above _RING_FLOOR counts.
        cover = np.where(near[y0:y1, x0:x1] | (ring[y0:y1, x0:x1] & (cover >= _RING_FLOOR)), cover, 0.0)
        mass, cy, cx, skew, cross = _moments(cover)
        cy, cx = cy + y0, cx + x0
        shape = 2 if abs(skew) > _TRIANGLE_SKEW else (0 if cross > _CIRCLE_CROSS else 1)
        half = np.sqrt(mass / _AREA_PER_HALF2[shape])
        row, col = min(int(3 * cy // h), 2), min(int(3 * cx // w), 2)
        scenes[i].append(SceneObject(shape=shape, colour=colour, position=3 * row + col,
                                     size=int(half > _LARGE_HALF * h / shapes.SIZE),
                                     centroid=(cy, cx), area=area, skew=skew, cross=cross))
    return [Scene(tuple(sorted(objs, key=lambda ob: (ob.position, ob.centroid)))) for objs in scenes]


def to_records(scenes: Sequence[Scene], max_objects: int = shapes.MAX_OBJECTS) -> dict[str, np.ndarray]:
    """Parses in the dataset's record layout: num_objects int64 [N] (the true count, even above
    max_objects) and obj_shape / obj_colour / obj_position / obj_size int64 [N, max_objects] in
    reading order, padded with -1 (objects beyond max_objects are cut off)."""
    keys = ("obj_shape", "obj_colour", "obj_position", "obj_size")
    out = {k: np.full((len(scenes), max_objects), -1, np.int64) for k in keys}
    for i, sc in enumerate(scenes):
        for j, ob in enumerate(sc.objects[:max_objects]):
            for k, v in zip(keys, (ob.shape, ob.colour, ob.position, ob.size)):
                out[k][i, j] = v
    out["num_objects"] = np.asarray([sc.num_objects for sc in scenes], np.int64)
    return out


def parse_records(images: np.ndarray) -> dict[str, np.ndarray]:
    """Images [N, H, W, 3] in [0, 1] (any size parse_ready takes) parsed into the dataset's record
    layout (to_records): what a generated image is compared with."""
    return to_records(parse_scenes(parse_ready(np.asarray(images))))


def exact_match(parsed: dict[str, np.ndarray], true: dict[str, np.ndarray],
                fields: Sequence[str] = ("obj_shape", "obj_colour", "obj_position")) -> np.ndarray:
    """bool [N]: whether each parsed scene (to_records) has the true scene's number of objects and,
    object by object in reading order, the same `fields` (size is left out by default: the
    prompts never ask for it). Both sides must list objects in reading order, as the dataset does."""
    same = np.asarray(parsed["num_objects"]) == np.asarray(true["num_objects"])
    for f in fields:
        a, b = np.asarray(parsed[f]), np.asarray(true[f])
        width = min(a.shape[1], b.shape[1])  # padding beyond both widths is -1 on both sides
        same &= (a[:, :width] == b[:, :width]).all(1)
    return same
