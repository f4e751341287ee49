"""Tests of experiments/baselines.py: a hand-computed pixel categorical, the dequantization bound,
and a fast run of the whole table on the digits with small grids."""
import math

import numpy as np
import pytest

from experiments import baselines as B


def test_pixel_categorical_by_hand():
    train = np.array([[0, 1], [0, 2], [1, 1]])
    table = B.fit_pixel_categorical(train, num_levels=17, alpha=1.0)
    # add-one smoothing: P = (count + 1) / (3 + 17)
    assert np.exp(table).sum(axis=1) == pytest.approx([1.0, 1.0])
    assert table[0, 0] == pytest.approx(math.log(3 / 20))
    assert table[0, 1] == pytest.approx(math.log(2 / 20))
    assert table[1, 2] == pytest.approx(math.log(2 / 20))
    assert table[1, 16] == pytest.approx(math.log(1 / 20))
    logp = B.pixel_categorical_log_prob(table, np.array([[0, 1], [5, 16]]))
    np.testing.assert_allclose(logp, [2 * math.log(3 / 20), 2 * math.log(1 / 20)])


def test_dequantization_bound_matches_closed_form():
    # p = N(0, s^2) in 1-D: E_u[log p(x + u)] = -log(2 pi s^2)/2 - (x^2 + x + 1/3) / (2 s^2).
    s2 = 2.0
    score = lambda y: -0.5 * math.log(2 * math.pi * s2) - y[:, 0] ** 2 / (2 * s2)
    x = np.array([[0.0], [3.0]])
    got = B.dequantized_log_prob(score, x, np.random.default_rng(0), num_samples=20_000)
    expected = -0.5 * math.log(2 * math.pi * s2) - (x[:, 0] ** 2 + x[:, 0] + 1 / 3) / (2 * s2)
    np.testing.assert_allclose(got, expected, atol=0.02)


def test_digits_baselines_fast_grid():
    results = B.digits_baselines(
        seed=0, num_dequant=2, kde_bandwidths=(1.0, 2.0),
        gmm_grid=[{"covariance_type": ["diag"], "n_components": [1, 4], "reg_covar": [0.01]}])
    assert set(results) == {"pixel_categorical", "gaussian_mixture", "kernel_density"}
    for r in results.values():
        assert np.isfinite(r["nats"]) and r["nats"] > 0 and r["num_images"] == 360
        assert r["bits_per_dim"] == pytest.approx(r["nats"] / (64 * math.log(2)))
    # Independent pixels on 17 levels: well below the uniform 64 ln 17 = 181 nats.
    assert results["pixel_categorical"]["nats"] < 64 * math.log(17)
    table = B.markdown_table(results)
    assert table.count("\n") == 4 and "kernel_density" in table
