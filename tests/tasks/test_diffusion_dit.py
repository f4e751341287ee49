"""The diffusion task with model.network = 'dit' (the transformer denoiser) on tiny configs: it trains
through the loop and samples, serves the class-conditional and the text-to-image tasks (cross-
attention), configs without the field keep the U-Net, the `_dit` variants change only the network,
and bad DiT settings are one sentence. (The module itself: tests/models/test_dit.py.)"""
import re

import jax
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen.models.diffusion.dit import DiT
from jaxgen.models.diffusion.network import Denoiser
from jaxgen.tasks.base import TaskError
from jaxgen.train import log, loop

DIT_FIELDS = {"network", "patch_size", "hidden_size", "depth", "mlp_ratio"}


def _config(*overrides, spec="diffusion_digits:quick_dit"):
    return config_lib.load(spec, list(overrides))


def test_dit_training_lowers_the_loss_and_samples(tmp_path):
    """40 steps of the quick DiT (width 32, 2x2 patches; 2 blocks instead of 5, to compile faster) at
    the digits' native 8x8. The untrained DiT outputs zero, so the eps loss starts at E[eps^2] = 1;
    measured: 0.95 over the first 10 steps, 0.38 over steps 31-40."""
    config = _config("--config.data.image_size=8", "--config.model.depth=2", "--config.train.steps=40",
                     "--config.train.log_every=10", "--config.train.ckpt_every=40", "--config.train.sample_every=0",
                     "--config.optim.lr=0.003", "--config.optim.warmup_steps=10", "--config.train.ema_decay=0.0")
    result = loop.train(config, str(tmp_path), quiet=True)
    task = loop.make_task(config)
    assert isinstance(task.model, DiT) and task.model.hidden_size == 32 and task.model.patch_size == 2
    losses = [m["loss"] for m in log.read_metrics(str(tmp_path))]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert 0.9 < losses[0] and np.mean(losses[-2:]) < 0.6 * np.mean(losses[:2]), losses
    images = task.sample(result.state.params, jax.random.PRNGKey(0), 4)["images"]
    assert images.shape == (4, 8, 8, 1) and 0.0 <= images.min() and images.max() <= 1.0


def test_configs_without_the_field_keep_the_unet():
    """Runs saved before model.network existed have no such field: they load as the U-Net."""
    config = _config(spec="diffusion_digits:quick")
    assert "network" not in config.model and isinstance(loop.make_task(config).model, Denoiser)


def test_class_conditional_dit():
    """diffusion_digits_class:quick_dit: a label embedding with the null class (the classifier-free
    guidance of the class-conditional model works on the DiT as on the U-Net: tests/models/test_dit.py)."""
    task = loop.make_task(_config(spec="diffusion_digits_class:quick_dit"))
    params = task.init(jax.random.PRNGKey(0)).params
    assert isinstance(task.model, DiT) and task.model.num_classes == 10
    assert params["label_embedding"]["embedding"].shape == (11, 32)


def test_text_to_image_takes_the_dit(run_steps):
    """A train step of the text-to-image SR stage with a DiT in place of the U-Net: the text tokens by
    cross-attention (with the learned null token), the pooled text, the low-res image and its noise
    level (the base stage takes the same text inputs, without the last two)."""
    config = _config(spec="text2image_shapes_sr:quick")
    config.model.update(network="dit", patch_size=2, hidden_size=32, depth=2, mlp_ratio=2.0)
    state, metrics = run_steps(config, jax.devices()[:1], steps=1)
    params = state.params
    assert "cross_attn" in params["block_1"] and params["null_context"].shape[-1] == 384  # MiniLM's width
    assert {"pooled_proj", "noise_level_mlp_0"} <= set(params) and params["patch_embed"]["kernel"].shape[0] == 24
    assert np.isfinite(metrics["loss"])


@pytest.mark.parametrize("name", ["diffusion_digits", "diffusion_digits_class", "diffusion_shapes"])
def test_dit_variants_change_only_the_network(name):
    for variant in ("", "quick", "demo"):
        unet = config_lib.load(f"{name}:{variant}" if variant else name)
        dit = config_lib.load(f"{name}:{variant}_dit" if variant else f"{name}:dit")
        for section in ("data", "optim", "train", "sample", "eval"):
            assert dit[section].to_dict() == unet[section].to_dict(), (variant, section)
        assert {k: v for k, v in dit.model.items() if k not in DIT_FIELDS} == unet.model.to_dict()
        # The width follows the U-Net's (FLOPs grow with its square in both networks).
        assert dit.model.network == "dit" and dit.model.hidden_size == unet.model.channels[0] * (
            4 if name == "diffusion_shapes" else 2)
    assert config_lib.load(f"{name}:dit").model.patch_size == (4 if name == "diffusion_shapes" else 2)


@pytest.mark.parametrize("override, message", [
    ("--config.model.network=vit", "model.network must be one of unet, ddpm, dit, not 'vit'."),
    ("--config.model.patch_size=3", "model.patch_size=3 must divide data.image_size=16 (the DiT cuts the image "
                                    "into patch_size x patch_size patches)."),
    ("--config.model.hidden_size=30", "model.hidden_size=30 must be divisible by model.num_heads=4."),
    ("--config.model.depth=0", "model.depth must be a positive integer, not 0."),
    ("--config.model.patch_size=-2", "model.patch_size must be a positive integer, not -2."),
    ("--config.model.mlp_ratio=0.0", "model.mlp_ratio must be a number > 0 (the MLP's width over "
                                     "model.hidden_size), not 0.0."),
])
def test_bad_dit_settings_are_one_sentence(override, message):
    with pytest.raises(TaskError, match="^" + re.escape(message) + "$"):
        loop.make_task(_config(override))
