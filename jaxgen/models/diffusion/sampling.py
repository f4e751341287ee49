"""The one sampling entry point of a trained diffusion or flow model: a method and a number of steps.

Every task samples through `sample`, whatever its model was trained as:
- a noise-prediction model (DDPM training, a noise `Schedule`): the ancestral and DDIM chains of
  samplers.py on the training schedule respaced to `steps`, or the ODE solvers of solvers.py
  (DPM-Solver++(2M), EDM's Euler and Heun), which pick their own grid from the training schedule;
- a flow-matching model (a `flow.FlowSchedule`): flow.py's Euler and Heun on the straight path.
All take the same `denoise(params, x, t, cond)`, condition, guidance and thresholding, so a config or
a command line switches between them with `sample.method` alone; the schedule's type says which
methods apply.
"""
from typing import Any

import jax

from jaxgen.models.diffusion import flow, samplers, schedules, solvers
from jaxgen.models.diffusion.schedules import Schedule

#: the methods for a model trained on a noise schedule (model.process = 'ddpm')
METHODS = samplers.METHODS + solvers.METHODS
#: the methods for a model trained by flow matching (model.process = 'flow')
FLOW_METHODS = flow.METHODS
#: how a model learns to generate: the noise-prediction chain, or flow matching on the straight path
PROCESSES = ("ddpm", "flow")


def methods(process: str) -> tuple[str, ...]:
    """The sampling methods of a model trained with `process` (one of PROCESSES)."""
    if process not in PROCESSES:
        raise ValueError(f"the process must be one of {', '.join(PROCESSES)}, not {process!r}.")
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
            raise ValueError(f"a flow model samples with one of {', '.join(FLOW_METHODS)}, not {method!r}.")
        # A flow model predicts the velocity. 'eps', every noise-prediction path's default, is accepted
        # so that a task can pass its config's value along whatever the process.
        parameterization = kwargs.pop("parameterization", None)
        if parameterization not in (None, "eps"):
            raise ValueError(f"a flow model predicts the velocity; parameterization {parameterization!r} "
                             f"applies to noise-prediction models only.")
        return flow.solve(denoise, params, schedule, shape, rng, cond, method=method, steps=steps, **kwargs)
    if method in FLOW_METHODS:
        raise ValueError(f"{method!r} samples a flow model (a flow.FlowSchedule); a model trained on a noise "
                         f"schedule samples with one of {', '.join(METHODS)}.")
    if method in solvers.METHODS:
        return solvers.solve(denoise, params, schedule, shape, rng, cond, method=method, steps=steps, **kwargs)
    if method not in samplers.METHODS:
        raise ValueError(f"the sampling method must be one of {', '.join(METHODS + FLOW_METHODS)}, "
                         f"not {method!r}.")
    return samplers.sample(denoise, params, schedules.respace(schedule, steps), shape, rng, cond, method=method,
                           eta=eta, variance=variance, **kwargs)
