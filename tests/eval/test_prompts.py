"""Fair scoring of the prompt suite (jaxgen.eval.prompts): caption support and its groups, per-count
accuracy and the count confusion, the shape-agnostic content check, the report dict, and the ceiling
of real scenes parsed as generated images are."""
import numpy as np
import pytest

from jaxgen.data import shapes
from jaxgen.eval import prompts as P
from jaxgen.eval.scene import Scene, SceneObject

RED, BLUE, GREEN = (shapes.COLOUR_NAMES.index(c) for c in ("red", "blue", "green"))
CIRCLE, SQUARE, TRIANGLE = (shapes.SHAPES.index(s) for s in ("circle", "square", "triangle"))
_SUITE = {p.text: p for p in P.prompt_suite(None)}


def parse(*objs: tuple[int, int, int]) -> Scene:
    """A hand-built parse from (colour, shape, cell) triples."""
    return Scene(tuple(SceneObject(s, c, p, 0, (0.0, 0.0), 10) for c, s, p in objs))


# ------------------------------------------------------------------------------------ support
def test_prompt_support_counts_every_caption_that_states_the_combination():
    prompts = [_SUITE[t] for t in ("two red circles", "a blue square", "two red circles and a blue square",
                                   "a red circle", "four white triangles")]
    captions = ["two red circles and a blue square",  # supports the first three (more objects: still)
                "two red circles and a blue square",  # a duplicate counts again
                "a red circle at the top left, a red circle on the right",  # position style: 2 red circles
                "a blue square and a green triangle",
                "three red circles",  # not "two red circles", not "a red circle": counts are exact
                "two circles and a square"]  # names no coloured shape: supports nothing
    support = P.prompt_support(prompts, captions)
    assert support.dtype == np.int64
    np.testing.assert_array_equal(support, [3, 3, 2, 0, 0])
    np.testing.assert_array_equal(P.held_out(prompts, captions), support == 0)
    np.testing.assert_array_equal(P.prompt_support(prompts, []), [0] * 5)


def test_support_matches_the_superset_test_on_training_captions():
    # The indexed count equals the plain per-caption superset test, and held_out is support == 0.
    captions = shapes.render_scenes(shapes.SPLIT_SEEDS["train"], range(400))["caption"]
    suite = P.prompt_suite(48)
    support = P.prompt_support(suite, captions)
    stated = [P.caption_triples(t) for t in captions]
    np.testing.assert_array_equal(support, [sum(p.triples <= s for s in stated) for p in suite])
    np.testing.assert_array_equal(P.held_out(suite, captions), support == 0)
    assert (support == 0).any() and (support >= P.SEEN_MIN_SUPPORT).any()


def test_support_groups_at_the_edges():
    assert P.SEEN_MIN_SUPPORT == 20
    np.testing.assert_array_equal(P.support_groups(np.array([0, 1, 19, 20, 21, 1000])),
                                  ["held_out", "rare", "rare", "seen", "seen", "seen"])


# ------------------------------------------------------------------------------------ counting
def test_accuracy_by_count_and_confusion():
    prompts = [_SUITE[t] for t in ("a red circle", "two red circles", "three blue squares",
                                   "a red circle and a blue square")]
    scenes = [
        [parse(*[(RED, CIRCLE, c) for c in range(5)]),  # five: "more"
         parse()],  # nothing: parsed 0
        [parse((RED, CIRCLE, 0), (RED, CIRCLE, 4)),  # right
         parse((RED, SQUARE, 0), (RED, SQUARE, 4)),  # shape misread: 2 red objects, wrong
         parse((RED, CIRCLE, 0))],  # one missing
        [parse((BLUE, SQUARE, 0), (BLUE, SQUARE, 4), (BLUE, SQUARE, 8)),  # right
         parse((BLUE, SQUARE, 0), (BLUE, TRIANGLE, 4), (BLUE, SQUARE, 8), (RED, CIRCLE, 2))],  # 3 blue
        [parse((RED, CIRCLE, 0), (BLUE, SQUARE, 1))],  # not a counting prompt: left out of both
    ]
    passed = [P.score(s, p) for p, s in zip(prompts, scenes)]
    assert P.accuracy_by_count(prompts, passed) == {1: 0.0, 2: 1 / 3, 3: 0.5}
    expected = np.zeros((shapes.MAX_OBJECTS, len(P.PARSED_COUNTS)), np.int64)
    expected[0, [0, 5]] = 1  # n = 1: parsed 0 and more
    expected[1, [1, 2]] = 1, 2  # n = 2: parsed 1 once, 2 twice
    expected[2, 3] = 2  # n = 3: parsed 3 twice (the red circle is another colour)
    np.testing.assert_array_equal(P.count_confusion(prompts, scenes), expected)
    assert P.PARSED_COUNTS == ("0", "1", "2", "3", "4", "more")
    with pytest.raises(ValueError, match="one entry per prompt"):
        P.count_confusion(prompts, scenes[:2])


