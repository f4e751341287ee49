"""U-Net semantic segmentation of the `shapes` scenes (background, circle, square, triangle).

    jaxgen train unet_shapes --workdir runs/unet_shapes
    jaxgen eval --workdir runs/unet_shapes

Expect test mIoU >= 0.95 (README results table). `get_config("demo")` is the run in `jaxgen demo`.
"""
import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "segmentation"
    c.seed = 0
    c.data = dict(name="shapes", split="train", eval_split="test", data_dir=None)
    c.model = dict(channels=(16, 32, 64), num_res_blocks=1, attention_levels=(), upsample="nearest",
                   dropout=0.0, norm_groups=8)
    c.optim = dict(name="adam", lr=2e-3, warmup_steps=50, schedule="cosine", grad_clip=1.0)
    # grad_accum: micro-batches per optimizer update, run one after another inside the compiled step
    # (must divide the per-device batch; the same update as 1, with 1/grad_accum of the activation
    # memory). compute_dtype: 'float32', or 'bfloat16' for mixed precision (bfloat16 activations,
    # float32 params and optimizer state: the fast path on TPU/GPU; on CPU only correct, not faster).
    c.train = dict(steps=3000, batch_size=32, parallel="shard_map", log_every=50, ckpt_every=1000,
                   sample_every=0, keep=2, ema_decay=0.0, grad_accum=1, compute_dtype="float32")
    c.eval = dict(batch_size=100)
    if arg == "demo":
        c.train.update(steps=300, ckpt_every=300)
    elif arg == "quick":
        c.data.name = "shapes/tiny"
        c.model.update(channels=(8, 16), norm_groups=4)
        c.train.update(steps=10, log_every=5, ckpt_every=10, batch_size=16)
        c.optim.warmup_steps = 2
    elif arg:
        raise ValueError(f"unet_shapes takes '', 'demo' or 'quick', not {arg!r}.")
    return c
