"""U-Net semantic segmentation of the `shapes` scenes (background, circle, square, triangle).

    jaxgen train unet_shapes --workdir runs/unet_shapes
    jaxgen eval --workdir runs/unet_shapes

Expect test mIoU >= 0.95 (README results table). `get_config("demo")` is the run in `jaxgen demo`.
"""
import ml_collections

from jaxgen.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "segmentation"
    c.seed = 0
    c.data = dict(name="shapes", split="train", eval_split="test", data_dir=None)
    c.model = dict(channels=(16, 32, 64), num_res_blocks=1, attention_levels=(), upsample="nearest",
                   dropout=0.0, norm_groups=8)
    c.optim = dict(name="adam", lr=2e-3, warmup_steps=50, schedule="cosine", grad_clip=1.0)
    c.train = common.train_section(steps=3000, batch_size=32, log_every=50)
    c.eval = dict(batch_size=100)
    return common.apply_variant(c, arg, {"demo": demo, "quick": quick}, name="unet_shapes")


def demo(c: ml_collections.ConfigDict) -> None:
    """The run of `jaxgen demo`."""
    c.train.update(steps=300, ckpt_every=300)


def quick(c: ml_collections.ConfigDict) -> None:
    """A smoke run of a few steps on shapes/tiny."""
    c.data.name = "shapes/tiny"
    c.model.update(channels=(8, 16), norm_groups=4)
    c.train.update(steps=10, log_every=5, ckpt_every=10, batch_size=16)
    c.optim.warmup_steps = 2
