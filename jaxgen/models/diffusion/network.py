"""The denoising network: the jaxgen U-Net with the conditions a diffusion model takes.

cond is None (unconditional) or a dict with any of
  "label":        int [B] class labels; the value num_classes is the null class (no condition),
  "context":      float [B, L, D] text-token embeddings, attended to by cross-attention,
  "context_mask": bool [B, L], True for real tokens; a row with no True token is the null text,
                  which attends to a learned null token instead,
  "pooled":       float [B, D] a sentence embedding, added to the time embedding (Imagen sec. 2.5),
  "low_res":      float [B, h, w, C'] a lower-resolution image in [-1, 1] (super-resolution stage of a
                  cascade): up-sampled bilinearly to x's size and concatenated to x as input channels,
  "noise_level":  int [B] the schedule step to which "low_res" was noised (noise conditioning
                  augmentation, Ho et al. 2021 "Cascaded Diffusion Models" sec. 3.2; Imagen sec. 2.4),
                  embedded like the time step and added to the embedding.
Classifier-free guidance trains one network for both: the task replaces a condition by its null
value with probability p. "low_res" and "noise_level" are not dropped: they are the input of a
super-resolution stage, not a condition to guide by (Imagen guides its SR stages by the text only).

`Denoiser.architecture` picks the U-Net: 'unet' (the default) is jaxgen.nn.unet.UNet, one skip per
level; 'ddpm' is `DDPMUNet`, the network of Ho et al. (2020) exactly (a skip per block, a middle
block), whose CIFAR-10 size has the paper's 35.7 M parameters (configs/ddpm_cifar10.py).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxgen.nn.attention import SpatialAttention, group_norm
from jaxgen.nn.conv import Conv
from jaxgen.nn.initializers import lecun_normal_flat
from jaxgen.nn.text import TokenTransformer
from jaxgen.nn.unet import ResBlock, UNet, sinusoidal_embedding
from jaxgen.nn.upsample import UpsampleConv

ARCHITECTURES = ("unet", "ddpm")
_init = lecun_normal_flat()  # as jaxgen.nn.unet: flax's default initializer compiles slowly on CPU

# Entries a null condition keeps as they are: the super-resolution stage's input image and its level.
KEPT_BY_NULL = ("low_res", "noise_level")


def null_condition(cond: dict[str, jax.Array], num_classes: int) -> dict[str, jax.Array]:
    """The 'no condition' value of a batch of conditions (same shapes)."""
    # The null label is the extra class; a text without any real token (mask all False) is the null
    # text, whose embeddings are then ignored (zeros keep the shapes).
    def null(k, v):
        if k in KEPT_BY_NULL:
            return v
        return jnp.full_like(v, num_classes) if k == "label" else jnp.zeros_like(v)
    return {k: null(k, v) for k, v in cond.items()}


def drop_condition(cond: dict[str, jax.Array], drop: jax.Array, num_classes: int) -> dict[str, jax.Array]:
    """Replaces the condition of the examples where drop [B] is True by the null condition."""
    null = null_condition(cond, num_classes)
    pick = lambda c, n: jnp.where(drop.reshape((-1,) + (1,) * (c.ndim - 1)), n, c)  # noqa: E731
    return {k: pick(cond[k], null[k]) for k in cond}


def text_context(module: nn.Module, cond: dict[str, jax.Array], context_dim: int, text_layers: int,
                 text_width: int, num_heads: int, dtype: Any = None) -> tuple[jax.Array, jax.Array]:
    """The keys and values of a denoiser's cross-attention, made inside `module`'s compact call from
    cond["context"] [B, L, context_dim] and cond["context_mask"] [B, L]: (context [B, 1 + L, D],
    mask [B, 1 + L]), D = context_dim, or text_width after a trainable TokenTransformer of
    text_layers blocks (0: none; the tokens as the frozen encoder gives them)."""
    context, mask = cond["context"].astype(jnp.float32), cond["context_mask"].astype(bool)
    if text_layers:
        context = TokenTransformer(text_width, text_layers, num_heads, dtype=dtype,
                                   name="text_transformer")(context, mask)
    width = context.shape[-1]
    # Prepend a learned null token that only rows without any real token attend to, so that dropped
    # (null) text has a trainable meaning and attention never sees an empty row.
    null = module.param("null_context", nn.initializers.normal(0.02), (1, 1, width))
    context = jnp.concatenate([jnp.broadcast_to(null, (context.shape[0], 1, width)), context], axis=1)
    return context, jnp.concatenate([~mask.any(axis=1, keepdims=True), mask], axis=1)


class Denoiser(nn.Module):
    """x [B,H,W,C], t [B] (the int timestep, or model.timesteps * t for a flow model), cond (see
    module docstring) -> output [B,H,W,C] (eps, x0 or v; the velocity for a flow model).

    dtype: the U-Net's activation dtype (None: float32; bfloat16 for mixed precision). Params stay
    float32, the time / condition embeddings are computed in float32, and the output is float32,
    so the losses and the samplers' update math never see bfloat16.
    """

    out_channels: int
    channels: Sequence[int] = (32, 64)
    num_res_blocks: int = 2
    attention_levels: Sequence[int] = ()
    cross_attention_levels: Sequence[int] | None = None  # None: attention_levels
    num_heads: int = 4
    upsample: str = "nearest"
    dropout: float = 0.0
    norm_groups: int = 8
    num_classes: int = 0       # > 0: class-conditional, with one extra (null) embedding
    context_dim: int = 0       # > 0: cross-attention to text tokens of this width
    text_layers: int = 0       # > 0: a trainable TokenTransformer of this depth over the tokens
    text_width: int = 128      # its width (the width cross-attention then reads)
    dtype: Any = None
    architecture: str = "unet"  # see ARCHITECTURES and the module docstring

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, cond: dict[str, jax.Array] | None = None,
                 train: bool = False) -> jax.Array:
        cond = cond or {}
        emb_dim = 4 * self.channels[0]
        vec = None
        if self.num_classes:
            vec = nn.Embed(self.num_classes + 1, emb_dim, name="label_embedding")(cond["label"])
        context = mask = None
        if self.context_dim:
            context, mask = text_context(self, cond, self.context_dim, self.text_layers, self.text_width,
                                         self.num_heads, self.dtype)
            if "pooled" in cond:
                pooled = nn.Dense(emb_dim, name="pooled_proj")(cond["pooled"].astype(jnp.float32))
                vec = pooled if vec is None else vec + pooled
        if "low_res" in cond:  # super-resolution: the up-sampled low-res image as extra input channels
            low = cond["low_res"].astype(x.dtype)
            if low.shape[1:3] != x.shape[1:3]:
                low = jax.image.resize(low, x.shape[:3] + low.shape[3:], "bilinear", antialias=False)
            x = jnp.concatenate([x, low], axis=-1)
        if "noise_level" in cond:  # the augmentation level, embedded as the time step is (sinusoid + MLP)
            e = sinusoidal_embedding(cond["noise_level"], self.channels[0])
            e = nn.Dense(emb_dim, name="noise_level_mlp_0")(e)
            e = nn.Dense(emb_dim, name="noise_level_mlp_1")(nn.silu(e))
            vec = e if vec is None else vec + e
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, not {self.architecture!r}.")
        if self.architecture == "ddpm":
            if context is not None:
                raise ValueError("the 'ddpm' architecture has no cross-attention; use 'unet' for text.")
            unet = DDPMUNet(out_channels=self.out_channels, channels=tuple(self.channels),
                            num_res_blocks=self.num_res_blocks, attention_levels=tuple(self.attention_levels),
                            num_heads=self.num_heads, dropout=self.dropout, norm_groups=self.norm_groups,
                            dtype=self.dtype, name="unet")
            return unet(x, t, vec, train).astype(jnp.float32)
        unet = UNet(out_channels=self.out_channels, channels=tuple(self.channels),
                    num_res_blocks=self.num_res_blocks, attention_levels=tuple(self.attention_levels),
                    cross_attention_levels=(None if self.cross_attention_levels is None
                                            else tuple(self.cross_attention_levels)),
                    num_heads=self.num_heads, upsample=self.upsample, dropout=self.dropout,
                    norm_groups=self.norm_groups, emb_dim=emb_dim, dtype=self.dtype, name="unet")
        return unet(x, t, vec, context, mask, train).astype(jnp.float32)


class DDPMUNet(nn.Module):
    """The U-Net of Ho et al. (2020), appendix B (their diffusion_tf/models/unet.py, a PixelCNN++
    backbone): x [B,H,W,C], t [B], cond [B,E] or None -> [B,H,W,out_channels].

        stem conv -> per level i: num_res_blocks x (ResBlock(channels[i]) [+ self-attention]), then
        a stride-2 conv (not after the last); every one of these outputs is a skip.
        middle: ResBlock, self-attention, ResBlock at the lowest resolution.
        per level i, reversed: (num_res_blocks + 1) x (concat a skip, ResBlock(channels[i]) [+ attn]),
        then nearest up-sampling + conv (not after level 0); GroupNorm, SiLU, conv out.

    It differs from jaxgen.nn.unet.UNet (one skip per level, no middle block, num_res_blocks decoder
    blocks) in exactly that wiring; the blocks are the same (ResBlock: GN-SiLU-conv + Dense(emb),
    GN-SiLU-dropout-conv, 1x1 shortcut; SpatialAttention: GN, q/k/v/out projections), so Ho et al.'s
    CIFAR-10 setting (channels 128 x (1, 2, 2, 2), 2 blocks, attention at 16x16) has their 35.7 M
    parameters. The time embedding is sinusoid(channels[0]) -> Dense(4 ch) -> SiLU -> Dense(4 ch);
    cond (a label embedding of width 4 ch, see Denoiser) is projected and added to it.
    """

    out_channels: int
    channels: Sequence[int] = (128, 256, 256, 256)
    num_res_blocks: int = 2
    attention_levels: Sequence[int] = (1,)
    num_heads: int = 1
    dropout: float = 0.0
    norm_groups: int = 32
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, cond: jax.Array | None = None,
                 train: bool = False) -> jax.Array:
        levels = len(self.channels)
        if x.ndim != 4 or x.shape[1] % 2 ** (levels - 1) or x.shape[2] % 2 ** (levels - 1):
            raise ValueError(f"DDPMUNet with {levels} levels needs x [B,H,W,C] with H and W divisible "
                             f"by {2 ** (levels - 1)}; got {x.shape}.")
        emb_dim = 4 * self.channels[0]
        e = sinusoidal_embedding(t, self.channels[0])
        e = nn.Dense(emb_dim, kernel_init=_init, name="time_mlp_0")(e)
        emb = nn.Dense(emb_dim, kernel_init=_init, name="time_mlp_1")(nn.silu(e))
        if cond is not None:
            emb = emb + nn.Dense(emb_dim, kernel_init=_init, name="cond_proj")(cond.astype(jnp.float32))

        def block(h, ch, name):
            return ResBlock(ch, self.dropout, self.norm_groups, self.dtype, name=name)(h, emb, train)

        def attend(h, name):
            return SpatialAttention(num_heads=self.num_heads, norm_groups=self.norm_groups, dtype=self.dtype,
                                    name=name)(h)

        h = Conv(self.channels[0], 3, dtype=self.dtype, name="stem")(x)
        skips = [h]
        for i, ch in enumerate(self.channels):  # encoder
            for j in range(self.num_res_blocks):
                h = block(h, ch, f"enc{i}_res{j}")
                if i in self.attention_levels:
                    h = attend(h, f"enc{i}_{j}_attn")
                skips.append(h)
            if i < levels - 1:
                h = Conv(ch, 3, strides=2, dtype=self.dtype, name=f"down{i}")(h)
                skips.append(h)
        h = block(h, self.channels[-1], "mid_res0")
        h = attend(h, "mid_attn")
        h = block(h, self.channels[-1], "mid_res1")
        for i in reversed(range(levels)):  # decoder
            for j in range(self.num_res_blocks + 1):
                h = block(jnp.concatenate([h, skips.pop()], axis=-1), self.channels[i], f"dec{i}_res{j}")
                if i in self.attention_levels:
                    h = attend(h, f"dec{i}_{j}_attn")
            if i > 0:
                h = UpsampleConv(h.shape[-1], 2, "nearest", dtype=self.dtype, name=f"up{i}")(h)
        h = nn.silu(group_norm(h.shape[-1], self.norm_groups, name="out_norm")(h))
        return Conv(self.out_channels, 3, dtype=self.dtype, name="out_conv")(h)

