"""CycleGAN (Zhu, Park, Isola & Efros 2017): unpaired image-to-image translation X <-> Y.

Read top to bottom:
  1. the networks: `ResnetGenerator` (G: X -> Y and F: Y -> X are two of these) and
     `PatchDiscriminator` (D_X, D_Y: one real/fake score per overlapping patch)
  2. the losses: least-squares adversarial loss (Mao et al. 2017, as in Zhu et al. Sec. 4),
     cycle-consistency (Eq. 2) and identity (Sec. 5.2) losses
  3. the history pool of generated images (Shrivastava et al. 2017; Zhu et al. Sec. 4)

The full objective (Zhu et al. Eq. 3, with the identity term of Sec. 5.2):
    L(G, F, D_X, D_Y) = L_GAN(G, D_Y, X, Y) + L_GAN(F, D_X, Y, X) + lambda L_cyc(G, F)
                        + lambda_id L_identity(G, F),
G, F minimise it, D_X, D_Y maximise the GAN terms. Images are floats in [-1, 1], [B, H, W, C].

Normalization: instance normalization, as in the paper (GroupNorm with one group per channel,
jaxgen.nn.GroupNorm): per example, so the networks compute the same function on any device split.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn import Conv, ConvTranspose, GroupNorm, UpsampleConv

Params = Any
Pool = dict  # {"images": float [P, H, W, C], "count": int32 []}


# ----------------------------------------------------------------------------------------------
# 1. Networks
# ----------------------------------------------------------------------------------------------


def instance_norm(channels: int) -> GroupNorm:
    """Instance normalization (Ulyanov et al. 2016) = GroupNorm with one channel per group."""
    return GroupNorm(num_groups=channels, epsilon=1e-5)


def _reflect_conv(h: jax.Array, features: int, kernel: int, use_bias: bool = False, dtype: Any = None) -> jax.Array:
    """A stride-1 conv with reflection padding (the paper's c7s1 layers: no zero border that the
    generator could use to locate itself). No bias by default: every such conv but the last is
    followed by instance norm, which removes a per-channel bias exactly - its gradient is pure
    round-off, which Adam would blow up into lr-sized random steps."""
    p = kernel // 2
    h = jnp.pad(h, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    return Conv(features, kernel, padding="VALID", use_bias=use_bias, dtype=dtype)(h)


class ResidualBlock(nn.Module):
    """x [B, H, W, C] -> x + IN(conv(ReLU(IN(conv(x))))) (Johnson et al. 2016, as in CycleGAN)."""

    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        h = nn.relu(instance_norm(c)(_reflect_conv(x, c, 3, dtype=self.dtype)))
        return x + instance_norm(c)(_reflect_conv(h, c, 3, dtype=self.dtype))


class ResnetGenerator(nn.Module):
    """Image [B, H, W, C] in [-1, 1] -> translated image [B, H, W, out_channels] in [-1, 1].

    Zhu et al. Appendix 7.2: c7s1-channels[0] (kernel `edge_kernel`), then a stride-2 3x3 conv to
    each further entry of `channels` (H / 2^(L-1)), `num_res_blocks` residual blocks, x2 up-sampling
    3x3 convs back through the channels, c7s1-out_channels with tanh. The paper's 256x256 network is
    channels (64, 128, 256), 9 blocks, edge_kernel 7, upsample 'transpose' (cyclegan_horse2zebra).
    upsample: 'nearest' (nearest x2, then a 3x3 conv: no checkerboard artefacts, Odena et al. 2016)
      or 'transpose' (the paper's "fractional-strided" 3x3 conv: PyTorch's ConvTranspose2d(3, stride
      2, padding 1, output_padding 1) of the reference code). The same parameters either way.
    dtype: activation dtype (None: float32; bfloat16 for mixed precision). Params stay float32,
    instance norm's statistics are float32, and the image is returned in float32.
    """

    channels: tuple[int, ...] = (32, 64)
    num_res_blocks: int = 3
    out_channels: int = 3
    edge_kernel: int = 7  # the c7s1 layers' kernel (7 in the paper; 5 is plenty at 32x32)
    upsample: str = "nearest"
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, dt = self.edge_kernel, self.dtype
        h = nn.relu(instance_norm(self.channels[0])(_reflect_conv(x, self.channels[0], k, dtype=dt)))
        for c in self.channels[1:]:
            h = nn.relu(instance_norm(c)(Conv(c, 3, strides=2, use_bias=False, dtype=dt)(h)))
        for _ in range(self.num_res_blocks):
            h = ResidualBlock(dtype=dt)(h)
        for c in reversed(self.channels[:-1]):
            if self.upsample == "transpose":
                up = ConvTranspose(c, 3, strides=2, padding=1, output_padding=1, use_bias=False, dtype=dt)
            else:
                up = UpsampleConv(c, factor=2, method="nearest", use_bias=False, dtype=dt)
            h = nn.relu(instance_norm(c)(up(h)))
        return jnp.tanh(_reflect_conv(h, self.out_channels, k, use_bias=True, dtype=dt).astype(jnp.float32))


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): image [B, H, W, C] -> scores [B, H', W'], one per patch.

    4x4 stride-2 convs to each entry of `channels` (instance norm on all but the first, LeakyReLU
    0.2), then a stride-1 4x4 conv to 1 channel. Scores are raw (the least-squares loss wants
    D(real) = 1, D(fake) = 0, no sigmoid). dtype: activation dtype (None: float32; bfloat16 for
    mixed precision); the scores are returned in float32 (the least-squares losses square them).
    """

    channels: tuple[int, ...] = (32, 64, 128)
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for i, c in enumerate(self.channels):
            # no bias where instance norm follows (see _reflect_conv)
            h = Conv(c, 4, strides=2 if i < len(self.channels) - 1 else 1, use_bias=i == 0, dtype=self.dtype)(h)
            h = nn.leaky_relu(h if i == 0 else instance_norm(c)(h), 0.2)
        return Conv(1, 4, dtype=self.dtype)(h)[..., 0].astype(jnp.float32)


