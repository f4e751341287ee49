"""Variational auto-encoder (Kingma & Welling 2014) with an importance-weighted likelihood bound
(Burda, Grosse & Salakhutdinov 2016), on discrete images.

Read top to bottom:
  1. input scaling and the up-sampling block (the one place that chooses how the decoder up-samples)
  2. the networks: `Encoder`, `Decoder`, `VAE`
  3. the likelihoods p(x|z) on the integer pixel levels (categorical, Bernoulli, discr. logistic)
  4. the objectives: analytic KL, the ELBO, the IWAE bound
  5. samplers: prior samples, reconstructions, latent interpolation

Images enter every public function as *integers* 0..num_levels-1 of shape [B, H, W, C] (e.g. the
17-level digits 0..16, or 0..255 for 8-bit images). The encoder scales them to [-1, 1] itself, and
the likelihoods score the integers directly, so that log p(x) is a log-probability of discrete data:
-log p(x) in nats per image compares across models, and bits/dim = nats / (H*W*C * ln 2).

Notation (Kingma & Welling 2014, Sec. 2-3): encoder q(z|x) = N(z; mu(x), diag sigma^2(x)), prior
p(z) = N(0, I), decoder p(x|z). The network outputs log sigma^2 ("logvar"), which keeps sigma > 0
without constraints.
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models.gaussian import gaussian_kl
from jaxgen.nn.upsample import upsample as upsample_image

Params = Any  # a pytree of arrays: the 'params' collection of VAE.init(...)

LIKELIHOODS = ("categorical", "bernoulli", "logistic")
UPSAMPLES = ("transpose", "nearest")


# ----------------------------------------------------------------------------------------------
# 1. Input scaling and up-sampling
# ----------------------------------------------------------------------------------------------


def scale_levels(x: jax.Array, num_levels: int) -> jax.Array:
    """Integer levels 0..num_levels-1 -> floats in [-1, 1] (the networks' input range)."""
    return x.astype(jnp.float32) * (2.0 / (num_levels - 1)) - 1.0


class Upsample(nn.Module):
    """Doubles H and W and maps to `features` channels: [B, H, W, C] -> [B, 2H, 2W, features].

    The only place where the decoder chooses how to up-sample:
      'transpose': a stride-2 transposed convolution (4x4 kernel, so every output pixel sees the
                   same number of input pixels and the checkerboard artefact stays small).
      'nearest':   nearest-neighbour up-sampling (jaxgen.nn's `upsample`) followed by a 3x3
                   convolution (no checkerboard at all; also about twice as fast on CPU, where
                   XLA's transposed convolution is slow).
    Unlike jaxgen.nn.Upsample (no parameters) this block convolves too: it computes what
    jaxgen.nn.UpsampleConv(features, 2, 'nearest') and jaxgen.nn.ConvTranspose(features, 4, 2) do,
    but with flax's layers, whose kernel layout ([kh, kw, C_in, features], and flax's transposed
    conv applies its kernel unflipped) and initial draws differ from jaxgen.nn's; they stay so that
    saved VAE runs load and train as before. Its params: Conv_0 or ConvTranspose_0, {kernel, bias}.
    """

    features: int
    mode: str = "nearest"
    dtype: Any = None  # activation dtype (None: float32, the params'); see VAE

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.mode == "transpose":
            return nn.ConvTranspose(self.features, (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype)(x)
        if self.mode == "nearest":
            x = upsample_image(x, 2, "nearest")
            return nn.Conv(self.features, (3, 3), padding="SAME", dtype=self.dtype)(x)
        raise ValueError(f"Upsample mode must be one of {UPSAMPLES}, not {self.mode!r}.")


# ----------------------------------------------------------------------------------------------
# 2. Networks
# ----------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """Conv net x -> (mu, logvar) of q(z|x), each [B, latent_dim].

    One 3x3 stem convolution, then per entry of `channels` a stride-2 3x3 convolution (halves H, W)
    followed by a stride-1 one, then a dense layer to 2 * latent_dim. Input: floats in [-1, 1].
    """

    latent_dim: int
    channels: tuple[int, ...] = (16, 32)
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        conv = lambda c, **kw: nn.Conv(c, (3, 3), padding="SAME", dtype=self.dtype, **kw)  # noqa: E731
        h = nn.swish(conv(self.channels[0])(x))
        for c in self.channels:
            h = nn.swish(conv(c, strides=(2, 2))(h))
            h = nn.swish(conv(c)(h))
        h = h.reshape(h.shape[0], -1)
        # mu and log sigma^2 in float32: exp(0.5 logvar), the sample z and the KL are precision-critical.
        out = nn.Dense(2 * self.latent_dim, dtype=self.dtype)(h).astype(jnp.float32)
        mu, logvar = jnp.split(out, 2, axis=-1)
        return mu, logvar


class Decoder(nn.Module):
    """z [B, latent_dim] -> per-pixel likelihood parameters [B, H, W, C, P].

    Dense -> reshape to [B, H/2^L, W/2^L, channels[-1]] -> L up-sampling blocks (channels in
    reverse, each followed by a 3x3 convolution) -> a 3x3 convolution to C * P outputs. P, the
    number of parameters per pixel and channel, depends on the likelihood (see `num_params`).
    """

    image_shape: tuple[int, int, int]
    channels: tuple[int, ...] = (16, 32)
    num_params: int = 17
    upsample: str = "nearest"
    dtype: Any = None

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        height, width, chans = self.image_shape
        scale = 2 ** len(self.channels)
        h0, w0 = height // scale, width // scale
        h = nn.swish(nn.Dense(h0 * w0 * self.channels[-1], dtype=self.dtype)(z))
        h = h.reshape(z.shape[0], h0, w0, self.channels[-1])
        for c in reversed(self.channels):
            h = nn.swish(Upsample(c, self.upsample, self.dtype)(h))
            h = nn.swish(nn.Conv(c, (3, 3), padding="SAME", dtype=self.dtype)(h))
        out = nn.Conv(chans * self.num_params, (3, 3), padding="SAME", dtype=self.dtype)(h)
        # The likelihood parameters in float32: log-softmax over the levels and the logistic's
        # log-differences lose too much in bfloat16.
        return out.reshape(z.shape[0], height, width, chans, self.num_params).astype(jnp.float32)


def num_params(likelihood: str, num_levels: int) -> int:
    """Decoder outputs per pixel and channel: logits over the levels, a logit, or (mean, log s)."""
    if likelihood == "categorical":
        return num_levels
    if likelihood == "bernoulli":
        return 1
    if likelihood == "logistic":
        return 2
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}, not {likelihood!r}.")


class VAE(nn.Module):
    """Convolutional VAE (or, with variational=False, a plain auto-encoder with z = mu).

    Attributes:
      latent_dim: size of z.
      channels: encoder widths per resolution level; the decoder mirrors them. H and W must be
        divisible by 2 ** len(channels).
      image_shape: (H, W, C) of the images.
      num_levels: pixel values are integers 0..num_levels-1 (17 for digits, 256 for 8-bit images).
      likelihood: 'categorical' | 'bernoulli' | 'logistic', see section 3.
      variational: False gives the deterministic auto-encoder (z = mu, logvar is None, no KL).
      upsample: 'transpose' | 'nearest', see `Upsample`.
      dtype: the activation dtype of the convolutions and dense layers (None: float32; bfloat16 for
        mixed precision, jaxgen.train.precision). Params stay float32, and mu, logvar and the
        decoder's likelihood parameters are returned in float32.

    Inputs are integer images [B, H, W, C] in 0..num_levels-1; the model scales them to [-1, 1].
    """

    # The defaults are the digits setting that gave the best test NLL (see experiments/baselines.py
    # for the numbers it is compared with): wider nets overfit the 1,437 training images.
    latent_dim: int = 8
    channels: tuple[int, ...] = (16, 32)
    image_shape: tuple[int, int, int] = (8, 8, 1)
    num_levels: int = 17
    likelihood: str = "categorical"
    variational: bool = True
    upsample: str = "nearest"
    dtype: Any = None

    def setup(self):
        h, w, _ = self.image_shape
        scale = 2 ** len(self.channels)
        if h % scale or w % scale:
            raise ValueError(
                f"image_shape {self.image_shape} must have H and W divisible by 2**len(channels) "
                f"= {scale}; use fewer channel levels or resize the images.")
        if self.upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, not {self.upsample!r}.")
        p = num_params(self.likelihood, self.num_levels)
        self.encoder = Encoder(self.latent_dim, tuple(self.channels), self.dtype)
        self.decoder = Decoder(tuple(self.image_shape), tuple(self.channels), p, self.upsample, self.dtype)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """Integer images [B, H, W, C] -> (mu, logvar) [B, latent]; logvar is None for the AE."""
        mu, logvar = self.encoder(scale_levels(x, self.num_levels))
        return (mu, logvar) if self.variational else (mu, None)

    def decode(self, z: jax.Array) -> jax.Array:
        """z [B, latent] -> likelihood parameters [B, H, W, C, P] (see `num_params`)."""
        return self.decoder(z)

    def __call__(self, x: jax.Array, rng: jax.Array | None = None):
        """Returns (decoder output [B, H, W, C, P], (mu, logvar)).

        z = mu + sigma * eps, eps ~ N(0, I): the reparameterization trick (Kingma & Welling,
        Eq. 10), which makes the sample a differentiable function of (mu, sigma). The AE uses
        z = mu.
        rng: a PRNG key, passed explicitly (not a Flax rng stream) so that callers control it.
        """
        mu, logvar = self.encode(x)
        if self.variational:
            if rng is None:
                raise ValueError("VAE.__call__ needs an rng to sample z (variational=True).")
            z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mu.shape, mu.dtype)
        else:
            z = mu
        return self.decode(z), (mu, logvar)


# ----------------------------------------------------------------------------------------------
# 3. Likelihoods p(x|z) on the integer levels. Each returns log p(x|z) summed over pixels: [B].
# ----------------------------------------------------------------------------------------------


def categorical_log_prob(logits: jax.Array, x: jax.Array) -> jax.Array:
    """An independent categorical over the levels per pixel and channel.

    logits [B, H, W, C, L], x integers [B, H, W, C] in 0..L-1 -> log p(x) [B]. Makes no ordinal
    assumption, which suits few levels (17 for digits); with L=256 it is the PixelRNN choice.
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, x[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return picked.reshape(x.shape[0], -1).sum(-1)


def bernoulli_log_prob(logits: jax.Array, x: jax.Array, num_levels: int) -> jax.Array:
    """Bernoulli per pixel: logits [B, H, W, C, 1], x integers [B, H, W, C] -> [B].

    The target is t = x / (num_levels - 1) in [0, 1], and the value is
    t log sigmoid(l) + (1 - t) log sigmoid(-l).
    - num_levels == 2 (binarized data, e.g. x = (pixel >= threshold)): an exact log-probability.
    - num_levels > 2: this is the "Bernoulli on [0,1]-scaled grey levels" cross-entropy common in
      VAE code. It is NOT a normalised distribution over the levels (its exp does not sum to 1), so
      it trains fine but gives no comparable NLL. For a likelihood number, either binarize the data
      (fixed threshold, or dynamic binarization: resample b ~ Bernoulli(t) each epoch) and use
      num_levels=2, or use the categorical / logistic likelihoods.
    """
    logits = logits[..., 0]
    t = x.astype(jnp.float32) / (num_levels - 1)
    logp = t * jax.nn.log_sigmoid(logits) + (1.0 - t) * jax.nn.log_sigmoid(-logits)
    return logp.reshape(x.shape[0], -1).sum(-1)


# Lower bound on the logistic's log-scale, as in PixelCNN++: keeps a bin from getting all the mass
# through a vanishing scale and exp(-log_s) from overflowing.
_MIN_LOG_SCALE = -7.0


def _logistic_level_logp(m: jax.Array, log_s: jax.Array, x: jax.Array,
                         num_levels: int) -> jax.Array:
    """Elementwise log P(x) under the discretized logistic; the arguments broadcast together."""
    inv_s = jnp.exp(-jnp.maximum(log_s, _MIN_LOG_SCALE))
    half = 1.0 / (num_levels - 1)
    c = scale_levels(x, num_levels)
    a = (c + half - m) * inv_s
    b = (c - half - m) * inv_s
    log_cdf_a = jax.nn.log_sigmoid(a)        # log P(X <= c + h)
    log_sf_b = jax.nn.log_sigmoid(-b)        # log P(X >= c - h)
    mid = log_cdf_a + log_sf_b + jnp.log(-jnp.expm1(b - a))
    return jnp.where(x == 0, log_cdf_a, jnp.where(x == num_levels - 1, log_sf_b, mid))


def logistic_log_prob(params: jax.Array, x: jax.Array, num_levels: int) -> jax.Array:
    """Discretized logistic (Salimans et al. 2017, PixelCNN++ Eq. 2, one component).

    params [B, H, W, C, 2] = (mean m, log scale log s) on the [-1, 1] scale; x integers
    [B, H, W, C].
    Level i sits at c_i = 2i/(L-1) - 1 and owns the bin [c_i - h, c_i + h], h = 1/(L-1):
        P(x=i) = sigmoid((c_i + h - m)/s) - sigmoid((c_i - h - m)/s),
    with the outer bins extended to -inf (i = 0) and +inf (i = L-1) so the levels sum to one.
    With a = (c_i + h - m)/s and b = (c_i - h - m)/s the middle case is evaluated as
        log(sigmoid(a) - sigmoid(b)) = log sigmoid(a) + log sigmoid(-b) + log(1 - exp(b - a)),
    which is exact and stable (a - b = 2h/s > 0, no cancellation between two close sigmoids).
    """
    logp = _logistic_level_logp(params[..., 0], params[..., 1], x, num_levels)
    return logp.reshape(x.shape[0], -1).sum(-1)


def log_likelihood(likelihood: str, out: jax.Array, x: jax.Array, num_levels: int) -> jax.Array:
    """log p(x|z) [B] for decoder output `out` [B, H, W, C, P] and integer images x [B, H, W, C]."""
    if likelihood == "categorical":
        return categorical_log_prob(out, x)
    if likelihood == "bernoulli":
        return bernoulli_log_prob(out, x, num_levels)
    if likelihood == "logistic":
        return logistic_log_prob(out, x, num_levels)
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}, not {likelihood!r}.")


def likelihood_mean(likelihood: str, out: jax.Array, num_levels: int) -> jax.Array:
    """Mean of p(x|z) on the [0, 1] scale: decoder output [B, H, W, C, P] -> [B, H, W, C].

    categorical and logistic: E[x] / (L-1), summing over all L levels (exact, costs [.., L] memory);
    bernoulli: sigmoid(logit), the mean of the target t = x / (L-1).
    """
    levels = jnp.linspace(0.0, 1.0, num_levels)
    if likelihood == "categorical":
        return jax.nn.softmax(out, axis=-1) @ levels
    if likelihood == "bernoulli":
        return jax.nn.sigmoid(out[..., 0])
    if likelihood == "logistic":
        x = jnp.arange(num_levels)
        logp = _logistic_level_logp(out[..., 0:1], out[..., 1:2], x, num_levels)  # [..., L]
        return jnp.exp(logp) @ levels
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}, not {likelihood!r}.")


def likelihood_sample(likelihood: str, out: jax.Array, rng: jax.Array,
                      num_levels: int) -> jax.Array:
    """Draws x ~ p(x|z): decoder output [B, H, W, C, P] -> integer levels [B, H, W, C]."""
    if likelihood == "categorical":
        return jax.random.categorical(rng, out, axis=-1)
    if likelihood == "bernoulli":
        t = jax.random.bernoulli(rng, jax.nn.sigmoid(out[..., 0]))
        return (t * (num_levels - 1)).astype(jnp.int32)
    if likelihood == "logistic":
        # Inverse-CDF sample of the continuous logistic, then the level whose bin it falls in.
        m, log_s = out[..., 0], jnp.maximum(out[..., 1], _MIN_LOG_SCALE)
        u = jax.random.uniform(rng, m.shape, minval=1e-5, maxval=1.0 - 1e-5)
        y = m + jnp.exp(log_s) * (jnp.log(u) - jnp.log1p(-u))
        return jnp.clip(jnp.round((y + 1.0) * (num_levels - 1) / 2), 0, num_levels - 1).astype(
            jnp.int32)
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}, not {likelihood!r}.")


