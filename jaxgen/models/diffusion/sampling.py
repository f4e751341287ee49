"""The one sampling entry point of a trained diffusion or flow model: a method and a number of steps.

Every task samples through `sample`, whatever its model was trained as:
- a noise-prediction model (DDPM training, a noise `Schedule`): the ancestral and DDIM chains of
  samplers.py on the training schedule respaced to `steps`, or the ODE solvers of solvers.py
  (DPM-Solver++(2M), EDM's Euler and Heun), which pick their own grid from the training schedule;
- a flow-matching model (a `flow.FlowSchedule`): flow.py's Euler and Heun on the straight path.
All take the same `denoise(params, x, t, cond)`, condition, guidance and thresholding, so a config or
a command line switches between them with `sample.method` alone; the schedule's type says which
methods apply.

How a family samples is a `SampleSettings`: its config's `sample` section with a call's overrides,
checked once (`SampleSettings.from_config`, the one rule for overrides), frozen and hashable.
`Chains` holds a model's compiled chains, one per setting and shape, so a setting is compiled once
and reused across calls (guidance stays a traced input: one program serves every scale).
"""
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import is_finite_number, is_int
from jaxgen.errors import UserError
from jaxgen.models.diffusion import flow, samplers, schedules, solvers
from jaxgen.models.diffusion.schedules import Schedule

#: the methods for a model trained on a noise schedule (model.process = 'ddpm')
METHODS = samplers.METHODS + solvers.METHODS
#: the methods for a model trained by flow matching (model.process = 'flow')
FLOW_METHODS = flow.METHODS
#: how a model learns to generate: the noise-prediction chain, or flow matching on the straight path
PROCESSES = ("ddpm", "flow")
VARIANCES = ("small", "large")


class SamplingError(UserError, ValueError):
    """A sample setting (a config's `sample` field or a call's override) that no sampler runs with."""


def methods(process: str) -> tuple[str, ...]:
    """The sampling methods of a model trained with `process` (one of PROCESSES)."""
    if process not in PROCESSES:
        raise SamplingError(f"the process must be one of {', '.join(PROCESSES)}, not {process!r}.")
    return FLOW_METHODS if process == "flow" else METHODS


def sample(denoise: samplers.Denoise, params: Any, schedule: Schedule | flow.FlowSchedule, steps: int,
           shape: tuple[int, ...], rng: jax.Array, cond: Any = None, *, method: str = "ddim", eta: float = 0.0,
           variance: str = "small", **kwargs) -> tuple[jax.Array, dict[str, jax.Array]]:
    """x_0 [B, H, W, C] (roughly in [-1, 1], or the residual a frame stands for: see
    samplers.make_step's x0_offset) and the run's statistics, sampled from the model trained on
    `schedule` in `steps` steps.

    schedule: the full training noise Schedule (concrete: close over it under jit) of a
    noise-prediction model, or the FlowSchedule of a flow model; method: one of METHODS for the
    first, FLOW_METHODS for the second; eta and variance apply to 'ddpm' and 'ddim' only (the
    others are deterministic ODE integrators); kwargs: null_cond, guidance, x_T, thresholding,
    percentile, x0_offset, x0_scale, as samplers.sample, solvers.solve and flow.solve take them, and
    parameterization (noise-prediction models; a flow model takes only the default 'eps', or none).
    """
    if isinstance(schedule, flow.FlowSchedule):
        if method not in FLOW_METHODS:
            raise SamplingError(f"a flow model samples with one of {', '.join(FLOW_METHODS)}, not {method!r}.")
        # A flow model predicts the velocity. 'eps', every noise-prediction path's default, is accepted
        # so that a task can pass its config's value along whatever the process.
        parameterization = kwargs.pop("parameterization", None)
        if parameterization not in (None, "eps"):
            raise SamplingError(f"a flow model predicts the velocity; parameterization {parameterization!r} "
                             f"applies to noise-prediction models only.")
        return flow.solve(denoise, params, schedule, shape, rng, cond, method=method, steps=steps, **kwargs)
    if method in FLOW_METHODS:
        raise SamplingError(f"{method!r} samples a flow model (a flow.FlowSchedule); a model trained on a noise "
                         f"schedule samples with one of {', '.join(METHODS)}.")
    if method in solvers.METHODS:
        return solvers.solve(denoise, params, schedule, shape, rng, cond, method=method, steps=steps, **kwargs)
    if method not in samplers.METHODS:
        raise SamplingError(f"the sampling method must be one of {', '.join(METHODS + FLOW_METHODS)}, "
                         f"not {method!r}.")
    return samplers.sample(denoise, params, schedules.respace(schedule, steps), shape, rng, cond, method=method,
                           eta=eta, variance=variance, **kwargs)


def overridden(section: Mapping, overrides: Mapping | None = None) -> dict:
    """The one rule for sampling overrides: the config's `sample` section updated by a call's
    `overrides` (`method=`, `steps=`, ...); a None value keeps the config's, and a name the section
    does not hold is a SamplingError (a family's own settings, e.g. noise_aug, are in its section)."""
    section = dict(section.to_dict() if hasattr(section, "to_dict") else section)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(section))
    if unknown:
        raise SamplingError(f"unknown sample setting {unknown[0]!r}; the settings are {', '.join(sorted(section))}.")
    return {**section, **{k: v for k, v in overrides.items() if v is not None}}


