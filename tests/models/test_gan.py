"""Tests of jaxgen.models.gan: the losses against hand-computed values, R1, and the networks'
shapes and per-example independence."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models import gan as G

REAL = jnp.array([0.0, 2.0])
FAKE = jnp.array([0.0, -1.0])
sp = lambda v: math.log1p(math.exp(v))


def test_discriminator_losses_by_hand():
    # -[log sigmoid(0) + log sigmoid(2)]/2 - [log(1 - sigmoid(0)) + log(1 - sigmoid(-1))]/2
    bce = -(math.log(0.5) + math.log(1 / (1 + math.exp(-2)))) / 2 - (math.log(0.5) + math.log(1 - 1 / (1 + math.exp(1)))) / 2
    for kind in ("minimax", "nonsaturating"):
        np.testing.assert_allclose(G.discriminator_loss(REAL, FAKE, kind), bce, rtol=1e-6)
    # hinge: mean(relu(1 - [0, 2])) + mean(relu(1 + [0, -1])) = (1 + 0)/2 + (1 + 0)/2
    np.testing.assert_allclose(G.discriminator_loss(REAL, FAKE, "hinge"), 1.0, rtol=1e-6)


def test_generator_losses_by_hand():
    # minimax: mean log(1 - sigmoid(l)) over l = 0, -1: [log 0.5 + log(1 - 1/(1+e))] / 2
    minimax = (math.log(0.5) + math.log(1 - 1 / (1 + math.exp(1)))) / 2
    np.testing.assert_allclose(G.generator_loss(FAKE, "minimax"), minimax, rtol=1e-6)
    # non-saturating: -mean log sigmoid(l) = [softplus(0) + softplus(1)] / 2
    np.testing.assert_allclose(G.generator_loss(FAKE, "nonsaturating"), (sp(0) + sp(1)) / 2, rtol=1e-6)
    np.testing.assert_allclose(G.generator_loss(FAKE, "hinge"), 0.5, rtol=1e-6)
    with pytest.raises(ValueError, match="loss must be one of"):
        G.generator_loss(FAKE, "wasserstein")


def test_losses_are_finite_and_exact_at_extreme_logits():
    big = jnp.array([-200.0, 200.0])
    for kind in G.LOSSES:
        assert np.isfinite(G.discriminator_loss(big, big, kind))
        assert np.isfinite(G.generator_loss(big, kind))
    # -log sigmoid(-200) = 200 exactly in the logit form (a naive log(sigmoid) gives inf)
    np.testing.assert_allclose(G.generator_loss(jnp.array([-200.0]), "nonsaturating"), 200.0, rtol=1e-6)


def test_minimax_generator_gradient_saturates_where_nonsaturating_does_not():
    """Goodfellow 2014 Sec. 3: when D rejects samples confidently (logit -8), the minimax gradient is
    -sigmoid(l) ~ -3e-4, the non-saturating one -(1 - sigmoid(l)) ~ -1."""
    l = jnp.array([-8.0])
    g_mm = jax.grad(lambda v: G.generator_loss(v, "minimax"))(l)[0]
    g_ns = jax.grad(lambda v: G.generator_loss(v, "nonsaturating"))(l)[0]
    np.testing.assert_allclose(g_mm, -1 / (1 + math.exp(8)), rtol=1e-5)
    np.testing.assert_allclose(g_ns, -1 / (1 + math.exp(-8)), rtol=1e-5)


def test_r1_penalty_by_hand():
    x = jax.random.normal(jax.random.key(0), (3, 2, 2, 1))
    w = jnp.full((2, 2, 1), 2.0)
    linear = lambda im: jnp.sum(im * w, axis=(1, 2, 3))
    np.testing.assert_allclose(G.r1_penalty(linear, x), 16.0, rtol=1e-6)
    quadratic = lambda im: jnp.sum(im**2, axis=(1, 2, 3))
    np.testing.assert_allclose(G.r1_penalty(quadratic, x), jnp.mean(jnp.sum(4 * x**2, axis=(1, 2, 3))), rtol=1e-5)


def test_discriminator_accuracy():
    assert float(G.discriminator_accuracy(jnp.array([1.0, -1.0]), jnp.array([-1.0, -2.0]))) == 0.75


@pytest.mark.parametrize("num_classes, upsample, norm", [(0, "nearest", "group"), (10, "transpose", "layer")])
def test_networks_shapes_range_and_per_example_independence(num_classes, upsample, norm):
    gen = G.Generator(image_shape=(8, 8, 1), latent_dim=4, channels=(8, 4), num_classes=num_classes,
                      norm=norm, upsample=upsample)
    disc = G.Discriminator(channels=(4, 8), num_classes=num_classes, feature_dim=8, norm=norm)
    rng = jax.random.key(0, impl="rbg")
    z = G.latents(jax.random.split(jax.random.key(1), 4), 4)
    y = G.cycling_labels(4, 10) if num_classes else None
    gp = jax.jit(gen.init)(rng, z, y)["params"]
    generate, discriminate = jax.jit(gen.apply), jax.jit(disc.apply)  # compiled once, not op by op
    x = generate({"params": gp}, z, y)
    assert x.shape == (4, 8, 8, 1) and float(jnp.abs(x).max()) <= 1.0
    dp = jax.jit(disc.init)(rng, x, y)["params"]
    logits = discriminate({"params": dp}, x, y)
    assert logits.shape == (4,)
    # No cross-example computation: changing examples 1..3 leaves example 0's outputs unchanged.
    z2 = z.at[1:].set(10.0)
    np.testing.assert_allclose(generate({"params": gp}, z2, y)[0], x[0], rtol=1e-6, atol=1e-6)
    x2 = x.at[1:].set(0.3)
    np.testing.assert_allclose(discriminate({"params": dp}, x2, y)[0], logits[0], rtol=1e-6, atol=1e-6)


def test_noise_helpers():
    keys = jax.random.split(jax.random.key(0), 6)
    z = G.latents(keys, 3)
    assert z.shape == (6, 3)
    np.testing.assert_array_equal(G.latents(keys[2:3], 3)[0], z[2])  # per-example keys
    labels = G.random_labels(keys, 10)
    assert labels.shape == (6,) and int(labels.min()) >= 0 and int(labels.max()) < 10
    np.testing.assert_array_equal(G.cycling_labels(12, 10), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])


# --- DCGAN (jaxgen.models.dcgan) ------------------------------------------------------------------

from jax.sharding import Mesh, PartitionSpec as P  # noqa: E402

from jaxgen.data import transforms  # noqa: E402
from jaxgen.models import dcgan as DC  # noqa: E402
from jaxgen.train import parallel  # noqa: E402


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("size, g_channels, d_channels, g_params, d_params", [
    # Figure 1 of Radford et al. at 64x64: z(100) -> 4x4x1024 -> ... -> 64x64x3, 5x5 kernels, no biases;
    # by hand: the projection 100 x 4*4*1024 and its batch norm per unit (scale and shift), the four
    # transposed convs, the batch norms per channel
    (64, (1024, 512, 256, 128), (128, 256, 512, 1024),
     100 * 16 * 1024 + 2 * 16 * 1024 + 25 * (1024 * 512 + 512 * 256 + 256 * 128 + 128 * 3) + 2 * (512 + 256 + 128),
     # the four convs, the batch norms of the last three, the 4*4*1024 -> 1 logit
     25 * (3 * 128 + 128 * 256 + 256 * 512 + 512 * 1024) + 2 * (256 + 512 + 1024) + 16 * 1024),
    (32, (512, 256, 128), (128, 256, 512), 4_941_952, 4_115_328),
])
def test_dcgan_shapes_and_parameter_counts(size, g_channels, d_channels, g_params, d_params):
    """Full size, abstractly (jax.eval_shape: no compute)."""
    gen, disc = DC.DCGANGenerator((size, size, 3), 100, g_channels), DC.DCGANDiscriminator(d_channels)
    gp = jax.eval_shape(gen.init, jax.random.key(0), jnp.zeros((2, 100)))
    dp = jax.eval_shape(disc.init, jax.random.key(0), jnp.zeros((2, size, size, 3)))
    assert (_count(gp), _count(dp)) == (g_params, d_params)
    assert jax.eval_shape(gen.apply, gp, jnp.zeros((2, 100))).shape == (2, size, size, 3)
    assert jax.eval_shape(disc.apply, dp, jnp.zeros((2, size, size, 3))).shape == (2,)


def test_dcgan_batch_norm_over_8_devices_is_the_global_batch():
    """With axis_name, 8 devices of 2 examples compute what one device computes on all 16 (the
    statistics are the global batch's); without it each device normalises its own 2, which differs.
    The generator holds both kinds of batch norm (per unit on the projection, per channel after a
    transposed conv); the discriminator's are the second kind."""
    gen = DC.DCGANGenerator((8, 8, 1), 4, (8, 4), kernel_size=3)
    z = DC.uniform_latents(jax.random.split(jax.random.key(1), 16), 4)
    assert float(jnp.abs(z).max()) <= 1.0
    gp = jax.jit(gen.init)(jax.random.key(0, impl="rbg"), z[:2])["params"]
    x = jax.jit(gen.apply)({"params": gp}, z)
    assert x.shape == (16, 8, 8, 1) and float(jnp.abs(x).max()) <= 1.0
    mesh = Mesh(np.asarray(jax.devices()[:8]), (parallel.AXIS,))

    def on_devices(axis_name):
        return jax.jit(jax.shard_map(lambda g, z: gen.apply({"params": g}, z, None, axis_name), mesh=mesh,
                                     in_specs=(P(), P(parallel.AXIS)), out_specs=P(parallel.AXIS),
                                     check_vma=False))(gp, z)

    np.testing.assert_allclose(on_devices(parallel.AXIS), x, rtol=1e-4, atol=1e-5)
    assert float(jnp.abs(on_devices(None) - x).max()) > 1e-3


def test_center_crop_resize_takes_the_middle_square():
    images = jnp.arange(2 * 7 * 6 * 1, dtype=jnp.float32).reshape(2, 7, 6, 1)
    # crop 4 of 7 x 6: rows 1..4, columns 1..4 (the odd extra row is cut at the bottom)
    np.testing.assert_array_equal(transforms.center_crop_resize(images, 4, 4), images[:, 1:5, 1:5])
    flat = jnp.full((1, 218, 178, 3), 0.25)
    out = jax.jit(transforms.center_crop_resize, static_argnums=(1, 2))(flat, 108, 64)
    assert out.shape == (1, 64, 64, 3)
    np.testing.assert_allclose(out, 0.25, rtol=1e-6)
