"""Optimizers from the `optim` section of a config."""
import ml_collections
import numpy as np
import optax


def make_optimizer(optim: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    """adam / adamw / sgd (with momentum), optional linear warm-up, cosine decay and gradient clipping.

    Fields: name, lr, warmup_steps, schedule ('constant' | 'cosine' | 'burda', with epoch_steps: see
    `burda_schedule` | 'linear_decay', with decay_start: see `linear_decay_schedule`), grad_clip
    (0 = off), weight_decay (adamw), momentum (sgd), b1, b2, eps (adam*).
    """
    schedule = _schedule(optim, total_steps)
    if optim.name == "sgd":
        core = optax.sgd(schedule, momentum=optim.get("momentum", 0.9) or None)
    elif optim.name == "adamw":
        core = optax.adamw(schedule, b1=optim.get("b1", 0.9), b2=optim.get("b2", 0.999), eps=optim.get("eps", 1e-8),
                           weight_decay=optim.get("weight_decay", 1e-4))
    else:
        core = optax.adam(schedule, b1=optim.get("b1", 0.9), b2=optim.get("b2", 0.999), eps=optim.get("eps", 1e-8))
    clip = optim.get("grad_clip", 0.0)
    return optax.chain(optax.clip_by_global_norm(clip), core) if clip else core


def burda_schedule(lr: float, epoch_steps: int, stages: int = 8) -> optax.Schedule:
    """Burda et al.'s (2016, sec. 5) learning rates: stage i = 0..stages-1 lasts 3^i epochs at
    lr * 10^(-i/7) (lr 0.001: 1e-3 down to 1e-4 over 3,280 epochs; their code rounds each rate to
    two significant digits), then stays at the last rate. `epoch_steps`: optimizer steps per epoch."""
    boundaries = np.cumsum([3 ** i * epoch_steps for i in range(stages - 1)])
    return optax.join_schedules([optax.constant_schedule(lr * 10 ** (-i / 7)) for i in range(stages)],
                                [int(b) for b in boundaries])


def linear_decay_schedule(lr: float, total_steps: int, decay_start: float) -> optax.Schedule:
    """lr for the first decay_start * total_steps steps (rounded down), then linearly down to 0 at
    total_steps: Zhu et al.'s (2017, sec. 4) CycleGAN schedule, 100 epochs at 2e-4 then 100 decaying,
    is decay_start 0.5 (their code steps the rate once per epoch; this one per step)."""
    start = int(total_steps * decay_start)
    return optax.join_schedules([optax.constant_schedule(lr),
                                 optax.linear_schedule(lr, 0.0, max(total_steps - start, 1))], [start])


def _schedule(optim: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    warmup = optim.get("warmup_steps", 0)
    if optim.get("schedule", "constant") == "burda":
        return burda_schedule(optim.lr, optim.epoch_steps)
    if optim.get("schedule", "constant") == "linear_decay":
        return linear_decay_schedule(optim.lr, total_steps, optim.decay_start)
    if optim.get("schedule", "constant") == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, optim.lr, max(warmup, 1), max(total_steps, warmup + 1),
                                                  end_value=optim.lr * 0.01)
    if warmup:
        return optax.join_schedules([optax.linear_schedule(0.0, optim.lr, warmup),
                                     optax.constant_schedule(optim.lr)], [warmup])
    return optax.constant_schedule(optim.lr)
