"""The reference configs of issue 22 beyond diffusion: Burda et al.'s VAE / IWAE on binarized MNIST,
DCGAN on CIFAR-10 and CelebA 64x64, CLIP on CIFAR-10 / CIFAR-100 class captions. Each full config
builds its paper's parameter count (abstractly: jax.eval_shape, no compute), and each `mock` variant
trains two steps through the real TFDS pipeline (features, shapes, dtypes, splits) under
`tfds.testing.mock_data`, on CPU, without the data."""
import jax
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen.errors import UserError
from jaxgen.tasks import runs
from jaxgen.train import loop, parallel

MOCK_EXAMPLES = 8  # per split: the mock variants' batch (tests/configs/conftest.py serves them)



def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# config -> parameters of the full-size model (the papers' architectures; see each config's docstring)
PARAMS = {
    # Burda et al. (2016): 784-200-200-50 and back; 784-200-200-100-100-100-50 and back (tanh MLPs,
    # Gaussian layers with mean and log-sigma heads, a Bernoulli output layer)
    "vae_mnist": (784 * 200 + 200) + (200 * 200 + 200) + 2 * (200 * 50 + 50)
                 + (50 * 200 + 200) + (200 * 200 + 200) + (200 * 784 + 784),
    "vae_mnist:iwae_k50_two_layer": (784 * 200 + 200) + (200 * 200 + 200) + 2 * (200 * 100 + 100)
                                    + (100 * 100 + 100) * 2 + 2 * (100 * 50 + 50)
                                    + (50 * 100 + 100) + (100 * 100 + 100) + 2 * (100 * 100 + 100)
                                    + (100 * 200 + 200) + (200 * 200 + 200) + (200 * 784 + 784),
    # Radford et al. (2016): generator + discriminator (5x5 kernels, no biases, batch norm's scale and
    # shift per channel, per unit on the projection); see tests/models/test_gan.py for the two apart
    "dcgan_cifar10": 4_941_952 + 4_115_328,
    "dcgan_celeba": 18_885_760 + 17_232_768,
}
# mock config -> (its full config, the dataset, the features its train step reads with the shape of
# one example)
MOCKS = {
    # (the two-layer model's mock, vae_mnist:mock_two_layer, is evaluated below)
    "vae_mnist:mock": ("vae_mnist", "mnist", {"image": (28, 28, 1)}),
    # a GAN's batch stacks its d_steps minibatches on the second axis: [B, k, H, W, C]
    "dcgan_cifar10:mock": ("dcgan_cifar10", "cifar10", {"image": (1, 32, 32, 3)}),
    "dcgan_celeba:mock": ("dcgan_celeba", "celeb_a", {"image": (1, 218, 178, 3)}),
    "clip_cifar10:mock": ("clip_cifar10", "cifar10", {"image": (32, 32, 3), "tokens": (16,)}),
    "clip_cifar100:mock": ("clip_cifar100", "cifar100", {"image": (32, 32, 3), "tokens": (16,)}),
}
# CLIP's count depends on its caption vocabulary V (the token embedding is V x 256): a fixed part plus
# 256 V. CIFAR-10's ten one-word names give V = 25, as the mock's ten one-token names do.
CLIP_FIXED, CLIP_TEXT_WIDTH = 6_640_642, 256


def test_the_parameter_counts_are_the_papers():
    assert PARAMS["vae_mnist"] == 425_284 and PARAMS["vae_mnist:iwae_k50_two_layer"] == 521_084


@pytest.mark.parametrize("name", PARAMS)
def test_the_task_builds_the_papers_parameter_count(name, mock_tfds):
    """What `jaxgen train <name>` initialises (mock data stands in for the dataset: the parameters
    do not depend on its size), built abstractly."""
    config = config_lib.load(name)
    state = jax.eval_shape(runs.make_task(config).init, jax.random.PRNGKey(config.seed))
    assert _count(state.params) == PARAMS[name]


