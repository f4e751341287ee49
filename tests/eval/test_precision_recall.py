"""Improved precision / recall (Kynkaanniemi et al. 2019) on cases small enough to check by hand."""
import numpy as np
import pytest

from jaxgen.eval.precision_recall import in_manifold, knn_radii, precision_recall


def test_knn_radii_by_hand():
    pts = np.array([[0.0], [1.0], [3.0], [7.0]])
    # nearest other point: 0->1 (1), 1->0 (1), 3->1 (2), 7->3 (4); 2nd nearest: 3, 2, 3, 6
    np.testing.assert_allclose(knn_radii(pts, 1), [1, 1, 2, 4])
    np.testing.assert_allclose(knn_radii(pts, 2), [3, 2, 3, 6])
    with pytest.raises(ValueError, match="1 <= k < N"):
        knn_radii(pts, 4)


def test_precision_recall_by_hand():
    real = np.array([[0.0], [1.0], [2.0], [3.0]])  # k = 1: every real ball has radius 1
    fake = np.array([[0.5], [10.0]])  # fake balls (k = 1): radius 9.5 each
    # precision: 0.5 lies within 1 of real 0 (and 1); 10 is 7 away from the nearest real -> 1/2
    # recall: every real point lies within 9.5 of fake 0.5 -> 4/4
    assert precision_recall(real, fake, k=1) == {"precision": 0.5, "recall": 1.0}
    np.testing.assert_array_equal(in_manifold(fake, real, knn_radii(real, 1)), [True, False])
    # a fake set that collapsed onto one real point: precise, but covers little of the data
    collapsed = np.array([[0.0], [0.0], [0.1]])  # radii (k = 1): 0, 0, 0.1
    assert precision_recall(real, collapsed, k=1) == {"precision": 1.0, "recall": 0.25}


def test_identical_sets_are_perfect_in_2d():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    assert precision_recall(x, x.copy(), k=3) == {"precision": 1.0, "recall": 1.0}
