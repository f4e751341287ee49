"""The procedural `shapes` scenes: determinism, masks, records vs captions, the painted domain,
and the TFDS builder (its small `tiny` config)."""
import collections
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgen.data import shapes as S

NUM_SCENES = 200  # scenes checked per property test


@pytest.fixture(scope="module")
def scenes() -> dict[str, np.ndarray]:
    return S.render_scenes(0, range(NUM_SCENES))


def test_render_scene_is_deterministic():
    a, b = S.render_scene(3, 7), S.render_scene(3, 7)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), k
    assert a["image"].dtype == np.uint8 and a["image"].shape == (32, 32, 3)
    assert a["painted"].dtype == np.uint8 and a["painted"].shape == (32, 32, 3)
    assert a["mask"].dtype == np.uint8 and a["mask"].shape == (32, 32)
    assert isinstance(a["caption"], str)


def test_different_index_or_seed_gives_a_different_scene():
    base = S.render_scene(0, 0)["image"].tobytes()
    others = [S.render_scene(0, i)["image"].tobytes() for i in range(1, 20)]
    assert base not in others and len(set(others)) == len(others)
    assert S.render_scene(1, 0)["image"].tobytes() != base


def test_batched_rendering_matches_single_scenes(scenes):
    for i in (0, 1, 57, NUM_SCENES - 1):
        one = S.render_scene(0, i)
        for k, v in one.items():
            assert np.array_equal(np.asarray(v), scenes[k][i]), (i, k)


def test_records_are_padded_and_in_range(scenes):
    n = scenes["num_objects"]
    assert n.min() >= 1 and n.max() <= S.MAX_OBJECTS
    assert set(n.tolist()) == {1, 2, 3, 4}  # all counts occur in 200 scenes
    for key, table in (("obj_shape", S.SHAPES), ("obj_colour", S.COLOURS),
                       ("obj_position", S.POSITIONS), ("obj_size", S.SIZES)):
        v = scenes[key]
        valid = np.arange(S.MAX_OBJECTS)[None] < n[:, None]
        assert v.shape == (NUM_SCENES, S.MAX_OBJECTS) and v.dtype == np.int64
        assert np.all(v[~valid] == -1) and np.all((v[valid] >= 0) & (v[valid] < len(table)))
    # One object per grid cell, listed in reading order.
    for pos, k in zip(scenes["obj_position"], n):
        assert np.all(np.diff(pos[:k]) > 0)


def test_mask_agrees_with_flat_image_and_records(scenes):
    background = np.all(scenes["image"] == np.asarray(S.BACKGROUND, np.uint8), axis=-1)
    assert np.array_equal(scenes["mask"] > 0, ~background)
    # Each object's pixels lie in its grid cell, carry its shape in the mask and its colour in the
    # image; every object has pixels.
    centre = (np.arange(32) + 0.5) // (32 / 3)  # grid row/column of each pixel centre
    cell = (3 * centre[:, None] + centre[None, :]).astype(int)
    for i in range(NUM_SCENES):
        mask, image = scenes["mask"][i], scenes["image"][i]
        owner = np.full(9, -1)
        for k in range(scenes["num_objects"][i]):
            owner[scenes["obj_position"][i, k]] = k
        ys, xs = np.nonzero(mask)
        objects = owner[cell[ys, xs]]
        assert np.all(objects >= 0), f"scene {i}: object pixels outside the occupied cells"
        assert np.array_equal(mask[ys, xs], scenes["obj_shape"][i, objects] + 1)
        colours = np.asarray([S.COLOURS[S.COLOUR_NAMES[c]] for c in scenes["obj_colour"][i]
                              if c >= 0], np.uint8)
        assert np.array_equal(image[ys, xs], colours[objects])
        assert len(set(objects.tolist())) == scenes["num_objects"][i]


def test_sizes_and_shapes_are_distinguishable():
    """Large objects cover well over twice the pixels of small ones, and every small one has
    enough pixels to show its shape."""
    centre = np.full((3, 2), 16.0)
    small, large = (S._object_masks(np.arange(3), centre, np.full(3, h)).sum(axis=(1, 2))
                    for h in S._HALF)
    assert np.all(large > 2 * small) and np.all(small >= 12)


_NUMBER = {"a": 1, "two": 2, "three": 3, "four": 4}


def _parse(caption: str) -> list[tuple[int, str]]:
    """"two red circles and a blue square" -> [(2, "red circle"), (1, "blue square")]."""
    out = []
    for part in re.split(r", | and ", caption):
        number, rest = part.split(" ", 1)
        if _NUMBER[number] > 1:
            assert rest.endswith("s")
            rest = rest[:-1]
        out.append((_NUMBER[number], rest))
    return out