# ----------------------------------------------------------------------------------------------
# 4. Objectives
# ----------------------------------------------------------------------------------------------


def elbo(params: Params, model: VAE, x: jax.Array, rng: jax.Array) -> dict[str, jax.Array]:
    """One-sample ELBO per example: dict(elbo, recon, kl), each [B], in nats.

    ELBO(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z))  (Kingma & Welling, Eq. 3 and 10):
    the reconstruction term is estimated with one reparameterized sample, the KL is analytic.
    Training minimises -mean(elbo). For the plain auto-encoder (variational=False) kl is 0 and elbo
    is just log p(x | z=mu), a reconstruction score rather than a bound on log p(x).
    """
    out, (mu, logvar) = model.apply({"params": params}, x, rng)
    recon = log_likelihood(model.likelihood, out, x, model.num_levels)
    kl = jnp.sum(gaussian_kl(mu, logvar), axis=-1) if model.variational else jnp.zeros_like(recon)
    return {"elbo": recon - kl, "recon": recon, "kl": kl}


def _logsumexp_merge(carry, new):
    """Combines running (max, sum of exp(v - max)) with a chunk of log-weights [chunk, B]."""
    m, s = carry
    m_new = jnp.maximum(m, new.max(axis=0))
    s = s * jnp.exp(m - m_new) + jnp.exp(new - m_new).sum(axis=0)
    return m_new, s


