"""FID (Heusel et al. 2017) with the standard FID Inception-v3 features (jaxgen.eval.inception).

The network runs in fixed-size batches (the last one padded) so it is compiled once per image size;
the statistics and the distance are float64 NumPy on the host (jaxgen.eval.frechet).

    scorer = FIDScorer()                       # the converted weights from jaxgen's cache
    scorer.fid(real_images, fake_images)       # images [N, H, W, 1 or 3], uint8 or float in [0, 1]
    scorer.compare(fake_images, real_images)   # {"fid", "kid", "precision", "recall"} in one pass

KID (Binkowski et al. 2018) is the unbiased squared MMD of the same features under the cubic
polynomial kernel (x.y / d + 1)^3, averaged over random subsets as the reference implementations do;
unlike FID it has no bias in the number of images, so small sets compare fairly.
"""
from __future__ import annotations

import numpy as np

from jaxgen.eval.frechet import feature_statistics, frechet_distance
from jaxgen.eval.inception import FEATURE_DIM, feature_fn, load_params
from jaxgen.eval.precision_recall import precision_recall


def as_unit_images(images: np.ndarray) -> np.ndarray:
    """uint8 images (0..255) or float images in [0, 1], [N, H, W, C] -> float32 in [0, 1].

    uint8 is divided by 255, as the reference's image loaders do (ToTensor)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"FID takes images [N, H, W, 1 or 3], got shape {images.shape}.")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


class FIDScorer:
    """Pool3 features, their statistics and FID; one jitted network for every call.

    params: FIDInceptionV3 params (default: `load_params()`, the converted cache, which raises
    FIDWeightsError with what to do when absent). batch_size: images per network call."""

    def __init__(self, params: dict | None = None, batch_size: int = 50):
        self.batch_size = int(batch_size)
        self._features = feature_fn(load_params() if params is None else params)

    def features(self, images: np.ndarray) -> np.ndarray:
        """Images [N, H, W, 1 or 3] -> pool3 features float32 [N, 2048]."""
        x = as_unit_images(images)
        n = x.shape[0]
        b = min(self.batch_size, n)  # a small set is not padded up to a full batch of 299x299 images
        out = np.empty((n, FEATURE_DIM), np.float32)
        for start in range(0, n, b):
            chunk = x[start:start + b]
            if chunk.shape[0] < b:   # pad to the batch size: one compiled shape for all chunks
                chunk = np.concatenate([chunk, np.zeros((b - chunk.shape[0],) + chunk.shape[1:],
                                                        np.float32)])
            out[start:start + b] = np.asarray(self._features(chunk))[:min(b, n - start)]
        return out

    def statistics(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Images [N, ...] (N >= 2) -> (mean [2048], covariance [2048, 2048]), float64."""
        return feature_statistics(self.features(images))

    def compare(self, generated: np.ndarray, real: np.ndarray, k: int = 3) -> dict[str, float]:
        """{"fid", "kid", "precision", "recall"} of generated images against real ones, each set's
        features computed once (precision / recall: Kynkaanniemi et al.'s k-NN manifolds, k = 3)."""
        return compare_features(self.features(generated), self.features(real), k)

    def fid(self, images_a: np.ndarray, images_b: np.ndarray) -> float:
        """FID between two image sets [N_a, H, W, C] and [N_b, H', W', C'] (sizes may differ)."""
        return frechet_distance(self.features(images_a), self.features(images_b))


def compare_features(fake: np.ndarray, ref: np.ndarray, k: int = 3) -> dict[str, float]:
    """FIDScorer.compare on features already computed ([N, 2048] each): a set scored against several
    references, or a reference against several sets, runs the network once per set."""
    return {"fid": frechet_distance(fake, ref),
            "kid": kid(fake, ref), **precision_recall(ref, fake, k)}


def fid(images_a: np.ndarray, images_b: np.ndarray, params: dict | None = None,
        batch_size: int = 50) -> float:
    """FID between two image sets (see FIDScorer); builds a scorer for this one call."""
    return FIDScorer(params, batch_size).fid(images_a, images_b)


def kid(features_a: np.ndarray, features_b: np.ndarray, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> float:
    """KID between features [N_a, D] and [N_b, D]: the unbiased MMD^2 under the kernel
    k(x, y) = (x.y / D + 1)^3, averaged over `num_subsets` random subsets of min(subset_size, N_a,
    N_b) rows of each set (drawn without replacement, from `seed`). float64 on the host."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"KID needs features [N, D] of one D and at least two rows each, got {a.shape} and "
                         f"{b.shape}.")
    m, d = min(subset_size, len(a), len(b)), a.shape[1]
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off_diagonal = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        total += off_diagonal - 2 * kxy.mean()
    return float(total / num_subsets)
