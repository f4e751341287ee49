"""The Imagen-style base stage trained by flow matching (text2image_shapes:*_flow): the velocity loss
falls with text conditioning, text_to_image samples it with Heun and classifier-free guidance, and
the settings flow cannot honour are refused in one sentence. (The flow samplers' accuracy:
tests/models/test_flow.py; flow on the unconditional and class-conditional task:
test_diffusion_flow.py.)"""
import jax
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen.models.diffusion import flow
from jaxgen.tasks.base import TaskError
from jaxgen.train import log, loop


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    """40 flow-matching steps of the tiny text-to-image base on one device (the data-parallel step of
    this task is tested in test_text2image_parallel.py)."""
    workdir = str(tmp_path_factory.mktemp("t2i_flow"))
    config = config_lib.load("text2image_shapes:quick_flow", [
        "--config.train.steps=40", "--config.train.log_every=5", "--config.train.ckpt_every=40",
        "--config.optim.lr=0.003", "--config.train.ema_decay=0.0"])
    result = loop.train(config, workdir, devices=jax.devices()[:1], quiet=True)
    return config, workdir, result.state


def test_the_flow_base_trains_on_the_velocity_and_its_loss_falls(flow_run):
    """The velocity target e - x0 has a mean square of about 1 + E[x0^2] (about 1.9 on these mostly
    black 16x16 scenes) at the start; a model that learnt nothing stays there."""
    config, workdir, _ = flow_run
    task = loop.make_task(config)
    assert task.process == "flow" and task.schedule == flow.FlowSchedule(100.0, 1.0)
    losses = [m["loss"] for m in log.read_metrics(workdir)]
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.6 * losses[0], losses


def test_the_flow_base_samples_from_text_with_heun_and_guidance(flow_run):
    config, _, state = flow_run
    task = loop.make_task(config)
    rng = jax.random.PRNGKey(0)
    prompts = ["two red circles", "a blue square"]
    images, stats = task.text_to_image(state.params, rng, prompts)
    assert images.shape == (2, 16, 16, 3) and 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(images, task.text_to_image(state.params, rng, prompts)[0])
    # Guidance reaches the flow sampler: w = 1 (the conditional model) and w = 3 differ.
    unguided, _ = task.text_to_image(state.params, rng, prompts, guidance=1.0)
    assert np.abs(images - unguided).mean() > 1e-3
    with pytest.raises(TaskError, match=r"^a flow model samples with one of euler, heun, not 'ddim'\.$"):
        task.text_to_image(state.params, rng, prompts, method="ddim")


@pytest.mark.parametrize("spec, overrides, message", [
    ("text2image_shapes:quick_flow", ["--config.model.parameterization=v"],
     r"^model\.parameterization='v' applies to model\.process='ddpm' only "),
    ("text2image_shapes:quick_flow", ["--config.model.loss_weighting=min_snr"],
     r"^model\.loss_weighting='min_snr' applies to model\.process='ddpm' only "),
    ("text2image_shapes:quick_flow", ["--config.model.stage=sr", "--config.data.image_size=32",
                                      "--config.model.low_res_size=16"],
     r"^model\.process='flow' applies to a base stage \(model\.stage='base'\) only; "),
])
def test_settings_flow_cannot_honour_are_one_sentence(spec, overrides, message):
    config = config_lib.load(spec, overrides)
    with pytest.raises(TaskError, match=message):
        loop.make_task(config)
