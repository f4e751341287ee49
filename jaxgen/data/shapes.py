"""The `shapes` dataset: procedural 32x32 RGB scenes of 1-4 coloured objects, with captions.

Each scene places 1-4 objects (circle, square, triangle), each in one of six colours and one of two
sizes, in distinct cells of a 3x3 grid ("top left" ... "bottom right"), so objects never overlap and
every object has a name for where it is. A scene is a pure function of (seed, index): numpy only,
`np.random.default_rng([seed, index])`, so the same bytes come out on every machine (for a given
numpy: its Generator streams may change between releases, which matters little as a prepared
dataset is written once), and the train and test splits are different seed streams (train seed 0,
test seed 1).

Every scene is rendered twice:
  * `image`: flat colours on a dark background, hard edges (no anti-aliasing), so the segmentation
    `mask` is exactly the set of non-background pixels;
  * `painted`: the same objects at the same places in a "painted" style (muted oil palette, brush
    stroke texture, soft edges, a light textured canvas). It is a second domain for unpaired
    CycleGAN-style translation, and the true pair is there to score a translation against.

Records per scene (fixed size, padded with -1 to 4 objects, in reading order of the grid cells):
  image uint8 [32, 32, 3], painted uint8 [32, 32, 3], mask uint8 [32, 32] (0 background,
  1 circle, 2 square, 3 triangle), num_objects int64, obj_shape / obj_colour / obj_position /
  obj_size int64 [4] (indices into SHAPES, COLOURS, POSITIONS, SIZES), and five captions (str):
    caption           "two red circles and a blue square"   (colour + shape, with counts)
    caption_count     "two circles and a square"            (shape counts only)
    caption_colour    "red and blue shapes"                 (colours only)
    caption_position  "a red circle at the top left, a red circle on the right and a blue square
                       in the center"
    caption_relation  "a red circle to the left of a blue square"  (a scene of two objects of two kinds:
                       one relation between them, "to the left of" or "above"; else the full caption)
Numbers are words ("a", "two", "three", "four"). Splits: train 10,000 scenes, test 1,000; the
`tiny` builder config (256 / 64, the first scenes of the same streams) is for tests. The `t2i`
configs mix in grouped scenes and hold out some (colour, shape, count) triples (see ShapesConfig);
`t2i64` draws the t2i scenes at 64x64: the geometry lives in 32x32 scene units, so a scene is the
same objects at the same places at every size (the painted style's noise is drawn at 32x32).

Bump `Shapes.VERSION` whenever a rendered byte changes: a prepared dataset is never rebuilt.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds

SIZE = 32  # scenes are SIZE x SIZE pixels
MAX_OBJECTS = 4
SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {  # flat rendering, on BACKGROUND
    "red": (220, 50, 50),
    "green": (60, 180, 75),
    "blue": (60, 100, 230),
    "yellow": (235, 210, 50),
    "purple": (150, 70, 200),
    "white": (240, 240, 240),
}
COLOUR_NAMES = tuple(COLOURS)
POSITIONS = ("top left", "top", "top right", "left", "center", "right",
             "bottom left", "bottom", "bottom right")  # grid cell index = 3 * row + column
SIZES = ("small", "large")
NUMBERS = ("zero", "one", "two", "three", "four")
CAPTION_STYLES = ("full", "count", "colour", "position", "relation")
CAPTION_KEYS = {"full": "caption", "count": "caption_count", "colour": "caption_colour",
                "position": "caption_position", "relation": "caption_relation"}
SPLIT_SEEDS = {"train": 0, "test": 1}  # distinct seed streams for the two splits
BACKGROUND = (24, 24, 32)

# The painted domain: muted, warmer pigments on a light canvas (same order as COLOURS).
PAINTED_COLOURS = {
    "red": (190, 72, 60),
    "green": (92, 150, 92),
    "blue": (72, 100, 172),
    "yellow": (226, 188, 82),
    "purple": (128, 82, 150),
    "white": (250, 247, 238),
}
CANVAS = (202, 186, 156)

_PREPOSITION = {"top left": "at the", "top": "at the", "top right": "at the", "left": "on the",
                "center": "in the", "right": "on the", "bottom left": "at the",
                "bottom": "at the", "bottom right": "at the"}
_CELL = SIZE / 3
# Half-extent of an object of each size and the centre jitter: half + jitter <= 5.0 < _CELL / 2, so
# an object never leaves its cell and two objects never touch.
_HALF = (2.75, 4.25)
_JITTER = 0.75
# Pixel centres, [SIZE, SIZE] each.
_YY, _XX = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5, indexing="ij")


def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) of the pixel centres of a size x size rendering, [size, size] each, in the scene units
    (SIZE x SIZE, where the layout's geometry lives): at size = SIZE exactly _YY, _XX."""
    if size == SIZE:
        return _YY, _XX
    centres = (np.arange(size) + 0.5) * (SIZE / size)
    return tuple(np.meshgrid(centres, centres, indexing="ij"))


