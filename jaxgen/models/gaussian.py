"""Closed forms for Gaussians shared by the model families (the VAE's KL term and the diffusion
likelihood bound), so that neither family imports the other."""
import jax
import jax.numpy as jnp


def gaussian_kl(mean1: jax.Array, logvar1: jax.Array, mean2: jax.Array | float = 0.0,
                logvar2: jax.Array | float = 0.0) -> jax.Array:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) elementwise, in nats.

        KL = 1/2 (v1 / v2 + (mean1 - mean2)^2 / v2 - 1 - log(v1 / v2)),   v = exp(logvar).

    The defaults give the VAE's KL(q(z|x) || N(0, I)) per latent dimension (Kingma & Welling 2014,
    Appendix B: -KL = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2), models/vae.py); the
    diffusion bound (models/diffusion/likelihood.py) uses the general form. Log-variances in, as
    the encoder outputs them (and as guided-diffusion's normal_kl takes them): no log(exp(.)) round trip, which
    would turn a very negative logvar into log(0).
    """
    return 0.5 * (jnp.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * jnp.exp(-logvar2) - 1.0
                  - (logvar1 - logvar2))
