"""DDPM on CIFAR-10 at the scale of Ho, Jain & Abbeel (2020), "Denoising Diffusion Probabilistic
Models" (arXiv:2006.11239), sec. 4 and appendix B.

The paper's setting: the U-Net of their appendix B (model.network 'ddpm': base channels 128,
multipliers (1, 2, 2, 2), 2 residual blocks per resolution, self-attention at 16x16 and in the middle
block, dropout 0.1), 35.7 M parameters (here exactly 35,746,307, asserted by
tests/configs/test_reference_configs.py); linear betas 1e-4 .. 0.02 over T = 1000; the simple
(unweighted eps) loss; Adam at lr 2e-4 with 5,000 warm-up steps, gradient clipping at 1; batch 128;
EMA 0.9999; random horizontal flips; 800,000 steps. Their results (Table 1, unconditional CIFAR-10):
FID 3.17 and Inception score 9.46 on 50,000 samples (ancestral sampling, 1,000 steps), and a test
NLL bound <= 3.75 bits/dim (L_simple model; 3.72 on train).

    # the data, once (TFDS needs TensorFlow and the network: pip install 'jaxgen[catalog]')
    python -c "import tensorflow_datasets as tfds; tfds.builder('cifar10').download_and_prepare()"
    jaxgen train ddpm_cifar10 --workdir runs/ddpm_cifar10
    jaxgen eval --workdir runs/ddpm_cifar10                 # test bound in bits/dim (eval.vlb)
    jaxgen sample --workdir runs/ddpm_cifar10 --num 50000 --out runs/ddpm_cifar10/samples.npz
    jaxgen fid runs/ddpm_cifar10/samples.npz data:cifar10:train

Expected cost on one H100 (an estimate from FLOPs, not a measurement; no GPU was at hand): the
network is 10.9 GFLOP per 32x32 image forward, one train step at batch 128 4.27 TFLOP (XLA's count
of the lowered loss and gradient; the loop prints its own count as "FLOPs per step"). At 10-30 % of
the H100 SXM's dense bf16 peak (989 TFLOP/s, `--config.train.compute_dtype=bfloat16`; conv U-Nets at
32x32 rarely do better: Ho et al.'s 21 steps/s on a TPU v3-8 is 90 TFLOP/s, ~21 % of its 420 TFLOP/s
bf16 peak) a step takes 14-43 ms and the 800,000 steps 3-10 hours; in float32 (TF32 peak 495
TFLOP/s) about twice that. `jaxgen eval`'s bound (1,000 network calls per image over 11,000
images, 1.2e17 FLOP) adds 7-20 minutes; 50,000 samples of 1,000 ancestral steps (5.4e17 FLOP)
0.5-1.5 hours.

Variants: `"mock"` (also `"quick"`, the name the suite's smoke tests use) is the same pipeline and
architecture at toy size (channels (8, 16), one block, 100 steps, batch 8) for 2 steps, that
the tests run on CPU under `tfds.testing.mock_data`, so that the real TFDS features, shapes, dtypes
and splits of cifar10 reach the train step without the data. `"demo"` is the full config.

The class-conditional model with classifier-free guidance is ddpm_cifar10_class.
"""
import ml_collections

from jaxgen.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return common.apply_variant(base(conditioning="none"), arg, {"demo": None, "mock": mock, "quick": mock},
                                name="ddpm_cifar10")


def base(conditioning: str) -> ml_collections.ConfigDict:
    """Ho et al.'s CIFAR-10 config; `conditioning` 'class' adds labels (ddpm_cifar10_class)."""
    c = ml_collections.ConfigDict()
    c.task = "diffusion"
    c.seed = 0
    # random_flip: each training image mirrored left-right with probability 1/2 (Ho et al. sec. 4).
    c.data = dict(name="cifar10", split="train", eval_split="test", image_size=32, data_dir=None,
                  random_flip=True)
    # network 'ddpm': jaxgen.models.diffusion.network.DDPMUNet (a skip per block, a middle block);
    # upsample is that of the 'unet' network and unused here (DDPMUNet up-samples nearest + conv).
    c.model = dict(network="ddpm", channels=(128, 256, 256, 256), num_res_blocks=2, attention_levels=(1,),
                   num_heads=1, upsample="nearest", dropout=0.1, norm_groups=32, schedule="linear",
                   timesteps=1000, parameterization="eps", loss_weighting="simple", min_snr_gamma=5.0,
                   conditioning=conditioning, cond_drop_prob=0.1 if conditioning != "none" else 0.0,
                   process="ddpm")
    # Ancestral sampling over the full chain with x0 clipped to [-1, 1] and sigma_t^2 = beta_t (the
    # 'large' variance of their CIFAR-10 runs; sec. 3.2 finds beta~_t similar).
    c.sample = dict(method="ddpm", steps=1000, eta=0.0, guidance=1.0, thresholding="static", percentile=0.995,
                    variance="large")
    c.optim = dict(name="adam", lr=2e-4, b1=0.9, b2=0.999, warmup_steps=5000, schedule="constant", grad_clip=1.0)
    # No sample grids during training: 1,000-step sampling would cost more than the steps between them.
    c.train = common.train_section(steps=800_000, batch_size=128, log_every=1000, ckpt_every=10_000,
                                   sample_every=0, ema_decay=0.9999)
    # The bound over the 10,000 test images; t0 chosen on 1,000 training images (see DiffusionTask).
    c.eval = dict(vlb=True, vlb_select_examples=1000, batch_size=100, classifier_workdir="", num_fd_samples=50_000)
    return c


def mock(c: ml_collections.ConfigDict) -> None:
    """The same pipeline and architecture at toy size, 2 steps: for tests under tfds.testing.mock_data
    (whose splits hold as few examples as it is asked for; batch 8)."""
    # No attention at 16x16 (the middle block keeps its own): each attention block adds seconds of
    # compile time on CPU.
    c.model.update(channels=(8, 16), num_res_blocks=1, attention_levels=(), norm_groups=4, timesteps=100)
    c.sample.update(steps=10)
    c.optim.warmup_steps = 1
    c.train.update(steps=2, batch_size=8, log_every=1, ckpt_every=2, sample_every=0)
    c.eval.update(vlb_select_examples=8, batch_size=8)