@dataclasses.dataclass(frozen=True)
class SampleSettings:
    """One way to sample a trained model, checked on construction (SamplingError, one sentence).

    method: one of METHODS (noise-prediction models) or FLOW_METHODS (flow models); steps: the chain's
    length (network evaluations for the first-order methods); eta: DDIM's noise (0: deterministic);
    guidance: the classifier-free guidance scale w (1: the conditional model, 0: the unconditional
    one); thresholding, percentile: of x0_hat at every step (samplers.threshold); variance: DDPM's
    reverse variance. `keys` names the config field each value was read from, for the messages
    (e.g. unCLIP's prior reads steps from sample.prior_steps); it is no part of the setting.
    """

    method: str = "ddim"
    steps: int = 50
    eta: float = 0.0
    guidance: float = 1.0
    thresholding: str = "none"
    percentile: float = 0.995
    variance: str = "small"
    keys: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        name = lambda field: "sample." + self.keys.get(field, field)  # noqa: E731
        for field, choices in (("method", METHODS + FLOW_METHODS), ("thresholding", samplers.THRESHOLDS),
                               ("variance", VARIANCES)):
            if getattr(self, field) not in choices:
                raise SamplingError(f"{name(field)} must be one of {', '.join(choices)}, "
                                    f"not {getattr(self, field)!r}.")
        if not (is_int(self.steps) or isinstance(self.steps, np.integer)) or self.steps < 1:
            raise SamplingError(f"{name('steps')} must be a positive integer, not {self.steps!r}.")
        for field in ("eta", "guidance"):
            if not (is_finite_number(getattr(self, field)) and getattr(self, field) >= 0):
                raise SamplingError(f"{name(field)} must be a finite number >= 0, not {getattr(self, field)!r}.")
        if not (is_finite_number(self.percentile) and 0.0 <= self.percentile <= 1.0):
            raise SamplingError(f"{name('percentile')} must be a number in [0, 1], not {self.percentile!r}.")
        # Plain Python numbers: the setting keys the compiled chains, and 5 and np.int64(5) are one chain.
        for field, kind in (("steps", int), ("eta", float), ("guidance", float), ("percentile", float)):
            object.__setattr__(self, field, kind(getattr(self, field)))

    @classmethod
    def from_config(cls, section: Mapping, overrides: Mapping | None = None, **keys: str) -> "SampleSettings":
        """The settings of a config's `sample` section with a call's `overrides` (see `overridden`);
        `keys` reads a field from another entry (steps="prior_steps"); absent entries keep the
        defaults above."""
        values = overridden(section, overrides)
        keys = {f.name: keys.get(f.name, f.name) for f in dataclasses.fields(cls) if f.name != "keys"}
        return cls(**{f: values[k] for f, k in keys.items() if k in values}, keys=keys)

    def check(self, schedule: Schedule | flow.FlowSchedule) -> "SampleSettings":
        """Itself, if it samples the model trained on `schedule`: a method of its process and, on a
        noise schedule, at most its number of steps (flow time is continuous); else a SamplingError."""
        if isinstance(schedule, flow.FlowSchedule):
            if self.method not in FLOW_METHODS:
                raise SamplingError(f"a flow model samples with one of {', '.join(FLOW_METHODS)}, not {self.method!r}.")
            return self
        if self.method not in METHODS:
            raise SamplingError(f"sample.{self.keys.get('method', 'method')} must be one of {', '.join(METHODS)} "
                                f"for a model trained on a noise schedule, not {self.method!r}.")
        if self.steps > schedule.num_steps:
            raise SamplingError(f"sample.{self.keys.get('steps', 'steps')} must be in 1..{schedule.num_steps} "
                                f"(the model's timesteps), not {self.steps}.")
        return self

    @property
    def static(self) -> tuple:
        """What a compiled chain depends on: everything but the guidance scale (a traced input)."""
        return (self.method, self.steps, self.eta, self.thresholding, self.percentile, self.variance)

    def sample(self, denoise: samplers.Denoise, params: Any, schedule: Schedule | flow.FlowSchedule,
               shape: tuple[int, ...], rng: jax.Array, cond: Any = None, **kwargs
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """`sample` with these settings: kwargs are null_cond, guidance (pass it traced, see `static`),
        parameterization, x0_offset and x0_scale."""
        return sample(denoise, params, schedule, self.steps, shape, rng, cond, method=self.method, eta=self.eta,
                      variance=self.variance, thresholding=self.thresholding, percentile=self.percentile, **kwargs)


def to_unit(x: jax.Array) -> jax.Array:
    """A chain's output [N, H, W, C], roughly in [-1, 1] -> images float in [0, 1], clipped."""
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


class Chains:
    """A model's compiled sampling chains: `run(key, make, args)` compiles `make()` for `args` the
    first time `key` (a name, the row count, `SampleSettings.static`, ...) is seen and reuses it
    after; jit's own cache would retrace a fresh closure on every call."""

    def __init__(self):
        self._compiled: dict[tuple, Any] = {}

    def run(self, key: tuple, make: Callable[[], Callable], args: tuple) -> tuple[Any, dict[str, float]]:
        """(the chain's output as numpy, its statistics as floats with compile_seconds (0 when this
        key was compiled before) and sample_seconds apart)."""
        start = time.perf_counter()
        if key not in self._compiled:
            self._compiled[key] = jax.jit(make()).lower(*args).compile()
        compiled = time.perf_counter()
        out, stats = self._compiled[key](*args)
        out = jax.tree.map(np.asarray, out)  # waits for the chain, so that sample_seconds is its time
        stats = {k: float(v) for k, v in stats.items()}
        stats.update(compile_seconds=compiled - start, sample_seconds=time.perf_counter() - compiled)
        return out, stats
