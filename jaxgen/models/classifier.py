"""A small CNN classifier for the digits, whose penultimate features are the Frechet-distance
feature space of jaxgen.eval.frechet (an FID for 8x8 / 16x16 digits, in the spirit of Heusel et al.
2017, with this network in place of Inception).

Input: float images [B, H, W, C] in [0, 1] (what the samplers return), H, W >= 8 (8x8 native digits,
16x16 resized ones), any C. Output: logits [B, num_classes].
Training lives in jaxgen.tasks; tests/models/test_classifier.py trains it in a few seconds.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class DigitsClassifier(nn.Module):
    """Conv net: [3x3 conv, 3x3 conv, 2x2 average pool] per stage until 4x4 spatial, then
    flatten -> dense(feature_dim) -> dropout -> dense(num_classes).

    The number of stages follows the input size (8x8: one, 16x16: two), so one definition serves
    both resolutions; the feature space is the `feature_dim` activations after the first dense layer
    (before dropout), which `__call__(..., features=True)` and `features` return.

    Attributes:
      num_classes: number of labels (10 digits).
      width: channels of the first stage; each further stage doubles them.
      feature_dim: size of the penultimate (feature) layer.
      dropout: dropout rate on the features during training (needs a 'dropout' rng).
      dtype: activation dtype of the convolutions and dense layers (None: float32; bfloat16 for
        mixed precision). Params stay float32; logits and features are returned in float32.
    """

    num_classes: int = 10
    width: int = 32
    feature_dim: int = 128
    dropout: float = 0.3
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: bool = False) -> jax.Array:
        """x [B, H, W, C] in [0, 1] -> logits [B, num_classes] (or features [B, feature_dim])."""
        if x.ndim != 4 or min(x.shape[1], x.shape[2]) < 8:
            raise ValueError(f"DigitsClassifier expects images [B, H, W, C] with H, W >= 8, got "
                             f"shape {x.shape}.")
        h = x.astype(jnp.float32) * 2.0 - 1.0   # centre the [0, 1] input, as the VAE does
        width = self.width
        while min(h.shape[1], h.shape[2]) > 4:
            h = nn.relu(nn.Conv(width, (3, 3), padding="SAME", dtype=self.dtype)(h))
            h = nn.relu(nn.Conv(width, (3, 3), padding="SAME", dtype=self.dtype)(h))
            h = nn.avg_pool(h, (2, 2), strides=(2, 2))
            width *= 2
        h = h.reshape(h.shape[0], -1)
        feats = nn.relu(nn.Dense(self.feature_dim, dtype=self.dtype)(h))
        if features:  # float32: the Frechet distance takes means and covariances of these
            return feats.astype(jnp.float32)
        h = nn.Dropout(self.dropout, deterministic=not train)(feats)
        return nn.Dense(self.num_classes, dtype=self.dtype)(h).astype(jnp.float32)  # softmax in float32

    def features(self, x: jax.Array) -> jax.Array:
        """Penultimate features [B, feature_dim] of images x [B, H, W, C] in [0, 1] (eval mode)."""
        return self(x, train=False, features=True)
