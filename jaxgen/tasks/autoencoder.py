"""The first stage of latent diffusion as a task: a KL-regularised convolutional autoencoder
(jaxgen.models.autoencoder, Rombach et al. 2022's "KL-f4 / KL-f8") trained on reconstruction + a
small KL, evaluated on what the diffusion in its latent space will need: how well it reconstructs
held-out scenes, whether the scene parser still reads them, and the scale of its latents.

Why a task of its own rather than an option of the VAE family (jaxgen.tasks.vae): the VAE is a
likelihood model (integer pixels scored by a categorical / logistic / Bernoulli p(x|z), a vector
latent, the ELBO and the IWAE bound as its numbers); this autoencoder is a compressor (a spatial
[h, w, z] latent grid, an L1 reconstruction with a KL weight of ~1e-6 that is no bound on anything,
and reconstruction error, parse accuracy and latent statistics as its numbers). They share the
Gaussian KL (jaxgen.models.gaussian) and nothing else.

Images are scaled to [-1, 1] at data.image_size (bilinear from the dataset's resolution; the
shapes/t2i64 configs train at the native 64x64). An autoencoder has no prior to sample from: its
`sample` gives reconstructions of test images, so `jaxgen eval`'s FID of its "samples" is the
reconstruction FID (rFID) that LDM reports for its first stages.

The other tasks read a trained autoencoder through `encode_moments` (images -> posterior mean and
std of the latents) and `decode` (latents -> images), see jaxgen.tasks.latent.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.data import transforms
from jaxgen.eval import prompt_suite
from jaxgen.eval.images import make_grid
from jaxgen.models import autoencoder as ae_lib
from jaxgen.tasks.base import Task, TaskError, check_channels, check_choice, check_non_negative, check_positive_int
from jaxgen.train import precision


class AutoencoderTask(Task):
    batch_keys = ("image",)
    fid_reference = "image"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        m = config.model
        check_channels("model.channels", m.channels)
        check_positive_int("model.num_res_blocks", m.num_res_blocks)
        check_positive_int("model.latent_channels", m.latent_channels)
        check_positive_int("model.norm_groups", m.norm_groups)
        check_positive_int("data.image_size", config.data.image_size)
        check_non_negative("model.kl_weight", m.kl_weight)
        check_choice("model.reconstruction", m.reconstruction, ae_lib.RECONSTRUCTIONS)
        size = config.data.image_size
        factor = 2 ** (len(m.channels) - 1)
        if size % factor:
            raise TaskError(f"data.image_size={size} must be divisible by the down-sampling factor "
                            f"2**(len(model.channels)-1) = {factor}.")
        self.image_shape = (size, size, dataset.arrays["image"].shape[-1])
        #: the latent grid [h, w, z] of one image
        self.latent_shape = (size // factor, size // factor, m.latent_channels)
        self.model = ae_lib.AutoencoderKL(channels=tuple(m.channels), num_res_blocks=m.num_res_blocks,
                                          latent_channels=m.latent_channels, out_channels=self.image_shape[-1],
                                          norm_groups=m.norm_groups, dtype=precision.compute_dtype(config))
        self._encode = jax.jit(self._moments)
        self._decode = jax.jit(self._images)

    # ---- data and network ------------------------------------------------------------------------
    def preprocess(self, images: jax.Array) -> jax.Array:
        """Images [B, h, w, C] (integer levels, or float in [0, 1]) -> float [B, S, S, C] in [-1, 1]
        at data.image_size."""
        if jnp.issubdtype(images.dtype, jnp.integer):
            images = transforms.to_unit(images, self.dataset.num_levels)
        return 2.0 * transforms.resize(images.astype(jnp.float32), self.image_shape[0]) - 1.0

    def init_params(self, rng):
        x = jnp.zeros((1,) + self.image_shape, jnp.float32)
        return self.model.init(rng, x, jnp.zeros((1,) + self.latent_shape, jnp.float32))["params"]

    def _moments(self, params, images):
        mean, logvar = self.model.apply({"params": params}, self.preprocess(images), method=ae_lib.AutoencoderKL.encode)
        return mean, jnp.exp(0.5 * logvar)

    def _images(self, params, z):
        return ae_lib.to_unit(self.model.apply({"params": params}, z, method=ae_lib.AutoencoderKL.decode))

    # ---- what other tasks use --------------------------------------------------------------------
    def encode_moments(self, params, images: np.ndarray, batch_size: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of q(z|x), each float32 [N, h, w, z], for images [N, H, W, C] (the dataset's
        integer levels or float in [0, 1]), in batches of eval.batch_size (the last one padded, so
        one program serves every batch)."""
        b = batch_size or self.config.eval.batch_size
        means, stds = [], []
        for i in range(0, len(images), b):
            chunk = np.asarray(images[i:i + b])
            n = len(chunk)
            if n < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            mean, std = self._encode(params, chunk)
            means.append(np.asarray(mean)[:n])
            stds.append(np.asarray(std)[:n])
        return np.concatenate(means), np.concatenate(stds)

    def decode(self, params, z: np.ndarray | jax.Array) -> np.ndarray:
        """Images float32 [N, H, W, C] in [0, 1] decoded from latents z [N, h, w, z]."""
        return np.asarray(self._decode(params, jnp.asarray(z, jnp.float32)))

    def reconstruct(self, params, images: np.ndarray) -> np.ndarray:
        """Images [N, H, W, C] in [0, 1] decoded from the posterior means of images [N, H, W, C]."""
        mean, _ = self.encode_moments(params, images)
        b = self.config.eval.batch_size
        return np.concatenate([self.decode(params, mean[i:i + b]) for i in range(0, len(mean), b)])

    # ---- update step -----------------------------------------------------------------------------
    def loss_and_grads(self, params, inputs):
        """The gradient of the mean first-stage loss (models.autoencoder.loss) over `inputs` {"image":
        int [b, H, W, C], "key": [b, 2]}; each example's posterior noise comes from its own key.
        Metrics: loss, l1 (mean |x - x_hat| on the [0, 1] scale, whatever model.reconstruction), kl
        (nats per image)."""
        m = self.config.model
        x = self.preprocess(inputs["image"])
        eps = jax.vmap(lambda k: jax.random.normal(k, self.latent_shape))(inputs["key"])

        def loss_fn(p):
            terms = ae_lib.loss(p, self.model, x, eps, m.kl_weight, m.reconstruction)
            return jnp.mean(terms["loss"]), terms

        (value, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        metrics = {"loss": value, "kl": jnp.mean(terms["kl"])}
        if m.reconstruction == "l1":  # the [-1, 1] scale's mean error is twice that on [0, 1]
            metrics["l1"] = 0.5 * jnp.mean(terms["reconstruction"])
        return grads, metrics, None

    # ---- sampling and evaluation -----------------------------------------------------------------
    def _test_images(self, num: int) -> np.ndarray:
        test = self.eval_dataset().arrays["image"]
        return np.asarray(test[np.arange(num) % len(test)])

    def sample(self, params, rng, num):
        """No prior: reconstructions of the first `num` test images (cycling), {"images", "originals"}."""
        originals = self._test_images(num)
        unit = np.asarray(transforms.resize(transforms.to_unit(jnp.asarray(originals), self.dataset.num_levels),
                                            self.image_shape[0]))
        return {"images": self.reconstruct(params, originals), "originals": unit}

    def evaluate(self, state):
        """On eval.num_examples test scenes (their posterior means, decoded), mean |x - x_hat| per
        pixel value in [0, 1]: test_l1; beside it the same error of what a decoder that ignores z could
        give, test_l1_mean_image and test_l1_median_image (the per-pixel mean and median of the
        training images: the best constant images under L2 and under L1), and test_l1_other_scene
        (each scene against the reconstruction of the next scene's latents: equal to test_l1 for a
        decoder that ignores z). exact_scene_reconstructed and exact_scene_real: the scene parser's
        exact-scene accuracy (jaxgen.eval.prompt_suite) of the reconstructions and of the real scenes
        (datasets with per-object records only). The latents of the training split
        (models.autoencoder.latent_statistics): latent_std (of posterior samples, in closed form),
        scale_factor = 1 / latent_std (what latent diffusion multiplies them by), latent_std_<c> and
        latent_mean_<c> per channel."""
        params = self.eval_params(state)
        test = self.eval_dataset().arrays
        n = min(int(self.config.eval.num_examples), len(test["image"]))
        unit = lambda images: np.asarray(self.preprocess(jnp.asarray(np.asarray(images))) + 1.0) / 2.0  # noqa: E731
        real = unit(test["image"][:n])
        recon = self.reconstruct(params, test["image"][:n])
        train = unit(self.dataset.arrays["image"][:4096])
        error = lambda images: float(np.abs(images - real).mean())  # noqa: E731
        results = {"test_l1": error(recon), "test_l1_mean_image": error(train.mean(0)),
                   "test_l1_median_image": error(np.median(train, axis=0)),
                   "test_l1_other_scene": error(np.roll(recon, -1, axis=0))}
        if "obj_shape" in test:
            truth = {k: np.asarray(v[:n]) for k, v in test.items()}
            results["exact_scene_reconstructed"] = prompt_suite.exact_scene(recon, truth)
            results["exact_scene_real"] = prompt_suite.exact_scene(real, truth)
        mean, std = self.encode_moments(params, self.dataset.arrays["image"])
        results.update(ae_lib.latent_statistics(mean, std))
        return results

    def figures(self, state):
        """Reconstructions: odd rows 8 test images, even rows their reconstructions (4 pairs of rows)."""
        params = self.eval_params(state)
        out = self.sample(params, jax.random.PRNGKey(0), 32)
        pairs = np.stack([out["originals"].reshape(4, 8, *self.image_shape),
                          out["images"].reshape(4, 8, *self.image_shape)], 1)
        return {"reconstructions": make_grid(pairs.reshape(-1, *self.image_shape), columns=8)}
