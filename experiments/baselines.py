"""Simple density baselines for the digits test NLL, on the same split and scale as the VAE.

    python -m experiments.baselines [--seed 0] [--json OUT] [--ship]

`--ship` also writes the results to jaxgen/baselines_digits.json (jaxgen.report.BASELINES_FILE), the copy
that ships with the package and that the HTML report quotes as the classical reference.

The data are the native 8x8 digits with 17 levels (integers 0..16, D = 64), as scored by the VAE's
categorical likelihood. Every model is fitted on `train` (1,437 images) and scored on `test` (360);
hyper-parameters are chosen by 5-fold cross-validation on train only. Reported: mean test NLL in
nats per image and bits/dim = nats / (64 ln 2), with the standard error across test images.

(a) pixel categorical: independent categorical per pixel, Laplace-smoothed counts,
      P(x_d = v) = (n_d(v) + alpha) / (N + alpha * L),  alpha = 1.
    An exact discrete likelihood.
(b) GaussianMixture and (c) KernelDensity (Gaussian kernel): continuous densities p(y) on R^64.
    A density p defines a discrete model on the integer grid by the mass of each unit cell,
        P(x) = integral_{[0,1)^D} p(x + u) du,
    (summing to at most 1 over the 17^64 grid points; mass outside them only makes the model worse),
    and by Jensen's inequality
        log P(x) >= E_{u ~ U[0,1)^D} [log p(x + u)],
    the uniform-dequantization bound (Theis et al. 2016; Ho et al. 2019). We fit p to uniformly
    dequantized train data y = x + u (one fixed draw of u), and estimate the bound on test with
    `num_dequant` independent draws of u per image. Pixels stay on the integer scale (cells of width
    1), so no Jacobian term appears; the reported NLL is an upper bound on the model's discrete NLL,
    exactly as the VAE's IWAE number is.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KernelDensity

from jaxgen.eval.likelihood import nll_summary
from jaxgen.report import BASELINES_FILE

NUM_LEVELS = 17
# Full covariances overfit 1,437 images in 64 dimensions beyond a few components, so the grid pairs
# them with few components and a stronger ridge (reg_covar), and lets diagonal mixtures grow wider.
GMM_GRID = (
    {"covariance_type": ["full"], "n_components": [1, 2, 4, 8, 16], "reg_covar": [0.01, 0.1]},
    {"covariance_type": ["diag"], "n_components": [8, 16, 32, 64, 128], "reg_covar": [0.01, 0.1]},
)
KDE_BANDWIDTHS = tuple(np.round(np.geomspace(0.5, 4.0, 10), 3).tolist())


# --- (a) independent per-pixel categorical -----------------------------------------------------


def fit_pixel_categorical(x: np.ndarray, num_levels: int, alpha: float = 1.0) -> np.ndarray:
    """Integer data [N, D] -> log-probability table [D, num_levels] with add-alpha smoothing."""
    counts = np.stack([np.bincount(col, minlength=num_levels) for col in x.T.astype(np.int64)])
    return np.log(counts + alpha) - np.log(x.shape[0] + alpha * num_levels)


def pixel_categorical_log_prob(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log P(x) [N] of integer data [N, D] under the table of `fit_pixel_categorical`."""
    return table[np.arange(x.shape[1]), x.astype(np.int64)].sum(axis=1)


# --- (b, c) continuous densities with uniform dequantization -------------------------------------


def dequantized_log_prob(score_samples, x: np.ndarray, rng: np.random.Generator,
                         num_samples: int) -> np.ndarray:
    """Monte-Carlo estimate of E_u[log p(x + u)], u ~ U[0,1)^D: a lower bound on log P(x), [N].

    `score_samples` maps continuous data [N, D] to log densities [N] (sklearn's score_samples).
    """
    total = np.zeros(x.shape[0])
    for _ in range(num_samples):
        total += score_samples(x + rng.random(x.shape))
    return total / num_samples


def _cross_validate(estimator, grid, y: np.ndarray, seed: int):
    """Best estimator by mean held-out log-likelihood (the estimators' .score) over 5 folds."""
    search = GridSearchCV(estimator, grid, cv=KFold(5, shuffle=True, random_state=seed), n_jobs=1)
    search.fit(y)
    return search.best_estimator_, search.best_params_


# --- the table ---------------------------------------------------------------------------------


def digits_baselines(seed: int = 0, gmm_grid=GMM_GRID, kde_bandwidths=KDE_BANDWIDTHS,
                     num_dequant: int = 16, alpha: float = 1.0,
                     data: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Fits the three baselines on digits train and scores digits test.

    Args:
      seed: seeds the dequantization noise, the CV folds and the mixture's initialisation.
      gmm_grid: GridSearchCV parameter grid(s) of the GaussianMixture.
      kde_bandwidths: the KernelDensity bandwidths to cross-validate (pixel units).
      num_dequant: draws of u per test image for the dequantization bound.
      alpha: Laplace smoothing of the pixel categorical (1 = add-one).
      data: optional (train, test) integer arrays [N, ...] in 0..16 in place of the digits.

    Returns {name: dict(nats, nats_se, bits_per_dim, bits_per_dim_se, num_images, params)}.
    """
    if data is None:
        from jaxgen.data.digits import digits_arrays
        data = (digits_arrays("train")[0], digits_arrays("test")[0])
    train = np.asarray(data[0]).reshape(len(data[0]), -1).astype(np.int64)
    test = np.asarray(data[1]).reshape(len(data[1]), -1).astype(np.int64)
    dims = train.shape[1]
    rng = np.random.default_rng(seed)
    results: dict[str, Any] = {}

    table = fit_pixel_categorical(train, NUM_LEVELS, alpha)
    results["pixel_categorical"] = {
        **nll_summary(pixel_categorical_log_prob(table, test), dims), "params": {"alpha": alpha}}

    y_train = train + rng.random(train.shape)   # one fixed dequantization of the training set
    gmm, gmm_params = _cross_validate(
        GaussianMixture(random_state=seed, max_iter=200), list(gmm_grid), y_train, seed)
    results["gaussian_mixture"] = {
        **nll_summary(dequantized_log_prob(gmm.score_samples, test, rng, num_dequant), dims),
        "params": gmm_params}

    kde, kde_params = _cross_validate(
        KernelDensity(kernel="gaussian"), {"bandwidth": list(kde_bandwidths)}, y_train, seed)
    results["kernel_density"] = {
        **nll_summary(dequantized_log_prob(kde.score_samples, test, rng, num_dequant), dims),
        "params": kde_params}
    return results


def markdown_table(results: dict[str, Any]) -> str:
    """The results of `digits_baselines` as a markdown table."""
    lines = ["| model | chosen by CV | test NLL (nats/image) | bits/dim |",
             "|---|---|---|---|"]
    for name, r in results.items():
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        lines.append(f"| {name} | {params} | {r['nats']:.2f} ± {r['nats_se']:.2f} | "
                     f"{r['bits_per_dim']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument("--ship", action="store_true",
                        help=f"also write them to {BASELINES_FILE}, which the HTML report reads")
    args = parser.parse_args(argv)
    results = digits_baselines(args.seed)
    print("digits 8x8, 17 levels, test split (360 images); D = 64, "
          f"bits/dim = nats / (64 ln 2) = nats / {64 * math.log(2):.2f}\n")
    print(markdown_table(results))
    paths = ([args.json] if args.json else []) + ([BASELINES_FILE] if args.ship else [])
    for path in paths:
        with open(path, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
