"""The first stage of latent diffusion on the 64x64 `shapes` scenes: a KL-regularised autoencoder
(Rombach et al. 2022's "KL-f4": 64x64x3 -> 16x16x4 latents, 12,288 -> 1,024 numbers, f = 4) trained on
L1 reconstruction + 1e-6 x KL (jaxgen.models.autoencoder; LDM's perceptual and adversarial losses
are left out).

    jaxgen train autoencoder_shapes64 --workdir runs/autoencoder_shapes64
    jaxgen eval --workdir runs/autoencoder_shapes64
    jaxgen train latent_diffusion_shapes64 --workdir runs/latent_diffusion_shapes64   # then, in its latents

eval reports test_l1 (mean |x - x_hat| per pixel value in [0, 1]) beside test_l1_constant_image (the
best reconstruction that ignores z), the scene parser's exact-scene accuracy of the reconstructed
test scenes (exact_scene_reconstructed; real scenes: exact_scene_real, 100 %), and the latents'
std and scale factor. 83.68 GFLOP per train step at batch 32 (576,043 params; the loop's count, compiled
on CPU). Sized for an accelerator; not yet trained or measured here. `"demo"` is the
default run under that name; `"quick"` a smoke run on shapes/t2i64_tiny (tests).
"""
import ml_collections

from jaxgen.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "autoencoder"
    c.seed = 0
    c.data = dict(name="shapes/t2i64", split="train", eval_split="test", image_size=64, data_dir=None)
    # channels: widths at 64, 32 and 16 pixels (f = 2**(3 - 1) = 4); latent_channels: z of the
    # [16, 16, z] latent grid; norm_groups: at most this many GroupNorm groups; kl_weight: LDM's
    # KL-f4 weight; reconstruction: 'l1' (LDM's) or 'l2'.
    c.model = dict(channels=(32, 64, 64), num_res_blocks=1, latent_channels=4, norm_groups=32, kl_weight=1e-6,
                   reconstruction="l1")
    c.optim = dict(name="adam", lr=5e-4, b1=0.9, b2=0.999, warmup_steps=500, schedule="cosine", grad_clip=1.0)
    c.train = common.train_section(steps=10000, batch_size=32, log_every=250, ckpt_every=2500, ema_decay=0.999)
    # num_examples: test scenes reconstructed and parsed; batch_size: images per encoder / decoder call.
    c.eval = dict(num_examples=1000, batch_size=100)
    return common.apply_variant(c, arg, {"demo": None, "quick": quick}, name="autoencoder_shapes64")


def quick(c: ml_collections.ConfigDict) -> None:
    """A smoke run on the 256-scene shapes/t2i64_tiny: a narrow network, just long enough that its
    reconstructions depend on the latents (test_l1 clearly below test_l1_other_scene; the tests
    check it)."""
    c.data.name = "shapes/t2i64_tiny"
    c.model.update(channels=(8, 16, 32), num_res_blocks=1, norm_groups=4)
    c.optim.update(lr=3e-3, warmup_steps=5)
    c.train.update(steps=120, log_every=10, ckpt_every=120, batch_size=8, ema_decay=0.0)
    c.eval.update(num_examples=64, batch_size=64)
