"""VAE and IWAE on dynamically binarized MNIST at the scale of Burda, Grosse & Salakhutdinov (2016),
"Importance Weighted Autoencoders" (arXiv:1509.00519), sec. 5 and their code (github.com/yburda/iwae).

The paper's setting, as this config has it (model.network 'mlp': jaxgen.models.iwae.IWAE):
  * data: MNIST, each pixel ~ Bernoulli(intensity), redrawn every time an image is seen
    (data.binarize 'dynamic': a pure function of (seed, step, example), so a resumed run replays the
    same bits); the test split binarized once with a fixed key. (Their code holds out the last 400
    training images for validation; here all 60,000 train.)
  * 1 stochastic layer: 784-200-200-50 (tanh), Bernoulli decoder 50-200-200-784: 425,284 params.
    2 stochastic layers (`_two_layer`): 784-200-200-100 and 100-100-100-50 up, 50-100-100-100 and
    100-200-200-784 down: 521,084 params (both asserted by tests/configs/test_reference_families.py).
    Gaussian layers give mean and log sigma by two linear heads; the output bias starts at the logit
    of the mean training image (their code).
  * objective: k-sample 'elbo' (their "VAE": the mean of k log-weights; k = 1 is the usual ELBO) or
    'iwae' (log of the mean of k weights), k = model.train_samples in {1, 5, 50};
  * Adam (b1 0.9, b2 0.999, eps 1e-4), batch 20, 3^i epochs at lr 0.001 * 10^(-i/7) for i = 0..7
    (3,280 epochs = 9,840,000 steps of 20; optim.schedule = 'burda', optim.epoch_steps = 60,000 / 20);
  * test NLL: -L_5000 over the test set (eval.iwae_k 5000, drawn 500 at a time).
Confirmed here from their published code: the layer sizes, tanh, the exp-parameterised sigma, the
output-bias init, batch 20, the schedule, dynamic binarization of train and test, k = 5000 for the
test estimate. Not confirmed here (the search tools reached no copy of the paper's Table 1): the test
NLLs it reports, recalled as 1 layer: VAE k=1 86.76, k=5 86.47, k=50 86.35; IWAE k=5 85.54, k=50
84.78; 2 layers: VAE k=1 85.33, k=5 85.01, k=50 84.78; IWAE k=5 83.89, k=50 82.90 (nats). Check
them against the paper before citing. Their code's Adam defaults to b1 = 0.99 with the second-moment
average started at 1; the paper's text says b1 = 0.9, eps = 1e-4, which this config follows.

    # the data, once (TFDS needs TensorFlow and the network: pip install 'jaxgen[catalog]')
    python -c "import tensorflow_datasets as tfds; tfds.builder('mnist').download_and_prepare()"
    jaxgen train vae_mnist:iwae_k50 --workdir runs/iwae_mnist_k50
    jaxgen eval --workdir runs/iwae_mnist_k50     # test_iwae5000_nats: the test NLL estimate

Expected cost on one H100 (an estimate, not a measurement: no GPU was at hand). The network is tiny
(about 0.85 MFLOP per image and sample forward): even at k = 50 a step of 20 images is 2.6 GFLOP, a
few microseconds of the H100's arithmetic, so the 9.84 M steps are bound by per-step dispatch and the
host batch (0.5-1.5 ms a step): 1.5-4 hours per run, whatever k; the 2-layer model the same. The
test estimate (10,000 images x 5,000 samples, about 4e13 FLOP forward) takes under a minute.

Variants: '' the 1-layer VAE (k = 1); 'k5', 'k50' the VAE objective with 5 / 50 samples; 'iwae_k5',
'iwae_k50' (and 'iwae' = 'iwae_k50') the IWAE; each optionally with '_two_layer' (or 'two_layer'
alone: the 2-layer VAE). 'mock' (also 'quick', the suite's smoke name) is the same pipeline at toy
size (widths 8, latents 4 and 2 with '_two_layer', IWAE k = 2, batch 8, 2 steps) that the tests train
on CPU under `tfds.testing.mock_data`; 'demo' is the full config.
"""
import ml_collections

from jaxgen.configs import common

MNIST_TRAIN = 60_000
BATCH = 20
EPOCHS = sum(3 ** i for i in range(8))  # 3,280


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "vae"
    c.seed = 0
    c.data = dict(name="mnist", split="train", eval_split="test", data_dir=None, binarize="dynamic")
    c.model = dict(network="mlp", latent_dims=(50,), hidden=((200, 200),), likelihood="bernoulli",
                   objective="elbo", train_samples=1)
    c.optim = dict(name="adam", lr=1e-3, b1=0.9, b2=0.999, eps=1e-4, warmup_steps=0, schedule="burda",
                   epoch_steps=MNIST_TRAIN // BATCH, grad_clip=0.0)
    c.train = common.train_section(steps=EPOCHS * (MNIST_TRAIN // BATCH), batch_size=BATCH, log_every=3000,
                                   ckpt_every=300_000, sample_every=0)
    c.eval = dict(iwae_k=5000, iwae_chunk=500, batch_size=100)
    variants = {"demo": None, "k5": _objective("elbo", 5), "k50": _objective("elbo", 50),
                "iwae": _objective("iwae", 50), "iwae_k5": _objective("iwae", 5), "iwae_k50": _objective("iwae", 50),
                "mock": mock, "quick": mock}
    return common.apply_variant(c, arg, variants, name="vae_mnist", modifiers={"two_layer": two_layer})


def _objective(kind: str, k: int):
    def update(c: ml_collections.ConfigDict) -> None:
        c.model.update(objective=kind, train_samples=k)
    return update


def two_layer(c: ml_collections.ConfigDict) -> None:
    """Burda et al.'s two stochastic layers (100 and 50 units); on a mock config, their toy size."""
    if c.model.latent_dims == (4,):
        c.model.update(latent_dims=(4, 2), hidden=((8, 8), (8, 8)))
    else:
        c.model.update(latent_dims=(100, 50), hidden=((200, 200), (100, 100)))


def mock(c: ml_collections.ConfigDict) -> None:
    """The same pipeline, network kind and objective code at toy size, 2 steps: for tests under
    tfds.testing.mock_data (whose splits hold as few examples as it is asked for; batch 8)."""
    c.model.update(latent_dims=(4,), hidden=((8, 8),), objective="iwae", train_samples=2)
    c.optim.epoch_steps = 1
    c.train.update(steps=2, batch_size=8, log_every=1, ckpt_every=2, sample_every=0)
    c.eval.update(iwae_k=4, iwae_chunk=2, batch_size=8)
