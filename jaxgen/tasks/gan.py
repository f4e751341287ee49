"""The GAN family as a task: Goodfellow et al. (2014) Algorithm 1, one compiled data-parallel step per
iteration.

Algorithm 1, per training iteration:
  for k steps:   sample a fresh noise minibatch {z_1..z_m} and a fresh data minibatch {x_1..x_m};
                 update D by ascending its stochastic gradient of
                 (1/m) sum_i [log D(x_i) + log(1 - D(G(z_i)))]
  then:          sample a fresh noise minibatch; update G by descending
                 (1/m) sum_i log(1 - D(G(z_i)))          (or one of the other `loss` choices)
Here k = config.train.d_steps, and the k + 1 updates form one `train_step`: the k discriminator
updates run inside one `lax.scan`, then the generator update, all in one jit-compiled call. With
train.grad_accum = m, each of the k + 1 updates computes its gradient over m micro-batches of its
minibatch (accumulate.mean_gradients) before its optimizer step: still k + 1 updates per iteration.

Batch layout. The loop hands the step one batch; for Algorithm 1 it must hold k data minibatches.
`host_batch` stacks them on the *second* axis, [B, k, ...] (minibatch j of iteration s is the
pipeline's batch of virtual step s * k + j, so every D update sees fresh data and a run still
replays exactly from (seed, step)). The data-parallel wrapper shards axis 0, so each device gets
its rows of every minibatch; the step moves k to the front and scans over it.

State: the generic TrainState with params = {"generator", "discriminator"} and opt_state of the same
structure (two optax optimizers: D's over d_steps * steps updates, G's over steps updates);
ema_params is an EMA of the *generator* params only (or None), and `eval_params` samples with it.

Networks (model.network): 'gan' (the default), jaxgen.models.gan's per-example networks (GroupNorm,
optional class conditioning and R1); 'dcgan', Radford et al.'s networks (jaxgen.models.dcgan), whose
batch norm takes the global batch's statistics inside the step (axis 'data') and the statistics of
the batch at hand when sampling, with z ~ U(-1, 1) (model.latent_dist 'uniform'). data.center_crop
> 0 crops the centre square of that size before the resize (CelebA's 218x178 faces, device-side).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxgen.data import transforms
from jaxgen.data.pipeline import Dataset
from jaxgen.eval.images import make_grid
from jaxgen.models import dcgan as dcgan_lib
from jaxgen.models import gan as gan_lib
from jaxgen.tasks import runs
from jaxgen.tasks.base import Task, TaskError, check_channels, check_choice, check_positive_int
from jaxgen.train import parallel, precision
from jaxgen.train import state as state_lib


def _discriminator_optim(optim: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The generator's optimizer section with the discriminator's learning rate (optim.d_lr, or
    optim.lr when it is 0 / absent: two time-scale runs set a different one)."""
    d = ml_collections.ConfigDict(optim.to_dict())
    d.lr = optim.get("d_lr", 0.0) or optim.lr
    return d


NETWORKS = ("gan", "dcgan")
LATENT_DISTS = ("normal", "uniform")


