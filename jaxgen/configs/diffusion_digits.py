"""Unconditional diffusion (DDPM training, DDIM sampling) on the embedded digits, 16x16 (bilinear).

    jaxgen train diffusion_digits --workdir runs/diffusion_digits \
        --config.eval.classifier_workdir=runs/classifier_digits
    jaxgen eval --workdir runs/diffusion_digits

`get_config("8x8")` trains at the digits' native 8x8 with 17 levels for 12,000 steps, where `jaxgen
eval` reports the variational bound in bits/dim on the same discrete data as the VAE (and the
samples compare with the GAN's, also 8x8). `"demo"` is the small run of
`jaxgen demo` (8x8, 3,000 steps: class accuracy ~85% at w = 2 for the class-conditional variant),
`"quick"` a smoke run of a few steps. The class-conditional model with classifier-free guidance is
diffusion_digits_class.

A `_flow` suffix (`"8x8_flow"`, `"demo_flow"`, `"quick_flow"`, and `"flow"` for the default) trains
the same network for the same steps by flow matching instead (rectified flow with SD3's
logit-normal time sampling, see jaxgen.models.diffusion.flow) and samples with Heun's method:

    jaxgen train diffusion_digits_class:8x8_flow --workdir runs/diffusion_digits_class_8x8_flow \
        --config.eval.classifier_workdir=runs/classifier_digits

A `_dit` suffix (`"dit"`, `"8x8_dit"`, `"demo_dit"`, `"quick_dit"`) replaces the U-Net by a transformer
denoiser (DiT with adaLN-Zero, jaxgen.models.diffusion.dit) of about the same FLOPs per train step:

    jaxgen train diffusion_digits_class:dit --workdir runs/diffusion_digits_class_dit
"""
import ml_collections

from jaxgen.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return common.apply_variant(base(conditioning="none"), arg,
                                {"8x8": native_8x8_ancestral, "demo": demo, "quick": quick},
                                name="diffusion_digits", modifiers={"flow": use_flow, "dit": use_dit})


def base(conditioning: str) -> ml_collections.ConfigDict:
    """The digits diffusion config shared by the unconditional and class-conditional models."""
    c = ml_collections.ConfigDict()
    c.task = "diffusion"
    c.seed = 0
    c.data = dict(name="digits", split="train", eval_split="test", image_size=16, data_dir=None)
    c.model = dict(channels=(32, 64), num_res_blocks=1, attention_levels=(1,), num_heads=4,
                   upsample="nearest", dropout=0.1, norm_groups=8, schedule="cosine", timesteps=1000,
                   parameterization="eps", loss_weighting="simple", min_snr_gamma=5.0,
                   conditioning=conditioning, cond_drop_prob=0.1 if conditioning != "none" else 0.0,
                   process="ddpm", flow_time="logit_normal", flow_time_mean=0.0, flow_time_std=1.0,
                   flow_shift=1.0)
    # guidance: the classifier-free guidance scale w used by `jaxgen sample`/`eval` (class-conditional
    # models only; 1 = the conditional model, 0 = the unconditional one).
    c.sample = dict(method="ddim", steps=50, eta=0.0, guidance=1.0, thresholding="dynamic",
                    percentile=0.995, variance="small")
    c.optim = dict(name="adam", lr=1e-3, b1=0.9, b2=0.999, warmup_steps=200, schedule="cosine",
                   grad_clip=1.0)
    c.train = common.train_section(steps=5000, batch_size=64, sample_every=1000, ema_decay=0.999)
    # classifier_workdir: a trained classifier_digits run; eval then scores num_fd_samples samples.
    # vlb_select_examples: training images on which the likelihood bound's t0 is chosen.
    c.eval = dict(vlb=True, vlb_select_examples=360, batch_size=120, classifier_workdir="", num_fd_samples=1000)
    return c


