"""Unconditional diffusion on the procedural `shapes` scenes (32x32 RGB, 256 levels).

    jaxgen train diffusion_shapes --workdir runs/diffusion_shapes
    jaxgen eval --workdir runs/diffusion_shapes      # the likelihood bound in bits/dim (8-bit data)

At the native 32x32 the data stay on their 256-level grid, so eval reports the variational bound in
bits/dim, comparable to the usual 8-bit image numbers. Text-conditional diffusion on the captions,
and the 16 -> 32 super-resolution cascade, are the text-to-image configs. `"demo"` and `"quick"` are
smaller runs (the quick one on the 256-scene shapes/tiny split). `"flow"` (and `"demo_flow"`,
`"quick_flow"`) trains the same network by flow matching (see diffusion_digits' use_flow):

    jaxgen train diffusion_shapes:flow --workdir runs/diffusion_shapes_flow

`"dit"` (and `"demo_dit"`, `"quick_dit"`) replaces the U-Net by a transformer denoiser (DiT) of about
the same FLOPs per train step (see use_dit).
"""
import ml_collections

from jaxgen.configs import common, diffusion_digits


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = diffusion_digits.base(conditioning="none")
    c.data.update(name="shapes", image_size=32)
    c.model.update(channels=(32, 64, 128), attention_levels=(2,), dropout=0.0)
    c.train.update(steps=6000, batch_size=32)
    c.eval.update(batch_size=100, vlb_select_examples=300)
    return common.apply_variant(c, arg, {"demo": demo, "quick": quick}, name="diffusion_shapes",
                                modifiers={"flow": diffusion_digits.use_flow, "dit": use_dit})


def demo(c: ml_collections.ConfigDict) -> None:
    """A smaller, shorter run."""
    c.model.update(channels=(16, 32, 64))
    c.train.update(steps=500, ckpt_every=500, sample_every=0)
    c.eval.vlb = False


def quick(c: ml_collections.ConfigDict) -> None:
    """A smoke run of a few steps on the 256-scene shapes/tiny split. No attention and a 50-step
    chain: the likelihood bound runs the network over every step."""
    c.data.name = "shapes/tiny"
    c.model.update(channels=(16, 32), attention_levels=(), timesteps=50)
    c.sample.update(steps=10)
    c.train.update(steps=10, log_every=5, ckpt_every=10, sample_every=10, batch_size=16)
    c.eval.update(batch_size=32, vlb_select_examples=32)


def use_dit(c: ml_collections.ConfigDict) -> None:
    """The `_dit` variants: the U-Net replaced by a DiT of about its FLOPs per train step (see
    diffusion_digits.use_dit). 4x4 patches (an 8x8 token grid at 32x32: 2x2 patches would make 256
    tokens, and the same FLOPs only 2 blocks deep), 10 blocks of width 4 x model.channels[0]
    (measured at 32x32, batch 32: 25.9 GFLOP per step for the U-Net, 27.2 for the DiT; 9 blocks: 24.5)."""
    c.model.update(network="dit", patch_size=4, hidden_size=4 * c.model.channels[0], depth=10, mlp_ratio=4.0)
