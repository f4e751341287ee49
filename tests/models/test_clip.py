"""The CLIP model and its contrastive losses: against naive references, the temperature gradient,
and the all-gathered data-parallel loss against the single-device loss on the global batch."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxgen.models import clip as clip_lib
from jaxgen.train import parallel


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _pairs(n=6, e=5, seed=0):
    rng = np.random.default_rng(seed)
    return _unit(rng.normal(size=(n, e))).astype(np.float32), _unit(rng.normal(size=(n, e))).astype(np.float32)


def _naive_softmax(img, txt, s):
    """The CLIP paper's pseudo-code, one row at a time."""
    n = len(img)
    total = 0.0
    for i in range(n):
        row = [s * img[i] @ txt[j] for j in range(n)]
        col = [s * img[j] @ txt[i] for j in range(n)]
        total += -row[i] + math.log(sum(math.exp(v) for v in row))
        total += -col[i] + math.log(sum(math.exp(v) for v in col))
    return total / (2 * n)


def _naive_sigmoid(img, txt, s, b):
    n = len(img)
    return -sum(math.log(1 / (1 + math.exp(-(1 if i == j else -1) * (s * img[i] @ txt[j] + b))))
                for i in range(n) for j in range(n)) / n


def test_softmax_loss_equals_naive_reference():
    img, txt = _pairs()
    loss, metrics = clip_lib.contrastive_loss(img, txt, 7.0)
    np.testing.assert_allclose(loss, _naive_softmax(img.astype(np.float64), txt.astype(np.float64), 7.0), rtol=1e-5)
    assert 0 <= float(metrics["accuracy"]) <= 1


def test_sigmoid_loss_equals_naive_reference():
    img, txt = _pairs(seed=1)
    loss, _ = clip_lib.contrastive_loss(img, txt, 10.0, -3.0, kind="sigmoid")
    np.testing.assert_allclose(loss, _naive_sigmoid(img.astype(np.float64), txt.astype(np.float64), 10.0, -3.0),
                               rtol=1e-5)


