"""unCLIP (Ramesh et al. 2022, "DALL-E 2"): text -> CLIP image embedding -> image, with CLIP frozen.

    P(x | y) = P(x | z_i, y) P(z_i | y)                                              (paper eq. 1)

where y is a caption, z_t its CLIP text embedding and z_i a CLIP image embedding (both unit vectors
[E]). Two diffusion models, each trained with the DDPM math of jaxgen.models.diffusion:

* the prior P(z_i | y): `Prior`, a denoiser over embeddings. DALL-E 2's prior is a decoder-only
  transformer over [text tokens, z_t, t, noised z_i, query]; at the scale of `shapes` (E ~ 32-128
  and one conditioning vector) a residual MLP with the time and text embeddings added in every block
  (the same FiLM-free "add the embedding" conditioning as the U-Net's ResBlock) learns the same
  thing at a fraction of the cost. It predicts x_0 directly, as DALL-E 2 does (sec. 2.2: "we
  found it better to predict the unnoised z_i directly"), so the loss is || f(x_t, t, z_t) - x_0 ||^2.
  The diffusion runs on x_0 = sqrt(E) z_i: a unit vector has coordinates of size ~1/sqrt(E), and
  the scaling gives them unit variance on average, the scale the noise schedules are made for.
  A sample is renormalised to the unit sphere (`to_embedding`), where CLIP embeddings live.
* the decoder P(x | z_i): `Decoder`, the jaxgen diffusion U-Net (`Denoiser`) conditioned on z_i in
  the two ways of GLIDE / DALL-E 2 (sec. 2.1): projected and added to the time embedding (the
  "pooled" condition), and projected into `num_tokens` extra context tokens that cross-attention
  reads; DALL-E 2's decoder also attends to the caption's text tokens (its GLIDE text encoder's
  outputs, the caption dropped 50 % of the time in training), here optional (task config
  `model.decoder.text_encoder`): without them the decoder sees the prompt only through z_i.

Both train on the objective of jaxgen.models.diffusion.training (the prior unweighted, as DALL-E 2).
Classifier-free guidance for both: the condition vector (z_t for the prior, z_i for the decoder) is
replaced by zeros (network.null_condition) with probability p during training. Zeros are never a real condition (real ones
are unit vectors), so the networks learn "no condition" from them: the prior through the bias of its
text projection, the decoder through the U-Net's learned null token (an all-False context mask).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxgen.models.diffusion.network import Denoiser
from jaxgen.nn.unet import sinusoidal_embedding

PRIOR_KEY = "text"  # the prior's condition: {"text": z_t [B, E]}
DECODER_KEY = "embedding"  # the decoder's condition: {"embedding": z_i [B, E]}
# The decoder's optional caption tokens [B, L, D] and their mask [B, L] (the text encoder's keys).
TEXT_KEY, TEXT_MASK_KEY = "context", "context_mask"


# ------------------------------------------------------------------------------------ embeddings
def to_diffusion_space(z: jax.Array) -> jax.Array:
    """Unit embeddings z [B, E] -> x_0 = sqrt(E) z [B, E] (unit variance per coordinate on average)."""
    return z * jnp.sqrt(jnp.float32(z.shape[-1]))


def to_embedding(x: jax.Array) -> jax.Array:
    """A sampled x_0 [B, E] -> the unit embedding in its direction [B, E] (the norm carries no meaning)."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