# ------------------------------------------------------------------------------------ content
def test_satisfies_content_ignores_shape_only():
    def check(text, scene, content, exact=False):
        assert P.satisfies_content(scene, _SUITE[text]) is content, (text, scene.describe())
        assert P.satisfies(scene, _SUITE[text]) is exact, (text, scene.describe())

    check("two red circles", parse((RED, CIRCLE, 0), (RED, CIRCLE, 4)), True, exact=True)
    check("two red circles", parse((RED, SQUARE, 0), (RED, TRIANGLE, 4)), True)  # shapes only
    check("two red circles", parse((RED, CIRCLE, 0)), False)  # count
    check("two red circles", parse((RED, CIRCLE, 0), (BLUE, CIRCLE, 4)), False)  # colour
    check("two red circles", parse((RED, CIRCLE, 0), (RED, CIRCLE, 4), (GREEN, SQUARE, 8)), False)  # extra

    check("a red circle and a blue square", parse((RED, SQUARE, 0), (BLUE, CIRCLE, 4)), True)
    check("a red circle and a blue square", parse((RED, CIRCLE, 0), (GREEN, SQUARE, 4)), False)

    check("a red circle at the top left", parse((RED, SQUARE, 0)), True)
    check("a red circle at the top left", parse((RED, CIRCLE, 1)), False)  # cell
    check("a red circle to the left of a blue square", parse((RED, TRIANGLE, 3), (BLUE, CIRCLE, 5)), True)
    check("a red circle to the left of a blue square", parse((RED, CIRCLE, 5), (BLUE, SQUARE, 3)), False)

    placed = "a red circle at the top left and a blue square in the center"
    check(placed, parse((RED, SQUARE, 0), (BLUE, SQUARE, 4)), True)
    check(placed, parse((RED, CIRCLE, 4), (BLUE, SQUARE, 0)), False)  # cells swapped
    check("two red circles and a blue square", parse((RED, CIRCLE, 0), (RED, SQUARE, 1), (BLUE, CIRCLE, 4)), True)
    check("two red circles and a blue square", parse((RED, CIRCLE, 0), (BLUE, CIRCLE, 1), (BLUE, SQUARE, 4)), False)


# ------------------------------------------------------------------------------------ report
def test_suite_scores_on_a_tiny_case():
    prompts = [_SUITE["two red circles"], _SUITE["a blue square"], _SUITE["a red circle and a blue square"]]
    support = np.array([25, 0, 3])  # seen, held out, rare
    scenes = [
        [parse((RED, CIRCLE, 0), (RED, CIRCLE, 4)), parse((RED, SQUARE, 0), (RED, SQUARE, 4))],  # ok; shape
        [parse((BLUE, SQUARE, 4)), parse((BLUE, SQUARE, 8))],  # ok, ok
        [parse((RED, CIRCLE, 0), (BLUE, SQUARE, 1)), parse((RED, CIRCLE, 0), (GREEN, SQUARE, 1))],  # ok; colour
    ]
    confusion = {f"counting/confusion/n{n}_parsed{m}": 0 for n in range(1, 5) for m in P.PARSED_COUNTS}
    confusion.update({"counting/confusion/n1_parsed1": 2, "counting/confusion/n2_parsed2": 2})
    expected = {
        "all": 4 / 6, "all/content": 5 / 6, "all/held_out": 1.0, "all/rare": 0.5, "all/seen": 0.5,
        "colour_binding": 0.5, "colour_binding/content": 0.5, "colour_binding/rare": 0.5,
        "counting": 0.75, "counting/content": 1.0, "counting/held_out": 1.0, "counting/seen": 0.5,
        "counting/n1": 1.0, "counting/n1/held_out": 1.0, "counting/n2": 0.5, "counting/n2/seen": 0.5,
        **confusion}
    out = P.suite_scores(prompts, scenes, support)
    assert list(out) == sorted(expected)
    assert out == pytest.approx(expected)
    assert all(type(out[k]) is int for k in confusion)
    # Without support: the same minus the group keys.
    plain = P.suite_scores(prompts, scenes)
    assert plain == {k: v for k, v in out.items() if k.rsplit("/", 1)[-1] not in P.SUPPORT_GROUPS}


