"""Diffusion models as a task: train the denoiser on the simple (or min-SNR) loss, or by flow
matching, sample with DDPM/DDIM, the ODE solvers or the flow's Euler/Heun and classifier-free
guidance, evaluate the likelihood bound and sample quality.

model.process picks how the network learns to generate:
- 'ddpm' (the default): noise prediction on the discrete chain of model.schedule (process.py,
  losses.py), sampled by sample.method in sampling.METHODS;
- 'flow': flow matching on the straight path x_t = (1 - t) x_0 + t e (flow.py): the same network
  regresses the velocity e - x_0 at times drawn from model.flow_time ('logit_normal' with
  model.flow_time_mean / flow_time_std, or 'uniform'), shifted by model.flow_shift, and is sampled
  by sample.method 'euler' or 'heun' on the same shifted time grid. The network sees
  model.timesteps * t as its time (flow.network_time). The DDPM-only fields (schedule,
  parameterization, loss_weighting, the likelihood bound of eval.vlb) do not apply.

Images are scaled to [-1, 1] at `data.image_size` (bilinear from the dataset's resolution; at the
native resolution the data stay on their discrete grid, so the bound in bits/dim is a bound on the
same discrete likelihood the VAE reports).

model.latent_from (absent or "": pixel space) names a trained `autoencoder` run folder or pretrained
autoencoder: latent diffusion (Rombach et al. 2022, jaxgen.tasks.latent). The chain then runs over
that autoencoder's scaled latents `x_shape` = [h, w, z] instead of the images `image_shape`: the
training images come as precomputed posterior moments, the step draws the latents, sampling decodes
them to images at data.image_size. The autoencoder stays frozen, outside the train state
(`frozen_sources`, as unCLIP's CLIP). Data augmentation (random_flip / random_crop), thresholding
and the likelihood bound are pixel-space tools and are refused.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.config import is_finite_number
from jaxgen.data import transforms
from jaxgen.eval.images import make_grid
from jaxgen.models.diffusion import flow, likelihood, losses, process, sampling, schedules, training
from jaxgen.models.diffusion.dit import DiT
from jaxgen.models.diffusion.network import ARCHITECTURES, Denoiser, null_condition
from jaxgen.tasks import latent as latent_lib
from jaxgen.tasks import runs
from jaxgen.tasks.base import (Task, TaskError, check_channels, check_choice, check_positive_int, check_range,
                               task_errors)
from jaxgen.train import precision

CONDITIONINGS = ("none", "class")
# model.network: the Denoiser's U-Nets (network.ARCHITECTURES: jaxgen's, Ho et al.'s) or the DiT.
NETWORKS = ARCHITECTURES + ("dit",)
FLIP_STREAM = 0xF11B  # folded into an example's key for its data.random_flip draw
# The flow-matching fields of the model section, for configs (and runs) written before they existed.
FLOW_DEFAULTS = {"process": "ddpm", "flow_time": "logit_normal", "flow_time_mean": 0.0, "flow_time_std": 1.0,
                 "flow_shift": 1.0}


class DiffusionTask(Task):
    #: the model.conditioning values this task accepts (a subclass adds its own, e.g. text)
    conditionings = CONDITIONINGS
    supports_random_flip = True
    supports_random_crop = True
    fid_reference = "image"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        m, s = config.model, config.sample
        self.flow_config = {k: m.get(k, v) for k, v in FLOW_DEFAULTS.items()}
        self.process = self.flow_config["process"]
        check_choice("model.conditioning", m.conditioning, self.conditionings)
        check_choice("model.parameterization", m.parameterization, process.PARAMETERIZATIONS)
        check_choice("model.loss_weighting", m.loss_weighting, losses.WEIGHTINGS)
        check_choice("model.schedule", m.schedule, schedules.SCHEDULES)
        self.check_process(s.method)
        check_channels("model.channels", m.channels)
        check_positive_int("model.timesteps", m.timesteps)
        check_positive_int("data.image_size", config.data.image_size)
        check_range("model.dropout", m.dropout, 0.0, 1.0)
        if m.conditioning == "class" and dataset.num_classes is None:
            raise TaskError(f"class conditioning needs a labelled dataset; {dataset.name} has no labels.")
        if not 0.0 <= m.cond_drop_prob < 1.0:
            raise TaskError(f"model.cond_drop_prob must be in [0, 1), not {m.cond_drop_prob}.")
        size = config.data.image_size
        source = m.get("latent_from", "")
        if not source and size % 2 ** (len(m.channels) - 1):
            raise TaskError(f"data.image_size={size} must be divisible by 2**(len(model.channels)-1) = "
                            f"{2 ** (len(m.channels) - 1)}.")
        for key in ("attention_levels", "cross_attention_levels"):
            bad = [lv for lv in (m.get(key) or ()) if not 0 <= lv < len(m.channels)]
            if bad:
                raise TaskError(f"model.{key} must be level indices in 0..{len(m.channels) - 1} "
                                f"(one per model.channels entry), not {list(m.get(key))}.")
        self.num_classes = dataset.num_classes if m.conditioning == "class" else 0
        self.native = dataset.arrays["image"].shape[1] == size
        #: the images the task makes [H, W, C] (at data.image_size)
        self.image_shape = (size, size, dataset.arrays["image"].shape[-1])
        #: the latent space of model.latent_from (None: pixel space)
        self.latent = None
        if source:
            self.latent = self._latent_space(source)
            self.native = False  # no discrete likelihood in latent space
        #: the shape of the chain's x: the images, or the latent grid [h, w, z]
        self.x_shape = self.image_shape if self.latent is None else self.latent.shape
        #: the batch features that carry the training images (pixels, or their latents' moments)
        self.image_keys = ("image",) if self.latent is None else latent_lib.KEYS
        self.batch_keys = self.image_keys + ("label",) if self.num_classes else self.image_keys
        self.model = self.network()
        # What the sampler integrates: the noise chain, or the flow's time scale and shift.
        self.schedule = (flow.FlowSchedule(float(m.timesteps), float(self.flow_config["flow_shift"]))
                         if self.process == "flow" else schedules.make(m.schedule, m.timesteps))
        self.objective = training.Objective(
            self.schedule, m.parameterization, m.loss_weighting, m.min_snr_gamma, m.cond_drop_prob,
            **{k: self.flow_config[k] for k in ("flow_time", "flow_time_mean", "flow_time_std")})
        self.sample_settings()  # the config's own, checked before anything runs
        self.chains = sampling.Chains()

    def _latent_space(self, source: str) -> latent_lib.LatentSpace:
        """The frozen autoencoder's latent space for model.latent_from=`source`, after refusing the
        pixel-space settings (one sentence each, before the autoencoder is loaded)."""
        m, d = self.config.model, self.config.data
        if d.get("random_flip") or d.get("random_crop", 0):
            raise TaskError("model.latent_from trains on precomputed latents of the training images, which "
                            "are never flipped or cropped; set data.random_flip=False and data.random_crop=0.")
        if self.config.sample.thresholding != "none":
            raise TaskError(f"sample.thresholding={self.config.sample.thresholding!r} clips x0 to the [-1, 1] of "
                            f"pixels; latents (model.latent_from) are unbounded: set sample.thresholding='none'.")
        space = latent_lib.LatentSpace(source, self.dataset, self.config.data.image_size)
        levels = 2 ** (len(m.channels) - 1)
        if space.shape[0] % levels:
            raise TaskError(f"the {space.shape[0]}x{space.shape[1]} latents of model.latent_from must be divisible "
                            f"by 2**(len(model.channels)-1) = {levels}; use fewer channel levels.")
        self.frozen_sources = ("model.latent_from",)
        return space

    def check_process(self, method: str) -> None:
        """TaskError unless model.process and its fields are valid and sample.method samples that
        process (the flow fields are checked whatever the process: a typo there is still a typo)."""
        m, f = self.config.model, self.flow_config
        check_choice("model.process", self.process, sampling.PROCESSES)
        check_choice("model.flow_time", f["flow_time"], flow.TIME_DISTRIBUTIONS)
        if not is_finite_number(f["flow_time_mean"]):
            raise TaskError(f"model.flow_time_mean must be a finite number, not {f['flow_time_mean']!r}.")
        for name in ("flow_time_std", "flow_shift"):
            if not (is_finite_number(f[name]) and f[name] > 0):
                raise TaskError(f"model.{name} must be a finite number > 0, not {f[name]!r}.")
        other = "flow" if self.process == "ddpm" else "ddpm"
        if method in sampling.methods(other):
            raise TaskError(f"sample.method={method!r} samples a model.process={other!r} model; this "
                            f"model.process={self.process!r} model samples with one of "
                            f"{', '.join(sampling.methods(self.process))}.")
        check_choice("sample.method", method, sampling.methods(self.process))
        if self.process == "flow":
            # A flow model regresses the velocity with time weighted by its time density: these
            # DDPM settings would silently do nothing.
            for name, default in (("parameterization", "eps"), ("loss_weighting", "simple")):
                if m[name] != default:
                    raise TaskError(f"model.{name}={m[name]!r} applies to model.process='ddpm' only (a flow "
                                    f"model regresses the velocity e - x0); leave it at {default!r}.")

    # ---- data and network ------------------------------------------------------------------------
    def preprocess(self, images: jax.Array) -> jax.Array:
        """Integer images [B, h, w, C] -> float [B, S, S, C] in [-1, 1] at data.image_size."""
        unit = transforms.resize(transforms.to_unit(images, self.dataset.num_levels), self.image_shape[0])
        return 2.0 * unit - 1.0

    def diffusion_target(self, inputs: dict[str, jax.Array]) -> jax.Array:
        """The x0 [B, *x_shape] the chain learns to produce for a training batch: its images in [-1, 1]
        (a super-resolution stage may diffuse a residual instead, see Text2ImageTask), or in latent
        space the scaled posterior samples of their latents."""
        if self.latent is not None:
            return self.latent.to_latent(inputs["latent_mean"], inputs["latent_std"], inputs["key"])
        return self.preprocess(inputs["image"])

    def train_rows(self):
        """The training split as the batches read it: the dataset, in latent space with the latents'
        moments (jaxgen.tasks.latent.KEYS) added (computed on first use; a new Dataset, the loaded
        split stays read-only)."""
        if self.latent is None:
            return self.dataset
        return dataclasses.replace(self.dataset, arrays={**self.dataset.arrays, **self.latent.training_moments()})

    def host_batch(self, step, process_index=0, process_count=1):
        if self.latent is None:
            return super().host_batch(step, process_index, process_count)
        self.latent.prepare()
        return self.train_rows().batch(self.config.seed, step, self.config.train.batch_size, process_index,
                                       process_count, keys=self.batch_keys)

    def chain_output(self, x: jax.Array) -> jax.Array:
        """Inside a sampling chain: its final x -> what the chain returns: images in [0, 1] (pixel
        space) or the latents themselves, decoded after by `finish`."""
        return sampling.to_unit(x) if self.latent is None else x

    def finish(self, out: np.ndarray, stats: dict[str, float]) -> tuple[np.ndarray, dict[str, float]]:
        """(images [N, H, W, C] in [0, 1], stats) from a chain's output (see chain_output)."""
        return (out, stats) if self.latent is None else self.latent.finish(out, stats)

    def frozen_fingerprints(self) -> dict[str, str]:
        return {} if self.latent is None else {"model.latent_from": self.latent.fingerprint}

    def save_assets(self, workdir):
        if self.latent is not None:
            self.latent.save(workdir)

    def load_assets(self, workdir):
        if self.latent is not None:
            self.latent.load(workdir)

    def network(self, **extra) -> Denoiser | DiT:
        """The config's denoiser: model.network 'unet' (jaxgen's U-Net; the default, also for runs
        saved before the field existed), 'ddpm' (Ho et al.'s U-Net, network.DDPMUNet: the same
        fields) or 'dit' (the transformer, with model.patch_size, hidden_size, depth, num_heads and
        mlp_ratio); `extra` sets further fields of either (e.g. context_dim)."""
        m = self.config.model
        kind = m.get("network", "unet")
        check_choice("model.network", kind, NETWORKS)
        if kind == "dit":
            for name in ("patch_size", "hidden_size", "depth", "num_heads"):
                check_positive_int(f"model.{name}", m.get(name))
            ratio, size = m.get("mlp_ratio"), self.x_shape[0]
            if not (is_finite_number(ratio) and ratio > 0):
                raise TaskError(f"model.mlp_ratio must be a number > 0 (the MLP's width over model.hidden_size), "
                                f"not {ratio!r}.")
            if size % m.patch_size:
                what = "data.image_size" if self.latent is None else "the latent grid's size"
                raise TaskError(f"model.patch_size={m.patch_size} must divide {what}={size} (the DiT cuts "
                                f"the image into patch_size x patch_size patches).")
            if m.hidden_size % m.num_heads:
                raise TaskError(f"model.hidden_size={m.hidden_size} must be divisible by model.num_heads="
                                f"{m.num_heads}.")
            return DiT(out_channels=self.x_shape[-1], patch_size=m.patch_size, hidden_size=m.hidden_size,
                       depth=m.depth, num_heads=m.num_heads, mlp_ratio=float(ratio), dropout=m.dropout,
                       num_classes=self.num_classes, dtype=precision.compute_dtype(self.config), **extra)
        cross = m.get("cross_attention_levels")
        return Denoiser(out_channels=self.x_shape[-1], channels=tuple(m.channels),
                        num_res_blocks=m.num_res_blocks, attention_levels=tuple(m.attention_levels),
                        cross_attention_levels=None if cross is None else tuple(cross),
                        num_heads=m.num_heads, upsample=m.upsample, dropout=m.dropout,
                        norm_groups=m.norm_groups, num_classes=self.num_classes, architecture=kind,
                        dtype=precision.compute_dtype(self.config), **extra)

    def train_condition(self, inputs: dict[str, jax.Array]):
        """The condition of a training batch `inputs` (see loss_and_grads) before the classifier-free
        drop: the labels of a class-conditional model, None for an unconditional one."""
        return self.condition(inputs.get("label"))

    def denoise(self, params, x, t, cond):
        """The network as the samplers see it: (params, x [B,H,W,C], t [B], cond) -> output. t is the
        integer timestep (ddpm) or model.timesteps times the flow time in [0, 1] (flow): the
        Denoiser's sinusoidal time embedding takes either (see flow.py)."""
        return self.model.apply({"params": params}, x, t, cond)

    def condition(self, labels: jax.Array | None):
        return {"label": labels} if self.num_classes else None

    def init_params(self, rng):
        x = jnp.zeros((1,) + self.x_shape, jnp.float32)
        return self.model.init(rng, x, jnp.zeros((1,), jnp.int32), self.condition(jnp.zeros((1,), jnp.int32)))["params"]

    # ---- update step -----------------------------------------------------------------------------
    def loss_and_grads(self, params, inputs):
        """The gradient of the diffusion (or flow-matching) loss over `inputs` {"image": int [b, h, w, C],
        "label": [b] (class-conditional only), "key": the examples' own keys [b, 2]}: (grads,
        {"loss"}, None), see accumulate.mean_gradients."""
        if self.config.data.get("random_flip"):
            # A stream apart from training.loss's four draws, so runs without flips keep their noise.
            flip_keys = jax.vmap(lambda k: jax.random.fold_in(k, FLIP_STREAM))(inputs["key"])
            inputs = dict(inputs, image=transforms.random_flip(inputs["image"], flip_keys))
        inputs = transforms.crop_inputs(inputs, self.config.data.get("random_crop", 0))
        x0, cond = self.diffusion_target(inputs), self.train_condition(inputs)
        loss, grads = jax.value_and_grad(training.loss, argnums=2)(
            self.objective, training.per_example(self.model), params, x0, inputs["key"], cond,
            num_classes=self.num_classes)
        return grads, {"loss": loss}, None

    def step_metrics(self, metrics, grads):
        return {**metrics, "grad_norm": optax.tree.norm(grads)}

    # ---- sampling --------------------------------------------------------------------------------
    def sample_settings(self, overrides: dict | None = None) -> sampling.SampleSettings:
        """The config's sample settings updated by `overrides` (sampling.SampleSettings.from_config),
        checked against this model's schedule; a bad value is a TaskError."""
        with task_errors(sampling.SamplingError):
            return sampling.SampleSettings.from_config(self.config.sample, overrides).check(self.schedule)

    def generate(self, params, rng, num: int, labels: np.ndarray | None = None, **overrides):
        """num images (float [num, H, W, C] in [0, 1]) and statistics of the run (x0_out_of_range,
        compile_seconds (0 when this setting was compiled before), sample_seconds), with the config's
        sample settings updated by `overrides` (method, steps, eta, guidance, thresholding,
        percentile, variance). labels default to 0..9 cycling for a class-conditional model."""
        s = self.sample_settings(overrides)
        if self.num_classes and labels is None:
            labels = np.arange(num) % self.num_classes
        labels = None if not self.num_classes else jnp.asarray(labels, jnp.int32)
        guidance = None if not self.num_classes else jnp.float32(s.guidance)

        def make():
            def run(params, rng, labels, guidance):
                cond = self.condition(labels)
                null = None if guidance is None else null_condition(cond, self.num_classes)
                x, stats = s.sample(self.denoise, params, self.schedule, (num,) + self.x_shape, rng, cond,
                                    null_cond=null, guidance=guidance,
                                    parameterization=self.config.model.parameterization)
                return self.chain_output(x), stats
            return run
        return self.finish(*self.chains.run(("generate", num, guidance is not None) + s.static, make,
                                            (params, rng, labels, guidance)))

    def sample(self, params, rng, num):
        images, _ = self.generate(params, rng, num)
        out = {"images": images}
        if self.num_classes:
            out["labels"] = np.arange(num) % self.num_classes
        return out

    # ---- evaluation ------------------------------------------------------------------------------
    def evaluate(self, state):
        """The likelihood bound on the test split (at the native resolution, DDPM only: the bound is
        that of the discrete chain, which a flow model does not have), and, with a classifier
        (eval.classifier_workdir), the Frechet distance, class coverage and (class-conditional)
        accuracy of samples, and the saturation of samples next to real images."""
        e = self.config.eval
        params = self.eval_params(state)
        results = {}
        if e.vlb and self.native and self.process == "ddpm":
            results.update(self.likelihood_bound(params))
        if e.get("classifier_workdir"):
            judge = runs.classifier_judge(e.classifier_workdir)
            results.update(self.sample_quality(params, judge, e.num_fd_samples))
        return results

    def likelihood_bound(self, params, variances=("large", "small")) -> dict[str, float]:
        """The bound L(t0) on -log p(x) of the test split (likelihood.py), in nats/image and bits/dim,
        per reverse variance: for the full chain (t0 = 0) and for the t0 that minimises the bound on
        eval.vlb_select_examples training images (a hyper-parameter of the model, chosen on train)."""
        if self.process != "ddpm":
            raise TaskError("the likelihood bound is that of the DDPM chain; a model.process='flow' model has none.")
        if self.latent is not None:
            raise TaskError("the likelihood bound is that of pixels; a latent diffusion model (model.latent_from) has none.")
        e = self.config.eval
        train = self.dataset.arrays["image"][:e.get("vlb_select_examples", 360)]  # runs saved before it existed
        test = self.eval_dataset().arrays["image"]
        num_dims = int(np.prod(self.image_shape))
        noise_std = np.sqrt((1.0 - np.asarray(self.schedule.alphas_cumprod)) / np.asarray(self.schedule.alphas_cumprod))
        results = {}
        for variance in variances:
            t0 = int(np.argmin(self._bound_per_t0(params, train, variance).mean(axis=0)))
            totals, parts = self._bound_per_t0(params, test, variance, parts_at=t0)
            for name, t in (("", t0), ("_full_chain", 0)):
                total = totals[:, t]
                key = f"test_vlb_{variance}{name}"
                results[f"{key}_nats"] = float(total.mean())
                results[f"{key}_nats_sem"] = float(total.std(ddof=1) / np.sqrt(len(total)))
                results[f"{key}_bits_per_dim"] = float(likelihood.bits_per_dim(total.mean(), num_dims))
            results[f"test_vlb_{variance}_t0"] = t0
            results[f"test_vlb_{variance}_t0_noise_std"] = float(noise_std[t0])
            results.update({f"test_vlb_{variance}_{k}_nats": v for k, v in parts.items()})
        return results

    def _bound_per_t0(self, params, images: np.ndarray, variance: str, parts_at: int | None = None):
        """L(t0) per image and t0 [N, steps] (nats) for integer images; with parts_at, also the mean
        prior / diffusion / decoder parts at that t0."""
        e = self.config.eval
        # A class-conditional model is scored as p(x | null class): its unconditional likelihood.
        cond = None if not self.num_classes else {"label": jnp.full((e.batch_size,), self.num_classes)}
        totals, parts = likelihood.bound_per_t0(
            self.denoise, params, self.schedule, images, self.dataset.num_levels,
            jax.random.PRNGKey(self.config.seed + 2), preprocess=self.preprocess, batch_size=e.batch_size, cond=cond,
            parameterization=self.config.model.parameterization, variance=variance)
        if parts_at is None:
            return totals
        return totals, {k: float(v.mean() if v.ndim == 1 else v[:, parts_at].mean()) for k, v in parts.items()}

    def sample_quality(self, params, judge, num: int, key_index: int = 0, **overrides) -> dict[str, float]:
        """ClassifierJudge.score of `num` samples (class-conditional: labels 0..9 cycling), the sampler's
        statistics, and the fraction of saturated pixels beside that of real images. The samples come
        from PRNGKey(seed + 3), or for key_index k > 0 from its fold_in(k): k repeats of one setting
        for its sampling noise, each shared by every setting (the same x_T), so settings compare key
        by key."""
        rng = jax.random.PRNGKey(self.config.seed + 3)
        images, stats = self.generate(params, jax.random.fold_in(rng, key_index) if key_index else rng, num,
                                      **overrides)
        results = judge.score(images, np.arange(num) % self.num_classes if self.num_classes else None)
        results.update(stats)
        results["saturated_fraction"] = saturated_fraction(images)
        real = np.asarray(self.preprocess(self.eval_dataset().arrays["image"]) + 1.0) / 2.0
        results["saturated_fraction_real"] = saturated_fraction(real)
        return results

    def figures(self, state):
        """Samples (one row per class when class-conditional) and the forward process of test images
        at ten noise levels (ten times from 0 to 1 on a flow model's straight path)."""
        params = self.eval_params(state)
        rows = self.num_classes or 8
        images, _ = self.generate(params, jax.random.PRNGKey(self.config.seed + 4), rows * 10,
                                  labels=np.repeat(np.arange(rows), 10) if self.num_classes else None)
        real = self.eval_dataset().arrays["image"][:8]
        x0 = self.preprocess(real) if self.latent is None else jnp.asarray(self.latent.encode(real))
        if self.process == "flow":
            ts = np.linspace(0.0, 1.0, 10)
            noised = [flow.interpolate(x0, jax.random.normal(jax.random.PRNGKey(k), x0.shape), jnp.full((8,), t))
                      for k, t in enumerate(ts)]
        else:
            ts = np.linspace(0, self.schedule.num_steps - 1, 10).astype(np.int32)
            noised = [process.q_sample(self.schedule, x0, jnp.full((8,), t), jax.random.normal(
                jax.random.PRNGKey(t), x0.shape)) for t in ts]
        if self.latent is None:
            noised = np.clip((np.stack(noised, 1) + 1.0) / 2.0, 0.0, 1.0).reshape(-1, *self.image_shape)
        else:  # the noised latents, decoded
            noised = self.latent.decode(np.stack(noised, 1).reshape(-1, *self.x_shape))
        return {"samples": make_grid(images, columns=10),
                "forward_process": make_grid(noised, columns=10)}


def saturated_fraction(images: np.ndarray, margin: float = 1e-3) -> float:
    """Fraction of pixel values at either end of [0, 1] (within margin): what over-saturation and
    clipping produce."""
    return float(np.mean((images <= margin) | (images >= 1.0 - margin)))

