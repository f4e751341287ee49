"""Tests of jaxgen.models.cyclegan: the losses by hand, the networks' shapes, and the history pool's
semantics (fill, then random replacement with probability 1/2; deterministic; jit-compatible)."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.models import cyclegan as C


def test_losses_by_hand():
    real, fake = jnp.array([1.0, 0.0]), jnp.array([0.5, -1.0])
    # 0.5 * [mean((1-1)^2, (0-1)^2) + mean(0.5^2, (-1)^2)] = 0.5 * [0.5 + 0.625]
    np.testing.assert_allclose(C.lsgan_discriminator_loss(real, fake), 0.5625, rtol=1e-6)
    np.testing.assert_allclose(C.lsgan_generator_loss(fake), (0.25 + 4.0) / 2, rtol=1e-6)
    x, rec = jnp.array([[0.0, 1.0], [-1.0, 0.5]]), jnp.array([[0.5, 1.0], [0.0, 0.5]])
    np.testing.assert_allclose(C.cycle_loss(x, rec), (0.5 + 0 + 1 + 0) / 4, rtol=1e-6)
    np.testing.assert_allclose(C.identity_loss(x, rec), 0.375, rtol=1e-6)


def test_networks_shapes():
    x = jnp.zeros((2, 16, 16, 3))
    g = C.ResnetGenerator(channels=(4, 8), num_res_blocks=1)
    d = C.PatchDiscriminator(channels=(4, 8))
    rng = jax.random.key(0, impl="rbg")
    x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3), minval=-1, maxval=1)
    y = jax.jit(g.apply)(jax.jit(g.init)(rng, x), x)
    assert y.shape == x.shape and float(jnp.abs(y).max()) <= 1.0
    # two stride-2 layers except the last: 16 -> 8 (first layer), then stride 1 -> 8x8 patches
    assert jax.jit(d.apply)(jax.jit(d.init)(rng, x), x).shape == (2, 8, 8)


def _images(n, start=0):
    """n distinguishable 1x1x1 'images' with values start+1, ..., start+n."""
    return jnp.arange(start + 1, start + n + 1, dtype=jnp.float32).reshape(n, 1, 1, 1)


def test_pool_fills_first_and_returns_the_new_images():
    pool = C.pool_init(3, (1, 1, 1))
    pool, out = C.pool_query(pool, _images(2), jax.random.key(0))
    np.testing.assert_array_equal(out, _images(2))
    assert int(pool["count"]) == 2
    np.testing.assert_array_equal(pool["images"][:, 0, 0, 0], [1, 2, 0])
    pool, out = C.pool_query(pool, _images(1, start=2), jax.random.key(1))  # fills the last slot
    np.testing.assert_array_equal(out[:, 0, 0, 0], [3])
    np.testing.assert_array_equal(pool["images"][:, 0, 0, 0], [1, 2, 3])
    assert int(pool["count"]) == 3


def _reference(stored, count, images, rng, size):
    """The pool's rule, written as the paper's reference code does it (python loop, same draws)."""
    stored, out = list(stored), []
    for i, image in enumerate(images):
        coin_key, slot_key = jax.random.split(jax.random.fold_in(rng, i))
        if count < size:
            stored[count] = image
            count += 1
            out.append(image)
        elif float(jax.random.uniform(coin_key)) < 0.5:
            slot = int(jax.random.randint(slot_key, (), 0, size))
            out.append(stored[slot])
            stored[slot] = image
        else:
            out.append(image)
    return stored, count, out


def test_pool_full_replaces_at_random_like_the_reference_rule():
    size = 4
    pool = C.pool_init(size, (1, 1, 1))
    pool, _ = C.pool_query(pool, _images(size), jax.random.key(0))
    images = _images(64, start=100)
    rng = jax.random.key(7)
    new_pool, out = jax.jit(C.pool_query)(pool, images, rng)  # jit-compatible
    ref_stored, ref_count, ref_out = _reference(list(np.asarray(pool["images"][:, 0, 0, 0])), size,
                                                list(np.asarray(images[:, 0, 0, 0])), rng, size)
    np.testing.assert_array_equal(out[:, 0, 0, 0], ref_out)
    np.testing.assert_array_equal(new_pool["images"][:, 0, 0, 0], ref_stored)
    assert int(new_pool["count"]) == ref_count == size
    # about half the outputs are old images (from the pool), the rest the new ones as given
    old = np.asarray(out[:, 0, 0, 0]) != np.asarray(images[:, 0, 0, 0])
    assert 20 <= old.sum() <= 44
    # deterministic given the key; another key gives another draw
    again = C.pool_query(pool, images, rng)[1]
    np.testing.assert_array_equal(again, out)
    assert not np.array_equal(C.pool_query(pool, images, jax.random.key(8))[1], out)
    # a pool of size 0 is the identity
    empty = C.pool_init(0, (1, 1, 1))
    np.testing.assert_array_equal(C.pool_query(empty, images, rng)[1], images)