# ------------------------------------------------------------------------------------ prior
class Prior(nn.Module):
    """x_t [B, E], t int [B], cond {"text": z_t [B, E]} -> the output [B, E] (x_0 for x0-prediction).

    A stem Dense to `width`, `depth` pre-LayerNorm residual MLP blocks (width -> 4 width -> width,
    GELU), each adding the embedding e = MLP(sinusoidal(t)) + Dense(z_t) to its input, a final
    LayerNorm and a Dense to E with the default (LeCun-normal) initialisation. Each block's second
    Dense is zero-initialised, so every residual branch starts at zero and the untrained network is
    the stem, the final LayerNorm and the output layer: smooth in its inputs.
    """

    width: int = 256
    depth: int = 4
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, cond: dict[str, jax.Array] | None = None,
                 train: bool = False) -> jax.Array:
        del train  # no dropout: the prior is small and sees fresh noise at every step
        emb = sinusoidal_embedding(t, self.width)
        emb = nn.Dense(self.width, name="time_1")(emb)
        emb = nn.Dense(self.width, name="time_2")(nn.gelu(emb))
        if cond is not None:
            emb = emb + nn.Dense(self.width, name="text_proj")(cond[PRIOR_KEY].astype(jnp.float32))
        h = nn.Dense(self.width, dtype=self.dtype, name="stem")(x)
        for i in range(self.depth):
            y = nn.LayerNorm(dtype=self.dtype, name=f"norm_{i}")(h + emb.astype(h.dtype))
            y = nn.Dense(4 * self.width, dtype=self.dtype, name=f"up_{i}")(y)
            y = nn.Dense(self.width, dtype=self.dtype, kernel_init=nn.initializers.zeros,
                         name=f"down_{i}")(nn.gelu(y))
            h = h + y
        h = nn.LayerNorm(dtype=self.dtype, name="norm_out")(h)
        out = nn.Dense(x.shape[-1], name="out")(h)
        return out.astype(jnp.float32)


# ------------------------------------------------------------------------------------ decoder
class Decoder(nn.Module):
    """x_t [B, H, W, C], t int [B], cond {"embedding": z_i [B, E]} -> output [B, H, W, C].

    z_i (zeros = the null condition) reaches the U-Net as `num_tokens` context tokens of width
    `token_dim` (one Dense, reshaped; the context mask is False for a null row, so it attends to the
    U-Net's learned null token instead) and as the "pooled" vector added to the time embedding.
    Optionally, as DALL-E 2's GLIDE-based decoder, the caption's own text tokens as well: cond
    "context" [B, L, D] and "context_mask" bool [B, L] (all False: no caption) are projected to
    `token_dim` and attended after the CLIP tokens. The other fields are the `Denoiser`'s.
    """

    out_channels: int
    channels: Sequence[int] = (32, 64)
    num_res_blocks: int = 2
    attention_levels: Sequence[int] = (1,)
    cross_attention_levels: Sequence[int] | None = None  # None: attention_levels
    num_heads: int = 4
    upsample: str = "nearest"
    dropout: float = 0.0
    norm_groups: int = 8
    num_tokens: int = 4
    token_dim: int = 64
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, cond: dict[str, jax.Array], train: bool = False) -> jax.Array:
        z = cond[DECODER_KEY].astype(jnp.float32)
        present = jnp.any(z != 0.0, axis=-1)  # [B]: False for the null condition
        tokens = nn.Dense(self.num_tokens * self.token_dim, name="token_proj")(z)
        tokens = tokens.reshape(z.shape[0], self.num_tokens, self.token_dim)
        mask = jnp.broadcast_to(present[:, None], (z.shape[0], self.num_tokens))
        if TEXT_KEY in cond:  # the caption's tokens, after the CLIP tokens
            text = nn.Dense(self.token_dim, name="caption_proj")(cond[TEXT_KEY].astype(jnp.float32))
            tokens = jnp.concatenate([tokens, text.astype(tokens.dtype)], axis=1)
            mask = jnp.concatenate([mask, cond[TEXT_MASK_KEY].astype(bool)], axis=1)
        denoiser = Denoiser(out_channels=self.out_channels, channels=tuple(self.channels),
                            num_res_blocks=self.num_res_blocks, attention_levels=tuple(self.attention_levels),
                            cross_attention_levels=self.cross_attention_levels, num_heads=self.num_heads,
                            upsample=self.upsample, dropout=self.dropout, norm_groups=self.norm_groups,
                            context_dim=self.token_dim, dtype=self.dtype, name="denoiser")
        return denoiser(x, t, {"context": tokens, "context_mask": mask, "pooled": z}, train)
