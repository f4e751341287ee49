"""Config loading, the shipped configs' variants, typed overrides and validation errors."""
import re

import ml_collections
import pytest

from jaxgen import config as config_lib
from jaxgen.config import ConfigError
from jaxgen.configs import common


def test_every_shipped_config_loads_and_validates():
    names = config_lib.available()
    assert {"vae_digits", "classifier_digits"} <= set(names)
    assert "common" not in names  # jaxgen/configs/common.py: the helpers, not a config
    for name in names:
        for arg in ("", "demo", "quick"):
            config = config_lib.load(f"{name}:{arg}" if arg else name)
            assert config.name == name


def test_every_shipped_quick_config_builds_its_task_and_model(monkeypatch):
    """Loading is not enough: each config's quick variant must build its task (every field the task
    reads, every check it makes) and initialise its model, abstractly (jax.eval_shape: shapes only,
    nothing compiled or run). unclip reads a trained clip run's config for the embedding width; a
    stand-in gives it the clip_shapes quick config (the real run: tests/tasks/test_unclip.py)."""
    import types

    import jax
    import jax.numpy as jnp

    from jaxgen.tasks import unclip

    clip_stand_in = types.SimpleNamespace(config=config_lib.load("clip_shapes:quick"))
    monkeypatch.setattr(unclip, "_load_clip", lambda workdir: (clip_stand_in, 0))
    for name in config_lib.available():
        config = config_lib.load(f"{name}:quick")
        if config.task == "unclip":
            config.model.clip_workdir = "clip_run_stand_in"
        task = _make_task(config)
        state = jax.eval_shape(task.init, jax.random.PRNGKey(config.seed))
        params = jax.tree.leaves(state.params)
        assert params and sum(x.size for x in params) > 1000, name
        floats = {str(x.dtype) for x in params if jnp.issubdtype(x.dtype, jnp.floating)}
        assert floats == {"float32"}, (name, floats)


def _make_task(config):
    """loop.make_task, with a TFDS catalog dataset (the reference configs' cifar10, ...) served by
    tfds.testing.mock_data: its real features and shapes, no data needed (tests/configs trains them)."""
    import tensorflow_datasets as tfds

    from jaxgen import data
    from jaxgen.data import pipeline
    from jaxgen.train import loop

    if config.data.name.split("/")[0] in pipeline.EMBEDDED:
        return loop.make_task(config)
    data.clear_cache()  # a mocked split must not be served from the load cache to a later test
    try:
        with tfds.testing.mock_data(num_examples=config.train.batch_size):
            return loop.make_task(config)
    finally:
        data.clear_cache()


def test_overrides_are_typed_like_the_field():
    c = config_lib.load("vae_digits", ["--config.train.steps=7", "--config.optim.lr=1",
                                       "--config.model.channels=(8,16)", "--config.model.variational=false",
                                       "--config.data.data_dir=/tmp/x"])
    assert c.train.steps == 7 and isinstance(c.train.steps, int)
    assert c.optim.lr == 1.0 and isinstance(c.optim.lr, float)
    assert tuple(c.model.channels) == (8, 16)
    assert c.model.variational is False
    assert c.data.data_dir == "/tmp/x"


@pytest.mark.parametrize("override, message", [
    ("--config.train.stepz=3", "no field 'train.stepz'"),
    ("--config.trian.steps=3", "no section 'trian'"),
    ("--config.train.steps=many", "expects a int"),
    ("--config.train.steps=-1", "train.steps must be a positive integer"),
    ("--config.train.parallel=magic", "train.parallel must be one of"),
    ("--config.optim.lr=0", "optim.lr must be positive"),
    ("--config.train.steps", "must look like"),
])
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ConfigError, match=message):
        config_lib.load("vae_digits", [override])


def test_unknown_config_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown config 'vae_digitz'; available: .*vae_digits"):
        config_lib.load("vae_digitz")


