"""The interface between a model family and the generic training loop.

A task turns a config into: `init(rng) -> TrainState`, a per-device `train_step(state, batch) ->
(state, metrics)` (gradients and metrics averaged with `parallel.pmean`), `sample(params, rng, num)`
and `evaluate(state) -> metrics`. The loop knows nothing else about the model. The task owns the
generic step: a family supplies its params, its loss (a GAN its two, CycleGAN its own update of
four networks) and its sampler; `Task` gives the optimizer, the state, the update and the EMA.
"""
import contextlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxgen.config import is_finite_number, is_int, lora_enabled
from jaxgen.data import transforms
from jaxgen.data.pipeline import Dataset, load, select_classes
from jaxgen.errors import UserError
from jaxgen.nn import lora
from jaxgen.train import accumulate, parallel
from jaxgen.train import state as state_lib
from jaxgen.train.optim import make_optimizer
from jaxgen.train.state import LoraState, TrainState

PyTree = Any


class TaskError(UserError, ValueError):
    """A config value that this task cannot run with."""


def check_positive_int(name: str, value: Any) -> None:
    """TaskError unless `value` (the config field `name`) is an integer >= 1."""
    if not (is_int(value) and value >= 1):
        raise TaskError(f"{name} must be a positive integer, not {value!r}.")


def check_channels(name: str, value: Any) -> None:
    """TaskError unless `value` is a non-empty list of positive integers (one per resolution level)."""
    if not (isinstance(value, (tuple, list)) and value and all(is_int(c) and c >= 1 for c in value)):
        raise TaskError(f"{name} must be a non-empty list of positive integers (one per level), "
                        f"e.g. (16, 32), not {value!r}.")


def check_range(name: str, value: Any, low: float, high: float, high_open: bool = True) -> None:
    """TaskError unless `value` is a finite number in [low, high) (or [low, high])."""
    if not (is_finite_number(value) and low <= value and (value < high if high_open else value <= high)):
        raise TaskError(f"{name} must be a number in [{low:g}, {high:g}{')' if high_open else ']'}, not {value!r}.")


def check_non_negative(name: str, value: Any) -> None:
    """TaskError unless `value` is a finite number >= 0."""
    if not (is_finite_number(value) and value >= 0):
        raise TaskError(f"{name} must be a finite number >= 0, not {value!r}.")


def check_choice(name: str, value: Any, choices) -> None:
    """TaskError unless `value` (the config field `name`) is one of `choices`."""
    if value not in choices:
        raise TaskError(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}.")


@contextlib.contextmanager
def task_errors(*kinds: type[UserError]):
    """Re-raises the lower layers' user errors `kinds` (e.g. a model's SamplingError) as TaskError
    with the same sentence: a task reports every bad value of its config alike."""
    try:
        yield
    except kinds as e:
        raise TaskError(str(e)) from None


