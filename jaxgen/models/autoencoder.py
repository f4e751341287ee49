"""KL-regularised convolutional autoencoder: the first stage of latent diffusion (Rombach et al. 2022,
"High-Resolution Image Synthesis with Latent Diffusion Models", the "KL-f4 / KL-f8" autoencoders).

    x [B, H, W, C] in [-1, 1] --Encoder--> (mean, logvar) [B, H/f, W/f, 2z]  (a diagonal Gaussian q(z|x))
    z = mean + exp(logvar / 2) eps,  eps ~ N(0, I)           [B, H/f, W/f, z]
    z --Decoder--> x_hat [B, H, W, C] (unbounded; images are read at clip((x_hat + 1) / 2, 0, 1))

f = 2 ** (len(channels) - 1). Both networks are LDM's in miniature, built from jaxgen.nn: a 3x3 stem,
per level `num_res_blocks` residual blocks (GroupNorm, SiLU, 3x3 conv; jaxgen.nn.ResBlock without a
time embedding) and a stride-2 3x3 convolution down (the encoder) or jaxgen's nearest + 3x3
convolution up (jaxgen.nn.UpsampleConv, the decoder); a middle residual block at the lowest
resolution; GroupNorm, SiLU and a 3x3 convolution out. LDM also puts self-attention in the middle
block; at the 16x16 latents of the shapes configs the convolutions' receptive field already covers
the scene, so it is left out.

The loss (`loss`): reconstruction + kl_weight * KL(q(z|x) || N(0, I)), LDM's weighting. LDM's
first-stage loss sums |x - x_hat| over the pixels and the KL over the latent elements, per image,
with kl_weight ~ 1e-6: the KL only keeps the latents from drifting to arbitrary scales (the
"slight KL penalty" of LDM sec. 3), the posterior is nearly deterministic, and the diffusion then
needs its 1/std rescaling. Here both sums are divided by the number of pixel values (so the
reported loss reads as a mean per pixel) with the same ratio. Reconstruction L1 by default (LDM's
choice: it keeps the flat colours and hard edges of the shapes scenes where L2 averages them into
blur; L2 is `reconstruction='l2'`). LDM's perceptual (LPIPS) and patch-adversarial losses are
left out: no pretrained VGG ships here, and at 64x64 flat-colour scenes the L1 term alone already
reconstructs what the scene parser reads.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.models.gaussian import gaussian_kl
from jaxgen.nn.attention import group_norm
from jaxgen.nn.conv import Conv
from jaxgen.nn.unet import ResBlock
from jaxgen.nn.upsample import UpsampleConv

Params = Any
RECONSTRUCTIONS = ("l1", "l2")
# LDM clamps the log-variance of its posterior to this range (DiagonalGaussianDistribution).
LOGVAR_RANGE = (-30.0, 20.0)


class Encoder(nn.Module):
    """x [B, H, W, C] in [-1, 1] -> posterior moments (mean, logvar), each [B, H/f, W/f, latent_channels]."""

    channels: Sequence[int]
    num_res_blocks: int
    latent_channels: int
    norm_groups: int = 8
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = Conv(self.channels[0], 3, dtype=self.dtype, name="stem")(x)
        for i, ch in enumerate(self.channels):
            for j in range(self.num_res_blocks):
                h = ResBlock(ch, 0.0, self.norm_groups, self.dtype, name=f"down{i}_res{j}")(h, None, False)
            if i < len(self.channels) - 1:  # halve H and W
                h = Conv(ch, 3, strides=2, dtype=self.dtype, name=f"down{i}_downsample")(h)
        h = ResBlock(self.channels[-1], 0.0, self.norm_groups, self.dtype, name="mid")(h, None, False)
        h = nn.silu(group_norm(h.shape[-1], self.norm_groups, name="out_norm")(h))
        # The moments in float32: exp(logvar / 2) and the KL are precision-critical.
        moments = Conv(2 * self.latent_channels, 3, dtype=self.dtype, name="out")(h).astype(jnp.float32)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, *LOGVAR_RANGE)


class Decoder(nn.Module):
    """z [B, h, w, latent_channels] -> x_hat [B, h f, w f, out_channels] (the [-1, 1] image scale, unclipped)."""

    channels: Sequence[int]
    num_res_blocks: int
    out_channels: int = 3
    norm_groups: int = 8
    dtype: Any = None

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = Conv(self.channels[-1], 3, dtype=self.dtype, name="stem")(z)
        h = ResBlock(self.channels[-1], 0.0, self.norm_groups, self.dtype, name="mid")(h, None, False)
        for i in reversed(range(len(self.channels))):
            for j in range(self.num_res_blocks):
                h = ResBlock(self.channels[i], 0.0, self.norm_groups, self.dtype, name=f"up{i}_res{j}")(h, None, False)
            if i > 0:  # double H and W: nearest neighbour + 3x3 conv, as LDM's decoder up-samples
                h = UpsampleConv(self.channels[i - 1], 2, "nearest", dtype=self.dtype, name=f"up{i}_upsample")(h)
        h = nn.silu(group_norm(h.shape[-1], self.norm_groups, name="out_norm")(h))
        return Conv(self.out_channels, 3, dtype=self.dtype, name="out")(h).astype(jnp.float32)


class AutoencoderKL(nn.Module):
    """The encoder and decoder together; `__call__(x, eps)` reconstructs x through one posterior sample.

    Attributes:
      channels: widths per resolution level (the decoder mirrors them); f = 2 ** (len(channels) - 1).
      num_res_blocks: residual blocks per level.
      latent_channels: z, the channels of the latent grid.
      out_channels: the image channels.
      norm_groups: at most this many GroupNorm groups (the largest count that divides the channels).
      dtype: activation dtype (None: float32); params, the moments and x_hat stay float32.
    """

    channels: Sequence[int] = (32, 64, 64)
    num_res_blocks: int = 1
    latent_channels: int = 4
    out_channels: int = 3
    norm_groups: int = 8
    dtype: Any = None

    def setup(self):
        self.encoder = Encoder(tuple(self.channels), self.num_res_blocks, self.latent_channels, self.norm_groups,
                               self.dtype)
        self.decoder = Decoder(tuple(self.channels), self.num_res_blocks, self.out_channels, self.norm_groups,
                               self.dtype)

    @property
    def factor(self) -> int:
        """The down-sampling factor f: latents are [H/f, W/f]."""
        return 2 ** (len(self.channels) - 1)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x [B, H, W, C] in [-1, 1] -> (mean, logvar) of q(z|x), each [B, H/f, W/f, z]."""
        return self.encoder(x)

    def decode(self, z: jax.Array) -> jax.Array:
        """z [B, h, w, z] -> x_hat [B, h f, w f, C] on the [-1, 1] scale (unclipped)."""
        return self.decoder(z)

    def __call__(self, x: jax.Array, eps: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(x_hat, mean, logvar) for x [B, H, W, C] in [-1, 1] through z = mean + sigma * eps, eps the
        caller's standard normal noise [B, H/f, W/f, z] (the reparameterization trick; drawn per
        example by the caller, so the result does not depend on how a batch is split)."""
        mean, logvar = self.encode(x)
        return self.decode(sample_posterior(mean, logvar, eps)), mean, logvar


def sample_posterior(mean: jax.Array, logvar: jax.Array, eps: jax.Array) -> jax.Array:
    """z = mean + exp(logvar / 2) * eps: a draw of q(z|x) from standard normal eps (shapes alike)."""
    return mean + jnp.exp(0.5 * logvar) * eps


def loss(params: Params, model: AutoencoderKL, x: jax.Array, eps: jax.Array, kl_weight: float,
         reconstruction: str = "l1") -> dict[str, jax.Array]:
    """The first-stage loss per example, each [B]: {"loss", "reconstruction", "kl"}.

    reconstruction: mean |x - x_hat| (l1) or mean (x - x_hat)^2 (l2) over the pixel values, on the
    [-1, 1] scale; kl: KL(q(z|x) || N(0, I)) summed over the latent elements (nats per image);
    loss = reconstruction + kl_weight * kl / (H W C): LDM's sum-over-pixels loss with its KL weight,
    divided by the pixel count (see the module docstring).
    """
    x_hat, mean, logvar = model.apply({"params": params}, x, eps)
    diff = x - x_hat
    per_pixel = jnp.abs(diff) if reconstruction == "l1" else jnp.square(diff)
    rec = per_pixel.reshape(x.shape[0], -1).mean(-1)
    kl = gaussian_kl(mean, logvar).reshape(x.shape[0], -1).sum(-1)
    num_values = x[0].size
    return {"loss": rec + kl_weight * kl / num_values, "reconstruction": rec, "kl": kl}


def to_unit(x_hat: jax.Array) -> jax.Array:
    """Decoder output on the [-1, 1] scale -> images in [0, 1] (clipped)."""
    return jnp.clip((x_hat + 1.0) / 2.0, 0.0, 1.0)


def latent_statistics(mean: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """Statistics of posterior samples z = mean + std * eps over a set of images, in closed form
    (no noise drawn), from their posterior moments mean, std [N, h, w, z]:

        Var[z] = Var[mean] + E[std^2]   (over images, positions and channels; per channel alike).

    latent_std: the std of all elements together, and scale_factor = 1 / latent_std: LDM's
    rescaling (sec. 4.3.2 and appendix G: one scalar from the component-wise variance of the
    latents), which gives the diffusion unit-variance data; latent_std_<c>, latent_mean_<c> per
    channel c (LDM does not centre the latents; a mean far from 0 would show here)."""
    mean = np.asarray(mean, np.float64)
    var = np.square(np.asarray(std, np.float64))
    total = float(np.sqrt(mean.var() + var.mean()))
    axes = tuple(range(mean.ndim - 1))
    per_channel = np.sqrt(mean.var(axis=axes) + var.mean(axis=axes))
    out = {"latent_std": total, "scale_factor": 1.0 / total}
    for c in range(mean.shape[-1]):
        out[f"latent_std_{c}"] = float(per_channel[c])
        out[f"latent_mean_{c}"] = float(mean[..., c].mean())
    return out
