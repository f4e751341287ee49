"""DCGAN on CIFAR-10 (32x32): the networks and training recipe of Radford, Metz & Chintala (2016),
"Unsupervised Representation Learning with Deep Convolutional Generative Adversarial Networks"
(arXiv:1511.06434), at 32x32.

The paper's recipe (sec. 3-4): strided convolutions in the discriminator and fractionally-strided
(transposed) ones in the generator, batch norm in both (not on G's output or D's input), ReLU in G
with a tanh output, LeakyReLU(0.2) in D, no fully connected hidden layers, z of 100 dimensions
uniform in [-1, 1], weights N(0, 0.02), Adam at lr 2e-4 with beta1 0.5, mini-batches of 128, images
scaled to [-1, 1]; the non-saturating generator loss of Goodfellow et al. From the authors' code
(github.com/Newmu/dcgan_code, faces/train_uncond_dcgan.py): 5x5 kernels, no biases, batch norm per
unit on the projection of z, batch-norm scales N(1, 0.02); its L2 weight decay of 1e-5 inside Adam
is not reproduced (jaxgen's optimizers have none of that form), nor its alternation of G and D
updates on different minibatches (here D, then G, each iteration). Figure 1's generator is
drawn at 64x64 (z -> 4x4x1024 -> ... -> 64x64x3); at 32x32 this config drops its 128-channel layer:
z -> 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x3, and the discriminator mirrors it (3 -> 128 -> 256 ->
512 at 4x4 -> logit), 5x5 kernels as in their code (model.network 'dcgan': jaxgen.models.dcgan).
Parameters: generator 4,941,952, discriminator 4,115,328 (asserted by
tests/configs/test_reference_families.py).

Their numbers: the paper trains no generative model on CIFAR-10 and reports no FID (there was none
yet) or Inception score for one; its CIFAR-10 result is the accuracy of an L2-SVM on the features
of a discriminator trained on ImageNet-1k (Table 1; recalled as 82.8 %, not confirmed here). Later papers measured FIDs for their own
DCGAN-style runs on CIFAR-10 (e.g. Heusel et al. 2017, who introduced FID): those are their
measurements with their networks and schedules, not confirmed here, so none is quoted. The run
length (100,000 iterations, 256 epochs) is this config's choice: the paper gives none for CIFAR-10.

    # the data, once (TFDS needs TensorFlow and the network: pip install 'jaxgen[catalog]')
    python -c "import tensorflow_datasets as tfds; tfds.builder('cifar10').download_and_prepare()"
    jaxgen train dcgan_cifar10 --workdir runs/dcgan_cifar10
    jaxgen sample --workdir runs/dcgan_cifar10 --num 50000 --out runs/dcgan_cifar10/samples.npz
    jaxgen fid runs/dcgan_cifar10/samples.npz data:cifar10:train

Expected cost on one H100 (an estimate from FLOPs, not a measurement: no GPU was at hand): the
generator and the discriminator are each about 0.2 GFLOP per 32x32 image forward (XLA's count:
0.17 each), so an iteration (D on 128 real and 128 fake images, then G through D, forward and
backward) is about 0.3 TFLOP: 1-3 ms at 10-30 % of the bf16 peak
(`--config.train.compute_dtype=bfloat16`), but at this size the step is more likely bound by kernel
launches and the host batch, 3-8 ms: 100,000 iterations in 5-15 minutes; 50,000 samples in seconds.

Variants: 'mock' (also 'quick') is the same pipeline and networks at toy size (one level of 8 channels
each, 3x3 kernels instead of 5, batch 8, 2 iterations) that the tests train on CPU under `tfds.testing.mock_data`;
'demo' is the full config.
"""
import ml_collections

from jaxgen.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = base(dataset="cifar10", image_size=32, g_channels=(512, 256, 128), d_channels=(128, 256, 512),
             steps=100_000)
    return common.apply_variant(c, arg, {"demo": None, "mock": mock, "quick": mock}, name="dcgan_cifar10")


def base(dataset: str, image_size: int, g_channels: tuple, d_channels: tuple, steps: int,
         center_crop: int = 0) -> ml_collections.ConfigDict:
    """Radford et al.'s recipe on `dataset` at `image_size` (dcgan_celeba builds on it too)."""
    c = ml_collections.ConfigDict()
    c.task = "gan"
    c.seed = 0
    # center_crop: the square cut from the middle of each image before the resize (0 = none).
    c.data = dict(name=dataset, split="train", eval_split="test", data_dir=None, center_crop=center_crop)
    c.model = dict(network="dcgan", image_size=image_size, latent_dim=100, latent_dist="uniform",
                   g_channels=g_channels, d_channels=d_channels, kernel_size=5, conditional=False,
                   loss="nonsaturating", r1_gamma=0.0)
    c.optim = dict(name="adam", lr=2e-4, d_lr=0.0, b1=0.5, b2=0.999, warmup_steps=0, schedule="constant",
                   grad_clip=0.0)
    # d_steps 1: one discriminator update per generator update, as DCGAN trains. No EMA (the paper
    # samples the generator itself).
    c.train = common.train_section(steps=steps, batch_size=128, log_every=500, ckpt_every=10_000,
                                   sample_every=5000, ema_decay=0.0, d_steps=1)
    # num_fd_samples: the samples `jaxgen eval` draws for its diversity statistics; batch_size: the
    # samples drawn at once (batch norm takes their statistics, as in training: keep it near 128).
    c.eval = dict(classifier_workdir="", num_fd_samples=1280, pr_k=3, batch_size=128)
    return c


def mock(c: ml_collections.ConfigDict) -> None:
    """The same pipeline and networks at toy size, 2 iterations: for tests under
    tfds.testing.mock_data (whose splits hold as few examples as it is asked for; batch 8)."""
    # One level each: the suite compiles every mock on CPU, and each level adds seconds.
    c.model.update(latent_dim=8, g_channels=(8,), d_channels=(8,), kernel_size=3)
    c.train.update(steps=2, batch_size=8, log_every=1, ckpt_every=2, sample_every=0)
    c.eval.update(num_fd_samples=16, batch_size=8)