# ----------------------------------------------------------------------------------------------
# 2. Losses
# ----------------------------------------------------------------------------------------------


def lsgan_discriminator_loss(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
    """0.5 [E (D(y) - 1)^2 + E D(G(x))^2]: the least-squares GAN loss of a discriminator (Zhu et al.
    Sec. 4, which halves D's objective to slow D relative to G). Scores of any shape [B, ...]."""
    return 0.5 * (jnp.mean(jnp.square(real_scores - 1.0)) + jnp.mean(jnp.square(fake_scores)))


def lsgan_generator_loss(fake_scores: jax.Array) -> jax.Array:
    """E (D(G(x)) - 1)^2: the generator's least-squares loss (Zhu et al. Sec. 4)."""
    return jnp.mean(jnp.square(fake_scores - 1.0))


def cycle_loss(x: jax.Array, reconstructed: jax.Array) -> jax.Array:
    """E ||F(G(x)) - x||_1, per pixel mean (Zhu et al. Eq. 2, one of its two directions)."""
    return jnp.mean(jnp.abs(reconstructed - x))


def identity_loss(y: jax.Array, mapped: jax.Array) -> jax.Array:
    """E ||G(y) - y||_1, per pixel mean (Zhu et al. Sec. 5.2; Taigman et al. 2017): G should leave
    an image that is already in its target domain unchanged."""
    return jnp.mean(jnp.abs(mapped - y))


# ----------------------------------------------------------------------------------------------
# 3. History pool of generated images
# ----------------------------------------------------------------------------------------------


def pool_init(size: int, image_shape: tuple[int, ...]) -> Pool:
    """An empty pool of `size` images [H, W, C] (count = how many slots are filled)."""
    return {"images": jnp.zeros((size,) + tuple(image_shape), jnp.float32), "count": jnp.zeros((), jnp.int32)}


def pool_query(pool: Pool, images: jax.Array, rng: jax.Array) -> tuple[Pool, jax.Array]:
    """Passes generated images [N, H, W, C] through the history pool: (new pool, images for D [N, ...]).

    Image i, in order (as the reference implementation does, one image at a time):
      * while the pool is not full: store it in the next free slot, and return it;
      * otherwise, with probability 1/2: return a uniformly chosen stored image and store image i in
        its place; else return image i and leave the pool unchanged.
    So D sees a mix of current and up to `size`-updates-old generator outputs, which damps the
    oscillation of the two players (Shrivastava et al. 2017). The random draws of image i come from
    fold_in(rng, i): the result is a pure function of (pool, images, rng). A pool of size 0 returns
    the images unchanged.
    """
    size = pool["images"].shape[0]
    if size == 0:
        return pool, images

    def one(p, inputs):
        i, image = inputs
        coin_key, slot_key = jax.random.split(jax.random.fold_in(rng, i))
        filling = p["count"] < size
        swap = jax.random.uniform(coin_key) < 0.5
        slot = jnp.where(filling, p["count"], jax.random.randint(slot_key, (), 0, size))
        old = p["images"][slot]
        store = filling | swap
        out = jnp.where(filling | ~swap, image, old)
        stored = jnp.where(store, image, old)
        p = {"images": p["images"].at[slot].set(stored), "count": jnp.minimum(p["count"] + 1, size)}
        return p, out

    pool, out = jax.lax.scan(one, pool, (jnp.arange(images.shape[0]), images.astype(jnp.float32)))
    return pool, out.astype(images.dtype)
