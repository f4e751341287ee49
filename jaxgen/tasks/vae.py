"""The VAE family as a task: train on -ELBO (or the k-sample IWAE bound), sample from the prior,
evaluate the IWAE test NLL.

Images stay integers 0..num_levels-1 all the way into the model (the likelihood is discrete), so the
VAE runs at the dataset's native resolution.

Two networks (config model.network):
  'conv' (the default): jaxgen.models.vae.VAE, a conv VAE trained on the one-sample ELBO with the
         analytic KL;
  'mlp':   jaxgen.models.iwae.IWAE, Burda et al.'s (2016) fully connected model with one or more
         stochastic layers (model.latent_dims, model.hidden), trained on the k-sample objective
         model.objective ('elbo' or 'iwae') with k = model.train_samples.
data.binarize = 'dynamic' binarizes each image afresh every time it is seen (pixel ~
Bernoulli(level / (L - 1)) from the example's own key, a pure function of (seed, step, example): a
resumed run replays the same bits), and the test split once, with a fixed key; the model then sees
2 levels. Burda et al.'s learning-rate schedule and Adam epsilon are the optim section's
(optim.schedule='burda', optim.eps: jaxgen.train.optim).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import is_int
from jaxgen.data import transforms
from jaxgen.eval import likelihood
from jaxgen.eval.images import make_grid
from jaxgen.models import iwae as iwae_lib
from jaxgen.models import vae as vae_lib
from jaxgen.tasks import runs
from jaxgen.tasks.base import Task, TaskError, check_channels, check_choice, check_positive_int
from jaxgen.train import precision

NETWORKS = ("conv", "mlp")
BINARIZE = ("none", "dynamic")
# fold_in constants that split an example's key into independent streams (mlp / binarized runs)
_NOISE_STREAM, _BINARIZE_STREAM = 0, 1


class VAETask(Task):
    batch_keys = ("image",)
    fid_reference = "image"
    init_keys = 2  # the model's params and its posterior noise at init

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        m = config.model
        self.network = m.get("network", "conv")
        check_choice("model.network", self.network, NETWORKS)
        self.binarize = config.data.get("binarize", "none")
        check_choice("data.binarize", self.binarize, BINARIZE)
        #: the pixel levels the model sees: 2 once binarized
        self.num_levels = 2 if self.binarize == "dynamic" else dataset.num_levels
        e = config.get("eval", {})
        for key in ("iwae_k", "iwae_chunk"):
            if key in e:
                check_positive_int(f"eval.{key}", e[key])
        if "iwae_k" in e and "iwae_chunk" in e and e.iwae_k % e.iwae_chunk:
            raise TaskError(f"eval.iwae_chunk={e.iwae_chunk} must divide eval.iwae_k={e.iwae_k} "
                            f"(importance samples are drawn in equal chunks).")
        image_shape = tuple(dataset.arrays["image"].shape[1:])
        self.num_dims = int(np.prod(image_shape))
        if self.network == "mlp":
            self._init_mlp(m, image_shape)
            return
        check_choice("model.likelihood", m.likelihood, vae_lib.LIKELIHOODS)
        check_choice("model.upsample", m.upsample, vae_lib.UPSAMPLES)
        check_positive_int("model.latent_dim", m.latent_dim)
        check_channels("model.channels", m.channels)
        if m.get("objective", "elbo") != "elbo" or m.get("train_samples", 1) != 1:
            raise TaskError("model.network='conv' trains on the one-sample ELBO only; the k-sample objectives "
                            "(model.objective, model.train_samples) are those of model.network='mlp'.")
        scale = 2 ** len(m.channels)
        if image_shape[0] % scale or image_shape[1] % scale:
            raise TaskError(f"{dataset.name} images are {image_shape[0]}x{image_shape[1]}, not divisible by "
                            f"2**len(model.channels) = {scale}; use fewer channel levels.")
        self.model = vae_lib.VAE(latent_dim=m.latent_dim, channels=tuple(m.channels), image_shape=image_shape,
                                 num_levels=self.num_levels, likelihood=m.likelihood,
                                 variational=m.variational, upsample=m.upsample,
                                 dtype=precision.compute_dtype(config))

    def _init_mlp(self, m, image_shape):
        """Burda et al.'s model (jaxgen.models.iwae) on binary images, after checking its fields."""
        dims, hidden = m.get("latent_dims"), m.get("hidden")
        if not (isinstance(dims, (tuple, list)) and dims and all(is_int(d) and d >= 1 for d in dims)):
            raise TaskError(f"model.latent_dims must be a non-empty list of positive integers (one per stochastic "
                            f"layer), e.g. (100, 50), not {dims!r}.")
        if not (isinstance(hidden, (tuple, list)) and len(hidden) == len(dims) and all(
                isinstance(h, (tuple, list)) and all(is_int(w) and w >= 1 for w in h) for h in hidden)):
            raise TaskError(f"model.hidden must hold one list of positive widths per stochastic layer "
                            f"({len(dims)}), e.g. ((200, 200), (100, 100)), not {hidden!r}.")
        check_choice("model.objective", m.get("objective", "elbo"), iwae_lib.OBJECTIVES)
        check_positive_int("model.train_samples", m.get("train_samples", 1))
        if m.get("likelihood", "bernoulli") != "bernoulli":
            raise TaskError(f"model.network='mlp' has a Bernoulli likelihood, not {m.likelihood!r}.")
        if self.num_levels != 2:
            raise TaskError(f"model.network='mlp' models binary images, but {self.dataset.name} has "
                            f"{self.num_levels} levels; set data.binarize='dynamic'.")
        self.model = iwae_lib.IWAE(image_shape=image_shape, latent_dims=tuple(dims),
                                   hidden=tuple(tuple(h) for h in hidden))
        # Burda et al.'s code starts p(x|h_1)'s output bias at the logit of the mean training image
        # (clipped to [0.001, 0.999]): the untrained model already predicts the average digit.
        mean = self.dataset.arrays["image"].reshape(self.dataset.num_examples, -1).mean(0) / (
            self.dataset.num_levels - 1)
        mean = np.clip(mean, 0.001, 0.999)
        self._output_bias = np.log(mean / (1.0 - mean)).astype(np.float32)

    def init_params(self, rng, noise_rng):
        x = jnp.zeros((1,) + self.model.image_shape, jnp.int32)
        params = self.model.init(rng, x, noise_rng)["params"]
        if self.network == "mlp":
            params["p_x"]["logits"]["bias"] = jnp.asarray(self._output_bias)
        return params

    def _binarized(self, images, keys):
        """The images the model sees: integer images [b, H, W, C] as int32, or with data.binarize =
        'dynamic' their fresh binarization from the examples' keys [b, 2] (a stream of their own)."""
        if self.binarize == "none":
            return images.astype(jnp.int32)
        keys = jax.vmap(lambda k: jax.random.fold_in(k, _BINARIZE_STREAM))(keys)
        return transforms.dynamic_binarize(images, keys, self.dataset.num_levels)

    def _per_example_elbo(self, params, x, keys):
        """ELBO terms per example [B] with each example's own noise key, so the result does not
        depend on how the global batch is split over devices."""
        def one(xi, k):
            return vae_lib.elbo(params, self.model, xi[None], k)

        return jax.tree.map(lambda v: v[:, 0], jax.vmap(one)(x, keys))

    def _per_example_objective(self, params, x, keys):
        """The mlp network's k-sample objective per example [B] (model.objective, k =
        model.train_samples), each example on its own noise stream."""
        m = self.config.model

        def one(xi, k):
            noise = jax.random.fold_in(k, _NOISE_STREAM)
            return iwae_lib.objective(params, self.model, xi[None], noise, m.get("train_samples", 1),
                                      m.get("objective", "elbo"))[0]

        return jax.vmap(one)(x, keys)

    def loss_and_grads(self, params, inputs):
        """The gradient of -mean ELBO over `inputs` {"image": int [b, H, W, C], "key": [b, 2]} (the
        examples' own noise keys), as accumulate.mean_gradients wants it: (grads, metrics, None).
        The mlp network descends its k-sample objective instead."""
        x = self._binarized(inputs["image"], inputs["key"])
        if self.network == "mlp":
            loss, grads = jax.value_and_grad(
                lambda p: -jnp.mean(self._per_example_objective(p, x, inputs["key"])))(params)
            return grads, {"loss": loss}, None

        def loss_fn(p):
            terms = self._per_example_elbo(p, x, inputs["key"])
            return -jnp.mean(terms["elbo"]), terms

        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return grads, {"loss": loss, "recon": -jnp.mean(terms["recon"]), "kl": jnp.mean(terms["kl"])}, None

    def step_metrics(self, metrics, grads):
        return {**metrics, "bits_per_dim": metrics["loss"] / (self.num_dims * jnp.log(2.0))}

    @functools.partial(jax.jit, static_argnums=(0, 3))
    def sample(self, params, rng, num):
        if self.network == "mlp":
            return {"images": self.model.apply({"params": params}, rng, num, method=iwae_lib.IWAE.generate)}
        return {"images": vae_lib.sample(params, self.model, rng, num)}

    def _eval_images(self) -> np.ndarray:
        """The test split's images as the model sees them [N, H, W, C] int32: with data.binarize =
        'dynamic' binarized once, example i from fold_in(PRNGKey(seed + 4), i), so that every
        evaluation of every run scores the same bits."""
        images = self.eval_dataset().arrays["image"].astype(np.int32)
        if self.binarize == "none":
            return images
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(self.config.seed + 4), i))(
            jnp.arange(len(images)))
        return np.asarray(jax.jit(self._binarized)(images, keys))

    def figures(self, state):
        """Reconstructions (odd rows: test images, even rows: their reconstructions) and latent
        interpolations between pairs of test images (one row per pair). The mlp network: a 10 x 10
        grid of its samples (the Bernoulli means of ancestral draws)."""
        params = self.eval_params(state)
        if self.network == "mlp":
            images = np.asarray(self.sample(params, jax.random.PRNGKey(self.config.seed + 1), 100)["images"])
            return {"samples": make_grid(images, columns=10)}
        x = self._eval_images()[:32]
        recon = np.asarray(jax.jit(lambda p, x: vae_lib.reconstruct(p, self.model, x))(params, x))
        real = x.astype(np.float32) / (self.num_levels - 1)
        pairs = np.stack([real.reshape(4, 8, *real.shape[1:]), recon.reshape(4, 8, *recon.shape[1:])], 1)
        steps = 10
        lerp = jax.jit(lambda p, a, b: vae_lib.interpolate(p, self.model, a, b, steps))
        grid = np.asarray(lerp(params, x[:8], x[8:16]))
        return {"reconstructions": make_grid(pairs.reshape(-1, *real.shape[1:]), columns=8),
                "interpolations": make_grid(grid.reshape(-1, *grid.shape[2:]), columns=steps)}

    def evaluate(self, state):
        """Test-split ELBO and IWAE NLL (nats per image and bits/dim), plus reconstructions error."""
        e = self.config.eval
        images = self._eval_images()
        params = self.eval_params(state)
        rng = jax.random.PRNGKey(self.config.seed + 2)
        if self.network == "mlp":
            return self._evaluate_mlp(params, images, rng)
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

    def _evaluate_mlp(self, params, images, rng):
        """Burda et al.'s test numbers: the one-sample ELBO L_1 and the k-sample bound L_k (k =
        eval.iwae_k, 5000 in the paper: their test NLL), each as nats per image and bits/dim, and
        the active units per stochastic layer (Cov_x E_q[u] > 0.01, sec. 5.2)."""
        e = self.config.eval
        k, chunk = e.iwae_k, e.iwae_chunk
        elbo = jax.jit(lambda p, x, r: iwae_lib.objective(p, self.model, x, r, 1, "elbo"))
        bound = jax.jit(lambda p, x, r: iwae_lib.iwae_bound(p, self.model, x, r, k, chunk))
        results = {}
        for name, fn in (("elbo", elbo), (f"iwae{k}", bound)):
            scores = likelihood.batched(lambda x, i: fn(params, x, jax.random.fold_in(rng, i)), images, e.batch_size)
            results.update({f"test_{name}_{key}": v for key, v in likelihood.nll_summary(scores, self.num_dims).items()})
        means_fn = jax.jit(lambda p, x: self.model.apply({"params": p}, x, method=iwae_lib.IWAE.posterior_means))
        means = [np.concatenate(m) for m in zip(*[means_fn(params, images[i:i + e.batch_size])
                                                   for i in range(0, len(images), e.batch_size)])]
        for layer, count in enumerate(iwae_lib.active_units(means), start=1):
            results[f"active_units_layer{layer}"] = count
        return results

