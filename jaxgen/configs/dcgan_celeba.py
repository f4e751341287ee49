"""DCGAN on CelebA at 64x64: the networks of Radford, Metz & Chintala (2016), "Unsupervised
Representation Learning with Deep Convolutional Generative Adversarial Networks" (arXiv:1511.06434),
Figure 1, exactly: z (100, uniform) -> 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x3
(5x5 fractionally-strided convolutions, batch norm and ReLU, tanh out), and the mirrored
discriminator 64x64x3 -> 32x32x128 -> 16x16x256 -> 8x8x512 -> 4x4x1024 -> logit (5x5 stride-2
convolutions, batch norm but on the first, LeakyReLU 0.2); Adam at 2e-4, beta1 0.5, batch 128,
weights N(0, 0.02), no biases (the authors' code). See dcgan_cifar10 for the recipe. Parameters:
generator 18,885,760, discriminator 17,232,768 (asserted by tests/configs/test_reference_families.py).

Data: TFDS `celeb_a` (162,770 training images of 218x178), each cut to its central 108x108 square
(the face) and resized to 64x64 with an antialiased bilinear filter on the device (data.center_crop;
jaxgen.data.transforms.center_crop_resize); the crop size is this config's choice (the common one of
DCGAN code on CelebA), not the paper's.

Their numbers: the paper trained its face model on a scraped set of 3 M images of 10 K people, not
CelebA, and reports samples, not a score; FID did not exist yet. Later papers measured FIDs of
DCGAN-style runs on CelebA (e.g. Heusel et al. 2017): their measurements, on their own crops and
schedules, not confirmed here, so none is quoted. The run length, 32,000 iterations (about 25 epochs),
follows the authors' face script (niter = 25 epochs).

    # the data, once (TFDS needs TensorFlow and the network: pip install 'jaxgen[catalog]';
    # celeb_a's files come from Google Drive and may need a manual download, see the TFDS catalog)
    python -c "import tensorflow_datasets as tfds; tfds.builder('celeb_a').download_and_prepare()"
    jaxgen train dcgan_celeba --workdir runs/dcgan_celeba
    jaxgen sample --workdir runs/dcgan_celeba --num 50000 --out runs/dcgan_celeba/samples.npz

Memory: jaxgen's pipeline holds the whole split in host memory as uint8: 162,770 x 218 x 178 x 3 =
19 GB for celeb_a's train split (and decoding its JPEGs takes minutes at start-up).

Expected cost on one H100 (an estimate from FLOPs, not a measurement: no GPU was at hand): the
generator and the discriminator are each about 1.1 GFLOP per 64x64 image forward (XLA's count), so
an iteration (D on 128 real and 128 fake images, then G through D, forward and backward) is about
1.8 TFLOP: 6-18 ms at 10-30 % of the bf16 peak (`--config.train.compute_dtype=bfloat16`), so the
32,000 iterations take 4-10 minutes (about twice in float32), plus the start-up decode.

Variants: 'mock' (also 'quick') is the same pipeline (celeb_a's 218x178 images, the centre crop and
resize) and networks at toy size, batch 8, 2 iterations, that the tests train on CPU under
`tfds.testing.mock_data`; 'demo' is the full config.
"""
import ml_collections

from jaxgen.configs import common, dcgan_cifar10


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = dcgan_cifar10.base(dataset="celeb_a", image_size=64, g_channels=(1024, 512, 256, 128),
                           d_channels=(128, 256, 512, 1024), steps=32_000, center_crop=108)
    return common.apply_variant(c, arg, {"demo": None, "mock": mock, "quick": mock}, name="dcgan_celeba")


def mock(c: ml_collections.ConfigDict) -> None:
    """dcgan_cifar10's toy networks (one level: 32x32 -> 64x64), 2 iterations of batch 8."""
    dcgan_cifar10.mock(c)
