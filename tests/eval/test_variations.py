"""jaxgen.eval.variations: what image variations keep of their source scene."""
import numpy as np
import pytest

from jaxgen.data import shapes
from jaxgen.eval import variations


@pytest.fixture(scope="module")
def sources():
    """60 held-out test scenes (uint8 [N, 32, 32, 3]) and their per-object records."""
    arrays = shapes.render_scenes(shapes.SPLIT_SEEDS["test"], range(60))
    return arrays["image"], arrays


def _unit(images):
    return images.astype(np.float32) / 255.0


def test_the_sources_themselves_keep_everything_and_another_scene_does_not(sources):
    images, truth = sources
    scores = variations.variation_scores(_unit(images), images, truth)
    for metric in variations.METRICS:
        assert scores[f"variation_{metric}"] == 1.0  # the parser is exact on real 32x32 scenes
        assert scores[f"variation_{metric}_ceiling"] == 1.0
    assert scores["variation_same_objects_other"] < 0.2  # two random scenes rarely hold the same objects
    assert scores["variation_num_images"] == 60


def test_scores_average_over_each_sources_variations(sources):
    """Two variations per source, the source itself and the next scene: every score is the mean of
    the two, so the own score is (1 + other) / 2 exactly."""
    images, truth = sources
    both = np.stack([images, np.roll(images, -1, axis=0)], axis=1).reshape((-1,) + images.shape[1:])
    scores = variations.variation_scores(_unit(both), images, truth)
    single = variations.variation_scores(_unit(images), images, truth)
    for metric in variations.METRICS:
        assert scores[f"variation_{metric}"] == pytest.approx((1.0 + single[f"variation_{metric}_other"]) / 2)


def test_a_moved_layout_keeps_the_objects_but_not_the_scene(sources):
    """A left-right mirror keeps every object's colour and shape (the shapes are mirror-symmetric)
    and moves those off the centre column: same objects, and an exact scene only where the mirror
    of the scene is the scene itself."""
    images, truth = sources
    scores = variations.variation_scores(_unit(images[:, :, ::-1]), images, truth)
    assert scores["variation_same_objects"] == 1.0 and scores["variation_same_count"] == 1.0

    def objects(i, mirror):
        cells = truth["obj_position"][i]
        return {(3 * (p // 3) + (2 - p % 3 if mirror else p % 3), c, s)
                for p, c, s in zip(cells, truth["obj_colour"][i], truth["obj_shape"][i]) if p >= 0}

    symmetric = [objects(i, True) == objects(i, False) for i in range(len(images))]
    assert 0 < np.mean(symmetric) < 0.5
    assert scores["variation_exact_scene"] == pytest.approx(np.mean(symmetric))


def test_bad_input_is_one_sentence(sources):
    images, truth = sources
    with pytest.raises(ValueError, match="at least two sources"):
        variations.variation_scores(_unit(images[:1]), images[:1], truth)
    with pytest.raises(ValueError, match="whole number of variations"):
        variations.variation_scores(_unit(images[:5]), images[:2], truth)
