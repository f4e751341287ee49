"""What the shipped configs share: the variant argument of `get_config(arg)` and the train section.

A config builds its default ConfigDict, then hands the argument to `apply_variant` with the
functions that turn the default into each named variant:

    def get_config(arg: str = "") -> ml_collections.ConfigDict:
        c = ml_collections.ConfigDict()
        ...
        c.train = common.train_section(steps=5000, batch_size=64, sample_every=1000)
        return common.apply_variant(c, arg, {"demo": None, "quick": quick}, name="vae_digits")

This module is not a config: `jaxgen.config.available()` leaves it out of the names it lists.
"""
from typing import Any, Callable, Mapping

import ml_collections

# Turns a config into one of its variants, in place.
Update = Callable[[ml_collections.ConfigDict], None]
# The argument that asks a config which variants it takes instead of building one (no variant name
# can contain a space): apply_variant answers it by raising VariantList.
LIST_VARIANTS = "list variants"


class VariantList(Exception):
    """apply_variant's answer to LIST_VARIANTS: `.names`, the sentence naming the variants."""

    def __init__(self, names: str):
        super().__init__(names)
        self.names = names


def apply_variant(config: ml_collections.ConfigDict, arg: str, variants: Mapping[str, Update | None], *,
                  name: str, modifiers: Mapping[str, Update] | None = None) -> ml_collections.ConfigDict:
    """Turns `config` (in place) into the variant that `arg` names and returns it.

    `variants` maps each variant name to its update (None: the config as it stands under another name,
    e.g. 'demo' when `jaxgen demo` runs the full config). '' is always valid: the config as built, or
    `variants['']` applied when the default has its own update. With `modifiers` (e.g. {'flow':
    use_flow}), `arg` may end in '_<modifier>' ('8x8_flow') or be a modifier alone ('flow' = the
    default variant, modified); the modifier's update runs after the variant's.

    Raises ValueError with one sentence naming the variants `name` takes (jaxgen.config reports it
    as a usage error); for `arg` = LIST_VARIANTS, raises VariantList with those names.
    """
    modifiers = modifiers or {}
    if arg == LIST_VARIANTS:
        raise VariantList(_describe(variants, modifiers))
    variant, modifier = _split_modifier(arg, modifiers)
    if variant and variant not in variants:
        raise ValueError(f"{name} takes {_describe(variants, modifiers)}, not {arg!r}.")
    for update in (variants.get(variant), modifiers.get(modifier)):
        if update is not None:
            update(config)
    return config


def _split_modifier(arg: str, modifiers: Mapping[str, Update]) -> tuple[str, str | None]:
    """'8x8_flow' -> ('8x8', 'flow'), 'flow' -> ('', 'flow'), '8x8' -> ('8x8', None)."""
    for modifier in modifiers:
        if arg == modifier:
            return "", modifier
        if arg.endswith("_" + modifier):
            return arg[:-len(modifier) - 1], modifier
    return arg, None


def _describe(variants: Mapping[str, Update | None], modifiers: Mapping[str, Update]) -> str:
    """"'', 'demo' or 'quick'", with ", each optionally with '_flow' (or 'flow' alone)" for modifiers."""
    text = _either([""] + [v for v in variants if v])
    if modifiers:
        text += (f", each optionally with {_either(['_' + m for m in modifiers])} "
                 f"(or {_either(list(modifiers))} alone)")
    return text


def _either(names: list[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def train_section(steps: int, batch_size: int, *, log_every: int = 100, ckpt_every: int = 1000,
                  sample_every: int = 0, keep: int = 2, ema_decay: float = 0.0, parallel: str = "shard_map",
                  grad_accum: int = 1, compute_dtype: str = "float32", **extra: Any) -> ml_collections.ConfigDict:
    """The `train` section that the engine reads (jaxgen.config.validate checks it), so that a config
    states only what differs; `extra` adds the family's own fields (a GAN's d_steps, ...).

    steps and batch_size: optimizer updates and their global batch. log_every, ckpt_every,
    sample_every: intervals in steps (sample_every 0 = no sample grids during training); keep: the
    checkpoints kept. ema_decay: the decay of the weights' EMA that samples and evaluation use (0 =
    none). parallel: 'shard_map' or 'pmap'. grad_accum: micro-batches per optimizer update, run one
    after another inside the compiled step (must divide the per-device batch; the same update as 1,
    with 1/grad_accum of the activation memory). compute_dtype: 'float32', or 'bfloat16' for mixed
    precision (bfloat16 activations, float32 params and optimizer state: the fast path on TPU/GPU; on
    CPU only correct, not faster).
    """
    return ml_collections.ConfigDict(dict(
        steps=steps, batch_size=batch_size, parallel=parallel, log_every=log_every, ckpt_every=ckpt_every,
        sample_every=sample_every, keep=keep, ema_decay=ema_decay, grad_accum=grad_accum,
        compute_dtype=compute_dtype, **extra))
