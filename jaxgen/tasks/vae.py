"""The VAE family as a task: train on -ELBO, sample from the prior, evaluate the IWAE test NLL.

Images stay integers 0..num_levels-1 all the way into the model (the likelihood is discrete), so the
VAE runs at the dataset's native resolution.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.eval import likelihood
from jaxgen.eval.images import make_grid
from jaxgen.models import vae as vae_lib
from jaxgen.tasks import runs
from jaxgen.tasks.base import Task, TaskError, check_channels, check_choice, check_positive_int
from jaxgen.train import precision


class VAETask(Task):
    batch_keys = ("image",)
    fid_reference = "image"
    init_keys = 2  # the model's params and its posterior noise at init

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        m = config.model
        if m.likelihood not in vae_lib.LIKELIHOODS:
            raise TaskError(f"model.likelihood must be one of {vae_lib.LIKELIHOODS}, not {m.likelihood!r}.")
        check_choice("model.upsample", m.upsample, vae_lib.UPSAMPLES)
        check_positive_int("model.latent_dim", m.latent_dim)
        check_channels("model.channels", m.channels)
        e = config.get("eval", {})
        for key in ("iwae_k", "iwae_chunk"):
            if key in e:
                check_positive_int(f"eval.{key}", e[key])
        if "iwae_k" in e and "iwae_chunk" in e and e.iwae_k % e.iwae_chunk:
            raise TaskError(f"eval.iwae_chunk={e.iwae_chunk} must divide eval.iwae_k={e.iwae_k} "
                            f"(importance samples are drawn in equal chunks).")
        image_shape = tuple(dataset.arrays["image"].shape[1:])
        scale = 2 ** len(m.channels)
        if image_shape[0] % scale or image_shape[1] % scale:
            raise TaskError(f"{dataset.name} images are {image_shape[0]}x{image_shape[1]}, not divisible by "
                            f"2**len(model.channels) = {scale}; use fewer channel levels.")
        self.model = vae_lib.VAE(latent_dim=m.latent_dim, channels=tuple(m.channels), image_shape=image_shape,
                                 num_levels=dataset.num_levels, likelihood=m.likelihood,
                                 variational=m.variational, upsample=m.upsample,
                                 dtype=precision.compute_dtype(config))
        self.num_dims = int(np.prod(image_shape))

    def init_params(self, rng, noise_rng):
        x = jnp.zeros((1,) + self.model.image_shape, jnp.int32)
        return self.model.init(rng, x, noise_rng)["params"]

    def _per_example_elbo(self, params, x, keys):
        """ELBO terms per example [B] with each example's own noise key, so the result does not
        depend on how the global batch is split over devices."""
        def one(xi, k):
            return vae_lib.elbo(params, self.model, xi[None], k)

        return jax.tree.map(lambda v: v[:, 0], jax.vmap(one)(x, keys))

    def loss_and_grads(self, params, inputs):
        """The gradient of -mean ELBO over `inputs` {"image": int [b, H, W, C], "key": [b, 2]} (the
        examples' own noise keys), as accumulate.mean_gradients wants it: (grads, metrics, None)."""
        def loss_fn(p):
            terms = self._per_example_elbo(p, inputs["image"].astype(jnp.int32), inputs["key"])
            return -jnp.mean(terms["elbo"]), terms

        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return grads, {"loss": loss, "recon": -jnp.mean(terms["recon"]), "kl": jnp.mean(terms["kl"])}, None

    def step_metrics(self, metrics, grads):
        return {**metrics, "bits_per_dim": metrics["loss"] / (self.num_dims * jnp.log(2.0))}

    @functools.partial(jax.jit, static_argnums=(0, 3))
    def sample(self, params, rng, num):
        return {"images": vae_lib.sample(params, self.model, rng, num)}

    def figures(self, state):
        """Reconstructions (odd rows: test images, even rows: their reconstructions) and latent
        interpolations between pairs of test images (one row per pair)."""
        test = self.eval_dataset()
        x = test.arrays["image"][:32].astype(np.int32)
        params = self.eval_params(state)
        recon = np.asarray(jax.jit(lambda p, x: vae_lib.reconstruct(p, self.model, x))(params, x))
        real = x.astype(np.float32) / (self.dataset.num_levels - 1)
        pairs = np.stack([real.reshape(4, 8, *real.shape[1:]), recon.reshape(4, 8, *recon.shape[1:])], 1)
        steps = 10
        lerp = jax.jit(lambda p, a, b: vae_lib.interpolate(p, self.model, a, b, steps))
        grid = np.asarray(lerp(params, x[:8], x[8:16]))
        return {"reconstructions": make_grid(pairs.reshape(-1, *real.shape[1:]), columns=8),
                "interpolations": make_grid(grid.reshape(-1, *grid.shape[2:]), columns=steps)}

    def evaluate(self, state):
        """Test-split ELBO and IWAE NLL (nats per image and bits/dim), plus reconstructions error."""
        e = self.config.eval
        test = self.eval_dataset()
        images = test.arrays["image"].astype(np.int32)
        params = self.eval_params(state)
        rng = jax.random.PRNGKey(self.config.seed + 2)
        elbo_fn = jax.jit(lambda p, x, r: vae_lib.elbo(p, self.model, x, r)["elbo"])
        elbos = np.concatenate([np.asarray(elbo_fn(params, images[i:i + e.batch_size], jax.random.fold_in(rng, i)))
                                for i in range(0, len(images), e.batch_size)])
        results = {f"test_elbo_{k}": v for k, v in likelihood.nll_summary(elbos, self.num_dims).items()}
        if self.model.variational:
            nll = likelihood.evaluate_nll(params, self.model, images, rng, k=e.iwae_k, chunk=e.iwae_chunk,
                                          batch_size=e.batch_size)
            results.update({f"test_iwae{e.iwae_k}_{k}": v for k, v in nll.items()})
        if e.get("classifier_workdir"):
            samples = self.sample(params, jax.random.PRNGKey(self.config.seed + 3), e.num_fd_samples)["images"]
            results.update(runs.classifier_judge(e.classifier_workdir).score(np.asarray(samples)))
        return results
