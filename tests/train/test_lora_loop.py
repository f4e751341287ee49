"""LoRA fine-tuning through the task hook and the generic loop: only the adapters train (the base
stays bit for bit), the adapters are saved on their own, and runs without a `lora` section are as
before."""
import os

import jax
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen.nn import lora
from jaxgen.tasks.base import TaskError
from jaxgen.train import checkpoint, loop
from jaxgen.train.checkpoint import CheckpointError
from jaxgen.train.state import LoraState, TrainState

ONE_DEVICE = jax.devices()[:1]


def _lora_config(init_from, *overrides):
    return config_lib.load("classifier_digits:quick", ["--config.lora.rank=4", f"--config.lora.init_from={init_from}",
                                                       "--config.lora.targets=dense,conv", *overrides])


def _bytes(tree):
    return [np.asarray(x).tobytes() for x in jax.tree.leaves(tree)]


def test_the_task_step_trains_only_the_adapters_and_the_loss_falls():
    config = _lora_config("unused", "--config.model.dropout=0.0", "--config.train.augment_shift=0",
                          "--config.optim.lr=0.003", "--config.optim.schedule=constant")
    task, step_fn = loop.setup(config, ONE_DEVICE)
    state = loop.init_state(task, config)
    assert isinstance(state, LoraState)
    base, adapters = jax.device_get(state.base_params), jax.device_get(state.params)
    batch = step_fn.put_batch(task.host_batch(0))  # one batch, so the loss must fall on it
    state = step_fn.put_state(state)
    losses = []
    for _ in range(8):
        state, metrics = step_fn(state, batch)
        losses.append(float(jax.device_get(step_fn.metrics_to_host(metrics))["loss"]))
    state = jax.device_get(step_fn.host_state(state))
    assert _bytes(state.base_params) == _bytes(base)  # frozen: bit for bit
    assert all(np.any(b) for _, b in lora.pairs(state.params).values())  # every B left zero
    assert _bytes(state.params) != _bytes(adapters)
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0] - 0.05, losses
    # The merged params are what the task samples and evaluates with.
    merged = task.eval_params(state)
    expected = lora.merge(state.base_params, state.params, lora.scale(config.lora.alpha, config.lora.rank))
    assert _bytes(merged) == _bytes(expected)


def test_a_lora_run_fine_tunes_a_trained_run_keeps_its_base_and_saves_the_adapters(classifier_run, tmp_path):
    workdir = str(tmp_path / "lora")
    config = _lora_config(classifier_run, "--config.train.steps=2", "--config.train.ckpt_every=2",
                          "--config.train.log_every=2")
    result = loop.train(config, workdir, ONE_DEVICE, quiet=True)
    _, base_task, base_state = loop.restore_for_eval(classifier_run)
    base = jax.device_get(base_task.eval_params(base_state))
    assert isinstance(result.state, LoraState) and int(result.state.step) == 2
    assert _bytes(result.state.base_params) == _bytes(base)

    adapters, meta = lora.load(os.path.join(workdir, loop.ADAPTERS_DIR), base=base)
    assert _bytes(adapters) == _bytes(result.state.params)
    assert meta["step"] == 2 and meta["rank"] == 4 and meta["targets"] == "dense,conv"
    assert meta["base"] == {"init_from": os.path.abspath(classifier_run), "step": int(base_state.step),
                            "fingerprint": lora.fingerprint(base)}

    # `jaxgen sample` / `eval` read the run as any other: the adapters come merged into the base.
    _, task, state = loop.restore_for_eval(workdir)
    assert _bytes(task.eval_params(state)) == _bytes(lora.merge(base, adapters, lora.scale(4.0, 4)))

    # `jaxgen export` writes the merged params as a plain model (lora off in its config) that loads.
    from jaxgen.train import pretrained
    out = pretrained.export(workdir, str(tmp_path / "exported"))
    exported_config, _, exported = pretrained.load(out)
    assert exported_config.lora.rank == 0 and _bytes(exported) == _bytes(task.eval_params(state))

    # A resume must keep the LoRA settings (the checkpoint holds rank-4 adapters) ...
    with pytest.raises(CheckpointError, match=r"written with lora.rank = 4, but this run's lora.rank is 8"):
        loop.train(_lora_config(classifier_run, "--config.lora.rank=8"), workdir, ONE_DEVICE, quiet=True)
    # ... and a base must be a model of this run's config.
    with pytest.raises(CheckpointError, match=r"lora.init_from .* was trained with model.feature_dim = 128, but "
                                              r"this run's model.feature_dim is 64"):
        loop.train(_lora_config(classifier_run, "--config.model.feature_dim=64"), str(tmp_path / "other"), quiet=True)
    assert not os.path.exists(tmp_path / "other")


def test_a_missing_base_and_a_task_without_lora_are_one_sentence(tmp_path):
    with pytest.raises(TaskError, match=r"^lora\.init_from='.*nowhere' is neither a trained classifier run folder "):
        loop.train(_lora_config(str(tmp_path / "nowhere")), str(tmp_path / "run"), quiet=True)
    gan = config_lib.load("gan_digits:quick", ["--config.lora.rank=4", "--config.lora.init_from=x"])
    with pytest.raises(TaskError, match=r"task gan cannot fine-tune LoRA adapters"):
        loop.train(gan, str(tmp_path / "gan"), quiet=True)
    clip = config_lib.load("clip_digits:quick", ["--config.lora.rank=4", "--config.lora.init_from=x"])
    with pytest.raises(TaskError, match=r"task clip cannot fine-tune LoRA adapters"):
        loop.train(clip, str(tmp_path / "clip"), quiet=True)
    assert not any(os.path.exists(tmp_path / name) for name in ("run", "gan", "clip"))


def test_configs_and_checkpoints_without_a_lora_section_are_runs_without_lora():
    config = config_lib.load("classifier_digits:quick")
    assert config.lora.to_dict() == config_lib.LORA_DEFAULTS and not config_lib.lora_enabled(config)
    del config.lora
    config_lib.validate(config)
    assert not config_lib.lora_enabled(config)
    # A checkpoint's config saved before the section existed compares equal to the default section.
    saved = checkpoint._normalise(config.to_dict())
    config_lib.fill_defaults(config)
    current = checkpoint._normalise(config.to_dict())
    assert checkpoint.first_difference(saved, current, checkpoint.IDENTITY_KEYS[1:]) is None
    config.lora.rank = 4
    assert checkpoint.first_difference(saved, checkpoint._normalise(config.to_dict()),
                                       checkpoint.IDENTITY_KEYS[1:]) == ("lora.rank", "0", "4")
    task = loop.make_task(config_lib.load("classifier_digits:quick"))
    assert type(jax.eval_shape(task.init, jax.random.PRNGKey(0))) is TrainState


@pytest.mark.parametrize("field, value, message", [
    ("rank", -1, "lora.rank must be an integer >= 0"),
    ("alpha", 0.0, "lora.alpha must be a positive number"),
    ("targets", "dense(", "lora.targets 'dense\\(' is not a valid regular expression"),
    ("init_from", "", "lora.rank=4 needs lora.init_from"),
])
def test_bad_lora_settings_are_one_sentence(field, value, message):
    config = config_lib.load("classifier_digits:quick", ["--config.lora.rank=4", "--config.lora.init_from=x"])
    config.lora[field] = value
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config)
