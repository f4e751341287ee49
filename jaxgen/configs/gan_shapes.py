"""Unconditional GAN on the embedded `shapes` scenes (32x32 RGB), trained with Goodfellow et al.'s
Algorithm 1: the GAN row of the FID-on-shapes comparison, beside the diffusion U-Net and DiT and
CycleGAN (experiments/shapes_fid.py).

    jaxgen train gan_shapes --workdir runs/gan_shapes
    jaxgen eval --workdir runs/gan_shapes     # FID / KID / precision / recall against held-out scenes

gan_digits' networks one level deeper (4x4 -> 32x32) and narrow enough for 2 CPU cores (9.9 GFLOP
per iteration at batch 64, R1's double backward included; twice the widths cost 4x), with the same
recipe: non-saturating loss with an R1 penalty (gamma = 1), Adam(2e-4, b1 = 0.5) as in DCGAN, one
discriminator update per iteration, an EMA of the generator for sampling. `"demo"` is the default
run under that name; `"quick"` a smoke run of a few steps.
"""
import ml_collections

from jaxgen.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "gan"
    c.seed = 0
    c.data = {"name": "shapes", "split": "train", "eval_split": "test", "data_dir": None}
    # loss: 'minimax' | 'nonsaturating' | 'hinge'; r1_gamma > 0 adds (gamma/2) E||grad D(x)||^2 to D.
    c.model = {"image_size": 32, "latent_dim": 64, "g_channels": (64, 32, 16), "d_channels": (16, 32, 64),
               "d_feature_dim": 128, "g_norm": "group", "d_norm": "none", "upsample": "nearest",
               "conditional": False, "loss": "nonsaturating", "r1_gamma": 1.0}
    # lr: the generator's; d_lr: the discriminator's (0 = same as lr).
    c.optim = {"name": "adam", "lr": 2e-4, "d_lr": 0.0, "b1": 0.5, "b2": 0.999, "momentum": 0.9, "warmup_steps": 0,
               "schedule": "constant", "grad_clip": 0.0}
    c.train = common.train_section(steps=5000, batch_size=64, log_every=200, ckpt_every=1000, sample_every=1000,
                                   ema_decay=0.999, d_steps=1)
    # No classifier judges scenes: eval reports the discriminator's outputs, the samples' diversity
    # and, with the FID weights converted, FID / KID / precision / recall on eval.fid_samples images.
    c.eval = {"classifier_workdir": "", "num_fd_samples": 1000, "pr_k": 3, "batch_size": 250}
    return common.apply_variant(c, arg, {"demo": None, "quick": quick}, name="gan_shapes")


def quick(c: ml_collections.ConfigDict) -> None:
    """A smoke run of a few steps on shapes/tiny."""
    c.data.name = "shapes/tiny"
    c.model.update(latent_dim=8, g_channels=(16, 8), d_channels=(8, 16), d_feature_dim=16, image_size=16)
    c.train.update(steps=4, log_every=2, ckpt_every=4, sample_every=0, batch_size=16)
    c.eval.update(num_fd_samples=64, batch_size=32, fid_samples=0)
