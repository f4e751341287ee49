"""train.init_from: a fresh run whose params and EMA start from a trained run (or a pretrained model),
with a fresh optimizer, step and schedule; a source of another model is one sentence, nothing written."""
import os

import jax
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen.config import ConfigError
from jaxgen.tasks.base import TaskError
from jaxgen.train import loop, pretrained
from jaxgen.train.checkpoint import CheckpointError

ONE_DEVICE = jax.devices()[:1]


def _config(*overrides):
    return config_lib.load("classifier_digits:quick", ["--config.train.ema_decay=0.9", *overrides])


def _bytes(tree):
    return [np.asarray(x).tobytes() for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A 4-step classifier run that keeps an EMA (its params and EMA differ)."""
    workdir = str(tmp_path_factory.mktemp("warm") / "source")
    loop.train(_config("--config.train.steps=4", "--config.train.ckpt_every=4"), workdir, ONE_DEVICE, quiet=True)
    return workdir


def test_a_warm_start_takes_the_params_and_ema_and_starts_the_optimizer_over(source_run, tmp_path):
    _, _, source = loop.restore_for_eval(source_run)
    assert _bytes(source.params) != _bytes(source.ema_params)
    config = _config(f"--config.train.init_from={source_run}", "--config.train.steps=3")
    start = loop.train(config, str(tmp_path / "warm"), ONE_DEVICE, quiet=True, stop_at=0).state
    fresh = loop.train(_config("--config.train.steps=3"), str(tmp_path / "fresh"), ONE_DEVICE, quiet=True,
                       stop_at=0).state
    assert int(start.step) == 0
    assert _bytes(start.params) == _bytes(source.params)
    assert _bytes(start.ema_params) == _bytes(source.ema_params)
    assert _bytes(start.opt_state) == _bytes(fresh.opt_state)  # Adam's moments and count from zero
    assert _bytes(start.rng) == _bytes(fresh.rng)

    # It trains on from there: 3 steps, saved as any run's, and a resume continues its own checkpoint.
    result = loop.train(config, str(tmp_path / "warm"), ONE_DEVICE, quiet=True)
    assert int(result.step) == 3 and _bytes(result.state.params) != _bytes(source.params)
    resumed = loop.train(config, str(tmp_path / "warm"), ONE_DEVICE, quiet=True)
    assert _bytes(resumed.state.params) == _bytes(result.state.params)


def test_a_pretrained_model_starts_both_params_and_ema(source_run, tmp_path):
    exported = pretrained.export(source_run, str(tmp_path / "exported"))
    _, _, sampling = pretrained.load(exported)
    config = _config(f"--config.train.init_from={exported}", "--config.train.steps=3")
    start = loop.train(config, str(tmp_path / "warm"), ONE_DEVICE, quiet=True, stop_at=0).state
    assert _bytes(start.params) == _bytes(sampling) == _bytes(start.ema_params)


def test_another_model_a_missing_source_and_lora_together_are_one_sentence(source_run, tmp_path):
    other = _config(f"--config.train.init_from={source_run}", "--config.model.feature_dim=64")
    with pytest.raises(CheckpointError, match=r"train.init_from .* was trained with model.feature_dim = 128, but this "
                                              r"run's model.feature_dim is 64; a warm start needs params of this run"):
        loop.train(other, str(tmp_path / "other"), ONE_DEVICE, quiet=True)
    with pytest.raises(TaskError, match=r"^train\.init_from='.*nowhere' is neither a trained classifier run folder "):
        loop.train(_config(f"--config.train.init_from={tmp_path / 'nowhere'}"), str(tmp_path / "missing"),
                   ONE_DEVICE, quiet=True)
    assert not os.path.exists(tmp_path / "other") and not os.path.exists(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"train.init_from and lora.rank > 0 do not go together"):
        _config(f"--config.train.init_from={source_run}", "--config.lora.rank=4", "--config.lora.init_from=x")


def test_a_gans_ema_starts_from_the_generator_of_a_run_without_one(tmp_path):
    """A GAN's EMA follows its generator only (Task.ema_of): from a source that kept no EMA, the warm
    run's EMA is a copy of the source's generator, not of both networks."""
    source = str(tmp_path / "gan")
    quick = ["--config.train.steps=1", "--config.train.ckpt_every=1", "--config.train.sample_every=0"]
    loop.train(config_lib.load("gan_digits:quick", [*quick, "--config.train.ema_decay=0.0"]), source, ONE_DEVICE,
               quiet=True)
    _, _, trained = loop.restore_for_eval(source)
    config = config_lib.load("gan_digits:quick", [*quick, "--config.train.ema_decay=0.9",
                                                  f"--config.train.init_from={source}"])
    start = loop.train(config, str(tmp_path / "warm"), ONE_DEVICE, quiet=True, stop_at=0).state
    assert _bytes(start.params) == _bytes(trained.params)
    assert _bytes(start.ema_params) == _bytes(trained.params["generator"])
