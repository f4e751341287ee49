"""CLIP on `shapes` scenes and their compositional captions (full, counting, colour and position
styles, one drawn per example and step); evaluated by retrieval on the held-out test scenes.

    jaxgen train clip_shapes --workdir runs/clip_shapes
    jaxgen eval --workdir runs/clip_shapes
    jaxgen embed --workdir runs/clip_shapes --text "two red circles and a blue square"
    jaxgen train clip_shapes:t2i --workdir runs/clip_shapes_t2i   # the CLIP under unclip_shapes

The digits config at 32x32 RGB, with a longer text context for the position captions. The CNN image
tower is flattened rather than pooled, so where an object is survives into the embedding (the
position captions need it); no random shifts, which would move objects between named cells.
"""
import ml_collections

from jaxgen.configs import clip_digits, common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = clip_digits.get_config()
    c.data.update(name="shapes", caption_styles=("full", "count", "colour", "position"))
    c.model.update(image_size=32, image_channels=(16, 32, 64), context_length=40, text_width=64)
    c.optim.warmup_steps = 200
    c.train.update(steps=3000, augment_shift=0)
    return common.apply_variant(c, arg, {"demo": demo, "t2i": t2i, "quick": quick}, name="clip_shapes")


def demo(c: ml_collections.ConfigDict) -> None:
    """A shorter run (not part of `jaxgen demo`: too slow for its budget)."""
    c.train.update(steps=1000, ckpt_every=1000)


def t2i(c: ml_collections.ConfigDict) -> None:
    """On the text-to-image split (shapes/t2i), as unclip_shapes needs it."""
    c.data.name = "shapes/t2i"


def quick(c: ml_collections.ConfigDict) -> None:
    """clip_digits' smoke run on shapes/tiny."""
    c.data.name = "shapes/tiny"
    clip_digits.quick(c)
