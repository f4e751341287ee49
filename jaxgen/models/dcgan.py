"""The DCGAN networks of Radford, Metz & Chintala (2016), "Unsupervised Representation Learning with
Deep Convolutional Generative Adversarial Networks" (arXiv:1511.06434), sec. 3-4 and Figure 1.

Their guidelines, as built here (details from the authors' released code, github.com/Newmu/dcgan_code,
faces/train_uncond_dcgan.py):
  * no pooling: the generator up-samples with fractionally-strided (transposed) convolutions, the
    discriminator down-samples with strided convolutions (5x5, stride 2, in their code);
  * batch norm in both networks, except on the generator's output layer and the discriminator's
    input layer;
  * no fully connected hidden layers: the generator's first layer projects z (100-d, uniform in
    [-1, 1]) with a matrix multiply, batch-normalises each of its s * s * channels[0] units (their
    code normalises the projection before the reshape) and reshapes it to [s, s, channels[0]]; the
    discriminator's last conv map is flattened into one sigmoid logit;
  * ReLU in the generator (tanh on the output), LeakyReLU(0.2) in the discriminator;
  * no biases anywhere: batch norm's shift stands in for them, and their code gives none to the
    layers without batch norm either (G's output, D's first conv, D's logit);
  * weights initialised N(0, 0.02), batch-norm scales N(1, 0.02) and shifts 0.
Figure 1's 64x64 generator: z -> 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x3, i.e.
g_channels (1024, 512, 256, 128); the discriminator mirrors it, d_channels (128, 256, 512, 1024).

Batch norm, and why it looks like this. DCGAN normalises with the statistics of the batch it is
given (the real batch and the fake batch each on its own, as D sees them in two passes) and keeps no
running averages: their code samples with batch statistics too (128 at a time). jaxgen does the same, so the state
holds no batch-norm statistics. Under data parallelism the statistics are those of the *global*
batch: `axis_name` (the train step passes 'data') averages the per-device moments over the devices,
so a run on 8 devices computes what one device computes on the whole batch. Outside a data-parallel
step (sampling, evaluation) `axis_name` is None and the statistics are those of the batch at hand.
The examples of a batch are therefore coupled: a per-example penalty such as R1 is not defined for
this discriminator, and the task refuses it.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn import Conv, ConvTranspose

_init = nn.initializers.normal(0.02)


def _scale_init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


class BatchNorm(nn.Module):
    """x [N, ..., C] -> (x - mean) / sqrt(var + eps) * scale + bias with the mean and (biased)
    variance of each channel over every axis but the last, and over the devices of `axis_name`
    when given (a pmean of the first two moments: equal per-device batches give the global batch's
    statistics). Moments in float32; the output in x's dtype."""

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, axis_name: str | None = None) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", _scale_init, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        h = x.astype(jnp.float32)
        axes = tuple(range(h.ndim - 1))
        moments = jnp.stack([jnp.mean(h, axes), jnp.mean(h * h, axes)])
        if axis_name is not None:
            moments = jax.lax.pmean(moments, axis_name)
        mean, var = moments[0], jnp.maximum(moments[1] - moments[0] ** 2, 0.0)
        out = (h - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
        return out.astype(x.dtype)


class DCGANGenerator(nn.Module):
    """z [B, latent_dim] -> images [B, H, W, C] in [-1, 1].

    Project z to s * s * channels[0] units (s = H / 2^len(channels)), batch norm and ReLU, reshape
    to [s, s, channels[0]], then one 2x transposed convolution per further entry of `channels` and a
    last one to C channels: len(channels) up-samplings. Hidden layers: batch norm, then ReLU; the
    output: tanh (float32).
    """

    image_shape: tuple[int, int, int]
    latent_dim: int = 100
    channels: tuple[int, ...] = (1024, 512, 256, 128)
    kernel_size: int = 5
    dtype: Any = None

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None = None, axis_name: str | None = None) -> jax.Array:
        height, width, chans = self.image_shape
        scale = 2 ** len(self.channels)
        s_h, s_w, c0 = height // scale, width // scale, self.channels[0]
        # No biases (see the module docstring): before a batch norm one would be subtracted again
        # with the mean.
        h = nn.Dense(s_h * s_w * c0, use_bias=False, kernel_init=_init, dtype=self.dtype)(z)
        h = nn.relu(BatchNorm()(h, axis_name)).reshape(z.shape[0], s_h, s_w, c0)
        for c in self.channels[1:]:
            h = ConvTranspose(c, self.kernel_size, strides=2, use_bias=False, kernel_init=_init, dtype=self.dtype)(h)
            h = nn.relu(BatchNorm()(h, axis_name))
        h = ConvTranspose(chans, self.kernel_size, strides=2, use_bias=False, kernel_init=_init, dtype=self.dtype)(h)
        return jnp.tanh(h.astype(jnp.float32))


class DCGANDiscriminator(nn.Module):
    """images [B, H, W, C] in [-1, 1] -> logits [B] (float32).

    One stride-2 convolution per entry of `channels` (the first without batch norm), each followed
    by LeakyReLU(0.2); the last map flattened into one linear logit. No biases.
    """

    channels: tuple[int, ...] = (128, 256, 512, 1024)
    kernel_size: int = 5
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None, axis_name: str | None = None) -> jax.Array:
        h = x
        for i, c in enumerate(self.channels):
            h = Conv(c, self.kernel_size, strides=2, use_bias=False, kernel_init=_init, dtype=self.dtype)(h)
            if i:
                h = BatchNorm()(h, axis_name)
            h = nn.leaky_relu(h, 0.2)
        logit = nn.Dense(1, use_bias=False, kernel_init=_init, dtype=self.dtype)(h.reshape(h.shape[0], -1))
        return logit[:, 0].astype(jnp.float32)


def uniform_latents(keys: jax.Array, latent_dim: int) -> jax.Array:
    """Per-example z ~ U(-1, 1)^latent_dim [B, latent_dim] from keys [B, 2] (DCGAN's noise)."""
    return jax.vmap(lambda k: jax.random.uniform(k, (latent_dim,), minval=-1.0, maxval=1.0))(keys)
