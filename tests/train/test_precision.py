"""Mixed precision (train.compute_dtype = 'bfloat16'): for every family the step computes in
bfloat16 (its convolutions take bfloat16 operands), keeps params and optimizer state float32, gives
a first-step loss close to the float32 one, and trains; a bad dtype is one clear sentence."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxgen import config as config_lib
from jaxgen.config import ConfigError
from jaxgen.train import loop, parallel

# bfloat16 keeps 8 significant bits: one rounding moves a value by at most u/2 = 2^-9 relative
# (u = 2^-8 = 0.39%). Each bf16 layer rounds its input, its weights and its output; through the
# <= ~12 layers of these tiny models, independent roundings accumulate like a random walk, about
# sqrt(3 * 12) * u/2 = 3u on an output, and the losses (means of cross-entropies and squared errors
# over many outputs, with near-unit sensitivity at initialisation) move relatively by no more than
# their inputs. RTOL = 4u = 1.6% bounds that with a margin; measured here: 4e-7 to 3e-4.
U_BF16 = 2.0 ** -8
RTOL = 4 * U_BF16

# (config, overrides shared with its data-parallel test in tests/tasks, so that the float32 reference
# is a program compiled there; optimizer-only overrides for the bf16 run; the metric that training on
# one fixed batch must lower). The optimizer overrides leave the first step's loss alone: it is
# computed before the update, except the GAN's, whose generator loss comes after its discriminator
# updates, so the GAN keeps its optimizer. They turn warm-up off (diffusion) and train CycleGAN with
# Adam at 10x the quick config's rate, so that 8 steps visibly train. The GANs' summed two-player
# loss need not fall; the discriminator's loss (D learns first) and CycleGAN's cycle-consistency
# term (reconstruction, weighted 10) must.
CGAN = ("--config.train.d_steps=2", "--config.model.r1_gamma=1.0")
FAMILIES = [
    ("vae_digits", (), (), "loss"),
    ("classifier_digits", (), (), "loss"),
    ("unet_shapes", ("--config.model.dropout=0.1",), (), "loss"),  # as in tests/train/test_accumulation.py
    ("diffusion_digits_class", (), ("--config.optim.warmup_steps=0",), "loss"),
    ("cgan_digits", CGAN, (), "d_loss"),
    ("cyclegan_shapes", ("--config.optim.name=sgd",), ("--config.optim.name=adam", "--config.optim.lr=0.002"),
     "cycle"),
]
STEPS = 8


def _config(name, *overrides):
    return config_lib.load(f"{name}:quick", list(overrides))


def _run_on_one_batch(config, steps):
    """`steps` steps on one device, all on the batch of step 0: (host state, [metrics per step])."""
    task, step_fn = loop.setup(config, jax.devices()[:1])
    state = step_fn.put_state(loop.init_state(task, config))
    batch = step_fn.put_batch(task.host_batch(0))
    history = []
    for _ in range(steps):
        state, metrics = step_fn(state, batch)
        history.append(jax.device_get(step_fn.metrics_to_host(metrics)))
    return jax.device_get(parallel.to_local(step_fn.host_state(state))), history


def _traced_step(config) -> tuple[list[str], set[str]]:
    """Traces the per-device step (nothing compiled): (the output dtype of every convolution in it,
    forward and backward; the dtypes of the floating leaves of the state it returns)."""
    task = loop.make_task(config)
    if hasattr(task, "_train_captions_encoded"):
        # text2image: a trace needs only the batch's shapes, not the text cache filled with every
        # training caption first (6 s of the frozen encoder here); the batch's own are encoded.
        task._train_captions_encoded = True
    state = jax.eval_shape(task.init, jax.random.PRNGKey(config.seed))
    step = jax.shard_map(task.train_step, mesh=parallel.make_mesh(jax.devices()[:1]),
                         in_specs=(P(), P(parallel.AXIS)), out_specs=(P(), P()), check_vma=False)
    jaxpr, (new_state, _) = jax.make_jaxpr(step, return_shape=True)(state, task.host_batch(0))
    floats = {str(x.dtype) for x in jax.tree.leaves(new_state) if jnp.issubdtype(x.dtype, jnp.floating)}
    return re.findall(r"(\w+)\[[^\]]*\] = conv_general_dilated", str(jaxpr)), floats


# The families whose bf16 step only this trace checks: CLIP (its bf16 run, first loss and float32
# state: tests/tasks/test_clip_task.py) and text2image (a diffusion step, whose run the diffusion
# family covers below, with the frozen text encoder's features as batch data). unclip needs a
# trained clip run: tests/tasks/test_unclip.py traces its step the same way.
TRACED_ONLY = [("clip_digits", (), ()), ("text2image_shapes", (), ())]


@pytest.mark.parametrize("name, overrides, train_overrides", [f[:3] for f in FAMILIES] + TRACED_ONLY)
def test_bfloat16_reaches_every_convolution(name, overrides, train_overrides):
    """Every convolution of the bf16 step (the backward pass's too) runs on bfloat16; a switch that
    did nothing, or a layer it missed, leaves float32 ones. The state the step returns stays float32
    (params, optimizer moments, EMA). Traced only, nothing compiled."""
    bf16_config = _config(name, *overrides, "--config.train.compute_dtype=bfloat16", *train_overrides)
    convs, state_floats = _traced_step(bf16_config)
    assert convs and set(convs) == {"bf16"}, convs
    assert state_floats == {"float32"}, state_floats


# Compiling and running the bf16 step costs the suite ~20 s per family: three families cover the
# three kinds of step (one optimizer; diffusion's sampler-side float32 outputs; two players with pools).
@pytest.mark.parametrize("name, overrides, train_overrides, trained_metric",
                         [f for f in FAMILIES if f[0] in ("classifier_digits", "diffusion_digits_class",
                                                          "cyclegan_shapes")])
def test_bfloat16_step_is_float32_where_it_matters_and_trains(name, overrides, train_overrides, trained_metric):
    f32_config = _config(name, *overrides)
    bf16_config = _config(name, *overrides, "--config.train.compute_dtype=bfloat16", *train_overrides)
    _, (f32_first,) = _run_on_one_batch(f32_config, 1)
    state, history = _run_on_one_batch(bf16_config, STEPS)
    # params, optimizer state(s), EMA (and CycleGAN's image pools): float32 after bf16 steps
    # (jnp.issubdtype: numpy does not count bfloat16 among its floating types)
    floats = {str(x.dtype) for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)}
    assert floats == {"float32"}, floats
    first = history[0]
    for key, value in first.items():
        assert value.dtype == np.float32 and np.isfinite(value), (key, value)
    # The same batch and keys: the first losses differ only by bf16 rounding (see RTOL), but differ.
    for key in ("loss", trained_metric):
        np.testing.assert_allclose(first[key], f32_first[key], rtol=RTOL, err_msg=key)
    assert first["loss"] != f32_first["loss"]
    # a few bf16 steps on one batch lower the loss
    curve = [float(m[trained_metric]) for m in history]
    assert all(np.isfinite(curve)), curve
    assert np.mean(curve[-2:]) < np.mean(curve[:2]), (trained_metric, curve)


def test_bad_compute_dtype_is_one_sentence():
    with pytest.raises(ConfigError, match=r"train.compute_dtype must be one of \('float32', 'bfloat16'\), "
                                          r"not 'float16'\."):
        _config("vae_digits", "--config.train.compute_dtype=float16")


def test_configs_without_the_new_fields_get_the_defaults(tmp_path):
    """A user's config file written before the switches existed still loads, takes overrides of
    them, and runs float32 without accumulation."""
    path = tmp_path / "old.py"
    path.write_text("from jaxgen.configs.vae_digits import get_config as _new\n\n"
                    "def get_config(arg=''):\n"
                    "    c = _new(arg)\n"
                    "    del c.train['grad_accum'], c.train['compute_dtype']\n"
                    "    return c\n")
    config = config_lib.load(str(path))
    assert config.train.grad_accum == 1 and config.train.compute_dtype == "float32"
    config = config_lib.load(f"{path}:quick", ["--config.train.compute_dtype=bfloat16"])
    assert config.train.compute_dtype == "bfloat16"
