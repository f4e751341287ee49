"""Tests of jaxgen.eval.frechet against the closed form for Gaussians."""
import numpy as np
import pytest

from jaxgen.eval.frechet import (feature_statistics, frechet_distance,
                                 frechet_distance_from_statistics)


def test_closed_form_diagonal_gaussians():
    # For diagonal covariances FD = |mu_a - mu_b|^2 + sum_i (sigma_a,i - sigma_b,i)^2.
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    got = frechet_distance_from_statistics(mu_a, np.diag(var_a), mu_b, np.diag(var_b))
    assert got == pytest.approx(expected, rel=1e-10)


def test_closed_form_rotated_covariances():
    # The distance is invariant under a common rotation of both Gaussians.
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    var_a, var_b = rng.uniform(0.5, 3, 5), rng.uniform(0.5, 3, 5)
    mu_a, mu_b = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    got = frechet_distance_from_statistics(q @ mu_a, q @ np.diag(var_a) @ q.T,
                                           q @ mu_b, q @ np.diag(var_b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-8)


def test_samples_approach_closed_form():
    rng = np.random.default_rng(1)
    a = rng.normal([0, 0, 0], [1, 2, 3], size=(200_000, 3))
    b = rng.normal([1, 0, 0], [1, 1, 3], size=(200_000, 3))
    assert frechet_distance(a, b) == pytest.approx(1.0 + 1.0, abs=0.03)


def test_same_features_give_zero_even_when_singular():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(50, 8)) @ rng.normal(size=(8, 64))   # rank 8 covariance in 64 dims
    feats[:, :5] = 0.0                                            # dead features
    assert abs(frechet_distance(feats, feats)) < 1e-6 * np.trace(np.cov(feats, rowvar=False))
    mu, sigma = feature_statistics(feats)
    assert mu.shape == (64,) and sigma.shape == (64, 64)


@pytest.mark.parametrize("rows", [(30, 40), (30, 200), (64, 64)])
def test_features_with_fewer_rows_than_dimensions_give_the_distance_of_their_statistics(rows):
    """With at most F rows in a set, frechet_distance takes the trace term from the singular values
    of X_a X_b^T instead of F x F eigen-decompositions: the same number, up to the statistics
    path's own error (rel 3e-8 here): it sums the square roots of the rank-deficient product's zero
    eigenvalues, which round-off makes about sqrt(1e-16 x the largest) each."""
    rng = np.random.default_rng(3)
    mix = rng.normal(size=(64, 64))
    a = rng.normal(size=(rows[0], 64)) @ mix
    b = 0.5 + rng.normal(size=(rows[1], 64)) @ (mix + 0.3 * rng.normal(size=(64, 64)))
    want = frechet_distance_from_statistics(*feature_statistics(a), *feature_statistics(b))
    assert want > 1.0
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-12)


def test_bad_shapes_are_a_clear_error():
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="features of one F"):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="features of one F"):
        frechet_distance(np.zeros((4, 3)), np.zeros((2, 2)))   # the low-rank path checks too