def iwae_bound(params: Params, model: VAE, x: jax.Array, rng: jax.Array, k: int,
               chunk: int | None = None) -> jax.Array:
    """Importance-weighted bound on log p(x) per example [B], in nats (Burda et al. 2016, Eq. 8):

        L_K(x) = log (1/K) sum_{k=1..K} p(x, z_k) / q(z_k|x),   z_k ~ q(z|x) independently,

    with log p(x, z) / q(z|x) = log p(x|z) + log N(z; 0, I) - log N(z; mu, sigma^2). L_1 is the ELBO
    (in expectation), E[L_K] <= E[L_{K+1}] <= log p(x) (Burda et al. Theorem 1), so a large K
    gives a tight estimate of the test log-likelihood.

    The K samples are decoded `chunk` at a time under lax.scan with a running log-sum-exp, so memory
    is that of chunk * B decoder passes; K must be a multiple of chunk. Sample k's noise is
    normal(fold_in(rng, k)): the result does not depend on `chunk`, and L_K and L_K' with the same
    rng share their first min(K, K') samples.
    """
    if not model.variational:
        raise ValueError("iwae_bound needs a variational model (variational=True); a plain "
                         "auto-encoder defines no q(z|x) and no bound on log p(x).")
    chunk = k if chunk is None else min(chunk, k)
    if k < 1 or k % chunk:
        raise ValueError(f"iwae_bound needs k >= 1 and k a multiple of chunk, got k={k}, "
                         f"chunk={chunk}.")
    mu, logvar = model.apply({"params": params}, x, method=VAE.encode)
    sigma = jnp.exp(0.5 * logvar)
    batch = x.shape[0]

    def log_weights(j):
        keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(j * chunk + jnp.arange(chunk))
        eps = jax.vmap(lambda key: jax.random.normal(key, mu.shape, mu.dtype))(keys)  # [c, B, d]
        z = mu + sigma * eps
        out = model.apply({"params": params}, z.reshape(chunk * batch, -1), method=VAE.decode)
        xs = jnp.broadcast_to(x, (chunk,) + x.shape).reshape((chunk * batch,) + x.shape[1:])
        log_px_z = log_likelihood(model.likelihood, out, xs, model.num_levels).reshape(chunk, batch)
        # log p(z) - log q(z|x): the 2*pi terms cancel, and (z - mu)/sigma = eps.
        log_pz_qz = jnp.sum(-0.5 * z**2 + 0.5 * eps**2 + 0.5 * logvar, axis=-1)
        return log_px_z + log_pz_qz

    def step(carry, j):
        return _logsumexp_merge(carry, log_weights(j)), None

    init = (jnp.full((batch,), -jnp.inf), jnp.zeros((batch,)))
    (m, s), _ = jax.lax.scan(step, init, jnp.arange(k // chunk))
    return m + jnp.log(s) - math.log(k)


# ----------------------------------------------------------------------------------------------
# 5. Samplers. Images come back as floats in [0, 1] (level / (num_levels - 1)).
# ----------------------------------------------------------------------------------------------


def _decode_images(params: Params, model: VAE, z: jax.Array, rng: jax.Array | None) -> jax.Array:
    out = model.apply({"params": params}, z, method=VAE.decode)
    if rng is None:
        return likelihood_mean(model.likelihood, out, model.num_levels)
    x = likelihood_sample(model.likelihood, out, rng, model.num_levels)
    return x.astype(jnp.float32) / (model.num_levels - 1)


def sample(params: Params, model: VAE, rng: jax.Array, num: int,
           mean: bool = True) -> jax.Array:
    """Images from the model [num, H, W, C] in [0, 1]: z ~ N(0, I), then the mean of p(x|z)
    (mean=True, smooth images) or a draw x ~ p(x|z) (mean=False, the model's actual samples)."""
    z_rng, x_rng = jax.random.split(rng)
    z = jax.random.normal(z_rng, (num, model.latent_dim))
    return _decode_images(params, model, z, None if mean else x_rng)


def reconstruct(params: Params, model: VAE, x: jax.Array,
                rng: jax.Array | None = None) -> jax.Array:
    """Mean of p(x|z) [B, H, W, C] in [0, 1] for integer images x; z = mu (rng None) or
    z ~ q(z|x) (rng given)."""
    mu, logvar = model.apply({"params": params}, x, method=VAE.encode)
    z = mu
    if rng is not None and logvar is not None:
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mu.shape)
    return _decode_images(params, model, z, None)


def interpolate(params: Params, model: VAE, x_a: jax.Array, x_b: jax.Array,
                steps: int = 8) -> jax.Array:
    """Latent interpolation grid [B, steps, H, W, C] in [0, 1].

    Row i decodes (1 - t) mu(x_a[i]) + t mu(x_b[i]) for t = 0, 1/(steps-1), ..., 1; x_a and x_b are
    integer images [B, H, W, C] (a single image [H, W, C] is treated as B = 1).
    """
    if x_a.ndim == 3:
        x_a, x_b = x_a[None], x_b[None]
    mu_a, _ = model.apply({"params": params}, x_a, method=VAE.encode)
    mu_b, _ = model.apply({"params": params}, x_b, method=VAE.encode)
    t = jnp.linspace(0.0, 1.0, steps)[None, :, None]
    z = (1.0 - t) * mu_a[:, None] + t * mu_b[:, None]                   # [B, steps, latent]
    images = _decode_images(params, model, z.reshape(-1, model.latent_dim), None)
    return images.reshape((x_a.shape[0], steps) + images.shape[1:])
