"""Imagen-style text-to-image (Saharia et al. 2022) at laptop scale: the pieces around the denoiser.

The cascade is a base text-conditional diffusion model at low resolution followed by super-resolution
diffusion models, all conditioned on the embeddings of a *frozen* pretrained text encoder (T5-XXL in
the paper; here all-MiniLM-L6-v2, jaxgen.nn.bert, or the text tower of a jaxgen CLIP run). The
denoiser itself is jaxgen.models.diffusion.network.Denoiser, whose cond takes the text tokens
("context", "context_mask"), the pooled embedding ("pooled"), and for a super-resolution stage the
low-resolution image ("low_res") and its noise-augmentation level ("noise_level").

This module holds what is specific to the cascade's math (the frozen text encoder, a host-side cache
that may restore a trained CLIP run, is jaxgen.tasks.text_encoder):
- `augment_low_res`: noise conditioning augmentation (Ho et al. 2021, "Cascaded Diffusion Models",
  sec. 3.2; Imagen sec. 2.4): the low-res input of a super-resolution stage is corrupted with the
  forward process q(z_s | low) at a level s drawn per example during training, and s is given to the
  network; at sampling a fixed s is used. It makes the SR stage robust to the artefacts of the stage
  below it (whose outputs are not real low-res images).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgen.models.diffusion import process
from jaxgen.models.diffusion.schedules import Schedule


def noise_level_index(schedule: Schedule, fraction: float) -> int:
    """The schedule step for an augmentation level given as a fraction of the chain (0: clean end)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"a noise-augmentation level must be a fraction in [0, 1], not {fraction}.")
    return int(round(fraction * (schedule.num_steps - 1)))


def augment_low_res(schedule: Schedule, low_res: jax.Array, keys: jax.Array, max_fraction: float
                    ) -> tuple[jax.Array, jax.Array]:
    """Training-time noise conditioning augmentation: low_res [B, h, w, C] in [-1, 1] -> (z_s, s)
    with s int [B] uniform in 0..noise_level_index(max_fraction) and z_s = q_sample(low_res, s)
    (eq. 4 of Ho et al. 2020: sqrt(abar_s) low_res + sqrt(1 - abar_s) eps), from the examples' own
    keys [B, 2] (so a device split does not change the draws)."""
    top = noise_level_index(schedule, max_fraction)

    def draws(key):
        k_level, k_noise = jax.random.split(key)
        return jax.random.randint(k_level, (), 0, top + 1), jax.random.normal(k_noise, low_res.shape[1:])

    level, noise = jax.vmap(draws)(keys)
    return process.q_sample(schedule, low_res, level, noise), level


def fixed_low_res(schedule: Schedule, low_res: jax.Array, key: jax.Array, fraction: float
                  ) -> tuple[jax.Array, jax.Array]:
    """Sampling-time augmentation: every image of low_res [B, h, w, C] noised to the one level
    noise_level_index(fraction) -> (z_s, s int [B])."""
    level = jnp.full((low_res.shape[0],), noise_level_index(schedule, fraction), jnp.int32)
    noise = jax.random.normal(key, low_res.shape, low_res.dtype)
    return process.q_sample(schedule, low_res, level, noise), level
