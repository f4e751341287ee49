"""Configs: `jaxgen/configs/<family>_<dataset>.py` modules with `get_config()` -> ConfigDict.

`load(spec, overrides)` takes a config name (`vae_digits`, a module of jaxgen.configs) or a path to
a config file, optionally with an argument after a colon (`vae_digits:quick`, passed to
`get_config`), and `--config.a.b=value` overrides typed like the field they replace. `validate`
checks the fields every run needs; tasks check their own.
"""
import ast
import importlib
import importlib.util
import inspect
import json
import math
import os
import pkgutil
import re
from typing import Any, Sequence

import ml_collections

import jaxgen.configs
from jaxgen.configs import common as config_common
from jaxgen.errors import UserError

PARALLEL_MODES = ("shard_map", "pmap")
SHARDINGS = ("replicated", "fsdp")  # jaxgen.train.parallel: how the train state lies on the devices
COMPUTE_DTYPES = ("float32", "bfloat16")
SCHEDULES = ("constant", "cosine", "burda", "linear_decay")  # jaxgen.train.optim
# Engine fields of the train section that every run has; a config that leaves one out (a user's file,
# a config written before the field existed) gets this default, so its --config overrides still work.
TRAIN_DEFAULTS = {
    "grad_accum": 1,             # micro-batches per optimizer update (jaxgen.train.accumulate)
    "compute_dtype": "float32",  # 'float32' | 'bfloat16' activations (jaxgen.train.precision)
    # A warm start: a trained run folder (or pretrained model) of this task and model whose params,
    # and EMA, a fresh run starts from, with a fresh optimizer and schedule ("" = random init).
    "init_from": "",
    # How the train state lies on the devices (jaxgen.train.parallel): "replicated", a full copy on
    # each; "fsdp", params, optimizer state and EMA split over the devices (each large array along
    # one dimension), gathered for the gradient computation and updated shard by shard.
    "sharding": "replicated",
}
# Likewise for the data section: input-pipeline fields that apply to any dataset (jaxgen.data.pipeline).
DATA_DEFAULTS = {
    "classes": None,  # None = every class; a tuple of labels keeps only those examples of the train split
    # Each training image mirrored left-right with probability 1/2, from its example's own key (the
    # batch and the resume stay exact); tasks whose targets it would not mirror refuse it.
    "random_flip": False,
    # Pad-and-crop (jaxgen.data.transforms.random_crop): each training image padded by this many
    # pixels per side (reflected) and cut back at its own offset, from its example's own key; 0 = off
    # (CIFAR recipes use 4 at 32x32). Tasks that do not crop their training images refuse it.
    "random_crop": 0,
}
# Likewise for the eval section (of runs saved before a field existed, too: see fill_defaults).
EVAL_DEFAULTS = {
    "use_ema": True,  # sample and evaluate with the EMA of the weights when the run keeps one
    # `jaxgen eval` of a family that makes images adds FID, KID and precision / recall in the standard
    # Inception features for this many samples against as many held-out images, when the FID weights
    # have been converted (jaxgen.eval.inception); 0 = never.
    "fid_samples": 1000,
}
# Model fields added after runs were saved, with the value a saved config without them was trained
# with (compared on resume and warm start only; each task reads its own with these defaults):
# text2image's trainable text transformer (none).
MODEL_ADDED_DEFAULTS = {"text_layers": 0, "text_width": 128}
# The `lora` section every config has (added when a config leaves it out): LoRA fine-tuning
# (jaxgen.nn.lora) of a trained model, off at rank 0. With rank r > 0 the run trains only low-rank
# adapters of the kernels `targets` selects, at scale alpha / r, on top of the frozen params of
# `init_from` (a trained run folder, whose sampling params, its EMA when it keeps one, become the
# base; or a pretrained model's folder or name).
LORA_DEFAULTS = {
    "rank": 0,           # 0 = off (train every param, as without the section)
    "alpha": 4.0,        # the update is (alpha / rank) A B: keep alpha when changing rank (LoRA sec. 4.1)
    "targets": "dense",  # preset names (dense, attention, conv, embedding; comma-separated) or a path regex
    "init_from": "",     # the run folder or pretrained model whose params are the frozen base
}


class ConfigError(UserError, ValueError):
    """A config that cannot run: unknown name, unknown field, or a bad value."""


# Modules of jaxgen.configs that are not configs: the helpers the configs share.
_CONFIG_HELPERS = ("common",)


def available() -> list[str]:
    """Names of the configs that ship in jaxgen.configs."""
    return sorted(m.name for m in pkgutil.iter_modules(jaxgen.configs.__path__)
                  if not m.ispkg and not m.name.startswith("_") and m.name not in _CONFIG_HELPERS)


