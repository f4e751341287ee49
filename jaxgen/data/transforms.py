"""Device-side image transforms used inside compiled steps (pure jnp, per-example keys)."""
import jax
import jax.numpy as jnp


def to_unit(images: jax.Array, num_levels: int) -> jax.Array:
    """Integer levels [B, H, W, C] in 0..num_levels-1 -> float32 in [0, 1]."""
    return images.astype(jnp.float32) / (num_levels - 1)


def resize(images: jax.Array, size: int, method: str = "bilinear") -> jax.Array:
    """[B, H, W, C] -> [B, size, size, C]; identity when already that size. Bilinear with
    antialiasing off matches PyTorch's interpolate(align_corners=False) when up-sampling."""
    b, h, w, c = images.shape
    if (h, w) == (size, size):
        return images
    return jax.image.resize(images, (b, size, size, c), method=method, antialias=False)


def random_shift(images: jax.Array, keys: jax.Array, max_shift: int) -> jax.Array:
    """Translates each image [B, H, W, C] by its own integer offset in [-max_shift, max_shift]^2,
    filling with zeros (the digits' background); keys [B, 2] are per-example."""
    if max_shift == 0:
        return images
    _, h, w, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))

    def one(image, key):
        dy, dx = jax.random.randint(key, (2,), 0, 2 * max_shift + 1)
        return jax.lax.dynamic_slice(image, (dy, dx, 0), (h, w, image.shape[-1]))

    return jax.vmap(one)(padded, keys)


def random_flip(images: jax.Array, keys: jax.Array) -> jax.Array:
    """Mirrors each image [B, H, W, C] left-right with probability 1/2, drawn from its own key
    (keys [B, 2], per-example: the result does not depend on how the batch is split over devices).
    The augmentation of Ho et al. (2020) on CIFAR-10 (config data.random_flip)."""
    flip = jax.vmap(lambda k: jax.random.bernoulli(k))(keys)
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)
