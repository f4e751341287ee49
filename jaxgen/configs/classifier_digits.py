"""Digits classifier: its test accuracy is reported, and its penultimate features are the
Frechet-distance feature space for every generative family on digits.

    jaxgen train classifier_digits --workdir runs/classifier_digits
    jaxgen eval --workdir runs/classifier_digits

Works at 16x16 (digits resized bilinearly from 8x8, values scaled to [0, 1]). Expect test accuracy
>= 97% (README results table).
"""
import ml_collections

from jaxgen.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "classifier"
    c.seed = 0
    c.data = dict(name="digits", split="train", eval_split="test", data_dir=None)
    c.model = dict(image_size=16, width=32, feature_dim=128, dropout=0.3)
    c.optim = dict(name="adam", lr=3e-3, warmup_steps=0, schedule="cosine", grad_clip=0.0)
    c.train = common.train_section(steps=1000, batch_size=64, augment_shift=1)
    c.eval = dict(batch_size=360)
    # demo: the full run (it takes well under a minute).
    return common.apply_variant(c, arg, {"demo": None, "quick": quick}, name="classifier_digits")


def quick(c: ml_collections.ConfigDict) -> None:
    """A smoke run of a few steps."""
    c.train.update(steps=20, log_every=5, ckpt_every=10, batch_size=32)