def test_position_scores_split_absolute_places_from_relations():
    """The relation prompts use words no training caption has ("to the left of", "above"): their
    accuracy is reported apart from the absolute places the captions do state."""
    prompts = [_SUITE["a red circle at the top left"], _SUITE["a red circle to the left of a blue square"]]
    scenes = [[parse((RED, CIRCLE, 0)), parse((RED, CIRCLE, 0))],  # ok, ok
              [parse((RED, CIRCLE, 3), (BLUE, SQUARE, 5)), parse((RED, CIRCLE, 5), (BLUE, SQUARE, 3))]]  # ok; relation
    out = P.suite_scores(prompts, scenes, np.array([25, 25]))
    assert out["position/absolute"] == 1.0 and out["position/relation"] == 0.5 and out["position"] == 0.75
    assert out["position/relation/seen"] == 0.5 and "counting/n1" not in out


# ------------------------------------------------------------------------------------ ceiling
def test_ceiling_is_exact_at_32_and_lines_up_with_the_report():
    suite = P.prompt_suite(12)
    support = np.tile([0, 5, 25], len(suite) // 3)  # held out, rare, seen in turn: all three per category
    out = P.real_scene_ceiling(suite, 32, images_per_prompt=4, support=support)
    accuracies = {k: v for k, v in out.items() if "/confusion/" not in k}
    assert accuracies == {k: 1.0 for k in accuracies}
    for c in (*P.CATEGORIES, "all"):
        assert {f"{c}", f"{c}/content", f"{c}/seen", f"{c}/rare", f"{c}/held_out"} <= set(out)
    # Every image requesting n parses to n objects of its colour: 3 counting prompts per n x 4 images.
    for n in range(1, 5):
        assert [out[f"counting/confusion/n{n}_parsed{m}"] for m in P.PARSED_COUNTS] == \
            [12 * (m == str(n)) for m in P.PARSED_COUNTS]
    # The keys of a generated eval (here: every image empty) are the ceiling's, one for one.
    assert list(P.suite_scores(suite, [[Scene(())] * 4] * len(suite), support)) == list(out)


def test_ceiling_at_16_loses_shapes_not_content():
    # 48 prompts per category x 8 images, bilinear to 16x16, as the base stage's images are. Measured
    # (seed 0): counting 0.823 (n = 1..4: 0.917 / 0.833 / 0.792 / 0.750), colour binding 0.846,
    # position 0.893, combination 0.839, all 0.850; content 0.982 / 1.000 / 1.000 / 0.995. Over three
    # render seeds and two suite seeds the categories stayed within 0.77-0.92, content >= 0.979.
    suite = P.prompt_suite(48, seed=0)
    out = P.real_scene_ceiling(suite, 16, images_per_prompt=8, seed=0)
    print({k: round(v, 3) for k, v in out.items() if "/confusion/" not in k})
    assert out["counting"] < 1.0
    for c in (*P.CATEGORIES, "all"):
        assert 0.7 <= out[c] <= 1.0, c
        # The parse at 16x16 misreads shapes (circle vs square), rarely colours, numbers or cells.
        assert out[f"{c}/content"] >= max(out[c], 0.97), c
    # More objects, more chances to misread one.
    assert out["counting/n1"] > out["counting/n4"]
    for n in range(1, 5):  # 12 prompts x 8 images per requested count, mostly parsed right
        row = [out[f"counting/confusion/n{n}_parsed{m}"] for m in P.PARSED_COUNTS]
        assert sum(row) == 96 and row[n] >= 0.9 * 96, (n, row)