class GANTask(Task):
    """Unconditional or class-conditional GAN (config.model.conditional) on an image dataset."""
    fid_reference = "image"

    supports_lora = False  # two optimizers, its own step
    init_keys = 2  # the generator's and the discriminator's
    ema_of = "generator"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        m, t = config.model, config.train
        self.network = m.get("network", "gan")
        check_choice("model.network", self.network, NETWORKS)
        self.latent_dist = m.get("latent_dist", "normal")
        check_choice("model.latent_dist", self.latent_dist, LATENT_DISTS)
        crop = config.data.get("center_crop", 0)
        if not (isinstance(crop, int) and not isinstance(crop, bool) and crop >= 0):
            raise TaskError(f"data.center_crop must be an integer >= 0 (0 = no crop), not {crop!r}.")
        if crop and crop > min(dataset.arrays["image"].shape[1:3]):
            raise TaskError(f"data.center_crop={crop} is larger than the {dataset.name} images "
                            f"({dataset.arrays['image'].shape[1]}x{dataset.arrays['image'].shape[2]}).")
        check_choice("model.loss", m.loss, gan_lib.LOSSES)
        for key in ("image_size", "latent_dim") + (("d_feature_dim",) if self.network == "gan" else ()):
            check_positive_int(f"model.{key}", m[key])
        check_channels("model.g_channels", m.g_channels)
        check_channels("model.d_channels", m.d_channels)
        if not isinstance(t.d_steps, int) or t.d_steps < 1:
            raise TaskError(f"train.d_steps (k, discriminator updates per iteration) must be an integer "
                            f">= 1, not {t.d_steps!r}.")
        if m.r1_gamma < 0:
            raise TaskError(f"model.r1_gamma must be >= 0 (0 = no R1 penalty), not {m.r1_gamma!r}.")
        if self.network == "gan":
            for key in ("g_norm", "d_norm"):
                check_choice(f"model.{key}", m[key], gan_lib.NORMS)
            check_choice("model.upsample", m.upsample, gan_lib.UPSAMPLES)
        else:
            self._check_dcgan(config)
        scale = 2 ** len(m.g_channels)
        if m.image_size % scale:
            raise TaskError(f"model.image_size {m.image_size} is not divisible by 2**len(model.g_channels) "
                            f"= {scale}; use fewer generator channel levels.")
        if m.conditional and dataset.num_classes is None:
            raise TaskError(f"a conditional GAN needs a labelled dataset; {dataset.name} has no labels.")
        if (config.optim.get("d_lr", 0.0) or 0.0) < 0:
            raise TaskError(f"optim.d_lr must be positive (or 0 = optim.lr), not {config.optim.d_lr!r}.")
        self.num_classes = dataset.num_classes if m.conditional else 0
        self.batch_keys = ("image", "label") if m.conditional else ("image",)
        channels = dataset.arrays["image"].shape[-1]
        self.image_shape = (m.image_size, m.image_size, channels)
        dtype = precision.compute_dtype(config)
        if self.network == "dcgan":
            self.generator = dcgan_lib.DCGANGenerator(image_shape=self.image_shape, latent_dim=m.latent_dim,
                                                      channels=tuple(m.g_channels), kernel_size=m.kernel_size,
                                                      dtype=dtype)
            self.discriminator = dcgan_lib.DCGANDiscriminator(channels=tuple(m.d_channels),
                                                              kernel_size=m.kernel_size, dtype=dtype)
        else:
            self.generator = gan_lib.Generator(image_shape=self.image_shape, latent_dim=m.latent_dim,
                                               channels=tuple(m.g_channels), num_classes=self.num_classes,
                                               norm=m.g_norm, upsample=m.upsample, dtype=dtype)
            self.discriminator = gan_lib.Discriminator(channels=tuple(m.d_channels), num_classes=self.num_classes,
                                                       norm=m.d_norm, feature_dim=m.d_feature_dim, dtype=dtype)
        # Every update of the step (each of the k D updates, and G's) accumulates its gradient over
        # self.grad_accum micro-batches: all the losses are means of per-example terms (R1 included).
        self.g_tx = self.optimizer()
        self.d_tx = self.optimizer(_discriminator_optim(config.optim), updates_per_step=t.d_steps)

    @staticmethod
    def _check_dcgan(config):
        """What the DCGAN networks cannot do, each in one sentence."""
        m = config.model
        check_positive_int("model.kernel_size", m.get("kernel_size"))
        if m.conditional:
            raise TaskError("model.network='dcgan' is unconditional; set model.conditional=False (or use "
                            "model.network='gan' for a class-conditional GAN).")
        if m.r1_gamma:
            raise TaskError("model.network='dcgan' normalises its discriminator over the batch, so the per-example "
                            "R1 penalty is not defined for it; set model.r1_gamma=0.")
        if config.train.get("grad_accum", 1) > 1:
            raise TaskError("model.network='dcgan' cannot accumulate gradients (train.grad_accum > 1): its batch "
                            "norm would take each micro-batch's statistics, a different step; use more devices.")
        size = m.image_size
        if size % 2 ** len(m.d_channels):
            raise TaskError(f"model.image_size {size} is not divisible by 2**len(model.d_channels) = "
                            f"{2 ** len(m.d_channels)}; use fewer discriminator channel levels.")

    # ---- data ------------------------------------------------------------------------------------
    def host_batch(self, step, process_index=0, process_count=1):
        """k fresh minibatches for iteration `step`, stacked as [B_local, k, ...] (see module doc)."""
        t = self.config.train
        batches = [self.dataset.batch(self.config.seed, step * t.d_steps + j, t.batch_size, process_index,
                                      process_count, keys=self.batch_keys) for j in range(t.d_steps)]
        return {key: np.stack([b[key] for b in batches], axis=1) for key in self.batch_keys}

    def preprocess(self, images: jax.Array) -> jax.Array:
        """Integer images [N, h, w, C] -> float [N, S, S, C] in [-1, 1] at model.image_size (bilinear
        resize, as the digits classifier does)."""
        x = transforms.to_unit(images, self.dataset.num_levels)
        crop = self.config.data.get("center_crop", 0)
        if crop:  # the centre square, then an antialiased resize (down-sampling a face 108 -> 64)
            return transforms.center_crop_resize(x, crop, self.config.model.image_size) * 2.0 - 1.0
        x = transforms.resize(x, self.config.model.image_size)
        return x * 2.0 - 1.0

    def fid_reference_images(self, num: int, size: int, split: Dataset | None = None) -> np.ndarray:
        """With data.center_crop, the held-out images cut to their centre square before the resize,
        as preprocess cuts the training images (a plain resize would squash CelebA's 218x178 faces
        into a square, and FID would measure the squashing); in chunks, since whole 218x178 splits
        are gigabytes as float."""
        crop = self.config.data.get("center_crop", 0)
        if not crop:
            return super().fid_reference_images(num, size, split)
        test = self.fid_reference_dataset() if split is None else split
        images = test.arrays[self.fid_reference][:num]
        chunks = []
        for i in range(0, len(images), 256):
            unit = transforms.to_unit(jnp.asarray(images[i:i + 256]), test.num_levels)
            chunks.append(np.asarray(transforms.center_crop_resize(unit, crop, size)))
        return np.concatenate(chunks)

    # ---- state -----------------------------------------------------------------------------------
    def init_params(self, g_rng, d_rng):
        z = jnp.zeros((1, self.config.model.latent_dim))
        y = jnp.zeros((1,), jnp.int32) if self.num_classes else None
        return {"generator": self.generator.init(g_rng, z, y)["params"],
                "discriminator": self.discriminator.init(d_rng, jnp.zeros((1,) + self.image_shape), y)["params"]}

    def new_state(self, params, rng):
        """Step 0: one optimizer state per player, and the generator's EMA when the run keeps one."""
        opt_state = {"generator": self.g_tx.init(params["generator"]),
                     "discriminator": self.d_tx.init(params["discriminator"])}
        return state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, rng=rng,
                                    ema_params=self.ema_copy(params))

    # ---- the two players -------------------------------------------------------------------------
    def _noise(self, keys: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """Per-example z [b, latent] and fake labels [b] (None if unconditional) from the examples'
        own keys [b, 2] (`parallel.example_keys` of the global minibatch, so the noise of an example
        does not depend on the device split or on the micro-batch it falls in)."""
        z = self._latents(jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys))
        if not self.num_classes:
            return z, None
        return z, gan_lib.random_labels(jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys), self.num_classes)

    def _latents(self, keys: jax.Array) -> jax.Array:
        """z [b, latent] from per-example keys [b, 2]: N(0, I) or U(-1, 1) (model.latent_dist)."""
        if self.latent_dist == "uniform":
            return dcgan_lib.uniform_latents(keys, self.config.model.latent_dim)
        return gan_lib.latents(keys, self.config.model.latent_dim)

    def _g(self, params, z, y, train: bool = False):
        """The generator; `train` (inside the data-parallel step) gives DCGAN's batch norm the
        statistics of the global batch, over the devices."""
        if self.network == "dcgan":
            return self.generator.apply({"params": params}, z, y, parallel.AXIS if train else None)
        return self.generator.apply({"params": params}, z, y)

    def _d(self, params, x, y, train: bool = False):
        if self.network == "dcgan":
            return self.discriminator.apply({"params": params}, x, y, parallel.AXIS if train else None)
        return self.discriminator.apply({"params": params}, x, y)

    def discriminator_phase(self, state, x, y):
        """Algorithm 1's inner loop: k discriminator updates, each on fresh noise and the data
        minibatch x[j] ([k, B_local, H, W, C]; labels y [k, B_local] or None). The generator's params
        are only read. Returns (discriminator params, its optimizer state, metrics averaged over
        the k updates)."""
        m = self.config.model
        rng, g_params = state_lib.step_rng(state), state.params["generator"]

        def d_grads(d_params, inputs):
            """D's gradient on real images inputs["x"] (labels inputs["y"]) and as many fakes from
            the examples' keys inputs["key"]: (grads, metrics, None) for accumulate."""
            xj, yj = inputs["x"], inputs.get("y")
            z, y_fake = self._noise(inputs["key"])
            fake = self._g(g_params, z, y_fake, train=True)

            def loss_fn(dp):
                real_l, fake_l = self._d(dp, xj, yj, train=True), self._d(dp, fake, y_fake, train=True)
                loss = gan_lib.discriminator_loss(real_l, fake_l, m.loss)
                r1 = gan_lib.r1_penalty(lambda im: self._d(dp, im, yj), xj) if m.r1_gamma else jnp.zeros(())
                return loss + 0.5 * m.r1_gamma * r1, (loss, r1, real_l, fake_l)

            (_, (loss, r1, real_l, fake_l)), grads = jax.value_and_grad(loss_fn, has_aux=True)(d_params)
            return grads, {"d_loss": loss, "r1": r1, "d_real": jnp.mean(jax.nn.sigmoid(real_l)),
                           "d_fake": jnp.mean(jax.nn.sigmoid(fake_l)),
                           "d_accuracy": gan_lib.discriminator_accuracy(real_l, fake_l)}, None

        def one_update(carry, inputs):
            d_params, d_opt = carry
            j, xj, yj = inputs
            micro = {"x": xj, "key": parallel.example_keys(jax.random.fold_in(rng, j), xj.shape[0])}
            if yj is not None:
                micro["y"] = yj
            d_params, d_opt, grads, metrics, _ = self.update_player(d_grads, d_params, d_opt, self.d_tx, micro)
            metrics["d_grad_norm"] = optax.tree.norm(grads)
            return (d_params, d_opt), metrics

        k = x.shape[0]
        ys = y if y is not None else jnp.zeros(x.shape[:2], jnp.int32)  # scan needs an array
        carry = (state.params["discriminator"], state.opt_state["discriminator"])
        (d_params, d_opt), metrics = jax.lax.scan(
            lambda c, inp: one_update(c, (inp[0], inp[1], inp[2] if y is not None else None)),
            carry, (jnp.arange(k), x, ys))
        return d_params, d_opt, jax.tree.map(jnp.mean, metrics)

    def generator_phase(self, state, d_params, batch_size: int):
        """Algorithm 1's generator update on fresh noise against the updated discriminator (whose
        params are only read). Returns (generator params, its optimizer state, metrics)."""
        m = self.config.model
        keys = parallel.example_keys(jax.random.fold_in(state_lib.step_rng(state), self.config.train.d_steps),
                                     batch_size)

        def g_grads(g_params, inputs):
            z, y_fake = self._noise(inputs["key"])

            def loss_fn(gp):
                fake_l = self._d(d_params, self._g(gp, z, y_fake, train=True), y_fake, train=True)
                return gan_lib.generator_loss(fake_l, m.loss), fake_l

            (loss, fake_l), grads = jax.value_and_grad(loss_fn, has_aux=True)(g_params)
            return grads, {"g_loss": loss, "d_fake_g": jnp.mean(jax.nn.sigmoid(fake_l))}, None

        g_params, g_opt, grads, metrics, _ = self.update_player(
            g_grads, state.params["generator"], state.opt_state["generator"], self.g_tx, {"key": keys})
        metrics["g_grad_norm"] = optax.tree.norm(grads)
        return g_params, g_opt, metrics

    def train_step(self, state, batch):
        x = jnp.swapaxes(self.preprocess_stacked(batch["image"]), 0, 1)  # [k, B_local, H, W, C]
        y = jnp.swapaxes(batch["label"], 0, 1).astype(jnp.int32) if self.num_classes else None
        d_params, d_opt, d_metrics = self.discriminator_phase(state, x, y)
        g_params, g_opt, g_metrics = self.generator_phase(state, d_params, x.shape[1])
        params = {"generator": g_params, "discriminator": d_params}
        state = state.replace(step=state.step + 1, params=params, ema_params=self.ema_update(state, params),
                              opt_state={"generator": g_opt, "discriminator": d_opt})
        metrics = {**d_metrics, **g_metrics}
        # The loop needs one "loss" to watch for NaN/inf: the sum of the two players' losses.
        metrics["loss"] = metrics["d_loss"] + metrics["g_loss"]
        return state, parallel.pmean(metrics)

    def preprocess_stacked(self, images: jax.Array) -> jax.Array:
        """preprocess over a [B, k, h, w, C] stack of minibatches -> [B, k, S, S, C]."""
        b, k = images.shape[:2]
        return self.preprocess(images.reshape((b * k,) + images.shape[2:])).reshape(
            (b, k) + self.image_shape)

    # ---- sampling --------------------------------------------------------------------------------
    @functools.partial(jax.jit, static_argnums=(0,))
    def _generate(self, params, keys, labels):
        """Images [N, H, W, C] in [0, 1] from per-sample keys [N, 2] and labels [N] (ignored if
        unconditional)."""
        z = self._latents(keys)
        x = self._g(params["generator"], z, labels if self.num_classes else None)
        return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)

    def sample(self, params, rng, num):
        """{"images": float [num, H, W, C] in [0, 1]} (+ "labels" [num], cycling 0..9, if conditional)."""
        labels = gan_lib.cycling_labels(num, max(self.num_classes, 1))
        out = {"images": self._generate(params, jax.random.split(rng, num), labels)}
        if self.num_classes:
            out["labels"] = labels
        return out

    def _samples(self, params, rng, num: int) -> tuple[np.ndarray, np.ndarray]:
        """`num` samples in chunks of eval.batch_size (labels cycling over the whole set)."""
        keys, labels = jax.random.split(rng, num), gan_lib.cycling_labels(num, max(self.num_classes, 1))
        step = self.config.eval.batch_size
        images = [np.asarray(self._generate(params, keys[i:i + step], labels[i:i + step]))
                  for i in range(0, num, step)]
        return np.concatenate(images), np.asarray(labels)

    def figures(self, state):
        """A 10 x 10 grid of samples from fixed noise; conditional: row r = class r."""
        params = self.eval_params(state)
        rng = jax.random.PRNGKey(self.config.seed + 1)
        if self.num_classes:
            keys = jnp.repeat(jax.random.split(rng, 10), self.num_classes, axis=0)  # same z down a column
            labels = jnp.tile(jnp.arange(self.num_classes, dtype=jnp.int32), 10)
            images = np.asarray(self._generate(params, keys, labels))
            grid = images.reshape(10, self.num_classes, *images.shape[1:]).swapaxes(0, 1)
            return {"samples_per_class": make_grid(grid.reshape(-1, *images.shape[1:]), columns=10)}
        images, _ = self._samples(params, rng, 100)
        return {"samples": make_grid(images, columns=10)}

    # ---- evaluation ------------------------------------------------------------------------------
    def evaluate(self, state):
        """Discriminator outputs on test data and samples, sample diversity, and - with
        eval.classifier_workdir - the digits-classifier metrics of every family (ClassifierJudge.score:
        Frechet distances, precision / recall, class coverage, and for a conditional GAN the accuracy
        of the requested class)."""
        e = self.config.eval
        params = self.eval_params(state)
        images, labels = self._samples(params, jax.random.PRNGKey(self.config.seed + 3), e.num_fd_samples)
        test = self.eval_dataset()
        d_fn = jax.jit(lambda p, x, y: jax.nn.sigmoid(self._d(p, x, y if self.num_classes else None)))
        x_test = self.preprocess(test.arrays["image"][:e.batch_size])
        y_test = jnp.asarray(test.arrays["label"][:e.batch_size], jnp.int32) if self.num_classes else None
        n = min(e.batch_size, len(images))
        results = {
            "d_real_test": float(jnp.mean(d_fn(params["discriminator"], x_test, y_test))),
            "d_fake": float(jnp.mean(d_fn(params["discriminator"], images[:n] * 2.0 - 1.0,
                                          jnp.asarray(labels[:n]) if self.num_classes else None))),
            # mean over pixels of the std across samples: 0 for a collapsed (constant) generator
            "sample_pixel_std": float(images.std(axis=0).mean()),
        }
        if e.get("classifier_workdir"):
            results.update(self._judge(images, labels))
        return results

    def _judge(self, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        e = self.config.eval
        judge = runs.classifier_judge(e.classifier_workdir)
        return judge.score(images, labels if self.num_classes else None, pr_k=e.pr_k)
