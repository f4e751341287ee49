"""Class-conditional DDPM on CIFAR-10 with classifier-free guidance: the recipe of Ho & Salimans
(2021), "Classifier-Free Diffusion Guidance" (arXiv:2207.12598), adapted to CIFAR-10 on the network
and training of ddpm_cifar10 (Ho et al. 2020; see that config for the architecture, schedule and
optimizer).

The adaptation: the label embedded (11 rows of width 512: the 10 classes and the null class) and
added to the time embedding; the label replaced by the null class with probability p_uncond = 0.1
(model.cond_drop_prob) in training, so that one network is both the conditional and the unconditional
model (their Algorithm 1); sampled with eps~ = (1 + w) eps(x, c) - w eps(x) (their eq. 6), which is
jaxgen's sample.guidance s = 1 + w (s = 1 the conditional model, 0 the unconditional one). They
trained on ImageNet 64x64 and 128x128, not CIFAR-10, and found p_uncond 0.1-0.2 best and the best FID
at small guidance (w of 0.1-0.3), larger w trading FID (diversity) for Inception score (fidelity);
so the default here is s = 1.3 (w = 0.3), and a sweep over s is the experiment to run. The paper has
no CIFAR-10 number to compare with; the unconditional model of ddpm_cifar10 (FID 3.17, IS 9.46,
Ho et al. 2020) is the baseline. 36,014,595 parameters: ddpm_cifar10's 35,746,307 plus the label
embedding (5,632) and its projection (262,656).

    # the data, once (TFDS needs TensorFlow and the network: pip install 'jaxgen[catalog]')
    python -c "import tensorflow_datasets as tfds; tfds.builder('cifar10').download_and_prepare()"
    jaxgen train ddpm_cifar10_class --workdir runs/ddpm_cifar10_class
    jaxgen sample --workdir runs/ddpm_cifar10_class --num 50000 --out runs/ddpm_cifar10_class/samples.npz
    jaxgen fid runs/ddpm_cifar10_class/samples.npz data:cifar10:train

Expected cost on one H100: as ddpm_cifar10 for training (an estimate from FLOPs: 3-10 hours for the
800,000 steps in bf16; the label adds nothing measurable); guided sampling calls the network twice
per step, so 50,000 guided samples of 1,000 steps take twice ddpm_cifar10's 0.5-1.5 hours.

Variants as ddpm_cifar10: `"mock"` (and `"quick"`), the toy-size 2-step run the tests train under
`tfds.testing.mock_data`; `"demo"`, the full config.
"""
import ml_collections

from jaxgen.configs import common, ddpm_cifar10


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ddpm_cifar10.base(conditioning="class")
    c.sample.guidance = 1.3
    variants = {"demo": None, "mock": mock, "quick": mock}
    return common.apply_variant(c, arg, variants, name="ddpm_cifar10_class")


def mock(c: ml_collections.ConfigDict) -> None:
    """ddpm_cifar10's mock, with half of each batch's labels dropped, so that one batch of 8 trains
    both the conditional and the unconditional model."""
    ddpm_cifar10.mock(c)
    c.model.cond_drop_prob = 0.5