# ------------------------------------------------------------------------------------ captions
def _join(parts: list[str]) -> str:
    """["a", "b", "c"] -> "a, b and c"."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _counted(count: int, noun: str) -> str:
    """(1, "red circle") -> "a red circle"; (2, "red circle") -> "two red circles"."""
    return f"a {noun}" if count == 1 else f"{NUMBERS[count]} {noun}s"


def _grouped(keys: list) -> list[tuple]:
    """Distinct keys in order of first appearance, with their counts."""
    counts: dict = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    return list(counts.items())


def caption(shapes: Sequence[int], colours: Sequence[int], positions: Sequence[int] | None = None,
            style: str = "full") -> str:
    """The caption of a scene from its object records (indices into SHAPES / COLOURS / POSITIONS;
    entries < 0 are padding and ignored). Objects are listed in the order given, groups in order of
    first appearance. `style` is one of CAPTION_STYLES; "position" and "relation" need `positions`."""
    if style not in CAPTION_STYLES:
        raise ValueError(f"caption style must be one of {CAPTION_STYLES}, not {style!r}.")
    objs = [(int(s), int(c), int(p)) for s, c, p in
            zip(shapes, colours, positions if positions is not None else [0] * len(shapes)) if s >= 0]
    if not objs:
        raise ValueError("a caption needs at least one object.")
    if style == "full":
        groups = _grouped([(c, s) for s, c, _ in objs])
        return _join([_counted(k, f"{COLOUR_NAMES[c]} {SHAPES[s]}") for (c, s), k in groups])
    if style == "count":
        return _join([_counted(k, SHAPES[s]) for s, k in _grouped([s for s, _, _ in objs])])
    if style == "colour":
        names = [COLOUR_NAMES[c] for c, _ in _grouped([c for _, c, _ in objs])]
        return f"a {names[0]} shape" if len(objs) == 1 else f"{_join(names)} shapes"
    if positions is None:
        raise ValueError(f"the {style} caption needs the objects' positions.")
    if style == "relation":
        return _relation(objs) if len(objs) == 2 and objs[0][:2] != objs[1][:2] else caption(
            shapes, colours, style="full")
    return _join([f"a {COLOUR_NAMES[c]} {SHAPES[s]} {_PREPOSITION[POSITIONS[p]]} {POSITIONS[p]}"
                  for s, c, p in objs])


def _relation(objs: list[tuple[int, int, int]]) -> str:
    """The relation caption of two objects (shape, colour, cell) of different kinds: "A to the left
    of B" (A's column smaller) or "A above B" (A's row smaller), in the words of the prompt suite's
    relations (jaxgen.eval.prompts). Where both hold of some order of the pair (the two differ in
    row and column), the parity of the two cells picks one, so both words occur on such pairs and
    the caption stays a pure function of the records."""
    (rows, cols) = zip(*[divmod(p, 3) for _, _, p in objs])
    use_column = rows[0] == rows[1] or (cols[0] != cols[1] and (objs[0][2] + objs[1][2]) % 2 == 0)
    axis = cols if use_column else rows
    a, b = (objs[0], objs[1]) if axis[0] < axis[1] else (objs[1], objs[0])
    word = "to the left of" if use_column else "above"
    return f"a {COLOUR_NAMES[a[1]]} {SHAPES[a[0]]} {word} a {COLOUR_NAMES[b[1]]} {SHAPES[b[0]]}"


# ------------------------------------------------------------------------------------ rendering
# Rendering is vectorised over a batch of scenes: only the random draws are per scene (each from
# its own (seed, index) stream), everything else is elementwise numpy over [B, ...] arrays, so a
# scene's bytes do not depend on which batch it was rendered in.

def _mixed_objects(rng: np.random.Generator) -> np.ndarray:
    """The default scene's objects: 1-4 objects in distinct cells, each of a random kind and size.
    Records int64 [4, MAX_OBJECTS] (shape, colour, position, size; -1 = padding)."""
    n = int(rng.integers(1, MAX_OBJECTS + 1))
    records = np.full((4, MAX_OBJECTS), -1, np.int64)
    records[2, :n] = np.sort(rng.permutation(len(POSITIONS))[:n])  # distinct cells, reading order
    records[[0, 1, 3], :n] = rng.integers(0, [[len(SHAPES)], [len(COLOURS)], [len(SIZES)]], (3, n))
    return records


# Group sizes of a two-group scene (n1 + n2 <= MAX_OBJECTS), drawn uniformly.
_TWO_GROUPS = ((1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (2, 2))


def _grouped_objects(rng: np.random.Generator) -> np.ndarray:
    """A grouped scene's objects (text-to-image configs): with probability 1/2 one group of n in
    1..4 objects of one (colour, shape) kind, else two groups of two distinct kinds (sizes from
    _TWO_GROUPS), in random distinct cells, each object of a random size. Counting is learnable from
    such scenes: "four X Ys" occurs, which a scene of four independent objects almost never says."""
    kinds = len(COLOURS) * len(SHAPES)
    if rng.integers(0, 2) == 0:
        groups = [(int(rng.integers(0, kinds)), int(rng.integers(1, MAX_OBJECTS + 1)))]
    else:
        a, b = rng.choice(kinds, 2, replace=False)
        sizes = _TWO_GROUPS[int(rng.integers(0, len(_TWO_GROUPS)))]
        groups = [(int(a), sizes[0]), (int(b), sizes[1])]
    objs = rng.permutation([kind for kind, count in groups for _ in range(count)])
    n = len(objs)
    records = np.full((4, MAX_OBJECTS), -1, np.int64)
    records[2, :n] = np.sort(rng.permutation(len(POSITIONS))[:n])
    records[0, :n], records[1, :n] = objs % len(SHAPES), objs // len(SHAPES)
    records[3, :n] = rng.integers(0, len(SIZES), n)
    return records


def is_held_out(colour: int, shape: int, count: int) -> bool:
    """The (colour, shape, count) triples that a `hold_out` config never renders in its train split
    (the CLEVR-CoGenT idea): counts >= 3 of the kinds with (colour + shape + count) % 4 == 0, i.e.
    5 kinds at three and 4 kinds at four of the 18, so every number is still seen on other kinds
    and a held-out prompt tests composition, not an unseen word."""
    return count >= 3 and (colour + shape + count) % 4 == 0


HELD_OUT_TRIPLES = frozenset((c, s, n) for c in range(len(COLOURS)) for s in range(len(SHAPES))
                             for n in range(1, MAX_OBJECTS + 1) if is_held_out(c, s, n))


def scene_triples(obj_shape: Sequence[int], obj_colour: Sequence[int]) -> frozenset[tuple[int, int, int]]:
    """The (colour, shape, count) triples a scene renders: each kind present with its exact count."""
    kinds = [(int(c), int(s)) for s, c in zip(obj_shape, obj_colour) if s >= 0]
    return frozenset((c, s, n) for (c, s), n in _grouped(kinds))


def _layout(seed: int, index: int, grouped_every: int = 0, hold_out: bool = False) -> dict[str, np.ndarray]:
    """The random draws of one scene, objects padded to MAX_OBJECTS (shape -1 = padding). The
    flat scene's draws come first, so the painted style's draws never change it.

    grouped_every = k > 0: every k-th scene (index % k == k - 1) has grouped objects
    (_grouped_objects). hold_out: a scene that would render a held-out triple (is_held_out) is
    redrawn from the stream [seed, index, attempt], attempt = 1, 2, ... With the defaults the
    draws are exactly the original ones (the default configs' bytes never change)."""
    for attempt in range(1000):
        rng = np.random.default_rng([seed, index] if attempt == 0 else [seed, index, attempt])
        grouped = grouped_every > 0 and index % grouped_every == grouped_every - 1
        records = _grouped_objects(rng) if grouped else _mixed_objects(rng)
        if not hold_out or not (scene_triples(records[0], records[1]) & HELD_OUT_TRIPLES):
            break
    n = int((records[0] >= 0).sum())
    jitter = np.zeros((MAX_OBJECTS, 2))
    jitter[:n] = rng.uniform(-_JITTER, _JITTER, (n, 2))
    # The painted style: canvas grain, brush-stroke noise and direction, pigment shifts.
    grain, noise = rng.normal(0.0, 1.0, (2, SIZE, SIZE))
    direction = rng.integers(0, 3)
    shift = np.zeros((MAX_OBJECTS, 3))
    shift[:n] = rng.normal(0.0, 8.0, (n, 3))
    return {"num_objects": np.int64(n), "obj_shape": records[0], "obj_colour": records[1],
            "obj_position": records[2], "obj_size": records[3], "jitter": jitter,
            "grain": 6.0 * grain, "noise": noise, "direction": direction, "pigment_shift": shift}


def _object_masks(shape: np.ndarray, centre: np.ndarray, half: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Boolean masks [..., size, size] of objects (shape index [...], -1 = none; centre (y, x)
    [...,  2]; half extent [...], both in scene units), sampled at the pixel centres of a size x
    size rendering. Each object is tested only against its own shape's inequality (float32: the
    pixel grid and sizes are exact in it at sizes that divide or are multiples of SIZE)."""
    masks = np.zeros(shape.shape + (size, size), bool)
    yy, xx = (c.astype(np.float32) for c in _pixel_centres(size))
    for kind in range(len(SHAPES)):
        sel = shape == kind
        c, h = centre[sel].astype(np.float32), half[sel].astype(np.float32)[:, None, None]
        dy, dx = yy - c[:, 0, None, None], xx - c[:, 1, None, None]
        if kind == 0:  # circle
            masks[sel] = dx * dx + dy * dy <= h * h
        elif kind == 1:  # square; 0.85: about the circle's area
            masks[sel] = np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * h
        else:  # upright triangle: apex at dy = -h, base at dy = +0.85 h with half-width h
            rise = (dy + h) / (1.85 * h)
            masks[sel] = (rise >= 0) & (rise <= 1) & (np.abs(dx) <= h * rise)
    return masks


def _smear(x: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Blur of x along `axis` with an odd 1-D kernel, edges replicated (elementwise sums of
    shifted copies, so each scene of a batch gets the same bytes as alone)."""
    r = len(kernel) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    p = np.pad(x, pad, mode="edge")
    n = x.shape[axis]
    out = np.zeros_like(x, dtype=np.float64)
    for i, w in enumerate(kernel):
        out += w * np.take(p, np.arange(i, i + n), axis=axis)
    return out


_SOFT = np.array([0.25, 0.5, 0.25])  # soft painted edges
_STROKE = np.ones(7) / 7  # brush strokes: noise smeared along a direction over 7 pixels
_WEAVE = 4.0 * np.sin(_YY * 2.2) * np.sin(_XX * 2.2)  # faint canvas weave
_PAINTED = np.asarray([PAINTED_COLOURS[c] for c in COLOUR_NAMES], np.float64)
_FLAT = np.asarray([COLOURS[c] for c in COLOUR_NAMES], np.uint8)


def _paint(owner: np.ndarray, draws: dict[str, np.ndarray]) -> np.ndarray:
    """The painted rendering uint8 [B, S, S, 3] of scenes whose pixel (b, y, x) belongs to object
    owner[b, y, x] - 1 (owner [B, S, S], 0 = background): muted pigments shaded by brush strokes,
    composited with soft edges over a textured canvas. The grain and stroke noise are drawn at
    SIZE x SIZE (one layout at every size); at S = k * SIZE each noise pixel covers k x k pixels."""
    size = owner.shape[-1]
    repeat = lambda x: x if size == SIZE else np.repeat(np.repeat(x, size // SIZE, 1), size // SIZE, 2)  # noqa: E731
    yy, xx = _pixel_centres(size)
    weave = _WEAVE if size == SIZE else 4.0 * np.sin(yy * 2.2) * np.sin(xx * 2.2)
    canvas = np.asarray(CANVAS, np.float64) + (repeat(draws["grain"]) + weave)[..., None]
    # Brush strokes: white noise smeared along each scene's direction (down the columns, along the
    # rows, or a diagonal), so paint varies in streaks rather than per pixel. A 7-pixel average of
    # unit noise has std 1/sqrt(7): rescale to unit std.
    noise = repeat(draws["noise"])
    diagonal = sum(np.roll(noise, (k, k), axis=(1, 2)) for k in range(-3, 4)) / 7
    direction = draws["direction"][:, None, None]
    streaks = np.where(direction == 0, _smear(noise, _STROKE, 1),
                       np.where(direction == 1, _smear(noise, _STROKE, 2), diagonal)) * np.sqrt(7)
    colour = np.maximum(draws["obj_colour"], 0)
    pigments = _PAINTED[colour] + draws["pigment_shift"]  # [B, MAX_OBJECTS, 3]
    pigments = np.concatenate([np.zeros_like(pigments[:, :1]), pigments], axis=1)  # 0: none
    layer = pigments[np.arange(len(owner))[:, None, None], owner]  # [B, H, W, 3]
    layer = layer * (1.0 + 0.09 * streaks)[..., None]
    coverage = (owner > 0).astype(np.float64)[..., None]
    # Soft edges: blur coverage and the premultiplied colour together, then composite.
    for axis in (1, 2):
        layer, coverage = _smear(layer, _SOFT, axis), _smear(coverage, _SOFT, axis)
    out = layer + (1.0 - coverage) * canvas
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def render_scenes(seed: int, indices: Sequence[int], grouped_every: int = 0, hold_out: bool = False,
                  size: int = SIZE) -> dict[str, np.ndarray]:
    """Scenes `indices` of seed stream `seed`, batched: arrays with a leading axis B = len(indices)
    in the record layout of the module docstring; captions are str arrays [B]. Scene i's bytes
    equal `render_scene(seed, i)`'s, whatever batch it is rendered in. grouped_every / hold_out:
    the text-to-image configs' scene mix (see _layout; the defaults give the default scenes).
    size: the pictures' side (SIZE or a multiple of it): the same scenes (records, captions,
    geometry) drawn with size / SIZE times the pixels per side."""
    if size % SIZE:
        raise ValueError(f"shapes renders at multiples of {SIZE} pixels, not {size}.")
    return _render([_layout(seed, int(i), grouped_every, hold_out) for i in indices], size)


def render_layouts(layouts: Sequence[dict], rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """Flat renderings uint8 [B, size, size, 3] of given object layouts (dicts with obj_shape,
    obj_colour, obj_position int [MAX_OBJECTS], -1 = padding, e.g. from
    jaxgen.eval.prompts.satisfying_layout), drawn as the dataset draws its scenes: each object's
    size (unless the layout has obj_size) and centre jitter come from `rng`. Reference images for
    prompts, e.g. what a perfect text-to-image model would draw."""
    draws = []
    for lay in layouts:
        shape = np.asarray(lay["obj_shape"], np.int64)
        n = int((shape >= 0).sum())
        obj_size = np.asarray(lay["obj_size"], np.int64) if "obj_size" in lay else \
            np.where(shape >= 0, rng.integers(0, len(SIZES), MAX_OBJECTS), -1)
        jitter = np.zeros((MAX_OBJECTS, 2))
        jitter[:n] = rng.uniform(-_JITTER, _JITTER, (n, 2))
        draws.append({"obj_shape": shape, "obj_colour": np.asarray(lay["obj_colour"], np.int64),
                      "obj_position": np.asarray(lay["obj_position"], np.int64), "obj_size": obj_size,
                      "jitter": jitter})
    d = {k: np.stack([x[k] for x in draws]) for k in draws[0]}
    return _flat(d, size)[0]


def _flat(d: dict[str, np.ndarray], size: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The flat rendering of stacked object draws (obj_shape / obj_colour / obj_position / obj_size
    [B, MAX_OBJECTS], jitter [B, MAX_OBJECTS, 2]) at size x size pixels: image uint8 [B, size,
    size, 3], mask uint8 [B, size, size] (0 background, shape index + 1) and owner [B, size, size]
    (0 background, k + 1 where object k is)."""
    shape, position, obj_size = d["obj_shape"], d["obj_position"], d["obj_size"]
    valid = shape >= 0
    centre = np.stack([position // 3, position % 3], axis=-1) * _CELL + _CELL / 2 + d["jitter"]
    half = np.where(valid, np.asarray(_HALF)[np.maximum(obj_size, 0)], 1.0)
    masks = _object_masks(shape, centre, half, size)  # [B, MAX_OBJECTS, H, W]

    slot = np.arange(1, MAX_OBJECTS + 1)[None, :, None, None]
    owner = (masks * slot).sum(1)  # 0 background, k + 1 where object k is (no overlaps)
    palette = np.concatenate([np.broadcast_to(np.asarray(BACKGROUND, np.uint8), (len(shape), 1, 3)),
                              _FLAT[np.maximum(d["obj_colour"], 0)]], axis=1)  # [B, 1 + MAX, 3]
    image = palette[np.arange(len(shape))[:, None, None], owner]
    mask = (masks * (shape + 1)[..., None, None]).sum(1).astype(np.uint8)
    return image, mask, owner


def _render(draws: list[dict[str, np.ndarray]], size: int = SIZE) -> dict[str, np.ndarray]:
    """Scenes from their random draws (_layout's dicts), batched, at size x size (see render_scenes)."""
    d = {k: np.stack([x[k] for x in draws]) for k in draws[0]}
    image, mask, owner = _flat(d, size)
    out = {"image": image, "painted": _paint(owner, d), "mask": mask}
    out.update({k: d[k].astype(np.int64) for k in
                ("num_objects", "obj_shape", "obj_colour", "obj_position", "obj_size")})
    for style, key in CAPTION_KEYS.items():
        out[key] = np.asarray([caption(s, c, p, style) for s, c, p in
                               zip(d["obj_shape"], d["obj_colour"], d["obj_position"])])
    return out


def render_scene(seed: int, index: int) -> dict[str, np.ndarray | str | int]:
    """Scene `index` of seed stream `seed` (record layout of the module docstring: image, painted,
    mask, num_objects, obj_* [4] padded with -1, caption, caption_count, caption_colour,
    caption_position; captions as str, num_objects as int). Pure: same (seed, index), same bytes."""
    batch = render_scenes(seed, [index])
    scene = {k: v[0] for k, v in batch.items()}
    scene["num_objects"] = int(scene["num_objects"])
    for key in CAPTION_KEYS.values():
        scene[key] = str(scene[key])
    return scene


# ------------------------------------------------------------------------------------ builder
_ZLIB = tfds.features.Encoding.ZLIB


@dataclasses.dataclass(eq=False)
class ShapesConfig(tfds.core.BuilderConfig):
    """How many scenes each split holds (the first ones of the split's seed stream), and the scene
    mix: every `grouped_every`-th scene grouped (0: none), and with `hold_out` no train scene renders
    a triple of HELD_OUT_TRIPLES (the test split keeps them: it is what the held-out prompts ask for);
    `size`: the pictures' side in pixels (a multiple of SIZE; the scenes are the same at every size)."""
    num_train: int = 10_000
    num_test: int = 1_000
    grouped_every: int = 0
    hold_out: bool = False
    size: int = SIZE


class Shapes(tfds.core.GeneratorBasedBuilder):
    """TFDS builder of `shapes` (array_record, readable with `tfds.data_source` without TF)."""

    name = "shapes"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First release.",
                     "1.1.0": "caption_relation added, every other byte as in 1.0.0; the t2i64 configs."}
    # TFDS looks for a download-checksums file beside the builder's code via `importlib_resources`, a
    # backport it installs only for Python < 3.9 (so the lookup fails); nothing is downloaded here.
    code_path = None
    BUILDER_CONFIGS = [
        ShapesConfig(name="default", description="10,000 train and 1,000 test scenes."),
        ShapesConfig(name="tiny", description="256 train and 64 test scenes, for tests.",
                     num_train=256, num_test=64),
        # Text-to-image: half the scenes as the default ones, half grouped (so counts up to four are
        # said on most kinds), and the held-out triples never rendered in train.
        ShapesConfig(name="t2i", description="Text-to-image: 10,000 train and 1,000 test scenes, every second "
                     "one grouped; train renders no held-out (colour, shape, count) triple.",
                     grouped_every=2, hold_out=True),
        ShapesConfig(name="t2i_tiny", description="The first 256 train and 64 test scenes of t2i, for tests.",
                     num_train=256, num_test=64, grouped_every=2, hold_out=True),
        # The t2i scenes drawn at 64x64 (a 16 -> 32 -> 64 cascade, latent diffusion).
        ShapesConfig(name="t2i64", description="The t2i scenes rendered at 64x64.", grouped_every=2,
                     hold_out=True, size=64),
        ShapesConfig(name="t2i64_tiny", description="The first 256 train and 64 test scenes of t2i64, for tests.",
                     num_train=256, num_test=64, grouped_every=2, hold_out=True, size=64),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        t = tfds.features.Tensor
        side = self.builder_config.size
        objects = {k: t(shape=(MAX_OBJECTS,), dtype=np.int64)
                   for k in ("obj_shape", "obj_colour", "obj_position", "obj_size")}
        # Pictures are uint8 Tensors stored as zlib-compressed bytes: tfds.features.Image needs
        # TensorFlow to encode arrays, and a Tensor's default encoding writes every uint8 as an
        # int64 list entry (several times slower to write and read). Text encodes and decodes
        # (as UTF-8 bytes) without TensorFlow.
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": t(shape=(side, side, 3), dtype=np.uint8, encoding=_ZLIB),
                "painted": t(shape=(side, side, 3), dtype=np.uint8, encoding=_ZLIB),
                "mask": t(shape=(side, side), dtype=np.uint8, encoding=_ZLIB),
                "num_objects": tfds.features.Scalar(dtype=np.int64),
                **objects,
                **{key: tfds.features.Text() for key in CAPTION_KEYS.values()},
            }),
            disable_shuffling=True,  # record i of a split is render_scene(seed, i)
            license="Apache-2.0",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        c = self.builder_config
        sizes = {"train": c.num_train, "test": c.num_test}
        return {split: self._generate_examples(SPLIT_SEEDS[split], n, c.grouped_every,
                                               c.hold_out and split == "train", c.size)
                for split, n in sizes.items()}

    def _generate_examples(self, seed: int, num: int, grouped_every: int, hold_out: bool, size: int):
        chunk = 500 * SIZE ** 2 // size ** 2  # render in vectorised batches, yield one record at a time
        for start in range(0, num, chunk):
            batch = render_scenes(seed, range(start, min(start + chunk, num)), grouped_every, hold_out, size)
            for j in range(len(batch["image"])):
                record = {k: v[j] for k, v in batch.items()}
                for key in CAPTION_KEYS.values():
                    record[key] = str(record[key])
                yield start + j, record
