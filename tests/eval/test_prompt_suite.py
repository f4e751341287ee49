"""The shared prompt-suite scorer on made-up generators (no model): batches and keys, named image
sets, held-out splits, the parser's ceiling, and the scores of a perfect and of an empty generator."""
import re

import jax
import numpy as np
import pytest

from jaxgen import data
from jaxgen.data import shapes
from jaxgen.eval import prompt_suite as ps
from jaxgen.eval import prompts as P

SETTINGS = {"prompts_per_category": 3, "images_per_prompt": 2, "prompt_seed": 0, "batch_size": 5}


@pytest.fixture(scope="module")
def reference():
    return data.load("shapes/tiny", "test")


def _perfect(texts, rng):
    """Flat 32x32 scenes that satisfy each text's prompt, as float in [0, 1]."""
    by_text = {p.text: p for p in P.prompt_suite(SETTINGS["prompts_per_category"], seed=SETTINGS["prompt_seed"])}
    draw = np.random.default_rng(int(jax.random.randint(rng, (), 0, 2 ** 30)))
    layouts = [P.satisfying_layout(by_text[t], draw) for t in texts]
    return shapes.render_layouts(layouts, draw).astype(np.float32) / 255.0


def _blank(texts, rng):
    """Background only: no object, so no prompt of the suite (each asks for one or more) holds."""
    return np.broadcast_to(np.asarray(shapes.BACKGROUND, np.float32) / 255.0, (len(texts), 16, 16, 3)).copy()


def test_batches_keys_and_padding():
    calls = []

    def make(texts, rng):
        calls.append((list(texts), np.asarray(rng)))
        return np.arange(len(texts), dtype=np.float32)[:, None, None, None] + np.zeros((1, 2, 2, 3), np.float32)

    texts = [f"t{i}" for i in range(12)]
    out = ps.generate_in_batches(make, texts, batch_size=5, seed=7)
    assert [len(t) for t, _ in calls] == [5, 5, 5]  # one compiled shape: the last batch is padded...
    assert calls[2][0] == ["t10", "t11", "t11", "t11", "t11"]  # ...with its last text
    assert sum((t for t, _ in calls), [])[:12] == texts
    for i, (_, key) in enumerate(calls):
        np.testing.assert_array_equal(key, jax.random.PRNGKey(7 + i))
    assert out.shape == (12, 2, 2, 3)  # the padding dropped
    np.testing.assert_array_equal(out[:, 0, 0, 0], [0, 1, 2, 3, 4] * 2 + [0, 1])
    # Named image sets come back per name, each over all texts.
    named = ps.generate_in_batches(lambda t, r: {"a": make(t, r), "b": make(t, r)[:, :1]}, texts, 5, 7)
    assert sorted(named) == ["a", "b"] and named["a"].shape == (12, 2, 2, 3) and named["b"].shape == (12, 1, 2, 3)


def test_perfect_and_empty_generators(reference):
    suite = P.prompt_suite(3, seed=0)
    # The counting and colour-binding prompts are "seen" (20 captions each), the others held out.
    captions = [p.text for p in suite[:6]] * P.SEEN_MIN_SUPPORT
    scores = ps.prompt_suite_scores(lambda t, r: {"perfect": _perfect(t, r), "blank": _blank(t, r)},
                                    SETTINGS, captions, reference, seed=0)
    for category in P.CATEGORIES + ("all",):
        assert scores[f"t2i_perfect_{category}"] == 1.0  # the parser is exact on clean 32x32 scenes
        assert scores[f"t2i_blank_{category}"] == 0.0
    assert not P.held_out(suite, captions)[:6].any()
    assert scores["t2i_perfect_counting_seen"] == 1.0 and scores["t2i_blank_colour_binding_seen"] == 0.0
    assert "t2i_perfect_counting_held_out" not in scores and scores["t2i_perfect_position_held_out"] == 1.0
    assert scores["t2i_perfect_all_content"] == 1.0 and scores["t2i_blank_all_content"] == 0.0
    # Per-count accuracy and the count confusion: the blank images show no object at all.
    counts = sorted(int(m[1]) for k in scores if (m := re.fullmatch(r"t2i_perfect_counting_n(\d)", k)))
    assert counts and all(scores[f"t2i_perfect_counting_n{n}"] == 1.0 for n in counts)
    assert sum(scores[f"t2i_blank_counting_confusion_n{n}_parsed0"] for n in counts) == 3 * 2
    # The real-scene ceiling, per category at each set's size: a perfect model's score, exact at
    # 32x32, below 1 for counting at 16x16 (small circles read as squares), with the same keys.
    for category in P.CATEGORIES:
        assert scores[f"t2i_perfect_ceiling_{category}"] == 1.0
    assert 0.5 < scores["t2i_blank_ceiling_all"] < 1.0
    assert {k[len("t2i_perfect_ceiling_"):] for k in scores if k.startswith("t2i_perfect_ceiling_")} == {
        k[len("t2i_blank_ceiling_"):] for k in scores if k.startswith("t2i_blank_ceiling_")}
    assert scores["t2i_perfect_num_images"] == scores["t2i_blank_num_images"] == 24  # 4 categories x 3 x 2
    # The ceiling is measured at each set's own size: exact at 32x32, below that at 16x16.
    assert scores["t2i_perfect_parser_exact_real"] == 1.0
    assert 0.7 < scores["t2i_blank_parser_exact_real"] < 1.0
    assert scores["t2i_blank_parser_exact_real"] == ps.parser_ceiling(reference, 16)
    assert not any("clip" in k for k in scores)  # no clip_workdir, no CLIP score


def test_one_unnamed_set_and_held_out_split(reference):
    scores = ps.prompt_suite_scores(_blank, SETTINGS, [], reference, seed=0)
    assert scores["t2i_all"] == 0.0 and scores["t2i_num_images"] == 24
    # No training caption at all: every prompt is held out, none seen.
    assert "t2i_counting_held_out" in scores and not any(k.endswith("_seen") for k in scores)
    assert ps.prompt_suite_scores(_blank, dict(SETTINGS, prompts_per_category=0), [], reference, seed=0) == {}
