"""Imagen-style text-to-image on `shapes`, super-resolution stage 16 -> 32: a text-conditional
diffusion U-Net at 32x32 that also takes the 16x16 scene (up-sampled and concatenated), with noise
conditioning augmentation (its input noised to a level drawn uniformly in [0, 0.5] of the chain in
training, the level fed to the network; a fixed level, sample.noise_aug, at sampling).

    jaxgen train text2image_shapes_sr --workdir runs/t2i_sr
    jaxgen eval --workdir runs/t2i_sr --config.eval.base_workdir=runs/t2i_base   # the cascade's scores

`jaxgen eval` always scores the stage on real test scenes down-sampled to 16x16 (parse accuracy and
edge sharpness next to bilinear up-sampling). `"quick"` is a smoke run on shapes/tiny (tests).
"""
import ml_collections

from experiments.configs.text2image_shapes import get_config as base_config


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg not in ("", "demo", "quick"):
        raise ValueError(f"text2image_shapes_sr takes '', 'demo' or 'quick', not {arg!r}.")
    c = base_config(arg)
    c.data.image_size = 32
    c.model.update(stage="sr", low_res_size=16, noise_aug_max=0.5)
    c.sample.noise_aug = 0.1
    if arg in ("", "demo"):
        # The low-res input carries the layout: a smaller, attention-light U-Net suffices (Imagen's
        # SR stages drop self-attention and keep cross-attention to the text at the low levels).
        c.model.update(channels=(32, 64, 128), attention_levels=(2,))
        if arg == "":
            c.train.steps = 5000  # the low-res input makes it a far easier task than the base's
    else:
        # The smoke run: no attention at 32x32 (the base stage's quick config keeps cross-attention),
        # and the text dropped for half the examples, so that one batch of 16 holds both kinds. The
        # 8-vs-1-device test of the SR step uses this config as it is, sharing the compiled step.
        c.model.update(attention_levels=(), cond_drop_prob=0.5)
    return c
