"""FID (Heusel et al. 2017) with the standard FID Inception-v3 features (jaxgen.eval.inception).

The network runs in fixed-size batches (the last one padded) so it is compiled once per image size;
the statistics and the distance are float64 NumPy on the host (jaxgen.eval.frechet).

    scorer = FIDScorer()                       # the converted weights from jaxgen's cache
    scorer.fid(real_images, fake_images)       # images [N, H, W, 1 or 3], uint8 or float in [0, 1]
"""
from __future__ import annotations

import numpy as np

from jaxgen.eval.frechet import feature_statistics, frechet_distance_from_statistics
from jaxgen.eval.inception import FEATURE_DIM, feature_fn, load_params


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
        n, b = x.shape[0], self.batch_size
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

    def fid(self, images_a: np.ndarray, images_b: np.ndarray) -> float:
        """FID between two image sets [N_a, H, W, C] and [N_b, H', W', C'] (sizes may differ)."""
        return frechet_distance_from_statistics(*self.statistics(images_a),
                                                *self.statistics(images_b))


def fid(images_a: np.ndarray, images_b: np.ndarray, params: dict | None = None,
        batch_size: int = 50) -> float:
    """FID between two image sets (see FIDScorer); builds a scorer for this one call."""
    return FIDScorer(params, batch_size).fid(images_a, images_b)