def _check_shipped(name: str) -> None:
    """Raises ConfigError unless `name` is a config that ships in jaxgen.configs."""
    if name not in available():
        raise ConfigError(f"unknown config {name!r}; available: {', '.join(available())}.")


def description(name: str) -> str:
    """The docstring of the shipped config `name` (what it trains, its paper's settings, its variants
    and commands), read from the module's source without importing it (nor JAX)."""
    _check_shipped(name)
    path = os.path.join(jaxgen.configs.__path__[0], name + ".py")
    with open(path, encoding="utf-8") as f:
        return ast.get_docstring(ast.parse(f.read())) or ""


def variants(name: str) -> str:
    """The variants the shipped config `name` takes ("'', 'demo' or 'quick'"), as its get_config
    names them (configs import no JAX); "" for a config that builds no variants."""
    _check_shipped(name)
    try:
        importlib.import_module(f"jaxgen.configs.{name}").get_config(config_common.LIST_VARIANTS)
    except config_common.VariantList as answer:
        return answer.names
    return ""


# Where a docstring's first sentence ends: a period before a capital letter (not "sec. 4" or
# "et al. 2022") or a colon before a space (not "arXiv:2006").
_SENTENCE_END = re.compile(r"\.\s+(?=[A-Z])|\.$|:\s")


def summary(name: str, width: int = 100) -> str:
    """The first sentence of config `name`'s docstring on one line, cut to `width` characters."""
    paragraph = " ".join(description(name).split("\n\n")[0].split())
    end = _SENTENCE_END.search(paragraph)
    sentence = paragraph[:end.start()] if end else paragraph
    if len(sentence) > width:
        sentence = sentence[:width - 3].rsplit(" ", 1)[0].rstrip(",;") + "..."
    return sentence


def load(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """The config named (or at the path) `spec`, with `--config.x=y` overrides applied and checked."""
    name, _, arg = spec.partition(":")
    if name.endswith(".py") or os.sep in name:
        if not os.path.isfile(name):
            raise ConfigError(f"config file {name} does not exist.")
        module_spec = importlib.util.spec_from_file_location("jaxgen_user_config", name)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - the user's file: whatever it raised, it cannot be loaded
            raise ConfigError(f"config file {name} cannot be imported ({type(e).__name__}: "
                              f"{_first_line(e)}).") from None
    else:
        _check_shipped(name)
        module = importlib.import_module(f"jaxgen.configs.{name}")
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"config {name} has no get_config() function; a config file defines "
                          f"get_config(arg='') -> ml_collections.ConfigDict.")
    if arg and not _takes_an_argument(get_config):
        raise ConfigError(f"config {name} takes no argument (its get_config() has no parameter), not {arg!r}.")
    try:
        config = get_config(arg) if arg else get_config()
    except (ValueError, KeyError) as e:  # a get_config's way of refusing its argument
        raise ConfigError(_first_line(e) if isinstance(e, ValueError) else f"config {name}: {e}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"config {name}'s get_config() returned {type(config).__name__} {str(config)[:60]!r}, "
                          f"not an ml_collections.ConfigDict.")
    config.name = os.path.basename(name)[:-3] if name.endswith(".py") else name
    fill_defaults(config)
    for item in overrides:
        apply_override(config, item)
    validate(config)
    return config


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


def _takes_an_argument(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)


def fill_defaults(config: ml_collections.ConfigDict) -> None:
    """Adds the engine fields (DATA_DEFAULTS, TRAIN_DEFAULTS, EVAL_DEFAULTS, and the whole
    LORA_DEFAULTS section) that `config` leaves out, in place."""
    if "lora" not in config:
        config.lora = ml_collections.ConfigDict()
    for section, defaults in (("data", DATA_DEFAULTS), ("train", TRAIN_DEFAULTS), ("eval", EVAL_DEFAULTS),
                              ("lora", LORA_DEFAULTS)):
        if section in config:
            for key, value in defaults.items():
                if key not in config[section]:
                    config[section][key] = value


def lora_enabled(config: ml_collections.ConfigDict) -> bool:
    """Whether `config` fine-tunes LoRA adapters (lora.rank > 0) instead of training every param."""
    section = config.get("lora")
    return section is not None and section.get("rank", 0) > 0


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
    """Applies one `--config.a.b=value` (or `a.b=value`), typed like the existing field."""
    key, sep, text = item.removeprefix("--").removeprefix("config.").partition("=")
    if not sep:
        raise ConfigError(f"override {item!r} must look like --config.train.steps=200.")
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
            raise ConfigError(f"config has no section {part!r} (in override {item!r}).")
        node = node[part]
    if leaf not in node:
        raise ConfigError(f"config has no field {key!r}; fields here: {', '.join(sorted(node.keys()))}.")
    node[leaf] = _parse_like(node[leaf], text, key)


