"""The reference configs of issue 22 beyond diffusion: Burda et al.'s VAE / IWAE on binarized MNIST,
DCGAN on CIFAR-10 and CelebA 64x64, CLIP on CIFAR-10 / CIFAR-100 class captions, CycleGAN on
horse2zebra 256x256. Each full config
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


def _conv(k: int, c_in: int, c_out: int) -> int:
    """Parameters of a k x k conv with a bias."""
    return k * k * c_in * c_out + c_out


# Zhu et al. (2017) at 256x256, layer by layer as the reference PyTorch code builds the networks (every
# conv with a bias, instance norm without scale or shift): the generator c7s1-64, d128, d256, R256 x 9
# (two 3x3 convs each), u128, u64, c7s1-3; the 70x70 PatchGAN C64-C128-C256-C512 and a 4x4 conv to 1.
CYCLEGAN_G_REFERENCE = (_conv(7, 3, 64) + _conv(3, 64, 128) + _conv(3, 128, 256) + 9 * 2 * _conv(3, 256, 256)
                        + _conv(3, 256, 128) + _conv(3, 128, 64) + _conv(7, 64, 3))
CYCLEGAN_D_REFERENCE = (_conv(4, 3, 64) + _conv(4, 64, 128) + _conv(4, 128, 256) + _conv(4, 256, 512)
                        + _conv(4, 512, 1))
# jaxgen's: a conv that instance norm follows has no bias (the norm removes it), and instance norm has a
# scale and a shift per channel. The channels of the instance norms:
CYCLEGAN_G_NORMED = 64 + 128 + 256 + 9 * 2 * 256 + 128 + 64
CYCLEGAN_D_NORMED = 128 + 256 + 512
CYCLEGAN_G = CYCLEGAN_G_REFERENCE - CYCLEGAN_G_NORMED + 2 * CYCLEGAN_G_NORMED
CYCLEGAN_D = CYCLEGAN_D_REFERENCE - CYCLEGAN_D_NORMED + 2 * CYCLEGAN_D_NORMED

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
    # Zhu et al. (2017): G, F, D_X, D_Y
    "cyclegan_horse2zebra": 2 * CYCLEGAN_G + 2 * CYCLEGAN_D,
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
    # both domains' images resized to data.load_size on the host (the crop to 256 is on the device)
    "cyclegan_horse2zebra:mock": ("cyclegan_horse2zebra", "cycle_gan/horse2zebra",
                                  {"x": (286, 286, 3), "y": (286, 286, 3)}),
}
# CLIP's count depends on its caption vocabulary V (the token embedding is V x 256): a fixed part plus
# 256 V. CIFAR-10's ten one-word names give V = 25, as the mock's ten one-token names do.
CLIP_FIXED, CLIP_TEXT_WIDTH = 6_640_642, 256


def test_the_parameter_counts_are_the_papers():
    assert PARAMS["vae_mnist"] == 425_284 and PARAMS["vae_mnist:iwae_k50_two_layer"] == 521_084
    # the reference code's CycleGAN networks, and jaxgen's (see cyclegan_horse2zebra's docstring)
    assert (CYCLEGAN_G_REFERENCE, CYCLEGAN_D_REFERENCE) == (11_378_179, 2_764_737)
    assert (CYCLEGAN_G, CYCLEGAN_D) == (11_383_427, 2_765_633) and PARAMS["cyclegan_horse2zebra"] == 28_298_120


def test_cyclegan_horse2zebra_builds_each_network_of_the_paper(mock_tfds):
    """Each of G, F, D_X, D_Y at its count (above); 256x256 crops, and a generator that returns the
    image's shape through two down- and two (transposed) up-sampling levels."""
    config = config_lib.load("cyclegan_horse2zebra")
    task = runs.make_task(config)
    assert task.image_shape == (256, 256, 3)
    params = jax.eval_shape(task.init, jax.random.PRNGKey(config.seed)).params
    assert {k: _count(v) for k, v in params["generator"].items()} == {"G": CYCLEGAN_G, "F": CYCLEGAN_G}
    assert {k: _count(v) for k, v in params["discriminator"].items()} == {"D_X": CYCLEGAN_D, "D_Y": CYCLEGAN_D}
    x = jax.ShapeDtypeStruct((1, 256, 256, 3), np.float32)
    assert jax.eval_shape(task.g_xy.apply, {"params": params["generator"]["G"]}, x).shape == (1, 256, 256, 3)
    # a 32x32 grid of patch scores (each sees 70x70 pixels)
    assert jax.eval_shape(task.d.apply, {"params": params["discriminator"]["D_Y"]}, x).shape == (1, 32, 32)


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
    ("cyclegan_horse2zebra:mock", "--config.data.crop_size=300", "data.crop_size=300 is larger than"),
    ("cyclegan_horse2zebra:mock", "--config.data.load_size=0", "data.load_size must be a positive integer"),
    ("cyclegan_horse2zebra:mock", "--config.data.eval_split_y=", "needs data.eval_split_y"),
    ("cyclegan_horse2zebra:mock", "--config.model.upsample=bicubic", "model.upsample must be one of"),
    ("cyclegan_horse2zebra:mock", "--config.optim.decay_start=1.0", "optim.decay_start"),
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


