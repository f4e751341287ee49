"""The forward (noising) process and the three parameterizations of the denoiser's output.

Notation (Ho et al. 2020): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, eps ~ N(0, I)   (eq. 4).
The network may predict eps, x_0, or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho
2022, sec. 4); each converts to the others exactly given x_t.

Every function takes `i`: int [B], an index into the schedule's arrays (for the full schedule the
timestep itself), and images x: float [B, H, W, C] scaled to [-1, 1].
"""
import jax
import jax.numpy as jnp

from jaxgen.models.diffusion.schedules import Schedule

PARAMETERIZATIONS = ("eps", "x0", "v")


def _coef(values: jax.Array, i: jax.Array, x: jax.Array) -> jax.Array:
    """values[i] broadcast against x [B, ...]."""
    return values[i].reshape((-1,) + (1,) * (x.ndim - 1))


def q_sample(schedule: Schedule, x0: jax.Array, i: jax.Array, noise: jax.Array) -> jax.Array:
    """A draw of x_t ~ q(x_t | x_0) in closed form (eq. 4)."""
    abar = _coef(schedule.alphas_cumprod, i, x0)
    return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise


def target(parameterization: str, schedule: Schedule, x0: jax.Array, i: jax.Array,
           noise: jax.Array) -> jax.Array:
    """What the network is trained to output for (x_0, eps) at step i."""
    if parameterization == "eps":
        return noise
    if parameterization == "x0":
        return x0
    if parameterization == "v":
        abar = _coef(schedule.alphas_cumprod, i, x0)
        return jnp.sqrt(abar) * noise - jnp.sqrt(1.0 - abar) * x0
    raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, not {parameterization!r}.")


def to_x0_eps(parameterization: str, schedule: Schedule, x_t: jax.Array, i: jax.Array,
              output: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The network output in any parameterization -> (x0_hat, eps_hat), both [B, H, W, C]."""
    abar = _coef(schedule.alphas_cumprod, i, x_t)
    a, s = jnp.sqrt(abar), jnp.sqrt(1.0 - abar)
    if parameterization == "eps":
        return (x_t - s * output) / a, output
    if parameterization == "x0":
        return output, (x_t - a * output) / s
    if parameterization == "v":
        # x_0 = a x_t - s v and eps = s x_t + a v, since a^2 + s^2 = 1.
        return a * x_t - s * output, s * x_t + a * output
    raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, not {parameterization!r}.")


def eps_from_x0(schedule: Schedule, x_t: jax.Array, i: jax.Array, x0: jax.Array) -> jax.Array:
    """The noise implied by x_t and a (possibly clipped) x_0 estimate."""
    abar = _coef(schedule.alphas_cumprod, i, x_t)
    return (x_t - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)


def posterior(schedule: Schedule, x0: jax.Array, x_t: jax.Array, i: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
    """q(x_{i-1} | x_i, x_0) = N(mean, var) along the schedule's chain (Ho et al. eq. 6-7):
    mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t,
    var = beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t. Returns (mean [B,...], var [B,1,..])."""
    abar, abar_prev, beta = schedule.alphas_cumprod, schedule.alphas_cumprod_prev(), schedule.betas
    c0 = _coef(jnp.sqrt(abar_prev) * beta / (1.0 - abar), i, x_t)
    ct = _coef(jnp.sqrt(1.0 - beta) * (1.0 - abar_prev) / (1.0 - abar), i, x_t)
    var = _coef((1.0 - abar_prev) / (1.0 - abar) * beta, i, x_t)
    return c0 * x0 + ct * x_t, var


def reverse_variance(schedule: Schedule, i: jax.Array, x: jax.Array, kind: str) -> jax.Array:
    """The fixed variance of p(x_{t-1} | x_t): 'small' = beta_tilde_t (the posterior's), 'large' =
    beta_t (Ho et al. sec. 3.2: both are optimal for different data; 'large' gives the better
    likelihood bound at t = 1, where beta_tilde = 0)."""
    abar, abar_prev, beta = schedule.alphas_cumprod, schedule.alphas_cumprod_prev(), schedule.betas
    if kind == "small":
        return _coef((1.0 - abar_prev) / (1.0 - abar) * beta, i, x)
    if kind == "large":
        return _coef(beta, i, x)
    raise ValueError(f"variance must be 'small' or 'large', not {kind!r}.")
