"""unCLIP ("DALL-E 2", Ramesh et al. 2022) as a task: a diffusion prior over CLIP image embeddings and
a diffusion decoder from an embedding to an image, over a frozen trained `clip` run.

One task, one state. params = {"prior": ..., "decoder": ...} (as a GAN holds two networks), one
optax optimizer per part (`optim` for the decoder, `prior_optim` for the prior, joined with
`optax.multi_transform`, so each keeps its own learning rate and gradient clipping), one EMA over
both. Why one task rather than two runs (stage = prior | decoder): given the frozen CLIP the two
losses share no parameter, so training them in one step is exactly two independent trainings
that share one input pipeline, one checkpoint and one workdir, and `text_to_image` / `variations`
/ `jaxgen generate --workdir` need both anyway. `train.parts` trains only some parts (the others'
updates are `optax.set_to_zero`), e.g. the cheap prior alone.

CLIP is frozen: it is never in the train state. `model.clip_workdir` names a trained `clip` run (or a
pretrained clip model, e.g. the shipped `clip_shapes_t2i`); its
image embeddings of every training image and text embeddings of every training caption (deduplicated)
are computed once on the host, on first use, and cached per process, so a step reads z_i and z_t as
plain batch features: "image" uint8 [B, H, W, C], "z_image" float32 [B, E], "z_text" float32 [B, E]
(the embedding of one of the example's captions in `data.caption_styles`, drawn per (seed, step,
row) as the clip task draws them). With `model.decoder.text_encoder` set (DALL-E 2's decoder), the
same caption's tokens from that frozen encoder (jaxgen.tasks.text_encoder.TextEncoder, cached per caption
on the host) travel too, as "context" float32 [B, L, D] and "context_mask" bool [B, L], and are
dropped with probability `model.decoder.text_drop_prob` (DALL-E 2: 0.5) independently of z_i. The CLIP checkpoint step is saved with the run (clip.json) and
checked when the run is loaded: a CLIP trained further would give other embeddings.

Sampling: `text_to_image` (CLIP text embedding -> prior -> decoder) and `variations` (CLIP image
embedding -> decoder), classifier-free guidance in both models (the prior's scale
`sample.prior_guidance`, the decoder's `sample.guidance`). Evaluation: the prior's cosine to the
true image embedding of held-out captions, the CLIP score of generated images (by `eval.clip_workdir`,
default the conditioning CLIP, which the decoder was trained to please, so an independent CLIP run is
the fairer judge) and the prompt suite's scene-parser accuracy per category (jaxgen.eval.prompt_suite,
the same suite, settings and metric names as the text2image task's), and what variations keep of
their source scene, read by the same parser (jaxgen.eval.variations).
"""
from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.config import is_int
from jaxgen.data import captions, transforms
from jaxgen.data import shapes as shapes_lib
from jaxgen.eval import variations as variations_lib
from jaxgen.eval.images import make_grid
from jaxgen.models import unclip as unclip_lib
from jaxgen.models.diffusion import losses, process, sampling, schedules, training
from jaxgen.models.diffusion.network import drop_condition, null_condition
from jaxgen.nn import lora
from jaxgen.tasks import cascade, runs
from jaxgen.tasks.base import Task, TaskError, check_choice, task_errors
from jaxgen.tasks.text_encoder import TextEncoder, TextEncoderError
from jaxgen.train import precision

PARTS = ("prior", "decoder")
CLIP_FILE = "clip.json"
VARIATION_FIELDS = ("variation_sources", "variations_per_source")  # eval: scenes, variations of each
# Embeddings of a (clip run, checkpoint step, dataset, split, caption styles), shared by the task
# instances of one process (the loop, `jaxgen eval` and the tests build several).
_EMBEDDING_CACHE: dict[tuple, dict[str, np.ndarray]] = {}


