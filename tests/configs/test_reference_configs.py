"""The reference configs on TFDS catalog datasets (issue 22): each has its paper's parameter count,
and each one's `mock` variant trains two steps through the real TFDS pipeline (features, shapes,
dtypes, splits) under `tfds.testing.mock_data`, on CPU, without the data."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen.data import transforms
from jaxgen.models.diffusion.network import Denoiser
from jaxgen.tasks import runs
from jaxgen.train import loop, parallel

MOCK_EXAMPLES = 8  # per split: the mock variants' batch (tests/configs/conftest.py serves them)

# config -> the parameters of its full-size model. ddpm_cifar10: Ho et al. (2020)'s 35.7 M (the count
# of their released CIFAR-10 checkpoint); the class-conditional model adds the label embedding (11 x
# 512) and its projection (512 x 512 + 512).
PARAMS = {"ddpm_cifar10": 35_746_307, "ddpm_cifar10_class": 35_746_307 + 11 * 512 + 512 * 512 + 512}
# config -> (image shape, the features its train step reads, with their dtypes) as TFDS serves them
BATCHES = {"ddpm_cifar10": ((32, 32, 3), {"image": np.uint8}),
           "ddpm_cifar10_class": ((32, 32, 3), {"image": np.uint8, "label": np.int64})}


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", PARAMS)
def test_the_network_has_the_papers_parameter_count(name):
    """The config's denoiser built directly from its model section (abstractly: no compute)."""
    m = config_lib.load(name).model
    model = Denoiser(out_channels=3, channels=tuple(m.channels), num_res_blocks=m.num_res_blocks,
                     attention_levels=tuple(m.attention_levels), num_heads=m.num_heads, dropout=m.dropout,
                     norm_groups=m.norm_groups, num_classes=10 if m.conditioning == "class" else 0,
                     architecture=m.network)
    cond = {"label": jnp.zeros((1,), jnp.int32)} if m.conditioning == "class" else None
    params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)),
                                               jnp.zeros((1,), jnp.int32), cond))
    assert _count(params) == PARAMS[name]


@pytest.mark.parametrize("name", PARAMS)
def test_the_task_builds_the_papers_parameter_count(name, mock_tfds):
    """What `jaxgen train <name>` initialises: the task's state, built abstractly (jax.eval_shape)."""
    config = config_lib.load(name)
    task = runs.make_task(config)
    assert isinstance(task.model, Denoiser) and task.model.architecture == config.model.network == "ddpm"
    state = jax.eval_shape(task.init, jax.random.PRNGKey(config.seed))
    assert _count(state.params) == PARAMS[name]


@pytest.mark.parametrize("name", BATCHES)
def test_mock_variant_is_the_reference_pipeline_at_toy_size(name):
    """The mock variant reads the same dataset, splits and features as the full config."""
    full, mock = config_lib.load(name), config_lib.load(f"{name}:mock")
    assert mock.data.to_dict() == full.data.to_dict()
    assert (mock.task, mock.model.get("network")) == (full.task, full.model.get("network")) == ("diffusion", "ddpm")
    assert mock.train.steps == 2 and mock.train.batch_size <= MOCK_EXAMPLES


@pytest.mark.parametrize("name", BATCHES)
def test_mock_variant_trains_two_steps_through_the_tfds_pipeline(name, mock_tfds):
    config = config_lib.load(f"{name}:mock")
    task, step_fn = loop.setup(config, jax.devices()[:1])
    assert task.dataset.name == config.data.name and task.eval_dataset().split == config.data.eval_split
    assert task.model.architecture == config.model.network == "ddpm"
    shape, features = BATCHES[name]
    b = config.train.batch_size
    state = step_fn.put_state(runs.init_state(task, config))
    before = jax.tree.map(np.array, jax.device_get(parallel.to_local(step_fn.host_state(state))).params)
    for step in range(config.train.steps):
        batch = task.host_batch(step)
        assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
            k: ((b,) + (shape if k == "image" else ()), np.dtype(dtype)) for k, dtype in features.items()}
        state, metrics = step_fn(state, step_fn.put_batch(batch))
        jax.block_until_ready(metrics)  # one step in flight
    host = jax.device_get(parallel.to_local(step_fn.host_state(state)))
    metrics = jax.device_get(step_fn.metrics_to_host(metrics))
    assert int(host.step) == config.train.steps
    assert np.isfinite(metrics["loss"]) and metrics["loss"] > 0
    moved = jax.tree.map(lambda a, c: bool(np.any(a != c)), before, host.params)
    assert all(jax.tree.leaves(moved))  # every parameter got a gradient


def test_random_flip_mirrors_the_examples_its_keys_pick():
    images = jnp.arange(16 * 4 * 5 * 3, dtype=jnp.float32).reshape(16, 4, 5, 3)
    keys = jax.random.split(jax.random.PRNGKey(0), 16)
    out = np.asarray(jax.jit(transforms.random_flip)(images, keys))
    flipped = np.array([np.array_equal(o, x[:, ::-1]) for o, x in zip(out, np.asarray(images))])
    kept = np.array([np.array_equal(o, x) for o, x in zip(out, np.asarray(images))])
    assert np.all(flipped ^ kept) and 0 < flipped.sum() < 16
    # per-example keys: an example's flip does not depend on the rest of the batch
    np.testing.assert_array_equal(np.asarray(transforms.random_flip(images[3:7], keys[3:7])), out[3:7])