def test_captions_agree_with_records(scenes):
    for i in range(NUM_SCENES):
        k = scenes["num_objects"][i]
        shapes = [S.SHAPES[s] for s in scenes["obj_shape"][i, :k]]
        colours = [S.COLOUR_NAMES[c] for c in scenes["obj_colour"][i, :k]]
        positions = [S.POSITIONS[p] for p in scenes["obj_position"][i, :k]]
        full = collections.Counter(f"{c} {s}" for c, s in zip(colours, shapes))
        assert collections.Counter(dict((n, c) for c, n in _parse(scenes["caption"][i]))) == full
        assert dict((n, c) for c, n in _parse(scenes["caption_count"][i])) == collections.Counter(shapes)
        colour_caption = str(scenes["caption_colour"][i])
        assert colour_caption.endswith("shape" if k == 1 else "shapes")
        named = re.split(r", | and ", colour_caption.removeprefix("a ").rsplit(" ", 1)[0])
        assert named == list(dict.fromkeys(colours))
        placed = re.split(r", | and a ", scenes["caption_position"][i].removeprefix("a "))
        expected = [f"{c} {s} {'in' if p == 'center' else 'on' if p in ('left', 'right') else 'at'}"
                    f" the {p}" for c, s, p in zip(colours, shapes, positions)]
        assert [p.removeprefix("a ") for p in placed] == expected


def test_caption_examples():
    circle, square, triangle = 0, 1, 2
    red, blue = S.COLOUR_NAMES.index("red"), S.COLOUR_NAMES.index("blue")
    shapes, colours, positions = [circle, circle, square], [red, red, blue], [0, 5, 4]
    assert S.caption(shapes, colours) == "two red circles and a blue square"
    assert S.caption(shapes, colours, style="count") == "two circles and a square"
    assert S.caption(shapes, colours, style="colour") == "red and blue shapes"
    assert S.caption(shapes, colours, positions, style="position") == (
        "a red circle at the top left, a red circle on the right and a blue square in the center")
    assert S.caption([triangle, -1, -1, -1], [blue, -1, -1, -1], style="colour") == "a blue shape"
    assert S.caption([triangle] * 4, [red] * 4) == "four red triangles"
    with pytest.raises(ValueError, match="style"):
        S.caption(shapes, colours, style="poem")
    # Relations: same row -> "left of"; same column -> "above"; both differ -> the cells' parity.
    assert S.caption([circle, square], [red, blue], [2, 0], style="relation") == (
        "a blue square to the left of a red circle")
    assert S.caption([circle, square], [red, blue], [1, 7], style="relation") == "a red circle above a blue square"
    assert S.caption([circle, square], [red, blue], [2, 6], style="relation") == (
        "a blue square to the left of a red circle")  # 2 + 6 even: the column
    assert S.caption([circle, square], [red, blue], [2, 3], style="relation") == "a red circle above a blue square"
    # Not two objects of two kinds: the full caption.
    assert S.caption(shapes, colours, positions, style="relation") == "two red circles and a blue square"
    assert S.caption([circle, circle], [red, red], [0, 1], style="relation") == "two red circles"
    with pytest.raises(ValueError, match="positions"):
        S.caption(shapes, colours, style="relation")


def test_relation_captions_hold_in_the_scene(t2i_train):
    """Every relation caption of the text-to-image split states a relation its records satisfy, and
    both words occur often (they are what the prompt suite's relation prompts ask for)."""
    said = collections.Counter()
    for i, text in enumerate(t2i_train["caption_relation"]):
        match = re.fullmatch(r"a (\w+) (\w+) (to the left of|above) a (\w+) (\w+)", str(text))
        if match is None:
            assert text == t2i_train["caption"][i]
            continue
        ca, sa, word, cb, sb = match.groups()
        objs = {(S.COLOUR_NAMES[c], S.SHAPES[s]): divmod(int(p), 3) for s, c, p in zip(
            t2i_train["obj_shape"][i], t2i_train["obj_colour"][i], t2i_train["obj_position"][i]) if s >= 0}
        assert len(objs) == 2 and t2i_train["num_objects"][i] == 2
        (row_a, col_a), (row_b, col_b) = objs[(ca, sa)], objs[(cb, sb)]
        assert (col_a < col_b) if word == "to the left of" else (row_a < row_b)
        said[word] += 1
    assert said["to the left of"] >= 100 and said["above"] >= 100