class UnCLIPTask(Task):
    batch_keys = ("image", "z_image", "z_text")  # + the caption tokens when the decoder reads them
    fid_reference = "image"
    #: the text-to-image contract (jaxgen.tasks.cascade): a first stage, which takes no low-res input
    stage = "base"
    low_res_shape = None
    init_keys = 2  # the prior's and the decoder's
    frozen_sources = ("model.clip_workdir",)
    # Variation scores (eval.variation_sources x eval.variations_per_source), the config's values.
    eval_added_defaults = dict(zip(VARIATION_FIELDS, (64, 4)))

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        m, d = config.model, config.data
        self.styles = tuple(d.get("caption_styles", ()))
        if "caption" not in dataset.arrays:
            raise TaskError(f"unclip needs captioned images (shapes); {dataset.name} has no captions.")
        if not self.styles or any(st not in shapes_lib.CAPTION_STYLES for st in self.styles):
            raise TaskError(f"data.caption_styles must be a non-empty list of {shapes_lib.CAPTION_STYLES}, "
                            f"not {list(self.styles)}.")
        parts = tuple(config.train.get("parts", PARTS))
        if not parts or any(p not in PARTS for p in parts):
            raise TaskError(f"train.parts must be a non-empty list of {PARTS}, not {list(parts)}.")
        self.parts = parts
        for name, section in (("prior", m.prior), ("decoder", m.decoder)):
            check_choice(f"model.{name}.parameterization", section.parameterization, process.PARAMETERIZATIONS)
            check_choice(f"model.{name}.schedule", section.schedule, schedules.SCHEDULES)
            if not 0.0 <= section.cond_drop_prob < 1.0:
                raise TaskError(f"model.{name}.cond_drop_prob must be in [0, 1), not {section.cond_drop_prob}.")
        check_choice("model.decoder.loss_weighting", m.decoder.loss_weighting, losses.WEIGHTINGS)
        size = d.image_size
        if size % 2 ** (len(m.decoder.channels) - 1):
            raise TaskError(f"data.image_size={size} must be divisible by 2**(len(model.decoder.channels)-1) = "
                            f"{2 ** (len(m.decoder.channels) - 1)}.")
        #: (eval.variation_sources, eval.variations_per_source), checked here, used by variation_scores
        self.variation_counts = tuple(config.eval.get(k, self.eval_added_defaults[k]) for k in VARIATION_FIELDS)
        sources, per_source = self.variation_counts
        if not (is_int(sources) and (sources == 0 or sources >= 2) and is_int(per_source) and per_source >= 0):
            raise TaskError(f"eval.variation_sources must be 0 (no variation scores) or at least 2, and "
                            f"eval.variations_per_source an integer >= 0; got {sources!r} and {per_source!r}.")
        self.schedules = {"prior": schedules.make(m.prior.schedule, m.prior.timesteps),
                          "decoder": schedules.make(m.decoder.schedule, m.decoder.timesteps)}
        self.sample_settings()  # the config's own, checked before the CLIP run is loaded
        if not m.clip_workdir:
            raise TaskError("model.clip_workdir must name a trained clip run (jaxgen train clip_shapes ...).")
        self.clip, self.clip_step = _load_clip(m.clip_workdir)
        # The decoder's caption tokens (absent in runs saved before the option: none).
        self.text = None
        if m.decoder.get("text_encoder", ""):
            if not 0.0 <= m.decoder.get("text_drop_prob", 0.5) < 1.0:
                raise TaskError(f"model.decoder.text_drop_prob must be in [0, 1), not {m.decoder.text_drop_prob}.")
            try:
                self.text = TextEncoder(m.decoder.text_encoder, m.decoder.get("max_text_length", 40))
            except TextEncoderError as e:
                raise TaskError(str(e).replace("model.text_encoder", "model.decoder.text_encoder")) from None
            self.batch_keys = UnCLIPTask.batch_keys + (unclip_lib.TEXT_KEY, unclip_lib.TEXT_MASK_KEY)
        self._train_captions_encoded = False
        self.embed_dim = int(self.clip.config.model.embed_dim)
        self.image_shape = (size, size, dataset.arrays["image"].shape[-1])
        dtype = precision.compute_dtype(config)
        self.prior = unclip_lib.Prior(width=m.prior.width, depth=m.prior.depth, dtype=dtype)
        dm = m.decoder
        cross = dm.get("cross_attention_levels")  # absent in runs saved before the option: attention_levels
        self.decoder = unclip_lib.Decoder(
            out_channels=self.image_shape[-1], channels=tuple(dm.channels), num_res_blocks=dm.num_res_blocks,
            attention_levels=tuple(dm.attention_levels), num_heads=dm.num_heads, upsample=dm.upsample,
            cross_attention_levels=None if cross is None else tuple(cross),
            dropout=dm.dropout, norm_groups=dm.norm_groups, num_tokens=dm.num_tokens, token_dim=dm.token_dim,
            dtype=dtype)
        # The prior regresses x0 unweighted (DALL-E 2); the decoder as the config says.
        self.objectives = {
            "prior": training.Objective(self.schedules["prior"], m.prior.parameterization,
                                        cond_drop_prob=m.prior.cond_drop_prob),
            "decoder": training.Objective(self.schedules["decoder"], dm.parameterization, dm.loss_weighting,
                                          dm.min_snr_gamma, dm.cond_drop_prob)}
        self._embedded = None  # the training split with its CLIP embeddings, built on first use
        self.chains = sampling.Chains()

    @property
    def tx(self) -> optax.GradientTransformation:
        """One optimizer per part (`optim` for the decoder, `prior_optim` for the prior); a part not
        in train.parts gets no update at all."""
        prior_optim = self.config.get("prior_optim") or self.config.optim
        txs = {"decoder": self.optimizer(), "prior": self.optimizer(prior_optim)}
        txs = {k: (tx if k in self.parts else optax.set_to_zero()) for k, tx in txs.items()}
        return optax.multi_transform(txs, lambda params: {k: jax.tree.map(lambda _: k, v) for k, v in params.items()})

    # ---- CLIP embeddings of the training data ------------------------------------------------------
    def text_key(self, style: str) -> str:
        return f"z_text_{style}"

    def embedded_dataset(self):
        """The training split with "z_image" [N, E] and one "z_text_<style>" [N, E] per caption style
        added (a new Dataset: the loaded split is shared and stays read-only)."""
        if self._embedded is None:
            key = (os.path.abspath(self.config.model.clip_workdir), self.clip_step, self.dataset.name,
                   self.dataset.split, self.styles)
            if key not in _EMBEDDING_CACHE:
                arrays = self.dataset.arrays
                emb = {"z_image": self.clip.images(arrays["image"]).astype(np.float32)}
                for style in self.styles:
                    texts = arrays[shapes_lib.CAPTION_KEYS[style]]
                    # Captions repeat a lot ("a red circle"): embed each distinct one once.
                    distinct, inverse = np.unique(texts, return_inverse=True)
                    emb[self.text_key(style)] = self.clip.texts(list(distinct)).astype(np.float32)[inverse]
                for v in emb.values():
                    v.flags.writeable = False
                _EMBEDDING_CACHE[key] = emb
            self._embedded = dataclasses.replace(self.dataset, arrays={**self.dataset.arrays,
                                                                       **_EMBEDDING_CACHE[key]})
        return self._embedded

    def host_batch(self, step, process_index=0, process_count=1):
        t = self.config.train
        keys = [self.text_key(st) for st in self.styles]
        text_keys = [shapes_lib.CAPTION_KEYS[st] for st in self.styles] if self.text is not None else []
        rows = self.embedded_dataset().batch(self.config.seed, step, t.batch_size, process_index, process_count,
                                             keys=("image", "z_image", *keys, *text_keys))
        drawn = lambda ks: captions.drawn_captions(rows, ks, self.config.seed, step, t.batch_size,  # noqa: E731
                                                   process_index, process_count)
        batch = {"image": rows["image"], "z_image": rows["z_image"], "z_text": np.stack(drawn(keys))}
        if self.text is not None:  # the tokens of the very caption whose embedding z_text is (same draw)
            if not self._train_captions_encoded:  # every distinct training caption once, in chunks
                self.text.fill_cache([str(x) for k in text_keys for x in self.dataset.arrays[k]])
                self._train_captions_encoded = True
            features = self.text([str(x) for x in drawn(text_keys)])
            batch.update({k: features[k] for k in (unclip_lib.TEXT_KEY, unclip_lib.TEXT_MASK_KEY)})
        return batch

    def caption_tokens(self, texts: list[str] | None, num: int) -> dict[str, np.ndarray]:
        """The decoder's caption inputs for `num` rows: the tokens of `texts` (one per row), or no
        caption (zeros, mask all False) when texts is None; {} for a decoder without caption tokens."""
        if self.text is None:
            return {}
        if texts is None:
            return {unclip_lib.TEXT_KEY: np.zeros((num, self.text.max_length, self.text.width), np.float32),
                    unclip_lib.TEXT_MASK_KEY: np.zeros((num, self.text.max_length), bool)}
        features = self.text(list(texts))
        return {k: features[k] for k in (unclip_lib.TEXT_KEY, unclip_lib.TEXT_MASK_KEY)}

    def frozen_fingerprints(self) -> dict[str, str]:
        return {"model.clip_workdir": lora.fingerprint(self.clip.params)}

    def save_assets(self, workdir):
        with open(os.path.join(workdir, CLIP_FILE), "w") as f:
            where = self.config.model.clip_workdir  # a run folder, or a pretrained model's name
            json.dump({"clip_workdir": os.path.abspath(where) if os.path.isdir(where) else where,
                       "step": self.clip_step}, f)

    def load_assets(self, workdir):
        path = os.path.join(workdir, CLIP_FILE)
        if not os.path.isfile(path):
            return  # a run written before clip.json existed: nothing to check against
        with open(path) as f:
            saved = json.load(f)["step"]
        if saved != self.clip_step:
            raise TaskError(f"this unclip run was trained on the CLIP of {self.config.model.clip_workdir} at step "
                            f"{saved}, which is now at step {self.clip_step}; its embeddings changed, so retrain.")

    # ---- model -----------------------------------------------------------------------------------
    def preprocess(self, images: jax.Array) -> jax.Array:
        """Integer images [B, h, w, C] -> float [B, S, S, C] in [-1, 1] at data.image_size."""
        unit = transforms.resize(transforms.to_unit(images, self.dataset.num_levels), self.image_shape[0])
        return 2.0 * unit - 1.0

    def denoise_prior(self, params, x, t, cond):
        """The prior as the samplers see it: (prior params, x [B, E], t int [B], {"text": [B, E]}) -> [B, E]."""
        return self.prior.apply({"params": params}, x, t, cond)

    def denoise_decoder(self, params, x, t, cond):
        """The decoder as the samplers see it: (decoder params, x [B,H,W,C], t [B], {"embedding": [B,E]}
        and, with caption tokens, "context" [B, L, D], "context_mask" [B, L])."""
        return self.decoder.apply({"params": params}, x, t, cond)

    def init_params(self, k_prior, k_decoder):
        z = jnp.zeros((1, self.embed_dim), jnp.float32)
        t = jnp.zeros((1,), jnp.int32)
        decoder_cond = {unclip_lib.DECODER_KEY: z, **self.caption_tokens(None, 1)}
        return {"prior": self.prior.init(k_prior, z, t, {unclip_lib.PRIOR_KEY: z})["params"],
                "decoder": self.decoder.init(k_decoder, jnp.zeros((1,) + self.image_shape, jnp.float32), t,
                                             decoder_cond)["params"]}

    # ---- update step -----------------------------------------------------------------------------
    def loss_and_grads(self, params, inputs):
        """Gradients of prior_loss + decoder_loss (the parts in train.parts) over `inputs` {"image",
        "z_image", "z_text", "key": the examples' own keys [b, 2]}; see accumulate.mean_gradients.
        Each part draws from its own stream (the key folded with its index in PARTS)."""
        keys = {part: jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(inputs["key"])
                for i, part in enumerate(PARTS)}

        def prior_loss(p):
            # x0-prediction of sqrt(E) z_i given z_t (DALL-E 2 sec. 2.2), z_t dropped with prob. p; the
            # prior has no dropout, so it runs on the whole batch at once.
            apply = lambda p, x, t, cond, _: self.denoise_prior(p, x, t, cond)  # noqa: E731
            return training.loss(self.objectives["prior"], apply, p, unclip_lib.to_diffusion_space(inputs["z_image"]),
                                 keys["prior"], {unclip_lib.PRIOR_KEY: inputs["z_text"]})

        def decoder_loss(p):
            caption, p_drop = None, self.config.model.decoder.get("text_drop_prob", 0.5)
            if self.text is not None:  # the caption dropped on its own draw (a stream apart from the parts' draws)
                text_drop = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, len(PARTS)), p_drop))(
                    inputs["key"])
                caption = drop_condition({k: inputs[k] for k in (unclip_lib.TEXT_KEY, unclip_lib.TEXT_MASK_KEY)},
                                         text_drop, num_classes=0)
            return training.loss(self.objectives["decoder"], training.per_example(self.decoder), p,
                                 self.preprocess(inputs["image"]), keys["decoder"],
                                 {unclip_lib.DECODER_KEY: inputs["z_image"]}, kept=caption)

        part_losses = {"prior": prior_loss, "decoder": decoder_loss}

        def loss_fn(params):
            values = {f"{k}_loss": part_losses[k](params[k]) for k in self.parts}
            return sum(values.values()), values

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return grads, {"loss": loss, **metrics}, None

    def step_metrics(self, metrics, grads):
        return {**metrics, **{f"{k}_grad_norm": optax.tree.norm(grads[k]) for k in self.parts}}

    # ---- sampling --------------------------------------------------------------------------------
    def sample_settings(self, overrides: dict | None = None) -> dict[str, sampling.SampleSettings]:
        """The prior's and the decoder's sample settings: the config's updated by `overrides`
        (sampling.SampleSettings.from_config; the prior reads prior_method, prior_steps,
        prior_guidance and the shared eta, and never thresholds its embeddings), each checked
        against its schedule; a bad value is a TaskError."""
        # prior_thresholding, _percentile and _variance are no config fields: their defaults hold.
        prior = {k: f"prior_{k}" for k in ("method", "steps", "guidance", "thresholding", "percentile", "variance")}
        with task_errors(sampling.SamplingError):
            return {"prior": sampling.SampleSettings.from_config(self.config.sample, overrides, **prior)
                    .check(self.schedules["prior"]),
                    "decoder": sampling.SampleSettings.from_config(self.config.sample, overrides)
                    .check(self.schedules["decoder"])}

    def sample_prior(self, params, z_text: np.ndarray, rng: jax.Array, **overrides) -> np.ndarray:
        """Image embeddings [N, E] (unit norm) sampled from the prior for text embeddings z_text [N, E];
        `params` = {"prior", ...}; overrides: prior_steps, prior_guidance, prior_method, eta."""
        return self._prior_chain(params, z_text, rng, self.sample_settings(overrides)["prior"])[0]

    def _prior_chain(self, params, z_text, rng, s: sampling.SampleSettings) -> tuple[np.ndarray, dict[str, float]]:
        def make():
            def run(p, z_t, key, w):
                cond = {unclip_lib.PRIOR_KEY: z_t}
                x, stats = s.sample(self.denoise_prior, p, self.schedules["prior"], z_t.shape, key, cond,
                                    null_cond=null_condition(cond, num_classes=0), guidance=w,
                                    parameterization=self.config.model.prior.parameterization)
                return unclip_lib.to_embedding(x), stats
            return run

        args = (params["prior"], jnp.asarray(z_text, jnp.float32), rng, jnp.float32(s.guidance))
        return self.chains.run(("prior", len(z_text)) + s.static, make, args)

    def decode(self, params, z_image: np.ndarray, rng: jax.Array, texts: list[str] | None = None,
               **overrides) -> np.ndarray:
        """Images float [N, H, W, C] in [0, 1] decoded from image embeddings z_image [N, E] (and, for a
        decoder that reads captions, `texts`, one per row; None: no caption); overrides: steps,
        guidance, method, eta, thresholding, percentile, variance."""
        return self._decoder_chain(params, z_image, rng, self.sample_settings(overrides)["decoder"], texts)[0]

    def _decoder_chain(self, params, z_image, rng, s: sampling.SampleSettings, texts: list[str] | None = None
                       ) -> tuple[np.ndarray, dict[str, float]]:
        def make():
            def run(p, z, caption, key, w):
                # Guidance against neither condition: no z_i and no caption (DALL-E 2 drops both).
                cond = {unclip_lib.DECODER_KEY: z, **caption}
                shape = (z.shape[0],) + self.image_shape
                x, stats = s.sample(self.denoise_decoder, p, self.schedules["decoder"], shape, key, cond,
                                    null_cond=null_condition(cond, num_classes=0), guidance=w,
                                    parameterization=self.config.model.decoder.parameterization)
                return sampling.to_unit(x), stats
            return run

        caption = {k: jnp.asarray(v) for k, v in self.caption_tokens(texts, len(z_image)).items()}
        args = (params["decoder"], jnp.asarray(z_image, jnp.float32), caption, rng, jnp.float32(s.guidance))
        return self.chains.run(("decoder", len(z_image)) + s.static, make, args)

    def text_to_image(self, params, rng: jax.Array, prompts: list[str], low_res: np.ndarray | None = None,
                      **overrides) -> tuple[np.ndarray, dict[str, float]]:
        """The text-to-image contract (see jaxgen.tasks.cascade): images float [N, H, W, C] in [0, 1],
        one per prompt (CLIP text embedding -> prior -> decoder), and run statistics: the decoder's
        x0_out_of_range, and compile_seconds / sample_seconds of the two chains together. overrides:
        the sample settings (guidance, steps, prior_guidance, prior_steps, ...; a None value keeps the
        config's). unCLIP is a first stage: `low_res` must be None. Unknown words are fine; an empty
        prompt raises the tokenizer's one-sentence error."""
        if low_res is not None:
            raise TaskError("an unclip run is a base stage that makes images from text alone; it takes no "
                            "low-resolution input.")
        if not prompts:
            raise TaskError("text_to_image needs at least one prompt.")
        s = self.sample_settings(overrides)
        k_prior, k_decoder = jax.random.split(rng)
        z_image, prior_stats = self._prior_chain(params, self.clip.texts(list(prompts)), k_prior, s["prior"])
        images, stats = self._decoder_chain(params, z_image, k_decoder, s["decoder"], list(prompts))
        for k in ("compile_seconds", "sample_seconds"):
            stats[k] += prior_stats[k]
        return images, stats

    def variations(self, params, images: np.ndarray, rng: jax.Array, num: int = 1, **overrides) -> np.ndarray:
        """`num` new images per input image, float [len(images) * num, H, W, C] in [0, 1] (image-major),
        decoded from the CLIP image embedding of each of images [N, H, W, C] (uint8 in the dataset's
        levels or float in [0, 1]), with no caption; overrides: the decoder's sample settings."""
        if num < 1 or len(images) == 0:
            raise TaskError(f"variations needs at least one image and num >= 1, not {len(images)} images x {num}.")
        z_image = np.repeat(self.clip.images(np.asarray(images)), num, axis=0)
        return self.decode(params, z_image, rng, **overrides)

    def sample(self, params, rng, num):
        """Images for the first `num` held-out full-style captions: {"images", "texts"}."""
        texts = self._eval_captions(num)
        return {"images": self.text_to_image(params, rng, texts)[0], "texts": np.asarray(texts)}

    def _eval_captions(self, num: int) -> list[str]:
        test = self.eval_dataset().arrays["caption"]
        return [str(test[i % len(test)]) for i in range(num)]

    # ---- evaluation ------------------------------------------------------------------------------
    def evaluate(self, state):
        """prior_cosine_true / _other: the mean cosine between prior samples for held-out captions
        and the CLIP embedding of the caption's own image / of another test image (the prior learns
        when the first clearly exceeds the second); clip_score of text_to_image samples for those
        captions next to that of the real test images (matching and mismatched); and the prompt
        suite's scores (jaxgen.eval.prompt_suite, as for text2image: t2i_<category>, ...; none with
        eval.prompts_per_category = 0); and `variation_scores`."""
        e = self.config.eval
        params = self.eval_params(state)
        test = self.eval_dataset().arrays
        n = min(e.num_samples, len(test["image"]))
        texts = [str(t) for t in test["caption"][:n]]
        rng = jax.random.PRNGKey(self.config.seed + 3)
        z_true = self.clip.images(test["image"][:n])
        z_prior = self.sample_prior(params, self.clip.texts(texts), rng)
        other = np.roll(np.arange(n), 1)
        results = {"prior_cosine_true": float(np.mean(np.sum(z_prior * z_true, -1))),
                   "prior_cosine_other": float(np.mean(np.sum(z_prior * z_true[other], -1)))}
        scorer = _load_clip(e.clip_workdir, "eval.clip_workdir")[0] if e.get("clip_workdir") else self.clip
        images, _ = self.text_to_image(params, jax.random.fold_in(rng, 1), texts)
        results["clip_score"] = float(scorer.score(images, texts).mean())
        real = scorer.score(test["image"][:n], texts)
        results["clip_score_real"] = float(real.mean())
        results["clip_score_real_mismatched"] = float(scorer.score(test["image"][:n], texts[1:] + texts[:1]).mean())
        settings = e.to_dict()
        if "scene_prompts" in settings:  # a run saved before the shared suite: its fields, renamed
            settings.update(prompts_per_category=settings.pop("scene_prompts"), prompt_seed=self.config.seed,
                            images_per_prompt=settings.pop("scene_images_per_prompt"), batch_size=n)
        # Held out: no training caption of any style the prior saw states the prompt's combination.
        results.update(self.prompt_scores(lambda t, key: self.text_to_image(params, key, t)[0], settings))
        results.update(self.variation_scores(params, jax.random.fold_in(rng, 2)))
        return results

    def variation_scores(self, params, rng: jax.Array) -> dict[str, float]:
        """What variations keep of their source (jaxgen.eval.variations): eval.variations_per_source
        variations of each of the first eval.variation_sources test scenes (0 skips them; runs
        saved before the fields existed get the config's 64 x 4), parsed at the decoder's size."""
        num, per_source = self.variation_counts
        if num == 0 or per_source == 0:
            return {}
        test = self.eval_dataset()
        sources = test.arrays["image"][:num]
        images = self.variations(params, sources, rng, num=per_source)
        return variations_lib.variation_scores(images, sources, test.arrays, test.num_levels)

    def prompt_scores(self, make_images, settings=None) -> dict[str, float]:
        """The prompt suite's scores of `make_images` (see cascade.prompt_scores), as for text2image."""
        return cascade.prompt_scores(self, make_images, settings)

    def figures(self, state):
        """text_to_image for eight held-out captions (one row of eight samples each) and variations
        of eight test images (the real image first in each row, then seven variations)."""
        params = self.eval_params(state)
        rng = jax.random.PRNGKey(self.config.seed + 4)
        t2i, _ = self.text_to_image(params, rng, [t for t in self._eval_captions(8) for _ in range(8)])
        real = self.eval_dataset().arrays["image"][:8]
        var = self.variations(params, real, jax.random.fold_in(rng, 1), num=7).reshape((8, 7) + self.image_shape)
        real = np.asarray(transforms.resize(transforms.to_unit(jnp.asarray(real), self.dataset.num_levels),
                                            self.image_shape[0]))
        rows = np.concatenate([real[:, None], var], axis=1).reshape((-1,) + self.image_shape)
        return {"text_to_image": make_grid(t2i, columns=8), "variations": make_grid(rows, columns=8)}


def _load_clip(source: str, field: str = "model.clip_workdir"):
    """(CLIPScorer, its training step) of the trained clip run folder or pretrained clip model that
    the config's `field` names (jaxgen.tasks.runs.trained_model's one-sentence errors)."""
    scorer = runs.clip_scorer(source, field=field)
    return scorer, scorer.step
