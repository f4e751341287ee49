"""VAE on the embedded digits at their native 8x8, 17-level resolution (categorical likelihood).

    jaxgen train vae_digits --workdir runs/vae_digits      # about 2 minutes on 2 CPU cores
    jaxgen eval --workdir runs/vae_digits

Expect a test NLL (IWAE, K=1000) near 82 nats/image (1.86 bits/dim), below every baseline of
`python -m experiments.baselines` (best: per-pixel categorical, 108 nats). Larger models (channels
(32, 64), latent 16) or longer/larger-batch runs overfit the 1,437 training images: the test -ELBO
rises after 2-4k steps. `get_config("demo")` is the run of `jaxgen demo` (the same run),
`"quick"` a smoke run of a few steps.
"""
import ml_collections

from jaxgen.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "vae"
    c.seed = 0
    c.data = dict(name="digits", split="train", eval_split="test", data_dir=None)
    c.model = dict(latent_dim=8, channels=(16, 32), likelihood="categorical", variational=True,
                   upsample="nearest")
    c.optim = dict(name="adam", lr=1e-3, b1=0.9, b2=0.999, warmup_steps=0, schedule="cosine", grad_clip=0.0)
    c.train = common.train_section(steps=5000, batch_size=64, sample_every=1000)
    # classifier_workdir: a trained classifier_digits run; when set, eval adds the Frechet distance of
    # num_fd_samples samples in its feature space (jaxgen demo sets it).
    c.eval = dict(iwae_k=1000, iwae_chunk=100, batch_size=120, classifier_workdir="", num_fd_samples=1000)
    return common.apply_variant(c, arg, {"demo": None, "quick": quick}, name="vae_digits")


def quick(c: ml_collections.ConfigDict) -> None:
    """A smoke run of a few steps."""
    c.train.update(steps=20, log_every=5, ckpt_every=10, sample_every=10, batch_size=32)
    c.eval.update(iwae_k=8, iwae_chunk=4, batch_size=120)
