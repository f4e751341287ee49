"""Retrieval recall with ambiguous captions, the linear probe, the CLIP score, caption meaning."""
import numpy as np

from jaxgen.data import captions
from jaxgen.data import shapes as shapes_lib
from jaxgen.eval import contrastive


def test_recall_at_k_counts_any_relevant_candidate_by_rank():
    sim = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1], [0.0, 0.8, 0.7]])
    relevant = np.array([[False, False, True], [True, False, False], [False, False, False]])
    # query 0: relevant at rank 1; query 1: at rank 1 (0.2 is second); query 2: none at all.
    assert contrastive.recall_at_k(sim, relevant, ks=(1, 2, 3)) == {1: 0.0, 2: 2 / 3, 3: 2 / 3}


def test_retrieval_counts_a_matching_scene_as_a_hit():
    """Scenes 0 and 1 share content (one red circle), scene 2 is different: a text->image query for
    scene 0's caption that returns scene 1 first is a hit; image->text ranks distinct captions."""
    img = contrastive.normalise(np.array([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0]]))
    txt = contrastive.normalise(np.array([[1.0, 0.1], [1.0, 0.1], [0.0, 1.0]]))
    keys = [("red circle",), ("red circle",), ("blue square",)]
    texts = ["a red circle", "a red circle", "a blue square"]
    scores = contrastive.retrieval_scores(txt, img, keys, texts)
    assert scores["t2i_r1"] == 1.0 and scores["i2t_r1"] == 1.0 and scores["distinct_captions"] == 2
    # Texts reversed: queries 0 and 2 now point at the wrong content, query 1 still at a red circle.
    shuffled = contrastive.retrieval_scores(txt[::-1], img, keys, texts)
    assert shuffled["t2i_r1"] == 1 / 3


def test_scene_key_ignores_the_order_a_caption_lists_objects_in():
    # (shape, colour, position): a red circle (top left) + blue square (center), and the reverse layout
    a = captions.scene_key("full", [0, 1], [0, 2], [0, 4])
    b = captions.scene_key("full", [1, 0], [2, 0], [0, 4])
    assert a == b
    assert shapes_lib.caption([0, 1], [0, 2], style="full") != shapes_lib.caption([1, 0], [2, 0], style="full")
    assert captions.scene_key("position", [0, 1], [0, 2], [0, 4]) != captions.scene_key("position", [1, 0], [2, 0],
                                                                                       [0, 4])
    # "a red shape" (one object) is not "red shapes" (two red objects)
    assert captions.scene_key("colour", [0], [0], [0]) != captions.scene_key("colour", [0, 1], [0, 0], [0, 1])


def test_linear_probe_separates_separable_classes_and_not_noise():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 3
    y_train, y_test = rng.integers(0, 3, 300), rng.integers(0, 3, 100)
    x_train = centres[y_train] + rng.normal(size=(300, 8))
    x_test = centres[y_test] + rng.normal(size=(100, 8))
    assert contrastive.linear_probe(x_train, y_train, x_test, y_test, 3, steps=300) > 0.95
    noise = contrastive.linear_probe(rng.normal(size=(300, 8)), y_train, rng.normal(size=(100, 8)), y_test, 3,
                                     steps=300)
    assert noise < 0.6


def test_clip_score_is_100_cosine_clipped_at_zero():
    img = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    txt = np.array([[1.0, 0.0], [0.0, -1.0], [1.0, 1.0]])
    np.testing.assert_allclose(contrastive.clip_score(img, txt), [100.0, 0.0, 100 / np.sqrt(2)])


def test_digit_captions_are_a_pure_function_of_seed_step_and_row():
    a = captions.caption_rows(0, 5, 64, 8)
    np.testing.assert_array_equal(a, captions.caption_rows(0, 5, 64, 8))
    halves = [captions.caption_rows(0, 5, 64, 8, p, 2) for p in range(2)]
    np.testing.assert_array_equal(np.concatenate(halves), a)
    assert not np.array_equal(a, captions.caption_rows(0, 6, 64, 8))
    assert captions.digit_caption(7, "the number {d}") == "the number 7"
    assert captions.digit_caption(7, "a handwritten digit {w}") == "a handwritten digit seven"
