"""Test-set likelihood of a model, in nats per image and bits per dimension.

Every number here is a negative log-probability of *discrete* images (integers 0..L-1), so models
with different likelihoods and the baselines of experiments/baselines.py compare on one scale:

    bits/dim = nats per image / (D * ln 2),   D = H * W * C.

`evaluate_nll` runs the importance-weighted bound of jaxgen.models.vae.iwae_bound (Burda et al.
2016) over a whole split. Since E[L_K] <= log p(x), the NLL it reports is an (estimated) upper bound
on the true NLL, tight as K grows.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.models import vae as vae_lib


def nats_to_bits_per_dim(nats: float | np.ndarray, num_dims: int) -> float | np.ndarray:
    """Nats per image -> bits per dimension: nats / (num_dims * ln 2)."""
    return nats / (num_dims * math.log(2.0))


def bits_per_dim_to_nats(bpd: float | np.ndarray, num_dims: int) -> float | np.ndarray:
    """Bits per dimension -> nats per image: bpd * num_dims * ln 2."""
    return bpd * num_dims * math.log(2.0)


def nll_summary(log_probs: np.ndarray, num_dims: int) -> dict[str, float]:
    """Per-image log-probabilities [N] (nats) -> mean NLL and its standard error, nats and bpd."""
    nll = -np.asarray(log_probs, dtype=np.float64)
    if nll.ndim != 1 or nll.size == 0:
        raise ValueError(f"nll_summary needs a non-empty vector of log-probabilities, got shape "
                         f"{nll.shape}.")
    mean = float(nll.mean())
    se = float(nll.std(ddof=1) / math.sqrt(nll.size)) if nll.size > 1 else float("nan")
    return {
        "nats": mean,
        "nats_se": se,
        "bits_per_dim": float(nats_to_bits_per_dim(mean, num_dims)),
        "bits_per_dim_se": float(nats_to_bits_per_dim(se, num_dims)),
        "num_images": int(nll.size),
    }


def evaluate_nll(params: Any, model: vae_lib.VAE, images: np.ndarray, rng: jax.Array,
                 k: int = 1000, chunk: int = 100, batch_size: int = 100) -> dict[str, float]:
    """IWAE estimate of the test NLL over a whole split.

    Args:
      params: the VAE's params.
      model: the VAE module (variational=True).
      images: integer images [N, H, W, C] in 0..num_levels-1 (numpy or jax).
      rng: key; batch i uses fold_in(rng, i), so the result is a pure function of its inputs.
      k: importance samples per image (Burda et al. use 5000; >= 1000 is tight on small images).
      chunk: samples decoded at once (memory ~ chunk * batch_size decoder passes).
      batch_size: images per call; the last batch is padded (padding is scored, then dropped), so
        only one shape is compiled.

    Returns dict(nats, nats_se, bits_per_dim, bits_per_dim_se, num_images): mean -L_K over the split
    and its standard error across images (the Monte-Carlo error of L_K itself is not included).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != tuple(model.image_shape):
        h, w, c = model.image_shape
        raise ValueError(f"evaluate_nll expects integer images [N, {h}, {w}, {c}], got shape "
                         f"{images.shape}.")
    bound = jax.jit(lambda p, x, r: vae_lib.iwae_bound(p, model, x, r, k, chunk))
    log_probs = batched(lambda x, i: bound(params, jnp.asarray(x, jnp.int32), jax.random.fold_in(rng, i)),
                        images, batch_size)
    return nll_summary(log_probs, int(np.prod(model.image_shape)))


def batched(fn, images: np.ndarray, batch_size: int) -> np.ndarray:
    """fn(batch, i) [b] over `images` [N, ...] in batches of batch_size (the last one padded with
    copies of its first image and the padding dropped, so only one shape compiles): [N]."""
    out = []
    for i, start in enumerate(range(0, len(images), batch_size)):
        batch = images[start:start + batch_size]
        valid = len(batch)
        if valid < batch_size:
            batch = np.concatenate([batch, np.repeat(batch[:1], batch_size - valid, axis=0)])
        out.append(np.asarray(fn(batch, i))[:valid])
    return np.concatenate(out)
