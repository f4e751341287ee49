"""Diffusion models, with the math kept apart from the network (as in guided-diffusion).

- schedules: noise schedules (linear, cosine) and timestep respacing.
- process:   the forward process q(x_t | x_0), the posterior q(x_{t-1} | x_t, x_0), and the
             conversions between epsilon-, x0- and v-prediction.
- losses:    the per-example loss (simple and min-SNR weighted) for any parameterization.
- training:  the whole training objective every family uses (times, noise, q_sample or the flow's
             path, the classifier-free condition drop, the weighted loss).
- samplers:  DDPM and DDIM, each one compiled `lax.scan` over its steps, classifier-free guidance,
             static and dynamic thresholding. They take any `denoise(params, x, t, cond)`.
- solvers:   few-step ODE solvers for the same networks: DPM-Solver++(2M), EDM's Euler and Heun
             on Karras sigmas.
- flow:      flow matching / rectified flow on the straight path x_t = (1 - t) x_0 + t e: the
             velocity loss, logit-normal times, the resolution shift, Euler and Heun samplers.
- sampling:  the one entry point: `sample(denoise, params, schedule, steps, ...)` with any method of
             samplers, solvers or flow (`sample.method` in the configs), the checked
             `SampleSettings` (the one rule for a call's overrides) and `Chains`, the cache of
             compiled chains.
- likelihood: the variational bound in bits/dim for discrete data.
- network:   the Linen denoiser (U-Net plus class / text conditioning with a null condition).
- dit:       the transformer denoiser (DiT, adaLN-Zero) with the same call and conditions.
"""
from jaxgen.models.diffusion import (flow, likelihood, losses, process, samplers, sampling, schedules,  # noqa: F401
                                     solvers, training)