def native_8x8(c: ml_collections.ConfigDict) -> None:
    """The digits' native 8x8 for 12,000 steps (17 min on 2 cores): the class-conditional model then
    meets the issue's goals (99.95 % classified as requested at w = 2; README results)."""
    c.data.image_size = 8
    c.train.update(steps=12000, ckpt_every=3000)


def native_8x8_ancestral(c: ml_collections.ConfigDict) -> None:
    """native_8x8, sampled by ancestral DDPM respaced to 100 steps with static clipping: Frechet
    distance 21.0 over chunks of 360 against 52.4 for DDIM-50 with dynamic thresholding on the
    12,000-step model (README results). The cosine schedule ends at alpha_bar ~ 0, where DDIM's first
    x0 estimate amplifies the eps error; ancestral noise corrects it, at twice the network calls."""
    native_8x8(c)
    c.sample.update(method="ddpm", steps=100, thresholding="static")


def demo(c: ml_collections.ConfigDict) -> None:
    """The small run of `jaxgen demo` (which trains diffusion_digits_class:demo). Under two minutes
    on 2 cores at the native 8x8 (4x fewer pixels than 16x16 buys 2.5x the steps; 1,200 steps at
    16x16 still drew noise). EMA 0.995: a 0.999 average spans ~1,000 steps, a third of this run,
    early weights included."""
    c.data.image_size = 8
    c.model.update(channels=(16, 32))
    c.train.update(steps=3000, ckpt_every=3000, sample_every=0, ema_decay=0.995)
    c.eval.update(num_fd_samples=500, vlb=False)


def quick(c: ml_collections.ConfigDict) -> None:
    """A smoke run of a few steps."""
    c.model.update(channels=(16, 32), timesteps=100)
    c.sample.update(steps=10)
    c.train.update(steps=20, log_every=5, ckpt_every=10, sample_every=10, batch_size=32)
    c.eval.update(num_fd_samples=64, vlb_select_examples=120)


def use_flow(c: ml_collections.ConfigDict) -> None:
    """The `_flow` variants: the config `c` trained by flow matching: same network, data and budget,
    the velocity target on the straight path with logit-normal times (SD3's m = 0, s = 1), no
    resolution shift (these images are the size the time grid is made for), sampled by Heun in 10
    steps (19 network evaluations, the budget at which the issue compares it with the DDPM-trained
    model). Dynamic thresholding, as the DDPM variants sample: without it 35 % of the flow model's x0
    estimates leave [-1, 1] and the samples saturate (Frechet distance to test 77.5 at Heun-10 on
    the 8x8 class-conditional run, 45.6 with it; README results). No likelihood bound: it is the
    DDPM chain's."""
    c.model.update(process="flow", flow_time="logit_normal", flow_time_mean=0.0, flow_time_std=1.0,
                   flow_shift=1.0)
    c.sample.update(method="heun", steps=10, thresholding="dynamic")
    c.eval.vlb = False


def use_dit(c: ml_collections.ConfigDict) -> None:
    """The `_dit` variants: the config `c` with the U-Net replaced by a transformer denoiser (DiT,
    Peebles & Xie 2023, adaLN-Zero; jaxgen.models.diffusion.dit) of about the U-Net's FLOPs per
    train step, with the same data, objective, sampler and budget. 2x2 patches (an 8x8 token grid at
    16x16), 5 blocks of width 2 x model.channels[0], model.num_heads heads, MLP ratio 4: both
    networks' FLOPs grow with the square of their width, so tying the width to the U-Net's keeps
    the match on the smaller variants too (measured, GFLOP per step, U-Net vs DiT: 7.71 vs 7.63 at
    16x16, batch 64; "demo", 8x8: 0.477 vs 0.489; "quick": 1.04 vs 1.17). model.channels stays in
    the config, unused by the DiT."""
    c.model.update(network="dit", patch_size=2, hidden_size=2 * c.model.channels[0], depth=5, mlp_ratio=4.0)
