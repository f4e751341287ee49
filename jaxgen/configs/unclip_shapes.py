"""unCLIP ("DALL-E 2") on `shapes`: a diffusion prior from the CLIP text embedding to a CLIP image
embedding, and a diffusion decoder from the image embedding to a 16x16 scene, over a frozen CLIP run;
the Imagen-style SR stage (text2image_shapes_sr) takes it to 32x32, as DALL-E 2's up-samplers do.
Same data (shapes/t2i, full + position captions), decoder U-Net and recipe (v-prediction, min-SNR,
text tokens at 16x16 and 8x8, 10,000 steps of batch 32) as the Imagen-style base stage, so the two
systems compare on one budget.

    jaxgen train clip_shapes:t2i --workdir runs/clip_shapes_t2i
    jaxgen train unclip_shapes --workdir runs/unclip_shapes --config.model.clip_workdir=runs/clip_shapes_t2i
    jaxgen eval --workdir runs/unclip_shapes
    jaxgen generate --workdir runs/unclip_shapes --sr_workdir runs/t2i_sr --prompt "three red circles" --out u.png

Both models train in the same step on the same rows (the prior is a small MLP, nearly free next to
the U-Net). The prior predicts x_0 = sqrt(E) z_i (DALL-E 2's choice) from the caption's CLIP text
embedding; the decoder is a U-Net that reads z_i as four context tokens (cross-attention at both
levels) and as a vector added to its time embedding. Each condition is dropped with probability 0.1 for classifier-free guidance.
`train.parts=("prior",)` trains the prior alone. "quick" is a 16x16 smoke run on shapes/t2i_tiny.
"captions" is DALL-E 2's decoder: it also attends to the caption's tokens from the frozen
all-MiniLM-L6-v2 (the Imagen-style base's encoder), the caption dropped half of the time in training
(`model.decoder.text_encoder`, `text_drop_prob`, `max_text_length`; absent = z_i alone, as in runs
saved before the option); "quick_captions" is its smoke run.
"""
import ml_collections

from jaxgen.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "unclip"
    c.seed = 0
    c.data = dict(name="shapes/t2i", split="train", eval_split="test", image_size=16, data_dir=None,
                  caption_styles=("full", "position"))
    # clip_workdir: the trained clip run (frozen) whose embeddings both models work in; part of the
    # model's identity, like every model field, so a run cannot resume against another CLIP.
    c.model = dict(
        clip_workdir="runs/clip_shapes_t2i",
        prior=dict(width=256, depth=4, schedule="cosine", timesteps=1000, parameterization="x0", cond_drop_prob=0.1),
        decoder=dict(channels=(32, 64), num_res_blocks=2, attention_levels=(1,), cross_attention_levels=(0, 1),
                     num_heads=4, upsample="nearest", dropout=0.0, norm_groups=8, num_tokens=4, token_dim=64,
                     schedule="cosine", timesteps=1000, parameterization="v", loss_weighting="min_snr",
                     min_snr_gamma=5.0, cond_drop_prob=0.1))
    # guidance / steps / method...: the decoder's sampling; prior_*: the prior's (DDIM on the
    # respaced chain; guidance w, 1 = the conditional model). Overridable at sampling time.
    c.sample = dict(method="ddim", steps=50, eta=0.0, guidance=3.0, thresholding="dynamic", percentile=0.995,
                    variance="small", prior_method="ddim", prior_steps=50, prior_guidance=1.0)
    c.optim = dict(name="adamw", lr=1e-3, b1=0.9, b2=0.999, weight_decay=0.0, warmup_steps=500, schedule="cosine",
                   grad_clip=1.0)
    c.prior_optim = dict(name="adamw", lr=3e-4, b1=0.9, b2=0.999, warmup_steps=200, schedule="cosine",
                         grad_clip=1.0, weight_decay=1e-4)
    # parts: the models trained ("prior", "decoder" or both).
    c.train = common.train_section(steps=10000, batch_size=32, ema_decay=0.999, parts=("prior", "decoder"))
    # num_samples: held-out captions for the prior cosine and the CLIP score; clip_workdir: the CLIP
    # run that judges (empty: the conditioning one; the prompt suite's CLIP score needs it). The
    # prompt suite, as text2image_shapes reads it: prompts_per_category prompts per category (0:
    # skip), drawn by prompt_seed, each generated images_per_prompt times in batches of batch_size.
    # Image variations: variations_per_source of each of the first variation_sources test scenes,
    # parsed and compared with their source (0: skip).
    c.eval = dict(num_samples=200, clip_workdir="", prompts_per_category=24, images_per_prompt=4, prompt_seed=0,
                  batch_size=64, variation_sources=64, variations_per_source=4)
    return common.apply_variant(c, arg, {"demo": demo, "quick": quick}, name="unclip_shapes",
                                modifiers={"captions": with_captions})


def with_captions(c: ml_collections.ConfigDict) -> None:
    """The decoder also reads the caption's tokens (DALL-E 2 sec. 2.1: GLIDE's text encoder, the
    caption dropped 50 % of the time), from the encoder the Imagen-style base uses."""
    c.model.decoder.update(text_encoder="minilm", text_drop_prob=0.5, max_text_length=40)


def demo(c: ml_collections.ConfigDict) -> None:
    """A shorter run (not part of `jaxgen demo`)."""
    c.train.update(steps=2000, ckpt_every=1000)


def quick(c: ml_collections.ConfigDict) -> None:
    """A 16x16 smoke run of a few steps on shapes/t2i_tiny."""
    c.data.update(name="shapes/t2i_tiny", image_size=16)
    c.model.prior.update(width=32, depth=2, timesteps=100)
    c.model.decoder.update(channels=(16, 32), num_res_blocks=1, attention_levels=(1,), cross_attention_levels=(1,),
                           num_tokens=2, token_dim=16, timesteps=100)
    c.sample.update(steps=5, prior_steps=5)
    c.optim.warmup_steps = 2
    c.prior_optim.warmup_steps = 2
    c.train.update(steps=4, log_every=2, ckpt_every=4, batch_size=16, ema_decay=0.0)
    # batch_size = num_samples: the suite reuses the compiled chains of the CLIP-score samples.
    c.eval.update(num_samples=16, prompts_per_category=2, images_per_prompt=1, batch_size=16, variation_sources=4,
                  variations_per_source=2)