def test_linear_decay_schedule_holds_then_falls_to_zero():
    """CycleGAN's: the rate for the first half of the run, then linearly to 0 at its last step."""
    from jaxgen.train.optim import linear_decay_schedule
    lr = linear_decay_schedule(2e-4, total_steps=200, decay_start=0.5)
    np.testing.assert_allclose([float(lr(s)) for s in (0, 99, 100, 150, 200)], [2e-4, 2e-4, 2e-4, 1e-4, 0.0],
                               rtol=1e-6, atol=1e-12)


def test_cyclegan_horse2zebra_mock_reads_images_of_any_size_and_evaluates_unpaired(mock_tfds):
    """mock_data's images are of random sizes (as an Image feature of shape (None, None, 3) allows):
    the task reads them at data.load_size, crops training images to data.crop_size on the device, and
    `jaxgen eval` reports the unpaired errors; its FID compares G(testA) with testB."""
    import tensorflow_datasets as tfds

    config = config_lib.load("cyclegan_horse2zebra:mock")
    stored = tfds.data_source(config.data.name, split=config.data.split)
    assert len({stored[i]["image"].shape for i in range(MOCK_EXAMPLES)}) > 1
    task = runs.make_task(config)
    assert task.domain_x.arrays["image"].shape == task.domain_y.arrays["image"].shape == (MOCK_EXAMPLES, 286, 286, 3)
    assert task.eval_dataset().arrays["image"].shape[1:] == (256, 256, 3)
    reference = task.fid_reference_dataset()  # `jaxgen eval`'s FID: G(testA) against testB's images
    assert reference.split == config.data.eval_split_y and task.fid_reference in reference.arrays
    state = runs.init_state(task, config)
    out = task.evaluate(state)
    assert out["num_test_x"] == out["num_test_y"] == MOCK_EXAMPLES
    for key in ("cycle_x_l1", "cycle_y_l1", "identity_x_l1", "identity_y_l1", "x_to_y_change_l1", "y_to_x_change_l1"):
        assert 0.0 < out[key] < 1.0
    samples = task.sample(state.params, jax.random.PRNGKey(0), 3)
    assert samples["images"].shape == samples["inputs"].shape == (3, 256, 256, 3)
    # the crop and flip: per example, from its own key (the same images, keys -> the same crops)
    images = np.asarray(task.host_batch(0)["x"])

    def augment(images, rng):  # on one device (the step's per-example keys need its axis)
        return jax.vmap(task.augment, in_axes=(0, None), axis_name=parallel.AXIS)(images[None], rng)[0]

    a, b = (np.asarray(jax.jit(augment)(images, jax.random.PRNGKey(3))) for _ in range(2))
    assert a.shape == (len(images), 256, 256, 3) and np.array_equal(a, b)


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
