"""The digits-classifier judge that scores every family's samples the same way."""
import numpy as np

from jaxgen import data
from jaxgen.data import transforms
from jaxgen.tasks import runs


def test_real_test_digits_score_as_the_floor(classifier_run):
    """Scored as if they were samples, the real test digits are one chunk of the test split's size:
    their chunked distance is the floor itself, their distance to the test split is zero, and their
    class accuracy is the classifier's own test accuracy."""
    judge = runs.classifier_judge(classifier_run)
    test = data.load("digits", "test")
    images = np.asarray(transforms.to_unit(test.arrays["image"], test.num_levels))
    r = judge.score(images, test.arrays["label"])
    n = len(images)
    assert r[f"frechet_distance_{n}"] == r["frechet_distance"] == r["frechet_floor_test_vs_train"] > 0
    assert r["fd_over_floor"] == 1.0
    assert abs(r["frechet_distance_to_test"]) < 1e-6 * r["frechet_floor_test_vs_train"]
    assert (r["precision"], r["recall"]) == (r["precision_test_vs_train"], r["recall_test_vs_train"])
    logits, _ = judge(images)
    assert r["class_accuracy"] == np.mean(logits.argmax(-1) == test.arrays["label"])
    # Twice the test split: two chunks, their mean distance is the floor again.
    r2 = judge.score(np.concatenate([images, images]))
    np.testing.assert_allclose(r2[f"frechet_distance_{n}"], r["frechet_floor_test_vs_train"], rtol=1e-12)
    assert "class_accuracy" not in r2


def test_a_collapsed_generator_scores_far_from_the_floor(classifier_run):
    judge = runs.classifier_judge(classifier_run)
    test = data.load("digits", "test")
    one = np.asarray(transforms.to_unit(test.arrays["image"][:1], test.num_levels))
    r = judge.score(np.repeat(one, 720, axis=0))
    assert r["classes_covered"] == 1 and r["class_kl_to_uniform"] > 2.0  # log 10 = 2.30 for one class
    assert r["fd_over_floor"] > 2.0 and r["recall"] < 0.05
