"""CycleGAN on horse2zebra at 256x256: the networks and recipe of Zhu, Park, Isola & Efros (2017),
"Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks" (arXiv:1703.10593),
sec. 4 and appendix 7, at the scale of the paper.

The paper's setting: the generator of Johnson et al. for 256x256 images (appendix 7.2): c7s1-64,
d128, d256, R256 x 9, u128, u64, c7s1-3 (7x7 edge convs with reflection padding, 3x3 stride-2 down
and fractionally-strided up convs, residual blocks of two reflection-padded 3x3 convs, instance norm
and ReLU after every conv but the last, tanh out); the 70x70 PatchGAN discriminator C64-C128-C256-C512
(4x4 convs, stride 2 but the last, instance norm but on C64, LeakyReLU 0.2) and a 4x4 conv to one
score per patch; least-squares GAN losses (D's halved), cycle weight lambda = 10, identity weight
0.5 lambda (sec. 5.2; the reference code's default), histories of 50 generated images per
discriminator; Adam at 2e-4, beta1 0.5, batch 1; 200 epochs, the rate constant for 100 and then
decaying linearly to 0 (optim.schedule 'linear_decay', decay_start 0.5). Their horse2zebra results
are images (fig. 13, and the failure cases of fig. 17), not a score.

Parameters (asserted by tests/configs/test_reference_families.py, which derives both counts layer by
layer): each generator 11,383,427, each discriminator 2,765,633, 28,298,120 for G, F, D_X, D_Y. The
reference PyTorch code (junyanz/pytorch-CycleGAN-and-pix2pix) has 11,378,179 and 2,764,737: it gives
every conv a bias (5,248 in a generator, 896 in a discriminator) and its instance norm no scale or
shift (affine=False); jaxgen leaves out the biases of convs that instance norm follows (it removes a
per-channel constant exactly, so they never learn) and keeps instance norm's scale and shift (2 x
5,248 and 2 x 896 parameters): 11,378,179 - 5,248 + 10,496 and 2,764,737 - 896 + 1,792.

Where jaxgen differs from the reference code, besides those parameters: weights start as jaxgen's
layers start them (LeCun normal), not N(0, 0.02); convs pad 'SAME': the generator's stride-2 3x3
convs one row and column at the bottom and right (PyTorch's padding=1 is used at the top and left),
the PatchGAN's stride-1 4x4 convs 1 before and 2 after (the reference pads 1 each side and loses a
row and column per conv), so it scores a 32x32 grid of 70x70 patches at 256x256 instead of 30x30
(the same receptive field; its stride-2 4x4 convs pad as the reference's do); an epoch is one
pass over the larger domain, as in the reference code (1,334 zebras: 266,800 iterations), but each
domain is shuffled per epoch of its own, and the rate decays per step rather than per epoch.

Data: TFDS `cycle_gan/horse2zebra`: trainA (horses, X), trainB (zebras, Y), testA, testB, of 1,067,
1,334, 120 and 140 images (the counts usually quoted for the dataset's zip; not confirmed here, where
the data cannot be downloaded), 256x256 JPEGs stored as an Image feature of any size. Training
follows the paper's code: every image resized to 286x286 (bicubic, on the host as it is read:
data.load_size), then a random 256x256 crop and a random left-right flip, drawn per example on the
device (data.crop_size, data.random_flip; jaxgen.tasks.cyclegan). Held-out images are resized to
256x256 whole (the identity on this data; the reference test script instead resizes them to 286 and
cuts 256 at a random offset). An image of any other size or aspect ratio is stretched to the square,
as the reference code's resize does.

    # the data, once (TFDS needs TensorFlow and the network: pip install 'jaxgen[catalog]')
    python -c "import tensorflow_datasets as tfds; tfds.builder('cycle_gan/horse2zebra').download_and_prepare()"
    jaxgen train cyclegan_horse2zebra --workdir runs/cyclegan_horse2zebra
    jaxgen eval --workdir runs/cyclegan_horse2zebra

`jaxgen eval` reports, on testA / testB (no true pairs to score against): the cycle errors
|F(G(x)) - x| and |G(F(y)) - y|, the identity errors |G(y) - y| and |F(x) - x|, and how far each
generator moves its input (|G(x) - x|, |F(y) - y|), as mean absolute pixel errors in [0, 1]; and,
where the FID Inception weights are converted, FID / KID of G(testA) (120 horses turned zebras,
eval.fid_samples) against testB (140 zebras). Later papers score CycleGAN's horse -> zebra that way
(e.g. Park et al. 2020, CUT, Table 1); their numbers, on their own protocols, are not confirmed here,
so none is quoted. FID on 120 images is strongly biased upwards: compare it only between runs of the
same protocol.

Expected cost on one H100 (an estimate from FLOPs, not a measurement: no GPU was at hand): a
generator is 99 GFLOP per 256x256 image forward (XLA's count; 88 % of it in the residual blocks), a
discriminator 6.3 GFLOP. An iteration at batch 1 (the generators' update runs six generator and two
discriminator forwards, then their backward; the discriminators' update four forwards and its
backward) is about 1.9 TFLOP: 6-19 ms at 10-30 % of the bf16 peak (989 TFLOP/s,
`--config.train.compute_dtype=bfloat16`), 13-38 ms in float32 (TF32, 495 TFLOP/s), so the 266,800
iterations take 0.5-1.5 hours in bfloat16 and 1-3 hours in float32. Batch 1 leaves the GPU poorly
occupied (one 256x256 image per kernel launch): expect the upper ends. Memory is small (the pools
hold 2 x 50 images of 0.8 MB).

Variants: 'mock' (also 'quick') is the same data pipeline (cycle_gan/horse2zebra's four splits,
images of any size resized to 286, cropped to 256 and flipped) with networks at toy size (two levels
of 8 and 16 channels, one residual block, 3x3 edge convs, a two-layer PatchGAN, pools of 4), batch
2, 2 iterations, that the tests train on CPU under `tfds.testing.mock_data`; 'demo' is the full
config.
"""
import ml_collections

