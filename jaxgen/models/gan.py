"""Generative adversarial networks (Goodfellow et al. 2014) with DCGAN-style networks (Radford et al.
2016), class conditioning (Mirza & Osindero 2014; projection discriminator, Miyato & Koyama 2018),
and the losses of the two-player game as pure functions of the discriminator's logits.

Read top to bottom:
  1. the networks: `Generator` (z -> image) and `Discriminator` (image -> logit)
  2. the losses: original minimax, non-saturating, hinge, and the R1 gradient penalty
  3. sampling helpers (latent noise, labels)

Images are floats in [-1, 1] ([B, H, W, C]); the generator ends in tanh. The discriminator returns
one real logit per image, l = D_logit(x), with D(x) = sigmoid(l) the probability that x is real.

Normalization, and why. DCGAN uses BatchNorm in both networks. Under data parallelism BatchNorm's
statistics are per device unless synchronised, so a run on 8 devices would compute a different
function from the same run on 1 device, and its running averages add state that the two players
update at different times. jaxgen uses only per-example normalization, which is the same on any
device split:
  * generator: GroupNorm (Wu & He 2018, jaxgen.nn.GroupNorm) after every hidden layer (norm='group';
    'layer' = one group, 'none' = no norm). It keeps the activations' scale under control like
    BatchNorm does in DCGAN, without coupling the examples of a batch;
  * discriminator: no normalization (norm='none', default), as in WGAN-GP / StyleGAN critics: a
    per-example norm in D would change the per-example gradient that R1 penalises, and BatchNorm in D
    lets real and fake batches "see" each other. 'layer' / 'group' are available.
Every layer is per example, so the two networks have no cross-example computation at all: a batch
split over devices gives the same outputs and (after pmean) the same gradients.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn import Conv, ConvTranspose, GroupNorm, UpsampleConv

Params = Any
LOSSES = ("minimax", "nonsaturating", "hinge")
NORMS = ("none", "layer", "group")
UPSAMPLES = ("nearest", "transpose")


# ----------------------------------------------------------------------------------------------
# 1. Networks
# ----------------------------------------------------------------------------------------------


def _norm(kind: str, channels: int, groups: int = 8) -> Callable[[jax.Array], jax.Array]:
    """A per-example normalization layer (see the module docstring), or the identity."""
    if kind == "none":
        return lambda h: h
    if kind == "layer":
        return GroupNorm(num_groups=1)
    if kind == "group":
        return GroupNorm(num_groups=math.gcd(channels, groups))
    raise ValueError(f"norm must be one of {NORMS}, not {kind!r}.")


class Generator(nn.Module):
    """z [B, latent_dim] (and labels [B] when conditional) -> images [B, H, W, C] in [-1, 1].

    The "inverted CNN" of DCGAN: a dense projection of z to a [H/2^L, W/2^L, channels[0]] map, then
    L = len(channels) up-sampling blocks (x2 each, to channels[i]), each followed by a 3x3 conv, and
    a 3x3 conv to C channels with tanh. Hidden layers: norm, then ReLU (DCGAN).
    Conditional (num_classes > 0): the one-hot label is concatenated to z (Mirza & Osindero 2014)
    and a learned class embedding is added to the projected map, so every block sees the class.

    upsample: 'nearest' (nearest x2 then 3x3 conv, run as one sub-pixel transposed conv, no
    checkerboard) or 'transpose' (4x4 stride-2 transposed conv, the DCGAN original).
    dtype: activation dtype (None: float32; bfloat16 for mixed precision). Params stay float32,
    GroupNorm's statistics are float32, and the images are returned in float32.
    """

    image_shape: tuple[int, int, int]
    latent_dim: int = 32
    channels: tuple[int, ...] = (64, 32)
    num_classes: int = 0
    norm: str = "group"
    upsample: str = "nearest"
    dtype: Any = None

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        height, width, chans = self.image_shape
        scale = 2 ** len(self.channels)
        h0, w0, c0 = height // scale, width // scale, self.channels[0]
        if self.num_classes:
            z = jnp.concatenate([z, jax.nn.one_hot(labels, self.num_classes, dtype=z.dtype)], -1)
        h = nn.Dense(h0 * w0 * c0, dtype=self.dtype)(z).reshape(z.shape[0], h0, w0, c0)
        if self.num_classes:
            h = h + nn.Embed(self.num_classes, c0, dtype=self.dtype)(labels)[:, None, None, :]
        h = nn.relu(_norm(self.norm, c0)(h))
        for c in self.channels:
            if self.upsample == "nearest":
                h = UpsampleConv(c, factor=2, method="nearest", dtype=self.dtype)(h)
            elif self.upsample == "transpose":
                h = ConvTranspose(c, kernel_size=4, strides=2, dtype=self.dtype)(h)
            else:
                raise ValueError(f"upsample must be one of {UPSAMPLES}, not {self.upsample!r}.")
            h = nn.relu(_norm(self.norm, c)(h))
            h = nn.relu(_norm(self.norm, c)(Conv(c, 3, dtype=self.dtype)(h)))
        return jnp.tanh(Conv(chans, 3, dtype=self.dtype)(h).astype(jnp.float32))


class Discriminator(nn.Module):
    """images [B, H, W, C] in [-1, 1] (and labels [B] when conditional) -> logits [B].

    A conv stem, then per entry of `channels` a stride-2 4x4 conv (halves H, W; DCGAN uses strided
    convs instead of pooling), LeakyReLU(0.2) after each, flatten, dense -> features phi(x) [B, F].
    Logit: psi(phi(x)) + <embed(y), phi(x)> when conditional (the projection discriminator of Miyato
    & Koyama 2018: the class enters as an inner product with the features, not as an input channel).
    dtype: activation dtype (None: float32; bfloat16 for mixed precision); the logits are float32.
    """

    channels: tuple[int, ...] = (32, 64)
    num_classes: int = 0
    norm: str = "none"
    feature_dim: int = 128
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        h = nn.leaky_relu(Conv(self.channels[0], 3, dtype=self.dtype)(x), 0.2)
        for c in self.channels:
            h = nn.leaky_relu(_norm(self.norm, c)(Conv(c, 4, strides=2, dtype=self.dtype)(h)), 0.2)
        h = h.reshape(h.shape[0], -1)
        feats = nn.leaky_relu(nn.Dense(self.feature_dim, dtype=self.dtype)(h), 0.2)
        # The logit in float32: the losses take softplus of it, and the projection term is a sum
        # over feature_dim products that bfloat16 would round at every partial sum.
        logit = nn.Dense(1, dtype=self.dtype)(feats)[:, 0].astype(jnp.float32)
        if self.num_classes:
            embed = nn.Embed(self.num_classes, self.feature_dim)(labels)
            logit = logit + jnp.sum(embed * feats.astype(jnp.float32), -1)
        return logit


# ----------------------------------------------------------------------------------------------
# 2. Losses, on logits l = D_logit(.) (log sigmoid(l) = -softplus(-l), log(1 - sigmoid(l)) =
#    -softplus(l): exact identities that never take the log of a rounded-to-0 probability)
# ----------------------------------------------------------------------------------------------


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array, loss: str) -> jax.Array:
    """The discriminator's loss (a scalar, mean over the batch) for real [B] and fake [B] logits.

    minimax / nonsaturating (the same D objective): D ascends V = E log D(x) + E log(1 - D(G(z)))
    (Goodfellow 2014, Eq. 1 and Alg. 1), i.e. descends softplus(-l_real) + softplus(l_fake): the
    binary cross-entropy with labels real = 1, fake = 0.
    hinge (Lim & Ye 2017; Miyato et al. 2018): E relu(1 - l_real) + E relu(1 + l_fake).
    """
    if loss in ("minimax", "nonsaturating"):
        return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))
    if loss == "hinge":
        return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
    raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}.")


def generator_loss(fake_logits: jax.Array, loss: str) -> jax.Array:
    """The generator's loss (scalar, to descend) for the logits [B] of its samples.

    minimax: G descends E log(1 - D(G(z))) = -E softplus(l_fake) (Goodfellow 2014, Alg. 1). Its
      gradient w.r.t. l is -sigmoid(l) = -D(G(z)): it vanishes when D confidently rejects the
      samples (D(G(z)) -> 0), which is exactly the situation early in training - it saturates.
    nonsaturating: G ascends E log D(G(z)), i.e. descends E softplus(-l_fake) (Goodfellow 2014,
      Sec. 3): gradient -(1 - D(G(z))), strong where the minimax one is weak. Same fixed point.
    hinge: G descends -E l_fake (Lim & Ye 2017).
    """
    if loss == "minimax":
        return -jnp.mean(jax.nn.softplus(fake_logits))
    if loss == "nonsaturating":
        return jnp.mean(jax.nn.softplus(-fake_logits))
    if loss == "hinge":
        return -jnp.mean(fake_logits)
    raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}.")


def r1_penalty(logit_fn: Callable[[jax.Array], jax.Array], real: jax.Array) -> jax.Array:
    """R1 = E_x ||grad_x D_logit(x)||^2 over real images x [B, H, W, C] (Mescheder et al. 2018,
    Eq. 9); the discriminator's loss adds (gamma / 2) * R1.

    `logit_fn` maps images [B, ...] to logits [B] with no cross-example computation, so the gradient
    of the summed logits w.r.t. the batch is every example's own input gradient.
    """
    grads = jax.grad(lambda x: jnp.sum(logit_fn(x)))(real)
    return jnp.mean(jnp.sum(jnp.square(grads).reshape(real.shape[0], -1), axis=-1))


def discriminator_accuracy(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Fraction of real [B] and fake [B] images the discriminator classifies correctly (l > 0 is
    'real'), over both halves."""
    return 0.5 * (jnp.mean(real_logits > 0) + jnp.mean(fake_logits < 0))


# ----------------------------------------------------------------------------------------------
# 3. Noise and labels
# ----------------------------------------------------------------------------------------------


def latents(keys: jax.Array, latent_dim: int) -> jax.Array:
    """Per-example standard normal z [B, latent_dim] from keys [B, 2] (one key per example, so a
    sample does not depend on how the batch is split over devices)."""
    return jax.vmap(lambda k: jax.random.normal(k, (latent_dim,)))(keys)


def random_labels(keys: jax.Array, num_classes: int) -> jax.Array:
    """Per-example uniform class labels int32 [B] from keys [B, 2]."""
    return jax.vmap(lambda k: jax.random.randint(k, (), 0, num_classes))(keys)


def cycling_labels(num: int, num_classes: int) -> jax.Array:
    """0, 1, ..., num_classes - 1, 0, 1, ... : int32 [num] (the labels of conditional samples)."""
    return jnp.arange(num, dtype=jnp.int32) % num_classes