def _parse_like(old: Any, text: str, key: str) -> Any:
    if isinstance(old, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key} must be true or false, not {text!r}.")
    if isinstance(old, str) or old is None:
        if old is None:  # None fields take a literal if it parses (a number, a tuple, None...), else the string.
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return text
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(f"{key} expects a {type(old).__name__}, not {text!r}.") from None
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(old, (tuple, list)) and isinstance(value, (tuple, list)):
        return type(old)(value)
    if type(value) is not type(old):
        raise ConfigError(f"{key} expects a {type(old).__name__}, not {text!r}.")
    return value


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def is_int(x: Any) -> bool:
    """An int that is not a bool (True would pass isinstance(x, int))."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_finite_number(x: Any) -> bool:
    """A finite int or float (NaN and infinities are not; nor are bools)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
    """Checks the fields that the engine reads; raises ConfigError with one clear sentence.

    With `num_devices` it also checks that train.grad_accum divides the per-device batch
    (train.batch_size / num_devices); without, only that it divides train.batch_size.
    """
    for section in ("data", "model", "optim", "train"):
        _require(section in config and isinstance(config[section], ml_collections.ConfigDict),
                 f"config {config.get('name', '?')} has no '{section}' section.")
    _require(isinstance(config.get("task"), str), f"config {config.get('name', '?')} names no task (a string).")
    _require(is_int(config.get("seed", 0)), f"seed must be an integer, not {config.get('seed')!r}.")
    d = config.data
    for field in ("name", "split"):
        _require(isinstance(d.get(field), str) and d.get(field).strip(),
                 f"data.{field} must be a non-empty string, not {d.get(field)!r}.")
    data_dir = d.get("data_dir")
    _require(data_dir is None or (isinstance(data_dir, str) and data_dir.strip()),
             f"data.data_dir must be a folder path (or None for the default cache), not {data_dir!r}.")
    _validate_classes(d.get("classes"))
    _require(isinstance(d.get("random_flip", False), bool),
             f"data.random_flip must be True or False, not {d.get('random_flip')!r}.")
    _require(is_int(d.get("random_crop", 0)) and d.get("random_crop", 0) >= 0,
             f"data.random_crop must be a number of pixels >= 0 (0 = off), not {d.get('random_crop')!r}.")
    t = config.train
    _require(is_int(t.steps) and t.steps > 0, f"train.steps must be a positive integer, not {t.steps!r}.")
    _require(is_int(t.batch_size) and t.batch_size > 0,
             f"train.batch_size must be a positive integer, not {t.batch_size!r}.")
    _require(t.parallel in PARALLEL_MODES, f"train.parallel must be one of {PARALLEL_MODES}, not {t.parallel!r}.")
    sharding = t.get("sharding", "replicated")
    _require(sharding in SHARDINGS, f"train.sharding must be one of {SHARDINGS}, not {sharding!r}.")
    _require(not (sharding == "fsdp" and t.parallel == "pmap"),
             "train.sharding='fsdp' runs under train.parallel='shard_map' (pmap keeps a full copy of the state "
             "per device); set one of them back.")
    for field in ("log_every", "ckpt_every", "sample_every", "keep"):
        _require(is_int(t[field]) and t[field] >= 0,
                 f"train.{field} must be an integer >= 0, not {t[field]!r}.")
    _require(t.keep >= 1, f"train.keep must be at least 1, not {t.keep}.")
    _require(is_finite_number(t.ema_decay) and 0.0 <= t.ema_decay < 1.0,
             f"train.ema_decay must be in [0, 1), not {t.ema_decay!r}.")
    accum = t.get("grad_accum", 1)
    _require(is_int(accum) and accum > 0,
             f"train.grad_accum must be a positive integer (micro-batches per update), not {accum!r}.")
    _require(t.batch_size % accum == 0,
             f"train.grad_accum={accum} must divide train.batch_size={t.batch_size} into equal micro-batches.")
    if num_devices:
        local = t.batch_size // num_devices
        _require(t.batch_size % num_devices == 0 and local % accum == 0,
                 f"train.grad_accum={accum} must divide the per-device batch (train.batch_size={t.batch_size} "
                 f"over {num_devices} devices); choose train.batch_size a multiple of {num_devices * accum}.")
    dtype = t.get("compute_dtype", "float32")
    _require(dtype in COMPUTE_DTYPES, f"train.compute_dtype must be one of {COMPUTE_DTYPES}, not {dtype!r}.")
    o = config.optim
    _require(is_finite_number(o.lr) and o.lr > 0, f"optim.lr must be positive (a finite number), not {o.lr!r}.")
    _require(o.name in ("adam", "adamw", "sgd"), f"optim.name must be adam, adamw or sgd, not {o.name!r}.")
    schedule = o.get("schedule", "constant")
    _require(schedule in SCHEDULES, f"optim.schedule must be one of {SCHEDULES}, not {schedule!r}.")
    warmup = o.get("warmup_steps", 0)
    _require(is_int(warmup) and warmup >= 0, f"optim.warmup_steps must be an integer >= 0, not {warmup!r}.")
    if schedule == "burda":
        epoch_steps = o.get("epoch_steps")
        _require(is_int(epoch_steps) and epoch_steps >= 1, f"optim.schedule='burda' needs optim.epoch_steps, "
                 f"the optimizer steps per epoch (an integer >= 1), not {epoch_steps!r}.")
        _require(not warmup, "optim.schedule='burda' has no warm-up; set optim.warmup_steps=0.")
    if schedule == "linear_decay":
        start = o.get("decay_start")
        _require(is_finite_number(start) and 0.0 <= start < 1.0, f"optim.schedule='linear_decay' needs "
                 f"optim.decay_start, the fraction of train.steps after which the rate decays to 0 (a number "
                 f"in [0, 1)), not {start!r}.")
        _require(not warmup, "optim.schedule='linear_decay' has no warm-up; set optim.warmup_steps=0.")
    eps = o.get("eps", 1e-8)
    _require(is_finite_number(eps) and eps > 0, f"optim.eps (Adam's epsilon) must be a positive number, not {eps!r}.")
    for field in ("grad_clip", "weight_decay"):
        value = o.get(field, 0.0)
        _require(is_finite_number(value) and value >= 0, f"optim.{field} must be a number >= 0 (0 = off), not {value!r}.")
    for field in ("b1", "b2", "momentum"):
        value = o.get(field, 0.0)
        _require(value is None or (is_finite_number(value) and 0.0 <= value < 1.0),
                 f"optim.{field} must be in [0, 1), not {value!r}.")
    _validate_lora(config.get("lora"))
    init_from = config.train.get("init_from", "")
    _require(isinstance(init_from, str), f"train.init_from must be a folder path or model name, not {init_from!r}.")
    _require(not (init_from.strip() and lora_enabled(config)),
             "train.init_from and lora.rank > 0 do not go together: a LoRA run's starting point is lora.init_from.")
    e = config.get("eval")
    if isinstance(e, ml_collections.ConfigDict):
        for field in ("batch_size", "num_fd_samples"):
            if field in e:
                _require(is_int(e[field]) and e[field] > 0,
                         f"eval.{field} must be a positive integer, not {e[field]!r}.")
        fid_samples = e.get("fid_samples", 0)
        _require(is_int(fid_samples) and (fid_samples == 0 or fid_samples >= 2),
                 f"eval.fid_samples must be 0 (no FID) or an integer of at least 2, not {fid_samples!r}.")