from jaxgen.configs import common

EPOCH = 1334  # iterations per epoch at batch 1: the larger domain, trainB's zebras (as the reference code counts)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "cyclegan"
    c.seed = 0
    # split / split_y: the training images of X and Y; eval_split / eval_split_y: held out, unpaired.
    # load_size: every image resized to this square as it is read (any stored size); crop_size: the
    # random crop of each training image (held-out images are resized to it whole).
    c.data = {"name": "cycle_gan/horse2zebra", "split": "trainA", "split_y": "trainB", "eval_split": "testA",
              "eval_split_y": "testB", "data_dir": None, "load_size": 286, "crop_size": 256, "random_flip": True}
    # g_channels (64, 128, 256): c7s1-64, d128, d256 (and u128, u64 back up); d_channels: C64-C512.
    c.model = {"g_channels": (64, 128, 256), "num_res_blocks": 9, "edge_kernel": 7, "upsample": "transpose",
               "d_channels": (64, 128, 256, 512), "cycle_weight": 10.0, "identity_weight": 5.0, "pool_size": 50}
    c.optim = {"name": "adam", "lr": 2e-4, "b1": 0.5, "b2": 0.999, "warmup_steps": 0, "schedule": "linear_decay",
               "decay_start": 0.5, "grad_clip": 0.0}
    # No EMA: the paper translates with the generators themselves.
    c.train = common.train_section(steps=200 * EPOCH, batch_size=1, log_every=1000, ckpt_every=10 * EPOCH,
                                   sample_every=10 * EPOCH)
    # num_examples: all of testA and testB; fid_samples: each of testA's 120 horses translated once.
    c.eval = {"batch_size": 20, "num_examples": 140, "fid_samples": 120}
    return common.apply_variant(c, arg, {"demo": None, "mock": mock, "quick": mock}, name="cyclegan_horse2zebra")


def mock(c: ml_collections.ConfigDict) -> None:
    """The same pipeline at toy size, 2 iterations: for tests under tfds.testing.mock_data (whose
    splits hold as few examples as it is asked for, each image of a random size)."""
    # Two generator levels, so the transposed up-sampling conv runs; small kernels compile fast on CPU.
    c.model.update(g_channels=(8, 16), num_res_blocks=1, edge_kernel=3, d_channels=(8, 16), pool_size=4)
    c.train.update(steps=2, batch_size=2, log_every=1, ckpt_every=2, sample_every=0)
    c.eval.update(batch_size=4, num_examples=8, fid_samples=8)
