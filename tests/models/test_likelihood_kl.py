"""The diffusion bound's Gaussian KL is the VAE's (jaxgen/models/gaussian.py: gaussian_kl), and agrees with
the variance form the bound used before (jaxgen/models/diffusion/likelihood.py)."""
import jax.numpy as jnp
import numpy as np

from jaxgen.models import gaussian, vae
from jaxgen.models.diffusion import likelihood


def test_diffusion_bound_uses_the_one_gaussian_kl():
    assert likelihood.gaussian_kl is vae.gaussian_kl is gaussian.gaussian_kl


def test_log_variance_form_matches_the_former_variance_form():
    # KL(N(m1, v1) || N(m2, v2)) = 1/2 (log v2 - log v1 + (v1 + (m1 - m2)^2) / v2 - 1), over the
    # variances a 1000-step schedule produces (1e-20, the bound's clip, up to 1).
    rng = np.random.default_rng(0)
    v1, v2 = (jnp.asarray(10.0 ** rng.uniform(-20, 0, (64,)), jnp.float32) for _ in range(2))
    m1, m2 = (jnp.asarray(rng.normal(size=(64,)), jnp.float32) for _ in range(2))
    former = 0.5 * (jnp.log(v2) - jnp.log(v1) + (v1 + (m1 - m2) ** 2) / v2 - 1.0)
    np.testing.assert_allclose(likelihood.gaussian_kl(m1, jnp.log(v1), m2, jnp.log(v2)), former,
                               rtol=1e-5)
