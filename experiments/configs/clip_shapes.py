"""CLIP on `shapes` scenes and their compositional captions (full, counting, colour and position
styles, one drawn per example and step); evaluated by retrieval on the held-out test scenes.

    jaxgen train clip_shapes --workdir runs/clip_shapes
    jaxgen eval --workdir runs/clip_shapes
    jaxgen embed --workdir runs/clip_shapes --text "two red circles and a blue square"

The CNN image tower is flattened rather than pooled, so where an object is survives into the
embedding (the position captions need it).
"""
import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "clip"
    c.seed = 0
    c.data = dict(name="shapes", split="train", eval_split="test", data_dir=None,
                  caption_styles=("full", "count", "colour", "position"))
    c.model = dict(image_size=32, image_tower="cnn", image_channels=(16, 32, 64), image_width=256,
                   patch_size=4, vit_depth=4, context_length=40, text_width=64, text_depth=2, num_heads=4,
                   embed_dim=128, loss="softmax")
    c.optim = dict(name="adamw", lr=1e-3, warmup_steps=200, schedule="cosine", grad_clip=1.0, weight_decay=0.05)
    c.train = dict(steps=3000, batch_size=128, parallel="shard_map", log_every=100, ckpt_every=1000,
                   sample_every=0, keep=2, ema_decay=0.0, augment_shift=0)
    c.eval = dict(batch_size=500)
    if arg == "demo":  # not part of `jaxgen demo` (too slow for its budget); a shorter run
        c.train.update(steps=1000, ckpt_every=1000)
    elif arg == "quick":
        c.data.name = "shapes/tiny"
        c.model.update(image_channels=(8, 16), image_width=32, text_width=32, text_depth=1, embed_dim=32)
        c.train.update(steps=10, log_every=5, ckpt_every=10, batch_size=32)
        c.optim.warmup_steps = 2
    elif arg:
        raise ValueError(f"clip_shapes takes '', 'demo' or 'quick', not {arg!r}.")
    return c
