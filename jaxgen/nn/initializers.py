"""Parameter initialisers shared by jaxgen's layers (convolutions, attention, text transformers)."""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn


def lecun_normal_flat(out_axis: int = -1) -> nn.initializers.Initializer:
    """lecun_normal (truncated normal, variance 1 / fan_in) drawn as a 1-D array, then reshaped.

    fan_in = size / shape[out_axis] (receptive field x inputs), as flax computes it. Why flat: with
    jax_threefry_partitionable (the default since JAX 0.5) XLA CPU compiles threefry over 4-D shapes
    very slowly (measured: 10 conv kernels take 30 s to compile in 4-D, 4 s in 1-D), which made a
    small U-Net's `init` take half a minute to compile.
    """
    def init(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        size = math.prod(shape)
        std = math.sqrt(1.0 / (size // shape[out_axis])) / 0.87962566103423978  # trunc. N(0,1) std
        return (jax.random.truncated_normal(key, -2.0, 2.0, (size,), dtype) * std).reshape(shape)

    return init
