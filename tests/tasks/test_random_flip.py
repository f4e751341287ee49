"""data.random_flip: the diffusion task mirrors each training image from its example's own key (the
same loss as the unflipped task on those mirrored images), and tasks whose targets a mirror would
contradict refuse it in one sentence."""
import jax
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen.data import transforms
from jaxgen.tasks.base import TaskError
from jaxgen.tasks.diffusion import FLIP_STREAM
from jaxgen.train import loop


def test_the_diffusion_loss_sees_the_images_its_keys_mirror():
    flipped_task = loop.make_task(config_lib.load("diffusion_digits:quick", ["--config.data.random_flip=True"]))
    plain_task = loop.make_task(config_lib.load("diffusion_digits:quick"))
    params = plain_task.init(jax.random.PRNGKey(0)).params
    batch = plain_task.host_batch(0)
    keys = jax.random.split(jax.random.PRNGKey(1), batch["image"].shape[0])
    mirrored = transforms.random_flip(batch["image"], jax.vmap(lambda k: jax.random.fold_in(k, FLIP_STREAM))(keys))
    changed = np.any(np.asarray(mirrored) != batch["image"], axis=(1, 2, 3))
    assert 0 < changed.sum() < len(changed)  # some mirrored, some not (and the images are not symmetric)

    # jitted: two compiled programs instead of hundreds of eagerly compiled ops
    flipped_loss, plain_loss = jax.jit(flipped_task.loss_and_grads), jax.jit(plain_task.loss_and_grads)
    _, with_flip, _ = flipped_loss(params, {"image": batch["image"], "key": keys})
    _, on_mirrored, _ = plain_loss(params, {"image": mirrored, "key": keys})
    _, without, _ = plain_loss(params, {"image": batch["image"], "key": keys})
    assert float(with_flip["loss"]) == float(on_mirrored["loss"])
    assert float(with_flip["loss"]) != float(without["loss"])


@pytest.mark.parametrize("spec", ["text2image_shapes:quick", "classifier_digits:quick"])
def test_tasks_that_would_contradict_their_targets_refuse_it(spec):
    with pytest.raises(TaskError, match=r"does not mirror its training images; set data.random_flip=False"):
        loop.make_task(config_lib.load(spec, ["--config.data.random_flip=True"]))


def test_the_diffusion_loss_sees_the_images_its_keys_crop():
    """data.random_crop: the same loss as the uncropped task on the windows transforms.crop_inputs
    cuts from each example's own key; text2image (whose captions name cells) refuses it."""
    cropped_task = loop.make_task(config_lib.load("diffusion_digits:quick", ["--config.data.random_crop=2"]))
    plain_task = loop.make_task(config_lib.load("diffusion_digits:quick"))
    params = plain_task.init(jax.random.PRNGKey(0)).params
    batch = plain_task.host_batch(0)
    inputs = {"image": batch["image"], "key": jax.random.split(jax.random.PRNGKey(1), batch["image"].shape[0])}
    windows = transforms.crop_inputs(inputs, 2)
    assert np.any(np.asarray(windows["image"]) != batch["image"])
    cropped_loss, plain_loss = jax.jit(cropped_task.loss_and_grads), jax.jit(plain_task.loss_and_grads)
    _, with_crop, _ = cropped_loss(params, inputs)
    _, on_windows, _ = plain_loss(params, windows)
    _, without, _ = plain_loss(params, inputs)
    assert float(with_crop["loss"]) == float(on_windows["loss"]) != float(without["loss"])
    with pytest.raises(TaskError, match=r"does not crop its training images; set data.random_crop=0"):
        loop.make_task(config_lib.load("text2image_shapes:quick", ["--config.data.random_crop=2"]))
    with pytest.raises(TaskError, match=r"pads the 8-pixel training images by their size or more"):
        loop.make_task(config_lib.load("diffusion_digits:quick", ["--config.data.random_crop=8"]))
