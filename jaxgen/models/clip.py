"""CLIP (Radford et al. 2021): an image tower and a text tower mapped into one embedding space, trained
so that the N matching (image, text) pairs of a batch score higher than the N^2 - N others.

Model. `CLIP.__call__(images, tokens)` gives L2-normalised embeddings img, txt [B, E] of both
towers (each followed by a linear projection), the logit scale s = exp(t) with t a learned
log-temperature clamped so that s <= 100 (CLIP's clamp), and a learned bias b (used by the sigmoid
loss only). Image towers: a small CNN (`ConvTower`, strided convolutions with GroupNorm, flattened so
that *where* something is survives into the embedding: the `shapes` captions name positions) or a
small ViT (`ViTTower`). The text tower is `jaxgen.nn.text.TextEncoder`.

Losses, over a batch of N pairs with similarities S_ij = s <img_i, txt_j>:
  * softmax (CLIP, eq. in Fig. 3 of the paper): L = 1/2 [CE_rows(S, I) + CE_rows(S^T, I)], the mean
    cross-entropy of picking the matching text for each image and the matching image for each text;
  * sigmoid (SigLIP, Zhai et al. 2023, eq. 1): L = -1/N sum_ij log sigmoid(z_ij (S_ij + b)), z_ij = 1
    if i == j else -1; every pair is an independent binary decision.
Data parallel: `contrastive_loss(..., axis_name="data")` all-gathers the other devices' embeddings,
so each device computes *its rows* of the global N x N matrix against all N columns. The loss is
the mean over local rows; the step's `pmean` of gradients then gives exactly the gradient of the
global-batch loss, because all_gather's transpose (a reduce-scatter) routes every device's
d loss / d (gathered copy) back to the device that owns those embeddings.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from jaxgen.nn.attention import group_norm
from jaxgen.nn.conv import Conv, lecun_normal_flat
from jaxgen.nn.text import TextEncoder, TransformerBlock

LOSSES = ("softmax", "sigmoid")
IMAGE_TOWERS = ("cnn", "vit")
MAX_LOGIT_SCALE = 100.0
_init = lecun_normal_flat()


class ConvTower(nn.Module):
    """Images [B, H, W, C] -> features [B, width]: a 3x3 stem, then one stage per entry of
    `channels` (a stride-2 3x3 conv, GroupNorm, GELU, and a residual 3x3 conv), flattened, Dense.

    GroupNorm groups hold at least two channels: with one channel per group the norm cancels every
    per-channel bias before it, whose gradient is then pure rounding noise that Adam amplifies."""

    channels: tuple[int, ...] = (32, 64, 128)
    width: int = 256
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = Conv(self.channels[0], 3, dtype=self.dtype, name="stem")(x)
        for i, c in enumerate(self.channels):
            x = Conv(c, 3, strides=2, dtype=self.dtype, name=f"down_{i}")(nn.gelu(x))
            h = nn.gelu(group_norm(c, min(32, max(c // 2, 1)), name=f"norm_{i}")(x))
            x = x + Conv(c, 3, dtype=self.dtype, name=f"res_{i}")(h)
        x = nn.gelu(group_norm(x.shape[-1], min(32, max(x.shape[-1] // 2, 1)), name="norm_out")(x))
        return nn.Dense(self.width, dtype=self.dtype, kernel_init=_init, name="out")(x.reshape(x.shape[0], -1))


class ViTTower(nn.Module):
    """Images [B, H, W, C] -> features [B, width]: non-overlapping patches, a learned class token and
    position embeddings, pre-norm transformer blocks, the class token's final-LayerNorm features."""

    patch_size: int = 4
    width: int = 128
    depth: int = 4
    num_heads: int = 4
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, _ = x.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"a {h}x{w} image does not split into {self.patch_size}-pixel patches.")
        x = Conv(self.width, self.patch_size, strides=self.patch_size, padding="VALID", dtype=self.dtype,
                 name="patchify")(x).reshape(b, -1, self.width)
        cls = self.param("class_token", nn.initializers.normal(0.02), (1, 1, self.width))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.width)).astype(x.dtype), x], axis=1)
        x = x + self.param("position_embedding", nn.initializers.normal(0.01), x.shape[1:]).astype(x.dtype)
        for i in range(self.depth):
            x = TransformerBlock(self.num_heads, dtype=self.dtype, name=f"block_{i}")(x)
        return nn.LayerNorm(dtype=self.dtype, name="norm_final")(x[:, 0])


