"""Frechet distance between two sets of features (the FID of Heusel et al. 2017 when the features
are Inception's; in jaxgen they come from jaxgen.models.classifier.DigitsClassifier).

Each set is summarised by a Gaussian N(mu, Sigma) and the distance is the squared 2-Wasserstein
distance between the two Gaussians (Dowson & Landau 1982):

    FD = |mu_a - mu_b|^2 + tr(Sigma_a + Sigma_b - 2 (Sigma_a Sigma_b)^{1/2}).

Numerics: Sigma_a Sigma_b is not symmetric, and scipy.linalg.sqrtm of it can return complex parts
and needs an epsilon fix when a covariance is singular (few samples, dead ReLU features). We use
instead
    tr (Sigma_a Sigma_b)^{1/2} = tr (S Sigma_b S)^{1/2},   S = Sigma_a^{1/2} (symmetric PSD),
since S Sigma_b S is similar to Sigma_a Sigma_b (it equals S^{-1} (Sigma_a Sigma_b) S where S is
invertible, and by continuity otherwise). S Sigma_b S is symmetric PSD, so its trace-sqrt is the sum
of the square roots of its eigenvalues from a symmetric eigen-decomposition, with round-off
negatives clipped to 0. All in float64 numpy.

From features with fewer rows than dimensions (a 2048-d Inception feature of a few hundred images)
the covariances have rank < F, and the F x F eigen-decompositions (seconds at F = 2048) are not
needed: with X_a, X_b the centred features, Sigma_a Sigma_b = X_a^T (X_a X_b^T) X_b / c, c = (N_a - 1)
(N_b - 1), has the nonzero eigenvalues of M M^T / c, M = X_a X_b^T [N_a, N_b] (AB and BA share them),
so tr (Sigma_a Sigma_b)^{1/2} is the sum of M's singular values over sqrt(c).
"""
from __future__ import annotations

import numpy as np


def _as_features(feats: np.ndarray) -> np.ndarray:
    """Features [N, F] with N >= 2 as float64, or ValueError."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(f"the Frechet distance needs features [N, F] with N >= 2, got shape "
                         f"{feats.shape}.")
    return feats


def feature_statistics(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features [N, F] -> (mean [F], covariance [F, F]), float64, unbiased (N - 1) covariance."""
    feats = _as_features(feats)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix via eigh (negative round-off clipped)."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_statistics(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray,
                                     sigma_b: np.ndarray) -> float:
    """FD between N(mu_a, sigma_a) and N(mu_b, sigma_b): means [F], covariances [F, F]."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.atleast_2d(sigma_a).astype(np.float64), np.atleast_2d(sigma_b).astype(
        np.float64)
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape or sigma_a.shape != (
            mu_a.size, mu_a.size):
        raise ValueError(f"frechet distance needs means [F] and covariances [F, F] of one F, got "
                         f"{mu_a.shape}, {sigma_a.shape}, {mu_b.shape}, {sigma_b.shape}.")
    s = _psd_sqrt(sigma_a)
    middle = s @ sigma_b @ s
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_sqrt = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu_a - mu_b
    fd = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * tr_sqrt
    return float(max(fd, 0.0))   # >= 0 in exact arithmetic; clip round-off


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Frechet distance between the Gaussians fitted to features [N_a, F] and [N_b, F] (through
    the singular values of X_a X_b^T when a set has at most F rows: see the module's docstring)."""
    a, b = _as_features(feats_a), _as_features(feats_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet distance needs features of one F, got {a.shape} and {b.shape}.")
    if min(len(a), len(b)) > a.shape[1]:
        return frechet_distance_from_statistics(*feature_statistics(a), *feature_statistics(b))
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    xa, xb = a - mu_a, b - mu_b
    na, nb = len(a), len(b)
    tr_sqrt = np.linalg.svd(xa @ xb.T, compute_uv=False).sum() / np.sqrt((na - 1) * (nb - 1))
    diff = mu_a - mu_b
    fd = diff @ diff + (xa * xa).sum() / (na - 1) + (xb * xb).sum() / (nb - 1) - 2.0 * tr_sqrt
    return float(max(fd, 0.0))   # >= 0 in exact arithmetic; clip round-off
