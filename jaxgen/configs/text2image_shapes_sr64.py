"""Imagen-style text-to-image on `shapes`, second super-resolution stage 32 -> 64: the third stage of a
16 -> 32 -> 64 cascade (Imagen's 64 -> 256 -> 1024, at the scale of these scenes), trained on the
t2i scenes rendered at 64x64 (`shapes/t2i64`: the same scenes as `shapes/t2i`, twice the pixels per
side).

    jaxgen train text2image_shapes_sr64 --workdir runs/t2i_sr64
    jaxgen generate --workdir runs/t2i_base --sr_workdir runs/t2i_sr --sr_workdir runs/t2i_sr64 \
        --prompt "two red circles and a blue square" --out grid.png
    jaxgen eval --workdir runs/t2i_sr64     # exact scenes from real 32x32 inputs, edge sharpness

The recipe of the 16 -> 32 stage (text2image_shapes_sr: v-prediction with the simple loss, the
residual image - bilinear(low_res) diffused, noise augmentation over [0, 0.3] of the chain and 0.1
at sampling, text cross-attention at the low-resolution levels, no self-attention), one level
deeper: U-Net (32, 64, 128, 128) over 64 -> 32 -> 16 -> 8, the text at 16x16 and 8x8. Not tuned at
this size: the residual scale 0.4 was measured on the 16 -> 32 residual. The scene parser reads
64x64 images box-averaged to 32x32 (jaxgen.eval.scene.parse_ready: exact on 500 of 500 real 64x64
test scenes).

Cost: about 4x the 16 -> 32 stage's FLOPs per step (4x the pixels, a fourth level at 8x8): the
16 -> 32 stage took 88 min for 6,000 steps on 2 CPU cores, so this one is several CPU-hours; an
estimate from FLOPs, not measured (it is meant for an accelerator). `"quick"` is a smoke run on
shapes/t2i64_tiny (tests).
"""
import ml_collections

from jaxgen.configs import common, text2image_shapes, text2image_shapes_sr


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = text2image_shapes_sr.get_config()
    c.data.update(name="shapes/t2i64", image_size=64)
    c.model.update(low_res_size=32, channels=(32, 64, 128, 128), cross_attention_levels=(2, 3))
    # "demo": the config as it stands (`jaxgen demo` does not run this stage: it is sized for an accelerator).
    return common.apply_variant(c, arg, {"demo": None, "quick": quick}, name="text2image_shapes_sr64")


def quick(c: ml_collections.ConfigDict) -> None:
    """The 16 -> 32 stage's smoke run, one size up: 32 -> 64 on shapes/t2i64_tiny, a 64 -> 32 U-Net."""
    text2image_shapes.quick(c)
    c.data.name = "shapes/t2i64_tiny"
    c.model.update(channels=(16, 32), attention_levels=(), cross_attention_levels=(), cond_drop_prob=0.5)
