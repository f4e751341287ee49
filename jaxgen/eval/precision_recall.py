"""Improved precision and recall of a generative model (Kynkaanniemi et al. 2019), in a feature space.

Each set of features is turned into a "manifold": the union of balls around its points, the ball
of point phi having the radius of phi's k-th nearest neighbour within the same set (k = 3 in the
paper). Then

    precision = fraction of generated features inside the real manifold  (are samples realistic?)
    recall    = fraction of real features inside the generated manifold  (is the data covered?)

Eq. 1-3 of the paper: f(phi, Phi) = 1 if ||phi - phi'|| <= NN_k(phi', Phi) for some phi' in Phi,
precision = mean_{phi_g} f(phi_g, Phi_r), recall = mean_{phi_r} f(phi_r, Phi_g).
Distances in float64 numpy, in row chunks so memory stays O(chunk x N).
"""
from __future__ import annotations

import numpy as np


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances [Na, Nb] (clipped at 0 against round-off)."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def knn_radii(feats: np.ndarray, k: int = 3, chunk: int = 1024) -> np.ndarray:
    """Distance of every point of feats [N, F] to its k-th nearest *other* point: [N].

    The point itself (distance 0) is not counted as a neighbour.
    """
    feats = np.asarray(feats, np.float64)
    if feats.ndim != 2 or not 1 <= k < len(feats):
        raise ValueError(f"knn_radii needs features [N, F] with 1 <= k < N; got shape {feats.shape}, k={k}.")
    radii = []
    for i in range(0, len(feats), chunk):
        d = _sq_distances(feats[i:i + chunk], feats)
        # index k of the sorted row: index 0 is the point itself (distance 0)
        radii.append(np.sqrt(np.partition(d, k, axis=1)[:, k]))
    return np.concatenate(radii)


def in_manifold(query: np.ndarray, ref: np.ndarray, radii: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """bool [Nq]: whether each query [Nq, F] lies in some ball (ref[j], radii[j]) (ref [Nr, F])."""
    query, ref = np.asarray(query, np.float64), np.asarray(ref, np.float64)
    out = []
    for i in range(0, len(query), chunk):
        d = np.sqrt(_sq_distances(query[i:i + chunk], ref))
        out.append((d <= radii[None, :]).any(axis=1))
    return np.concatenate(out)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict[str, float]:
    """{"precision", "recall"} of generated features fake [Ng, F] against real features [Nr, F]."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"precision_recall needs real [Nr, F] and fake [Ng, F] of one F, got {real.shape} "
                         f"and {fake.shape}.")
    precision = in_manifold(fake, real, knn_radii(real, k)).mean()
    recall = in_manifold(real, fake, knn_radii(fake, k)).mean()
    return {"precision": float(precision), "recall": float(recall)}
