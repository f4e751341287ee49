"""Imagen-style text-to-image as a task: one stage of a diffusion cascade conditioned on a frozen text
encoder (jaxgen.tasks.text_encoder), trained on the `shapes` captions (see jaxgen.models.imagen for the
cascade's pieces).

model.stage = 'base': a text-conditional denoiser at data.image_size (16x16, down-sampled bilinearly
  from the 32x32 scenes), cross-attending to the encoder's token embeddings (at model.cross_attention_levels)
  with the pooled embedding added to the time embedding (Imagen sec. 2.5).
model.stage = 'sr': a super-resolution denoiser at data.image_size (32x32) that also takes the scene
  down-sampled to model.low_res_size (16x16), up-sampled back and concatenated as input channels,
  with noise conditioning augmentation: noised to a level drawn uniformly in [0, model.noise_aug_max]
  (a fraction of the chain) in training, to the fixed sample.noise_aug at sampling, the level being
  an input of the network. With model.residual_scale > 0 the chain runs over the residual
  (image - bilinear(low_res)) / residual_scale instead of the image, as SRDiff does (Li et al. 2022):
  the up-sampled input is already most of the answer, so the network only learns the edges it lacks
  (the thresholding still acts on the image, see samplers.make_step).

Both stages: classifier-free guidance (the text is dropped with probability model.cond_drop_prob in
training, sample.guidance at sampling; the SR stage's low-res input is never dropped), dynamic
thresholding (sample.thresholding), and the diffusion math of jaxgen.models.diffusion, through
DiffusionTask. Captions: each example's caption style is drawn from data.caption_styles as a pure
function of (seed, step, row), as in the clip task; the default is the full caption. The text
features are computed on the host (cached per distinct caption) and travel in the batch as
"context" float32 [B, L, D], "context_mask" bool [B, L] and "pooled" float32 [B, P]; the encoder's
parameters are never part of the train state.

A base stage may run in the latent space of a trained autoencoder (model.latent_from, latent
diffusion: see DiffusionTask and jaxgen.tasks.latent): the chain makes latents that the frozen
decoder turns into images, e.g. 16x16x4 latents for 64x64 scenes (configs/latent_diffusion_shapes64).

Evaluation (`jaxgen eval`): the prompt suite of jaxgen.eval.prompt_suite, shared with the unclip
task (the fraction of generated images that satisfy their prompt per category, seen and held out,
the parser's ceiling on real images at the same size, the CLIP score with eval.clip_workdir). The SR
stage is scored on real test images down-sampled to its input size against bilinear up-sampling
(parse accuracy and edge sharpness), and, when eval.base_workdir names a base run (this task's base
stage or an unclip run), as a cascade: the base's own images and this stage's output from those very
images on the same suite, beside non-learned up-samplings of them (`cascade_scores`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import MODEL_ADDED_DEFAULTS, is_int
from jaxgen.data import captions, transforms
from jaxgen.data import shapes as shapes_lib
from jaxgen.eval import prompt_suite
from jaxgen.eval import prompts as prompts_lib
from jaxgen.eval.images import make_grid
from jaxgen.models import imagen
from jaxgen.models.diffusion import sampling
from jaxgen.models.diffusion.network import null_condition
from jaxgen.tasks import cascade, runs
from jaxgen.tasks.base import TaskError, check_choice, check_positive_int
from jaxgen.tasks.diffusion import DiffusionTask
from jaxgen.tasks.text_encoder import TextEncoder, TextEncoderError

STAGES = ("base", "sr")
TEXT_KEYS = ("context", "context_mask", "pooled")


class Text2ImageTask(DiffusionTask):
    conditionings = ("text",)
    supports_random_flip = False  # a mirror would contradict the captions' "left" and "right"
    supports_random_crop = False  # a shift would move objects across the cells the captions name

    def __init__(self, config, dataset):
        m = config.model
        if "caption" not in dataset.arrays:
            raise TaskError(f"text2image needs captioned images (shapes); {dataset.name} has no captions.")
        self.styles = tuple(config.data.get("caption_styles", ("full",)))
        bad = [s for s in self.styles if s not in shapes_lib.CAPTION_STYLES]
        if not self.styles or bad:
            raise TaskError(f"data.caption_styles must be a non-empty list of {shapes_lib.CAPTION_STYLES}, "
                            f"not {list(self.styles)}.")
        check_choice("model.stage", m.stage, STAGES)
        if m.get("latent_from", "") and m.stage != "base":
            raise TaskError("model.latent_from (latent diffusion) applies to a base stage (model.stage='base') only.")
        super().__init__(config, dataset)
        self.stage = m.stage
        if self.process == "flow" and self.stage == "sr":
            # The SR stage noises its low-res input on the DDPM chain (noise conditioning augmentation).
            raise TaskError("model.process='flow' applies to a base stage (model.stage='base') only; the "
                            "super-resolution stage's noise augmentation is defined on the DDPM chain.")
        if self.stage == "sr":
            if not 0 < m.low_res_size < self.image_shape[0]:
                raise TaskError(f"model.low_res_size must be below data.image_size={self.image_shape[0]} for a "
                                f"super-resolution stage, not {m.low_res_size}.")
            levels = (("model.noise_aug_max", m.noise_aug_max), ("sample.noise_aug", config.sample.noise_aug))
            for name, value in levels:
                if not 0.0 <= value <= 1.0:
                    raise TaskError(f"{name} must be a fraction of the chain in [0, 1], not {value}.")
        self.residual_scale = float(m.get("residual_scale", 0.0))
        if not 0.0 <= self.residual_scale < float("inf"):
            raise TaskError(f"model.residual_scale must be 0 (diffuse the image) or a positive scale of the "
                            f"super-resolution residual, not {m.get('residual_scale')}.")
        if self.residual_scale and self.stage != "sr":
            raise TaskError("model.residual_scale applies to a super-resolution stage (model.stage='sr') only.")
        try:
            self.text = TextEncoder(m.text_encoder, m.max_text_length)
        except TextEncoderError as e:
            raise TaskError(str(e)) from None
        self.model = self.network(context_dim=self.text.width, **self._text_transformer_fields(m))
        self.batch_keys = self.image_keys + TEXT_KEYS
        self._train_captions_encoded = False

    @staticmethod
    def _text_transformer_fields(m) -> dict[str, int]:
        """The denoiser's text_layers and text_width from model.text_layers (0 for runs saved before
        the field existed: no trainable transformer over the frozen tokens) and model.text_width."""
        layers, width = (m.get(k, MODEL_ADDED_DEFAULTS[k]) for k in ("text_layers", "text_width"))
        if not (is_int(layers) and layers >= 0):
            raise TaskError(f"model.text_layers must be an integer >= 0 (0 = the frozen tokens as they are), "
                            f"not {layers!r}.")
        check_positive_int("model.text_width", width)
        if layers and width % m.num_heads:
            raise TaskError(f"model.text_width={width} must be divisible by model.num_heads={m.num_heads} "
                            f"(the text transformer's attention heads).")
        return {"text_layers": layers, "text_width": width}

    @property
    def low_res_shape(self) -> tuple[int, int, int] | None:
        """(h, w, C) of the images this stage takes as text_to_image's low_res (the SR stage's
        model.low_res_size); None for the base stage, which takes none."""
        if self.stage != "sr":
            return None
        s = self.config.model.low_res_size
        return (s, s, self.image_shape[-1])

    # ---- data and conditions ---------------------------------------------------------------------
    def host_batch(self, step, process_index=0, process_count=1):
        t = self.config.train
        keys = [shapes_lib.CAPTION_KEYS[s] for s in self.styles]
        if not self._train_captions_encoded:
            self._encode_train_captions(keys)
        if self.latent is not None:
            self.latent.prepare()
        rows = self.train_rows().batch(self.config.seed, step, t.batch_size, process_index, process_count,
                                       keys=(*self.image_keys, *keys))
        texts = [str(x) for x in captions.drawn_captions(rows, keys, self.config.seed, step, t.batch_size,
                                                          process_index, process_count)]
        return {**{k: rows[k] for k in self.image_keys}, **self.text(texts)}

    def _encode_train_captions(self, keys: list[str]) -> None:
        """Fills the text cache with every distinct training caption of the drawn styles, in full
        chunks, before the first step. Filled lazily instead, almost every batch of the first few
        thousand steps holds a few unseen captions and pays a whole padded chunk for them (shapes,
        full + position: 12,190 distinct captions, 191 chunks up front against ~1 chunk per step).
        A caption's features do not depend on the chunk it was encoded in (one program, rows
        independent), so the batches are the same either way."""
        texts = np.unique(np.concatenate([self.dataset.arrays[k] for k in keys]))
        self.text.fill_cache([str(x) for x in texts])
        self._train_captions_encoded = True

    def low_res(self, images: jax.Array) -> jax.Array:
        """Dataset images [B, H, W, C] (integer levels, or float in [0, 1]) -> the SR stage's
        low-resolution input float [B, s, s, C] in [-1, 1], s = model.low_res_size, made as the base
        stage makes its training images (bilinear, which at a factor 2 averages 2x2 blocks)."""
        if jnp.issubdtype(images.dtype, jnp.integer):
            images = transforms.to_unit(images, self.dataset.num_levels)
        return 2.0 * transforms.resize(images.astype(jnp.float32), self.config.model.low_res_size) - 1.0

    def residual_frame(self, low_res: jax.Array) -> tuple[jax.Array | float, float]:
        """(offset, scale) such that the image is offset + scale * x0 for the chain's x0: the
        bilinear up-sampling of the clean low_res [B, s, s, C] in [-1, 1] and model.residual_scale for
        a stage that diffuses the residual, (0, 1) otherwise."""
        if not self.residual_scale:
            return 0.0, 1.0
        return transforms.resize(low_res, self.image_shape[0]), self.residual_scale

    def diffusion_target(self, inputs):
        if not self.residual_scale:
            return super().diffusion_target(inputs)
        offset, scale = self.residual_frame(self.low_res(inputs["image"]))
        return (self.preprocess(inputs["image"]) - offset) / scale

    def train_condition(self, inputs):
        cond = {k: inputs[k] for k in TEXT_KEYS}
        if self.stage == "sr":
            # Keys of their own (fold_in 1), apart from the four draws the diffusion loss splits off.
            keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(inputs["key"])
            cond["low_res"], cond["noise_level"] = imagen.augment_low_res(
                self.schedule, self.low_res(inputs["image"]), keys, self.config.model.noise_aug_max)
        return cond

    def _dummy_condition(self, n: int) -> dict[str, jax.Array]:
        cond = {"context": jnp.zeros((n, self.text.max_length, self.text.width)),
                "context_mask": jnp.ones((n, self.text.max_length), bool),
                "pooled": jnp.zeros((n, self.text.pooled_dim))}
        if self.stage == "sr":
            s = self.config.model.low_res_size
            cond["low_res"] = jnp.zeros((n, s, s, self.image_shape[-1]))
            cond["noise_level"] = jnp.zeros((n,), jnp.int32)
        return cond

    def init_params(self, rng):
        x = jnp.zeros((1,) + self.x_shape, jnp.float32)
        return self.model.init(rng, x, jnp.zeros((1,), jnp.int32), self._dummy_condition(1))["params"]

    # ---- sampling --------------------------------------------------------------------------------
    def text_to_image(self, params, rng, prompts: list[str], low_res: np.ndarray | None = None,
                      **overrides) -> tuple[np.ndarray, dict[str, float]]:
        """The text-to-image contract (see jaxgen.tasks.cascade): images float [N, H, W, C] in [0, 1],
        one per prompt, and run statistics (x0_out_of_range, compile_seconds, sample_seconds: see
        sampling.Chains), with the config's sample settings updated by `overrides` (method, steps,
        eta, guidance, thresholding, percentile, variance, noise_aug). A super-resolution stage needs
        `low_res` [N, h, w, C] in [0, 1] (any size: resized to model.low_res_size), e.g. the base
        stage's output; the base stage takes none. Empty prompts raise the tokenizer's error;
        over-long ones are truncated with a TruncationWarning."""
        s = self.sample_settings(overrides)
        noise_aug = float(sampling.overridden(self.config.sample, overrides).get("noise_aug", 0.0))
        num = len(prompts)
        if not num:
            raise TaskError("text_to_image needs at least one prompt.")
        cond = {k: jnp.asarray(v) for k, v in self.text(list(prompts)).items()}
        if self.stage == "sr":
            if low_res is None or len(low_res) != num:
                raise TaskError(f"this super-resolution stage needs one low-resolution image per prompt "
                                f"({num}), e.g. the base stage's output.")
            cond["low_res"] = self.low_res(jnp.asarray(low_res, jnp.float32))
        elif low_res is not None:
            raise TaskError("a base stage makes images from text alone; it takes no low-resolution input.")

        def make():
            def run(params, rng, cond, guidance):
                offset, scale = 0.0, 1.0
                if self.stage == "sr":  # the fixed augmentation level at sampling (on the full schedule)
                    rng, aug_rng = jax.random.split(rng)
                    cond = dict(cond)
                    offset, scale = self.residual_frame(cond["low_res"])  # from the clean input
                    cond["low_res"], cond["noise_level"] = imagen.fixed_low_res(self.schedule, cond["low_res"],
                                                                                aug_rng, noise_aug)
                null = null_condition(cond, 0)  # null text; the SR stage's low-res input is kept
                x, stats = s.sample(self.denoise, params, self.schedule, (num,) + self.x_shape, rng, cond,
                                    null_cond=null, guidance=guidance, x0_offset=offset, x0_scale=scale,
                                    parameterization=self.config.model.parameterization)
                return self.chain_output(offset + scale * x), stats
            return run
        return self.finish(*self.chains.run(("text_to_image", num, noise_aug) + s.static, make,
                                            (params, rng, cond, jnp.float32(s.guidance))))

    def test_prompts(self, num: int) -> tuple[list[str], np.ndarray]:
        """The full captions of the first `num` test scenes (cycling) and their images uint8 [num, ...]."""
        test = self.eval_dataset().arrays
        rows = np.arange(num) % len(test["caption"])
        return [str(t) for t in test["caption"][rows]], test["image"][rows]

    def generate(self, params, rng, num, labels=None, **overrides):
        """num images for the test split's captions (the SR stage up-samples the test images
        themselves, down-sampled to its input size): (images [num, H, W, C], stats)."""
        texts, images = self.test_prompts(num)
        low = None if self.stage == "base" else transforms.to_unit(images, self.dataset.num_levels)
        return self.text_to_image(params, rng, texts, low_res=low, **overrides)

    def sample(self, params, rng, num):
        images, _ = self.generate(params, rng, num)
        return {"images": images, "captions": np.asarray(self.test_prompts(num)[0])}

    # ---- evaluation ------------------------------------------------------------------------------
    def evaluate(self, state):
        """Base stage: the prompt suite's scores. SR stage: super_resolution_scores, and with
        eval.base_workdir the paired cascade_scores of that base run followed by this stage."""
        e = self.config.eval
        params = self.eval_params(state)
        if self.stage == "base":
            return self.prompt_scores(lambda texts, rng: self.text_to_image(params, rng, texts)[0])
        results = self.super_resolution_scores(params)
        if e.get("base_workdir"):
            _, base, base_state = runs.restore_for_eval(e.base_workdir)
            if getattr(base, "stage", None) != "base":
                raise TaskError(f"eval.base_workdir {e.base_workdir} is not a base-stage text-to-image run.")
            results.update(self.cascade_scores([(base, base.eval_params(base_state)), (self, params)]))
        return results

    def prompt_scores(self, make_images) -> dict[str, float]:
        """The prompt suite's scores of `make_images` (see cascade.prompt_scores)."""
        return cascade.prompt_scores(self, make_images)

    def cascade_scores(self, stages: list) -> dict[str, float]:
        """The paired evaluation of the cascade `stages` (a base, ..., this SR stage last) on the
        prompt suite: for each batch of prompts and key, the base's own images and this stage's
        output from those very images (one run_cascade call), beside two non-learned up-samplings
        of the same base images, pixel repetition ("nearest") and bilinear. Metrics
        t2i_{base,cascade,nearest,bilinear}_<metric> (see prompt_suite) and, per accuracy (and CLIP
        score), t2i_cascade_minus_base_<metric> = cascade - base. The parser reads base images by pixel
        repetition, so "nearest" scores as "base" does: it is the anchor, bilinear the baseline."""
        scores = self.prompt_scores(self.cascade_maker(stages))
        return {**scores, **prompt_suite.paired_deltas(scores, "base", "cascade")}

    def cascade_maker(self, stages: list):
        """make_images for cascade_scores: (texts [n], rng) -> {"base": the first stage's images,
        "cascade": the last stage's, "nearest" / "bilinear": the base images up-sampled to this
        stage's size}, all from one cascade.run_cascade(stages, texts, rng)."""
        size = self.image_shape[0]

        def make(texts: list[str], rng: jax.Array) -> dict[str, np.ndarray]:
            images, _ = cascade.run_cascade(stages, texts, rng)
            base = jnp.asarray(images[0])
            return {"base": images[0], "cascade": images[-1],
                    "nearest": np.asarray(transforms.resize(base, size, method="nearest")),  # pixel repetition
                    "bilinear": np.asarray(transforms.resize(base, size))}
        return make

    def super_resolution_scores(self, params) -> dict[str, float]:
        """The SR stage on real test scenes down-sampled to its input size: exact-scene parse accuracy
        and edge sharpness (mean absolute difference of neighbouring pixels) of its outputs, of the
        bilinear up-sampling of its inputs, and of the real images."""
        e = self.config.eval
        num = min(e.sr_examples, len(self.eval_dataset().arrays["image"]))
        texts, real = self.test_prompts(num)
        real = np.asarray(transforms.to_unit(jnp.asarray(real), self.dataset.num_levels))
        # Batched over test rows (each batch: those rows' captions and their own low-res scenes).
        sr = prompt_suite.generate_in_batches(
            lambda rows, rng: self.text_to_image(params, rng, [texts[j] for j in rows], low_res=real[rows])[0],
            list(range(num)), e.batch_size, self.config.seed + 200)
        size = self.image_shape[0]
        bilinear = np.asarray(transforms.resize(0.5 * (self.low_res(jnp.asarray(real)) + 1.0), size))
        truth = {k: v[:num] for k, v in self.eval_dataset().arrays.items()}
        out = {}
        for name, images in (("sr", sr), ("bilinear", bilinear), ("real", np.asarray(transforms.resize(real, size)))):
            out[f"{name}_exact_scene"] = prompt_suite.exact_scene(images, truth)
            out[f"{name}_edge_sharpness"] = prompt_suite.edge_sharpness(images)
        return out

    def _figure_prompts(self) -> list[prompts_lib.Prompt]:
        """The base stage's figure prompts: two per category of the suite."""
        return prompts_lib.prompt_suite(2, seed=self.config.eval.prompt_seed)

    def figure_captions(self):
        if self.stage != "base":
            return {}
        return {f"prompt_{i}": f"{p.category}: {p.text}" for i, p in enumerate(self._figure_prompts())}

    def figures(self, state):
        """Base stage: eight images of each of eight suite prompts, one figure per prompt
        ("prompt_<i>", captioned with the prompt by figure_captions). SR stage: test scenes, rows of
        input (bilinear), output, truth."""
        params = self.eval_params(state)
        if self.stage == "base":
            suite = self._figure_prompts()
            texts = [p.text for p in suite for _ in range(8)]
            images = prompt_suite.generate_in_batches(lambda t, rng: self.text_to_image(params, rng, t)[0], texts,
                                                      self.config.eval.batch_size, self.config.seed + 4)
            return {f"prompt_{i}": make_grid(images[8 * i:8 * (i + 1)], columns=8) for i in range(len(suite))}
        texts, real = self.test_prompts(8)
        real = np.asarray(transforms.to_unit(jnp.asarray(real), self.dataset.num_levels))
        out, _ = self.text_to_image(params, jax.random.PRNGKey(self.config.seed + 4), texts, low_res=real)
        up = np.asarray(transforms.resize(0.5 * (self.low_res(jnp.asarray(real)) + 1.0), self.image_shape[0]))
        return {"super_resolution": make_grid(np.concatenate([up, out, real]), columns=8)}

