"""The transformer denoiser: DiT (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers"),
a drop-in alternative to the U-Net `Denoiser` with the same call and the same conditions.

    x [B,H,W,C] --patchify (p x p patches, one Dense)--> tokens [B, N, D] + 2-D sin-cos positions
                                                         |  N = (H/p)(W/p)
    t --sinusoid--> MLP --+-- c [B, D]                   v
    label --embed---------+    (+ pooled text,     depth x DiTBlock(tokens, c [, text tokens])
    (pooled, noise level)-+     + noise level)           |
                                                         v
    out [B,H,W,C] <--unpatchify-- Dense (zero init) <-- adaLN(LayerNorm(tokens), c)

The condition reaches every block through adaLN-Zero (sec. 3.2): a Dense of c, initialised to zero,
gives each sub-layer a shift and scale of its LayerNorm'd input and a gate on its output, so at
initialisation every block is the identity and the final zero-initialised projection makes the
output exactly zero (the paper found this the best of its conditioning schemes). Text tokens, when
`context_dim` > 0, are read by a cross-attention sub-layer in each block (between self-attention and
the MLP, as PixArt-alpha adds it to DiT), gated by adaLN-Zero like the others.

Positions are the fixed 2-D sine-cosine embedding (as DiT uses): half the width encodes the token's
row and half its column, each as the 1-D sinusoid of Vaswani et al. eq. 5. Fixed rather than learned:
it has no parameters, so a checkpoint does not depend on the image size, and the tiny datasets here
give a learned table little to learn from.

cond is the `Denoiser`'s (see network.py): "label" (num_classes = the null class), "context" /
"context_mask" (a row with no real token attends to a learned null token), "pooled", and the
super-resolution stage's "low_res" (concatenated as input channels) and "noise_level" (embedded as
the time step is).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxgen.models.diffusion.network import text_context
from jaxgen.nn.attention import MultiHeadAttention
from jaxgen.nn.initializers import lecun_normal_flat
from jaxgen.nn.unet import sinusoidal_embedding

_init = lecun_normal_flat()  # see lecun_normal_flat: flax's default compiles slowly on CPU
_zeros = nn.initializers.zeros


def patchify(x: jax.Array, p: int) -> jax.Array:
    """[B, H, W, C] -> [B, (H/p)(W/p), p*p*C]: non-overlapping p x p patches in row-major order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(tokens: jax.Array, h: int, w: int, p: int) -> jax.Array:
    """[B, (h/p)(w/p), p*p*C] -> [B, h, w, C], the inverse of patchify."""
    b, _, d = tokens.shape
    c = d // (p * p)
    x = tokens.reshape(b, h // p, w // p, p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def position_embedding(rows: int, cols: int, dim: int) -> jax.Array:
    """The fixed 2-D sine-cosine embedding [rows * cols, dim] of a row-major token grid: the row's
    1-D sinusoid in the first dim // 2 features, the column's in the rest."""
    r, c = jnp.meshgrid(jnp.arange(rows), jnp.arange(cols), indexing="ij")
    return jnp.concatenate([sinusoidal_embedding(r.reshape(-1), dim // 2),
                            sinusoidal_embedding(c.reshape(-1), dim - dim // 2)], axis=-1)


def _layer_norm(name: str) -> nn.LayerNorm:
    """LayerNorm without its own affine map: adaLN supplies the shift and scale. Its input is the
    float32 residual stream, so the statistics are float32 also under bfloat16."""
    return nn.LayerNorm(epsilon=1e-6, use_bias=False, use_scale=False, name=name)


class DiTBlock(nn.Module):
    """tokens [B,N,D], c [B,D] (the conditioning vector), optional context [B,L,Dc] with
    context_mask [B,L] (True = a token to attend to) -> [B,N,D].

    x = x + gate_i * f_i(LayerNorm(x) * (1 + scale_i) + shift_i) for f_i in (self-attention,
    cross-attention to the context (only when one is given), MLP), with (shift_i, scale_i, gate_i)
    from one zero-initialised Dense of silu(c): the block is the identity at initialisation.

    The residual stream stays float32 (it sums 2-3 updates per block over the depth); the sub-layers'
    matmuls run in `dtype`. The modulation Dense is float32, as the Denoiser's embeddings are: it is
    one [D, 6D] matmul per example ([D, 9D] with cross-attention), and its output moves every token
    of the example alike.
    """

    num_heads: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array, context: jax.Array | None = None,
                 context_mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        d = x.shape[-1]
        dtype = self.dtype or jnp.float32

        def attention(h: jax.Array) -> jax.Array:
            # key_bias=False: the softmax cancels a key bias (see MultiHeadAttention).
            return MultiHeadAttention(self.num_heads, dtype=self.dtype, key_bias=False, name="attn")(h)

        def cross_attention(h: jax.Array) -> jax.Array:
            return MultiHeadAttention(self.num_heads, dtype=self.dtype, key_bias=False, name="cross_attn")(
                h, context, context_mask)

        def mlp(h: jax.Array) -> jax.Array:
            h = nn.Dense(max(1, int(self.mlp_ratio * d)), dtype=self.dtype, kernel_init=_init, name="mlp_in")(h)
            h = nn.Dropout(self.dropout, deterministic=not train)(nn.gelu(h, approximate=True))
            return nn.Dense(d, dtype=self.dtype, kernel_init=_init, name="mlp_out")(h)

        layers = [("attn", attention)] + ([("cross_attn", cross_attention)] if context is not None else []) \
            + [("mlp", mlp)]
        mod = nn.Dense(3 * len(layers) * d, kernel_init=_zeros, bias_init=_zeros, name="adaLN_modulation")(
            nn.silu(c.astype(jnp.float32)))
        x = x.astype(jnp.float32)
        for (name, layer), m in zip(layers, jnp.split(mod[:, None, :], len(layers), axis=-1)):
            shift, scale, gate = jnp.split(m, 3, axis=-1)  # each [B, 1, D], broadcast over the tokens
            h = _layer_norm(f"{name}_norm")(x) * (1.0 + scale) + shift
            x = x + gate * layer(h.astype(dtype)).astype(jnp.float32)
        return x


class DiT(nn.Module):
    """x [B,H,W,C], t [B] (the int timestep, or model.timesteps * t for a flow model), cond (the
    Denoiser's, see the module docstring) -> output [B,H,W,out_channels] (eps, x0 or v; the velocity
    for a flow model). H and W must be divisible by patch_size.

    dtype: the activation dtype of the patch embedding, the blocks' attention and MLP matmuls and the
    final projection (None: float32; bfloat16 for mixed precision). Params stay float32, the time /
    condition embeddings, the residual stream and the output are float32, so the losses and the
    samplers' update math never see bfloat16.
    """

    out_channels: int
    patch_size: int = 2
    hidden_size: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0       # on the MLP's hidden units (DiT uses none; the U-Net configs' value carries over)
    num_classes: int = 0       # > 0: class-conditional, with one extra (null) embedding
    context_dim: int = 0       # > 0: cross-attention to text tokens of this width
    text_layers: int = 0       # > 0: a trainable TokenTransformer of this depth over the tokens (network.py)
    text_width: int = 128      # its width (the width cross-attention then reads)
    dtype: Any = None

    def _embed_step(self, t: jax.Array, name: str) -> jax.Array:
        """[B] time steps (or noise levels) -> [B, D]: sinusoid -> Dense -> SiLU -> Dense (float32)."""
        e = nn.Dense(self.hidden_size, kernel_init=_init, name=f"{name}_0")(
            sinusoidal_embedding(t, self.hidden_size))
        return nn.Dense(self.hidden_size, kernel_init=_init, name=f"{name}_1")(nn.silu(e))

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, cond: dict[str, jax.Array] | None = None,
                 train: bool = False) -> jax.Array:
        cond = cond or {}
        _, h, w, _ = x.shape
        p, d = self.patch_size, self.hidden_size
        if h % p or w % p:
            raise ValueError(f"DiT with patch_size={p} needs H and W divisible by {p}; got {x.shape}.")
        # The conditioning vector c [B, D]: the sum of every embedded condition, as in DiT (sec. 3.2).
        c = self._embed_step(t, "time_mlp")
        if self.num_classes:
            c = c + nn.Embed(self.num_classes + 1, d, name="label_embedding")(cond["label"])
        context = mask = None
        if self.context_dim:
            context, mask = text_context(self, cond, self.context_dim, self.text_layers, self.text_width,
                                         self.num_heads, self.dtype)
            if "pooled" in cond:
                c = c + nn.Dense(d, name="pooled_proj")(cond["pooled"].astype(jnp.float32))
        if "low_res" in cond:  # super-resolution: the up-sampled low-res image as extra input channels
            low = cond["low_res"].astype(x.dtype)
            if low.shape[1:3] != x.shape[1:3]:
                low = jax.image.resize(low, x.shape[:3] + low.shape[3:], "bilinear", antialias=False)
            x = jnp.concatenate([x, low], axis=-1)
        if "noise_level" in cond:  # the augmentation level, embedded as the time step is
            c = c + self._embed_step(cond["noise_level"], "noise_level_mlp")

        # A Dense on flattened p x p patches: the same map as DiT's p x p, stride-p convolution.
        tokens = nn.Dense(d, dtype=self.dtype, kernel_init=_init, name="patch_embed")(patchify(x, p))
        tokens = tokens.astype(jnp.float32) + position_embedding(h // p, w // p, d)
        for i in range(self.depth):
            tokens = DiTBlock(self.num_heads, self.mlp_ratio, self.dropout, self.dtype, name=f"block_{i}")(
                tokens, c, context, mask, train)

        # Final layer: adaLN (shift, scale; zero init) and a zero-initialised projection to the
        # p*p*C values of each patch, so the untrained network outputs exactly zero.
        mod = nn.Dense(2 * d, kernel_init=_zeros, bias_init=_zeros, name="final_modulation")(nn.silu(c))
        shift, scale = jnp.split(mod[:, None, :], 2, axis=-1)
        tokens = _layer_norm("final_norm")(tokens) * (1.0 + scale) + shift
        out = nn.Dense(p * p * self.out_channels, dtype=self.dtype, kernel_init=_zeros, bias_init=_zeros,
                       name="final_proj")(tokens.astype(self.dtype or jnp.float32))
        return unpatchify(out, h, w, p).astype(jnp.float32)