def test_temperature_gradient_matches_closed_form():
    """d L / d t for s = exp(t): each cross-entropy row contributes s * (E_p[S_ij] - S_ii), S = cosines."""
    img, txt = _pairs(n=8, seed=2)
    t = 1.3
    grad = jax.grad(lambda t: clip_lib.contrastive_loss(img, txt, jnp.exp(t))[0])(t)
    sim = img.astype(np.float64) @ txt.astype(np.float64).T
    s = math.exp(t)
    expected = 0.0
    for m in (sim, sim.T):
        p = np.exp(s * m - (s * m).max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        expected += np.mean((p * m).sum(1) - np.diag(m)) * s / 2
    np.testing.assert_allclose(grad, expected, rtol=1e-4)


def test_aligned_embeddings_give_near_zero_loss_and_shuffled_high():
    rng = np.random.default_rng(3)
    emb = _unit(rng.normal(size=(32, 256))).astype(np.float32)  # nearly orthogonal in 256 dims
    aligned, _ = clip_lib.contrastive_loss(emb, emb, clip_lib.MAX_LOGIT_SCALE)
    shuffled, metrics = clip_lib.contrastive_loss(emb, emb[rng.permutation(32)], clip_lib.MAX_LOGIT_SCALE)
    assert float(aligned) < 1e-6
    assert float(shuffled) > 30 and float(metrics["accuracy"]) < 0.2


def test_logit_scale_is_clamped_at_100():
    model = clip_lib.CLIP(vocab_size=10, context_length=4, embed_dim=8, image_channels=(4,), image_width=8,
                          text_width=8, text_depth=1, num_heads=2)
    images = jax.random.normal(jax.random.PRNGKey(5), (2, 8, 8, 1))
    tokens = jnp.array([[2, 4, 3, 0], [2, 5, 6, 3]])
    params = jax.jit(model.init)(jax.random.PRNGKey(0), images, tokens)["params"]  # jit: one compile, not one per op
    apply = jax.jit(model.apply)
    np.testing.assert_allclose(apply({"params": params}, images, tokens)[2], 1 / 0.07, rtol=1e-5)
    params = {**params, "log_scale": jnp.asarray(7.0)}  # exp(7) = 1097
    img, txt, scale, _ = apply({"params": params}, images, tokens)
    np.testing.assert_allclose(scale, 100.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(img, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kind", clip_lib.LOSSES)
def test_gathered_loss_and_gradients_on_8_devices_equal_the_global_batch(kind):
    """Each of 8 devices holds 4 pairs; with the gather, loss and pmean'd gradients equal the
    single-device loss and gradient of all 32 pairs. Without it (each device's 4 x 4 matrix alone)
    they do not (checked for softmax): the test can tell the two apart."""
    model = clip_lib.CLIP(vocab_size=12, context_length=6, embed_dim=8, image_channels=(4, 8), image_width=16,
                          text_width=8, text_depth=1, num_heads=2, loss=kind)
    rng = np.random.default_rng(4)
    images = jnp.asarray(rng.normal(size=(32, 8, 8, 1)).astype(np.float32))
    tokens = np.zeros((32, 6), np.int32)
    tokens[:, 0], tokens[:, 1:4], tokens[:, 4] = 2, rng.integers(4, 12, (32, 3)), 3
    # Everything jitted: op-by-op execution compiles every primitive on its own (a minute here).
    params = jax.jit(model.init)(jax.random.PRNGKey(1), images[:1], tokens[:1])["params"]

    def loss_fn(p, x, t, axis_name):
        img, txt, scale, bias = model.apply({"params": p}, x, t)
        return clip_lib.contrastive_loss(img, txt, scale, bias, kind, axis_name)[0]

    global_loss, global_grads = jax.jit(jax.value_and_grad(loss_fn), static_argnums=3)(params, images, tokens, None)
    mesh = Mesh(np.asarray(jax.devices()[:8]), (parallel.AXIS,))

    def per_device(gather):
        def step(p, x, t):
            loss, grads = jax.value_and_grad(loss_fn)(p, x, t, parallel.AXIS if gather else None)
            return parallel.pmean(loss), parallel.pmean(grads)
        return jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), P(parallel.AXIS), P(parallel.AXIS)),
                                     out_specs=(P(), P()), check_vma=False))

    loss, grads = per_device(True)(params, images, tokens)
    np.testing.assert_allclose(loss, global_loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(global_grads)):
        # Entries that are zero in exact arithmetic (biases right before a GroupNorm, the unused
        # sigmoid bias) come out as float32 rounding noise of order 1e-7, summed in another order.
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-5)
    if kind == "softmax":
        local_loss, _ = per_device(False)(params, images, tokens)
        assert abs(float(local_loss) - float(global_loss)) > 0.1


def test_vit_tower_gives_normalised_embeddings():
    model = clip_lib.CLIP(vocab_size=10, context_length=4, embed_dim=8, image_tower="vit", image_width=16,
                          patch_size=4, vit_depth=1, text_width=8, text_depth=1, num_heads=2)
    images, tokens = jnp.ones((3, 16, 16, 3)), jnp.array([[2, 4, 3, 0]] * 3)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), images, tokens)["params"]
    img, _, _, _ = jax.jit(model.apply)({"params": params}, images, tokens)
    assert img.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(img, axis=-1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="patches"):
        model.apply({"params": params}, jnp.ones((1, 18, 18, 3)), tokens[:1])


def test_zero_shot_accuracy_is_the_argmax_over_the_class_embeddings_by_hand():
    """Three images, two classes: cosines image0 (0.8, 0.6) -> class 0, image1 (0.6, 0.8) -> 1,
    image2 (-1, 0) -> 1 (0 beats -1); labels (0, 1, 0) -> 2 of 3 right."""
    classes = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    images = jnp.array([[0.8, 0.6], [0.6, 0.8], [-1.0, 0.0]])
    np.testing.assert_array_equal(clip_lib.zero_shot_predict(images, classes), [0, 1, 1])
    np.testing.assert_allclose(clip_lib.zero_shot_accuracy(images, classes, jnp.array([0, 1, 0])), 2 / 3, rtol=1e-6)
