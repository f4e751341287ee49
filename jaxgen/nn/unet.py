"""U-Net (Ronneberger et al. 2015) with the additions diffusion models made standard.

    x [B,H,W,C] --stem conv--> level 0 --down--> level 1 --down--> ... level L-1 (bottleneck)
                                  |                 |                     |
                               skip 0            skip 1                  up
                                  |                 |                     v
    out [B,H,W,out] <--conv-- level 0 <---up--- level 1 <--------------- ...

Each level i runs `num_res_blocks` residual blocks at `channels[i]` (GroupNorm, SiLU, 3x3 conv,
as in Ho et al. 2020), with self-attention after each block if i is in `attention_levels` and, when
a `context` is given, cross-attention after each block if i is in `cross_attention_levels` (default:
the same levels; text must reach the high-resolution levels that draw the objects, where
self-attention over every pixel would cost too much). The encoder keeps each level's output as a skip; the
decoder up-samples (transposed conv, nearest + conv or bilinear + conv), concatenates the skip and
runs the same blocks. The optional embedding (sinusoidal time + MLP, plus a projected condition
vector) is added inside every residual block (DDPM / improved-DDPM style).
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxgen.nn.attention import SpatialAttention, group_norm
from jaxgen.nn.conv import Conv
from jaxgen.nn.conv_transpose import ConvTranspose
from jaxgen.nn.initializers import lecun_normal_flat
from jaxgen.nn.upsample import UpsampleConv

UPSAMPLE_MODES = ("transpose", "nearest", "bilinear")
_init = lecun_normal_flat()  # see lecun_normal_flat: flax's default compiles slowly on CPU


def sinusoidal_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """[B] -> [B, dim]: (sin(t w_i), cos(t w_i)), w_i = max_period^(-i / (dim/2)) (Vaswani eq. 5).

    t is in diffusion steps (e.g. 0..999); pass continuous time in [0, 1] scaled by ~1000.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim - 2 * half)))


class ResBlock(nn.Module):
    """x [B,H,W,Cin], emb [B,E] -> [B,H,W,features]: GN-SiLU-conv +proj(emb), GN-SiLU-drop-conv."""

    features: int
    dropout: float = 0.0
    norm_groups: int = 32
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array | None, train: bool) -> jax.Array:
        h = nn.silu(group_norm(x.shape[-1], self.norm_groups)(x))
        h = Conv(self.features, 3, dtype=self.dtype)(h)
        if emb is not None:  # per-channel shift from the time / condition embedding
            e = nn.Dense(self.features, dtype=self.dtype, kernel_init=_init)(nn.silu(emb))
            h = h + e[:, None, None, :]
        h = nn.silu(group_norm(self.features, self.norm_groups)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = Conv(self.features, 3, dtype=self.dtype)(h)
        skip = x if x.shape[-1] == self.features else Conv(self.features, 1, dtype=self.dtype)(x)
        return skip + h


class UNet(nn.Module):
    """U-Net: x [B,H,W,C] -> [B,H,W,out_channels]; H and W divisible by 2^(len(channels)-1).

    Optional inputs (initialise with the same kinds of inputs you will apply with, since each one
    adds parameters): t [B] time steps (sinusoidal + MLP embedding), cond [B,D] a condition vector
    (class one-hot, CLIP embedding, ...) projected and added to the embedding, context [B,L,D] text
    tokens for cross-attention at `cross_attention_levels` with context_mask [B,L] (True = real token).
    `train` enables dropout (needs a 'dropout' rng).
    """

    out_channels: int
    channels: Sequence[int] = (32, 64, 128)
    num_res_blocks: int = 2
    attention_levels: Sequence[int] = ()
    cross_attention_levels: Sequence[int] | None = None  # None: attention_levels
    num_heads: int = 4
    head_dim: int | None = None
    upsample: str = "nearest"
    dropout: float = 0.0
    norm_groups: int = 32
    emb_dim: int | None = None  # default 4 * channels[0]
    dtype: jnp.dtype | None = None

    def _attend(self, h: jax.Array, level: int, tag: str, context: jax.Array | None,
                context_mask: jax.Array | None) -> jax.Array:
        cross_levels = self.attention_levels if self.cross_attention_levels is None \
            else self.cross_attention_levels
        kw = dict(num_heads=self.num_heads, head_dim=self.head_dim, norm_groups=self.norm_groups,
                  dtype=self.dtype)
        if level in self.attention_levels:
            h = SpatialAttention(**kw, name=f"{tag}_attn")(h)
        if context is not None and level in cross_levels:
            h = SpatialAttention(**kw, name=f"{tag}_xattn")(h, context, context_mask)
        return h

    def _upsampler(self, features: int, name: str) -> nn.Module:
        if self.upsample == "transpose":  # 4x4 kernel: every output pixel gets 2x2 taps, k % s == 0
            return ConvTranspose(features, 4, 2, "SAME", dtype=self.dtype, name=name)
        return UpsampleConv(features, 2, self.upsample, dtype=self.dtype, name=name)

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array | None = None, cond: jax.Array | None = None,
                 context: jax.Array | None = None, context_mask: jax.Array | None = None,
                 train: bool = False) -> jax.Array:
        levels = len(self.channels)
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, not {self.upsample!r}.")
        if x.ndim != 4 or x.shape[1] % 2 ** (levels - 1) or x.shape[2] % 2 ** (levels - 1):
            raise ValueError(f"UNet with {levels} levels needs x [B,H,W,C] with H and W divisible "
                             f"by {2 ** (levels - 1)}; got {x.shape}.")

        # Embedding: e = MLP(sinusoid(t)) + Dense(cond), shared by every residual block.
        emb_dim = self.emb_dim or 4 * self.channels[0]
        emb = None
        if t is not None:
            e = sinusoidal_embedding(t, self.channels[0])
            e = nn.Dense(emb_dim, kernel_init=_init, name="time_mlp_0")(e)
            emb = nn.Dense(emb_dim, kernel_init=_init, name="time_mlp_1")(nn.silu(e))
        if cond is not None:
            c = nn.Dense(emb_dim, kernel_init=_init, name="cond_proj")(cond.astype(jnp.float32))
            emb = c if emb is None else emb + c

        block = lambda f, name: ResBlock(f, self.dropout, self.norm_groups, self.dtype, name=name)  # noqa: E731
        h = Conv(self.channels[0], 3, dtype=self.dtype, name="stem")(x)
        skips = []
        for i, ch in enumerate(self.channels):  # encoder; the last level is the bottleneck
            for j in range(self.num_res_blocks):
                h = block(ch, f"enc{i}_res{j}")(h, emb, train)
                h = self._attend(h, i, f"enc{i}_{j}", context, context_mask)
            if i < levels - 1:
                skips.append(h)
                h = Conv(ch, 3, strides=2, dtype=self.dtype, name=f"down{i}")(h)
        for i in reversed(range(levels - 1)):  # decoder
            h = self._upsampler(self.channels[i], f"up{i}")(h)
            h = jnp.concatenate([h, skips[i]], axis=-1)
            for j in range(self.num_res_blocks):
                h = block(self.channels[i], f"dec{i}_res{j}")(h, emb, train)
                h = self._attend(h, i, f"dec{i}_{j}", context, context_mask)
        h = nn.silu(group_norm(h.shape[-1], self.norm_groups, name="out_norm")(h))
        return Conv(self.out_channels, 3, dtype=self.dtype, name="out_conv")(h)
