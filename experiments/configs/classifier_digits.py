"""Digits classifier: its test accuracy is reported, and its penultimate features are the
Frechet-distance feature space for every generative family on digits.

    jaxgen train classifier_digits --workdir runs/classifier_digits
    jaxgen eval --workdir runs/classifier_digits

Works at 16x16 (digits resized bilinearly from 8x8, values scaled to [0, 1]). Expect test accuracy
>= 97% (README results table).
"""
import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "classifier"
    c.seed = 0
    c.data = dict(name="digits", split="train", eval_split="test", data_dir=None)
    c.model = dict(image_size=16, width=32, feature_dim=128, dropout=0.3)
    c.optim = dict(name="adam", lr=3e-3, warmup_steps=0, schedule="cosine", grad_clip=0.0)
    # grad_accum: micro-batches per optimizer update, run one after another inside the compiled step
    # (must divide the per-device batch; the same update as 1, with 1/grad_accum of the activation
    # memory). compute_dtype: 'float32', or 'bfloat16' for mixed precision (bfloat16 activations,
    # float32 params and optimizer state: the fast path on TPU/GPU; on CPU only correct, not faster).
    c.train = dict(steps=1000, batch_size=64, parallel="shard_map", log_every=100, ckpt_every=1000,
                   sample_every=0, keep=2, ema_decay=0.0, augment_shift=1, grad_accum=1, compute_dtype="float32")
    c.eval = dict(batch_size=360)
    if arg == "demo":
        pass  # the full run takes well under a minute
    elif arg == "quick":
        c.train.update(steps=20, log_every=5, ckpt_every=10, batch_size=32)
    elif arg:
        raise ValueError(f"classifier_digits takes '', 'demo' or 'quick', not {arg!r}.")
    return c
