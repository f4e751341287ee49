"""VAE on the embedded digits at their native 8x8, 17-level resolution.

    jaxgen train vae_digits --workdir runs/vae_digits
    jaxgen eval --workdir runs/vae_digits

Expect (see README results table): test NLL by IWAE (K=1000) well below the baselines of
experiments/baselines.py. `get_config("demo")` is the smaller run of `jaxgen demo`, `"quick"` a
smoke run of a few steps.
"""
import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "vae"
    c.seed = 0
    c.data = dict(name="digits", split="train", eval_split="test", data_dir=None)
    c.model = dict(latent_dim=16, channels=(32, 64), likelihood="categorical", variational=True,
                   upsample="transpose")
    c.optim = dict(name="adam", lr=2e-3, b1=0.9, b2=0.999, warmup_steps=100, schedule="cosine", grad_clip=1.0)
    c.train = dict(steps=20_000, batch_size=128, parallel="shard_map", log_every=100, ckpt_every=2000,
                   sample_every=2000, keep=3, ema_decay=0.0)
    # classifier_workdir: a trained classifier_digits run; when set, eval adds the Frechet distance of
    # num_fd_samples samples in its feature space (jaxgen demo sets it).
    c.eval = dict(iwae_k=1000, iwae_chunk=100, batch_size=120, classifier_workdir="", num_fd_samples=1000)
    if arg == "demo":
        c.train.update(steps=3000, ckpt_every=1000, sample_every=500)
    elif arg == "quick":
        c.train.update(steps=20, log_every=5, ckpt_every=10, sample_every=10, batch_size=32)
        c.optim.warmup_steps = 2
        c.eval.update(iwae_k=8, iwae_chunk=4, batch_size=120)
    elif arg:
        raise ValueError(f"vae_digits takes '', 'demo' or 'quick', not {arg!r}.")
    return c