def test_config_file_path(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("from jaxgen.configs.vae_digits import get_config\n")
    assert config_lib.load(str(path)).name == "mine"
    with pytest.raises(ConfigError, match="does not exist"):
        config_lib.load(str(tmp_path / "missing.py"))


def test_eval_use_ema_picks_the_params_and_reaches_runs_saved_without_it(tmp_path):
    import numpy as np

    from jaxgen.train import loop
    from jaxgen.train.checkpoint import load_run_config
    from jaxgen.train.state import TrainState

    config = config_lib.load("vae_digits:quick")
    assert config.eval.use_ema is True  # filled in by the engine defaults
    state = TrainState(step=np.int32(3), params={"w": np.zeros(2)}, opt_state=(), rng=np.zeros(2, np.uint32),
                       ema_params={"w": np.ones(2)})
    assert loop.make_task(config).eval_params(state)["w"][0] == 1.0  # the EMA by default
    raw = config_lib.load("vae_digits:quick", ["--config.eval.use_ema=false"])
    assert loop.make_task(raw).eval_params(state)["w"][0] == 0.0
    assert loop.make_task(config).eval_params(state.replace(ema_params=None))["w"][0] == 0.0
    # A run saved before the field existed: its config.json, read back, takes the override again.
    saved = config_lib.load("vae_digits:quick")
    del saved.eval["use_ema"]
    (tmp_path / "config.json").write_text(config_lib.to_json(saved))
    old = load_run_config(str(tmp_path))
    assert old.eval.use_ema is True
    config_lib.apply_override(old, "--config.eval.use_ema=false")
    assert old.eval.use_ema is False


@pytest.mark.parametrize("source, spec, message", [
    ("def get_config(:\n", "{}", r"cannot be imported \(SyntaxError"),
    ("import jaxgen_no_such_module\n", "{}", r"cannot be imported \(ModuleNotFoundError: No module named"),
    ("CONFIG = 1\n", "{}", "has no get_config"),
    ("def get_config(arg=''):\n    return {'task': 'vae'}\n", "{}",
     "returned dict .* not an ml_collections.ConfigDict"),
    ("from jaxgen.configs.vae_digits import get_config as g\n\ndef get_config():\n    return g()\n",
     "{}:quick", "takes no argument"),
    ("def get_config(arg=''):\n    raise ValueError(f'mine takes nothing, not {arg!r}.')\n", "{}:x",
     "^mine takes nothing, not 'x'.$"),
])
def test_a_config_file_that_cannot_load_is_one_sentence(tmp_path, source, spec, message):
    path = tmp_path / "mine.py"
    path.write_text(source)
    with pytest.raises(ConfigError, match=message):
        config_lib.load(spec.format(path))


def test_a_shipped_config_refuses_an_unknown_argument_in_one_sentence_naming_itself():
    for name in config_lib.available():
        for arg in ("bogus", "bogus_flow"):
            with pytest.raises(ConfigError, match=rf"^{name} takes '', .*'quick'.*, not '{arg}'\.$"):
                config_lib.load(f"{name}:{arg}")


def test_every_shipped_config_names_its_variants_as_its_refusal_does():
    # `jaxgen configs NAME` lists the variants a config takes: the very sentence its refusal of an
    # unknown argument gives, and each listed variant loads.
    for name in config_lib.available():
        listed = config_lib.variants(name)
        with pytest.raises(ConfigError) as refusal:
            config_lib.load(f"{name}:bogus")
        assert str(refusal.value) == f"{name} takes {listed}, not 'bogus'.", name
        for variant in re.findall(r"'([^']*)'", listed.split(", each optionally")[0]):
            config_lib.load(f"{name}:{variant}")


def _note(word):
    """An update that appends `word` to the toy config's log."""
    def update(config):
        config.log += (word,)
    return update


def _applied(arg, variants=None, modifiers=None):
    """The updates that apply_variant runs on a toy config for `arg`, in order."""
    c = ml_collections.ConfigDict({"log": ()})
    variants = {"demo": None, "quick": _note("quick")} if variants is None else variants
    return common.apply_variant(c, arg, variants, name="toy", modifiers=modifiers).log


def test_apply_variant_runs_the_variant_then_the_modifier():
    flow = {"flow": _note("flow")}
    assert _applied("") == () and _applied("demo") == () and _applied("quick") == ("quick",)
    assert _applied("quick_flow", modifiers=flow) == ("quick", "flow")
    assert _applied("flow", modifiers=flow) == ("flow",) and _applied("demo_flow", modifiers=flow) == ("flow",)
    own_default = {"": _note("default"), "demo": None}
    assert _applied("", own_default) == ("default",) and _applied("demo", own_default) == ()
    with pytest.raises(ValueError, match=r"^toy takes '', 'demo' or 'quick', not 'quick_flow'\.$"):
        _applied("quick_flow")
    with pytest.raises(ValueError, match=r"^toy takes '', 'demo' or 'quick', each optionally with '_flow' "
                                         r"\(or 'flow' alone\), not 'flow_flow'\.$"):
        _applied("flow_flow", modifiers=flow)
    with pytest.raises(ValueError, match=r"^toy takes '' or 'demo', not 'quick'\.$"):
        _applied("quick", own_default)
    # Asked for its variants, it names them instead of building one.
    with pytest.raises(common.VariantList) as answer:
        _applied(common.LIST_VARIANTS, modifiers=flow)
    assert answer.value.names == "'', 'demo' or 'quick', each optionally with '_flow' (or 'flow' alone)"


def test_the_flow_suffix_applies_to_every_diffusion_variant():
    for spec in ("diffusion_digits:flow", "diffusion_digits:8x8_flow", "diffusion_digits_class:quick_flow",
                 "diffusion_shapes:demo_flow"):
        c = config_lib.load(spec)
        assert c.model.process == "flow" and c.sample.method == "heun" and c.eval.vlb is False, spec
    assert config_lib.load("diffusion_digits:8x8_flow").data.image_size == 8
    assert config_lib.load("diffusion_digits:8x8").sample.method == "ddpm"  # ancestral for the unconditional
    assert config_lib.load("diffusion_digits_class:8x8").sample.method == "ddim"


def test_configs_load_from_the_package_alone(fresh_python):
    """The configs ship inside jaxgen: loading every one needs no `experiments` package."""
    code = ("import sys\n"
            "sys.modules['experiments'] = None  # importing it now raises ImportError\n"
            "from jaxgen import config\n"
            "for name in config.available():\n"
            "    for arg in ('', 'demo', 'quick'):\n"
            "        config.load(f'{name}:{arg}')\n"
            "assert 'jax' not in sys.modules\n")
    fresh_python(code)


@pytest.mark.parametrize("override, message", [
    ("--config.optim.lr=1e999", "optim.lr must be positive"),
    ("--config.optim.schedule=zigzag", "optim.schedule must be one of"),
    ("--config.optim.warmup_steps=-1", "optim.warmup_steps must be an integer >= 0"),
    ("--config.optim.grad_clip=-1.0", "optim.grad_clip must be a number >= 0"),
    ("--config.optim.b1=1.5", r"optim.b1 must be in \[0, 1\)"),
    ("--config.train.ema_decay=1.0", r"train.ema_decay must be in \[0, 1\)"),
    ("--config.data.data_dir=[1, 2]", "data.data_dir must be a folder path"),
    ("--config.data.split=", "data.split must be a non-empty string"),
    ("--config.eval.batch_size=0", "eval.batch_size must be a positive integer"),
    ("--config.eval.num_fd_samples=-3", "eval.num_fd_samples must be a positive integer"),
])
def test_engine_fields_are_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        config_lib.load("vae_digits", [override])


def test_grad_accum_is_checked_against_the_per_device_batch():
    config = config_lib.load("vae_digits:quick", ["--config.train.grad_accum=8"])  # 32 divides by 8
    with pytest.raises(ConfigError, match="per-device batch .*over 8 devices.*multiple of 64"):
        config_lib.validate(config, num_devices=8)
    config_lib.validate(config, num_devices=4)  # 8 per device: one example per micro-batch
