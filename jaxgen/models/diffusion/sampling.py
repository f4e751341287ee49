"""The one sampling entry point of a trained diffusion model: a method and a number of steps.

Every task samples through `sample`: the ancestral and DDIM chains of samplers.py run on the
training schedule respaced to `steps`; the ODE solvers of solvers.py (DPM-Solver++(2M), EDM's
Euler and Heun) pick their own grid from the training schedule. Both take the same
`denoise(params, x, t, cond)`, condition, guidance and thresholding, so a config or a command line
switches between them with `sample.method` alone.
"""
from typing import Any

import jax

from jaxgen.models.diffusion import samplers, schedules, solvers
from jaxgen.models.diffusion.schedules import Schedule

METHODS = samplers.METHODS + solvers.METHODS


def sample(denoise: samplers.Denoise, params: Any, schedule: Schedule, steps: int, shape: tuple[int, ...],
           rng: jax.Array, cond: Any = None, *, method: str = "ddim", eta: float = 0.0, variance: str = "small",
           **kwargs) -> tuple[jax.Array, dict[str, jax.Array]]:
    """x_0 [B, H, W, C] (roughly in [-1, 1], or the residual a frame stands for: see
    samplers.make_step's x0_offset) and the run's statistics, sampled from the model trained on
    `schedule` (the full training schedule, concrete: close over it under jit) in `steps` steps.

    method: one of METHODS; eta and variance apply to 'ddpm' and 'ddim' only (the solvers are
    deterministic ODE integrators); kwargs: null_cond, guidance, x_T, parameterization,
    thresholding, percentile, x0_offset, x0_scale, as samplers.sample and solvers.solve take them.
    """
    if method in solvers.METHODS:
        return solvers.solve(denoise, params, schedule, shape, rng, cond, method=method, steps=steps, **kwargs)
    if method not in samplers.METHODS:
        raise ValueError(f"the sampling method must be one of {', '.join(METHODS)}, not {method!r}.")
    return samplers.sample(denoise, params, schedules.respace(schedule, steps), shape, rng, cond, method=method,
                           eta=eta, variance=variance, **kwargs)