class CLIP(nn.Module):
    """The two towers, their projections to `embed_dim`, the log-temperature and the sigmoid bias.

    `__call__(images [B,H,W,C], tokens [B,L])` -> (img [B,E], txt [B,E], scale [], bias []);
    `encode_image` / `encode_text` give one side (L2-normalised); `text_features` gives the text
    tower's per-token features [B, L, width] and the projected, normalised pooled embedding.
    """

    vocab_size: int
    context_length: int
    embed_dim: int = 128
    image_tower: str = "cnn"
    image_channels: tuple[int, ...] = (32, 64, 128)
    image_width: int = 256
    patch_size: int = 4
    vit_depth: int = 4
    text_width: int = 128
    text_depth: int = 2
    num_heads: int = 4
    loss: str = "softmax"
    dtype: jnp.dtype | None = None

    def setup(self):
        if self.image_tower == "cnn":
            self.image_encoder = ConvTower(self.image_channels, self.image_width, self.dtype)
        elif self.image_tower == "vit":
            self.image_encoder = ViTTower(self.patch_size, self.image_width, self.vit_depth, self.num_heads,
                                          self.dtype)
        else:
            raise ValueError(f"image_tower must be one of {IMAGE_TOWERS}, not {self.image_tower!r}.")
        self.text_encoder = TextEncoder(self.vocab_size, self.context_length, self.text_width, self.text_depth,
                                        self.num_heads, self.dtype)
        self.image_projection = nn.Dense(self.embed_dim, use_bias=False, kernel_init=_init)
        self.text_projection = nn.Dense(self.embed_dim, use_bias=False, kernel_init=_init)
        # CLIP starts at temperature 0.07; SigLIP at scale 10 and bias -10 (its many negatives
        # would otherwise dominate the first steps).
        init_t, init_b = (math.log(1 / 0.07), 0.0) if self.loss == "softmax" else (math.log(10.0), -10.0)
        self.log_scale = self.param("log_scale", nn.initializers.constant(init_t), ())
        self.bias = self.param("bias", nn.initializers.constant(init_b), ())

    def encode_image(self, images: jax.Array) -> jax.Array:
        return _normalise(self.image_projection(self.image_encoder(images)))

    def text_features(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        per_token, pooled = self.text_encoder(tokens)
        return per_token, _normalise(self.text_projection(pooled))

    def encode_text(self, tokens: jax.Array) -> jax.Array:
        return self.text_features(tokens)[1]

    def logit_scale(self) -> jax.Array:
        return jnp.exp(jnp.minimum(self.log_scale, math.log(MAX_LOGIT_SCALE)))

    def __call__(self, images: jax.Array, tokens: jax.Array):
        return self.encode_image(images), self.encode_text(tokens), self.logit_scale(), self.bias


def _normalise(x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)  # the similarity matrix is always float32
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


def contrastive_loss(img: jax.Array, txt: jax.Array, scale: jax.Array, bias: jax.Array | float = 0.0,
                     kind: str = "softmax", axis_name: str | None = None) -> tuple[jax.Array, dict]:
    """The contrastive loss of this device's pairs img, txt [n, E] (normalised) against the global batch.

    Without `axis_name` the batch is the n local pairs. With it (inside shard_map / pmap), the other
    devices' embeddings are all-gathered: local rows [n, N] of the global matrix, labels offset by
    this device's first global row. Returns (mean loss over the local rows, metrics) where
    metrics["accuracy"] is the fraction of local images whose best text is their own caption.
    """
    if kind not in LOSSES:
        raise ValueError(f"the contrastive loss must be one of {LOSSES}, not {kind!r}.")
    n = img.shape[0]
    if axis_name is None:
        all_img, all_txt, first = img, txt, 0
    else:
        all_img = jax.lax.all_gather(img, axis_name, tiled=True)  # [N, E], device order = global order
        all_txt = jax.lax.all_gather(txt, axis_name, tiled=True)
        first = jax.lax.axis_index(axis_name) * n
    labels = first + jnp.arange(n)
    image_rows = scale * img @ all_txt.T  # [n, N]: my images against every text
    if kind == "softmax":
        text_rows = scale * txt @ all_img.T  # [n, N]: my texts against every image
        loss = 0.5 * (optax.softmax_cross_entropy_with_integer_labels(image_rows, labels).mean()
                      + optax.softmax_cross_entropy_with_integer_labels(text_rows, labels).mean())
    else:
        # Every (image, text) pair appears once among the devices' image rows: no text side needed.
        z = jnp.where(jnp.arange(all_txt.shape[0])[None, :] == labels[:, None], 1.0, -1.0)
        loss = -jnp.sum(jax.nn.log_sigmoid(z * (image_rows + bias)), axis=1).mean()
    accuracy = jnp.mean(jnp.argmax(image_rows, axis=1) == labels)
    return loss, {"accuracy": accuracy}


def zero_shot_predict(image_emb: jax.Array, class_emb: jax.Array) -> jax.Array:
    """CLIP's zero-shot classifier (Radford et al. 2021, sec. 3.1.2): each image [N, E] gets the class
    [C, E] whose text embedding is the most similar (both normalised, so the dot product is the
    cosine): int [N]. The logit scale does not change the argmax."""
    return jnp.argmax(image_emb @ class_emb.T, axis=-1)


def zero_shot_accuracy(image_emb: jax.Array, class_emb: jax.Array, labels: jax.Array) -> jax.Array:
    """The fraction of images [N, E] whose zero-shot prediction is their label [N] (a scalar)."""
    return jnp.mean(zero_shot_predict(image_emb, class_emb) == labels)