def test_painted_is_another_domain_with_the_same_geometry(scenes):
    flat, painted, mask = (scenes[k].astype(np.float64) for k in ("image", "painted", "mask"))
    # A different look: light canvas instead of the dark background, different object colours.
    assert np.mean(painted[mask == 0]) > 150 and np.mean(flat[mask == 0]) < 40
    assert np.mean(np.abs(painted - flat)[mask > 0]) > 20
    # Same geometry: thresholding the distance to the canvas colour recovers the mask.
    distance = np.linalg.norm(painted - np.asarray(S.CANVAS), axis=-1)
    found = distance > 40
    iou = np.sum(found & (mask > 0)) / np.sum(found | (mask > 0))
    assert iou > 0.75, iou


def test_builder_tiny_config_round_trips(tmp_path):
    builder = S.Shapes(data_dir=str(tmp_path), config="tiny", file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    assert builder.info.splits["train"].num_examples == 256
    assert builder.info.splits["test"].num_examples == 64
    for split in ("train", "test"):
        source = builder.as_data_source(split=split)
        for i in (0, 5, len(source) - 1):
            record, expected = source[i], S.render_scene(S.SPLIT_SEEDS[split], i)
            assert record.keys() == expected.keys()
            for k, v in expected.items():
                got = record[k].decode() if isinstance(record[k], bytes) else record[k]
                assert np.array_equal(np.asarray(got), np.asarray(v)), (split, i, k)


def test_features_encode_and_decode_without_tensorflow():
    """The feature kinds used (uint8 Tensor as zlib bytes, int64 Tensor, Scalar, Text) serialize
    and deserialize on the numpy path (TensorFlow is not installed in the dev environment)."""
    from tensorflow_datasets.core import example_serializer

    features = S.Shapes(data_dir="/nonexistent", config="tiny").info.features
    scene = S.render_scene(0, 3)
    encoded = features.encode_example(scene)
    serialized = example_serializer.ExampleSerializer(features.get_serialized_info()).serialize_example(encoded)
    decoded = features.deserialize_example_np(serialized)
    assert decoded["caption"] == scene["caption"].encode()
    assert np.array_equal(decoded["painted"], scene["painted"])
    assert np.array_equal(decoded["obj_shape"], scene["obj_shape"])


# ------------------------------------------------------------------------------------ t2i configs
DEFAULT_DIGESTS = ("287c3041873a3ea5678e030c3b04514e62394a67e47c84a9017c24bb07b10320"
                   "d099b79121a25ba71ac328122701077b41aa868696290d0be2a8998e21f92101")

def _digest(batch: dict[str, np.ndarray]) -> str:
    import hashlib

    h = hashlib.sha256()
    for k in sorted(set(batch) - {"caption_relation"}):  # added in 1.1.0, after the digests
        v = batch[k]
        h.update("|".join(v).encode() if v.dtype.kind == "U" else np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


def test_default_scenes_are_unchanged_by_the_text_to_image_options():
    """The digest of the first train and test scenes as rendered before the t2i configs existed
    (2026-12-06): the default and tiny datasets, and every task trained on them, are unaffected
    (version 1.1.0 only adds caption_relation)."""
    assert _digest(S.render_scenes(0, range(40))) + _digest(S.render_scenes(1, range(10))) == (
        DEFAULT_DIGESTS)
    # grouped_every=0, hold_out=False are the defaults, spelled out.
    assert _digest(S.render_scenes(0, range(40), 0, False)) == DEFAULT_DIGESTS[:64]


def test_held_out_triples_follow_the_declared_rule():
    assert len(S.HELD_OUT_TRIPLES) == 9
    assert all(n >= 3 and (c + s + n) % 4 == 0 for c, s, n in S.HELD_OUT_TRIPLES)
    for n in (3, 4):  # every number stays seen on most kinds
        kinds = len(S.COLOURS) * len(S.SHAPES)
        assert 0 < sum(t[2] == n for t in S.HELD_OUT_TRIPLES) <= kinds // 3
    assert S.scene_triples([0, 0, 1, -1], [2, 2, 2, -1]) == {(2, 0, 2), (2, 1, 1)}


@pytest.fixture(scope="module")
def t2i_train() -> dict[str, np.ndarray]:
    return S.render_scenes(S.SPLIT_SEEDS["train"], range(2000), grouped_every=2, hold_out=True)


def test_t2i_train_split_never_renders_a_held_out_triple_and_says_every_number(t2i_train):
    triples = [S.scene_triples(s, c) for s, c in zip(t2i_train["obj_shape"], t2i_train["obj_colour"])]
    assert not any(t & S.HELD_OUT_TRIPLES for t in triples)
    # Grouped scenes (odd indices) hold one or two kinds; "four X Ys" is said on several kinds.
    odd = triples[1::2]
    assert all(1 <= len(t) <= 2 for t in odd)
    fours = {(c, s) for t in triples for c, s, n in t if n == 4}
    assert len(fours) >= 10 and sum("four" in str(c) for c in t2i_train["caption"]) >= 50
    # Captions still agree with records (the caption function is shared), and even scenes that hold
    # no held-out triple are the default scenes themselves (first draw kept).
    default = S.render_scenes(0, range(0, 40, 2))
    kept = [j for j, i in enumerate(range(0, 40, 2)) if not (triples[i] & S.HELD_OUT_TRIPLES)]
    assert len(kept) >= 15
    for j in kept:
        assert np.array_equal(default["image"][j], t2i_train["image"][2 * j])


def test_t2i_test_split_keeps_held_out_triples():
    test = S.render_scenes(S.SPLIT_SEEDS["test"], range(1000), grouped_every=2, hold_out=False)
    triples = [S.scene_triples(s, c) for s, c in zip(test["obj_shape"], test["obj_colour"])]
    assert sum(bool(t & S.HELD_OUT_TRIPLES) for t in triples) >= 10


def test_builder_t2i_tiny_holds_out_in_train_only(tmp_path):
    builder = S.Shapes(data_dir=str(tmp_path), config="t2i_tiny", file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    train = builder.as_data_source(split="train")
    record = train[7]
    expected = S.render_scenes(0, [7], grouped_every=2, hold_out=True)
    assert np.array_equal(record["image"], expected["image"][0])
    assert record["caption"].decode() == expected["caption"][0]
    for i in range(len(train)):
        assert not S.scene_triples(train[i]["obj_shape"], train[i]["obj_colour"]) & S.HELD_OUT_TRIPLES


def test_render_layouts_draws_the_records():
    rng = np.random.default_rng(0)
    layout = {"obj_shape": np.array([0, 1, -1, -1]), "obj_colour": np.array([0, 2, -1, -1]),
              "obj_position": np.array([0, 8, -1, -1])}
    images = S.render_layouts([layout, layout], rng)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    red, blue = (np.all(images == np.asarray(S.COLOURS[c], np.uint8), axis=-1) for c in ("red", "blue"))
    assert red[:, :11, :11].sum() >= 12 and red[:, 11:, :].sum() == 0
    assert blue[:, 21:, 21:].sum() >= 12 and blue[:, :21, :].sum() == 0
    background = np.all(images == np.asarray(S.BACKGROUND, np.uint8), axis=-1)
    assert np.all(red | blue | background)


def test_t2i64_draws_the_same_scenes_with_twice_the_pixels_per_side(tmp_path):
    """At 64x64 the records and captions are the 32x32 scene's, each object covers about 4x the
    pixels at twice the coordinates, and the builder config holds 64x64 pictures."""
    small, large = S.render_scenes(0, range(40), 2, True), S.render_scenes(0, range(40), 2, True, size=64)
    assert large["image"].shape == (40, 64, 64, 3) and large["mask"].shape == (40, 64, 64)
    for key in [k for k in small if k not in ("image", "painted", "mask")]:
        np.testing.assert_array_equal(small[key], large[key])
    yy, xx = np.mgrid[:64, :64] + 0.5
    areas = []
    for i in range(40):
        for k in range(small["num_objects"][i]):
            cell = small["obj_position"][i, k]
            row, col = divmod(int(cell), 3)
            window = np.zeros((64, 64), bool)  # the object's grid cell: objects never leave it
            window[row * 64 // 3:(row + 1) * 64 // 3 + 1, col * 64 // 3:(col + 1) * 64 // 3 + 1] = True
            at64 = (large["mask"][i] == small["obj_shape"][i, k] + 1) & window
            at32 = np.repeat(np.repeat((small["mask"][i] == small["obj_shape"][i, k] + 1), 2, 0), 2, 1) & window
            # The same area (at32 up-sampled: 4 px each); a 3-pixel triangle at 32x32 is coarse.
            assert 0.6 < at64.sum() / at32.sum() < 1.6
            areas.append((at64.sum(), at32.sum()))
            for grid in (yy, xx):  # the same centre, within the 32x32 rasterisation (3/4 of its pixel)
                assert abs(grid[at64].mean() - grid[at32].mean()) <= 1.5
    assert 0.95 < sum(a for a, _ in areas) / sum(b for _, b in areas) < 1.05
    with pytest.raises(ValueError, match="multiples of 32"):
        S.render_scenes(0, [0], size=48)
    builder = S.Shapes(data_dir=str(tmp_path), config="t2i64_tiny", file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    record = builder.as_data_source(split="train")[3]
    np.testing.assert_array_equal(record["image"], S.render_scenes(0, [3], 2, True, size=64)["image"][0])
