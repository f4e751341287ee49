"""CycleGAN (Zhu et al. 2017) on the `shapes` scenes: flat rendering (X) <-> painted rendering (Y),
trained unpaired (independently shuffled streams from disjoint halves of the train split).

    jaxgen train cyclegan_shapes --workdir runs/cyclegan_shapes
    jaxgen eval --workdir runs/cyclegan_shapes

Measured (600 iterations, about 4 CPU-minutes; mean |error| per pixel in [0, 1] on 1000 held-out
scenes): flat->painted 0.050 vs 0.564 for the untranslated input, painted->flat 0.058 vs 0.564;
cycle reconstruction 0.045 / 0.042. Caveat: the painted domain's canvas grain and brush noise are
random, so the target domain's *mean image* already scores 0.040 (flat->painted) and 0.065
(painted->flat); a translator that paints realistic texture pays for it under L1.
figures/flat_to_painted.png: rows input / translated / true counterpart / reconstruction.
A scaled-down version of the paper's ResNet generator and 3-layer PatchGAN at 32x32, least-squares
GAN loss, cycle weight 10 and identity weight 5 (0.5 x 10), history pools of 50, Adam(2e-4, 0.5),
5x5 instead of 7x7 edge convs, batch 8 (the paper uses 1).
`get_config("demo")` is the run of `jaxgen demo`, `"quick"` a smoke run of a few steps.
"""
import ml_collections

from jaxgen.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "cyclegan"
    c.seed = 0
    # disjoint_domains: X from the first half of the train scenes, Y from the second half.
    c.data = {"name": "shapes", "split": "train", "eval_split": "test", "data_dir": None, "disjoint_domains": True}
    c.model = {"g_channels": (16, 32), "num_res_blocks": 2, "edge_kernel": 5, "d_channels": (32, 64, 128),
               "cycle_weight": 10.0, "identity_weight": 5.0, "pool_size": 50}
    c.optim = {"name": "adam", "lr": 2e-4, "b1": 0.5, "b2": 0.999, "warmup_steps": 0, "schedule": "constant",
               "grad_clip": 0.0}
    c.train = common.train_section(steps=600, batch_size=8, log_every=50, ckpt_every=200, sample_every=200)
    c.eval = {"batch_size": 100, "num_examples": 1000}
    return common.apply_variant(c, arg, {"demo": demo, "quick": quick}, name="cyclegan_shapes")


def demo(c: ml_collections.ConfigDict) -> None:
    """The run of `jaxgen demo`."""
    c.train.update(steps=100, ckpt_every=100, sample_every=0)
    c.eval.update(num_examples=200)


def quick(c: ml_collections.ConfigDict) -> None:
    """A smoke run of a few steps on shapes/tiny, with networks that compile fast."""
    c.data.name = "shapes/tiny"
    c.model.update(g_channels=(8,), num_res_blocks=1, d_channels=(8,), pool_size=8, edge_kernel=3)
    c.train.update(steps=4, log_every=2, ckpt_every=2, sample_every=2, batch_size=8)
    c.eval.update(batch_size=32, num_examples=64)