@pytest.mark.parametrize("name", MOCKS)
def test_mock_variant_is_the_reference_pipeline_at_toy_size(name):
    full, mock = config_lib.load(MOCKS[name][0]), config_lib.load(name)
    assert mock.data.to_dict() == full.data.to_dict()
    assert mock.task == full.task and mock.model.get("network") == full.model.get("network")
    assert mock.train.steps == 2 and mock.train.batch_size <= MOCK_EXAMPLES


@pytest.mark.parametrize("name", MOCKS)
def test_mock_variant_trains_two_steps_through_the_tfds_pipeline(name, mock_tfds):
    config = config_lib.load(name)
    _, dataset, features = MOCKS[name]
    task, step_fn = loop.setup(config, jax.devices()[:1])
    assert task.dataset.name == config.data.name == dataset
    assert task.eval_dataset().split == config.data.eval_split
    b = config.train.batch_size
    state = step_fn.put_state(runs.init_state(task, config))
    before = jax.tree.map(np.array, jax.device_get(parallel.to_local(step_fn.host_state(state))).params)
    for step in range(config.train.steps):
        batch = task.host_batch(step)
        for key, shape in features.items():
            assert batch[key].shape[0] == b and batch[key].shape[-len(shape):] == shape
        state, metrics = step_fn(state, step_fn.put_batch(batch))
        jax.block_until_ready(metrics)  # one step in flight
    host = jax.device_get(parallel.to_local(step_fn.host_state(state)))
    metrics = jax.device_get(step_fn.metrics_to_host(metrics))
    assert int(host.step) == config.train.steps
    assert np.isfinite(metrics["loss"])
    moved = jax.tree.map(lambda a, c: bool(np.any(a != c)), before, host.params)
    if config.task == "clip" and config.model.loss == "softmax":
        assert not moved.pop("bias")  # SigLIP's bias: the softmax loss does not use it
    assert all(jax.tree.leaves(moved))  # every parameter got a gradient


def test_vae_mnist_mock_evaluates_the_papers_numbers(mock_tfds):
    """`jaxgen eval` of an IWAE reports the ELBO, L_k and the active units, on a fixed binarization
    of the test split (the same bits on every call)."""
    config = config_lib.load("vae_mnist:mock_two_layer")
    task = runs.make_task(config)
    np.testing.assert_array_equal(task._eval_images(), task._eval_images())
    assert set(np.unique(task._eval_images())) <= {0, 1}
    state = runs.init_state(task, config)
    out = task.evaluate(state)
    samples = np.asarray(task.sample(state.params, jax.random.PRNGKey(0), 4)["images"])
    assert samples.shape == (4, 28, 28, 1) and samples.min() >= 0 and samples.max() <= 1
    k = config.eval.iwae_k
    assert {"test_elbo_nats", f"test_iwae{k}_nats", "active_units_layer1", "active_units_layer2"} <= set(out)
    assert out["test_elbo_num_images"] == MOCK_EXAMPLES
    # L_k >= L_1 image by image in expectation; over 8 images and an untrained model, on the mean
    assert out[f"test_iwae{k}_nats"] <= out["test_elbo_nats"] + 1e-3
    assert out["test_elbo_nats"] > 0


@pytest.mark.parametrize("name, override, message", [
    ("vae_mnist:mock", "--config.data.binarize=none", "data.binarize='dynamic'"),
    ("vae_mnist:mock", "--config.data.binarize=sometimes", "data.binarize must be one of"),
    ("vae_mnist:mock", "--config.model.objective=vimco", "model.objective must be one of"),
    ("vae_mnist:mock", "--config.model.train_samples=0", "model.train_samples must be a positive integer"),
    ("vae_mnist:mock", "--config.optim.eps=0.0", "optim.eps"),
    ("vae_mnist:mock", "--config.optim.epoch_steps=0", "optim.schedule='burda' needs optim.epoch_steps"),
    ("dcgan_cifar10:mock", "--config.model.r1_gamma=1.0", "set model.r1_gamma=0"),
    ("dcgan_cifar10:mock", "--config.model.conditional=true", "set model.conditional=False"),
    ("dcgan_cifar10:mock", "--config.model.latent_dist=gamma", "model.latent_dist must be one of"),
    ("dcgan_celeba:mock", "--config.data.center_crop=300", "data.center_crop=300 is larger than"),
    ("clip_cifar10:mock", "--config.data.captions=wikipedia", "data.captions must be one of"),
])
def test_bad_reference_config_values_are_one_sentence(name, override, message, mock_tfds):
    with pytest.raises(UserError) as e:  # at load (config validation) or at the task's build
        runs.make_task(config_lib.load(name, [override]))
    assert message in str(e.value) and str(e.value).endswith(".") and "\n" not in str(e.value)