def _validate_classes(classes: Any) -> None:
    """Checks the form of data.classes (None, or distinct labels >= 0); whether the dataset has those
    labels is checked when it is loaded (jaxgen.data.pipeline.select_classes)."""
    if classes is None:
        return
    _require(isinstance(classes, (tuple, list)) and classes and all(is_int(c) and c >= 0 for c in classes),
             f"data.classes must be None (every class) or a non-empty tuple of class labels such as (9,) or "
             f"(0, 1, 2), not {classes!r}.")
    twice = next((c for i, c in enumerate(classes) if c in classes[:i]), None)
    _require(twice is None, f"data.classes lists label {twice} twice; list each class once.")


def _validate_lora(lora: Any) -> None:
    """Checks the `lora` section (absent in configs written before it existed: LoRA off)."""
    if lora is None:
        return
    _require(isinstance(lora, ml_collections.ConfigDict), f"lora must be a section (rank, alpha, targets, "
                                                          f"init_from), not {lora!r}.")
    rank = lora.get("rank", 0)
    _require(is_int(rank) and rank >= 0, f"lora.rank must be an integer >= 0 (0 = off), not {rank!r}.")
    alpha = lora.get("alpha", LORA_DEFAULTS["alpha"])
    _require(is_finite_number(alpha) and alpha > 0, f"lora.alpha must be a positive number, not {alpha!r}.")
    targets = lora.get("targets", LORA_DEFAULTS["targets"])
    _require(isinstance(targets, str) and targets.strip(),
             f"lora.targets must be preset names (dense, attention, conv, embedding) or a regular expression "
             f"over param paths, not {targets!r}.")
    try:
        re.compile(targets)
    except re.error as e:
        raise ConfigError(f"lora.targets {targets!r} is not a valid regular expression ({e}).") from None
    init_from = lora.get("init_from", "")
    _require(isinstance(init_from, str), f"lora.init_from must be a folder path or model name, not {init_from!r}.")
    _require(rank == 0 or init_from.strip(),
             f"lora.rank={rank} needs lora.init_from: the trained run folder (or pretrained model) whose params "
             f"LoRA adapts.")


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def from_dict(d: dict) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(d)
