"""The latent space of a frozen trained autoencoder, as a diffusion task sees it (latent diffusion,
Rombach et al. 2022): `model.latent_from` names an `autoencoder` run folder or a pretrained
(exported) autoencoder, and the diffusion learns and samples its latents instead of pixels.

- Training data: every training image is encoded once on the host, on first use, to the moments of
  its posterior q(z|x) (mean and std [h, w, z], cached per process like unCLIP's CLIP embeddings),
  and these travel in the batch as "latent_mean" and "latent_std". The train step draws
  z = mean + std * eps from each example's own key (LDM trains on posterior samples, not the mean)
  and multiplies it by the scale factor, so the chain's x0 is `scale * z`.
- The scale factor: 1 / the std of those posterior samples over the whole training split, in closed
  form (models.autoencoder.latent_statistics; LDM sec. 4.3.2 / appendix G estimates the same
  scalar from one batch), so the diffusion sees unit-variance data. It is computed once, saved with
  the run as latent.json (beside the autoencoder's step and params fingerprint, as unCLIP saves
  clip.json) and read back when the run is sampled, evaluated or exported.
- Sampling: the chain produces scaled latents; `decode` unscales them and runs the frozen decoder to
  images in [0, 1].

The autoencoder's params are never in the train state: they live on this object, and the train step
never runs the encoder (the latents come precomputed), so its FLOPs are the denoiser's alone.
"""
from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from jaxgen.models import autoencoder as ae_lib
from jaxgen.nn import lora
from jaxgen.tasks import runs
from jaxgen.tasks.base import TaskError

LATENT_FILE = "latent.json"
#: the batch features of a latent diffusion run's training images
KEYS = ("latent_mean", "latent_std")
LATENT_STREAM = 0x1A7E  # folded into an example's key for its posterior draw
# Posterior moments of a training split under one autoencoder, shared by the task instances of a
# process, and the scale factor of those latents: computed, or read from a run's latent.json (so
# that `jaxgen export` pointing model.latent_from at a copy of the same autoencoder, whose task reads
# no latent.json, writes the run's own scale rather than a recomputation).
_CACHE: dict[tuple, dict[str, np.ndarray]] = {}
_SCALES: dict[tuple, float] = {}


class LatentSpace:
    """A frozen autoencoder's latent space for the diffusion task over `dataset` (its training split).

    shape: the latent grid [h, w, z] the denoiser works on; image_shape: the images it decodes to.
    """

    def __init__(self, source: str, dataset, image_size: int):
        self.source = source
        # A trained autoencoder run folder or pretrained autoencoder (runs.trained_model's sentences).
        model = runs.trained_model(source, "autoencoder", field="model.latent_from")
        self.autoencoder, self.params, self.step = model.task, model.params, model.step
        made = self.autoencoder.image_shape
        if made[0] != image_size:
            raise TaskError(f"data.image_size={image_size} differs from the {made[0]}x{made[1]} images the "
                            f"autoencoder of model.latent_from was trained on; set data.image_size={made[0]}.")
        self.dataset = dataset
        self.shape = tuple(self.autoencoder.latent_shape)
        self.image_shape = tuple(made)
        self._fingerprint = None
        self._scale = None  # set by load() (the run's latent.json) or computed from the training latents

    @property
    def fingerprint(self) -> str:
        """The sha256 fingerprint of the frozen autoencoder's params (jaxgen.nn.lora.fingerprint)."""
        if self._fingerprint is None:
            self._fingerprint = lora.fingerprint(self.params)
        return self._fingerprint

    # ---- the training split's latents --------------------------------------------------------------
    @property
    def _key(self) -> tuple:
        return (self.fingerprint, self.dataset.name, self.dataset.split, self.dataset.classes,
                self.dataset.num_examples)

    def training_moments(self) -> dict[str, np.ndarray]:
        """{"latent_mean", "latent_std"}: float32 [N, h, w, z] per training image (read-only)."""
        key = self._key
        if key not in _CACHE:
            mean, std = self.autoencoder.encode_moments(self.params, self.dataset.arrays["image"])
            for v in (mean, std):
                v.flags.writeable = False
            _CACHE[key] = {"latent_mean": mean, "latent_std": std}
        return _CACHE[key]

    @property
    def scale(self) -> float:
        """The scale factor (1 / the std of the training latents): the run's latent.json's, else the one
        this process knows for the same autoencoder and split, else computed (on first use). A Python
        float: the compiled step holds it as a constant."""
        if self._scale is None:
            if self._key not in _SCALES:
                with jax.ensure_compile_time_eval():  # should a trace ask first: compute, do not stage
                    m = self.training_moments()
                    _SCALES[self._key] = float(
                        ae_lib.latent_statistics(m["latent_mean"], m["latent_std"])["scale_factor"])
            self._scale = _SCALES[self._key]
        return self._scale

    def prepare(self) -> None:
        """Makes the scale known now: a step traced later holds it as a constant (called by the task's
        host_batch, which runs before the step it feeds is compiled)."""
        self.scale  # noqa: B018

    def to_latent(self, mean: jax.Array, std: jax.Array, keys: jax.Array) -> jax.Array:
        """The chain's x0 [b, h, w, z] for a training batch: scale * (mean + std * eps), eps from each
        example's key [b, 2] (a stream of its own)."""
        eps = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, LATENT_STREAM), self.shape))(keys)
        return self.scale * (mean + std * eps)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """The scaled posterior means [N, h, w, z] of images [N, H, W, C] (for figures)."""
        mean, _ = self.autoencoder.encode_moments(self.params, images)
        return self.scale * mean

    def decode(self, x: np.ndarray) -> np.ndarray:
        """Images float32 [N, H, W, C] in [0, 1] from the chain's scaled latents x [N, h, w, z]."""
        return self.autoencoder.decode(self.params, np.asarray(x, np.float32) / self.scale)

    def finish(self, x: np.ndarray, stats: dict[str, float]) -> tuple[np.ndarray, dict[str, float]]:
        """(images, stats) from a chain's latents and statistics: decoded, the decoder's time in
        decode_seconds and added to sample_seconds (what a latent model costs per image)."""
        start = time.perf_counter()
        images = self.decode(x)
        spent = time.perf_counter() - start
        return images, {**stats, "decode_seconds": spent, "sample_seconds": stats["sample_seconds"] + spent}

    # ---- the run's asset ---------------------------------------------------------------------------
    def save(self, workdir: str) -> None:
        """Writes latent.json: where the autoencoder came from, its step and fingerprint, the scale."""
        where = self.source
        with open(os.path.join(workdir, LATENT_FILE), "w") as f:
            json.dump({"latent_from": os.path.abspath(where) if os.path.isdir(where) else where, "step": self.step,
                       "fingerprint": self.fingerprint, "scale": self.scale}, f)

    def load(self, workdir: str) -> None:
        """Reads latent.json's scale, after checking that model.latent_from still holds the autoencoder
        the run was trained on (its params' fingerprint); no file: the scale is computed afresh."""
        path = os.path.join(workdir, LATENT_FILE)
        if not os.path.isfile(path):
            return
        with open(path) as f:
            saved = json.load(f)
        if saved["fingerprint"] != self.fingerprint:
            raise TaskError(f"this run was trained in the latent space of the autoencoder at step {saved['step']} "
                            f"of {saved['latent_from']}; model.latent_from={self.source!r} now holds other params "
                            f"(step {self.step}), so its latents differ: retrain, or point it at that autoencoder.")
        self._scale = _SCALES[self._key] = float(saved["scale"])
