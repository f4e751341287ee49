"""The fully connected VAE / IWAE of Burda, Grosse & Salakhutdinov (2016), "Importance Weighted
Autoencoders" (arXiv:1509.00519), sec. 5: one or more stochastic layers of diagonal Gaussians on
binary images, trained on the k-sample bound.

Read top to bottom:
  1. the layers: `GaussianLayer` (tanh MLP -> mean, log sigma) and `BernoulliLayer` (tanh MLP -> logits)
  2. the model `IWAE`: the recognition chain q(h_1|x) q(h_2|h_1) ... and the generative chain
     p(h_L) p(h_{L-1}|h_L) ... p(x|h_1), and the log importance weight of one joint sample
  3. the objectives as pure functions: the k-sample ELBO average ('elbo', the paper's "VAE" with k
     samples) and the k-sample importance-weighted bound ('iwae'), and the chunked L_k that
     estimates the test log-likelihood with k = 5000
  4. ancestral samples from the prior

Shapes. Images enter as binary integers x [B, H, W, 1] in {0, 1} (dynamically binarized upstream,
jaxgen.data.transforms.dynamic_binarize); the model flattens them to [B, D], D = H * W.

The architectures (the paper's sec. 5 and its code, github.com/yburda/iwae, experiments.py):
  1 stochastic layer:  x(784) -200-200- h1(50), p mirrored: h1 -200-200- x        425,284 params
  2 stochastic layers: x(784) -200-200- h1(100) -100-100- h2(50),
                       p: h2 -100-100- h1 -200-200- x                             521,084 params
Every deterministic layer is tanh; a Gaussian layer's mean and log sigma are two linear heads on the
last hidden layer (the code's sigma = exp(linear), so log sigma is the head's output); the prior on
the top layer is N(0, I); p(x|h_1) is a product of Bernoullis.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models.vae import _logsumexp_merge

Params = Any
OBJECTIVES = ("elbo", "iwae")
_LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------------------------
# 1. Layers
# ----------------------------------------------------------------------------------------------


class GaussianLayer(nn.Module):
    """h [N, d_in] -> (mean, log sigma), each [N, features]: len(hidden) tanh Dense layers, then
    two linear heads (a diagonal Gaussian over the next layer's units)."""

    hidden: tuple[int, ...]
    features: int

    @nn.compact
    def __call__(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        for width in self.hidden:
            h = jnp.tanh(nn.Dense(width)(h))
        return nn.Dense(self.features, name="mean")(h), nn.Dense(self.features, name="log_sigma")(h)


class BernoulliLayer(nn.Module):
    """h [N, d_in] -> Bernoulli logits [N, features]: tanh Dense layers, then a linear head."""

    hidden: tuple[int, ...]
    features: int

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        for width in self.hidden:
            h = jnp.tanh(nn.Dense(width)(h))
        return nn.Dense(self.features, name="logits")(h)


def gaussian_log_prob(z: jax.Array, mean: jax.Array | float, log_sigma: jax.Array | float) -> jax.Array:
    """log N(z; mean, diag sigma^2) summed over the last axis: [..., d] -> [...]."""
    u = (z - mean) * jnp.exp(-log_sigma)
    return jnp.sum(-0.5 * u * u - log_sigma - 0.5 * _LOG_2PI, axis=-1)


def bernoulli_log_prob(logits: jax.Array, x: jax.Array) -> jax.Array:
    """log p(x) of binary x [..., D] under Bernoulli(sigmoid(logits)), summed over D: [...].
    Written with log_sigmoid so that a confident wrong logit costs a large finite number, not inf."""
    x = x.astype(logits.dtype)
    return jnp.sum(x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits), axis=-1)


# ----------------------------------------------------------------------------------------------
# 2. The model
# ----------------------------------------------------------------------------------------------


class IWAE(nn.Module):
    """Burda et al.'s model: `latent_dims` stochastic layers (bottom first), the deterministic tanh
    widths between consecutive layers in `hidden` (hidden[i] sits between layer i and layer i + 1,
    layer 0 being x; the generative side uses the same widths in reverse order).

    Attributes:
      image_shape: (H, W, C) of the binary images; D = H * W * C.
      latent_dims: e.g. (50,) or (100, 50).
      hidden: e.g. ((200, 200),) or ((200, 200), (100, 100)); one entry per stochastic layer.
    """

    image_shape: tuple[int, int, int] = (28, 28, 1)
    latent_dims: tuple[int, ...] = (50,)
    hidden: tuple[tuple[int, ...], ...] = ((200, 200),)

    def setup(self):
        if len(self.hidden) != len(self.latent_dims):
            raise ValueError(f"hidden needs one tuple of widths per stochastic layer ({len(self.latent_dims)}), "
                             f"not {len(self.hidden)}.")
        dims = (self.num_dims,) + tuple(self.latent_dims)
        # q(h_{i+1} | h_i), i = 0..L-1 (h_0 = x)
        self.q_layers = [GaussianLayer(tuple(self.hidden[i]), dims[i + 1], name=f"q_{i + 1}")
                         for i in range(len(self.latent_dims))]
        # p(h_i | h_{i+1}) for i = 1..L-1, and p(x | h_1)
        self.p_layers = [GaussianLayer(tuple(reversed(self.hidden[i])), dims[i], name=f"p_{i}")
                         for i in range(1, len(self.latent_dims))]
        self.p_x = BernoulliLayer(tuple(reversed(self.hidden[0])), self.num_dims, name="p_x")

    @property
    def num_dims(self) -> int:
        h, w, c = self.image_shape
        return h * w * c

    def __call__(self, x: jax.Array, rng: jax.Array) -> jax.Array:
        """Binary images [B, H, W, C] -> log w [B] of one joint sample h ~ q(h|x) (see `log_weight`)."""
        return self.log_weight(x, rng)

    def log_weight(self, x: jax.Array, rng: jax.Array) -> jax.Array:
        """log w = log p(x, h_1..h_L) - log q(h_1..h_L | x) [B] for one sample of the recognition
        chain (reparameterized: h_{i+1} = mean + sigma * eps with eps ~ N(0, I) from
        fold_in(rng, i), so the sample is differentiable in the parameters; Burda et al. eq. 7's
        weight w = p(x, h) / q(h|x))."""
        x = x.reshape(x.shape[0], -1).astype(jnp.float32)
        h, log_q = x, 0.0
        samples = []
        for i, layer in enumerate(self.q_layers):
            mean, log_sigma = layer(h)
            eps = jax.random.normal(jax.random.fold_in(rng, i), mean.shape, mean.dtype)
            h = mean + jnp.exp(log_sigma) * eps
            # log q(h | .) with (h - mean) / sigma = eps exactly: no division by a tiny sigma.
            log_q = log_q + jnp.sum(-0.5 * eps * eps - log_sigma - 0.5 * _LOG_2PI, axis=-1)
            samples.append(h)
        log_p = gaussian_log_prob(samples[-1], 0.0, 0.0)  # the prior N(0, I) on the top layer
        for i, layer in enumerate(self.p_layers):  # p(h_{i+1} | h_{i+2})
            mean, log_sigma = layer(samples[i + 1])
            log_p = log_p + gaussian_log_prob(samples[i], mean, log_sigma)
        log_p = log_p + bernoulli_log_prob(self.p_x(samples[0]), x)
        return log_p - log_q

    def posterior_means(self, x: jax.Array) -> list[jax.Array]:
        """The mean of each recognition layer along the chain of means (no noise): [[B, d_i]];
        what Burda et al.'s active-unit statistic A_u = Cov_x(E_q[u]) is computed from."""
        h = x.reshape(x.shape[0], -1).astype(jnp.float32)
        means = []
        for layer in self.q_layers:
            h, _ = layer(h)
            means.append(h)
        return means

    def generate(self, rng: jax.Array, num: int) -> jax.Array:
        """Ancestral sampling: h_L ~ N(0, I), h_i ~ p(h_i | h_{i+1}), then the Bernoulli means
        of p(x | h_1) as images [num, H, W, C] in [0, 1] (smoother than binary draws)."""
        h = jax.random.normal(jax.random.fold_in(rng, len(self.latent_dims)), (num, self.latent_dims[-1]))
        for i in reversed(range(len(self.p_layers))):
            mean, log_sigma = self.p_layers[i](h)
            h = mean + jnp.exp(log_sigma) * jax.random.normal(jax.random.fold_in(rng, i + 1), mean.shape)
        return jax.nn.sigmoid(self.p_x(h)).reshape((num,) + tuple(self.image_shape))


# ----------------------------------------------------------------------------------------------
# 3. Objectives. Sample j of a k-sample bound draws its noise from fold_in(rng, j), so bounds with
#    the same rng share their first samples, and a chunked bound equals the unchunked one.
# ----------------------------------------------------------------------------------------------


def log_weights(params: Params, model: IWAE, x: jax.Array, rng: jax.Array, k: int,
                first: int | jax.Array = 0) -> jax.Array:
    """log w of samples first..first+k-1 for every image: [k, B]."""
    keys = jax.vmap(lambda j: jax.random.fold_in(rng, j))(first + jnp.arange(k))
    return jax.vmap(lambda key: model.apply({"params": params}, x, key, method=IWAE.log_weight))(keys)


def objective(params: Params, model: IWAE, x: jax.Array, rng: jax.Array, k: int, kind: str) -> jax.Array:
    """The training objective per image [B], in nats, from k samples (Burda et al. sec. 5):

      'iwae': L_k = log (1/k) sum_j w_j   (eq. 8), a lower bound on log p(x) that tightens with k;
      'elbo': (1/k) sum_j log w_j, the k-sample Monte-Carlo ELBO (the paper's "VAE" trained with
              k samples: the same bound L_1, with a lower-variance gradient).

    With k = 1 the two are the same number (log of a single weight). Their gradients are those of
    the paper: 'iwae' weights each sample's gradient by its normalised importance weight (eq. 14).
    """
    lw = log_weights(params, model, x, rng, k)
    if kind == "iwae":
        return jax.nn.logsumexp(lw, axis=0) - math.log(k)
    if kind == "elbo":
        return jnp.mean(lw, axis=0)
    raise ValueError(f"objective must be one of {OBJECTIVES}, not {kind!r}.")


def iwae_bound(params: Params, model: IWAE, x: jax.Array, rng: jax.Array, k: int,
               chunk: int | None = None) -> jax.Array:
    """L_k per image [B] (the test log-likelihood estimate; Burda et al. use k = 5000), drawn `chunk`
    samples at a time under lax.scan with a running log-sum-exp, so that memory is that of
    chunk * B passes whatever k is. k must be a multiple of chunk; the result does not depend on
    chunk (sample j always uses fold_in(rng, j))."""
    chunk = k if chunk is None else min(chunk, k)
    if k < 1 or k % chunk:
        raise ValueError(f"iwae_bound needs k >= 1 and k a multiple of chunk, got k={k}, chunk={chunk}.")

    def step(carry, j):
        return _logsumexp_merge(carry, log_weights(params, model, x, rng, chunk, first=j * chunk)), None

    batch = x.shape[0]
    init = (jnp.full((batch,), -jnp.inf), jnp.zeros((batch,)))
    (m, s), _ = jax.lax.scan(step, init, jnp.arange(k // chunk))
    return m + jnp.log(s) - math.log(k)


def active_units(means: Sequence[jax.Array], threshold: float = 1e-2) -> list[int]:
    """Burda et al. sec. 5.2: unit u of a layer is active when A_u = Cov_x(E_q(u|x)[u]) > 10^-2;
    `means` are posterior_means over a set of images ([[N, d_i]]). Returns the count per layer."""
    return [int(jnp.sum(jnp.var(m, axis=0) > threshold)) for m in means]
