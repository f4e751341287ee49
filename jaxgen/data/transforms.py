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
    filling with zeros (the digits' background); keys [B, 2] are per-example. It is random_crop
    with zero padding (the same draw of the offset)."""
    return random_crop(images, keys, max_shift, mode="constant")


def random_flip(images: jax.Array, keys: jax.Array) -> jax.Array:
    """Mirrors each image [B, H, W, C] left-right with probability 1/2, drawn from its own key
    (keys [B, 2], per-example: the result does not depend on how the batch is split over devices).
    The augmentation of Ho et al. (2020) on CIFAR-10 (config data.random_flip)."""
    flip = jax.vmap(lambda k: jax.random.bernoulli(k))(keys)
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)


def dynamic_binarize(images: jax.Array, keys: jax.Array, num_levels: int) -> jax.Array:
    """Dynamic binarization (as in Burda et al. 2016's MNIST): each pixel of integer images
    [B, H, W, C] in 0..num_levels-1 becomes 1 with probability level / (num_levels - 1), else 0,
    drawn from the example's own key (keys [B, 2]): int32 [B, H, W, C] in {0, 1}. A fresh key per
    (seed, step, example) gives a fresh binarization every time an image is seen, and the same one
    when a resumed run replays that step; E[result] = level / (num_levels - 1)."""
    p = images.astype(jnp.float32) / (num_levels - 1)
    u = jax.vmap(lambda k, shape_like: jax.random.uniform(k, shape_like.shape))(keys, p)
    return (u < p).astype(jnp.int32)


CROP_STREAM = 0xC209  # folded into an example's key for its data.random_crop draw (apart from its other draws)


def random_crop(images: jax.Array, keys: jax.Array, pad: int, mode: str = "reflect") -> jax.Array:
    """Pad-and-crop, as in the CIFAR recipes: each image [B, H, W, C] padded by `pad` pixels on
    every side, then cut back to H x W at its own offset in [0, 2 pad]^2, drawn from its own key
    (keys [B, 2], per-example: the result does not depend on how the batch is split over devices,
    so with keys from (seed, step, example index) it is a pure function of those). Identity at
    pad 0. `mode` is jnp.pad's: "reflect" (default) keeps borders a generative model would otherwise
    learn to draw; "constant" fills zeros as torchvision's RandomCrop(32, padding=4) does."""
    if pad == 0:
        return images
    _, h, w, _ = images.shape
    if not 0 < pad < min(h, w) and mode == "reflect":
        raise ValueError(f"a reflect pad must be below the image size {min(h, w)}, not {pad}.")
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
    return random_window(padded, keys, h, w)


def random_window(images: jax.Array, keys: jax.Array, height: int, width: int) -> jax.Array:
    """A height x width window of each image [B, H, W, C] at its own offset, uniform over
    [0, H - height] x [0, W - width], drawn from its own key (keys [B, 2], per-example):
    [B, height, width, C]. The random crop of CycleGAN's recipe (resize to 286, crop 256) and the
    crop half of random_crop's pad-and-crop."""
    _, h, w, c = images.shape
    if not (0 < height <= h and 0 < width <= w):
        raise ValueError(f"a {height}x{width} window does not fit in {h}x{w} images.")

    def one(image, key):
        dy, dx = jax.random.randint(key, (2,), 0, jnp.array([h - height + 1, w - width + 1]))
        return jax.lax.dynamic_slice(image, (dy, dx, 0), (height, width, c))

    return jax.vmap(one)(images, keys)


def crop_inputs(inputs: dict[str, jax.Array], pad: int, key: str = "image") -> dict[str, jax.Array]:
    """A train step's `inputs` (with "key": each example's own key [B, 2]) whose `key` images are
    random_crop'ed by `pad` (config data.random_crop) with keys folded from the examples' keys by
    CROP_STREAM, so a run without crops keeps its other draws; `inputs` itself at pad 0."""
    if not pad:
        return inputs
    crop_keys = jax.vmap(lambda k: jax.random.fold_in(k, CROP_STREAM))(inputs["key"])
    return dict(inputs, **{key: random_crop(inputs[key], crop_keys, pad)})


def center_crop_resize(images: jax.Array, crop: int, size: int) -> jax.Array:
    """The centre crop x crop square of each image [B, H, W, C] (float), resized to [B, size, size, C]
    bilinearly with antialiasing (so that down-sampling averages, as PIL's resize does, instead of
    skipping pixels): CelebA's 218x178 faces -> 64x64 for DCGAN. When H - crop (or W - crop) is odd
    the extra row (column) is cut at the bottom (right)."""
    b, h, w, c = images.shape
    top, left = (h - crop) // 2, (w - crop) // 2
    square = images[:, top:top + crop, left:left + crop]
    if crop == size:
        return square
    return jax.image.resize(square, (b, size, size, c), method="bilinear", antialias=True)