def test_burda_schedule_steps_down_by_ten_to_the_minus_one_seventh():
    """Stage i lasts 3^i epochs at 0.001 * 10^(-i/7): 1, 3, 9, ... epochs of `epoch_steps` steps."""
    from jaxgen.train.optim import burda_schedule
    lr = burda_schedule(1e-3, epoch_steps=10)
    starts = np.cumsum([0] + [3 ** i * 10 for i in range(7)])  # 0, 10, 40, 130, ...
    for i, s in enumerate(starts):
        np.testing.assert_allclose(float(lr(int(s))), 1e-3 * 10 ** (-i / 7), rtol=1e-6)
        np.testing.assert_allclose(float(lr(int(s) + 3 ** i * 10 - 1)), 1e-3 * 10 ** (-i / 7), rtol=1e-6)
    np.testing.assert_allclose(float(lr(10 ** 7)), 1e-4, rtol=1e-6)


@pytest.mark.parametrize("name", ["clip_cifar10", "clip_cifar100"])
def test_clip_builds_its_parameter_count_from_the_class_name_vocabulary(name, mock_tfds):
    config = config_lib.load(name)
    task = runs.make_task(config)
    num_classes = {"clip_cifar10": 10, "clip_cifar100": 100}[name]
    assert len(task.class_names) == num_classes == task.dataset.num_classes
    # every prompt of every class is in the vocabulary (no [UNK] token in a caption)
    assert len(set(task.vocabulary_texts())) == num_classes * 6
    state = jax.eval_shape(task.init, jax.random.PRNGKey(config.seed))
    assert _count(state.params) == CLIP_FIXED + CLIP_TEXT_WIDTH * task.tokenizer.vocab_size
    if name == "clip_cifar10":
        assert task.tokenizer.vocab_size == 25


def test_clip_cifar_mock_reports_zero_shot_accuracy_from_the_class_prompts(mock_tfds):
    """`jaxgen eval`'s zero-shot accuracy is the argmax over the class prompts' embeddings, by hand."""
    from jaxgen.nn.text import split_words
    from jaxgen.tasks.clip import CLASS_TEMPLATES

    config = config_lib.load("clip_cifar10:mock")
    task = runs.make_task(config)
    state = runs.init_state(task, config)
    out = task.evaluate(state)
    params = task.eval_params(state)
    test = task.eval_dataset()
    images = task.embed_images(params, test.arrays["image"])
    prompts = task.embed_texts(params, [CLASS_TEMPLATES[0].format(n) for n in task.class_names])
    by_hand = np.mean(np.argmax(images @ prompts.T, axis=1) == test.arrays["label"])
    assert out["test_zeroshot_accuracy"] == pytest.approx(by_hand)
    assert 0.0 <= out["test_zeroshot_accuracy_ensemble"] <= 1.0 and out["num_classes"] == 10
    # the training captions: one of the templates, filled with the example's own class name
    labels = task.dataset.batch(config.seed, 0, config.train.batch_size, keys=("label",))["label"]
    for tokens, y in zip(task.host_batch(0)["tokens"], labels):
        caption = task.tokenizer.decode(tokens)
        assert caption in {" ".join(split_words(t.format(task.class_names[int(y)]))) for t in CLASS_TEMPLATES}
