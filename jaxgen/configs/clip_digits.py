"""CLIP on digits with templated captions ("a handwritten digit seven", "the number 7", ...): the
digit reaches the model only through caption text, and it is then read back zero-shot.

    jaxgen train clip_digits --workdir runs/clip_digits
    jaxgen eval --workdir runs/clip_digits
    jaxgen zeroshot --workdir runs/clip_digits --split test \\
        --labels zero,one,two,three,four,five,six,seven,eight,nine

Images at 16x16 (bilinear from 8x8), a small CNN image tower and a 2-block text transformer.
`model.loss` = 'sigmoid' trains with SigLIP's loss instead of CLIP's softmax.
"""
import ml_collections

from jaxgen.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "clip"
    c.seed = 0
    c.data = dict(name="digits", split="train", eval_split="test", data_dir=None, caption_styles=())
    c.model = dict(image_size=16, image_tower="cnn", image_channels=(32, 64, 128), image_width=256,
                   patch_size=4, vit_depth=4, context_length=16, text_width=128, text_depth=2, num_heads=4,
                   embed_dim=128, loss="softmax")
    c.optim = dict(name="adamw", lr=1e-3, warmup_steps=100, schedule="cosine", grad_clip=1.0, weight_decay=0.05)
    c.train = common.train_section(steps=1000, batch_size=128, augment_shift=1)
    c.eval = dict(batch_size=500)
    return common.apply_variant(c, arg, {"demo": demo, "quick": quick}, name="clip_digits")


def demo(c: ml_collections.ConfigDict) -> None:
    """The run of `jaxgen demo`."""
    c.train.update(steps=300, ckpt_every=300, batch_size=64)


def quick(c: ml_collections.ConfigDict) -> None:
    """A smoke run of a few steps with small towers (clip_shapes' too)."""
    c.model.update(image_channels=(8, 16), image_width=32, text_width=32, text_depth=1, embed_dim=32)
    c.train.update(steps=10, log_every=5, ckpt_every=10, batch_size=32)
    c.optim.warmup_steps = 2
