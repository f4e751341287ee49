"""Latent diffusion (Rombach et al. 2022) on the 64x64 `shapes` scenes, text-conditional: the
text2image base stage (frozen all-MiniLM-L6-v2 captions, cross-attention, classifier-free guidance,
v-prediction, min-SNR) run in the 16x16x4 latent space of a trained autoencoder_shapes64 (KL-f4),
then decoded to 64x64 images by its frozen decoder (jaxgen.tasks.latent).

    jaxgen train autoencoder_shapes64 --workdir runs/autoencoder_shapes64
    jaxgen train latent_diffusion_shapes64 --workdir runs/latent_diffusion_shapes64 \
        --config.model.latent_from=runs/autoencoder_shapes64
    jaxgen eval --workdir runs/latent_diffusion_shapes64    # the prompt suite, scored by the scene parser
    jaxgen generate --workdir runs/latent_diffusion_shapes64 --prompt "two red circles and a blue square" \
        --num 8 --out ldm.png

model.latent_from: the autoencoder run folder (or an exported / pretrained autoencoder) whose latents
the chain learns; training images are encoded once (posterior moments, cached), the step draws a
posterior sample per image and multiplies it by the scale factor 1 / std of the training latents
(saved with the run as latent.json). Thresholding is off (latents are not bounded to [-1, 1]).

`"pixel"`: the equal-intent pixel-space model for the comparison, the same recipe at 64x64 in pixel
space (no autoencoder): a U-Net whose two lowest levels are the latent model's (16x16 and 8x8, the
same widths, attention and cross-attention there) below two narrower levels at 64x64 and 32x32,
dynamic thresholding as the 16x16 pixel base.

FLOPs per train step (the loop's "FLOPs per step" line: XLA's count of the compiled step, batch 32,
one device, measured on CPU by compiling both steps): latent 33.40 GFLOP (1,988,996 params), pixel
178.99 GFLOP (2,322,499 params), 5.4x. The autoencoder's encoder is not in the latent step (the
training latents are encoded once, before the first step); its own training and one 64x64 decode
per sample at sampling are the latent model's extra costs. Over whole runs: the autoencoder
(autoencoder_shapes64: 83.68 GFLOP per step at batch 32, 576,043 params) 10,000 steps = 0.84 PFLOP,
then 20,000 latent steps = 0.67 PFLOP, 1.50 PFLOP in all, against 3.58 PFLOP for 20,000 pixel
steps. Quality at equal compute (Frechet distance, scene-parser scores, images/s) is not yet
trained or measured here: that comparison needs an accelerator.

`"demo"` is the default run under that name. `"quick"` (and its pixel twin `"quick_pixel"`) are smoke
runs of a few steps on shapes/t2i64_tiny; quick leaves model.latent_from empty (pixel space) so that
it builds where no autoencoder has been trained (every quick config is built in the tests): set
`--config.model.latent_from=<a quick autoencoder run>` for the latent smoke run, as
tests/tasks/test_latent_diffusion.py does.
"""
import ml_collections

from jaxgen.configs import common, text2image_shapes


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = text2image_shapes.get_config()
    c.data.update(name="shapes/t2i64", image_size=64)
    # A U-Net on 16x16x4 latents: levels at 16x16 and 8x8 as the 16x16 pixel base's, twice as wide
    # (a latent position stands for a 4x4 patch of pixels).
    c.model.update(latent_from="runs/autoencoder_shapes64", channels=(64, 128), num_res_blocks=2,
                   attention_levels=(1,), cross_attention_levels=(0, 1), norm_groups=32)
    c.sample.update(thresholding="none")
    c.eval.update(batch_size=64)
    return common.apply_variant(c, arg, {"demo": None, "quick": quick}, name="latent_diffusion_shapes64",
                                modifiers={"pixel": use_pixels})


def quick(c: ml_collections.ConfigDict) -> None:
    """A smoke run of a few steps on shapes/t2i64_tiny (tests)."""
    c.data.name = "shapes/t2i64_tiny"
    c.model.update(latent_from="", channels=(16, 32), num_res_blocks=1,
                   norm_groups=8, timesteps=100, max_text_length=20)
    c.sample.update(steps=5)
    c.train.update(steps=4, log_every=2, ckpt_every=4, sample_every=0, batch_size=16)
    c.optim.warmup_steps = 2
    c.eval.update(prompts_per_category=2, images_per_prompt=2, batch_size=16, sr_examples=16)


def use_pixels(c: ml_collections.ConfigDict) -> None:
    """The pixel-space twin: no autoencoder, two more U-Net levels (64x64 and 32x32) above the
    latent model's, whose attention levels shift down by two; dynamic thresholding."""
    m = c.model
    low = tuple(m.channels)
    m.update(latent_from="", channels=(low[0] // 2, low[0]) + low,
             attention_levels=tuple(lv + 2 for lv in m.attention_levels),
             cross_attention_levels=tuple(lv + 2 for lv in m.cross_attention_levels))
    c.sample.update(thresholding="dynamic")