class Task:
    """A model family as the training loop sees it.

    A family writes its networks and config checks (`__init__`), `init_params`, `loss_and_grads`,
    `sample` and `evaluate` (optionally `step_metrics`, `figures`, assets, its own `host_batch`).
    The base gives the rest: the optimizer `tx`, `init` (init_params' params in `new_state`: optimizer
    state, step rng, EMA) and `train_step`: `gradients` (per-example keys, train.grad_accum
    micro-batches, gradients and metrics averaged over devices), then `apply_gradients` (the update
    and its EMA). A family with several optimizers (GAN, CycleGAN) writes its own `train_step` and
    `new_state` with `optimizer`, `ema_copy` and `ema_update` (and cannot shard its state: fsdp). The engine fields these use (train.steps, ema_decay,
    grad_accum) are read here only.
    """

    #: the dataset features the train step reads (everything else, e.g. caption strings, stays on host)
    batch_keys: tuple[str, ...] = ("image",)
    #: whether the task can fine-tune LoRA adapters (config lora.rank > 0): true for a task whose state
    #: comes from the base `new_state` and whose train_step is the base's (`gradients`, then
    #: `apply_gradients`); a task that updates its params its own way (a GAN's two optimizers) or
    #: whose loss couples the examples of the batch across devices (CLIP's) sets it False.
    supports_lora: bool = True
    #: whether the task mirrors its training images when data.random_flip is set (its loss calls
    #: transforms.random_flip); the others refuse the setting
    supports_random_flip: bool = False
    #: whether the task pads and crops its training images when data.random_crop > 0 (its loss
    #: calls transforms.crop_inputs); the others refuse the setting
    supports_random_crop: bool = False
    #: the feature of the eval split holding the images that the task's `sample` should resemble
    #: (`jaxgen eval`'s FID / KID compare the two); None: the task makes no images
    fid_reference: str | None = None
    #: how many keys `init_params` takes: `init` splits its rng into these and the state's step rng
    init_keys: int = 1
    #: the entry of params the EMA follows (a GAN's "generator"); None: all params
    ema_of: str | None = None
    #: config fields that name another trained model the task uses frozen (unCLIP's CLIP): `jaxgen
    #: export` may point them at an exported copy whose params are the same (frozen_fingerprints)
    frozen_sources: tuple[str, ...] = ()
    #: eval fields the family added after runs were saved, with the value such a run is evaluated
    #: with: `restore_for_eval` fills them in before the overrides, so `--config.eval.x=` works
    eval_added_defaults: dict[str, Any] = {}

    def __init__(self, config: ml_collections.ConfigDict, dataset: Dataset):
        """`dataset` is the training split; with data.classes set, the task trains on the examples of
        those labels only (jaxgen.data.pipeline.select_classes: num_classes is kept, so the model still
        has every class). Evaluation reads data.eval_split whole."""
        self.config = config
        self.dataset = select_classes(dataset, config.data.get("classes"))
        #: micro-batches per optimizer update (train.grad_accum, see jaxgen.train.accumulate)
        self.grad_accum = accumulate.num_micro_batches(config)
        if config.data.get("random_flip") and not self.supports_random_flip:
            raise TaskError(f"task {config.task} does not mirror its training images; set data.random_flip=False.")
        self._check_random_crop(config.data.get("random_crop", 0))

    def _check_random_crop(self, pad: int) -> None:
        if not pad:
            return
        if not self.supports_random_crop:
            raise TaskError(f"task {self.config.task} does not crop its training images; set data.random_crop=0.")
        size = min(self.dataset.arrays[self.dataset.image_key].shape[1:3])
        if pad >= size:
            raise TaskError(f"data.random_crop={pad} pads the {size}-pixel training images by their size or "
                            f"more; use fewer pixels (4 at 32x32 in the CIFAR recipes).")

    # ---- what a family writes ----------------------------------------------------------------------
    def init_params(self, *keys: jax.Array) -> PyTree:
        """The params at step 0 from `init_keys` keys (e.g. a model's init key, or one per network)."""
        raise NotImplementedError

    def loss_and_grads(self, params: PyTree, inputs: dict[str, jax.Array]) -> tuple[PyTree, dict, PyTree]:
        """(grads, metrics, None): the gradient of the mean loss over `inputs` (the batch's
        `batch_keys` and "key", each example's own key [b, 2]) and scalar metrics, "loss" among them;
        see accumulate.mean_gradients."""
        raise NotImplementedError

    def sample(self, params: PyTree, rng: jax.Array, num: int) -> dict[str, np.ndarray]:
        """Returns at least {"images": float [num, H, W, C] in [0, 1]}; conditional tasks add their
        conditions (e.g. "labels")."""
        raise NotImplementedError

    def evaluate(self, state: TrainState) -> dict[str, float]:
        raise NotImplementedError

    def step_metrics(self, metrics: dict, grads: PyTree) -> dict:
        """This device's metrics of a step plus what derives from them or from the step's averaged
        gradients (e.g. the gradient norm); nothing added by default."""
        return metrics

    # ---- what the base gives ---------------------------------------------------------------------
    def optimizer(self, optim: ml_collections.ConfigDict | None = None,
                  updates_per_step: int = 1) -> optax.GradientTransformation:
        """The optimizer of the optim section `optim` (default the config's `optim`), its schedule
        spanning the run: train.steps * updates_per_step updates (a GAN's discriminator makes
        train.d_steps per step)."""
        return make_optimizer(self.config.optim if optim is None else optim,
                              self.config.train.steps * updates_per_step)

    @property
    def tx(self) -> optax.GradientTransformation:
        """The optimizer of a single-optimizer task: `optimizer()` (unCLIP's has one per part), built
        where it is used: a pure function of the config, nothing cached from one trace to the next."""
        return self.optimizer()

    @property
    def ema_decay(self) -> float:
        """train.ema_decay: the decay of the params' EMA, 0 when the run keeps none."""
        return self.config.train.ema_decay

    def ema_copy(self, params: PyTree) -> PyTree:
        """The EMA at step 0 for a task that builds its own state: a copy of params (params[ema_of])
        when the run keeps one, else None (a copy: the step donates its state's buffers)."""
        if not self.ema_decay > 0:
            return None
        return jax.tree.map(jnp.copy, params if self.ema_of is None else params[self.ema_of])

    def ema_update(self, state: TrainState, params: PyTree) -> PyTree:
        """The EMA after the update of `state` to `params` (state_lib.update_ema; None without one)."""
        followed = params if self.ema_of is None else params[self.ema_of]
        return state_lib.update_ema(state.ema_params, followed, self.ema_decay, state.step)

    def init(self, rng: jax.Array) -> TrainState:
        """The state at step 0: `init_params` on the first `init_keys` keys of split(rng,
        init_keys + 1), put in `new_state` with the last as the step rng."""
        *keys, state_rng = jax.random.split(rng, self.init_keys + 1)
        return self.new_state(self.init_params(*keys), state_rng)

    def new_state(self, params: PyTree, rng: jax.Array) -> TrainState:
        """The state at step 0 of a single-optimizer task: `params`, the optimizer state of `self.tx`,
        the step rng, and an EMA copy of the params when train.ema_decay > 0.

        With LoRA on (lora.rank > 0) a LoraState instead: `params` become its frozen base_params, and
        the optimizer state and EMA cover only the fresh adapters of the kernels lora.targets selects
        (B = 0: the adapted model is the base). The training loop swaps in lora.init_from's params
        for this base before the first step; only their shapes matter here."""
        ema = self.ema_decay > 0
        if not lora_enabled(self.config):
            return state_lib.create(params, self.tx, rng, ema=ema)
        cfg = self.config.lora
        # A stream of its own, so the step keys (fold_in(rng, step)) are those of a full fine-tune.
        adapters = lora.init_adapters(params, jax.random.fold_in(rng, 0x10BA), cfg.rank, cfg.targets)
        return state_lib.create_lora(params, adapters, self.tx, rng, ema=ema)

    @property
    def lora_scale(self) -> float:
        """alpha / rank of the config's LoRA adapters (see jaxgen.nn.lora.scale)."""
        return lora.scale(self.config.lora.alpha, self.config.lora.rank)

    def train_step(self, state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict]:
        """One update of every single-optimizer task, per device: `gradients` (averaged over devices),
        then `apply_gradients`. Under train.sharding='fsdp' the loop runs the same two halves apart
        (jaxgen.train.parallel.ShardedDataParallel): `gradients` per device on gathered params,
        `apply_gradients` on the sharded state; a task that writes its own train_step cannot."""
        grads, metrics = self.gradients(state, batch)
        return self.apply_gradients(state, grads), metrics

    def gradients(self, state: TrainState, batch: dict[str, jax.Array]) -> tuple[PyTree, dict]:
        """The per-device half of the step every single-optimizer task shares: (grads, metrics), both
        averaged over devices (so identical on each). `self.loss_and_grads(params, inputs)` runs over
        the batch's `batch_keys` plus each example's own key [b, 2] (parallel.example_keys of the
        step's rng, so a device split draws the same noise), averaged over train.grad_accum
        micro-batches, then over devices; the metrics are this device's plus `step_metrics` (which
        sees the averaged gradients), then averaged over devices.

        For a LoraState the loss sees the merged params W + s A B of its frozen base, and the
        gradients are those of the adapters alone (jaxgen.nn.lora.adapter_grad_fn)."""
        inputs = {k: batch[k] for k in self.batch_keys}
        inputs["key"] = parallel.example_keys(state_lib.step_rng(state), batch[self.batch_keys[0]].shape[0])
        grad_fn = self.loss_and_grads
        if isinstance(state, LoraState):
            grad_fn = lora.adapter_grad_fn(grad_fn, state.base_params, self.lora_scale)
        grads, metrics, _ = accumulate.mean_gradients(grad_fn, state.params, inputs, self.grad_accum)
        grads = parallel.pmean(grads)
        return grads, parallel.pmean(self.step_metrics(metrics, grads))

    def apply_gradients(self, state: TrainState, grads: PyTree) -> TrainState:
        """The other half: one update of `self.tx` with the averaged `grads` (the structure of
        state.params), the EMA at train.ema_decay, step + 1. Elementwise but for the optimizer's
        global-norm clipping, so it runs as well on a state split over devices as on a copy. A
        LoraState's base passes through untouched."""
        return state_lib.apply_gradients(state, grads, self.tx, self.ema_decay)

    def update_player(self, grad_fn, params: PyTree, opt_state: PyTree, tx: optax.GradientTransformation,
                      inputs: dict[str, jax.Array]) -> tuple[PyTree, PyTree, PyTree, dict, Any]:
        """One optimizer update of one player of a task that writes its own train_step (a GAN's
        generator or discriminator): grad_fn(params, inputs) -> (grads, metrics, aux) averaged over
        train.grad_accum micro-batches of `inputs` (accumulate.mean_gradients), the grads then over
        devices, then tx's update. Returns (new params, new opt_state, the averaged grads, this
        device's metrics, aux)."""
        grads, metrics, aux = accumulate.mean_gradients(grad_fn, params, inputs, self.grad_accum)
        grads = parallel.pmean(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, grads, metrics, aux

    def figures(self, state: TrainState) -> dict[str, np.ndarray]:
        """Named image grids (uint8 [H, W, 3]) that `jaxgen eval` saves under <workdir>/figures and
        the report shows, e.g. reconstructions; none by default."""
        return {}

    def figure_captions(self) -> dict[str, str]:
        """Text shown under some of `figures`' images in the report (e.g. the prompt a row of images
        was generated from), by figure name; `jaxgen eval` saves each beside its image as
        <name>.txt. None by default: a figure is captioned with its name."""
        return {}

    def save_assets(self, workdir: str) -> None:
        """Writes what the run needs beside its checkpoints besides params (e.g. a tokenizer's
        vocabulary) into `workdir`; called once by process 0 when a run starts. Nothing by default."""

    def load_assets(self, workdir: str) -> None:
        """Reads back what `save_assets` wrote, before a trained run is sampled or evaluated."""

    def eval_dataset(self) -> Dataset:
        """The config's evaluation split (data.eval_split), loaded once per process by the pipeline."""
        d = self.config.data
        return load(d.name, d.eval_split, d.get("data_dir"))

    def fid_reference_dataset(self) -> Dataset:
        """The held-out split whose `fid_reference` feature holds the images `sample` should resemble
        (`jaxgen eval`'s FID / KID): the eval split, but where a task's samples belong to another
        split than its inputs (CycleGAN's translations of testA into the domain of testB)."""
        return self.eval_dataset()

    def fid_reference_images(self, num: int, size: int, split: Dataset | None = None) -> np.ndarray:
        """The first `num` images of the held-out split that `sample` should resemble (its
        `fid_reference` feature, of fid_reference_dataset(); or of `split`, e.g. the training split
        for a real-vs-real floor), float [n, size, size, C] in [0, 1], made from the data as the task
        makes its training images: here a bilinear resize; a task that crops first (the GAN's
        data.center_crop) overrides it, so that FID compares like with like."""
        test = self.fid_reference_dataset() if split is None else split
        return np.asarray(transforms.resize(transforms.to_unit(test.arrays[self.fid_reference][:num],
                                                               test.num_levels), size))

    def frozen_fingerprints(self) -> dict[str, str]:
        """{field of frozen_sources: the sha256 fingerprint of the params it loaded} (none by default)."""
        return {}

    def eval_params(self, state: TrainState) -> PyTree:
        """The params to sample and evaluate with: the EMA when the run keeps one, unless
        eval.use_ema is False (the EMA has no warm-up: after t steps at decay d it still holds d**t of
        the initial weights, 45% at d = 0.999 and t = 800, so a short run evaluates its raw params).
        A LoRA run's adapters come merged into its frozen base: a plain params tree, as the model's
        apply expects. With `ema_of` set, the EMA stands in for that entry of the params only."""
        params = state.params
        if self.uses_ema(state):
            params = state.ema_params if self.ema_of is None else {**params, self.ema_of: state.ema_params}
        if isinstance(state, LoraState):
            return lora.merge(state.base_params, params, self.lora_scale)
        return params

    def uses_ema(self, state: TrainState) -> bool:
        """Whether eval_params gives the EMA (a run with one, eval.use_ema not False)."""
        return state.ema_params is not None and self.config.get("eval", {}).get("use_ema", True)

    def host_batch(self, step: int, process_index: int = 0, process_count: int = 1) -> dict[str, np.ndarray]:
        """This process's rows of the global batch of `step`, only the keys the step reads."""
        t = self.config.train
        return self.dataset.batch(self.config.seed, step, t.batch_size, process_index, process_count,
                                  keys=self.batch_keys)
